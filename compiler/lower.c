/*
 * lower.c: statements (ast.h) -> Net (ir.h).
 *
 * The grammar accepts any word with any arguments; this file decides what
 * they mean. Top-level words are `network`, `input`, `train` and the layer
 * kinds of ops.h (plus each activation word as a layer of its own); inside
 * `train { }` the training settings. Per layer kind, the `syntax` table
 * says how many positional arguments it takes, which key=value options and
 * whether an activation word; the per-kind code then reads the positional
 * arguments. Every wrong argument gets its own error at its own token, and
 * lowering goes on to the next argument and statement, so one run reports
 * all of them. Defaults (docs/language.md) are set here; names conv1, dense2,
 * ... are given once all layers are known.
 *
 * The Net comes out even when there were errors, so that shape.c can check
 * the rest in the same run; what went wrong is marked so that it checks
 * nothing that would only repeat an error in other words: a layer with a
 * bad value, an unknown word or a line with a syntax error becomes a layer
 * marked `broken` (shapes stop there), an input that could not be read
 * stays 0x0x0, and a bad loss or last activation sets `loss_unchecked`.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ast.h"
#include "compile.h"

/* Counts, sizes and strides above this are refused before any arithmetic. */
#define INT_ARG_MAX (1L << 24)

/* ---- what each layer kind takes ---- */

/* The statements that are no layer. */
enum { STMT_NETWORK, STMT_INPUT, STMT_TRAIN, STMT_CLASSES, STMT_COUNT };
static const char *const statement_words[STMT_COUNT] = {"network", "input", "train", "classes"};

static bool is_stmt(const char *word, int stmt) {
  return word && strcmp(word, statement_words[stmt]) == 0;
}

enum {
  OPTION_STRIDE,
  OPTION_PADDING,
  OPTION_NAME,
  OPTION_BIAS,
  OPTION_GROUPS,
  OPTION_MOMENTUM,
  OPTION_EPS,
  OPTION_COUNT
};
static const char *const option_words[OPTION_COUNT] = {"stride", "padding",  "name", "bias",
                                                       "groups", "momentum", "eps"};
/* padding=valid, padding=same (else P or PHxPW: PAD_EXPLICIT) */
static const char *const padding_words[] = {[PAD_VALID] = "valid", [PAD_SAME] = "same"};
enum { PADDING_WORDS = sizeof padding_words / sizeof padding_words[0] };
/* bias=false, bias=true */
static const char *const bool_words[] = {"false", "true"};
enum { BOOL_WORDS = sizeof bool_words / sizeof bool_words[0] };

static const struct {
  int npos;                /* positional arguments, all required */
  const char *pos_what[2]; /* what they are, for "conv2d needs a kernel size" */
  unsigned options;        /* bit set of OPTION_* */
  bool act;                /* takes an activation word */
  const char *usage;
} syntax[OP_COUNT] = {
    [OP_CONV2D] = {2,
                   {"a filter count", "a kernel size"},
                   1u << OPTION_STRIDE | 1u << OPTION_PADDING | 1u << OPTION_NAME |
                       1u << OPTION_BIAS | 1u << OPTION_GROUPS,
                   true,
                   "conv2d F KHxKW [stride=S|SHxSW] [padding=valid|same|P|PHxPW] [groups=G] "
                   "[bias=false] [ACT] [name=N]"},
    [OP_MAXPOOL] =
        {1, {"a window size"}, 1u << OPTION_STRIDE, false, "maxpool KHxKW [stride=S|SHxSW]"},
    [OP_AVGPOOL] =
        {1, {"a window size"}, 1u << OPTION_STRIDE, false, "avgpool KHxKW [stride=S|SHxSW]"},
    [OP_GLOBALAVGPOOL] = {0, {0}, 0, false, "globalavgpool"},
    [OP_FLATTEN] = {0, {0}, 0, false, "flatten"},
    [OP_DENSE] = {1,
                  {"a number of units"},
                  1u << OPTION_NAME | 1u << OPTION_BIAS,
                  true,
                  "dense N [bias=false] [ACT] [name=N]"},
    [OP_BATCHNORM] = {0,
                      {0},
                      1u << OPTION_MOMENTUM | 1u << OPTION_EPS | 1u << OPTION_NAME,
                      false,
                      "batchnorm [momentum=F] [eps=F] [name=N]"},
    [OP_DROPOUT] = {1, {"a rate"}, 0, false, "dropout RATE (0 <= RATE < 1)"},
    [OP_ACT] = {0, {0}, 0, true, "relu, sigmoid, tanh or softmax on a line of its own"},
    /* Blocks (lower_residual); the add is no word of the language. */
    [OP_RESIDUAL] = {0, {0}, 0, false, "residual { LAYERS [shortcut { LAYERS }] }"},
    [OP_SHORTCUT] =
        {0, {0}, 0, false, "shortcut { LAYERS }, the last statement of a residual block"},
};

/* A layer word of the language (not the add a residual block ends in). */
static int layer_word(const char *word) {
  int op = word ? word_lookup(op_words, OP_COUNT, word) : -1;
  return op >= 0 && syntax[op].usage ? op : -1;
}

/* ---- training settings ---- */

#define SETTINGS(X)                                                                                \
  X(SET_LOSS, "loss", "loss sparse_categorical_crossentropy")                                      \
  X(SET_OPTIMIZER, "optimizer", "optimizer adam lr=0.001")                                         \
  X(SET_BATCH, "batch", "batch 32")                                                                \
  X(SET_EPOCHS, "epochs", "epochs 5")                                                              \
  X(SET_SEED, "seed", "seed 1")                                                                    \
  X(SET_AUGMENT, "augment", "augment hflip shift=2")                                               \
  X(SET_CLASS_WEIGHTS, "class_weights", "class_weights balanced")                                  \
  X(SET_LABEL_SMOOTHING, "label_smoothing", "label_smoothing 0.1")                                 \
  X(SET_SCHEDULE, "schedule", "schedule cosine warmup=1")                                          \
  X(SET_VALIDATION, "validation", "validation 0.1")                                                \
  X(SET_EARLY_STOPPING, "early_stopping", "early_stopping patience=3")

#define X_ENUM(e, ...) e,
#define X_WORD(e, w, ...) [e] = w,
#define X_EXAMPLE(e, w, example) [e] = example,
typedef enum { SETTINGS(X_ENUM) SET_COUNT } Setting;
static const char *const setting_words[SET_COUNT] = {SETTINGS(X_WORD)};
static const char *const setting_examples[SET_COUNT] = {SETTINGS(X_EXAMPLE)};

#define OPT_OPTIONS(X)                                                                             \
  X(OO_LR, "lr")                                                                                   \
  X(OO_MOMENTUM, "momentum")                                                                       \
  X(OO_NESTEROV, "nesterov")                                                                       \
  X(OO_WEIGHT_DECAY, "weight_decay")                                                               \
  X(OO_BETA1, "beta1")                                                                             \
  X(OO_BETA2, "beta2")                                                                             \
  X(OO_EPS, "eps")
typedef enum { OPT_OPTIONS(X_ENUM) OO_COUNT } OptOption;
#define X_OO_WORD(e, w) [e] = w,
static const char *const opt_option_words[OO_COUNT] = {OPT_OPTIONS(X_OO_WORD)};
#undef X_OO_WORD
#undef X_ENUM
#undef X_WORD
#undef X_EXAMPLE

#define BIT(e) (1u << (e))
static const unsigned opt_options_of[OPT_COUNT] = {
    [OPT_SGD] = BIT(OO_LR) | BIT(OO_MOMENTUM) | BIT(OO_NESTEROV) | BIT(OO_WEIGHT_DECAY),
    [OPT_ADAM] = BIT(OO_LR) | BIT(OO_BETA1) | BIT(OO_BETA2) | BIT(OO_EPS) | BIT(OO_WEIGHT_DECAY),
};
static const double default_lr[OPT_COUNT] = {[OPT_SGD] = 0.01, [OPT_ADAM] = 0.001};
/* The options of schedule and early_stopping, and which schedule takes which. */
#define RECIPE_OPTIONS(X)                                                                          \
  X(RO_EVERY, "every")                                                                             \
  X(RO_GAMMA, "gamma")                                                                             \
  X(RO_MIN_LR, "min_lr")                                                                           \
  X(RO_WARMUP, "warmup")                                                                           \
  X(RO_PATIENCE, "patience")                                                                       \
  X(RO_MIN_DELTA, "min_delta")
#define X_RO_ENUM(e, w) e,
#define X_RO_WORD(e, w) [e] = w,
typedef enum { RECIPE_OPTIONS(X_RO_ENUM) RO_COUNT } RecipeOption;
static const char *const recipe_option_words[RO_COUNT] = {RECIPE_OPTIONS(X_RO_WORD)};
#undef X_RO_ENUM
#undef X_RO_WORD
static const unsigned schedule_options_of[SCHED_COUNT] = {
    [SCHED_CONSTANT] = BIT(RO_WARMUP),
    [SCHED_STEP] = BIT(RO_EVERY) | BIT(RO_GAMMA) | BIT(RO_WARMUP),
    [SCHED_COSINE] = BIT(RO_MIN_LR) | BIT(RO_WARMUP),
};
static const unsigned early_stopping_options = BIT(RO_PATIENCE) | BIT(RO_MIN_DELTA);

/* class_weights balanced (else a list of numbers: CW_LIST) */
static const char *const class_weight_words[] = {[CW_BALANCED] = "balanced"};
enum { CLASS_WEIGHT_WORDS = sizeof class_weight_words / sizeof class_weight_words[0] };

/* ---- state ---- */

typedef struct Lower {
  Arena *a;
  Diag *d;
  Net *net;
  Loc *name_loc;      /* per layer: the name= value, or the layer's word */
  bool *named;        /* per layer: name= was given */
  bool *bad_act;      /* per layer: its activation word was wrong */
  const Stmt *broken; /* the last top-level statement with a syntax error */
  Loc train_loc, network_loc, first_layer;
  Loc setting_loc[SET_COUNT]; /* line 0: not set yet */
  int depth;                  /* residual blocks around the statement being lowered */
} Lower;

static bool seen(Loc loc) {
  return loc.line > 0;
}

/* ---- messages ---- */

/* The word list "a, b, c" of a table, skipping NULLs and `skip`. */
static const char *word_list(char *buf, size_t size, const char *const *words, int n, unsigned mask,
                             const char *skip) {
  size_t used = 0;
  buf[0] = '\0';
  for (int i = 0; i < n && used < size; i++) {
    if (!words[i] || !(mask & 1u << i) || (skip && strcmp(words[i], skip) == 0))
      continue;
    used += (size_t)snprintf(buf + used, size - used, "%s%s", used ? ", " : "", words[i]);
  }
  return buf;
}

/* "word 'relu'", "number '3'": what an argument is, for "got ..." */
static const char *describe(char *buf, size_t size, const Arg *a) {
  static const char *const kinds[] = {[ARG_WORD] = "word",
                                      [ARG_NUMBER] = "number",
                                      [ARG_DIMS] = "dimensions",
                                      [ARG_KEYVAL] = "option",
                                      [ARG_LIST] = "list",
                                      [ARG_STRING] = "name"};
  char t[64];
  snprintf(buf, size, "%s '%s%s'", kinds[a->kind], ast_clip(t, sizeof t, a->text),
           a->kind == ARG_KEYVAL ? "=..." : "");
  return buf;
}

/* "did you mean 'dense'?" for `Dense`: keywords are lowercase. */
static void case_hint(Lower *L, Loc loc, const char *word, const char *const *words, int n) {
  for (int i = 0; i < n; i++)
    if (words[i] && strcasecmp(words[i], word) == 0 && strcmp(words[i], word) != 0) {
      diag_note(L->d, loc, "did you mean '%s'? (keywords are lowercase)", words[i]);
      return;
    }
}

static void usage_note(Lower *L, const Stmt *s, OpKind op) {
  diag_note(L->d, s->loc, "usage: %s", syntax[op].usage);
}

/* ---- reading values ---- */

/* A whole number in [min, max]. `what` names it: "the filter count". */
static bool want_int(Lower *L, const Arg *a, const char *what, long min, long max, long *out) {
  char buf[96];
  if (a->kind != ARG_NUMBER) {
    diag_error(L->d, a->loc, "%s must be a whole number, got %s", what,
               describe(buf, sizeof buf, a));
    return false;
  }
  double v = a->num;
  if (isfinite(v) && v != floor(v)) {
    diag_error(L->d, a->loc, "%s must be a whole number, got '%s'", what,
               ast_clip(buf, sizeof buf, a->text));
    return false;
  }
  if (v < (double)min || v > (double)max) {
    diag_error(L->d, a->loc, "%s must be %s %ld, got '%s'", what, v < min ? "at least" : "at most",
               v < min ? min : max, ast_clip(buf, sizeof buf, a->text));
    return false;
  }
  *out = (long)v;
  return true;
}

static bool want_int_field(Lower *L, const Arg *a, const char *what, long min, int *out) {
  long v;
  if (!want_int(L, a, what, min, INT_ARG_MAX, &v))
    return false;
  *out = (int)v;
  return true;
}

/* A number in the interval lo..hi, each end open or closed; `range` says
   it in words for the message ("in [0, 1)", "greater than 0"). */
static bool want_real(Lower *L, const Arg *a, const char *what, double lo, bool lo_open, double hi,
                      bool hi_open, const char *range, double *out) {
  char buf[96];
  if (a->kind != ARG_NUMBER) {
    diag_error(L->d, a->loc, "%s must be a number, got %s", what, describe(buf, sizeof buf, a));
    return false;
  }
  double v = a->num;
  if (!isfinite(v) || v < lo || (lo_open && v == lo) || v > hi || (hi_open && v == hi)) {
    diag_error(L->d, a->loc, "%s must be %s, got '%s'", what, range,
               ast_clip(buf, sizeof buf, a->text));
    return false;
  }
  *out = v;
  return true;
}

/* A value per direction, down and across: one number for both, or AxB
   (`3` or `3x5` for a kernel, `2x1` for a stride), each at least min.
   `form` says it for the message: "KHxKW like 3x3 (or one number for a square)". */
static bool want_pair(Lower *L, const Arg *a, const char *what, const char *form, long min, int *h,
                      int *w) {
  char buf[96];
  if (a->kind == ARG_NUMBER)
    return want_int_field(L, a, what, min, h) && (*w = *h, true);
  if (a->kind != ARG_DIMS || a->ndims != 2) {
    diag_error(L->d, a->loc, "%s must be %s, got %s", what, form, describe(buf, sizeof buf, a));
    return false;
  }
  for (int i = 0; i < 2; i++)
    if (a->dims[i] < min || a->dims[i] > INT_ARG_MAX) {
      if (a->dims[i] < min)
        diag_error(L->d, a->loc, "%s must be at least %ldx%ld, got '%s'", what, min, min,
                   ast_clip(buf, sizeof buf, a->text));
      else
        diag_error(L->d, a->loc, "%s must be at most %ld in each direction, got '%s'", what,
                   INT_ARG_MAX, ast_clip(buf, sizeof buf, a->text));
      return false;
    }
  *h = (int)a->dims[0];
  *w = (int)a->dims[1];
  return true;
}

/* A kernel or window size: `3` (3x3) or `3x5`. */
static bool want_size(Lower *L, const Arg *a, const char *what, int *kh, int *kw) {
  return want_pair(L, a, what, "KHxKW like 3x3 (or one number for a square)", 1, kh, kw);
}

/* A duplicate: error at the second, note at the first. */
static bool duplicate(Lower *L, Loc *first, Loc here, const char *what) {
  if (!seen(*first)) {
    *first = here;
    return false;
  }
  diag_error(L->d, here, "%s is given twice", what);
  diag_note(L->d, *first, "first given here");
  return true;
}

/* ---- layers ---- */

/* `stride=2`, `stride=2x1`, `padding=same`, `padding=1x2`, `bias=false`,
   `name=features`. */
static void layer_option(Lower *L, const Stmt *s, Layer *l, const Arg *a, Loc *seen_at) {
  char buf[512], what[96];
  OpKind op = l->op;
  int o = word_lookup(option_words, OPTION_COUNT, a->text);
  if (o < 0 || !(syntax[op].options & 1u << o)) {
    if (syntax[op].options)
      diag_error(L->d, a->loc, "%s has no option '%s' (expected one of: %s)", s->word,
                 ast_clip(what, sizeof what, a->text),
                 word_list(buf, sizeof buf, option_words, OPTION_COUNT, syntax[op].options, NULL));
    else
      diag_error(L->d, a->loc, "%s takes no options, got '%s='", s->word,
                 ast_clip(what, sizeof what, a->text));
    return;
  }
  snprintf(what, sizeof what, "'%s='", option_words[o]);
  if (duplicate(L, &seen_at[o], a->loc, what))
    return;
  const Arg *v = a->value;
  int pad, on;
  switch (o) {
  case OPTION_STRIDE:
    if (op == OP_CONV2D)
      want_pair(L, v, "the stride", "S or SHxSW like 2 or 2x1", 1, &l->u.conv.sh, &l->u.conv.sw);
    else
      want_pair(L, v, "the stride", "S or SHxSW like 2 or 2x1", 1, &l->u.pool.sh, &l->u.pool.sw);
    break;
  case OPTION_PADDING:
    pad = v->kind == ARG_WORD ? word_lookup(padding_words, PADDING_WORDS, v->text) : -1;
    if (pad >= 0) {
      l->u.conv.pad_mode = pad;
    } else if (v->kind == ARG_NUMBER || v->kind == ARG_DIMS) {
      l->u.conv.pad_mode = PAD_EXPLICIT;
      want_pair(L, v, "the padding", "P or PHxPW like 1 or 1x2", 0, &l->u.conv.pad_h,
                &l->u.conv.pad_w);
    } else {
      diag_error(L->d, v->loc, "padding must be valid, same, P or PHxPW (pixels), got %s",
                 describe(buf, sizeof buf, v));
    }
    break;
  case OPTION_BIAS:
    on = v->kind == ARG_WORD ? word_lookup(bool_words, BOOL_WORDS, v->text) : -1;
    if (on < 0) {
      diag_error(L->d, v->loc, "bias must be true or false, got %s", describe(buf, sizeof buf, v));
      if (v->kind == ARG_WORD)
        case_hint(L, v->loc, v->text, bool_words, BOOL_WORDS);
    } else {
      l->no_bias = !on;
    }
    break;
  case OPTION_GROUPS:
    want_int_field(L, v, "the group count", 1, &l->u.conv.groups);
    break;
  case OPTION_MOMENTUM:
    want_real(L, v, "the momentum", 0, false, 1, false, "in [0, 1]", &l->u.bn.momentum);
    break;
  case OPTION_EPS:
    want_real(L, v, "eps", 0, true, 1, false, "in (0, 1]", &l->u.bn.eps);
    break;
  case OPTION_NAME:
    if (v->kind != ARG_WORD)
      diag_error(L->d, v->loc, "a layer name must be a word like 'features', got %s",
                 describe(buf, sizeof buf, v));
    else if (strlen(v->text) >= sizeof l->name)
      diag_error(L->d, v->loc, "a layer name must be at most %zu characters long, got %zu",
                 sizeof l->name - 1, strlen(v->text));
    else
      snprintf(l->name, sizeof l->name, "%s", v->text);
    L->name_loc[l - L->net->layers] = v->loc;
    L->named[l - L->net->layers] = true;
    break;
  }
}

/* An activation word after conv2d / dense, or `activation relu`. `words`
   counts the words so far. */
static void layer_act(Lower *L, const Stmt *s, Layer *l, const Arg *a, int *words) {
  char buf[256], what[64];
  int act = word_lookup(act_words, ACT_COUNT, a->text);
  bool *bad = &L->bad_act[l - L->net->layers]; /* the activation meant is not known */
  if (!syntax[l->op].act) {
    *bad = true;
    if (act >= 0)
      diag_error(L->d, a->loc, "%s takes no activation; write '%s' on a line of its own", s->word,
                 act_words[act]);
    else
      diag_error(L->d, a->loc, "unexpected word '%s' for %s", ast_clip(what, sizeof what, a->text),
                 s->word);
    return;
  }
  if (++*words > 1) {
    diag_error(L->d, a->loc, "%s has a second activation '%s'; one is allowed", s->word,
               ast_clip(what, sizeof what, a->text));
    return;
  }
  bool bare = l->op == OP_ACT; /* `activation linear` would do nothing */
  if (act < 0 || (bare && act == ACT_LINEAR)) {
    *bad = true;
    diag_error(L->d, a->loc, "unknown activation '%s' (expected one of: %s)",
               ast_clip(what, sizeof what, a->text),
               word_list(buf, sizeof buf, act_words, ACT_COUNT, ~0u, bare ? "linear" : NULL));
    case_hint(L, a->loc, a->text, act_words, ACT_COUNT);
    return;
  }
  l->act = (Act)act;
  l->act_loc = a->loc;
}

/* Positional argument i: conv2d F KHxKW, maxpool KHxKW, dense N, dropout RATE. */
static void layer_positional(Lower *L, Layer *l, int i, const Arg *a) {
  switch (l->op) {
  case OP_CONV2D:
    if (i == 0) {
      want_int_field(L, a, "the filter count", 1, &l->u.conv.filters);
    } else {
      want_size(L, a, "the kernel size", &l->u.conv.kh, &l->u.conv.kw);
      l->size_loc = a->loc;
    }
    break;
  case OP_MAXPOOL:
  case OP_AVGPOOL:
    want_size(L, a, "the window size", &l->u.pool.kh, &l->u.pool.kw);
    l->size_loc = a->loc;
    break;
  case OP_DENSE:
    want_int_field(L, a, "the number of units", 1, &l->u.dense.units);
    l->size_loc = a->loc;
    break;
  case OP_DROPOUT:
    want_real(L, a, "the dropout rate", 0, false, 1, true, "in [0, 1)", &l->u.dropout.rate);
    break;
  case OP_BATCHNORM:
  case OP_GLOBALAVGPOOL:
  case OP_FLATTEN:
  case OP_ACT:
  case OP_RESIDUAL:
  case OP_SHORTCUT:
  case OP_ADD:
  case OP_COUNT:
    break;
  }
}

/* The line s as the generated code quotes it (ir.h: Layer.text). */
static const char *layer_text(Lower *L, const Stmt *s) {
  size_t n = strlen(s->text);
  if (n <= LAYER_TEXT_MAX)
    return s->text;
  char *text = arena_alloc(L->a, LAYER_TEXT_MAX + 4);
  memcpy(text, s->text, LAYER_TEXT_MAX);
  memcpy(text + LAYER_TEXT_MAX, "...", 4);
  return text;
}

/* A new layer for statement s. `act` >= 0: the word itself was an
   activation (relu). */
static Layer *layer_new(Lower *L, const Stmt *s, OpKind op, int act) {
  Net *net = L->net;
  Layer *l = &net->layers[net->nlayers];
  L->name_loc[net->nlayers] = s->loc;
  net->nlayers++;
  l->op = op;
  l->loc = s->loc;
  l->text = layer_text(L, s);
  l->act = act >= 0 ? (Act)act : ACT_LINEAR;
  l->act_loc = s->loc;
  l->size_loc = s->loc;
  l->infer_out_offset = -1;
  l->depth = L->depth;
  if (op == OP_CONV2D)
    l->u.conv.sh = l->u.conv.sw = l->u.conv.groups = 1;
  if (op == OP_BATCHNORM) { /* PyTorch's defaults */
    l->u.bn.momentum = 0.1;
    l->u.bn.eps = 1e-5;
  }
  return l;
}

/* The arguments of layer l. Errors about its activation or name= leave its
   shape known; they are counted in *soft. */
static void layer_args(Lower *L, const Stmt *s, Layer *l, int *soft) {
  OpKind op = l->op;
  int npos = 0, words = l->op == OP_ACT && l->act != ACT_LINEAR;
  int errors = L->d->errors;
  Loc options_seen[OPTION_COUNT] = {0};
  for (const Arg *a = s->args.head; a; a = a->next) {
    char buf[96];
    int before = L->d->errors;
    if (a->kind == ARG_KEYVAL) {
      layer_option(L, s, l, a, options_seen);
      if (word_lookup(option_words, OPTION_COUNT, a->text) == OPTION_NAME)
        *soft += L->d->errors - before;
    } else if (a->kind == ARG_WORD && npos < syntax[op].npos &&
               word_lookup(act_words, ACT_COUNT, a->text) < 0) {
      diag_error(L->d, a->loc, "%s needs %s, got %s", s->word, syntax[op].pos_what[npos],
                 describe(buf, sizeof buf, a));
      usage_note(L, s, op);
      return;
    } else if (a->kind == ARG_WORD) {
      layer_act(L, s, l, a, &words);
      *soft += L->d->errors - before;
    } else if (npos < syntax[op].npos) {
      layer_positional(L, l, npos++, a);
    } else {
      diag_error(L->d, a->loc, "too many arguments for %s: %s", s->word,
                 describe(buf, sizeof buf, a));
      usage_note(L, s, op);
    }
  }
  if (op == OP_ACT && words == 0) { /* `activation` without its word */
    diag_error(L->d, s->end, "activation needs a function: relu, sigmoid, tanh or softmax");
    L->bad_act[l - L->net->layers] = true;
    (*soft)++;
    return;
  }
  if (npos < syntax[op].npos) {
    if (L->d->errors == errors) { /* else the missing one was probably written wrong */
      diag_error(L->d, s->end, "%s needs %s", s->word, syntax[op].pos_what[npos]);
      usage_note(L, s, op);
    }
    l->broken = true; /* even when not reported again */
    return;
  }
  if ((op == OP_MAXPOOL || op == OP_AVGPOOL) && !seen(options_seen[OPTION_STRIDE])) {
    l->u.pool.sh = l->u.pool.kh; /* the window, in each direction */
    l->u.pool.sw = l->u.pool.kw;
  }
}

/* A layer statement. `act` >= 0: the word itself was an activation (relu). */
static void lower_layer(Lower *L, const Stmt *s, OpKind op, int act) {
  Layer *l = layer_new(L, s, op, act);
  if (!seen(L->first_layer))
    L->first_layer = s->loc;
  int errors = L->d->errors, soft = 0;
  layer_args(L, s, l, &soft);
  l->broken |= L->d->errors - errors > soft;
}

/* A layer that cannot be read (a syntax error on its line, an unknown
   word): it stands in the list so that shape.c checks nothing after it.
   A known layer word keeps its kind (it counts for the names conv1, ...). */
static void layer_broken(Lower *L, const Stmt *s) {
  int op = layer_word(s->word);
  int act = s->word ? word_lookup(act_words, ACT_COUNT, s->word) : -1;
  Layer *l = layer_new(L, s, op >= 0 ? (OpKind)op : OP_ACT, op < 0 ? act : -1);
  l->broken = true;
  if ((op >= 0 || act > ACT_LINEAR) && !seen(L->first_layer))
    L->first_layer = s->loc;
}

/* "unknown loss 'foo' (expected one of: ...)" for a word; "the loss must be
   one of: ..., got number '3'" for anything else. */
static void unknown_word(Lower *L, const Arg *a, const char *what, const char *const *words, int n,
                         unsigned mask) {
  char list[256], buf[96];
  word_list(list, sizeof list, words, n, mask, NULL);
  if (a->kind == ARG_WORD || a->kind == ARG_KEYVAL)
    diag_error(L->d, a->loc, "unknown %s '%s' (expected one of: %s)", what,
               ast_clip(buf, sizeof buf, a->text), list);
  else
    diag_error(L->d, a->loc, "expected %s (one of: %s), got %s", what, list,
               describe(buf, sizeof buf, a));
}

/* ---- training settings ---- */

/* The one argument of `batch 32`, `loss mse`: NULL (reported) if missing or
   more than one. */
static const Arg *single_arg(Lower *L, const Stmt *s, Setting set) {
  char buf[96];
  if (s->args.n == 0) {
    diag_error(L->d, s->end, "%s needs a value, e.g. '%s'", s->word, setting_examples[set]);
    return NULL;
  }
  if (s->args.n > 1) {
    diag_error(L->d, s->args.head->next->loc, "too many arguments for %s: %s", s->word,
               describe(buf, sizeof buf, s->args.head->next));
    if (set == SET_CLASS_WEIGHTS)
      diag_note(L->d, s->loc, "the weights are one list with commas, e.g. 'class_weights 1,2,3'");
    else
      diag_note(L->d, s->loc, "usage: %s", setting_examples[set]);
    return NULL;
  }
  if (s->args.head->kind == ARG_KEYVAL) {
    diag_error(L->d, s->args.head->loc, "%s takes no options, got '%s='", s->word,
               ast_clip(buf, sizeof buf, s->args.head->text));
    return NULL;
  }
  return s->args.head;
}

static void set_loss(Lower *L, const Stmt *s) {
  L->net->train.loss_unchecked = true; /* until it is read */
  const Arg *a = single_arg(L, s, SET_LOSS);
  if (!a)
    return;
  int loss = a->kind == ARG_WORD ? word_lookup(loss_words, LOSS_COUNT, a->text) : -1;
  if (loss < 0) {
    unknown_word(L, a, "loss", loss_words, LOSS_COUNT, ~0u);
    return;
  }
  L->net->train.loss_unchecked = false;
  L->net->train.loss = (Loss)loss;
  L->net->train.loss_loc = a->loc;
}

/* The kind that a setting's first argument names (`optimizer adam ...`,
   `schedule cosine ...`): its index in `words`, or -1 (reported). `needs`
   says what is missing: "a name: sgd or adam". */
static int setting_kind(Lower *L, const Stmt *s, Setting set, const char *needs,
                        const char *const *words, int n) {
  const Arg *a = s->args.head;
  if (!a) {
    diag_error(L->d, s->end, "%s needs %s, e.g. '%s'", setting_words[set], needs,
               setting_examples[set]);
    return -1;
  }
  int k = a->kind == ARG_WORD ? word_lookup(words, n, a->text) : -1;
  if (k < 0)
    unknown_word(L, a, setting_words[set], words, n, ~0u);
  return k;
}

/* optimizer sgd lr=0.1 momentum=0.9 nesterov weight_decay=1e-4 */
static void set_optimizer(Lower *L, const Stmt *s) {
  char buf[256], what[96];
  TrainConfig *t = &L->net->train;
  const Arg *a = s->args.head;
  int opt = setting_kind(L, s, SET_OPTIMIZER, "a name: sgd or adam", optimizer_words, OPT_COUNT);
  if (opt < 0)
    return;
  t->optimizer = (Optimizer)opt;
  t->optimizer_loc = a->loc;
  t->lr = default_lr[opt];
  Loc given[OO_COUNT] = {0};
  int errors = L->d->errors;
  for (a = a->next; a; a = a->next) {
    int o = a->kind == ARG_WORD || a->kind == ARG_KEYVAL
                ? word_lookup(opt_option_words, OO_COUNT, a->text)
                : -1;
    if (o < 0 || !(opt_options_of[opt] & BIT(o))) {
      word_list(buf, sizeof buf, opt_option_words, OO_COUNT, opt_options_of[opt], NULL);
      if (a->kind == ARG_WORD || a->kind == ARG_KEYVAL)
        diag_error(L->d, a->loc, "%s has no option '%s' (expected one of: %s)",
                   optimizer_words[opt], ast_clip(what, sizeof what, a->text), buf);
      else
        diag_error(L->d, a->loc, "unexpected %s for %s (expected one of: %s)",
                   describe(what, sizeof what, a), optimizer_words[opt], buf);
      if (a->kind == ARG_NUMBER && !seen(given[OO_LR]))
        diag_note(L->d, a->loc, "a learning rate is written lr=%s",
                  ast_clip(buf, sizeof buf, a->text));
      continue;
    }
    snprintf(what, sizeof what, "'%s'", opt_option_words[o]);
    if (duplicate(L, &given[o], a->loc, what))
      continue;
    if (o == OO_NESTEROV) {
      if (a->kind == ARG_KEYVAL)
        diag_error(L->d, a->loc, "nesterov takes no value; write just 'nesterov'");
      t->nesterov = true;
      continue;
    }
    if (a->kind != ARG_KEYVAL) {
      diag_error(L->d, a->loc, "%s needs a value, e.g. %s=%s", a->text, a->text,
                 o == OO_LR    ? "0.01"
                 : o == OO_EPS ? "1e-7"
                               : "0.9");
      continue;
    }
    const Arg *v = a->value;
    switch ((OptOption)o) {
    case OO_LR:
      want_real(L, v, "lr", 0, true, HUGE_VAL, false, "greater than 0", &t->lr);
      break;
    case OO_MOMENTUM:
      want_real(L, v, "momentum", 0, false, 1, true, "in [0, 1)", &t->momentum);
      break;
    case OO_WEIGHT_DECAY:
      want_real(L, v, "weight_decay", 0, false, HUGE_VAL, false, "at least 0", &t->weight_decay);
      break;
    case OO_BETA1:
      want_real(L, v, "beta1", 0, false, 1, true, "in [0, 1)", &t->beta1);
      break;
    case OO_BETA2:
      want_real(L, v, "beta2", 0, false, 1, true, "in [0, 1)", &t->beta2);
      break;
    case OO_EPS:
      want_real(L, v, "eps", 0, true, HUGE_VAL, false, "greater than 0", &t->eps);
      break;
    case OO_NESTEROV:
    case OO_COUNT:
      break;
    }
  }
  if (t->nesterov && t->momentum == 0 && L->d->errors == errors) /* else momentum= was wrong */
    diag_error(L->d, given[OO_NESTEROV], "nesterov needs a momentum, e.g. momentum=0.9");
}

/* augment hflip vflip shift=2 rotate=10 crop=4 noise=0.05 */
static void set_augment(Lower *L, const Stmt *s) {
  char buf[256], what[96];
  AugmentSetting *aug = L->net->train.augment;
  if (!s->args.head) {
    diag_error(L->d, s->end, "augment needs at least one of: %s",
               word_list(buf, sizeof buf, augment_words, AUG_COUNT, ~0u, NULL));
    return;
  }
  for (const Arg *a = s->args.head; a; a = a->next) {
    int k = a->kind == ARG_WORD || a->kind == ARG_KEYVAL
                ? word_lookup(augment_words, AUG_COUNT, a->text)
                : -1;
    if (k < 0) {
      unknown_word(L, a, "augmentation", augment_words, AUG_COUNT, ~0u);
      continue;
    }
    snprintf(what, sizeof what, "'%s'", augment_words[k]);
    if (duplicate(L, &aug[k].loc, a->loc, what))
      continue;
    aug[k].on = true;
    if (!augment_takes_value[k]) {
      if (a->kind == ARG_KEYVAL)
        diag_error(L->d, a->loc, "%s takes no value; write just '%s'", a->text, a->text);
      continue;
    }
    if (a->kind != ARG_KEYVAL) {
      diag_error(L->d, a->loc, "%s needs a value, e.g. %s=%s", a->text, a->text,
                 k == AUG_NOISE    ? "0.05"
                 : k == AUG_ROTATE ? "10"
                                   : "2");
      continue;
    }
    long px;
    switch ((Augment)k) {
    case AUG_SHIFT:
    case AUG_CROP:
      snprintf(what, sizeof what, "%s (pixels)", augment_words[k]);
      if (want_int(L, a->value, what, 1, INT_ARG_MAX, &px))
        aug[k].value = (double)px;
      break;
    case AUG_ROTATE:
      want_real(L, a->value, "rotate (degrees)", 0, true, 180, false, "in (0, 180]", &aug[k].value);
      break;
    case AUG_NOISE:
      want_real(L, a->value, "noise (standard deviation)", 0, true, HUGE_VAL, false,
                "greater than 0", &aug[k].value);
      break;
    case AUG_HFLIP:
    case AUG_VFLIP:
    case AUG_COUNT:
      break;
    }
  }
}

/* class_weights balanced | class_weights 1,2,0.5 */
static void set_class_weights(Lower *L, const Stmt *s) {
  char buf[96];
  TrainConfig *t = &L->net->train;
  const Arg *a = single_arg(L, s, SET_CLASS_WEIGHTS);
  if (!a)
    return;
  t->class_weights_loc = a->loc;
  if (a->kind == ARG_WORD && word_lookup(class_weight_words, CLASS_WEIGHT_WORDS, a->text) >= 0) {
    t->class_weights = CW_BALANCED;
    return;
  }
  if (a->kind != ARG_NUMBER && a->kind != ARG_LIST) {
    diag_error(L->d, a->loc, "class_weights must be 'balanced' or a list like 1,2,0.5, got %s",
               describe(buf, sizeof buf, a));
    return;
  }
  const Arg *first = a->kind == ARG_LIST ? a->items.head : a;
  int n = a->kind == ARG_LIST ? a->items.n : 1;
  double *w = arena_alloc(L->a, (size_t)n * sizeof *w), sum = 0;
  bool ok = true;
  int i = 0;
  for (const Arg *item = first; i < n; item = item->next, i++) {
    ok &= want_real(L, item, "a class weight", 0, false, HUGE_VAL, true, "a number >= 0", &w[i]);
    sum += w[i];
  }
  if (!ok)
    return; /* reported; their count is checked once they are right */
  if (!(sum > 0)) {
    diag_error(L->d, a->loc, "class_weights are all 0: at least one must be positive");
    return;
  }
  t->class_weights = CW_LIST;
  t->class_weight_list = w;
  t->class_weight_count = n;
}

static void set_count(Lower *L, const Stmt *s, Setting set, int *out) {
  const Arg *a = single_arg(L, s, set);
  if (a)
    want_int_field(L, a, set == SET_BATCH ? "the batch size" : "the number of epochs", 1, out);
}

static void set_seed(Lower *L, const Stmt *s) {
  const Arg *a = single_arg(L, s, SET_SEED);
  if (!a)
    return;
  /* All digits: read exactly, up to 2^64 - 1. */
  if (a->kind == ARG_NUMBER && strspn(a->text, "0123456789") == strlen(a->text)) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(a->text, &end, 10);
    if (errno == 0) {
      L->net->train.seed = v;
      return;
    }
    diag_error(L->d, a->loc, "the seed must be at most %llu, got '%.40s'", ~0ULL, a->text);
    return;
  }
  long v;
  if (want_int(L, a, "the seed", 0, INT_ARG_MAX, &v))
    L->net->train.seed = (unsigned long long)v;
}

/* label_smoothing 0.1 | validation 0.2: one number in a range. */
static void set_fraction(Lower *L, const Stmt *s, Setting set) {
  TrainConfig *t = &L->net->train;
  const Arg *a = single_arg(L, s, set);
  if (!a)
    return;
  if (set == SET_LABEL_SMOOTHING) {
    if (want_real(L, a, "label_smoothing", 0, false, 1, true, "in [0, 1)", &t->label_smoothing))
      t->label_smoothing_loc = a->loc;
  } else if (want_real(L, a, "validation (the fraction held out)", 0, true, 1, true, "in (0, 1)",
                       &t->validation)) {
    t->validation_loc = a->loc;
  }
}

/* The KEY=VALUE options of a schedule or early_stopping, from `a` on: each
   one that `mask` allows goes to val[its RecipeOption]; anything else,
   twice or without a value is reported. False if anything was. */
static bool recipe_options(Lower *L, const Arg *a, const char *owner, unsigned mask,
                           const Arg *val[RO_COUNT]) {
  char buf[256], what[96];
  Loc given[RO_COUNT] = {0};
  bool ok = true;
  for (; a; a = a->next) {
    int o = a->kind == ARG_WORD || a->kind == ARG_KEYVAL
                ? word_lookup(recipe_option_words, RO_COUNT, a->text)
                : -1;
    if (o < 0 || !(mask & BIT(o))) {
      word_list(buf, sizeof buf, recipe_option_words, RO_COUNT, mask, NULL);
      if (a->kind == ARG_WORD || a->kind == ARG_KEYVAL)
        diag_error(L->d, a->loc, "%s has no option '%s' (expected one of: %s)", owner,
                   ast_clip(what, sizeof what, a->text), buf);
      else
        diag_error(L->d, a->loc, "unexpected %s for %s (expected one of: %s)",
                   describe(what, sizeof what, a), owner, buf);
      ok = false;
      continue;
    }
    snprintf(what, sizeof what, "'%s'", recipe_option_words[o]);
    if (duplicate(L, &given[o], a->loc, what)) {
      ok = false;
      continue;
    }
    if (a->kind != ARG_KEYVAL) {
      diag_error(L->d, a->loc, "%s needs a value, e.g. %s=%s", a->text, a->text,
                 o == RO_GAMMA                         ? "0.5"
                 : o == RO_MIN_LR || o == RO_MIN_DELTA ? "0.001"
                                                       : "2");
      ok = false;
      continue;
    }
    val[o] = a->value;
  }
  return ok;
}

/* schedule constant | step every=10 gamma=0.5 | cosine min_lr=1e-5, each
   with an optional warmup=E */
static void set_schedule(Lower *L, const Stmt *s) {
  TrainConfig *t = &L->net->train;
  const Arg *a = s->args.head, *val[RO_COUNT] = {0};
  int k = setting_kind(L, s, SET_SCHEDULE, "a kind: constant, step or cosine", schedule_words,
                       SCHED_COUNT);
  if (k < 0)
    return;
  t->schedule_loc = a->loc;
  if (!recipe_options(L, a->next, schedule_words[k], schedule_options_of[k], val))
    return;
  long v;
  if (val[RO_WARMUP] && want_int(L, val[RO_WARMUP], "warmup (epochs)", 0, INT_ARG_MAX, &v))
    t->warmup = (int)v;
  if (val[RO_MIN_LR])
    want_real(L, val[RO_MIN_LR], "min_lr", 0, false, HUGE_VAL, false, "at least 0", &t->min_lr);
  if (k == SCHED_STEP) {
    if (!val[RO_EVERY] || !val[RO_GAMMA]) {
      diag_error(L->d, a->loc,
                 "schedule step needs every=E and gamma=G, e.g. 'schedule step "
                 "every=10 gamma=0.5'");
      return;
    }
    if (want_int(L, val[RO_EVERY], "every (epochs)", 1, INT_ARG_MAX, &v))
      t->step_every = (int)v;
    want_real(L, val[RO_GAMMA], "gamma", 0, true, HUGE_VAL, false, "greater than 0",
              &t->step_gamma);
  }
  t->schedule = (Schedule)k;
}

/* early_stopping patience=3 min_delta=0.001 */
static void set_early_stopping(Lower *L, const Stmt *s) {
  TrainConfig *t = &L->net->train;
  const Arg *val[RO_COUNT] = {0};
  if (!recipe_options(L, s->args.head, "early_stopping", early_stopping_options, val))
    return;
  if (!val[RO_PATIENCE]) {
    diag_error(L->d, s->args.head ? s->args.head->loc : s->end,
               "early_stopping needs patience=P (epochs without a better validation loss), "
               "e.g. '%s'",
               setting_examples[SET_EARLY_STOPPING]);
    return;
  }
  long v;
  if (val[RO_MIN_DELTA])
    want_real(L, val[RO_MIN_DELTA], "min_delta", 0, false, HUGE_VAL, false, "at least 0",
              &t->min_delta);
  if (want_int(L, val[RO_PATIENCE], "patience (epochs)", 1, INT_ARG_MAX, &v)) {
    t->patience = (int)v;
    t->early_stopping_loc = s->loc;
  }
}

/* Settings that only make sense together, once the block is read. */
static void check_recipe(Lower *L) {
  const TrainConfig *t = &L->net->train;
  if (t->label_smoothing > 0 && !t->loss_unchecked &&
      (t->loss == LOSS_BCE || t->loss == LOSS_MSE)) {
    diag_error(L->d, t->label_smoothing_loc,
               "label_smoothing is for the cross-entropy losses, not %s", loss_words[t->loss]);
    diag_note(L->d, t->loss_loc,
              "use sparse_categorical_crossentropy or categorical_crossentropy, or drop "
              "label_smoothing");
  }
  if (t->patience > 0 && t->validation == 0) {
    diag_error(L->d, t->early_stopping_loc,
               "early_stopping needs a validation split to watch (the test set never steers "
               "training)");
    diag_note(L->d, t->early_stopping_loc, "add 'validation 0.1' to the train block");
  }
}

/* A hint for a setting that is really an optimizer option (`lr 0.1`). */
static void setting_hint(Lower *L, const Stmt *s) {
  if (word_lookup(opt_option_words, OO_COUNT, s->word) >= 0)
    diag_note(L->d, s->loc, "%s is an option of optimizer, e.g. 'optimizer adam lr=0.001'",
              s->word);
}

/* One line inside train { } (or after a train line whose '{' was lost). */
static void lower_setting(Lower *L, const Stmt *st) {
  char buf[256], what[96];
  TrainConfig *t = &L->net->train;
  if (st->broken) { /* reported; a loss that could not be read is not checked */
    if (st->word && strcmp(st->word, "loss") == 0)
      t->loss_unchecked = true;
    return;
  }
  int set = word_lookup(setting_words, SET_COUNT, st->word);
  if (st->block) {
    diag_error(L->d, st->open_loc, "blocks do not nest: '%s' takes no block",
               ast_clip(what, sizeof what, st->word));
    return;
  }
  if (set < 0) {
    diag_error(L->d, st->loc, "unknown training setting '%s' (expected one of: %s)",
               ast_clip(what, sizeof what, st->word),
               word_list(buf, sizeof buf, setting_words, SET_COUNT, ~0u, NULL));
    setting_hint(L, st);
    case_hint(L, st->loc, st->word, setting_words, SET_COUNT);
    return;
  }
  snprintf(what, sizeof what, "'%s'", setting_words[set]);
  if (duplicate(L, &L->setting_loc[set], st->loc, what))
    return;
  switch ((Setting)set) {
  case SET_LOSS:
    set_loss(L, st);
    break;
  case SET_OPTIMIZER:
    set_optimizer(L, st);
    break;
  case SET_BATCH:
    set_count(L, st, SET_BATCH, &t->batch);
    break;
  case SET_EPOCHS:
    set_count(L, st, SET_EPOCHS, &t->epochs);
    break;
  case SET_SEED:
    set_seed(L, st);
    break;
  case SET_AUGMENT:
    set_augment(L, st);
    break;
  case SET_CLASS_WEIGHTS:
    set_class_weights(L, st);
    break;
  case SET_LABEL_SMOOTHING:
  case SET_VALIDATION:
    set_fraction(L, st, (Setting)set);
    break;
  case SET_SCHEDULE:
    set_schedule(L, st);
    break;
  case SET_EARLY_STOPPING:
    set_early_stopping(L, st);
    break;
  case SET_COUNT:
    break;
  }
}

/* The train statement itself; false if it is a second one (reported). A
   broken line may have cut a setting off: the loss is then not checked. */
static bool train_begin(Lower *L, const Stmt *s) {
  TrainConfig *t = &L->net->train;
  if (seen(L->train_loc)) {
    if (!s->broken) {
      diag_error(L->d, s->loc, "a second train block; put every setting in one");
      diag_note(L->d, L->train_loc, "the first train block is here");
    }
    return false;
  }
  L->train_loc = s->loc;
  t->present = true;
  t->loss_loc = s->loc; /* the default loss is checked against the output here */
  t->optimizer_loc = s->loc;
  t->loss_unchecked |= s->broken;
  return true;
}

static bool top_level_word(const char *word);
static void lower_stmt(Lower *L, const Stmt *s);

/* train { settings }. When the '}' is missing, the block probably ended
   before its first line that is no setting: from there on the lines are
   read as the top level's. */
static void lower_train(Lower *L, const Stmt *s) {
  char what[96];
  bool first = train_begin(L, s);
  if (first && s->args.head && !s->broken)
    diag_error(L->d, s->args.head->loc, "train takes no arguments, got %s",
               describe(what, sizeof what, s->args.head));
  const Stmt *st = s->body.head;
  for (; st && !(s->unclosed && st->word && top_level_word(st->word)); st = st->next)
    if (first)
      lower_setting(L, st);
  if (first)
    check_recipe(L);
  for (; st; st = st->next)
    lower_stmt(L, st);
}

/* ---- top level ---- */

/* Statements in all, blocks' included: the most layers there can be. */
static int count_stmts(const StmtList *list) {
  int n = 0;
  for (const Stmt *s = list->head; s; s = s->next)
    n += 1 + count_stmts(&s->body);
  return n;
}

static void lower_network(Lower *L, const Stmt *s) {
  char buf[96];
  if (duplicate(L, &L->network_loc, s->loc, "'network'"))
    return;
  if (s->args.n != 1 || s->args.head->kind != ARG_WORD) {
    if (s->args.n == 0)
      diag_error(L->d, s->end, "network needs a name, e.g. 'network fashion'");
    else if (s->args.head->kind != ARG_WORD)
      diag_error(L->d, s->args.head->loc, "the network name must be a C identifier, got %s",
                 describe(buf, sizeof buf, s->args.head));
    else
      diag_error(L->d, s->args.head->next->loc, "too many arguments for network: %s",
                 describe(buf, sizeof buf, s->args.head->next));
    return;
  }
  const char *name = s->args.head->text, *problem = net_name_problem(name);
  if (problem) {
    diag_error(L->d, s->args.head->loc, "the network name %s", problem);
    return;
  }
  snprintf(L->net->name, sizeof L->net->name, "%s", name);
}

const char *net_name_problem(const char *name) {
  static char msg[64];
  size_t n = strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_0123456789");
  if (!name[0] || name[n] || (name[0] >= '0' && name[0] <= '9'))
    return "must be a C identifier (letters, digits and '_', not starting with a digit)";
  if (n >= sizeof ((Net *)0)->name) {
    snprintf(msg, sizeof msg, "must be at most %zu characters long",
             sizeof ((Net *)0)->name - 1);
    return msg;
  }
  return NULL;
}

static void lower_input(Lower *L, const Stmt *s) {
  char buf[96];
  Net *net = L->net;
  if (duplicate(L, &net->input_loc, s->loc, "'input'"))
    return;
  if (seen(L->first_layer)) {
    diag_error(L->d, s->loc, "input must come before the first layer");
    diag_note(L->d, L->first_layer, "the first layer is here");
  }
  const Arg *a = s->args.head;
  if (!a) {
    diag_error(L->d, s->end, "input needs a shape HxWxC, e.g. 'input 28x28x1'");
    return;
  }
  if (a->kind != ARG_DIMS || a->ndims != 3) {
    diag_error(L->d, a->loc,
               "input needs a shape HxWxC (height x width x channels) like "
               "28x28x1, got %s",
               describe(buf, sizeof buf, a));
    return;
  }
  if (a->next) {
    diag_error(L->d, a->next->loc, "too many arguments for input: %s",
               describe(buf, sizeof buf, a->next));
    return;
  }
  for (int i = 0; i < 3; i++)
    if (a->dims[i] < 1 || a->dims[i] > INT_ARG_MAX) {
      diag_error(L->d, a->loc, "every input dimension must be between 1 and %ld, got '%s'",
                 INT_ARG_MAX, ast_clip(buf, sizeof buf, a->text));
      return;
    }
  net->input = (Shape){(int)a->dims[0], (int)a->dims[1], (int)a->dims[2], false};
}

/* classes NAME...: the outputs' names, words, numbers or quoted names;
   shape.c checks their count against the outputs. */
static void lower_classes(Lower *L, const Stmt *s) {
  char buf[96];
  Net *net = L->net;
  if (duplicate(L, &net->classes_loc, s->loc, "'classes'"))
    return;
  if (s->args.n == 0) {
    diag_error(L->d, s->end,
               "classes needs the outputs' names in order, e.g. 'classes cat dog \"sea lion\"'");
    return;
  }
  const char **names = arena_alloc(L->a, (size_t)s->args.n * sizeof *names);
  int n = 0;
  for (const Arg *a = s->args.head; a; a = a->next) {
    if (a->kind == ARG_KEYVAL || a->kind == ARG_LIST) {
      diag_error(L->d, a->loc, "a class name is a word, a number or a quoted name, got %s",
                 describe(buf, sizeof buf, a));
      return;
    }
    if (!a->text[0] || strlen(a->text) > 255) {
      diag_error(L->d, a->loc, "a class name must have 1 to 255 bytes");
      return;
    }
    for (int i = 0; i < n; i++)
      if (strcmp(names[i], a->text) == 0) {
        diag_error(L->d, a->loc, "class name '%s' is given twice", ast_clip(buf, sizeof buf, a->text));
        return;
      }
    names[n++] = a->text;
  }
  net->classes = names;
  net->nclasses = n;
}

/* A top-level line with a syntax error (reported), as far as its first
   word tells what was meant. An input that could not be read stays 0x0x0;
   anything that may have been a layer becomes a broken one. */
static void lower_broken(Lower *L, const Stmt *s) {
  const char *w = s->word ? s->word : "";
  L->broken = s;
  if (is_stmt(w, STMT_NETWORK)) {
    if (!seen(L->network_loc))
      L->network_loc = s->loc;
  } else if (is_stmt(w, STMT_INPUT)) {
    if (!seen(L->net->input_loc))
      L->net->input_loc = s->loc;
  } else if (is_stmt(w, STMT_TRAIN)) {
    train_begin(L, s);
  } else if (word_lookup(setting_words, SET_COUNT, w) < 0) {
    layer_broken(L, s);
  }
}

/* Whether `word` starts a statement that may stand at the top level. */
static bool top_level_word(const char *word) {
  int act = word_lookup(act_words, ACT_COUNT, word);
  return is_stmt(word, STMT_NETWORK) || is_stmt(word, STMT_INPUT) || layer_word(word) >= 0 ||
         (act >= 0 && act != ACT_LINEAR);
}

/* ---- residual blocks ---- */

/* The statements of a residual block (shortcut: of its shortcut block):
   layers and nested blocks, lowered in source order so that the names
   conv1, ... count them as written; the shortcut block only as the
   block's last statement. Returns the number of layers they gave. */
static int lower_block_body(Lower *L, const Stmt *block, bool shortcut_allowed, int *shortcut) {
  char what[96];
  int before = L->net->nlayers;
  L->depth++;
  for (const Stmt *st = block->body.head; st; st = st->next) {
    int op = layer_word(st->word);
    if (op == OP_SHORTCUT && !st->broken && shortcut_allowed && !st->next) {
      *shortcut = L->net->nlayers;
      Layer *sc = layer_new(L, st, OP_SHORTCUT, -1);
      if (!st->block)
        diag_error(L->d, st->end, "shortcut needs a block: 'shortcut {', its layers, then '}'");
      else if (st->args.head)
        diag_error(L->d, st->args.head->loc, "shortcut takes no arguments, got %s",
                   describe(what, sizeof what, st->args.head));
      sc->broken = !st->block;
      if (st->block)
        lower_block_body(L, st, false, shortcut);
      *shortcut = (int)(sc - L->net->layers);
    } else if (op == OP_SHORTCUT && !st->broken) {
      diag_error(L->d, st->loc, "shortcut must be the last statement of a residual block");
      diag_note(L->d, block->loc, "in this %s block", block->word);
    } else if (st->word && (is_stmt(st->word, STMT_NETWORK) || is_stmt(st->word, STMT_INPUT) ||
                            is_stmt(st->word, STMT_TRAIN) || is_stmt(st->word, STMT_CLASSES))) {
      diag_error(L->d, st->loc, "%s cannot be inside a %s block (only layers can)", st->word,
                 block->word);
    } else {
      lower_stmt(L, st);
    }
  }
  L->depth--;
  return L->net->nlayers - before;
}

/* residual { LAYERS [shortcut { LAYERS }] }: the fork (keeps x), the main
   path's layers, the shortcut and its layers, then the add (y = m + s(x)):
   a linear list that names the tensors the block keeps (ir.h). */
static void lower_residual(Lower *L, const Stmt *s) {
  char what[96];
  Net *net = L->net;
  if (!s->block) {
    diag_error(L->d, s->end, "residual needs a block: 'residual {', its layers, then '}'");
    layer_broken(L, s);
    return;
  }
  if (s->args.head)
    diag_error(L->d, s->args.head->loc, "residual takes no arguments, got %s",
               describe(what, sizeof what, s->args.head));
  if (!seen(L->first_layer))
    L->first_layer = s->loc;
  int fork = net->nlayers, shortcut = -1;
  layer_new(L, s, OP_RESIDUAL, -1);
  int errors = L->d->errors;
  int layers = lower_block_body(L, s, true, &shortcut);
  int main_layers = layers - (shortcut >= 0 ? net->nlayers - shortcut : 0);
  Layer *add = layer_new(L, s, OP_ADD, -1);
  add->text = shortcut >= 0 ? "}: main path + shortcut" : "}: main path + x";
  add->loc = s->unclosed ? s->open_loc : s->loc;
  if (main_layers == 0 && L->d->errors == errors) {
    diag_error(L->d, s->open_loc,
               "this residual block has no layers on its main path (y = main(x) + shortcut(x))");
    diag_note(L->d, s->loc, "put its layers inside, e.g. 'conv2d 16 3x3 padding=same'");
    add->broken = true;
  }
  int n = (int)(add - net->layers);
  for (int i = fork; i <= n; i += n - fork) /* the fork and the add */
    net->layers[i].u.block.fork = fork, net->layers[i].u.block.shortcut = shortcut,
    net->layers[i].u.block.add = n;
  if (shortcut >= 0)
    net->layers[shortcut].u.block = net->layers[fork].u.block;
}

static void lower_stmt(Lower *L, const Stmt *s) {
  char buf[512], what[96];
  if (s->orphan) { /* after a '{' lost on a broken line: inside train, perhaps */
    if (L->broken && is_stmt(L->broken->word, STMT_TRAIN))
      lower_setting(L, s);
    return;
  }
  if (s->broken && !(s->block && is_stmt(s->word, STMT_TRAIN))) {
    lower_broken(L, s);
    return;
  }
  if (s->word && (layer_word(s->word) == OP_RESIDUAL)) {
    lower_residual(L, s);
    return;
  }
  if (s->word && layer_word(s->word) == OP_SHORTCUT) {
    diag_error(L->d, s->loc, "shortcut belongs inside a residual block, as its last statement");
    diag_note(L->d, s->loc, "usage: %s", syntax[OP_RESIDUAL].usage);
    return;
  }
  if (s->block && !is_stmt(s->word, STMT_TRAIN)) {
    diag_error(L->d, s->open_loc, "only train, residual and shortcut take a block, not '%s'",
               ast_clip(what, sizeof what, s->word));
    if (!top_level_word(s->word)) {
      if (word_lookup(setting_words, SET_COUNT, s->word) < 0)
        layer_broken(L, s); /* an unknown word: a layer was meant, perhaps */
      return;
    }
    /* The statement itself may be right: check it too. */
  }
  if (is_stmt(s->word, STMT_TRAIN)) {
    if (!s->block)
      diag_error(L->d, s->end, "train needs a block: 'train {', the settings, then '}'");
    else
      lower_train(L, s);
    return;
  }
  if (is_stmt(s->word, STMT_NETWORK)) {
    lower_network(L, s);
    return;
  }
  if (is_stmt(s->word, STMT_INPUT)) {
    lower_input(L, s);
    return;
  }
  if (is_stmt(s->word, STMT_CLASSES)) {
    lower_classes(L, s);
    return;
  }
  int op = layer_word(s->word);
  int act = word_lookup(act_words, ACT_COUNT, s->word);
  if (op >= 0 || (act >= 0 && act != ACT_LINEAR)) {
    lower_layer(L, s, op >= 0 ? (OpKind)op : OP_ACT, op >= 0 ? -1 : act);
    return;
  }
  if (word_lookup(setting_words, SET_COUNT, s->word) >= 0) {
    diag_error(L->d, s->loc, "%s is a training setting; put it inside 'train { ... }'", s->word);
    return;
  }
  /* The list of layers: every op but the generic "activation", then each
     activation word but linear. */
  size_t used = strlen(word_list(buf, sizeof buf, op_words, OP_COUNT,
                                 ~0u & ~(1u << OP_ACT | 1u << OP_SHORTCUT | 1u << OP_ADD), NULL));
  snprintf(buf + used, sizeof buf - used, ", ");
  used += 2;
  word_list(buf + used, sizeof buf - used, act_words, ACT_COUNT, ~0u, "linear");
  diag_error(L->d, s->loc, "unknown layer '%s' (expected one of: %s)",
             ast_clip(what, sizeof what, s->word), buf);
  setting_hint(L, s);
  case_hint(L, s->loc, s->word, statement_words, STMT_COUNT);
  case_hint(L, s->loc, s->word, op_words, OP_COUNT);
  case_hint(L, s->loc, s->word, act_words, ACT_COUNT);
  layer_broken(L, s); /* a layer was meant, perhaps: nothing after it is checked */
}

/* ---- names ---- */

typedef struct NamedLayer {
  const char *name;
  int index;
} NamedLayer;

static int by_name(const void *x, const void *y) {
  const NamedLayer *a = x, *b = y;
  int c = strcmp(a->name, b->name);
  return c ? c : (a->index > b->index) - (a->index < b->index);
}

/* conv1, conv2, ... and dense1, ... by position among the layers of that
   kind (a name= keeps its place in the count); every name once. */
static void name_layers(Lower *L) {
  Net *net = L->net;
  int count[OP_COUNT] = {0}, n = 0;
  NamedLayer *e = arena_alloc(L->a, (size_t)net->nlayers * sizeof *e + 1);
  for (int i = 0; i < net->nlayers; i++) {
    Layer *l = &net->layers[i];
    if (!op_modules[l->op]->weights)
      continue;
    count[l->op]++;
    if (!L->named[i])
      snprintf(l->name, sizeof l->name, "%s%d", op_modules[l->op]->prefix,
               count[l->op]);
    if (l->name[0])
      e[n++] = (NamedLayer){l->name, i};
  }
  qsort(e, (size_t)n, sizeof *e, by_name);
  for (int k = 1, first = 0; k < n; k++) {
    if (strcmp(e[k].name, e[first].name) != 0) {
      first = k;
      continue;
    }
    /* Blame the explicit name=; the other layer gets the note. */
    int i = e[k].index, f = e[first].index;
    int blame = L->named[i] ? i : f, other = blame == i ? f : i;
    diag_error(L->d, L->name_loc[blame], "layer name '%s' is used twice", e[k].name);
    if (L->named[other])
      diag_note(L->d, L->name_loc[other], "also named here");
    else
      diag_note(L->d, net->layers[other].loc, "'%s' is the default name of this layer", e[k].name);
  }
}

/* The file's base name as a C identifier: "nets/my-net.cnn" -> "my_net". */
static void default_name(char *name, size_t size, const char *path) {
  const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
  const char *dot = strchr(base, '.');
  size_t n = dot ? (size_t)(dot - base) : strlen(base), used = 0;
  if (n > 0 && base[0] >= '0' && base[0] <= '9')
    used = (size_t)snprintf(name, size, "net_");
  for (size_t i = 0; i < n && used + 1 < size; i++) {
    char c = base[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    name[used++] = ok ? c : '_';
  }
  name[used] = '\0';
  if (used == 0)
    snprintf(name, size, "net");
}

int lower(Arena *a, const char *path, const char *src, size_t len, Diag *d, Net **out) {
  int errors = d->errors;
  *out = NULL;
  StmtList stmts;
  if (parse(a, path, src, len, d, &stmts) > 0 && stmts.n == 0)
    return d->errors - errors; /* nothing to look at but what was reported */

  Net *net = arena_alloc(a, sizeof *net);
  Lower L = {.a = a, .d = d, .net = net};
  net->file = path;
  size_t n = 2 * (size_t)count_stmts(&stmts); /* a residual block: its fork and its add */
  net->layers = arena_alloc(a, n * sizeof *net->layers + 1);
  L.name_loc = arena_alloc(a, n * sizeof *L.name_loc + 1);
  L.named = arena_alloc(a, n * sizeof *L.named + 1);
  L.bad_act = arena_alloc(a, n * sizeof *L.bad_act + 1);
  net->train = (TrainConfig){.loss = LOSS_SPARSE_CE,
                             .optimizer = OPT_ADAM,
                             .lr = 0.001,
                             .beta1 = 0.9,
                             .beta2 = 0.999,
                             .eps = 1e-7,
                             .batch = 32,
                             .epochs = 5,
                             .seed = 1};

  for (const Stmt *s = stmts.head; s; s = s->next)
    lower_stmt(&L, s);

  Loc start = {path, 1, 1, 1};
  if (!seen(net->input_loc) && seen(L.first_layer))
    diag_error(d, L.first_layer,
               "missing 'input HxWxC' (e.g. 'input 28x28x1') before the first layer");
  else if (!seen(net->input_loc))
    diag_error(d, stmts.head ? stmts.head->loc : start,
               "no network here: expected 'input HxWxC' (e.g. 'input 28x28x1') and layers");
  else if (net->nlayers == 0 && d->errors == errors) /* else a layer was probably misspelt */
    diag_error(d, net->input_loc, "the network has no layers (e.g. 'dense 10 softmax')");
  if (net->nlayers > 0 && L.bad_act[net->nlayers - 1])
    net->train.loss_unchecked = true; /* the output's activation is not known */
  name_layers(&L);
  if (!net->name[0])
    default_name(net->name, sizeof net->name, path);
  *out = net;
  return d->errors - errors;
}

/* ---- the vocabulary ---- */

int lower_words(const char **out, int max) {
  static const struct {
    const char *const *words;
    int n;
  } tables[] = {
      {statement_words, STMT_COUNT},  {op_words, OP_COUNT},
      {act_words, ACT_COUNT},         {option_words, OPTION_COUNT},
      {padding_words, PADDING_WORDS}, {bool_words, BOOL_WORDS},
      {setting_words, SET_COUNT},     {loss_words, LOSS_COUNT},
      {optimizer_words, OPT_COUNT},   {opt_option_words, OO_COUNT},
      {augment_words, AUG_COUNT},     {class_weight_words, CLASS_WEIGHT_WORDS},
      {schedule_words, SCHED_COUNT},  {recipe_option_words, RO_COUNT},
  };
  int n = 0;
  for (size_t t = 0; t < sizeof tables / sizeof tables[0]; t++)
    for (int i = 0; i < tables[t].n; i++)
      if (tables[t].words[i] && (tables[t].words != op_words || syntax[i].usage)) {
        if (n < max)
          out[n] = tables[t].words[i];
        n++;
      }
  return n;
}
