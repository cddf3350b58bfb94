/*
 * emit_glue.c: the JIT's layer functions as calls into the prebuilt kernels
 * (emit_glue.h). For fashion.cnn's conv2d 64 3x3 relu:
 *
 *   static void fashion_conv2_train_forward(const fashion_model *restrict m,
 *                                           const float *restrict x, float *restrict y) {
 *     static const cnk_conv d = {32, 64, 3, 3, 1, 1, 13, 13, 11, 11, 1, 0, 0, 0};
 *     cnk_conv_forward(&d, x, m->conv2_w, m->conv2_b, y);
 *   }
 *
 * tcc compiles a few lines per layer instead of hundreds, and the loops run
 * as the kernels' -O3 code at the CPU's vector width. A grouped conv calls
 * cnk_group_conv_*; a batchnorm's functions keep their per-channel set-up (C
 * iterations) and call cnk_bn_* for the loops over the pixels (glue_bn).
 */
#include "emit_glue.h"

#include "../runtime/kernels/kernels.h"
#include "emit_model.h"

void glue_declarations(Emitter *em, bool pointers) {
  em_comment(em,
             "The prebuilt kernels of cnngen's JIT backend (runtime/kernels/kernels.h),\n"
             "%s: every loop of the layers below runs in them.",
             pointers ? "pointers to them set by cnngen after loading this object"
                      : "linked in by libtcc");
  em_raw(em, "%s", pointers ? CNK_POINTER_DECLARATIONS : CNK_DECLARATIONS);
}

/* "static const cnk_conv d = {...};" for conv l on input ih x iw. */
static void conv_dims(Emitter *em, const Layer *l, int ih, int iw, Act act, const Layer *pool) {
  em_line(em, "static const cnk_conv d = {%d, %d, %d, %d, %d, %d, %d, %d, %d, %d, %d, %d, %d, %d};",
          l->in.c, l->out.c, l->u.conv.kh, l->u.conv.kw, l->u.conv.sh, l->u.conv.sw, ih, iw,
          l->out.h, l->out.w, (int)act, pool ? (pool->op == OP_MAXPOOL ? 1 : 2) : 0,
          pool ? pool->u.pool.kh : 0, pool ? pool->u.pool.kw : 0);
}

static void comment(Emitter *em, const Layer *l, const char *what) {
  em_comment(em, "%s\n%s", emit_quote(em, l), what);
}

void glue_conv_forward(Emitter *em, const Net *net, const Layer *l, const char *fn,
                       const Layer *pool, Act act, const char *w, const char *b) {
  const int ih = l->in.h + l->u.conv.pad_top + l->u.conv.pad_bottom;
  const int iw = l->in.w + l->u.conv.pad_left + l->u.conv.pad_right;
  comment(em, l,
          em_str(em, "x [%d][%d][%d]%s -> y %s%s", ih, iw, l->in.c, ih > l->in.h || iw > l->in.w ? " (padded)" : "",
                 emit_dims(em, pool ? pool->out : l->out), pool ? em_str(em, " (+ %s)", emit_quote(em, pool)) : ""));
  em_open_fn(em,
             "static void %s_forward(const %s_model *restrict m, const float *restrict x, "
             "float *restrict y)",
             fn, net->name);
  conv_dims(em, l, ih, iw, act, pool);
  if (conv_groups(l) > 1)
    em_call(em, "cnk_group_conv_forward(&d, %d, x, %s, %s, y);", conv_groups(l), w, b);
  else
    em_call(em, "cnk_conv_forward(&d, x, %s, %s, y);", w, b);
  em_close(em);
  em_blank(em);
}

void glue_dense_forward(Emitter *em, const Net *net, const Layer *l, const char *fn, Act act,
                        const char *w, const char *b) {
  const int in = (int)shape_size(l->in), out = l->out.c;
  comment(em, l, em_str(em, "x [%d] -> y [%d]", in, out));
  em_open_fn(em,
             "static void %s_forward(const %s_model *restrict m, const float *restrict x, "
             "float *restrict y)",
             fn, net->name);
  em_call(em, "cnk_dense_forward(%d, %d, %d, x, %s, %s, y);", in, out, (int)act, w, b);
  em_close(em);
  em_blank(em);
}

void glue_pool_forward(Emitter *em, const Layer *l, const char *fn) {
  comment(em, l, em_str(em, "x %s -> y %s", emit_dims(em, l->in), emit_dims(em, l->out)));
  em_open_fn(em, "static void %s_forward(const float *restrict x, float *restrict y)", fn);
  em_call(em, "cnk_pool_forward(%d, %d, %d, %d, %d, %d, %d, %d, %d, x, y);",
          l->op == OP_AVGPOOL, l->in.c, l->in.w, l->out.h, l->out.w, l->u.pool.kh, l->u.pool.kw,
          l->u.pool.sh, l->u.pool.sw);
  em_close(em);
  em_blank(em);
}

void glue_conv_backward(Emitter *em, const Net *net, const Layer *l, const GlueBackward *b) {
  const char *n = net->name, *wt = b->transposed ? "wt" : "NULL", *dx = b->dx ? "dx" : "NULL";
  const char *db = l->bias_count ? em_str(em, "g->p + %ld", l->bias_offset) : "NULL";
  const char *w = emit_param_ref(em, net, l, 0, "m");
  if (b->pool) {
    comment(em, l, em_str(em, "+ %s\nbackward from dyp %s", emit_quote(em, b->pool),
                          emit_dims(em, b->pool->out)));
    em_open_fn(em,
               "static void %s(const %s_model *m, %s_grads *g%s, const float *restrict x, const "
               "float *restrict y, const float *restrict yp, const float *restrict dyp, float "
               "*restrict dwt%s)",
               b->fn, n, n, b->transposed ? ", const float *restrict wt" : "",
               b->dx ? ", float *restrict dx" : "");
    conv_dims(em, l, b->ih, b->iw, b->act, b->pool);
    em_call(em, "cnk_conv_pool_backward(&d, x, y, yp, dyp, %s, %s, dwt, %s, %s);", w, wt, db, dx);
  } else {
    comment(em, l, em_str(em, "backward from dy %s", emit_dims(em, l->out)));
    em_open_fn(em,
               "static void %s(const %s_model *m, %s_grads *g%s, const float *restrict x, const "
               "float *restrict y, float *restrict dy%s)",
               b->fn, n, n, b->transposed ? ", const float *restrict wt" : "",
               b->dx ? ", float *restrict dx" : "");
    conv_dims(em, l, b->ih, b->iw, b->act, NULL);
    if (conv_groups(l) == 1) {
      em_call(em, "cnk_conv_backward(&d, x, y, dy, %s, %s, g->p + %ld, %s, %s);", w, wt,
              l->weight_offset, db, dx);
    } else {
      if (b->transposed)
        em_line(em, "(void)wt; /* the grouped kernel reads w */");
      em_call(em, "cnk_group_conv_backward(&d, %d, x, y, dy, %s, g->p + %ld, %s, %s);",
              conv_groups(l), w, l->weight_offset, db, dx);
    }
  }
  em_close(em);
  em_blank(em);
}

void glue_dense_backward(Emitter *em, const Net *net, const Layer *l, const GlueBackward *b) {
  const char *n = net->name;
  comment(em, l, em_str(em, "backward from dy [%d]", l->out.c));
  em_open_fn(em,
             "static void %s(const %s_model *m, %s_grads *g, const float *restrict x, const float "
             "*restrict y, float *restrict dy%s)",
             b->fn, n, n, b->dx ? ", float *restrict dx" : "");
  em_call(em, "cnk_dense_backward(%d, %d, %d, x, y, dy, %s, g->p + %ld, %s, %s);",
          (int)shape_size(l->in), l->out.c, (int)b->act, emit_param_ref(em, net, l, 0, "m"),
          l->weight_offset,
          l->bias_count ? em_str(em, "g->p + %ld", l->bias_offset) : "NULL",
          b->dx ? "dx" : "NULL");
  em_close(em);
  em_blank(em);
}

void glue_pool_backward(Emitter *em, const Layer *l, const char *fn) {
  comment(em, l, "backward");
  em_open_fn(em,
             "static void %s(const float *restrict x, const float *restrict y, const float "
             "*restrict dy, float *restrict dx)",
             fn);
  em_call(em, "cnk_pool_backward(%d, %d, %d, %d, %d, %d, %d, %d, %d, %d, x, y, dy, dx);",
          l->op == OP_AVGPOOL, l->in.c, l->in.h, l->in.w, l->out.h, l->out.w, l->u.pool.kh,
          l->u.pool.kw, l->u.pool.sh, l->u.pool.sw);
  em_close(em);
  em_blank(em);
}

void glue_bn(Emitter *em, const char *kernel, const Layer *l, const char *args) {
  em_call(em, "cnk_bn_%s(%ld, %d, %s);", kernel, (long)l->out.h * l->out.w, l->out.c, args);
}

void glue_transpose(Emitter *em, const char *src, const char *dst, long outer, long rows,
                    long cols, bool add) {
  em_call(em, "cnk_transpose(%s, %s, %ld, %ld, %ld, %d);", src, dst, outer, rows, cols, add);
}

void glue_add(Emitter *em, const char *into, const char *g, const char *n) {
  em_call(em, "cnk_add(%s, %s, %s);", into, g, n);
}

void glue_add_forward(Emitter *em, const Layer *l, const char *fn, Act act) {
  comment(em, l, em_str(em, "y %s = a + b", emit_dims(em, l->out)));
  em_open_fn(em, "static void %s_forward(const float *a, const float *b, float *y)", fn);
  em_call(em, "cnk_add_forward(%ld, %d, a, b, y);", shape_size(l->out), (int)act);
  em_close(em);
  em_blank(em);
}

void glue_act_backward(Emitter *em, Act act, const char *y, const char *dy, long count, int group) {
  em_call(em, "cnk_act_backward(%ld, %d, %d, %s, %s);", count, (int)act, group, y, dy);
}

void glue_optimizer(Emitter *em, const Net *net, int slots) {
  const TrainConfig *tc = &net->train;
  const char *n = net->name;
#define FL(v) em_float(em, (float)(v))
  if (tc->optimizer == OPT_ADAM) {
    em_comment(em, "adam (lr=%g in the .cnn file, the step's lr at run time) beta1=%g beta2=%g eps=%g weight_decay=%g", tc->lr, tc->beta1,
               tc->beta2, tc->eps, tc->weight_decay);
    em_open_fn(em,
               "static void %s_adam(float *restrict p, const float *restrict g, "
               "float *restrict s0, float *restrict s1, long n, float scale, float lr, float c1, "
               "float c2)",
               n);
    em_call(em, "cnk_adam(p, g, s0, s1, n, scale, c1, c2, lr, %s, %s, %s, %s, %s, %s);",
            FL(tc->beta1), FL(1.0 - tc->beta1), FL(tc->beta2), FL(1.0 - tc->beta2),
            FL(tc->eps), FL(tc->weight_decay));
  } else {
    em_comment(em, "sgd (lr=%g in the .cnn file, the step's lr at run time) momentum=%g%s weight_decay=%g", tc->lr, tc->momentum,
               tc->nesterov ? " nesterov" : "", tc->weight_decay);
    em_open_fn(
        em, "static void %s_sgd(float *restrict p, const float *restrict g, %slong n, float scale, "
        "float lr)",
        n, slots ? "float *restrict s0, " : "");
    em_call(em, "cnk_sgd(p, g, %s, n, scale, lr, %s, %d, %s);", slots ? "s0" : "NULL",
            FL(tc->momentum), tc->nesterov, FL(tc->weight_decay));
  }
#undef FL
  em_close(em);
  em_blank(em);
}
