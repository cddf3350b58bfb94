/*
 * emit_infer.c: the header and the inference half of the generated C
 * (docs/language.md, The generated C). The training half (emit_train.c) is called at the
 * places marked for it when EmitOptions.training is set.
 *
 * The model struct holds one flat array per parameter tensor, in the
 * internal layout the kernels want (the training code relies on it too):
 *
 *   conv weight  [KH][KW][C][F]   F innermost: one output pixel's taps
 *                                 (kx, c) of a kernel row are contiguous
 *                                 in the NHWC input and in the weights
 *   dense weight [IN][OUT]        OUT innermost; IN in H, W, C order when
 *                                 a flatten (through dropout/activations)
 *                                 comes before: NHWC needs no reordering
 *   biases       [F] / [OUT]
 *
 * Each array starts on a 64-byte boundary of the struct (padding members
 * where needed). NAME_load and NAME_store convert from and to the flat
 * PyTorch-layout array of docs/language.md, Weights files.
 *
 * Inference runs image by image: NAME_infer calls one static function per
 * layer, NAME_<layer>_forward([m, ]x, y), on tensors at the offsets of the
 * memory plan (plan.c) in NAME_work.act; the last writes into y.
 *
 * Each layer's forward function is its op module's (compiler/ops/, the
 * op table of ops.h): this file drives them in layer order, and writes the
 * header, the activation functions and NAME_infer, which calls them.
 * The vectors are GCC/Clang vector extensions, or 8-float structs with the
 * operations unrolled for compilers without them (tcc): one source, the same
 * arithmetic (NAME_f8, NAME_f16 and their macros, shared with training:
 * emit.c).
 * Sigmoid and tanh use branch-free polynomials (within 3 ulp) so that their
 * loops vectorize; softmax uses expf.
 */
#include <assert.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "emit_glue.h"
#include "emit_train.h"
#include "ops/op.h"

#define OP_EM (g->em)

/* ---- small helpers ---- */

/* NAME_conv1, NAME_maxpool2, NAME_relu1: the prefix of a layer's functions,
   the training emitter's names: its name=, else the op's word (or the
   activation's) numbered among layers of that kind that train alone. */
static const char *layer_fn(const Gen *g, const Layer *l) {
  if (l->name[0])
    return em_str(EM, "%s_%s", g->n, l->name);
  return em_str(EM, "%s_%s%d", g->n, l->op == OP_ACT ? act_words[l->act] : op_words[l->op],
                g->ordinal[l - g->net->layers]);
}

/* Gen.ordinal, counted in one pass (a count per layer from the start would
   be quadratic in the layer count). */
static int *layer_ordinals(const Net *net) {
  int *ordinal = calloc((size_t)net->nlayers + 1, sizeof *ordinal);
  int count[OP_COUNT + ACT_COUNT] = {0};
  if (!ordinal) {
    fputs("cnngen: out of memory\n", stderr);
    abort();
  }
  for (int i = 0; i < net->nlayers; i++) {
    const Layer *l = &net->layers[i];
    if (!(l->op == OP_ACT && l->fused_away))
      ordinal[i] = ++count[l->op == OP_ACT ? OP_COUNT + l->act : l->op];
  }
  return ordinal;
}

void layer_comment(Gen *g, const Layer *l, const char *what) {
  const char *text = QUOTE(l);
  if (l->fused_act)
    text = em_str(EM, "%s\n+ %s (fused)", text, QUOTE(l->fused_act));
  if (l->fused_bn && !g->train)
    text = em_str(EM, "%s\n+ %s (folded into the weights and bias: NAME_fold)", text,
                  QUOTE(l->fused_bn));
  if (l->fused_bn && l->fused_bn->fused_act && !g->train)
    text = em_str(EM, "%s\n+ %s (fused)", text, QUOTE(l->fused_bn->fused_act));
  if (l->fused_pool && !g->train)
    text = em_str(EM, "%s\n+ %s (fused)", text, QUOTE(l->fused_pool));
  if (g->train)
    text = em_str(EM, "%s\nas training runs it: %s%s", text, act_words[g->act],
                  l->fused_pool ? ", without the pool" : "");
  if (what)
    text = em_str(EM, "%s\n%s", text, what);
  em_comment(EM, "%s", text);
}

const char *forward_param_ref(Gen *g, const Layer *l, int bias) {
  if (l->fused_bn && !g->train)
    return emit_folded_ref(EM, l, bias, "m");
  return emit_param_ref(EM, g->net, l, bias, "m");
}

bool forward_has_bias(const Gen *g, const Layer *l) {
  return l->bias_count > 0 || (l->fused_bn && !g->train);
}

/* ---- scalar activations ---- */

static bool uses_act(const Net *net, Act act) {
  for (int i = 0; i < net->nlayers; i++) {
    const Layer *l = &net->layers[i];
    if (!l->fused_away && l->act == act && op_modules[l->op]->applies_act)
      return true;
  }
  return false;
}

/* NAME_exp, NAME_tanh (runtime/kernels/act_poly.h, the JIT's kernels'
   own), NAME_sigmoid: within 3 ulp of the exact values. */
static void emit_act_functions(Gen *g) {
  const char *n = g->n;
  const bool tanh = uses_act(g->net, ACT_TANH), sigmoid = uses_act(g->net, ACT_SIGMOID);
  if (!tanh && !sigmoid)
    return;
  /* act_poly.h's text with ACT_POLY(name) spelled NAME_name */
  static const char poly[] =
#include "act_poly.inc"
      ;
  /* exp, then (where used) tanh, less the newline or blank line at the end */
  const char *p = poly, *stop = tanh ? poly + strlen(poly) - 1 : strstr(poly, "/* tanh:") - 2;
  const char *text = "";
  for (const char *at; (at = strstr(p, "ACT_POLY(")) && at < stop;) {
    const char *name = at + strlen("ACT_POLY("), *end = strchr(name, ')');
    text = em_str(EM, "%s%.*s%s_%.*s", text, (int)(at - p), p, n, (int)(end - name), name);
    p = end + 1;
  }
  em_raw(EM, "%s%.*s", text, (int)(stop - p), p);
  em_blank(EM);
  if (sigmoid) {
    em_open(EM, "static inline float %s_sigmoid(float x)", n);
    em_line(EM, "return 1.0f / (1.0f + %s_exp(-x));", n);
    em_close(EM);
    em_blank(EM);
  }
}

/* Softmax only ever applies to a vector: shape.c refuses it elsewhere. */
void emit_act_pass(Gen *g, Act act, const char *p, long count) {
  switch (act) {
  case ACT_LINEAR:
    return;
  case ACT_SIGMOID:
  case ACT_TANH:
    em_line(EM, "for (int i = 0; i < %ld; i++)", count);
    em_line(EM, "  %s[i] = %s_%s(%s[i]);", p, g->n, act_words[act], p);
    return;
  case ACT_SOFTMAX:
    em_comment(EM, "softmax, max-subtracted");
    em_open(EM, "%s", "");
    em_line(EM, "float mx = %s[0], sum = 0.0f;", p);
    em_line(EM, "for (int i = 1; i < %ld; i++)", count);
    em_line(EM, "  mx = %s[i] > mx ? %s[i] : mx;", p, p);
    em_open(EM, "for (int i = 0; i < %ld; i++)", count);
    em_line(EM, "%s[i] = expf(%s[i] - mx);", p, p);
    em_line(EM, "sum += %s[i];", p);
    em_close(EM);
    em_line(EM, "for (int i = 0; i < %ld; i++)", count);
    em_line(EM, "  %s[i] /= sum;", p);
    em_close(EM);
    return;
  case ACT_RELU:
  case ACT_COUNT:
    break;
  }
  assert(0);
}

/* ---- conv2d ---- */

/* ---- dense ---- */

/* ---- pools, activations ---- */

void emit_train_forward(Emitter *em, const Net *net, const Layer *l, const char *fn, Act act) {
  Gen gen = {em, net, NULL, net->name, NULL, true, act};
  op_modules[l->op]->forward(&gen, l, fn);
}

/* ---- NAME_infer ---- */

const char *emit_where(Emitter *em, long off) {
  return off == INFER_AT_X   ? "xi"
         : off == INFER_AT_Y ? "yi"
         : off == 0          ? "a"
                             : em_str(em, "a + %ld", off);
}
#define WHERE(off) emit_where(EM, (off))

static bool uses_work(const Net *net) {
  for (int i = 0; i < net->nlayers; i++) {
    const Layer *l = &net->layers[i];
    if (l->infer_out_offset >= 0 || l->infer_pad_offset >= 0)
      return true;
  }
  return false;
}

static void emit_layer_functions(Gen *g) {
  for (int i = 0; i < g->net->nlayers; i++) {
    const Layer *l = &g->net->layers[i];
    if (!l->fused_away)
      op_modules[l->op]->forward(g, l, layer_fn(g, l));
  }
}

static void emit_infer(Gen *g) {
  const char *n = g->n;
  const Net *net = g->net;
  bool params = net->param_count > 0;
  em_open(EM, "void %s_infer(const %s_model *m, %s_work *w, const float *x, int n, float *y)", n, n,
          n);
  if (uses_work(net))
    em_line(EM, "float *a = w->act;");
  else
    em_line(EM, "(void)w;");
  if (!params)
    em_line(EM, "(void)m;");
  em_open(EM, "for (int i = 0; i < n; i++)");
  em_line(EM, "const float *xi = x + (size_t)i * %s_INPUT_SIZE; /* %s */", n, DIMS(net->input));
  em_line(EM, "float *yi = y + (size_t)i * %s_OUTPUT_SIZE; /* %s */", n, DIMS(net->output));
  long prev = INFER_AT_X;
  for (int i = 0; i < net->nlayers; i++) {
    const Layer *l = &net->layers[i];
    const char *in = WHERE(prev), *out = WHERE(l->infer_out_offset);
    Shape os = l->fused_pool ? l->fused_pool->out : l->out;
    prev = l->infer_out_offset;
    const OpModule *op = op_modules[l->op];
    if (op->infer_call)
      op->infer_call(g, l, layer_fn(g, l), in, out);
    else if (!l->fused_away)
      em_line(EM, "%s_forward(%s%s, %s); /* %s */", layer_fn(g, l), op->weights ? "m, " : "", in,
              out, DIMS(os));
  }
  if (prev == INFER_AT_X)
    em_line(EM, "memcpy(yi, xi, %s_OUTPUT_SIZE * sizeof(float));", n);
  em_close(EM);
  em_close(EM);
  em_blank(EM);
}

/* ---- the header ---- */

static void emit_work_struct(Gen *g) {
  const Net *net = g->net;
  const char *n = g->n;
  /* The first layers' offsets, in a comment of about 4 KB at most. */
  const char *plan = em_str(EM,
                            "Scratch for one thread: %s_infer keeps the tensors of one image in "
                            "act,\nat these offsets (floats; tensors whose lives do not overlap "
                            "share space):",
                            n);
  for (int i = 0; i < net->nlayers && strlen(plan) < 4096 - 200; i++) {
    const Layer *l = &net->layers[i];
    if (l->fused_away || (op_modules[l->op]->view && op_modules[l->op]->view(net, l)))
      continue;
    Shape os = l->fused_pool ? l->fused_pool->out : l->out;
    if (l->infer_pad_offset >= 0)
      plan =
          em_str(EM, "%s\n  %6ld  line %d, padded input", plan, l->infer_pad_offset, l->loc.line);
    if (l->infer_out_offset >= 0)
      plan = em_str(EM, "%s\n  %6ld  line %d, output %s", plan, l->infer_out_offset, l->loc.line,
                    DIMS(os));
    else if (l->infer_out_offset == INFER_AT_Y)
      plan = em_str(EM, "%s\n       y  line %d, output %s", plan, l->loc.line, DIMS(os));
  }
  em_comment(EM, "%s", plan);
  em_open(EM, "typedef struct %s_work", n);
  em_line(EM, "float act[%ld]; /* one image's tensors */",
          net->infer_buffer_floats > 0 ? net->infer_buffer_floats : 1);
  if (g->opt->training)
    emit_train_work_members(EM, net);
  em_close_with(EM, " %s_work;", n);
  em_blank(EM);
}

/* NAME_CLASS_NAMES: the classes statement's names as an initializer, one
   C string per line, escaped (a backslash, control bytes, the '?' of a
   trigraph). */
static void emit_class_names(Emitter *em, const Net *net, const char *n) {
  em_raw(em, "/* The outputs' names (the classes statement), an initializer:");
  em_raw(em, "   static const char *const names[%s_OUTPUT_SIZE] = %s_CLASS_NAMES; */", n, n);
  em_raw(em, "#define %s_CLASS_NAMES \\", n);
  for (int i = 0; i < net->nclasses; i++) {
    char buf[4 * 256 + 8];
    size_t k = 0;
    for (const unsigned char *p = (const unsigned char *)net->classes[i]; *p && k + 8 < sizeof buf;
         p++) {
      if (*p == '\\')
        k += (size_t)snprintf(buf + k, sizeof buf - k, "\\\\");
      else if (*p < 0x20 || *p == 0x7f)
        k += (size_t)snprintf(buf + k, sizeof buf - k, "\\%03o", *p);
      else if (*p == '?' && p[1] == '?')
        k += (size_t)snprintf(buf + k, sizeof buf - k, "?\\");
      else
        buf[k++] = (char)*p;
    }
    buf[k] = 0;
    em_raw(em, "  %s\"%s\"%s", i ? "" : "{", buf, i + 1 < net->nclasses ? ", \\" : "}");
  }
}

static void emit_header_text(Gen *g, FILE *out) {
  const Net *net = g->net;
  const char *n = g->n;
  const char *act = act_words[net_output_act(net)];
  const char *guard = em_str(EM, "CNNGEN_%s_H", n);
  fprintf(out,
          "/*\n * %s.h: generated by cnngen; do not edit. The .cnn language, the weights\n"
          " * files and this API are described in docs/language.md of cnngen's sources.\n *\n",
          n);
  summary_print(net, out, " * ");
  fprintf(out, " */\n");
  em_raw(EM, "#ifndef %s", guard);
  em_raw(EM, "#define %s", guard);
  em_blank(EM);
  em_raw(EM, "#include <stddef.h>");
  em_raw(EM, "#include <stdint.h>");
  em_blank(EM);
  em_raw(EM, "#ifdef __cplusplus");
  em_raw(EM, "extern \"C\" {");
  em_raw(EM, "#endif");
  em_blank(EM);
  em_raw(EM, "#define %s_INPUT_H %d /* input height */", n, net->input.h);
  em_raw(EM, "#define %s_INPUT_W %d /* input width */", n, net->input.w);
  em_raw(EM, "#define %s_INPUT_C %d /* input channels */", n, net->input.c);
  em_raw(EM, "#define %s_INPUT_SIZE %ld /* floats per image, [H][W][C], values in [0, 1] */", n,
         shape_size(net->input));
  em_raw(EM, "#define %s_OUTPUT_SIZE %ld /* outputs per image, after the final %s */", n,
         shape_size(net->output), act);
  em_raw(EM, "#define %s_PARAM_COUNT %ld /* floats in the flat parameter array (%s_load) */", n,
         net->param_count, n);
  if (net->nclasses)
    emit_class_names(EM, net, n);
  em_blank(EM);
  if (g->opt->training)
    emit_train_types(EM, net);
  em_comment(EM,
             "The parameters, one array per tensor in the layout the generated kernels\n"
             "read (conv [KH][KW][C][F], dense [IN][OUT]: the output channel innermost),\n"
             "each at a multiple of 64 bytes from the start of the struct: allocate it\n"
             "64-byte aligned for the fastest loads. %s_load and %s_store convert from\n"
             "and to the flat array of PyTorch-layout tensors.%s",
             n, n, g->opt->training ? " Training state follows\nthe parameters." : "");
  em_open(EM, "typedef struct %s_model", n);
  emit_model_members(EM, net);
  if (net->param_count == 0 && !g->opt->training)
    em_line(EM, "char unused; /* no parameters: C has no empty structs */");
  if (g->opt->training)
    emit_train_model_members(EM, net);
  em_close_with(EM, " %s_model;", n);
  em_blank(EM);
  emit_work_struct(g);
  em_raw(EM, "#define %s_MODEL_BYTES sizeof(%s_model) /* bytes of a model */", n, n);
  em_raw(EM, "#define %s_WORK_BYTES sizeof(%s_work)   /* bytes of one thread's work area */", n, n);
  em_blank(EM);
  em_comment(EM, "Fills m with Glorot-uniform weights and zero biases (and zero training state):\n"
                 "each weight is uniform in [-b, b), b = sqrt(6 / (fan_in + fan_out)), with\n"
                 "fan_in = C*KH*KW and fan_out = F*KH*KW for a conv, IN and OUT for a dense\n"
                 "layer. The numbers come from splitmix64 seeded with `seed`, drawn in the order\n"
                 "of the flat parameter array: the same seed gives the same model everywhere.");
  em_line(EM, "void %s_init(%s_model *m, uint64_t seed);", n, n);
  em_blank(EM);
  em_comment(EM,
             "The parameters as one flat array of %s_PARAM_COUNT floats: for each layer with\n"
             "weights, in order, LAYER.weight then LAYER.bias, in PyTorch's layout (conv\n"
             "[F][C][KH][KW], dense [OUT][IN] with IN after a flatten indexing a C x H x W\n"
             "tensor as c*H*W + y*W + x), the order of the tensors in a weights file\n"
             "(docs/language.md, \"Weights files\").\n"
             "%s_load leaves training state as it is. %s_store(m, p) after %s_load(m, p)\n"
             "gives p back bit for bit.",
             n, n, n, n);
  em_line(EM, "void %s_load(%s_model *m, const float *params);", n, n);
  em_line(EM, "void %s_store(const %s_model *m, float *params);", n, n);
  em_blank(EM);
  em_comment(EM,
             "Runs n images x [n][%s_INPUT_SIZE] (each [H][W][C], channels innermost)\n"
             "through the network, writing y [n][%s_OUTPUT_SIZE]. w is scratch: several\n"
             "threads may run %s_infer on one model at once, each with its own %s_work.\n"
             "Uses no memory but m, w, x and y; x and y must not overlap.",
             n, n, n, n);
  em_line(EM, "void %s_infer(const %s_model *m, %s_work *w, const float *x, int n, float *y);", n,
          n, n);
  em_blank(EM);
  if (g->opt->training)
    emit_train_declarations(EM, net);
  if (g->opt->weights) {
    em_comment(EM,
               "The weights baked in when the C was generated (cnngen --weights): ready\n"
               "for %s_infer(&%s_trained, ...).",
               n, n);
    em_line(EM, "extern const %s_model %s_trained;", n, n);
    em_blank(EM);
  }
  em_raw(EM, "#ifdef __cplusplus");
  em_raw(EM, "}");
  em_raw(EM, "#endif");
  em_blank(EM);
  em_raw(EM, "#endif /* %s */", guard);
}

void emit_header(const Net *net, const EmitOptions *opt, FILE *out) {
  Emitter em;
  em_init(&em, out, 0);
  Gen g = {&em, net, opt, net->name, NULL, false, ACT_LINEAR};
  emit_header_text(&g, out);
  em_free(&em);
}

/* ---- the source ---- */

void emit_source(const Net *net, const EmitOptions *opt, FILE *out) {
  Emitter em;
  em_init(&em, out, 0);
  em.kernels = opt->kernels;
  Gen gen = {&em, net, opt, net->name, layer_ordinals(net), false, ACT_LINEAR}, *g = &gen;
  const char *n = net->name;
  if (opt->header_name) {
    fprintf(out, "/*\n * %s.c: generated by cnngen; do not edit. The API is documented in %s.\n", n,
            opt->header_name);
  } else {
    emit_header_text(g, out);
    em_blank(EM);
    fprintf(out, "/*\n * %s: the code, generated by cnngen; the API is documented above.\n", n);
  }
  fprintf(out, " *\n"
               " * One static function per layer, NAME_LAYER_forward(m, x, y): y = the layer\n"
               " * applied to x, for one image; NAME_infer runs them in order on tensors in the\n"
               " * work struct. Tensors are [H][W][C] (channels innermost). C99, no allocation,\n"
               " * no I/O, no global mutable state.\n"
               " */\n");
  if (opt->header_name)
    em_raw(EM, "#include \"%s\"", opt->header_name);
  em_blank(EM);
  em_raw(EM, "#include <math.h>");
  em_raw(EM, "#include <string.h>");
  em_blank(EM);
  bool every_width = false; /* a conv or dense of 16k channels: tiles on NAME_v */
  for (int i = 0; i < g->net->nlayers && !opt->kernels; i++) {
    const Layer *l = &g->net->layers[i];
    const bool conv = l->op == OP_CONV2D, dense = l->op == OP_DENSE;
    if ((conv || dense) && l->out.c >= 16 && l->out.c % 16 == 0)
      every_width = true;
    if (conv && l->in.c >= 16 && l->in.c % 16 == 0)
      every_width = true;
  }
  em_vector_macros(EM, n, opt->training, every_width);
  if (opt->kernels)
    glue_declarations(EM, opt->kernel_pointers);
  emit_act_functions(g);
  emit_layer_functions(g);
  emit_infer(g);
  emit_model_source(EM, net, opt->weights);
  if (opt->training)
    emit_train_source(EM, net);
  free(gen.ordinal);
  em_free(&em);
}
