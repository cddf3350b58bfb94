/*
 * test_emit.c: the inference half of the generated C (fuse.c, plan.c,
 * emit.c, emit_infer.c).
 *
 * Each network below is compiled from its DSL text, its header and source
 * are written to a temporary directory and built into a shared object by
 * gcc, clang (both -std=c99 -Wall -Wextra -pedantic -Werror) and tcc
 * (-Wall -Werror), with and without -march=native (vector extensions with
 * FMA, on 16 floats where the machine has AVX-512 and on 8 with
 * -mno-avx512f; without FMA; and tcc's 8-float structs), then loaded. With
 * random parameters in PyTorch layout given to NAME_load, NAME_infer's outputs
 * must match a plain double-precision forward pass written here from the
 * docs (NCHW, PyTorch's definitions) within |d| <= 2e-5 + 1e-4 |ref| (the
 * float32-vs-float64 tolerance of tests/reference/check); the
 * largest difference is printed. Also: NAME_store(NAME_load(p)) == p bit
 * for bit, several images in one call give the same bits as one call
 * each, baked weights (--weights) give the same bits as loaded ones, the
 * emitted text is the same on a second run, NAME_init is seeded and
 * bounded, and the reference case tests/reference/seed_fashion matches
 * PyTorch's outputs.
 *
 * Snapshots: the whole generated C (training included) of two example
 * networks is kept in tests/snapshots/ and compared byte for byte, so a
 * change to the emitted text shows in the diff of the commit that makes
 * it; `UPDATE=1 build/tests/test_emit` (or `UPDATE=1 make test`) rewrites
 * them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../compiler/compile.h"
#include "../compiler/emit.h"
#include "../compiler/emitter.h"
#include "cli.h"
#include "formats/idx.h"
#include "formats/safetensors.h"
#include "io.h"
#include "testutil.h"

/* ---- networks ---- */

static const char fashion_src[] = "network fashion\n"
                                  "input 28x28x1\n"
                                  "conv2d 32 3x3 relu\n"
                                  "maxpool 2x2\n"
                                  "conv2d 64 3x3 relu\n"
                                  "maxpool 2x2\n"
                                  "conv2d 64 3x3 relu\n"
                                  "flatten\n"
                                  "dense 64 relu\n"
                                  "dense 10 softmax\n";

typedef struct Case {
  const char *what, *src;
} Case;

static const Case cases[] = {
    {"fashion (examples/fashion.cnn)", fashion_src},
    {"batchnorm folded (conv bias=false + relu + fused pool, dense + relu), and not "
     "(after a relu conv, on a vector before softmax)",
     "network bn\ninput 10x10x3\n"
     "conv2d 16 3x3 padding=same bias=false\nbatchnorm\nrelu\nmaxpool 2x2\n"
     "conv2d 5 3x3 relu\nbatchnorm momentum=0.3 eps=0.01\n"
     "globalavgpool\ndense 20\nbatchnorm eps=0.1\nrelu\n"
     "dense 6\ndropout 0.5\nbatchnorm\nsoftmax\n"},
    {"same padding at stride 2, odd input, scalar and vector channels",
     "network samepad\ninput 15x13x3\n"
     "conv2d 16 3x3 stride=2 padding=same relu\n"
     "conv2d 8 5x5 padding=same\n"
     "conv2d 6 4x4 stride=2 padding=same tanh\n"
     "flatten\ndense 7 sigmoid\n"},
    {"explicit padding, fused and overlapping pools, linear conv + pool",
     "network explicit\ninput 12x11x2\n"
     "conv2d 24 3x3 padding=2 tanh\nmaxpool 2x2\n"
     "conv2d 16 3x3 padding=1\nmaxpool 3x3 stride=2\n"
     "conv2d 40 2x2 stride=2 padding=1 relu\n"
     "flatten\ndense 5 tanh\n"},
    {"avgpool (LeNet): tanh conv then avgpool, relu conv + fused avgpool, 3x3 windows",
     "network lenet\ninput 28x28x1\n"
     "conv2d 6 5x5 padding=2 tanh\navgpool 2x2\n"
     "conv2d 16 5x5 relu\navgpool 2x2\n"
     "conv2d 8 2x2 padding=1\navgpool 3x3\n"
     "flatten\ndense 120 tanh\ndense 84\nrelu\ndense 10 softmax\n"},
    {"globalavgpool, activation layers of their own, one on the input",
     "network gap\ninput 9x9x2\nrelu\n"
     "conv2d 5 3x3 padding=1 relu\nconv2d 16 3x3 sigmoid\nmaxpool 2x2\n"
     "globalavgpool\nsigmoid\ndense 12\ntanh\ndense 3\nsoftmax\n"},
    {"colour input, dropout, same padding with fused pools (cifar)",
     "network cifar\ninput 32x32x3\n"
     "conv2d 32 3x3 padding=same relu\nconv2d 32 3x3 padding=same relu\nmaxpool 2x2\n"
     "dropout 0.25\n"
     "conv2d 64 3x3 padding=same relu\nmaxpool 2x2\ndropout 0.25\n"
     "flatten\ndense 128 relu\ndropout 0.5\ndense 10 softmax\n"},
    {"sigmoid outputs, maxpool fused after sigmoid convs (scalar and vector F)",
     "network acts\ninput 10x10x1\n"
     "conv2d 3 3x3 sigmoid\nmaxpool 2x2\n"
     "conv2d 8 1x1 sigmoid\nmaxpool 2x2\n"
     "flatten\ndense 4 sigmoid\n"},
    {"pools too tall for one register tile: conv rows combined through y",
     "network tall\ninput 16x16x2\n"
     "conv2d 8 3x3 relu\navgpool 5x5\n"
     "conv2d 16 1x1\nflatten\ndense 3\n"},
    {"maxpool 5x5 through y (6 channels), multi-row tiles with a remainder row group",
     "network tall2\ninput 11x11x1\n"
     "conv2d 6 2x2\nmaxpool 5x5\n"
     "conv2d 16 1x1 relu\nflatten\ndropout 0.5\nrelu\ndense 2\n"},
    {"whole-row tiles over 7 rows of 4",
     "network rows\ninput 9x6x3\nconv2d 16 3x3 relu\nconv2d 8 1x1 tanh\nflatten\ndense 8\n"},
    {"softmax of its own, a large overlapping pool, scalar channels with fused avgpool",
     "network misc\ninput 16x16x2\n"
     "conv2d 6 3x3 relu\navgpool 2x2\nconv2d 8 1x1\nrelu\nmaxpool 5x5 stride=1\n"
     "conv2d 4 1x1\navgpool 1x1\nglobalavgpool\nsoftmax\n"},
    {"more than 64 channels, not a multiple of 8 (overlapping last vectors), fused pools",
     "network wide\ninput 7x7x2\nconv2d 66 3x3 relu\navgpool 2x2\n"
     "conv2d 70 1x1\nmaxpool 2x2\nconv2d 65 1x1 relu\nconv2d 67 1x1 tanh\n"
     "conv2d 66 1x1\navgpool 1x1\n"
     "flatten\ndense 5\n"},
    {"channel tails: 1, 3, 5, 9, 12, 20, 36 and 100 filters on 1 to 100 channels, fused max "
     "and avg pools (through y when taller than a tile), padding and stride",
     "network tails\ninput 14x13x3\n"
     "conv2d 20 3x3 padding=same relu\nmaxpool 2x2\n"
     "conv2d 12 3x3 padding=1\navgpool 2x2\n"
     "conv2d 9 1x1 relu\nconv2d 5 2x2 stride=1 tanh\n"
     "conv2d 36 1x1 relu\navgpool 2x2\n"
     "conv2d 100 1x1 relu\nconv2d 3 1x1\nconv2d 1 1x1 sigmoid\n"
     "flatten\ndense 3\n"},
    {"channel tails with pools taller than a tile and multi-row tiles",
     "network tails2\ninput 12x12x5\n"
     "conv2d 20 2x2 relu\nmaxpool 5x5\n"
     "conv2d 12 1x1 relu\nconv2d 20 1x1\nflatten\ndense 2\n"},
    {"pools of their own on the input: large and overlapping windows",
     "network pools\ninput 9x9x3\navgpool 5x5 stride=1\nmaxpool 2x2 stride=1\n"
     "flatten\ndense 2\n"},
    {"per-direction strides and padding, bias=false (vector, padded-copy and scalar filters; "
     "dense vector and rest), fused 2x3 maxpool and 3x2 avgpool, a 1x2 stride=1x2 avgpool",
     "network strides\ninput 13x14x3\n"
     "conv2d 16 3x3 stride=2x1 padding=1x2 bias=false relu\nmaxpool 2x3\n"
     "conv2d 4 3x2 stride=1x2 padding=same bias=false\navgpool 3x2 stride=1x2\n"
     "conv2d 5 2x3 stride=1x2 padding=same bias=false tanh\n"
     "conv2d 9 1x2 padding=0x1 bias=false relu\navgpool 1x2\n"
     "flatten\ndense 20 bias=false relu\ndense 3 bias=false\n"},
    {"bias=false next to layers with a bias (offsets of the tensors after it)",
     "network mixed\ninput 8x9x2\n"
     "conv2d 8 3x3 stride=1x2 bias=false\nrelu\nconv2d 8 2x2 stride=2x1 padding=1x0\n"
     "flatten\ndense 8 bias=false tanh\ndense 2 softmax\n"},
    {"depthwise 3x3 at strides 1 and 2 (20 and 40 channels, a depth multiplier of 2), "
     "padded, relu, tanh and linear, a 5x5 depthwise, bias=false, then pointwise",
     "network depthwise\ninput 11x10x3\n"
     "conv2d 20 3x3 padding=1 relu\nconv2d 20 3x3 padding=1 groups=20 relu\n"
     "conv2d 40 3x3 stride=2 padding=same groups=20 tanh\n"
     "conv2d 40 5x5 padding=2 groups=40 bias=false\nmaxpool 2x2\n"
     "conv2d 8 1x1 relu\nconv2d 8 3x3 padding=1 groups=8 sigmoid\nflatten\ndense 3\n"},
    {"grouped convs: rectangular kernels, strides and padding, groups of 2 to 4 channels "
     "and filters",
     "network grouped\ninput 13x12x6\n"
     "conv2d 12 3x2 stride=2x1 padding=1x0 groups=3 relu\n"
     "conv2d 8 2x3 stride=1x2 padding=same groups=2 tanh\navgpool 2x2\n"
     "conv2d 8 1x1 groups=4 bias=false\nconv2d 4 3x3 padding=1 groups=2 sigmoid\nflatten\n"
     "dense 3 softmax\n"},
    {"grouped convs of 8 and more channels a group: tiles of pixels with a rest, the input "
     "gradient from weights transposed per group (a kernel row of 144 taps: one tap a tile)",
     "network groupedwide\ninput 4x6x8\nconv2d 16 1x1 relu\n"
     "conv2d 24 3x3 padding=1 groups=2 relu\nconv2d 96 1x1 groups=3 relu\n"
     "conv2d 8 2x3 padding=same groups=2\nflatten\ndense 3 softmax\n"},
    {"no parameters", "network noparams\ninput 5x5x2\nmaxpool 2x2\nglobalavgpool\n"},
    {"only identities: y is a copy of x", "network ident\ninput 1x1x5\nflatten\ndropout 0.5\n"},
    {"a flatten as the output: C, H, W order",
     "network flatout\ninput 2x3x4\nflatten\ndropout 0.5\nsigmoid\n"},
    {"a spatial output, [H][W][C] in y",
     "network spatial\ninput 7x7x2\nconv2d 16 3x3 relu\nconv2d 8 3x3 stride=2 tanh\n"},
    {"tanh output straight from a conv, dense on a vector input, dropout 0 (keeps all) and "
     "dropout at the end",
     "network tanhout\ninput 6x6x4\n"
     "conv2d 8 3x3 stride=3 relu\nmaxpool 2x2\nflatten\ndropout 0\n"
     "dense 24 tanh\ndropout 0.5\ndense 9 tanh\ndropout 0.1\n"},
    {"residual blocks: a relu first on the main path (x must survive it), a nested block, a "
     "stride-2 projection shortcut, conv + maxpool inside a block, a block on the input and "
     "one as the output, activations folded into the add",
     "network blocks\ninput 9x9x3\n"
     "residual {\n  dropout 0.5\n  relu\n  conv2d 3 3x3 padding=same\n}\n"
     "conv2d 8 3x3 padding=same\n"
     "residual {\n  relu\n  conv2d 8 3x3 padding=same relu\n"
     "  residual {\n    conv2d 8 3x3 padding=1 tanh\n  }\n  conv2d 8 1x1\n}\nrelu\n"
     "residual {\n  conv2d 12 3x3 stride=2 padding=same relu\n"
     "  conv2d 12 3x3 padding=same relu\n  maxpool 2x2\n"
     "  shortcut {\n    conv2d 12 1x1 stride=2\n    avgpool 2x2\n  }\n}\nsigmoid\n"
     "flatten\ndense 6\nresidual {\n  dense 6 relu\n  shortcut {\n    dense 6\n  }\n}\n"
     "softmax\n"},
};
enum { NCASES = sizeof cases / sizeof cases[0] };

/* ---- building and loading generated code ---- */

typedef struct Built {
  void *so;
  size_t model_bytes, work_bytes;
  void (*init)(void *m, uint64_t seed);
  void (*load)(void *m, const float *params);
  void (*store)(const void *m, float *params);
  void (*infer)(const void *m, void *w, const float *x, int n, float *y);
  const void *trained; /* NAME_trained, with baked weights */
} Built;

typedef struct Compiler {
  const char *name, *cmd; /* cmd: the compiler and flags, before the files */
} Compiler;

static const Compiler compilers[] = {
    {"gcc -march=native", "gcc -std=c99 -Wall -Wextra -pedantic -Werror -O2 -march=native"},
    {"gcc -march=native -mno-avx512f",
     "gcc -std=c99 -Wall -Wextra -pedantic -Werror -O2 -march=native -mno-avx512f"},
    {"gcc", "gcc -std=c99 -Wall -Wextra -pedantic -Werror -O1"},
    {"clang -march=native", "clang -std=c99 -Wall -Wextra -pedantic -Werror -O2 -march=native"},
    {"clang", "clang -std=c99 -Wall -Wextra -pedantic -Werror -O1"},
    {"tcc", "tcc -Wall -Werror"},
};
enum { NCOMPILERS = sizeof compilers / sizeof compilers[0] };

static bool have(const char *prog) {
  return tu_shell("command -v %s", prog) == 0;
}

static char *emit_text(const Net *net, const EmitOptions *opt, bool header, size_t *len) {
  char *text = NULL;
  FILE *f = open_memstream(&text, len);
  assert_non_null(f);
  if (header)
    emit_header(net, opt, f);
  else
    emit_source(net, opt, f);
  assert_int_equal(fclose(f), 0);
  return text;
}

/* Writes NAME.h, NAME.c and a glue file reporting the struct sizes into
   TAG/ of the test directory, builds them with compiler k into a shared
   object and loads it. */
static void build(const Net *net, const EmitOptions *opt, int k, const char *tag, Built *b) {
  const char *n = net->name;
  char path[512];
  assert_int_equal(tu_shell("mkdir -p %s", tag), 0);
  char header_name[96];
  snprintf(header_name, sizeof header_name, "%s.h", n);
  EmitOptions o = *opt;
  o.header_name = header_name;
  size_t len;
  char *text = emit_text(net, &o, true, &len);
  snprintf(path, sizeof path, "%s/%s.h", tag, n);
  tu_write_text(path, text);
  free(text);
  text = emit_text(net, &o, false, &len);
  snprintf(path, sizeof path, "%s/%s.c", tag, n);
  tu_write_text(path, text);
  free(text);
  char glue[512];
  snprintf(glue, sizeof glue,
           "#include \"%s.h\"\n"
           "size_t t_model_bytes(void) { return sizeof(%s_model); }\n"
           "size_t t_work_bytes(void) { return sizeof(%s_work); }\n",
           n, n, n);
  snprintf(path, sizeof path, "%s/glue.c", tag);
  tu_write_text(path, glue);
  if (tu_shell("cd %s && %s -fPIC -shared -o lib.so %s.c glue.c -lm", tag, compilers[k].cmd, n) !=
      0)
    fail_msg("%s: %s does not build the generated C:\n%s%s", tag, compilers[k].name, tu_out,
             tu_err);
  snprintf(path, sizeof path, "%s/lib.so", tag);
  memset(b, 0, sizeof *b);
  b->so = dlopen(tu_path(path), RTLD_NOW | RTLD_LOCAL);
  if (!b->so)
    fail_msg("dlopen %s: %s", path, dlerror());
  char name[160];
#define SYM(field, suffix)                                                                         \
  do {                                                                                             \
    snprintf(name, sizeof name, "%s%s", n, suffix);                                                \
    void *p_ = dlsym(b->so, name);                                                                 \
    if (!p_)                                                                                       \
      fail_msg("%s lacks %s", tag, name);                                                          \
    memcpy(&b->field, &p_, sizeof p_);                                                             \
  } while (0)
  SYM(init, "_init");
  SYM(load, "_load");
  SYM(store, "_store");
  SYM(infer, "_infer");
#undef SYM
  size_t (*bytes)(void);
  void *p = dlsym(b->so, "t_model_bytes");
  memcpy(&bytes, &p, sizeof p);
  b->model_bytes = bytes();
  p = dlsym(b->so, "t_work_bytes");
  memcpy(&bytes, &p, sizeof p);
  b->work_bytes = bytes();
  if (opt->weights) {
    snprintf(name, sizeof name, "%s_trained", n);
    b->trained = dlsym(b->so, name);
    assert_non_null(b->trained);
  }
}

static void unload(Built *b) {
  dlclose(b->so);
}

static void *zalloc(size_t bytes) {
  void *p = aligned_alloc(64, (bytes + 63) / 64 * 64);
  assert_non_null(p);
  memset(p, 0, (bytes + 63) / 64 * 64);
  return p;
}

/* ---- the reference: double precision, NCHW, PyTorch's definitions ---- */

typedef struct T {
  int c, h, w;
  double *v; /* [c][h][w] */
} T;

static T t_new(int c, int h, int w) {
  T t = {c, h, w, calloc((size_t)c * h * w, sizeof(double))};
  assert_non_null(t.v);
  return t;
}

#define AT(t, ci, y, x) ((t).v[((long)(ci) * (t).h + (y)) * (t).w + (x)])

static void act_apply(T *t, Act act, bool spatial) {
  long n = (long)t->c * t->h * t->w;
  if (act == ACT_SOFTMAX) { /* over channels, per pixel */
    long hw = spatial ? (long)t->h * t->w : 1, c = spatial ? t->c : n;
    for (long p = 0; p < hw; p++) {
      double mx = -INFINITY, s = 0;
      for (long i = 0; i < c; i++)
        mx = fmax(mx, t->v[i * hw + p]);
      for (long i = 0; i < c; i++)
        s += exp(t->v[i * hw + p] - mx);
      for (long i = 0; i < c; i++)
        t->v[i * hw + p] = exp(t->v[i * hw + p] - mx) / s;
    }
    return;
  }
  for (long i = 0; i < n; i++) {
    double x = t->v[i];
    t->v[i] = act == ACT_RELU      ? (x > 0 ? x : 0)
              : act == ACT_SIGMOID ? 1 / (1 + exp(-x))
              : act == ACT_TANH    ? tanh(x)
                                   : x;
  }
}

/* One image x [H][W][C] (as NAME_infer takes it) -> out (the outputs in the
   order NAME_infer writes them). Reads the IR only for each layer's kind
   and arguments (the DSL), not for shapes or fusion. */
static T t_copy(T t) {
  T u = t_new(t.c, t.h, t.w);
  memcpy(u.v, t.v, sizeof(double) * (size_t)t.c * t.h * t.w);
  return u;
}

static void reference(const Net *net, const float *params, const float *x, double *out) {
  T t = t_new(net->input.c, net->input.h, net->input.w);
  T *kept = calloc((size_t)net->nlayers, sizeof *kept); /* residual blocks: x, then m */
  assert_non_null(kept);
  bool spatial = true;
  for (int y = 0; y < t.h; y++)
    for (int xx = 0; xx < t.w; xx++)
      for (int c = 0; c < t.c; c++)
        AT(t, c, y, xx) = x[((long)y * t.w + xx) * t.c + c];
  for (int i = 0; i < net->nlayers; i++) {
    const Layer *l = &net->layers[i];
    T u = {0};
    switch (l->op) {
    case OP_CONV2D: {
      const int F = l->u.conv.filters, KH = l->u.conv.kh, KW = l->u.conv.kw;
      const int SH = l->u.conv.sh, SW = l->u.conv.sw;
      /* groups=G: filter f sees the CG channels of its group f / (F / G) */
      const int G = l->u.conv.groups > 1 ? l->u.conv.groups : 1, CG = t.c / G;
      int pt, pl, pb, pr;
      if (l->u.conv.pad_mode == PAD_SAME) { /* docs/language.md, Layers */
        int th = ((t.h + SH - 1) / SH - 1) * SH + KH - t.h,
            tw = ((t.w + SW - 1) / SW - 1) * SW + KW - t.w;
        th = th > 0 ? th : 0, tw = tw > 0 ? tw : 0;
        pt = th / 2, pb = th - pt, pl = tw / 2, pr = tw - pl;
      } else {
        bool explicit = l->u.conv.pad_mode == PAD_EXPLICIT;
        pt = pb = explicit ? l->u.conv.pad_h : 0;
        pl = pr = explicit ? l->u.conv.pad_w : 0;
      }
      u = t_new(F, (t.h + pt + pb - KH) / SH + 1, (t.w + pl + pr - KW) / SW + 1);
      /* bias=false: no bias in the parameters */
      const float *w = params + l->weight_offset, *b = l->no_bias ? NULL : params + l->bias_offset;
      for (int f = 0; f < F; f++)
        for (int oy = 0; oy < u.h; oy++)
          for (int ox = 0; ox < u.w; ox++) {
            double s = b ? b[f] : 0.0;
            for (int c = 0; c < CG; c++)
              for (int ky = 0; ky < KH; ky++)
                for (int kx = 0; kx < KW; kx++) {
                  int iy = oy * SH - pt + ky, ix = ox * SW - pl + kx;
                  if (iy >= 0 && iy < t.h && ix >= 0 && ix < t.w)
                    s +=
                        AT(t, f / (F / G) * CG + c, iy, ix) * w[((f * CG + c) * KH + ky) * KW + kx];
                }
            AT(u, f, oy, ox) = s;
          }
      /* the DSL's own (with a batchnorm folded in, the batchnorm's) */
      act_apply(&u, l->fused_act || l->fused_bn ? ACT_LINEAR : l->act, true);
      break;
    }
    case OP_MAXPOOL:
    case OP_AVGPOOL: {
      const int KH = l->u.pool.kh, KW = l->u.pool.kw, SH = l->u.pool.sh, SW = l->u.pool.sw;
      u = t_new(t.c, (t.h - KH) / SH + 1, (t.w - KW) / SW + 1);
      for (int c = 0; c < t.c; c++)
        for (int oy = 0; oy < u.h; oy++)
          for (int ox = 0; ox < u.w; ox++) {
            double m = -INFINITY, s = 0;
            for (int ky = 0; ky < KH; ky++)
              for (int kx = 0; kx < KW; kx++) {
                double v = AT(t, c, oy * SH + ky, ox * SW + kx);
                m = fmax(m, v);
                s += v;
              }
            AT(u, c, oy, ox) = l->op == OP_MAXPOOL ? m : s / (KH * KW);
          }
      break;
    }
    case OP_GLOBALAVGPOOL:
      u = t_new(t.c, 1, 1);
      for (int c = 0; c < t.c; c++) {
        double s = 0;
        for (int y = 0; y < t.h; y++)
          for (int xx = 0; xx < t.w; xx++)
            s += AT(t, c, y, xx);
        u.v[c] = s / (t.h * t.w);
      }
      spatial = false;
      break;
    case OP_FLATTEN: /* NCHW order: c*H*W + y*W + x, already the storage order */
      u = t_new(t.c * t.h * t.w, 1, 1);
      memcpy(u.v, t.v, sizeof(double) * (size_t)u.c);
      spatial = false;
      break;
    case OP_DENSE: {
      const int OUT = l->u.dense.units, IN = t.c * t.h * t.w;
      const float *w = params + l->weight_offset, *b = l->no_bias ? NULL : params + l->bias_offset;
      u = t_new(OUT, 1, 1);
      for (int o = 0; o < OUT; o++) {
        double s = b ? b[o] : 0.0;
        for (int k = 0; k < IN; k++)
          s += w[(long)o * IN + k] * t.v[k];
        u.v[o] = s;
      }
      act_apply(&u, l->fused_act || l->fused_bn ? ACT_LINEAR : l->act, false);
      break;
    }
    case OP_BATCHNORM: { /* the running statistics */
      const long C = l->bias_count, hw = (long)t.h * t.w;
      const float *g = params + l->weight_offset, *b = params + l->bias_offset;
      const float *mean = params + l->stats_offset, *var = mean + C;
      for (long c = 0; c < C; c++)
        for (long p = 0; p < hw; p++)
          t.v[c * hw + p] = (t.v[c * hw + p] - mean[c]) / sqrt(var[c] + l->u.bn.eps) * g[c] + b[c];
      act_apply(&t, l->fused_act ? ACT_LINEAR : l->act, spatial);
      continue;
    }
    case OP_DROPOUT:
      continue;
    case OP_ACT:
      act_apply(&t, l->act, spatial);
      continue;
    case OP_RESIDUAL: /* y = main(x) + shortcut(x) */
      kept[i] = t_copy(t);
      continue;
    case OP_SHORTCUT:
      kept[i] = t;
      t = t_copy(kept[l->u.block.fork]);
      continue;
    case OP_ADD: {
      T *other = &kept[l->u.block.shortcut >= 0 ? l->u.block.shortcut : l->u.block.fork];
      assert_int_equal((long)t.c * t.h * t.w, (long)other->c * other->h * other->w);
      for (long k = 0; k < (long)t.c * t.h * t.w; k++)
        t.v[k] += other->v[k];
      act_apply(&t, l->fused_act ? ACT_LINEAR : l->act, spatial);
      free(kept[l->u.block.fork].v);
      if (l->u.block.shortcut >= 0)
        free(kept[l->u.block.shortcut].v);
      continue;
    }
    case OP_COUNT:
      fail();
    }
    free(t.v);
    t = u;
  }
  /* The generated code's output order: [H][W][C]. */
  for (int y = 0; y < t.h; y++)
    for (int xx = 0; xx < t.w; xx++)
      for (int c = 0; c < t.c; c++)
        out[((long)y * t.w + xx) * t.c + c] = AT(t, c, y, xx);
  free(t.v);
  free(kept);
}

/* ---- data ---- */

static uint64_t rng = 88172645463325252u;

static double uniform(void) { /* [0, 1) */
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return (double)(rng >> 11) / 9007199254740992.0;
}

/* Parameters in PyTorch layout, uniform in +-sqrt(3 / fan_in) (weights)
   and +-0.1 (biases), so activations stay near unit size. */
static float *random_params(const Net *net) {
  float *p = malloc(sizeof(float) * (size_t)(net->param_count + 1));
  assert_non_null(p);
  for (int i = 0; i < net->nlayers; i++) {
    const Layer *l = &net->layers[i];
    if (!op_modules[l->op]->weights)
      continue;
    if (l->op == OP_BATCHNORM) { /* scale in [0.5, 1.5), mean +-0.5, variance in [0.5, 1.5) */
      for (long k = 0; k < l->bias_count; k++) {
        p[l->weight_offset + k] = (float)(0.5 + uniform());
        p[l->bias_offset + k] = (float)((2 * uniform() - 1) * 0.1);
        p[l->stats_offset + k] = (float)(uniform() - 0.5);
        p[l->stats_offset + l->bias_count + k] = (float)(0.5 + uniform());
      }
      continue;
    }
    long fan_in = l->weight_count / (l->op == OP_CONV2D ? l->u.conv.filters : l->u.dense.units);
    double bound = sqrt(3.0 / (double)fan_in);
    for (long k = 0; k < l->weight_count; k++)
      p[l->weight_offset + k] = (float)((2 * uniform() - 1) * bound);
    for (long k = 0; k < l->bias_count; k++)
      p[l->bias_offset + k] = (float)((2 * uniform() - 1) * 0.1);
  }
  return p;
}

static float *random_images(const Net *net, int n) {
  long size = shape_size(net->input) * n;
  float *x = malloc(sizeof(float) * (size_t)size);
  assert_non_null(x);
  for (long i = 0; i < size; i++)
    x[i] = (float)uniform();
  return x;
}

enum { IMAGES = 3 };

/* Runs b on IMAGES images with params p and compares with the reference;
   returns the largest difference. */
static double check_outputs(const Net *net, const Built *b, const float *p, const char *what) {
  const long in = shape_size(net->input), out = shape_size(net->output);
  void *m = zalloc(b->model_bytes), *w = zalloc(b->work_bytes);
  float *x = random_images(net, IMAGES), *y = malloc(sizeof(float) * (size_t)(out * IMAGES));
  float *y1 = malloc(sizeof(float) * (size_t)out);
  double *ref = malloc(sizeof(double) * (size_t)out);
  assert_true(y && y1 && ref);
  b->load(m, p);
  b->infer(m, w, x, IMAGES, y);
  double worst = 0;
  for (int i = 0; i < IMAGES; i++) {
    reference(net, p, x + i * in, ref);
    for (long k = 0; k < out; k++) {
      double d = fabs(y[i * out + k] - ref[k]);
      worst = d > worst ? d : worst;
      if (!(d <= 2e-5 + 1e-4 * fabs(ref[k])))
        fail_msg("%s: image %d output %ld: %.9g, reference %.9g", what, i, k, y[i * out + k],
                 ref[k]);
    }
    /* One image per call: the same bits (no state carried between images). */
    b->infer(m, w, x + i * in, 1, y1);
    assert_memory_equal(y1, y + i * out, sizeof(float) * (size_t)out);
  }
  free(m), free(w), free(x), free(y), free(y1), free(ref);
  return worst;
}

/* ---- tests ---- */

static void test_emit_matches_reference(void **state) {
  (void)state;
  for (int k = 0; k < NCOMPILERS; k++) {
    char prog[16];
    sscanf(compilers[k].cmd, "%15s", prog);
    if (!have(prog)) {
      printf("  %s is not installed: skipped\n", prog);
      continue;
    }
    for (int c = 0; c < NCASES; c++) {
      Arena a = {0};
      Net *net = tu_compile_ok(&a, cases[c].src);
      float *p = random_params(net);
      Built b;
      char tag[64];
      snprintf(tag, sizeof tag, "ref-%d-%d", k, c);
      build(net, &(EmitOptions){0}, k, tag, &b);
      double worst = check_outputs(net, &b, p, cases[c].what);
      printf("  %-20s %-10s max |difference| %.2g  (%s)\n", compilers[k].name, net->name, worst,
             cases[c].what);
      unload(&b);
      free(p);
      arena_free(&a);
    }
  }
}

/* A batchnorm folded into the conv/dense before it gives the outputs of the
   same network with the batchnorms run on their own (a `dropout 0` between,
   the identity in inference, stops the folding; the tensors are the same),
   within the golden tolerance; a conv with bias=false gains a folded bias. */
static void test_emit_batchnorm_folded_matches_unfolded(void **state) {
  (void)state;
  static const char *const src[2] = {
      "network folded\ninput 9x9x3\n"
      "conv2d 12 3x3 bias=false\nbatchnorm\nrelu\nmaxpool 2x2\n"
      "conv2d 5 3x3\nbatchnorm eps=0.01\ntanh\n"
      "flatten\ndense 10\nbatchnorm\nrelu\ndense 4 bias=false\nbatchnorm\n",
      "network unfolded\ninput 9x9x3\n"
      "conv2d 12 3x3 bias=false\ndropout 0\nbatchnorm\nrelu\nmaxpool 2x2\n"
      "conv2d 5 3x3\ndropout 0\nbatchnorm eps=0.01\ntanh\n"
      "flatten\ndense 10\ndropout 0\nbatchnorm\nrelu\ndense 4 bias=false\ndropout 0\n"
      "batchnorm\n"};
  Arena a[2] = {{0}, {0}};
  Net *net[2];
  Built b[2];
  float *y[2];
  int folds[2] = {0, 0};
  for (int k = 0; k < 2; k++) {
    net[k] = tu_compile_ok(&a[k], src[k]);
    for (int i = 0; i < net[k]->nlayers; i++)
      folds[k] += net[k]->layers[i].fused_bn != NULL;
    build(net[k], &(EmitOptions){0}, 0, k ? "bn-unfolded" : "bn-folded", &b[k]);
  }
  assert_int_equal(folds[0], 4);
  assert_int_equal(folds[1], 0);
  assert_int_equal(net[0]->param_count, net[1]->param_count);
  float *p = random_params(net[0]), *x = random_images(net[0], IMAGES);
  const long out = shape_size(net[0]->output);
  double worst = 0;
  for (int k = 0; k < 2; k++) {
    void *m = zalloc(b[k].model_bytes), *w = zalloc(b[k].work_bytes);
    y[k] = malloc(sizeof(float) * (size_t)(out * IMAGES));
    assert_non_null(y[k]);
    b[k].load(m, p);
    b[k].infer(m, w, x, IMAGES, y[k]);
    free(m), free(w);
  }
  for (long i = 0; i < out * IMAGES; i++) {
    const double d = fabs((double)y[0][i] - y[1][i]);
    worst = d > worst ? d : worst;
    if (!(d <= 2e-5 + 1e-4 * fabs(y[1][i])))
      fail_msg("output %ld: folded %.9g, unfolded %.9g", i, y[0][i], y[1][i]);
  }
  printf("  folded against unfolded: max |difference| %.2g\n", worst);
  for (int k = 0; k < 2; k++) {
    free(y[k]);
    unload(&b[k]);
    arena_free(&a[k]);
  }
  free(p), free(x);
}

static void test_emit_load_store_round_trip(void **state) {
  (void)state;
  for (int c = 0; c < NCASES; c++) {
    Arena a = {0};
    Net *net = tu_compile_ok(&a, cases[c].src);
    float *p = random_params(net), *q = malloc(sizeof(float) * (size_t)(net->param_count + 1));
    assert_non_null(q);
    Built b;
    char tag[64];
    snprintf(tag, sizeof tag, "store-%d", c);
    build(net, &(EmitOptions){0}, 0, tag, &b);
    void *m = zalloc(b.model_bytes);
    b.load(m, p);
    memset(q, 0xff, sizeof(float) * (size_t)net->param_count);
    b.store(m, q);
    assert_memory_equal(p, q, sizeof(float) * (size_t)net->param_count);
    free(m), free(p), free(q);
    unload(&b);
    arena_free(&a);
  }
}

static void test_emit_baked_weights_match_load(void **state) {
  (void)state;
  for (int c = 0; c < NCASES; c++) {
    Arena a = {0};
    Net *net = tu_compile_ok(&a, cases[c].src);
    float *p = random_params(net);
    if (net->param_count >= 3) { /* literals that must survive: -0, tiny and huge values */
      p[0] = -0.0f;
      p[1] = 1e-40f;
      p[2] = 3.4e38f;
    }
    Built b;
    char tag[64];
    snprintf(tag, sizeof tag, "baked-%d", c);
    build(net, &(EmitOptions){.weights = p}, 0, tag, &b);
    const long out = shape_size(net->output);
    void *m = zalloc(b.model_bytes), *w = zalloc(b.work_bytes);
    float *x = random_images(net, IMAGES);
    float *y = malloc(sizeof(float) * (size_t)(out * IMAGES)),
          *z = malloc(sizeof(float) * (size_t)(out * IMAGES));
    b.load(m, p);
    assert_memory_equal(m, b.trained, b.model_bytes);
    b.infer(m, w, x, IMAGES, y);
    b.infer(b.trained, w, x, IMAGES, z);
    assert_memory_equal(y, z, sizeof(float) * (size_t)(out * IMAGES));
    free(m), free(w), free(x), free(y), free(z), free(p);
    unload(&b);
    arena_free(&a);
  }
}

static void test_emit_is_deterministic(void **state) {
  (void)state;
  for (int c = 0; c < NCASES; c++) {
    for (int training = 0; training < 2; training++) {
      Arena a = {0}, a2 = {0};
      Net *net = tu_compile_ok(&a, cases[c].src), *net2 = tu_compile_ok(&a2, cases[c].src);
      float *p = random_params(net);
      EmitOptions opt = {.training = training, .weights = p};
      size_t l1, l2;
      for (int header = 0; header < 2; header++) {
        char *t1 = emit_text(net, &opt, header, &l1), *t2 = emit_text(net, &opt, header, &l2);
        char *t3 = emit_text(net2, &opt, header, &l2);
        assert_int_equal(l1, l2);
        assert_memory_equal(t1, t2, l1);
        assert_memory_equal(t1, t3, l1);
        free(t1), free(t2), free(t3);
      }
      free(p);
      arena_free(&a);
      arena_free(&a2);
    }
  }
}

/* Channel counts of 8 or more that are not a multiple of 8 run on the
   register tiles, their last vector overlapping the one before: no padded
   weight copy and no plain per-pixel loop, in inference and in training
   (forward, weight gradient, input gradient, conv + maxpool backward). In
   training, a vector count with no divisor of 4, 3 or 2 ends in a narrower
   block of tiles.
   test_emit_matches_reference and test_train's gradient networks check
   their numbers. */
static void test_emit_channel_tails_are_vectorized(void **state) {
  (void)state;
  Arena a = {0};
  Net *net = tu_compile_ok(&a, "network tails\ninput 14x14x3\n"
                               "conv2d 20 3x3 relu\nmaxpool 2x2\n"   /* F tail, C 3 */
                               "conv2d 12 3x3 relu\nmaxpool 2x2\n"   /* C 20: conv + pool dx */
                               "conv2d 100 1x1 relu\nconv2d 9 1x1\n" /* C 12, C 100 dx */
                               "conv2d 40 1x1\n" /* 5 vectors: blocks of 3 and 2 */
                               "flatten\ndense 3 softmax\n");
  size_t len;
  char *s = emit_text(net, &(EmitOptions){0}, false, &len);
  /* every conv on register tiles; those of 16 filters or more (20, 100, 40)
     once per vector width */
  assert_int_equal(tu_count(s, "held in registers"), 8);
  assert_null(strstr(s, "zero filters"));      /* no padded copy */
  assert_null(strstr(s, "acc[f] += s * wk[")); /* no plain loop */
  free(s);
  s = emit_text(net, &(EmitOptions){.training = true}, false, &len);
  /* (the first conv's input gradient, to the 3 channels of the image, which
     only NAME_explain asks for, keeps its plain loop: blanked here, in both
     of its functions, the one per vector width) */
  char *first = s;
  for (int width = 0; width < 2; width++) {
    first = strstr(first, "static void tails_conv1_backward(");
    assert_non_null(first);
    char *dx = strstr(first, "  if (dx) {\n"), *end = strstr(first, "\n}\n");
    assert_true(dx && end && dx < end);
    memset(dx, ' ', (size_t)(end - dx));
    first = end;
  }
  assert_null(strstr(first, "static void tails_conv1_backward("));
  assert_null(strstr(s, "acc[f] += s * wk["));   /* forward */
  assert_null(strstr(s, "+= s * d[f]"));         /* weight gradient */
  assert_null(strstr(s, "s += wk["));            /* input gradient */
  assert_null(strstr(s, "s += vs[q][i] * wk[")); /* input gradient through the maxpool */
  assert_contains(s, "tails_ADDTO_TAIL(dw + ");
  assert_contains(s, "tails_ADDTO_TAIL(dx + ");
  assert_contains(s, "tails_ADDTO_TAIL(o + ");
  /* 40 filters, 5 vectors: tiles of 3 vectors, then of 2 (not 5 tiles of 1) */
  assert_contains(s, "/* the last 16 channels */\n");
  free(s);
  arena_free(&a);
}

/* Dense layers of whole 16-float vectors run in register blocks of up to 8
   vectors: where no count of 4 or more divides the vectors (176 outputs: 11
   of 16, 22 of 8), blocks of 8 and one of the rest, not blocks of one
   (an FMA chain waiting on its own latency); where one does (192: 12 and
   24), blocks of it. */
static void test_emit_dense_blocks_of_eight_and_the_rest(void **state) {
  (void)state;
  Arena a = {0};
  Net *net = tu_compile_ok(&a, "network db\ninput 7x8x1\nflatten\ndense 176 relu\n"
                               "dense 192\n");
  size_t len;
  char *s = emit_text(net, &(EmitOptions){0}, false, &len);
  assert_int_equal(tu_count(s, "enum { OB = 8, REST = db_VW == 16 ? 3 : 6 };"), 1);
  assert_int_equal(tu_count(s, "for (int o0 = 0; o0 < 176 - REST * db_VW; o0 += OB * db_VW)"), 1);
  assert_int_equal(tu_count(s, "const int o0 = 176 - REST * db_VW;"), 1);
  assert_int_equal(tu_count(s, "enum { OB = db_VW == 16 ? 6 : 8 };"), 1);
  assert_null(strstr(s, "? 1 : 2"));
  free(s);
  arena_free(&a);
}

/* The generated NAME.c and NAME.h of examples/NAME.cnn against
   tests/snapshots/ (see the top of this file); returns the number of files
   that differ (0 when update rewrote them). */
static int check_snapshot(const char *name, bool update) {
  char path[256];
  snprintf(path, sizeof path, "examples/%s.cnn", name);
  Err e = {0};
  size_t len;
  char *src = io_read_file(path, &len, &e);
  assert_non_null(src);
  Arena a = {0};
  char *msgs;
  Net *net = tu_compile(&a, path, src, len, &msgs, NULL);
  if (!net)
    fail_msg("%s", msgs);
  free(msgs);
  char header[64];
  snprintf(header, sizeof header, "%s.h", name);
  const EmitOptions opt = {.training = true, .header_name = header};
  int failed = 0;
  for (int h = 0; h < 2; h++) {
    size_t glen;
    char *got = emit_text(net, &opt, h, &glen);
    snprintf(path, sizeof path, "tests/snapshots/%s.%c", name, h ? 'h' : 'c');
    if (update) {
      if (io_write_atomic(path, got, glen, &e) != 0)
        fail_msg("%s", e.msg);
    } else {
      size_t wlen;
      char *want = io_read_file(path, &wlen, &e);
      if (!want) {
        print_error("%s: missing (UPDATE=1 build/tests/test_emit writes it)\n", path);
        failed++;
      } else if (wlen != glen || memcmp(want, got, glen) != 0) {
        int line = 1;
        for (size_t i = 0; i < wlen && i < glen && want[i] == got[i]; i++)
          line += want[i] == '\n';
        print_error("%s differs from the generated C from line %d on (UPDATE=1 "
                    "build/tests/test_emit rewrites it; review the diff)\n",
                    path, line);
        failed++;
      }
      free(want);
    }
    free(got);
  }
  free(src);
  arena_free(&a);
  return failed;
}

static void test_emit_snapshots(void **state) {
  (void)state;
  const char *update = getenv("UPDATE");
  const bool rewrite = update && strcmp(update, "1") == 0;
  /* fashion: adam, convs with fused pools; lenet: sgd with momentum, padding */
  assert_int_equal(check_snapshot("fashion", rewrite) + check_snapshot("lenet", rewrite), 0);
}

/* Issue 10's budget for the generated C of examples/fashion.cnn: the
   training half (from its "---- Training ----" line) at most half the 1,750
   lines it had when the issue was filed, the conv kernels written once for
   every width (a second copy per width doubled them). */
static void test_emit_fashion_training_half(void **state) {
  (void)state;
  Arena a = {0};
  Net *net = tu_compile_ok(&a, fashion_src);
  size_t len;
  char *text = emit_text(net, &(EmitOptions){.training = true}, false, &len);
  const char *half = strstr(text, "/* ---- Training ---- */");
  assert_non_null(half);
  const int lines = tu_count(half, "\n");
  if (lines > 875)
    fail_msg("the training half of fashion.c has %d lines (at most 875)", lines);
  /* training's own forward functions: conv1 and conv2 without their pools
     (the backward pass reads the conv's output), dense2 without softmax */
  assert_int_equal(tu_count(text, "_train_forward(const fashion_model"), 3);
  free(text);
  arena_free(&a);
}

/* exp and tanh's polynomials exist once, in runtime/kernels/act_poly.h:
   the JIT's kernels include it, the emitter embeds it (build/act_poly.inc). */
static void test_emit_act_polynomials_once(void **state) {
  (void)state;
  const char *coefficient = "1.9875691500e-4f", *tanh_coefficient = "5.70498872745e-3f";
  for (int i = 0; i < 2; i++)
    if (tu_shell("cd '%s' && test \"$(grep -l -e '%s' compiler/*.[ch] compiler/ops/*.[ch] "
                 "runtime/*.[ch] runtime/kernels/*.[ch])\" = runtime/kernels/act_poly.h",
                 tu_repo, i ? tanh_coefficient : coefficient) != 0)
      fail_msg("%s is not in runtime/kernels/act_poly.h alone", i ? "tanh" : "exp");
  Arena a = {0};
  Net *net = tu_compile_ok(&a, "network p\ninput 4x4x1\nconv2d 8 3x3 tanh\nflatten\n"
                                "dense 3 sigmoid\n");
  size_t len;
  char *text = emit_text(net, &(EmitOptions){0}, false, &len);
  assert_contains(text, "static inline float p_exp(float x) {");
  assert_contains(text, "const float big = 1.0f - 2.0f / (p_exp(2.0f * ax) + 1.0f);");
  assert_int_equal(tu_count(text, coefficient), 1);
  free(text);
  arena_free(&a);
}

/* The parameters are a table of tensors (NAME_tensors): one optimizer
   routine and one layout permutation, each looped over it, instead of the
   update and the PyTorch-layout copies written out per tensor. */
static void test_emit_one_optimizer_and_permutation(void **state) {
  (void)state;
  const char *nets[] = {"network p\ninput 6x6x2\nconv2d 8 3x3 relu\nflatten\ndense 3 softmax\n"
                        "train {\n optimizer adam lr=0.01\n}\n",
                        "network p\ninput 6x6x2\nconv2d 8 3x3 relu\nflatten\ndense 3 softmax\n"
                        "train {\n optimizer sgd lr=0.1 momentum=0.9 nesterov\n}\n"};
  for (int i = 0; i < 2; i++) {
    Arena a = {0};
    Net *net = tu_compile_ok(&a, nets[i]);
    size_t len;
    char *s = emit_text(net, &(EmitOptions){.training = true}, false, &len);
    assert_int_equal(tu_count(s, "static void p_permute("), 1);
    /* load, store, grads_store, store_opt, load_opt */
    assert_int_equal(tu_count(s, "p_permute(t, "), 5);
    assert_int_equal(tu_count(s, i ? "static void p_sgd(" : "static void p_adam("), 1);
    assert_int_equal(tu_count(s, i ? "p_sgd(" : "p_adam("), 2); /* defined, called once */
    assert_int_equal(tu_count(s, "{offsetof(p_model, "), 4);    /* conv1, dense1: w, b */
    assert_null(strstr(s, "/* conv1.weight */\n  float"));      /* no per-tensor copies */
    free(s);
    arena_free(&a);
  }
}

/* One .c serves every target, its kernels at the target's vector width:
   compiled for AVX-512 (-mavx512f -mfma) the convolutions and dense layers
   run FMAs on 16-float zmm registers; for AVX2 (-mavx2 -mfma) on 8-float ymm
   registers and no zmm. The conv kernels (forward, weight gradient, input
   gradient through a maxpool) are written once for both widths, on NAME_v,
   their tiles counted in vectors. (Compiled to assembly only: the machine
   need not have AVX-512.) */
static void test_emit_vector_width_follows_target(void **state) {
  (void)state;
  Arena a = {0};
  Net *net = tu_compile_ok(&a, fashion_src);
  for (int training = 0; training < 2; training++) {
    size_t len;
    char *text = emit_text(net, &(EmitOptions){.training = training}, false, &len);
    tu_write_text("width.c", text);
    const char *cc = "gcc -std=c99 -Wall -Wextra -pedantic -Werror -O2 -S";
    if (tu_shell("%s -mavx512f -mfma -o w16.s width.c", cc) != 0)
      fail_msg("training %d: does not build for AVX-512:\n%s", training, tu_err);
    assert_int_equal(tu_shell("grep -q 'vfmadd[0-9]*ps.*zmm' w16.s"), 0);
    if (tu_shell("%s -mavx2 -mfma -o w8.s width.c", cc) != 0)
      fail_msg("training %d: does not build for AVX2:\n%s", training, tu_err);
    assert_int_equal(tu_shell("grep -q 'vfmadd[0-9]*ps.*ymm' w8.s"), 0);
    assert_int_not_equal(tu_shell("grep -q zmm w8.s"), 0);
    /* the convolutions' text serves both widths: NAME_v tiles, the width
       only in the vector macros (the one #if NAME_VW == 16, for NAME_v) and
       in the tiles' counts (enum constants from NAME_VW) */
    assert_int_equal(tu_count(text, "#if fashion_VW == 16"), 1);
    assert_contains(text, "fashion_FMAV(a[i][j][v], s, wv[v]);"); /* forward */
    assert_contains(text, "enum { TC = fashion_VW == 16 ? 6 : 2, REST = 26 % TC };");
    if (training) {
      assert_contains(text, "fashion_FMAV(a[j][v], s, dv[v]);"); /* weight gradient */
      assert_contains(text, "fashion_ADDTOV(dw + ");
      assert_contains(text, "fashion_ADDTOV(o + "); /* input gradient through the maxpool */
      assert_contains(text, "fashion_MULADDV(a[j], s, xv);"); /* weight gradient, idem */
    }
    free(text);
  }
  arena_free(&a);
}

/* The inlined form (header_name NULL, as the JIT uses it) is one complete
   translation unit, also with training code, and is the header followed by
   the source. */
static void test_emit_single_translation_unit(void **state) {
  (void)state;
  for (int c = 0; c < NCASES; c++) {
    Arena a = {0};
    Net *net = tu_compile_ok(&a, cases[c].src);
    /* (Training code for a network without parameters is not checked: there
       is nothing to train, and emit_train.c leaves an unused _backward.) */
    for (int training = 0; training < 1 + (net->param_count > 0); training++) {
      EmitOptions opt = {.training = training};
      size_t len, hlen;
      char *text = emit_text(net, &opt, false, &len), *h = emit_text(net, &opt, true, &hlen);
      assert_true(len > hlen);
      assert_memory_equal(text, h, hlen);
      char name[64];
      snprintf(name, sizeof name, "tu-%d-%d", c, training);
      char c_name[80];
      snprintf(c_name, sizeof c_name, "%s.c", name);
      tu_write_text(c_name, text);
      if (tu_shell("gcc -std=c99 -Wall -Wextra -pedantic -Werror -c -o %s.o %s.c", name, name) != 0)
        fail_msg("%s (training %d): the inlined source does not compile:\n%s", net->name, training,
                 tu_err);
      free(text), free(h);
    }
    arena_free(&a);
  }
}

/* SRC's C, with and without its training code (header inlined), builds
   with gcc -Werror. */
static void builds_with_training(const char *src) {
  Arena a = {0};
  Net *net = tu_compile_ok(&a, src);
  for (int training = 0; training < 2; training++) {
    size_t len;
    char *text = emit_text(net, &(EmitOptions){.training = training}, false, &len);
    tu_write_text("whole.c", text);
    if (tu_shell("gcc -std=c99 -Wall -Wextra -pedantic -Werror -c -o whole.o whole.c") != 0)
      fail_msg("%s (training %d): the source does not compile:\n%s", net->name, training, tu_err);
    free(text);
  }
  arena_free(&a);
}

/* A layer line of thousands of characters (spaces between its words) is
   quoted clipped in the comments of the generated code, which still builds,
   training code included. (The training emitter cut its comments at 4096
   bytes, losing the comment's end and commenting out code: found
   probing the limits for tests/fuzz, whose inputs stay under 4096.) */
static void test_emit_long_layer_line(void **state) {
  (void)state;
  enum { GAP = 5000 };
  char *src = malloc(3 * GAP + 200);
  assert_non_null(src);
  snprintf(src, 3 * GAP + 200,
           "network long_line\ninput 6x6x1\nconv2d 2%*s3x3 relu\nmaxpool%*s2\n"
           "flatten\ndense%*s2 softmax\n",
           GAP, "", GAP, "", GAP, "");
  builds_with_training(src);
  free(src);
}

/* Names as long as they may be (63 characters, the network's and each
   layer's) give C that builds, with every layer kind and both optimizers.
   (Identifiers made of both were cut at 96 bytes, so two layers' functions
   had the same name, and NAME_store_opt lost a parenthesis past a 37-character
   network name: found by tests/fuzz, which compiles the C with libtcc.) */
static void test_emit_longest_names(void **state) {
  (void)state;
  char net[64], layer[61], src[2048];
  memset(net, 'n', 63), net[63] = 0;
  memset(layer, 'l', 60), layer[60] = 0;
  for (int sgd = 0; sgd < 2; sgd++) {
    snprintf(src, sizeof src,
             "network %s\ninput 12x12x3\nconv2d 9 3x3 padding=same relu name=%sa\nmaxpool 2x2\n"
             "conv2d 8 3x3 stride=2 padding=1 sigmoid name=%sb\navgpool 2x2 stride=1\ntanh\n"
             "dropout 0.3\nglobalavgpool\ndense 5 relu name=%sc\ndense 4 softmax name=%sd\n"
             "train {\n  loss categorical_crossentropy\n  optimizer %s\n}\n",
             net, layer, layer, layer, layer,
             sgd ? "sgd lr=0.1 momentum=0.9 nesterov" : "adam lr=0.01 weight_decay=0.1");
    builds_with_training(src);
  }
}

/* NAME_CLASS_NAMES, only with a classes statement: the names as a C
   initializer that gcc -std=c99 -pedantic takes without a warning and that
   gives back the names byte for byte (a backslash, a trigraph's "??/"). */
static void test_emit_class_names(void **state) {
  (void)state;
  Arena a = {0};
  Net *net = tu_compile_ok(&a, "network named\ninput 4x4x1\n"
                               "classes \"T-shirt/top\" \"a\\\\b\" \"why?\?/\" 7\n"
                               "flatten\ndense 4 softmax\n");
  size_t len;
  char *h = emit_text(net, &(EmitOptions){0}, true, &len);
  assert_non_null(strstr(h, "#define named_CLASS_NAMES \\\n  {\"T-shirt/top\", \\\n"));
  FILE *f = fopen(tu_path("named.h"), "w");
  assert_non_null(f);
  fputs(h, f);
  fclose(f);
  free(h);
  tu_write_text("names.c", "#include <stdio.h>\n#include \"named.h\"\n"
                           "int main(void) {\n"
                           "  static const char *const n[named_OUTPUT_SIZE] = named_CLASS_NAMES;\n"
                           "  for (int i = 0; i < named_OUTPUT_SIZE; i++)\n"
                           "    printf(\"[%s]\", n[i]);\n  return 0;\n}\n");
  assert_int_equal(tu_shell("cd %s && gcc -std=c99 -Wall -Wextra -pedantic -Werror -o names "
                            "names.c && ./names",
                            tu_tmp),
                   0);
  assert_string_equal(tu_out, "[T-shirt/top][a\\\\b][why?\?/][7]");
  Net *plain = tu_compile_ok(&a, "network plain\ninput 4x4x1\nflatten\ndense 4 softmax\n");
  h = emit_text(plain, &(EmitOptions){0}, true, &len);
  assert_null(strstr(h, "CLASS_NAMES"));
  free(h);
  arena_free(&a);
}

static void test_emit_header_layout(void **state) {
  (void)state;
  Arena a = {0};
  Net *net = tu_compile_ok(&a, fashion_src);
  size_t len;
  char *h = emit_text(net, &(EmitOptions){0}, true, &len);
  /* Opens with the summary table in a comment. */
  char *table = NULL;
  size_t tlen;
  FILE *f = open_memstream(&table, &tlen);
  summary_print(net, f, " * ");
  fclose(f);
  assert_non_null(strstr(h, table));
  assert_true(strstr(h, table) < strstr(h, "*/"));
  free(table);
  assert_true(strncmp(h, "/*", 2) == 0);
  const char *want[] = {"#define fashion_INPUT_H 28 ",
                        "#define fashion_INPUT_W 28 ",
                        "#define fashion_INPUT_C 1 ",
                        "#define fashion_INPUT_SIZE 784 ",
                        "#define fashion_OUTPUT_SIZE 10 ",
                        "#define fashion_PARAM_COUNT 93322 ",
                        "typedef struct fashion_model {",
                        "} fashion_model;",
                        "typedef struct fashion_work {",
                        "} fashion_work;",
                        "void fashion_init(fashion_model *m, uint64_t seed);",
                        "void fashion_load(fashion_model *m, const float *params);",
                        "void fashion_store(const fashion_model *m, float *params);",
                        ("void fashion_infer(const fashion_model *m, fashion_work *w, "
                         "const float *x, int n, float *y);"),
                        "#include <stdint.h>",
                        "#include <stddef.h>"};
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
    if (!strstr(h, want[i]))
      fail_msg("the header lacks \"%s\"", want[i]);
  assert_null(strstr(h, "fashion_trained")); /* only with weights */
  free(h);
  /* The source: each layer's code opens with its DSL line; a shape comment
     by each tensor; only the allowed headers. */
  char *s = emit_text(net, &(EmitOptions){.header_name = "fashion.h"}, false, &len);
  const char *lines[] = {"/* line 3: conv2d 32 3x3 relu\n   + line 4: maxpool 2x2 (fused)",
                         "/* line 5: conv2d 64 3x3 relu\n   + line 6: maxpool 2x2 (fused)",
                         "/* line 7: conv2d 64 3x3 relu",
                         "/* line 9: dense 64 relu",
                         "/* line 10: dense 10 softmax",
                         "/* line 8: flatten",
                         "static fashion_NOINLINE void fashion_conv2_forward(",
                         "x [13][13][32] -> y [5][5][64]",
                         "#include \"fashion.h\""};
  for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++)
    if (!strstr(s, lines[i]))
      fail_msg("the source lacks \"%s\"", lines[i]);
  for (const char *p = strstr(s, "#include"); p; p = strstr(p + 1, "#include"))
    assert_true(strncmp(p, "#include \"fashion.h\"", 20) == 0 ||
                strncmp(p, "#include <math.h>", 17) == 0 ||
                strncmp(p, "#include <string.h>", 19) == 0);
  assert_null(strstr(s, "malloc"));
  assert_null(strstr(s, "printf"));
  /* Well under 3000 lines for the fashion network (tcc compiles it too). */
  long nl = 0;
  for (const char *p = s; *p; p++)
    nl += *p == '\n';
  printf("  fashion.c: %ld lines\n", nl);
  assert_true(nl < 2000);
  free(s);
  arena_free(&a);
}

static void test_emit_fusion_and_plan(void **state) {
  (void)state;
  Arena a = {0};
  Net *net = tu_compile_ok(&a, fashion_src);
  Layer *L = net->layers;
  /* conv1 relu + maxpool, conv2 relu + maxpool fused; conv3 has no pool. */
  assert_ptr_equal(L[0].fused_pool, &L[1]);
  assert_true(L[1].fused_away);
  assert_ptr_equal(L[2].fused_pool, &L[3]);
  assert_null(L[4].fused_pool);
  assert_false(L[4].fused_away);
  /* First fit: conv1's 13x13x32 output at 0, conv2's 5x5x64 after it, then
     conv3's output back at 0 (conv1's is dead), dense1's after that; the
     last layer writes straight into y. Ping-pong would need 2 x 5408. */
  assert_int_equal(L[0].infer_out_offset, 0);
  assert_int_equal(L[2].infer_out_offset, 5408);
  assert_int_equal(L[4].infer_out_offset, 0);
  assert_int_equal(L[5].infer_out_offset, 0); /* flatten: the same tensor */
  assert_int_equal(L[6].infer_out_offset, 576);
  assert_int_equal(L[7].infer_out_offset, INFER_AT_Y);
  assert_int_equal(net->infer_buffer_floats, 5408 + 1600);
  assert_int_equal(net->infer_state_bytes, (93322 + 7008) * 4);
  arena_free(&a);

  /* An activation after a linear conv/dense fuses; after a relu conv it does
     not; avgpool after a sigmoid conv does not; dropout is an identity. */
  net = tu_compile_ok(&a, "network f\ninput 8x8x2\nconv2d 4 3x3 relu\nsigmoid\n"
                          "conv2d 8 1x1 sigmoid\navgpool 2x2\nconv2d 8 1x1\ntanh\nmaxpool 2x2\n"
                          "flatten\ndropout 0.5\ndense 3\nsoftmax\n");
  L = net->layers;
  assert_false(L[1].fused_away);
  assert_null(L[2].fused_pool); /* the mean of sigmoids is not the sigmoid of a mean */
  assert_ptr_equal(L[4].fused_act, &L[5]);
  assert_int_equal(L[4].act, ACT_TANH);
  assert_ptr_equal(L[4].fused_pool, &L[6]);
  assert_true(L[8].fused_away);
  assert_ptr_equal(L[9].fused_act, &L[10]);
  assert_int_equal(L[9].act, ACT_SOFTMAX);
  /* In place: the sigmoid layer works on conv1's tensor. A padded conv's
     scratch never overlaps its input or output. */
  assert_int_equal(L[1].infer_out_offset, L[0].infer_out_offset);
  arena_free(&a);

  net = tu_compile_ok(&a, "network p\ninput 8x8x3\nconv2d 8 3x3 padding=same\n"
                          "conv2d 8 3x3 padding=1 relu\nflatten\ndense 2\n");
  L = net->layers;
  long in = L[0].infer_out_offset, pad = L[1].infer_pad_offset, out = L[1].infer_out_offset;
  assert_true(L[0].infer_pad_offset >= 0 && pad >= 0 && in >= 0 && out >= 0);
  long pad_size = 10 * 10 * 8, size = 8 * 8 * 8;
  assert_true(pad + pad_size <= in || in + size <= pad);
  assert_true(pad + pad_size <= out || out + size <= pad);
  assert_true(in + size <= out || out + size <= in);
  assert_true(net->infer_buffer_floats >= pad_size + 2 * size);
  arena_free(&a);
}

static void test_emit_init_is_seeded_glorot(void **state) {
  (void)state;
  Arena a = {0};
  Net *net = tu_compile_ok(&a, fashion_src);
  Built b;
  build(net, &(EmitOptions){0}, NCOMPILERS - 1, "init-tcc", &b);
  Built c;
  build(net, &(EmitOptions){0}, 0, "init-gcc", &c);
  void *m1 = zalloc(b.model_bytes), *m2 = zalloc(b.model_bytes), *m3 = zalloc(b.model_bytes);
  const long n = net->param_count;
  float *p1 = malloc(sizeof(float) * (size_t)n), *p2 = malloc(sizeof(float) * (size_t)n);
  assert_true(p1 && p2);
  b.init(m1, 7);
  c.init(m2, 7); /* another compiler, the same bits */
  assert_memory_equal(m1, m2, b.model_bytes);
  b.init(m3, 8);
  assert_memory_not_equal(m1, m3, b.model_bytes);
  b.store(m1, p1);
  for (int i = 0; i < net->nlayers; i++) {
    const Layer *l = &net->layers[i];
    if (!op_modules[l->op]->weights)
      continue;
    long units = l->op == OP_CONV2D ? l->u.conv.filters : l->u.dense.units;
    long fan_in = l->weight_count / units, fan_out = units;
    if (l->op == OP_CONV2D) {
      fan_out *= l->u.conv.kh * l->u.conv.kw;
    }
    double bound = sqrt(6.0 / (double)(fan_in + fan_out)), mean = 0, var = 0;
    for (long k = 0; k < l->weight_count; k++) {
      double v = p1[l->weight_offset + k];
      assert_true(fabs(v) <= bound * (1 + 1e-6));
      mean += v;
      var += v * v;
    }
    mean /= (double)l->weight_count;
    var /= (double)l->weight_count;
    /* uniform: mean 0, variance bound^2 / 3, within 5 standard errors */
    double se = bound / sqrt(3.0 * (double)l->weight_count);
    assert_true(fabs(mean) < 5 * se);
    assert_true(fabs(var / (bound * bound / 3) - 1) < 5 * sqrt(0.8 / (double)l->weight_count));
    for (long k = 0; k < l->bias_count; k++)
      assert_true(p1[l->bias_offset + k] == 0.0f);
  }
  free(m1), free(m2), free(m3), free(p1), free(p2);
  unload(&b);
  unload(&c);
  arena_free(&a);
}

/* tests/reference/seed_fashion: PyTorch's outputs (float64) for its test
   images with init.safetensors. */
static void test_emit_golden_seed_fashion(void **state) {
  (void)state;
  const char *path;
  size_t len;
  Err e = {0};
  FILE *f = fopen(path = tu_reference("seed_fashion/net.cnn"), "rb");
  assert_non_null(f);
  static char src[4096];
  len = fread(src, 1, sizeof src - 1, f);
  fclose(f);
  src[len] = '\0';
  Arena a = {0};
  Net *net = tu_compile_ok(&a, src);
  StParam ti[64];
  int nt = cli_params(net, ti);
  float *p = malloc(sizeof(float) * (size_t)net->param_count);
  StFile st;
  path = tu_reference("seed_fashion/init.safetensors");
  if (st_read(path, &st, &e) < 0 || st_load_params(&st, ti, nt, p, &e) < 0)
    fail_msg("%s", e.msg);
  st_free(&st);
  IdxImages im;
  path = tu_reference("seed_fashion/data/t10k-images-idx3-ubyte");
  if (idx_read_images(path, &im, &e) < 0)
    fail_msg("%s", e.msg);
  const long in = shape_size(net->input), out = shape_size(net->output);
  float *x = malloc(sizeof(float) * (size_t)(in * im.n)),
        *y = malloc(sizeof(float) * (size_t)(out * im.n));
  for (long i = 0; i < in * im.n; i++)
    x[i] = im.data[i] / 255.0f;
  Built b;
  build(net, &(EmitOptions){0}, 0, "golden", &b);
  void *m = zalloc(b.model_bytes), *w = zalloc(b.work_bytes);
  b.load(m, p);
  b.infer(m, w, x, im.n, y);
  f = fopen(tu_reference("seed_fashion/expected_outputs.jsonl"), "r");
  assert_non_null(f);
  char line[8192];
  int rows = 0;
  double worst = 0;
  while (fgets(line, sizeof line, f)) {
    int index;
    char *o = strstr(line, "\"outputs\": [");
    assert_true(sscanf(line, "{\"index\": %d", &index) == 1 && o && index >= 0 && index < im.n);
    o += strlen("\"outputs\": [");
    for (long k = 0; k < out; k++) {
      double ref = strtod(o, &o), d = fabs(y[index * out + k] - ref);
      worst = d > worst ? d : worst;
      if (!(d <= 2e-5 + 1e-4 * fabs(ref)))
        fail_msg("image %d output %ld: %.9g, PyTorch %.9g", index, k, y[index * out + k], ref);
      o += strspn(o, ", ");
    }
    rows++;
  }
  fclose(f);
  assert_int_equal(rows, im.n);
  printf("  seed_fashion: %d images, max |difference| from PyTorch %.2g\n", rows, worst);
  free(m), free(w), free(x), free(y), free(p);
  idx_images_free(&im);
  unload(&b);
  arena_free(&a);
}

/* ---- the Emitter ---- */

static char *emitter_text(void (*body)(Emitter *em)) {
  char *text = NULL;
  size_t len;
  FILE *f = open_memstream(&text, &len);
  assert_non_null(f);
  Emitter em;
  em_init(&em, f, 0);
  body(&em);
  assert_int_equal(em.depth, 0);
  em_free(&em);
  fclose(f);
  return text;
}

static void nested(Emitter *em) {
  em_raw(em, "#include <%s>", "math.h");
  em_open(em, "static int f(int %s)", "x");
  em_line(em, "int y = %d;", 2);
  em_open(em, "if (x)");
  em_raw(em, "#ifdef A");
  em_line(em, "y++;");
  em_raw(em, "#endif");
  em_close(em);
  em_line(em, "for (int i = 0; i < %d; i++)", 3);
  em_indent(em);
  em_line(em, "y += i;");
  em_dedent(em);
  em_blank(em);
  em_open(em, "%s", "");
  em_comment(em, "a */ b\nc");
  em_close_with(em, " /* %s */", "block");
  em_line(em, "return y;");
  em_close(em);
  em_open(em, "struct s");
  em_line(em, "int a;");
  em_close_with(em, ";");
}

static void test_emitter_indents_and_quotes(void **state) {
  (void)state;
  char *text = emitter_text(nested);
  assert_string_equal(text, "#include <math.h>\n"
                            "static int f(int x) {\n"
                            "  int y = 2;\n"
                            "  if (x) {\n"
                            "#ifdef A\n"
                            "    y++;\n"
                            "#endif\n"
                            "  }\n"
                            "  for (int i = 0; i < 3; i++)\n"
                            "    y += i;\n"
                            "\n"
                            "  {\n"
                            "    /* a * / b\n"
                            "       c */\n"
                            "  } /* block */\n"
                            "  return y;\n"
                            "}\n"
                            "struct s {\n"
                            "  int a;\n"
                            "};\n");
  free(text);
}

static void test_emitter_floats_read_back(void **state) {
  (void)state;
  Emitter em;
  em_init(&em, NULL, 0);
  assert_string_equal(em_float(&em, 0.5f), "0.5f");
  assert_string_equal(em_float(&em, 2.0f), "2.0f");
  assert_string_equal(em_float(&em, -0.0f), "-0.0f");
  assert_string_equal(em_float(&em, 0.1f), "0.1f");
  assert_string_equal(em_float(&em, 1e-7f), "1e-07f");
  assert_string_equal(em_float(&em, INFINITY), "(1.0f / 0.0f)");
  assert_string_equal(em_float(&em, -INFINITY), "(-1.0f / 0.0f)");
  assert_string_equal(em_float(&em, NAN), "(0.0f / 0.0f)");
  for (int i = 0; i < 100000; i++) { /* any finite bit pattern, denormals too */
    uint32_t bits = (uint32_t)(uniform() * 4294967296.0);
    float v;
    memcpy(&v, &bits, sizeof v);
    if (!isfinite(v))
      continue;
    const char *lit = em_float(&em, v);
    size_t n = strlen(lit);
    assert_true(n >= 2 && lit[n - 1] == 'f' && strpbrk(lit, ".e"));
    float back = strtof(lit, NULL); /* stops at the 'f' */
    if (memcmp(&back, &v, sizeof v) != 0)
      fail_msg("%.9g printed as %s", (double)v, lit);
    if (i % 1000 == 999)
      em_free(&em);
  }
  em_free(&em);
}

/* Baked weights with special values: the infinities, -0, a denormal and the
   largest float are the same bits as when loaded, a NaN is a NaN. */
static void test_emit_baked_special_values(void **state) {
  (void)state;
  Arena a = {0};
  Net *net = tu_compile_ok(&a, cases[1].src);
  float *p = random_params(net), *q = malloc(sizeof(float) * (size_t)net->param_count);
  assert_non_null(q);
  const float special[] = {NAN, INFINITY, -INFINITY, -0.0f, 1e-45f, -3.4028235e38f};
  const long at = net->layers[0].weight_offset;
  for (int i = 0; i < 6; i++)
    p[at + 5 * i] = special[i];
  const int with[] = {0, NCOMPILERS - 1}; /* gcc, tcc */
  for (int k = 0; k < 2; k++) {
    Built b;
    char tag[32];
    snprintf(tag, sizeof tag, "special-%d", k);
    build(net, &(EmitOptions){.weights = p}, with[k], tag, &b);
    b.store(b.trained, q);
    assert_true(isnan(q[at]));
    q[at] = p[at];
    assert_memory_equal(p, q, sizeof(float) * (size_t)net->param_count);
    unload(&b);
  }
  free(p), free(q);
  arena_free(&a);
}

/* The longest names the language allows (63 characters, for the network
   and for layers, also when the network is named after a long file name)
   with optimizer state: the training C compiles with cc and tcc. */
static void test_emit_longest_names_compile(void **state) {
  (void)state;
  char name[64], layer[64], file[128];
  memset(name, 'n', 63), name[63] = 0;
  memset(layer, 'c', 63), layer[63] = 0;
  snprintf(file, sizeof file, "nets/%.*s.cnn", 80,
           "f_0123456789_0123456789_0123456789_0123456789"
           "_0123456789_0123456789_0123456789_0123456789");
  for (int named = 0; named < 2; named++) {
    char src[1024];
    snprintf(src, sizeof src,
             "%s%s\ninput 6x6x1\nconv2d 8 3x3 relu name=%s\nmaxpool 2x2\nflatten\n"
             "dense 3 softmax name=d%s\ntrain {\n  optimizer adam lr=0.01\n}\n",
             named ? "network " : "", named ? name : "", layer, layer + 1);
    Arena a = {0};
    char *msgs;
    Net *net = tu_compile(&a, named ? "t.cnn" : file, src, strlen(src), &msgs, NULL);
    if (!net)
      fail_msg("%s", msgs);
    free(msgs);
    assert_int_equal(strlen(net->name), 63);
    for (int k = 0; k < 2; k++) {
      Program *prog = tu_build_training(net, k ? BACKEND_CC : BACKEND_TCC, false);
      assert_true(tu_call_size(prog, net, "_t_model_bytes") > 0);
      tu_symbol(prog, net, "_store_opt");
      program_free(prog);
    }
    arena_free(&a);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_emitter_indents_and_quotes),
      cmocka_unit_test(test_emitter_floats_read_back),
      cmocka_unit_test(test_emit_snapshots),
      cmocka_unit_test(test_emit_one_optimizer_and_permutation),
      cmocka_unit_test(test_emit_longest_names_compile),
      cmocka_unit_test(test_emit_baked_special_values),
      cmocka_unit_test(test_emit_fusion_and_plan),
      cmocka_unit_test(test_emit_header_layout),
      cmocka_unit_test(test_emit_class_names),
      cmocka_unit_test(test_emit_is_deterministic),
      cmocka_unit_test(test_emit_channel_tails_are_vectorized),
      cmocka_unit_test(test_emit_dense_blocks_of_eight_and_the_rest),
      cmocka_unit_test(test_emit_vector_width_follows_target),
      cmocka_unit_test(test_emit_fashion_training_half),
      cmocka_unit_test(test_emit_act_polynomials_once),
      cmocka_unit_test(test_emit_single_translation_unit),
      cmocka_unit_test(test_emit_long_layer_line),
      cmocka_unit_test(test_emit_longest_names),
      cmocka_unit_test(test_emit_matches_reference),
      cmocka_unit_test(test_emit_batchnorm_folded_matches_unfolded),
      cmocka_unit_test(test_emit_load_store_round_trip),
      cmocka_unit_test(test_emit_baked_weights_match_load),
      cmocka_unit_test(test_emit_init_is_seeded_glorot),
      cmocka_unit_test(test_emit_golden_seed_fashion),
  };
  return cmocka_run_group_tests(tests, tu_setup, tu_teardown);
}
