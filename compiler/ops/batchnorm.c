/*
 * batchnorm.c: batch normalization, PyTorch's BatchNorm2d per channel on an
 * image and BatchNorm1d per element on a vector: y = (x - mean) /
 * sqrt(var + eps) * weight + bias. Its tensors are LAYER.weight (the scale,
 * starting at 1), LAYER.bias (the shift) and the running statistics
 * LAYER.running_mean and LAYER.running_var (OpModule.stats: saved, not
 * trained). Inference uses the running statistics: right after a linear
 * conv/dense it folds into that layer's weights and bias (fuse.c, NAME_fold
 * through fold below), else it runs as y = s * x + sh per channel. It takes
 * the activation after it (applies_act).
 *
 * Training normalizes with the whole batch's statistics (batch_stats:
 * NAME_accumulate runs in phases around it, emit_train.c): per channel, the
 * sum of x over the chunk's images (double, image order), summed over the
 * batch by w->reduce, gives the mean; the sum of squared deviations, summed
 * likewise, the biased variance over N*H*W; then every image is normalized.
 * The backward pass sums dy and dy * xhat the same way for the input
 * gradient. The batch's mean and unbiased variance go into g at the running
 * statistics' places (one thread: the others are stats_quiet), and
 * NAME_update moves the running statistics towards them with the momentum,
 * once per step, as PyTorch does.
 * NAME_explain runs it as inference does, and its backward pass is that of
 * y = s * x + sh with the running statistics.
 *
 * For the JIT (Emitter.kernels) each function keeps its per-channel set-up
 * and calls a prebuilt kernel for its loop over the pixels (cnk_bn_*,
 * runtime/kernels/kernels.c), which sums in the same order.
 */
#include <math.h>
#include <string.h>

#include "op.h"

/* A vector straight from a flatten of an image is [C][H][W] in PyTorch and
   [H][W][C] here: its statistics would need dense's permutation. */
static bool bn_shape(ShapeCheck *c, Layer *l) {
  const Layer *src = l - 1;
  while (src >= c->net->layers && (src->op == OP_DROPOUT || src->op == OP_ACT))
    src--;
  if (src >= c->net->layers && src->op == OP_FLATTEN && src->in.h * src->in.w > 1) {
    char in[64];
    diag_error(c->d, l->loc, "batchnorm on a flattened image (%s) is not supported",
               summary_shape(in, sizeof in, src->in));
    diag_note(c->d, l->loc, "put it before the flatten on line %d (per channel)", src->loc.line);
    return false;
  }
  return shape_identity(c, l);
}

static void bn_counts(const Layer *l, double *weights, double *bias, double *macs) {
  *weights = *bias = l->out.c;
  *macs = (double)shape_size(l->out);
}

static void bn_tensor(const Net *net, const Layer *l, OpTensor *t) {
  (void)net;
  *t = (OpTensor){1, {l->out.c}, l->out.c, 1, 1, 1, 1};
}

static const char *bn_weight_comment(Emitter *em, const Net *net, const Layer *l) {
  (void)net;
  return em_str(em, "[%d], the scale; .bias the shift; running statistics after them", l->out.c);
}

static void bn_dump(const Layer *l, FILE *out) {
  fprintf(out, "      momentum %g  eps %g\n", l->u.bn.momentum, l->u.bn.eps);
}

/* s and sh for channel o: y = s * x + sh with the running statistics. */
static void bn_fold(Emitter *em, const Layer *l, const char *m, const char *o) {
  em_line(em, "const float s = %s[%s] / sqrtf(%s[%s] + %s);", emit_param_ref(em, NULL, l, 0, m), o,
          emit_stats_ref(em, l, 1, m), o, em_float(em, (float)l->u.bn.eps));
  em_line(em, "const float sh = fmaf(-%s[%s], s, %s[%s]);", emit_stats_ref(em, l, 0, m), o,
          emit_param_ref(em, NULL, l, 1, m), o);
}

static void bn_fold_values(const Layer *l, const float *p, int o, float *s, float *sh) {
  const long C = l->bias_count;
  *s = p[l->weight_offset + o] / sqrtf(p[l->stats_offset + C + o] + (float)l->u.bn.eps);
  *sh = fmaf(-p[l->stats_offset + o], *s, p[l->bias_offset + o]);
}

/* Training runs a forward function of its own when inference folds it
   away (or applies another activation). */
static bool bn_variant(const Layer *l) {
  return l->fused_away || l->train.act != l->act;
}

/* ---- forward (running statistics) ---- */

#define OP_EM (g->em)

static void bn_forward(Gen *g, const Layer *l, const char *fn) {
  const int C = l->out.c;
  const long P = (long)l->out.h * l->out.w;
  const Act act = g->train ? g->act : l->act;
  layer_comment(g, l,
                em_str(EM, "x %s -> y, per channel: y = s * x + sh with the running statistics",
                       DIMS(l->out)));
  em_open_fn(EM,
             "static void %s_forward(const %s_model *restrict m, const float *restrict x, "
             "float *restrict y)",
             fn, g->n);
  em_line(EM, "float sc[%d], shc[%d];", C, C);
  em_open(EM, "for (int o = 0; o < %d; o++)", C);
  bn_fold(EM, l, "m", "o");
  em_line(EM, "sc[o] = s;");
  em_line(EM, "shc[o] = sh;");
  em_close(EM);
  if (EM->kernels) { /* the JIT's kernel; the activation as emit_act_pass's, over y */
    glue_bn(EM, "scale", l, em_str(EM, "%d, %ld, x, sc, shc, y", (int)act, shape_size(l->out)));
  } else {
    em_open(EM, "for (long p = 0; p < %ld; p++)", P);
    em_open(EM, "for (int c = 0; c < %d; c++)", C);
    em_line(EM, "const float v = x[p * %d + c] * sc[c] + shc[c];", C);
    em_line(EM, "y[p * %d + c] = %s;", C, act == ACT_RELU ? "v > 0.0f ? v : 0.0f" : "v");
    em_close(EM);
    em_close(EM);
    if (act != ACT_RELU)
      emit_act_pass(g, act, "y", shape_size(l->out));
  }
  em_close(EM);
  em_blank(EM);
}

#undef OP_EM

/* ---- backward (NAME_explain: the running statistics) ---- */

#define OP_EM (t->em)

static void bn_backward(T *t, const TL *L) {
  const Layer *l = L->l;
  const int C = l->out.c;
  const long P = (long)l->out.h * l->out.w;
  em_comment(EM, "%s\nbackward of y = s * x + sh (running statistics), from dy %s",
             emit_quote(EM, l), emit_dims(EM, l->out));
  em_open_fn(EM,
             "static void %s(const %s_model *m, %s_grads *g, const float *restrict x, const float "
             "*restrict y, float *restrict dy%s)",
             L->bfn, t->n, t->n, takes_dx(L) ? ", float *restrict dx" : "");
  param_backward_head(t, L, S(t, "[%d]", C));
  em_open(EM, "for (int o = 0; o < %d; o++)", C);
  bn_fold(EM, l, "m", "o");
  em_line(EM, "const float inv = 1.0f / sqrtf(%s[o] + %s);", emit_stats_ref(EM, l, 1, "m"),
          FL(l->u.bn.eps));
  em_line(EM, "(void)sh;");
  em_open(EM, "for (long p = 0; p < %ld; p++)", P);
  em_line(EM, "const long i = p * %d + o;", C);
  em_line(EM, "db[o] += dy[i];");
  em_line(EM, "dw[o] += dy[i] * (x[i] - %s[o]) * inv;", emit_stats_ref(EM, l, 0, "m"));
  if (takes_dx(L))
    em_line(EM, "if (dx) dx[i] = dy[i] * s;");
  em_close(EM);
  em_close(EM);
  em_close(EM);
  em_blank(EM);
}

/* ---- training with the batch's statistics ---- */

/* FN_sums: v[c] += x over one image; FN_squares: v[c] += (x - mean[c])^2. */
static void bn_sum_functions(T *t, const TL *L) {
  const Layer *l = L->l;
  const int C = l->out.c;
  const long P = (long)l->out.h * l->out.w;
  em_comment(EM, "%s\nthe batch's statistics: one image's sums per channel, in double",
             emit_quote(EM, l));
  em_open_fn(EM, "static void %s_sums(const float *restrict x, double *restrict v)", L->fn);
  if (EM->kernels) {
    glue_bn(EM, "sums", l, "x, v");
  } else {
    em_line(EM, "for (long p = 0; p < %ld; p++)", P);
    em_line(EM, "  for (int c = 0; c < %d; c++)", C);
    em_line(EM, "    v[c] += x[p * %d + c];", C);
  }
  em_close(EM);
  em_blank(EM);
  em_open_fn(EM,
             "static void %s_squares(const float *restrict x, const double *restrict mean, "
             "double *restrict v)",
             L->fn);
  if (EM->kernels) {
    glue_bn(EM, "squares", l, "x, mean, v");
  } else {
    em_open(EM, "for (long p = 0; p < %ld; p++)", P);
    em_open(EM, "for (int c = 0; c < %d; c++)", C);
    em_line(EM, "const double d = x[p * %d + c] - mean[c];", C);
    em_line(EM, "v[c] += d * d;");
    em_close(EM);
    em_close(EM);
  }
  em_close(EM);
  em_blank(EM);
}

/* FN_batch_forward: y = act((x - mean) * istd * weight + bias). */
static void bn_batch_forward_function(T *t, const TL *L) {
  const Layer *l = L->l;
  const int C = l->out.c;
  const long P = (long)l->out.h * l->out.w;
  em_open_fn(EM,
             "static void %s_batch_forward(const %s_model *restrict m, const float *restrict x, "
             "float *restrict y, const float *restrict mean, const float *restrict istd)",
             L->fn, t->n);
  em_line(EM, "float sc[%d], shc[%d];", C, C);
  em_open(EM, "for (int c = 0; c < %d; c++)", C);
  em_line(EM, "sc[c] = istd[c] * %s[c];", emit_param_ref(EM, NULL, l, 0, "m"));
  em_line(EM, "shc[c] = %s[c] - mean[c] * sc[c];", emit_param_ref(EM, NULL, l, 1, "m"));
  em_close(EM);
  if (EM->kernels) { /* the JIT's kernel; the activation as act_forward's, per pixel */
    glue_bn(EM, "scale", l, em_str(EM, "%d, %d, x, sc, shc, y", (int)L->act, C));
  } else {
    em_line(EM, "for (long p = 0; p < %ld; p++)", P);
    em_line(EM, "  for (int c = 0; c < %d; c++)", C);
    em_line(EM, "    y[p * %d + c] = x[p * %d + c] * sc[c] + shc[c];", C, C);
    act_forward(t, L->act, "y", "y", shape_size(l->out), C);
  }
  em_close(EM);
  em_blank(EM);
}

/* The loops of FN_batch_sums (below). */
static void bn_grad_sums_loops(T *t, int C, long P) {
  em_open(EM, "for (long p = 0; p < %ld; p++)", P);
  em_open(EM, "for (int c = 0; c < %d; c++)", C);
  em_line(EM, "const long i = p * %d + c;", C);
  em_line(EM, "const float xh = (x[i] - mean[c]) * istd[c];");
  em_line(EM, "db[c] += dy[i];");
  em_line(EM, "dw[c] += dy[i] * xh;");
  em_line(EM, "v[c] += dy[i];");
  em_line(EM, "v[%d + c] += (double)dy[i] * xh;", C);
  em_close(EM);
  em_close(EM);
}

/* FN_batch_sums: dy made the gradient before the activation, and one
   image's sums of dy and dy * xhat into v[0..C) and v[C..2C); the weight
   and bias gradients added into g. FN_batch_dx: the input gradient from the
   batch's sums s (of cnt values per channel):
   dx = weight * istd * (dy - s_dy / cnt - xhat * s_dyxhat / cnt). */
static void bn_batch_backward_functions(T *t, const TL *L) {
  const Layer *l = L->l;
  const int C = l->out.c;
  const long P = (long)l->out.h * l->out.w;
  em_open_fn(EM,
             "static void %s_batch_sums(%s_grads *g, const float *restrict x, const float "
             "*restrict y, float *restrict dy, const float *restrict mean, const float *restrict "
             "istd, double *restrict v)",
             L->fn, t->n);
  param_backward_head(t, L, S(t, "[%d]", C));
  if (EM->kernels)
    glue_bn(EM, "grad_sums", l, "x, dy, mean, istd, dw, db, v");
  else
    bn_grad_sums_loops(t, C, P);
  em_close(EM);
  em_blank(EM);
  if (!L->dx)
    return;
  em_open_fn(EM,
             "static void %s_batch_dx(const %s_model *restrict m, const float *restrict x, const "
             "float *restrict dy, float *restrict dx, const float *restrict mean, const float "
             "*restrict istd, const double *restrict s, double cnt)",
             L->fn, t->n);
  if (EM->kernels) {
    glue_bn(EM, "dx", l,
            em_str(EM, "x, dy, %s, mean, istd, s, cnt, dx", emit_param_ref(EM, NULL, l, 0, "m")));
  } else {
    em_line(EM, "float k[%d], a[%d], b[%d];", C, C, C);
    em_open(EM, "for (int c = 0; c < %d; c++)", C);
    em_line(EM, "k[c] = %s[c] * istd[c];", emit_param_ref(EM, NULL, l, 0, "m"));
    em_line(EM, "a[c] = (float)(s[c] / cnt);");
    em_line(EM, "b[c] = (float)(s[%d + c] / cnt);", C);
    em_close(EM);
    em_open(EM, "for (long p = 0; p < %ld; p++)", P);
    em_open(EM, "for (int c = 0; c < %d; c++)", C);
    em_line(EM, "const long i = p * %d + c;", C);
    em_line(EM, "const float xh = (x[i] - mean[c]) * istd[c];");
    em_line(EM, "dx[i] = k[c] * (dy[i] - a[c] - xh * b[c]);");
    em_close(EM);
    em_close(EM);
  }
  em_close(EM);
  em_blank(EM);
}

static void bn_train_functions(T *t, const TL *L) {
  bn_sum_functions(t, L);
  bn_batch_forward_function(t, L);
  if (L->backward) {
    bn_batch_backward_functions(t, L);
    bn_backward(t, L); /* NAME_explain's */
  }
}

/* The batch's mean and 1 / sqrt(var + eps) per channel, and its values per
   channel (N*H*W), from the forward pass to the backward pass. */
static void bn_batch_declare(T *t, const TL *L) {
  const int C = L->l->out.c;
  em_line(EM, "float mean%d[%d], istd%d[%d]; /* %s */", L->k, C, L->k, C, L->l->text);
  em_line(EM, "double count%d;", L->k);
}

static void bn_batch_forward(T *t, const TL *L) {
  const Layer *l = L->l;
  const int C = l->out.c, k = L->k;
  const long P = (long)l->out.h * l->out.w;
  em_open(EM, "%s", "");
  em_comment(EM, "%s: the batch's mean, then its variance", emit_quote(EM, l));
  em_line(EM, "double v[%d], mean[%d];", C + 1, C);
  em_line(EM, "memset(v, 0, sizeof v);");
  train_images(t, true);
  em_line(EM, "%s_sums(%s, v);", L->fn, L->in);
  train_images(t, false);
  em_line(EM, "v[%d] = n;", C);
  train_reduce(t, "v", C + 1);
  em_line(EM, "count%d = v[%d] * %ld;", k, C, P);
  em_line(EM, "for (int c = 0; c < %d; c++)", C);
  em_line(EM, "  mean[c] = count%d > 0 ? v[c] / count%d : 0.0;", k, k);
  em_line(EM, "memset(v, 0, sizeof v);");
  train_images(t, true);
  em_line(EM, "%s_squares(%s, mean, v);", L->fn, L->in);
  train_images(t, false);
  train_reduce(t, "v", C);
  em_open(EM, "for (int c = 0; c < %d; c++)", C);
  em_line(EM, "const double var = count%d > 0 ? v[c] / count%d : 0.0;", k, k);
  em_line(EM, "mean%d[c] = (float)mean[c];", k);
  em_line(EM, "istd%d[c] = (float)(1.0 / sqrt(var + %.17g));", k, l->u.bn.eps);
  em_open(EM, "if (!w->stats_quiet)");
  em_line(EM, "g->p[%ld + c] = (float)mean[c];", l->stats_offset);
  em_line(EM, "g->p[%ld + c] = (float)(count%d > 1 ? v[c] / (count%d - 1) : var);",
          l->stats_offset + C, k, k);
  em_close(EM);
  em_close(EM);
  train_images(t, true);
  em_line(EM, "%s_batch_forward(m, %s, %s, mean%d, istd%d);", L->fn, L->in, L->out, k, k);
  train_images(t, false);
  em_close(EM);
}

static void bn_batch_backward(T *t, const TL *L, int *cur) {
  const Layer *l = L->l;
  const int C = l->out.c, k = L->k;
  em_open(EM, "%s", "");
  em_comment(EM, "%s: the batch's sums of dy and dy * xhat", emit_quote(EM, l));
  em_line(EM, "double v[%d];", 2 * C);
  em_line(EM, "memset(v, 0, sizeof v);");
  train_images(t, true);
  em_line(EM, "%s_batch_sums(g, %s, %s, t->g[%d], mean%d, istd%d, v);", L->fn, L->in, L->out, *cur,
          k, k);
  train_images(t, false);
  train_reduce(t, "v", 2 * C);
  if (L->dx) {
    train_images(t, true);
    em_line(EM, "%s_batch_dx(m, %s, t->g[%d], t->g[%d], mean%d, istd%d, v, count%d);", L->fn, L->in,
            *cur, 1 - *cur, k, k, k);
    train_images(t, false);
    *cur = 1 - *cur;
  }
  em_close(EM);
}

/* NAME_update: r = (1 - momentum) * r + momentum * the batch's statistic,
   from where the step's g holds them. */
static void bn_train_update(T *t, const TL *L) {
  const Layer *l = L->l;
  const int C = l->out.c;
  const float mom = (float)l->u.bn.momentum;
  em_open(EM, "for (int c = 0; c < %d; c++)", C);
  em_line(EM, "%s[c] = %s * %s[c] + %s * g->p[%ld + c];", emit_stats_ref(EM, l, 0, "m"),
          FL(1.0f - mom), emit_stats_ref(EM, l, 0, "m"), FL(mom), l->stats_offset);
  em_line(EM, "%s[c] = %s * %s[c] + %s * g->p[%ld + c];", emit_stats_ref(EM, l, 1, "m"),
          FL(1.0f - mom), emit_stats_ref(EM, l, 1, "m"), FL(mom), l->stats_offset + C);
  em_close(EM);
}

static void bn_backward_call(T *t, const TL *L, int *cur) {
  param_backward_call(t, L, "", L->in, *cur);
  if (L->dx)
    *cur = 1 - *cur;
}

static void bn_explain_functions(T *t, const TL *L, const TL *X) {
  if (strcmp(X->bfn, L->bfn) != 0)
    bn_backward(t, X);
}

#undef OP_EM

const OpModule op_batchnorm = {
    .weights = true,
    .prefix = "bn",
    .stats = true,
    .folds_weights = true,
    .batch_stats = true,
    .weight_ones = true,
    .applies_act = true,
    .takes_act = true,
    .shape = bn_shape,
    .counts = bn_counts,
    .tensor = bn_tensor,
    .weight_comment = bn_weight_comment,
    .dump = bn_dump,
    .fold = bn_fold,
    .fold_values = bn_fold_values,
    .forward = bn_forward,
    .train_variant = bn_variant,
    .train_functions = bn_train_functions,
    .backward_call = bn_backward_call,
    .explain_functions = bn_explain_functions,
    .batch_declare = bn_batch_declare,
    .batch_forward = bn_batch_forward,
    .batch_backward = bn_batch_backward,
    .train_update = bn_train_update,
};
