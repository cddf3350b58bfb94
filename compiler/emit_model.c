/*
 * emit_model.c: the parameters in the generated C: the members of
 * NAME_model, the table of tensors, and the one routine that converts a
 * tensor between the model's layout and PyTorch's, which NAME_load,
 * NAME_store, NAME_init and the training code's gradient and optimizer-state
 * copies all loop over the table with.
 *
 * Every parameter tensor, weight or bias, is seen as three dimensions
 * [o][c][k] in PyTorch's layout, held as [k][c][o] in the model (o, the
 * output channel, innermost, for the kernels' vectors):
 *
 *   conv weight   PyTorch [F][C][KH][KW]   o = F, c = C, k = KH * KW
 *   dense weight  PyTorch [OUT][IN]        o = OUT; IN after a flatten of
 *                 an H x W x C tensor is c = C, k = H * W (the model's
 *                 order is then H, W, C, NHWC's: no reordering at run time)
 *   a bias        [o]                      c = k = 1: the same in both
 *
 * The members start on 64-byte boundaries of the struct (padding members
 * where needed). Training keeps gradients and optimizer state in flat
 * arrays at the tensors' offsets, in the model's layout.
 */
#include "emit_model.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { ALIGN_FLOATS = 16 }; /* parameter arrays start on 64 bytes */

#define EM em

const char *emit_quote(Emitter *em, const Layer *l) {
  return em_str(em, "line %d: %s", l->loc.line, l->text ? l->text : op_words[l->op]);
}

const char *emit_dims(Emitter *em, Shape s) {
  return s.vec ? em_str(em, "[%d]", s.c) : em_str(em, "[%d][%d][%d]", s.h, s.w, s.c);
}

/* Parameter member names: "conv1_w", "conv1_b". */
static const char *member(Emitter *em, const Layer *l, int bias) {
  return em_str(em, "%s_%c", l->name, bias ? 'b' : 'w');
}

const char *emit_param_ref(Emitter *em, const Net *net, const Layer *l, int bias, const char *m) {
  (void)net;
  return em_str(em, "%s->%s", m, member(em, l, bias));
}

/* Layer l's weight (bias = 0) or bias tensor: its [o][c][k], the file
   layout for comments, and Glorot's bound for a weight (0 for a bias). */
typedef struct Tensor {
  const Layer *l;
  int bias;
  int o, c, k;
  const char *file; /* "[32][1][3][3]" */
  long offset, count;
  double bound;
} Tensor;

static Tensor layer_tensor(Emitter *em, const Net *net, const Layer *l, int bias) {
  Tensor t = {l, bias, l->out.c, 1, 1, em_str(em, "[%d]", l->out.c), l->bias_offset, l->bias_count,
              0};
  if (bias)
    return t;
  t.offset = l->weight_offset;
  t.count = l->weight_count;
  OpTensor w;
  op_modules[l->op]->tensor(net, l, &w);
  t.c = w.c;
  t.k = w.k;
  t.file = "";
  for (int d = 0; d < w.rank; d++)
    t.file = em_str(em, "%s[%d]", t.file, w.shape[d]);
  const long fan_in = w.fan_in, fan_out = w.fan_out;
  t.bound = sqrt(6.0 / (double)(fan_in + fan_out));
  return t;
}

/* Every parameter tensor in file order, in em's strings; returns how many. */
static int all_tensors(Emitter *em, const Net *net, Tensor **out) {
  const int count = net_tensors(net, NULL);
  Tensor *t = arena_alloc(&em->strings, (size_t)(count + 1) * sizeof *t);
  for (int i = 0, j = 0; i < net->nlayers; i++)
    for (int bias = 0; bias < 2 && op_modules[net->layers[i].op]->weights; bias++)
      if (!bias || net->layers[i].bias_count) /* bias=false: no bias tensor */
        t[j++] = layer_tensor(em, net, &net->layers[i], bias);
  *out = t;
  return count;
}

void emit_model_members(Emitter *em, const Net *net) {
  long used = 0;
  int pads = 0;
  for (int i = 0; i < net->nlayers; i++) {
    const Layer *l = &net->layers[i];
    if (!op_modules[l->op]->weights)
      continue;
    em_comment(EM, "%s\n%s.weight %s", emit_quote(em, l), l->name,
               op_modules[l->op]->weight_comment(em, net, l));
    for (int bias = 0; bias < (l->bias_count ? 2 : 1); bias++) {
      if (used % ALIGN_FLOATS) {
        em_line(EM, "float pad%d[%ld]; /* aligns the next array to 64 bytes */", pads++,
                ALIGN_FLOATS - used % ALIGN_FLOATS);
        used += ALIGN_FLOATS - used % ALIGN_FLOATS;
      }
      long count = bias ? l->bias_count : l->weight_count;
      em_line(EM, "float %s[%ld];", member(EM, l, bias), count);
      used += count;
    }
  }
}

/* The table NAME_tensors and NAME_permute. */
static void emit_tensor_table(Emitter *em, const Net *net) {
  const char *n = net->name;
  em_comment(EM,
             "The parameter tensors in the order of the flat array (%s_load): where each\n"
             "one's array is in %s_model (at), its place in the flat array, in %s_grads\n"
             "and in the optimizer state (offset), and its dimensions: PyTorch's [o][c][k]\n"
             "is [k][c][o] in the model (a bias is [o][1][1]). bound: %s_init's bound.",
             n, n, n, n);
  em_open(EM, "typedef struct %s_tensor", n);
  em_line(EM, "size_t at;");
  em_line(EM, "long offset;");
  em_line(EM, "int o, c, k;");
  em_line(EM, "float bound;");
  em_close_with(EM, " %s_tensor;", n);
  em_raw(EM, "#define %s_TENSORS %d", n, net_tensors(net, NULL));
  em_blank(EM);
  em_open(EM, "static const %s_tensor %s_tensors[%s_TENSORS] =", n, n, n);
  Tensor *ts;
  for (int i = 0, count = all_tensors(em, net, &ts); i < count; i++) {
    const Tensor t = ts[i];
    em_line(EM, "{offsetof(%s_model, %s), %ld, %d, %d, %d, %s}, /* %s.%s */", n,
            member(EM, t.l, t.bias), t.offset, t.o, t.c, t.k, em_float(em, (float)t.bound),
            t.l->name, t.bias ? "bias" : "weight");
  }
  em_close_with(EM, ";");
  em_blank(EM);
  em_comment(EM, "Tensor t from the model's layout to PyTorch's (to_flat) or back.");
  em_open_fn(EM,
             "static void %s_permute(const %s_tensor *t, float *restrict dst, "
             "const float *restrict src, int to_flat)",
             n, n);
  em_line(EM, "for (int o = 0; o < t->o; o++)");
  em_indent(EM);
  em_line(EM, "for (int c = 0; c < t->c; c++)");
  em_indent(EM);
  em_open(EM, "for (int k = 0; k < t->k; k++)");
  em_line(EM, "const long model = ((long)k * t->c + c) * t->o + o;");
  em_line(EM, "const long flat = ((long)o * t->c + c) * t->k + k;");
  em_line(EM, "dst[to_flat ? flat : model] = src[to_flat ? model : flat];");
  em_close(EM);
  em_dedent(EM);
  em_dedent(EM);
  em_close(EM);
  em_blank(EM);
}

static void emit_init(Emitter *em, const Net *net) {
  const char *n = net->name;
  if (net->param_count == 0) {
    em_open(EM, "void %s_init(%s_model *m, uint64_t seed)", n, n);
    em_line(EM, "(void)seed;");
    em_line(EM, "memset(m, 0, sizeof *m);");
    em_close(EM);
    em_blank(EM);
    return;
  }
  em_comment(EM, "splitmix64 (Steele, Lea, Flood 2014): the generator of %s_init.", n);
  em_open(EM, "static uint64_t %s_splitmix64(uint64_t *state)", n);
  em_line(EM, "uint64_t z = (*state += UINT64_C(0x9E3779B97F4A7C15));");
  em_line(EM, "z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);");
  em_line(EM, "z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);");
  em_line(EM, "return z ^ (z >> 31);");
  em_close(EM);
  em_blank(EM);
  em_comment(EM, "Uniform in [-bound, bound): the top 24 bits t of a draw give\n"
                 "t / 2^23 - 1, exact in float, times bound (one rounding).");
  em_open(EM, "static float %s_uniform(uint64_t *state, float bound)", n);
  em_line(EM, "const float t = (float)(int32_t)(%s_splitmix64(state) >> 40);", n);
  em_line(EM, "return (t * (1.0f / 8388608.0f) - 1.0f) * bound;");
  em_close(EM);
  em_blank(EM);
  em_comment(EM, "Each weight drawn in the order of the flat array; biases zero.");
  em_open(EM, "void %s_init(%s_model *m, uint64_t seed)", n, n);
  em_line(EM, "uint64_t state = seed;");
  em_line(EM, "memset(m, 0, sizeof *m);");
  em_open(EM, "for (int j = 0; j < %s_TENSORS; j++)", n);
  em_line(EM, "const %s_tensor *t = &%s_tensors[j];", n, n);
  em_line(EM, "float *p = (float *)((char *)m + t->at);");
  em_line(EM, "if (t->bound > 0.0f) /* a weight */");
  em_line(EM, "  for (int o = 0; o < t->o; o++)");
  em_line(EM, "    for (int c = 0; c < t->c; c++)");
  em_line(EM, "      for (int k = 0; k < t->k; k++)");
  em_line(EM, "        p[((long)k * t->c + c) * t->o + o] = %s_uniform(&state, t->bound);", n);
  em_close(EM);
  em_close(EM);
  em_blank(EM);
}

void emit_tensor_loop(Emitter *em, const Net *net, const char *body) {
  em_open(EM, "for (int j = 0; j < %s_TENSORS; j++)", net->name);
  em_line(EM, "const %s_tensor *t = &%s_tensors[j];", net->name, net->name);
  for (const char *p = body; *p;) {
    int len = (int)strcspn(p, "\n");
    em_call(EM, "%.*s", len, p);
    p += len + (p[len] == '\n');
  }
  em_close(EM);
}

static void emit_load_store(Emitter *em, const Net *net, bool store) {
  const char *n = net->name;
  if (store)
    em_open(EM, "void %s_store(const %s_model *m, float *params)", n, n);
  else
    em_open(EM, "void %s_load(%s_model *m, const float *params)", n, n);
  if (net->param_count == 0)
    em_line(EM, "(void)m, (void)params;");
  else if (store)
    emit_tensor_loop(
        em, net,
        em_str(em,
               "%s_permute(t, params + t->offset, (const float *)((const char *)m + t->at), 1);",
               n));
  else
    emit_tensor_loop(
        em, net,
        em_str(em, "%s_permute(t, (float *)((char *)m + t->at), params + t->offset, 0);", n));
  em_close(EM);
  em_blank(EM);
}

/* const NAME_model NAME_trained = { .conv1_w = { ... }, ... }; */
static void emit_trained(Emitter *em, const Net *net, const float *p) {
  const char *n = net->name;
  em_comment(EM, "The weights baked in by --weights, in the internal layout.");
  em_open(EM, "const %s_model %s_trained =", n, n);
  Tensor *ts;
  for (int i = 0, count = all_tensors(em, net, &ts); i < count; i++) {
    const Tensor t = ts[i];
    float *v = malloc((size_t)t.count * sizeof *v + 1);
    assert(v);
    for (long f = 0; f < t.count; f++) { /* flat [o][c][k] -> model [k][c][o] */
      const long o = f / ((long)t.c * t.k), c = f / t.k % t.c, k = f % t.k;
      v[(k * t.c + c) * t.o + o] = p[t.offset + f];
    }
    em_open(EM, ".%s =", member(EM, t.l, t.bias));
    /* Lines of literals, built in a scratch emitter's strings freed after
       each line (the weights can be millions of literals). */
    Emitter line;
    em_init(&line, NULL, 0);
    const char *text = "";
    for (long k = 0; k < t.count; k++) {
      const char *num = em_float(&line, v[k]);
      if (*text && strlen(text) + strlen(num) + 2 > 90) {
        em_line(EM, "%s", text);
        em_free(&line);
        num = em_float(&line, v[k]);
        text = "";
      }
      text = em_str(&line, "%s%s%s,", text, *text ? " " : "", num);
    }
    if (*text)
      em_line(EM, "%s", text);
    em_free(&line);
    em_close_with(EM, ",");
    free(v);
  }
  if (net->param_count == 0)
    em_line(EM, "0");
  em_close_with(EM, ";");
  em_blank(EM);
}

void emit_model_source(Emitter *em, const Net *net, const float *weights) {
  if (net->param_count)
    emit_tensor_table(em, net);
  emit_init(em, net);
  emit_load_store(em, net, false);
  emit_load_store(em, net, true);
  if (weights)
    emit_trained(em, net, weights);
}
