/*
 * residual.c: residual blocks, y = main(x) + shortcut(x). lower.c turns
 *
 *   residual {          fork      (OP_RESIDUAL) keeps x; its output is x
 *     LAYERS            the main path, a chain from x to m
 *     shortcut {        shortcut  (OP_SHORTCUT) keeps m; its output is x again
 *       LAYERS          the shortcut path, a chain from x to s
 *     }
 *   }                   add       (OP_ADD) y = act(m + s), s = x without a shortcut
 *
 * into one linear list, so that every pass still walks a chain: a layer
 * reads the output of the one before it, and only these two read more
 * (OpModule.operand: the add reads the other path's output; .resumes: the
 * shortcut's output is the fork's input). plan.c keeps those tensors alive
 * until then; the emitters pass them. The activation after the block folds
 * into the add (fuse.c: takes_act), so the sum is activated before its
 * single store. The fork and the shortcut emit no code in inference.
 *
 * Training: the forward pass is the same list. Backward, the add applies
 * its activation's derivative to dy and sends dy down both paths: the
 * shortcut path's first (it comes last in the list), with the main path's
 * copy kept in the shortcut's buffer, or, for the identity, straight into
 * the fork's buffer; the shortcut then keeps its path's gradient at x in
 * the fork's buffer and hands the main path its dy; the fork adds the two
 * gradients at x.
 */
#include <string.h>

#include "op.h"

static const Layer *at(const Net *net, int i) {
  return &net->layers[i];
}

/* ---- shapes ---- */

static bool shortcut_shape(ShapeCheck *c, Layer *l) {
  l->out = at(c->net, l->u.block.fork)->in;
  return true;
}

/* Both paths must end in the same shape: else an error at the block, with
   both shapes and the shortcut that would fit. */
static bool add_shape(ShapeCheck *c, Layer *l) {
  const Net *net = c->net;
  const Layer *fork = at(net, l->u.block.fork);
  const int sc = l->u.block.shortcut;
  const Shape x = fork->in, m = sc >= 0 ? at(net, sc)->in : l->in, s = sc >= 0 ? l->in : x;
  char a[64], b[64];
  l->out = m; /* after an error too: the walk goes on with the main path's shape */
  if (m.h == s.h && m.w == s.w && m.c == s.c && m.vec == s.vec)
    return true;
  summary_shape(a, sizeof a, m);
  summary_shape(b, sizeof b, s);
  if (sc < 0)
    diag_error(c->d, fork->loc,
               "the two paths of this residual block end in different shapes: the main path in "
               "%s, the identity shortcut in %s (the block's input)",
               a, b);
  else
    diag_error(c->d, fork->loc,
               "the two paths of this residual block end in different shapes: the main path in "
               "%s, the shortcut in %s",
               a, b);
  /* The layer that fits: a 1x1 conv of the main path's channels at the
     stride between the two (or a dense on vectors). */
  char fix[96];
  if (m.vec || x.vec)
    snprintf(fix, sizeof fix, "dense %d", m.c);
  else if (m.h > 0 && x.h % m.h == 0 && x.w % m.w == 0 && x.h / m.h == x.w / m.w && x.h != m.h)
    snprintf(fix, sizeof fix, "conv2d %d 1x1 stride=%d", m.c, x.h / m.h);
  else if (x.h == m.h && x.w == m.w)
    snprintf(fix, sizeof fix, "conv2d %d 1x1", m.c);
  else
    snprintf(fix, sizeof fix, "conv2d %d 1x1 and a stride that gives %dx%d", m.c, m.h, m.w);
  if (sc < 0)
    diag_note(c->d, fork->loc, "add a 'shortcut { %s }' as the block's last statement", fix);
  else
    diag_note(c->d, at(net, sc)->loc, "make the shortcut end in %s, e.g. 'shortcut { %s }'", a,
              fix);
  return true;
}

/* ---- the graph ---- */

static const Layer *add_operand(const Net *net, const Layer *l) {
  return at(net, l->u.block.shortcut >= 0 ? l->u.block.shortcut : l->u.block.fork);
}

static const Layer *shortcut_resumes(const Net *net, const Layer *l) {
  return at(net, l->u.block.fork);
}

static bool fork_view(const Net *net, const Layer *l) {
  (void)net, (void)l;
  return true;
}

static void no_own_output(const Net *net, Layer *l) {
  (void)net;
  l->train.own_output = false;
}

/* The fork: the gradient of the shortcut path at x; the shortcut: the
   main path's dy while the shortcut path runs backward. */
static long input_floats(const Layer *l) {
  return shape_size(l->in);
}

static void block_dump(const Layer *l, FILE *out) {
  fprintf(out, "      block fork #%d  shortcut #%d  add #%d  depth %d\n", l->u.block.fork,
          l->u.block.shortcut, l->u.block.add, l->depth);
}

/* ---- inference ---- */

#define OP_EM (g->em)

static void no_function(Gen *g, const Layer *l, const char *fn) {
  (void)g, (void)l, (void)fn;
}

static void fork_infer_call(Gen *g, const Layer *l, const char *fn, const char *in,
                            const char *out) {
  (void)fn, (void)out;
  em_comment(EM, "%s: %s kept for the add of line %d", QUOTE(l), in, l->loc.line);
}

static void shortcut_infer_call(Gen *g, const Layer *l, const char *fn, const char *in,
                                const char *out) {
  (void)fn;
  em_comment(EM, "%s: the main path's %s kept; the shortcut starts from %s", QUOTE(l), in, out);
}

/* y = act(a + b); y may be a or b. */
static void add_forward(Gen *g, const Layer *l, const char *fn) {
  const long count = shape_size(l->out);
  const Act act = g->train ? g->act : l->act;
  if (EM->kernels) {
    glue_add_forward(EM, l, fn, act);
    return;
  }
  layer_comment(g, l, em_str(EM, "y %s = a + b", DIMS(l->out)));
  em_open_fn(EM, "static void %s_forward(const float *a, const float *b, float *y)", fn);
  em_line(EM, "for (int i = 0; i < %ld; i++)", count);
  if (act == ACT_RELU)
    em_line(EM, "  y[i] = a[i] + b[i] > 0.0f ? a[i] + b[i] : 0.0f;");
  else
    em_line(EM, "  y[i] = a[i] + b[i];");
  if (act != ACT_RELU)
    emit_act_pass(g, act, "y", count);
  em_close(EM);
  em_blank(EM);
}

static void add_infer_call(Gen *g, const Layer *l, const char *fn, const char *in,
                           const char *out) {
  const Layer *o = add_operand(g->net, l);
  const long i = o - g->net->layers;
  const char *b = emit_where(EM, i ? o[-1].infer_out_offset : INFER_AT_X);
  em_line(EM, "%s_forward(%s, %s, %s); /* %s */", fn, in, b, out, DIMS(l->out));
}

#undef OP_EM

/* ---- training ---- */

#define OP_EM (t->em)

static void quiet_forward_call(T *t, const TL *L) {
  (void)t, (void)L;
}

/* The fork's and the shortcut's buffers: t->r<k>. */
static void block_members(T *t, const TL *L, long *floats) {
  const Layer *l = L->l;
  train_member(t, floats, shape_size(l->in), "float r%d[%ld]; /* %s: %s */", L->k,
               shape_size(l->in), l->text,
               l->op == OP_RESIDUAL ? "the shortcut path's gradient at x"
                                    : "the main path's gradient while the shortcut runs back");
}

static const char *buffer(T *t, const Net *net, int layer) {
  return S(t, "t->r%d", at(net, layer)->train.index);
}

static void fork_backward_call(T *t, const TL *L, int *cur) {
  const long N = shape_size(L->l->in);
  const char *r = buffer(t, t->net, (int)(L->l - t->net->layers));
  if (EM->kernels) {
    em_comment(EM, "%s: the two paths' gradients at x", QUOTE(L->l));
    glue_add(EM, S(t, "t->g[%d]", *cur), r, S(t, "%ld", N));
    return;
  }
  em_line(EM, "for (int i = 0; i < %ld; i++) /* %s: the two paths' gradients at x */", N,
          QUOTE(L->l));
  em_line(EM, "  t->g[%d][i] += %s[i];", *cur, r);
}

static void shortcut_backward_call(T *t, const TL *L, int *cur) {
  const Layer *l = L->l;
  em_comment(EM, "%s: the shortcut's gradient at x kept, the main path's dy back", QUOTE(l));
  em_line(EM, "memcpy(%s, t->g[%d], %ld * sizeof(float));", buffer(t, t->net, l->u.block.fork),
          *cur, shape_size(l->out));
  em_line(EM, "memcpy(t->g[%d], %s, %ld * sizeof(float));", *cur,
          buffer(t, t->net, (int)(l - t->net->layers)), shape_size(l->in));
}

static bool add_variant(const Layer *l) {
  return l->train.act != l->act;
}

static void add_forward_call(T *t, const TL *L) {
  em_line(EM, "%s_forward(%s, %s, %s);", L->ffn, L->in, L->in2, L->out);
}

static void add_backward_call(T *t, const TL *L, int *cur) {
  const Layer *l = L->l;
  const long N = shape_size(l->out);
  const int sc = l->u.block.shortcut;
  em_comment(EM, "%s: dy to both paths", QUOTE(l));
  act_backward(t, L->act, L->out, S(t, "t->g[%d]", *cur), N, l->out.c);
  em_line(EM, "memcpy(%s, t->g[%d], %ld * sizeof(float));",
          buffer(t, t->net, sc >= 0 ? sc : l->u.block.fork), *cur, N);
}

#undef OP_EM

const OpModule op_residual = {
    .shape = shape_identity,
    .dump = block_dump,
    .view = fork_view,
    .plan_train = no_own_output,
    .train_floats = input_floats,
    .forward = no_function,
    .infer_call = fork_infer_call,
    .train_members = block_members,
    .forward_call = quiet_forward_call,
    .backward_call = fork_backward_call,
};

const OpModule op_shortcut = {
    .shape = shortcut_shape,
    .dump = block_dump,
    .resumes = shortcut_resumes,
    .plan_train = no_own_output,
    .train_floats = input_floats,
    .forward = no_function,
    .infer_call = shortcut_infer_call,
    .train_members = block_members,
    .forward_call = quiet_forward_call,
    .backward_call = shortcut_backward_call,
};

const OpModule op_add = {
    .applies_act = true,
    .takes_act = true,
    .cam = true,
    .shape = add_shape,
    .dump = block_dump,
    .operand = add_operand,
    .forward = add_forward,
    .infer_call = add_infer_call,
    .train_variant = add_variant,
    .forward_call = add_forward_call,
    .backward_call = add_backward_call,
};
