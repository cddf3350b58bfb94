/*
 * conv2d.c: a 2-D convolution, y = act(W * x + b), stride SHxSW, padding
 * valid, same or explicit; its weight PyTorch's [F][C][KH][KW], held as
 * [KH][KW][C][F] (F innermost; the permutation of emit_model.c: o = F,
 * c = C, k = KH * KW). Its forward kernel (register tiles, the channel
 * tail, padding through a zero-bordered copy) serves inference and
 * training; the fused variants live here too: a pool folded into the
 * forward kernel for inference (fuses_pool), and in training the backward
 * pass of conv + maxpool in one (conv_pool_backward). The paragraphs
 * below describe the tiles.
 *
 * Inference.
 * Convolutions are the hot loops (fashion's conv2 runs at about the FMA
 * peak of a Zen 5 core on 16-float tiles). Output pixels are computed in
 * register tiles of TR rows x TC columns x FB vectors of VW channels (16
 * floats under AVX-512, else 8; a conv of a multiple of 16 filters is
 * written once for every width on NAME_v, FB and TC constants from NAME_VW,
 * see conv_tile_generic; other convs of 16 or more once per width under
 * #if NAME_VW): per tap
 * (kx, c) the FB weight vectors are loaded once and used by every pixel of
 * the tile, each input value is broadcast once and used by all FB vectors.
 * conv_cost() picks the tile from a small model of the core (multiply-adds,
 * loads, latency, the weights' trips from L2). Bias starts the
 * accumulators (zero with bias=false: the layer has none); ReLU and a
 * fused pool run on the registers before the single store (a pool window
 * taller than the tile is combined through y, row by row). Kernel rows and
 * taps are loops with literal bounds that the C compiler unrolls as it sees
 * fit; the tile's accumulators are arrays with constant bounds, unrolled
 * into registers (NAME_UNROLL). F not a multiple of VW (the channel
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
 *
 * Training.
 * Convolutions are the hot loops. Tensors are NHWC and weights
 * [KH][KW][C][F], so for one output pixel the (kx, c) taps of a kernel row
 * are contiguous in the input and in the weights. When the vectorized
 * dimension has 8 channels or more the loops are register-blocked on
 * vectors: the forward pass and the weight gradient keep a tile of
 * accumulators (output pixels or taps x output channels) in registers; the
 * input gradient scatters tiles of output pixels x input channels, with the
 * weights transposed to [KH][KW][F][C] once per NAME_accumulate call. A
 * conv followed by maxpool does both backward passes in one, visiting only
 * each window's maximum (conv_pool_backward). The vectors are NAME_f8 and
 * (under AVX-512) NAME_f16 and their macros, written once for inference and
 * training by em_vector_macros (emit.c); a conv with 16 channels or more
 * (out, or in for its input gradient) has its backward function written once
 * for every width on NAME_v where those are whole blocks at both widths
 * (gen_backward_ok, the gen_* tiles), else once per width under #if NAME_VW
 * (per_width). A vectorized dimension of 8 or more that is not a
 * multiple of the vector ends in an overlapping vector (the channel tail,
 * emit_train.c), so its cost follows its size; below 8 channels the loops
 * are plain, channel innermost.
 */
#include <assert.h>
#include <math.h>
#include <string.h>

#include "op.h"

static const char *conv_bad_values(const Layer *l) {
  return l->u.conv.filters < 1                        ? "the filter count must be at least 1"
         : l->u.conv.kh < 1 || l->u.conv.kw < 1       ? "the kernel size must be at least 1x1"
         : l->u.conv.sh < 1 || l->u.conv.sw < 1       ? "the stride must be at least 1x1"
         : l->u.conv.pad_h < 0 || l->u.conv.pad_w < 0 ? "the padding must be at least 0x0"
         : l->u.conv.groups < 0                       ? "the group count must be at least 1"
                                                      : NULL;
}

/* TensorFlow's 'same' padding along one axis: the output is ceil(in / s),
   the odd pixel goes after. */
static void same_pad(int in, int k, int stride, int *before, int *after) {
  long out = ((long)in + stride - 1) / stride;
  long total = (out - 1) * stride + k - in;
  total = total > 0 ? total : 0;
  *before = (int)(total / 2);
  *after = (int)(total - total / 2);
}

static int gcd(int a, int b) {
  return b ? gcd(b, a % b) : a;
}

/* groups=G divides the input channels and the filters; else the error,
   and a note listing the group counts that divide both. */
static bool conv_groups_divide(ShapeCheck *c, const Layer *l) {
  const int G = conv_groups(l), C = l->in.c, F = l->u.conv.filters;
  if (C % G == 0 && F % G == 0)
    return true;
  if (C % G)
    diag_error(c->d, l->loc, "groups=%d needs input channels divisible by %d, but the input has %d",
               G, G, C);
  else
    diag_error(c->d, l->loc, "groups=%d needs a filter count divisible by %d, got %d", G, G, F);
  char list[256] = "";
  const int common = gcd(C, F);
  for (int d = 1, n = 0, len = 0; d <= common && len < 200; d++)
    if (common % d == 0)
      len += snprintf(list + len, sizeof list - (size_t)len, "%s%d", n++ ? ", " : "", d);
  if (C % G == 0 && G == C)
    diag_note(c->d, l->loc,
              "a depthwise conv (groups=%d) needs %d filters or a multiple; groups may be "
              "any of %s here",
              C, C, list);
  else
    diag_note(c->d, l->loc, "groups must divide both the %d input channels and the %d filters: %s",
              C, F, list);
  return false;
}

static bool conv_shape(ShapeCheck *c, Layer *l) {
  if (l->in.vec)
    return shape_needs_image(c, l);
  if (!conv_groups_divide(c, l))
    return false;
  int kh = l->u.conv.kh, kw = l->u.conv.kw, sh = l->u.conv.sh, sw = l->u.conv.sw;
  int *top = &l->u.conv.pad_top, *bottom = &l->u.conv.pad_bottom;
  int *left = &l->u.conv.pad_left, *right = &l->u.conv.pad_right;
  if (l->u.conv.pad_mode == PAD_SAME) {
    same_pad(l->in.h, kh, sh, top, bottom);
    same_pad(l->in.w, kw, sw, left, right);
  } else {
    bool explicit = l->u.conv.pad_mode == PAD_EXPLICIT;
    *top = *bottom = explicit ? l->u.conv.pad_h : 0;
    *left = *right = explicit ? l->u.conv.pad_w : 0;
  }
  if (!shape_window_fits(c, l, "kernel", kh, kw, *top + *bottom, *left + *right))
    return false;
  l->out = (Shape){(int)(((long)l->in.h + *top + *bottom - kh) / sh + 1),
                   (int)(((long)l->in.w + *left + *right - kw) / sw + 1), l->u.conv.filters, false};
  return true;
}

static void conv_counts(const Layer *l, double *weights, double *bias, double *macs) {
  *weights = (double)l->u.conv.filters * (l->in.c / conv_groups(l)) * l->u.conv.kh * l->u.conv.kw;
  *bias = l->no_bias ? 0 : l->u.conv.filters;
  *macs = (double)l->out.h * l->out.w * *weights;
}

static void conv_tensor(const Net *net, const Layer *l, OpTensor *t) {
  (void)net;
  const int kk = l->u.conv.kh * l->u.conv.kw, cg = l->in.c / conv_groups(l);
  *t = (OpTensor){4,
                  {l->u.conv.filters, cg, l->u.conv.kh, l->u.conv.kw},
                  l->out.c,
                  cg,
                  kk,
                  (long)cg * kk,
                  (long)l->out.c * kk};
}

static const char *conv_weight_comment(Emitter *em, const Net *net, const Layer *l) {
  (void)net;
  const int G = conv_groups(l), cg = l->in.c / G;
  if (G > 1)
    return em_str(em, "[KH][KW][C/G][F] = [%d][%d][%d][%d], groups %d, file [%d][%d][%d][%d]",
                  l->u.conv.kh, l->u.conv.kw, cg, l->out.c, G, l->out.c, cg, l->u.conv.kh,
                  l->u.conv.kw);
  return em_str(em, "[KH][KW][C][F] = [%d][%d][%d][%d], file [%d][%d][%d][%d]", l->u.conv.kh,
                l->u.conv.kw, cg, l->out.c, l->out.c, cg, l->u.conv.kh, l->u.conv.kw);
}

static void conv_dump(const Layer *l, FILE *out) {
  static const char *const pad_modes[] = {"valid", "same", "explicit"};
  fprintf(out, "      filters %d  kernel %dx%d  stride %dx%d  padding %s", l->u.conv.filters,
          l->u.conv.kh, l->u.conv.kw, l->u.conv.sh, l->u.conv.sw,
          pad_modes[l->u.conv.pad_mode >= 0 && l->u.conv.pad_mode <= 2 ? l->u.conv.pad_mode : 0]);
  if (l->u.conv.pad_mode == PAD_EXPLICIT)
    fprintf(out, " %dx%d", l->u.conv.pad_h, l->u.conv.pad_w);
  if (conv_groups(l) > 1)
    fprintf(out, "  groups %d", conv_groups(l));
  fprintf(out, "  pads top %d left %d bottom %d right %d\n", l->u.conv.pad_top, l->u.conv.pad_left,
          l->u.conv.pad_bottom, l->u.conv.pad_right);
}

/* A pool folds into the conv before it (inference) when its windows do not
   overlap (stride = window, in each direction: maxpool 2x3 strides 2x3)
   and its result does not depend on where the activation runs: max
   commutes with every increasing activation, a mean only with the
   piecewise linear ones that the conv applies per pixel before summing. */
static bool conv_fuses_pool(const Layer *conv, const Layer *pool) {
  if (conv_groups(conv) > 1) /* the grouped kernels have no fused pool */
    return false;
  if (pool->op != OP_MAXPOOL && pool->op != OP_AVGPOOL)
    return false;
  if (pool->u.pool.sh != pool->u.pool.kh || pool->u.pool.sw != pool->u.pool.kw)
    return false;
  if (pool->op == OP_MAXPOOL)
    return conv->act != ACT_SOFTMAX; /* softmax mixes channels: not monotonic per value */
  return conv->act == ACT_LINEAR || conv->act == ACT_RELU;
}

static bool conv_padded(const Layer *l) {
  return l->u.conv.pad_top || l->u.conv.pad_bottom || l->u.conv.pad_left || l->u.conv.pad_right;
}

static bool conv_pad(const Layer *l, int pad[4]) {
  pad[0] = l->u.conv.pad_top, pad[1] = l->u.conv.pad_left;
  pad[2] = l->u.conv.pad_bottom, pad[3] = l->u.conv.pad_right;
  return conv_padded(l);
}

/* Training: the padded input; weights transposed to [KH][KW][F][C/G] for
   an input gradient over 8 or more channels (a group's, grouped). */
static void conv_plan_train(const Net *net, Layer *l) {
  (void)net;
  l->train.ph += l->u.conv.pad_top + l->u.conv.pad_bottom;
  l->train.pw += l->u.conv.pad_left + l->u.conv.pad_right;
  l->train.transposed = l->train.dx && l->in.c / conv_groups(l) >= 8;
}

/* A maxpool right after it in training: both backward passes in one,
   visiting only each window's maximum, when a kernel row has enough taps
   (KW * C >= 16) for the weight-gradient rows to vectorize; not grouped. */
static bool conv_train_pairs(const Layer *l, const Layer *next) {
  return conv_groups(l) == 1 && l->train.backward && next->op == OP_MAXPOOL &&
         l->u.conv.kw * l->in.c >= 16;
}

/* The padded input, the transposed weight gradient (with a pool), the
   transposed weights. */
static long conv_train_floats(const Layer *l) {
  const long in = (long)l->train.ph * l->train.pw * l->in.c;
  return (in > shape_size(l->in) ? in : 0) + (l->train.pool ? l->weight_count : 0) +
         (l->train.transposed ? l->weight_count : 0);
}

/* Training runs a forward function of its own where inference's fuses a
   pool, applies another activation or reads folded batchnorm weights. */
static bool conv_variant(const Layer *l) {
  return l->fused_pool || l->train.act != l->act || l->fused_bn;
}

/* ---- forward ---- */

#define OP_EM (g->em)

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
  /* Written once for every width (conv_tile_generic): TR the same at 16
     floats and at 8, FB and TC per width (fb16, fb8, tc16, tc8). */
  bool generic;
  int tc16, tc8, fb16, fb8;
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

/* The cheapest TC by conv_cost for a tile of fb vectors and tr rows whose
   accumulators (at most 3/4 of the registers) plus the live weights or
   broadcasts fit in the vector registers of the width (32 zmm for 16
   floats, 16 ymm for 8), its cost in *cost; 0 when none fits. */
static int conv_best_tc(const Conv *c, int fb, int tr, double *cost) {
  const int regs = c->v->regs, max_acc = regs * 3 / 4;
  int best = 0;
  if (tr * c->PKW * fb > max_acc || (c->pool && tr != 1 && tr != c->PKH))
    return 0;
  for (int tc = c->PKW; tc <= c->cols; tc += c->PKW) {
    int p = tr * tc;
    if (p * fb > max_acc || p * fb + (p < fb ? p : fb) + 2 > regs)
      break;
    if (tr > 1 && tc < c->cols && !c->pool)
      continue; /* a multi-row tile spans whole rows (or whole windows) */
    double k = conv_cost(c, fb, tr, tc);
    if (!best || k < *cost - 1e-9) {
      *cost = k;
      best = tc;
    }
  }
  return best;
}

/* Picks the cheapest tile by conv_cost (conv_best_tc per block and rows). */
static void conv_tile(Conv *c) {
  const int FV = c->FP / c->v->w;
  double best = -1;
  for (int fb = 1; fb <= FV && fb <= 8; fb++) {
    if (FV % fb)
      continue;
    for (int tr = 1; tr <= c->rows; tr++) {
      double cost;
      const int tc = conv_best_tc(c, fb, tr, &cost);
      if (tc && (best < 0 || cost < best - 1e-9)) {
        best = cost;
        c->FB = fb, c->TR = tr, c->TC = tc;
      }
    }
  }
  assert(best >= 0);
}

/* The cheapest tile of c with tr rows: its cost, FB and TC; false when none fits. */
static bool conv_best_rows(Conv *c, int tr, double *cost) {
  const int FV = c->FP / c->v->w;
  bool found = false;
  for (int fb = 1; fb <= FV && fb <= 8; fb++) {
    double k;
    const int tc = FV % fb ? 0 : conv_best_tc(c, fb, tr, &k);
    if (tc && (!found || k < *cost - 1e-9)) {
      *cost = k;
      c->FB = fb, c->TC = tc;
      found = true;
    }
  }
  return found;
}

/* The tile of a conv written once for every width: the same TR at 16
   floats and at 8 (the code's structure follows it), the one whose costs,
   each relative to the cheapest tile of its width, sum least; FB and TC
   per width. */
static void conv_tile_generic(Conv *c16, Conv *c8) {
  const double b16 = conv_cost(c16, c16->FB, c16->TR, c16->TC);
  const double b8 = conv_cost(c8, c8->FB, c8->TR, c8->TC);
  Conv t16 = *c16, t8 = *c8;
  double best = -1;
  for (int tr = 1; tr <= c16->rows; tr++) {
    double k16, k8;
    if (!conv_best_rows(&t16, tr, &k16) || !conv_best_rows(&t8, tr, &k8) ||
        (best >= 0 && k16 / b16 + k8 / b8 >= best - 1e-9))
      continue;
    best = k16 / b16 + k8 / b8;
    c16->TR = c8->TR = tr;
    c16->FB = t16.FB, c16->TC = t16.TC, c8->FB = t8.FB, c8->TC = t8.TC;
  }
  assert(best >= 0);
  c16->generic = true;
  c16->tc16 = c16->TC, c16->tc8 = c8->TC, c16->fb16 = c16->FB, c16->fb8 = c8->FB;
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

static void emit_generic_rows(Gen *g, const Conv *c, int tr);

/* The tiles of tr rows at xr / yr, block by block of FB vectors of
   channels; with a channel tail (shift), the last block on its own. */
static void emit_conv_rows_vector(Gen *g, const Conv *c, int tr) {
  if (c->generic) {
    emit_generic_rows(g, c, tr);
    return;
  }
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

/* ---- the tiles written once for every width ----

   A conv of a multiple of 16 filters (conv_tile_generic): one function for
   every target, its tiles counted in vectors of NAME_VW floats: the
   accumulators a[TR][TC][FB] (a[TC][FB] for one row, no [FB] for one
   vector) and loops with constant bounds over them, which the C compiler
   unrolls into registers; FB and TC, where they differ by width, are
   constants of the function (enum, from NAME_VW), the columns left over
   by whole tiles one more tile of REST columns. In the helpers, fb is the
   vectors per block, 0 when it differs by width (the constant FB). */

static const char *fb_n(Gen *g, int fb) {
  return fb ? em_str(EM, "%d", fb) : "FB";
}

/* "for (int v ...)" over the fb vectors, indented; false (nothing) for one. */
static bool v_loop(Gen *g, int fb) {
  if (fb == 1)
    return false;
  em_line(EM, "%s_UNROLL for (int v = 0; v < %s; v++)", g->n, fb_n(g, fb));
  em_indent(EM);
  return true;
}

/* Vector v of a block (name, name[v]) and its channel offset from f0. */
static const char *vec_v(Gen *g, int fb, const char *name) {
  return fb == 1 ? name : em_str(EM, "%s[v]", name);
}

static const char *vec_off_v(Gen *g, int fb) {
  return fb == 1 ? "" : em_str(EM, "v * %s_VW", g->n);
}

/* Accumulator (i, j, v) of a tile of tr rows; i and j C expressions. */
static const char *acc_at(Gen *g, int tr, int fb, const char *i, const char *j) {
  return em_str(EM, "a%s[%s]%s", tr > 1 ? em_str(EM, "[%s]", i) : "", j, fb == 1 ? "" : "[v]");
}

/* Opens the loops over a tile's accumulators: rows i (tr), columns j (n,
   a C expression), vectors v; braces on the last when `block`. Returns
   the indents acc_close undoes. */
static int acc_loops(Gen *g, int tr, const char *n, int fb, bool block) {
  int open = 0;
  if (tr > 1)
    em_line(EM, "%s_UNROLL for (int i = 0; i < %d; i++)", g->n, tr), em_indent(EM), open++;
  const char *j = em_str(EM, "%s_UNROLL for (int j = 0; j < %s; j++)", g->n, n);
  if (fb == 1 && block)
    em_open(EM, "%s", j);
  else
    em_line(EM, "%s", j), em_indent(EM), open++;
  if (fb != 1 && block)
    em_open(EM, "%s_UNROLL for (int v = 0; v < %s; v++)", g->n, fb_n(g, fb));
  else if (fb != 1)
    open += v_loop(g, fb);
  return open;
}

static void acc_close(Gen *g, int open, bool block) {
  if (block)
    em_close(EM);
  while (open--)
    em_dedent(EM);
}

/* One tile of tr rows x n columns (a C expression; nl its value, 0 when it
   differs by width; `size` the array's) from column ox of the rows at xr /
   yr, channels from f0. */
static void emit_generic_tile(Gen *g, const Conv *c, int tr, const char *n, int nl,
                              const char *size) {
  const char *N = g->n;
  const int fb = c->fb16 == c->fb8 ? c->fb16 : 0, C = c->C, F = c->F;
  const char *fbv = fb == 1 ? "" : em_str(EM, "[%s]", fb_n(g, fb)), *vo = vec_off_v(g, fb);
  const char *a = acc_at(g, tr, fb, "i", "j");
  em_line(EM, "%s_v a%s[%s]%s;", N, tr > 1 ? em_str(EM, "[%d]", tr) : "", size, fbv);
  int open = acc_loops(g, tr, n, fb, false);
  em_line(EM, "%s = %s;", a, vec_v(g, fb, "bv"));
  acc_close(g, open, false);
  em_open(EM, "for (int ky = 0; ky < %d; ky++)", c->KH);
  em_line(EM, "const float *restrict xk = xr + %s;",
          LIN(0, "ky", (long)c->IW * C, "ox", (long)c->SW * C));
  em_line(EM, "const float *restrict wk = w + %s;", LIN(0, "ky", (long)c->KW * C * F, "f0", 1L));
  em_open(EM, "for (int k = 0; k < %d; k++)", c->KW * C);
  em_line(EM, "%s_v wv%s;", N, fbv);
  open = v_loop(g, fb);
  em_line(EM, "%s_LOAD(%s, wk + %s);", N, vec_v(g, fb, "wv"), LIN(0, "k", (long)F, vo, 1L));
  acc_close(g, open, false);
  if (tr > 1)
    em_line(EM, "%s_UNROLL for (int i = 0; i < %d; i++)", g->n, tr), em_indent(EM);
  em_open(EM, "%s_UNROLL for (int j = 0; j < %s; j++)", g->n, n);
  em_line(EM, "const float s = xk[%s];",
          LIN(0, "k", 1L, tr > 1 ? "i" : "", (long)c->SH * c->IW * C, "j", (long)c->SW * C));
  open = v_loop(g, fb);
  em_line(EM, "%s_FMAV(%s, s, %s);", N, a, vec_v(g, fb, "wv"));
  acc_close(g, open, false);
  em_close(EM);
  if (tr > 1)
    em_dedent(EM);
  em_close(EM);
  em_close(EM);
  if (!c->pool) {
    const bool relu = c->act == ACT_RELU;
    open = acc_loops(g, tr, n, fb, relu);
    if (relu)
      em_line(EM, "%s_MAXV(%s, zero);", N, a);
    em_line(EM, "%s_STORE(yr + %s, %s);", N,
            LIN(0, tr > 1 ? "i" : "", (long)c->OW * F, "ox", (long)F, "j", (long)F, "f0", 1L, vo,
                1L),
            a);
    acc_close(g, open, relu);
    return;
  }
  /* Pool: each window's pixels combined into its first (window q of the
     tile at column q * PKW, its pixel p at row p / PKW, column q * PKW +
     p % PKW); with one row per tile, also with the rows before (r > 0),
     through y. */
  const int PKW = c->PKW;
  const char *comb = c->avg ? "ADD" : "MAXV";
  const char *first = acc_at(g, tr, fb, "0", em_str(EM, "q * %d", PKW));
  const char *px = tr > 1 ? acc_at(g, tr, fb, em_str(EM, "p / %d", PKW),
                                   em_str(EM, "q * %d + p %% %d", PKW, PKW))
                          : acc_at(g, tr, fb, "", em_str(EM, "q * %d + p", PKW));
  const char *q_for = em_str(EM, "%s_UNROLL for (int q = 0; q < %s; q++)", g->n,
                             nl ? em_str(EM, "%d", nl / PKW) : em_str(EM, "%s / %d", n, PKW));
  const bool relu_each = c->avg && c->act == ACT_RELU;
  em_line(EM, "%s", q_for), em_indent(EM);
  if (fb == 1)
    em_open(EM, "%s", "");
  else
    em_open(EM, "%s_UNROLL for (int v = 0; v < %s; v++)", g->n, fb_n(g, fb));
  if (relu_each)
    em_line(EM, "%s_MAXV(%s, zero);", N, first);
  em_line(EM, "%s_UNROLL for (int p = 1; p < %d; p++)", g->n, tr * PKW);
  if (relu_each) {
    em_open(EM, "%s", "");
    em_line(EM, "%s_MAXV(%s, zero);", N, px);
    em_line(EM, "%s_%s(%s, %s);", N, comb, first, px);
    em_close(EM);
  } else {
    em_line(EM, "  %s_%s(%s, %s);", N, comb, first, px);
  }
  if (!c->avg && c->act == ACT_RELU)
    em_line(EM, "%s_MAXV(%s, zero);", N, first);
  em_close(EM);
  em_dedent(EM);
  em_line(EM, "const int px = ox / %d;", PKW);
  const char *at = LIN(0, "px", (long)F, "q", (long)F, "f0", 1L, vo, 1L);
  const bool through_y = tr < c->PKH;
  if (through_y) {
    em_line(EM, "if (r > 0)"), em_indent(EM);
    em_line(EM, "%s", q_for), em_indent(EM);
    open = v_loop(g, fb);
    em_open(EM, "%s", "");
    em_line(EM, "%s_v o;", N);
    em_line(EM, "%s_LOAD(o, yr + %s);", N, at);
    em_line(EM, "%s_%s(%s, o);", N, comb, first);
    acc_close(g, open + 2, true);
  }
  if (c->avg) {
    if (through_y)
      em_line(EM, "if (r == %d)", c->PKH - 1), em_indent(EM);
    em_line(EM, "%s", q_for), em_indent(EM);
    open = v_loop(g, fb);
    em_line(EM, "%s_SCALE(%s, %s);", N, first, FLT(1.0 / (c->PKH * c->PKW)));
    acc_close(g, open + 1 + through_y, false);
  }
  em_line(EM, "%s", q_for), em_indent(EM);
  open = v_loop(g, fb);
  em_line(EM, "%s_STORE(yr + %s, %s);", N, at, first);
  acc_close(g, open + 1, false);
}

/* The tiles of tr rows at xr / yr, block by block of FB vectors from
   channel f0: whole tiles of TC columns, then the rest. */
static void emit_generic_rows(Gen *g, const Conv *c, int tr) {
  const char *N = g->n;
  const int fb = c->fb16 == c->fb8 ? c->fb16 : 0;
  em_open(EM, "for (int f0 = 0; f0 < %d; f0 += %s%s_VW)", c->F,
          fb == 1 ? "" : em_str(EM, "%s * ", fb_n(g, fb)), N);
  em_line(EM, "%s_v bv%s;", N, fb == 1 ? "" : em_str(EM, "[%s]", fb_n(g, fb)));
  if (!c->bias) {
    em_line(EM, "memset(&bv, 0, sizeof bv); /* no bias */");
  } else {
    const int open = v_loop(g, fb);
    em_line(EM, "%s_LOAD(%s, b + %s);", N, vec_v(g, fb, "bv"),
            LIN(0, "f0", 1L, vec_off_v(g, fb), 1L));
    acc_close(g, open, false);
  }
  if (c->tc16 != c->tc8) {
    em_open(EM, "for (int ox = 0; ox < %d - REST; ox += TC)", c->cols);
    emit_generic_tile(g, c, tr, "TC", 0, "TC");
    em_close(EM);
    em_open(EM, "if (REST)");
    em_line(EM, "const int ox = %d - REST;", c->cols);
    emit_generic_tile(g, c, tr, "REST", 0, "TC");
    em_close(EM);
  } else {
    const int TC = c->TC, full = c->cols / TC, rest = c->cols % TC;
    const char *tc = em_str(EM, "%d", TC);
    if (full > 1)
      em_open(EM, "for (int ox = 0; ox < %d; ox += %d)", full * TC, TC);
    else
      em_open(EM, "%s", ""), em_line(EM, "const int ox = 0;");
    emit_generic_tile(g, c, tr, tc, TC, tc);
    em_close(EM);
    if (rest) {
      em_open(EM, "%s", "");
      em_line(EM, "const int ox = %d;", full * TC);
      const char *r = em_str(EM, "%d", rest);
      emit_generic_tile(g, c, tr, r, rest, r);
      em_close(EM);
    }
  }
  em_close(EM);
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
    const char *xoff = LIN(count > 1 ? 0 : first * xrow, oy, xrow);
    const char *yoff = LIN(count > 1 ? 0 : (long)first * c->OW * F, oy, (long)c->OW * F);
    xoff = strcmp(xoff, "0") ? em_str(EM, "x + %s", xoff) : "x";
    yoff = strcmp(yoff, "0") ? em_str(EM, "y + %s", yoff) : "y";
    em_line(EM, "const float *restrict xr = %s;", xoff);
    if (rows == 1)
      em_line(EM, "float *restrict yr = %s; /* [%d][%d] */", yoff, c->OW, F);
    else
      em_line(EM, "float *restrict yr = %s; /* [%d][%d][%d] */", yoff, rows, c->OW, F);
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
  const char *wref = forward_param_ref(g, l, 0);
  const char *bref = c.bias ? forward_param_ref(g, l, 1) : NULL;
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
  if (c.generic && (c.tc16 != c.tc8 || c.fb16 != c.fb8)) {
    const char *e = "";
    if (c.fb16 != c.fb8)
      e = em_str(EM, "FB = %s_VW == 16 ? %d : %d, ", g->n, c.fb16, c.fb8);
    if (c.tc16 != c.tc8)
      e = em_str(EM, "%sTC = %s_VW == 16 ? %d : %d, REST = %d %% TC, ", e, g->n, c.tc16, c.tc8,
                 c.cols);
    em_line(EM, "enum { %.*s }; /* the tile at %s_VW floats */", (int)strlen(e) - 2, e, g->n);
  }
  if (c.vector && c.act == ACT_RELU) {
    em_line(EM, "%s_%s zero;", g->n, c.generic ? "v" : c.v->type);
    em_line(EM, "memset(&zero, 0, sizeof zero);");
  }
  emit_conv_rows(g, &c);
  if (c.act != ACT_RELU && c.act != ACT_LINEAR)
    emit_act_pass(g, c.act, "y", shape_size(ys));
  em_close(EM);
}

static void emit_group_conv(Gen *g, const Layer *l, const char *fn, Act act);

/* A conv of 16 channels or more is written once per vector width (its
   tiles differ), under #if NAME_VW; a narrower one once, on 8 floats.
   A grouped one: emit_group_conv. */
static void emit_conv(Gen *g, const Layer *l, const char *fn) {
  const Layer *pool = g->train ? NULL : l->fused_pool;
  const Act act = g->train ? g->act : l->act;
  if (conv_groups(l) > 1) {
    emit_group_conv(g, l, fn, act);
    return;
  }
  Conv c8 = conv_info(l, &em_vec8, pool, act), c16 = conv_info(l, &em_vec16, pool, act);
  c8.bias = c16.bias = forward_has_bias(g, l);
  const bool wide = c8.F >= 16 && c16.vector;
  Shape xs = l->in;
  xs.h += l->u.conv.pad_top + l->u.conv.pad_bottom;
  xs.w += l->u.conv.pad_left + l->u.conv.pad_right;
  if (conv_padded(l) && !g->train)
    emit_conv_pad(g, l, fn);
  if (EM->kernels) {
    glue_conv_forward(EM, g->net, l, fn, pool, act, forward_param_ref(g, l, 0),
                      c8.bias ? forward_param_ref(g, l, 1) : "NULL");
    return;
  }
  Shape ys = c8.pool ? c8.pool->out : l->out;
  const char *what =
      em_str(EM, "x %s%s -> y %s", DIMS(xs), conv_padded(l) ? " (padded)" : "", DIMS(ys));
  if (c8.pool && (c8.rows < l->out.h || c8.cols < l->out.w))
    what = em_str(EM, "%s\nof the conv's %s, the %d x %d the pool reads are computed", what,
                  DIMS(l->out), c8.rows, c8.cols);
  if (wide && c8.F % 16 == 0) { /* one function for every width */
    conv_tile_generic(&c16, &c8);
    what = em_str(EM, "%s\ntiles of %d row%s x ", what, c16.TR, c16.TR == 1 ? "" : "s");
    if (c16.tc16 == c16.tc8)
      what = em_str(EM, "%s%d columns x ", what, c16.TC);
    else
      what = em_str(EM, "%sTC columns (%d at 16 floats, %d at 8) x ", what, c16.tc16, c16.tc8);
    if (c16.fb16 == c16.fb8)
      what = em_str(EM, "%s%d vector%s", what, c16.FB, c16.FB == 1 ? "" : "s");
    else
      what = em_str(EM, "%sFB vectors (%d at 16 floats, %d at 8)", what, c16.fb16, c16.fb8);
    what = em_str(EM, "%s of %s_VW channels held in registers", what, g->n);
    layer_comment(g, l, what);
    emit_conv_fn(g, &c16, fn);
    em_blank(EM);
    return;
  }
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

#undef OP_EM

/* ---- training ---- */

#define OP_EM (t->em)

typedef struct ConvDims {
  int C, F, KH, KW, SH, SW, IH, IW, OH, OW; /* SH, SW: the stride; IH, IW: the padded input */
  bool bias;                                /* false: bias=false, no b or db */
  int G, CG, FG;                            /* groups: input channels and filters per group */
} ConvDims;

/* l's dimensions, its input ih x iw (padded). */
static ConvDims layer_dims(const Layer *l, int ih, int iw) {
  const int G = conv_groups(l);
  return (ConvDims){.C = l->in.c,
                    .F = l->out.c,
                    .KH = l->u.conv.kh,
                    .KW = l->u.conv.kw,
                    .SH = l->u.conv.sh,
                    .SW = l->u.conv.sw,
                    .IH = ih,
                    .IW = iw,
                    .OH = l->out.h,
                    .OW = l->out.w,
                    .bias = l->bias_count > 0,
                    .G = G,
                    .CG = l->in.c / G,
                    .FG = l->out.c / G};
}

static ConvDims conv_dims(const TL *L) {
  return layer_dims(L->l, L->ph, L->pw);
}

/* Weight-gradient tile: CB taps (kx, c) from k0 in kernel row ky (j0 < 0),
   or taps j0 .. j0 + CB - 1 of the whole kernel (ky, kx, c) (j0 >= 0), FB
   vectors of output channels from f0 (the last `shift` back), summed over
   every output pixel. */
static void conv_dw_tile(T *t, const ConvDims *d, int j0, int CB, int FB, int shift,
                         const EmVec *vec) {
  const char *n = t->n;
  const int K = d->KW * d->C;
  em_open(EM, "%s", "");
  tile_declare(t, CB, FB, NULL, vec);
  em_open(EM, "for (int oy = 0; oy < %d; oy++)", d->OH);
  if (j0 < 0)
    em_line(EM, "const float *xk = x + %s;",
            LIN(0, "oy", (long)d->SH * d->IW * d->C, "ky", (long)d->IW * d->C, "k0", 1L));
  else
    em_line(EM, "const float *xk = x + %s;", LIN(0, "oy", (long)d->SH * d->IW * d->C));
  em_line(EM, "const float *dk = dy + %s;", LIN(0, "oy", (long)d->OW * d->F, "f0", 1L));
  em_open(EM, "for (int ox = 0; ox < %d; ox++)", d->OW);
  for (int v = 0; v < FB; v++)
    em_line(EM, "%s_%s d%d;", n, vec->type, v);
  for (int v = 0; v < FB; v++)
    em_line(EM, "%s_LOAD(d%d, dk + %s);", n, v, LIN(vec_off(v, FB, shift, vec), "ox", (long)d->F));
  for (int j = 0; j < CB; j++)
    em_line(EM, "const float s%d = xk[%s];", j,
            LIN(j0 < 0 ? j : (long)(j0 + j) / K * d->IW * d->C + (j0 + j) % K, "ox",
                (long)d->SW * d->C));
  for (int j = 0; j < CB; j++)
    for (int v = 0; v < FB; v++)
      em_line(EM, "%s_FMA%s(a%d_%d, s%d, d%d);", n, vec->op, j, v, j, v);
  em_close(EM);
  em_close(EM);
  for (int j = 0; j < CB; j++)
    for (int v = 0; v < FB; v++) {
      const int off = vec_off(v, FB, shift, vec);
      tile_addto(t,
                 S(t, "dw + %s",
                   j0 < 0
                       ? LIN((long)j * d->F + off, "ky", (long)K * d->F, "k0", (long)d->F, "f0", 1L)
                       : LIN((long)(j0 + j) * d->F + off, "f0", 1L)),
                 j, v, FB, shift, vec);
    }
  em_close(EM);
}

/* Input-gradient tile: P output pixels from ox, CV vectors of input channels
   from c0 (the last `shift` back), for kernel tap (ky, kx), summed over the
   output channels. */
static void conv_dx_tile(T *t, const ConvDims *d, int P, int CV, int shift, const EmVec *vec) {
  const char *n = t->n;
  em_open(EM, "%s", "");
  tile_declare(t, P, CV, NULL, vec);
  em_line(EM, "const float *wk = wt + %s;",
          LIN(0, "ky", (long)d->KW * d->F * d->C, "kx", (long)d->F * d->C, "c0", 1L));
  em_line(EM, "const float *dk = dy + %s;", LIN(0, "oy", (long)d->OW * d->F, "ox", (long)d->F));
  em_open(EM, "for (int f = 0; f < %d; f++)", d->F);
  for (int v = 0; v < CV; v++)
    em_line(EM, "%s_%s w%d;", n, vec->type, v);
  for (int v = 0; v < CV; v++)
    em_line(EM, "%s_LOAD(w%d, wk + f * %d + %d);", n, v, d->C, vec_off(v, CV, shift, vec));
  for (int j = 0; j < P; j++)
    em_line(EM, "const float s%d = dk[%d + f];", j, j * d->F);
  for (int j = 0; j < P; j++)
    for (int v = 0; v < CV; v++)
      em_line(EM, "%s_FMA%s(a%d_%d, s%d, w%d);", n, vec->op, j, v, j, v);
  em_close(EM);
  for (int j = 0; j < P; j++)
    for (int v = 0; v < CV; v++) {
      tile_addto(t,
                 S(t, "dx + %s",
                   LIN((long)j * d->SW * d->C + vec_off(v, CV, shift, vec), "oy",
                       (long)d->SH * d->IW * d->C, "ky", (long)d->IW * d->C, "ox",
                       (long)d->SW * d->C, "kx", (long)d->C, "c0", 1L)),
                 j, v, CV, shift, vec);
    }
  em_close(EM);
}

/* "int VAR = 0;", or "int VAR;" and the loop of `full` steps over VAR
   whose body follows; then, with a `rest`, VAR's value for the last tile. */
static void tile_steps(T *t, const char *var, int full, int step) {
  if (full > 1) {
    em_line(EM, "int %s;", var);
    em_line(EM, "for (%s = 0; %s < %d; %s += %d)", var, var, full * step, var, step);
  } else {
    em_line(EM, "int %s = 0;", var);
  }
}

static void tile_rest(T *t, const char *var, int full, int step) {
  if (full == 1)
    em_line(EM, "%s = %d;", var, step);
}

/* The weight-gradient tiles of kernel row ky, output channels from f0. */
static void conv_dw_block(T *t, const TL *L, int FB, int shift, const EmVec *v) {
  const ConvDims d = conv_dims(L);
  const int K = d.KW * d.C, CB = tile_pixels(FB, K, K, v);
  tile_steps(t, "k0", K / CB, CB);
  conv_dw_tile(t, &d, -1, CB, FB, shift, v);
  if (K % CB) {
    tile_rest(t, "k0", K / CB, CB);
    conv_dw_tile(t, &d, -1, K % CB, FB, shift, v);
  }
}

/* The weight-gradient tiles of a small kernel (at most DW_WHOLE taps: a
   first layer on a 1- to 3-channel image), output channels from f0: tiles
   of taps across the kernel rows, so that dy is read once per tile rather
   than once per kernel row (conv_dw_block) with a few taps each. */
enum { DW_WHOLE = 32 };
static void conv_dw_whole_block(T *t, const TL *L, int FB, int shift, const EmVec *v) {
  const ConvDims d = conv_dims(L);
  const int N = d.KH * d.KW * d.C, CB = tile_pixels(FB, N, N, v);
  for (int j0 = 0; j0 < N; j0 += CB)
    conv_dw_tile(t, &d, j0, N - j0 < CB ? N - j0 : CB, FB, shift, v);
}

/* The input-gradient tiles of output row oy, input channels from c0. */
static void conv_dx_block(T *t, const TL *L, int CV, int shift, const EmVec *v) {
  const ConvDims d = conv_dims(L);
  const int P = tile_pixels(CV, d.OW, 12, v);
  em_open(EM, "for (int ky = 0; ky < %d; ky++)", d.KH);
  em_open(EM, "for (int kx = 0; kx < %d; kx++)", d.KW);
  tile_steps(t, "ox", d.OW / P, P);
  conv_dx_tile(t, &d, P, CV, shift, v);
  if (d.OW % P) {
    tile_rest(t, "ox", d.OW / P, P);
    conv_dx_tile(t, &d, d.OW % P, CV, shift, v);
  }
  em_close(EM);
  em_close(EM);
}

/* ---- backward tiles written once for every width ----

   As the forward tiles (emit_generic_tile): accumulators in arrays with
   constant bounds, counts in vectors of NAME_VW; a count that differs by
   width is an enum constant (PREFIX_V vectors per block, PREFIX_T pixels
   or taps per tile, PREFIX_R the last tile's), chosen per width by the
   same rules as the per-width functions (tile_vectors, tile_pixels). A
   layer gets these when each vectorized dimension of 16 or more is whole
   blocks at both widths (gen_blocks). */

/* A count at 16 floats and at 8. */
typedef struct Wc {
  int w16, w8;
} Wc;

/* The count as the code names it: a literal where the widths agree. */
static const char *wc(T *t, Wc c, const char *prefix, const char *name) {
  return c.w16 == c.w8 ? S(t, "%d", c.w16) : S(t, "%s_%s", prefix, name);
}

/* Vectors per block of N channels at each width; false unless blocks are whole. */
static bool gen_blocks(int N, Wc *nv) {
  *nv = (Wc){1, 1};
  if (N % 16)
    return false;
  nv->w16 = tile_vectors(N / 16, &em_vec16), nv->w8 = tile_vectors(N / 8, &em_vec8);
  return N / 16 % nv->w16 == 0 && N / 8 % nv->w8 == 0;
}

/* Tiles of at most `most` pixels (or taps) of nv vectors over n of them. */
static Wc gen_pixels(Wc nv, int n, int most) {
  return (Wc){tile_pixels(nv.w16, n, most, &em_vec16), tile_pixels(nv.w8, n, most, &em_vec8)};
}

/* "enum { P_V = ..., P_T = ..., P_R = n % P_T };" for the counts that differ. */
static void gen_enum(T *t, const char *prefix, Wc nv, Wc tp, int n) {
  const char *e = "";
  if (nv.w16 != nv.w8)
    e = S(t, "%s_V = %s_VW == 16 ? %d : %d, ", prefix, t->n, nv.w16, nv.w8);
  if (tp.w16 != tp.w8)
    e = S(t, "%s%s_T = %s_VW == 16 ? %d : %d, %s_R = %d %% %s_T, ", e, prefix, t->n, tp.w16,
          tp.w8, prefix, n, prefix);
  if (*e)
    em_line(EM, "enum { %.*s };", (int)strlen(e) - 2, e);
}

/* The loop over channel blocks: var from 0 to N by V vectors. */
static void gen_block_loop(T *t, const char *var, int N, const char *V) {
  em_open(EM, "for (int %s = 0; %s < %d; %s += %s%s_VW)", var, var, N, var,
          strcmp(V, "1") ? S(t, "%s * ", V) : "", t->n);
}

/* Tile body writer: n (a C expression) pixels or taps from the variable
   var, V vectors. */
typedef void GenTile(T *t, const TL *L, const char *n, const char *size, const char *V);

/* Whole tiles of T over n from var (a loop), then the rest (R) at n - R. */
static void gen_tiles(T *t, const TL *L, const char *var, int n, Wc tp, const char *prefix,
                      const char *V, GenTile *tile) {
  if (tp.w16 != tp.w8) {
    const char *T_ = S(t, "%s_T", prefix), *R = S(t, "%s_R", prefix);
    em_open(EM, "for (int %s = 0; %s < %d - %s; %s += %s)", var, var, n, R, var, T_);
    tile(t, L, T_, T_, V);
    em_close(EM);
    em_open(EM, "if (%s)", R);
    em_line(EM, "const int %s = %d - %s;", var, n, R);
    tile(t, L, R, T_, V);
    em_close(EM);
    return;
  }
  const int T_ = tp.w16, full = n / T_, rest = n % T_;
  const char *ts = S(t, "%d", T_);
  if (full > 1)
    em_open(EM, "for (int %s = 0; %s < %d; %s += %d)", var, var, full * T_, var, T_);
  else
    em_open(EM, "%s", ""), em_line(EM, "const int %s = 0;", var);
  tile(t, L, ts, ts, V);
  em_close(EM);
  if (rest) {
    const char *rs = S(t, "%d", rest);
    em_open(EM, "%s", "");
    em_line(EM, "const int %s = %d;", var, full * T_);
    tile(t, L, rs, rs, V);
    em_close(EM);
  }
}

/* "NAME_v a[size][V];" zeroed (for n), and the loops' helpers. */
static void gen_acc(T *t, const char *n, const char *size, const char *V) {
  em_line(EM, "%s_v a[%s][%s];", t->n, size, V);
  em_line(EM, "%s_UNROLL for (int j = 0; j < %s; j++)", t->n, n);
  em_line(EM, "  %s_UNROLL for (int v = 0; v < %s; v++)", t->n, V);
  em_line(EM, "    %s_ZERO(a[j][v]);", t->n);
}

/* Adds the accumulators into p(j, v) (a C expression in j and v). */
static void gen_addto(T *t, const char *n, const char *V, const char *p) {
  em_line(EM, "%s_UNROLL for (int j = 0; j < %s; j++)", t->n, n);
  em_line(EM, "  %s_UNROLL for (int v = 0; v < %s; v++)", t->n, V);
  em_line(EM, "    %s_ADDTOV(%s, a[j][v]);", t->n, p);
}

/* Weight gradient: taps j0 + j of the whole kernel (whole) or k0 + j of
   kernel row ky, V vectors of filters from f0, summed over the output. */
static void gen_dw_tile(T *t, const TL *L, const char *n, const char *size, const char *V,
                        bool whole) {
  const ConvDims d = conv_dims(L);
  const long K = (long)d.KW * d.C, row = (long)d.IW * d.C;
  gen_acc(t, n, size, V);
  em_open(EM, "for (int oy = 0; oy < %d; oy++)", d.OH);
  em_line(EM, "const float *xk = x + %s;",
          whole ? LIN(0, "oy", (long)d.SH * row) : LIN(0, "oy", (long)d.SH * row, "ky", row, "k0", 1L));
  em_line(EM, "const float *dk = dy + %s;", LIN(0, "oy", (long)d.OW * d.F, "f0", 1L));
  em_open(EM, "for (int ox = 0; ox < %d; ox++)", d.OW);
  em_line(EM, "%s_v dv[%s];", t->n, V);
  em_line(EM, "%s_UNROLL for (int v = 0; v < %s; v++)", t->n, V);
  em_line(EM, "  %s_LOAD(dv[v], dk + %s);", t->n, LIN(0, "ox", (long)d.F, S(t, "v * %s_VW", t->n), 1L));
  em_open(EM, "%s_UNROLL for (int j = 0; j < %s; j++)", t->n, n);
  if (whole)
    em_line(EM, "const float s = xk[%s + (j0 + j) / %ld * %ld + (j0 + j) %% %ld];",
            LIN(0, "ox", (long)d.SW * d.C), K, row, K);
  else
    em_line(EM, "const float s = xk[%s];", LIN(0, "ox", (long)d.SW * d.C, "j", 1L));
  em_line(EM, "%s_UNROLL for (int v = 0; v < %s; v++)", t->n, V);
  em_line(EM, "  %s_FMAV(a[j][v], s, dv[v]);", t->n);
  em_close(EM);
  em_close(EM);
  em_close(EM);
  gen_addto(t, n, V,
            whole ? S(t, "dw + (j0 + j) * %d + f0 + v * %s_VW", d.F, t->n)
                  : S(t, "dw + %s", LIN(0, "ky", K * d.F, "(k0 + j)", (long)d.F, "f0", 1L,
                                        S(t, "v * %s_VW", t->n), 1L)));
}

static void gen_dw_whole(T *t, const TL *L, const char *n, const char *size, const char *V) {
  gen_dw_tile(t, L, n, size, V, true);
}

static void gen_dw_row(T *t, const TL *L, const char *n, const char *size, const char *V) {
  gen_dw_tile(t, L, n, size, V, false);
}

/* Input gradient (weights transposed): n output pixels from ox of row oy,
   V vectors of input channels from c0, for tap (ky, kx). */
static void gen_dx_tile(T *t, const TL *L, const char *n, const char *size, const char *V) {
  const ConvDims d = conv_dims(L);
  gen_acc(t, n, size, V);
  em_line(EM, "const float *wk = wt + %s;",
          LIN(0, "ky", (long)d.KW * d.F * d.C, "kx", (long)d.F * d.C, "c0", 1L));
  em_line(EM, "const float *dk = dy + %s;", LIN(0, "oy", (long)d.OW * d.F, "ox", (long)d.F));
  em_open(EM, "for (int f = 0; f < %d; f++)", d.F);
  em_line(EM, "%s_v wv[%s];", t->n, V);
  em_line(EM, "%s_UNROLL for (int v = 0; v < %s; v++)", t->n, V);
  em_line(EM, "  %s_LOAD(wv[v], wk + f * %d + v * %s_VW);", t->n, d.C, t->n);
  em_open(EM, "%s_UNROLL for (int j = 0; j < %s; j++)", t->n, n);
  em_line(EM, "const float s = dk[j * %d + f];", d.F);
  em_line(EM, "%s_UNROLL for (int v = 0; v < %s; v++)", t->n, V);
  em_line(EM, "  %s_FMAV(a[j][v], s, wv[v]);", t->n);
  em_close(EM);
  em_close(EM);
  gen_addto(t, n, V,
            S(t, "dx + %s",
              LIN(0, "oy", (long)d.SH * d.IW * d.C, "ky", (long)d.IW * d.C, "ox",
                  (long)d.SW * d.C, "kx", (long)d.C, "j", (long)d.SW * d.C, "c0", 1L,
                  S(t, "v * %s_VW", t->n), 1L)));
}

/* In conv_pool_backward, the input gradient of taps tap0 + j from the
   count[q] filters of window pixel q, V vectors of channels from c0. */
static void gen_pool_dx_tile(T *t, const TL *L, const char *n, const char *size, const char *V) {
  const ConvDims d = conv_dims(L);
  gen_acc(t, n, size, V);
  em_open(EM, "for (int i = 0; i < count[q]; i++)");
  em_line(EM, "const float *wk = wt + %s;", LIN(0, "fs[q][i]", (long)d.C, "c0", 1L));
  em_line(EM, "const float s = vs[q][i];");
  em_line(EM, "%s_UNROLL for (int j = 0; j < %s; j++)", t->n, n);
  em_indent(EM);
  em_open(EM, "%s_UNROLL for (int v = 0; v < %s; v++)", t->n, V);
  em_line(EM, "%s_v wv;", t->n);
  em_line(EM, "%s_LOAD(wv, wk + (tap0 + j) * %ld + v * %s_VW);", t->n, (long)d.F * d.C, t->n);
  em_line(EM, "%s_FMAV(a[j][v], s, wv);", t->n);
  em_close(EM);
  em_dedent(EM);
  em_close(EM);
  gen_addto(t, n, V,
            S(t, "o + (tap0 + j) / %d * %ld + (tap0 + j) %% %d * %d + c0 + v * %s_VW", d.KW,
              (long)d.IW * d.C, d.KW, d.C, t->n));
}

/* In conv_pool_backward, the weight gradient (conv_pool_dw): vectors j0 + j
   of filter f's row of dwt (each NAME_VW floats, the kernel rows end to
   end), over the windows' records. */
static void gen_pool_dw_tile(T *t, const TL *L, const char *n, const char *size, const char *V) {
  const ConvDims d = conv_dims(L);
  const long K = (long)d.KW * d.C;
  (void)V;
  em_line(EM, "%s_v a[%s];", t->n, size);
  em_line(EM, "%s_UNROLL for (int j = 0; j < %s; j++)", t->n, n);
  em_line(EM, "  %s_LOAD(a[j], dk + (j0 + j) * %s_VW);", t->n, t->n);
  em_open(EM, "for (int wi = 0; wi < nw; wi++)");
  em_line(EM, "if (xo[wi][f] < 0)");
  em_line(EM, "  continue;");
  em_line(EM, "const float *restrict xk = x + xo[wi][f];");
  em_line(EM, "const float s = vw[wi][f];");
  em_open(EM, "%s_UNROLL for (int j = 0; j < %s; j++)", t->n, n);
  em_line(EM, "const int at = (j0 + j) * %s_VW; /* in kernel row at / %ld */", t->n, K);
  em_line(EM, "%s_v xv;", t->n);
  em_line(EM, "%s_LOAD(xv, xk + at / %ld * %ld + at %% %ld);", t->n, K, (long)d.IW * d.C, K);
  em_line(EM, "%s_MULADDV(a[j], s, xv);", t->n);
  em_close(EM);
  em_close(EM);
  em_line(EM, "%s_UNROLL for (int j = 0; j < %s; j++)", t->n, n);
  em_line(EM, "  %s_STORE(dk + (j0 + j) * %s_VW, a[j]);", t->n, t->n);
}

/* Whether L's backward function can be written once for every width. */
static bool gen_backward_ok(const TL *L) {
  const ConvDims d = conv_dims(L);
  Wc nv;
  if (conv_groups(L->l) > 1)
    return false;
  if (d.F >= 8 && !gen_blocks(d.F, &nv) && !L->pool)
    return false;
  if (takes_dx(L) && L->transposed && d.C >= 8 && !gen_blocks(d.C, &nv))
    return false;
  return !L->pool || (d.KW * d.C) % 16 == 0;
}

/* The channel blocks of N (prefix's V) with their tiles over n (tp). */
static void gen_blocks_tiles(T *t, const TL *L, const char *prefix, const char *var, int N,
                             int n, int most, const char *tvar, GenTile *tile, bool taps) {
  const ConvDims d = conv_dims(L);
  Wc nv;
  gen_blocks(N, &nv);
  const Wc tp = gen_pixels(nv, n, most);
  gen_enum(t, prefix, nv, tp, n);
  const char *V = wc(t, nv, prefix, "V");
  gen_block_loop(t, var, N, V);
  if (taps) {
    em_open(EM, "for (int ky = 0; ky < %d; ky++)", d.KH);
    em_open(EM, "for (int kx = 0; kx < %d; kx++)", d.KW);
  }
  gen_tiles(t, L, tvar, n, tp, prefix, V, tile);
  if (taps) {
    em_close(EM);
    em_close(EM);
  }
  em_close(EM);
}

/* conv_pool_dw's tiles, once for every width: per filter, its row of dwt
   in PW_N vectors, tiles of PW_T (3/4 of the registers, evened out). */
static void gen_pool_dw(T *t, const TL *L) {
  const ConvDims d = conv_dims(L);
  const int K = d.KW * d.C;
  int size[2];
  for (int i = 0; i < 2; i++) {
    const EmVec *vec = em_widths[i];
    const int total = d.KH * K / vec->w, most = vec->regs * 3 / 4;
    const int tiles = (total + most - 1) / most;
    size[i] = (total + tiles - 1) / tiles;
  }
  em_line(EM, "enum { PW_N = %d / %s_VW, PW_T = %s_VW == 16 ? %d : %d, PW_R = PW_N %% PW_T };",
          d.KH * K, t->n, t->n, size[0], size[1]);
  em_open(EM, "for (int f = 0; f < %d; f++)", d.F);
  em_line(EM, "float *restrict dk = dwt + f * %d;", d.KH * K);
  em_open(EM, "for (int j0 = 0; j0 < PW_N - PW_R; j0 += PW_T)");
  gen_pool_dw_tile(t, L, "PW_T", "PW_T", "1");
  em_close(EM);
  em_open(EM, "if (PW_R)");
  em_line(EM, "const int j0 = PW_N - PW_R;");
  gen_pool_dw_tile(t, L, "PW_R", "PW_T", "1");
  em_close(EM);
  em_close(EM);
}

static void group_backward(T *t, const TL *L);

/* db += dy summed over the output pixels. */
static void conv_bias_backward(T *t, const ConvDims *d) {
  if (!d->bias)
    return;
  em_line(EM, "for (int p = 0; p < %d; p++)", d->OH * d->OW);
  em_line(EM, "  for (int f = 0; f < %d; f++)", d->F);
  em_line(EM, "    db[f] += dy[p * %d + f];", d->F);
}

static void conv_backward(T *t, const TL *L) {
  if (conv_groups(L->l) > 1) {
    group_backward(t, L);
    return;
  }
  if (glue_backward(t, L))
    return;
  const Layer *l = L->l;
  const ConvDims d = conv_dims(L);
  const char *w = emit_param_ref(t->em, t->net, l, 0, "m");
  em_comment(EM, "%s\nbackward from dy [%d][%d][%d] (made the pre-activation gradient)",
             emit_quote(EM, l), d.OH, d.OW, d.F);
  em_open_fn(EM,
             "static void %s(const %s_model *m, %s_grads *g%s, const float *restrict x, const "
             "float *restrict y, float *restrict dy%s)",
             L->bfn, t->n, t->n, L->transposed ? ", const float *restrict wt" : "",
             takes_dx(L) ? ", float *restrict dx" : "");
  if (!takes_dx(L) || L->transposed)
    em_line(EM, "(void)m;");
  param_backward_head(t, L, S(t, "[%d][%d][%d][%d]", d.KH, d.KW, d.C, d.F));
  conv_bias_backward(t, &d);
  if (t->generic && d.F >= 8 && d.KH * d.KW * d.C <= DW_WHOLE) {
    const int N = d.KH * d.KW * d.C;
    gen_blocks_tiles(t, L, "DW", "f0", d.F, N, N, "j0", gen_dw_whole, false);
  } else if (t->generic && d.F >= 8) {
    em_open(EM, "for (int ky = 0; ky < %d; ky++)", d.KH);
    gen_blocks_tiles(t, L, "DW", "f0", d.F, d.KW * d.C, d.KW * d.C, "k0", gen_dw_row, false);
    em_close(EM);
  } else if (d.F >= 8 && d.KH * d.KW * d.C <= DW_WHOLE) {
    channel_blocks(t, L, "f0", d.F, conv_dw_whole_block);
  } else if (d.F >= 8) {
    em_open(EM, "for (int ky = 0; ky < %d; ky++)", d.KH);
    channel_blocks(t, L, "f0", d.F, conv_dw_block);
    em_close(EM);
  } else {
    em_open(EM, "for (int oy = 0; oy < %d; oy++)", d.OH);
    em_open(EM, "for (int ox = 0; ox < %d; ox++)", d.OW);
    em_line(EM, "const float *d = dy + %s;", LIN(0, "oy", (long)d.OW * d.F, "ox", (long)d.F));
    em_open(EM, "for (int ky = 0; ky < %d; ky++)", d.KH);
    em_line(EM, "const float *xk = x + %s;",
            LIN(0, "oy", (long)d.SH * d.IW * d.C, "ky", (long)d.IW * d.C, "ox", (long)d.SW * d.C));
    em_line(EM, "float *wk = dw + ky * %d;", d.KW * d.C * d.F);
    em_open(EM, "for (int k = 0; k < %d; k++)", d.KW * d.C);
    em_line(EM, "const float s = xk[k];");
    em_line(EM, "for (int f = 0; f < %d; f++)", d.F);
    em_line(EM, "  wk[k * %d + f] += s * d[f];", d.F);
    em_close(EM);
    em_close(EM);
    em_close(EM);
    em_close(EM);
  }
  if (takes_dx(L)) {
    if_dx(t, L, true);
    em_line(EM, "memset(dx, 0, %ld * sizeof(float));", (long)d.IH * d.IW * d.C);
    if (L->transposed) {
      em_open(EM, "for (int oy = 0; oy < %d; oy++)", d.OH);
      if (t->generic)
        gen_blocks_tiles(t, L, "DX", "c0", d.C, d.OW, 12, "ox", gen_dx_tile, true);
      else
        channel_blocks(t, L, "c0", d.C, conv_dx_block);
      em_close(EM);
    } else {
      em_line(EM, "const float *restrict w = %s;", w);
      em_open(EM, "for (int oy = 0; oy < %d; oy++)", d.OH);
      em_open(EM, "for (int ox = 0; ox < %d; ox++)", d.OW);
      em_line(EM, "const float *d = dy + %s;", LIN(0, "oy", (long)d.OW * d.F, "ox", (long)d.F));
      em_open(EM, "for (int ky = 0; ky < %d; ky++)", d.KH);
      em_line(
          EM, "float *xk = dx + %s;",
          LIN(0, "oy", (long)d.SH * d.IW * d.C, "ky", (long)d.IW * d.C, "ox", (long)d.SW * d.C));
      em_line(EM, "const float *wk = w + ky * %d;", d.KW * d.C * d.F);
      em_open(EM, "for (int k = 0; k < %d; k++)", d.KW * d.C);
      em_line(EM, "float s = 0.0f;");
      em_line(EM, "for (int f = 0; f < %d; f++)", d.F);
      em_line(EM, "  s += wk[k * %d + f] * d[f];", d.F);
      em_line(EM, "xk[k] += s;");
      em_close(EM);
      em_close(EM);
      em_close(EM);
      em_close(EM);
    }
    if_dx(t, L, false);
  }
  em_close(EM);
  em_blank(EM);
}

/* The input gradient of a padded conv: the interior of the padded one. */
static void conv_unpad(T *t, const TL *L) {
  const Layer *l = L->l;
  const int H = l->in.h, W = l->in.w, C = l->in.c;
  const int pt = l->u.conv.pad_top, pl = l->u.conv.pad_left;
  em_line(EM, "/* the input gradient [%d][%d][%d] out of the padded one, in place */", H, W, C);
  em_open_fn(EM, "static void %s_unpad(float *dx)", L->fn);
  em_line(EM, "for (int iy = 0; iy < %d; iy++)", H);
  em_line(EM, "  memmove(dx + iy * %d, dx + (iy + %d) * %d + %d, %d * sizeof(float));", W * C, pt,
          L->pw * C, pl * C, W * C);
  em_close(EM);
  em_blank(EM);
}

/* The derivative of act at output a, times the gradient g (C expressions). */
static const char *act_times(T *t, Act act, const char *a, const char *g) {
  switch (act) {
  case ACT_RELU:
    return S(t, "%s > 0.0f ? %s : 0.0f", a, g);
  case ACT_SIGMOID:
    return S(t, "%s * %s * (1.0f - %s)", g, a, a);
  case ACT_TANH:
    return S(t, "%s * (1.0f - %s * %s)", g, a, a);
  default: /* linear; softmax never comes before a pool */
    return g;
  }
}

/* In conv_pool_backward, the input gradient of taps tap0 .. tap0 + T - 1
   (tap0 the variable `tap0v`, or the literal tap0l) from the count[q] output
   channels of window pixel q, input channels from c0: T x CV accumulators,
   so that the multiply-adds of different taps overlap (one tap alone would
   wait on the latency of its CV chains). */
static void conv_pool_dx_tile(T *t, const ConvDims *d, int T_, const char *tap0v, int tap0l, int CV,
                              int shift, const EmVec *vec) {
  const char *n = t->n, *tap0 = tap0v ? S(t, "%s + ", tap0v) : "";
  em_open(EM, "%s", "");
  tile_declare(t, T_, CV, NULL, vec);
  em_open(EM, "for (int i = 0; i < count[q]; i++)");
  em_line(EM, "const float *wk = wt + %s;", LIN(0, "fs[q][i]", (long)d->C, "c0", 1L));
  em_line(EM, "const float s0 = vs[q][i];");
  for (int j = 0; j < T_; j++)
    for (int v = 0; v < CV; v++) {
      em_line(EM, "%s_%s w%d_%d;", n, vec->type, j, v);
      em_line(EM, "%s_LOAD(w%d_%d, wk + %s);", n, j, v,
              LIN((long)(tap0l + j) * d->F * d->C + vec_off(v, CV, shift, vec), tap0v ? tap0v : "",
                  (long)d->F * d->C));
      em_line(EM, "%s_FMA%s(a%d_%d, s0, w%d_%d);", n, vec->op, j, v, j, v);
    }
  em_close(EM);
  for (int j = 0; j < T_; j++) {
    const char *tap = S(t, "%s%d", tap0, tap0l + j);
    for (int v = 0; v < CV; v++)
      tile_addto(
          t,
          tap0v ? S(t, "o + %s",
                    LIN(vec_off(v, CV, shift, vec), S(t, "(%s) / %d", tap, d->KW),
                        (long)d->IW * d->C, S(t, "(%s) %% %d", tap, d->KW), (long)d->C, "c0", 1L))
                : S(t, "o + %s",
                    LIN((long)(tap0l + j) / d->KW * d->IW * d->C +
                            (long)(tap0l + j) % d->KW * d->C + vec_off(v, CV, shift, vec),
                        "c0", 1L)),
          j, v, CV, shift, vec);
  }
  em_close(EM);
}

/* The input-gradient tiles of all taps, input channels from c0. */
static void conv_pool_dx_block(T *t, const TL *L, int CV, int shift, const EmVec *vec) {
  const ConvDims d = conv_dims(L);
  const int KK = d.KH * d.KW, T_ = tile_pixels(CV, KK, KK, vec), full = KK / T_;
  if (full > 1) {
    em_line(EM, "for (int tap0 = 0; tap0 < %d; tap0 += %d)", full * T_, T_);
    conv_pool_dx_tile(t, &d, T_, "tap0", 0, CV, shift, vec);
  } else {
    conv_pool_dx_tile(t, &d, T_, NULL, 0, CV, shift, vec);
  }
  if (KK % T_)
    conv_pool_dx_tile(t, &d, KK % T_, NULL, full * T_, CV, shift, vec);
}

/* In conv_pool_backward, the weight gradient of the windows w0 .. w0 + nw - 1
   (nw a C expression), from their records xo (the input offset of the
   filter's maximum, -1 where its gradient is 0) and vw (that gradient): per
   filter f, its row of dwt ([KH][KW * C]) in tiles of vectors held in
   registers over the windows, each kernel row in vectors of VW (the last
   overlapping the one before when KW * C is not a multiple), rather than
   added into memory window by window. Each element still gets its products
   in window order, as a + s * x (fused or not as the C compiler fuses a
   scalar a += s * x), so the bits are the same. */
static void conv_pool_dw(T *t, const ConvDims *d, const char *nw) {
  const char *n = t->n;
  const int K = d->KW * d->C;
  const EmVec *vec = K >= t->v->w ? t->v : &em_vec8;
  const int VW = vec->w, per_row = (K + VW - 1) / VW, shift = per_row * VW - K;
  const int total = d->KH * per_row, most = vec->regs * 3 / 4;
  const int tiles = (total + most - 1) / most, size = (total + tiles - 1) / tiles;
  em_open(EM, "for (int f = 0; f < %d; f++)", d->F);
  em_line(EM, "float *restrict dk = dwt + f * %d;", d->KH * K);
  for (int j0 = 0; j0 < total; j0 += size) {
    const int nj = total - j0 < size ? total - j0 : size;
    em_open(EM, "%s", "");
    for (int j = 0; j < nj; j++) {
      const int ky = (j0 + j) / per_row,
                off = ky * K + vec_off((j0 + j) % per_row, per_row, shift, vec);
      em_line(EM, "%s_%s a%d;", n, vec->type, j);
      em_line(EM, "%s_LOAD(a%d, dk + %d);", n, j, off);
    }
    em_open(EM, "for (int wi = 0; wi < %s; wi++)", nw);
    em_line(EM, "if (xo[wi][f] < 0)");
    em_line(EM, "  continue;");
    em_line(EM, "const float *restrict xk = x + xo[wi][f];");
    em_line(EM, "const float s = vw[wi][f];");
    for (int j = 0; j < nj; j++) {
      const int ky = (j0 + j) / per_row, off = vec_off((j0 + j) % per_row, per_row, shift, vec);
      em_line(EM, "%s_%s x%d;", n, vec->type, j);
      em_line(EM, "%s_LOAD(x%d, xk + %d);", n, j, ky * d->IW * d->C + off);
      em_line(EM, "%s_MULADD%s(a%d, s, x%d);", n, vec->op, j, j);
    }
    em_close(EM);
    for (int j = 0; j < nj; j++) {
      const int ky = (j0 + j) / per_row,
                off = ky * K + vec_off((j0 + j) % per_row, per_row, shift, vec);
      em_line(EM, "%s_STORE(dk + %d, a%d);", n, off, j);
    }
    em_close(EM);
  }
  em_close(EM);
}

/* Conv and the maxpool after it, backward in one pass. The pool sends each
   window's gradient, per channel, to one conv output: the first maximum
   (found without branches). So per window the channels are grouped by the
   position of their maximum, and only those (pixel, channel) pairs with a
   nonzero gradient feed the input gradient; the weight gradient
   (accumulated transposed, [F][KH][KW][C], in t->dwt<k>, folded into g at
   the end of NAME_accumulate) comes from each group of windows' records on
   register tiles per filter (conv_pool_dw). With 2x2 windows that skips
   three quarters of the work of a dense backward pass. */
static void conv_pool_backward(T *t, const TL *L) {
  if (glue_backward(t, L))
    return;
  const Layer *l = L->l, *pl = L->pool->l;
  const ConvDims d = conv_dims(L);
  const char *n = t->n;
  const int PKH = pl->u.pool.kh, PKW = pl->u.pool.kw, PSH = pl->u.pool.sh, PSW = pl->u.pool.sw;
  const int POH = pl->out.h, POW = pl->out.w, KK = PKH * PKW;
  const char *w = emit_param_ref(t->em, t->net, l, 0, "m");
  em_comment(EM, "%s\n+ %s\nbackward from dyp [%d][%d][%d]", emit_quote(EM, l), emit_quote(EM, pl),
             POH, POW, d.F);
  em_open_fn(
      EM,
      "static void %s(const %s_model *m, %s_grads *g%s, const float *restrict x, const float "
      "*restrict y, const float *restrict yp, const float *restrict dyp, float *restrict dwt%s)",
      L->bfn, n, n, L->transposed ? ", const float *restrict wt" : "",
      takes_dx(L) ? ", float *restrict dx" : "");
  if (!takes_dx(L) || L->transposed)
    em_line(EM, "(void)m;");
  if (d.bias)
    em_line(EM, "float *restrict db = g->p + %ld; /* [%d] */", l->bias_offset, d.F);
  if (takes_dx(L))
    em_line(EM, "%smemset(dx, 0, %ld * sizeof(float));", L->dx_if ? "if (dx)\n  " : "",
            (long)d.IH * d.IW * d.C);
  if (takes_dx(L) && !L->transposed)
    em_line(EM, "const float *restrict w = %s; /* [%d][%d][%d][%d] */", w, d.KH, d.KW, d.C, d.F);
  /* windows in groups of G, whose records (xo, vw: 8 bytes per filter) take at
     most 32 KiB: their weight gradient after each group */
  const int NW = POH * POW, G = 4096 / d.F < 1 ? 1 : 4096 / d.F > NW ? NW : 4096 / d.F;
  em_line(EM, "int xo[%d][%d];", G, d.F);
  em_line(EM, "float vw[%d][%d];", G, d.F);
  if (G < NW) {
    em_open(EM, "for (int w0 = 0; w0 < %d; w0 += %d)", NW, G);
    em_line(EM, "const int nw = %d - w0 < %d ? %d - w0 : %d;", NW, G, NW, G);
  } else { /* one group: no loop */
    em_open(EM, "%s", "");
    em_line(EM, "const int w0 = 0, nw = %d;", NW);
  }
  em_open(EM, "for (int wi = 0; wi < nw; wi++)");
  em_line(EM, "const int wy = (w0 + wi) / %d, wx = (w0 + wi) %% %d;", POW, POW);
  em_line(EM, "const float *pp = yp + (wy * %d + wx) * %d, *dp = dyp + (wy * %d + wx) * %d;", POW,
          d.F, POW, d.F);
  em_line(EM, "const float *y0 = y + %s;",
          LIN(0, "wy", (long)PSH * d.OW * d.F, "wx", (long)PSW * d.F));
  em_line(EM, "int qf[%d];", d.F);
  if (takes_dx(L)) { /* per window pixel q, the filters whose maximum it is, and their gradients */
    em_line(EM, "int count[%d] = {0}, fs[%d][%d];", KK, KK, d.F);
    em_line(EM, "float vs[%d][%d];", KK, d.F);
  }
  em_comment(EM, "the first maximum without branches (a loop the C compiler vectorizes)");
  em_open(EM, "for (int f = 0; f < %d; f++)", d.F);
  em_line(EM, "int q = %d;", KK - 1);
  for (int q = KK - 2; q >= 0; q--)
    em_line(EM, "q = y0[%s] == pp[f] ? %d : q;",
            LIN((long)(q / PKW * d.OW + q % PKW) * d.F, "f", 1L), q);
  em_line(EM, "qf[f] = q;");
  em_close(EM);
  em_open(EM, "for (int f = 0; f < %d; f++)", d.F);
  em_line(EM, "const int q = qf[f];");
  em_line(EM, "const float a = y0[%s];",
          LIN(0, S(t, "q / %d", PKW), (long)d.OW * d.F, S(t, "q %% %d", PKW), (long)d.F, "f", 1L));
  em_line(EM, "const float v = %s;", act_times(t, L->act, "a", "dp[f]"));
  if (L->act == ACT_LINEAR)
    em_line(EM, "(void)a;");
  if (d.bias)
    em_line(EM, "db[f] += v;");
  em_line(EM, "xo[wi][f] = v != 0.0f ? %s : -1;",
          LIN(0, "wy", (long)PSH * d.SH * d.IW * d.C, S(t, "q / %d", PKW), (long)d.SH * d.IW * d.C,
              "wx", (long)PSW * d.SW * d.C, S(t, "q %% %d", PKW), (long)d.SW * d.C));
  em_line(EM, "vw[wi][f] = v;");
  if (takes_dx(L)) {
    em_open(EM, "if (v != 0.0f)");
    em_line(EM, "fs[q][count[q]] = f;");
    em_line(EM, "vs[q][count[q]++] = v;");
    em_close(EM);
  }
  em_close(EM);
  if_dx(t, L, true);
  if (takes_dx(L)) {
    em_open(EM, "for (int q = 0; q < %d; q++)", KK);
    em_line(EM, "const int oy = wy * %d + q / %d, ox = wx * %d + q %% %d;", PSH, PKW, PSW, PKW);
  }
  if (takes_dx(L) && L->transposed) {
    em_line(EM, "float *o = dx + %s; /* tap (0, 0) */",
            LIN(0, "oy", (long)d.SH * d.IW * d.C, "ox", (long)d.SW * d.C));
    if (t->generic)
      gen_blocks_tiles(t, L, "PX", "c0", d.C, d.KH * d.KW, d.KH * d.KW, "tap0", gen_pool_dx_tile,
                       false);
    else
      channel_blocks(t, L, "c0", d.C, conv_pool_dx_block);
  } else if (takes_dx(L)) {
    em_open(EM, "for (int tap = 0; tap < %d; tap++)", d.KH * d.KW);
    em_line(EM, "float *o = dx + %s;",
            LIN(0, "oy", (long)d.SH * d.IW * d.C, S(t, "tap / %d", d.KW), (long)d.IW * d.C, "ox",
                (long)d.SW * d.C, S(t, "tap %% %d", d.KW), (long)d.C));
    em_line(EM, "const float *wk = w + tap * %d;", d.C * d.F);
    em_open(EM, "for (int c = 0; c < %d; c++)", d.C);
    em_line(EM, "float s = 0.0f;");
    em_line(EM, "for (int i = 0; i < count[q]; i++)");
    em_line(EM, "  s += vs[q][i] * wk[c * %d + fs[q][i]];", d.F);
    em_line(EM, "o[c] += s;");
    em_close(EM);
    em_close(EM);
  }
  if (takes_dx(L))
    em_close(EM); /* q */
  if_dx(t, L, false);
  em_close(EM); /* wi */
  if (t->generic)
    gen_pool_dw(t, L);
  else
    conv_pool_dw(t, &d, "nw");
  em_close(EM); /* w0 */
  em_close(EM);
  em_blank(EM);
}

#undef OP_EM

/* ---- grouped and depthwise (groups=G) ----
 *
 * The input channels fall in G groups of CG = C / G, the filters in G
 * groups of FG = F / G; filter f reads only the channels of its group
 * f / FG. The weights are [KH][KW][CG][F] (PyTorch's [F][C/G][KH][KW]
 * through the same permutation). Depthwise with one filter per channel
 * (CG = FG = 1) does KH * KW multiply-adds per output, each on its own
 * input value and weight: it is memory-bound, so it runs as one loop over
 * the channels, contiguous in x, w, y (and dy, dw, dx), with the taps
 * written out and the sum in a register: the C compiler vectorizes it
 * across channels at the target's width. Other group shapes (a depth
 * multiplier FG > 1, CG > 1) keep tiles of sums in registers, filters
 * innermost: the forward pass P output pixels at a time, the weight
 * gradient T taps at a time over every pixel, and, for 8 or more channels
 * a group, the input gradient a kernel row's taps at a time, channels
 * innermost, from weights transposed to [KH][KW][F][CG] (wt); else per
 * pixel and group. Each sum adds in the same order as the plain loops, so
 * the tiles change no bits (under ISO C's rounding; contracted to FMAs by
 * gcc's default -ffp-contract=fast, the input gradient may differ in the
 * last bit). The grouped kernels have no fused pool. The JIT's C calls
 * the prebuilt kernels instead (emit_glue.c).
 */

/* Depthwise with one filter per channel and a kernel small enough to
   write out. */
static bool depthwise_fast(const ConvDims *d) {
  return d->CG == 1 && d->FG == 1 && d->KH * d->KW <= 49;
}

/* The depthwise loops over the output pixels of row oy, P at a time (then
   the rest), one loop over the channels each: the forward pass (y = the
   sums from the bias, stored through `store`, a format of the target, the
   sum and the sum again), or the weight gradient (dw += x * dy over the P
   pixels: dw is read and written once per tap for P pixels). The other
   group shapes' forward tiles take the same (dw false). */
typedef struct DwTile {
  bool dw, bias;
  const char *store;
} DwTile;

#define OP_EM (em)

static void depthwise_tile(Emitter *em, const ConvDims *d, DwTile k, int P, const char *oxv,
                           int oxl) {
  const char *ox = oxv ? oxv : "";
  em_line(EM, "const float *restrict xp = x + %s;",
          LIN((long)oxl * d->SW * d->C, "oy", (long)d->SH * d->IW * d->C, ox, (long)d->SW * d->C));
  em_line(EM, "%sfloat *restrict yp = %s + %s;", k.dw ? "const " : "", k.dw ? "dy" : "y",
          LIN((long)oxl * d->F, "oy", (long)d->OW * d->F, ox, (long)d->F));
  em_open(EM, "for (int f = 0; f < %d; f++)", d->F);
  for (int j = 0; j < P; j++)
    em_line(EM, k.dw ? "const float d%d = yp[%s];" : "float s%d = %s;", j,
            k.dw     ? LIN((long)j * d->F, "f", 1L)
            : k.bias ? "b[f]"
                     : "0.0f");
  for (int ky = 0; ky < d->KH; ky++)
    for (int kx = 0; kx < d->KW; kx++) {
      const char *wi = LIN((long)(ky * d->KW + kx) * d->F, "f", 1L);
      const char *sum = "";
      if (!k.dw)
        em_line(EM, "const float w%d_%d = w[%s];", ky, kx, wi);
      for (int j = 0; j < P; j++) {
        const char *xi =
            LIN((long)ky * d->IW * d->C + ((long)kx + (long)j * d->SW) * d->C, "f", 1L);
        if (k.dw)
          sum = em_str(EM, "%s%sxp[%s] * d%d", sum, j ? " + " : "", xi, j);
        else
          em_line(EM, "s%d += xp[%s] * w%d_%d;", j, xi, ky, kx);
      }
      if (k.dw)
        em_line(EM, "dw[%s] += %s;", wi, sum);
    }
  for (int j = 0; !k.dw && j < P; j++)
    em_line(EM, k.store, em_str(EM, "yp[%s]", LIN((long)j * d->F, "f", 1L)), em_str(EM, "s%d", j),
            em_str(EM, "s%d", j));
  em_close(EM);
}

/* Row oy's output pixels P at a time (a loop from ox), then the rest, each
   tile written by `tile`. */
typedef void RowTile(Emitter *em, const ConvDims *d, DwTile k, int P, const char *oxv, int oxl);

static void row_tiles(Emitter *em, const ConvDims *d, DwTile k, int P, RowTile *tile) {
  const int full = d->OW / P, rest = d->OW % P;
  if (full > 1)
    em_open(EM, "for (int ox = 0; ox < %d; ox += %d)", full * P, P);
  else
    em_open(EM, "%s", "");
  tile(em, d, k, P, full > 1 ? "ox" : NULL, 0);
  em_close(EM);
  if (rest) {
    em_open(EM, "%s", "");
    tile(em, d, k, rest, NULL, full * P);
    em_close(EM);
  }
}

static void depthwise_tiles(Emitter *em, const ConvDims *d, DwTile k) {
  row_tiles(em, d, k, d->OW < 4 ? d->OW : 4, depthwise_tile);
}

/* The other group shapes' forward pass over the output pixels of row oy,
   P at a time (then the rest): per group, a [P][FG] tile of sums in
   registers over the group's taps and channels, the filters innermost (the
   C compiler vectorizes them at the target's width), each input value
   broadcast to its pixel's row of the tile. P keeps the tile within 128
   floats (8 zmm, 16 ymm registers): P independent sums per filter hide the
   FMA's latency. Each output sums its taps in the same order whatever P. */
static void group_tile(Emitter *em, const ConvDims *d, DwTile k, int P, const char *oxv, int oxl) {
  const char *ox = oxv ? oxv : "";
  em_line(EM, "const float *restrict xp = x + %s;",
          LIN((long)oxl * d->SW * d->C, "oy", (long)d->SH * d->IW * d->C, ox, (long)d->SW * d->C));
  em_line(EM, "float *restrict yp = y + %s;",
          LIN((long)oxl * d->F, "oy", (long)d->OW * d->F, ox, (long)d->F));
  em_open(EM, "for (int gi = 0; gi < %d; gi++)", d->G);
  em_line(EM, "float a[%d][%d];", P, d->FG);
  em_open(EM, "for (int j = 0; j < %d; j++)", d->FG);
  for (int p = 0; p < P; p++)
    em_line(EM, "a[%d][j] = %s;", p,
            d->bias ? em_str(EM, "b[%s]", LIN(0, "gi", (long)d->FG, "j", 1L)) : "0.0f");
  em_close(EM);
  em_open(EM, "for (int ky = 0; ky < %d; ky++)", d->KH);
  em_open(EM, "for (int kx = 0; kx < %d; kx++)", d->KW);
  em_open(EM, "for (int c = 0; c < %d; c++)", d->CG);
  em_line(EM, "const float *restrict xk = xp + %s;",
          LIN(0, "ky", (long)d->IW * d->C, "kx", (long)d->C, "gi", (long)d->CG, "c", 1L));
  em_line(EM, "const float *restrict wk = w + %s;",
          LIN(0, "ky", (long)d->KW * d->CG * d->F, "kx", (long)d->CG * d->F, "c", (long)d->F, "gi",
              (long)d->FG));
  em_open(EM, "for (int j = 0; j < %d; j++)", d->FG);
  for (int p = 0; p < P; p++)
    em_line(EM, "a[%d][j] += xk[%ld] * wk[j];", p, (long)p * d->SW * d->C);
  em_close(EM);
  em_close(EM);
  em_close(EM);
  em_close(EM);
  em_open(EM, "for (int j = 0; j < %d; j++)", d->FG);
  for (int p = 0; p < P; p++)
    em_line(EM, k.store, em_str(EM, "yp[%s]", LIN((long)p * d->F, "gi", (long)d->FG, "j", 1L)),
            em_str(EM, "a[%d][j]", p), em_str(EM, "a[%d][j]", p));
  em_close(EM);
  em_close(EM);
}

static void group_tiles(Emitter *em, const ConvDims *d, const char *store) {
  const int most = d->FG >= 128 ? 1 : 128 / d->FG > 8 ? 8 : 128 / d->FG;
  int P = d->OW < most ? d->OW : most;
  for (int q = P; q > most / 2 && d->OW % P; q--) /* a P that divides the row, if one is near */
    P = d->OW % q ? P : q;
  row_tiles(em, d, (DwTile){false, d->bias, store}, P, group_tile);
}

#undef OP_EM
#define OP_EM (g->em)

static void emit_group_conv(Gen *g, const Layer *l, const char *fn, Act act) {
  const ConvDims d = layer_dims(l, l->in.h + l->u.conv.pad_top + l->u.conv.pad_bottom,
                                l->in.w + l->u.conv.pad_left + l->u.conv.pad_right);
  if (conv_padded(l) && !g->train)
    emit_conv_pad(g, l, fn);
  if (EM->kernels) { /* the JIT's kernels */
    glue_conv_forward(EM, g->net, l, fn, NULL, act, emit_param_ref(EM, g->net, l, 0, "m"),
                      d.bias ? emit_param_ref(EM, g->net, l, 1, "m") : "NULL");
    return;
  }
  const bool fast = depthwise_fast(&d), relu = act == ACT_RELU;
  const Shape xs = {d.IH, d.IW, d.C, false};
  layer_comment(
      g, l,
      em_str(EM, "x %s%s -> y %s, groups %d of %d channel%s and %d filter%s%s", DIMS(xs),
             conv_padded(l) ? " (padded)" : "", DIMS(l->out), d.G, d.CG, d.CG == 1 ? "" : "s", d.FG,
             d.FG == 1 ? "" : "s",
             fast ? "\ndepthwise: per pixel one loop over the channels, the taps written out"
                  : ""));
  em_open_fn(
      EM,
      "static %s_NOINLINE void %s_forward(const %s_model *restrict m, const float *restrict x, "
      "float *restrict y)",
      g->n, fn, g->n);
  em_line(EM, "const float *restrict w = %s; /* [%d][%d][%d][%d] */",
          emit_param_ref(EM, g->net, l, 0, "m"), d.KH, d.KW, d.CG, d.F);
  if (d.bias)
    em_line(EM, "const float *restrict b = %s; /* [%d] */", emit_param_ref(EM, g->net, l, 1, "m"),
            d.F);
  em_open(EM, "for (int oy = 0; oy < %d; oy++)", d.OH);
  const char *store = relu ? "%s = %s > 0.0f ? %s : 0.0f;" : "%s = %s;";
  if (fast) {
    depthwise_tiles(EM, &d, (DwTile){false, d.bias, store});
  } else {
    group_tiles(EM, &d, store);
  }
  em_close(EM);
  if (act != ACT_RELU && act != ACT_LINEAR)
    emit_act_pass(g, act, "y", shape_size(l->out));
  em_close(EM);
  em_blank(EM);
}

#undef OP_EM
#define OP_EM (t->em)

/* One tile of group_dw: n taps from (kx, c) = (kx0, c0) along the kernel
   row (a tap past the row's last channel goes on to the next kx), kx0 and
   c0 literals or run-time variables (kxv, cv, added to them). */
static void group_dw_tile(T *t, const ConvDims *d, const char *kxv, const char *cv, int kx0, int c0,
                          int n) {
  const char *kx = kxv ? kxv : "", *c = cv ? cv : "";
  const long wrow = (long)d->KW * d->CG * d->F;
  em_open(EM, "%s", "");
  em_line(EM, "float *restrict dk = dw + %s;",
          LIN((long)kx0 * d->CG * d->F + (long)c0 * d->F, "ky", wrow, kx, (long)d->CG * d->F, c,
              (long)d->F, "gi", (long)d->FG));
  em_line(EM, "float a[%d][%d];", n, d->FG);
  em_open(EM, "for (int j = 0; j < %d; j++)", d->FG);
  for (int q = 0; q < n; q++) {
    const int dk = (c0 + q) / d->CG, dc = (c0 + q) % d->CG;
    em_line(EM, "a[%d][j] = dk[%s];", q, LIN((long)(dk * d->CG + dc - c0) * d->F, "j", 1L));
  }
  em_close(EM);
  em_open(EM, "for (int oy = 0; oy < %d; oy++)", d->OH);
  em_open(EM, "for (int ox = 0; ox < %d; ox++)", d->OW);
  em_line(EM, "const float *restrict xk = x + %s;",
          LIN((long)kx0 * d->C + c0, "oy", (long)d->SH * d->IW * d->C, "ox", (long)d->SW * d->C,
              "ky", (long)d->IW * d->C, kx, (long)d->C, c, 1L, "gi", (long)d->CG));
  em_line(EM, "const float *restrict dg = dy + %s;",
          LIN(0, "oy", (long)d->OW * d->F, "ox", (long)d->F, "gi", (long)d->FG));
  em_open(EM, "for (int j = 0; j < %d; j++)", d->FG);
  for (int q = 0; q < n; q++) {
    const int dk = (c0 + q) / d->CG, dc = (c0 + q) % d->CG;
    em_line(EM, "a[%d][j] += xk[%ld] * dg[j];", q, (long)dk * d->C + dc - c0);
  }
  em_close(EM);
  em_close(EM);
  em_close(EM);
  em_open(EM, "for (int j = 0; j < %d; j++)", d->FG);
  for (int q = 0; q < n; q++) {
    const int dk = (c0 + q) / d->CG, dc = (c0 + q) % d->CG;
    em_line(EM, "dk[%s] = a[%d][j];", LIN((long)(dk * d->CG + dc - c0) * d->F, "j", 1L), q);
  }
  em_close(EM);
  em_close(EM);
}

/* The weight gradient of the other group shapes: per group and kernel row,
   the row's KW x CG taps (kx, c) T at a time, a [T][FG] tile of dw in
   registers over every output pixel (the filters innermost, each input
   value broadcast to its tap's row of the tile). T keeps the tile within
   128 floats; T sums per filter hide the latency. With at least T / 2
   channels a group the tiles run along each kx's channels in loops (then a
   rest); with fewer they are written out along the whole row, crossing kx
   (at most KW / 2 + 1 of them). Each dw[tap][f] adds the pixels in their
   order, as a loop over the pixels outside would. */
static void group_dw(T *t, const ConvDims *d) {
  const int R = d->KW * d->CG, most = d->FG >= 128 ? 1 : 128 / d->FG > 8 ? 8 : 128 / d->FG;
  em_open(EM, "for (int gi = 0; gi < %d; gi++)", d->G);
  em_open(EM, "for (int ky = 0; ky < %d; ky++)", d->KH);
  if (2 * d->CG >= most) {
    const int TT = d->CG < most ? d->CG : most, full = d->CG / TT * TT;
    em_open(EM, "for (int kx = 0; kx < %d; kx++)", d->KW);
    if (full > TT) {
      em_open(EM, "for (int c0 = 0; c0 < %d; c0 += %d)", full, TT);
      group_dw_tile(t, d, "kx", "c0", 0, 0, TT);
      em_close(EM);
    } else {
      group_dw_tile(t, d, "kx", NULL, 0, 0, TT);
    }
    if (full < d->CG)
      group_dw_tile(t, d, "kx", NULL, 0, full, d->CG - full);
    em_close(EM);
  } else {
    for (int t0 = 0; t0 < R; t0 += most)
      group_dw_tile(t, d, NULL, NULL, 0, t0, R - t0 < most ? R - t0 : most);
  }
  em_close(EM);
  em_close(EM);
}

/* The input gradient of the other group shapes with 8 or more channels a
   group, from the weights transposed to [KH][KW][F][CG] (wt): per output
   pixel, group and kernel row, the row's KW taps' [CG] sums over the
   group's FG filters in registers (the channels innermost), added to dx.
   Each sum runs over the filters in order from 0, as the dot product of
   the plain loop does; dx adds the pixels in their order. */
static void group_dx(T *t, const ConvDims *d) {
  const int K = d->KW * d->CG <= 128 ? d->KW : 1;
  em_open(EM, "for (int oy = 0; oy < %d; oy++)", d->OH);
  em_open(EM, "for (int ox = 0; ox < %d; ox++)", d->OW);
  em_line(EM, "const float *restrict dg = dy + %s;",
          LIN(0, "oy", (long)d->OW * d->F, "ox", (long)d->F));
  em_open(EM, "for (int gi = 0; gi < %d; gi++)", d->G);
  em_open(EM, "for (int ky = 0; ky < %d; ky++)", d->KH);
  if (K == 1)
    em_open(EM, "for (int kx = 0; kx < %d; kx++)", d->KW);
  em_line(EM, "float *restrict xp = dx + %s;",
          LIN(0, "oy", (long)d->SH * d->IW * d->C, "ox", (long)d->SW * d->C, "ky",
              (long)d->IW * d->C, K == 1 ? "kx" : "", K == 1 ? (long)d->C : 0L, "gi", (long)d->CG));
  em_line(EM, "const float *restrict wk = wt + %s;",
          LIN(0, "ky", (long)d->KW * d->F * d->CG, K == 1 ? "kx" : "",
              K == 1 ? (long)d->F * d->CG : 0L, "gi", (long)d->FG * d->CG));
  em_line(EM, "float a[%d][%d] = {{0.0f}};", K, d->CG);
  em_open(EM, "for (int j = 0; j < %d; j++)", d->FG);
  em_line(EM, "const float s = dg[%s];", LIN(0, "gi", (long)d->FG, "j", 1L));
  em_open(EM, "for (int c = 0; c < %d; c++)", d->CG);
  for (int kx = 0; kx < K; kx++)
    em_line(EM, "a[%d][c] += wk[%s] * s;", kx,
            LIN((long)kx * d->F * d->CG, "j", (long)d->CG, "c", 1L));
  em_close(EM);
  em_close(EM);
  em_open(EM, "for (int c = 0; c < %d; c++)", d->CG);
  for (int kx = 0; kx < K; kx++)
    em_line(EM, "xp[%s] += a[%d][c];", LIN((long)kx * d->C, "c", 1L), kx);
  em_close(EM);
  if (K == 1)
    em_close(EM);
  em_close(EM);
  em_close(EM);
  em_close(EM);
  em_close(EM);
}

/* The backward function of a grouped conv, as conv_backward's: the bias
   and weight gradients, then (when it has one) the input gradient. */
static void group_backward(T *t, const TL *L) {
  const Layer *l = L->l;
  const ConvDims d = conv_dims(L);
  const bool fast = depthwise_fast(&d);
  if (glue_backward(t, L)) /* the JIT's kernels */
    return;
  em_comment(EM, "%s\nbackward from dy [%d][%d][%d] (made the pre-activation gradient)",
             emit_quote(EM, l), d.OH, d.OW, d.F);
  em_open_fn(EM,
             "static void %s(const %s_model *m, %s_grads *g%s, const float *restrict x, const "
             "float *restrict y, float *restrict dy%s)",
             L->bfn, t->n, t->n, L->transposed ? ", const float *restrict wt" : "",
             takes_dx(L) ? ", float *restrict dx" : "");
  if (!takes_dx(L) || L->transposed)
    em_line(EM, "(void)m;");
  param_backward_head(t, L, S(t, "[%d][%d][%d][%d]", d.KH, d.KW, d.CG, d.F));
  conv_bias_backward(t, &d);
  for (int part = 0; part < 2; part++) { /* dw, then dx */
    const bool dx = part == 1;
    if (dx && !takes_dx(L))
      break;
    if (dx) {
      if_dx(t, L, true);
      em_line(EM, "memset(dx, 0, %ld * sizeof(float));", (long)d.IH * d.IW * d.C);
      if (L->transposed) {
        group_dx(t, &d);
        if_dx(t, L, false);
        break;
      }
      em_line(EM, "const float *restrict w = %s;", emit_param_ref(t->em, t->net, l, 0, "m"));
    }
    if (!fast && !dx) {
      group_dw(t, &d);
      continue;
    }
    em_open(EM, "for (int oy = 0; oy < %d; oy++)", d.OH);
    if (fast && !dx) {
      depthwise_tiles(EM, &d, (DwTile){true, false, NULL});
      em_close(EM);
      continue;
    }
    em_open(EM, "for (int ox = 0; ox < %d; ox++)", d.OW);
    em_line(EM, "%sfloat *restrict xp = %s + %s;", dx ? "" : "const ", dx ? "dx" : "x",
            LIN(0, "oy", (long)d.SH * d.IW * d.C, "ox", (long)d.SW * d.C));
    em_line(EM, "const float *restrict d = dy + %s;",
            LIN(0, "oy", (long)d.OW * d.F, "ox", (long)d.F));
    if (fast) {
      em_open(EM, "for (int f = 0; f < %d; f++)", d.F);
      for (int ky = 0; ky < d.KH; ky++)
        for (int kx = 0; kx < d.KW; kx++) {
          const char *xi = LIN((long)ky * d.IW * d.C + (long)kx * d.C, "f", 1L);
          const char *wi = LIN((long)(ky * d.KW + kx) * d.F, "f", 1L);
          em_line(EM, "xp[%s] += w[%s] * d[f];", xi, wi);
        }
      em_close(EM);
    } else {
      em_open(EM, "for (int gi = 0; gi < %d; gi++)", d.G);
      em_line(EM, "const float *restrict dg = d + gi * %d;", d.FG);
      em_open(EM, "for (int ky = 0; ky < %d; ky++)", d.KH);
      em_open(EM, "for (int kx = 0; kx < %d; kx++)", d.KW);
      em_open(EM, "for (int c = 0; c < %d; c++)", d.CG);
      const char *xi = LIN(0, "ky", (long)d.IW * d.C, "kx", (long)d.C, "gi", (long)d.CG, "c", 1L);
      const char *wi = LIN(0, "ky", (long)d.KW * d.CG * d.F, "kx", (long)d.CG * d.F, "c", (long)d.F,
                           "gi", (long)d.FG);
      if (dx) {
        em_line(EM, "const float *restrict wk = w + %s;", wi);
        em_line(EM, "float s = 0.0f;");
        em_line(EM, "for (int j = 0; j < %d; j++)", d.FG);
        em_line(EM, "  s += wk[j] * dg[j];");
        em_line(EM, "xp[%s] += s;", xi);
      } else {
        em_line(EM, "const float s = xp[%s];", xi);
        em_line(EM, "float *restrict wk = dw + %s;", wi);
        em_line(EM, "for (int j = 0; j < %d; j++)", d.FG);
        em_line(EM, "  wk[j] += s * dg[j];");
      }
      em_close(EM);
      em_close(EM);
      em_close(EM);
      em_close(EM);
    }
    em_close(EM);
    em_close(EM);
    if (dx)
      if_dx(t, L, false);
  }
  em_close(EM);
  em_blank(EM);
}

#undef OP_EM

/* ---- the calls, the buffers, the module ---- */

#define OP_EM (g->em)

static void conv_infer_call(Gen *g, const Layer *l, const char *fn, const char *in,
                            const char *out) {
  if (l->infer_pad_offset >= 0) {
    const char *pad = emit_where(EM, l->infer_pad_offset);
    em_line(EM, "%s_zero_pad(%s, %s);", fn, in, pad);
    in = pad;
  }
  em_line(EM, "%s_forward(m, %s, %s); /* %s */", fn, in, out,
          DIMS(l->fused_pool ? l->fused_pool->out : l->out));
}

#undef OP_EM
#define OP_EM (t->em)

static void conv_train_functions(T *t, const TL *L) {
  const Layer *l = L->l;
  const bool wide_f = l->out.c >= 16, wide_c = L->transposed && l->in.c >= 16;
  if (L->pad && takes_dx(L))
    conv_unpad(t, L);
  LayerFunction *fn = L->pool ? conv_pool_backward : L->backward ? conv_backward : NULL;
  const bool wide = L->pool ? wide_c : conv_groups(l) == 1 && (wide_f || wide_c);
  if (fn && wide && !t->em->kernels && gen_backward_ok(L)) { /* once for every width */
    t->generic = true;
    fn(t, L);
    t->generic = false;
  } else if (fn) {
    per_width(t, L, fn, wide);
  }
}

static void conv_members(T *t, const TL *L, long *total) {
  const Layer *l = L->l;
  if (L->pad)
    train_member(t, total, (long)L->ph * L->pw * l->in.c,
                 "float xp%d[%ld]; /* %s: padded input [%d][%d][%d] */", L->k,
                 (long)L->ph * L->pw * l->in.c, l->text, L->ph, L->pw, l->in.c);
  if (L->pool)
    train_member(t, total, l->weight_count,
                 "float dwt%d[%ld]; /* %s: weight gradient [%d][%d][%d][%d] */", L->k,
                 l->weight_count, l->text, l->out.c, l->u.conv.kh, l->u.conv.kw, l->in.c);
  if (L->transposed)
    train_member(t, total, l->weight_count,
                 "float wt%d[%ld]; /* %s: weights [%d][%d][%d][%d] for the input gradient */", L->k,
                 l->weight_count, l->text, l->u.conv.kh, l->u.conv.kw, l->out.c,
                 l->in.c / conv_groups(l));
}

static const char *in_of(T *t, const TL *L) {
  return L->pad ? S(t, "t->xp%d", L->k) : L->in;
}

static void conv_forward_call(T *t, const TL *L) {
  if (L->pad)
    em_line(EM, "%s_zero_pad(%s, t->xp%d);", L->fn, L->in, L->k);
  em_line(EM, "%s_forward(m, %s, %s);", L->ffn, in_of(t, L), L->out);
}

static void conv_backward_call(T *t, const TL *L, int *cur) {
  const int c = *cur;
  const char *dx = S(t, "t->g[%d]", 1 - c);
  const char *wt = L->transposed ? S(t, "%s->wt%d, ", t->shared, L->k) : "";
  if (L->pool)
    em_call(EM, "%s(m, g, %s%s, %s, %s, t->g[%d], %s->dwt%d%s%s);", L->bfn, wt, in_of(t, L), L->out,
            L->pool->out, c, t->shared, L->k, takes_dx(L) ? ", " : "", L->dx ? dx : "NULL");
  else
    param_backward_call(t, L, wt, in_of(t, L), c);
  if (L->dx && L->pad)
    em_line(EM, "%s_unpad(%s);", L->fn, dx);
  if (L->dx)
    *cur = 1 - c;
}

static void conv_explain_functions(T *t, const TL *L, const TL *X) {
  if (strcmp(X->bfn, L->bfn) == 0)
    return;
  if (X->pool)
    conv_pool_backward(t, X);
  else
    conv_backward(t, X);
}

/* NAME_accumulate, with a pool: the transposed weight gradient zeroed
   before the images, folded into g after them. */
static void conv_train_begin(T *t, const TL *L) {
  if (L->pool)
    em_line(EM, "memset(t->dwt%d, 0, sizeof t->dwt%d);", L->k, L->k);
}

static void conv_train_end(T *t, const TL *L) {
  if (!L->pool)
    return;
  const ConvDims d = conv_dims(L);
  const int J = d.KH * d.KW * d.C;
  em_line(EM, "/* %s: the weight gradient, [F][KH][KW][C] -> [KH][KW][C][F] */", L->l->text);
  if (EM->kernels) {
    glue_transpose(EM, S(t, "t->dwt%d", L->k), S(t, "g->p + %ld", L->l->weight_offset), 1, d.F, J,
                   true);
    return;
  }
  em_line(EM, "for (int j = 0; j < %d; j++)", J);
  em_line(EM, "  for (int f = 0; f < %d; f++)", d.F);
  em_line(EM, "    g->p[%ld + j * %d + f] += t->dwt%d[f * %d + j];", L->l->weight_offset, d.F, L->k,
          J);
}

/* In NAME_transpose: [KH][KW][C/G][F] -> [KH][KW][F][C/G]. */
static void conv_transpose(T *t, const TL *L) {
  const ConvDims d = conv_dims(L);
  const char *w = emit_param_ref(t->em, t->net, L->l, 0, "m");
  if (EM->kernels && d.G > 1) /* the JIT's grouped kernel reads w */
    return;
  if (EM->kernels) {
    glue_transpose(EM, w, S(t, "t->wt%d", L->k), d.KH * d.KW, d.CG, d.F, false);
    return;
  }
  em_open(EM, "%s", "");
  em_line(EM, "const float *restrict w = %s;", w);
  em_line(EM, "for (int k = 0; k < %d; k++)", d.KH * d.KW);
  em_line(EM, "  for (int c = 0; c < %d; c++)", d.CG);
  em_line(EM, "    for (int f = 0; f < %d; f++)", d.F);
  em_line(EM, "      t->wt%d[(k * %d + f) * %d + c] = w[(k * %d + c) * %d + f];", L->k, d.F, d.CG,
          d.CG, d.F);
  em_close(EM);
}

#undef OP_EM

const OpModule op_conv2d = {
    .weights = true,
    .prefix = "conv",
    .applies_act = true,
    .takes_act = true,
    .cam = true,
    .bad_values = conv_bad_values,
    .shape = conv_shape,
    .counts = conv_counts,
    .tensor = conv_tensor,
    .weight_comment = conv_weight_comment,
    .dump = conv_dump,
    .fuses_pool = conv_fuses_pool,
    .pad = conv_pad,
    .plan_train = conv_plan_train,
    .train_pairs = conv_train_pairs,
    .train_floats = conv_train_floats,
    .forward = emit_conv,
    .infer_call = conv_infer_call,
    .train_variant = conv_variant,
    .train_functions = conv_train_functions,
    .train_members = conv_members,
    .forward_call = conv_forward_call,
    .backward_call = conv_backward_call,
    .explain_functions = conv_explain_functions,
    .train_begin = conv_train_begin,
    .train_end = conv_train_end,
    .transpose = conv_transpose,
};
