/*
 * dense.c: a fully connected layer, y = act(W x + b). Its weight is
 * PyTorch's [OUT][IN], held as [IN][OUT] (OUT innermost) with IN in H, W, C
 * order after a flatten, so that it reads NHWC as it is (the permutation
 * of emit_model.c: o = OUT, c = C, k = H * W).
 */
#include <math.h>
#include <string.h>

#include "op.h"

static const char *dense_bad_values(const Layer *l) {
  return l->u.dense.units < 1 ? "the number of units must be at least 1" : NULL;
}

static bool dense_shape(ShapeCheck *c, Layer *l) {
  char in[64];
  if (!l->in.vec) {
    diag_error(c->d, l->loc, "dense needs a vector input but gets %s",
               summary_shape(in, sizeof in, l->in));
    diag_note(c->d, l->loc, "add 'flatten' before line %d", l->loc.line);
  }
  l->out = (Shape){1, 1, l->u.dense.units, true};
  return true;
}

static void dense_counts(const Layer *l, double *weights, double *bias, double *macs) {
  *weights = (double)l->u.dense.units * (double)shape_size(l->in);
  *bias = l->no_bias ? 0 : l->u.dense.units;
  *macs = *weights;
}

/* The shape a dense layer's IN index walks in H, W, C order: what a flatten
   before it (possibly through dropout or activations) flattened; else its
   input. Both emitters permute dense weights by it. */
static Shape dense_source(const Net *net, const Layer *l) {
  for (const Layer *p = l - 1; p >= net->layers; p--) {
    if (p->op == OP_FLATTEN)
      return p->in;
    if (p->op != OP_DROPOUT && p->op != OP_ACT)
      break;
  }
  return l->in;
}

static void dense_tensor(const Net *net, const Layer *l, OpTensor *t) {
  const Shape s = dense_source(net, l);
  *t = (OpTensor){2,         {l->u.dense.units, (int)shape_size(l->in)},
                  l->out.c,  s.c,
                  s.h * s.w, shape_size(l->in),
                  l->out.c};
}

static const char *dense_weight_comment(Emitter *em, const Net *net, const Layer *l) {
  const Shape s = dense_source(net, l);
  const char *layout = em_str(em, "[IN][OUT] = [%ld][%d], file [%d][%ld]", shape_size(l->in),
                              l->out.c, l->out.c, shape_size(l->in));
  if (!s.vec)
    layout = em_str(em, "%s; IN runs over %s\nin H, W, C order here, in C, H, W order in the file",
                    layout, emit_dims(em, s));
  return layout;
}

static void dense_dump(const Layer *l, FILE *out) {
  fprintf(out, "      units %d\n", l->u.dense.units);
}

/* Training runs a forward function of its own where inference's applies
   another activation or reads folded batchnorm weights. */
static bool dense_variant(const Layer *l) {
  return l->train.act != l->act || l->fused_bn;
}

/* ---- forward ---- */

#define OP_EM (g->em)

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
  const bool bias = forward_has_bias(g, l);
  const char *wref = forward_param_ref(g, l, 0);
  em_line(EM, "const float *restrict w = %s; /* [%d][%d] */", wref, IN, OUT);
  if (bias)
    em_line(EM, "const float *restrict b = %s; /* [%d] */", forward_param_ref(g, l, 1), OUT);
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

/* Vectors of outputs per register block for n vectors: the largest count
   up to 8 that divides n, where that is at least 4 (or all n); else 8, the
   last block taking the rest. Blocks of one or two vectors would chain
   their FMAs on each other's latency (n a prime above 7: 176, 208, 272
   outputs on 16 floats). */
static int dense_block(int n) {
  int b = n < 8 ? n : 8;
  while (n % b)
    b--;
  return b >= 4 || b == n ? b : 8;
}

/* One block of vectors of outputs from o0 ("" for 0): `count` of them, in
   a[size], all inputs each. */
static void emit_dense_vectors(Gen *g, const Layer *l, const char *size, const char *count,
                               const char *o0, bool bias, bool relu) {
  const char *n = g->n;
  const int IN = (int)shape_size(l->in), OUT = l->out.c;
  em_line(EM, "%s_v a[%s];", n, size);
  em_line(EM, "%s_UNROLL for (int v = 0; v < %s; v++)", n, count);
  if (bias)
    em_line(EM, "  %s_LOAD(a[v], b + %s);", n, LIN(0, o0, 1L, em_str(EM, "v * %s_VW", n), 1L));
  else
    em_line(EM, "  %s_ZERO(a[v]);", n);
  em_open(EM, "for (int i = 0; i < %d; i++)", IN);
  em_line(EM, "const float s = x[i];");
  em_line(EM, "const float *restrict wi = w + %s;", LIN(0, "i", (long)OUT, o0, 1L));
  em_open(EM, "%s_UNROLL for (int v = 0; v < %s; v++)", n, count);
  em_line(EM, "%s_v wv;", n);
  em_line(EM, "%s_LOAD(wv, wi + v * %s_VW);", n, n);
  em_line(EM, "%s_FMAV(a[v], s, wv);", n);
  em_close(EM);
  em_close(EM);
  if (relu)
    em_open(EM, "%s_UNROLL for (int v = 0; v < %s; v++)", n, count),
        em_line(EM, "%s_MAXV(a[v], zero);", n);
  else
    em_line(EM, "%s_UNROLL for (int v = 0; v < %s; v++)", n, count), em_indent(EM);
  em_line(EM, "%s_STORE(y + %s, a[v]);", n, LIN(0, o0, 1L, em_str(EM, "v * %s_VW", n), 1L));
  if (relu)
    em_close(EM);
  else
    em_dedent(EM);
}

/* The forward function of a dense layer of a multiple of 16 outputs, once
   for every width: blocks of OB vectors of NAME_VW outputs in registers
   (OB per width, at most 8: 8 + 8 + 1 registers), all inputs each; where
   OB does not divide the vectors, one more block of the REST. */
static void emit_dense_generic(Gen *g, const Layer *l, const char *fn) {
  const char *n = g->n;
  const int IN = (int)shape_size(l->in), OUT = l->out.c;
  const int ob16 = dense_block(OUT / 16), ob8 = dense_block(OUT / 8);
  const int rest16 = OUT / 16 % ob16, rest8 = OUT / 8 % ob8;
  const Act act = g->train ? g->act : l->act;
  const bool bias = forward_has_bias(g, l), relu = act == ACT_RELU;
  em_open_fn(
      EM,
      "static %s_NOINLINE void %s_forward(const %s_model *restrict m, const float *restrict x, "
      "float *restrict y)",
      n, fn, n);
  em_line(EM, "const float *restrict w = %s; /* [%d][%d] */", forward_param_ref(g, l, 0), IN, OUT);
  if (bias)
    em_line(EM, "const float *restrict b = %s; /* [%d] */", forward_param_ref(g, l, 1), OUT);
  const char *OB = ob16 == ob8 ? em_str(EM, "%d", ob16) : "OB";
  if (rest16 || rest8)
    em_line(EM, "enum { OB = %s, REST = %s }; /* vectors of outputs per block, in the last */",
            ob16 == ob8 ? OB : em_str(EM, "%s_VW == 16 ? %d : %d", n, ob16, ob8),
            rest16 == rest8 ? em_str(EM, "%d", rest16)
                            : em_str(EM, "%s_VW == 16 ? %d : %d", n, rest16, rest8));
  else if (ob16 != ob8)
    em_line(EM, "enum { OB = %s_VW == 16 ? %d : %d }; /* vectors of outputs per block */", n, ob16,
            ob8);
  if (relu) {
    em_line(EM, "%s_v zero;", n);
    em_line(EM, "memset(&zero, 0, sizeof zero);");
  }
  if (rest16 || rest8) {
    em_open(EM, "for (int o0 = 0; o0 < %d - REST * %s_VW; o0 += OB * %s_VW)", OUT, n, n);
    emit_dense_vectors(g, l, "OB", "OB", "o0", bias, relu);
    em_close(EM);
    em_open(EM, "if (REST)");
    em_line(EM, "const int o0 = %d - REST * %s_VW;", OUT, n);
    emit_dense_vectors(g, l, "OB", "REST", "o0", bias, relu); /* a[OB]: REST may be 0 */
    em_close(EM);
  } else {
    const bool one = OUT / 16 == ob16 && OUT / 8 == ob8; /* one block at each width */
    if (one)
      em_open(EM, "%s", "");
    else
      em_open(EM, "for (int o0 = 0; o0 < %d; o0 += %s * %s_VW)", OUT, OB, n);
    emit_dense_vectors(g, l, OB, OB, one ? "" : "o0", bias, relu);
    em_close(EM);
  }
  if (!relu)
    emit_act_pass(g, act, "y", OUT);
  em_close(EM);
}

/* Written once for every width when the outputs are whole vectors of 16
   floats (emit_dense_generic), else once on 8. */
static void emit_dense(Gen *g, const Layer *l, const char *fn) {
  if (EM->kernels) {
    glue_dense_forward(EM, g->net, l, fn, g->train ? g->act : l->act, forward_param_ref(g, l, 0),
                       forward_has_bias(g, l) ? forward_param_ref(g, l, 1) : "NULL");
    return;
  }
  const int IN = (int)shape_size(l->in), OUT = l->out.c;
  const Shape src = dense_source(g->net, l);
  const char *what =
      src.vec ? em_str(EM, "x [%d] -> y [%d]", IN, OUT)
              : em_str(EM, "x [%d] (%s flattened in NHWC order) -> y [%d]", IN, DIMS(src), OUT);
  layer_comment(g, l, what);
  if (OUT % 16 == 0) {
    emit_dense_generic(g, l, fn);
  } else {
    emit_dense_fn(g, l, fn, &em_vec8);
  }
  em_blank(EM);
}

#undef OP_EM

/* ---- training ---- */

#define OP_EM (t->em)

static void dense_backward(T *t, const TL *L) {
  if (glue_backward(t, L))
    return;
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
  param_backward_head(t, L, S(t, "[%d][%d]", IN, OUT));
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

#undef OP_EM

#define OP_EM (t->em)

static void dense_train_functions(T *t, const TL *L) {
  if (L->backward)
    dense_backward(t, L);
}

static void dense_backward_call(T *t, const TL *L, int *cur) {
  param_backward_call(t, L, "", L->in, *cur);
  if (L->dx)
    *cur = 1 - *cur;
}

static void dense_explain_functions(T *t, const TL *L, const TL *X) {
  if (strcmp(X->bfn, L->bfn) != 0)
    dense_backward(t, X);
}

#undef OP_EM

const OpModule op_dense = {
    .weights = true,
    .prefix = "dense",
    .applies_act = true,
    .takes_act = true,
    .bad_values = dense_bad_values,
    .shape = dense_shape,
    .counts = dense_counts,
    .tensor = dense_tensor,
    .weight_comment = dense_weight_comment,
    .dump = dense_dump,
    .forward = emit_dense,
    .train_variant = dense_variant,
    .train_functions = dense_train_functions,
    .backward_call = dense_backward_call,
    .explain_functions = dense_explain_functions,
};
