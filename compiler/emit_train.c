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
 * Each layer's training functions (its backward pass, a forward variant
 * where inference's does not serve) and its calls in NAME_accumulate and
 * NAME_explain are its op module's (compiler/ops/); this file holds what
 * they share (activation derivatives, register tiles of vectors, the
 * channel tail), the loss, the optimizer and the entry points.
 */
#include <assert.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emit_glue.h"
#include "emit_train.h"
#include "ops/op.h"

/* A formatted string of any length, until end(). */
const char *train_str(T *t, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  const char *s = arena_vprintf(&t->strings, fmt, ap);
  va_end(ap);
  return s;
}

#define OP_EM (t->em)

/* calloc that aborts when memory runs out, as arena_alloc does. */
static void *xcalloc(size_t n, size_t size) {
  void *p = calloc(n, size);
  if (!p) {
    fputs("cnngen: out of memory\n", stderr);
    abort();
  }
  return p;
}

/* ---- the layer list ---- */

/* The input of an earlier layer that runs in training, l (residual
   blocks: OpModule.operand, resumes). */
static const char *tl_input(const T *t, const Layer *l) {
  for (int k = t->ntl - 1; k >= 0; k--)
    if (t->tl[k].l == l)
      return t->tl[k].in;
  assert(!"a block's layer that does not run in training");
  return "";
}

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
    L->variant = op_modules[l->op]->train_variant && op_modules[l->op]->train_variant(l);
    L->ffn = L->variant ? S(t, "%s_train", L->fn) : L->fn;
    const OpModule *op = op_modules[l->op];
    const Layer *resumes = op->resumes ? op->resumes(net, l) : NULL;
    L->in = prev;
    L->out = l->train.own_output ? S(t, "t->y%d", L->k) : resumes ? tl_input(t, resumes) : prev;
    L->in2 = op->operand ? tl_input(t, op->operand(net, l)) : NULL;
    prev = L->out;
    L->chw = l->train.chw;
    L->backward = l->train.backward;
    L->dx = l->train.dx;
    L->dx_if = l->train.backward && !l->train.dx;
    L->ph = l->train.ph;
    L->pw = l->train.pw;
    L->pad = L->ph > l->in.h || L->pw > l->in.w;
    L->transposed = l->train.transposed;
    L->pooled = l->train.pooled;
    t->ntl++;
  }
  for (int k = 0; k + 1 < t->ntl; k++)
    if (t->tl[k].l->train.pool)
      t->tl[k].pool = &t->tl[k + 1];
}

/* Whether L's backward function has a dx parameter. */
bool takes_dx(const TL *L) {
  return L->dx || L->dx_if;
}

/* Opens (open) or closes the `if (dx)` around a dx_if layer's input gradient. */
void if_dx(T *t, const TL *L, bool open) {
  if (L->dx_if && open)
    em_open(EM, "if (dx)");
  else if (L->dx_if)
    em_close(EM);
}

/* ---- activations ---- */

/* dst = act(src) over `count` floats (softmax: in groups of `group`). */
void act_forward(T *t, Act act, const char *dst, const char *src, long count, int group) {
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
void act_backward(T *t, Act act, const char *y, const char *dy, long count, int group) {
  if (EM->kernels && act != ACT_LINEAR) { /* the JIT: the prebuilt kernel's loop */
    glue_act_backward(EM, act, y, dy, count, group);
    return;
  }
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
int tile_vectors(int n, const EmVec *v) {
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
int tile_pixels(int vectors, int width, int most, const EmVec *v) {
  int p = v->regs * 3 / 4 / vectors;
  while (p > 1 && p * vectors + vectors + 1 > v->regs)
    p--;
  p = p > most ? most : p;
  return p > width ? width : p;
}

/* "NAME_f8 a0_0 = init0, a0_1 = init1, ...;" for a rows x cols tile: column
   v starts as the vector init<v>, or zero when init is NULL. */
void tile_declare(T *t, int rows, int cols, const char *init, const EmVec *vec) {
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
int vec_off(int v, int nv, int shift, const EmVec *vec) {
  return vec->w * v - (v == nv - 1 ? shift : 0);
}

/* Adds tile vector a<j>_<v> into p (a C expression): whole, or its last
   VW - shift lanes when it is the overlapping tail vector. */
void tile_addto(T *t, const char *p, int j, int v, int nv, int shift, const EmVec *vec) {
  if (v == nv - 1 && shift)
    em_line(EM, "%s_ADDTO_TAIL(%s, a%d_%d, %d);", t->n, p, j, v, shift);
  else
    em_line(EM, "%s_ADDTO%s(%s, a%d_%d);", t->n, vec->op, p, j, v);
}

/* Runs body over the N channels (N >= 8) in blocks of tile_vectors
   vectors, the block's first channel in the variable `var`: a loop over the
   whole blocks, then, with a tail or a remainder of vectors, the last block
   (narrower, its last vector overlapping) with `var` a constant. The
   vectors are t->v's (16 floats in the AVX-512 half of a function written
   per width) when N has that many channels, else 8 floats. */
void channel_blocks(T *t, const TL *L, const char *var, int N, BlockBody *body) {
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

/* Writes fn(t, L) once per vector width under #if NAME_VW when `wide` (its
   tiles differ), else once on 8-float vectors. */
void per_width(T *t, const TL *L, LayerFunction *fn, bool wide) {
  if (!wide || EM->kernels) {
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

/* ---- the JIT's kernels ---- */

/* With Emitter.kernels, writes L's backward function as one call to the
   prebuilt kernels (emit_glue.h) and returns true. */
bool glue_backward(T *t, const TL *L) {
  if (!EM->kernels)
    return false;
  const GlueBackward b = {L->bfn,       L->act,       L->ph,
                          L->pw,        L->transposed, takes_dx(L),
                          L->pool ? L->pool->l : NULL};
  switch (L->l->op) {
  case OP_CONV2D: glue_conv_backward(EM, t->net, L->l, &b); break;
  case OP_DENSE: glue_dense_backward(EM, t->net, L->l, &b); break;
  case OP_MAXPOOL:
  case OP_AVGPOOL: glue_pool_backward(EM, L->l, L->bfn); break;
  default: return false; /* no kernel: the module writes its loops */
  }
  return true;
}

/* ---- layers with weights: what their functions share ---- */

void param_backward_head(T *t, const TL *L, const char *dims) {
  const Layer *l = L->l;
  em_line(EM, "float *restrict dw = g->p + %ld; /* %s */", l->weight_offset, dims);
  if (l->bias_count)
    em_line(EM, "float *restrict db = g->p + %ld; /* [%d] */", l->bias_offset, l->out.c);
  act_backward(t, L->act, "y", "dy", shape_size(l->out), l->out.c);
  if (L->act == ACT_LINEAR)
    em_line(EM, "(void)y;");
}

void param_backward_call(T *t, const TL *L, const char *wt, const char *in, int cur) {
  em_call(EM, "%s(m, g, %s%s, %s, t->g[%d]%s%s);", L->bfn, wt, in, L->out, cur,
          takes_dx(L) ? ", " : "", L->dx ? S(t, "t->g[%d]", 1 - cur) : "NULL");
}

/* Layer L's training functions: its forward function where inference's
   does not serve, its backward function, and what they need. */
static void layer_functions(T *t, const TL *L) {
  if (L->variant)
    emit_train_forward(EM, t->net, L->l, L->ffn, L->act);
  if (op_modules[L->l->op]->train_functions)
    op_modules[L->l->op]->train_functions(t, L);
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
  if (EM->kernels) /* (the JIT's grouped convs transpose nothing) */
    em_line(EM, "(void)m, (void)t;");
  for (int k = 0; k < t->ntl; k++) {
    const TL *L = &t->tl[k];
    if (!L->transposed)
      continue;
    op_modules[L->l->op]->transpose(t, L);
  }
  em_close(EM);
  em_blank(EM);
}

static void forward_call(T *t, const TL *L) {
  const OpModule *op = op_modules[L->l->op];
  if (op->forward_call)
    op->forward_call(t, L);
  else
    em_line(EM, "%s_forward(%s%s, %s);", L->ffn, op->weights ? "m, " : "", L->in, L->out);
}

/* The parameters of accumulate (const model) or train_step. */
static const char *params_of(T *t, bool const_model) {
  return S(t,
           "%s%s_model *m, %s_work *w, %s_grads *g, const float *x, const float *target, "
           "const float *weight, int n, uint64_t key",
           const_model ? "const " : "", t->n, t->n, t->n);
}

/* What layers do before the images (dwt_zero) and after them (dwt_fold):
   a conv that does its maxpool's backward zeroes its transposed weight
   gradient, then folds it into g. */
static void dwt_zero(T *t, const TL *tl) {
  for (int k = 0; k < t->ntl; k++)
    if (op_modules[tl[k].l->op]->train_begin)
      op_modules[tl[k].l->op]->train_begin(t, &tl[k]);
}

static void dwt_fold(T *t, const TL *tl) {
  for (int k = 0; k < t->ntl; k++)
    if (op_modules[tl[k].l->op]->train_end)
      op_modules[tl[k].l->op]->train_end(t, &tl[k]);
}

/* ---- the phased NAME_accumulate (batch statistics) ---- */

/* Whether a layer of the TLs trains on the batch's statistics. */
static bool batch_layer(const TL *L) {
  return op_modules[L->l->op]->batch_stats;
}

void train_images(T *t, bool open) {
  if (!open) {
    em_close(EM);
    return;
  }
  em_open(EM, "for (int i = 0; i < n; i++)");
  em_line(EM, "struct %s_train_work *t = w->images + i;", t->n);
  em_line(EM, "const float *xi = x + (long)i * %s_INPUT_SIZE;", t->n);
  em_line(EM, "(void)t, (void)xi;");
}

void train_reduce(T *t, const char *v, long count) {
  em_line(EM, "if (w->reduce)");
  em_line(EM, "  w->reduce(w->reduce_ctx, %s, %ld);", v, count);
}

/* NAME_accumulate_y of a network with batch statistics: every image of the
   chunk keeps its own training buffers (w->images), and the passes run in
   phases: the layers up to a batch_stats layer for every image, that
   layer's statistics over the whole batch (w->reduce) and its forward pass,
   the layers after it, ..., the loss; the backward passes likewise in
   reverse. A thread with no images runs the same phases on none: every
   thread calls w->reduce as many times. */
static void phased_accumulate(T *t) {
  const char *n = t->n;
  const int K = (int)shape_size(t->net->output);
  const TL *last = &t->tl[t->ntl - 1];
  bool dropout = false;
  for (int k = 0; k < t->ntl; k++)
    dropout |= op_modules[t->tl[k].l->op]->draws;
  em_open_fn(EM, "double %s_accumulate_y(%s, float *y)", n, params_of(t, true));
  em_line(EM, "if (n > w->image_slots)");
  em_line(EM, "  return NAN; /* fewer image buffers than images: see %s_work */", n);
  em_line(EM, "double loss = 0.0;");
  if (!dropout)
    em_line(EM, "(void)key;");
  for (int k = 0; k < t->ntl; k++)
    if (batch_layer(&t->tl[k]))
      op_modules[t->tl[k].l->op]->batch_declare(t, &t->tl[k]);
  /* what the images share, once, in the one-image buffers */
  em_open(EM, "%s", "");
  em_line(EM, "struct %s_train_work *t = &w->train;", n);
  if (any_transposed(t, t->tl))
    em_line(EM, "%s_transpose(m, t);", n);
  dwt_zero(t, t->tl);
  em_line(EM, "(void)t;");
  em_close(EM);
  t->shared = "(&w->train)";
  train_images(t, true);
  for (int k = 0; k < t->ntl; k++) {
    const TL *L = &t->tl[k];
    if (!batch_layer(L)) {
      forward_call(t, L);
      continue;
    }
    train_images(t, false);
    op_modules[L->l->op]->batch_forward(t, L);
    train_images(t, true);
  }
  em_line(EM, "const float wi = weight ? weight[i] : 1.0f;");
  em_line(EM, "loss += wi * %s_loss(%s, target + (long)i * %d, wi, t->out, t->g[0]);", n, last->out,
          K);
  em_line(EM, "if (y)");
  em_line(EM, "  memcpy(y + (long)i * %d, t->out, %d * sizeof(float));", K, K);
  int cur = 0;
  for (int k = t->ntl - 1; k >= 0; k--) {
    const TL *L = &t->tl[k];
    if (!L->backward)
      continue;
    if (!batch_layer(L)) {
      op_modules[L->l->op]->backward_call(t, L, &cur);
      continue;
    }
    train_images(t, false);
    op_modules[L->l->op]->batch_backward(t, L, &cur);
    train_images(t, true);
  }
  train_images(t, false);
  t->shared = "t";
  em_open(EM, "%s", "");
  em_line(EM, "struct %s_train_work *t = &w->train;", n);
  dwt_fold(t, t->tl);
  em_line(EM, "(void)t;");
  em_close(EM);
  em_line(EM, "return loss;");
  em_close(EM);
  em_blank(EM);
}

/* NAME_accumulate_y, one image at a time. */
static void image_accumulate(T *t) {
  const char *n = t->n;
  const char *acc_params = params_of(t, true);
  const int K = (int)shape_size(t->net->output);
  const TL *last = &t->tl[t->ntl - 1];
  bool dropout = false;
  for (int k = 0; k < t->ntl; k++)
    dropout |= op_modules[t->tl[k].l->op]->draws;
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
      op_modules[t->tl[k].l->op]->backward_call(t, &t->tl[k], &cur);
  em_close(EM);
  dwt_fold(t, t->tl);
  em_line(EM, "return loss;");
  em_close(EM);
  em_blank(EM);
}

/* NAME_accumulate_y (per image, or in phases with batch statistics) and
   NAME_accumulate. */
static void accumulate_function(T *t) {
  const char *n = t->n;
  const char *acc_params = params_of(t, true);
  if (net_has_batch_stats(t->net))
    phased_accumulate(t);
  else
    image_accumulate(t);
  em_open_fn(EM, "double %s_accumulate(%s)", n, acc_params);
  em_line(EM, "  return %s_accumulate_y(m, w, g, x, target, weight, n, key, NULL);", n);
  em_close(EM);
  em_blank(EM);
}

/* ---- NAME_explain: the gradient of one class score ---- */

/* Grad-CAM's layer (net_cam_layer) among the TLs, or -1. */
static int cam_index(const T *t) {
  const Layer *cam = net_cam_layer(t->net);
  for (int k = 0; k < t->ntl; k++)
    if (t->tl[k].l == cam)
      return k;
  return -1;
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
    if (op_modules[L->l->op]->explain_functions)
      op_modules[L->l->op]->explain_functions(t, L, X);
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
    if (op_modules[X->l->op]->explain_call)
      op_modules[X->l->op]->explain_call(t, X);
    else
      forward_call(t, X);
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
    op_modules[x[k].l->op]->backward_call(t, &x[k], &cur);
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
  if (net->param_count && EM->kernels)
    glue_optimizer(EM, net, t->slots);
  else if (net->param_count)
    step_function(t);
  em_open(EM, "void %s_update(%s_model *m, const %s_grads *g, float scale, float lr)", n, n, n);
  /* Batch statistics: a batch whose weights sum to 0 (scale 0) still moves
     the running statistics, as PyTorch's forward pass does; no step. */
  const bool stats_only = net_has_batch_stats(net) && net->param_count;
  if (stats_only)
    em_open(EM, "if (scale > 0.0f)");
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
    emit_tensor_loop(
        EM, net,
        S(t,
          "%s"
          "const long at = t->offset, count = (long)t->o * t->c * t->k;\n"
          "%s_%s((float *)((char *)m + t->at), g->p + at, %scount, scale, lr%s);",
          net_has_stats(net) ? "if (t->bound < -1.5f)\n  continue; /* running statistics */\n" : "",
          n, adam ? "adam" : "sgd", state, adam ? ", c1, c2" : ""));
    if (stats_only)
      em_close(EM);
    for (int k = 0; k < t->ntl; k++)
      if (op_modules[t->tl[k].l->op]->train_update)
        op_modules[t->tl[k].l->op]->train_update(t, &t->tl[k]);
    if (net_has_folds(net))
      em_line(EM, "%s_fold(m);", n);
  }
  em_close(EM);
  em_blank(EM);
  em_open_fn(EM, "float %s_train_step(%s, float lr)", n, params_of(t, false));
  if (net_has_batch_stats(net)) { /* tested first: a NaN loss is a divergence, and updates */
    em_line(EM, "if (n > w->image_slots)");
    em_line(EM, "  return NAN; /* fewer image buffers than images: see %s_work */", n);
  }
  em_line(EM, "double wsum = 0.0;");
  em_line(EM, "for (int i = 0; i < n; i++)");
  em_line(EM, "  wsum += weight ? weight[i] : 1.0f;");
  em_line(EM, "%s_grads_zero(g);", n);
  em_line(EM, "const double loss = %s_accumulate(m, w, g, x, target, weight, n, key);", n);
  if (net_has_batch_stats(net)) { /* weights summing to 0: the running statistics move */
    em_line(EM, "%s_update(m, g, wsum > 0.0 ? (float)(1.0 / wsum) : 0.0f, lr);", n);
  } else {
    em_line(EM, "if (wsum > 0.0)");
    em_line(EM, "  %s_update(m, g, (float)(1.0 / wsum), lr);", n);
  }
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
  if (EM->kernels) {
    glue_add(EM, "into->p", "g->p", S(t, "%s_PARAM_COUNT", n));
  } else {
    em_line(EM, "for (int i = 0; i < %s_PARAM_COUNT; i++)", n);
    em_line(EM, "  into->p[i] += g->p[i];");
  }
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
  t->shared = "t";
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
  if (net_has_batch_stats(net)) {
    em_line(em, "/* Batch statistics (%s_accumulate): */", t.n);
    em_line(em, "struct %s_train_work *images; /* [image_slots]: each image's buffers */", t.n);
    em_line(em, "int image_slots;");
    em_line(em, "int stats_quiet; /* nonzero: leaves the batch statistics out of g */");
    em_line(em, "void (*reduce)(void *ctx, double *v, int n); /* NULL: one call, whole batch */");
    em_line(em, "void *reduce_ctx;");
  }
  end(&t);
}

void train_member(T *t, long *total, long count, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  const char *line = arena_vprintf(&t->strings, fmt, ap);
  va_end(ap);
  *total += count;
  em_line(EM, "%s", line);
}

/* The members of struct NAME_train_work (plan.c counted their floats). */
static void train_buffers(T *t) {
  const int K = (int)shape_size(t->net->output);
  long total = 0;
  for (int k = 0; k < t->ntl; k++) {
    const TL *L = &t->tl[k];
    const Layer *l = L->l;
    if (strcmp(L->out, S(t, "t->y%d", k)) == 0)
      train_member(t, &total, shape_size(l->out), "float y%d[%ld]; /* %s: output [%d][%d][%d] */",
                   k, shape_size(l->out), l->text, l->out.h, l->out.w, l->out.c);
    if (op_modules[l->op]->train_members)
      op_modules[l->op]->train_members(t, L, &total);
  }
  train_member(t, &total, K, "float out[%d]; /* outputs after the last activation */", K);
  train_member(t, &total, 2 * t->gmax, "float g[2][%ld]; /* gradients, ping-pong */", t->gmax);
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

/* Header, with batch statistics: what NAME_work needs for training. */
static void batch_declarations(T *t) {
  const char *n = t->n;
  em_line(EM, "/* Batch normalization trains on the statistics of the whole batch, so");
  em_line(EM, "   %s_accumulate keeps every image's training buffers: before it runs on n", n);
  em_line(EM, "   images, point w->images at n struct %s_train_work (%s_image_bytes()", n, n);
  em_line(EM, "   each) and set w->image_slots = n (%s_batch_setup does both); with fewer it", n);
  em_line(EM, "   returns NaN and adds nothing. With the batch split over threads (or");
  em_line(EM, "   processes), reduce(ctx, v, k) must replace v[0..k) in every caller by the");
  em_line(EM, "   sum of all callers' v, added in chunk order (every thread calls it equally");
  em_line(EM, "   often, with no images too); NULL: this call holds the whole batch. The");
  em_line(EM, "   batch's mean and unbiased variance go into g at the running statistics'");
  em_line(EM, "   places unless stats_quiet (set it in all but one thread: g's are summed),");
  em_line(EM, "   and %s_update moves the running statistics towards them. */", n);
  em_line(EM, "size_t %s_image_bytes(void);", n);
  em_call(EM,
          "void %s_batch_setup(%s_work *w, void *images, int image_slots, "
          "void (*reduce)(void *ctx, double *v, int n), void *ctx, int stats_quiet);",
          n, n);
  em_blank(EM);
}

static void batch_functions(T *t) {
  const char *n = t->n;
  em_line(EM, "size_t %s_image_bytes(void) { return sizeof(struct %s_train_work); }", n, n);
  em_blank(EM);
  em_open(EM,
          "void %s_batch_setup(%s_work *w, void *images, int image_slots, "
          "void (*reduce)(void *ctx, double *v, int n), void *ctx, int stats_quiet)",
          n, n);
  em_line(EM, "w->images = images;");
  em_line(EM, "w->image_slots = image_slots;");
  em_line(EM, "w->reduce = reduce;");
  em_line(EM, "w->reduce_ctx = ctx;");
  em_line(EM, "w->stats_quiet = stats_quiet;");
  em_close(EM);
  em_blank(EM);
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
  if (!net_has_batch_stats(net)) {
    em_line(em, "   one thread. No batch normalization exists, so images are independent. */");
    em_blank(em);
  } else {
    em_line(em, "   one thread. */");
    em_blank(em);
    batch_declarations(&t);
  }
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
  if (net_has_batch_stats(net)) {
    em_line(em, "   learning rate lr (the train block's is %g; a schedule changes it per step);",
            tc->lr);
    em_line(em, "   the running statistics move towards the batch's. With scale 0 (weights");
    em_line(em, "   summing to 0) only they move, as in PyTorch, and no step is taken. */");
  } else {
    em_line(em, "   learning rate lr (the train block's is %g; a schedule changes it per step). */",
            tc->lr);
  }
  em_call(em, "void %s_update(%s_model *m, const %s_grads *g, float scale, float lr);", n, n, n);
  em_line(
      em,
      "/* Zero g, accumulate, update: one step on one thread; returns the batch's mean loss. */");
  if (net_has_batch_stats(net))
    em_line(em, "/* (With fewer image buffers than n in w, NaN at once, and nothing done.) */");
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
  if (net_has_batch_stats(net))
    batch_functions(&t);
  explain_functions(&t);
  end(&t);
}
