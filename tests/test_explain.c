/*
 * test_explain.c: explanations, from the generated NAME_explain to
 * `cnngen explain`.
 *
 * Gradients: small networks that together take every path NAME_explain adds
 * (a padded first conv, which training never differentiates down to the
 * image; a first conv doing its maxpool's backward; the Grad-CAM conv pulled
 * out of its fused maxpool; activation and pooling layers before the first
 * layer with parameters; dropout; globalavgpool; a separate softmax; a
 * spatial output; no conv at all) are compiled through libtcc with `float`
 * defined as `double`, so the generated C runs in double precision. Their
 * input gradients are compared with central differences of the score
 * NAME_explain returns, over every input value:
 *   |analytic - numeric| <= 1e-5 * (|analytic| + |numeric|) + 1e-8 * max |dx|.
 * In double, with h = 1e-6, the differences are ~1e-10 (truncation h^2,
 * rounding 1e-16 / h), so the bound holds with room for correct code and
 * catches any wrong term (a dropped path, a wrong index, a missing
 * activation derivative are all relative errors of order 1). The same
 * networks in float, through tcc and through cc (vector extensions), must
 * agree with the double results to 1e-3 of the largest value (float rounds
 * at 6e-8 per operation; a few hundred terms stay far below 1e-3).
 *
 * The score is the logit: for softmax outputs, s(a) - s(b) = log(y_a / y_b).
 * The Grad-CAM arrays: the activations and the gradient by a hand
 * calculation on conv 1x1 -> flatten -> dense (PyTorch-layout weights,
 * flatten in C, H, W order), and the gradient by the chain rule through
 * finite differences on the other networks (the score depends on the image
 * only through the last conv's output A, so ds = sum_q ds/dA_q dA_q).
 *
 * The generated code builds without a warning under gcc and clang
 * (-std=c99 -Wall -Wextra -pedantic -Werror) and tcc -Wall -Werror.
 *
 * The map arithmetic (saliency, Grad-CAM weights, bilinear resize, colours)
 * against hand-computed values, and the command end to end: a PNG of the
 * stated size whose heat sits where the network looks, IDX input with
 * --index, and bad input refused with exit status 1 and no file.
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

#include "../compiler/compile.h"
#include "../compiler/emit.h"
#include "backend.h"
#include "cli.h"
#include "explain.h"
#include "formats/idx.h"
#include "formats/image.h"
#include "formats/safetensors.h"
#include "testutil.h"

/* ---- the networks ---- */

static const char *const nets[] = {
    /* padded first conv (dx through the unpad), maxpool not fused (KW * C = 3),
       conv 8 -> 16 fused with its maxpool in training and the Grad-CAM layer
       (unfused for explain, transposed weights), dropout, softmax */
    "network lenet\ninput 12x12x1\nconv2d 8 3x3 padding=same relu\nmaxpool 2x2\n"
    "conv2d 16 3x3 relu\nmaxpool 2x2\nflatten\ndropout 0.3\ndense 10 relu\ndense 4 softmax\n",
    /* tanh and avgpool as layers before the first with parameters, tanh and
       sigmoid convs, avgpool, linear output */
    "network smooth\ninput 9x9x3\ntanh\navgpool 2x2 stride=1\nconv2d 6 3x3 tanh\navgpool 2x2\n"
    "conv2d 5 2x2 sigmoid\nflatten\ndense 3\n",
    /* the first conv does its maxpool's backward (KW * C = 24) with dx; the
       Grad-CAM conv is 1x1 on 8 channels; globalavgpool; sigmoid outputs */
    "network fusedfirst\ninput 8x8x8\nconv2d 8 3x3 relu\nmaxpool 2x2\nconv2d 8 1x1 relu\n"
    "globalavgpool\ndense 3 sigmoid\n",
    /* strided same padding, a linear Grad-CAM conv, softmax as its own layer */
    "network gap\ninput 7x7x2\nconv2d 8 3x3 stride=2 padding=same relu\nconv2d 5 1x1\n"
    "globalavgpool\nsoftmax\n",
    /* a spatial output: the Grad-CAM conv is the output layer */
    "network spatial\ninput 6x6x3\nconv2d 4 3x3 relu\nconv2d 3 2x2 stride=2\n",
    /* a flatten as the output (PyTorch's C, H, W order), dropout and sigmoid after it */
    "network flatout\ninput 3x2x4\nconv2d 3 2x1 tanh\nflatten\ndropout 0.2\nsigmoid\n",
    /* no conv: dense only, dropout between */
    "network noconv\ninput 3x4x2\nflatten\ndense 6 tanh\ndropout 0.5\ndense 3 softmax\n",
    /* residual blocks: a block on the input (dx is the two paths' sum), an
       identity block, the Grad-CAM conv in a projection shortcut */
    "network blocks\ninput 6x6x2\nresidual {\n  relu\n  conv2d 2 3x3 padding=same\n}\n"
    "conv2d 8 3x3 padding=same relu\nresidual {\n  conv2d 8 3x3 padding=same relu\n"
    "  maxpool 2x2\n  shortcut {\n    conv2d 8 2x2 stride=2\n  }\n}\nrelu\nflatten\n"
    "dense 3 softmax\n",
    /* grouped convs of 8 channels a group: the image's gradient and the next
       conv's through weights transposed per group, a depth multiplier */
    "network grouped\ninput 5x6x16\nconv2d 16 3x3 padding=1 groups=2 relu\n"
    "conv2d 24 3x3 groups=2 relu\nconv2d 48 1x1 groups=24\nglobalavgpool\ndense 3\n",
};
enum { NNETS = sizeof nets / sizeof nets[0] };

/* ---- compiling in process (the build itself: testutil.h) ---- */

typedef double (*ExplainD)(const void *m, void *w, void *g, const double *x, int cls, double *y,
                           double *dx, double *act, double *grad);
typedef float (*ExplainF)(const void *m, void *w, void *g, const float *x, int cls, float *y,
                          float *dx, float *act, float *grad);

typedef struct Compiled {
  Arena arena;
  Net *net;
  Program *prog;
  bool dbl;
  void *m, *w, *g; /* model, work, grads */
  long in, out, cam;
  void *explain;
} Compiled;

static void *sym(Compiled *c, const char *suffix) {
  return tu_symbol(c->prog, c->net, suffix);
}

static long cam_size(const Net *net) {
  long size = 0;
  for (int i = 0; i < net->nlayers; i++)
    if (net->layers[i].op == OP_CONV2D)
      size = shape_size(net->layers[i].out);
  return size;
}

/* Compiles net source `src` with training code; params (PyTorch layout,
   doubles) are loaded when not NULL, else NAME_init(seed 7) fills them. */
static void compile_net(Compiled *c, const char *src, BackendKind kind, bool dbl,
                        const double *params) {
  memset(c, 0, sizeof *c);
  c->net = tu_compile_ok(&c->arena, src);
  c->dbl = dbl;
  c->prog = tu_build_training(c->net, kind, dbl);
  c->m = tu_zalloc(tu_call_size(c->prog, c->net, "_t_model_bytes"));
  c->w = tu_zalloc(tu_call_size(c->prog, c->net, "_t_work_bytes"));
  c->g = tu_zalloc(tu_call_size(c->prog, c->net, "_grads_bytes"));
  c->explain = sym(c, "_explain");
  c->in = shape_size(c->net->input);
  c->out = shape_size(c->net->output);
  c->cam = cam_size(c->net);
  long np = c->net->param_count;
  if (params && dbl) {
    void (*load)(void *, const double *);
    void *p = sym(c, "_load");
    memcpy(&load, &p, sizeof p);
    load(c->m, params);
  } else if (params) {
    void (*load)(void *, const float *);
    void *p = sym(c, "_load");
    memcpy(&load, &p, sizeof p);
    float *fp = malloc(sizeof(float) * (size_t)(np + 1));
    for (long i = 0; i < np; i++)
      fp[i] = (float)params[i];
    load(c->m, fp);
    free(fp);
  } else {
    void (*init)(void *, uint64_t);
    void *p = sym(c, "_init");
    memcpy(&init, &p, sizeof p);
    init(c->m, 7);
  }
}

static void release(Compiled *c) {
  free(c->m), free(c->w), free(c->g);
  program_free(c->prog);
  arena_free(&c->arena);
}

/* The parameters as the double build stores them (PyTorch layout). */
static double *stored_params(Compiled *c) {
  assert_true(c->dbl);
  double *p = malloc(sizeof(double) * (size_t)(c->net->param_count + 1));
  void (*store)(const void *, double *);
  void *s = sym(c, "_store");
  memcpy(&store, &s, sizeof s);
  store(c->m, p);
  return p;
}

/* NAME_explain in double: the score; any output may be NULL. */
static double explain_d(Compiled *c, const double *x, int cls, double *y, double *dx, double *act,
                        double *grad) {
  ExplainD f;
  memcpy(&f, &c->explain, sizeof f);
  return f(c->m, c->w, c->g, x, cls, y, dx, act, grad);
}

/* NAME_explain in float, with double input and outputs. */
static double explain_f(Compiled *c, const double *x, int cls, double *dx, double *act,
                        double *grad) {
  ExplainF f;
  memcpy(&f, &c->explain, sizeof f);
  float *xf = malloc(sizeof(float) * (size_t)c->in), *dxf = malloc(sizeof(float) * (size_t)c->in);
  float *af = malloc(sizeof(float) * (size_t)(c->cam + 1));
  float *gf = malloc(sizeof(float) * (size_t)(c->cam + 1));
  for (long i = 0; i < c->in; i++)
    xf[i] = (float)x[i];
  double s = f(c->m, c->w, c->g, xf, cls, NULL, dxf, af, gf);
  for (long i = 0; i < c->in; i++)
    dx[i] = dxf[i];
  for (long i = 0; i < c->cam; i++)
    act[i] = af[i], grad[i] = gf[i];
  free(xf), free(dxf), free(af), free(gf);
  return s;
}

/* Deterministic pseudo-random numbers in [0, 1). */
static double uniform(uint64_t *s) {
  *s = *s * 6364136223846793005u + 1442695040888963407u;
  return (double)(*s >> 11) / 9007199254740992.0;
}

static double *random_image(long n, uint64_t seed) {
  double *x = malloc(sizeof(double) * (size_t)n);
  for (long i = 0; i < n; i++)
    x[i] = uniform(&seed);
  return x;
}

static double max_abs(const double *v, long n) {
  double m = 0;
  for (long i = 0; i < n; i++)
    m = fmax(m, fabs(v[i]));
  return m;
}

/* The classes each network is checked on: the first, the last, one between. */
static int classes(long out, int *cls) {
  int n = 0;
  cls[n++] = 0;
  if (out > 2)
    cls[n++] = (int)(out / 2);
  if (out > 1)
    cls[n++] = (int)out - 1;
  return n;
}

/* ---- the input gradient ---- */

static void test_explain_dx_matches_central_differences(void **state) {
  (void)state;
  const double h = 1e-6;
  for (int k = 0; k < NNETS; k++) {
    Compiled c;
    compile_net(&c, nets[k], BACKEND_TCC, true, NULL);
    double *x = random_image(c.in, 100 + (uint64_t)k), *dx = malloc(sizeof(double) * (size_t)c.in);
    int cls[3], ncls = classes(c.out, cls);
    for (int ci = 0; ci < ncls; ci++) {
      double s = explain_d(&c, x, cls[ci], NULL, dx, NULL, NULL);
      double big = max_abs(dx, c.in);
      assert_true(big > 0); /* a score that ignores the image would prove nothing */
      for (long i = 0; i < c.in; i++) {
        double keep = x[i];
        x[i] = keep + h;
        double up = explain_d(&c, x, cls[ci], NULL, NULL, NULL, NULL);
        x[i] = keep - h;
        double down = explain_d(&c, x, cls[ci], NULL, NULL, NULL, NULL);
        x[i] = keep;
        double num = (up - down) / (2 * h), a = dx[i];
        if (fabs(a - num) > 1e-5 * (fabs(a) + fabs(num)) + 1e-8 * big)
          fail_msg("%s class %d: ds/dx[%ld] is %.12g, central differences give %.12g (score %g)",
                   c.net->name, cls[ci], i, a, num, s);
      }
    }
    free(x), free(dx);
    release(&c);
  }
}

/* The score is the output layer's value before its activation (checked in
   double through the outputs y NAME_explain writes), and those outputs are
   NAME_infer's (checked in float: the inference code's vectorized exp and
   tanh are written for float, so it is not run with float as double). */
static void test_explain_score_is_the_logit(void **state) {
  (void)state;
  for (int k = 0; k < NNETS; k++) {
    Compiled c;
    compile_net(&c, nets[k], BACKEND_TCC, true, NULL);
    double *x = random_image(c.in, 200 + (uint64_t)k);
    double *y = malloc(sizeof(double) * (size_t)c.out), *s = malloc(sizeof(double) * (size_t)c.out);
    for (int j = 0; j < c.out; j++)
      s[j] = explain_d(&c, x, j, y, NULL, NULL, NULL);
    Act act = net_output_act(c.net);
    for (int j = 0; j < c.out; j++) {
      double want = act == ACT_SOFTMAX   ? s[j] - s[0] - log(y[j] / y[0])
                    : act == ACT_SIGMOID ? 1 / (1 + exp(-s[j])) - y[j]
                    : act == ACT_TANH    ? tanh(s[j]) - y[j]
                                         : s[j] - y[j];
      if (fabs(want) > 1e-9)
        fail_msg("%s class %d: score %.12g does not give output %.12g through %s", c.net->name, j,
                 s[j], y[j], act_words[act]);
    }
    /* out of range: nothing written, 0 returned */
    y[0] = 42;
    assert_true(explain_d(&c, x, (int)c.out, y, NULL, NULL, NULL) == 0);
    assert_true(explain_d(&c, x, -1, y, NULL, NULL, NULL) == 0);
    assert_true(y[0] == 42);

    double *params = stored_params(&c);
    Compiled f;
    compile_net(&f, nets[k], BACKEND_TCC, false, params);
    float *xf = malloc(sizeof(float) * (size_t)f.in), *yf = malloc(sizeof(float) * (size_t)f.out);
    float *yi = malloc(sizeof(float) * (size_t)f.out);
    for (long i = 0; i < f.in; i++)
      xf[i] = (float)x[i];
    ExplainF ex;
    memcpy(&ex, &f.explain, sizeof ex);
    ex(f.m, f.w, f.g, xf, 0, yf, NULL, NULL, NULL);
    void (*infer)(const void *, void *, const float *, int, float *);
    void *p = sym(&f, "_infer");
    memcpy(&infer, &p, sizeof p);
    infer(f.m, f.w, xf, 1, yi);
    for (int j = 0; j < f.out; j++)
      if (fabsf(yf[j] - yi[j]) > 1e-5f * (1 + fabsf(yi[j])))
        fail_msg("%s: output %d is %.9g, NAME_infer gives %.9g", c.net->name, j, yf[j], yi[j]);
    free(xf), free(yf), free(yi), free(params);
    release(&f);
    free(x), free(y), free(s);
    release(&c);
  }
}

/* Float through tcc (8-float structs) and cc (vector extensions) agrees
   with the double build on the same parameters. */
static void test_explain_float_builds_agree_with_double(void **state) {
  (void)state;
  for (int k = 0; k < NNETS; k++) {
    Compiled d;
    compile_net(&d, nets[k], BACKEND_TCC, true, NULL);
    double *params = stored_params(&d);
    double *x = random_image(d.in, 300 + (uint64_t)k);
    long cam = d.cam + 1;
    double *dx = malloc(sizeof(double) * (size_t)d.in),
           *fdx = malloc(sizeof(double) * (size_t)d.in);
    double *act = malloc(sizeof(double) * (size_t)cam),
           *fact = malloc(sizeof(double) * (size_t)cam);
    double *grad = malloc(sizeof(double) * (size_t)cam),
           *fgrad = malloc(sizeof(double) * (size_t)cam);
    const BackendKind kinds[] = {BACKEND_TCC, BACKEND_CC};
    for (int b = 0; b < 2; b++) {
      Compiled f;
      compile_net(&f, nets[k], kinds[b], false, params);
      int cls[3], ncls = classes(d.out, cls);
      for (int ci = 0; ci < ncls; ci++) {
        double s = explain_d(&d, x, cls[ci], NULL, dx, act, grad);
        double fs = explain_f(&f, x, cls[ci], fdx, fact, fgrad);
        assert_true(fabs(s - fs) <= 1e-3 * (1 + fabs(s)));
        double bx = max_abs(dx, d.in), ba = max_abs(act, d.cam), bg = max_abs(grad, d.cam);
        for (long i = 0; i < d.in; i++)
          if (fabs(dx[i] - fdx[i]) > 1e-3 * bx)
            fail_msg("%s (%s) class %d: dx[%ld] %.9g in float, %.9g in double", d.net->name,
                     b ? "cc" : "tcc", cls[ci], i, fdx[i], dx[i]);
        for (long i = 0; i < d.cam; i++) {
          assert_true(fabs(act[i] - fact[i]) <= 1e-3 * ba);
          assert_true(fabs(grad[i] - fgrad[i]) <= 1e-3 * bg);
        }
      }
      release(&f);
    }
    free(params), free(x), free(dx), free(fdx), free(act), free(fact), free(grad), free(fgrad);
    release(&d);
  }
}

/* ---- Grad-CAM's arrays ---- */

/* conv2d 3 1x1 relu -> flatten -> dense 4: A[p][f] = relu(b_f + sum_c
   W[f][c] x[p][c]) and ds/dA[p][f] = D[cls][f * HW + p] (PyTorch's flatten
   is C, H, W), computed here from the PyTorch-layout parameters. */
static void test_explain_gradcam_arrays_by_hand(void **state) {
  (void)state;
  const char *src = "network hand\ninput 4x5x2\nconv2d 3 1x1 relu\nflatten\ndense 4\n";
  const int H = 4, W = 5, C = 2, F = 3, HW = H * W, OUT = 4;
  Arena a = {0};
  Net *net = tu_compile_ok(&a, src);
  const long np = net->param_count; /* W 3x2, b 3, D 4x60, e 4 */
  assert_int_equal(np, F * C + F + OUT * F * HW + OUT);
  arena_free(&a);
  uint64_t seed = 5;
  double *p = malloc(sizeof(double) * (size_t)np);
  for (long i = 0; i < np; i++)
    p[i] = uniform(&seed) - 0.5;
  const double *cw = p, *cb = p + F * C, *dw = p + F * C + F;
  Compiled c;
  compile_net(&c, src, BACKEND_TCC, true, p);
  double *x = random_image(c.in, 9);
  double act[60], grad[60], dx[40];
  assert_int_equal(c.cam, HW * F);
  for (int cls = 0; cls < OUT; cls++) {
    explain_d(&c, x, cls, NULL, dx, act, grad);
    for (int q = 0; q < HW; q++)
      for (int f = 0; f < F; f++) {
        double z = cb[f];
        for (int ch = 0; ch < C; ch++)
          z += cw[f * C + ch] * x[q * C + ch];
        assert_true(fabs(act[q * F + f] - fmax(z, 0)) <= 1e-12);
        assert_true(fabs(grad[q * F + f] - dw[cls * F * HW + f * HW + q]) <= 1e-12);
      }
    for (int q = 0; q < HW; q++)
      for (int ch = 0; ch < C; ch++) {
        double want = 0;
        for (int f = 0; f < F; f++)
          want += (act[q * F + f] > 0) * grad[q * F + f] * cw[f * C + ch];
        assert_true(fabs(dx[q * C + ch] - want) <= 1e-12);
      }
  }
  free(p), free(x);
  release(&c);
}

/* For each input value: (s(x+h) - s(x-h)) / 2h = sum_q ds/dA_q (A_q(x+h) -
   A_q(x-h)) / 2h, with ds/dA from NAME_explain at x. */
static void test_explain_gradcam_gradient_by_chain_rule(void **state) {
  (void)state;
  const double h = 1e-6;
  for (int k = 0; k < NNETS; k++) {
    Compiled c;
    compile_net(&c, nets[k], BACKEND_TCC, true, NULL);
    if (!c.cam) {
      release(&c);
      continue;
    }
    double *x = random_image(c.in, 400 + (uint64_t)k);
    double *grad = malloc(sizeof(double) * (size_t)c.cam),
           *up = malloc(sizeof(double) * (size_t)c.cam);
    double *down = malloc(sizeof(double) * (size_t)c.cam),
           *dx = malloc(sizeof(double) * (size_t)c.in);
    int cls = (int)c.out - 1;
    explain_d(&c, x, cls, NULL, dx, up, grad);
    assert_true(max_abs(grad, c.cam) > 0);
    double big = max_abs(dx, c.in);
    for (long i = 0; i < c.in; i++) {
      double keep = x[i];
      x[i] = keep + h;
      double su = explain_d(&c, x, cls, NULL, NULL, up, NULL);
      x[i] = keep - h;
      double sd = explain_d(&c, x, cls, NULL, NULL, down, NULL);
      x[i] = keep;
      double chain = 0;
      for (long q = 0; q < c.cam; q++)
        chain += grad[q] * (up[q] - down[q]) / (2 * h);
      double num = (su - sd) / (2 * h);
      if (fabs(chain - num) > 1e-5 * (fabs(chain) + fabs(num)) + 1e-8 * big)
        fail_msg("%s: input %ld: sum dS/dA dA/dx = %.12g, ds/dx = %.12g", c.net->name, i, chain,
                 num);
    }
    free(x), free(grad), free(up), free(down), free(dx);
    release(&c);
  }
}

/* ---- a flatten as the output ---- */

/* Training sees the outputs in the order inference writes them, PyTorch's
   C, H, W: the loss NAME_accumulate_y returns for a target is the mse of
   NAME_infer's outputs against it, and its outputs are NAME_infer's. */
static void test_explain_flatten_output_trains_in_chw_order(void **state) {
  (void)state;
  const char *srcs[] = {
      "network flatmse\ninput 3x2x4\nconv2d 3 2x1 tanh\nflatten\ntrain {\n  loss mse\n}\n",
      "network flatsig\ninput 2x3x2\nconv2d 4 1x1\nflatten\nsigmoid\ntrain {\n  loss mse\n}\n",
  };
  for (int k = 0; k < 2; k++) {
    Compiled c;
    compile_net(&c, srcs[k], BACKEND_TCC, false, NULL);
    uint64_t seed = 11;
    float *x = malloc(sizeof(float) * (size_t)c.in), *t = malloc(sizeof(float) * (size_t)c.out);
    float *y = malloc(sizeof(float) * (size_t)c.out), *yi = malloc(sizeof(float) * (size_t)c.out);
    for (long i = 0; i < c.in; i++)
      x[i] = (float)uniform(&seed);
    for (long i = 0; i < c.out; i++)
      t[i] = (float)uniform(&seed);
    void (*infer)(const void *, void *, const float *, int, float *);
    double (*acc)(const void *, void *, void *, const float *, const float *, const float *, int,
                  uint64_t, float *);
    void *p = sym(&c, "_infer");
    memcpy(&infer, &p, sizeof p);
    p = sym(&c, "_accumulate_y");
    memcpy(&acc, &p, sizeof p);
    infer(c.m, c.w, x, 1, yi);
    double loss = acc(c.m, c.w, c.g, x, t, NULL, 1, 0, y);
    for (long i = 0; i < c.out; i++)
      if (fabsf(y[i] - yi[i]) > 1e-5f * (1 + fabsf(yi[i])))
        fail_msg("%s: training output %ld is %.9g, NAME_infer's %.9g", c.net->name, i, y[i], yi[i]);
    double want = 0;
    for (long i = 0; i < c.out; i++)
      want += ((double)yi[i] - t[i]) * ((double)yi[i] - t[i]) / (double)c.out;
    assert_true(fabs(loss - want) <= 1e-5 * (1 + want));
    free(x), free(t), free(y), free(yi);
    release(&c);
  }
}

/* ---- the generated C builds cleanly ---- */

static void test_explain_generated_code_builds_without_warnings(void **state) {
  (void)state;
  const char *compilers[] = {
      "gcc -std=c99 -Wall -Wextra -pedantic -Werror -O1",
      "gcc -std=c99 -Wall -Wextra -pedantic -Werror -O2 -march=native",
      "clang -std=c99 -Wall -Wextra -pedantic -Werror -O1",
      "tcc -Wall -Werror",
  };
  for (int k = 0; k < NNETS; k++) {
    Arena a = {0};
    Net *net = tu_compile_ok(&a, nets[k]);
    char hname[96], cname[96];
    snprintf(hname, sizeof hname, "%s.h", net->name);
    snprintf(cname, sizeof cname, "%s.c", net->name);
    EmitOptions opt = {.training = true, .header_name = hname};
    for (int part = 0; part < 2; part++) {
      FILE *f = fopen(tu_path(part ? cname : hname), "w");
      assert_non_null(f);
      if (part)
        emit_source(net, &opt, f);
      else
        emit_header(net, &opt, f);
      assert_int_equal(fclose(f), 0);
    }
    for (size_t i = 0; i < sizeof compilers / sizeof compilers[0]; i++)
      if (tu_shell("%s -c -o %s.o %s", compilers[i], net->name, cname) != 0)
        fail_msg("%s: '%s' does not build it cleanly:\n%s", net->name, compilers[i], tu_err);
    arena_free(&a);
  }
}

/* ---- the map arithmetic ---- */

static void test_explain_saliency_is_max_abs_over_channels(void **state) {
  (void)state;
  const float dx[2 * 2 * 3] = {0.1f, -0.4f, 0.2f, 0, 0, 0, -0.8f, 0.2f, 0.1f, 0.3f, 0.3f, -0.2f};
  float map[4];
  assert_float_equal(explain_saliency(dx, 2, 2, 3, map), 0.8f, 1e-7);
  const float want[4] = {0.5f, 0.0f, 1.0f, 0.375f};
  for (int i = 0; i < 4; i++)
    assert_float_equal(map[i], want[i], 1e-6);
  const float zero[3] = {0};
  assert_float_equal(explain_saliency(zero, 1, 1, 3, map), 0, 0);
  assert_float_equal(map[0], 0, 0);
}

static void test_explain_resize_is_bilinear_with_centres_aligned(void **state) {
  (void)state;
  const float src[4] = {0, 1, 2, 3};
  float dst[16];
  explain_resize(src, 2, 2, dst, 4, 4);
  /* rows at source y = 0 (clamped), 0.25, 0.75, 1 (clamped); likewise x */
  const float want[16] = {0,    0.25f, 0.75f, 1,    0.5f, 0.75f, 1.25f, 1.5f,
                          1.5f, 1.75f, 2.25f, 2.5f, 2,    2.25f, 2.75f, 3};
  for (int i = 0; i < 16; i++)
    assert_float_equal(dst[i], want[i], 1e-6);
  float one;
  explain_resize(src, 2, 2, &one, 1, 1); /* the centre: the mean */
  assert_float_equal(one, 1.5f, 1e-6);
}

/* act and grad [1][2][2]: alpha = (mean grad over the 2 positions) =
   (0.5, -1); cam = relu(0.5 a0 - a1) per position. */
static void test_explain_gradcam_weights_channels_by_mean_gradient(void **state) {
  (void)state;
  const float act[4] = {4, 1, 2, 3};   /* position 0: 4, 1; position 1: 2, 3 */
  const float grad[4] = {1, -2, 0, 0}; /* alpha = (0.5, -1) */
  float map[2];
  float top = explain_gradcam(act, grad, 1, 2, 2, 1, 2, map);
  /* cam = (relu(2 - 1), relu(1 - 3)) = (1, 0) */
  assert_float_equal(top, 1, 1e-6);
  assert_float_equal(map[0], 1, 1e-6);
  assert_float_equal(map[1], 0, 1e-6);
  const float neg[4] = {-1, 0, -1, 0}; /* every position against the class */
  assert_float_equal(explain_gradcam(act, neg, 1, 2, 2, 1, 2, map), 0, 0);
  assert_float_equal(map[0], 0, 0);
  assert_float_equal(map[1], 0, 0);
}

static void test_explain_colours_run_blue_to_red(void **state) {
  (void)state;
  uint8_t lo[3], mid[3], hi[3];
  explain_colour(0, lo);
  explain_colour(0.5f, mid);
  explain_colour(1, hi);
  assert_true(lo[2] > 100 && lo[0] == 0 && lo[1] == 0);
  assert_true(mid[1] == 255 && mid[0] < 200 && mid[2] < 200);
  assert_true(hi[0] > 100 && hi[1] == 0 && hi[2] == 0);
  explain_colour(-3, mid); /* clamped */
  assert_memory_equal(mid, lo, 3);
  assert_int_equal(explain_scale(28, 28), 8);
  assert_int_equal(explain_scale(32, 16), 7);
  assert_int_equal(explain_scale(1000, 3), 1);
}

/* ---- the command ---- */

/* input 6x6x1 -> flatten -> dense 2: class 0 looks only at pixel (1, 4),
   class 1 at every pixel a little. */
static const char pixel_net[] = "network pixel\ninput 6x6x1\nflatten\ndense 2 softmax\n";
static const char conv_net[] =
    "network small\ninput 6x6x1\nconv2d 4 3x3 relu\nmaxpool 2x2\nflatten\ndense 3 softmax\n";

static void write_weights(const char *name, const char *src, const float *params) {
  Arena a = {0};
  Net *net = tu_compile_ok(&a, src);
  Err e = {0};
  if (cli_write_weights(tu_path(name), net, params, NULL, &e) < 0)
    fail_msg("%s", e.msg);
  arena_free(&a);
}

/* A 6x6 PGM (P2): background 40, pixel (1, 4) bright. */
static void write_pgm(const char *name, int h, int w) {
  char text[4096];
  int k = snprintf(text, sizeof text, "P2\n%d %d\n255\n", w, h);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      k += snprintf(text + k, sizeof text - (size_t)k, "%d%c", y == 1 && x == 4 ? 250 : 40,
                    x == w - 1 ? '\n' : ' ');
  tu_write_text(name, text);
}

static int setup_files(void) {
  float p[2 * 36 + 2] = {0};
  p[0 * 36 + 1 * 6 + 4] = 3.0f; /* class 0: pixel (1, 4) */
  for (int i = 0; i < 36; i++)
    p[36 + i] = 0.05f;
  write_weights("pixel.safetensors", pixel_net, p);
  tu_write_text("pixel.cnn", pixel_net);
  tu_write_text("small.cnn", conv_net);
  float q[4 * 9 + 4 + 3 * 16 + 3];
  uint64_t seed = 3;
  for (size_t i = 0; i < sizeof q / sizeof q[0]; i++)
    q[i] = (float)(uniform(&seed) - 0.3);
  write_weights("small.safetensors", conv_net, q);
  write_pgm("six.pgm", 6, 6);
  write_pgm("five.pgm", 5, 6);
  uint8_t px[3 * 36];
  for (int i = 0; i < 3 * 36; i++)
    px[i] = (uint8_t)(i * 7);
  IdxImages im = {.n = 3, .h = 6, .w = 6, .c = 1, .data = px};
  Err e = {0};
  if (idx_write_images(tu_path("three-idx3-ubyte"), &im, &e) < 0)
    fail_msg("%s", e.msg);
  return 0;
}

static int setup(void **state) {
  if (tu_setup(state) != 0)
    return -1;
  return setup_files();
}

static void read_png(const char *name, Image *img) {
  Err e = {0};
  if (image_read(tu_path(name), img, &e) < 0)
    fail_msg("%s", e.msg);
}

/* The pixel network's class 0 depends on pixel (1, 4) alone: the heat map is
   red there and blue elsewhere; the left panel is the image itself. */
static void test_explain_command_saliency_picture(void **state) {
  (void)state;
  int rc = tu_run("explain pixel.cnn --weights pixel.safetensors --backend tcc --class 0 six.pgm "
                  "--out map.png");
  if (rc != 0)
    fail_msg("exit %d: %s", rc, tu_err);
  assert_contains(tu_out, "class 0");
  assert_contains(tu_out, "map.png");
  Image img;
  read_png("map.png", &img);
  const int s = explain_scale(6, 6); /* 37 */
  assert_int_equal(img.h, 6 * s);
  assert_int_equal(img.w, 2 * 6 * s + EXPLAIN_GAP);
  assert_int_equal(img.c, 3);
#define PX(y, x) (img.data + ((long)(y)*img.w + (x)) * 3)
  const int right = 6 * s + EXPLAIN_GAP;
  const uint8_t *hot = PX(1 * s + s / 2, right + 4 * s + s / 2);
  const uint8_t *cold = PX(4 * s + s / 2, right + 0 * s + s / 2);
  assert_true(hot[0] > hot[2] + 40);   /* red over the pixel */
  assert_true(cold[2] > cold[0] + 40); /* blue far from it */
  const uint8_t *bright = PX(1 * s + 1, 4 * s + 1), *dark = PX(0, 0);
  assert_int_equal(bright[0], 250);
  assert_int_equal(dark[0], 40);
  assert_int_equal(PX(0, 6 * s)[1], 255); /* the gap */
#undef PX
  image_free(&img);
}

static void test_explain_command_gradcam_and_idx(void **state) {
  (void)state;
  int rc = tu_run("explain small.cnn --weights small.safetensors --method gradcam --index 2 "
                  "three-idx3-ubyte --out cam.png");
  if (rc != 0)
    fail_msg("exit %d: %s", rc, tu_err);
  assert_contains(tu_out, "class ");
  Image img;
  read_png("cam.png", &img);
  const int s = explain_scale(6, 6);
  assert_int_equal(img.h, 6 * s);
  assert_int_equal(img.w, 2 * 6 * s + EXPLAIN_GAP);
  /* the left panel is image 2 of the file: byte (2 * 36 + 0) * 7 mod 256 */
  assert_int_equal(img.data[0], (uint8_t)(72 * 7));
  image_free(&img);
  /* the top class by default: the one predict names first */
  assert_int_equal(tu_run("predict small.cnn --weights small.safetensors --backend tcc --top 1 "
                          "--json three-idx3-ubyte"),
                   0);
  const char *key = "\"index\": 2, \"file\": \"three-idx3-ubyte\", \"class\": ";
  char *third = strstr(tu_out, key);
  assert_non_null(third);
  int cls = atoi(third + strlen(key));
  assert_int_equal(tu_run("explain small.cnn --weights small.safetensors --backend tcc --index 2 "
                          "three-idx3-ubyte --out sal.png"),
                   0);
  char want[32];
  snprintf(want, sizeof want, "class %d ", cls);
  assert_contains(tu_out, want);
}

/* The messages name Grad-CAM's layer: the last convolution, or where that
   is inside a residual block, the block's sum (net_cam_layer). */
static void test_explain_command_names_the_gradcam_layer(void **state) {
  (void)state;
  assert_int_equal(tu_run("explain small.cnn --weights small.safetensors --backend tcc "
                          "--method gradcam six.pgm --out conv.png"),
                   0);
  assert_contains(tu_out, "(Grad-CAM on conv1 (line 3, 4x4x4), ");
  static const char block_net[] = "network blk\ninput 6x6x1\nconv2d 2 3x3 padding=1 relu\n"
                                  "residual {\n  conv2d 2 3x3 padding=1 relu\n"
                                  "  conv2d 2 3x3 padding=1\n}\nrelu\nglobalavgpool\n"
                                  "dense 3 softmax\n";
  float q[20 + 38 + 38 + 9];
  uint64_t seed = 5;
  for (size_t i = 0; i < sizeof q / sizeof q[0]; i++)
    q[i] = (float)(uniform(&seed) - 0.3);
  write_weights("blk.safetensors", block_net, q);
  tu_write_text("blk.cnn", block_net);
  int rc = tu_run("explain blk.cnn --weights blk.safetensors --backend tcc --method gradcam "
                  "six.pgm --out blk.png");
  if (rc != 0)
    fail_msg("exit %d: %s", rc, tu_err);
  assert_contains(tu_out, "(Grad-CAM on the sum of the residual block at line 4 (6x6x2), ");
  assert_null(strstr(tu_out, "convolution"));
  assert_true(tu_exists("blk.png"));
}

/* Each refused with status 1, a one-line message naming what is wrong, and
   no file. */
static void test_explain_command_refuses_bad_input(void **state) {
  (void)state;
  static const struct {
    const char *args, *says;
  } cases[] = {
      {"pixel.cnn --weights pixel.safetensors five.pgm", "five.pgm: image is 5x6"},
      {"pixel.cnn --weights pixel.safetensors --class 2 six.pgm", "--class 2 is out of range"},
      {"pixel.cnn --weights pixel.safetensors --method gradcam six.pgm", "--method saliency"},
      {"pixel.cnn --weights pixel.safetensors --method gradcan six.pgm", "did you mean 'gradcam'"},
      {"pixel.cnn --weights pixel.safetensors missing.pgm", "missing.pgm"},
      {"pixel.cnn --weights pixel.safetensors --index 3 three-idx3-ubyte", "--index 3 is out of"},
      {"pixel.cnn --weights pixel.safetensors --index 1 six.pgm", "six.pgm: --index"},
      {"pixel.cnn --weights small.safetensors six.pgm", "small.safetensors"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    int rc = tu_run("explain %s --backend tcc --out bad.png", cases[i].args);
    if (rc != 1)
      fail_msg("'%s': exit %d (want 1): %s", cases[i].args, rc, tu_err);
    assert_contains(tu_err, cases[i].says);
    const char *nl = strchr(tu_err, '\n');
    if (!nl || nl[1] != '\0')
      fail_msg("'%s': not one line:\n%s", cases[i].args, tu_err);
    assert_false(tu_exists("bad.png"));
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_explain_dx_matches_central_differences),
      cmocka_unit_test(test_explain_score_is_the_logit),
      cmocka_unit_test(test_explain_float_builds_agree_with_double),
      cmocka_unit_test(test_explain_gradcam_arrays_by_hand),
      cmocka_unit_test(test_explain_gradcam_gradient_by_chain_rule),
      cmocka_unit_test(test_explain_flatten_output_trains_in_chw_order),
      cmocka_unit_test(test_explain_generated_code_builds_without_warnings),
      cmocka_unit_test(test_explain_saliency_is_max_abs_over_channels),
      cmocka_unit_test(test_explain_resize_is_bilinear_with_centres_aligned),
      cmocka_unit_test(test_explain_gradcam_weights_channels_by_mean_gradient),
      cmocka_unit_test(test_explain_colours_run_blue_to_red),
      cmocka_unit_test(test_explain_command_saliency_picture),
      cmocka_unit_test(test_explain_command_gradcam_and_idx),
      cmocka_unit_test(test_explain_command_names_the_gradcam_layer),
      cmocka_unit_test(test_explain_command_refuses_bad_input),
  };
  return cmocka_run_group_tests(tests, setup, tu_teardown);
}
