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
 *   running_mean, running_var (batchnorm)  like a bias, not trained
 *
 * The table's `bound` says how NAME_init starts a tensor and whether it
 * trains: > 0 a weight drawn from [-bound, bound); 0 zeros (a bias); and
 * for the ops with running statistics (OpModule.stats) -1 ones (a
 * batchnorm's scale), -2 zeros and -3 ones, not trained (the running mean
 * and variance: the optimizer skips bound < -1.5).
 *
 * A conv/dense with a batchnorm folded into it for inference (fused_bn)
 * has two more members, its folded weights and bias (_fw, _fb), which
 * NAME_fold computes from both layers' tensors after NAME_load, NAME_init
 * and NAME_update (and emit_trained at compile time, the same float
 * arithmetic, for baked weights).
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

/* A layer's tensors, in file order, and the folded ones (members only). */
enum { T_WEIGHT, T_BIAS, T_MEAN, T_VAR, T_FOLDED_W, T_FOLDED_B, T_KINDS };
static const char *const kind_suffix[T_KINDS] = {"w", "b", "rm", "rv", "fw", "fb"};
static const char *const kind_name[T_KINDS] = {"weight",      "bias",          "running_mean",
                                               "running_var", "folded weight", "folded bias"};

/* Parameter member names: "conv1_w", "conv1_b", "bn1_rm". */
static const char *member(Emitter *em, const Layer *l, int kind) {
  return em_str(em, "%s_%s", l->name, kind_suffix[kind]);
}

/* Whether l has a tensor or member of that kind, and its float count. */
static long kind_count(const Layer *l, int kind) {
  if (!op_modules[l->op]->weights)
    return 0;
  switch (kind) {
  case T_WEIGHT:
    return l->weight_count;
  case T_BIAS:
    return l->bias_count;
  case T_MEAN:
  case T_VAR:
    return op_modules[l->op]->stats ? l->bias_count : 0;
  case T_FOLDED_W:
    return l->fused_bn ? l->weight_count : 0;
  default:
    return l->fused_bn ? l->out.c : 0;
  }
}

const char *emit_param_ref(Emitter *em, const Net *net, const Layer *l, int bias, const char *m) {
  (void)net;
  return em_str(em, "%s->%s", m, member(em, l, bias ? T_BIAS : T_WEIGHT));
}

const char *emit_stats_ref(Emitter *em, const Layer *l, int var, const char *m) {
  return em_str(em, "%s->%s", m, member(em, l, var ? T_VAR : T_MEAN));
}

const char *emit_folded_ref(Emitter *em, const Layer *l, int bias, const char *m) {
  return em_str(em, "%s->%s", m, member(em, l, bias ? T_FOLDED_B : T_FOLDED_W));
}

/* Layer l's weight (bias = 0) or bias tensor: its [o][c][k], the file
   layout for comments, and Glorot's bound for a weight (0 for a bias). */
typedef struct Tensor {
  const Layer *l;
  int kind; /* T_WEIGHT ... T_VAR */
  int o, c, k;
  const char *file; /* "[32][1][3][3]" */
  long offset, count;
  double bound;
} Tensor;

static Tensor layer_tensor(Emitter *em, const Net *net, const Layer *l, int kind) {
  Tensor t = {l, kind, l->out.c, 1, 1, em_str(em, "[%d]", l->out.c), l->bias_offset, l->bias_count,
              0};
  if (kind == T_MEAN || kind == T_VAR) {
    t.offset = l->stats_offset + (kind == T_VAR ? l->bias_count : 0);
    t.bound = kind == T_VAR ? -3 : -2;
  }
  if (kind != T_WEIGHT)
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
  t.bound = op_modules[l->op]->weight_ones ? -1 : sqrt(6.0 / (double)(fan_in + fan_out));
  return t;
}

/* Every parameter tensor in file order, in em's strings; returns how many. */
static int all_tensors(Emitter *em, const Net *net, Tensor **out) {
  const int count = net_tensors(net, NULL);
  Tensor *t = arena_alloc(&em->strings, (size_t)(count + 1) * sizeof *t);
  for (int i = 0, j = 0; i < net->nlayers; i++)
    for (int kind = T_WEIGHT; kind <= T_VAR; kind++)
      if (kind_count(&net->layers[i], kind)) /* bias=false: no bias tensor */
        t[j++] = layer_tensor(em, net, &net->layers[i], kind);
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
    for (int kind = 0; kind < T_KINDS; kind++) {
      const long count = kind_count(l, kind);
      if (!count)
        continue;
      if (used % ALIGN_FLOATS) {
        em_line(EM, "float pad%d[%ld]; /* aligns the next array to 64 bytes */", pads++,
                ALIGN_FLOATS - used % ALIGN_FLOATS);
        used += ALIGN_FLOATS - used % ALIGN_FLOATS;
      }
      if (kind >= T_FOLDED_W)
        em_line(EM, "float %s[%ld]; /* %s, with %s folded in (%s_fold) */", member(EM, l, kind),
                count, kind_name[kind], l->fused_bn->name, net->name);
      else if (kind >= T_MEAN)
        em_line(EM, "float %s[%ld]; /* %s.%s (not trained) */", member(EM, l, kind), count, l->name,
                kind_name[kind]);
      else
        em_line(EM, "float %s[%ld];", member(EM, l, kind), count);
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
            member(EM, t.l, t.kind), t.offset, t.o, t.c, t.k, em_float(em, (float)t.bound),
            t.l->name, kind_name[t.kind]);
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
  if (net_has_stats(net)) {
    em_line(EM, "else if (t->bound == -1.0f || t->bound == -3.0f) /* a scale, a variance */");
    em_line(EM, "  for (long i = 0; i < (long)t->o * t->c * t->k; i++)");
    em_line(EM, "    p[i] = 1.0f;");
  }
  em_close(EM);
  if (net_has_folds(net))
    em_line(EM, "%s_fold(m);", n);
  em_close(EM);
  em_blank(EM);
}

/* NAME_fold: the folded weights and bias of each conv/dense with a
   batchnorm after it, w' = w * s and b' = b * s + sh per output channel. */
static void emit_fold(Emitter *em, const Net *net) {
  const char *n = net->name;
  em_comment(EM, "The weights and bias of each conv/dense with a batchnorm folded in, for\n"
                 "inference: w' = w * s, b' = b * s + sh per output channel (the batchnorm\n"
                 "is y = s * x + sh with its running statistics).");
  em_open_fn(EM, "static void %s_fold(%s_model *m)", n, n);
  for (int i = 0; i < net->nlayers; i++) {
    const Layer *l = &net->layers[i];
    if (!l->fused_bn)
      continue;
    const int O = l->out.c;
    em_open(EM, "for (int o = 0; o < %d; o++) /* %s + %s */", O, l->name, l->fused_bn->name);
    op_modules[l->fused_bn->op]->fold(em, l->fused_bn, "m", "o");
    em_line(EM, "m->%s[o] = fmaf(%s, s, sh);", member(em, l, T_FOLDED_B),
            l->bias_count ? em_str(em, "m->%s[o]", member(em, l, T_BIAS)) : "0.0f");
    em_line(EM, "for (long k = o; k < %ld; k += %d)", l->weight_count, O);
    em_line(EM, "  m->%s[k] = m->%s[k] * s;", member(em, l, T_FOLDED_W), member(em, l, T_WEIGHT));
    em_close(EM);
  }
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
  if (!store && net_has_folds(net))
    em_line(EM, "%s_fold(m);", n);
  em_close(EM);
  em_blank(EM);
}

/* Member `name` = the `count` floats of v, in lines of literals. */
static void emit_floats(Emitter *em, const char *name, const float *v, long count) {
  em_open(EM, ".%s =", name);
  /* Lines of literals, built in a scratch emitter's strings freed after
     each line (the weights can be millions of literals). */
  Emitter line;
  em_init(&line, NULL, 0);
  const char *text = "";
  for (long k = 0; k < count; k++) {
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
}

/* NAME_fold's members for baked weights p (flat, PyTorch layout), by the
   same float arithmetic. */
static void emit_trained_folded(Emitter *em, const Net *net, const Layer *l, const float *p) {
  const Layer *bn = l->fused_bn;
  const Tensor t = layer_tensor(em, net, l, T_WEIGHT);
  const int O = l->out.c;
  float *w = malloc((size_t)t.count * sizeof *w + 1), *b = malloc((size_t)O * sizeof *b + 1);
  assert(w && b);
  for (long f = 0; f < t.count; f++) { /* flat [o][c][k] -> model [k][c][o] */
    const long o = f / ((long)t.c * t.k), c = f / t.k % t.c, k = f % t.k;
    w[(k * t.c + c) * t.o + o] = p[t.offset + f];
  }
  for (int o = 0; o < O; o++) {
    float s, sh;
    op_modules[bn->op]->fold_values(bn, p, o, &s, &sh);
    b[o] = fmaf(l->bias_count ? p[l->bias_offset + o] : 0.0f, s, sh);
    for (long k = o; k < t.count; k += O)
      w[k] = w[k] * s;
  }
  emit_floats(em, member(em, l, T_FOLDED_W), w, t.count);
  emit_floats(em, member(em, l, T_FOLDED_B), b, O);
  free(w);
  free(b);
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
    emit_floats(em, member(EM, t.l, t.kind), v, t.count);
    free(v);
  }
  for (int i = 0; i < net->nlayers; i++)
    if (net->layers[i].fused_bn)
      emit_trained_folded(em, net, &net->layers[i], p);
  if (net->param_count == 0)
    em_line(EM, "0");
  em_close_with(EM, ";");
  em_blank(EM);
}

void emit_model_source(Emitter *em, const Net *net, const float *weights) {
  if (net->param_count)
    emit_tensor_table(em, net);
  if (net_has_folds(net))
    emit_fold(em, net);
  emit_init(em, net);
  emit_load_store(em, net, false);
  emit_load_store(em, net, true);
  if (weights)
    emit_trained(em, net, weights);
}
