/*
 * dropout.c: inverted dropout. The identity in inference (fused_away: no
 * code, a comment in NAME_infer) and in NAME_explain; in training a mask
 * drawn from the image's key, kept for the backward pass.
 */
#include <math.h>

#include "op.h"

static const char *dropout_bad_values(const Layer *l) {
  return !(l->u.dropout.rate >= 0 && l->u.dropout.rate < 1) ? "the dropout rate must be in [0, 1)"
                                                            : NULL;
}

static void dropout_dump(const Layer *l, FILE *out) {
  fprintf(out, "      rate %g\n", l->u.dropout.rate);
}

static long dropout_train_floats(const Layer *l) {
  return shape_size(l->out); /* the mask */
}

#define OP_EM (g->em)

static void dropout_infer_call(Gen *g, const Layer *l, const char *fn, const char *in,
                               const char *out) {
  (void)fn, (void)in, (void)out;
  em_comment(EM, "%s: the identity in inference", QUOTE(l));
}

#undef OP_EM

/* ---- training ---- */

#define OP_EM (t->em)

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

#undef OP_EM

#define OP_EM (t->em)

static void dropout_members(T *t, const TL *L, long *total) {
  const Layer *l = L->l;
  train_member(t, total, shape_size(l->out),
               "float mask%d[%ld]; /* %s: kept and scaled elements */", L->k, shape_size(l->out),
               l->text);
}

static void dropout_forward_call(T *t, const TL *L) {
  em_line(EM, "%s_train_forward(%s, %s, t->mask%d, key + (uint64_t)i);", L->fn, L->in, L->out,
          L->k);
}

static void dropout_backward_call(T *t, const TL *L, int *cur) {
  em_line(EM, "for (int j = 0; j < %ld; j++)", shape_size(L->l->out));
  em_line(EM, "  t->g[%d][j] *= t->mask%d[j];", *cur, L->k);
}

/* NAME_explain: the identity, as at inference. */
static void dropout_explain_call(T *t, const TL *X) {
  const long N = shape_size(X->l->out);
  em_line(EM, "for (int j = 0; j < %ld; j++)", N);
  em_line(EM, "  t->mask%d[j] = 1.0f;", X->k);
  em_line(EM, "memcpy(%s, %s, %ld * sizeof(float)); /* %s */", X->out, X->in, N, X->l->text);
}

#undef OP_EM

const OpModule op_dropout = {
    .infer_identity = true,
    .draws = true,
    .bad_values = dropout_bad_values,
    .shape = shape_identity,
    .dump = dropout_dump,
    .train_floats = dropout_train_floats,
    .infer_call = dropout_infer_call,
    .train_functions = dropout_forward,
    .train_members = dropout_members,
    .forward_call = dropout_forward_call,
    .backward_call = dropout_backward_call,
    .explain_call = dropout_explain_call,
};
