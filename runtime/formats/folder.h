/*
 * folder.h: image folders, the layout of Keras's image_dataset_from_directory
 * and torchvision's ImageFolder: DIR/train/CLASS/FILE and DIR/test/CLASS/FILE,
 * PNG, JPEG or PGM/PPM images of any size, gray or colour. The classes are
 * the names of train's subfolders in byte order (Python's sorted()); each
 * image is converted to the network's channels and resized bilinearly to
 * its height and width (image_fit), into the same u8 arrays IDX data gives.
 */
#ifndef CNNGEN_FOLDER_H
#define CNNGEN_FOLDER_H

#include <stdbool.h>

#include "err.h"
#include "idx.h"

/* At most this many classes: labels are bytes. */
#define FOLDER_MAX_CLASSES 256

typedef struct ImageFolder {
  char *dir;
  int nclasses;
  char **classes; /* sorted */
} ImageFolder;

/* True when DIR/train is a directory: an image folder rather than IDX files. */
bool folder_is(const char *dir);

/* Lists DIR/train's class folders. Refuses none, more than
   FOLDER_MAX_CLASSES, and a class folder holding no image file. */
int folder_open(ImageFolder *f, const char *dir, Err *e);
void folder_close(ImageFolder *f);

/* Decodes every image of DIR/WHICH (WHICH: "train" or "test") into im
   ([n][h][w][c], in the order of the file names, then of the classes) and lb
   (class indices), on `threads` threads. Refuses a class folder that train
   lacks or that holds no image file, and a file that cannot be decoded
   (naming the first such file in that order, whatever the thread count).
   Files named by their index in IDX files (00000.png, ...) come in the IDX
   files' order, so training on them matches training on the IDX files. */
int folder_load(const ImageFolder *f, const char *which, int h, int w, int c, int threads,
                IdxImages *im, IdxLabels *lb, Err *e);

#endif
