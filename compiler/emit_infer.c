/*
 * emit_infer.c: the header and the inference half of the generated C
 * (docs/language.md, The generated C). The training half (emit_train.c) is called at the
 * places marked for it when EmitOptions.training is set.
 *
 * The model struct holds one flat array per parameter tensor, in the
 * internal layout the kernels want (the training code relies on it too):
 *
 *   conv weight  [KH][KW][C][F]   F innermost: one output pixel's taps
 *                                 (kx, c) of a kernel row are contiguous
 *                                 in the NHWC input and in the weights
 *   dense weight [IN][OUT]        OUT innermost; IN in H, W, C order when
 *                                 a flatten (through dropout/activations)
 *                                 comes before: NHWC needs no reordering
 *   biases       [F] / [OUT]
 *
 * Each array starts on a 64-byte boundary of the struct (padding members
 * where needed). NAME_load and NAME_store convert from and to the flat
 * PyTorch-layout array of docs/language.md, Weights files.
 *
 * Inference runs image by image: NAME_infer calls one static function per
 * layer, NAME_<layer>_forward(m, x, y), on tensors at the offsets of the
 * memory plan (plan.c) in NAME_work.act; the last writes into y.
 *
 * Convolutions are the hot loops (fashion's conv2 runs at about the FMA
 * peak of a Zen 5 core on 16-float tiles). Output pixels are computed in
 * register tiles of TR rows x TC columns x FB vectors of VW channels (16
 * floats under AVX-512, else 8; a conv of 16 filters or more is written
 * once per width, under #if NAME_VW, each with its own tile): per tap
 * (kx, c) the FB weight vectors are loaded once and used by every pixel of
 * the tile, each input value is broadcast once and used by all FB vectors.
 * conv_cost() picks the tile from a small model of the core (multiply-adds,
 * loads, latency, the weights' trips from L2). Bias starts the
 * accumulators (zero with bias=false: the layer has none); ReLU and a
 * fused pool run on the registers before the single store (a pool window
 * taller than the tile is combined through y, row by row). Kernel rows and
 * taps are loops with literal bounds that the C compiler unrolls as it sees
 * fit; the tile itself is written out. F not a multiple of VW (the channel
 * tail, see Conv): above VW, the last vector overlaps the one before it and
 * reads the weights in place, so the tail costs what a zero-padded vector
 * would, without a copy; below VW, the layer copies its weights with zero
 * filters up to one vector and stores only the real channels (a plain loop
 * per pixel when that copy would be large).
 * Padding: the input is first copied inside a zero border (a scratch
 * tensor of the plan; a few per cent of the layer's time), so no tap is
 * ever tested against the bounds. With a fused pool (stride = window in
 * each direction), conv rows and columns that the floor-mode pool drops
 * are not computed.
 * The vectors are GCC/Clang vector extensions, or 8-float structs with the
 * operations unrolled for compilers without them (tcc): one source, the same
 * arithmetic (NAME_f8, NAME_f16 and their macros, shared with training:
 * emit.c).
 * Sigmoid and tanh use branch-free polynomials (within 3 ulp) so that their
 * loops vectorize; softmax uses expf.
 */
#include <assert.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "compile.h"
#include "emit.h"
#include "emit_glue.h"
#include "emit_model.h"
#include "emit_train.h"
#include "emitter.h"

typedef struct Gen {
  Emitter *em;
  const Net *net;
  const EmitOptions *opt;
  const char *n; /* the network's name: prefix of every symbol */
  int *ordinal;  /* per layer: its number among the layers of its kind (layer_fn) */
  /* Writing a layer's forward function as training runs it (emit_train_forward):
     no fused pool (the backward pass needs the conv's own output) and the
     activation `act` (the output layer's is the loss's). */
  bool train;
  Act act;
} Gen;

/* ---- small helpers ---- */

#define EM (g->em)
#define FLT(v) em_float(EM, (float)(v))

#define LIN(...) em_lin(EM, __VA_ARGS__, (const char *)NULL)

#define DIMS(s) emit_dims(EM, (s))

static bool conv_padded(const Layer *l) {
  return l->u.conv.pad_top || l->u.conv.pad_bottom || l->u.conv.pad_left || l->u.conv.pad_right;
}

/* NAME_conv1, NAME_maxpool2, NAME_relu1: the prefix of a layer's functions,
   the training emitter's names: its name=, else the op's word (or the
   activation's) numbered among layers of that kind that train alone. */
static const char *layer_fn(const Gen *g, const Layer *l) {
  if (l->name[0])
    return em_str(EM, "%s_%s", g->n, l->name);
  return em_str(EM, "%s_%s%d", g->n, l->op == OP_ACT ? act_words[l->act] : op_words[l->op],
                g->ordinal[l - g->net->layers]);
}

/* Gen.ordinal, counted in one pass (a count per layer from the start would
   be quadratic in the layer count). */
static int *layer_ordinals(const Net *net) {
  int *ordinal = calloc((size_t)net->nlayers + 1, sizeof *ordinal);
  int count[OP_COUNT + ACT_COUNT] = {0};
  if (!ordinal) {
    fputs("cnngen: out of memory\n", stderr);
    abort();
  }
  for (int i = 0; i < net->nlayers; i++) {
    const Layer *l = &net->layers[i];
    if (!(l->op == OP_ACT && l->fused_away))
      ordinal[i] = ++count[l->op == OP_ACT ? OP_COUNT + l->act : l->op];
  }
  return ordinal;
}

#define QUOTE(l) emit_quote(EM, (l))

/* The comment opening a layer's code: its DSL line and those fused into it. */
static void layer_comment(Gen *g, const Layer *l, const char *what) {
  const char *text = QUOTE(l);
  if (l->fused_act)
    text = em_str(EM, "%s\n+ %s (fused)", text, QUOTE(l->fused_act));
  if (l->fused_pool && !g->train)
    text = em_str(EM, "%s\n+ %s (fused)", text, QUOTE(l->fused_pool));
  if (g->train)
    text = em_str(EM, "%s\nas training runs it: %s%s", text, act_words[g->act],
                  l->fused_pool ? ", without the pool" : "");
  if (what)
    text = em_str(EM, "%s\n%s", text, what);
  em_comment(EM, "%s", text);
}

/* ---- scalar activations ---- */

static bool uses_act(const Net *net, Act act) {
  for (int i = 0; i < net->nlayers; i++) {
    const Layer *l = &net->layers[i];
    if (!l->fused_away && l->act == act &&
        (l->op == OP_CONV2D || l->op == OP_DENSE || l->op == OP_ACT))
      return true;
  }
  return false;
}

/* NAME_exp, NAME_tanh, NAME_sigmoid: within 3 ulp of the exact values and
   branch-free, so that gcc and clang vectorize the loops that call them
   (libm's expf and tanhf are calls, one value at a time). */
static void emit_act_functions(Gen *g) {
  const char *n = g->n;
  const bool tanh = uses_act(g->net, ACT_TANH), sigmoid = uses_act(g->net, ACT_SIGMOID);
  if (!tanh && !sigmoid)
    return;
  em_comment(EM, "exp(x) = 2^n e^r: n the integer nearest x / ln 2, r = x - n ln 2 (in two\n"
                 "steps), e^r from Cephes' polynomial; x is clamped to [-87, 88] so that 2^n\n"
                 "stays a normal float. Relative error below 1.5e-7; no branches, no calls.\n"
                 "(Where float is wider than 32 bits, as in a build with float defined as\n"
                 "double, the library's exp: the polynomial is a float's.)");
  em_open(EM, "static inline float %s_exp(float x)", n);
  em_line(EM, "if (sizeof(float) != sizeof(int32_t))");
  em_line(EM, "  return expf(x);");
  em_line(EM, "x = x < -87.0f ? -87.0f : x > 88.0f ? 88.0f : x;");
  em_line(EM, "const float k = (x * 1.44269504f + 12582912.0f) - 12582912.0f; /* rounded */");
  em_line(EM, "const float r = (x - k * 0.693359375f) + k * 2.12194440e-4f;");
  em_line(EM, "float p = 1.9875691500e-4f;");
  em_line(EM, "p = p * r + 1.3981999507e-3f;");
  em_line(EM, "p = p * r + 8.3334519073e-3f;");
  em_line(EM, "p = p * r + 4.1665795894e-2f;");
  em_line(EM, "p = p * r + 1.6666665459e-1f;");
  em_line(EM, "p = p * r + 5.0000001201e-1f;");
  em_line(EM, "p = p * r * r + r + 1.0f;");
  em_line(EM, "const int32_t bits = ((int32_t)k + 127) << 23;");
  em_line(EM, "float scale;");
  em_line(EM, "memcpy(&scale, &bits, sizeof scale);");
  em_line(EM, "return p * scale;");
  em_close(EM);
  em_blank(EM);
  if (sigmoid) {
    em_open(EM, "static inline float %s_sigmoid(float x)", n);
    em_line(EM, "return 1.0f / (1.0f + %s_exp(-x));", n);
    em_close(EM);
    em_blank(EM);
  }
  if (tanh) {
    em_comment(EM, "tanh: Cephes' odd polynomial below 0.625, 1 - 2 / (e^2|x| + 1) above.\n"
                   "Relative error below 2.5e-7.");
    em_open(EM, "static inline float %s_tanh(float x)", n);
    em_line(EM, "if (sizeof(float) != sizeof(int32_t))");
    em_line(EM, "  return tanhf(x);");
    em_line(EM, "const float ax = x < 0.0f ? -x : x, z = x * x;");
    em_line(EM, "float p = -5.70498872745e-3f;");
    em_line(EM, "p = p * z + 2.06390887954e-2f;");
    em_line(EM, "p = p * z - 5.37397155531e-2f;");
    em_line(EM, "p = p * z + 1.33314422036e-1f;");
    em_line(EM, "p = p * z - 3.33332819422e-1f;");
    em_line(EM, "const float small = p * z * x + x;");
    em_line(EM, "const float big = 1.0f - 2.0f / (%s_exp(2.0f * ax) + 1.0f);", n);
    em_line(EM, "return ax < 0.625f ? small : x < 0.0f ? -big : big;");
    em_close(EM);
    em_blank(EM);
  }
}

/* Applies act to `count` floats of p in place, after the layer stored them
   (ReLU and linear are done in registers, before the store). Softmax only
   ever applies to a vector: shape.c refuses it elsewhere. */
static void emit_act_pass(Gen *g, Act act, const char *p, long count) {
  switch (act) {
  case ACT_LINEAR:
    return;
  case ACT_SIGMOID:
  case ACT_TANH:
    em_line(EM, "for (int i = 0; i < %ld; i++)", count);
    em_line(EM, "  %s[i] = %s_%s(%s[i]);", p, g->n, act_words[act], p);
    return;
  case ACT_SOFTMAX:
    em_comment(EM, "softmax, max-subtracted");
    em_open(EM, "%s", "");
    em_line(EM, "float mx = %s[0], sum = 0.0f;", p);
    em_line(EM, "for (int i = 1; i < %ld; i++)", count);
    em_line(EM, "  mx = %s[i] > mx ? %s[i] : mx;", p, p);
    em_open(EM, "for (int i = 0; i < %ld; i++)", count);
    em_line(EM, "%s[i] = expf(%s[i] - mx);", p, p);
    em_line(EM, "sum += %s[i];", p);
    em_close(EM);
    em_line(EM, "for (int i = 0; i < %ld; i++)", count);
    em_line(EM, "  %s[i] /= sum;", p);
    em_close(EM);
    return;
  case ACT_RELU:
  case ACT_COUNT:
    break;
  }
  assert(0);
}

/* ---- conv2d ---- */

typedef struct Conv {
  const Layer *l;
  int C, F, KH, KW, SH, SW; /* SH, SW: the stride down and across */
  int IW;                   /* width of the input read (padded when the conv pads) */
  bool bias;                /* the accumulators start from the bias (else zero) */
  int rows, cols;           /* conv output rows and columns computed */
  int OW;                   /* unfused: row width of y, in pixels */
  const Layer *pool;
  int PKH, PKW, PW; /* fused pool window, pooled row width */
  bool avg;
  Act act;
  const EmVec *v; /* the vector width of the tiles: v->w floats (VW) */
  /* Register tiles (vector): FB vectors of VW channels x TR rows x TC
     columns of pixels. With a pool, TR is 1 (each conv row combined into y)
     or PKH (whole windows combined in registers). FP: the channels as the
     tiles see them, F rounded up to whole vectors.
     F not a multiple of VW (the channel tail):
       F > VW: the last vector overlaps the one before it: it starts at
         channel F - VW, `shift` channels before its place VW * (FP / VW - 1),
         and reads the weights and biases in place. The overlapped
         channels get the same multiply-adds in the same order in both
         vectors, so both store the same bits; the tail costs one vector
         per tap, as a zero-padded one would, and no copy.
       F < VW: one vector; the layer first copies its weights into WS = VW
         floats per tap with zero filters added, and stores the F real
         channels (a plain loop per pixel when that copy would pass 64 KiB).
     WS: floats per tap (kx, c) in the weights the tiles read. */
  bool vector;
  int FP, FB, TR, TC;
  int WS, shift;
} Conv;

static double max3(double a, double b, double c) {
  return a > b ? (a > c ? a : c) : (b > c ? b : c);
}

/* Estimated cycles of the whole layer with tile (fb, tr, tc), for a core
   like Zen 4 or Skylake: per tap, the largest of the multiply-adds (2
   vectors a cycle, 4 cycles latency: fewer than 8 accumulators stall), the
   loads (fb weight vectors and tr*tc broadcasts, 2 a cycle), the weights
   streamed from L2 when they do not stay in L1 (16 bytes a cycle: each tile
   reads all of them again) and the instructions (5 a cycle); per tile, its
   stores (and the reads of y when pool rows are combined through it) and
   the loop around the taps. */
static double tile_cost(const Conv *c, int fb, int tr, int p) {
  const double taps = (double)c->KH * c->KW * c->C;
  const bool from_l2 = taps * c->FP * sizeof(float) > 24 * 1024;
  double fma = p * fb / 2.0 > 4 ? p * fb / 2.0 : 4;
  double per_tap = max3(fma, (p + fb) / 2.0, (p * fb + p + fb + 3) / 5.0);
  const double l2 = fb * c->v->w * sizeof(float) / 16.0; /* fb vectors of VW floats */
  if (from_l2 && l2 > per_tap)
    per_tap = l2;
  return taps * per_tap + p * fb * (c->pool && tr == 1 ? 3 : 1) + 20;
}

/* The tiles are whole (tr x tc) but for a last row of tiles with rows % tr
   rows and a last column with cols % tc: four kinds, each costed once and
   counted, so the search does not grow with the image. */
static double conv_cost(const Conv *c, int fb, int tr, int tc) {
  const double nr = c->rows / tr, nc = c->cols / tc;
  const int rr = c->rows % tr, rc = c->cols % tc;
  double cycles = nr * nc * tile_cost(c, fb, tr, tr * tc);
  if (rc)
    cycles += nr * tile_cost(c, fb, tr, tr * rc);
  if (rr)
    cycles += nc * tile_cost(c, fb, tr, rr * tc);
  if (rr && rc)
    cycles += tile_cost(c, fb, tr, rr * rc);
  return cycles * (c->FP / c->v->w / fb);
}

/* Picks the cheapest tile by conv_cost whose accumulators (at most 3/4 of
   the registers) plus the live weights or broadcasts fit in the vector
   registers of the width (32 zmm for 16 floats, 16 ymm for 8). */
static void conv_tile(Conv *c) {
  const int FV = c->FP / c->v->w, regs = c->v->regs, max_acc = regs * 3 / 4;
  double best = -1;
  for (int fb = 1; fb <= FV && fb <= 8; fb++) {
    if (FV % fb)
      continue;
    for (int tr = 1; tr <= c->rows && tr * c->PKW * fb <= max_acc; tr++) {
      if (c->pool && tr != 1 && tr != c->PKH)
        continue;
      for (int tc = c->PKW; tc <= c->cols; tc += c->PKW) {
        int p = tr * tc;
        if (p * fb > max_acc || p * fb + (p < fb ? p : fb) + 2 > regs)
          break;
        if (tr > 1 && tc < c->cols && !c->pool)
          continue; /* a multi-row tile spans whole rows (or whole windows) */
        double cost = conv_cost(c, fb, tr, tc);
        if (best < 0 || cost < best - 1e-9) {
          best = cost;
          c->FB = fb, c->TR = tr, c->TC = tc;
        }
      }
    }
  }
  assert(best >= 0);
}

static Conv conv_info(const Layer *l, const EmVec *v, const Layer *pool, Act act) {
  const int VW = v->w;
  Conv c = {0};
  c.l = l;
  c.v = v;
  c.C = l->in.c;
  c.F = l->out.c;
  c.KH = l->u.conv.kh;
  c.KW = l->u.conv.kw;
  c.SH = l->u.conv.sh;
  c.SW = l->u.conv.sw;
  c.bias = l->bias_count > 0;
  c.IW = l->in.w + l->u.conv.pad_left + l->u.conv.pad_right;
  c.OW = l->out.w;
  c.act = act;
  c.pool = pool;
  c.PKH = c.PKW = 1;
  c.rows = l->out.h;
  c.cols = l->out.w;
  if (c.pool) {
    c.PKH = c.pool->u.pool.kh;
    c.PKW = c.pool->u.pool.kw;
    c.PW = c.pool->out.w;
    c.rows = c.pool->out.h * c.PKH;
    c.cols = c.PW * c.PKW;
    c.avg = c.pool->op == OP_AVGPOOL;
  }
  /* The channel tail (see Conv): an overlapping last vector above VW
     channels; below, a padded copy of up to 64 KiB (on the stack). */
  c.FP = (c.F + VW - 1) / VW * VW;
  c.WS = c.F < VW ? VW : c.F;
  c.shift = c.F > VW ? c.FP - c.F : 0;
  c.vector = c.F >= VW || (long)c.KH * c.KW * c.C * VW * (long)sizeof(float) <= 65536;
  if (c.vector) {
    conv_tile(&c);
  }
  return c;
}

/* Copies x into the middle of xp, zeroing the border. */
static void emit_conv_pad(Gen *g, const Layer *l, const char *fn) {
  const int H = l->in.h, W = l->in.w, C = l->in.c;
  const int T = l->u.conv.pad_top, B = l->u.conv.pad_bottom;
  const int L = l->u.conv.pad_left, R = l->u.conv.pad_right;
  const int PW = W + L + R;
  Shape ps = {H + T + B, PW, C, false};
  em_comment(EM, "%s: its input %s inside a zero border, top %d, left %d, bottom %d, right %d",
             QUOTE(l), DIMS(l->in), T, L, B, R);
  em_open(EM, "static void %s_zero_pad(const float *restrict x, float *restrict xp)", fn);
  em_comment(EM, "x %s, xp %s", DIMS(l->in), DIMS(ps));
  if (T)
    em_line(EM, "memset(xp, 0, %ld * sizeof(float));", (long)T * PW * C);
  em_open(EM, "for (int iy = 0; iy < %d; iy++)", H);
  em_line(EM, "float *restrict row = xp + %s;", LIN((long)T * PW * C, "iy", (long)PW * C));
  if (L)
    em_line(EM, "memset(row, 0, %ld * sizeof(float));", (long)L * C);
  em_line(EM, "memcpy(row + %ld, x + iy * %ld, %ld * sizeof(float));", (long)L * C, (long)W * C,
          (long)W * C);
  if (R)
    em_line(EM, "memset(row + %ld, 0, %ld * sizeof(float));", (long)(L + W) * C, (long)R * C);
  em_close(EM);
  if (B)
    em_line(EM, "memset(xp + %ld, 0, %ld * sizeof(float));", (long)(T + H) * PW * C,
            (long)B * PW * C);
  em_close(EM);
  em_blank(EM);
}

/* A block of FB vectors of channels: from channel f0 (the variable `f0v`
   when not NULL, plus the literal f0l), its last vector `shift` channels
   back (the overlapping tail vector, see Conv). */
typedef struct FBlock {
  const char *f0v;
  int f0l, shift;
} FBlock;

/* The channel offset of vector v of block k, from its f0. */
static int vec_at(const Conv *c, const FBlock *k, int v) {
  return v * c->v->w - (v == c->FB - 1 ? k->shift : 0) + k->f0l;
}

/* One tile: tr x tc pixels from column ox (variable `oxv`, or the literal
   oxl) of the rows at xr / yr, the FB vectors of channel block k. Pixel j
   is row j / tc, column j % tc of the tile. */
static void emit_conv_tile(Gen *g, const Conv *c, int tr, int tc, const char *oxv, int oxl,
                           const FBlock *blk) {
  const char *n = g->n, *vt = c->v->type, *op = c->v->op;
  const int FB = c->FB, C = c->C, F = c->F, WS = c->WS, SH = c->SH, SW = c->SW, P = tr * tc,
            VW = c->v->w;
  const int last = F < VW ? F : VW; /* real channels of the last vector */
  const char *ox = oxv ? oxv : "";
  const char *f0 = blk->f0v ? blk->f0v : "";
  if (oxv) /* inside the loop over ox, whose braces it shares */
    em_open(EM, "for (int ox = 0; ox < %d; ox += %d)", c->cols / tc * tc, tc);
  else
    em_open(EM, "%s", "");
  for (int j = 0; j < P; j++) {
    const char *line = em_str(EM, "%s_%s", n, vt);
    for (int v = 0; v < FB; v++)
      line = em_str(EM, "%s%s a%d_%d = b%d", line, v ? "," : "", j, v, v);
    em_line(EM, "%s;", line);
  }
  em_open(EM, "for (int ky = 0; ky < %d; ky++)", c->KH);
  em_line(EM, "const float *restrict xk = xr + %s;",
          LIN((long)oxl * SW * C, "ky", (long)c->IW * C, ox, (long)SW * C));
  em_line(EM, "const float *restrict wk = w + %s;",
          LIN(blk->f0l, "ky", (long)c->KW * C * WS, f0, 1L));
  em_open(EM, "for (int k = 0; k < %d; k++)", c->KW * C);
  for (int j0 = 0; j0 < P; j0 += 4) {
    const char *line = "const float";
    for (int j = j0; j < P && j < j0 + 4; j++)
      line = em_str(EM, "%s%s s%d = xk[%s]", line, j > j0 ? "," : "", j,
                    LIN((long)(j / tc) * SH * c->IW * C + (long)(j % tc) * SW * C, "k", 1L));
    em_line(EM, "%s;", line);
  }
  for (int v = 0; v < FB; v++) {
    em_line(EM, "%s_%s w%d;", n, vt, v);
    em_line(EM, "%s_LOAD(w%d, wk + %s);", n, v, LIN(vec_at(c, blk, v) - blk->f0l, "k", (long)WS));
  }
  for (int j = 0; j < P; j++)
    for (int v = 0; v < FB; v++)
      em_line(EM, "%s_FMA%s(a%d_%d, s%d, w%d);", n, op, j, v, j, v);
  em_close(EM);
  em_close(EM);
  if (!c->pool) {
    for (int j = 0; j < P; j++)
      for (int v = 0; v < FB; v++) {
        if (c->act == ACT_RELU)
          em_line(EM, "%s_MAX%s(a%d_%d, zero);", n, op, j, v);
        const char *at = LIN(((long)(j / tc) * c->OW + oxl + j % tc) * F + vec_at(c, blk, v), ox,
                             (long)F, f0, 1L);
        if (v == FB - 1 && last < VW)
          em_line(EM, "memcpy(yr + %s, &a%d_%d, %d * sizeof(float));", at, j, v, last);
        else
          em_line(EM, "%s_STORE(yr + %s, a%d_%d);", n, at, j, v);
      }
    em_close(EM);
    return;
  }
  /* Pool: combine each window's pixels of this tile into the window's first
     pixel; with one row per tile (tr = 1), also with the rows before (r > 0),
     through y. */
  const int Q = tc / c->PKW;
  for (int q = 0; q < Q; q++)
    for (int v = 0; v < FB; v++) {
      int first = q * c->PKW;
      for (int jr = 0; jr < tr; jr++)
        for (int jc = q * c->PKW; jc < (q + 1) * c->PKW; jc++) {
          int j = jr * tc + jc;
          if (c->avg && c->act == ACT_RELU)
            em_line(EM, "%s_MAX%s(a%d_%d, zero);", n, op, j, v);
          if (j != first)
            em_line(EM, "%s_%s(a%d_%d, a%d_%d);", n, c->avg ? "ADD" : em_str(EM, "MAX%s", op),
                    first, v, j, v);
        }
      if (!c->avg && c->act == ACT_RELU)
        em_line(EM, "%s_MAX%s(a%d_%d, zero);", n, op, first, v);
    }
  /* y offset of pooled pixel q, vector v: (ox / PKW + q) * F + f0 + vec_at */
  const char *pxv = "";
  if (oxv) {
    em_line(EM, "const int px = %s / %d;", oxv, c->PKW);
    pxv = "px";
  }
  const int pxl = oxl / c->PKW;
  const bool through_y = tr < c->PKH;
  if (through_y) {
    em_open(EM, "if (r > 0)");
    em_line(EM, "%s_%s o;", n, vt);
    if (last < VW)
      em_line(EM, "memset(&o, 0, sizeof o);");
    for (int q = 0; q < Q; q++)
      for (int v = 0; v < FB; v++) {
        const char *at = LIN((long)(pxl + q) * F + vec_at(c, blk, v), pxv, (long)F, f0, 1L);
        if (v == FB - 1 && last < VW)
          em_line(EM, "memcpy(&o, yr + %s, %d * sizeof(float));", at, last);
        else
          em_line(EM, "%s_LOAD(o, yr + %s);", n, at);
        em_line(EM, "%s_%s(a%d_%d, o);", n, c->avg ? "ADD" : em_str(EM, "MAX%s", op), q * c->PKW,
                v);
      }
    em_close(EM);
  }
  if (c->avg) {
    const char *scale = FLT(1.0 / (c->PKH * c->PKW));
    if (through_y)
      em_open(EM, "if (r == %d)", c->PKH - 1);
    for (int q = 0; q < Q; q++)
      for (int v = 0; v < FB; v++)
        em_line(EM, "%s_SCALE(a%d_%d, %s);", n, q * c->PKW, v, scale);
    if (through_y)
      em_close(EM);
  }
  for (int q = 0; q < Q; q++)
    for (int v = 0; v < FB; v++) {
      const char *at = LIN((long)(pxl + q) * F + vec_at(c, blk, v), pxv, (long)F, f0, 1L);
      if (v == FB - 1 && last < VW)
        em_line(EM, "memcpy(yr + %s, &a%d_%d, %d * sizeof(float));", at, q * c->PKW, v, last);
      else
        em_line(EM, "%s_STORE(yr + %s, a%d_%d);", n, at, q * c->PKW, v);
    }
  em_close(EM);
}

/* The tiles of block blk in tr rows at xr / yr: full tiles of TC columns,
   then the rest. */
static void emit_conv_block(Gen *g, const Conv *c, int tr, const FBlock *blk) {
  const char *n = g->n;
  for (int v = 0; v < c->FB; v++) {
    em_line(EM, "%s_%s b%d;", n, c->v->type, v);
    if (c->bias)
      em_line(EM, "%s_LOAD(b%d, b + %s);", n, v,
              LIN(vec_at(c, blk, v), blk->f0v ? blk->f0v : "", 1L));
    else
      em_line(EM, "memset(&b%d, 0, sizeof b%d); /* no bias */", v, v);
  }
  const int full = c->cols / c->TC, rest = c->cols % c->TC;
  if (full > 1) {
    emit_conv_tile(g, c, tr, c->TC, "ox", 0, blk);
  } else if (full == 1) {
    emit_conv_tile(g, c, tr, c->TC, NULL, 0, blk);
  }
  if (rest)
    emit_conv_tile(g, c, tr, rest, NULL, full * c->TC, blk);
}

/* The tiles of tr rows at xr / yr, block by block of FB vectors of
   channels; with a channel tail (shift), the last block on its own. */
static void emit_conv_rows_vector(Gen *g, const Conv *c, int tr) {
  const int BW = c->FB * c->v->w, blocks = c->FP / BW, looped = c->shift ? blocks - 1 : blocks;
  if (looped > 1) {
    em_open(EM, "for (int f0 = 0; f0 < %d; f0 += %d)", looped * BW, BW);
    emit_conv_block(g, c, tr, &(FBlock){"f0", 0, 0});
    em_close(EM);
  } else if (looped == 1) {
    em_open(EM, "%s", "");
    emit_conv_block(g, c, tr, &(FBlock){NULL, 0, 0});
    em_close(EM);
  }
  if (c->shift) {
    em_open(EM, "%s", "");
    emit_conv_block(g, c, tr, &(FBlock){NULL, looped * BW, c->shift});
    em_close(EM);
  }
}

/* Scalar path (F below VW, when a padded copy of the weights would be large): one output pixel at a
   time, of the row at xr / yr. */
static void emit_conv_row_scalar(Gen *g, const Conv *c) {
  const int C = c->C, F = c->F;
  em_open(EM, "for (int ox = 0; ox < %d; ox++)", c->cols);
  em_line(EM, "float acc[%d];", F);
  em_line(EM, "for (int f = 0; f < %d; f++)", F);
  em_line(EM, "  acc[f] = %s;", c->bias ? "b[f]" : "0.0f");
  em_open(EM, "for (int ky = 0; ky < %d; ky++)", c->KH);
  em_line(EM, "const float *restrict xk = xr + %s;",
          LIN(0, "ky", (long)c->IW * C, "ox", (long)c->SW * C));
  em_line(EM, "const float *restrict wk = w + %s;", LIN(0, "ky", (long)c->KW * C * F));
  em_open(EM, "for (int k = 0; k < %d; k++)", c->KW * C);
  em_line(EM, "const float s = xk[k];");
  em_line(EM, "for (int f = 0; f < %d; f++)", F);
  em_line(EM, "  acc[f] += s * wk[%s];", LIN(0, "k", (long)F, "f", 1L));
  em_close(EM);
  em_close(EM);
  const char *relu = c->act == ACT_RELU ? " > 0.0f ? acc[f] : 0.0f" : "";
  if (!c->pool) {
    em_line(EM, "for (int f = 0; f < %d; f++)", F);
    if (*relu)
      em_line(EM, "  yr[%s] = acc[f]%s;", LIN(0, "ox", (long)F, "f", 1L), relu);
    else
      em_line(EM, "  yr[%s] = acc[f];", LIN(0, "ox", (long)F, "f", 1L));
    em_close(EM);
    return;
  }
  em_line(EM, "float *restrict yp = yr + ox / %d * %d;", c->PKW, F);
  if (c->PKH > 1)
    em_line(EM, "const int first = r == 0 && ox %% %d == 0;", c->PKW);
  else
    em_line(EM, "const int first = ox %% %d == 0;", c->PKW);
  em_open(EM, "for (int f = 0; f < %d; f++)", F);
  if (*relu)
    em_line(EM, "const float v = acc[f]%s;", relu);
  else
    em_line(EM, "const float v = acc[f];");
  if (c->avg)
    em_line(EM, "yp[f] = first ? v : yp[f] + v;");
  else
    em_line(EM, "yp[f] = first || v > yp[f] ? v : yp[f];");
  em_close(EM);
  if (c->avg) {
    if (c->PKH > 1)
      em_open(EM, "if (r == %d && ox %% %d == %d)", c->PKH - 1, c->PKW, c->PKW - 1);
    else
      em_open(EM, "if (ox %% %d == %d)", c->PKW, c->PKW - 1);
    em_line(EM, "for (int f = 0; f < %d; f++)", F);
    em_line(EM, "  yp[f] *= %s;", FLT(1.0 / (c->PKH * c->PKW)));
    em_close(EM);
  }
  em_close(EM);
}

/* The loops over output rows: groups of TR rows (then the rest); with a
   pool, pooled rows, each either one tile row (TR = PKH) or PKH conv rows
   r combined through y. */
static void emit_conv_rows(Gen *g, const Conv *c) {
  const int C = c->C, F = c->F;
  const bool vector = c->vector;
  const long xrow = (long)c->SH * c->IW * C; /* input floats per output row */
  if (c->pool) {
    em_open(EM, "for (int py = 0; py < %d; py++)", c->pool->out.h);
    em_line(EM, "float *restrict yr = y + %s; /* [%d][%d] */", LIN(0, "py", (long)c->PW * F), c->PW,
            F);
    if (vector && c->TR == c->PKH) {
      em_line(EM, "const float *restrict xr = x + %s;", LIN(0, "py", c->PKH * xrow));
      emit_conv_rows_vector(g, c, c->TR);
    } else {
      em_open(EM, "for (int r = 0; r < %d; r++)", c->PKH);
      em_line(EM, "const float *restrict xr = x + %s;", LIN(0, "py", c->PKH * xrow, "r", xrow));
      if (vector)
        emit_conv_rows_vector(g, c, 1);
      else
        emit_conv_row_scalar(g, c);
      em_close(EM);
    }
    em_close(EM);
    return;
  }
  const int tr = vector ? c->TR : 1, full = c->rows / tr, rest = c->rows % tr;
  for (int part = 0; part < 2; part++) {
    int rows = part ? rest : tr, first = part ? full * tr : 0, count = part ? 1 : full;
    if (!rows || !count)
      continue;
    const char *oy = count > 1 ? "oy" : "";
    if (count > 1 && rows == 1)
      em_open(EM, "for (int oy = %d; oy < %d; oy++)", first, first + count);
    else if (count > 1)
      em_open(EM, "for (int oy = %d; oy < %d; oy += %d)", first, first + count * rows, rows);
    else
      em_open(EM, "%s", "");
    em_line(EM, "const float *restrict xr = x + %s;", LIN(count > 1 ? 0 : first * xrow, oy, xrow));
    const char *yoff = LIN(count > 1 ? 0 : (long)first * c->OW * F, oy, (long)c->OW * F);
    if (rows == 1)
      em_line(EM, "float *restrict yr = y + %s; /* [%d][%d] */", yoff, c->OW, F);
    else
      em_line(EM, "float *restrict yr = y + %s; /* [%d][%d][%d] */", yoff, rows, c->OW, F);
    if (vector)
      emit_conv_rows_vector(g, c, rows);
    else
      emit_conv_row_scalar(g, c);
    em_close(EM);
  }
}

/* The forward function of conv c, for its vector width. */
static void emit_conv_fn(Gen *g, const Conv *cp, const char *fn) {
  const Conv c = *cp;
  const Layer *l = c.l;
  const int C = c.C, F = c.F;
  Shape ys = c.pool ? c.pool->out : l->out;
  em_open_fn(
      EM,
      "static %s_NOINLINE void %s_forward(const %s_model *restrict m, const float *restrict x, "
      "float *restrict y)",
      g->n, fn, g->n);
  const char *wref = emit_param_ref(EM, g->net, l, 0, "m");
  const char *bref = c.bias ? emit_param_ref(EM, g->net, l, 1, "m") : NULL;
  if (c.WS == F || !c.vector) {
    em_line(EM, "const float *restrict w = %s; /* [%d][%d][%d][%d] */", wref, c.KH, c.KW, C, F);
    if (bref)
      em_line(EM, "const float *restrict b = %s; /* [%d] */", bref, F);
  } else {
    const long K = (long)c.KH * c.KW * C;
    em_line(EM, "const float *restrict wm = %s; /* [%d][%d][%d][%d] */", wref, c.KH, c.KW, C, F);
    if (bref) {
      em_line(EM, "const float *restrict bm = %s; /* [%d] */", bref, F);
      em_line(EM, "float w[%ld], b[%d]; /* the same with %d zero filters: whole vectors */",
              K * c.WS, c.WS, c.WS - F);
    } else {
      em_line(EM, "float w[%ld]; /* the same with %d zero filters: whole vectors */", K * c.WS,
              c.WS - F);
    }
    em_line(EM, "for (int k = 0; k < %ld; k++)", K);
    em_line(EM, "  for (int f = 0; f < %d; f++)", c.WS);
    em_line(EM, "    w[%s] = f < %d ? wm[%s] : 0.0f;", LIN(0, "k", (long)c.WS, "f", 1L), F,
            LIN(0, "k", (long)F, "f", 1L));
    if (bref) {
      em_line(EM, "for (int f = 0; f < %d; f++)", c.WS);
      em_line(EM, "  b[f] = f < %d ? bm[f] : 0.0f;", F);
    }
  }
  if (c.vector && c.act == ACT_RELU) {
    em_line(EM, "%s_%s zero;", g->n, c.v->type);
    em_line(EM, "memset(&zero, 0, sizeof zero);");
  }
  emit_conv_rows(g, &c);
  if (c.act != ACT_RELU && c.act != ACT_LINEAR)
    emit_act_pass(g, c.act, "y", shape_size(ys));
  em_close(EM);
}

/* A conv of 16 channels or more is written once per vector width (its
   tiles differ), under #if NAME_VW; a narrower one once, on 8 floats. */
static void emit_conv(Gen *g, const Layer *l, const char *fn) {
  const Layer *pool = g->train ? NULL : l->fused_pool;
  const Act act = g->train ? g->act : l->act;
  const Conv c8 = conv_info(l, &em_vec8, pool, act), c16 = conv_info(l, &em_vec16, pool, act);
  const bool wide = c8.F >= 16 && c16.vector;
  Shape xs = l->in;
  xs.h += l->u.conv.pad_top + l->u.conv.pad_bottom;
  xs.w += l->u.conv.pad_left + l->u.conv.pad_right;
  if (conv_padded(l) && !g->train)
    emit_conv_pad(g, l, fn);
  if (EM->kernels) {
    glue_conv_forward(EM, g->net, l, fn, pool, act);
    return;
  }
  Shape ys = c8.pool ? c8.pool->out : l->out;
  const char *what =
      em_str(EM, "x %s%s -> y %s", DIMS(xs), conv_padded(l) ? " (padded)" : "", DIMS(ys));
  if (c8.pool && (c8.rows < l->out.h || c8.cols < l->out.w))
    what = em_str(EM, "%s\nof the conv's %s, the %d x %d the pool reads are computed", what,
                  DIMS(l->out), c8.rows, c8.cols);
  for (int i = 0; i < 2; i++) {
    const Conv *c = i ? &c8 : &c16;
    if (c->vector && (wide || i))
      what =
          em_str(EM, "%s\ntiles of %d row%s x %d column%s x %d channels held in registers%s", what,
                 c->TR, c->TR == 1 ? "" : "s", c->TC, c->TC == 1 ? "" : "s", c->FB * c->v->w,
                 !wide ? ""
                 : i   ? " (8-float vectors)"
                       : " (16-float vectors)");
  }
  layer_comment(g, l, what);
  if (wide) {
    for (int i = 0; i < 2; i++) {
      em_width_if(EM, g->n, em_widths[i]);
      emit_conv_fn(g, em_widths[i]->w == 16 ? &c16 : &c8, fn);
    }
    em_raw(EM, "#endif");
  } else {
    emit_conv_fn(g, &c8, fn);
  }
  em_blank(EM);
}

/* ---- dense ---- */

/* The forward function of dense layer l on vectors v. */
static void emit_dense_fn(Gen *g, const Layer *l, const char *fn, const EmVec *vec) {
  const char *n = g->n, *vt = vec->type;
  const int IN = (int)shape_size(l->in), OUT = l->out.c, VW = vec->w;
  const Act act = g->train ? g->act : l->act;
  em_open_fn(
      EM,
      "static %s_NOINLINE void %s_forward(const %s_model *restrict m, const float *restrict x, "
      "float *restrict y)",
      n, fn, n);
  const bool bias = l->bias_count > 0;
  const char *wref = emit_param_ref(EM, g->net, l, 0, "m");
  em_line(EM, "const float *restrict w = %s; /* [%d][%d] */", wref, IN, OUT);
  if (bias)
    em_line(EM, "const float *restrict b = %s; /* [%d] */", emit_param_ref(EM, g->net, l, 1, "m"),
            OUT);
  const int vectors = OUT / VW, rest = OUT % VW;
  const bool relu = act == ACT_RELU;
  if (vectors && relu) {
    em_line(EM, "%s_%s zero;", n, vt);
    em_line(EM, "memset(&zero, 0, sizeof zero);");
  }
  /* Blocks of up to 8 vectors of outputs in registers, all inputs each
     (up to 8 + 8 + 1 registers). */
  for (int o0 = 0; o0 < vectors;) {
    int ob = vectors - o0 < 8 ? vectors - o0 : 8;
    int same = (vectors - o0) / ob; /* blocks of this size from o0 */
    const char *ov = same > 1 ? "o0" : "";
    if (same > 1)
      em_open(EM, "for (int o0 = %d; o0 < %d; o0 += %d)", o0 * VW, (o0 + same * ob) * VW, ob * VW);
    else
      em_open(EM, "%s", "");
    for (int v = 0; v < ob; v++) {
      em_line(EM, "%s_%s a%d;", n, vt, v);
      if (bias)
        em_line(EM, "%s_LOAD(a%d, b + %s);", n, v,
                LIN((long)(same > 1 ? 0 : o0 * VW) + v * VW, ov, 1L));
      else
        em_line(EM, "memset(&a%d, 0, sizeof a%d); /* no bias */", v, v);
    }
    em_open(EM, "for (int i = 0; i < %d; i++)", IN);
    em_line(EM, "const float s = x[i];");
    em_line(EM, "const float *restrict wi = w + %s;",
            LIN((long)(same > 1 ? 0 : o0 * VW), "i", (long)OUT, ov, 1L));
    for (int v = 0; v < ob; v++) {
      em_line(EM, "%s_%s w%d;", n, vt, v);
      em_line(EM, "%s_LOAD(w%d, wi + %d);", n, v, v * VW);
      em_line(EM, "%s_FMA%s(a%d, s, w%d);", n, vec->op, v, v);
    }
    em_close(EM);
    for (int v = 0; v < ob; v++) {
      if (relu)
        em_line(EM, "%s_MAX%s(a%d, zero);", n, vec->op, v);
      em_line(EM, "%s_STORE(y + %s, a%d);", n, LIN((long)(same > 1 ? 0 : o0 * VW) + v * VW, ov, 1L),
              v);
    }
    em_close(EM);
    o0 += same * ob;
  }
  if (rest) {
    const int base = vectors * VW;
    em_open(EM, "%s", "");
    em_line(EM, "float acc[%d];", rest);
    em_line(EM, "for (int o = 0; o < %d; o++)", rest);
    if (bias)
      em_line(EM, "  acc[o] = b[%s];", LIN(base, "o", 1L));
    else
      em_line(EM, "  acc[o] = 0.0f;");
    em_open(EM, "for (int i = 0; i < %d; i++)", IN);
    em_line(EM, "const float s = x[i];");
    em_line(EM, "for (int o = 0; o < %d; o++)", rest);
    em_line(EM, "  acc[o] += s * w[%s];", LIN(base, "i", (long)OUT, "o", 1L));
    em_close(EM);
    em_line(EM, "for (int o = 0; o < %d; o++)", rest);
    em_line(EM, "  y[%s] = acc[o]%s;", LIN(base, "o", 1L), relu ? " > 0.0f ? acc[o] : 0.0f" : "");
    em_close(EM);
  }
  if (!relu)
    emit_act_pass(g, act, "y", OUT);
  em_close(EM);
}

/* Written once per vector width when the outputs are whole vectors of 16
   floats, else once on 8. */
static void emit_dense(Gen *g, const Layer *l, const char *fn) {
  if (EM->kernels) {
    glue_dense_forward(EM, g->net, l, fn, g->train ? g->act : l->act);
    return;
  }
  const int IN = (int)shape_size(l->in), OUT = l->out.c;
  const Shape src = net_dense_source(g->net, l);
  const char *what =
      src.vec ? em_str(EM, "x [%d] -> y [%d]", IN, OUT)
              : em_str(EM, "x [%d] (%s flattened in NHWC order) -> y [%d]", IN, DIMS(src), OUT);
  layer_comment(g, l, what);
  if (OUT % 16 == 0) {
    for (int i = 0; i < 2; i++) {
      em_width_if(EM, g->n, em_widths[i]);
      emit_dense_fn(g, l, fn, em_widths[i]);
    }
    em_raw(EM, "#endif");
  } else {
    emit_dense_fn(g, l, fn, &em_vec8);
  }
  em_blank(EM);
}

/* ---- pools, activations ---- */

static void emit_pool(Gen *g, const Layer *l, const char *fn) {
  if (EM->kernels) {
    glue_pool_forward(EM, l, fn);
    return;
  }
  const int C = l->in.c, W = l->in.w, SH = l->u.pool.sh, SW = l->u.pool.sw;
  const int KH = l->u.pool.kh, KW = l->u.pool.kw, PH = l->out.h, PW = l->out.w;
  const bool avg = l->op == OP_AVGPOOL;
  const char *what = em_str(EM, "x %s -> y %s", DIMS(l->in), DIMS(l->out));
  layer_comment(g, l, what);
  em_open_fn(EM, "static void %s_forward(const float *restrict x, float *restrict y)", fn);
  em_open(EM, "for (int py = 0; py < %d; py++)", PH);
  em_open(EM, "for (int px = 0; px < %d; px++)", PW);
  em_line(EM, "const float *restrict xp = x + %s;",
          LIN(0, "py", (long)SH * W * C, "px", (long)SW * C));
  em_line(EM, "float *restrict yp = y + %s;", LIN(0, "py", (long)PW * C, "px", (long)C));
  em_open(EM, "for (int c = 0; c < %d; c++)", C);
  const bool unroll = KH * KW <= 16;
  em_line(EM, "float v = %s;", avg && !unroll ? "0.0f" : "xp[c]");
  if (unroll) {
    for (int ky = 0; ky < KH; ky++)
      for (int kx = 0; kx < KW; kx++) {
        if (!ky && !kx)
          continue;
        long off = ((long)ky * W + kx) * C;
        if (avg)
          em_line(EM, "v += xp[c + %ld];", off);
        else
          em_line(EM, "v = xp[c + %ld] > v ? xp[c + %ld] : v;", off, off);
      }
  } else {
    em_open(EM, "for (int ky = 0; ky < %d; ky++)", KH);
    em_open(EM, "for (int kx = 0; kx < %d; kx++)", KW);
    em_line(EM, "const float u = xp[%s];", LIN(0, "ky", (long)W * C, "kx", (long)C, "c", 1L));
    if (avg)
      em_line(EM, "v += u;");
    else
      em_line(EM, "v = u > v ? u : v;");
    em_close(EM);
    em_close(EM);
  }
  if (avg)
    em_line(EM, "yp[c] = v / %s;", FLT((double)KH * KW));
  else
    em_line(EM, "yp[c] = v;");
  em_close(EM);
  em_close(EM);
  em_close(EM);
  em_close(EM);
  em_blank(EM);
}

static void emit_global_pool(Gen *g, const Layer *l, const char *fn) {
  const int C = l->in.c, HW = l->in.h * l->in.w;
  const char *what = em_str(EM, "x %s -> y [%d], the mean of each channel", DIMS(l->in), C);
  layer_comment(g, l, what);
  em_open_fn(EM, "static void %s_forward(const float *restrict x, float *restrict y)", fn);
  em_line(EM, "float acc[%d];", C);
  em_line(EM, "for (int c = 0; c < %d; c++)", C);
  em_line(EM, "  acc[c] = 0.0f;");
  em_line(EM, "for (int p = 0; p < %d; p++)", HW);
  em_line(EM, "  for (int c = 0; c < %d; c++)", C);
  em_line(EM, "    acc[c] += x[%s];", LIN(0, "p", (long)C, "c", 1L));
  em_line(EM, "for (int c = 0; c < %d; c++)", C);
  em_line(EM, "  y[c] = acc[c] / %s;", FLT(HW));
  em_close(EM);
  em_blank(EM);
}

/* A flatten that is the network's output: [H][W][C] -> PyTorch's [C][H][W]
   (before a dense, flatten is free: the dense weights are permuted). */
static void emit_flatten(Gen *g, const Layer *l, const char *fn) {
  const int H = l->in.h, W = l->in.w, C = l->in.c;
  const char *what = em_str(EM, "x %s -> y [%ld] in C, H, W order (the network's output)",
                            DIMS(l->in), shape_size(l->out));
  layer_comment(g, l, what);
  em_open_fn(EM, "static void %s_forward(const float *restrict x, float *restrict y)", fn);
  em_line(EM, "for (int p = 0; p < %d; p++)", H * W);
  em_line(EM, "  for (int c = 0; c < %d; c++)", C);
  em_line(EM, "    y[%s] = x[%s];", LIN(0, "c", (long)H * W, "p", 1L),
          LIN(0, "p", (long)C, "c", 1L));
  em_close(EM);
  em_blank(EM);
}

/* An activation layer of its own; y may be x (in place). */
static void emit_act_layer(Gen *g, const Layer *l, const char *fn) {
  const char *what = em_str(EM, "x %s -> y %s, in place when y = x", DIMS(l->in), DIMS(l->out));
  layer_comment(g, l, what);
  em_open(EM, "static void %s_forward(const float *x, float *y)", fn);
  const long count = shape_size(l->out);
  const Act act = g->train ? g->act : l->act;
  if (act == ACT_SOFTMAX || act == ACT_LINEAR) {
    em_line(EM, "if (y != x)");
    em_line(EM, "  memcpy(y, x, %ld * sizeof(float));", count);
    emit_act_pass(g, act, "y", count);
  } else {
    em_line(EM, "for (int i = 0; i < %ld; i++)", count);
    if (act == ACT_RELU)
      em_line(EM, "  y[i] = x[i] > 0.0f ? x[i] : 0.0f;");
    else
      em_line(EM, "  y[i] = %s_%s(x[i]);", g->n, act_words[act]);
  }
  em_close(EM);
  em_blank(EM);
}

void emit_train_forward(Emitter *em, const Net *net, const Layer *l, const char *fn, Act act) {
  Gen gen = {em, net, NULL, net->name, NULL, true, act}, *g = &gen;
  switch (l->op) {
  case OP_CONV2D:
    emit_conv(g, l, fn);
    return;
  case OP_DENSE:
    emit_dense(g, l, fn);
    return;
  case OP_MAXPOOL:
  case OP_AVGPOOL:
    emit_pool(g, l, fn);
    return;
  case OP_ACT:
    emit_act_layer(g, l, fn);
    return;
  default:
    assert(0);
  }
}

/* ---- NAME_infer ---- */

static const char *where(Emitter *em, long off) {
  return off == INFER_AT_X   ? "xi"
         : off == INFER_AT_Y ? "yi"
         : off == 0          ? "a"
                             : em_str(em, "a + %ld", off);
}
#define WHERE(off) where(EM, (off))

static bool uses_work(const Net *net) {
  for (int i = 0; i < net->nlayers; i++) {
    const Layer *l = &net->layers[i];
    if (l->infer_out_offset >= 0 || l->infer_pad_offset >= 0)
      return true;
  }
  return false;
}

static void emit_layer_functions(Gen *g) {
  for (int i = 0; i < g->net->nlayers; i++) {
    const Layer *l = &g->net->layers[i];
    if (l->fused_away)
      continue;
    const char *fn = layer_fn(g, l);
    switch (l->op) {
    case OP_CONV2D:
      emit_conv(g, l, fn);
      break;
    case OP_DENSE:
      emit_dense(g, l, fn);
      break;
    case OP_MAXPOOL:
    case OP_AVGPOOL:
      emit_pool(g, l, fn);
      break;
    case OP_GLOBALAVGPOOL:
      emit_global_pool(g, l, fn);
      break;
    case OP_ACT:
      emit_act_layer(g, l, fn);
      break;
    case OP_FLATTEN:
      if (l->infer_out_offset != (i ? l[-1].infer_out_offset : INFER_AT_X))
        emit_flatten(g, l, fn);
      break;
    case OP_DROPOUT: /* fused_away: the identity */
    case OP_COUNT:
      assert(0);
    }
  }
}

static void emit_infer(Gen *g) {
  const char *n = g->n;
  const Net *net = g->net;
  bool params = net->param_count > 0;
  em_open(EM, "void %s_infer(const %s_model *m, %s_work *w, const float *x, int n, float *y)", n, n,
          n);
  if (uses_work(net))
    em_line(EM, "float *a = w->act;");
  else
    em_line(EM, "(void)w;");
  if (!params)
    em_line(EM, "(void)m;");
  em_open(EM, "for (int i = 0; i < n; i++)");
  em_line(EM, "const float *xi = x + (size_t)i * %s_INPUT_SIZE; /* %s */", n, DIMS(net->input));
  em_line(EM, "float *yi = y + (size_t)i * %s_OUTPUT_SIZE; /* %s */", n, DIMS(net->output));
  long prev = INFER_AT_X;
  for (int i = 0; i < net->nlayers; i++) {
    const Layer *l = &net->layers[i];
    const char *in = WHERE(prev), *out = WHERE(l->infer_out_offset);
    Shape os = l->fused_pool ? l->fused_pool->out : l->out;
    prev = l->infer_out_offset;
    if (l->op == OP_DROPOUT) {
      em_comment(EM, "%s: the identity in inference", QUOTE(l));
      continue;
    }
    if (l->op == OP_FLATTEN && !strcmp(in, out)) {
      em_comment(EM, "%s: nothing to do, %s in NHWC order is the vector", QUOTE(l), DIMS(l->in));
      continue;
    }
    if (l->fused_away)
      continue;
    const char *fn = layer_fn(g, l);
    switch (l->op) {
    case OP_CONV2D:
      if (l->infer_pad_offset >= 0) {
        const char *pad = WHERE(l->infer_pad_offset);
        em_line(EM, "%s_zero_pad(%s, %s);", fn, in, pad);
        in = pad;
      }
      em_line(EM, "%s_forward(m, %s, %s); /* %s */", fn, in, out, DIMS(os));
      break;
    case OP_DENSE:
      em_line(EM, "%s_forward(m, %s, %s); /* %s */", fn, in, out, DIMS(os));
      break;
    default:
      em_line(EM, "%s_forward(%s, %s); /* %s */", fn, in, out, DIMS(os));
      break;
    }
  }
  if (prev == INFER_AT_X)
    em_line(EM, "memcpy(yi, xi, %s_OUTPUT_SIZE * sizeof(float));", n);
  em_close(EM);
  em_close(EM);
  em_blank(EM);
}

/* ---- the header ---- */

static void emit_work_struct(Gen *g) {
  const Net *net = g->net;
  const char *n = g->n;
  /* The first layers' offsets, in a comment of about 4 KB at most. */
  const char *plan = em_str(EM,
                            "Scratch for one thread: %s_infer keeps the tensors of one image in "
                            "act,\nat these offsets (floats; tensors whose lives do not overlap "
                            "share space):",
                            n);
  for (int i = 0; i < net->nlayers && strlen(plan) < 4096 - 200; i++) {
    const Layer *l = &net->layers[i];
    if (l->fused_away ||
        (l->op == OP_FLATTEN && l->infer_out_offset == (i ? l[-1].infer_out_offset : INFER_AT_X)))
      continue;
    Shape os = l->fused_pool ? l->fused_pool->out : l->out;
    if (l->infer_pad_offset >= 0)
      plan =
          em_str(EM, "%s\n  %6ld  line %d, padded input", plan, l->infer_pad_offset, l->loc.line);
    if (l->infer_out_offset >= 0)
      plan = em_str(EM, "%s\n  %6ld  line %d, output %s", plan, l->infer_out_offset, l->loc.line,
                    DIMS(os));
    else if (l->infer_out_offset == INFER_AT_Y)
      plan = em_str(EM, "%s\n       y  line %d, output %s", plan, l->loc.line, DIMS(os));
  }
  em_comment(EM, "%s", plan);
  em_open(EM, "typedef struct %s_work", n);
  em_line(EM, "float act[%ld]; /* one image's tensors */",
          net->infer_buffer_floats > 0 ? net->infer_buffer_floats : 1);
  if (g->opt->training)
    emit_train_work_members(EM, net);
  em_close_with(EM, " %s_work;", n);
  em_blank(EM);
}

/* NAME_CLASS_NAMES: the classes statement's names as an initializer, one
   C string per line, escaped (a backslash, control bytes, the '?' of a
   trigraph). */
static void emit_class_names(Emitter *em, const Net *net, const char *n) {
  em_raw(em, "/* The outputs' names (the classes statement), an initializer:");
  em_raw(em, "   static const char *const names[%s_OUTPUT_SIZE] = %s_CLASS_NAMES; */", n, n);
  em_raw(em, "#define %s_CLASS_NAMES \\", n);
  for (int i = 0; i < net->nclasses; i++) {
    char buf[4 * 256 + 8];
    size_t k = 0;
    for (const unsigned char *p = (const unsigned char *)net->classes[i]; *p && k + 8 < sizeof buf;
         p++) {
      if (*p == '\\')
        k += (size_t)snprintf(buf + k, sizeof buf - k, "\\\\");
      else if (*p < 0x20 || *p == 0x7f)
        k += (size_t)snprintf(buf + k, sizeof buf - k, "\\%03o", *p);
      else if (*p == '?' && p[1] == '?')
        k += (size_t)snprintf(buf + k, sizeof buf - k, "?\\");
      else
        buf[k++] = (char)*p;
    }
    buf[k] = 0;
    em_raw(em, "  %s\"%s\"%s", i ? "" : "{", buf, i + 1 < net->nclasses ? ", \\" : "}");
  }
}

static void emit_header_text(Gen *g, FILE *out) {
  const Net *net = g->net;
  const char *n = g->n;
  const char *act = act_words[net_output_act(net)];
  const char *guard = em_str(EM, "CNNGEN_%s_H", n);
  fprintf(out,
          "/*\n * %s.h: generated by cnngen; do not edit. The .cnn language, the weights\n"
          " * files and this API are described in docs/language.md of cnngen's sources.\n *\n",
          n);
  summary_print(net, out, " * ");
  fprintf(out, " */\n");
  em_raw(EM, "#ifndef %s", guard);
  em_raw(EM, "#define %s", guard);
  em_blank(EM);
  em_raw(EM, "#include <stddef.h>");
  em_raw(EM, "#include <stdint.h>");
  em_blank(EM);
  em_raw(EM, "#ifdef __cplusplus");
  em_raw(EM, "extern \"C\" {");
  em_raw(EM, "#endif");
  em_blank(EM);
  em_raw(EM, "#define %s_INPUT_H %d /* input height */", n, net->input.h);
  em_raw(EM, "#define %s_INPUT_W %d /* input width */", n, net->input.w);
  em_raw(EM, "#define %s_INPUT_C %d /* input channels */", n, net->input.c);
  em_raw(EM, "#define %s_INPUT_SIZE %ld /* floats per image, [H][W][C], values in [0, 1] */", n,
         shape_size(net->input));
  em_raw(EM, "#define %s_OUTPUT_SIZE %ld /* outputs per image, after the final %s */", n,
         shape_size(net->output), act);
  em_raw(EM, "#define %s_PARAM_COUNT %ld /* floats in the flat parameter array (%s_load) */", n,
         net->param_count, n);
  if (net->nclasses)
    emit_class_names(EM, net, n);
  em_blank(EM);
  if (g->opt->training)
    emit_train_types(EM, net);
  em_comment(EM,
             "The parameters, one array per tensor in the layout the generated kernels\n"
             "read (conv [KH][KW][C][F], dense [IN][OUT]: the output channel innermost),\n"
             "each at a multiple of 64 bytes from the start of the struct: allocate it\n"
             "64-byte aligned for the fastest loads. %s_load and %s_store convert from\n"
             "and to the flat array of PyTorch-layout tensors.%s",
             n, n, g->opt->training ? " Training state follows\nthe parameters." : "");
  em_open(EM, "typedef struct %s_model", n);
  emit_model_members(EM, net);
  if (net->param_count == 0 && !g->opt->training)
    em_line(EM, "char unused; /* no parameters: C has no empty structs */");
  if (g->opt->training)
    emit_train_model_members(EM, net);
  em_close_with(EM, " %s_model;", n);
  em_blank(EM);
  emit_work_struct(g);
  em_raw(EM, "#define %s_MODEL_BYTES sizeof(%s_model) /* bytes of a model */", n, n);
  em_raw(EM, "#define %s_WORK_BYTES sizeof(%s_work)   /* bytes of one thread's work area */", n, n);
  em_blank(EM);
  em_comment(EM, "Fills m with Glorot-uniform weights and zero biases (and zero training state):\n"
                 "each weight is uniform in [-b, b), b = sqrt(6 / (fan_in + fan_out)), with\n"
                 "fan_in = C*KH*KW and fan_out = F*KH*KW for a conv, IN and OUT for a dense\n"
                 "layer. The numbers come from splitmix64 seeded with `seed`, drawn in the order\n"
                 "of the flat parameter array: the same seed gives the same model everywhere.");
  em_line(EM, "void %s_init(%s_model *m, uint64_t seed);", n, n);
  em_blank(EM);
  em_comment(EM,
             "The parameters as one flat array of %s_PARAM_COUNT floats: for each layer with\n"
             "weights, in order, LAYER.weight then LAYER.bias, in PyTorch's layout (conv\n"
             "[F][C][KH][KW], dense [OUT][IN] with IN after a flatten indexing a C x H x W\n"
             "tensor as c*H*W + y*W + x), the order of the tensors in a weights file\n"
             "(docs/language.md, \"Weights files\").\n"
             "%s_load leaves training state as it is. %s_store(m, p) after %s_load(m, p)\n"
             "gives p back bit for bit.",
             n, n, n, n);
  em_line(EM, "void %s_load(%s_model *m, const float *params);", n, n);
  em_line(EM, "void %s_store(const %s_model *m, float *params);", n, n);
  em_blank(EM);
  em_comment(EM,
             "Runs n images x [n][%s_INPUT_SIZE] (each [H][W][C], channels innermost)\n"
             "through the network, writing y [n][%s_OUTPUT_SIZE]. w is scratch: several\n"
             "threads may run %s_infer on one model at once, each with its own %s_work.\n"
             "Uses no memory but m, w, x and y; x and y must not overlap.",
             n, n, n, n);
  em_line(EM, "void %s_infer(const %s_model *m, %s_work *w, const float *x, int n, float *y);", n,
          n, n);
  em_blank(EM);
  if (g->opt->training)
    emit_train_declarations(EM, net);
  if (g->opt->weights) {
    em_comment(EM,
               "The weights baked in when the C was generated (cnngen --weights): ready\n"
               "for %s_infer(&%s_trained, ...).",
               n, n);
    em_line(EM, "extern const %s_model %s_trained;", n, n);
    em_blank(EM);
  }
  em_raw(EM, "#ifdef __cplusplus");
  em_raw(EM, "}");
  em_raw(EM, "#endif");
  em_blank(EM);
  em_raw(EM, "#endif /* %s */", guard);
}

void emit_header(const Net *net, const EmitOptions *opt, FILE *out) {
  Emitter em;
  em_init(&em, out, 0);
  Gen g = {&em, net, opt, net->name, NULL, false, ACT_LINEAR};
  emit_header_text(&g, out);
  em_free(&em);
}

/* ---- the source ---- */

void emit_source(const Net *net, const EmitOptions *opt, FILE *out) {
  Emitter em;
  em_init(&em, out, 0);
  em.kernels = opt->kernels;
  Gen gen = {&em, net, opt, net->name, layer_ordinals(net), false, ACT_LINEAR}, *g = &gen;
  const char *n = net->name;
  if (opt->header_name) {
    fprintf(out, "/*\n * %s.c: generated by cnngen; do not edit. The API is documented in %s.\n", n,
            opt->header_name);
  } else {
    emit_header_text(g, out);
    em_blank(EM);
    fprintf(out, "/*\n * %s: the code, generated by cnngen; the API is documented above.\n", n);
  }
  fprintf(out, " *\n"
               " * One static function per layer, NAME_LAYER_forward(m, x, y): y = the layer\n"
               " * applied to x, for one image; NAME_infer runs them in order on tensors in the\n"
               " * work struct. Tensors are [H][W][C] (channels innermost). C99, no allocation,\n"
               " * no I/O, no global mutable state.\n"
               " */\n");
  if (opt->header_name)
    em_raw(EM, "#include \"%s\"", opt->header_name);
  em_blank(EM);
  em_raw(EM, "#include <math.h>");
  em_raw(EM, "#include <string.h>");
  em_blank(EM);
  em_vector_macros(EM, n, opt->training);
  if (opt->kernels)
    glue_declarations(EM);
  emit_act_functions(g);
  emit_layer_functions(g);
  emit_infer(g);
  emit_model_source(EM, net, opt->weights);
  if (opt->training)
    emit_train_source(EM, net);
  free(gen.ordinal);
  em_free(&em);
}
