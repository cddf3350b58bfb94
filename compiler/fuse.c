/*
 * fuse.c: marks which layers fold into the one before them. Shapes and
 * parameters do not change; only the fused_* fields do.
 *
 *   conv2d/dense (linear) + activation   the activation layer sets the conv's
 *                                        or dense's act, is its fused_act, and
 *                                        is fused_away: for inference AND for
 *                                        training (the backward pass applies
 *                                        the derivative inside the conv/dense).
 *   conv2d + maxpool/avgpool             INFERENCE ONLY. The conv computes the
 *                                        pooled output directly (conv rows and
 *                                        columns that a floor-mode pool drops
 *                                        are never computed); the pool is the
 *                                        conv's fused_pool and is fused_away.
 *                                        Training ignores fused_away on pools:
 *                                        the backward pass needs the conv's
 *                                        own output, so training runs the pool
 *                                        as a step of its own with this IR
 *                                        unchanged (Layer.out of the conv is
 *                                        still the unpooled shape).
 *   dropout                              identity in inference: fused_away,
 *                                        which only the inference emitter
 *                                        reads; training always runs it.
 *
 * The op table decides (ops.h): which layers take the activation after
 * them (takes_act), which are the identity in inference (infer_identity),
 * and which pools fold into a conv (the conv module's fuses_pool: windows
 * that do not overlap, an activation that commutes with the pool).
 */
#include "compile.h"

void fuse(Net *net) {
  for (int i = 0; i < net->nlayers; i++) {
    Layer *l = &net->layers[i];
    l->fused_away = false;
    l->fused_act = l->fused_pool = NULL;
  }
  for (int i = 0; i < net->nlayers; i++) {
    Layer *l = &net->layers[i];
    const OpModule *op = op_modules[l->op];
    if (op->infer_identity) {
      l->fused_away = true;
      continue;
    }
    if (!op->takes_act)
      continue;
    Layer *next = i + 1 < net->nlayers ? &net->layers[i + 1] : NULL;
    if (next && next->op == OP_ACT && l->act == ACT_LINEAR) {
      l->act = next->act;
      l->fused_act = next;
      next->fused_away = true;
    }
    int after = l->fused_act ? i + 1 : i;
    next = after + 1 < net->nlayers ? &net->layers[after + 1] : NULL;
    if (next && op->fuses_pool && op_modules[next->op]->folds && op->fuses_pool(l, next)) {
      l->fused_pool = next;
      next->fused_away = true;
    }
  }
}
