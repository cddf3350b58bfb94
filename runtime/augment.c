/*
 * augment.c: the transforms of augment.h.
 *
 * The integer steps (flips, crop, shift) are one gather: each step maps an
 * output row to a source row (or to nothing: zero fill) independently of the
 * column, and likewise for columns, so composing them gives, per axis, an
 * interval of valid outputs and an affine source index. Each output row is
 * zeroed outside its interval and copied (or copied backwards, for hflip)
 * inside it. Checking both zero-fill windows, the crop's and the shift's,
 * keeps the result equal to applying the steps one after another.
 *
 * The rotation samples the result of the integer steps: output pixel (y, x)
 * reads the point that turning by -angle about the centre brings it to, with
 * bilinear weights over its four neighbours, a neighbour outside the image
 * counting as zero. Coordinates are computed in double from each row's start
 * (no running sums), so a quarter turn lands on whole pixels up to rounding;
 * points whose four neighbours are all inside skip the bounds checks.
 *
 * Noise: Marsaglia's polar method gives two normal draws per accepted pair.
 */
#include "augment.h"

#include <math.h>
#include <string.h>

#include "trainer.h"

const Augment augment_order[AUG_COUNT] = {AUG_HFLIP, AUG_VFLIP,  AUG_CROP,
                                          AUG_SHIFT, AUG_ROTATE, AUG_NOISE};

bool augment_init(Augmenter *a, const TrainConfig *tc, Shape in) {
  const AugmentSetting *s = tc->augment;
  *a = (Augmenter){
      .h = in.h,
      .w = in.w,
      .c = in.c,
      .hflip = s[AUG_HFLIP].on,
      .vflip = s[AUG_VFLIP].on,
      .crop = s[AUG_CROP].on ? (long)s[AUG_CROP].value : 0,
      .shift = s[AUG_SHIFT].on ? (long)s[AUG_SHIFT].value : 0,
      .rotate = s[AUG_ROTATE].on ? s[AUG_ROTATE].value : 0,
      .noise = s[AUG_NOISE].on ? s[AUG_NOISE].value : 0,
  };
  return a->hflip || a->vflip || a->crop > 0 || a->shift > 0 || a->rotate > 0 || a->noise > 0;
}

uint64_t augment_key(uint64_t seed, int epoch, long sample) {
  uint64_t sm = seed ^ (0xD1B54A32D192ED03u * ((uint64_t)epoch + 1));
  uint64_t k = train_splitmix64(&sm);
  sm = k ^ (0x8CB92BA72F3D8DD7u * ((uint64_t)sample + 1));
  return train_splitmix64(&sm);
}

/* Uniform integer in [-p, p]. */
static long symmetric(TrainRng *r, long p) {
  return (long)train_rng_below(r, 2 * (uint64_t)p + 1) - p;
}

void augment_draw(const Augmenter *a, uint64_t key, AugmentDraw *d) {
  TrainRng r;
  train_rng_seed(&r, key);
  *d = (AugmentDraw){0};
  if (a->hflip)
    d->hflip = train_rng_next(&r) >> 63;
  if (a->vflip)
    d->vflip = train_rng_next(&r) >> 63;
  if (a->crop > 0) {
    d->crop_y = symmetric(&r, a->crop) + a->crop;
    d->crop_x = symmetric(&r, a->crop) + a->crop;
  }
  if (a->shift > 0) {
    d->shift_y = symmetric(&r, a->shift);
    d->shift_x = symmetric(&r, a->shift);
  }
  if (a->rotate > 0)
    d->angle = (2 * train_rng_uniform(&r) - 1) * a->rotate;
  if (a->noise > 0)
    d->noise_key = train_rng_next(&r);
}

static long max3(long a, long b, long c) {
  long m = a > b ? a : b;
  return m > c ? m : c;
}

static long min3(long a, long b, long c) {
  long m = a < b ? a : b;
  return m < c ? m : c;
}

/* Flips, crop and shift: dst [h][w][c] from src. Along an axis of size n,
   output i reads i + off (then flipped) where both windows hold: the
   shift's, 0 <= i - shift < n, and the crop's, 0 <= i + off < n, with
   off = crop offset - crop - shift. */
static void integer_steps(const Augmenter *a, const AugmentDraw *d, const float *src, float *dst) {
  long h = a->h, w = a->w, c = a->c;
  long off_y = d->crop_y - a->crop - d->shift_y, off_x = d->crop_x - a->crop - d->shift_x;
  long x0 = max3(0, d->shift_x, -off_x), x1 = min3(w, w + d->shift_x, w - off_x);
  for (long y = 0; y < h; y++) {
    float *out = dst + y * w * c;
    long sy = y + off_y;
    if (y - d->shift_y < 0 || y - d->shift_y >= h || sy < 0 || sy >= h || x0 >= x1) {
      memset(out, 0, (size_t)(w * c) * sizeof *out);
      continue;
    }
    if (d->vflip)
      sy = h - 1 - sy;
    const float *row = src + sy * w * c;
    memset(out, 0, (size_t)(x0 * c) * sizeof *out);
    if (!d->hflip) {
      memcpy(out + x0 * c, row + (x0 + off_x) * c, (size_t)((x1 - x0) * c) * sizeof *out);
    } else if (c == 1) {
      for (long x = x0; x < x1; x++)
        out[x] = row[w - 1 - (x + off_x)];
    } else {
      for (long x = x0; x < x1; x++)
        memcpy(out + x * c, row + (w - 1 - (x + off_x)) * c, (size_t)c * sizeof *out);
    }
    memset(out + x1 * c, 0, (size_t)((w - x1) * c) * sizeof *out);
  }
}

/* Output pixel (y, x) of a turn by -degrees reads the source point
   (x0 + ax * x, y0 + ay * x) of its row: the centre plus (u, v) turned,
   u = x - cx, v = y - cy (y grows downwards). */
static void rotate(const Augmenter *a, double degrees, const float *src, float *dst) {
  int h = a->h, w = a->w, c = a->c;
  double t = degrees * (3.14159265358979323846 / 180.0), cs = cos(t), sn = sin(t);
  double cy = (h - 1) / 2.0, cx = (w - 1) / 2.0;
  for (int y = 0; y < h; y++) {
    double v = y - cy, x0 = cx - cx * cs - v * sn, y0 = cy - cx * sn + v * cs;
    float *out = dst + (long)y * w * c;
    for (int x = 0; x < w; x++, out += c) {
      double xs = x0 + x * cs, ys = y0 + x * sn;
      if (!(xs >= -1 && xs < w && ys >= -1 && ys < h)) { /* all four neighbours outside */
        for (int k = 0; k < c; k++)
          out[k] = 0;
        continue;
      }
      int xi = (int)(xs + 1) - 1, yi = (int)(ys + 1) - 1; /* floor, as xs, ys >= -1 */
      float fx = (float)(xs - xi), fy = (float)(ys - yi);
      float w00 = (1 - fy) * (1 - fx), w01 = (1 - fy) * fx, w10 = fy * (1 - fx), w11 = fy * fx;
      const float *p = src + ((long)yi * w + xi) * c;
      long down = (long)w * c;
      if (xi >= 0 && xi < w - 1 && yi >= 0 && yi < h - 1) { /* inside: no checks */
        for (int k = 0; k < c; k++)
          out[k] = w00 * p[k] + w01 * p[c + k] + w10 * p[down + k] + w11 * p[down + c + k];
        continue;
      }
      bool left = xi >= 0, right = xi < w - 1, top = yi >= 0, bottom = yi < h - 1;
      for (int k = 0; k < c; k++) {
        float s = 0;
        if (top && left)
          s += w00 * p[k];
        if (top && right)
          s += w01 * p[c + k];
        if (bottom && left)
          s += w10 * p[down + k];
        if (bottom && right)
          s += w11 * p[down + c + k];
        out[k] = s;
      }
    }
  }
}

static float clamp01(float v) {
  return v < 0 ? 0 : v > 1 ? 1 : v;
}

/* Marsaglia's polar method in float: one 64-bit draw gives the two 24-bit
   uniforms of a candidate pair. */
static void add_noise(float *x, long n, double std, uint64_t key) {
  TrainRng r;
  train_rng_seed(&r, key);
  float sd = (float)std;
  for (long i = 0; i < n; i += 2) {
    float u, v, s;
    do {
      uint64_t bits = train_rng_next(&r);
      u = (float)(bits >> 40) * 0x1p-23f - 1;
      v = (float)((bits >> 16) & 0xFFFFFF) * 0x1p-23f - 1;
      s = u * u + v * v;
    } while (s >= 1 || s == 0);
    float m = sd * sqrtf(-2 * logf(s) / s);
    x[i] = clamp01(x[i] + u * m);
    if (i + 1 < n)
      x[i + 1] = clamp01(x[i + 1] + v * m);
  }
}

void augment_apply(const Augmenter *a, const AugmentDraw *d, float *x, float *tmp) {
  long size = (long)a->h * a->w * a->c;
  bool moves = d->hflip || d->vflip || d->crop_y != a->crop || d->crop_x != a->crop ||
               d->shift_y != 0 || d->shift_x != 0;
  if (moves || d->angle != 0) {
    if (moves)
      integer_steps(a, d, x, tmp);
    else
      memcpy(tmp, x, (size_t)size * sizeof *x);
    if (d->angle != 0)
      rotate(a, d->angle, tmp, x);
    else
      memcpy(x, tmp, (size_t)size * sizeof *x);
  }
  if (a->noise > 0)
    add_noise(x, size, a->noise, d->noise_key);
}

void augment_image(const Augmenter *a, uint64_t key, float *x, float *tmp) {
  AugmentDraw d;
  augment_draw(a, key, &d);
  augment_apply(a, &d, x, tmp);
}
