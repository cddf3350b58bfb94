/*
 * ops.h: every layer kind, activation, loss, optimizer and augmentation,
 * described once. Each table is an X-macro: include it with X defined to
 * get the enum, the DSL words, or per-kind properties.
 *
 * Adding a layer kind: one line in OPS, one case in shape.c, one
 * forward/backward emitter pair, one test.
 */
#ifndef CNNGEN_OPS_H
#define CNNGEN_OPS_H

/*   enum              DSL word         weights  fuses into previous conv/dense */
#define OPS(X)                                                         \
  X(OP_CONV2D,         "conv2d",        1,       0)                    \
  X(OP_MAXPOOL,        "maxpool",       0,       1)                    \
  X(OP_AVGPOOL,        "avgpool",       0,       1)                    \
  X(OP_GLOBALAVGPOOL,  "globalavgpool", 0,       0)                    \
  X(OP_FLATTEN,        "flatten",       0,       0)                    \
  X(OP_DENSE,          "dense",         1,       0)                    \
  X(OP_DROPOUT,        "dropout",       0,       0)                    \
  X(OP_ACT,            "activation",    0,       1)

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
extern const unsigned char op_has_weights[OP_COUNT];
extern const unsigned char op_fuses[OP_COUNT];
extern const unsigned char augment_takes_value[AUG_COUNT];

/* Returns the enum value whose word is `word`, or -1. */
int word_lookup(const char *const *words, int count, const char *word);

#endif
