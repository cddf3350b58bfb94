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
 *   conv2d/dense (linear) + batchnorm    INFERENCE ONLY. The batchnorm (with the
 *   [+ activation]                       activation after it, which it takes as
 *                                        its act for training too) folds into
 *                                        the conv's or dense's weights and bias
 *                                        (NAME_fold): it is the layer's fused_bn
 *                                        and fused_away, and the layer's act
 *                                        becomes the batchnorm's (plan.c keeps
 *                                        the layer's training act linear).
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

/* The activation layer after l (layer i), if any, into l; whether it did. */
static bool fuse_act(Net *net, Layer *l, int i) {
  Layer *next = i + 1 < net->nlayers ? &net->layers[i + 1] : NULL;
  if (!next || next->op != OP_ACT || l->act != ACT_LINEAR || !op_modules[l->op]->takes_act)
    return false;
  l->act = next->act;
  l->fused_act = next;
  next->fused_away = true;
  return true;
}

void fuse(Net *net) {
  for (int i = 0; i < net->nlayers; i++) {
    Layer *l = &net->layers[i];
    l->fused_away = false;
    l->fused_act = l->fused_pool = l->fused_bn = NULL;
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
    int after = i;
    /* a grouped conv keeps its batchnorm unfolded: its kernels read the
       layer's own weights (conv_groups) */
    const bool foldable = l->op != OP_CONV2D || conv_groups(l) == 1;
    if (next && op_modules[next->op]->folds_weights && op->weights && foldable &&
        l->act == ACT_LINEAR) {
      fuse_act(net, next, i + 1);
      l->fused_bn = next;
      l->act = next->act;
      next->fused_away = true;
      after = next->fused_act ? i + 2 : i + 1;
    } else if (fuse_act(net, l, i)) {
      after = i + 1;
    }
    next = after + 1 < net->nlayers ? &net->layers[after + 1] : NULL;
    if (next && op->fuses_pool && op_modules[next->op]->folds && op->fuses_pool(l, next)) {
      l->fused_pool = next;
      next->fused_away = true;
    }
  }
}
