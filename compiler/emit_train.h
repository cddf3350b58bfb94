/*
 * emit_train.h: the training half of the generated C (emit_train.c). The
 * inference emitter calls these where the training parts go when
 * EmitOptions.training is set, each writing at the Emitter's current depth.
 */
#ifndef CNNGEN_EMIT_TRAIN_H
#define CNNGEN_EMIT_TRAIN_H

#include <stdio.h>

#include "emit_model.h"
#include "emitter.h"
#include "ir.h"

/* Header: struct NAME_train_work, NAME_OPT_SLOTS and NAME_grads (before NAME_model). */
void emit_train_types(Emitter *em, const Net *net);
/* Members of NAME_model (optimizer state, step) and NAME_work (the buffers). */
void emit_train_model_members(Emitter *em, const Net *net);
void emit_train_work_members(Emitter *em, const Net *net);
/* Header: the training API, documented. */
void emit_train_declarations(Emitter *em, const Net *net);
/* Source: every training function. */
void emit_train_source(Emitter *em, const Net *net);

/* Provided by the inference emitter (emit_infer.c), whose kernels training's
   forward pass runs: layer l's forward function fn_forward as training runs
   it where that differs from inference (a conv without its fused pool, a
   pool fused in inference, the output layer's activation, which the loss
   applies), writing `act` after the op. */
void emit_train_forward(Emitter *em, const Net *net, const Layer *l, const char *fn, Act act);

#endif
