/*
 * emit_train.c: the training half of the generated C.
 *
 * NAME_accumulate runs one image at a time: a forward pass that keeps every
 * layer's output in the work struct (so maxpool finds its first maximum and
 * each activation derivative comes from the activation itself), the loss
 * and its gradient with respect to the last layer's pre-activation (softmax
 * with cross-entropy and sigmoid with binary cross-entropy fused), then the
 * backward passes in reverse, adding parameter gradients into NAME_grads.
 * Layers before the first one with parameters get no backward pass; that one
 * computes no input gradient.
 *
 * NAME_explain (for `cnngen explain`) reuses all of it for one image:
 * the same forward calls (dropout as the identity), then the backward
 * calls from the class's logit instead of the loss, with every layer
 * computing its input gradient down to the image (the first layer with
 * parameters computes it when given a dx: training passes NULL). The
 * Grad-CAM conv needs the gradient of its own output, which a fused
 * conv + maxpool backward never forms: for it the same emitter functions
 * write a variant, NAME_LAYER_explain_backward.
 *
 * Gradients flow through two ping-pong buffers: a layer's backward reads dy
 * from one and writes dx to the other, or works in place (activations,
 * dropout, flatten). A conv/dense applies its activation's derivative to dy
 * in place in its own backward.
 *
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
 * per width, under #if NAME_VW (per_width), its 16-channel dimensions on
 * 16-float tiles there (its forward function is inference's, written per
 * width the same way). A vectorized dimension of 8 or more that is not a
 * multiple of the vector ends in an overlapping vector (see "the channel tail" below), so its cost
 * follows its size; below 8 channels the loops are plain, channel innermost.
 */
#include <assert.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emit_train.h"

/* One layer as the training code sees it. */
typedef struct TL {
  const Layer *l;
  const char *fn;        /* NAME_LAYER: the prefix of its functions */
  const char *ffn;       /* its forward function's prefix: fn, inference's, or
                            fn_train where training runs it otherwise (variant) */
  bool variant;          /* emit_train_forward writes ffn_forward */
  const char *bfn;       /* its backward function: fn_backward (fn_explain_backward
                            for a variant only NAME_explain calls) */
  const char *in, *out;  /* C expressions of its input and output (per image) */
  Act act;               /* the activation it applies (the output one is the loss's) */
  int k;                 /* index among the TLs: buffer names */
  bool pad;              /* conv with padding: input copied into t->xp<k> */
  int ph, pw;            /* conv: (padded) input height and width */
  bool backward;         /* runs a backward pass */
  bool dx;               /* computes its input gradient */
  bool dx_if;            /* the first layer with weights: computes it when its dx
                            is not NULL (NAME_explain's; training passes NULL) */
  bool transposed;       /* conv: weights transposed into t->wt<k> for dx */
  const struct TL *pool; /* conv: the maxpool after it, whose backward it does */
  bool pooled;           /* maxpool: its backward is done by the conv before it */
  bool chw;              /* flatten that is the network's output: to C, H, W order */
} TL;

typedef struct T {
  Emitter *em; /* NULL: plan only */
  const Net *net;
  const char *n; /* the network's name */
  TL *tl;        /* the layers that train, in order (begin/end) */
  int ntl;
  Act out_act;    /* applied by the loss to the last TL's output z */
  long gmax;      /* floats in each gradient buffer */
  int slots;      /* optimizer state arrays */
  const EmVec *v; /* the widest vectors of the function being written (per_width) */
  Arena strings;  /* S()'s, until end() */
} T;

/* A formatted string of any length, until end(): the training emitter
   builds names and expressions with this, never in fixed buffers. */
static const char *S(T *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static const char *S(T *t, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  const char *s = arena_vprintf(&t->strings, fmt, ap);
  va_end(ap);
  return s;
}

#define EM (t->em)
#define LIN(...) em_lin(EM, __VA_ARGS__, (const char *)NULL)

/* calloc that aborts when memory runs out, as arena_alloc does. */
static void *xcalloc(size_t n, size_t size) {
  void *p = calloc(n, size);
  if (!p) {
    fputs("cnngen: out of memory\n", stderr);
    abort();
  }
  return p;
}

#define FL(v) em_float(t->em, (float)(v))

/* ---- the layer list ---- */

/* The TLs: the layers that run in training (Layer.train, plan.c), with the
   names and C expressions the emitted calls use. */
static void plan(T *t) {
  const Net *net = t->net;
  int count[OP_COUNT + ACT_COUNT] = {0};
  const char *prev = "xi";
  t->ntl = 0;
  t->out_act = net->train_out_act;
  t->gmax = net->train_grad_floats;
  for (int i = 0; i < net->nlayers; i++) {
    const Layer *l = &net->layers[i];
    if (!(l->op == OP_ACT && l->fused_away)) /* named as in inference */
      count[l->op == OP_ACT ? OP_COUNT + l->act : l->op]++;
    if (!l->train.runs)
      continue;
    TL *L = &t->tl[t->ntl];
    memset(L, 0, sizeof *L);
    L->l = l;
    L->k = l->train.index;
    L->act = l->train.act;
    int c = count[l->op == OP_ACT ? OP_COUNT + l->act : l->op];
    if (l->name[0])
      L->fn = S(t, "%s_%s", t->n, l->name);
    else
      L->fn = S(t, "%s_%s%d", t->n, l->op == OP_ACT ? act_words[l->act] : op_words[l->op], c);
    L->bfn = S(t, "%s_backward", L->fn);
    switch (l->op) {
    case OP_CONV2D:
      L->variant = l->fused_pool || l->train.act != l->act;
      break;
    case OP_DENSE:
    case OP_ACT:
      L->variant = l->train.act != l->act;
      break;
    case OP_MAXPOOL:
    case OP_AVGPOOL:
      L->variant = l->fused_away; /* into the conv before it */
      break;
    default:
      break;
    }
    L->ffn = L->variant ? S(t, "%s_train", L->fn) : L->fn;
    L->in = prev;
    L->out = l->train.own_output ? S(t, "t->y%d", L->k) : prev;
    prev = L->out;
    L->chw = l->train.chw;
    L->backward = l->train.backward;
    L->dx = l->train.dx;
    L->dx_if = l->train.backward && !l->train.dx;
    L->ph = l->train.ph;
    L->pw = l->train.pw;
    L->pad = l->op == OP_CONV2D && (L->ph > l->in.h || L->pw > l->in.w);
    L->transposed = l->train.transposed;
    L->pooled = l->train.pooled;
    t->ntl++;
  }
  for (int k = 0; k + 1 < t->ntl; k++)
    if (t->tl[k].l->train.pool)
      t->tl[k].pool = &t->tl[k + 1];
}

/* Whether L's backward function has a dx parameter. */
static bool takes_dx(const TL *L) {
  return L->dx || L->dx_if;
}

/* Opens (open) or closes the `if (dx)` around a dx_if layer's input gradient. */
static void if_dx(T *t, const TL *L, bool open) {
  if (L->dx_if && open)
    em_open(EM, "if (dx)");
  else if (L->dx_if)
    em_close(EM);
}

/* ---- activations ---- */

/* dst = act(src) over `count` floats (softmax: in groups of `group`). */
static void act_forward(T *t, Act act, const char *dst, const char *src, long count, int group) {
  bool same = strcmp(dst, src) == 0;
  switch (act) {
  case ACT_LINEAR:
    if (!same)
      em_line(EM, "memcpy(%s, %s, %ld * sizeof(float));", dst, src, count);
    return;
  case ACT_RELU:
    em_line(EM, "for (int i = 0; i < %ld; i++)", count);
    em_line(EM, "  %s[i] = %s[i] > 0.0f ? %s[i] : 0.0f;", dst, src, src);
    return;
  case ACT_SIGMOID:
    em_line(EM, "for (int i = 0; i < %ld; i++)", count);
    em_line(EM, "  %s[i] = %s_sigmoid(%s[i]);", dst, t->n, src);
    return;
  case ACT_TANH:
    em_line(EM, "for (int i = 0; i < %ld; i++)", count);
    em_line(EM, "  %s[i] = %s_tanh(%s[i]);", dst, t->n, src);
    return;
  case ACT_SOFTMAX:
    em_open(EM, "for (int p = 0; p < %ld; p++)", count / group);
    em_line(EM, "const float *u = %s + p * %d;", src, group);
    em_line(EM, "float *v = %s + p * %d, mx = u[0], s = 0.0f;", dst, group);
    em_line(EM, "for (int i = 1; i < %d; i++)", group);
    em_line(EM, "  mx = u[i] > mx ? u[i] : mx;");
    em_open(EM, "for (int i = 0; i < %d; i++)", group);
    em_line(EM, "v[i] = expf(u[i] - mx);");
    em_line(EM, "s += v[i];");
    em_close(EM);
    em_line(EM, "for (int i = 0; i < %d; i++)", group);
    em_line(EM, "  v[i] /= s;");
    em_close(EM);
    return;
  case ACT_COUNT:
    break;
  }
  assert(0);
}

/* dy = act'(y) * dy in place: the gradient before the activation. */
static void act_backward(T *t, Act act, const char *y, const char *dy, long count, int group) {
  switch (act) {
  case ACT_LINEAR:
    return;
  case ACT_RELU:
    em_line(EM, "for (int i = 0; i < %ld; i++)", count);
    em_line(EM, "  %s[i] = %s[i] > 0.0f ? %s[i] : 0.0f;", dy, y, dy);
    return;
  case ACT_SIGMOID:
    em_line(EM, "for (int i = 0; i < %ld; i++)", count);
    em_line(EM, "  %s[i] *= %s[i] * (1.0f - %s[i]);", dy, y, y);
    return;
  case ACT_TANH:
    em_line(EM, "for (int i = 0; i < %ld; i++)", count);
    em_line(EM, "  %s[i] *= 1.0f - %s[i] * %s[i];", dy, y, y);
    return;
  case ACT_SOFTMAX: /* dz = y * (dy - sum(dy * y)) per group */
    em_open(EM, "for (int p = 0; p < %ld; p++)", count / group);
    em_line(EM, "const float *v = %s + p * %d;", y, group);
    em_line(EM, "float *d = %s + p * %d, s = 0.0f;", dy, group);
    em_line(EM, "for (int i = 0; i < %d; i++)", group);
    em_line(EM, "  s += d[i] * v[i];");
    em_line(EM, "for (int i = 0; i < %d; i++)", group);
    em_line(EM, "  d[i] = v[i] * (d[i] - s);");
    em_close(EM);
    return;
  case ACT_COUNT:
    break;
  }
  assert(0);
}

/* ---- tiles of vectors (8 or 16 floats) ---- */

/* Vectors per tile row for n vectors of channels: the largest of 4, 3, 2
   that divides n (of 3, 2 with 16 registers); else (5, 7, 11, ...) 4 or 3,
   whichever leaves the larger remainder, which channel_blocks runs as a
   narrower last block (5 as 3 + 2, not 5 blocks of 1, whose tiles would
   load as much as they compute). */
static int tile_vectors(int n, const EmVec *v) {
  const int most = v->regs >= 32 ? 4 : 3;
  for (int k = most; k > 1; k--)
    if (n % k == 0)
      return k;
  if (n < most)
    return n;
  return most == 3 || n % 4 < n % 3 ? 3 : 4;
}

/* Output pixels (or taps) per tile of `vectors` vectors each: 3/4 of the
   registers as accumulators (24 of AVX-512's 32, 12 of AVX2's 16), leaving
   room for the vectors loaded and one broadcast; at most `most`, at most
   one output row of `width` pixels. */
static int tile_pixels(int vectors, int width, int most, const EmVec *v) {
  int p = v->regs * 3 / 4 / vectors;
  while (p > 1 && p * vectors + vectors + 1 > v->regs)
    p--;
  p = p > most ? most : p;
  return p > width ? width : p;
}

/* "NAME_f8 a0_0 = init0, a0_1 = init1, ...;" for a rows x cols tile: column
   v starts as the vector init<v>, or zero when init is NULL. */
static void tile_declare(T *t, int rows, int cols, const char *init, const EmVec *vec) {
  for (int j = 0; j < rows; j++) {
    const char *line = S(t, "%s_%s", t->n, vec->type);
    for (int v = 0; v < cols; v++) {
      line = S(t, "%s%s a%d_%d", line, v ? "," : "", j, v);
      if (init)
        line = S(t, "%s = %s%d", line, init, v);
    }
    em_line(EM, "%s;", line);
  }
  if (!init)
    for (int j = 0; j < rows; j++)
      for (int v = 0; v < cols; v++)
        em_line(EM, "%s_ZERO(a%d_%d);", t->n, j, v);
}

/* ---- the channel tail ----

   A vectorized dimension N (a conv's output channels F; its input channels C
   for the input gradient) of VW or more (8 or 16 floats a vector) that is not
   a multiple of VW takes ceil(N / VW) vectors, the last one overlapping the
   one before: it starts at channel N - VW, `shift` = VW * ceil(N / VW) - N
   channels before its place.
   Its loads read the tensors in place (no padded copies, nothing read past
   the end). A forward tile stores it whole: the overlapped lanes got the same
   multiply-adds in the same order as in the vector before, so both hold the
   same bits. Tiles that add into memory (weight and input gradients) add
   only its last VW - shift lanes (NAME_ADDTO_TAIL). The tail thus costs one
   vector per tap, as a zero-padded vector would. */

/* Channel offset of vector v of a block of nv vectors whose last vector is
   `shift` channels back. */
static int vec_off(int v, int nv, int shift, const EmVec *vec) {
  return vec->w * v - (v == nv - 1 ? shift : 0);
}

/* Adds tile vector a<j>_<v> into p (a C expression): whole, or its last
   VW - shift lanes when it is the overlapping tail vector. */
static void tile_addto(T *t, const char *p, int j, int v, int nv, int shift, const EmVec *vec) {
  if (v == nv - 1 && shift)
    em_line(EM, "%s_ADDTO_TAIL(%s, a%d_%d, %d);", t->n, p, j, v, shift);
  else
    em_line(EM, "%s_ADDTO%s(%s, a%d_%d);", t->n, vec->op, p, j, v);
}

typedef void BlockBody(T *t, const TL *L, int nv, int shift, const EmVec *v);

/* Runs body over the N channels (N >= 8) in blocks of tile_vectors
   vectors, the block's first channel in the variable `var`: a loop over the
   whole blocks, then, with a tail or a remainder of vectors, the last block
   (narrower, its last vector overlapping) with `var` a constant. The
   vectors are t->v's (16 floats in the AVX-512 half of a function written
   per width) when N has that many channels, else 8 floats. */
static void channel_blocks(T *t, const TL *L, const char *var, int N, BlockBody *body) {
  const EmVec *v = N >= t->v->w ? t->v : &em_vec8;
  const int VW = v->w, vectors = (N + VW - 1) / VW, shift = VW * vectors - N;
  const int nv = tile_vectors(vectors, v);
  const int last = vectors % nv ? vectors % nv : shift ? nv : 0; /* vectors of the last block */
  const int looped = (vectors - last) / nv;
  if (looped > 1) {
    em_open(EM, "for (int %s = 0; %s < %d; %s += %d)", var, var, VW * nv * looped, var, VW * nv);
    body(t, L, nv, 0, v);
    em_close(EM);
  } else if (looped) { /* one block: no loop */
    em_open(EM, "%s", "");
    em_line(EM, "const int %s = 0;", var);
    body(t, L, nv, 0, v);
    em_close(EM);
  }
  if (last) {
    if (shift)
      em_comment(EM, "the last %d channels, the last vector %d channels back", VW * last - shift,
                 shift);
    else
      em_comment(EM, "the last %d channels", VW * last);
    em_open(EM, "%s", "");
    em_line(EM, "const int %s = %d;", var, VW * nv * looped);
    body(t, L, last, shift, v);
    em_close(EM);
  }
}

typedef void LayerFunction(T *t, const TL *L);

/* Writes fn(t, L) once per vector width under #if NAME_VW when `wide` (its
   tiles differ), else once on 8-float vectors. */
static void per_width(T *t, const TL *L, LayerFunction *fn, bool wide) {
  if (!wide) {
    fn(t, L);
    return;
  }
  for (int i = 0; i < 2; i++) {
    em_width_if(EM, t->n, em_widths[i]);
    t->v = em_widths[i];
    fn(t, L);
  }
  em_raw(EM, "#endif");
  t->v = &em_vec8;
}

/* ---- conv2d and dense: what their functions share ---- */

/* "[KH][KW][C][F]" for a conv's weights, "[IN][OUT]" for a dense layer's. */
static const char *weight_dims(T *t, const Layer *l) {
  if (l->op == OP_CONV2D)
    return S(t, "[%d][%d][%d][%d]", l->u.conv.kh, l->u.conv.kw, l->in.c, l->out.c);
  return S(t, "[%d][%d]", (int)shape_size(l->in), l->out.c);
}

/* In the backward function: the gradients dw and db in g, and dy made the
   gradient before the activation (in place). */
static void param_backward_head(T *t, const TL *L) {
  const Layer *l = L->l;
  em_line(EM, "float *restrict dw = g->p + %ld; /* %s */", l->weight_offset, weight_dims(t, l));
  if (l->bias_count)
    em_line(EM, "float *restrict db = g->p + %ld; /* [%d] */", l->bias_offset, l->out.c);
  act_backward(t, L->act, "y", "dy", shape_size(l->out), l->out.c);
  if (L->act == ACT_LINEAR)
    em_line(EM, "(void)y;");
}

/* ---- conv2d ---- */

typedef struct ConvDims {
  int C, F, KH, KW, SH, SW, IH, IW, OH, OW; /* SH, SW: the stride; IH, IW: the padded input */
  bool bias;                                /* false: bias=false, no b or db */
} ConvDims;

static ConvDims conv_dims(const TL *L) {
  const Layer *l = L->l;
  return (ConvDims){.C = l->in.c,
                    .F = l->out.c,
                    .KH = l->u.conv.kh,
                    .KW = l->u.conv.kw,
                    .SH = l->u.conv.sh,
                    .SW = l->u.conv.sw,
                    .IH = L->ph,
                    .IW = L->pw,
                    .OH = l->out.h,
                    .OW = l->out.w,
                    .bias = l->bias_count > 0};
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

static void conv_backward(T *t, const TL *L) {
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
  param_backward_head(t, L);
  if (d.bias) {
    em_line(EM, "for (int p = 0; p < %d; p++)", d.OH * d.OW);
    em_line(EM, "  for (int f = 0; f < %d; f++)", d.F);
    em_line(EM, "    db[f] += dy[p * %d + f];", d.F);
  }
  if (d.F >= 8 && d.KH * d.KW * d.C <= DW_WHOLE) {
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

/* ---- dense ---- */

static void dense_backward(T *t, const TL *L) {
  const Layer *l = L->l;
  const int IN = (int)shape_size(l->in), OUT = l->out.c;
  const char *n = t->n;
  const char *w = emit_param_ref(t->em, t->net, l, 0, "m");
  em_comment(EM, "%s\nbackward from dy [%d] (made the pre-activation gradient)", emit_quote(EM, l),
             OUT);
  em_open_fn(EM,
             "static void %s(const %s_model *m, %s_grads *g, const float *restrict x, const float "
             "*restrict y, float *restrict dy%s)",
             L->bfn, n, n, takes_dx(L) ? ", float *restrict dx" : "");
  param_backward_head(t, L);
  if (l->bias_count) {
    em_line(EM, "for (int o = 0; o < %d; o++)", OUT);
    em_line(EM, "  db[o] += dy[o];");
  }
  em_open(EM, "for (int i = 0; i < %d; i++)", IN);
  em_line(EM, "const float s = x[i];");
  em_line(EM, "for (int o = 0; o < %d; o++)", OUT);
  em_line(EM, "  dw[i * %d + o] += s * dy[o];", OUT);
  em_close(EM);
  if_dx(t, L, true);
  if (!takes_dx(L)) {
    em_line(EM, "(void)m;");
  } else if (OUT % 8 == 0 && OUT <= 128) {
    int NV = OUT / 8;
    em_line(EM, "const float *restrict w = %s;", w);
    for (int v = 0; v < NV; v++) {
      em_line(EM, "%s_f8 d%d;", n, v);
      em_line(EM, "%s_LOAD(d%d, dy + %d);", n, v, 8 * v);
    }
    em_open(EM, "for (int i = 0; i < %d; i++)", IN);
    em_line(EM, "const float *wi = w + i * %d;", OUT);
    em_line(EM, "%s_f8 a;", n);
    em_line(EM, "%s_ZERO(a);", n);
    for (int v = 0; v < NV; v++) {
      em_line(EM, "%s_f8 w%d;", n, v);
      em_line(EM, "%s_LOAD(w%d, wi + %d);", n, v, 8 * v);
      em_line(EM, "%s_MAC(a, w%d, d%d);", n, v, v);
    }
    em_line(EM, "dx[i] = %s_HSUM(a);", n);
    em_close(EM);
  } else {
    em_line(EM, "const float *restrict w = %s;", w);
    em_open(EM, "for (int i = 0; i < %d; i++)", IN);
    em_line(EM, "float s = 0.0f;");
    em_line(EM, "for (int o = 0; o < %d; o++)", OUT);
    em_line(EM, "  s += w[i * %d + o] * dy[o];", OUT);
    em_line(EM, "dx[i] = s;");
    em_close(EM);
  }
  if_dx(t, L, false);
  em_close(EM);
  em_blank(EM);
}

/* ---- pooling ---- */

/* Maxpool sends each window's gradient to its first maximum in row-major
   order: `r` holds what is still to be given, and the first match takes it. */
static void pool_backward(T *t, const TL *L) {
  const Layer *l = L->l;
  const int IW = l->in.w, C = l->in.c, OH = l->out.h, OW = l->out.w;
  const int KH = l->u.pool.kh, KW = l->u.pool.kw, SH = l->u.pool.sh, SW = l->u.pool.sw;
  bool max = l->op == OP_MAXPOOL;
  em_comment(EM, "%s\nbackward", emit_quote(EM, l));
  em_open_fn(EM,
             "static void %s(const float *restrict x, const float *restrict y, const float "
             "*restrict dy, float *restrict dx)",
             L->bfn);
  if (!max)
    em_line(EM, "(void)x;");
  if (!max)
    em_line(EM, "(void)y;");
  em_line(EM, "memset(dx, 0, %ld * sizeof(float));", shape_size(l->in));
  em_open(EM, "for (int py = 0; py < %d; py++)", OH);
  em_open(EM, "for (int px = 0; px < %d; px++)", OW);
  em_line(EM, "const long o0 = %s;", LIN(0, "py", (long)SH * IW * C, "px", (long)SW * C));
  em_line(EM, "const float *dp = dy + %s;", LIN(0, "py", (long)OW * C, "px", (long)C));
  if (max) {
    em_line(EM, "const float *yp = y + %s;", LIN(0, "py", (long)OW * C, "px", (long)C));
    em_line(EM, "float r[%d];", C);
    em_line(EM, "for (int c = 0; c < %d; c++)", C);
    em_line(EM, "  r[c] = dp[c];");
    em_open(EM, "for (int k = 0; k < %d; k++)", KH * KW);
    em_line(EM, "const long o = o0 + %s;",
            LIN(0, S(t, "k / %d", KW), (long)IW * C, S(t, "k %% %d", KW), (long)C));
    em_open(EM, "for (int c = 0; c < %d; c++)", C);
    em_line(EM, "const float h = x[o + c] == yp[c] ? r[c] : 0.0f;");
    em_line(EM, "dx[o + c] += h;");
    em_line(EM, "r[c] -= h;");
    em_close(EM);
    em_close(EM);
  } else {
    em_open(EM, "for (int k = 0; k < %d; k++)", KH * KW);
    em_line(EM, "const long o = o0 + %s;",
            LIN(0, S(t, "k / %d", KW), (long)IW * C, S(t, "k %% %d", KW), (long)C));
    em_line(EM, "for (int c = 0; c < %d; c++)", C);
    em_line(EM, "  dx[o + c] += dp[c] / %s;", FL(KH * KW));
    em_close(EM);
  }
  em_close(EM);
  em_close(EM);
  em_close(EM);
  em_blank(EM);
}

static void gap_backward(T *t, const TL *L) {
  const Layer *l = L->l;
  const int HW = l->in.h * l->in.w, C = l->in.c;
  em_comment(EM, "%s\nbackward", emit_quote(EM, l));
  em_open_fn(EM, "static void %s(const float *restrict dy, float *restrict dx)", L->bfn);
  em_line(EM, "for (int p = 0; p < %d; p++)", HW);
  em_line(EM, "  for (int c = 0; c < %d; c++)", C);
  em_line(EM, "    dx[p * %d + c] = dy[c] / %s;", C, FL(HW));
  em_close(EM);
  em_blank(EM);
}

/* ---- dropout and activation layers ---- */

/* Inverted dropout: element i of the image keyed `key` survives when a
   splitmix64 hash of key + i * golden ratio clears the rate, and is scaled
   by 1 / (1 - rate); the mask is kept for the backward pass. */
static void dropout_forward(T *t, const TL *L) {
  const Layer *l = L->l;
  const long N = shape_size(l->in);
  double rate = l->u.dropout.rate;
  unsigned long long threshold = (unsigned long long)llround(rate * 16777216.0);
  em_comment(EM, "%s\n[%ld], mask kept", emit_quote(EM, l), N);
  em_open_fn(EM,
             "static void %s_train_forward(const float *restrict x, float *restrict y, float "
             "*restrict mask, uint64_t key)",
             L->fn);
  if (threshold == 0) { /* a rate this small keeps everything: no hash to test */
    em_line(EM, "(void)key;");
    em_open(EM, "for (int i = 0; i < %ld; i++)", N);
    em_line(EM, "mask[i] = 1.0f;");
    em_line(EM, "y[i] = x[i];");
    em_close(EM);
    em_close(EM);
    em_blank(EM);
    return;
  }
  em_open(EM, "for (int i = 0; i < %ld; i++)", N);
  em_line(EM, "uint64_t z = key + (uint64_t)i * UINT64_C(0x9E3779B97F4A7C15);");
  em_line(EM, "z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);");
  em_line(EM, "z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);");
  em_line(EM, "z ^= z >> 31;");
  em_line(EM, "mask[i] = (z >> 40) >= %lluu ? %s : 0.0f;", threshold,
          FL(rate < 1 ? 1.0 / (1.0 - rate) : 0.0));
  em_line(EM, "y[i] = x[i] * mask[i];");
  em_close(EM);
  em_close(EM);
  em_blank(EM);
}

static void act_layer_backward(T *t, const TL *L) {
  const Layer *l = L->l;
  const long N = shape_size(l->out);
  em_comment(EM, "%s\nbackward, in place", emit_quote(EM, l));
  em_open_fn(EM, "static void %s(const float *restrict y, float *restrict dy)", L->bfn);
  act_backward(t, L->act, "y", "dy", N, l->out.c);
  if (L->act == ACT_LINEAR)
    em_line(EM, "(void)y;");
  if (L->act == ACT_LINEAR)
    em_line(EM, "(void)dy;");
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
  conv_pool_dw(t, &d, "nw");
  em_close(EM); /* w0 */
  em_close(EM);
  em_blank(EM);
}

/* Layer L's training functions: its forward function where inference's
   does not serve, its backward function, and what they need. */
static void layer_functions(T *t, const TL *L) {
  const Layer *l = L->l;
  if (L->variant)
    emit_train_forward(EM, t->net, l, L->ffn, L->act);
  const bool wide_f = l->out.c >= 16, wide_c = L->transposed && l->in.c >= 16;
  switch (l->op) {
  case OP_CONV2D:
    if (L->pad && takes_dx(L))
      conv_unpad(t, L);
    if (L->pool)
      per_width(t, L, conv_pool_backward, wide_c);
    else if (L->backward)
      per_width(t, L, conv_backward, wide_f || wide_c);
    return;
  case OP_DENSE:
    if (L->backward)
      dense_backward(t, L);
    return;
  case OP_MAXPOOL:
  case OP_AVGPOOL:
    if (L->backward && !L->pooled)
      pool_backward(t, L);
    return;
  case OP_GLOBALAVGPOOL:
    gap_backward(t, L);
    return;
  case OP_FLATTEN:
    return;
  case OP_DROPOUT:
    dropout_forward(t, L);
    return;
  case OP_ACT:
    if (L->backward)
      act_layer_backward(t, L);
    return;
  case OP_COUNT:
    break;
  }
  assert(0);
}

/* ---- loss ---- */

static void loss_function(T *t) {
  const Net *net = t->net;
  const int K = (int)shape_size(net->output), G = net->output.c;
  const Loss loss = net->train.loss;
  const bool ce = loss == LOSS_SPARSE_CE || loss == LOSS_CE;
  em_line(EM, "/* One sample's %s on %s outputs: returns the loss,", loss_words[loss],
          act_words[t->out_act]);
  em_line(EM, "   writes y = %s(z) and dz = weight * dloss/dz. */", act_words[t->out_act]);
  em_open_fn(EM,
             "static double %s_loss(const float *restrict z, const float *restrict target, float "
             "weight, float *restrict y, float *restrict dz)",
             t->n);
  em_line(EM, "double loss = 0.0;");
  if (ce && t->out_act == ACT_SOFTMAX) {
    /* Fused: log-softmax by max subtraction; dz = weight * (sum(t) * p - t). */
    em_open(EM, "for (int p = 0; p < %d; p++)", K / G);
    em_line(EM, "const float *u = z + p * %d, *tp = target + p * %d;", G, G);
    em_line(EM, "float *v = y + p * %d, *d = dz + p * %d, mx = u[0], s = 0.0f, tsum = 0.0f;", G, G);
    em_line(EM, "for (int i = 1; i < %d; i++)", G);
    em_line(EM, "  mx = u[i] > mx ? u[i] : mx;");
    em_open(EM, "for (int i = 0; i < %d; i++)", G);
    em_line(EM, "v[i] = expf(u[i] - mx);");
    em_line(EM, "s += v[i];");
    em_close(EM);
    em_line(EM, "const float lse = mx + logf(s);");
    em_open(EM, "for (int i = 0; i < %d; i++)", G);
    em_line(EM, "v[i] /= s;");
    em_line(EM, "tsum += tp[i];");
    em_line(EM, "loss += (double)tp[i] * ((double)lse - u[i]);");
    em_close(EM);
    em_line(EM, "for (int i = 0; i < %d; i++)", G);
    em_line(EM, "  d[i] = weight * (tsum * v[i] - tp[i]);");
    em_close(EM);
    em_line(EM, "return loss;");
  } else if (loss == LOSS_BCE && t->out_act == ACT_SIGMOID) {
    /* Fused, stable in z: max(z, 0) - z t + log(1 + exp(-|z|)). */
    em_open(EM, "for (int i = 0; i < %d; i++)", K);
    em_line(EM, "const double u = z[i];");
    em_line(EM, "y[i] = %s_sigmoid(z[i]);", t->n);
    em_line(EM, "loss += (u > 0 ? u : 0) - u * target[i] + log1p(exp(-fabs(u)));");
    em_line(EM, "dz[i] = weight * (y[i] - target[i]) / %s;", FL(K));
    em_close(EM);
    em_line(EM, "return loss / %d;", K);
  } else {
    act_forward(t, t->out_act, "y", "z", K, G);
    em_open(EM, "for (int i = 0; i < %d; i++)", K);
    switch (loss) {
    case LOSS_MSE:
      em_line(EM, "const float e = y[i] - target[i];");
      em_line(EM, "loss += (double)e * e;");
      em_line(EM, "dz[i] = weight * 2.0f * e / %s;", FL(K));
      break;
    case LOSS_BCE: /* as PyTorch's BCELoss: logs clamped at -100 */
      em_line(EM, "const double u = y[i];");
      em_line(EM, "loss -= target[i] * fmax(log(u), -100.0) + (1.0 - target[i]) * fmax(log(1.0 - "
                  "u), -100.0);");
      em_line(EM, "const float q = y[i] * (1.0f - y[i]);");
      em_line(EM, "dz[i] = weight * (y[i] - target[i]) / (q > 1e-12f ? q : 1e-12f) / %s;", FL(K));
      break;
    default: /* cross-entropy on outputs that are not a softmax */
      em_line(EM, "const float u = y[i] > 1e-30f ? y[i] : 1e-30f;");
      em_line(EM, "if (target[i] != 0.0f)");
      em_line(EM, "  loss -= target[i] * log(u);");
      em_line(EM, "dz[i] = -weight * target[i] / u;");
      break;
    }
    em_close(EM);
    act_backward(t, t->out_act, "y", "dz", K, G);
    if (loss == LOSS_MSE || loss == LOSS_BCE)
      em_line(EM, "return loss / %d;", K);
    else
      em_line(EM, "return loss;");
  }
  em_close(EM);
  em_blank(EM);
}

/* ---- NAME_accumulate ---- */

/* Whether a conv of the layers tl (t->ntl of them) transposes its weights. */
static bool any_transposed(const T *t, const TL *tl) {
  for (int k = 0; k < t->ntl; k++)
    if (tl[k].transposed)
      return true;
  return false;
}

static void transpose_function(T *t) {
  if (!any_transposed(t, t->tl))
    return;
  em_line(EM, "/* Conv weights [KH][KW][C][F] -> [KH][KW][F][C] for the input gradients. */");
  em_open_fn(EM, "static void %s_transpose(const %s_model *m, struct %s_train_work *t)", t->n, t->n,
             t->n);
  for (int k = 0; k < t->ntl; k++) {
    const TL *L = &t->tl[k];
    if (!L->transposed)
      continue;
    const ConvDims d = conv_dims(L);
    const char *w = emit_param_ref(t->em, t->net, L->l, 0, "m");
    em_open(EM, "%s", "");
    em_line(EM, "const float *restrict w = %s;", w);
    em_line(EM, "for (int k = 0; k < %d; k++)", d.KH * d.KW);
    em_line(EM, "  for (int c = 0; c < %d; c++)", d.C);
    em_line(EM, "    for (int f = 0; f < %d; f++)", d.F);
    em_line(EM, "      t->wt%d[(k * %d + f) * %d + c] = w[(k * %d + c) * %d + f];", k, d.F, d.C,
            d.C, d.F);
    em_close(EM);
  }
  em_close(EM);
  em_blank(EM);
}

static const char *in_of(T *t, const TL *L) {
  return L->pad ? S(t, "t->xp%d", L->k) : L->in;
}

static void forward_call(T *t, const TL *L) {
  const Layer *l = L->l;
  switch (l->op) {
  case OP_CONV2D:
    if (L->pad)
      em_line(EM, "%s_zero_pad(%s, t->xp%d);", L->fn, L->in, L->k);
    em_line(EM, "%s_forward(m, %s, %s);", L->ffn, in_of(t, L), L->out);
    return;
  case OP_DENSE:
    em_line(EM, "%s_forward(m, %s, %s);", L->ffn, L->in, L->out);
    return;
  case OP_FLATTEN:
    if (L->chw) /* to C, H, W order, as in inference */
      em_line(EM, "%s_forward(%s, %s);", L->fn, L->in, L->out);
    else if (strcmp(L->in, L->out))
      em_line(EM, "memcpy(%s, %s, %ld * sizeof(float));", L->out, L->in, shape_size(l->out));
    return;
  case OP_DROPOUT:
    em_line(EM, "%s_train_forward(%s, %s, t->mask%d, key + (uint64_t)i);", L->fn, L->in, L->out,
            L->k);
    return;
  default:
    em_line(EM, "%s_forward(%s, %s);", L->ffn, L->in, L->out);
    return;
  }
}

/* The backward call of L with dy in t->g[*cur]; flips *cur when it writes dx
   into the other buffer. */
static void backward_call(T *t, const TL *L, int *cur) {
  const Layer *l = L->l;
  int c = *cur;
  const char *dx = S(t, "t->g[%d]", 1 - c);
  switch (l->op) {
  case OP_CONV2D: {
    const char *wt = L->transposed ? S(t, "t->wt%d, ", L->k) : "";
    if (L->pool)
      em_call(EM, "%s(m, g, %s%s, %s, %s, t->g[%d], t->dwt%d%s%s);", L->bfn, wt, in_of(t, L),
              L->out, L->pool->out, c, L->k, takes_dx(L) ? ", " : "", L->dx ? dx : "NULL");
    else
      em_call(EM, "%s(m, g, %s%s, %s, t->g[%d]%s%s);", L->bfn, wt, in_of(t, L), L->out, c,
              takes_dx(L) ? ", " : "", L->dx ? dx : "NULL");
    if (L->dx && L->pad)
      em_line(EM, "%s_unpad(%s);", L->fn, dx);
    break;
  }
  case OP_DENSE:
    em_call(EM, "%s(m, g, %s, %s, t->g[%d]%s%s);", L->bfn, L->in, L->out, c,
            takes_dx(L) ? ", " : "", L->dx ? dx : "NULL");
    break;
  case OP_MAXPOOL:
  case OP_AVGPOOL:
    if (L->pooled) /* done by the conv before it */
      return;
    em_call(EM, "%s(%s, %s, t->g[%d], %s);", L->bfn, L->in, L->out, c, dx);
    break;
  case OP_GLOBALAVGPOOL:
    em_call(EM, "%s(t->g[%d], %s);", L->bfn, c, dx);
    break;
  case OP_FLATTEN:
    if (!L->chw)
      return; /* the same floats */
    assert(L->dx);
    em_line(EM, "for (int p = 0; p < %d; p++) /* %s: back to H, W, C order */", l->in.h * l->in.w,
            l->text);
    em_line(EM, "  for (int c = 0; c < %d; c++)", l->in.c);
    em_line(EM, "    %s[p * %d + c] = t->g[%d][c * %d + p];", dx, l->in.c, c, l->in.h * l->in.w);
    break;
  case OP_DROPOUT:
    em_line(EM, "for (int j = 0; j < %ld; j++)", shape_size(l->out));
    em_line(EM, "  t->g[%d][j] *= t->mask%d[j];", c, L->k);
    return;
  case OP_ACT:
    em_call(EM, "%s(%s, t->g[%d]);", L->bfn, L->out, c);
    return;
  case OP_COUNT:
    assert(0);
  }
  if (L->dx)
    *cur = 1 - c;
}

/* The parameters of accumulate (const model) or train_step. */
static const char *params_of(T *t, bool const_model) {
  return S(t,
           "%s%s_model *m, %s_work *w, %s_grads *g, const float *x, const float *target, "
           "const float *weight, int n, uint64_t key",
           const_model ? "const " : "", t->n, t->n, t->n);
}

/* The transposed weight gradients of the convs that do their maxpool's
   backward (conv_pool_backward): zeroed before the images, folded into g
   after them. */
static void dwt_zero(T *t, const TL *tl) {
  for (int k = 0; k < t->ntl; k++)
    if (tl[k].pool)
      em_line(EM, "memset(t->dwt%d, 0, sizeof t->dwt%d);", k, k);
}

static void dwt_fold(T *t, const TL *tl) {
  for (int k = 0; k < t->ntl; k++) {
    const TL *L = &tl[k];
    if (!L->pool)
      continue;
    const ConvDims d = conv_dims(L);
    const int J = d.KH * d.KW * d.C;
    em_line(EM, "/* %s: the weight gradient, [F][KH][KW][C] -> [KH][KW][C][F] */", L->l->text);
    em_line(EM, "for (int j = 0; j < %d; j++)", J);
    em_line(EM, "  for (int f = 0; f < %d; f++)", d.F);
    em_line(EM, "    g->p[%ld + j * %d + f] += t->dwt%d[f * %d + j];", L->l->weight_offset, d.F, k,
            J);
  }
}

static void accumulate_function(T *t) {
  const char *n = t->n;
  const char *acc_params = params_of(t, true);
  const int K = (int)shape_size(t->net->output);
  const TL *last = &t->tl[t->ntl - 1];
  bool dropout = false;
  for (int k = 0; k < t->ntl; k++)
    dropout |= t->tl[k].l->op == OP_DROPOUT;
  em_open_fn(EM, "double %s_accumulate_y(%s, float *y)", n, acc_params);
  em_line(EM, "struct %s_train_work *t = &w->train;", n);
  if (!t->net->param_count)
    em_line(EM, "(void)m, (void)g;");
  em_line(EM, "double loss = 0.0;");
  if (!dropout)
    em_line(EM, "(void)key;");
  if (any_transposed(t, t->tl))
    em_line(EM, "%s_transpose(m, t);", n);
  dwt_zero(t, t->tl);
  em_open(EM, "for (int i = 0; i < n; i++)");
  em_line(EM, "const float *xi = x + (long)i * %s_INPUT_SIZE;", n);
  em_line(EM, "const float wi = weight ? weight[i] : 1.0f;");
  for (int k = 0; k < t->ntl; k++)
    forward_call(t, &t->tl[k]);
  em_line(EM, "loss += wi * %s_loss(%s, target + (long)i * %d, wi, t->out, t->g[0]);", n, last->out,
          K);
  em_line(EM, "if (y)");
  em_line(EM, "  memcpy(y + (long)i * %d, t->out, %d * sizeof(float));", K, K);
  int cur = 0;
  for (int k = t->ntl - 1; k >= 0; k--)
    if (t->tl[k].backward)
      backward_call(t, &t->tl[k], &cur);
  em_close(EM);
  dwt_fold(t, t->tl);
  em_line(EM, "return loss;");
  em_close(EM);
  em_blank(EM);
  em_open_fn(EM, "double %s_accumulate(%s)", n, acc_params);
  em_line(EM, "  return %s_accumulate_y(m, w, g, x, target, weight, n, key, NULL);", n);
  em_close(EM);
  em_blank(EM);
}

/* ---- NAME_explain: the gradient of one class score ---- */

/* Grad-CAM's layer: the last conv among the TLs, or -1. */
static int cam_index(const T *t) {
  int cam = -1;
  for (int k = 0; k < t->ntl; k++)
    if (t->tl[k].l->op == OP_CONV2D)
      cam = k;
  return cam;
}

/* The layers as NAME_explain runs them, a copy of the training plan
   (malloc'd): every layer runs backward and computes its input gradient,
   down to the image. Where that changes a layer's backward function (the
   Grad-CAM conv needs the gradient of its own output, which the fused
   conv + maxpool backward never forms), the layer gets a variant named
   fn_explain_backward, emitted by the same code as the training one. */
static TL *explain_plan(T *t, int cam) {
  TL *x = xcalloc((size_t)t->ntl + 1, sizeof *x);
  memcpy(x, t->tl, (size_t)t->ntl * sizeof *x);
  for (int k = 0; k < t->ntl; k++) {
    const TL *L = &t->tl[k];
    TL *X = &x[k];
    bool unfuse = k == cam && L->pool;
    if (L->pool)
      X->pool = unfuse ? NULL : &x[k + 1];
    if (unfuse)
      x[k + 1].pooled = false;
    if (unfuse)
      X->bfn = S(t, "%s_explain_backward", X->fn);
    X->backward = X->dx = true;
  }
  return x;
}

/* The backward functions NAME_explain needs that training did not emit. */
static void explain_backward_functions(T *t, const TL *x) {
  for (int k = 0; k < t->ntl; k++) {
    const TL *L = &t->tl[k], *X = &x[k];
    switch (L->l->op) {
    case OP_CONV2D:
      if (strcmp(X->bfn, L->bfn) == 0)
        break;
      if (X->pool)
        conv_pool_backward(t, X);
      else
        conv_backward(t, X);
      break;
    case OP_DENSE:
      if (strcmp(X->bfn, L->bfn) != 0)
        dense_backward(t, X);
      break;
    case OP_MAXPOOL:
    case OP_AVGPOOL:
      if (!X->pooled && (!L->backward || L->pooled))
        pool_backward(t, X);
      break;
    case OP_ACT:
      if (!L->backward)
        act_layer_backward(t, X);
      break;
    default: /* globalavgpool's backward always exists; the rest work in place */
      break;
    }
  }
}

static void explain_function(T *t, const TL *x, int cam) {
  const char *n = t->n;
  const int K = (int)shape_size(t->net->output), G = t->net->output.c;
  const TL *last = &x[t->ntl - 1];
  em_open_fn(EM,
             "float %s_explain(const %s_model *m, %s_work *w, %s_grads *g, const float *x, int "
             "cls, float *y, float *dx, float *cam_act, float *cam_grad)",
             n, n, n, n);
  em_line(EM, "struct %s_train_work *t = &w->train;", n);
  em_line(EM, "const float *xi = x;");
  if (!t->net->param_count)
    em_line(EM, "(void)m;");
  if (cam < 0)
    em_line(EM, "(void)cam_act, (void)cam_grad;");
  em_line(EM, "if (cls < 0 || cls >= %d)", K);
  em_line(EM, "  return 0.0f;");
  em_line(EM, "%s_grads_zero(g);", n);
  if (any_transposed(t, x))
    em_line(EM, "%s_transpose(m, t);", n);
  dwt_zero(t, x);
  for (int k = 0; k < t->ntl; k++) {
    const TL *X = &x[k];
    if (X->l->op == OP_DROPOUT) { /* the identity, as at inference */
      const long N = shape_size(X->l->out);
      em_line(EM, "for (int j = 0; j < %ld; j++)", N);
      em_line(EM, "  t->mask%d[j] = 1.0f;", k);
      em_line(EM, "memcpy(%s, %s, %ld * sizeof(float)); /* %s */", X->out, X->in, N, X->l->text);
    } else {
      forward_call(t, X);
    }
  }
  em_line(EM, "const float score = %s[cls];", last->out);
  em_open(EM, "if (y)");
  act_forward(t, t->out_act, "y", last->out, K, G);
  em_close(EM);
  em_line(EM, "memset(t->g[0], 0, %d * sizeof(float));", K);
  em_line(EM, "t->g[0][cls] = 1.0f;");
  int cur = 0;
  for (int k = t->ntl - 1; k >= 0; k--) {
    if (k == cam) {
      const long N = shape_size(x[k].l->out);
      em_line(EM, "if (cam_act)");
      em_line(EM, "  memcpy(cam_act, %s, %ld * sizeof(float));", x[k].out, N);
      em_line(EM, "if (cam_grad)");
      em_line(EM, "  memcpy(cam_grad, t->g[%d], %ld * sizeof(float));", cur, N);
    }
    backward_call(t, &x[k], &cur);
  }
  dwt_fold(t, x);
  em_line(EM, "if (dx)");
  em_line(EM, "  memcpy(dx, t->g[%d], %s_INPUT_SIZE * sizeof(float));", cur, n);
  em_line(EM, "return score;");
  em_close(EM);
  em_blank(EM);
}

static void explain_functions(T *t) {
  int cam = cam_index(t);
  TL *x = explain_plan(t, cam);
  explain_backward_functions(t, x);
  explain_function(t, x, cam);
  free(x);
}

/* ---- the optimizer ---- */

/* NAME_adam or NAME_sgd: one step on n parameters p from their gradients
   g (times scale) and state s0 (s1); NAME_update runs it on each tensor. */
static void step_function(T *t) {
  const TrainConfig *tc = &t->net->train;
  const char *n = t->n;
  const bool adam = tc->optimizer == OPT_ADAM, wd = tc->weight_decay != 0;
  const char *decay = wd ? S(t, " + %s * ", FL(tc->weight_decay)) : "";
  if (adam) {
    em_comment(EM,
               "adam (lr=%g in the .cnn file) beta1=%g beta2=%g eps=%g weight_decay=%g, on the\n"
               "gradient scale * g, at the learning rate lr of the step:\n"
               "g += weight_decay * p; m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;\n"
               "p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps), with c1 = 1 - b1^t\n"
               "and c2 = 1 - b2^t.",
               tc->lr, tc->beta1, tc->beta2, tc->eps, tc->weight_decay);
    em_open_fn(EM,
               "static void %s_adam(float *restrict p, const float *restrict g, "
               "float *restrict s0, float *restrict s1, long n, float scale, float lr, float c1, "
               "float c2)",
               n);
    em_line(EM, "long i = 0;");
    /* sqrtf is not vectorized while it may set errno: spell out the vectors */
    em_raw(EM, "#ifdef %s_SQRT", n);
    em_open(EM, "for (; i + 8 <= n; i += 8)");
    em_line(EM, "%s_f8 gv, pv, m0, m1;", n);
    em_line(EM, "%s_LOAD(gv, g + i);", n);
    em_line(EM, "%s_LOAD(pv, p + i);", n);
    em_line(EM, "%s_LOAD(m0, s0 + i);", n);
    em_line(EM, "%s_LOAD(m1, s1 + i);", n);
    em_line(EM, "gv = scale * gv%s%s;", decay, wd ? "pv" : "");
    em_line(EM, "m0 = %s * m0 + %s * gv;", FL(tc->beta1), FL(1.0 - tc->beta1));
    em_line(EM, "m1 = %s * m1 + %s * gv * gv;", FL(tc->beta2), FL(1.0 - tc->beta2));
    em_line(EM, "pv -= lr * (m0 / c1) / (%s_SQRT(m1 / c2) + %s);", n, FL(tc->eps));
    em_line(EM, "%s_STORE(p + i, pv);", n);
    em_line(EM, "%s_STORE(s0 + i, m0);", n);
    em_line(EM, "%s_STORE(s1 + i, m1);", n);
    em_close(EM);
    em_raw(EM, "#endif");
    em_open(EM, "for (; i < n; i++)");
    em_line(EM, "const float gi = scale * g[i]%s%s;", decay, wd ? "p[i]" : "");
    em_line(EM, "s0[i] = %s * s0[i] + %s * gi;", FL(tc->beta1), FL(1.0 - tc->beta1));
    em_line(EM, "s1[i] = %s * s1[i] + %s * gi * gi;", FL(tc->beta2), FL(1.0 - tc->beta2));
    em_line(EM, "p[i] -= lr * (s0[i] / c1) / (sqrtf(s1[i] / c2) + %s);", FL(tc->eps));
    em_close(EM);
    em_close(EM);
    em_blank(EM);
    return;
  }
  em_comment(EM,
             "sgd (lr=%g in the .cnn file) momentum=%g%s weight_decay=%g, on the gradient\n"
             "scale * g, at the learning rate lr of the step:\n%s",
             tc->lr, tc->momentum, tc->nesterov ? " nesterov" : "", tc->weight_decay,
             !t->slots ? "g += weight_decay * p; p -= lr * g."
             : tc->nesterov
                 ? "g += weight_decay * p; v = momentum v + g; p -= lr * (g + momentum v)."
                 : "g += weight_decay * p; v = momentum v + g; p -= lr * v.");
  em_open_fn(
      EM,
      "static void %s_sgd(float *restrict p, const float *restrict g, %slong n, float scale, "
      "float lr)",
      n, t->slots ? "float *restrict s0, " : "");
  em_open(EM, "for (long i = 0; i < n; i++)");
  em_line(EM, "const float gi = scale * g[i]%s%s;", decay, wd ? "p[i]" : "");
  if (t->slots) {
    em_line(EM, "s0[i] = %s * s0[i] + gi;", FL(tc->momentum));
    if (tc->nesterov)
      em_line(EM, "p[i] -= lr * (gi + %s * s0[i]);", FL(tc->momentum));
    else
      em_line(EM, "p[i] -= lr * s0[i];");
  } else {
    em_line(EM, "p[i] -= lr * gi;");
  }
  em_close(EM);
  em_close(EM);
  em_blank(EM);
}

static void update_function(T *t) {
  const Net *net = t->net;
  const TrainConfig *tc = &net->train;
  const char *n = t->n;
  const bool adam = tc->optimizer == OPT_ADAM;
  if (net->param_count)
    step_function(t);
  em_open(EM, "void %s_update(%s_model *m, const %s_grads *g, float scale, float lr)", n, n, n);
  em_line(EM, "const uint64_t step = ++m->step;");
  if (!net->param_count) { /* a network without parameters */
    em_line(EM, "(void)step, (void)g, (void)scale, (void)lr;");
  } else {
    if (adam) {
      em_line(EM, "const float c1 = (float)(1.0 - pow(%.17g, (double)step));", tc->beta1);
      em_line(EM, "const float c2 = (float)(1.0 - pow(%.17g, (double)step));", tc->beta2);
    } else {
      em_line(EM, "(void)step;");
    }
    const char *state = adam       ? "m->opt[0] + at, m->opt[1] + at, "
                        : t->slots ? "m->opt[0] + at, "
                                   : "";
    emit_tensor_loop(EM, net,
                     S(t,
                       "const long at = t->offset, count = (long)t->o * t->c * t->k;\n"
                       "%s_%s((float *)((char *)m + t->at), g->p + at, %scount, scale, lr%s);",
                       n, adam ? "adam" : "sgd", state, adam ? ", c1, c2" : ""));
  }
  em_close(EM);
  em_blank(EM);
  em_open_fn(EM, "float %s_train_step(%s, float lr)", n, params_of(t, false));
  em_line(EM, "double wsum = 0.0;");
  em_line(EM, "for (int i = 0; i < n; i++)");
  em_line(EM, "  wsum += weight ? weight[i] : 1.0f;");
  em_line(EM, "%s_grads_zero(g);", n);
  em_line(EM, "const double loss = %s_accumulate(m, w, g, x, target, weight, n, key);", n);
  em_line(EM, "if (wsum > 0.0)");
  em_line(EM, "  %s_update(m, g, (float)(1.0 / wsum), lr);", n);
  em_line(EM, "return wsum > 0.0 ? (float)(loss / wsum) : 0.0f;");
  em_close(EM);
  em_blank(EM);
}

/* ---- gradients and optimizer state in PyTorch's layout ---- */

/* NAME_store_opt (store) or NAME_load_opt: the optimizer state between the
   model (internal layout) and `state` (PyTorch layout), and the step count. */
static void opt_state_function(T *t, bool store) {
  const char *n = t->n;
  if (store)
    em_open(EM, "void %s_store_opt(const %s_model *m, float *state, uint64_t *step)", n, n);
  else
    em_open(EM, "void %s_load_opt(%s_model *m, const float *state, uint64_t step)", n, n);
  if (t->slots && t->net->param_count) {
    em_open(EM, "for (int s = 0; s < %s_OPT_SLOTS; s++)", n);
    emit_tensor_loop(EM, t->net,
                     store ? S(t,
                               "%s_permute(t, state + s * %s_PARAM_COUNT + t->offset, "
                               "m->opt[s] + t->offset, 1);",
                               n, n)
                           : S(t,
                               "%s_permute(t, m->opt[s] + t->offset, "
                               "state + s * %s_PARAM_COUNT + t->offset, 0);",
                               n, n));
    em_close(EM);
  } else {
    em_line(EM, "(void)state;");
  }
  em_line(EM, "%s", store ? "*step = m->step;" : "m->step = step;");
  em_close(EM);
  em_blank(EM);
}

static void state_functions(T *t) {
  const char *n = t->n;
  em_line(EM, "void %s_grads_zero(%s_grads *g) { memset(g, 0, sizeof *g); }", n, n);
  em_blank(EM);
  em_open(EM, "void %s_grads_add(%s_grads *restrict into, const %s_grads *restrict g)", n, n, n);
  em_line(EM, "for (int i = 0; i < %s_PARAM_COUNT; i++)", n);
  em_line(EM, "  into->p[i] += g->p[i];");
  em_close(EM);
  em_blank(EM);
  em_open(EM, "void %s_grads_store(const %s_grads *g, float *flat)", n, n);
  if (t->net->param_count)
    emit_tensor_loop(EM, t->net, S(t, "%s_permute(t, flat + t->offset, g->p + t->offset, 1);", n));
  else
    em_line(EM, "(void)g, (void)flat;");
  em_close(EM);
  em_blank(EM);
  opt_state_function(t, true);
  opt_state_function(t, false);
  em_line(EM, "size_t %s_grads_bytes(void) { return sizeof(%s_grads); }", n, n);
  em_line(EM, "int %s_opt_slots(void) { return %s_OPT_SLOTS; }", n, n);
  em_blank(EM);
}

/* ---- entry points ---- */

/* NAME_PARAM_COUNT as an array size: 1 when it is 0 (C has no empty arrays). */
static const char *param_count(T *t) {
  return t->net->param_count ? S(t, "%s_PARAM_COUNT", t->n) : "1";
}

/* Every entry point plans the layers afresh (cheap) and frees them at the end. */
static void begin(T *t, const Net *net, Emitter *em) {
  memset(t, 0, sizeof *t);
  t->em = em;
  t->net = net;
  t->n = net->name;
  t->slots = net->opt_slots;
  t->v = &em_vec8;
  t->tl = xcalloc((size_t)net->nlayers + 1, sizeof *t->tl);
  plan(t);
}

static void end(T *t) {
  free(t->tl);
  t->tl = NULL;
  arena_free(&t->strings);
}

void emit_train_model_members(Emitter *em, const Net *net) {
  T t;
  begin(&t, net, em);
  if (t.slots)
    em_line(em, "float opt[%d][%s]; /* optimizer state (%s), internal layout */", t.slots,
            param_count(&t), net->train.optimizer == OPT_ADAM ? "adam m, v" : "sgd velocity");
  em_line(em, "uint64_t step; /* optimizer steps so far */");
  end(&t);
}

void emit_train_work_members(Emitter *em, const Net *net) {
  T t;
  begin(&t, net, em);
  em_line(em, "struct %s_train_work train; /* one image's training buffers */", t.n);
  end(&t);
}

/* The members of struct NAME_train_work (plan.c counted their floats). */
static void train_buffers(T *t) {
  const int K = (int)shape_size(t->net->output);
  long total = 0;
#define MEMBER(count, ...)                                                                         \
  do {                                                                                             \
    total += (count);                                                                              \
    em_line(EM, __VA_ARGS__);                                                                      \
  } while (0)
  for (int k = 0; k < t->ntl; k++) {
    const TL *L = &t->tl[k];
    const Layer *l = L->l;
    if (strcmp(L->out, S(t, "t->y%d", k)) == 0)
      MEMBER(shape_size(l->out), "float y%d[%ld]; /* %s: output [%d][%d][%d] */", k,
             shape_size(l->out), l->text, l->out.h, l->out.w, l->out.c);
    if (L->pad)
      MEMBER((long)L->ph * L->pw * l->in.c, "float xp%d[%ld]; /* %s: padded input [%d][%d][%d] */",
             k, (long)L->ph * L->pw * l->in.c, l->text, L->ph, L->pw, l->in.c);
    if (l->op == OP_DROPOUT)
      MEMBER(shape_size(l->out), "float mask%d[%ld]; /* %s: kept and scaled elements */", k,
             shape_size(l->out), l->text);
    if (L->pool)
      MEMBER(l->weight_count, "float dwt%d[%ld]; /* %s: weight gradient [%d][%d][%d][%d] */", k,
             l->weight_count, l->text, l->out.c, l->u.conv.kh, l->u.conv.kw, l->in.c);
    if (L->transposed)
      MEMBER(l->weight_count,
             "float wt%d[%ld]; /* %s: weights [%d][%d][%d][%d] for the input gradient */", k,
             l->weight_count, l->text, l->u.conv.kh, l->u.conv.kw, l->out.c, l->in.c);
  }
  MEMBER(K, "float out[%d]; /* outputs after the last activation */", K);
  MEMBER(2 * t->gmax, "float g[2][%ld]; /* gradients, ping-pong */", t->gmax);
#undef MEMBER
  assert(total == t->net->train_work_floats);
}

void emit_train_types(Emitter *em, const Net *net) {
  T t;
  begin(&t, net, em);
  const char *n = t.n;
  const size_t params = (size_t)net->param_count * sizeof(float);
  em_line(em, "/* Training state: %s_model carries %zu bytes of optimizer state, and each", n,
          (size_t)t.slots * params + 8);
  em_line(em, "   thread a %s_grads of %zu bytes and %zu bytes of buffers in its %s_work. */", n,
          params, (size_t)net->train_work_floats * sizeof(float), n);
  em_blank(em);
  em_line(em, "/* Training buffers for one image, part of %s_work. */", n);
  em_open(em, "struct %s_train_work", n);
  train_buffers(&t);
  em_close_with(em, ";");
  em_blank(em);
  em_line(em, "/* One gradient accumulator: %s_PARAM_COUNT floats in the model's internal layout;",
          n);
  em_line(em, "   one per thread. */");
  em_raw(
      em,
      "#define %s_OPT_SLOTS %d /* optimizer state arrays: adam 2 (m, v), sgd+momentum 1, sgd 0 */",
      n, t.slots);
  em_open(em, "typedef struct %s_grads", n);
  em_line(em, "float p[%s];", param_count(&t));
  em_close_with(em, " %s_grads;", n);
  em_blank(em);
  end(&t);
}

/* Header: NAME_explain and Grad-CAM's layer. */
static void explain_declarations(T *t) {
  const char *n = t->n;
  const int cam = cam_index(t);
  const Layer *c = cam >= 0 ? t->tl[cam].l : NULL;
  em_line(EM, "/* ---- Explanations ----");
  em_blank(EM);
  em_line(EM, "   %s_explain runs one image forward (dropout as the identity, as at inference)", n);
  em_line(EM, "   and takes the gradient of one class score s back to the image, through the");
  em_line(EM, "   training code's backward passes. s is the output layer's value for class cls");
  em_line(EM, "   BEFORE the final activation (the logit, before softmax or sigmoid), as saliency");
  em_line(EM, "   maps (Simonyan et al. 2014) and Grad-CAM (Selvaraju et al. 2017) take it.");
  em_line(EM, "   Grad-CAM's layer is the last convolution; its output shape follows (0 without");
  em_line(EM, "   a convolution). */");
  if (c) {
    em_raw(EM, "#define %s_CAM_H %d /* %s (line %d) */", n, c->out.h, c->text, c->loc.line);
    em_raw(EM, "#define %s_CAM_W %d", n, c->out.w);
    em_raw(EM, "#define %s_CAM_C %d", n, c->out.c);
  } else {
    em_raw(EM, "#define %s_CAM_H 0 /* no convolution */", n);
    em_raw(EM, "#define %s_CAM_W 0", n);
    em_raw(EM, "#define %s_CAM_C 0", n);
  }
  em_line(EM, "/* Returns s for image x [%s_INPUT_SIZE] and writes, each only when not NULL:", n);
  em_line(EM, "     y        [%s_OUTPUT_SIZE] the outputs after the last activation", n);
  em_line(EM, "     dx       [%s_INPUT_SIZE] ds/dx, in H, W, C order", n);
  em_line(EM, "     cam_act  [%s_CAM_H][%s_CAM_W][%s_CAM_C] the last convolution's output", n, n,
          n);
  em_line(EM, "              (after its activation unless it is the output layer)");
  em_line(EM, "     cam_grad [%s_CAM_H][%s_CAM_W][%s_CAM_C] ds/d cam_act", n, n, n);
  em_line(EM, "   g is scratch, left holding ds/d(params) (%s_grads_store reads it). A cls", n);
  em_line(EM, "   outside [0, %s_OUTPUT_SIZE) writes nothing and returns 0. Uses w's training", n);
  em_line(EM, "   buffers: one w per thread, as for training. */");
  em_call(EM,
          "float %s_explain(const %s_model *m, %s_work *w, %s_grads *g, const float *x, int cls, "
          "float *y, float *dx, float *cam_act, float *cam_grad);",
          n, n, n, n);
  em_blank(EM);
}

void emit_train_declarations(Emitter *em, const Net *net) {
  T t;
  begin(&t, net, em);
  const char *n = t.n;
  const TrainConfig *tc = &net->train;
  em_line(em, "/* ---- Training (%s, %s; batch %d, %d epochs in the .cnn file) ----",
          loss_words[tc->loss], optimizer_words[tc->optimizer], tc->batch, tc->epochs);
  em_blank(em);
  em_line(em, "   A step: zero a %s_grads, accumulate the batch's gradients, update.", n);
  em_line(em, "   With T threads, split the batch into T contiguous chunks, accumulate chunk t");
  em_line(em, "   into grads g_t with its own %s_work, add g_1.. into g_0 in order, update", n);
  em_line(em, "   with g_0: the result is repeatable bit for bit. %s_train_step does it all on", n);
  em_line(em, "   one thread. No batch normalization exists, so images are independent. */");
  em_blank(em);
  em_call(em, "void %s_grads_zero(%s_grads *g);", n, n);
  em_line(em,
          "void %s_grads_add(%s_grads *restrict into, const %s_grads *restrict g); /* into += g */",
          n, n, n);
  em_line(em, "/* Forward and backward over n images x [n][%s_INPUT_SIZE] with targets", n);
  em_line(em, "   [n][%s_OUTPUT_SIZE] (one-hot rows for class labels, 0/1 rows for multi-label)",
          n);
  em_line(em,
          "   and per-sample weights [n] (class weights; NULL: all 1). Image i's dropout draws");
  em_line(em, "   from key + i. Adds d(sum_i weight_i * loss_i)/d(params) to g and returns");
  em_line(em, "   sum_i weight_i * loss_i (loss_i: cross-entropy -sum t log p; binary");
  em_line(em, "   cross-entropy and mse: the mean over the outputs). */");
  em_call(em, "double %s_accumulate(%s);", n, params_of(&t, true));
  em_line(em,
          "/* The same, also writing the outputs [n][%s_OUTPUT_SIZE] to y when y is not NULL. */",
          n);
  em_call(em, "double %s_accumulate_y(%s, float *y);", n, params_of(&t, true));
  em_line(em, "/* One optimizer step on the gradient scale * g (scale = 1 / sum of weights) at");
  em_line(em, "   learning rate lr (the train block's is %g; a schedule changes it per step). */",
          tc->lr);
  em_call(em, "void %s_update(%s_model *m, const %s_grads *g, float scale, float lr);", n, n, n);
  em_line(
      em,
      "/* Zero g, accumulate, update: one step on one thread; returns the batch's mean loss. */");
  em_call(em, "float %s_train_step(%s, float lr);", n, params_of(&t, false));
  em_line(em, "/* Gradients as a flat array in %s_load's order and PyTorch layout. */", n);
  em_call(em, "void %s_grads_store(const %s_grads *g, float *flat);", n, n);
  em_line(em,
          "/* Optimizer state [%s_OPT_SLOTS][%s_PARAM_COUNT] in PyTorch layout, and the step. */",
          n, n);
  em_call(em, "void %s_store_opt(const %s_model *m, float *state, uint64_t *step);", n, n);
  em_call(em, "void %s_load_opt(%s_model *m, const float *state, uint64_t step);", n, n);
  em_line(em, "size_t %s_grads_bytes(void); /* sizeof(%s_grads) */", n, n);
  em_line(em, "int %s_opt_slots(void);      /* %s_OPT_SLOTS */", n, n);
  em_blank(em);
  explain_declarations(&t);
  end(&t);
}

void emit_train_source(Emitter *em, const Net *net) {
  T t;
  begin(&t, net, em);
  em_line(em, "/* ---- Training ---- */");
  em_blank(em);
  for (int k = 0; k < t.ntl; k++)
    layer_functions(&t, &t.tl[k]);
  loss_function(&t);
  transpose_function(&t);
  accumulate_function(&t);
  update_function(&t);
  state_functions(&t);
  explain_functions(&t);
  end(&t);
}
