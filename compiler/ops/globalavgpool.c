/*
 * globalavgpool.c: the mean of each channel, [H][W][C] to a vector [C].
 */
#include "op.h"

static bool gap_shape(ShapeCheck *c, Layer *l) {
  if (l->in.vec)
    return shape_needs_image(c, l);
  l->out = (Shape){1, 1, l->in.c, true};
  c->flat = l;
  return true;
}

/* ---- forward ---- */

#define OP_EM (g->em)

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

#undef OP_EM

/* ---- training ---- */

#define OP_EM (t->em)

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

#undef OP_EM

#define OP_EM (t->em)

static void gap_backward_call(T *t, const TL *L, int *cur) {
  em_call(EM, "%s(t->g[%d], %s);", L->bfn, *cur, S(t, "t->g[%d]", 1 - *cur));
  if (L->dx)
    *cur = 1 - *cur;
}

#undef OP_EM

const OpModule op_globalavgpool = {
    .shape = gap_shape,
    .forward = emit_global_pool,
    .train_functions = gap_backward,
    .backward_call = gap_backward_call,
};
