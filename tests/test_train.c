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
#include "idx.h"
#include "safetensors.h"
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
  void (*update)(void *m, const void *g, float scale);
  void (*update_d)(void *m, const void *g, double scale); /* float defined as double */
  void (*store)(const void *m, void *params);
  void (*store_opt)(const void *m, void *state, uint64_t *step);
} Compiled;

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
}

static void release(Compiled *c) {
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
    void *m = tu_zalloc(c.model_bytes), *w = tu_zalloc(c.work_bytes), *g = tu_zalloc(c.grads_bytes);
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
    void *m = tu_zalloc(cd.model_bytes), *w = tu_zalloc(cd.work_bytes),
         *g = tu_zalloc(cd.grads_bytes);
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
      void *mf = tu_zalloc(cf.model_bytes), *wk = tu_zalloc(cf.work_bytes),
           *gk = tu_zalloc(cf.grads_bytes);
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

/* The loss NAME_accumulate returns is sum_i w_i loss_i with SPEC section 5's
   loss_i, worked out here from the outputs it reports. */
static void test_train_loss_values_follow_the_spec(void **state) {
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

/* Two optimizer steps against SPEC section 5's formulas, in double. */
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
    c.update_d(m, g, scale);
    for (long i = 0; i < np; i++) {
      double gi = scale * gr[i] + wd * p[i];
      if (adam) {
        s0[i] = b1 * s0[i] + (1 - b1) * gi;
        s1[i] = b2 * s1[i] + (1 - b2) * gi * gi;
        p[i] -= lr * (s0[i] / (1 - pow(b1, step))) / (sqrt(s1[i] / (1 - pow(b2, step))) + eps);
      } else if (mom != 0) {
        s0[i] = mom * s0[i] + gi;
        p[i] -= lr * (nesterov ? gi + mom * s0[i] : s0[i]);
      } else {
        p[i] -= lr * gi;
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

static void test_train_optimizers_follow_the_spec(void **state) {
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

/* ---- the command (the directory, files and runs: testutil.h) ---- */

/* DIR with the first n_train / n_test images of Debian's Fashion-MNIST;
   false when the package is not installed. */
static bool fashion_subset(const char *dir, int n_train, int n_test) {
  IdxImages im[2];
  IdxLabels lb[2];
  Err e = {0};
  if (tu_exists(dir))
    return true;
  if (idx_load_split(CNNGEN_DEFAULT_DATA, "train", &im[0], &lb[0], &e) < 0)
    return false;
  assert_int_equal(idx_load_split(CNNGEN_DEFAULT_DATA, "t10k", &im[1], &lb[1], &e), 0);
  mkdir(tu_path(dir), 0777);
  const char *which[2] = {"train", "t10k"};
  int n[2] = {n_train, n_test};
  for (int s = 0; s < 2; s++) {
    char p[512];
    im[s].n = lb[s].n = n[s];
    snprintf(p, sizeof p, "%s/%s-images-idx3-ubyte", tu_path(dir), which[s]);
    assert_int_equal(idx_write_images(p, &im[s], &e), 0);
    snprintf(p, sizeof p, "%s/%s-labels-idx1-ubyte", tu_path(dir), which[s]);
    assert_int_equal(idx_write_labels(p, &lb[s], &e), 0);
    idx_images_free(&im[s]);
    idx_labels_free(&lb[s]);
  }
  return true;
}

static const char small_net[] =
    "network small\ninput 28x28x1\nconv2d 8 3x3 relu\nmaxpool 2x2\nconv2d 16 3x3 relu\n"
    "maxpool 2x2\nflatten\ndropout 0.2\ndense 32 relu\ndense 10 softmax\n"
    "train {\n  optimizer adam lr=0.002\n  batch 32\n  epochs 2\n  seed 5\n}\n";

static void test_train_same_seed_same_weights(void **state) {
  (void)state;
  if (!fashion_subset("fm", 1000, 200))
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
  if (!fashion_subset("fm", 1000, 200))
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
  if (!fashion_subset("tiny", 64, 16))
    skip();
  tu_write_text("tiny.cnn",
                "network tiny\ninput 28x28x1\nflatten\ndense 256 relu\ndense 10 softmax\n"
                "train {\n  batch 64\n}\n");
  assert_int_equal(tu_run("train tiny.cnn --data tiny --epochs 1 --checkpoint k.ckpt --backend tcc "
                          "--threads 1 --out k.safetensors"),
                   0);
  uint64_t seed = 11;
  for (int round = 0; round < 20; round++) {
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
      char cmd[1024];
      snprintf(cmd, sizeof cmd,
               "cd %s && exec %s train tiny.cnn --data tiny --epochs 1000000 --checkpoint k.ckpt "
               "--backend tcc --threads 1 --out k.safetensors >/dev/null 2>&1",
               tu_tmp, tu_cnngen);
      execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
      _exit(127);
    }
    struct timespec ts = {0, 100000000 + (long)(uniform(&seed) * 400e6)};
    nanosleep(&ts, NULL);
    kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
    assert_true(WIFSIGNALED(status));
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
  if (!fashion_subset("fm4k", 4000, 1000))
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
  if (!fashion_subset("fm", 1000, 200))
    skip();
  /* Steps of 1e38 overflow the logits to infinity: inf - inf is NaN. */
  tu_write_text("wild.cnn", "network wild\ninput 28x28x1\nflatten\ndense 10 softmax\n"
                            "train {\n  optimizer sgd lr=1e38\n}\n");
  assert_int_equal(tu_run("train wild.cnn --data fm --epochs 3 --out wild.safetensors --threads 1"),
                   1);
  assert_contains(tu_err, "diverged at epoch 1, step ");
  assert_false(tu_exists("wild.safetensors")); /* no weights from a NaN run */
}

static void test_train_refuses_data_that_does_not_fit(void **state) {
  (void)state;
  if (!fashion_subset("fm", 1000, 200))
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

/* The rows of a --log file after checking its header; returns the count. */
static int read_log(const char *file, double rows[][6], int cap) {
  static char text[1 << 16];
  tu_read_file(tu_path(file), text, sizeof text);
  const char *header = "epoch,loss,accuracy,test_loss,test_accuracy,seconds\n";
  if (strncmp(text, header, strlen(header)) != 0)
    fail_msg("%s does not start with the header:\n%s", file, text);
  int n = 0;
  for (char *line = text + strlen(header); *line; n++) {
    char *end = strchr(line, '\n');
    if (!end)
      fail_msg("%s: a row without its newline: %s", file, line);
    assert_true(n < cap);
    int used = 0;
    if (sscanf(line, "%lf,%lf,%lf,%lf,%lf,%lf%n", &rows[n][0], &rows[n][1], &rows[n][2],
               &rows[n][3], &rows[n][4], &rows[n][5], &used) != 6 ||
        line + used != end)
      fail_msg("%s: not a row of six numbers: %.*s", file, (int)(end - line), line);
    line = end + 1;
  }
  return n;
}

/* The number after `key` in the printed line of epoch `epoch`. */
static double printed(int epoch, const char *key) {
  char head[32];
  snprintf(head, sizeof head, "epoch %d/", epoch);
  const char *line = strstr(tu_out, head);
  assert_non_null(line);
  const char *v = strstr(line, key);
  assert_non_null(v);
  return atof(v + strlen(key));
}

static void test_train_log_has_a_row_per_epoch(void **state) {
  (void)state;
  if (!fashion_subset("tiny", 64, 16))
    skip();
  tu_write_text("tiny.cnn", tiny_net);
  assert_int_equal(
      tu_run("train tiny.cnn %s --epochs 3 --out l.safetensors --log l.csv", tiny_args), 0);
  double rows[8][6];
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
    assert_true(rows[i][5] > 0 && rows[i][5] < 60);
  }
  assert_true(rows[2][1] < rows[0][1]); /* it learns: the training loss falls */
}

/* --resume keeps the rows of the epochs the checkpoint holds and drops the
   later ones of a run that went further; a file that is not a log is not
   overwritten. */
static void test_train_log_resume_keeps_earlier_rows(void **state) {
  (void)state;
  if (!fashion_subset("tiny", 64, 16))
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
  double first[8][6], rows[8][6];
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

/* A log that cannot be written fails before the first epoch. */
static void test_train_log_unwritable_fails_before_training(void **state) {
  (void)state;
  if (!fashion_subset("tiny", 64, 16))
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
  if (!fashion_subset("tiny", 64, 16))
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

/* golden-check's train part with two threads (tests/run-all runs one). */
static void test_train_golden_cases_on_two_threads(void **state) {
  (void)state;
  const char *tool = "../shared/tools/golden-check";
  if (access(tool, X_OK) != 0)
    skip();
  for (int b = 0; b < 2; b++) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s --only train --backend %s --threads 2 %s ../shared/golden/*",
             tool, b ? "cc" : "tcc", tu_cnngen);
    assert_int_equal(system(cmd), 0);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_train_gradients_match_finite_differences),
      cmocka_unit_test(test_train_float_code_matches_double),
      cmocka_unit_test(test_train_loss_values_follow_the_spec),
      cmocka_unit_test(test_train_optimizers_follow_the_spec),
      cmocka_unit_test(test_train_order_is_a_seeded_permutation),
      cmocka_unit_test(test_train_set_targets_and_class_weights),
      cmocka_unit_test(test_train_same_seed_same_weights),
      cmocka_unit_test(test_train_resume_matches_uninterrupted),
      cmocka_unit_test(test_train_checkpoint_survives_kill),
      cmocka_unit_test(test_train_end_to_end_accuracy),
      cmocka_unit_test(test_train_divergence_names_epoch_and_step),
      cmocka_unit_test(test_train_refuses_data_that_does_not_fit),
      cmocka_unit_test(test_train_log_has_a_row_per_epoch),
      cmocka_unit_test(test_train_log_resume_keeps_earlier_rows),
      cmocka_unit_test(test_train_log_unwritable_fails_before_training),
      cmocka_unit_test(test_train_plot_draws_every_epoch),
      cmocka_unit_test(test_train_golden_cases_on_two_threads),
  };
  return cmocka_run_group_tests(tests, tu_setup, tu_teardown);
}
