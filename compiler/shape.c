/*
 * shape.c: walks the layers in order, giving each its input and output
 * shape (NHWC per image, ir.h), its padding, its place in the flat
 * parameter array (weight then bias, layer order) and its MACs per image,
 * and checks that everything fits: kernels and windows against their
 * (padded) inputs, dense and softmax against vectors, conv and pools
 * against images, softmax only last, the loss against the output.
 *
 * Errors point at the token that caused them (the kernel size, the
 * activation word, the loss). A layer whose output cannot be computed
 * ends the walk; the checks that do not depend on shapes still run. So
 * does what lower.c could not read (and reported): an input of 0x0x0, a
 * layer marked broken; and a loss marked unchecked is not checked, so that
 * no error is repeated in other words.
 */
#include <limits.h>
#include <stdio.h>

#include "compile.h"
#include "ops/op.h"

/* What the language accepts, far beyond any real image classifier, so that
   the generated C (every dimension a literal, fixed-size structs) and the
   compiler's own work stay reasonable. */
#define MAX_LAYERS 10000
#define MAX_INPUT_SIDE 16384         /* pixels, height and width */
#define MAX_INPUT_VALUES (1L << 26)  /* 64 Mi: 256 MiB as floats */
#define MAX_TENSOR_VALUES (1L << 28) /* any layer's output: 1 GiB as floats */
#define MAX_PARAMS (1L << 28)        /* 1 GiB as floats */
#define MAX_ACTIVATIONS (1L << 30)   /* all layers' outputs (training keeps them): 4 GiB */

typedef ShapeCheck Check;

bool shape_identity(Check *c, Layer *l) {
  (void)c;
  l->out = l->in;
  return true;
}

bool shape_needs_image(Check *c, const Layer *l) {
  diag_error(c->d, l->loc, "%s needs an HxWxC input but gets a vector of %d", op_words[l->op],
             l->in.c);
  if (c->flat)
    diag_note(c->d, c->flat->loc, "the input became a vector here");
  return false;
}

/* Values lower.c already refuses; checked again for IR built by hand. */
static bool values_ok(Check *c, const Layer *l) {
  const char *bad = op_modules[l->op]->bad_values ? op_modules[l->op]->bad_values(l) : NULL;
  if (bad)
    diag_error(c->d, l->loc, "%s", bad);
  return !bad;
}

bool shape_window_fits(Check *c, const Layer *l, const char *what, int kh, int kw, int pad_h,
                       int pad_w) {
  long h = (long)l->in.h + pad_h, w = (long)l->in.w + pad_w;
  if (kh <= h && kw <= w)
    return true;
  char in[64];
  if (pad_h || pad_w)
    diag_error(c->d, l->size_loc, "%s %dx%d is larger than its input %s (%ldx%ld with padding)",
               what, kh, kw, summary_shape(in, sizeof in, l->in), h, w);
  else
    diag_error(c->d, l->size_loc, "%s %dx%d is larger than its input %s", what, kh, kw,
               summary_shape(in, sizeof in, l->in));
  return false;
}

/* Weights, bias and MACs of l at offset *params; false if too many. */
static bool layer_params(Check *c, Layer *l, long *params) {
  double weights = 0, bias = 0, macs = 0;
  if (op_modules[l->op]->counts)
    op_modules[l->op]->counts(l, &weights, &bias, &macs);
  const double stats = op_modules[l->op]->stats ? 2 * bias : 0; /* running mean, variance */
  if ((double)*params + weights + bias + stats > (double)MAX_PARAMS) {
    diag_error(c->d, l->loc,
               "the network is too large: more than %ld parameters (1 GiB of floats) up to "
               "this layer",
               MAX_PARAMS);
    return false;
  }
  if (op_modules[l->op]->weights) {
    l->weight_offset = *params;
    l->weight_count = (long)weights;
    l->bias_offset = bias ? *params + (long)weights : -1;
    l->bias_count = (long)bias;
    *params += (long)(weights + bias);
  }
  l->stats_offset = stats ? *params : -1;
  *params += (long)stats;
  l->macs = (long)macs;
  return true;
}

/* softmax only on the last layer, and only on a vector. */
static void check_softmax(Check *c, bool shapes_known) {
  Net *net = c->net;
  for (int i = 0; i < net->nlayers; i++) {
    const Layer *l = &net->layers[i];
    if (l->act != ACT_SOFTMAX)
      continue;
    if (i != net->nlayers - 1) {
      c->softmax_early = true;
      diag_error(c->d, l->act_loc, "softmax must be the last layer, but line %d follows",
                 net->layers[i + 1].loc.line);
      diag_note(c->d, net->layers[i + 1].loc, "this layer comes after the softmax");
    } else if (shapes_known && !l->out.vec) {
      char out[64];
      diag_error(c->d, l->act_loc, "softmax needs a vector but gets %s",
                 summary_shape(out, sizeof out, l->out));
      if (l->op == OP_ACT)
        diag_note(c->d, l->loc, "add 'flatten' before line %d", l->loc.line);
    }
  }
}

/* The loss against the output, and class_weights against the classes. */
static void check_loss(Check *c) {
  Net *net = c->net;
  const TrainConfig *t = &net->train;
  const Layer *last = &net->layers[net->nlayers - 1];
  long outputs = shape_size(net->output);
  const char *loss = loss_words[t->loss];
  if (t->loss_unchecked || c->softmax_early) {
    /* reported already: the loss or last activation (lower.c), the softmax */
  } else if (t->loss == LOSS_SPARSE_CE || t->loss == LOSS_CE) {
    if (last->act != ACT_SOFTMAX) {
      diag_error(c->d, t->loss_loc,
                 "%s needs a softmax output, but the network ends in %s (line "
                 "%d)",
                 loss, act_words[last->act], last->loc.line);
      diag_note(c->d, last->loc, "end with softmax, e.g. 'dense %ld softmax'",
                outputs > 1 ? outputs : 10);
    } else if (outputs < 2) {
      diag_error(c->d, t->loss_loc, "%s needs at least 2 classes, but the network has %ld output",
                 loss, outputs);
    }
  } else if (t->loss == LOSS_BCE && last->act != ACT_SIGMOID) {
    diag_error(c->d, t->loss_loc,
               "%s needs a sigmoid output, but the network ends in %s (line "
               "%d)",
               loss, act_words[last->act], last->loc.line);
    diag_note(c->d, last->loc, "end with sigmoid, e.g. 'dense %ld sigmoid'", outputs);
  }
  if (t->class_weights == CW_LIST && t->class_weight_count != outputs)
    diag_error(c->d, t->class_weights_loc,
               "class_weights has %d weight%s but the network has "
               "%ld output%s",
               t->class_weight_count, t->class_weight_count == 1 ? "" : "s", outputs,
               outputs == 1 ? "" : "s");
}

int shape_check(Net *net, Diag *d) {
  int errors = d->errors;
  Check c = {.net = net, .d = d};
  char buf[64];
  Shape s = net->input;
  long params = 0, macs = 0;
  double activations = 0;
  bool known = shape_size(s) > 0; /* else lower.c reported the input */
  if (s.h > MAX_INPUT_SIDE || s.w > MAX_INPUT_SIDE || (double)shape_size(s) > MAX_INPUT_VALUES) {
    diag_error(d, net->input_loc,
               "the input %s is too large: at most %d pixels a side and %ld values in all",
               summary_shape(buf, sizeof buf, s), MAX_INPUT_SIDE, MAX_INPUT_VALUES);
    known = false;
  }
  if (net->nlayers > MAX_LAYERS) {
    diag_error(d, net->layers[MAX_LAYERS].loc,
               "too many layers: at most %d (this is layer %d of %d)", MAX_LAYERS, MAX_LAYERS + 1,
               net->nlayers);
    known = false;
  }
  for (int i = 0; known && i < net->nlayers; i++) {
    Layer *l = &net->layers[i];
    l->in = s;
    if (l->broken) {
      known = false; /* reported by lower.c */
      break;
    }
    known = values_ok(&c, l) && op_modules[l->op]->shape(&c, l);
    if (known && (double)shape_size(l->out) > MAX_TENSOR_VALUES) {
      diag_error(d, l->loc,
                 "the output of this layer, %s, is too large: at most %ld values (1 GiB of "
                 "floats)",
                 summary_shape(buf, sizeof buf, l->out), MAX_TENSOR_VALUES);
      known = false;
    }
    activations += known ? (double)shape_size(l->out) : 0;
    if (known && activations > (double)MAX_ACTIVATIONS) {
      diag_error(d, l->loc,
                 "the network is too large: its layers' outputs add up to more than %ld values "
                 "(4 GiB of floats, which training keeps) up to this layer",
                 MAX_ACTIVATIONS);
      known = false;
    }
    known = known && layer_params(&c, l, &params);
    if (known && (double)macs + (double)l->macs > (double)LONG_MAX) {
      diag_error(d, l->loc, "the network is too large: more than %ld MACs per image", LONG_MAX);
      known = false;
    }
    macs += l->macs;
    s = l->out;
  }
  net->param_count = params;
  net->macs = macs;
  net->output = s;
  if (known && net->nclasses && net->nclasses != shape_size(s))
    diag_error(d, net->classes_loc,
               "classes gives %d name%s, but the network has %ld output%s (one name per "
               "output)",
               net->nclasses, net->nclasses == 1 ? "" : "s", shape_size(s),
               shape_size(s) == 1 ? "" : "s");
  check_softmax(&c, known);
  if (known && net->nlayers > 0 && net->train.present)
    check_loss(&c);
  return d->errors - errors;
}
