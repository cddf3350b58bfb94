/*
 * ops.h: every layer kind, activation, loss, optimizer and augmentation,
 * described once. Each table is an X-macro: include it with X defined to
 * get the enum, the DSL words, or the op table.
 *
 * Each layer kind is one module, compiler/ops/WORD.c (the interface it
 * implements is OpModule below; what it may call is compiler/ops/op.h):
 * its shape rule, its parameter tensors, its MACs, its inference forward
 * function and its training functions, side by side. OPS names it, and
 * op_modules[op] is its row in the op table, through which shape.c, fuse.c,
 * plan.c, summary.c and the emitters ask about a layer instead of testing
 * its kind. Adding a layer kind: a row here, a module, its options in
 * lower.c, its tests (README, Layout).
 */
#ifndef CNNGEN_OPS_H
#define CNNGEN_OPS_H

#include <stdbool.h>
#include <stdio.h>

/*   enum              DSL word         module (compiler/ops/) */
#define OPS(X)                                              \
  X(OP_CONV2D,         "conv2d",        op_conv2d)          \
  X(OP_MAXPOOL,        "maxpool",       op_maxpool)         \
  X(OP_AVGPOOL,        "avgpool",       op_avgpool)         \
  X(OP_GLOBALAVGPOOL,  "globalavgpool", op_globalavgpool)   \
  X(OP_FLATTEN,        "flatten",       op_flatten)         \
  X(OP_DENSE,          "dense",         op_dense)           \
  X(OP_BATCHNORM,      "batchnorm",     op_batchnorm)       \
  X(OP_DROPOUT,        "dropout",       op_dropout)         \
  X(OP_ACT,            "activation",    op_activation)      \
  X(OP_RESIDUAL,       "residual",      op_residual)        \
  X(OP_SHORTCUT,       "shortcut",      op_shortcut)        \
  X(OP_ADD,            "add",           op_add)

/* Activations; each word is also a layer of its own (OP_ACT). */
#define ACTS(X)                       \
  X(ACT_LINEAR,  "linear")            \
  X(ACT_RELU,    "relu")              \
  X(ACT_SIGMOID, "sigmoid")           \
  X(ACT_TANH,    "tanh")              \
  X(ACT_SOFTMAX, "softmax")

#define LOSSES(X)                                          \
  X(LOSS_SPARSE_CE, "sparse_categorical_crossentropy")     \
  X(LOSS_CE,        "categorical_crossentropy")            \
  X(LOSS_BCE,       "binary_crossentropy")                 \
  X(LOSS_MSE,       "mse")

#define OPTIMIZERS(X)   \
  X(OPT_SGD,  "sgd")    \
  X(OPT_ADAM, "adam")

/* Learning-rate schedules (the train block's `schedule`). */
#define SCHEDULES(X)                  \
  X(SCHED_CONSTANT, "constant")       \
  X(SCHED_STEP,     "step")           \
  X(SCHED_COSINE,   "cosine")

/*   enum          DSL word   takes a value */
#define AUGMENTS(X)                   \
  X(AUG_HFLIP,  "hflip",  0)          \
  X(AUG_VFLIP,  "vflip",  0)          \
  X(AUG_SHIFT,  "shift",  1)          \
  X(AUG_ROTATE, "rotate", 1)          \
  X(AUG_CROP,   "crop",   1)          \
  X(AUG_NOISE,  "noise",  1)

#define X_ENUM(e, ...) e,
#define X_ENUM2(e, w) e,
typedef enum { OPS(X_ENUM) OP_COUNT } OpKind;
typedef enum { ACTS(X_ENUM2) ACT_COUNT } Act;
typedef enum { LOSSES(X_ENUM2) LOSS_COUNT } Loss;
typedef enum { OPTIMIZERS(X_ENUM2) OPT_COUNT } Optimizer;
typedef enum { SCHEDULES(X_ENUM2) SCHED_COUNT } Schedule;
typedef enum { AUGMENTS(X_ENUM) AUG_COUNT } Augment;
#undef X_ENUM
#undef X_ENUM2

/* The DSL word of each enum value (ops.c). */
extern const char *const op_words[OP_COUNT];
extern const char *const act_words[ACT_COUNT];
extern const char *const loss_words[LOSS_COUNT];
extern const char *const optimizer_words[OPT_COUNT];
extern const char *const schedule_words[SCHED_COUNT];
extern const char *const augment_words[AUG_COUNT];
extern const unsigned char augment_takes_value[AUG_COUNT];

struct Layer;
struct Net;
struct ShapeCheck; /* shape.c's walk (ops/op.h) */
struct Gen;        /* the inference emitter's state (ops/op.h) */
struct T;          /* the training emitter's state (ops/op.h) */
struct TL;         /* one layer as training runs it (ops/op.h) */
struct Emitter;

/* A layer's weight tensor: its PyTorch shape, and the same as [o][c][k]
   (the one permutation of emit_model.c), with Glorot's fans. */
typedef struct OpTensor {
  int rank, shape[4]; /* PyTorch's layout */
  int o, c, k;        /* shape as [o][c][k]: the model holds it as [k][c][o] */
  long fan_in, fan_out;
} OpTensor;

/* One layer kind. Properties first, then what the passes ask; a NULL hook
   is "nothing of that kind" (no parameters, no backward pass, ...). */
typedef struct OpModule {
  bool weights;       /* trained parameters: LAYER.weight, LAYER.bias unless
                         bias=false; named prefix1, prefix2, ... (lower.c) */
  const char *prefix; /* the default name's prefix ("conv") */
  bool stats;         /* LAYER.running_mean and LAYER.running_var, each of the
                         bias's size, after its weight and bias in the flat
                         array: saved with the weights, not trained
                         (Layer.stats_offset; batchnorm) */
  bool folds_weights; /* inference folds it into the weights and bias of a
                         linear conv/dense right before it (fuse.c:
                         Layer.fused_bn), with fold() */
  bool weight_ones;   /* its weight starts at 1, not drawn (a batchnorm's scale) */
  bool batch_stats;   /* training needs the whole batch's statistics:
                         NAME_accumulate runs in phases, every image up to
                         this layer, its batch_forward, every image on
                         (emit_train.c) */
  bool applies_act;   /* applies Layer.act after the op */
  bool takes_act;     /* an activation layer right after it folds into it (fuse.c) */
  bool folds;         /* may fold into the conv/dense before it (an activation,
                         a pool: see the conv's fuses_pool) */
  bool cam;           /* Grad-CAM may look at its output (a conv, a block's add):
                         the last such layer outside blocks (net_cam_layer) */
  bool infer_identity; /* inference skips it (dropout): fused_away */
  bool draws;          /* draws from the image's key in training (dropout) */

  /* shape.c: what is wrong with values lower.c checks too (IR built by
     hand), or NULL; l->out from l->in, false when there is none (reported);
     the parameter and MAC counts (NULL: none). */
  const char *(*bad_values)(const struct Layer *l);
  bool (*shape)(struct ShapeCheck *c, struct Layer *l);
  void (*counts)(const struct Layer *l, double *weights, double *bias, double *macs);
  /* The weight tensor (layers with weights). */
  void (*tensor)(const struct Net *net, const struct Layer *l, OpTensor *t);
  /* The comment above the model's members: the layout of the weight. */
  const char *(*weight_comment)(struct Emitter *em, const struct Net *net, const struct Layer *l);
  /* folds_weights: the layer as y' = s * y + sh per channel. fold writes
     C (in NAME_fold) declaring floats s and sh for channel `o` from the
     model `m`; fold_values computes the same (the same float arithmetic)
     from the flat parameter array p, for baked weights: every multiply-add
     an explicit fmaf, so that both give the same bits whatever the C
     compiler contracts. */
  void (*fold)(struct Emitter *em, const struct Layer *l, const char *m, const char *o);
  void (*fold_values)(const struct Layer *l, const float *p, int o, float *s, float *sh);
  /* --dump-ir: the op's own fields, one line (NULL: none). */
  void (*dump)(const struct Layer *l, FILE *out);
  /* fuse.c: whether `pool`, right after l (and its folded activation),
     folds into l for inference. */
  bool (*fuses_pool)(const struct Layer *l, const struct Layer *pool);

  /* A graph that is not a chain (residual blocks, ir.h): the earlier layer
     whose input tensor this one reads too (an add: the other path's
     output), and the earlier layer whose input tensor is this one's output
     (a shortcut takes the block's input up again). NULL: none. plan.c
     keeps those tensors alive; the emitters pass them. */
  const struct Layer *(*operand)(const struct Net *net, const struct Layer *l);
  const struct Layer *(*resumes)(const struct Net *net, const struct Layer *l);

  /* plan.c. view: its output is its input's floats (no code, no buffer).
     pad: zeros around its input (top, left, bottom, right), which it reads
     from a scratch copy. plan_train: its own fields of Layer.train, after
     the generic ones. train_floats: the floats of its training buffers besides its
     output (emit_train.c's members, printed by train_members). */
  bool (*view)(const struct Net *net, const struct Layer *l);
  bool (*pad)(const struct Layer *l, int pad[4]);
  void (*plan_train)(const struct Net *net, struct Layer *l);
  /* training: whether it does the backward pass of `next` too (TL.pool). */
  bool (*train_pairs)(const struct Layer *l, const struct Layer *next);
  long (*train_floats)(const struct Layer *l);

  /* Inference (emit_infer.c): its forward function(s), then its call in
     NAME_infer (NULL: the generic call, with the model for layers with
     weights). forward also writes training's variants (Gen.train). */
  void (*forward)(struct Gen *g, const struct Layer *l, const char *fn);
  void (*infer_call)(struct Gen *g, const struct Layer *l, const char *fn, const char *in,
                     const char *out);
  /* Training (emit_train.c): whether training runs a forward function of
     its own (variant); its training functions; its calls in the forward
     and backward passes (backward: dy in t->g[*cur], flips *cur when it
     writes dx into the other buffer); NAME_explain's functions that
     training did not write (X: the layer as explain runs it); the parts
     of NAME_accumulate before and after the images (NULL: none). */
  bool (*train_variant)(const struct Layer *l);
  void (*train_functions)(struct T *t, const struct TL *L);
  void (*train_members)(struct T *t, const struct TL *L, long *floats);
  void (*forward_call)(struct T *t, const struct TL *L);
  void (*backward_call)(struct T *t, const struct TL *L, int *cur);
  void (*explain_functions)(struct T *t, const struct TL *L, const struct TL *X);
  /* NAME_explain's forward call where it differs (NULL: forward_call's). */
  void (*explain_call)(struct T *t, const struct TL *L);
  /* In NAME_transpose: its weights transposed for its input gradient (TL.transposed). */
  void (*transpose)(struct T *t, const struct TL *L);
  void (*train_begin)(struct T *t, const struct TL *L);
  void (*train_end)(struct T *t, const struct TL *L);
  /* batch_stats: in the phased NAME_accumulate, its declarations at the
     top (batch_declare), its forward pass over every image of the chunk
     with the batch's statistics (batch_forward) and its backward pass
     (batch_backward: dy in t->g[*cur] of each image, flips *cur when it
     writes dx), both summing across the batch through train_reduce and
     running their image loops with train_images; in NAME_update, what the
     step does to its running statistics (train_update). */
  void (*batch_declare)(struct T *t, const struct TL *L);
  void (*batch_forward)(struct T *t, const struct TL *L);
  void (*batch_backward)(struct T *t, const struct TL *L, int *cur);
  void (*train_update)(struct T *t, const struct TL *L);
} OpModule;

#define X_DECLARE(e, w, module) extern const OpModule module;
OPS(X_DECLARE)
#undef X_DECLARE

/* The op table: one row per op kind (ops.c). */
extern const OpModule *const op_modules[OP_COUNT];

/* Returns the enum value whose word is `word`, or -1. */
int word_lookup(const char *const *words, int count, const char *word);

#endif
