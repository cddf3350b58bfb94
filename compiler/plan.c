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
 * Training (Layer.train): NAME_accumulate runs one image at a time, its
 * forward pass keeping every output, then the backward passes in reverse.
 *
 *   - an activation folded into a conv/dense runs inside it; pools and
 *     dropout run as steps of their own (fuse.c's pool fusion is for
 *     inference only: the backward pass needs the conv's own output);
 *   - the output activation belongs to the loss: a trailing activation
 *     layer does not run, a trailing conv/dense runs linear;
 *   - layers before the first one with weights run no backward pass, and
 *     that one computes no input gradient;
 *   - a conv that computes its input gradient over 8 or more channels (a
 *     group's, grouped) reads its weights transposed to [KH][KW][F][C/G]
 *     (vector dx);
 *   - a conv followed by maxpool does both backward passes in one, visiting
 *     only each window's maximum, when a kernel row has enough taps
 *     (KW * C >= 16) for the weight-gradient rows to vectorize;
 *   - every running layer's output gets a buffer, but a flatten that is
 *     not the network's output (the same floats); the gradients flow
 *     through two buffers of train_grad_floats each.
 *
 * The plan records the sizes for `cnngen check`: parameters, optimizer
 * state, and for one thread its gradient accumulator and its work struct
 * (inference tensors plus the training buffers of one image: a thread
 * runs its images one at a time, so the batch size does not enter). A
 * network with batch statistics (batchnorm) keeps those buffers for every
 * image of the thread's chunk besides (emit_train.c, NAME_image_bytes each:
 * train_image_bytes), which the runtime allocates once it knows the chunk;
 * check prints that figure and what the train block's batch takes.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "compile.h"

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

/* Its output is its input's floats (a flatten before a dense layer). */
static bool is_view(const Net *net, const Layer *l) {
  return op_modules[l->op]->view && op_modules[l->op]->view(net, l);
}

/* Zeros around its input (a conv with padding): in pad[4], top, left,
   bottom, right. */
static bool pads(const Layer *l, int pad[4]) {
  return op_modules[l->op]->pad && op_modules[l->op]->pad(l, pad);
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
  /* Residual blocks: the input of layer i is read again at step hold[i]
     (by an add, or a shortcut that takes it up again): it lives until then,
     and nothing works on it in place before. */
  int *hold = calloc((size_t)n + 1, sizeof *hold);
  assert(hold);
  for (int i = 0; i < n; i++) {
    const OpModule *op = op_modules[net->layers[i].op];
    const Layer *r = op->resumes ? op->resumes(net, &net->layers[i]) : NULL;
    const Layer *o = op->operand ? op->operand(net, &net->layers[i]) : NULL;
    if (r)
      hold[r - net->layers] = i;
    if (o)
      hold[o - net->layers] = i;
  }
  int nb = 0, cur = -1; /* the block holding the current tensor; -1: x */
  for (int i = 0; i < n; i++) {
    Layer *l = &net->layers[i];
    const OpModule *op = op_modules[l->op];
    pad_block[i] = -1;
    const bool alias = is_view(net, l);
    if (cur >= 0 && blocks[cur].end < i && !l->fused_away && !alias)
      blocks[cur].end = i; /* read at step i */
    if (cur >= 0 && blocks[cur].end < hold[i])
      blocks[cur].end = hold[i];
    if (op->resumes) { /* its output: an earlier layer's input */
      long r = op->resumes(net, l) - net->layers;
      out_block[i] = cur = r ? out_block[r - 1] : -1;
      continue;
    }
    if (l->fused_away || alias || (l->op == OP_ACT && cur >= 0 && blocks[cur].end <= i)) {
      out_block[i] = cur; /* identity, fused, or in place */
      continue;
    }
    int pad[4];
    if (pads(l, pad)) {
      long ph = (long)l->in.h + pad[0] + pad[2], pw = (long)l->in.w + pad[1] + pad[3];
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
  free(hold);
}

static void plan_training(Net *net) {
  Layer *first = NULL, *last = NULL;
  for (int i = 0; i < net->nlayers && !first; i++)
    if (op_modules[net->layers[i].op]->weights)
      first = &net->layers[i];
  bool after_first = false;
  int runs = 0;
  for (int i = 0; i < net->nlayers; i++) {
    Layer *l = &net->layers[i];
    memset(&l->train, 0, sizeof l->train);
    after_first |= l == first;
    if (l->op == OP_ACT && l->fused_away)
      continue;
    l->train.runs = true;
    l->train.index = runs++;
    /* a conv/dense with a folded batchnorm has the batchnorm's act in inference */
    l->train.act = op_modules[l->op]->applies_act && !l->fused_bn ? l->act : ACT_LINEAR;
    l->train.backward = after_first;
    l->train.dx = after_first && l != first;
    l->train.own_output = true;
    l->train.ph = l->in.h;
    l->train.pw = l->in.w;
    if (op_modules[l->op]->plan_train)
      op_modules[l->op]->plan_train(net, l);
    last = l;
  }
  net->train_out_act = ACT_LINEAR;
  if (!last)
    return;
  if (last->op == OP_ACT && runs > 1) {
    net->train_out_act = last->train.act;
    last->train.runs = false;
    for (last--; !last->train.runs; last--)
      ;
  } else if (op_modules[last->op]->applies_act) {
    net->train_out_act = last->train.act;
    last->train.act = ACT_LINEAR;
  }
  last->train.own_output = true; /* the loss reads z from a buffer */
  Layer *prev = NULL;
  for (Layer *l = net->layers; l <= last; l++) {
    if (!l->train.runs)
      continue;
    if (prev && op_modules[prev->op]->train_pairs && op_modules[prev->op]->train_pairs(prev, l)) {
      prev->train.pool = l;
      l->train.pooled = true;
    }
    prev = l;
  }
  /* The buffers of struct NAME_train_work (emit_train.c prints them). */
  long grad = shape_size(net->output), work = 0;
  for (Layer *l = net->layers; l <= last; l++) {
    if (!l->train.runs)
      continue;
    const long in = (long)l->train.ph * l->train.pw * l->in.c, out = shape_size(l->out);
    grad = out > grad ? out : grad;
    grad = in > grad ? in : grad; /* every layer's dx: NAME_explain goes down to the input */
    work += l->train.own_output ? out : 0;
    if (op_modules[l->op]->train_floats) /* padded input, mask, transposed w and dw */
      work += op_modules[l->op]->train_floats(l);
  }
  net->train_grad_floats = grad;
  net->train_work_floats = work + shape_size(net->output) + 2 * grad;
}

void plan_memory(Net *net) {
  plan_inference(net);
  plan_training(net);
  const TrainConfig *tc = &net->train;
  net->opt_slots = tc->optimizer == OPT_ADAM ? 2 : tc->momentum != 0 ? 1 : 0;
  const size_t params = (size_t)net->param_count * sizeof(float);
  const size_t infer_work = (size_t)net->infer_buffer_floats * sizeof(float);
  net->infer_state_bytes = params + infer_work;
  net->train_state_bytes = params + (size_t)net->opt_slots * params + 8 + params + infer_work +
                           (size_t)net->train_work_floats * sizeof(float);
  net->train_image_bytes =
      net_has_batch_stats(net) ? (size_t)net->train_work_floats * sizeof(float) : 0;
}
