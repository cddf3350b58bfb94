/*
 * activation.c: an activation on a line of its own (relu, sigmoid, tanh,
 * softmax; Layer.act). After a linear conv or dense layer it folds into
 * it (fuse.c): no code of its own. As the last layer in training it is the
 * loss's (plan.c).
 */
#include "op.h"

static bool act_variant(const Layer *l) {
  return l->train.act != l->act;
}

/* ---- forward ---- */

#define OP_EM (g->em)

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

#undef OP_EM

/* ---- training ---- */

#define OP_EM (t->em)

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

#undef OP_EM

#define OP_EM (t->em)

static void act_train_functions(T *t, const TL *L) {
  if (L->backward)
    act_layer_backward(t, L);
}

static void act_backward_call(T *t, const TL *L, int *cur) {
  em_call(EM, "%s(%s, t->g[%d]);", L->bfn, L->out, *cur);
}

static void act_explain_functions(T *t, const TL *L, const TL *X) {
  if (!L->backward)
    act_layer_backward(t, X);
}

#undef OP_EM

const OpModule op_activation = {
    .applies_act = true,
    .folds = true,
    .shape = shape_identity,
    .forward = emit_act_layer,
    .train_variant = act_variant,
    .train_functions = act_train_functions,
    .backward_call = act_backward_call,
    .explain_functions = act_explain_functions,
};
