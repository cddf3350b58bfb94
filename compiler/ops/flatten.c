/*
 * flatten.c: flatten, [H][W][C] to a vector. Before a dense layer it is
 * free (the dense weights are permuted to read NHWC: a view, no code);
 * as the network's output it transposes to PyTorch's C, H, W order.
 */
#include <assert.h>
#include <string.h>

#include "op.h"

/* ---- forward ---- */

#define OP_EM (g->em)

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

#undef OP_EM

/* ---- the module ---- */

static bool flatten_shape(ShapeCheck *c, Layer *l) {
  l->out = (Shape){1, 1, (int)shape_size(l->in), true};
  if (l->in.vec)
    diag_error(c->d, l->loc,
               "flatten needs an HxWxC input but gets a vector of %d (it is "
               "flat already)",
               l->in.c);
  else
    c->flat = l;
  return true;
}

/* A flatten is free (NHWC is the order of the dense layer after it, whose
   weights are permuted at load) unless no dense comes after it: then its
   output is the network's, which must be in PyTorch's C, H, W order, and
   it transposes. */
static bool flatten_view(const Net *net, const Layer *l) {
  if (l->in.h == 1 && l->in.w == 1)
    return true;
  for (const Layer *j = l + 1; j < net->layers + net->nlayers; j++)
    if (j->op == OP_DENSE)
      return true;
  return false;
}

static void flatten_plan_train(const Net *net, Layer *l) {
  l->train.chw = !flatten_view(net, l);
  l->train.own_output = l->train.chw;
}

#define OP_EM (g->em)

static void flatten_infer_call(Gen *g, const Layer *l, const char *fn, const char *in,
                               const char *out) {
  if (!strcmp(in, out))
    em_comment(EM, "%s: nothing to do, %s in NHWC order is the vector", QUOTE(l), DIMS(l->in));
  else
    em_line(EM, "%s_forward(%s, %s); /* %s */", fn, in, out, DIMS(l->out));
}

static void flatten_forward(Gen *g, const Layer *l, const char *fn) {
  const long i = l - g->net->layers;
  if (l->infer_out_offset != (i ? l[-1].infer_out_offset : INFER_AT_X))
    emit_flatten(g, l, fn);
}

#undef OP_EM
#define OP_EM (t->em)

static void flatten_forward_call(T *t, const TL *L) {
  if (L->chw) /* to C, H, W order, as in inference */
    em_line(EM, "%s_forward(%s, %s);", L->fn, L->in, L->out);
  else if (strcmp(L->in, L->out))
    em_line(EM, "memcpy(%s, %s, %ld * sizeof(float));", L->out, L->in, shape_size(L->l->out));
}

static void flatten_backward_call(T *t, const TL *L, int *cur) {
  const Layer *l = L->l;
  if (!L->chw)
    return; /* the same floats */
  assert(L->dx);
  em_line(EM, "for (int p = 0; p < %d; p++) /* %s: back to H, W, C order */", l->in.h * l->in.w,
          l->text);
  em_line(EM, "  for (int c = 0; c < %d; c++)", l->in.c);
  em_line(EM, "    %s[p * %d + c] = t->g[%d][c * %d + p];", S(t, "t->g[%d]", 1 - *cur), l->in.c,
          *cur, l->in.h * l->in.w);
  *cur = 1 - *cur;
}

#undef OP_EM

const OpModule op_flatten = {
    .shape = flatten_shape,
    .view = flatten_view,
    .plan_train = flatten_plan_train,
    .forward = flatten_forward,
    .infer_call = flatten_infer_call,
    .forward_call = flatten_forward_call,
    .backward_call = flatten_backward_call,
};
