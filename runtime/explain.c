/*
 * explain.c: the arithmetic behind `cnngen explain`: the saliency and
 * Grad-CAM maps from the gradients NAME_explain computes, the bilinear
 * resize, the colour map and the two-panel picture (explain.h). No files
 * and no options here: cmd_explain.c parses them and calls these.
 */
#include "explain.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

float explain_saliency(const float *dx, int h, int w, int c, float *map) {
  float top = 0.0f;
  for (long p = 0; p < (long)h * w; p++) {
    float v = 0.0f;
    for (int k = 0; k < c; k++)
      v = fmaxf(v, fabsf(dx[p * c + k]));
    map[p] = v;
    top = fmaxf(top, v);
  }
  for (long p = 0; p < (long)h * w; p++)
    map[p] = top > 0.0f ? map[p] / top : 0.0f;
  return top;
}

void explain_resize(const float *src, int sh, int sw, float *dst, int dh, int dw) {
  for (int y = 0; y < dh; y++) {
    double fy = ((double)y + 0.5) * sh / dh - 0.5;
    fy = fy < 0 ? 0 : fy > sh - 1 ? sh - 1 : fy;
    int y0 = (int)fy, y1 = y0 + 1 < sh ? y0 + 1 : y0;
    double ty = fy - y0;
    for (int x = 0; x < dw; x++) {
      double fx = ((double)x + 0.5) * sw / dw - 0.5;
      fx = fx < 0 ? 0 : fx > sw - 1 ? sw - 1 : fx;
      int x0 = (int)fx, x1 = x0 + 1 < sw ? x0 + 1 : x0;
      double tx = fx - x0;
      double top = src[y0 * sw + x0] * (1 - tx) + src[y0 * sw + x1] * tx;
      double bottom = src[y1 * sw + x0] * (1 - tx) + src[y1 * sw + x1] * tx;
      dst[y * dw + x] = (float)(top * (1 - ty) + bottom * ty);
    }
  }
}

float explain_gradcam(const float *act, const float *grad, int ch, int cw, int cc, int h, int w,
                      float *map) {
  const long hw = (long)ch * cw;
  double *alpha = calloc((size_t)cc, sizeof *alpha);
  float *cam = malloc((size_t)hw * sizeof *cam);
  if (!alpha || !cam) {
    free(alpha);
    free(cam);
    memset(map, 0, (size_t)h * w * sizeof *map);
    return 0.0f;
  }
  for (long p = 0; p < hw; p++)
    for (int k = 0; k < cc; k++)
      alpha[k] += grad[p * cc + k];
  for (int k = 0; k < cc; k++)
    alpha[k] /= (double)hw;
  float top = 0.0f;
  for (long p = 0; p < hw; p++) {
    double s = 0.0;
    for (int k = 0; k < cc; k++)
      s += alpha[k] * act[p * cc + k];
    cam[p] = s > 0.0 ? (float)s : 0.0f;
    top = fmaxf(top, cam[p]);
  }
  explain_resize(cam, ch, cw, map, h, w);
  float big = 0.0f;
  for (long p = 0; p < (long)h * w; p++)
    big = fmaxf(big, map[p]);
  for (long p = 0; p < (long)h * w; p++)
    map[p] = big > 0.0f ? map[p] / big : 0.0f;
  free(alpha);
  free(cam);
  return top;
}

void explain_colour(float v, uint8_t rgb[3]) {
  v = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
  /* jet: each channel a trapezoid, blue peaking at 0.25, green 0.5, red 0.75 */
  const float centre[3] = {0.75f, 0.5f, 0.25f};
  for (int i = 0; i < 3; i++) {
    float t = 1.5f - 4.0f * fabsf(v - centre[i]);
    t = t < 0.0f ? 0.0f : t > 1.0f ? 1.0f : t;
    rgb[i] = (uint8_t)lrintf(255.0f * t);
  }
}

int explain_scale(int h, int w) {
  int big = h > w ? h : w, s = 224 / (big > 0 ? big : 1);
  return s < 1 ? 1 : s;
}

static uint8_t byte_of(double v) {
  v = v < 0 ? 0 : v > 1 ? 1 : v;
  return (uint8_t)lrint(v * 255.0);
}

int explain_render(const float *x, int h, int w, int c, const float *map, int scale, Image *out) {
  const int H = h * scale, W = w * scale, OW = 2 * W + EXPLAIN_GAP;
  const double alpha = 0.5; /* the heat map's share in the overlay */
  memset(out, 0, sizeof *out);
  uint8_t *data = malloc((size_t)H * OW * 3);
  float *heat = malloc((size_t)H * W * sizeof *heat);
  if (!data || !heat) {
    free(data);
    free(heat);
    return -1;
  }
  memset(data, 255, (size_t)H * OW * 3);
  explain_resize(map, h, w, heat, H, W);
  for (int y = 0; y < H; y++)
    for (int xx = 0; xx < W; xx++) {
      const float *px = x + ((long)(y / scale) * w + xx / scale) * c;
      double gray = 0.0;
      for (int k = 0; k < c; k++)
        gray += px[k];
      gray /= c;
      uint8_t *left = data + ((long)y * OW + xx) * 3;
      uint8_t *right = data + ((long)y * OW + W + EXPLAIN_GAP + xx) * 3;
      uint8_t col[3];
      explain_colour(heat[(long)y * W + xx], col);
      for (int i = 0; i < 3; i++) {
        left[i] = byte_of(c == 3 ? px[i] : gray);
        right[i] = byte_of((1 - alpha) * gray + alpha * col[i] / 255.0);
      }
    }
  free(heat);
  out->h = H;
  out->w = OW;
  out->c = 3;
  out->data = data;
  return 0;
}
