/*
 * emit_glue.h: the layer functions of the JIT's generated C (EmitOptions.kernels,
 * emit_glue.c): the same functions, with the same parameters, that the
 * inference and training emitters write, but each body one call into the
 * prebuilt kernels (runtime/kernels/kernels.h) with the layer's dimensions
 * as constants. The emitters call these in place of writing the loops when
 * Emitter.kernels is set; everything around them (the layer order, the
 * buffers, the loss, NAME_accumulate, the API) is theirs, unchanged.
 */
#ifndef CNNGEN_EMIT_GLUE_H
#define CNNGEN_EMIT_GLUE_H

#include "emitter.h"
#include "ir.h"

/* The kernels' struct and prototypes, once at the top of the source; or
   (pointers) one function pointer per kernel, by the same name, which the
   loader sets (backend.c, --backend cc-kernels). */
void glue_declarations(Emitter *em, bool pointers);

/* FN_forward(m, x, y) of conv or dense layer l with activation act (and for
   a conv, the pool fused after it, or NULL; a grouped conv has none),
   reading its weights and bias (or "NULL") through w and b: a folded
   batchnorm's (NAME_fold) where one folds into it; FN_forward(x, y) of a
   pool. */
void glue_conv_forward(Emitter *em, const Net *net, const Layer *l, const char *fn,
                       const Layer *pool, Act act, const char *w, const char *b);
void glue_dense_forward(Emitter *em, const Net *net, const Layer *l, const char *fn, Act act,
                        const char *w, const char *b);
void glue_pool_forward(Emitter *em, const Layer *l, const char *fn);

/* A backward function as the training emitter names and calls it. */
typedef struct GlueBackward {
  const char *fn;    /* its name */
  Act act;           /* the activation whose derivative it applies to dy */
  int ih, iw;        /* conv: the (padded) input */
  bool transposed;   /* conv: takes the transposed weights wt */
  bool dx;           /* takes dx (NULL at run time: no input gradient) */
  const Layer *pool; /* conv: the maxpool after it, whose backward it does */
} GlueBackward;
void glue_conv_backward(Emitter *em, const Net *net, const Layer *l, const GlueBackward *b);
void glue_dense_backward(Emitter *em, const Net *net, const Layer *l, const GlueBackward *b);
void glue_pool_backward(Emitter *em, const Layer *l, const char *fn);

/* A call to batchnorm l's kernel cnk_bn_KERNEL (runtime/kernels/kernels.h)
   over its pixels and channels: "cnk_bn_KERNEL(P, C, ARGS);". */
void glue_bn(Emitter *em, const char *kernel, const Layer *l, const char *args);

/* A call that puts src [outer][rows][cols] into dst as [outer][cols][rows]
   (add: adds it), for the training emitter's transposed weights and
   gradients; one that adds n floats of g into `into`. */
void glue_transpose(Emitter *em, const char *src, const char *dst, long outer, long rows,
                    long cols, bool add);
void glue_add(Emitter *em, const char *into, const char *g, const char *n);

/* A residual block's sum: FN_forward(a, b, y), y = act(a + b) (the add of
   compiler/ops/residual.c). A call that makes dy act'(y) dy in place over
   count floats (softmax: per group of `group`), for the training emitter's
   act_backward. */
void glue_add_forward(Emitter *em, const Layer *l, const char *fn, Act act);
void glue_act_backward(Emitter *em, Act act, const char *y, const char *dy, long count, int group);

/* NAME_adam or NAME_sgd, as the training emitter's NAME_update calls it
   (`slots`: the optimizer's state arrays). */
void glue_optimizer(Emitter *em, const Net *net, int slots);

#endif
