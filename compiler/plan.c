/*
 * plan.c: the memory plan.
 *
 * Inference. NAME_infer runs one image at a time; every tensor of that
 * image lives in one float array of the work struct (NAME_work.act), at
 * an offset fixed here. A tensor is live from the step that writes it to
 * the last step that reads it (in-place activations extend its life). The
 * tensors are placed in the order they are written, each at the lowest
 * offset (rounded up to 16 floats, 64 bytes) where it overlaps no tensor
 * live at the same time: first fit, so a layer's output reuses the space of
 * tensors that died before it. For a chain this is never worse than
 * ping-pong and is usually better (a small tensor slips into an early gap).
 *
 *   - no copy for identities: flatten (NHWC already is the dense layer's
 *     order: its weights are permuted at load) and dropout (identity in
 *     inference) reuse their input's tensor, even the caller's x; but a
 *     flatten with no dense after it transposes to C, H, W order, the
 *     order of the network's output;
 *   - an activation layer of its own works in place (except on x, which
 *     is const: then it gets a tensor);
 *   - a conv with a fused pool writes the pooled tensor directly;
 *   - a conv with padding gets a scratch tensor, live only during that
 *     step, for its input copied inside a zero border (infer_pad_offset);
 *   - the last tensor is the caller's y (INFER_AT_Y): the final layer
 *     writes its outputs there directly, with no copy.
 *
 * Training: the training emitter sizes its own buffers (emit_train_sizes);
 * the plan records their sum for `cnngen check`: parameters, optimizer
 * state, and for one thread its gradient accumulator and its work struct
 * (inference tensors plus the training buffers of one image: a thread
 * runs its images one at a time, so the batch size does not enter).
 */
#include <assert.h>
#include <stdlib.h>

#include "compile.h"
#include "emit_train.h"

enum { ALIGN_FLOATS = 16 };

typedef struct Block {
  long size;      /* floats */
  int start, end; /* first and last step (layer index) it is live */
  long offset;    /* placed: floats into the buffer */
  bool is_y;      /* the caller's output: not placed */
} Block;

static long round_up(long n) {
  return (n + ALIGN_FLOATS - 1) / ALIGN_FLOATS * ALIGN_FLOATS;
}

static bool overlap_time(const Block *a, const Block *b) {
  return a->start <= b->end && b->start <= a->end;
}

/* A flatten is free (NHWC is the dense layer's order once its weights are
   permuted) unless no dense comes after it: then its output is the
   network's, which must be in PyTorch's C, H, W order, and it transposes. */
static bool flatten_transposes(const Net *net, int i) {
  const Layer *l = &net->layers[i];
  if (l->op != OP_FLATTEN || (l->in.h == 1 && l->in.w == 1))
    return false;
  for (int j = i + 1; j < net->nlayers; j++)
    if (net->layers[j].op == OP_DENSE)
      return false;
  return true;
}

static bool conv_padded(const Layer *l) {
  return l->op == OP_CONV2D &&
         (l->u.conv.pad_top || l->u.conv.pad_bottom || l->u.conv.pad_left || l->u.conv.pad_right);
}

/* Places blocks[0..n) by first fit in order; returns the buffer size. */
static long place(Block *blocks, int n) {
  long total = 0;
  for (int i = 0; i < n; i++) {
    Block *b = &blocks[i];
    if (b->is_y)
      continue;
    long off = 0;
    for (bool moved = true; moved;) {
      moved = false;
      for (int j = 0; j < i; j++) {
        const Block *o = &blocks[j];
        if (o->is_y || !overlap_time(b, o))
          continue;
        if (off < o->offset + round_up(o->size) && o->offset < off + round_up(b->size)) {
          off = o->offset + round_up(o->size);
          moved = true;
        }
      }
    }
    b->offset = off;
    if (off + b->size > total)
      total = off + b->size;
  }
  return total;
}

static void plan_inference(Net *net) {
  const int n = net->nlayers;
  /* At most one output block and one pad block per layer. */
  Block *blocks = calloc((size_t)(2 * n + 1), sizeof *blocks);
  int *out_block = malloc((size_t)(n + 1) * sizeof *out_block);
  int *pad_block = malloc((size_t)(n + 1) * sizeof *pad_block);
  assert(blocks && out_block && pad_block);
  int nb = 0, cur = -1; /* the block holding the current tensor; -1: x */
  for (int i = 0; i < n; i++) {
    Layer *l = &net->layers[i];
    pad_block[i] = -1;
    const bool alias = l->op == OP_FLATTEN && !flatten_transposes(net, i);
    if (cur >= 0 && blocks[cur].end < i && !l->fused_away && !alias)
      blocks[cur].end = i; /* read at step i */
    if (l->fused_away || alias || (l->op == OP_ACT && cur >= 0)) {
      out_block[i] = cur; /* identity, fused, or in place */
      continue;
    }
    if (conv_padded(l)) {
      long ph = (long)l->in.h + l->u.conv.pad_top + l->u.conv.pad_bottom;
      long pw = (long)l->in.w + l->u.conv.pad_left + l->u.conv.pad_right;
      blocks[nb] = (Block){ph * pw * l->in.c, i, i, 0, false};
      pad_block[i] = nb++;
    }
    Shape out = l->fused_pool ? l->fused_pool->out : l->out;
    blocks[nb] = (Block){shape_size(out), i, i, 0, false};
    out_block[i] = cur = nb++;
  }
  if (cur >= 0)
    blocks[cur].is_y = true;
  net->infer_buffer_floats = place(blocks, nb);
  for (int i = 0; i < n; i++) {
    Layer *l = &net->layers[i];
    int b = out_block[i];
    l->infer_out_offset = b < 0 ? INFER_AT_X : blocks[b].is_y ? INFER_AT_Y : blocks[b].offset;
    l->infer_pad_offset = pad_block[i] >= 0 ? blocks[pad_block[i]].offset : -1;
  }
  free(blocks);
  free(out_block);
  free(pad_block);
}

void plan_memory(Net *net) {
  plan_inference(net);
  const size_t params = (size_t)net->param_count * sizeof(float);
  const size_t infer_work = (size_t)net->infer_buffer_floats * sizeof(float);
  net->infer_state_bytes = params + infer_work;
  TrainSizes t;
  emit_train_sizes(net, &t);
  net->train_state_bytes = params + t.opt_bytes + t.grads_bytes + infer_work + t.work_bytes;
}
