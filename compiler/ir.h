/*
 * ir.h: the network as the compiler sees it.
 *
 * A Net is an array of Layers in source order, one tagged union per layer
 * (common fields first, then the per-kind struct). Passes fill fields in
 * place rather than building new trees:
 *
 *   lower.c   AST -> Layers and TrainConfig, names, defaults   (loc, op, args)
 *   shape.c   in/out shapes, parameter counts and offsets, MACs, all checks
 *   fuse.c    marks fused activations and pools                 (fused_*)
 *   plan.c    memory plan: activation buffer offsets, byte counts
 *   emit_*.c  C code from the finished IR
 *
 * Tensor layouts (fixed here so every pass and emitter agrees):
 *   activations   per image [H][W][C] (channels innermost), batch outermost;
 *                 a vector is [C] with h = w = 1 and vec = 1.
 *   parameters    the flat array of NAME_load and raw .f32 weights files
 *                 (docs/language.md, Weights files):
 *                 for each layer with weights, in layer order, LAYER.weight
 *                 then LAYER.bias (none with bias=false: bias_count 0), in
 *                 PyTorch layout (conv [F][C][KH][KW],
 *                 dense [OUT][IN] with IN after flatten indexing C,H,W).
 *                 The generated model struct may hold them in any internal
 *                 layout; NAME_load / NAME_store convert.
 */
#ifndef CNNGEN_IR_H
#define CNNGEN_IR_H

#include <stdbool.h>
#include <stddef.h>

#include "ops.h"

typedef struct Loc {
  const char *file; /* path as given on the command line */
  int line, col;    /* 1-based; col counts bytes */
  int len;          /* length of the token, for the caret line (>= 1) */
} Loc;

typedef struct Shape {
  int h, w, c; /* a vector of n values is h = w = 1, c = n, vec = true */
  bool vec;
} Shape;

static inline long shape_size(Shape s) {
  return (long)s.h * s.w * s.c;
}

enum { PAD_VALID, PAD_SAME, PAD_EXPLICIT };

/* Layer.text's limit: the emitters quote it in comments of bounded length. */
enum { LAYER_TEXT_MAX = 200 };

/* Net.name and Layer.name hold at most NAME_SIZE - 1 characters (the
   emitters build identifiers from them at any length: em_str). */
enum { NAME_SIZE = 64 };

typedef struct Layer {
  OpKind op;
  Loc loc;          /* the layer's first word */
  const char *text; /* the source line, trimmed, without comment (for the
                       comment that opens the layer's generated code), at
                       most LAYER_TEXT_MAX bytes of it, then "..." */
  char name[NAME_SIZE]; /* conv1, dense2, ... or name=; "" for layers without weights */
  Shape in, out;    /* filled by shape.c */
  Act act;          /* activation applied after the op; OP_ACT: the activation */
  Loc act_loc;      /* where the activation word was written (for errors) */
  Loc size_loc;     /* the kernel / window / unit count token (for errors) */
  /* lower.c reported an error in this layer's values (or dropped its line):
     shape.c gives it no shape and checks nothing after it. */
  bool broken;

  /* The kinds' own fields, each read by its op module (compiler/ops/) and
     by lower.c, which fills them from the options. */
  union {
    struct {
      int filters, kh, kw;
      int sh, sw;                /* stride down and across */
      int pad_mode;              /* PAD_VALID, PAD_SAME, PAD_EXPLICIT */
      int pad_h, pad_w;          /* PAD_EXPLICIT: zeros above and below, left and right */
      int pad_top, pad_left;     /* filled by shape.c for every mode */
      int pad_bottom, pad_right; /*   (same at stride > 1: odd pixel bottom/right) */
      int groups;                /* groups=G (lower.c: 1; 0, in IR built by hand, is 1) */
    } conv;
    struct {
      int kh, kw, sh, sw; /* the stride defaults to the window, in each direction */
    } pool;               /* OP_MAXPOOL, OP_AVGPOOL */
    struct {
      int units;
    } dense;
    struct {
      double rate;
    } dropout;
    struct {
      double momentum, eps;
    } bn;
    /* A residual block's three layers (OP_RESIDUAL, OP_SHORTCUT, OP_ADD)
       name each other by index in Net.layers: the fork, where the block's
       input x is kept; the shortcut, where the main path's output m is kept
       and x is taken up again (-1: the identity); the add, y = m + s(x). */
    struct {
      int fork, shortcut, add;
    } block;
  } u;

  /* How many residual blocks this layer is inside (lower.c; check indents
     by it). The block's own fork and add are outside it, its shortcut inside. */
  int depth;

  /* conv2d, dense: bias=false, no LAYER.bias tensor (lower.c). Every pass
     after shape.c reads bias_count (0 then) instead. */
  bool no_bias;

  /* Parameters (shape.c). Offsets count floats in the flat parameter array. */
  long weight_offset, weight_count; /* 0 counts for layers without weights */
  long bias_offset, bias_count;     /* no bias: offset -1, count 0 */
  long stats_offset;  /* OpModule.stats: running_mean here, running_var after
                        it (bias_count floats each); -1 otherwise */
  long macs; /* multiply-accumulates per image */

  /* Fusion (fuse.c). */
  bool fused_away;          /* folded into the previous layer; emits no code of its own */
  struct Layer *fused_act;  /* OP_ACT folded into this conv/dense (its act set) */
  struct Layer *fused_pool; /* inference: maxpool/avgpool folded into this conv */
  struct Layer *fused_bn;   /* inference: batchnorm folded into this conv/dense's
                               weights and bias (NAME_fold); its act is then the
                               batchnorm's, its training act stays linear */

  /* Memory plan (plan.c). Offsets count floats inside the work struct's
     activation buffer, per image; -1 where the layer keeps no buffer. */
  long infer_out_offset;  /* inference: where this layer's output lives, or
                             INFER_AT_X / INFER_AT_Y below */
  long infer_pad_offset;  /* inference, conv with padding: its input copied
                             into a zero border here; -1 otherwise */

  /* Training plan (plan.c): how NAME_accumulate runs this layer. */
  struct {
    bool runs;          /* a step of its own: not an activation folded into a
                           conv/dense, not the output activation (the loss's) */
    int index;          /* its number among the layers that run (buffer names) */
    Act act;            /* the activation it applies (the output one: the loss's) */
    bool backward;      /* runs a backward pass (a layer with weights is at or before it) */
    bool dx;            /* computes its input gradient */
    bool own_output;    /* its output has a buffer y<index> (else: its input) */
    bool chw;           /* flatten that is the network's output: to C, H, W order */
    bool transposed;    /* conv: weights transposed to [KH][KW][F][C/G] for dx */
    struct Layer *pool; /* conv: the maxpool after it, whose backward it does */
    bool pooled;        /* maxpool: its backward is done by the conv before it */
    int ph, pw;         /* input height and width (conv: padded) */
  } train;
} Layer;

/* A conv2d's groups=G (1 when not given). */
static inline int conv_groups(const Layer *l) {
  return l->u.conv.groups > 1 ? l->u.conv.groups : 1;
}

/* Layer.infer_out_offset outside the work buffer: the output is the caller's
   input x (layers that are identities at the start: flatten, dropout), or
   is written straight into the caller's y (the last layer that computes,
   and the in-place activations after it). */
enum { INFER_AT_X = -1, INFER_AT_Y = -2 };

typedef struct AugmentSetting {
  bool on;
  double value; /* shift/crop in pixels, rotate in degrees, noise std */
  Loc loc;
} AugmentSetting;

typedef struct TrainConfig {
  Loss loss;
  Loc loss_loc;
  Optimizer optimizer;
  Loc optimizer_loc;
  double lr, momentum, weight_decay, beta1, beta2, eps;
  bool nesterov;
  int batch, epochs;
  unsigned long long seed;
  AugmentSetting augment[AUG_COUNT];
  enum { CW_NONE, CW_BALANCED, CW_LIST } class_weights;
  double *class_weight_list; /* CW_LIST: one weight per output */
  int class_weight_count;
  Loc class_weights_loc;
  double label_smoothing; /* in [0, 1): cross-entropy against (1 - F) onehot + F / K */
  Loc label_smoothing_loc;
  Schedule schedule; /* the learning rate per step: trainer.c, train_lr */
  int step_every;    /* SCHED_STEP: lr * step_gamma^floor(epoch / step_every) */
  double step_gamma;
  double min_lr; /* SCHED_COSINE: the rate at the run's last step */
  int warmup;    /* epochs whose steps ramp the rate up linearly (0: none) */
  Loc schedule_loc;
  double validation; /* in (0, 1): the last round(F * N) training images held out; 0: none */
  Loc validation_loc;
  int patience;     /* early_stopping patience=P (0: no early stopping) */
  double min_delta; /*   min_delta=F: the fall in validation loss that counts */
  Loc early_stopping_loc;
  bool present; /* a train { } block was written */
  /* lower.c reported an error that checking the loss against the output
     would only repeat (a bad loss, the last activation). */
  bool loss_unchecked;
} TrainConfig;

typedef struct Net {
  char name[NAME_SIZE]; /* C identifier, prefix of every generated symbol */
  const char *file; /* source path */
  /* 0x0x0 when lower.c could not read the input (and reported that). */
  Shape input;
  Loc input_loc;
  Layer *layers;
  int nlayers;
  TrainConfig train;
  const char **classes; /* the outputs' names (the classes statement), or NULL */
  int nclasses;
  Loc classes_loc;

  /* Totals (shape.c). */
  long param_count; /* floats in the flat parameter array */
  long macs;        /* per image */
  Shape output;     /* the last layer's output */

  /* Memory plan (plan.c). */
  long infer_buffer_floats; /* activation buffer per image, inference */
  size_t infer_state_bytes; /* model + work for one image, inference */
  size_t train_state_bytes; /* training, one thread: model + optimizer
                               state + gradients + work */
  Act train_out_act;        /* the activation the loss applies to the last
                               training layer's output */
  long train_grad_floats;   /* floats in each of the two gradient buffers */
  long train_work_floats;   /* floats in struct NAME_train_work */
  size_t train_image_bytes; /* batch statistics: struct NAME_train_work again for
                               each image of a thread's chunk (NAME_image_bytes);
                               0 without */
  int opt_slots;            /* optimizer state arrays: adam 2, sgd+momentum 1, sgd 0 */
} Net;

/* One parameter tensor as it appears in a safetensors file. */
typedef struct TensorInfo {
  char name[80]; /* "conv1.weight" */
  int rank;
  int shape[4]; /* PyTorch layout */
  long offset;  /* in floats, into the flat parameter array */
  long count;
} TensorInfo;

/* Lists the parameter tensors in file order; returns their number. `out`
   may be NULL to count. (ir.c) */
int net_tensors(const Net *net, TensorInfo *out);

/* Whether a layer has running statistics (OpModule.stats), and whether a
   batchnorm is folded into a conv/dense (Layer.fused_bn). (ir.c) */
bool net_has_stats(const Net *net);
bool net_has_folds(const Net *net);
/* Whether a layer trains on the batch's statistics (OpModule.batch_stats:
   batchnorm): NAME_accumulate then runs in phases (emit_train.c). */
bool net_has_batch_stats(const Net *net);

/* Grad-CAM's layer: the last spatial layer that OpModule.cam marks (a conv,
   the add of a residual block) outside any block, so that every path from
   the input to the outputs goes through it; NULL if none. (ir.c) */
const Layer *net_cam_layer(const Net *net);

/* The last layer that emits code (skips fused_away), and its activation:
   what the network's outputs are. (ir.c) */
const Layer *net_last_layer(const Net *net);
Act net_output_act(const Net *net);

#endif
