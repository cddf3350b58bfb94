/* image.h: PGM/PPM (P2, P3, P5, P6), PNG (libpng) and JPEG (libjpeg-turbo)
   images, and what turns one into a network's input. */
#ifndef CNNGEN_IMAGE_H
#define CNNGEN_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

typedef struct Image {
  int h, w, c;   /* c = 1 (gray) or 3 (RGB); 16-bit and alpha are converted */
  uint8_t *data; /* [h][w][c] */
} Image;

int image_read(const char *path, Image *img, Err *e);
/* The same for a file's bytes already in memory (path names it in
   messages): what image_read does once it has read the file. */
int image_decode(const char *path, const uint8_t *buf, size_t len, Image *img, Err *e);
/* Converts to c channels (gray <-> RGB by luminance / replication). */
int image_convert(Image *img, int c);
/* Resizes to h x w, bilinearly (half-pixel centres, PyTorch's
   align_corners=False). -1 when out of memory. */
int image_resize(Image *img, int h, int w);
/* Converts to c channels, then resizes to h x w where it differs: a
   network's input from any image. -1 when out of memory or c is not 1 or 3. */
int image_fit(Image *img, int h, int w, int c);
/* True when the file begins like a PNG, JPEG or PGM/PPM image (or cannot be
   opened, for image_read to say why); false for anything else (IDX). */
bool image_is_picture(const char *path);
/* Reads an image for a network (`net`, for messages) of input h x w x c:
   refuses another height or width, converts gray or RGB to c channels. */
int image_read_input(const char *path, int h, int w, int c, const char *net, Image *img, Err *e);
/* Converts count bytes to floats x = byte / 255 (the network's input). */
void image_bytes_to_floats(const unsigned char *src, long count, float *dst);
void image_free(Image *img);
/* c = 1 or 3; atomic. */
int image_write_png(const char *path, const Image *img, Err *e);

#endif
