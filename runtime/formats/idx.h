/*
 * idx.h: MNIST-style IDX files, plain or gzip-compressed.
 * Images: u8 [N][H][W] (3 dims, C = 1) or [N][H][W][C] (4 dims).
 * Labels: u8 [N] class indices, or u8 [N][K] 0/1 rows (multi-label).
 */
#ifndef CNNGEN_IDX_H
#define CNNGEN_IDX_H

#include <stdint.h>

#include "err.h"

typedef struct IdxImages {
  int n, h, w, c;
  uint8_t *data; /* [n][h][w][c] */
} IdxImages;

typedef struct IdxLabels {
  int n;
  int k; /* 0: class indices data[n]; > 0: rows data[n][k] */
  uint8_t *data;
} IdxLabels;

/* Each checks magic, rank, that the sizes multiply up to the file's length
   (truncated or trailing data is an error naming the counts). */
int idx_read_images(const char *path, IdxImages *out, Err *e);
int idx_read_labels(const char *path, IdxLabels *out, Err *e);
void idx_images_free(IdxImages *im);
void idx_labels_free(IdxLabels *lb);

/* Writers (atomic), for the example scripts and tests. */
int idx_write_images(const char *path, const IdxImages *im, Err *e);
int idx_write_labels(const char *path, const IdxLabels *lb, Err *e);

/* A data directory: DIR/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz].
   `which` is "train" or "t10k". Fills the resolved paths' files; an error
   names the directory and the file it looked for. */
int idx_load_split(const char *dir, const char *which, IdxImages *images, IdxLabels *labels,
                   Err *e);

/* Debian's dataset-fashion-mnist location. */
#define CNNGEN_DEFAULT_DATA "/usr/share/datasets/fashion-mnist"

#endif
