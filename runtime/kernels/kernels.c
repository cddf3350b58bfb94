/*
 * kernels.c: the JIT backend's kernels (kernels.h), with run-time dimensions.
 * The Makefile compiles this file once per vector width, with CNK_ISA the
 * suffix of its functions (avx512, avx2, generic) and CNK_VW the floats of a
 * vector (16, 8, 4), under -O3 and the width's -m flags.
 *
 * The convolutions work as the generated code's do, on register tiles of
 * GCC vectors: the forward pass keeps TC output pixels x FB vectors of
 * filters in registers over every tap; the weight gradient keeps TJ taps x FB
 * vectors of filters over every output pixel; the input gradient, TP pixels x
 * CV vectors of input channels over every filter (from the transposed
 * weights). A tile's sizes are constants of an always-inlined function, so
 * the compiler unrolls it into registers; the dimensions around it are run
 * time values. A channel count that is not a multiple of the vector ends in
 * a vector that overlaps the one before it (it starts VW channels before the
 * end): stores write it whole (the overlapped lanes hold the same bits),
 * additions add only its new lanes. Fewer channels than a vector run plain.
 *
 * Each output gets its products in a fixed order for given dimensions, so a
 * run is repeatable bit for bit; the order differs from the specialized C's,
 * so the two backends agree to float rounding.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if CNK_VW == 16 && defined(__AVX512F__) || CNK_VW == 8 && defined(__AVX2__)
#include <immintrin.h>
#endif

#include "../../compiler/ops.h"
#include "kernels.h"

#define PASTE_(a, b) a##_##b
#define PASTE(a, b) PASTE_(a, b)
#define FN(name) PASTE(name, CNK_ISA)

enum { VW = CNK_VW, REGS = CNK_VW == 16 ? 32 : 16, ACCS = REGS * 3 / 4 };
typedef float vf __attribute__((vector_size(CNK_VW * sizeof(float))));
typedef int vi __attribute__((vector_size(CNK_VW * sizeof(int))));
#define INLINE static inline __attribute__((always_inline))

INLINE vf vload(const float *p) {
  vf v;
  memcpy(&v, p, sizeof v);
  return v;
}
INLINE void vstore(float *p, vf v) {
  memcpy(p, &v, sizeof v);
}
INLINE vf vrelu(vf v) {
  const vf zero = {0};
  return (vf)((vi)v & (v > zero));
}
/* p[from..VW-1] += v[from..]: all of v, or the new lanes of an overlapping vector */
INLINE void vaddto(float *p, vf v, int from) {
  if (!from) {
    vstore(p, vload(p) + v);
    return;
  }
  for (int i = from; i < VW; i++)
    p[i] += v[i];
}

/* ---- activations ---- */

/* exp and tanh as the generated code's NAME_exp / NAME_tanh compute them:
   the one copy of both, which the compiler embeds in the generated C. */
#define ACT_POLY(name) k_##name
#include "act_poly.h"

/* y = act(y) over n floats, after a layer stored them (relu is done in
   registers before the store); softmax over all n, as the generated code's. */
static void act_pass(int act, float *y, long n) {
  switch (act) {
  case ACT_SIGMOID:
    for (long i = 0; i < n; i++)
      y[i] = 1.0f / (1.0f + k_exp(-y[i]));
    return;
  case ACT_TANH:
    for (long i = 0; i < n; i++)
      y[i] = k_tanh(y[i]);
    return;
  case ACT_SOFTMAX: {
    float mx = y[0], sum = 0.0f;
    for (long i = 1; i < n; i++)
      mx = y[i] > mx ? y[i] : mx;
    for (long i = 0; i < n; i++) {
      y[i] = expf(y[i] - mx);
      sum += y[i];
    }
    for (long i = 0; i < n; i++)
      y[i] /= sum;
    return;
  }
  default: /* linear; relu came before the store */
    return;
  }
}

/* act'(y) g for one value (not softmax, which never comes before a pool). */
INLINE float act_grad(int act, float y, float g) {
  switch (act) {
  case ACT_RELU:
    return y > 0.0f ? g : 0.0f;
  case ACT_SIGMOID:
    return g * (y * (1.0f - y));
  case ACT_TANH:
    return g * (1.0f - y * y);
  default:
    return g;
  }
}

/* dy = act'(y) dy in place (softmax per group of `group`). */
static void act_backward(int act, const float *y, float *dy, long n, int group) {
  switch (act) {
  case ACT_RELU:
    for (long i = 0; i < n; i++)
      dy[i] = y[i] > 0.0f ? dy[i] : 0.0f;
    return;
  case ACT_SIGMOID:
    for (long i = 0; i < n; i++)
      dy[i] *= y[i] * (1.0f - y[i]);
    return;
  case ACT_TANH:
    for (long i = 0; i < n; i++)
      dy[i] *= 1.0f - y[i] * y[i];
    return;
  case ACT_SOFTMAX:
    for (long p = 0; p < n / group; p++) {
      const float *v = y + p * group;
      float *d = dy + p * group, s = 0.0f;
      for (int i = 0; i < group; i++)
        s += d[i] * v[i];
      for (int i = 0; i < group; i++)
        d[i] = v[i] * (d[i] - s);
    }
    return;
  default:
    return;
  }
}

/* ---- channel blocks ----

   The vectors over n channels (n >= VW): their offsets, the last one
   `shift` = VW * ceil(n / VW) - n channels back; in blocks of at most `most`. */
typedef struct Blocks {
  int n, vectors, shift;
} Blocks;

static Blocks blocks(int n) {
  const int vectors = (n + VW - 1) / VW;
  return (Blocks){n, vectors, vectors * VW - n};
}

INLINE int vec_off(const Blocks *b, int v) {
  return v == b->vectors - 1 ? b->n - VW : v * VW;
}

/* ---- convolution, forward ---- */

/* Output row oy, pixels ox0 .. ox0 + TC - 1, filter vectors v0 .. v0 + FB - 1
   of y (its rows `yrow` floats apart; y points at row oy's pixel 0). */
INLINE void conv_tile(const cnk_conv *d, const Blocks *fb_, const float *x, const float *w,
                      const float *b, float *yr, int oy, int ox0, int v0, const int TC,
                      const int FB) {
  const int C = d->C, F = d->F, K = d->KW * C, relu = d->act == ACT_RELU;
  int fo[4]; /* fixed sizes, not VLAs: the compiler keeps them in registers */
  vf acc[12][4];
  for (int v = 0; v < FB; v++) {
    fo[v] = vec_off(fb_, v0 + v);
    const vf bv = b ? vload(b + fo[v]) : (vf){0};
    for (int p = 0; p < TC; p++)
      acc[p][v] = bv;
  }
  const long xs = (long)d->SW * C;
  for (int ky = 0; ky < d->KH; ky++) {
    const float *xk = x + ((long)(oy * d->SH + ky) * d->IW + (long)ox0 * d->SW) * C;
    const float *wk = w + (long)ky * K * F;
    for (int k = 0; k < K; k++) {
      vf wv[4];
      for (int v = 0; v < FB; v++)
        wv[v] = vload(wk + (long)k * F + fo[v]);
      for (int p = 0; p < TC; p++) {
        const float s = (xk[p * xs + k]);
        for (int v = 0; v < FB; v++)
          acc[p][v] += s * wv[v];
      }
    }
  }
  for (int p = 0; p < TC; p++)
    for (int v = 0; v < FB; v++)
      vstore(yr + (long)(ox0 + p) * F + fo[v], relu ? vrelu(acc[p][v]) : acc[p][v]);
}

/* Pixels (or taps) per tile for FB vectors: 3/4 of the registers as
   accumulators, at most 12. */
#define TC_OF(FB) (ACCS / (FB) > 12 ? 12 : ACCS / (FB))

/* n pixels (or taps) in tiles of at most `most`, as even as can be (26 as
   9 + 9 + 8, not 12 + 12 + 1 + 1): CALL(i, k) for each tile, i its first and
   k its size, a constant (the case of a switch) so that the tile unrolls. */
#define CASES_12(CALL, i)                                                                            case 1:  CALL(i, 1);  break;                                                                        case 2:  CALL(i, 2);  break;                                                                        case 3:  CALL(i, 3);  break;                                                                        case 4:  CALL(i, 4);  break;                                                                        case 5:  CALL(i, 5);  break;                                                                        case 6:  CALL(i, 6);  break;                                                                        case 7:  CALL(i, 7);  break;                                                                        case 8:  CALL(i, 8);  break;                                                                        case 9:  CALL(i, 9);  break;                                                                        case 10: CALL(i, 10); break;                                                                        case 11: CALL(i, 11); break;                                                                        case 12: CALL(i, 12); break;
#define EVEN_TILES(n, most, CALL)                                                                    do {                                                                                                 const int tiles_ = ((n) + (most) - 1) / (most);                                                    for (int t_ = 0, i_ = 0; t_ < tiles_; t_++) {                                                        const int k_ = (n) / tiles_ + (t_ < (n) % tiles_);                                                 switch (k_) { CASES_12(CALL, i_) default: break; }                                                i_ += k_;                                                                                        }                                                                                                } while (0)

/* Filter vectors v0 .. v0 + FB - 1 of `cols` pixels of row oy. */
INLINE void conv_block(const cnk_conv *d, const Blocks *fb_, const float *x, const float *w,
                       const float *b, float *yr, int oy, int cols, int v0, const int FB) {
#define CONV_TILE(ox, k) conv_tile(d, fb_, x, w, b, yr, oy, ox, v0, k, FB)
  EVEN_TILES(cols, TC_OF(FB), CONV_TILE);
#undef CONV_TILE
}

/* Filter vectors per block: 4 with 32 registers, else 2 (a literal: the
   blocks' functions are named by it). */
#if CNK_VW == 16
#define FB_MOST 4
#else
#define FB_MOST 2
#endif

/* BLOCK_k, 1 <= k <= 4: one function per block width k, calling the inlined
   BLOCK(ARGS..., k) (its tiles inlined in turn). The loop over the blocks
   calls them: with every width's tiles inlined into one function, gcc gave
   up tracking variables for the debug information (-g) of conv_row and
   conv_dw under the sanitizers ("variable tracking size limit exceeded").
   A call per block of a row is nothing beside the block's work. */
#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define BLOCK_WIDTHS(BLOCK, params, ...)                                                           \
  static __attribute__((noinline, unused)) void BLOCK##_1 params { BLOCK(__VA_ARGS__, 1); }        \
  static __attribute__((noinline, unused)) void BLOCK##_2 params { BLOCK(__VA_ARGS__, 2); }        \
  static __attribute__((noinline, unused)) void BLOCK##_3 params { BLOCK(__VA_ARGS__, 3); }        \
  static __attribute__((noinline, unused)) void BLOCK##_4 params { BLOCK(__VA_ARGS__, 4); }

/* n vectors of channels in blocks of FB_MOST, then the rest (3, 2 or 1):
   CALL(v0, k) for each block, v0 its first vector and k its size, a constant. */
#define VECTOR_BLOCKS(n, CALL)                                                                     \
  do {                                                                                             \
    int v0_ = 0;                                                                                   \
    for (; v0_ + FB_MOST <= (n); v0_ += FB_MOST)                                                   \
      CALL(v0_, FB_MOST);                                                                          \
    switch ((n) - v0_) {                                                                           \
    case 3: CALL(v0_, 3); break;                                                                   \
    case 2: CALL(v0_, 2); break;                                                                   \
    case 1: CALL(v0_, 1); break;                                                                   \
    default: break;                                                                                \
    }                                                                                              \
  } while (0)

BLOCK_WIDTHS(conv_block,
             (const cnk_conv *d, const Blocks *fb, const float *x, const float *w, const float *b,
              float *yr, int oy, int cols, int v0),
             d, fb, x, w, b, yr, oy, cols, v0)

/* Row oy's first `cols` pixels into yr ([cols][F]). */
static void conv_row(const cnk_conv *d, const float *x, const float *w, const float *b, float *yr,
                     int oy, int cols) {
  const int C = d->C, F = d->F, K = d->KW * C;
  if (F < VW) { /* plain */
    for (int ox = 0; ox < cols; ox++) {
      float acc[VW];
      for (int f = 0; f < F; f++)
        acc[f] = b ? b[f] : 0.0f;
      for (int ky = 0; ky < d->KH; ky++) {
        const float *xk = x + ((long)(oy * d->SH + ky) * d->IW + (long)ox * d->SW) * C;
        const float *wk = w + (long)ky * K * F;
        for (int k = 0; k < K; k++)
          for (int f = 0; f < F; f++)
            acc[f] += xk[k] * wk[(long)k * F + f];
      }
      for (int f = 0; f < F; f++)
        yr[(long)ox * F + f] = d->act == ACT_RELU && acc[f] < 0.0f ? 0.0f : acc[f];
    }
    return;
  }
  const Blocks fb = blocks(F);
#define CONV_BLOCK(v0, k) CAT(conv_block_, k)(d, &fb, x, w, b, yr, oy, cols, v0)
  VECTOR_BLOCKS(fb.vectors, CONV_BLOCK);
#undef CONV_BLOCK
}

/* Scratch of n floats: on the stack below 16 KiB (`small`), else malloc'd. */
static float *scratch(float *small, size_t small_n, size_t n) {
  if (n <= small_n)
    return small;
  float *p = malloc(n * sizeof(float));
  if (!p)
    abort(); /* the generated C has no way to report it */
  return p;
}

void FN(cnk_conv_forward)(const cnk_conv *d, const float *x, const float *w, const float *b,
                          float *y) {
  const int F = d->F;
  if (!d->pool) {
    for (int oy = 0; oy < d->OH; oy++)
      conv_row(d, x, w, b, y + (long)oy * d->OW * F, oy, d->OW);
    act_pass(d->act, y, (long)d->OH * d->OW * F);
    return;
  }
  /* fused pool: each conv row the pool reads, combined into its output row */
  const int POH = d->OH / d->PKH, POW = d->OW / d->PKW, cols = POW * d->PKW;
  float small[4096];
  float *row = scratch(small, 4096, (size_t)cols * F);
  for (int py = 0; py < POH; py++) {
    float *yr = y + (long)py * POW * F;
    for (int r = 0; r < d->PKH; r++) {
      conv_row(d, x, w, b, row, py * d->PKH + r, cols);
      for (int px = 0; px < POW; px++)
        for (int k = 0; k < d->PKW; k++) {
          const float *s = row + ((long)px * d->PKW + k) * F;
          float *o = yr + (long)px * F;
          if (!r && !k)
            memcpy(o, s, F * sizeof(float));
          else if (d->pool == 1)
            for (int f = 0; f < F; f++)
              o[f] = s[f] > o[f] ? s[f] : o[f];
          else
            for (int f = 0; f < F; f++)
              o[f] += s[f];
        }
    }
    if (d->pool == 2)
      for (long i = 0; i < (long)POW * F; i++)
        yr[i] /= (float)(d->PKH * d->PKW);
  }
  if (row != small)
    free(row);
  act_pass(d->act, y, (long)POH * POW * F);
}

/* ---- convolution, weight gradient ---- */

/* dw[j][f] (j = (ky, kx, c), at dw + j * sj + f * sf) += the sum over the
   output pixels of x at tap j times dy; taps j0 .. j0 + TJ - 1 and filter
   vectors v0 .. v0 + FB - 1 held in registers over the pixels. */
INLINE void dw_tile(const cnk_conv *d, const Blocks *fb_, const float *x, const float *dy,
                    float *dw, long sj, long sf, int j0, int v0, const int TJ, const int FB) {
  const int C = d->C, F = d->F, K = d->KW * C;
  int fo[4];
  long xo[12];
  vf acc[12][4];
  for (int v = 0; v < FB; v++)
    fo[v] = vec_off(fb_, v0 + v);
  for (int t = 0; t < TJ; t++) {
    xo[t] = (long)((j0 + t) / K) * d->IW * C + (j0 + t) % K;
    for (int v = 0; v < FB; v++)
      acc[t][v] = (vf){0};
  }
  for (int oy = 0; oy < d->OH; oy++) {
    const float *xr = x + (long)oy * d->SH * d->IW * C;
    const float *dr = dy + (long)oy * d->OW * F;
    for (int ox = 0; ox < d->OW; ox++) {
      const float *xp = xr + (long)ox * d->SW * C;
      vf dv[4];
      for (int v = 0; v < FB; v++)
        dv[v] = vload(dr + (long)ox * F + fo[v]);
      for (int t = 0; t < TJ; t++) {
        const float s = (xp[xo[t]]);
        for (int v = 0; v < FB; v++)
          acc[t][v] += s * dv[v];
      }
    }
  }
  for (int t = 0; t < TJ; t++)
    for (int v = 0; v < FB; v++) {
      const int from = v0 + v == fb_->vectors - 1 ? fb_->shift : 0;
      float *o = dw + (long)(j0 + t) * sj + (long)fo[v] * sf;
      if (sf == 1)
        vaddto(o, acc[t][v], from);
      else
        for (int i = from; i < VW; i++)
          o[i * sf] += acc[t][v][i];
    }
}

INLINE void dw_block(const cnk_conv *d, const Blocks *fb, const float *x, const float *dy,
                     float *dw, long sj, long sf, int v0, const int FB) {
  const int J = d->KH * d->KW * d->C;
#define DW_TILE(j, k) dw_tile(d, fb, x, dy, dw, sj, sf, j, v0, k, FB)
  EVEN_TILES(J, TC_OF(FB), DW_TILE);
#undef DW_TILE
}

BLOCK_WIDTHS(dw_block,
             (const cnk_conv *d, const Blocks *fb, const float *x, const float *dy, float *dw,
              long sj, long sf, int v0),
             d, fb, x, dy, dw, sj, sf, v0)

static void conv_dw(const cnk_conv *d, const float *x, const float *dy, float *dw, long sj,
                    long sf) {
  const int C = d->C, F = d->F, K = d->KW * C, J = d->KH * K;
  if (F < VW) { /* plain */
    for (int j = 0; j < J; j++) {
      const long xo = (long)(j / K) * d->IW * C + j % K;
      for (int f = 0; f < F; f++) {
        float s = 0.0f;
        for (int oy = 0; oy < d->OH; oy++)
          for (int ox = 0; ox < d->OW; ox++)
            s += x[((long)oy * d->SH * d->IW + (long)ox * d->SW) * C + xo] *
                 dy[((long)oy * d->OW + ox) * F + f];
        dw[j * sj + f * sf] += s;
      }
    }
    return;
  }
  const Blocks fb = blocks(F);
#define DW_BLOCK(v0, k) CAT(dw_block_, k)(d, &fb, x, dy, dw, sj, sf, v0)
  VECTOR_BLOCKS(fb.vectors, DW_BLOCK);
#undef DW_BLOCK
}

/* ---- convolution, input gradient ---- */

/* Tap (ky, kx) of output row oy, pixels ox0 .. ox0 + TP - 1, input-channel
   vectors v0 .. v0 + CV - 1: the sum over the filters of dy times wt, added
   into dx. */
INLINE void dx_tile(const cnk_conv *d, const Blocks *cb, const float *dy, const float *wt,
                    float *dx, int oy, int ky, int kx, int ox0, int v0, const int TP,
                    const int CV) {
  const int C = d->C, F = d->F;
  int co[4];
  vf acc[12][4];
  for (int v = 0; v < CV; v++) {
    co[v] = vec_off(cb, v0 + v);
    for (int p = 0; p < TP; p++)
      acc[p][v] = (vf){0};
  }
  const float *dr = dy + ((long)oy * d->OW + ox0) * F;
  const float *wk = wt + (long)(ky * d->KW + kx) * F * C;
  for (int f = 0; f < F; f++) {
    vf wv[4];
    for (int v = 0; v < CV; v++)
      wv[v] = vload(wk + (long)f * C + co[v]);
    for (int p = 0; p < TP; p++) {
      const float s = (dr[(long)p * F + f]);
      for (int v = 0; v < CV; v++)
        acc[p][v] += s * wv[v];
    }
  }
  float *o = dx + ((long)(oy * d->SH + ky) * d->IW + (long)ox0 * d->SW + kx) * C;
  for (int p = 0; p < TP; p++)
    for (int v = 0; v < CV; v++)
      vaddto(o + (long)p * d->SW * C + co[v], acc[p][v],
             v0 + v == cb->vectors - 1 ? cb->shift : 0);
}

INLINE void dx_block(const cnk_conv *d, const Blocks *cb, const float *dy, const float *wt,
                     float *dx, int oy, int ky, int kx, int v0, const int CV) {
#define DX_TILE(ox, k) dx_tile(d, cb, dy, wt, dx, oy, ky, kx, ox, v0, k, CV)
  EVEN_TILES(d->OW, TC_OF(CV), DX_TILE);
#undef DX_TILE
}

static void conv_dx(const cnk_conv *d, const float *dy, const float *w, const float *wt,
                    float *dx) {
  const int C = d->C, F = d->F;
  memset(dx, 0, (size_t)d->IH * d->IW * C * sizeof(float));
  if (!wt || C < VW) { /* plain, from w */
    for (int oy = 0; oy < d->OH; oy++)
      for (int ox = 0; ox < d->OW; ox++) {
        const float *dp = dy + ((long)oy * d->OW + ox) * F;
        for (int ky = 0; ky < d->KH; ky++)
          for (int kx = 0; kx < d->KW; kx++) {
            float *o = dx + ((long)(oy * d->SH + ky) * d->IW + (long)ox * d->SW + kx) * C;
            const float *wk = w + (long)(ky * d->KW + kx) * C * F;
            for (int c = 0; c < C; c++) {
              float s = 0.0f;
              for (int f = 0; f < F; f++)
                s += wk[(long)c * F + f] * dp[f];
              o[c] += s;
            }
          }
      }
    return;
  }
  const Blocks cb = blocks(C);
  for (int oy = 0; oy < d->OH; oy++)
    for (int ky = 0; ky < d->KH; ky++)
      for (int kx = 0; kx < d->KW; kx++) {
#define DX_BLOCK(v0, k) dx_block(d, &cb, dy, wt, dx, oy, ky, kx, v0, k)
        VECTOR_BLOCKS(cb.vectors, DX_BLOCK);
#undef DX_BLOCK
      }
}

static void bias_grad(const float *dy, float *db, long pixels, int F) {
  for (long p = 0; p < pixels; p++)
    for (int f = 0; f < F; f++)
      db[f] += dy[p * F + f];
}

void FN(cnk_conv_backward)(const cnk_conv *d, const float *x, const float *y, float *dy,
                           const float *w, const float *wt, float *dw, float *db, float *dx) {
  const long P = (long)d->OH * d->OW;
  act_backward(d->act, y, dy, P * d->F, d->F);
  if (db)
    bias_grad(dy, db, P, d->F);
  conv_dw(d, x, dy, dw, d->F, 1);
  if (dx)
    conv_dx(d, dy, w, wt, dx);
}

#define CASES_8(CALL, i)                                                                           \
  case 1: CALL(i, 1); break;                                                                       \
  case 2: CALL(i, 2); break;                                                                       \
  case 3: CALL(i, 3); break;                                                                       \
  case 4: CALL(i, 4); break;                                                                       \
  case 5: CALL(i, 5); break;                                                                       \
  case 6: CALL(i, 6); break;                                                                       \
  case 7: CALL(i, 7); break;                                                                       \
  case 8: CALL(i, 8); break;

/* NV vectors of dk in registers over the windows' records (every F-th). */
INLINE void pool_dw_tile(const float *x, const int *xo, const float *vw, int F, int nw, float *dk,
                         const int NV) {
  vf acc[8];
  for (int v = 0; v < NV; v++)
    acc[v] = vload(dk + v * VW);
  for (int wi = 0; wi < nw; wi++) {
    const int o = xo[(long)wi * F];
    if (o < 0)
      continue;
    const float sv = vw[(long)wi * F], *xk = x + o;
    for (int v = 0; v < NV; v++)
      acc[v] += sv * vload(xk + v * VW);
  }
  for (int v = 0; v < NV; v++)
    vstore(dk + v * VW, acc[v]);
}

/* NV vectors of input channels from v0: the sum over the n filters fs of vs
   times wk, added into o. */
INLINE void pool_dx_tile(const Blocks *cb, const float *wk, const int *fs, const float *vs, int n,
                         int C, float *o, int v0, const int NV) {
  vf acc[8];
  for (int v = 0; v < NV; v++)
    acc[v] = (vf){0};
  for (int i = 0; i < n; i++)
    for (int v = 0; v < NV; v++)
      acc[v] += vs[i] * vload(wk + (long)fs[i] * C + vec_off(cb, v0 + v));
  for (int v = 0; v < NV; v++)
    vaddto(o + vec_off(cb, v0 + v), acc[v], v0 + v == cb->vectors - 1 ? cb->shift : 0);
}

/* x[i[l]] in each lane l: the CPU's gather where the width has one. */
INLINE vf vgather(const float *x, vi i) {
#if CNK_VW == 16 && defined(__AVX512F__)
  return (vf)_mm512_i32gather_ps((__m512i)i, x, 4);
#elif CNK_VW == 8 && defined(__AVX2__)
  return (vf)_mm256_i32gather_ps(x, (__m256i)i, 4);
#else
  vf v;
  for (int l = 0; l < VW; l++)
    v[l] = x[i[l]];
  return v;
#endif
}

/* Taps j0 .. j0 + TJ - 1 of the plain taps (the R columns of each kernel row
   from k0 on: tap j is row j / R, column k0 + j % R) for the filter vector
   at fo: a [tap][filter] tile in registers over the windows' records, each
   lane gathering its filter's input, its sum in the windows' order as the
   plain loop's; stored back from lane `from` (the new lanes of an
   overlapping last vector). */
INLINE void pool_dw_ftile(const cnk_conv *d, const float *x, const int *xo, const float *vw,
                          int nw, float *dwt, int k0, int R, int j0, int fo, int from,
                          const int TJ) {
  const int F = d->F, K = d->KW * d->C;
  const long row = (long)d->IW * d->C, fstride = (long)d->KH * K;
  long off[12], at[12];
  vf acc[12];
  for (int t = 0; t < TJ; t++) {
    const int ky = (j0 + t) / R, k = k0 + (j0 + t) % R;
    off[t] = ky * row + k;
    at[t] = (long)ky * K + k;
    for (int l = 0; l < VW; l++)
      acc[t][l] = dwt[(fo + l) * fstride + at[t]];
  }
  for (int wi = 0; wi < nw; wi++) {
    vi o;
    memcpy(&o, xo + (long)wi * F + fo, sizeof o);
    const vi m = o >= 0; /* -1 where the filter's gradient is 0: skipped */
    const vf s = vload(vw + (long)wi * F + fo);
    o &= m;
    for (int t = 0; t < TJ; t++) {
      const vf sum = acc[t] + s * vgather(x + off[t], o);
      acc[t] = (vf)(((vi)sum & m) | ((vi)acc[t] & ~m));
    }
  }
  for (int t = 0; t < TJ; t++)
    for (int l = from; l < VW; l++)
      dwt[(fo + l) * fstride + at[t]] = acc[t][l];
}

/* Taps per [tap][filter] tile: the accumulators, less 4 registers for the
   window's offsets, mask, gradients and gather, at most 12. */
#define TJ_MOST (ACCS - 4 > 12 ? 12 : ACCS - 4)

/* The KH x R plain taps (columns k0 .. k0 + R - 1) of every filter, a
   vector of filters at a time (F >= VW). */
static __attribute__((noinline)) void pool_dw_filters(const cnk_conv *d, const float *x,
                                                      const int *xo, const float *vw, int nw,
                                                      float *dwt, int k0, int R) {
  const Blocks fb = blocks(d->F);
  const int J = d->KH * R;
  for (int v = 0; v < fb.vectors; v++) {
    const int fo = vec_off(&fb, v), from = v == fb.vectors - 1 ? fb.shift : 0;
#define POOL_DW_F(j, k) pool_dw_ftile(d, x, xo, vw, nw, dwt, k0, R, j, fo, from, k)
    EVEN_TILES(J, TJ_MOST, POOL_DW_F);
#undef POOL_DW_F
  }
}

/* dwt[f][ky][k] += the sum over the windows wi of vw[wi][f] times the input
   at xo[wi][f] (skipped where -1): per filter and kernel row, the row's whole
   vectors in registers over the windows; the rest (all of a row shorter than
   a vector: a conv on 1 to 3 channels) a vector of filters at a time, else
   plain. Each (f, tap) sums the windows in their order, whichever way. */
static void pool_dw(const cnk_conv *d, const float *x, const int *xo, const float *vw, int nw,
                    float *dwt) {
  const int F = d->F, K = d->KW * d->C, whole = K / VW;
  const long row = (long)d->IW * d->C;
  for (int f = 0; f < F; f++)
    for (int ky = 0; ky < d->KH; ky++) {
      float *dk = dwt + ((long)f * d->KH + ky) * K;
      for (int v0 = 0; v0 < whole; v0 += 8) {
#define POOL_DW(i, k) pool_dw_tile(x + ky * row + v0 * VW, xo + f, vw + f, F, nw, dk + v0 * VW, k)
        switch (whole - v0 < 8 ? whole - v0 : 8) { CASES_8(POOL_DW, 0) default: break; }
#undef POOL_DW
      }
      for (int k = whole * VW; k < K && F < VW; k++)
        for (int wi = 0; wi < nw; wi++) {
          const int o = xo[(long)wi * F + f];
          if (o >= 0)
            dk[k] += vw[(long)wi * F + f] * x[o + ky * row + k];
        }
    }
  if (F >= VW && K > whole * VW)
    pool_dw_filters(d, x, xo, vw, nw, dwt, whole * VW, K - whole * VW);
}

/* The input gradient of one window pixel at output (oy, ox) from its n
   filters fs with gradients vs: per tap, the input channels in vectors
   summed over the filters (from wt), added into dx once. */
static void pool_dx(const cnk_conv *d, const float *w, const float *wt, const int *fs,
                    const float *vs, int n, int oy, int ox, float *dx) {
  const int C = d->C, F = d->F;
  for (int tap = 0; tap < d->KH * d->KW; tap++) {
    float *o = dx + ((long)(oy * d->SH + tap / d->KW) * d->IW + (long)ox * d->SW + tap % d->KW) * C;
    if (wt && C >= VW) {
      const Blocks cb = blocks(C);
      const float *wk = wt + (long)tap * F * C;
      for (int v0 = 0; v0 < cb.vectors; v0 += 8) {
#define POOL_DX(i, k) pool_dx_tile(&cb, wk, fs, vs, n, C, o, v0, k)
        switch (cb.vectors - v0 < 8 ? cb.vectors - v0 : 8) { CASES_8(POOL_DX, 0) default: break; }
#undef POOL_DX
      }
    } else {
      const float *wk = w + (long)tap * C * F;
      for (int c = 0; c < C; c++) {
        float sum = 0.0f;
        for (int i = 0; i < n; i++)
          sum += vs[i] * wk[(long)c * F + fs[i]];
        o[c] += sum;
      }
    }
  }
}

/* at[f]: the window pixel of filter f's first maximum pp[f] among the
   window's outputs from y0, without branches (the last where none matches:
   a NaN); a vector of filters at a time where F >= VW. */
static void first_max(const cnk_conv *d, const float *y0, const float *pp, int *at) {
  const int F = d->F, PKW = d->PKW, KK = d->PKH * PKW;
  const Blocks fb = blocks(F);
  for (int v = 0; v < (F >= VW ? fb.vectors : 0); v++) {
    const int fo = vec_off(&fb, v);
    const vf pv = vload(pp + fo);
    vi a = (vi){0} + (KK - 1);
    for (int q = KK - 2; q >= 0; q--) {
      const vi eq = vload(y0 + ((long)(q / PKW) * d->OW + q % PKW) * F + fo) == pv;
      a = (eq & q) | (~eq & a);
    }
    memcpy(at + fo, &a, sizeof a);
  }
  for (int f = 0; f < (F >= VW ? 0 : F); f++)
    at[f] = KK - 1;
  for (int q = KK - 2; q >= 0 && F < VW; q--) {
    const float *yq = y0 + ((long)(q / PKW) * d->OW + q % PKW) * F;
    for (int f = 0; f < F; f++)
      at[f] = yq[f] == pp[f] ? q : at[f];
  }
}

/* As the generated code does it (emit_train.c, conv_pool_backward): the
   pool sends each window's gradient, per filter, to one conv output, its
   first maximum; only those feed the gradients. Per window the filters are
   grouped by the pixel of their maximum for the input gradient; the weight
   gradient comes from records of groups of windows (xo: the input offset of
   the filter's maximum, -1 where its gradient is 0; vw: that gradient). */
void FN(cnk_conv_pool_backward)(const cnk_conv *d, const float *x, const float *y,
                                const float *yp, const float *dyp, const float *w,
                                const float *wt, float *dwt, float *db, float *dx) {
  const int F = d->F, PKH = d->PKH, PKW = d->PKW, KK = PKH * PKW, C = d->C;
  const int POH = d->OH / PKH, POW = d->OW / PKW, NW = POH * POW;
  const int G = 4096 / F < 1 ? 1 : 4096 / F > NW ? NW : 4096 / F; /* windows per group */
  const size_t n = (size_t)G * F + (size_t)KK * F + F;
  int xo_small[6144]; /* 24 KiB each on the stack: every window of a small layer */
  float vw_small[6144];
  int *xo = n <= 6144 ? xo_small : malloc(sizeof(int) * n);
  float *vw = n <= 6144 ? vw_small : malloc(sizeof(float) * n);
  if (!xo || !vw)
    abort(); /* the generated C has no way to report it */
  int *fs = xo + (long)G * F, *at = fs + (long)KK * F, count[64];
  float *vs = vw + (long)G * F;
  if (dx)
    memset(dx, 0, (size_t)d->IH * d->IW * C * sizeof(float));
  for (int w0 = 0; w0 < NW; w0 += G) {
    const int nw = NW - w0 < G ? NW - w0 : G;
    for (int wi = 0; wi < nw; wi++) {
      const int wy = (w0 + wi) / POW, wx = (w0 + wi) % POW;
      const float *pp = yp + (long)(w0 + wi) * F, *dp = dyp + (long)(w0 + wi) * F;
      const float *y0 = y + ((long)wy * PKH * d->OW + (long)wx * PKW) * F;
      first_max(d, y0, pp, at);
      const int groups = KK <= 64 && dx;
      for (int q = 0; q < KK && groups; q++)
        count[q] = 0;
      for (int f = 0; f < F; f++) {
        const int q = at[f];
        const float v = act_grad(d->act, y0[((long)(q / PKW) * d->OW + q % PKW) * F + f], dp[f]);
        if (db)
          db[f] += v;
        const int oy = wy * PKH + q / PKW, ox = wx * PKW + q % PKW;
        xo[(long)wi * F + f] = v != 0.0f ? (int)(((long)oy * d->SH * d->IW + (long)ox * d->SW) * C) : -1;
        vw[(long)wi * F + f] = v;
        if (v != 0.0f && groups) {
          fs[(long)q * F + count[q]] = f;
          vs[(long)q * F + count[q]++] = v;
        } else if (v != 0.0f && dx) { /* a window of more than 64 pixels: one filter at a time */
          pool_dx(d, w, wt, &f, &v, 1, oy, ox, dx);
        }
      }
      for (int q = 0; q < KK && groups; q++)
        if (count[q])
          pool_dx(d, w, wt, fs + (long)q * F, vs + (long)q * F, count[q], wy * PKH + q / PKW,
                  wx * PKW + q % PKW, dx);
    }
    pool_dw(d, x, xo, vw, nw, dwt);
  }
  if (xo != xo_small)
    free(xo);
  if (vw != vw_small)
    free(vw);
}

/* ---- depthwise convolution (groups=C) ----

   One filter per channel (F == C): every output sums KH x KW products of
   its own channel, so the channels are the vector. The forward pass keeps
   TC output pixels x FB vectors of channels in registers over the taps; the
   weight gradient, TJ taps x FB vectors over the output pixels; the input
   gradient is gathered, not scattered: an input pixel's vectors sum the taps
   that reach it and are stored once. A depth multiplier FG = F / C > 1 runs
   the same on the input with each channel repeated FG times (filter f reads
   channel f / FG), its input gradient summed back over the FG copies. */

INLINE void dwc_tile(const cnk_conv *d, const Blocks *cb, const float *x, const float *w,
                     const float *b, float *yr, int oy, int ox0, int v0, const int TC,
                     const int FB) {
  const int C = d->C, relu = d->act == ACT_RELU;
  int co[4];
  vf acc[12][4];
  for (int v = 0; v < FB; v++) {
    co[v] = vec_off(cb, v0 + v);
    const vf bv = b ? vload(b + co[v]) : (vf){0};
    for (int p = 0; p < TC; p++)
      acc[p][v] = bv;
  }
  const long xs = (long)d->SW * C;
  for (int ky = 0; ky < d->KH; ky++) {
    const float *xk = x + ((long)(oy * d->SH + ky) * d->IW + (long)ox0 * d->SW) * C;
    const float *wk = w + (long)ky * d->KW * C;
    for (int kx = 0; kx < d->KW; kx++) {
      vf wv[4];
      for (int v = 0; v < FB; v++)
        wv[v] = vload(wk + (long)kx * C + co[v]);
      for (int p = 0; p < TC; p++)
        for (int v = 0; v < FB; v++)
          acc[p][v] += vload(xk + p * xs + (long)kx * C + co[v]) * wv[v];
    }
  }
  for (int p = 0; p < TC; p++)
    for (int v = 0; v < FB; v++)
      vstore(yr + (long)(ox0 + p) * C + co[v], relu ? vrelu(acc[p][v]) : acc[p][v]);
}

INLINE void dwc_block(const cnk_conv *d, const Blocks *cb, const float *x, const float *w,
                      const float *b, float *yr, int oy, int v0, const int FB) {
#define DWC_TILE(ox, k) dwc_tile(d, cb, x, w, b, yr, oy, ox, v0, k, FB)
  EVEN_TILES(d->OW, TC_OF(FB), DWC_TILE);
#undef DWC_TILE
}

BLOCK_WIDTHS(dwc_block,
             (const cnk_conv *d, const Blocks *cb, const float *x, const float *w, const float *b,
              float *yr, int oy, int v0),
             d, cb, x, w, b, yr, oy, v0)

/* The forward pass with one filter per channel (d->F == d->C). */
static void dwc_forward(const cnk_conv *d, const float *x, const float *w, const float *b,
                        float *y) {
  const int C = d->C;
  if (C < VW) { /* plain */
    for (int oy = 0; oy < d->OH; oy++)
      for (int ox = 0; ox < d->OW; ox++) {
        const float *xp = x + ((long)oy * d->SH * d->IW + (long)ox * d->SW) * C;
        float *yp = y + ((long)oy * d->OW + ox) * C;
        for (int c = 0; c < C; c++) {
          float s = b ? b[c] : 0.0f;
          for (int ky = 0; ky < d->KH; ky++)
            for (int kx = 0; kx < d->KW; kx++)
              s += xp[((long)ky * d->IW + kx) * C + c] * w[(long)(ky * d->KW + kx) * C + c];
          yp[c] = d->act == ACT_RELU && s < 0.0f ? 0.0f : s;
        }
      }
    return;
  }
  const Blocks cb = blocks(C);
  for (int oy = 0; oy < d->OH; oy++) {
    float *yr = y + (long)oy * d->OW * C;
#define DWC_BLOCK(v0, k) CAT(dwc_block_, k)(d, &cb, x, w, b, yr, oy, v0)
    VECTOR_BLOCKS(cb.vectors, DWC_BLOCK);
#undef DWC_BLOCK
  }
}

/* dw[j][c] += the sum over the output pixels of x at tap j times dy, for
   taps j0 .. j0 + TJ - 1 and channel vectors v0 .. v0 + FB - 1. */
INLINE void dwc_dw_tile(const cnk_conv *d, const Blocks *cb, const float *x, const float *dy,
                        float *dw, int j0, int v0, const int TJ, const int FB) {
  const int C = d->C;
  int co[4];
  long xo[12];
  vf acc[12][4];
  for (int v = 0; v < FB; v++)
    co[v] = vec_off(cb, v0 + v);
  for (int t = 0; t < TJ; t++) {
    xo[t] = ((long)((j0 + t) / d->KW) * d->IW + (j0 + t) % d->KW) * C;
    for (int v = 0; v < FB; v++)
      acc[t][v] = (vf){0};
  }
  for (int oy = 0; oy < d->OH; oy++)
    for (int ox = 0; ox < d->OW; ox++) {
      const float *xp = x + ((long)oy * d->SH * d->IW + (long)ox * d->SW) * C;
      const float *dp = dy + ((long)oy * d->OW + ox) * C;
      vf dv[4];
      for (int v = 0; v < FB; v++)
        dv[v] = vload(dp + co[v]);
      for (int t = 0; t < TJ; t++)
        for (int v = 0; v < FB; v++)
          acc[t][v] += vload(xp + xo[t] + co[v]) * dv[v];
    }
  for (int t = 0; t < TJ; t++)
    for (int v = 0; v < FB; v++)
      vaddto(dw + (long)(j0 + t) * C + co[v], acc[t][v],
             v0 + v == cb->vectors - 1 ? cb->shift : 0);
}

INLINE void dwc_dw_block(const cnk_conv *d, const Blocks *cb, const float *x, const float *dy,
                         float *dw, int v0, const int FB) {
#define DWC_DW_TILE(j, k) dwc_dw_tile(d, cb, x, dy, dw, j, v0, k, FB)
  EVEN_TILES(d->KH * d->KW, TC_OF(FB), DWC_DW_TILE);
#undef DWC_DW_TILE
}

BLOCK_WIDTHS(dwc_dw_block,
             (const cnk_conv *d, const Blocks *cb, const float *x, const float *dy, float *dw,
              int v0),
             d, cb, x, dy, dw, v0)

/* The first tap k (the smallest) through which an output o in [0, n), at
   stride s, reads input i (i = o * s + k), and that o; the next ones are
   k + s, k + 2s, ... for o - 1, o - 2, ... while o >= 0 and k is in the
   window (none is when the first is past it). */
INLINE int first_tap(int i, int s, int n, int *o) {
  const int lo = i - (n - 1) * s > 0 ? i - (n - 1) * s : 0;
  const int k = s == 1 ? lo : lo + (i - lo) % s;
  *o = s == 1 ? i - k : (i - k) / s;
  return k;
}

/* dx at input pixel (iy, ix), channel vectors v0 .. v0 + NV - 1: the sum of
   w * dy over the taps that reach it, in tap order; stored (all zeros where
   none does). */
INLINE void dwc_dx_tile(const cnk_conv *d, const Blocks *cb, const float *dy, const float *w,
                        float *dx, int iy, int ix, int v0, const int NV) {
  const int C = d->C;
  int co[8];
  vf acc[8];
  for (int v = 0; v < NV; v++) {
    co[v] = vec_off(cb, v0 + v);
    acc[v] = (vf){0};
  }
  int oy0, ox0;
  const int ky0 = first_tap(iy, d->SH, d->OH, &oy0), kx0 = first_tap(ix, d->SW, d->OW, &ox0);
  for (int ky = ky0, oy = oy0; ky < d->KH && ky <= iy; ky += d->SH, oy--)
    for (int kx = kx0, ox = ox0; kx < d->KW && kx <= ix; kx += d->SW, ox--) {
      const float *wk = w + (long)(ky * d->KW + kx) * C, *dp = dy + ((long)oy * d->OW + ox) * C;
      for (int v = 0; v < NV; v++)
        acc[v] += vload(wk + co[v]) * vload(dp + co[v]);
    }
  float *o = dx + ((long)iy * d->IW + ix) * C;
  for (int v = 0; v < NV; v++)
    vstore(o + co[v], acc[v]);
}

/* The weight and input gradients with one filter per channel (d->F == d->C);
   dx overwritten (may be NULL). */
static void dwc_grads(const cnk_conv *d, const float *x, const float *dy, const float *w,
                      float *dw, float *dx) {
  const int C = d->C;
  if (C < VW) { /* plain */
    for (int oy = 0; oy < d->OH; oy++)
      for (int ox = 0; ox < d->OW; ox++) {
        const long xp = ((long)oy * d->SH * d->IW + (long)ox * d->SW) * C;
        const float *dp = dy + ((long)oy * d->OW + ox) * C;
        for (int j = 0; j < d->KH * d->KW; j++)
          for (int c = 0; c < C; c++)
            dw[(long)j * C + c] += x[xp + ((long)(j / d->KW) * d->IW + j % d->KW) * C + c] * dp[c];
      }
  } else {
    const Blocks cb = blocks(C);
#define DWC_DW_BLOCK(v0, k) CAT(dwc_dw_block_, k)(d, &cb, x, dy, dw, v0)
    VECTOR_BLOCKS(cb.vectors, DWC_DW_BLOCK);
#undef DWC_DW_BLOCK
  }
  if (!dx)
    return;
  const Blocks cb = blocks(C);
  for (int iy = 0; iy < d->IH; iy++)
    for (int ix = 0; ix < d->IW; ix++) {
      if (C < VW) { /* plain */
        int oy0, ox0;
        const int ky0 = first_tap(iy, d->SH, d->OH, &oy0), kx0 = first_tap(ix, d->SW, d->OW, &ox0);
        float *o = dx + ((long)iy * d->IW + ix) * C;
        for (int c = 0; c < C; c++)
          o[c] = 0.0f;
        for (int ky = ky0, oy = oy0; ky < d->KH && ky <= iy; ky += d->SH, oy--)
          for (int kx = kx0, ox = ox0; kx < d->KW && kx <= ix; kx += d->SW, ox--)
            for (int c = 0; c < C; c++)
              o[c] += w[(long)(ky * d->KW + kx) * C + c] * dy[((long)oy * d->OW + ox) * C + c];
        continue;
      }
      for (int v0 = 0; v0 < cb.vectors; v0 += 8) {
#define DWC_DX(i, k) dwc_dx_tile(d, &cb, dy, w, dx, iy, ix, v0, k)
        switch (cb.vectors - v0 < 8 ? cb.vectors - v0 : 8) { CASES_8(DWC_DX, 0) default: break; }
#undef DWC_DX
      }
    }
}

/* x [IH][IW][C] with each channel repeated fg > 1 times, [IH][IW][C * fg]
   (malloc'd); NULL when fg is 1. */
static float *repeat_channels(const cnk_conv *d, const float *x, int fg) {
  if (fg == 1)
    return NULL;
  const long n = (long)d->IH * d->IW;
  float *xe = malloc((size_t)n * d->F * sizeof(float));
  if (!xe)
    abort(); /* the generated C has no way to report it */
  for (long p = 0; p < n; p++)
    for (int c = 0; c < d->C; c++)
      for (int j = 0; j < fg; j++)
        xe[(p * d->C + c) * fg + j] = x[p * d->C + c];
  return xe;
}

/* Depthwise: y = conv(x) + b (relu in registers), with fg = F / C filters
   per channel. */
static void dw_forward(const cnk_conv *d, const float *x, const float *w, const float *b,
                       float *y) {
  const int fg = d->F / d->C;
  cnk_conv d1 = *d;
  d1.C = d->F;
  float *xe = repeat_channels(d, x, fg);
  dwc_forward(&d1, xe ? xe : x, w, b, y);
  free(xe);
}

/* Depthwise: dw += dW; dx = dX when dx is not NULL (dy: before the
   activation). */
static void dw_grads(const cnk_conv *d, const float *x, const float *dy, const float *w,
                     float *dw, float *dx) {
  const long NX = (long)d->IH * d->IW;
  const int fg = d->F / d->C;
  cnk_conv d1 = *d;
  d1.C = d->F;
  float *xe = repeat_channels(d, x, fg), *dxe = dx;
  if (dx && fg > 1 && !(dxe = malloc((size_t)NX * d->F * sizeof(float))))
    abort(); /* the generated C has no way to report it */
  dwc_grads(&d1, xe ? xe : x, dy, w, dw, dxe);
  if (dx && fg > 1) /* the copies' gradients summed back, in order */
    for (long i = 0; i < NX * d->C; i++) {
      float s = 0.0f;
      for (int j = 0; j < fg; j++)
        s += dxe[i * fg + j];
      dx[i] = s;
    }
  free(xe);
  if (dxe != dx)
    free(dxe);
}

/* ---- grouped convolution (groups=G, 1 < G < C) ----

   Per group a dense conv of CG = C / G channels and FG = F / G filters on
   the kernels above: the group's input channels, weights (and transposed
   weights) and output gradient copied out contiguous, its output and
   gradients copied back. The copies are linear in the tensors' sizes; the
   conv's work is KH * KW * CG times its output. */

/* to[p][0..n) = from[p][c0..c0 + n), over `rows` rows of `stride` floats in
   from; scatter: the other way (add: +=). */
static void gather(const float *from, long rows, int stride, int c0, int n, float *to) {
  for (long p = 0; p < rows; p++)
    memcpy(to + p * n, from + p * stride + c0, (size_t)n * sizeof(float));
}

static void scatter(const float *from, long rows, int stride, int c0, int n, float *to, int add) {
  for (long p = 0; p < rows; p++)
    if (add)
      for (int i = 0; i < n; i++)
        to[p * stride + c0 + i] += from[p * n + i];
    else
      memcpy(to + p * stride + c0, from + p * n, (size_t)n * sizeof(float));
}

/* One group's buffers: x, y (or dy), w, wt, dw and dx, for dims g->d. */
typedef struct Group {
  cnk_conv d;
  long nx, ny, nw;
  float *x, *y, *w, *wt, *dw, *dx;
} Group;

static Group group_of(const cnk_conv *d, int groups, int act, int grads) {
  Group g = {*d, 0, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL};
  g.d.C = d->C / groups;
  g.d.F = d->F / groups;
  g.d.act = act;
  g.nx = (long)d->IH * d->IW * g.d.C;
  g.ny = (long)d->OH * d->OW * g.d.F;
  g.nw = (long)d->KH * d->KW * g.d.C * g.d.F;
  float *p = malloc((size_t)(g.nx + g.ny + g.nw + (grads ? 2 * g.nw + g.nx : 0)) * sizeof(float));
  if (!p)
    abort(); /* the generated C has no way to report it */
  g.x = p, g.y = p + g.nx, g.w = g.y + g.ny;
  if (grads)
    g.wt = g.w + g.nw, g.dw = g.wt + g.nw, g.dx = g.dw + g.nw;
  return g;
}

void FN(cnk_group_conv_forward)(const cnk_conv *d, int groups, const float *x, const float *w,
                                const float *b, float *y) {
  if (groups == d->C) {
    dw_forward(d, x, w, b, y);
  } else {
    Group g = group_of(d, groups, d->act == ACT_RELU ? ACT_RELU : ACT_LINEAR, 0);
    const int CG = g.d.C, FG = g.d.F;
    for (int gi = 0; gi < groups; gi++) {
      gather(x, (long)d->IH * d->IW, d->C, gi * CG, CG, g.x);
      gather(w, (long)d->KH * d->KW * CG, d->F, gi * FG, FG, g.w);
      FN(cnk_conv_forward)(&g.d, g.x, g.w, b ? b + gi * FG : NULL, g.y);
      scatter(g.y, (long)d->OH * d->OW, d->F, gi * FG, FG, y, 0);
    }
    free(g.x);
  }
  act_pass(d->act, y, (long)d->OH * d->OW * d->F);
}

void FN(cnk_group_conv_backward)(const cnk_conv *d, int groups, const float *x, const float *y,
                                 float *dy, const float *w, float *dw, float *db, float *dx) {
  const long P = (long)d->OH * d->OW;
  act_backward(d->act, y, dy, P * d->F, d->F);
  if (db)
    bias_grad(dy, db, P, d->F);
  if (groups == d->C) {
    dw_grads(d, x, dy, w, dw, dx);
    return;
  }
  Group g = group_of(d, groups, ACT_LINEAR, 1);
  const int CG = g.d.C, FG = g.d.F;
  const long J = (long)d->KH * d->KW * CG;
  for (int gi = 0; gi < groups; gi++) {
    gather(x, (long)d->IH * d->IW, d->C, gi * CG, CG, g.x);
    gather(dy, P, d->F, gi * FG, FG, g.y);
    gather(w, J, d->F, gi * FG, FG, g.w);
    FN(cnk_transpose)(g.w, g.wt, (long)d->KH * d->KW, CG, FG, 0);
    memset(g.dw, 0, (size_t)g.nw * sizeof(float));
    FN(cnk_conv_backward)(&g.d, g.x, NULL, g.y, g.w, g.wt, g.dw, NULL, dx ? g.dx : NULL);
    scatter(g.dw, J, d->F, gi * FG, FG, dw, 1);
    if (dx)
      scatter(g.dx, (long)d->IH * d->IW, d->C, gi * CG, CG, dx, 0);
  }
  free(g.x);
}

/* ---- dense ---- */

/* Outputs o0 .. o0 + NV * VW - 1 (the last vector maybe overlapping). */
INLINE void dense_tile(const Blocks *ob, int in, int out, const float *x, const float *w,
                       const float *b, float *y, int relu, int v0, const int NV) {
  int fo[8];
  vf acc[8];
  for (int v = 0; v < NV; v++) {
    fo[v] = vec_off(ob, v0 + v);
    acc[v] = b ? vload(b + fo[v]) : (vf){0};
  }
  for (int i = 0; i < in; i++) {
    const float s = (x[i]);
    for (int v = 0; v < NV; v++)
      acc[v] += s * vload(w + (long)i * out + fo[v]);
  }
  for (int v = 0; v < NV; v++)
    vstore(y + fo[v], relu ? vrelu(acc[v]) : acc[v]);
}

void FN(cnk_dense_forward)(int in, int out, int act, const float *x, const float *w,
                           const float *b, float *y) {
  const int relu = act == ACT_RELU;
  if (out < VW) {
    float acc[VW];
    for (int o = 0; o < out; o++)
      acc[o] = b ? b[o] : 0.0f;
    for (int i = 0; i < in; i++)
      for (int o = 0; o < out; o++)
        acc[o] += x[i] * w[(long)i * out + o];
    for (int o = 0; o < out; o++)
      y[o] = relu && acc[o] < 0.0f ? 0.0f : acc[o];
  } else {
    const Blocks ob = blocks(out);
    int v0 = 0;
    for (; v0 + 8 <= ob.vectors; v0 += 8)
      dense_tile(&ob, in, out, x, w, b, y, relu, v0, 8);
    switch (ob.vectors - v0) {
#define CASE(k)                                                                                    \
  case k:                                                                                          \
    dense_tile(&ob, in, out, x, w, b, y, relu, v0, k);                                             \
    break;
      CASE(7) CASE(6) CASE(5) CASE(4) CASE(3) CASE(2) CASE(1)
#undef CASE
    default:
      break;
    }
  }
  act_pass(act, y, out);
}

void FN(cnk_dense_backward)(int in, int out, int act, const float *x, const float *y, float *dy,
                            const float *w, float *dw, float *db, float *dx) {
  act_backward(act, y, dy, out, out);
  if (db)
    for (int o = 0; o < out; o++)
      db[o] += dy[o];
  for (int i = 0; i < in; i++) {
    const float s = x[i];
    float *r = dw + (long)i * out;
    for (int o = 0; o < out; o++)
      r[o] += s * dy[o];
  }
  if (!dx)
    return;
  const int whole = out / VW * VW;
  for (int i = 0; i < in; i++) {
    const float *r = w + (long)i * out;
    vf a = {0};
    for (int o = 0; o < whole; o += VW)
      a += vload(r + o) * vload(dy + o);
    float s = 0.0f;
    for (int k = 0; k < VW; k++)
      s += a[k];
    for (int o = whole; o < out; o++)
      s += r[o] * dy[o];
    dx[i] = s;
  }
}

/* ---- pooling ---- */

void FN(cnk_pool_forward)(int avg, int c, int iw, int oh, int ow, int kh, int kw, int sh, int sw,
                          const float *x, float *y) {
  for (int py = 0; py < oh; py++)
    for (int px = 0; px < ow; px++) {
      const float *xp = x + ((long)py * sh * iw + (long)px * sw) * c;
      float *yp = y + ((long)py * ow + px) * c;
      memcpy(yp, xp, (size_t)c * sizeof(float));
      for (int ky = 0; ky < kh; ky++)
        for (int kx = 0; kx < kw; kx++) {
          if (!ky && !kx)
            continue;
          const float *u = xp + ((long)ky * iw + kx) * c;
          if (avg)
            for (int i = 0; i < c; i++)
              yp[i] += u[i];
          else
            for (int i = 0; i < c; i++)
              yp[i] = u[i] > yp[i] ? u[i] : yp[i];
        }
      if (avg)
        for (int i = 0; i < c; i++)
          yp[i] /= (float)(kh * kw);
    }
}

void FN(cnk_pool_backward)(int avg, int c, int ih, int iw, int oh, int ow, int kh, int kw, int sh,
                           int sw, const float *x, const float *y, const float *dy, float *dx) {
  memset(dx, 0, (size_t)ih * iw * c * sizeof(float));
  float small[4096];
  float *r = scratch(small, 4096, (size_t)c); /* what is still to be given, per channel */
  for (int py = 0; py < oh; py++)
    for (int px = 0; px < ow; px++) {
      const long o0 = ((long)py * sh * iw + (long)px * sw) * c;
      const float *dp = dy + ((long)py * ow + px) * c, *yp = y + ((long)py * ow + px) * c;
      for (int i = 0; i < c; i++)
        r[i] = avg ? dp[i] / (float)(kh * kw) : dp[i];
      for (int k = 0; k < kh * kw; k++) {
        const long o = o0 + ((long)(k / kw) * iw + k % kw) * c;
        if (avg) {
          for (int i = 0; i < c; i++)
            dx[o + i] += r[i];
          continue;
        }
        for (int i = 0; i < c; i++) { /* the first maximum takes it */
          const float h = x[o + i] == yp[i] ? r[i] : 0.0f;
          dx[o + i] += h;
          r[i] -= h;
        }
      }
    }
  if (r != small)
    free(r);
}

/* ---- batchnorm (compiler/ops/batchnorm.c) ----

   Per channel over p pixels [p][c], as the generated code computes it:
   every channel's sums in pixel order (the compiler vectorizes across the
   channels, which keeps each channel's order), the statistics in double. */

void FN(cnk_bn_sums)(long p, int c, const float *restrict x, double *restrict v) {
  for (long i = 0; i < p; i++)
    for (int k = 0; k < c; k++)
      v[k] += x[i * c + k];
}

void FN(cnk_bn_squares)(long p, int c, const float *restrict x, const double *restrict mean,
                        double *restrict v) {
  for (long i = 0; i < p; i++)
    for (int k = 0; k < c; k++) {
      const double d = x[i * c + k] - mean[k];
      v[k] += d * d;
    }
}

void FN(cnk_bn_scale)(long p, int c, int act, long group, const float *restrict x,
                      const float *restrict s, const float *restrict sh, float *restrict y) {
  for (long i = 0; i < p; i++)
    for (int k = 0; k < c; k++) {
      const float v = x[i * c + k] * s[k] + sh[k];
      y[i * c + k] = act == ACT_RELU ? (v > 0.0f ? v : 0.0f) : v;
    }
  if (act != ACT_RELU && act != ACT_LINEAR)
    for (long i = 0; i < p * c; i += group)
      act_pass(act, y + i, group);
}

void FN(cnk_bn_grad_sums)(long p, int c, const float *restrict x, const float *restrict dy,
                          const float *restrict mean, const float *restrict istd,
                          float *restrict dw, float *restrict db, double *restrict v) {
  for (long i = 0; i < p; i++)
    for (int k = 0; k < c; k++) {
      const float d = dy[i * c + k], xh = (x[i * c + k] - mean[k]) * istd[k];
      db[k] += d;
      dw[k] += d * xh;
      v[k] += d;
      v[c + k] += (double)d * xh;
    }
}

void FN(cnk_bn_dx)(long p, int c, const float *restrict x, const float *restrict dy,
                   const float *restrict w, const float *restrict mean,
                   const float *restrict istd, const double *restrict s, double cnt,
                   float *restrict dx) {
  float small[3072];
  float *k = scratch(small, 3072, 3 * (size_t)c), *a = k + c, *b = a + c;
  for (int j = 0; j < c; j++) {
    k[j] = w[j] * istd[j];
    a[j] = (float)(s[j] / cnt);
    b[j] = (float)(s[c + j] / cnt);
  }
  for (long i = 0; i < p; i++)
    for (int j = 0; j < c; j++) {
      const float xh = (x[i * c + j] - mean[j]) * istd[j];
      dx[i * c + j] = k[j] * (dy[i * c + j] - a[j] - xh * b[j]);
    }
  if (k != small)
    free(k);
}

/* ---- optimizers (SPEC section 5) ---- */

void FN(cnk_adam)(float *p, const float *g, float *m, float *v, long n, float scale, float c1,
                  float c2, float lr, float b1, float one_b1, float b2, float one_b2, float eps,
                  float wd) {
  for (long i = 0; i < n; i++) {
    const float gi = scale * g[i] + wd * p[i];
    m[i] = b1 * m[i] + one_b1 * gi;
    v[i] = b2 * v[i] + one_b2 * gi * gi;
    p[i] -= lr * (m[i] / c1) / (__builtin_sqrtf(v[i] / c2) + eps);
  }
}

void FN(cnk_sgd)(float *p, const float *g, float *v, long n, float scale, float lr, float momentum,
                 int nesterov, float wd) {
  for (long i = 0; i < n; i++) {
    const float gi = scale * g[i] + wd * p[i];
    if (!v) {
      p[i] -= lr * gi;
    } else {
      v[i] = momentum * v[i] + gi;
      p[i] -= lr * (nesterov ? gi + momentum * v[i] : v[i]);
    }
  }
}

void FN(cnk_transpose)(const float *src, float *dst, long outer, long rows, long cols, int add) {
  for (long o = 0; o < outer; o++) {
    const float *s = src + o * rows * cols;
    float *d = dst + o * rows * cols;
    for (long c = 0; c < cols; c++)
      for (long r = 0; r < rows; r++)
        d[c * rows + r] = add ? d[c * rows + r] + s[r * cols + c] : s[r * cols + c];
  }
}

void FN(cnk_add)(float *into, const float *g, long n) {
  for (long i = 0; i < n; i++)
    into[i] += g[i];
}

/* ---- residual blocks, activations ---- */

/* As the generated code's add (compiler/ops/residual.c): relu as the sum is
   stored (a NaN sum gives 0), another activation after. */
void FN(cnk_add_forward)(long n, int act, const float *a, const float *b, float *y) {
  if (act == ACT_RELU)
    for (long i = 0; i < n; i++)
      y[i] = a[i] + b[i] > 0.0f ? a[i] + b[i] : 0.0f;
  else
    for (long i = 0; i < n; i++)
      y[i] = a[i] + b[i];
  act_pass(act, y, n);
}

void FN(cnk_act_backward)(long n, int act, int group, const float *y, float *dy) {
  act_backward(act, y, dy, n, group);
}

/* This width's set, for cnk_select (select.c). */
#define ENTRY(name, params) {"cnk_" #name, (void (*)(void))FN(cnk_##name)},
static const CnkSymbol symbols[] = {CNK_KERNELS(ENTRY)};
#undef ENTRY
const CnkSet FN(cnk_set) = {CNK_STR(CNK_ISA), symbols, sizeof symbols / sizeof symbols[0]};
