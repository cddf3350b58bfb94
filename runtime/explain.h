/*
 * explain.h: the arithmetic behind `cnngen explain` (explain.c, tested
 * alone by tests/test_explain.c): turning the gradients that NAME_explain
 * computes into a heat map at the input's size, and drawing the picture.
 */
#ifndef CNNGEN_EXPLAIN_H
#define CNNGEN_EXPLAIN_H

#include <stdint.h>

#include "err.h"
#include "formats/image.h"

/* Saliency (Simonyan et al. 2014): map[y][x] = max over channels of
   |dx[y][x][c]|, divided by its largest value (all zeros when dx is 0).
   Returns that largest value. */
float explain_saliency(const float *dx, int h, int w, int c, float *map);

/* Grad-CAM (Selvaraju et al. 2017) from the last convolution's output act
   and the score's gradient grad (both [ch][cw][cc]): alpha_k = the mean of
   grad over the ch x cw positions, cam = relu(sum_k alpha_k act_k), resized
   bilinearly to h x w and divided by its largest value. Returns the largest
   value before the resize (0: no position speaks for the class; map all 0). */
float explain_gradcam(const float *act, const float *grad, int ch, int cw, int cc, int h, int w,
                      float *map);

/* Bilinear resize of src [sh][sw] to dst [dh][dw], pixel centres aligned
   (align_corners=False in PyTorch, cv2.resize): edges clamp. */
void explain_resize(const float *src, int sh, int sw, float *dst, int dh, int dw);

/* The colour map: v in [0, 1] (clamped) to RGB, dark blue through cyan,
   yellow and red to dark red (jet). */
void explain_colour(float v, uint8_t rgb[3]);

/* The picture: two panels side by side, each the image scaled up `scale`
   times (nearest pixels) and separated by a white gap of GAP pixels: the
   image as it is (RGB for 3 channels, else the mean of the channels in
   gray), and the image in gray with the heat map (bilinear over the scaled
   size) blended over it. x: [h][w][c] in [0, 1]; map [h][w] in [0, 1].
   Fills out (RGB, malloc'd data) and returns 0, or -1 out of memory. */
enum { EXPLAIN_GAP = 8 };
int explain_render(const float *x, int h, int w, int c, const float *map, int scale, Image *out);

/* The display scale for an h x w input: the largest whole factor that keeps
   the longer side within 224 pixels, at least 1 (28 x 28: 8, 32 x 32: 7). */
int explain_scale(int h, int w);

#endif
