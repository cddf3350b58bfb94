/*
 * test_kernels.c: the JIT's prebuilt kernels (runtime/kernels/), every width
 * this CPU runs (AVX-512, AVX2, generic), against plain double-precision
 * loops on dimensions chosen to reach every path: channel counts below,
 * at and between multiples of the vector (the overlapping last vector),
 * strides and rectangular windows, pixel counts that leave uneven tiles,
 * fused pools, transposed weights or none; grouped and depthwise convs,
 * batchnorm's sums and normalization. Then the generated C for tcc: its
 * layers call the kernels, an engine on it infers as cc's does, and a few
 * training steps give cc-kernels' losses and weights.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../compiler/emit.h"
#include "cli.h"
#include "engine.h"
#include "kernels/kernels.h"
#include "testutil.h"
#include "trainer.h"

#define TYPEDEF(name, params) typedef void name##_fn params;
CNK_KERNELS(TYPEDEF)
#undef TYPEDEF

/* Kernel `name` of `set`, as a function pointer of its type. */
#define KERNEL(set, name) ((name##_fn *)lookup(set, "cnk_" #name))
static void (*lookup(const CnkSet *set, const char *name))(void) {
  for (int i = 0; i < set->count; i++)
    if (!strcmp(set->symbols[i].name, name))
      return set->symbols[i].fn;
  fail_msg("%s has no %s", set->isa, name);
  return NULL;
}

/* The sets this CPU runs, by CNNGEN_KERNELS. */
static int sets(const CnkSet **out) {
  static const char *const names[3] = {"avx512", "avx2", "generic"};
  int n = 0;
  for (int i = 0; i < 3; i++) {
    setenv("CNNGEN_KERNELS", names[i], 1);
    const CnkSet *s = cnk_select();
    if (!strcmp(s->isa, names[i]))
      out[n++] = s;
  }
  unsetenv("CNNGEN_KERNELS");
  assert_true(n >= 1 && !strcmp(out[n - 1]->isa, "generic"));
  return n;
}

static unsigned rng = 1;
static float *randoms(long n) {
  float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof *p);
  assert_non_null(p);
  for (long i = 0; i < n; i++) {
    rng = rng * 1103515245u + 12345u;
    p[i] = (float)((rng >> 8) & 0xffff) / 32768.0f - 1.0f;
  }
  return p;
}

static void close_to(const char *isa, const char *what, const float *got, const double *want,
                     long n) {
  double worst = 0;
  for (long i = 0; i < n; i++) {
    const double d = fabs(got[i] - want[i]) / (1.0 + fabs(want[i]));
    if (!(d <= 1e-4))
      fail_msg("%s %s [%ld]: %.9g, expected %.9g", isa, what, i, got[i], want[i]);
    worst = d > worst ? d : worst;
  }
  (void)worst;
}

typedef struct Case {
  int C, F, KH, KW, SH, SW, IH, IW;
} Case;

static const Case cases[] = {
    {1, 32, 3, 3, 1, 1, 28, 28}, /* fashion's first layer */
    {32, 64, 3, 3, 1, 1, 13, 13}, {3, 20, 3, 2, 2, 1, 11, 9},  {17, 6, 2, 3, 1, 2, 8, 10},
    {24, 40, 1, 1, 1, 1, 5, 7},   {9, 33, 5, 5, 2, 2, 15, 15}, {16, 17, 3, 3, 1, 1, 6, 30},
};

static cnk_conv dims_of(const Case *k, int act, int pool) {
  return (cnk_conv){k->C,  k->F,  k->KH, k->KW, k->SH, k->SW, k->IH,
                    k->IW, (k->IH - k->KH) / k->SH + 1, (k->IW - k->KW) / k->SW + 1,
                    act,   pool,  pool ? 2 : 0, pool ? 2 : 0};
}

#define X_(d, x, oy, ox, ky, kx, c)                                                                \
  x[(((long)(oy) * (d)->SH + (ky)) * (d)->IW + (long)(ox) * (d)->SW + (kx)) * (d)->C + (c)]

/* The conv's pre-activation output in double. */
static double *conv_ref(const cnk_conv *d, const float *x, const float *w, const float *b) {
  double *y = calloc((size_t)d->OH * d->OW * d->F, sizeof *y);
  assert_non_null(y);
  for (int oy = 0; oy < d->OH; oy++)
    for (int ox = 0; ox < d->OW; ox++)
      for (int f = 0; f < d->F; f++) {
        double s = b ? b[f] : 0;
        for (int ky = 0; ky < d->KH; ky++)
          for (int kx = 0; kx < d->KW; kx++)
            for (int c = 0; c < d->C; c++)
              s += (double)X_(d, x, oy, ox, ky, kx, c) *
                   w[(((long)ky * d->KW + kx) * d->C + c) * d->F + f];
        y[((long)oy * d->OW + ox) * d->F + f] = s;
      }
  return y;
}

static void test_kernels_conv_forward(void **state) {
  (void)state;
  const CnkSet *set[3];
  const int nsets = sets(set);
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    for (int pool = 0; pool <= 2; pool++) {
      const cnk_conv d = dims_of(&cases[i], ACT_RELU, pool);
      const int POH = pool ? d.OH / 2 : d.OH, POW = pool ? d.OW / 2 : d.OW;
      const long ny = (long)POH * POW * d.F;
      float *x = randoms((long)d.IH * d.IW * d.C), *w = randoms((long)d.KH * d.KW * d.C * d.F);
      float *b = randoms(d.F), *y = malloc((size_t)ny * sizeof *y);
      double *z = conv_ref(&d, x, w, i % 2 ? NULL : b), *want = calloc((size_t)ny, sizeof *want);
      for (int py = 0; py < POH; py++) /* relu, then the pool */
        for (int px = 0; px < POW; px++)
          for (int f = 0; f < d.F; f++) {
            const int k = pool ? 2 : 1;
            double m = pool == 1 ? -INFINITY : 0;
            for (int q = 0; q < k * k; q++) {
              double v = z[(((long)py * k + q / k) * d.OW + px * k + q % k) * d.F + f];
              v = v > 0 ? v : 0;
              m = pool == 1 ? (v > m ? v : m) : m + v;
            }
            want[((long)py * POW + px) * d.F + f] = pool == 2 ? m / 4 : m;
          }
      for (int s = 0; s < nsets; s++) {
        memset(y, 0xff, (size_t)ny * sizeof *y);
        KERNEL(set[s], conv_forward)(&d, x, w, i % 2 ? NULL : b, y);
        close_to(set[s]->isa, pool ? "conv_forward + pool" : "conv_forward", y, want, ny);
      }
      free(x), free(w), free(b), free(y), free(z), free(want);
    }
}

/* The weight and input gradients of dy (after the activation) in double:
   dw [KH][KW][C][F], dx [IH][IW][C]. */
static void conv_grads_ref(const cnk_conv *d, const float *x, const float *w, const double *dy,
                           double *dw, double *dx) {
  for (int oy = 0; oy < d->OH; oy++)
    for (int ox = 0; ox < d->OW; ox++)
      for (int ky = 0; ky < d->KH; ky++)
        for (int kx = 0; kx < d->KW; kx++)
          for (int c = 0; c < d->C; c++) {
            const long j = ((long)ky * d->KW + kx) * d->C + c;
            const long xi = (((long)oy * d->SH + ky) * d->IW + (long)ox * d->SW + kx) * d->C + c;
            for (int f = 0; f < d->F; f++) {
              const double g = dy[((long)oy * d->OW + ox) * d->F + f];
              dw[j * d->F + f] += x[xi] * g;
              dx[xi] += w[j * d->F + f] * g;
            }
          }
}

static float *transpose(const cnk_conv *d, const float *w) {
  float *wt = malloc((size_t)d->KH * d->KW * d->C * d->F * sizeof *wt);
  assert_non_null(wt);
  for (int k = 0; k < d->KH * d->KW; k++)
    for (int c = 0; c < d->C; c++)
      for (int f = 0; f < d->F; f++)
        wt[((long)k * d->F + f) * d->C + c] = w[((long)k * d->C + c) * d->F + f];
  return wt;
}

static void test_kernels_conv_backward(void **state) {
  (void)state;
  const CnkSet *set[3];
  const int nsets = sets(set);
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const cnk_conv d = dims_of(&cases[i], ACT_RELU, 0);
    const long nx = (long)d.IH * d.IW * d.C, ny = (long)d.OH * d.OW * d.F;
    const long nw = (long)d.KH * d.KW * d.C * d.F;
    float *x = randoms(nx), *w = randoms(nw), *y = randoms(ny), *dy0 = randoms(ny);
    float *wt = transpose(&d, w), *dy = malloc((size_t)ny * sizeof *dy);
    float *dw = malloc((size_t)nw * sizeof *dw), *db = malloc((size_t)d.F * sizeof *db);
    float *dx = malloc((size_t)nx * sizeof *dx);
    double *g = calloc((size_t)ny, sizeof *g), *wdw = calloc((size_t)nw, sizeof *wdw);
    double *wdx = calloc((size_t)nx, sizeof *wdx), *wdb = calloc((size_t)d.F, sizeof *wdb);
    for (long p = 0; p < ny; p++) { /* relu' at y, into the 0.5 the gradients start from */
      g[p] = y[p] > 0 ? dy0[p] : 0;
      wdb[p % d.F] += g[p];
    }
    conv_grads_ref(&d, x, w, g, wdw, wdx);
    for (long j = 0; j < nw; j++)
      wdw[j] += 0.5;
    for (int f = 0; f < d.F; f++)
      wdb[f] += 0.5;
    for (int s = 0; s < nsets; s++)
      for (int with_wt = 0; with_wt <= 1; with_wt++) {
        memcpy(dy, dy0, (size_t)ny * sizeof *dy);
        for (long j = 0; j < nw; j++)
          dw[j] = 0.5f;
        for (int f = 0; f < d.F; f++)
          db[f] = 0.5f;
        memset(dx, 0xff, (size_t)nx * sizeof *dx);
        KERNEL(set[s], conv_backward)(&d, x, y, dy, w, with_wt ? wt : NULL, dw, db, dx);
        close_to(set[s]->isa, "conv_backward dy", dy, g, ny);
        close_to(set[s]->isa, "conv_backward dw", dw, wdw, nw);
        close_to(set[s]->isa, "conv_backward db", db, wdb, d.F);
        close_to(set[s]->isa, with_wt ? "conv_backward dx (wt)" : "conv_backward dx", dx, wdx, nx);
      }
    free(x), free(w), free(y), free(dy0), free(wt), free(dy), free(dw), free(db), free(dx);
    free(g), free(wdw), free(wdx), free(wdb);
  }
}

/* Conv + maxpool 2x2 backward of case k on every set: each window's gradient
   to its first maximum (ties made on purpose), dw added transposed
   ([F][KH][KW][C]). */
static void pool_backward_case(const CnkSet *const *set, int nsets, const Case *k) {
  const cnk_conv d = dims_of(k, ACT_RELU, 1);
  const int POH = d.OH / 2, POW = d.OW / 2;
  const long nx = (long)d.IH * d.IW * d.C, ny = (long)d.OH * d.OW * d.F;
  const long nw = (long)d.KH * d.KW * d.C * d.F, np = (long)POH * POW * d.F;
  float *x = randoms(nx), *w = randoms(nw), *y = randoms(ny), *dyp = randoms(np);
  float *yp = malloc((size_t)np * sizeof *yp), *wt = transpose(&d, w);
  for (long p = 0; p < ny; p += 7) /* ties: the first maximum takes the gradient */
    y[p] = y[p > d.F ? p - d.F : p];
  double *g = calloc((size_t)ny, sizeof *g), *wdw = calloc((size_t)nw, sizeof *wdw);
  double *wdx = calloc((size_t)nx, sizeof *wdx);
  for (int py = 0; py < POH; py++)
    for (int px = 0; px < POW; px++)
      for (int f = 0; f < d.F; f++) {
        long best = -1;
        for (int q = 0; q < 4; q++) {
          const long o = (((long)py * 2 + q / 2) * d.OW + px * 2 + q % 2) * d.F + f;
          if (best < 0 || y[o] > y[best])
            best = o;
        }
        yp[((long)py * POW + px) * d.F + f] = y[best];
        g[best] += y[best] > 0 ? dyp[((long)py * POW + px) * d.F + f] : 0;
      }
  conv_grads_ref(&d, x, w, g, wdw, wdx);
  double *wdwt = calloc((size_t)nw, sizeof *wdwt);
  const long J = nw / d.F;
  for (long j = 0; j < J; j++)
    for (int f = 0; f < d.F; f++)
      wdwt[f * J + j] = wdw[j * d.F + f];
  float *dwt = malloc((size_t)nw * sizeof *dwt), *dx = malloc((size_t)nx * sizeof *dx);
  float *first = malloc((size_t)nw * sizeof *first);
  assert_non_null(first);
  for (int s = 0; s < nsets; s++) {
    memset(dwt, 0, (size_t)nw * sizeof *dwt);
    KERNEL(set[s], conv_pool_backward)(&d, x, y, yp, dyp, w, wt, dwt, NULL, dx);
    close_to(set[s]->isa, "conv_pool_backward dwt", dwt, wdwt, nw);
    close_to(set[s]->isa, "conv_pool_backward dx", dx, wdx, nx);
    /* AVX-512 and AVX2 (both with FMA) sum each (filter, tap) over the
       windows in the same order, whichever of their paths runs it */
    if (!strcmp(set[s]->isa, "avx512"))
      memcpy(first, dwt, (size_t)nw * sizeof *dwt);
    else if (!strcmp(set[s]->isa, "avx2") && s > 0)
      assert_memory_equal(first, dwt, (size_t)nw * sizeof *dwt);
  }
  free(x), free(w), free(y), free(dyp), free(yp), free(wt), free(g), free(wdw), free(wdx);
  free(wdwt), free(dwt), free(dx), free(first);
}

static void test_kernels_conv_pool_backward(void **state) {
  (void)state;
  const CnkSet *set[3];
  const int nsets = sets(set);
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    pool_backward_case(set, nsets, &cases[i]);
}

/* The same with 1 to 3 input channels, whose kernel rows (KW x C floats)
   are shorter than a vector or leave a rest: the weight gradient a vector of
   filters at a time (8, 32 and 40 filters: one vector, several, an
   overlapping last one), with strides and rectangular windows. */
static void test_kernels_conv_pool_backward_few_channels(void **state) {
  (void)state;
  const CnkSet *set[3];
  const int nsets = sets(set);
  static const int filters[] = {8, 32, 40};
  static const Case shapes[] = {
      {1, 0, 3, 3, 1, 1, 28, 28}, {2, 0, 3, 3, 1, 1, 12, 12}, {3, 0, 3, 3, 1, 1, 10, 10},
      {1, 0, 2, 5, 2, 1, 13, 15}, {3, 0, 5, 2, 1, 2, 14, 11}, {2, 0, 3, 7, 2, 2, 17, 19},
  };
  for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
    for (size_t j = 0; j < sizeof filters / sizeof filters[0]; j++) {
      Case k = shapes[i];
      k.F = filters[j];
      pool_backward_case(set, nsets, &k);
    }
}

static void test_kernels_dense(void **state) {
  (void)state;
  const CnkSet *set[3];
  const int nsets = sets(set);
  static const int shapes[][2] = {{576, 64}, {64, 10}, {7, 3}, {33, 17}, {5, 130}, {100, 16}};
  for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
    const int in = shapes[i][0], out = shapes[i][1];
    float *x = randoms(in), *w = randoms((long)in * out), *b = randoms(out), *y = randoms(out);
    float *dy0 = randoms(out), *got = malloc((size_t)(in > out ? in : out) * sizeof *got);
    float *dw = malloc((size_t)in * out * sizeof *dw), *dy = malloc((size_t)out * sizeof *dy);
    double *want = calloc((size_t)out, sizeof *want), *wdx = calloc((size_t)in, sizeof *wdx);
    double *wdw = calloc((size_t)in * out, sizeof *wdw), *g = calloc((size_t)out, sizeof *g);
    for (int o = 0; o < out; o++) {
      double s = b[o];
      for (int k = 0; k < in; k++)
        s += (double)x[k] * w[(long)k * out + o];
      want[o] = s > 0 ? s : 0;
      g[o] = y[o] > 0 ? dy0[o] : 0;
    }
    for (int k = 0; k < in; k++)
      for (int o = 0; o < out; o++) {
        wdw[(long)k * out + o] = (double)x[k] * g[o];
        wdx[k] += (double)w[(long)k * out + o] * g[o];
      }
    for (int s = 0; s < nsets; s++) {
      KERNEL(set[s], dense_forward)(in, out, ACT_RELU, x, w, b, got);
      close_to(set[s]->isa, "dense_forward", got, want, out);
      memcpy(dy, dy0, (size_t)out * sizeof *dy);
      memset(dw, 0, (size_t)in * out * sizeof *dw);
      KERNEL(set[s], dense_backward)(in, out, ACT_RELU, x, y, dy, w, dw, NULL, got);
      close_to(set[s]->isa, "dense_backward dw", dw, wdw, (long)in * out);
      close_to(set[s]->isa, "dense_backward dx", got, wdx, in);
    }
    free(x), free(w), free(b), free(y), free(dy0), free(got), free(dw), free(dy);
    free(want), free(wdx), free(wdw), free(g);
  }
}

/* A residual block's sum with each activation (y in place of a, as the
   generated code may call it), and the activations' backward. */
static void test_kernels_add_and_act_backward(void **state) {
  (void)state;
  const CnkSet *set[3];
  const int nsets = sets(set);
  static const long sizes[] = {1, 7, 16, 33, 3136};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
    for (int act = 0; act < ACT_COUNT; act++) {
      const long n = sizes[i];
      float *a = randoms(n), *b = randoms(n), *y = randoms(n), *dy0 = randoms(n);
      float *got = malloc((size_t)n * sizeof *got);
      double *want = calloc((size_t)n, sizeof *want), *g = calloc((size_t)n, sizeof *g);
      double mx = -INFINITY, sum = 0;
      for (long k = 0; k < n; k++) {
        const double s = (double)a[k] + b[k];
        want[k] = act == ACT_RELU      ? (s > 0 ? s : 0)
                  : act == ACT_SIGMOID ? 1 / (1 + exp(-s))
                  : act == ACT_TANH    ? tanh(s)
                                       : s;
        mx = s > mx ? s : mx;
      }
      if (act == ACT_SOFTMAX) {
        for (long k = 0; k < n; k++)
          sum += want[k] = exp(want[k] - mx);
        for (long k = 0; k < n; k++)
          want[k] /= sum;
      }
      /* the backward: softmax in groups of 4 where n allows */
      const int group = act == ACT_SOFTMAX && n % 4 == 0 ? 4 : (int)n;
      for (long p = 0; p < n; p += group) {
        double s = 0;
        for (long k = p; k < p + group; k++)
          s += (double)dy0[k] * y[k];
        for (long k = p; k < p + group; k++) {
          const double v = y[k], d = dy0[k];
          g[k] = act == ACT_RELU      ? (v > 0 ? d : 0)
                 : act == ACT_SIGMOID ? d * v * (1 - v)
                 : act == ACT_TANH    ? d * (1 - v * v)
                 : act == ACT_SOFTMAX ? v * (d - s)
                                      : d;
        }
      }
      for (int s = 0; s < nsets; s++) {
        memcpy(got, a, (size_t)n * sizeof *got);
        KERNEL(set[s], add_forward)(n, act, got, b, got);
        close_to(set[s]->isa, act_words[act], got, want, n);
        memcpy(got, dy0, (size_t)n * sizeof *got);
        KERNEL(set[s], act_backward)(n, act, group, y, got);
        close_to(set[s]->isa, "act_backward", got, g, n);
      }
      free(a), free(b), free(y), free(dy0), free(got), free(want), free(g);
    }
}

/* Grouped convs: depthwise (groups = C) with F = C or a multiple (filter f
   reads channel f / (F / C)), and groups of several channels and filters;
   strides, rectangular and 5x5 windows, channel counts below, at and between
   multiples of the vector, an input wider than the last window reaches (its
   gradient 0 there). The input is the padded one, as the glue passes it. */
typedef struct GroupCase {
  int G;
  Case k;
} GroupCase;

static const GroupCase group_cases[] = {
    {32, {32, 32, 3, 3, 1, 1, 13, 13}}, {32, {32, 32, 3, 3, 2, 2, 14, 14}},
    {20, {20, 20, 3, 3, 2, 2, 12, 10}}, {17, {17, 17, 3, 3, 1, 1, 9, 11}},
    {5, {5, 5, 3, 3, 1, 1, 7, 6}},      {12, {12, 24, 3, 3, 1, 1, 10, 10}},
    {3, {3, 6, 3, 3, 2, 2, 9, 9}},      {16, {16, 32, 3, 3, 2, 1, 8, 7}},
    {40, {40, 40, 5, 5, 2, 2, 15, 16}}, {24, {24, 24, 3, 2, 2, 1, 11, 9}},
    {72, {72, 72, 1, 1, 1, 1, 4, 4}},   {8, {128, 128, 3, 3, 1, 1, 9, 9}},
    {2, {8, 8, 3, 2, 2, 1, 9, 8}},      {4, {12, 40, 3, 3, 1, 1, 7, 7}},
    {3, {48, 24, 1, 1, 1, 1, 5, 5}},
};

/* The grouped conv's pre-activation output, and the weight and input
   gradients of g (after the activation), in double. */
static void group_conv_ref(const cnk_conv *d, int G, const float *x, const float *w,
                           const float *b, double *y, const double *g, double *dw, double *dx) {
  const int CG = d->C / G, FG = d->F / G;
  for (int oy = 0; oy < d->OH; oy++)
    for (int ox = 0; ox < d->OW; ox++)
      for (int f = 0; f < d->F; f++) {
        const long o = ((long)oy * d->OW + ox) * d->F + f;
        double s = b ? b[f] : 0;
        for (int ky = 0; ky < d->KH; ky++)
          for (int kx = 0; kx < d->KW; kx++)
            for (int c = 0; c < CG; c++) {
              const long xi = &X_(d, x, oy, ox, ky, kx, f / FG * CG + c) - x;
              const long wi = (((long)ky * d->KW + kx) * CG + c) * d->F + f;
              s += (double)x[xi] * w[wi];
              dw[wi] += x[xi] * g[o];
              dx[xi] += w[wi] * g[o];
            }
        y[o] = s;
      }
}

static void test_kernels_group_conv(void **state) {
  (void)state;
  const CnkSet *set[3];
  const int nsets = sets(set);
  for (size_t i = 0; i < sizeof group_cases / sizeof group_cases[0]; i++) {
    const int act = i % 3 == 2 ? ACT_TANH : ACT_RELU, G = group_cases[i].G;
    const cnk_conv d = dims_of(&group_cases[i].k, act, 0);
    const long nx = (long)d.IH * d.IW * d.C, ny = (long)d.OH * d.OW * d.F;
    const long nw = (long)d.KH * d.KW * (d.C / G) * d.F;
    float *x = randoms(nx), *w = randoms(nw), *b = randoms(d.F), *y = randoms(ny);
    float *dy0 = randoms(ny), *got = malloc((size_t)ny * sizeof *got);
    float *dy = malloc((size_t)ny * sizeof *dy), *dw = malloc((size_t)nw * sizeof *dw);
    float *db = malloc((size_t)d.F * sizeof *db), *dx = malloc((size_t)nx * sizeof *dx);
    double *z = calloc((size_t)ny, sizeof *z), *g = calloc((size_t)ny, sizeof *g);
    double *wdw = calloc((size_t)nw, sizeof *wdw), *wdx = calloc((size_t)nx, sizeof *wdx);
    double *wdb = calloc((size_t)d.F, sizeof *wdb), *wdw2 = calloc((size_t)nw, sizeof *wdw2);
    for (long p = 0; p < ny; p++) { /* act' at y, into the 0.5 the gradients start from */
      g[p] = act == ACT_RELU ? (y[p] > 0 ? dy0[p] : 0) : dy0[p] * (1 - (double)y[p] * y[p]);
      wdb[p % d.F] += g[p];
    }
    group_conv_ref(&d, G, x, w, i % 2 ? NULL : b, z, g, wdw, wdx);
    for (long p = 0; p < ny; p++)
      z[p] = act == ACT_RELU ? (z[p] > 0 ? z[p] : 0) : tanh(z[p]);
    for (long j = 0; j < nw; j++) {
      wdw[j] += 0.5;
      wdw2[j] = 2 * wdw[j] - 0.5;
    }
    for (int f = 0; f < d.F; f++)
      wdb[f] += 0.5;
    for (int s = 0; s < nsets; s++) {
      const char *isa = set[s]->isa;
      memset(got, 0xff, (size_t)ny * sizeof *got);
      KERNEL(set[s], group_conv_forward)(&d, G, x, w, i % 2 ? NULL : b, got);
      close_to(isa, "group_conv_forward", got, z, ny);
      memcpy(dy, dy0, (size_t)ny * sizeof *dy);
      for (long j = 0; j < nw; j++)
        dw[j] = 0.5f;
      for (int f = 0; f < d.F; f++)
        db[f] = 0.5f;
      memset(dx, 0xff, (size_t)nx * sizeof *dx);
      KERNEL(set[s], group_conv_backward)(&d, G, x, y, dy, w, dw, db, dx);
      close_to(isa, "group_conv_backward dy", dy, g, ny);
      close_to(isa, "group_conv_backward dw", dw, wdw, nw);
      close_to(isa, "group_conv_backward db", db, wdb, d.F);
      close_to(isa, "group_conv_backward dx", dx, wdx, nx);
      memcpy(dy, dy0, (size_t)ny * sizeof *dy); /* again without db and dx: dw twice */
      KERNEL(set[s], group_conv_backward)(&d, G, x, y, dy, w, dw, NULL, NULL);
      close_to(isa, "group_conv_backward dw, no dx", dw, wdw2, nw);
    }
    free(x), free(w), free(b), free(y), free(dy0), free(got), free(dy), free(dw), free(db);
    free(dx), free(z), free(g), free(wdw), free(wdx), free(wdb), free(wdw2);
  }
}

static void close_to_d(const char *isa, const char *what, const double *got, const double *want,
                       long n) {
  for (long i = 0; i < n; i++)
    if (!(fabs(got[i] - want[i]) <= 1e-12 * (1.0 + fabs(want[i]))))
      fail_msg("%s %s [%ld]: %.17g, expected %.17g", isa, what, i, got[i], want[i]);
}

/* Batchnorm's kernels on p pixels of c channels against double loops: the
   batch's sums, the scale and shift with each activation (softmax per pixel
   and over all), the backward's sums and the input gradient. */
static void test_kernels_batchnorm(void **state) {
  (void)state;
  const CnkSet *set[3];
  const int nsets = sets(set);
  static const int shapes[][2] = {{169, 32}, {1, 10}, {49, 17}, {25, 5}, {4, 130}};
  for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
    const int c = shapes[i][1];
    const long p = shapes[i][0], n = p * c;
    float *x = randoms(n), *dy = randoms(n), *w = randoms(c), *mean = randoms(c);
    float *istd = randoms(c), *s = randoms(c), *sh = randoms(c);
    float *got = malloc((size_t)n * sizeof *got), *dw = malloc((size_t)c * sizeof *dw);
    float *db = malloc((size_t)c * sizeof *db);
    double *v = malloc(2 * (size_t)c * sizeof *v), *wv = malloc(2 * (size_t)c * sizeof *wv);
    double *dmean = malloc((size_t)c * sizeof *dmean), *want = malloc((size_t)n * sizeof *want);
    double *wdw = malloc((size_t)c * sizeof *wdw), *wdb = malloc((size_t)c * sizeof *wdb);
    for (int k = 0; k < c; k++) {
      istd[k] = 0.5f + fabsf(istd[k]);
      dmean[k] = mean[k];
    }
    for (int set_i = 0; set_i < nsets; set_i++) {
      const char *isa = set[set_i]->isa;
      for (int k = 0; k < 2 * c; k++)
        v[k] = wv[k] = 0.25;
      for (long j = 0; j < n; j++)
        wv[j % c] += x[j];
      KERNEL(set[set_i], bn_sums)(p, c, x, v);
      close_to_d(isa, "bn_sums", v, wv, c);
      for (long j = 0; j < n; j++)
        wv[c + j % c] += ((double)x[j] - dmean[j % c]) * ((double)x[j] - dmean[j % c]);
      KERNEL(set[set_i], bn_squares)(p, c, x, dmean, v + c);
      close_to_d(isa, "bn_squares", v + c, wv + c, c);
      for (int act = 0; act < ACT_COUNT; act++)
        for (int whole = 0; whole <= (act == ACT_SOFTMAX); whole++) {
          const long group = whole ? n : c;
          for (long j = 0; j < n; j++) {
            const double u = (double)x[j] * s[j % c] + sh[j % c];
            want[j] = act == ACT_RELU      ? (u > 0 ? u : 0)
                      : act == ACT_SIGMOID ? 1 / (1 + exp(-u))
                      : act == ACT_TANH    ? tanh(u)
                                           : u;
          }
          for (long g0 = 0; act == ACT_SOFTMAX && g0 < n; g0 += group) {
            double mx = -INFINITY, sum = 0;
            for (long j = g0; j < g0 + group; j++)
              mx = want[j] > mx ? want[j] : mx;
            for (long j = g0; j < g0 + group; j++)
              sum += want[j] = exp(want[j] - mx);
            for (long j = g0; j < g0 + group; j++)
              want[j] /= sum;
          }
          memset(got, 0xff, (size_t)n * sizeof *got);
          KERNEL(set[set_i], bn_scale)(p, c, act, group, x, s, sh, got);
          close_to(isa, act_words[act], got, want, n);
        }
      /* the backward's sums, into 0.5 (dw, db) and 0.25 (v) */
      for (int k = 0; k < c; k++) {
        dw[k] = db[k] = 0.5f;
        wdw[k] = wdb[k] = 0.5;
      }
      for (int k = 0; k < 2 * c; k++)
        v[k] = wv[k] = 0.25;
      for (long j = 0; j < n; j++) {
        const int k = (int)(j % c);
        const double xh = ((double)x[j] - mean[k]) * istd[k];
        wdb[k] += dy[j];
        wdw[k] += dy[j] * xh;
        wv[k] += dy[j];
        wv[c + k] += dy[j] * xh;
      }
      KERNEL(set[set_i], bn_grad_sums)(p, c, x, dy, mean, istd, dw, db, v);
      close_to(isa, "bn_grad_sums dw", dw, wdw, c);
      close_to(isa, "bn_grad_sums db", db, wdb, c);
      for (int k = 0; k < 2 * c; k++)
        if (!(fabs(v[k] - wv[k]) <= 1e-5 * (1 + fabs(wv[k]))))
          fail_msg("%s bn_grad_sums v [%d]: %.9g, expected %.9g", isa, k, v[k], wv[k]);
      const double cnt = 3.0 * (double)p;
      for (long j = 0; j < n; j++) {
        const int k = (int)(j % c);
        const double xh = ((double)x[j] - mean[k]) * istd[k];
        want[j] = (double)w[k] * istd[k] * (dy[j] - wv[k] / cnt - xh * wv[c + k] / cnt);
      }
      memset(got, 0xff, (size_t)n * sizeof *got);
      KERNEL(set[set_i], bn_dx)(p, c, x, dy, w, mean, istd, wv, cnt, got);
      close_to(isa, "bn_dx", got, want, n);
    }
    free(x), free(dy), free(w), free(mean), free(istd), free(s), free(sh), free(got), free(dw);
    free(db), free(v), free(wv), free(dmean), free(want), free(wdw), free(wdb);
  }
}

/* Inference on the engines of the kernels (tcc, and cc-kernels: the same
   glue compiled by cc, the kernels' pointers set after loading) agrees with
   the cc engine's (the specialized C), for 4 random images. */
static void same_on_both_backends(const Net *net) {
  Engine en[3];
  Err e = {0};
  const BackendKind kinds[3] = {BACKEND_CC, BACKEND_TCC, BACKEND_CC_KERNELS};
  static const char *const names[3] = {"cc", "tcc", "cc-kernels"};
  const long in = shape_size(net->input), out = shape_size(net->output);
  float *x = randoms(4 * in), *y[3] = {randoms(4 * out), randoms(4 * out), randoms(4 * out)};
  for (int k = 0; k < 3; k++) {
    if (engine_open(&en[k], net, kinds[k], false, 1, &e) < 0)
      fail_msg("%s", e.msg);
    assert_string_equal(program_backend(en[k].prog), names[k]);
    en[k].init(en[k].model, 7);
    engine_infer(&en[k], x, 4, y[k]);
    for (long i = 0; i < 4 * out; i++)
      assert_float_equal(y[k][i], y[0][i], 1e-5);
    engine_close(&en[k]);
  }
  free(x), free(y[0]), free(y[1]), free(y[2]);
}

/* A few SGD or Adam steps of net (its train block's optimizer) on tcc and
   on cc-kernels, the kernels both run with glue of two compilers: the same
   loss at every step and the same weights at the end, up to rounding. */
static void same_training_on_both_backends(const Net *net) {
  enum { STEPS = 4, N = 4 };
  const BackendKind kinds[2] = {BACKEND_TCC, BACKEND_CC_KERNELS};
  const long in = shape_size(net->input), out = shape_size(net->output);
  float *x = randoms(N * in), *target = calloc((size_t)(N * out), sizeof *target);
  float *params[2] = {malloc((size_t)net->param_count * sizeof(float)),
                      malloc((size_t)net->param_count * sizeof(float))};
  assert_true(target && params[0] && params[1]);
  for (int i = 0; i < N; i++)
    target[i * out + i % out] = 1.0f;
  double loss[2][STEPS];
  Err e = {0};
  for (int k = 0; k < 2; k++) {
    Engine en;
    Trainer t = {0};
    if (engine_open(&en, net, kinds[k], true, 1, &e) < 0 || trainer_open(&t, &en, &e) < 0)
      fail_msg("%s", e.msg);
    en.init(en.model, 7);
    for (int s = 0; s < STEPS; s++) {
      double wsum;
      loss[k][s] = trainer_step(&t, x, target, NULL, N, 0, NULL, &wsum) / wsum;
    }
    en.store(en.model, params[k]);
    trainer_close(&t);
    engine_close(&en);
  }
  for (int s = 0; s < STEPS; s++) {
    print_message("step %d: loss %.9g (tcc), %.9g (cc-kernels)\n", s + 1, loss[0][s], loss[1][s]);
    assert_true(isfinite(loss[0][s]));
    assert_true(fabs(loss[1][s] - loss[0][s]) <= 1e-5 * (1 + fabs(loss[0][s])));
  }
  assert_true(loss[0][STEPS - 1] != loss[0][0]); /* the steps moved the weights */
  for (long i = 0; i < net->param_count; i++)
    assert_float_equal(params[1][i], params[0][i], 1e-4 * (1 + fabsf(params[0][i])));
  free(x), free(target), free(params[0]), free(params[1]);
}

/* The training C for tcc (EmitOptions.kernels) of network `src`, written to
   `file` and compiled into *net (in arena); malloc'd. */
static char *jit_source(Arena *arena, const char *file, const char *src, Net **net) {
  tu_write_text(file, src);
  int status = 0;
  *net = cli_compile_net(arena, tu_path(file), NULL, &status);
  assert_non_null(*net);
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  assert_non_null(f);
  EmitOptions opt = {.training = true, .kernels = true};
  emit_source(*net, &opt, f);
  fclose(f);
  return text;
}

/* The generated C for tcc calls the kernels for every loop of its layers;
   an engine on it infers as cc's does, and trains as cc-kernels' does. */
static const char net_src[] = "network k\n"
                              "input 12x10x6\n"
                              "conv2d 20 3x3 padding=same relu\n"
                              "maxpool 2x2\n"
                              "conv2d 17 3x2 stride=2x1 tanh\n"
                              "avgpool 2x2 stride=1\n"
                              "flatten\n"
                              "dense 9 relu\n"
                              "dense 4 softmax\n"
                              "train {\n  loss sparse_categorical_crossentropy\n"
                              "  optimizer sgd lr=0.1 momentum=0.9\n  batch 4\n}\n";

static void test_kernels_generated_c_calls_them(void **state) {
  (void)state;
  Arena arena = {0};
  Net *net;
  char *text = jit_source(&arena, "k.cnn", net_src, &net);
  /* conv1 twice (inference's with its pool fused, training's without), conv2 once;
     dense2 twice (training's without the softmax, which the loss applies) */
  assert_int_equal(tu_count(text, "cnk_conv_forward(&d"), 3);
  assert_int_equal(tu_count(text, "cnk_conv_pool_backward(&d"), 1);
  assert_int_equal(tu_count(text, "cnk_conv_backward(&d"), 1);
  /* the calls, and each kernel's prototype once */
  assert_int_equal(tu_count(text, "cnk_dense_forward("), 3 + 1);
  assert_int_equal(tu_count(text, "cnk_dense_backward("), 2 + 1);
  assert_int_equal(tu_count(text, "cnk_pool_forward("), 2 + 1); /* avgpool; maxpool for training */
  assert_int_equal(tu_count(text, "cnk_pool_backward("), 1 + 1);
  assert_int_equal(tu_count(text, "cnk_sgd("), 1 + 1);
  assert_int_equal(tu_count(text, "for (int ky"), 0); /* no loop of a layer's own */
  free(text);
  same_on_both_backends(net);
  same_training_on_both_backends(net);
  arena_free(&arena);
}

/* A residual block's sum (with its activation), its backward and the fork's
   gradients call the kernels too: identity and projection shortcuts, relu
   and tanh after the blocks. */
static const char residual_src[] = "network r\n"
                                   "input 8x8x3\n"
                                   "conv2d 16 3x3 padding=same relu\n"
                                   "residual {\n"
                                   "  conv2d 16 3x3 padding=same relu\n"
                                   "  conv2d 16 3x3 padding=same\n"
                                   "}\n"
                                   "relu\n"
                                   "residual {\n"
                                   "  conv2d 24 3x3 stride=2 padding=same relu\n"
                                   "  conv2d 24 3x3 padding=same\n"
                                   "  shortcut {\n"
                                   "    conv2d 24 1x1 stride=2\n"
                                   "  }\n"
                                   "}\n"
                                   "tanh\n"
                                   "flatten\n"
                                   "dense 5 softmax\n"
                                   "train {\n  loss sparse_categorical_crossentropy\n"
                                   "  optimizer adam lr=0.01\n  batch 4\n}\n";

static void test_kernels_residual_calls_them(void **state) {
  (void)state;
  Arena arena = {0};
  Net *net;
  char *text = jit_source(&arena, "r.cnn", residual_src, &net);
  /* each block's sum once (training runs inference's), and the prototype */
  assert_int_equal(tu_count(text, "cnk_add_forward("), 2 + 1);
  assert_int_equal(tu_count(text, "cnk_add_forward(1024, 1, a, b, y);"), 1);
  assert_int_equal(tu_count(text, "cnk_add_forward(384, 3, a, b, y);"), 1);
  /* backward: each sum's activation in training and in NAME_explain */
  assert_int_equal(tu_count(text, "cnk_act_backward(1024, 1, 16, "), 2);
  assert_int_equal(tu_count(text, "cnk_act_backward(384, 3, 24, "), 2);
  /* the forks add the two paths' gradients: with the kernel, no loop */
  assert_int_equal(tu_count(text, "cnk_add(t->g["), 2 * 2);
  assert_int_equal(tu_count(text, "a[i] + b[i]"), 0);
  assert_int_equal(tu_count(text, "[i] += t->r"), 0);
  assert_int_equal(tu_count(text, "[i] > 0.0f ?"), 0);
  free(text);
  same_on_both_backends(net);
  arena_free(&arena);
}

/* Grouped convs (depthwise with padding; at stride 2 with a depth
   multiplier; groups of 12 channels) and batchnorms (after a conv that it
   folds into for inference, after a depthwise conv that it does not) call
   the kernels in training and inference. */
static const char group_bn_src[] = "network gbn\n"
                                   "input 12x10x6\n"
                                   "conv2d 12 3x3 padding=same bias=false\n"
                                   "batchnorm\n"
                                   "relu\n"
                                   "conv2d 12 3x3 padding=1 groups=12 relu\n"
                                   "conv2d 24 3x3 stride=2 padding=same groups=12\n"
                                   "batchnorm\n"
                                   "tanh\n"
                                   "conv2d 8 3x3 groups=2 relu\n"
                                   "flatten\n"
                                   "dense 4 softmax\n"
                                   "train {\n  loss sparse_categorical_crossentropy\n"
                                   "  optimizer adam lr=0.01\n  batch 4\n}\n";

static void test_kernels_group_conv_and_batchnorm_call_them(void **state) {
  (void)state;
  Arena arena = {0};
  Net *net;
  char *text = jit_source(&arena, "gbn.cnn", group_bn_src, &net);
  /* the grouped convs' forward (training runs inference's) and backward */
  assert_int_equal(tu_count(text, "cnk_group_conv_forward(&d, "), 3);
  assert_int_equal(tu_count(text, "cnk_group_conv_backward(&d, "), 3);
  assert_int_equal(tu_count(text, "cnk_group_conv_forward(&d, 12, "), 2);
  assert_int_equal(tu_count(text, "cnk_group_conv_backward(&d, 2, "), 1);
  assert_int_equal(
      tu_count(text, "static const cnk_conv d = {12, 24, 3, 3, 2, 2, 13, 11, 6, 5, 0, 0, 0, 0};"),
      2);
  /* the batchnorms' batch statistics, normalization and backward, and the
     second's inference form (the first folds into its conv) */
  assert_int_equal(tu_count(text, "cnk_bn_sums(120, 12, x, v);"), 1);
  assert_int_equal(tu_count(text, "cnk_bn_sums(30, 24, x, v);"), 1);
  assert_int_equal(tu_count(text, "cnk_bn_squares("), 2 + 1);
  assert_int_equal(tu_count(text, "cnk_bn_scale(120, 12, 1, 12, x, sc, shc, y);"), 1);
  assert_int_equal(tu_count(text, "cnk_bn_scale(30, 24, 3, 24, x, sc, shc, y);"), 1);
  assert_int_equal(tu_count(text, "cnk_bn_scale(30, 24, 3, 720, x, sc, shc, y);"), 1);
  assert_int_equal(tu_count(text, "cnk_bn_grad_sums("), 2 + 1);
  assert_int_equal(tu_count(text, "cnk_bn_dx("), 2 + 1);
  /* no loop of a layer's own but NAME_explain's batchnorm backward's */
  assert_int_equal(tu_count(text, "for (int ky"), 0);
  assert_int_equal(tu_count(text, "for (int gi"), 0);
  assert_int_equal(tu_count(text, "for (long p"), 2);
  free(text);
  same_on_both_backends(net);
  arena_free(&arena);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_kernels_conv_forward),
      cmocka_unit_test(test_kernels_conv_backward),
      cmocka_unit_test(test_kernels_conv_pool_backward),
      cmocka_unit_test(test_kernels_conv_pool_backward_few_channels),
      cmocka_unit_test(test_kernels_dense),
      cmocka_unit_test(test_kernels_add_and_act_backward),
      cmocka_unit_test(test_kernels_group_conv),
      cmocka_unit_test(test_kernels_batchnorm),
      cmocka_unit_test(test_kernels_generated_c_calls_them),
      cmocka_unit_test(test_kernels_residual_calls_them),
      cmocka_unit_test(test_kernels_group_conv_and_batchnorm_call_them),
  };
  return cmocka_run_group_tests(tests, tu_setup, tu_teardown);
}
