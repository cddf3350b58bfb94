/* image.h: PGM/PPM (P2, P3, P5, P6) and PNG (libpng) images. */
#ifndef CNNGEN_IMAGE_H
#define CNNGEN_IMAGE_H

#include <stdint.h>

#include "err.h"

typedef struct Image {
  int h, w, c;   /* c = 1 (gray) or 3 (RGB); 16-bit and alpha are converted */
  uint8_t *data; /* [h][w][c] */
} Image;

int image_read(const char *path, Image *img, Err *e);
/* Converts to c channels (gray <-> RGB by luminance / replication). */
int image_convert(Image *img, int c);
void image_free(Image *img);
/* c = 1 or 3; atomic. */
int image_write_png(const char *path, const Image *img, Err *e);

#endif
