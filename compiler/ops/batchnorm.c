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
 * Training with the batch's statistics needs the whole batch inside the
 * forward pass, which NAME_accumulate (one image at a time, each thread its
 * own slice) cannot give yet: `cnngen train` refuses it (batch_stats).
 * NAME_explain runs it as inference does, and its backward pass is that of
 * y = s * x + sh with the running statistics.
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
  em_open(EM, "for (long p = 0; p < %ld; p++)", P);
  em_open(EM, "for (int c = 0; c < %d; c++)", C);
  em_line(EM, "const float v = x[p * %d + c] * sc[c] + shc[c];", C);
  em_line(EM, "y[p * %d + c] = %s;", C, act == ACT_RELU ? "v > 0.0f ? v : 0.0f" : "v");
  em_close(EM);
  em_close(EM);
  if (act != ACT_RELU)
    emit_act_pass(g, act, "y", shape_size(l->out));
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

static void bn_train_functions(T *t, const TL *L) {
  if (L->backward)
    bn_backward(t, L);
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
};
