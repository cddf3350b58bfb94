/*
 * cmd_export.c: `cnngen export NET.cnn --weights W -o NET.onnx` writes the
 * trained network as an ONNX model, opset 13, the way torch.onnx.export
 * writes the same PyTorch model: input [batch, C, H, W] (NCHW, the batch
 * free), output [batch, K]. One node per layer, named after the layer
 * (conv1, dense2, maxpool3), and one more for an activation on a conv2d or
 * dense (conv1_relu); padding=same is auto_pad SAME_UPPER (TensorFlow's
 * rule by ONNX's name), other padding explicit pads. The weights are
 * initializers in PyTorch layout, which is ONNX's (Conv W [F][C][KH][KW],
 * Gemm B [OUT][IN] with transB = 1).
 */
#include <stdlib.h>
#include <string.h>

#include "../compiler/compile.h"
#include "cli.h"
#include "formats/onnx.h"
#include "io.h"

static const char help[] =
    "usage: cnngen export NET.cnn --weights W -o NET.onnx\n"
    "\n"
    "Writes the network with its trained weights as an ONNX model (opset 13) that\n"
    "ONNX Runtime and other ONNX tools run: input [batch, C, H, W] (NCHW, as\n"
    "PyTorch exports it; the batch dimension is free), output [batch, K]. Feed it\n"
    "pixels scaled to [0,1], as cnngen does. Every layer has its node: Conv,\n"
    "MaxPool, AveragePool, GlobalAveragePool (then Flatten), Flatten, Gemm,\n"
    "Dropout (an identity at inference), Relu, Sigmoid, Tanh, Softmax. The file is\n"
    "written completely or not at all. `cnngen import` reads it back.\n"
    "\n"
    "Options:\n"
    "  --weights W          the trained weights (safetensors or raw .f32)\n"
    "  -o FILE, --out FILE  the ONNX file to write\n"
    "\n"
    "Example:\n"
    "  cnngen export examples/fashion.cnn --weights fashion.safetensors -o fashion.onnx\n"
    "\n"
    "Exit status: 0 success; 1 an error in the network, the weights or the options\n"
    "(nothing is written); 2 internal error.\n";

enum { MAX_ATTRS = 4, MAX_INPUTS = 5, MAX_INTS = 16, TENSOR_NAME = NAME_SIZE + 16 };

/* The graph under construction: arrays sized for two nodes and two
   initializers per layer, filled in order. */
typedef struct Graph {
  OnnxNode *nodes;
  OnnxTensor *inits;
  OnnxAttr *attrs;
  const char **io;
  int64_t *ints;
  float *ratios;
  char (*names)[TENSOR_NAME];
  int nnodes, ninits, nattrs, nio, nints, nratios, nnames;
  const char *cur; /* the tensor the next node reads */
} Graph;

static const char *graph_name(Graph *g, const char *fmt, const char *a, const char *b) {
  char *s = g->names[g->nnames++];
  snprintf(s, TENSOR_NAME, fmt, a, b);
  return s;
}

/* A node reading g->cur into a tensor named like the node. */
static OnnxNode *add_node(Graph *g, const char *op, const char *name) {
  OnnxNode *n = &g->nodes[g->nnodes++];
  n->op = op;
  n->name = name;
  n->in = &g->io[g->nio];
  g->nio += MAX_INPUTS;
  n->in[n->nin++] = g->cur;
  n->out = &g->io[g->nio++];
  n->out[n->nout++] = name;
  n->attrs = &g->attrs[g->nattrs];
  g->nattrs += MAX_ATTRS;
  g->cur = name;
  return n;
}

static void add_ints(Graph *g, OnnxNode *n, const char *name, int a, int b, int c, int d,
                     int count) {
  int64_t *v = &g->ints[g->nints];
  int vals[4] = {a, b, c, d};
  for (int i = 0; i < count; i++)
    v[i] = vals[i];
  g->nints += count;
  ((OnnxAttr *)n->attrs)[n->nattrs++] =
      (OnnxAttr){.name = name, .kind = ONNX_ATTR_INTS, .ints = v, .nints = count};
}

static void add_float(OnnxNode *n, const char *name, float v) {
  ((OnnxAttr *)n->attrs)[n->nattrs++] = (OnnxAttr){.name = name, .kind = ONNX_ATTR_FLOAT, .f = v};
}

static void add_int(OnnxNode *n, const char *name, int v) {
  ((OnnxAttr *)n->attrs)[n->nattrs++] = (OnnxAttr){.name = name, .kind = ONNX_ATTR_INT, .i = v};
}

/* An initializer as the node's next input. */
static void add_init(Graph *g, OnnxNode *n, const char *name, const float *data, int rank,
                     const int *dims) {
  OnnxTensor *t = &g->inits[g->ninits++];
  t->name = name;
  t->dtype = ONNX_FLOAT;
  t->rank = rank;
  t->count = 1;
  for (int d = 0; d < rank; d++)
    t->count *= t->dims[d] = dims[d];
  t->f = data;
  n->in[n->nin++] = name;
}

static const char *const act_ops[ACT_COUNT] = {
    [ACT_RELU] = "Relu", [ACT_SIGMOID] = "Sigmoid", [ACT_TANH] = "Tanh", [ACT_SOFTMAX] = "Softmax"};

static void add_act(Graph *g, Act act, const char *name) {
  OnnxNode *n = add_node(g, act_ops[act], name);
  if (act == ACT_SOFTMAX)
    add_int(n, "axis", 1); /* on [batch, K] */
}

/* A residual block (compiler/ops/residual.c): the fork keeps no node, the
   shortcut's path starts again from the fork's input, the add is an Add of
   the two paths' outputs. inputs[i]: the tensor layer i reads. */
static void add_layer(Graph *g, const Net *net, const char **inputs, const Layer *l, int index,
                      const float *params) {
  char word[NAME_SIZE];
  snprintf(word, sizeof word, "%s%d", l->op == OP_ACT ? act_words[l->act] : op_words[l->op],
           index + 1);
  const char *name = graph_name(g, "%s%s", l->name[0] ? l->name : word, "");
  OnnxNode *n;
  switch (l->op) {
  case OP_CONV2D: {
    n = add_node(g, "Conv", name);
    int wd[4] = {l->u.conv.filters, l->in.c / conv_groups(l), l->u.conv.kh, l->u.conv.kw};
    add_init(g, n, graph_name(g, "%s%s", name, ".weight"), params + l->weight_offset, 4, wd);
    if (l->bias_count)
      add_init(g, n, graph_name(g, "%s%s", name, ".bias"), params + l->bias_offset, 1, wd);
    add_ints(g, n, "kernel_shape", l->u.conv.kh, l->u.conv.kw, 0, 0, 2);
    add_ints(g, n, "strides", l->u.conv.sh, l->u.conv.sw, 0, 0, 2);
    if (conv_groups(l) > 1)
      add_int(n, "group", conv_groups(l));
    if (l->u.conv.pad_mode == PAD_SAME) /* ONNX's name for TensorFlow's rule */
      ((OnnxAttr *)n->attrs)[n->nattrs++] =
          (OnnxAttr){.name = "auto_pad", .kind = ONNX_ATTR_STRING, .s = "SAME_UPPER"};
    else
      add_ints(g, n, "pads", l->u.conv.pad_top, l->u.conv.pad_left, l->u.conv.pad_bottom,
               l->u.conv.pad_right, 4);
    break;
  }
  case OP_DENSE: {
    n = add_node(g, "Gemm", name);
    int wd[2] = {l->u.dense.units, (int)shape_size(l->in)};
    add_init(g, n, graph_name(g, "%s%s", name, ".weight"), params + l->weight_offset, 2, wd);
    if (l->bias_count)
      add_init(g, n, graph_name(g, "%s%s", name, ".bias"), params + l->bias_offset, 1, wd);
    add_int(n, "transB", 1);
    break;
  }
  case OP_MAXPOOL:
  case OP_AVGPOOL:
    n = add_node(g, l->op == OP_MAXPOOL ? "MaxPool" : "AveragePool", name);
    add_ints(g, n, "kernel_shape", l->u.pool.kh, l->u.pool.kw, 0, 0, 2);
    add_ints(g, n, "strides", l->u.pool.sh, l->u.pool.sw, 0, 0, 2);
    break;
  case OP_GLOBALAVGPOOL: /* [batch, C, 1, 1], then the vector cnngen has */
    add_node(g, "GlobalAveragePool", name);
    add_node(g, "Flatten", graph_name(g, "%s%s", name, "_flatten"));
    break;
  case OP_FLATTEN:
    add_node(g, "Flatten", name);
    break;
  case OP_BATCHNORM: { /* its running statistics; ONNX's momentum is 1 - PyTorch's */
    n = add_node(g, "BatchNormalization", name);
    int cd[1] = {l->out.c};
    add_init(g, n, graph_name(g, "%s%s", name, ".weight"), params + l->weight_offset, 1, cd);
    add_init(g, n, graph_name(g, "%s%s", name, ".bias"), params + l->bias_offset, 1, cd);
    add_init(g, n, graph_name(g, "%s%s", name, ".running_mean"), params + l->stats_offset, 1, cd);
    add_init(g, n, graph_name(g, "%s%s", name, ".running_var"),
             params + l->stats_offset + l->bias_count, 1, cd);
    add_float(n, "epsilon", (float)l->u.bn.eps);
    add_float(n, "momentum", (float)(1 - l->u.bn.momentum));
    break;
  }
  case OP_DROPOUT: {
    n = add_node(g, "Dropout", name);
    float *ratio = &g->ratios[g->nratios++];
    *ratio = (float)l->u.dropout.rate;
    add_init(g, n, graph_name(g, "%s%s", name, ".ratio"), ratio, 0, NULL);
    break;
  }
  case OP_ACT:
    add_act(g, l->act, name);
    return;
  case OP_RESIDUAL:
    return;
  case OP_SHORTCUT:
    g->cur = inputs[l->u.block.fork];
    return;
  case OP_ADD: {
    const Layer *o = op_modules[l->op]->operand(net, l);
    n = add_node(g, "Add", name);
    n->in[n->nin++] = inputs[o - net->layers];
    break;
  }
  case OP_COUNT:
    break;
  }
  if (op_modules[l->op]->takes_act && l->act != ACT_LINEAR && !l->fused_bn)
    add_act(g, l->act, graph_name(g, "%s_%s", name, act_words[l->act]));
}

static int export_net(const Net *net, const float *params, const char *path, Err *e) {
  int cap = 4 * net->nlayers + 2; /* a batchnorm has 4 initializers */
  Graph g = {
      .nodes = calloc((size_t)cap, sizeof *g.nodes),
      .inits = calloc((size_t)cap, sizeof *g.inits),
      .attrs = calloc((size_t)cap * MAX_ATTRS, sizeof *g.attrs),
      .io = calloc((size_t)cap * (MAX_INPUTS + 1), sizeof *g.io),
      .ints = calloc((size_t)cap * MAX_INTS, sizeof *g.ints),
      .ratios = calloc((size_t)cap, sizeof *g.ratios),
      .names = calloc((size_t)cap * 2, sizeof *g.names),
      .cur = "input",
  };
  const char **inputs = calloc((size_t)net->nlayers + 1, sizeof *inputs);
  int rc;
  if (!g.nodes || !g.inits || !g.attrs || !g.io || !g.ints || !g.ratios || !g.names || !inputs) {
    e->internal = 1;
    rc = err_set(e, path, "out of memory");
  } else {
    for (int i = 0; i < net->nlayers; i++) {
      const Layer *l = &net->layers[i];
      if (l->op == OP_ACT && l->fused_away) /* it set the conv's or dense's act */
        continue;
      inputs[i] = g.cur;
      add_layer(&g, net, inputs, l, i, params);
    }
    g.nodes[g.nnodes - 1].out[0] = "output";
    OnnxGraphOut out = {
        .graph_name = net->name,
        .input = "input",
        .output = "output",
        .in_dims = {net->input.c, net->input.h, net->input.w},
        .out_dims = net->output.c,
        .nodes = g.nodes,
        .nnodes = g.nnodes,
        .inits = g.inits,
        .ninits = g.ninits,
        .opset = 13,
        .producer_version = CNNGEN_VERSION,
    };
    rc = onnx_write(path, &out, e);
  }
  free(g.nodes);
  free(g.inits);
  free(g.attrs);
  free(g.io);
  free(g.ints);
  free(g.ratios);
  free(g.names);
  free(inputs);
  return rc;
}

static int run(const CliArgs *a) {
  Arena arena = {0};
  Err e = {0};
  int status = 0;
  float *params = NULL;
  const char *target = a->value[CLI_OUT], *wpath = a->value[CLI_WEIGHTS];
  IoPath out[1] = {{"-o", target}};
  IoPath in[2] = {{"the network file", a->net_path}, {"--weights", wpath}};
  if (io_check_outputs(out, 1, in, 2, &e) < 0) {
    status = cli_fail(&e);
    goto done;
  }
  Net *net = cli_compile_net(&arena, a->net_path, NULL, &status);
  if (!net)
    goto done;
  if (!net->output.vec) {
    char shape[64];
    status = cli_usage_error("%s: the network's output is an image (%s): export needs a "
                             "vector output (end with flatten or globalavgpool, then dense)",
                             a->net_path, summary_shape(shape, sizeof shape, net->output));
    goto done;
  }
  if (!(params = cli_read_weights(wpath, net, NULL, &e)) || export_net(net, params, target, &e) < 0)
    status = cli_fail(&e);
done:
  free(params);
  arena_free(&arena);
  return status;
}

const Command cmd_export = {
    .name = "export",
    .summary = "write the network and its weights as an ONNX model",
    .help = help,
    .options = OPT(CLI_OUT) | OPT(CLI_WEIGHTS),
    .required = OPT(CLI_OUT) | OPT(CLI_WEIGHTS),
    .min_args = 1,
    .max_args = 1,
    .run = run,
};
