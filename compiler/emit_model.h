/*
 * emit_model.h: the parameters in the generated C (emit_model.c): the model
 * struct's members, the tensor table NAME_tensors and NAME_permute, and
 * NAME_init, NAME_load, NAME_store and the baked weights, which loop over it.
 */
#ifndef CNNGEN_EMIT_MODEL_H
#define CNNGEN_EMIT_MODEL_H

#include "emitter.h"
#include "ir.h"

/* Header: the parameter members of NAME_model. */
void emit_model_members(Emitter *em, const Net *net);
/* Source: the tensor table and NAME_permute (when there are parameters),
   NAME_init, NAME_load, NAME_store, and with `weights` NAME_trained. */
void emit_model_source(Emitter *em, const Net *net, const float *weights);
/* A loop over the tensor table, `t` each tensor, with the lines of `body`
   inside (em_call's). */
void emit_tensor_loop(Emitter *em, const Net *net, const char *body);

/* A C expression (through the model pointer `m`) for the first float of
   layer l's weights (bias = 0) or bias (bias = 1), in the model's layout. */
const char *emit_param_ref(Emitter *em, const Net *net, const Layer *l, int bias, const char *m);
/* The same for the running mean (var = 0) or variance (1) of a layer with
   running statistics (OpModule.stats). */
const char *emit_stats_ref(Emitter *em, const Layer *l, int var, const char *m);
/* The same for the weights and bias of a conv/dense with a folded batchnorm
   (Layer.fused_bn), which NAME_fold computes from both layers' tensors. */
const char *emit_folded_ref(Emitter *em, const Layer *l, int bias, const char *m);
/* "line 6: conv2d 32 3x3 relu": how a comment quotes a layer. */
const char *emit_quote(Emitter *em, const Layer *l);
/* "[26][26][32]" for an image, "[10]" for a vector. */
const char *emit_dims(Emitter *em, Shape s);

#endif
