/*
 * dataset.h: what --data DIR names, an image folder (folder.h) or IDX files
 * (idx.h), loaded the same way for every command, with the class names the
 * data gives: an image folder's class folders, or for IDX data the lines of
 * DIR/classes.txt where it exists.
 */
#ifndef CNNGEN_DATASET_H
#define CNNGEN_DATASET_H

#include <stdbool.h>

#include "err.h"
#include "idx.h"

typedef struct Dataset {
  bool folder;                 /* an image folder, not IDX files */
  const char *test_name;       /* "test" (folder) or "t10k" (IDX): for messages */
  IdxImages train_im, test_im; /* train_im empty unless asked for */
  IdxLabels train_lb, test_lb;
  int nclasses; /* class names from the data; 0: none */
  char **classes;
  char *classes_path;       /* where they came from: "DIR/train", "DIR/classes.txt" */
  const char *classes_what; /* and what there: "class folders", "lines" */
} Dataset;

/* Loads DIR's test split, and its training split too when `train`. Images
   of an image folder are fitted to h x w x c and decoded on `threads`
   threads; IDX images are as the files hold them. */
int dataset_load(Dataset *d, const char *dir, bool train, int h, int w, int c, int threads, Err *e);
void dataset_free(Dataset *d);

/* A classes.txt: one name per line (a final newline optional, "\r\n" taken
   as "\n"); an empty line or a file of no names is refused. */
int classes_read(const char *path, char ***names, int *n, Err *e);
void classes_free(char **names, int n);

#endif
