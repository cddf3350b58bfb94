/*
 * test_train.c: training, from the generated backward code to `cnngen train`.
 *
 * Gradients: small networks that together use every layer kind, activation
 * and loss are compiled with their training code through libtcc with
 * `float` defined as `double` (and expf as exp, ...), so the generated C runs
 * in double precision. Their gradients (NAME_grads_store, PyTorch layout) are
 * compared with central differences of the loss NAME_accumulate returns, over
 * every parameter: |analytic - numeric| <= 1e-5 * (|analytic| + |numeric| +
 * 1e-3 * max |gradient|). In double, the differences are ~1e-9 (truncation
 * h^2 with h = 1e-6, rounding 1e-16 / h), so the bound is loose for correct
 * code and tight for any wrong term. The same networks in float, through tcc
 * and through cc (vector extensions), must agree with the double gradients to
 * 2e-3 relative to the largest gradient.
 *
 * The loss values and the optimizer steps (Adam, SGD with momentum, Nesterov,
 * weight decay) are checked against formulas written out here in double.
 *
 * The command: repeatability (same seed, same bits), resume (one run in two
 * halves gives the same bits as one run), a checkpoint surviving SIGKILL
 * mid-write, a stated accuracy on a few thousand Fashion-MNIST images,
 * divergence reported with epoch and step, data that does not fit refused,
 * golden-check's train part with two threads, and the --log file: a row per
 * epoch matching the printed lines, rows kept across --resume.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../compiler/compile.h"
#include "../compiler/emit.h"
#include "backend.h"
#include "cli.h"
#include "engine.h"
#include "formats/idx.h"
#include "formats/safetensors.h"
#include "testutil.h"
#include "trainer.h"

/* ---- compiling networks in process (the build itself: testutil.h) ---- */

/* A network compiled with its training code; `real` is float or double. */
typedef struct Compiled {
  Arena arena;
  Net *net;
  Program *prog;
  size_t model_bytes, work_bytes, grads_bytes;
  void (*load)(void *m, const void *params);
  void (*grads_store)(const void *g, void *flat);
  double (*accumulate_y)(const void *m, void *w, void *g, const void *x, const void *target,
                         const void *weight, int n, uint64_t key, void *y);
  void (*update)(void *m, const void *g, float scale, float lr);
  void (*update_d)(void *m, const void *g, double scale, double lr); /* float as double */
  void (*store)(const void *m, void *params);
  void (*store_opt)(const void *m, void *state, uint64_t *step);
  void (*init)(void *m, uint64_t seed);
  float (*train_step)(void *m, void *w, void *g, const float *x, const float *target,
                      const float *weight, int n, uint64_t key, float lr); /* float only */
  void *images; /* batch statistics: buffers for MAX_IMAGES images (new_work) */
} Compiled;

enum { MAX_IMAGES = 8 };

static void *sym(Compiled *c, const char *suffix) {
  return tu_symbol(c->prog, c->net, suffix);
}

#define SYM(c, field, suffix)                                                                      \
  do {                                                                                             \
    void *p_ = sym(c, suffix);                                                                     \
    memcpy(&(c)->field, &p_, sizeof p_);                                                           \
  } while (0)

static void compile_net(Compiled *c, const char *src, BackendKind kind, bool dbl) {
  memset(c, 0, sizeof *c);
  c->net = tu_compile_ok(&c->arena, src);
  c->prog = tu_build_training(c->net, kind, dbl);
  c->model_bytes = tu_call_size(c->prog, c->net, "_t_model_bytes");
  c->work_bytes = tu_call_size(c->prog, c->net, "_t_work_bytes");
  c->grads_bytes = tu_call_size(c->prog, c->net, "_grads_bytes");
  SYM(c, load, "_load");
  SYM(c, store, "_store");
  SYM(c, grads_store, "_grads_store");
  SYM(c, accumulate_y, "_accumulate_y");
  SYM(c, update, "_update");
  SYM(c, update_d, "_update");
  SYM(c, store_opt, "_store_opt");
  SYM(c, init, "_init");
  SYM(c, train_step, "_train_step");
}

/* A work area for c; with batch statistics, holding buffers for
   MAX_IMAGES images, summed by no one else (the call holds the whole
   batch), the batch's statistics left out of the gradients. */
static void *new_work(Compiled *c) {
  void *w = tu_zalloc(c->work_bytes);
  if (!net_has_batch_stats(c->net))
    return w;
  void (*setup)(void *, void *, int, void (*)(void *, double *, int), void *, int);
  void *p = sym(c, "_batch_setup");
  memcpy(&setup, &p, sizeof p);
  if (!c->images)
    c->images = tu_zalloc(MAX_IMAGES * tu_call_size(c->prog, c->net, "_image_bytes"));
  setup(w, c->images, MAX_IMAGES, NULL, NULL, 1);
  return w;
}

static void release(Compiled *c) {
  free(c->images);
  program_free(c->prog);
  arena_free(&c->arena);
}

/* Deterministic pseudo-random numbers in [0, 1). */
static double uniform(uint64_t *s) {
  *s = *s * 6364136223846793005u + 1442695040888963407u;
  return (double)(*s >> 11) / 9007199254740992.0;
}

/* Inputs, targets (one-hot, or 0/1 rows for binary cross-entropy) and
   sample weights for n images, in double. */
typedef struct Batch {
  int n;
  double *x, *target, weight[4];
} Batch;

static void make_batch(Batch *b, const Net *net, int n, uint64_t seed) {
  long in = shape_size(net->input), k = shape_size(net->output);
  b->n = n;
  b->x = malloc((size_t)(n * in) * sizeof *b->x);
  b->target = calloc((size_t)(n * k), sizeof *b->target);
  for (long i = 0; i < n * in; i++)
    b->x[i] = uniform(&seed);
  for (int i = 0; i < n; i++) {
    if (net->train.loss == LOSS_BCE)
      for (long j = 0; j < k; j++)
        b->target[i * k + j] = uniform(&seed) < 0.5;
    else if (net->train.loss == LOSS_MSE)
      for (long j = 0; j < k; j++)
        b->target[i * k + j] = uniform(&seed) * 2 - 1;
    else
      b->target[i * k + (long)(uniform(&seed) * (double)k)] = 1;
    b->weight[i] = 0.5 + i * 0.75; /* 0.5, 1.25, 2.0: weights reach every term */
  }
}

static void free_batch(Batch *b) {
  free(b->x);
  free(b->target);
}

/* ---- gradients ---- */

static const char *const gradient_nets[] = {
    /* conv at stride 2 with same padding (the odd pixel at the bottom/right),
       explicit padding, vector paths (8 and 16 channels), maxpool, dropout,
       dense relu, softmax with sparse cross-entropy */
    "network a\ninput 8x8x1\nconv2d 8 3x3 stride=2 padding=same relu\n"
    "conv2d 16 3x3 padding=1 tanh\nmaxpool 2x2\nflatten\ndropout 0.3\ndense 16 relu\n"
    "dense 5 softmax\ntrain {\n  loss sparse_categorical_crossentropy\n}\n",
    /* sigmoid conv, overlapping avgpool, strided 2x2 conv, relu as a layer,
       globalavgpool, sigmoid with binary cross-entropy */
    "network b\ninput 8x8x1\nconv2d 5 3x3 sigmoid\navgpool 2x2 stride=1\n"
    "conv2d 8 2x2 stride=2\nrelu\nglobalavgpool\ndense 3 sigmoid\n"
    "train {\n  loss binary_crossentropy\n}\n",
    /* same padding at stride 1, overlapping maxpool, linear conv, tanh dense,
       linear output with mse */
    "network c\ninput 9x9x2\nconv2d 8 3x3 padding=same relu\nmaxpool 3x3 stride=2\n"
    "conv2d 8 3x3 padding=same\nflatten\ndense 8 tanh\ndense 4\ntrain {\n  loss mse\n}\n",
    /* softmax under mse (its full Jacobian) */
    "network d\ninput 3x3x2\nflatten\ndense 16 sigmoid\ndense 8 softmax\n"
    "train {\n  loss mse\n}\n",
    /* activations as layers of their own, one-hot cross-entropy */
    "network f\ninput 5x5x3\nconv2d 4 2x2\ntanh\nflatten\nsigmoid\ndense 6\nsoftmax\n"
    "train {\n  loss categorical_crossentropy\n}\n",
    /* stride 2 with same padding on a 6x7 input (odd pixel in H only), 1x1
       conv, an input of 8 channels (vector input gradient) */
    "network g\ninput 6x7x8\nconv2d 16 3x3 stride=2 padding=same sigmoid\nconv2d 8 1x1 relu\n"
    "flatten\ndense 3 softmax\ntrain {\n  loss sparse_categorical_crossentropy\n}\n",
    /* conv + maxpool backward fused with plain (not vector) input gradients */
    "network h\ninput 7x7x2\nconv2d 6 2x2 relu\nconv2d 5 3x3 padding=1 tanh\nmaxpool 2x2\n"
    "flatten\ndense 4 softmax\n",
    /* channel counts that are not a multiple of 8: overlapping last vectors in
       the forward tiles (12, 20, 36, 9 filters), the weight gradients, the
       input gradients (12, 36 and 9 channels) and through a fused maxpool (12
       channels); 36 is 5 vectors, blocks of 3 and 2; 5 and 3 filters on the
       plain loops */
    "network tails\ninput 9x8x3\nconv2d 12 3x3 padding=same relu\nconv2d 20 3x3 tanh\n"
    "maxpool 2x2\nconv2d 36 2x2 relu\nconv2d 9 1x1\nconv2d 5 1x1\nconv2d 3 1x1 sigmoid\n"
    "flatten\ndense 3 softmax\ntrain {\n  loss sparse_categorical_crossentropy\n}\n",
    /* per-direction strides and padding, bias=false everywhere: vector conv
       tiles, a transposed input gradient, conv + maxpool 2x3 backward fused
       (kw * C = 16), plain filters, avgpool 2x1, dense vector and plain */
    "network s\ninput 10x13x2\nconv2d 8 3x3 stride=2x1 padding=1x2 bias=false relu\n"
    "conv2d 16 2x2 stride=1x2 padding=same bias=false\nmaxpool 2x3\n"
    "conv2d 5 1x2 bias=false tanh\navgpool 2x1\nflatten\ndense 8 bias=false relu\n"
    "dense 3 bias=false softmax\ntrain {\n  loss sparse_categorical_crossentropy\n}\n",
    /* bias=false next to biases, plain input gradients at stride 2x1, an
       overlapping avgpool 3x2 stride=1x2 */
    "network t\ninput 7x9x3\nconv2d 4 2x3 stride=1x2 padding=same bias=false sigmoid\n"
    "conv2d 3 2x2 stride=2x1 padding=0x1 relu\navgpool 3x2 stride=1x2\nflatten\n"
    "dense 2 sigmoid\ntrain {\n  loss binary_crossentropy\n}\n",
    /* grouped and depthwise: depthwise 3x3 at strides 1 and 2 with padding
       (its input gradient into a padded input), a depth multiplier of 2,
       groups of 3 and 2 channels with rectangular kernels and strides, a
       grouped conv before a maxpool (not paired), bias=false */
    "network grp\ninput 9x8x2\nconv2d 12 3x3 padding=1 relu\n"
    "conv2d 12 3x3 padding=1 groups=12 tanh\nconv2d 24 3x3 stride=2 padding=same groups=12\n"
    "relu\nconv2d 8 3x2 stride=1x2 padding=1x0 groups=4 bias=false sigmoid\n"
    "conv2d 6 2x2 padding=1 groups=2 relu\nmaxpool 2x2\nflatten\ndense 3 softmax\n"
    "train {\n  loss sparse_categorical_crossentropy\n}\n",
    /* residual blocks: an identity block whose main path starts with a relu
       (the two gradients summed at the fork), a nested block inside a
       stride-2 block with a projection shortcut, conv + maxpool backward
       fused inside a block, a dropout in a shortcut, a block first in the
       network (its shortcut's conv computes no input gradient: the main
       path's is the first with weights), a block on vectors whose tanh
       folds into the add */
    "network r\ninput 8x8x2\nresidual {\n  conv2d 2 3x3 padding=same relu\n  shortcut {\n"
    "    conv2d 2 1x1\n  }\n}\nconv2d 8 3x3 padding=same\nresidual {\n  relu\n"
    "  conv2d 8 3x3 padding=same relu\n}\nrelu\nresidual {\n"
    "  conv2d 8 3x3 stride=2 padding=same relu\n  residual {\n    conv2d 8 3x3 padding=1 tanh\n"
    "  }\n  shortcut {\n    conv2d 8 1x1 stride=2\n    dropout 0.2\n  }\n}\nresidual {\n"
    "  conv2d 16 2x2 padding=same relu\n  maxpool 2x2\n  shortcut {\n    conv2d 16 2x2 stride=2\n"
    "  }\n}\nflatten\ndense 6\nresidual {\n  dense 6 sigmoid\n}\ntanh\ndense 3 softmax\n"
    "train {\n  loss sparse_categorical_crossentropy\n}\n",
    /* batchnorm with the batch's statistics: after a conv (bias=false)
       taking its relu, inside a residual block and in its projection
       shortcut, on 8 and 5 channels; on a vector after a dense, with a
       tanh, momentum and eps of its own; every image's gradient depends on
       the others' */
    "network bn\ninput 6x6x2\nconv2d 8 3x3 padding=same bias=false\nbatchnorm\nrelu\n"
    "residual {\n  conv2d 5 3x3 stride=2 padding=same\n  batchnorm eps=0.01\n  shortcut {\n"
    "    conv2d 5 1x1 stride=2 bias=false\n    batchnorm momentum=0.3\n  }\n}\nrelu\nflatten\n"
    "dense 6\nbatchnorm\ntanh\ndense 3 softmax\n"
    "train {\n  loss sparse_categorical_crossentropy\n}\n",
    /* a batchnorm on a vector straight from the input's dense layer, before
       a sigmoid output with binary cross-entropy */
    "network bnv\ninput 2x2x1\nflatten\ndense 4 bias=false\nbatchnorm\ndense 3\n"
    "batchnorm\nsigmoid\ntrain {\n  loss binary_crossentropy\n}\n",
    /* batchnorm around a conv + maxpool whose backward passes are fused (its
       transposed weight gradient, shared by the images of the phased
       NAME_accumulate) and whose input gradient reads transposed weights */
    "network bnp\ninput 8x8x2\nconv2d 8 3x3 padding=same bias=false\nbatchnorm\n"
    "conv2d 8 3x3 relu\nmaxpool 2x2\nbatchnorm\nflatten\ndense 3 softmax\n"
    "train {\n  loss sparse_categorical_crossentropy\n}\n",
};

/* Analytic gradients of sum_i w_i loss_i in PyTorch layout, and the loss. */
static double gradients(Compiled *c, void *m, void *w, void *g, const double *params,
                        const Batch *b, double *flat) {
  c->load(m, params);
  memset(g, 0, c->grads_bytes);
  double loss = c->accumulate_y(m, w, g, b->x, b->target, b->weight, b->n, 99, NULL);
  if (flat)
    c->grads_store(g, flat);
  return loss;
}

static void test_train_gradients_match_finite_differences(void **state) {
  (void)state;
  for (size_t t = 0; t < sizeof gradient_nets / sizeof *gradient_nets; t++) {
    Compiled c;
    compile_net(&c, gradient_nets[t], BACKEND_TCC, true);
    long np = c.net->param_count;
    void *m = tu_zalloc(c.model_bytes), *w = new_work(&c), *g = tu_zalloc(c.grads_bytes);
    double *p = malloc((size_t)np * sizeof *p), *ga = malloc((size_t)np * sizeof *ga);
    uint64_t seed = 1000 + t;
    for (long i = 0; i < np; i++)
      p[i] = uniform(&seed) - 0.5;
    Batch b;
    make_batch(&b, c.net, 3, seed);
    gradients(&c, m, w, g, p, &b, ga);
    double gmax = 0, worst = 0;
    for (long i = 0; i < np; i++)
      gmax = fmax(gmax, fabs(ga[i]));
    assert_true(gmax > 1e-3); /* the check means something */
    const double h = 1e-6;
    for (long i = 0; i < np; i++) {
      double keep = p[i];
      p[i] = keep + h;
      double up = gradients(&c, m, w, g, p, &b, NULL);
      p[i] = keep - h;
      double down = gradients(&c, m, w, g, p, &b, NULL);
      p[i] = keep;
      double fd = (up - down) / (2 * h);
      double err = fabs(fd - ga[i]) / (fabs(fd) + fabs(ga[i]) + 1e-3 * gmax);
      worst = fmax(worst, err);
      if (err > 1e-5)
        fail_msg("network %s, parameter %ld: analytic %.9g, finite difference %.9g", c.net->name, i,
                 ga[i], fd);
    }
    print_message("network %s: %ld parameters, worst relative error %.2g\n", c.net->name, np,
                  worst);
    free_batch(&b);
    free(p);
    free(ga);
    free(m);
    free(w);
    free(g);
    release(&c);
  }
}

/* The float code (tcc: structs for vectors; cc: vector extensions) against
   the double code on the same parameters and images. */
static void test_train_float_code_matches_double(void **state) {
  (void)state;
  BackendKind kinds[2] = {BACKEND_TCC, BACKEND_CC};
  for (size_t t = 0; t < sizeof gradient_nets / sizeof *gradient_nets; t++) {
    Compiled cd;
    compile_net(&cd, gradient_nets[t], BACKEND_TCC, true);
    long np = cd.net->param_count, in = shape_size(cd.net->input), k = shape_size(cd.net->output);
    void *m = tu_zalloc(cd.model_bytes), *w = new_work(&cd), *g = tu_zalloc(cd.grads_bytes);
    double *p = malloc((size_t)np * sizeof *p), *gd = malloc((size_t)np * sizeof *gd);
    uint64_t seed = 2000 + t;
    for (long i = 0; i < np; i++)
      p[i] = uniform(&seed) - 0.5;
    Batch b;
    make_batch(&b, cd.net, 3, seed);
    double loss_d = gradients(&cd, m, w, g, p, &b, gd);
    double gmax = 0;
    for (long i = 0; i < np; i++)
      gmax = fmax(gmax, fabs(gd[i]));
    float *pf = malloc((size_t)np * sizeof *pf), *gf = malloc((size_t)np * sizeof *gf);
    float *xf = malloc((size_t)(b.n * in) * sizeof *xf),
          *tf = malloc((size_t)(b.n * k) * sizeof *tf);
    float wf[4];
    for (long i = 0; i < np; i++)
      pf[i] = (float)p[i];
    for (long i = 0; i < b.n * in; i++)
      xf[i] = (float)b.x[i];
    for (long i = 0; i < b.n * k; i++)
      tf[i] = (float)b.target[i];
    for (int i = 0; i < b.n; i++)
      wf[i] = (float)b.weight[i];
    for (int kind = 0; kind < 2; kind++) {
      Compiled cf;
      compile_net(&cf, gradient_nets[t], kinds[kind], false);
      void *mf = tu_zalloc(cf.model_bytes), *wk = new_work(&cf), *gk = tu_zalloc(cf.grads_bytes);
      cf.load(mf, pf);
      double loss_f = cf.accumulate_y(mf, wk, gk, xf, tf, wf, b.n, 99, NULL);
      cf.grads_store(gk, gf);
      double worst = 0;
      for (long i = 0; i < np; i++)
        worst = fmax(worst, fabs(gf[i] - gd[i]) / gmax);
      print_message("network %s, float through %s: loss %.9g (double %.9g), gradients within "
                    "%.2g of the largest\n",
                    cf.net->name, program_backend(cf.prog), loss_f, loss_d, worst);
      assert_true(fabs(loss_f - loss_d) <= 1e-4 * (1 + fabs(loss_d)));
      assert_true(worst <= 2e-3);
      free(mf);
      free(wk);
      free(gk);
      release(&cf);
    }
    free_batch(&b);
    free(p);
    free(gd);
    free(pf);
    free(gf);
    free(xf);
    free(tf);
    free(m);
    free(w);
    free(g);
    release(&cd);
  }
}

/* The loss NAME_accumulate returns is sum_i w_i loss_i with loss_i as
   docs/language.md, Numerics defines it, worked out here from the outputs it reports. */
static void test_train_loss_values_follow_the_docs(void **state) {
  (void)state;
  for (size_t t = 0; t < sizeof gradient_nets / sizeof *gradient_nets; t++) {
    Compiled c;
    compile_net(&c, gradient_nets[t], BACKEND_TCC, true);
    long np = c.net->param_count, k = shape_size(c.net->output);
    void *m = tu_zalloc(c.model_bytes), *w = tu_zalloc(c.work_bytes), *g = tu_zalloc(c.grads_bytes);
    double *p = malloc((size_t)np * sizeof *p), *y = malloc((size_t)(3 * k) * sizeof *y);
    uint64_t seed = 3000 + t;
    for (long i = 0; i < np; i++)
      p[i] = uniform(&seed) - 0.5;
    Batch b;
    make_batch(&b, c.net, 3, seed);
    c.load(m, p);
    double got = c.accumulate_y(m, w, g, b.x, b.target, b.weight, b.n, 99, y);
    double want = 0;
    for (int i = 0; i < b.n; i++) {
      const double *yi = y + i * k, *ti = b.target + i * k;
      double l = 0;
      for (long j = 0; j < k; j++) {
        switch (c.net->train.loss) {
        case LOSS_SPARSE_CE:
        case LOSS_CE:
          l -= ti[j] ? ti[j] * log(yi[j]) : 0;
          break;
        case LOSS_BCE:
          l -= (ti[j] * log(yi[j]) + (1 - ti[j]) * log(1 - yi[j])) / (double)k;
          break;
        default:
          l += (yi[j] - ti[j]) * (yi[j] - ti[j]) / (double)k;
        }
      }
      want += b.weight[i] * l;
    }
    if (fabs(got - want) > 1e-12 * (1 + fabs(want)))
      fail_msg("network %s: accumulate says %.17g, the outputs give %.17g", c.net->name, got, want);
    free_batch(&b);
    free(p);
    free(y);
    free(m);
    free(w);
    free(g);
    release(&c);
  }
}

/* NAME_train_step of a network with batchnorm: a NaN loss (a NaN input)
   is a divergence like any other, the step taken (the weights go NaN) as
   without batchnorm; only a work area with fewer image buffers than images
   returns NaN at once with nothing done. */
static void test_train_step_nan_loss_is_not_missing_buffers(void **state) {
  (void)state;
  Compiled c;
  compile_net(&c,
              "network bs\ninput 4x4x1\nconv2d 3 3x3 bias=false\nbatchnorm\nflatten\n"
              "dense 2 softmax\n",
              BACKEND_TCC, false);
  void *m = tu_zalloc(c.model_bytes), *w = new_work(&c), *g = tu_zalloc(c.grads_bytes);
  c.init(m, 1);
  float x[(MAX_IMAGES + 1) * 16], target[(MAX_IMAGES + 1) * 2] = {0};
  for (int i = 0; i < (MAX_IMAGES + 1) * 16; i++)
    x[i] = (float)(i % 7) / 7.0f;
  for (int i = 0; i <= MAX_IMAGES; i++)
    target[2 * i + i % 2] = 1.0f;
  /* the weights, or the optimizer state (adam: 2 slots) */
  float *params =
      malloc((size_t)(1 + c.net->opt_slots) * (size_t)c.net->param_count * sizeof *params);
  uint64_t step;
  /* too many images for w's buffers: NaN, no step */
  assert_true(isnan(c.train_step(m, w, g, x, target, NULL, MAX_IMAGES + 1, 0, 0.1f)));
  c.store_opt(m, params, &step);
  assert_int_equal(step, 0);
  /* a finite step, then one on a NaN pixel */
  assert_true(isfinite(c.train_step(m, w, g, x, target, NULL, 4, 0, 0.1f)));
  c.store_opt(m, params, &step);
  assert_int_equal(step, 1);
  x[5] = NAN;
  assert_true(isnan(c.train_step(m, w, g, x, target, NULL, 4, 0, 0.1f)));
  c.store_opt(m, params, &step);
  assert_int_equal(step, 2);
  c.store(m, params);
  assert_true(isnan(params[0])); /* conv1.weight[0]: updated with the NaN gradient */
  free(params);
  free(m);
  free(w);
  free(g);
  release(&c);
}

/* A batch whose weights sum to 0 (class weights) takes no optimizer step,
   but its statistics still move the running ones, as PyTorch's forward
   pass moves them whatever the loss: NAME_train_step, and a Trainer. */
static void test_train_zero_weight_batch_moves_running_statistics(void **state) {
  (void)state;
  const char *src = "network zw\ninput 4x4x1\nconv2d 3 3x3 bias=false\nbatchnorm\nflatten\n"
                    "dense 2 softmax\ntrain {\n  optimizer sgd lr=0.1 momentum=0.9\n}\n";
  Compiled c;
  compile_net(&c, src, BACKEND_TCC, false);
  void (*setup)(void *, void *, int, void (*)(void *, double *, int), void *, int);
  void *p = sym(&c, "_batch_setup");
  memcpy(&setup, &p, sizeof p);
  const long np = c.net->param_count;
  StParam *ti = calloc((size_t)cli_params(c.net, NULL) + 1, sizeof *ti);
  int nt = cli_params(c.net, ti);
  long mean = -1, conv = -1;
  for (int i = 0; i < nt; i++) {
    if (!strcmp(ti[i].name, "bn1.running_mean"))
      mean = ti[i].offset;
    if (!strcmp(ti[i].name, "conv1.weight"))
      conv = ti[i].offset;
  }
  assert_true(mean >= 0 && conv >= 0);
  float x[4 * 16], target[4 * 2] = {0}, weight[4] = {0, 0, 0, 0};
  for (int i = 0; i < 4 * 16; i++)
    x[i] = (float)(i % 5) / 5.0f;
  for (int i = 0; i < 4; i++)
    target[2 * i + i % 2] = 1.0f;
  float *before = malloc((size_t)np * sizeof *before), *after = malloc((size_t)np * sizeof *after);
  for (int way = 0; way < 2; way++) {
    void *m = tu_zalloc(c.model_bytes), *w = new_work(&c), *g = tu_zalloc(c.grads_bytes);
    setup(w, c.images, MAX_IMAGES, NULL, NULL, 0); /* the batch's statistics into g */
    c.init(m, 1);
    c.store(m, before);
    if (way == 0) {
      assert_true(c.train_step(m, w, g, x, target, weight, 4, 0, 0.1f) == 0.0f);
    } else { /* the runtime's step, on an engine over the same code */
      Engine en;
      Trainer t = {0};
      Err e = {0};
      if (engine_open(&en, c.net, BACKEND_TCC, true, 1, &e) < 0 || trainer_open(&t, &en, &e) < 0)
        fail_msg("%s", e.msg);
      en.load(en.model, before);
      double wsum;
      assert_true(trainer_step(&t, x, target, weight, 4, 0, NULL, &wsum) == 0.0 && wsum == 0.0);
      en.store(en.model, after);
      trainer_close(&t);
      engine_close(&en);
    }
    if (way == 0)
      c.store(m, after);
    assert_memory_equal(after + conv, before + conv, 27 * sizeof(float)); /* no step */
    for (int ch = 0; ch < 3; ch++) /* r = 0.9 r + 0.1 mean: from 0 */
      assert_true(after[mean + ch] != before[mean + ch] && isfinite(after[mean + ch]));
    free(m);
    free(w);
    free(g);
  }
  free(before);
  free(after);
  free(ti);
  release(&c);
}

/* Two optimizer steps against the formulas of docs/language.md, Numerics, in double. */
static void check_optimizer(const char *train_block, bool adam, double lr, double b1, double b2,
                            double eps, double mom, bool nesterov, double wd) {
  char src[1024];
  snprintf(src, sizeof src,
           "network o\ninput 4x4x2\nconv2d 3 2x2 relu\nflatten\ndense 3 softmax\ntrain {\n%s}\n",
           train_block);
  Compiled c;
  compile_net(&c, src, BACKEND_TCC, true);
  long np = c.net->param_count;
  void *m = tu_zalloc(c.model_bytes), *w = tu_zalloc(c.work_bytes), *g = tu_zalloc(c.grads_bytes);
  double *p = malloc((size_t)np * sizeof *p), *gr = malloc((size_t)np * sizeof *gr);
  double *s0 = calloc((size_t)np, sizeof *s0), *s1 = calloc((size_t)np, sizeof *s1);
  double *got = malloc((size_t)np * sizeof *got);
  double *state = calloc((size_t)(2 * np), sizeof *state);
  uint64_t seed = 77;
  for (long i = 0; i < np; i++)
    p[i] = uniform(&seed) - 0.5;
  Batch b;
  make_batch(&b, c.net, 3, seed);
  c.load(m, p);
  const double scale = 1.0 / 3.75; /* 1 / sum of weights */
  for (int step = 1; step <= 2; step++) {
    memset(g, 0, c.grads_bytes);
    c.accumulate_y(m, w, g, b.x, b.target, b.weight, b.n, 99, NULL);
    c.grads_store(g, gr);
    /* The rate is the caller's, step by step (a schedule's): 1/4 of it next. */
    const double lr_step = step == 1 ? lr : lr / 4;
    c.update_d(m, g, scale, lr_step);
    for (long i = 0; i < np; i++) {
      double gi = scale * gr[i] + wd * p[i];
      if (adam) {
        s0[i] = b1 * s0[i] + (1 - b1) * gi;
        s1[i] = b2 * s1[i] + (1 - b2) * gi * gi;
        p[i] -= lr_step * (s0[i] / (1 - pow(b1, step))) / (sqrt(s1[i] / (1 - pow(b2, step))) + eps);
      } else if (mom != 0) {
        s0[i] = mom * s0[i] + gi;
        p[i] -= lr_step * (nesterov ? gi + mom * s0[i] : s0[i]);
      } else {
        p[i] -= lr_step * gi;
      }
    }
  }
  c.store(m, got);
  uint64_t steps = 0;
  c.store_opt(m, state, &steps);
  assert_int_equal(steps, 2);
  for (long i = 0; i < np; i++) {
    if (fabs(got[i] - p[i]) > 1e-6 * (1 + fabs(p[i])))
      fail_msg("%s: parameter %ld is %.12g, the formula gives %.12g", train_block, i, got[i], p[i]);
    if (adam || mom != 0)
      assert_true(fabs(state[i] - s0[i]) <= 1e-6 * (1 + fabs(s0[i])));
    if (adam)
      assert_true(fabs(state[np + i] - s1[i]) <= 1e-6 * (1 + fabs(s1[i])));
  }
  free_batch(&b);
  free(p);
  free(gr);
  free(s0);
  free(s1);
  free(got);
  free(state);
  free(m);
  free(w);
  free(g);
  release(&c);
}

static void test_train_optimizers_follow_the_docs(void **state) {
  (void)state;
  check_optimizer("optimizer adam lr=0.01\n", true, 0.01, 0.9, 0.999, 1e-7, 0, false, 0);
  check_optimizer("optimizer adam lr=0.05 beta1=0.8 beta2=0.99 eps=0.001 weight_decay=0.1\n", true,
                  0.05, 0.8, 0.99, 1e-3, 0, false, 0.1);
  check_optimizer("optimizer sgd lr=0.1\n", false, 0.1, 0, 0, 0, 0, false, 0);
  check_optimizer("optimizer sgd lr=0.1 momentum=0.9 weight_decay=0.01\n", false, 0.1, 0, 0, 0, 0.9,
                  false, 0.01);
  check_optimizer("optimizer sgd lr=0.05 momentum=0.8 nesterov\n", false, 0.05, 0, 0, 0, 0.8, true,
                  0);
}

/* ---- the runtime pieces ---- */

static void test_train_order_is_a_seeded_permutation(void **state) {
  (void)state;
  enum { N = 1000 };
  static int a[N], b[N], c[N];
  train_order(7, 0, a, N);
  train_order(7, 0, b, N);
  train_order(7, 1, c, N);
  assert_memory_equal(a, b, sizeof a);
  assert_memory_not_equal(a, c, sizeof a);
  static char seen[N];
  int moved = 0;
  for (int i = 0; i < N; i++) {
    assert_true(a[i] >= 0 && a[i] < N);
    assert_false(seen[a[i]]);
    seen[a[i]] = 1;
    moved += a[i] != i;
  }
  assert_true(moved > N * 9 / 10);
  assert_int_not_equal(train_key(7, 0), train_key(7, 1));
  assert_int_not_equal(train_key(7, 0), train_key(8, 0));
}

static void test_train_set_targets_and_class_weights(void **state) {
  (void)state;
  Arena arena = {0};
  const char *src = "network cw\ninput 2x2x1\nflatten\ndense 3 softmax\n"
                    "train {\n  class_weights balanced\n}\n";
  Net *net = tu_compile_ok(&arena, src);
  uint8_t pixels[4 * 4] = {0}, labels[4] = {0, 0, 0, 2};
  IdxImages im = {4, 2, 2, 1, pixels};
  IdxLabels lb = {4, 0, labels};
  TrainSet s;
  Err e = {0};
  assert_int_equal(trainset_make(&s, net, &im, &lb, "data", 1, &e), 0);
  /* balanced: n / (classes * count): 4 / (3 * 3) for class 0, 4 / 3 for class 2 */
  assert_float_equal(s.weight[0], 4.0 / 9.0, 1e-6);
  assert_float_equal(s.weight[3], 4.0 / 3.0, 1e-6);
  assert_float_equal(s.target[3 * 3 + 2], 1.0, 0);
  assert_float_equal(s.target[3 * 3 + 0], 0.0, 0);
  assert_int_equal(s.label[3], 2);
  trainset_free(&s);
  /* images that do not fit the input, labels beyond the outputs */
  IdxImages big = {1, 3, 3, 1, pixels};
  assert_int_equal(trainset_make(&s, net, &big, &lb, "data", 0, &e), -1);
  assert_non_null(strstr(e.msg, "3x3x1"));
  labels[1] = 3;
  assert_int_equal(trainset_make(&s, net, &im, &lb, "data", 0, &e), -1);
  assert_non_null(strstr(e.msg, "label 3"));
  arena_free(&arena);
}

/* The learning rate of each step against the closed forms of docs/language.md
   (Training settings), written per epoch here; and the rates that PyTorch
   gives per epoch of one step for cosine warmup=1 over 4 epochs and for step
   every=2 gamma=0.5. */
static void test_train_lr_schedules_follow_closed_forms(void **state) {
  (void)state;
  Arena arena = {0};
  const char *const blocks[] = {
      "optimizer sgd lr=0.1\n",
      "optimizer sgd lr=0.1\n  schedule step every=3 gamma=0.5\n",
      "optimizer sgd lr=0.1\n  schedule cosine min_lr=0.001\n",
      "optimizer sgd lr=0.1\n  schedule cosine warmup=2\n",
      "optimizer sgd lr=0.1\n  schedule step every=2 gamma=0.1 warmup=1\n",
      "optimizer sgd lr=0.1\n  schedule constant warmup=3\n",
  };
  enum { EPOCHS = 7, PER = 5, T = EPOCHS * PER };
  const double pi = 3.14159265358979323846;
  for (size_t b = 0; b < sizeof blocks / sizeof blocks[0]; b++) {
    char src[512];
    snprintf(src, sizeof src,
             "network s\ninput 2x2x1\nflatten\ndense 3 softmax\ntrain {\n  %s  epochs %d\n}\n",
             blocks[b], EPOCHS);
    const TrainConfig *tc = &tu_compile_ok(&arena, src)->train;
    for (int e = 0; e < EPOCHS; e++)
      for (int i = 0; i < PER; i++) {
        const int t = e * PER + i, w = tc->warmup * PER; /* step, warmup steps */
        double want;
        if (t < w)
          want = 0.1 * (t + 1) / w;
        else if (tc->schedule == SCHED_STEP)
          want = 0.1 * pow(tc->step_gamma, (e - tc->warmup) / tc->step_every);
        else if (tc->schedule == SCHED_COSINE)
          want = tc->min_lr + (0.1 - tc->min_lr) * (1 + cos(pi * (t - w) / (T - w))) / 2;
        else
          want = 0.1;
        double got = train_lr(tc, (uint64_t)t, PER, EPOCHS);
        if (fabs(got - want) > 1e-15)
          fail_msg("%s: step %d: lr %.17g, the closed form gives %.17g", blocks[b], t, got, want);
      }
  }
  /* The reference cases' rates, per epoch of one step. */
  const TrainConfig *cos4 =
      &tu_compile_ok(&arena,
                     "network c\ninput 2x2x1\nflatten\ndense 3 softmax\ntrain {\n"
                     "  optimizer adam lr=0.01\n  schedule cosine warmup=1\n  epochs 4\n}\n")
           ->train;
  const TrainConfig *step4 =
      &tu_compile_ok(&arena, "network d\ninput 2x2x1\nflatten\ndense 3 softmax\ntrain {\n"
                             "  optimizer sgd lr=0.05 momentum=0.9\n"
                             "  schedule step every=2 gamma=0.5\n  epochs 4\n}\n")
           ->train;
  const double want_cos[4] = {0.01, 0.01, 0.0075, 0.0025000000000000014};
  const double want_step[4] = {0.05, 0.05, 0.025, 0.025};
  for (int t = 0; t < 4; t++) {
    assert_float_equal(train_lr(cos4, (uint64_t)t, 1, 4), want_cos[t], 1e-15);
    assert_float_equal(train_lr(step4, (uint64_t)t, 1, 4), want_step[t], 1e-15);
  }
  arena_free(&arena);
}

/* label_smoothing's target rows: (1 - F) onehot + F / K; with class weights
   w, weight_i * row . (-log p) is PyTorch's per-sample numerator
   (1 - F) w_y (-log p_y) + F / K sum_c w_c (-log p_c). Nothing for mse. */
static void test_train_label_smoothing_targets(void **state) {
  (void)state;
  Arena arena = {0};
  uint8_t pixels[4 * 4] = {0}, labels[4] = {0, 1, 2, 1};
  IdxImages im = {4, 2, 2, 1, pixels};
  IdxLabels lb = {4, 0, labels};
  TrainSet s;
  Err e = {0};
  Net *plain = tu_compile_ok(&arena, "network p\ninput 2x2x1\nflatten\ndense 3 softmax\n"
                                     "train {\n  label_smoothing 0.3\n}\n");
  assert_int_equal(trainset_make(&s, plain, &im, &lb, "data", 1, &e), 0);
  trainset_smooth(&s, plain->train.loss, plain->train.label_smoothing);
  assert_float_equal(s.target[0], 0.7 + 0.1, 1e-7);
  assert_float_equal(s.target[1], 0.1, 1e-7);
  assert_float_equal(s.target[2 * 3 + 2], 0.8, 1e-7);
  assert_int_equal(s.label[2], 2);
  trainset_free(&s);
  Net *weighted = tu_compile_ok(&arena, "network w\ninput 2x2x1\nflatten\ndense 3 softmax\n"
                                        "train {\n  label_smoothing 0.3\n"
                                        "  class_weights 1,2,0.5\n}\n");
  assert_int_equal(trainset_make(&s, weighted, &im, &lb, "data", 1, &e), 0);
  trainset_smooth(&s, weighted->train.loss, weighted->train.label_smoothing);
  const double cw[3] = {1, 2, 0.5}, nlp[3] = {0.3, 1.7, 2.9}; /* -log p of each class */
  for (int i = 0; i < 4; i++) {
    double got = 0, want = (1 - 0.3) * cw[labels[i]] * nlp[labels[i]];
    for (int c = 0; c < 3; c++) {
      got += s.weight[i] * s.target[i * 3 + c] * nlp[c];
      want += 0.3 / 3 * cw[c] * nlp[c];
    }
    assert_float_equal(got, want, 1e-6);
  }
  trainset_free(&s);
  Net *mse = tu_compile_ok(&arena, "network m\ninput 2x2x1\nflatten\ndense 3\n"
                                   "train {\n  loss mse\n}\n");
  assert_int_equal(trainset_make(&s, mse, &im, &lb, "data", 1, &e), 0);
  trainset_smooth(&s, LOSS_MSE, 0.3);
  assert_float_equal(s.target[0], 1.0, 0);
  assert_float_equal(s.target[1], 0.0, 0);
  trainset_free(&s);
  arena_free(&arena);
}

/* ---- the command (the directory, files and runs: testutil.h) ---- */

static const char small_net[] =
    "network small\ninput 28x28x1\nconv2d 8 3x3 relu\nmaxpool 2x2\nconv2d 16 3x3 relu\n"
    "maxpool 2x2\nflatten\ndropout 0.2\ndense 32 relu\ndense 10 softmax\n"
    "train {\n  optimizer adam lr=0.002\n  batch 32\n  epochs 2\n  seed 5\n}\n";

static void test_train_same_seed_same_weights(void **state) {
  (void)state;
  if (!tu_fashion_subset("fm", 1000, 200))
    skip();
  tu_write_text("small.cnn", small_net);
  for (int threads = 1; threads <= 2; threads++) {
    assert_int_equal(
        tu_run("train small.cnn --data fm --epochs 1 --threads %d --out r1.safetensors", threads),
        0);
    assert_int_equal(
        tu_run("train small.cnn --data fm --epochs 1 --threads %d --out r2.safetensors", threads),
        0);
    assert_true(tu_same_tensors("r1.safetensors", "r2.safetensors"));
  }
  assert_int_equal(tu_run("train small.cnn --data fm --epochs 1 --seed 6 --out r3.safetensors "
                          "--threads 2"),
                   0);
  assert_false(tu_same_tensors("r1.safetensors", "r3.safetensors"));
}

static void test_train_resume_matches_uninterrupted(void **state) {
  (void)state;
  if (!tu_fashion_subset("fm", 1000, 200))
    skip();
  tu_write_text("small.cnn", small_net);
  assert_int_equal(tu_run("train small.cnn --data fm --epochs 3 --out full.safetensors "
                          "--checkpoint full.ckpt --threads 2"),
                   0);
  assert_contains(tu_out, "epoch 3/3");
  assert_int_equal(tu_run("train small.cnn --data fm --epochs 1 --out half.safetensors "
                          "--checkpoint half.ckpt --threads 2"),
                   0);
  assert_int_equal(tu_run("train small.cnn --data fm --epochs 3 --resume half.ckpt "
                          "--out resumed.safetensors --checkpoint resumed.ckpt --threads 2"),
                   0);
  assert_contains(tu_out, "resuming after epoch 1");
  assert_contains(tu_out, "epoch 2/3");
  assert_true(tu_same_tensors("full.safetensors", "resumed.safetensors"));
  /* The checkpoint holds the optimizer state too. */
  StFile f;
  Err e = {0};
  assert_int_equal(st_read(tu_path("full.ckpt"), &f, &e), 0);
  assert_non_null(st_find(&f, "opt.m.conv1.weight"));
  assert_non_null(st_find(&f, "opt.v.dense2.bias"));
  assert_string_equal(st_meta(&f, "epoch"), "3");
  st_free(&f);
  /* A checkpoint made with another batch size cannot continue exactly. */
  assert_int_equal(tu_run("train small.cnn --data fm --resume half.ckpt --batch 16"), 1);
  assert_contains(tu_err, "batch 32");
}

/* A training run killed at random moments, many of them while it writes its
   checkpoint: the checkpoint on disk is always a complete one. */
static void test_train_checkpoint_survives_kill(void **state) {
  (void)state;
  if (!tu_fashion_subset("tiny", 64, 16))
    skip();
  tu_write_text("tiny.cnn",
                "network tiny\ninput 28x28x1\nflatten\ndense 256 relu\ndense 10 softmax\n"
                "train {\n  batch 64\n}\n");
  assert_int_equal(tu_run("train tiny.cnn --data tiny --epochs 1 --checkpoint k.ckpt --backend tcc "
                          "--threads 1 --out k.safetensors"),
                   0);
  uint64_t seed = 11;
  for (int round = 0; round < 20; round++) {
    pid_t pid = tu_start("train tiny.cnn --data tiny --epochs 1000000 --checkpoint k.ckpt "
                         "--backend tcc --threads 1 --out k.safetensors");
    struct timespec ts = {0, 100000000 + (long)(uniform(&seed) * 400e6)};
    nanosleep(&ts, NULL);
    kill(pid, SIGKILL);
    assert_int_equal(tu_finish(pid), 128 + SIGKILL);
    StFile f;
    Err e = {0};
    if (st_read(tu_path("k.ckpt"), &f, &e) < 0)
      fail_msg("after a kill in round %d: %s", round, e.msg);
    assert_non_null(st_find(&f, "opt.m.dense2.weight"));
    assert_non_null(st_meta(&f, "epoch"));
    st_free(&f);
  }
  /* And it still resumes, for one more epoch. */
  StFile f;
  Err e = {0};
  assert_int_equal(st_read(tu_path("k.ckpt"), &f, &e), 0);
  long epoch = atol(st_meta(&f, "epoch"));
  st_free(&f);
  assert_int_equal(tu_run("train tiny.cnn --data tiny --resume k.ckpt --epochs %ld --backend tcc "
                          "--threads 1 --out k.safetensors",
                          epoch + 1),
                   0);
  assert_contains(tu_out, "resuming after epoch");
}

/* The small network on 4,000 Fashion-MNIST images for 2 epochs reaches 75%
   test accuracy on 1,000 test images (about 80% is typical). */
static void test_train_end_to_end_accuracy(void **state) {
  (void)state;
  if (!tu_fashion_subset("fm4k", 4000, 1000))
    skip();
  tu_write_text("small.cnn", small_net);
  assert_int_equal(tu_run("train small.cnn --data fm4k --out e2e.safetensors --threads 2"), 0);
  const char *line = strstr(tu_out, "epoch 2/2");
  assert_non_null(line);
  const char *acc = strstr(line, "test accuracy ");
  assert_non_null(acc);
  double a = atof(acc + strlen("test accuracy "));
  print_message("test accuracy after 2 epochs on 4000 images: %.4f\n", a);
  assert_true(a >= 0.75);
  assert_int_equal(tu_run("eval small.cnn --weights e2e.safetensors --data fm4k --json"), 0);
  assert_contains(tu_out, "\"accuracy\"");
}

static void test_train_divergence_names_epoch_and_step(void **state) {
  (void)state;
  if (!tu_fashion_subset("fm", 1000, 200))
    skip();
  /* Steps of 1e38 overflow the logits to infinity: inf - inf is NaN. */
  tu_write_text("wild.cnn", "network wild\ninput 28x28x1\nflatten\ndense 10 softmax\n"
                            "train {\n  optimizer sgd lr=1e38\n}\n");
  assert_int_equal(tu_run("train wild.cnn --data fm --epochs 3 --out wild.safetensors --threads 1"),
                   1);
  assert_contains(tu_err, "diverged at epoch 1, step ");
  /* in epoch 1 the step of the run is the batch's */
  int b = 0, nb = 0, run = 0;
  assert_int_equal(sscanf(strstr(tu_err, "diverged at epoch 1, step "),
                          "diverged at epoch 1, step %d of %d (step %d of the run)", &b, &nb, &run),
                   3);
  assert_int_equal(run, b);
  assert_false(tu_exists("wild.safetensors")); /* no weights from a NaN run */
}

static void test_train_refuses_data_that_does_not_fit(void **state) {
  (void)state;
  if (!tu_fashion_subset("fm", 1000, 200))
    skip();
  tu_write_text("rgb.cnn", "network rgb\ninput 32x32x3\nflatten\ndense 10 softmax\n");
  assert_int_equal(tu_run("train rgb.cnn --data fm"), 1);
  assert_contains(tu_err, "images are 28x28x1");
  assert_contains(tu_err, "32x32x3");
  assert_int_equal(tu_run("train rgb.cnn --data nowhere"), 1);
  assert_contains(tu_err, "nowhere");
}

/* ---- --log ---- */

static const char tiny_net[] = "network tiny\ninput 28x28x1\nflatten\ndense 32 relu\n"
                               "dense 10 softmax\ntrain {\n  batch 16\n}\n";
static const char tiny_args[] = "--data tiny --backend tcc --threads 1";

/* The rows of a --log file, read by its header's column names (one of the
   two that cnngen writes: with validation scores, and without); returns the
   count. rows[i][LOG_X] is column X, NaN where
   the log has no such column or the field is empty (a row read back from a
   log without it). */
enum {
  LOG_EPOCH,
  LOG_LOSS,
  LOG_ACC,
  LOG_TEST_LOSS,
  LOG_TEST_ACC,
  LOG_SECONDS,
  LOG_LR,
  LOG_VAL_LOSS,
  LOG_VAL_ACC,
  LOG_COLS
};
static int read_log(const char *file, double rows[][LOG_COLS], int cap) {
  static const char *const headers[] = {
      "epoch,loss,accuracy,val_loss,val_accuracy,test_loss,test_accuracy,seconds,lr\n",
      "epoch,loss,accuracy,test_loss,test_accuracy,seconds,lr\n"};
  static const int columns[][LOG_COLS] = {
      {LOG_EPOCH, LOG_LOSS, LOG_ACC, LOG_VAL_LOSS, LOG_VAL_ACC, LOG_TEST_LOSS, LOG_TEST_ACC,
       LOG_SECONDS, LOG_LR},
      {LOG_EPOCH, LOG_LOSS, LOG_ACC, LOG_TEST_LOSS, LOG_TEST_ACC, LOG_SECONDS, LOG_LR}};
  static const int ncolumns[] = {9, 7};
  static char text[1 << 16];
  tu_read_file(tu_path(file), text, sizeof text);
  int h = 0;
  while (h < 2 && strncmp(text, headers[h], strlen(headers[h])) != 0)
    h++;
  if (h == 2)
    fail_msg("%s does not start with a log's header:\n%s", file, text);
  int n = 0;
  for (char *line = text + strlen(headers[h]); *line; n++) {
    char *end = strchr(line, '\n');
    if (!end)
      fail_msg("%s: a row without its newline: %s", file, line);
    assert_true(n < cap);
    for (int k = 0; k < LOG_COLS; k++)
      rows[n][k] = NAN;
    char *p = line;
    for (int c = 0; c < ncolumns[h]; c++) {
      char *next;
      if (*p != ',' && p != end) /* else an empty field */
        rows[n][columns[h][c]] = strtod(p, &next);
      else
        next = p;
      if (c < ncolumns[h] - 1 ? *next != ',' : next != end)
        fail_msg("%s: field %d is not a number: %.*s", file, c + 1, (int)(end - line), line);
      p = next + 1;
    }
    line = end + 1;
  }
  return n;
}

/* Two numbers of a log the same (both NaN: both fields empty). */
static void same_field(double a, double b) {
  if (isnan(a) || isnan(b))
    assert_true(isnan(a) && isnan(b));
  else
    assert_float_equal(a, b, 0);
}

/* What follows `key` in the printed line of epoch `epoch`. */
static const char *printed_at(int epoch, const char *key) {
  char head[32];
  snprintf(head, sizeof head, "epoch %d/", epoch);
  const char *line = strstr(tu_out, head);
  assert_non_null(line);
  const char *v = strstr(line, key);
  assert_non_null(v);
  return v + strlen(key);
}

/* The number after `key` in the printed line of epoch `epoch`. */
static double printed(int epoch, const char *key) {
  return atof(printed_at(epoch, key));
}

/* Without --backend, a run far shorter than cc's compile goes to tcc (the
   README, Performance: the backend that finishes first). */
static void test_train_auto_takes_tcc_for_a_short_run(void **state) {
  (void)state;
  if (!tu_fashion_subset("tiny", 64, 16))
    skip();
  tu_write_text("quick.cnn", "network quick\ninput 28x28x1\nconv2d 8 3x3 relu\nflatten\n"
                             "dense 10 softmax\ntrain {\n  batch 16\n}\n");
  assert_int_equal(
      tu_run("train quick.cnn --data tiny --epochs 1 --threads 1 --out quick.safetensors"), 0);
  assert_non_null(strstr(tu_out, "backend tcc (compiled in"));
}

static void test_train_log_has_a_row_per_epoch(void **state) {
  (void)state;
  if (!tu_fashion_subset("tiny", 64, 16))
    skip();
  tu_write_text("tiny.cnn", tiny_net);
  assert_int_equal(
      tu_run("train tiny.cnn %s --epochs 3 --out l.safetensors --log l.csv", tiny_args), 0);
  double rows[8][LOG_COLS];
  assert_int_equal(read_log("l.csv", rows, 8), 3);
  const char *keys[5] = {"  loss ", "  accuracy ", "test loss ", "test accuracy ", ""};
  for (int i = 0; i < 3; i++) {
    assert_float_equal(rows[i][0], i + 1, 0);
    for (int k = 1; k <= 4; k++) {
      assert_true(isfinite(rows[i][k]) && rows[i][k] >= 0);
      if (k == 2 || k == 4)
        assert_true(rows[i][k] <= 1);
      /* The log holds what the epoch's line printed, to more digits. */
      assert_float_equal(rows[i][k], printed(i + 1, keys[k - 1]), 0.5e-4 + 1e-9);
    }
    /* seconds, to the microsecond (an epoch of 64 images on the JIT kernels
       takes less than a millisecond) */
    assert_true(rows[i][5] > 0 && rows[i][5] < 60);
    /* The learning rate, on the line and in the log. */
    assert_float_equal(printed(i + 1, "  lr "), 0.001, 0);
    assert_float_equal(rows[i][6], 0.001, 0);
  }
  assert_true(rows[2][1] < rows[0][1]); /* it learns: the training loss falls */
}

/* --resume keeps the rows of the epochs the checkpoint holds and drops the
   later ones of a run that went further; a file that is not a log is not
   overwritten. */
static void test_train_log_resume_keeps_earlier_rows(void **state) {
  (void)state;
  if (!tu_fashion_subset("tiny", 64, 16))
    skip();
  tu_write_text("tiny.cnn", tiny_net);
  assert_int_equal(tu_run("train tiny.cnn %s --epochs 1 --out h.safetensors --checkpoint h1.ckpt "
                          "--log h.csv",
                          tiny_args),
                   0);
  assert_int_equal(tu_run("train tiny.cnn %s --epochs 3 --resume h1.ckpt --out h.safetensors "
                          "--checkpoint h3.ckpt --log h.csv",
                          tiny_args),
                   0);
  double first[8][LOG_COLS], rows[8][LOG_COLS];
  assert_int_equal(read_log("h.csv", first, 8), 3);
  for (int i = 0; i < 3; i++)
    assert_float_equal(first[i][0], i + 1, 0);
  /* From epoch 1 again, to 2: row 1 kept as it was, rows 2 and 3 replaced
     by one new row 2. */
  assert_int_equal(tu_run("train tiny.cnn %s --epochs 2 --resume h1.ckpt --out h.safetensors "
                          "--checkpoint h2.ckpt --log h.csv",
                          tiny_args),
                   0);
  assert_int_equal(read_log("h.csv", rows, 8), 2);
  assert_memory_equal(rows[0], first[0], sizeof rows[0]);
  assert_float_equal(rows[1][0], 2, 0);
  /* The same data, seed and state: epoch 2 scores what it scored before. */
  assert_float_equal(rows[1][3], first[1][3], 0);
  tu_write_text("notes.csv", "name,value\nx,1\n");
  assert_int_equal(tu_run("train tiny.cnn %s --epochs 2 --resume h1.ckpt --out h.safetensors "
                          "--checkpoint h2.ckpt --log notes.csv",
                          tiny_args),
                   1);
  assert_contains(tu_err, "notes.csv");
  assert_contains(tu_err, "not a training log");
  static char text[256];
  tu_read_file(tu_path("notes.csv"), text, sizeof text);
  assert_string_equal(text, "name,value\nx,1\n");
}

/* A log written before the lr column still resumes: its rows are kept, with
   the lr left empty, and the file goes on in the new form. */
static void test_train_log_without_lr_column_resumes(void **state) {
  (void)state;
  tu_quadrant_data("quad", 64, 16);
  tu_write_text("quad.cnn", "network quad\ninput 12x12x1\nflatten\ndense 4 softmax\n"
                            "train {\n  batch 16\n}\n");
  const char *args = "--data quad --backend tcc --threads 1";
  assert_int_equal(
      tu_run("train quad.cnn %s --epochs 1 --out o.safetensors --checkpoint o1.ckpt", args), 0);
  tu_write_text("old.csv", "epoch,loss,accuracy,test_loss,test_accuracy,seconds\n"
                           "1,2.250000,0.125000,2.125000,0.250000,0.500\n"
                           "2,2.000000,0.250000,2.000000,0.375000,0.500\n");
  assert_int_equal(tu_run("train quad.cnn %s --epochs 2 --resume o1.ckpt --out o.safetensors "
                          "--checkpoint o2.ckpt --log old.csv",
                          args),
                   0);
  double rows[8][LOG_COLS];
  assert_int_equal(read_log("old.csv", rows, 8), 2);
  assert_float_equal(rows[0][1], 2.25, 0);
  assert_float_equal(rows[0][5], 0.5, 0);
  assert_true(isnan(rows[0][6]));
  assert_float_equal(rows[1][0], 2, 0);
  assert_float_equal(rows[1][6], 0.001, 0);
}

/* A log that cannot be written fails before the first epoch. */
static void test_train_log_unwritable_fails_before_training(void **state) {
  (void)state;
  if (!tu_fashion_subset("tiny", 64, 16))
    skip();
  tu_write_text("tiny.cnn", tiny_net);
  assert_int_equal(
      tu_run("train tiny.cnn %s --epochs 1 --out u.safetensors --log no/such/dir/u.csv", tiny_args),
      1);
  assert_contains(tu_err, "no/such/dir/u.csv");
  assert_true(strstr(tu_out, "epoch 1/") == NULL);
  assert_false(tu_exists("u.safetensors"));
}

/* --plot draws each epoch's rows: a marker per epoch in each panel (and one
   in the legend) for the training and the test curves; a PNG by its suffix;
   a path that cannot be written and any other suffix are refused before
   training. */
static void test_train_plot_draws_every_epoch(void **state) {
  (void)state;
  if (!tu_fashion_subset("tiny", 64, 16))
    skip();
  tu_write_text("tiny.cnn", tiny_net);
  assert_int_equal(
      tu_run("train tiny.cnn %s --epochs 3 --out p.safetensors --plot p.svg", tiny_args), 0);
  static char svg[1 << 17];
  tu_read_file(tu_path("p.svg"), svg, sizeof svg);
  assert_true(!strncmp(svg, "<?xml", 5));
  assert_contains(svg, ">tiny</text>");
  assert_int_equal(tu_count(svg, "<circle class=\"training\""), 2 * 3 + 1);
  assert_int_equal(tu_count(svg, "<circle class=\"test\""), 2 * 3 + 1);
  assert_int_equal(
      tu_run("train tiny.cnn %s --epochs 2 --out p.safetensors --plot p.PNG", tiny_args), 0);
  static char png[1 << 17];
  tu_read_file(tu_path("p.PNG"), png, sizeof png);
  assert_memory_equal(png, "\x89PNG\r\n\x1a\n", 8);
  assert_int_equal(
      tu_run("train tiny.cnn %s --epochs 1 --out q.safetensors --plot no/such/dir/q.svg",
             tiny_args),
      1);
  assert_contains(tu_err, "no/such/dir/q.svg");
  assert_true(strstr(tu_out, "epoch 1/") == NULL);
  assert_int_equal(
      tu_run("train tiny.cnn %s --epochs 1 --out q.safetensors --plot q.jpg", tiny_args), 1);
  assert_contains(tu_err, "q.jpg");
  assert_contains(tu_err, ".png or .svg");
  assert_true(strstr(tu_out, "epoch 1/") == NULL);
  assert_false(tu_exists("q.safetensors"));
}

/* ---- stopping and resuming ---- */

/* Dropout, augmentation and two threads: everything a resume has to carry. */
static const char stop_net[] = "network stop\ninput 12x12x1\nconv2d 4 3x3 relu\nmaxpool 2x2\n"
                               "flatten\ndropout 0.1\ndense 4 softmax\n"
                               "train {\n  batch 4\n  epochs 3\n  augment shift=1\n}\n";
static const char stop_args[] = "--data quad --backend tcc --threads 2";

/* Two files in the directory, byte for byte. */
static bool same_bytes(const char *a, const char *b) {
  static char fa[1 << 20], fb[1 << 20];
  size_t na = tu_read_file(tu_path(a), fa, sizeof fa), nb = tu_read_file(tu_path(b), fb, sizeof fb);
  assert_true(na > 0 && na < sizeof fa - 1);
  return na == nb && memcmp(fa, fb, na) == 0;
}

/* A metadata value of a safetensors file in the directory ("" if none). */
static const char *meta_of(const char *file, const char *key) {
  static char value[8][128];
  static int next;
  char *v = value[next++ % 8];
  StFile f;
  Err e = {0};
  if (st_read(tu_path(file), &f, &e) < 0)
    fail_msg("%s", e.msg);
  snprintf(v, sizeof value[0], "%s", st_meta(&f, key) ? st_meta(&f, key) : "");
  st_free(&f);
  return v;
}

/* The 3 rows of two --log files agree but for the seconds; `rows` (or NULL)
   gets a's. */
static void same_log_rows(const char *a, const char *b, double rows[3][LOG_COLS]) {
  double full[4][LOG_COLS], resumed[4][LOG_COLS];
  assert_int_equal(read_log(a, full, 4), 3);
  assert_int_equal(read_log(b, resumed, 4), 3);
  for (int i = 0; i < 3; i++)
    for (int k = 0; k < LOG_COLS; k++)
      if (k != LOG_SECONDS)
        same_field(full[i][k], resumed[i][k]);
  if (rows)
    memcpy(rows, full, 3 * sizeof full[0]);
}

/* The first SIGINT after the first epoch: the batch ends, the checkpoint
   (inside epoch 2) and the weights are written, the command that
   continues is printed, exit 130; that command ends with the weights of an
   uninterrupted run, byte for byte, and the same log rows. */
static void test_train_sigint_saves_and_resumes_exactly(void **state) {
  (void)state;
  tu_quadrant_data("quad", 1200, 48);
  tu_write_text("stop.cnn", stop_net);
  assert_int_equal(tu_run("train stop.cnn %s --out full.safetensors --checkpoint full.ckpt "
                          "--log full.csv",
                          stop_args),
                   0);
  pid_t pid =
      tu_start("train stop.cnn %s --out s.safetensors --checkpoint s.ckpt --log s.csv", stop_args);
  /* Epoch 1's row is logged after its checkpoint: from then on, epoch 2's
     300 batches run, and the signal lands among them. */
  tu_await(pid, "s.csv", "\n1,");
  kill(pid, SIGINT);
  assert_int_equal(tu_finish(pid), 130);
  assert_contains(tu_err, "stopping after this batch");
  assert_contains(tu_out, "wrote s.safetensors (checkpoint s.ckpt)\nstopped by Ctrl-C in epoch ");
  char expect[1024];
  snprintf(expect, sizeof expect,
           "; to continue:\n  %s train stop.cnn --out s.safetensors --data quad --backend tcc "
           "--threads 2 --checkpoint s.ckpt --log s.csv --resume s.ckpt\n",
           tu_cnngen);
  assert_contains(tu_out, expect);
  /* Inside an epoch: the checkpoint says where, the weights carry no test
     scores (those of the last epoch's end are not theirs). */
  assert_true(atoi(meta_of("s.ckpt", "epoch_batches")) > 0);
  assert_string_equal(meta_of("s.safetensors", "test_accuracy"), "");
  /* A run that would end before that epoch cannot take it. */
  assert_int_equal(tu_run("train stop.cnn %s --epochs 1 --resume s.ckpt --out x.safetensors "
                          "--checkpoint x.ckpt",
                          stop_args),
                   1);
  assert_contains(tu_err, "s.ckpt: checkpoint stopped inside epoch ");
  assert_contains(tu_err, ", past the 1 epochs of this run");
  const char *cmd = strstr(expect, "\n  ") + 3;
  assert_int_equal(tu_shell("%.*s", (int)strcspn(cmd, "\n"), cmd), 0);
  assert_contains(tu_out, "(resuming in epoch ");
  assert_contains(tu_out, "epoch 3/3");
  assert_true(same_bytes("full.safetensors", "s.safetensors"));
  same_log_rows("full.csv", "s.csv", NULL);
}

/* ---- validation and early stopping ---- */

/* DST/WHICH-{images,labels}: the training images [first, first + n) of
   the quadrant data im, lb; the labels of those from index `wrong` on moved
   on by one class (of 4). */
static void write_part(const IdxImages *im, const IdxLabels *lb, const char *dst, const char *which,
                       int first, int n, int wrong) {
  char path[600];
  Err e = {0};
  snprintf(path, sizeof path, "mkdir -p %s", tu_path(dst));
  assert_int_equal(system(path), 0);
  IdxImages part = *im;
  part.n = n;
  part.data = im->data + (size_t)first * 144;
  uint8_t *labels = malloc((size_t)n);
  for (int i = 0; i < n; i++)
    labels[i] = (uint8_t)((lb->data[first + i] + (first + i >= wrong)) % 4);
  IdxLabels lpart = {n, 0, labels};
  snprintf(path, sizeof path, "%s/%s-images-idx3-ubyte", tu_path(dst), which);
  assert_int_equal(idx_write_images(path, &part, &e), 0);
  snprintf(path, sizeof path, "%s/%s-labels-idx1-ubyte", tu_path(dst), which);
  assert_int_equal(idx_write_labels(path, &lpart, &e), 0);
  free(labels);
}

/* DST from 400 quadrant images: its training set their first train_n, its
   test set test_n from test_first on; labels from index `wrong` on wrong. */
static void quad_parts(const char *dst, int train_n, int test_first, int test_n, int wrong) {
  tu_quadrant_data("q400", 400, 8);
  IdxImages im;
  IdxLabels lb;
  Err e = {0};
  if (idx_load_split(tu_path("q400"), "train", &im, &lb, &e) < 0)
    fail_msg("%s", e.msg);
  write_part(&im, &lb, dst, "train", 0, train_n, wrong);
  write_part(&im, &lb, dst, "t10k", test_first, test_n, wrong);
  idx_images_free(&im);
  idx_labels_free(&lb);
}

/* The printed "KEY LOSS  ACC" pair of epoch `epoch`, as text. */
static void printed_pair(int epoch, const char *key, char *out, size_t size) {
  const char *v = printed_at(epoch, key);
  const char *acc = strstr(v, "accuracy ");
  assert_non_null(acc);
  snprintf(out, size, "%.*s %.6s", (int)strcspn(v, " "), v, acc + strlen("accuracy "));
}

/* validation 0.25 of 400 images holds out the last 100 before shuffling:
   training on the first 300 alone gives the same weights, bit for bit, and
   its test scores on those 100 are the validation scores printed. */
static void test_train_validation_holds_out_the_last_images(void **state) {
  (void)state;
  quad_parts("vall", 400, 0, 40, 400);
  quad_parts("vhead", 300, 300, 100, 400);
  const char *net = "network v\ninput 12x12x1\nconv2d 4 3x3 relu\nmaxpool 2x2\nflatten\n"
                    "dense 4 softmax\ntrain {\n  optimizer adam lr=0.01\n  batch 16\n"
                    "  epochs 2\n  schedule cosine\n%s}\n";
  char src[512];
  snprintf(src, sizeof src, net, "  validation 0.25\n");
  tu_write_text("val.cnn", src);
  snprintf(src, sizeof src, net, "");
  tu_write_text("head.cnn", src);
  assert_int_equal(tu_run("train val.cnn --data vall --out val.safetensors --backend tcc "
                          "--threads 2"),
                   0);
  assert_contains(tu_out, "training v: 300 images (40 test, 100 for validation)");
  char val[2][64], test[2][64];
  for (int e = 0; e < 2; e++)
    printed_pair(e + 1, "val loss ", val[e], sizeof val[e]);
  assert_int_equal(tu_run("train head.cnn --data vhead --out head.safetensors --backend tcc "
                          "--threads 2"),
                   0);
  assert_true(tu_same_tensors("val.safetensors", "head.safetensors"));
  for (int e = 0; e < 2; e++) {
    printed_pair(e + 1, "test loss ", test[e], sizeof test[e]);
    assert_string_equal(val[e], test[e]);
  }
  /* A split that leaves nothing on one side. */
  snprintf(src, sizeof src, net, "  validation 0.001\n");
  tu_write_text("none.cnn", src);
  assert_int_equal(tu_run("train none.cnn --data vall --out none.safetensors --backend tcc"), 1);
  assert_contains(tu_err, "validation 0.001 of 400 training images holds out 0");
  assert_false(tu_exists("none.safetensors"));
}

/* With a validation set, --log has val_loss and val_accuracy after accuracy
   (the train line's order) and --plot a validation curve in both panels;
   --resume reads those columns back. */
static void test_train_validation_in_log_and_plot(void **state) {
  (void)state;
  quad_parts("vlog", 400, 0, 40, 400);
  tu_write_text("vl.cnn", "network vl\ninput 12x12x1\nconv2d 4 3x3 relu\nmaxpool 2x2\nflatten\n"
                          "dense 4 softmax\ntrain {\n  optimizer adam lr=0.01\n  batch 16\n"
                          "  epochs 2\n  schedule cosine\n  validation 0.25\n}\n");
  const char *args = "--data vlog --backend tcc --threads 1";
  assert_int_equal(tu_run("train vl.cnn %s --out vl.safetensors --checkpoint vl.ckpt "
                          "--log vl.csv --plot vl.svg",
                          args),
                   0);
  static char text[1024];
  tu_read_file(tu_path("vl.csv"), text, sizeof text);
  const char *header =
      "epoch,loss,accuracy,val_loss,val_accuracy,test_loss,test_accuracy,seconds,lr\n";
  if (strncmp(text, header, strlen(header)) != 0)
    fail_msg("vl.csv does not start with the header:\n%s", text);
  char *line = text + strlen(header);
  for (int epoch = 1; epoch <= 2; epoch++) {
    double f[9];
    int used = 0;
    assert_int_equal(sscanf(line, "%lf,%lf,%lf,%lf,%lf,%lf,%lf,%lf,%lf%n", &f[0], &f[1], &f[2],
                            &f[3], &f[4], &f[5], &f[6], &f[7], &f[8], &used),
                     9);
    assert_int_equal(line[used], '\n');
    line += used + 1;
    assert_float_equal(f[0], epoch, 0);
    assert_float_equal(f[3], printed(epoch, "val loss "), 5e-5);
    assert_float_equal(f[4], printed(epoch, "val accuracy "), 5e-5);
    assert_float_equal(f[5], printed(epoch, "test loss "), 5e-5);
    assert_float_equal(f[8], printed(epoch, "lr "), 1e-6);
  }
  assert_int_equal(*line, 0);
  static char svg[1 << 17];
  tu_read_file(tu_path("vl.svg"), svg, sizeof svg);
  assert_contains(svg, ">validation</text>");
  /* one validation curve per panel, and one in the legend */
  assert_int_equal(tu_count(svg, "<polyline class=\"validation\""), 3);
  /* Resumed from epoch 1: the log keeps its row 1 with the validation
     scores, and goes on in the same form. */
  static char before[1024];
  memcpy(before, text, sizeof before);
  assert_int_equal(tu_run("train vl.cnn %s --out vl.safetensors --resume vl.ckpt --epochs 3 "
                          "--checkpoint vl3.ckpt --log vl.csv",
                          args),
                   0);
  tu_read_file(tu_path("vl.csv"), text, sizeof text);
  size_t upto_row2 = strchr(before + strlen(header), '\n') - before + 1;
  upto_row2 = strchr(before + upto_row2, '\n') - before + 1; /* rows 1 and 2 */
  assert_memory_equal(text, before, upto_row2);
  assert_non_null(strstr(text + upto_row2, "3,"));
}

/* The held-out images carry the wrong labels (each moved on by one class),
   so the better the network learns, the higher the validation loss: epoch 1
   is the best, patience 2 stops after epoch 3, and the weights written are
   epoch 1's, the same bits as a run of one epoch. The checkpoint keeps the
   best weights and the patience counter: resuming it stops at once with the
   same weights. */
static void test_train_early_stopping_keeps_the_best_epoch(void **state) {
  (void)state;
  quad_parts("rising", 400, 0, 40, 300); /* the last 100 of the training set: wrong */
  tu_write_text("es.cnn", "network es\ninput 12x12x1\nconv2d 4 3x3 relu\nmaxpool 2x2\nflatten\n"
                          "dense 4 softmax\ntrain {\n  optimizer adam lr=0.01\n  batch 10\n"
                          "  epochs 10\n  validation 0.25\n  early_stopping patience=2\n}\n");
  const char *args = "--data rising --backend tcc --threads 1";
  assert_int_equal(tu_run("train es.cnn %s --out es.safetensors --checkpoint es.ckpt", args), 0);
  double v1 = printed(1, "val loss "), v2 = printed(2, "val loss "), v3 = printed(3, "val loss ");
  print_message("validation loss per epoch: %.4f %.4f %.4f\n", v1, v2, v3);
  assert_true(v2 > v1 && v3 > v1);
  assert_contains(tu_out, "early stopping after epoch 3: the validation loss has not fallen below "
                          "epoch 1's ");
  assert_contains(tu_out, "wrote es.safetensors: epoch 1's weights, the lowest validation loss");
  assert_null(strstr(tu_out, "epoch 4/10"));
  assert_string_equal(meta_of("es.safetensors", "best_epoch"), "1");
  assert_string_equal(meta_of("es.ckpt", "epoch"), "3");
  assert_string_equal(meta_of("es.ckpt", "epochs_without_improvement"), "2");
  assert_int_equal(
      tu_run("train es.cnn %s --epochs 1 --out one.safetensors --checkpoint one.ckpt", args), 0);
  assert_true(tu_same_tensors("es.safetensors", "one.safetensors"));
  assert_int_equal(tu_run("train es.cnn %s --resume es.ckpt --out again.safetensors "
                          "--checkpoint again.ckpt",
                          args),
                   0);
  assert_null(strstr(tu_out, "epoch 4/10"));
  assert_contains(tu_out, "early stopping after epoch 3");
  assert_true(tu_same_tensors("es.safetensors", "again.safetensors"));
}

/* A cosine schedule with warmup, a validation split and early stopping,
   stopped by SIGINT inside epoch 2 and resumed: the same weights, byte for
   byte, and the same log, learning rates included, as a run never stopped. */
static void test_train_resume_mid_schedule_is_exact(void **state) {
  (void)state;
  tu_quadrant_data("squad", 6000, 48); /* 2,400 steps an epoch: the signal lands inside one */
  tu_write_text("sched.cnn", "network sched\ninput 12x12x1\nconv2d 4 3x3 relu\nmaxpool 2x2\n"
                             "flatten\ndense 4 softmax\ntrain {\n  optimizer sgd lr=0.05 "
                             "momentum=0.9\n  batch 2\n  epochs 3\n"
                             "  schedule cosine warmup=1 min_lr=0.001\n  label_smoothing 0.1\n"
                             "  validation 0.2\n  early_stopping patience=5\n}\n");
  const char *args = "--data squad --backend tcc --threads 2";
  assert_int_equal(
      tu_run("train sched.cnn %s --out mfull.safetensors --checkpoint mfull.ckpt --log mfull.csv",
             args),
      0);
  pid_t pid =
      tu_start("train sched.cnn %s --out m.safetensors --checkpoint m.ckpt --log m.csv", args);
  tu_await(pid, "m.csv", "\n1,");
  kill(pid, SIGINT);
  assert_int_equal(tu_finish(pid), 130);
  assert_true(atoi(meta_of("m.ckpt", "epoch_batches")) > 0);
  assert_int_equal(tu_run("train sched.cnn %s --out m.safetensors --checkpoint m.ckpt --log m.csv "
                          "--resume m.ckpt",
                          args),
                   0);
  assert_contains(tu_out, "(resuming in epoch 2");
  assert_true(same_bytes("mfull.safetensors", "m.safetensors"));
  double full[3][LOG_COLS];
  same_log_rows("mfull.csv", "m.csv", full);
  assert_false(isnan(full[1][LOG_VAL_LOSS])); /* the validation scores compared too */
  /* The lr column, each epoch's last step: epoch 1 ends the warmup at 0.05;
     the cosine runs over the last 4,800 steps. */
  assert_float_equal(full[0][6], 0.05, 1e-9);
  const double pi = 3.14159265358979323846;
  assert_float_equal(full[1][6], 0.001 + 0.049 * (1 + cos(pi * 2399 / 4800)) / 2, 1e-6);
  assert_float_equal(full[2][6], 0.001 + 0.049 * (1 + cos(pi * 4799 / 4800)) / 2, 1e-6);
}

/* zw.cnn: dropout, a step schedule and class weights W; zfull.safetensors
   its 3 epochs, z.ckpt the checkpoint after its first. */
static void zero_weight_runs(const char *w) {
  char src[512];
  snprintf(src, sizeof src,
           "network zw\ninput 12x12x1\nflatten\ndropout 0.5\ndense 4 softmax\n"
           "train {\n  optimizer adam lr=0.01\n  batch 2\n  epochs 3\n"
           "  schedule step every=1 gamma=0.5\n  class_weights %s\n}\n",
           w);
  tu_quadrant_data("zq", 40, 8);
  tu_write_text("zw.cnn", src);
  assert_int_equal(tu_run("train zw.cnn --data zq --backend tcc --threads 1 --out "
                          "zfull.safetensors --checkpoint zfull.ckpt"),
                   0);
  assert_int_equal(tu_run("train zw.cnn --data zq --backend tcc --threads 1 --epochs 1 --out "
                          "z.safetensors --checkpoint z.ckpt"),
                   0);
}

/* z.ckpt resumed for the rest of the 3 epochs, into z.safetensors and z2.ckpt. */
static void resume_zero_weight_run(void) {
  assert_int_equal(tu_run("train zw.cnn --data zq --backend tcc --threads 1 --resume z.ckpt --out "
                          "z.safetensors --checkpoint z2.ckpt"),
                   0);
  assert_contains(tu_out, "epoch 3/3");
}

/* class_weights 1,0,0,0: a batch of 2 holding no image of class 0 weighs 0
   and takes no optimizer step, but is a step of the run (its dropout key,
   its learning rate). Stopped after epoch 1, where such batches were, and
   resumed: the weights of a run never stopped, byte for byte. */
static void test_train_resume_after_zero_weight_batches_is_exact(void **state) {
  (void)state;
  zero_weight_runs("1,0,0,0");
  resume_zero_weight_run();
  assert_true(same_bytes("zfull.safetensors", "z.safetensors"));
  /* 20 batches stepped through in epoch 1, fewer optimizer steps */
  assert_string_equal(meta_of("z.ckpt", "run_step"), "20");
  assert_true(atoi(meta_of("z.ckpt", "step")) < 20);
  assert_string_equal(meta_of("z2.ckpt", "run_step"), "60");
}

/* A checkpoint written before run_step (here the key renamed in place, so
   the file stays whole) resumes from the optimizer's step: exact where
   every batch weighed something. */
static void test_train_resume_of_a_checkpoint_without_run_step(void **state) {
  (void)state;
  zero_weight_runs("1,2,1,1");
  static char buf[1 << 20];
  size_t n = tu_read_file(tu_path("z.ckpt"), buf, sizeof buf);
  assert_true(n > 0 && n < sizeof buf);
  char *key = memmem(buf, n, "\"run_step\"", 10);
  assert_non_null(key);
  memcpy(key, "\"old_skip\"", 10);
  FILE *f = fopen(tu_path("z.ckpt"), "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(buf, 1, n, f), n);
  assert_int_equal(fclose(f), 0);
  assert_string_equal(meta_of("z.ckpt", "run_step"), "");
  assert_string_equal(meta_of("z.ckpt", "step"), "20");
  resume_zero_weight_run();
  assert_true(same_bytes("zfull.safetensors", "z.safetensors"));
  assert_string_equal(meta_of("z2.ckpt", "run_step"), "60");
}

/* SIGTERM stops the same way (exit 143). A second signal exits at once:
   both arrive while the run is stopped (SIGSTOP), so the second comes
   before the batch can end; nothing more is written and the checkpoint on
   disk is a whole one. */
static void test_train_sigterm_and_a_second_signal(void **state) {
  (void)state;
  tu_quadrant_data("quad", 1200, 48);
  tu_write_text("stop.cnn", stop_net);
  pid_t pid = tu_start("train stop.cnn %s --out t.safetensors --checkpoint t.ckpt", stop_args);
  tu_await(pid, ".out", "epoch 1/3");
  kill(pid, SIGTERM);
  assert_int_equal(tu_finish(pid), 128 + SIGTERM);
  assert_contains(tu_out, "stopped by SIGTERM ");
  assert_contains(tu_out, "--resume t.ckpt\n");
  pid = tu_start("train stop.cnn %s --out u.safetensors --checkpoint u.ckpt", stop_args);
  tu_await(pid, ".out", "epoch 2/3"); /* so epoch 1's checkpoint is there */
  kill(pid, SIGSTOP);
  kill(pid, SIGINT);
  kill(pid, SIGTERM);
  kill(pid, SIGCONT);
  int status = tu_finish(pid);
  assert_true(status == 130 || status == 128 + SIGTERM);
  assert_true(strstr(tu_out, "wrote") == NULL);
  assert_false(tu_exists("u.safetensors"));
  assert_true(atoi(meta_of("u.ckpt", "epoch")) >= 1);
}

/* FILE: a linear classifier of the quadrant images, trained by OPTIMIZER
   at learning rate LR. */
static void write_linear_net(const char *file, const char *optimizer, const char *lr) {
  char src[256];
  snprintf(src, sizeof src,
           "network lin\ninput 12x12x1\nflatten\ndense 4 softmax\n"
           "train {\n  optimizer %s lr=%s\n  batch 50\n}\n",
           optimizer, lr);
  tu_write_text(file, src);
}

/* The quadrant data, NET (a write_linear_net) and its first epoch, on tcc
   and one thread, with its checkpoint in CKPT. */
static void first_epoch(const char *net, const char *optimizer, const char *lr, const char *ckpt) {
  tu_quadrant_data("quad", 1200, 48);
  write_linear_net(net, optimizer, lr);
  assert_int_equal(tu_run("train %s --data quad --epochs 1 --backend tcc --threads 1 "
                          "--out first.safetensors --checkpoint %s",
                          net, ckpt),
                   0);
}

/* After --resume, a divergence names the resumed checkpoint to go back to
   (here the user raised the learning rate: a note says so). */
static void test_train_divergence_after_resume_names_the_checkpoint(void **state) {
  (void)state;
  first_epoch("calm.cnn", "sgd", "0.01", "c.ckpt");
  write_linear_net("calm.cnn", "sgd", "1e38");
  assert_int_equal(tu_run("train calm.cnn --data quad --epochs 3 --resume c.ckpt --backend tcc "
                          "--threads 1 --out c2.safetensors --checkpoint c2.ckpt"),
                   1);
  assert_contains(tu_err, "diverged at epoch 2, step ");
  assert_contains(tu_err, "the last good checkpoint, after epoch 1, is c.ckpt");
  assert_contains(tu_err, "made with lr 0.01, continuing with lr 1e+38");
}

/* Resuming with another thread count, backend or learning rate is allowed
   and said, one line each; the same settings say nothing. */
static void test_train_resume_reports_what_changed(void **state) {
  (void)state;
  first_epoch("notes.cnn", "adam", "0.001", "n.ckpt");
  assert_int_equal(tu_run("train notes.cnn --data quad --epochs 2 --backend tcc --threads 1 "
                          "--resume n.ckpt --out n2.safetensors --checkpoint n2.ckpt"),
                   0);
  assert_true(strstr(tu_err, "note:") == NULL);
  write_linear_net("notes.cnn", "adam", "0.0005");
  assert_int_equal(tu_run("train notes.cnn --data quad --epochs 2 --backend cc --threads 2 "
                          "--resume n.ckpt --out n2.safetensors --checkpoint n2.ckpt"),
                   0);
  assert_int_equal(tu_count(tu_err, "cnngen: note: n.ckpt: "), 3);
  assert_int_equal(tu_count(tu_err, "\n"), 3);
  assert_contains(tu_err, "made with 1 thread, continuing with 2 ");
  assert_contains(tu_err, "made with backend tcc, continuing with cc ");
  assert_contains(tu_err, "made with lr 0.001, continuing with lr 0.0005 ");
  assert_contains(tu_out, "lr 0.0005");
}

/* A checkpoint made with --batch 400 resumed without --batch (the train
   block says 50) trains on the checkpoint's batches of 400, as an
   uninterrupted run does (the batch buffers once held only 50 images). */
static void test_train_resume_with_the_checkpoints_larger_batch(void **state) {
  (void)state;
  tu_quadrant_data("quad", 1200, 48);
  write_linear_net("big.cnn", "adam", "0.01");
  assert_int_equal(tu_run("train big.cnn --data quad --epochs 2 --batch 400 --backend tcc "
                          "--threads 2 --out whole.safetensors --checkpoint whole.ckpt"),
                   0);
  assert_int_equal(tu_run("train big.cnn --data quad --epochs 1 --batch 400 --backend tcc "
                          "--threads 2 --out half.safetensors --checkpoint half.ckpt"),
                   0);
  int status = tu_run("train big.cnn --data quad --epochs 2 --backend tcc --threads 2 --resume "
                      "half.ckpt --out rest.safetensors --checkpoint rest.ckpt");
  if (status != 0)
    fail_msg("exit %d:\n%s%s", status, tu_out, tu_err);
  assert_contains(tu_out, "batch 400");
  assert_true(tu_same_tensors("whole.safetensors", "rest.safetensors"));
}

/* Resuming from the checkpoint of the last epoch writes the same weights
   file, test scores included, and names that checkpoint. */
static void test_train_resume_at_the_end_keeps_the_scores(void **state) {
  (void)state;
  tu_quadrant_data("quad", 1200, 48);
  tu_write_text("stop.cnn", stop_net);
  assert_int_equal(
      tu_run("train stop.cnn %s --epochs 1 --out e.safetensors --checkpoint e.ckpt", stop_args), 0);
  assert_int_equal(tu_run("train stop.cnn %s --epochs 1 --resume e.ckpt --out e2.safetensors "
                          "--checkpoint e2.ckpt",
                          stop_args),
                   0);
  assert_contains(tu_out, "wrote e2.safetensors (checkpoint e.ckpt)");
  assert_string_equal(meta_of("e2.safetensors", "test_accuracy"),
                      meta_of("e.safetensors", "test_accuracy"));
  assert_true(same_bytes("e.safetensors", "e2.safetensors"));
}

/* A data set of 2x2 gray images written by hand: `train` and `t10k`. */
static void write_small_data(const char *dir) {
  uint8_t pixels[8 * 4], labels[8];
  for (int i = 0; i < 8; i++) {
    labels[i] = (uint8_t)(i % 2);
    for (int k = 0; k < 4; k++)
      pixels[i * 4 + k] = (uint8_t)(labels[i] ? 200 + k : 10 * k);
  }
  mkdir(tu_path(dir), 0777);
  const char *which[2] = {"train", "t10k"};
  for (int s = 0; s < 2; s++) {
    char p[512];
    Err e = {0};
    IdxImages im = {s ? 4 : 8, 2, 2, 1, pixels};
    IdxLabels lb = {s ? 4 : 8, 0, labels};
    snprintf(p, sizeof p, "%s/%s-images-idx3-ubyte", tu_path(dir), which[s]);
    assert_int_equal(idx_write_images(p, &im, &e), 0);
    snprintf(p, sizeof p, "%s/%s-labels-idx1-ubyte", tu_path(dir), which[s]);
    assert_int_equal(idx_write_labels(p, &lb, &e), 0);
  }
}

/* The first line says how long the cc backend compiled, or, when the object
   came from its cache, that nothing was compiled. */
static void test_train_says_when_cc_object_was_cached(void **state) {
  (void)state;
  write_small_data("two");
  tu_write_text("two.cnn", "network two\ninput 2x2x1\nflatten\ndense 2 softmax\n"
                           "train {\n  batch 4\n  epochs 1\n}\n");
  const char *old = getenv("XDG_CACHE_HOME");
  char *saved = old ? strdup(old) : NULL;
  setenv("XDG_CACHE_HOME", tu_path("cache"), 1); /* empty: the first run compiles */
  int first = tu_run("train two.cnn --data two --backend cc --threads 1 --out a.safetensors");
  char *first_out = strdup(tu_out);
  int second = tu_run("train two.cnn --data two --backend cc --threads 1 --out b.safetensors");
  if (saved)
    setenv("XDG_CACHE_HOME", saved, 1);
  else
    unsetenv("XDG_CACHE_HOME");
  free(saved);
  assert_int_equal(first, 0);
  assert_int_equal(second, 0);
  assert_contains(first_out, ", backend cc (compiled in ");
  assert_null(strstr(first_out, "cached"));
  assert_contains(tu_out, ", backend cc (cached), 1 thread\n");
  assert_null(strstr(tu_out, "compiled in"));
  free(first_out);
  /* tcc compiles every time. */
  assert_int_equal(tu_run("train two.cnn --data two --backend tcc --threads 1 --out c.safetensors"),
                   0);
  assert_contains(tu_out, ", backend tcc (compiled in ");
}

/* tests/reference/check's train part with two threads (tests/run-all runs
   one and two with tcc, one with cc). */
/* Training with batchnorm through the command: 23 images in batches of 7
   leave a last batch of 2 on 4 threads, two of whose chunks (global
   thread 0's among them) are empty and still meet the others at every
   reduction (a deadlock otherwise); the same bits on a second run; the
   running statistics moved from where they started; num_batches_tracked
   counted, and counted on after --resume and --weights; one image per
   channel in a batch refused. */
static const char bn_net[] =
    "network bnt\ninput 12x12x1\nconv2d 4 3x3 bias=false\nbatchnorm\nrelu\nmaxpool 2x2\n"
    "flatten\ndense 6\nbatchnorm momentum=0.2\nrelu\ndense 4 softmax\n"
    "train {\n  optimizer adam lr=0.01\n  batch 7\n  epochs 3\n}\n";

static void test_train_batchnorm_on_empty_chunks(void **state) {
  (void)state;
  tu_quadrant_data("bnq", 23, 8);
  tu_write_text("bnt.cnn", bn_net);
  for (int run = 0; run < 2; run++) {
    assert_int_equal(
        tu_run("train bnt.cnn --data bnq --backend tcc --threads 4 --out bn%d.st", run), 0);
    assert_contains(tu_out, "epoch 3/3");
  }
  assert_true(tu_same_tensors("bn0.st", "bn1.st"));
  StFile f;
  Err e = {0};
  assert_int_equal(st_read(tu_path("bn0.st"), &f, &e), 0);
  const StTensor *var = st_find(&f, "bn2.running_var");
  assert_non_null(var);
  float v[6];
  memcpy(v, var->data, sizeof v);
  for (int c = 0; c < 6; c++)
    assert_true(isfinite(v[c]) && v[c] != 1.0f);
  long long tracked = 0; /* 3 epochs of 4 batches, as PyTorch counts them */
  assert_int_equal(st_count(&f, "bn1.num_batches_tracked", &tracked), 1);
  assert_int_equal(tracked, 12);
  assert_int_equal(st_count(&f, "bn2.num_batches_tracked", &tracked), 1);
  assert_int_equal(tracked, 12);
  st_free(&f);
  /* counted on from a checkpoint, and from weights */
  assert_int_equal(tu_run("train bnt.cnn --data bnq --backend tcc --threads 4 --epochs 1 --out "
                          "h.st --checkpoint h.ckpt"),
                   0);
  assert_int_equal(tu_run("train bnt.cnn --data bnq --backend tcc --threads 4 --resume h.ckpt "
                          "--checkpoint h2.ckpt --out bn2.st"),
                   0);
  assert_true(tu_same_tensors("bn0.st", "bn2.st"));
  assert_int_equal(
      tu_run("train bnt.cnn --data bnq --backend tcc --epochs 1 --weights bn0.st --out w.st"), 0);
  assert_int_equal(st_read(tu_path("w.st"), &f, &e), 0);
  assert_int_equal(st_count(&f, "bn2.num_batches_tracked", &tracked), 1);
  assert_int_equal(tracked, 16);
  st_free(&f);
  assert_int_equal(tu_run("train bnt.cnn --data bnq --backend tcc --batch 11"), 1);
  assert_contains(tu_err, "bnt.cnn: line 9: batchnorm needs more than one value per channel in a "
                          "batch, but the last batch of each epoch holds one image (23 training "
                          "images, batch 11)");
}

/* LAYER.num_batches_tracked in weights file `file` of the directory (-1:
   none). */
static long long tracked_of(const char *file, const char *name) {
  StFile f;
  Err e = {0};
  if (st_read(tu_path(file), &f, &e) < 0)
    fail_msg("%s", e.msg);
  long long n = -1;
  st_count(&f, name, &n);
  st_free(&f);
  return n;
}

/* The F32 tensors of safetensors file `from` (cnngen writes them in the
   network's order), one after the other as the raw .f32 file `to`: what
   NAME_store gives. */
static void write_raw_f32(const char *from, const char *to) {
  StFile f;
  Err e = {0};
  if (st_read(tu_path(from), &f, &e) < 0)
    fail_msg("%s", e.msg);
  FILE *out = fopen(tu_path(to), "wb");
  assert_non_null(out);
  for (int i = 0; i < f.ntensors; i++)
    if (strcmp(f.tensors[i].dtype, "F32") == 0)
      assert_int_equal(fwrite(f.tensors[i].data, 1, f.tensors[i].nbytes, out), f.tensors[i].nbytes);
  st_free(&f);
  assert_int_equal(fclose(out), 0);
}

/* --weights as a raw .f32 file (parameters only) on a network with
   batchnorm: the same weights as from the safetensors file it came from,
   with num_batches_tracked counted from 0 rather than from the file's. */
static void test_train_batchnorm_from_raw_f32_weights(void **state) {
  (void)state;
  tu_quadrant_data("bnr", 23, 8);
  tu_write_text("bnt.cnn", bn_net);
  const char *args = "--data bnr --backend tcc --threads 2 --epochs 1";
  assert_int_equal(tu_run("train bnt.cnn %s --out i.st --checkpoint i.ckpt", args), 0);
  write_raw_f32("i.st", "i.f32");
  assert_int_equal(tu_run("train bnt.cnn %s --weights i.st --out s.st --checkpoint s.ckpt", args),
                   0);
  assert_int_equal(tu_run("train bnt.cnn %s --weights i.f32 --out r.st --checkpoint r.ckpt", args),
                   0);
  write_raw_f32("s.st", "s.f32");
  write_raw_f32("r.st", "r.f32");
  assert_true(same_bytes("s.f32", "r.f32"));
  assert_int_equal(tracked_of("s.st", "bn1.num_batches_tracked"), 8);
  assert_int_equal(tracked_of("r.st", "bn1.num_batches_tracked"), 4);
  assert_int_equal(tracked_of("r.ckpt", "bn2.num_batches_tracked"), 4);
}

/* early_stopping on a network with batchnorm: the best epoch's weights
   carry the num_batches_tracked of that epoch's end, not the run's. */
static void test_train_early_stopping_keeps_the_best_epochs_counts(void **state) {
  (void)state;
  quad_parts("rising", 400, 0, 40, 300); /* 300 to train on: 30 batches of 10 */
  tu_write_text("esb.cnn", "network esb\ninput 12x12x1\nconv2d 4 3x3 bias=false\nbatchnorm\n"
                           "relu\nmaxpool 2x2\nflatten\ndense 4 softmax\ntrain {\n"
                           "  optimizer adam lr=0.01\n  batch 10\n  epochs 10\n"
                           "  validation 0.25\n  early_stopping patience=2\n}\n");
  assert_int_equal(tu_run("train esb.cnn --data rising --backend tcc --threads 1 --out "
                          "esb.safetensors --checkpoint esb.ckpt"),
                   0);
  const int best = atoi(meta_of("esb.safetensors", "best_epoch"));
  const int ran = atoi(meta_of("esb.ckpt", "epoch"));
  print_message("best epoch %d of %d\n", best, ran);
  assert_true(best >= 1 && best < ran);
  assert_int_equal(tracked_of("esb.safetensors", "bn1.num_batches_tracked"), 30 * best);
  assert_int_equal(tracked_of("esb.ckpt", "bn1.num_batches_tracked"), 30 * ran);
}

static void test_train_reference_cases_on_two_threads(void **state) {
  (void)state;
  for (int b = 0; b < 2; b++) {
    int rc = tu_shell("%s/%s/check --only train --backend %s --threads 2 %s", tu_repo, TU_REFERENCE,
                      b ? "cc" : "tcc", tu_cnngen);
    if (rc != 0)
      fail_msg("%s/check exited with %d:\n%s%s", TU_REFERENCE, rc, tu_out, tu_err);
    assert_contains(tu_out, " 0 failed");
  }
}

/* A case folder that lacks a file fails its checks with the file's path and
   the command that makes it, and check's exit status is 1. */
static void test_train_reference_check_names_a_missing_file(void **state) {
  (void)state;
  const char *from = tu_reference("mse_gap");
  assert_int_equal(
      tu_shell("cp -r %s/%s mse_gap && rm mse_gap/expected_trained.safetensors", tu_repo, from), 0);
  assert_int_equal(tu_shell("%s/%s/check %s mse_gap", tu_repo, TU_REFERENCE, tu_cnngen), 1);
  assert_contains(tu_out, "FAIL mse_gap predict: mse_gap/expected_trained.safetensors is missing "
                          "(make it with tests/reference/make-reference mse_gap)");
  assert_contains(tu_out, "0 passed, 2 failed");
}

/* Training's forward pass runs inference's kernels (and its activation
   functions), so the outputs NAME_accumulate_y reports are NAME_infer's bit
   for bit: channel counts below and above 8, sigmoid and tanh, a conv + pool
   that inference fuses, dense outputs that are not whole vectors, softmax
   and sigmoid outputs, with both backends. */
static void test_train_forward_is_inference_bit_for_bit(void **state) {
  (void)state;
  static const char *const nets[] = {
      "network s\ninput 7x7x2\nconv2d 5 3x3 tanh\nmaxpool 2x2\nflatten\ndense 10 sigmoid\n"
      "train {\n  loss binary_crossentropy\n}\n",
      "network r\ninput 9x9x3\nconv2d 12 3x3 relu\nmaxpool 2x2\nconv2d 8 2x2 sigmoid\n"
      "flatten\ndense 6 softmax\n",
      "network q\ninput 6x6x1\nconv2d 9 3x3 padding=same\ntanh\nflatten\ndense 5 sigmoid\n"
      "train {\n  loss mse\n}\n",
      "network dw\ninput 8x8x3\nconv2d 20 3x3 relu\nconv2d 20 3x3 padding=1 groups=20 relu\n"
      "conv2d 20 3x3 stride=2 groups=10 tanh\nmaxpool 2x2\nflatten\ndense 4 softmax\n"};
  for (size_t k = 0; k < sizeof nets / sizeof *nets; k++)
    for (int backend = 0; backend < 2; backend++) {
      Compiled c;
      compile_net(&c, nets[k], backend ? BACKEND_CC : BACKEND_TCC, false);
      void (*init)(void *, uint64_t), (*infer)(const void *, void *, const float *, int, float *);
      void *p = sym(&c, "_init");
      memcpy(&init, &p, sizeof p);
      p = sym(&c, "_infer");
      memcpy(&infer, &p, sizeof p);
      const int n = 4;
      const long in = shape_size(c.net->input), out = shape_size(c.net->output);
      void *m = tu_zalloc(c.model_bytes), *w = tu_zalloc(c.work_bytes),
           *g = tu_zalloc(c.grads_bytes);
      float *x = malloc(sizeof(float) * (size_t)(n * in)), *target = calloc((size_t)(n * out), 4);
      float *yi = malloc(sizeof(float) * (size_t)(n * out)),
            *yt = malloc(sizeof(float) * (size_t)(n * out));
      uint64_t seed = 77 + k;
      for (long i = 0; i < n * in; i++)
        x[i] = (float)uniform(&seed);
      for (int i = 0; i < n; i++)
        target[i * out] = 1.0f;
      init(m, 5 + k);
      infer(m, w, x, n, yi);
      c.accumulate_y(m, w, g, x, target, NULL, n, 1, yt);
      for (long i = 0; i < n * out; i++)
        if (memcmp(&yi[i], &yt[i], sizeof(float)))
          fail_msg("network %s (%s): output %ld is %.9g in inference, %.9g in training",
                   c.net->name, backend ? "cc" : "tcc", i, yi[i], yt[i]);
      free(x), free(target), free(yi), free(yt), free(m), free(w), free(g);
      release(&c);
    }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_train_forward_is_inference_bit_for_bit),
      cmocka_unit_test(test_train_gradients_match_finite_differences),
      cmocka_unit_test(test_train_float_code_matches_double),
      cmocka_unit_test(test_train_loss_values_follow_the_docs),
      cmocka_unit_test(test_train_optimizers_follow_the_docs),
      cmocka_unit_test(test_train_step_nan_loss_is_not_missing_buffers),
      cmocka_unit_test(test_train_zero_weight_batch_moves_running_statistics),
      cmocka_unit_test(test_train_order_is_a_seeded_permutation),
      cmocka_unit_test(test_train_set_targets_and_class_weights),
      cmocka_unit_test(test_train_lr_schedules_follow_closed_forms),
      cmocka_unit_test(test_train_label_smoothing_targets),
      cmocka_unit_test(test_train_same_seed_same_weights),
      cmocka_unit_test(test_train_resume_matches_uninterrupted),
      cmocka_unit_test(test_train_checkpoint_survives_kill),
      cmocka_unit_test(test_train_end_to_end_accuracy),
      cmocka_unit_test(test_train_divergence_names_epoch_and_step),
      cmocka_unit_test(test_train_refuses_data_that_does_not_fit),
      cmocka_unit_test(test_train_sigint_saves_and_resumes_exactly),
      cmocka_unit_test(test_train_sigterm_and_a_second_signal),
      cmocka_unit_test(test_train_validation_holds_out_the_last_images),
      cmocka_unit_test(test_train_validation_in_log_and_plot),
      cmocka_unit_test(test_train_early_stopping_keeps_the_best_epoch),
      cmocka_unit_test(test_train_resume_mid_schedule_is_exact),
      cmocka_unit_test(test_train_resume_after_zero_weight_batches_is_exact),
      cmocka_unit_test(test_train_resume_of_a_checkpoint_without_run_step),
      cmocka_unit_test(test_train_divergence_after_resume_names_the_checkpoint),
      cmocka_unit_test(test_train_resume_reports_what_changed),
      cmocka_unit_test(test_train_resume_with_the_checkpoints_larger_batch),
      cmocka_unit_test(test_train_resume_at_the_end_keeps_the_scores),
      cmocka_unit_test(test_train_auto_takes_tcc_for_a_short_run),
      cmocka_unit_test(test_train_log_has_a_row_per_epoch),
      cmocka_unit_test(test_train_log_resume_keeps_earlier_rows),
      cmocka_unit_test(test_train_log_without_lr_column_resumes),
      cmocka_unit_test(test_train_log_unwritable_fails_before_training),
      cmocka_unit_test(test_train_plot_draws_every_epoch),
      cmocka_unit_test(test_train_says_when_cc_object_was_cached),
      cmocka_unit_test(test_train_batchnorm_on_empty_chunks),
      cmocka_unit_test(test_train_batchnorm_from_raw_f32_weights),
      cmocka_unit_test(test_train_early_stopping_keeps_the_best_epochs_counts),
      cmocka_unit_test(test_train_reference_cases_on_two_threads),
      cmocka_unit_test(test_train_reference_check_names_a_missing_file),
  };
  return cmocka_run_group_tests(tests, tu_setup, tu_teardown);
}
