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
 * A pool fuses when its windows do not overlap (stride = window, in each
 * direction: maxpool 2x3 strides 2x3) and its result does not depend on
 * where the activation runs (see pool_fuses):
 * max commutes with every increasing activation, a mean only with the
 * piecewise linear ones that the conv applies per pixel before summing.
 */
#include "compile.h"

static bool pool_fuses(const Layer *conv, const Layer *pool) {
  if (pool->u.pool.sh != pool->u.pool.kh || pool->u.pool.sw != pool->u.pool.kw)
    return false;
  if (pool->op == OP_MAXPOOL)
    return conv->act != ACT_SOFTMAX; /* softmax mixes channels: not monotonic per value */
  return conv->act == ACT_LINEAR || conv->act == ACT_RELU;
}

void fuse(Net *net) {
  for (int i = 0; i < net->nlayers; i++) {
    Layer *l = &net->layers[i];
    l->fused_away = false;
    l->fused_act = l->fused_pool = NULL;
  }
  for (int i = 0; i < net->nlayers; i++) {
    Layer *l = &net->layers[i];
    if (l->op == OP_DROPOUT) {
      l->fused_away = true;
      continue;
    }
    if (l->op != OP_CONV2D && l->op != OP_DENSE)
      continue;
    Layer *next = i + 1 < net->nlayers ? &net->layers[i + 1] : NULL;
    if (next && next->op == OP_ACT && l->act == ACT_LINEAR) {
      l->act = next->act;
      l->fused_act = next;
      next->fused_away = true;
    }
    int after = l->fused_act ? i + 1 : i;
    next = after + 1 < net->nlayers ? &net->layers[after + 1] : NULL;
    if (l->op == OP_CONV2D && next && (next->op == OP_MAXPOOL || next->op == OP_AVGPOOL) &&
        pool_fuses(l, next)) {
      l->fused_pool = next;
      next->fused_away = true;
    }
  }
}
