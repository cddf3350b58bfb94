/*
 * op.h: what an op module (compiler/ops/WORD.c, one per layer kind: its
 * row in ops.h's op table) works with: the state of shape.c's walk and of
 * the two emitters, and the helpers they share. A module defines its
 * OpModule (ops.h) from static functions: the shape rule, the parameter
 * tensors, the forward function (inference's, which training's forward
 * pass runs too) and the training functions, side by side.
 *
 * In a module, the inference code writes through a Gen *g and the training
 * code through a T *t: EM, LIN, FLT, DIMS and QUOTE take the emitter from
 * whichever the function has (#define OP_EM to g->em or t->em above each
 * half).
 */
#ifndef CNNGEN_OP_H
#define CNNGEN_OP_H

#include <stdbool.h>

#include "compile.h"
#include "emit.h"
#include "emit_glue.h"
#include "emit_model.h"
#include "emitter.h"

/* ---- shape.c ---- */

typedef struct ShapeCheck {
  Net *net;
  Diag *d;
  const Layer *flat;  /* the layer that made the tensor a vector */
  bool softmax_early; /* a softmax before the last layer was reported */
} ShapeCheck;

/* The output is the input's shape (dropout, activations). */
bool shape_identity(ShapeCheck *c, Layer *l);
/* "conv2d needs an HxWxC input but gets a vector" (reported): false. */
bool shape_needs_image(ShapeCheck *c, const Layer *l);
/* The window (`what`: "kernel", "window") of l against its padded input;
   false (reported) when it does not fit. */
bool shape_window_fits(ShapeCheck *c, const Layer *l, const char *what, int kh, int kw, int pad_h,
                       int pad_w);

/* ---- the emitters ---- */

#define EM (OP_EM)
#define LIN(...) em_lin(EM, __VA_ARGS__, (const char *)NULL)
#define FLT(v) em_float(EM, (float)(v))
#define DIMS(s) emit_dims(EM, (s))
#define QUOTE(l) emit_quote(EM, (l))

/* The inference emitter (emit_infer.c). */
typedef struct Gen {
  Emitter *em;
  const Net *net;
  const EmitOptions *opt;
  const char *n; /* the network's name: prefix of every symbol */
  int *ordinal;  /* per layer: its number among the layers of its kind (layer_fn) */
  /* Writing a layer's forward function as training runs it (emit_train_forward):
     no fused pool (the backward pass needs the conv's own output) and the
     activation `act` (the output layer's is the loss's). */
  bool train;
  Act act;
} Gen;

/* The comment opening a layer's code: its DSL line and those fused into it,
   then `what` (NULL: nothing). */
void layer_comment(Gen *g, const Layer *l, const char *what);
/* The weights (bias 0) or bias (1) l's forward function reads, through
   `m`: inference's of a conv/dense with a folded batchnorm (fused_bn) are
   NAME_fold's; and whether it has a bias (a folded one always does). */
const char *forward_param_ref(Gen *g, const Layer *l, int bias);
bool forward_has_bias(const Gen *g, const Layer *l);
/* Where NAME_infer finds a tensor of the memory plan: "xi", "yi", "a + 64". */
const char *emit_where(Emitter *em, long offset);
/* Applies act to `count` floats of p in place, after the layer stored them
   (ReLU and linear are done in registers, before the store). */
void emit_act_pass(Gen *g, Act act, const char *p, long count);

/* One layer as the training code sees it (emit_train.c). */
typedef struct TL {
  const Layer *l;
  const char *fn;        /* NAME_LAYER: the prefix of its functions */
  const char *ffn;       /* its forward function's prefix: fn, inference's, or
                            fn_train where training runs it otherwise (variant) */
  bool variant;          /* emit_train_forward writes ffn_forward */
  const char *bfn;       /* its backward function: fn_backward (fn_explain_backward
                            for a variant only NAME_explain calls) */
  const char *in, *out;  /* C expressions of its input and output (per image) */
  const char *in2;       /* an add: the other path's output (OpModule.operand) */
  Act act;               /* the activation it applies (the output one is the loss's) */
  int k;                 /* index among the TLs: buffer names */
  bool pad;              /* conv with padding: input copied into t->xp<k> */
  int ph, pw;            /* conv: (padded) input height and width */
  bool backward;         /* runs a backward pass */
  bool dx;               /* computes its input gradient */
  bool dx_if;            /* the first layer with weights: computes it when its dx
                            is not NULL (NAME_explain's; training passes NULL) */
  bool transposed;       /* conv: weights transposed into t->wt<k>, [KH][KW][F][C/G], for dx */
  const struct TL *pool; /* conv: the maxpool after it, whose backward it does */
  bool pooled;           /* maxpool: its backward is done by the conv before it */
  bool chw;              /* flatten that is the network's output: to C, H, W order */
} TL;

/* The training emitter (emit_train.c). */
typedef struct T {
  Emitter *em; /* NULL: plan only */
  const Net *net;
  const char *n; /* the network's name */
  TL *tl;        /* the layers that train, in order (begin/end) */
  int ntl;
  Act out_act;    /* applied by the loss to the last TL's output z */
  long gmax;      /* floats in each gradient buffer */
  int slots;      /* optimizer state arrays */
  const EmVec *v; /* the widest vectors of the function being written (per_width) */
  bool generic;   /* the function is written once for every width, on NAME_v */
  Arena strings;  /* S()'s, until end() */
  /* The training buffers every image shares (a conv's transposed weights
     and transposed weight gradient): "t", the image's own in the one-image
     NAME_accumulate; "(&w->train)" in the phased one (batch statistics). */
  const char *shared;
} T;

/* A formatted string of any length, until the training emitter ends: it
   builds names and expressions with this, never in fixed buffers. */
const char *train_str(T *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define S train_str
#define FL(v) em_float(t->em, (float)(v))

/* Whether L's backward function has a dx parameter. */
bool takes_dx(const TL *L);
/* Opens (open) or closes the `if (dx)` around a dx_if layer's input gradient. */
void if_dx(T *t, const TL *L, bool open);
/* dst = act(src) over `count` floats (softmax: in groups of `group`). */
void act_forward(T *t, Act act, const char *dst, const char *src, long count, int group);
/* dy = act'(y) * dy in place: the gradient before the activation. */
void act_backward(T *t, Act act, const char *y, const char *dy, long count, int group);
/* In a backward function of a layer with weights: the gradients dw (its
   dims in the comment) and db in g, and dy made the gradient before the
   activation (in place). */
void param_backward_head(T *t, const TL *L, const char *dims);
/* The backward call of a layer with weights (and without a pool):
   "BFN(m, g, [wt, ]x, y, dy[, dx]);". */
void param_backward_call(T *t, const TL *L, const char *wt, const char *in, int cur);

/* A member of struct NAME_train_work of `count` floats: its line, counted
   into *total (checked against plan.c's Net.train_work_floats). */
void train_member(T *t, long *total, long count, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Tiles of vectors (8 or 16 floats), and the channel tail (emit_train.c). */
int tile_vectors(int n, const EmVec *v);
int tile_pixels(int vectors, int width, int most, const EmVec *v);
void tile_declare(T *t, int rows, int cols, const char *init, const EmVec *vec);
int vec_off(int v, int nv, int shift, const EmVec *vec);
void tile_addto(T *t, const char *p, int j, int v, int nv, int shift, const EmVec *vec);
typedef void BlockBody(T *t, const TL *L, int nv, int shift, const EmVec *v);
void channel_blocks(T *t, const TL *L, const char *var, int N, BlockBody *body);
typedef void LayerFunction(T *t, const TL *L);
void per_width(T *t, const TL *L, LayerFunction *fn, bool wide);
/* The phased NAME_accumulate (batch_stats layers): opens (open) or closes
   the loop over the chunk's images, in which `t` is image i's training
   buffers and `xi` its input; the call that sums `count` doubles of v over
   the whole batch (every thread, every rank, in global thread order). */
void train_images(T *t, bool open);
void train_reduce(T *t, const char *v, long count);

/* With Emitter.kernels (the JIT), writes L's backward function as one call
   to the prebuilt kernels and returns true; false: the module writes it. */
bool glue_backward(T *t, const TL *L);

#endif
