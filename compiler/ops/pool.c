/*
 * pool.c: maxpool and avgpool, two rows of the op table from one module.
 * A pool right after a conv folds into it for inference when its windows
 * do not overlap (conv2d.c writes the fused kernel); in training a maxpool
 * after a conv may have its backward pass done by the conv's
 * (conv2d.c, conv_pool_backward).
 */
#include "op.h"

static const char *pool_bad_values(const Layer *l) {
  return l->u.pool.kh < 1 || l->u.pool.kw < 1   ? "the window size must be at least 1x1"
         : l->u.pool.sh < 1 || l->u.pool.sw < 1 ? "the stride must be at least 1x1"
                                                : NULL;
}

static bool pool_shape(ShapeCheck *c, Layer *l) {
  if (l->in.vec)
    return shape_needs_image(c, l);
  int kh = l->u.pool.kh, kw = l->u.pool.kw;
  if (!shape_window_fits(c, l, "window", kh, kw, 0, 0))
    return false;
  l->out =
      (Shape){(l->in.h - kh) / l->u.pool.sh + 1, (l->in.w - kw) / l->u.pool.sw + 1, l->in.c, false};
  return true;
}

static void pool_dump(const Layer *l, FILE *out) {
  fprintf(out, "      window %dx%d  stride %dx%d\n", l->u.pool.kh, l->u.pool.kw, l->u.pool.sh,
          l->u.pool.sw);
}

/* Training runs a pool that inference folds into its conv as a step of its own. */
static bool pool_variant(const Layer *l) {
  return l->fused_away;
}

/* ---- forward ---- */

#define OP_EM (g->em)

static void emit_pool(Gen *g, const Layer *l, const char *fn) {
  if (EM->kernels) {
    glue_pool_forward(EM, l, fn);
    return;
  }
  const int C = l->in.c, W = l->in.w, SH = l->u.pool.sh, SW = l->u.pool.sw;
  const int KH = l->u.pool.kh, KW = l->u.pool.kw, PH = l->out.h, PW = l->out.w;
  const bool avg = l->op == OP_AVGPOOL;
  const char *what = em_str(EM, "x %s -> y %s", DIMS(l->in), DIMS(l->out));
  layer_comment(g, l, what);
  em_open_fn(EM, "static void %s_forward(const float *restrict x, float *restrict y)", fn);
  em_open(EM, "for (int py = 0; py < %d; py++)", PH);
  em_open(EM, "for (int px = 0; px < %d; px++)", PW);
  em_line(EM, "const float *restrict xp = x + %s;",
          LIN(0, "py", (long)SH * W * C, "px", (long)SW * C));
  em_line(EM, "float *restrict yp = y + %s;", LIN(0, "py", (long)PW * C, "px", (long)C));
  em_open(EM, "for (int c = 0; c < %d; c++)", C);
  const bool unroll = KH * KW <= 16;
  em_line(EM, "float v = %s;", avg && !unroll ? "0.0f" : "xp[c]");
  if (unroll) {
    for (int ky = 0; ky < KH; ky++)
      for (int kx = 0; kx < KW; kx++) {
        if (!ky && !kx)
          continue;
        long off = ((long)ky * W + kx) * C;
        if (avg)
          em_line(EM, "v += xp[c + %ld];", off);
        else
          em_line(EM, "v = xp[c + %ld] > v ? xp[c + %ld] : v;", off, off);
      }
  } else {
    em_open(EM, "for (int ky = 0; ky < %d; ky++)", KH);
    em_open(EM, "for (int kx = 0; kx < %d; kx++)", KW);
    em_line(EM, "const float u = xp[%s];", LIN(0, "ky", (long)W * C, "kx", (long)C, "c", 1L));
    if (avg)
      em_line(EM, "v += u;");
    else
      em_line(EM, "v = u > v ? u : v;");
    em_close(EM);
    em_close(EM);
  }
  if (avg)
    em_line(EM, "yp[c] = v / %s;", FLT((double)KH * KW));
  else
    em_line(EM, "yp[c] = v;");
  em_close(EM);
  em_close(EM);
  em_close(EM);
  em_close(EM);
  em_blank(EM);
}

#undef OP_EM

/* ---- training ---- */

#define OP_EM (t->em)

/* Maxpool sends each window's gradient to its first maximum in row-major
   order: `r` holds what is still to be given, and the first match takes it. */
static void pool_backward(T *t, const TL *L) {
  if (glue_backward(t, L))
    return;
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

static void pool_train_functions(T *t, const TL *L) {
  if (L->backward && !L->pooled)
    pool_backward(t, L);
}

static void pool_backward_call(T *t, const TL *L, int *cur) {
  if (L->pooled) /* done by the conv before it */
    return;
  em_call(EM, "%s(%s, %s, t->g[%d], %s);", L->bfn, L->in, L->out, *cur, S(t, "t->g[%d]", 1 - *cur));
  if (L->dx)
    *cur = 1 - *cur;
}

static void pool_explain_functions(T *t, const TL *L, const TL *X) {
  if (!X->pooled && (!L->backward || L->pooled))
    pool_backward(t, X);
}

#undef OP_EM

#define POOL_MODULE(name, dsl)                                                                     \
  const OpModule name = {                                                                          \
      .folds = true,                                                                               \
      .bad_values = pool_bad_values,                                                               \
      .shape = pool_shape,                                                                         \
      .dump = pool_dump,                                                                           \
      .forward = emit_pool,                                                                        \
      .train_variant = pool_variant,                                                               \
      .train_functions = pool_train_functions,                                                     \
      .backward_call = pool_backward_call,                                                         \
      .explain_functions = pool_explain_functions,                                                 \
  }
POOL_MODULE(op_maxpool, "maxpool");
POOL_MODULE(op_avgpool, "avgpool");
