/*
 * cmd_import.c: `cnngen import MODEL.onnx -o NET.cnn [--weights-out W]`
 * turns an ONNX model, as torch.onnx.export writes them (opsets 9 to 17),
 * into a .cnn file and its weights.
 *
 * The graph must be a chain: each node reads the tensor the node before it
 * wrote (its other inputs are initializers or Constant values), but for
 * residual blocks: a tensor that two nodes read opens a `residual {`, a
 * node that reads it again after the main path opens the `shortcut {`, and
 * the Add of the two paths' outputs closes the block. Walking it
 * in order, each node becomes one line of the .cnn (or a comment, for the
 * nodes that only rename or reshape what cnngen already holds), an
 * activation is fused onto the conv2d or dense right before it, and MatMul
 * followed by Add of a bias becomes one dense. Every line ends with a
 * comment naming the nodes it came from; a train block to start from
 * follows, its loss chosen by the compiled layers' output activation. The
 * text is then compiled like any .cnn file, which checks every shape, and
 * the weights are laid out in the compiled network's order (PyTorch
 * layout is ONNX's: Conv W [F][C][KH][KW]; a Gemm's or MatMul's matrix is
 * transposed to [OUT][IN] where it is [IN][OUT]). Both files are written,
 * or neither.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "../compiler/compile.h"
#include "cli.h"
#include "formats/onnx.h"
#include "io.h"

static const char help[] =
    "usage: cnngen import MODEL.onnx -o NET.cnn [--weights-out W.safetensors]\n"
    "\n"
    "Turns an ONNX model, as torch.onnx.export writes them (opsets 9 to 17), into\n"
    "a .cnn file and, with --weights-out, its weights (PyTorch layout). The\n"
    "graph must be a chain of layers with one float input [N, C, H, W]; the ops\n"
    "read are Conv (any group count, with or without bias), Relu, Sigmoid, Tanh,\n"
    "MaxPool, AveragePool, GlobalAveragePool, Flatten, Reshape to [N, -1],\n"
    "Gemm (either transB), MatMul (+ Add of a bias), Softmax, BatchNormalization,\n"
    "Dropout, Identity, and Constant values. An activation is fused onto the\n"
    "conv2d or dense before it; each line of the .cnn names the ONNX nodes it\n"
    "came from. Anything else (an op, an attribute such as a dilation or an\n"
    "asymmetric pad, a second input, a branch) is refused with the node's name,\n"
    "op and attribute.\n"
    "The network's name is NET's base name. The .cnn ends in a train block to\n"
    "start from (ONNX holds no training recipe): the loss fits the output\n"
    "(softmax: sparse_categorical_crossentropy, sigmoid: binary_crossentropy,\n"
    "otherwise mse, and mse too for a softmax of one output, which has no\n"
    "classes to tell apart), then adam lr=0.001, batch 32, epochs 5, the\n"
    "language's defaults. Both files are written, or neither.\n"
    "\n"
    "Options:\n"
    "  -o FILE, --out FILE  the .cnn file to write\n"
    "  --weights-out W      also write the weights (safetensors)\n"
    "\n"
    "Example:\n"
    "  cnngen import lenet.onnx -o lenet.cnn --weights-out lenet.safetensors\n"
    "  cnngen predict lenet.cnn --weights lenet.safetensors digit.png\n"
    "\n"
    "Exit status: 0 success; 1 the model cannot be read or said in the language\n"
    "(nothing is written); 2 internal error.\n";

enum { STMT_MAX = 160, FROM_MAX = 400, NODE_NAME_MAX = 60, BLOCKS_MAX = 64 };

/* One line of the .cnn. */
typedef struct Line {
  char stmt[STMT_MAX]; /* "conv2d 6 5x5 padding=2"; "" for a comment line */
  Act act;             /* fused onto a conv2d or dense */
  bool takes_act;      /* a conv2d or dense without one yet */
  char from[FROM_MAX]; /* "Conv_0 (Conv), Relu_1 (Relu)", or the comment */
  const float *w, *b;  /* conv2d, dense: PyTorch layout; b NULL with bias=false */
  long wcount, bcount;
  const float *rm, *rv; /* batchnorm: the running mean and variance, bcount each */
  float *own;           /* a transposed copy of w, freed with the line */
  int depth;            /* blocks open around it: the indentation */
} Line;

/* What the chain holds: the tensor and its shape. */
typedef struct Tensor {
  const char *name;
  int rank;    /* 4 (an image) or 2 (a vector) */
  int c, h, w; /* rank 2: c features */
  bool pooled; /* rank 4 [N, C, 1, 1] from GlobalAveragePool: cnngen holds a vector */
} Tensor;

/* An open residual block: its input x, and once the shortcut began, where
   the main path ended. */
typedef struct Block {
  Tensor x, main;
  bool shortcut;
} Block;

typedef struct Import {
  const OnnxModel *m;
  const char *path;
  Err *e;
  Line *lines;
  int nlines;
  int node;        /* the index of the node being read, for messages */
  const char *cur; /* the tensor the next node must read */
  int rank;        /* of cur: 4 (an image) or 2 (a vector) */
  int c, h, w;     /* rank 2: c features */
  bool pooled;     /* rank 4 [N, C, 1, 1] from GlobalAveragePool: cnngen holds a vector */
  Block blocks[BLOCKS_MAX];
  int nblocks; /* open residual blocks */
  int depth;   /* '{' open in the text */
} Import;

/* A name as it may appear in a comment: printable, bounded. */
static void clean_name(char *dst, size_t cap, const char *s) {
  size_t i = 0;
  for (; s[i] && i + 1 < cap && i < NODE_NAME_MAX; i++)
    dst[i] = (unsigned char)s[i] < 32 || s[i] == 127 ? '?' : s[i];
  dst[i] = 0;
}

static const char *node_label(const Import *im, const OnnxNode *n, char *buf, size_t cap) {
  char name[NODE_NAME_MAX + 1];
  clean_name(name, sizeof name, n->name);
  if (*name)
    snprintf(buf, cap, "node '%s' (%.40s)", name, n->op);
  else
    snprintf(buf, cap, "node %d (%.40s)", im->node, n->op);
  return buf;
}

static int node_err(const Import *im, const OnnxNode *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int node_err(const Import *im, const OnnxNode *n, const char *fmt, ...) {
  char msg[600], label[160];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return err_set(im->e, im->path, "%s: %s", node_label(im, n, label, sizeof label), msg);
}

static Line *add_line(Import *im, const OnnxNode *n) {
  Line *l = &im->lines[im->nlines++];
  l->depth = im->depth;
  char name[NODE_NAME_MAX + 1];
  clean_name(name, sizeof name, n->name);
  snprintf(l->from, sizeof l->from, "%s (%.40s)", *name ? name : "unnamed", n->op);
  return l;
}

/* A line that is only a comment: the node changes nothing cnngen holds. */
static void add_comment(Import *im, const OnnxNode *n, const char *why) {
  Line *l = add_line(im, n);
  size_t k = strlen(l->from);
  snprintf(l->from + k, sizeof l->from - k, ": %s", why);
}

/* Refuses any attribute not in `known` (a NULL-terminated list). */
static int check_attrs(const Import *im, const OnnxNode *n, const char *const *known) {
  for (int i = 0; i < n->nattrs; i++) {
    int k = 0;
    while (known[k] && strcmp(known[k], n->attrs[i].name) != 0)
      k++;
    if (!known[k]) {
      char a[NODE_NAME_MAX + 1];
      clean_name(a, sizeof a, n->attrs[i].name);
      return node_err(im, n, "attribute '%s' is not supported", a);
    }
  }
  return 0;
}

static int get_int(const Import *im, const OnnxNode *n, const char *name, int64_t def, int64_t *v) {
  const OnnxAttr *a = onnx_attr(n, name);
  *v = def;
  if (!a)
    return 0;
  if (a->kind != ONNX_ATTR_INT)
    return node_err(im, n, "attribute '%s' is not an integer", name);
  *v = a->i;
  return 0;
}

static int get_float(const Import *im, const OnnxNode *n, const char *name, double def, double *v) {
  const OnnxAttr *a = onnx_attr(n, name);
  *v = def;
  if (!a)
    return 0;
  if (a->kind != ONNX_ATTR_FLOAT)
    return node_err(im, n, "attribute '%s' is not a float", name);
  *v = a->f;
  return 0;
}

/* An INTS attribute of exactly `count` values (defaults in v when absent). */
static int get_ints(const Import *im, const OnnxNode *n, const char *name, int count, int64_t *v) {
  const OnnxAttr *a = onnx_attr(n, name);
  if (!a)
    return 0;
  if (a->kind != ONNX_ATTR_INTS || a->nints != count)
    return node_err(im, n, "attribute '%s' must be %d integers (a 2-D op)", name, count);
  for (int i = 0; i < count; i++) {
    if (a->ints[i] < 0 || a->ints[i] > 1 << 20)
      return node_err(im, n, "attribute '%s' has the value %lld", name, (long long)a->ints[i]);
    v[i] = a->ints[i];
  }
  return 0;
}

static const char *get_string(const OnnxNode *n, const char *name, const char *def) {
  const OnnxAttr *a = onnx_attr(n, name);
  return a && a->kind == ONNX_ATTR_STRING ? a->s : def;
}

/* Input k of n as a float initializer of `rank` dimensions. */
static const OnnxTensor *weight(const Import *im, const OnnxNode *n, int k, int rank) {
  const char *name = k < n->nin ? n->in[k] : "";
  const OnnxTensor *t = *name ? onnx_init(im->m, name) : NULL;
  char clean[NODE_NAME_MAX + 1];
  clean_name(clean, sizeof clean, name);
  int d = 0;
  while (t && d < t->rank && t->dims[d] >= 1 && t->dims[d] <= 1 << 24)
    d++;
  if (!t)
    node_err(im, n,
             "input %d ('%s') is not an initializer or Constant: cnngen imports a chain "
             "of layers whose weights are constants",
             k, clean);
  else if (t->dtype != ONNX_FLOAT || !t->f || t->rank != rank)
    node_err(im, n, "input %d ('%s') must be a %d-D float tensor", k, clean, rank);
  else if (d < rank)
    node_err(im, n, "input %d ('%s') has a dimension of %lld", k, clean, (long long)t->dims[d]);
  else
    return t;
  return NULL;
}

/* The node must read the tensor the chain has reached. */
static int check_input(const Import *im, const OnnxNode *n, int need) {
  if (n->nin < need || n->nout < 1)
    return node_err(im, n, "has %d inputs and %d outputs", n->nin, n->nout);
  if (strcmp(n->in[0], im->cur) != 0) {
    char a[NODE_NAME_MAX + 1], b[NODE_NAME_MAX + 1];
    clean_name(a, sizeof a, n->in[0]);
    clean_name(b, sizeof b, im->cur);
    return node_err(im, n,
                    "reads '%s', not '%s' that the node before it wrote: cnngen imports "
                    "a chain of layers (a branch or a Concat cannot be said)",
                    a, b);
  }
  return 0;
}

static int need_image(const Import *im, const OnnxNode *n) {
  if (im->rank != 4 || im->pooled)
    return node_err(im, n, "needs an image [N, C, H, W] but gets a vector");
  return 0;
}

static int need_vector(const Import *im, const OnnxNode *n) {
  if (im->rank == 4 && !im->pooled)
    return node_err(im, n,
                    "needs a vector [N, K] but gets an image [N, %d, %d, %d] (add a "
                    "Flatten before it)",
                    im->c, im->h, im->w);
  return 0;
}

/* " stride=2" / " stride=2x1" when not `dh`x`dw`; " padding=..." likewise. */
static int pair_opt(char *buf, size_t cap, const char *key, int64_t a, int64_t b, int64_t da,
                    int64_t db) {
  if (a == da && b == db)
    return snprintf(buf, cap, "%s", "");
  if (a == b)
    return snprintf(buf, cap, " %s=%lld", key, (long long)a);
  return snprintf(buf, cap, " %s=%lldx%lld", key, (long long)a, (long long)b);
}

static int read_conv(Import *im, const OnnxNode *n) {
  static const char *const known[] = {"kernel_shape", "strides",  "pads", "dilations",
                                      "group",        "auto_pad", NULL};
  int64_t group, k[2] = {0, 0}, s[2] = {1, 1}, d[2] = {1, 1}, p[4] = {0, 0, 0, 0};
  if (check_attrs(im, n, known) < 0 || check_input(im, n, 2) < 0 || need_image(im, n) < 0 ||
      get_int(im, n, "group", 1, &group) < 0)
    return -1;
  if (group < 1 || group > im->c || im->c % group)
    return node_err(im, n, "attribute 'group' is %lld: it must divide the input's %d channels",
                    (long long)group, im->c);
  const OnnxTensor *w = weight(im, n, 1, 4), *b = NULL;
  if (!w)
    return -1;
  k[0] = w->dims[2];
  k[1] = w->dims[3];
  int64_t kk[2] = {k[0], k[1]};
  if (get_ints(im, n, "kernel_shape", 2, kk) < 0 || get_ints(im, n, "strides", 2, s) < 0 ||
      get_ints(im, n, "dilations", 2, d) < 0 || get_ints(im, n, "pads", 4, p) < 0)
    return -1;
  if (kk[0] != k[0] || kk[1] != k[1])
    return node_err(im, n, "attribute 'kernel_shape' %lldx%lld differs from the weight's",
                    (long long)kk[0], (long long)kk[1]);
  if (d[0] != 1 || d[1] != 1)
    return node_err(im, n, "attribute 'dilations' is %lldx%lld: cnngen's conv2d has no dilation",
                    (long long)d[0], (long long)d[1]);
  if (s[0] < 1 || s[1] < 1)
    return node_err(im, n, "attribute 'strides' must be at least 1");
  if (w->dims[1] * group != im->c)
    return node_err(im, n,
                    "weight '%.60s' has %lld input channels per group but the input has %d "
                    "in %lld group%s",
                    w->name, (long long)w->dims[1], im->c, (long long)group, group > 1 ? "s" : "");
  if (w->dims[0] % group)
    return node_err(im, n, "weight '%.60s' has %lld filters, not a multiple of group %lld", w->name,
                    (long long)w->dims[0], (long long)group);
  const char *autopad = get_string(n, "auto_pad", "NOTSET");
  bool same = strcmp(autopad, "SAME_UPPER") == 0;
  if (same || strcmp(autopad, "VALID") == 0)
    p[0] = p[1] = p[2] = p[3] = 0;
  else if (strcmp(autopad, "NOTSET") != 0)
    return node_err(im, n,
                    "attribute 'auto_pad' is %.20s: cnngen pads as NOTSET, VALID or "
                    "SAME_UPPER",
                    autopad);
  /* TensorFlow's same padding at stride > 1 puts the odd pixel bottom/right:
     cnngen's padding=same, which cnngen export writes as these pads. */
  int64_t th = (im->h + s[0] - 1) / s[0], tw = (im->w + s[1] - 1) / s[1];
  int64_t ph = (th - 1) * s[0] + k[0] - im->h, pw = (tw - 1) * s[1] + k[1] - im->w;
  ph = ph > 0 ? ph : 0;
  pw = pw > 0 ? pw : 0;
  if ((p[0] != p[2] || p[1] != p[3]) && p[0] == ph / 2 && p[2] == ph - ph / 2 && p[1] == pw / 2 &&
      p[3] == pw - pw / 2)
    same = true;
  else if (p[0] != p[2] || p[1] != p[3])
    return node_err(im, n,
                    "attribute 'pads' is [%lld, %lld, %lld, %lld]: asymmetric padding "
                    "cannot be said in cnngen (it pads the same above and below, left "
                    "and right)",
                    (long long)p[0], (long long)p[1], (long long)p[2], (long long)p[3]);
  if (n->nin >= 3 && *n->in[2]) {
    if (!(b = weight(im, n, 2, 1)))
      return -1;
    if (b->count != w->dims[0])
      return node_err(im, n, "the bias has %lld values for %lld filters", (long long)b->count,
                      (long long)w->dims[0]);
  }
  Line *l = add_line(im, n);
  char stride[40], pad[40], groups[32] = "";
  pair_opt(stride, sizeof stride, "stride", s[0], s[1], 1, 1);
  if (group > 1)
    snprintf(groups, sizeof groups, " groups=%lld", (long long)group);
  if (same)
    snprintf(pad, sizeof pad, " padding=same");
  else
    pair_opt(pad, sizeof pad, "padding", p[0], p[1], 0, 0);
  snprintf(l->stmt, sizeof l->stmt, "conv2d %lld %lldx%lld%s%s%s%s", (long long)w->dims[0],
           (long long)k[0], (long long)k[1], stride, pad, groups, b ? "" : " bias=false");
  l->takes_act = true;
  l->w = w->f;
  l->wcount = (long)w->count;
  l->b = b ? b->f : NULL;
  l->bcount = b ? (long)b->count : 0;
  int oh = same ? (int)((im->h + s[0] - 1) / s[0]) : (int)((im->h + 2 * p[0] - k[0]) / s[0] + 1);
  int ow = same ? (int)((im->w + s[1] - 1) / s[1]) : (int)((im->w + 2 * p[1] - k[1]) / s[1] + 1);
  im->c = (int)w->dims[0];
  im->h = oh;
  im->w = ow;
  return 0;
}

static int read_pool(Import *im, const OnnxNode *n, const char *word) {
  static const char *const known[] = {"kernel_shape", "strides",           "pads",
                                      "ceil_mode",    "dilations",         "storage_order",
                                      "auto_pad",     "count_include_pad", NULL};
  int64_t k[2] = {0, 0}, s[2] = {1, 1}, d[2] = {1, 1}, p[4] = {0, 0, 0, 0}, ceil;
  if (check_attrs(im, n, known) < 0 || check_input(im, n, 1) < 0 || need_image(im, n) < 0 ||
      get_ints(im, n, "kernel_shape", 2, k) < 0 || get_ints(im, n, "strides", 2, s) < 0 ||
      get_ints(im, n, "dilations", 2, d) < 0 || get_ints(im, n, "pads", 4, p) < 0 ||
      get_int(im, n, "ceil_mode", 0, &ceil) < 0)
    return -1;
  if (k[0] < 1 || k[1] < 1)
    return node_err(im, n, "attribute 'kernel_shape' is missing");
  if (s[0] < 1 || s[1] < 1)
    return node_err(im, n, "attribute 'strides' must be at least 1");
  if (p[0] || p[1] || p[2] || p[3])
    return node_err(im, n,
                    "attribute 'pads' is [%lld, %lld, %lld, %lld]: cnngen's pools do "
                    "not pad",
                    (long long)p[0], (long long)p[1], (long long)p[2], (long long)p[3]);
  if (d[0] != 1 || d[1] != 1)
    return node_err(im, n, "attribute 'dilations' is %lldx%lld: cnngen's pools have no dilation",
                    (long long)d[0], (long long)d[1]);
  if (ceil)
    return node_err(im, n, "attribute 'ceil_mode' is 1: cnngen's pools round down");
  const char *autopad = get_string(n, "auto_pad", "NOTSET");
  if (strcmp(autopad, "NOTSET") != 0 && strcmp(autopad, "VALID") != 0)
    return node_err(im, n, "attribute 'auto_pad' is %.20s: cnngen's pools do not pad", autopad);
  Line *l = add_line(im, n);
  char stride[40];
  pair_opt(stride, sizeof stride, "stride", s[0], s[1], k[0], k[1]);
  snprintf(l->stmt, sizeof l->stmt, "%s %lldx%lld%s", word, (long long)k[0], (long long)k[1],
           stride);
  im->h = im->h >= k[0] ? (int)((im->h - k[0]) / s[0] + 1) : 0;
  im->w = im->w >= k[1] ? (int)((im->w - k[1]) / s[1] + 1) : 0;
  return 0;
}

/* Flatten, or a Reshape to [N, C*H*W]. */
static int flatten(Import *im, const OnnxNode *n) {
  int64_t total = (int64_t)im->c * im->h * im->w;
  if (total < 1 || total > 1 << 28)
    return node_err(im, n, "flattens [N, %d, %d, %d]: not an image cnngen can hold", im->c, im->h,
                    im->w);
  if (im->rank == 4 && !im->pooled) {
    snprintf(add_line(im, n)->stmt, STMT_MAX, "flatten");
    im->c = (int)total;
  } else {
    add_comment(im, n, "the input is a vector already");
  }
  im->rank = 2;
  im->h = im->w = 1;
  im->pooled = false;
  return 0;
}

static int read_flatten(Import *im, const OnnxNode *n) {
  static const char *const known[] = {"axis", NULL};
  int64_t axis;
  if (check_attrs(im, n, known) < 0 || check_input(im, n, 1) < 0 ||
      get_int(im, n, "axis", 1, &axis) < 0)
    return -1;
  if (axis != 1)
    return node_err(im, n, "attribute 'axis' is %lld: cnngen flattens from axis 1",
                    (long long)axis);
  return flatten(im, n);
}

static int read_reshape(Import *im, const OnnxNode *n) {
  static const char *const known[] = {"allowzero", NULL};
  int64_t allowzero;
  if (check_attrs(im, n, known) < 0 || check_input(im, n, 2) < 0 ||
      get_int(im, n, "allowzero", 0, &allowzero) < 0)
    return -1;
  const OnnxTensor *t = onnx_init(im->m, n->in[1]);
  if (!t || t->dtype != ONNX_INT64 || !t->i || t->count != 2)
    return node_err(im, n,
                    "the shape must be a constant of 2 integers: cnngen reads only a "
                    "Reshape to [N, -1]");
  int64_t total = (int64_t)im->c * im->h * im->w, a = t->i[0], b = t->i[1];
  bool ok = ((a == 0 && !allowzero) || a == -1 || a > 0) && (b == -1 || b == total) &&
            !(a == -1 && b == -1);
  if (a > 0 && b == -1 && a != im->m->inputs[0].dims[0])
    ok = false; /* not the input's fixed batch: it would fold other dimensions in */
  if (!ok)
    return node_err(im, n,
                    "reshapes to [%lld, %lld]: cnngen reads only a Reshape to [N, -1] "
                    "or [-1, %lld]",
                    (long long)a, (long long)b, (long long)total);
  return flatten(im, n);
}

/* torch.onnx.export puts a Pad of zeros before an AveragePool: nothing to do.
   Other pads are refused (cnngen's pools do not pad). */
static int read_pad(Import *im, const OnnxNode *n) {
  static const char *const known[] = {"mode", "pads", "value", NULL};
  if (check_attrs(im, n, known) < 0 || check_input(im, n, 1) < 0)
    return -1;
  const char *mode = get_string(n, "mode", "constant");
  const OnnxAttr *attr = onnx_attr(n, "pads");
  const OnnxTensor *t = n->nin >= 2 && *n->in[1] ? onnx_init(im->m, n->in[1]) : NULL;
  const int64_t *pads = attr && attr->kind == ONNX_ATTR_INTS ? attr->ints
                        : t && t->dtype == ONNX_INT64        ? t->i
                                                             : NULL;
  int count = attr && attr->kind == ONNX_ATTR_INTS ? attr->nints : t ? (int)t->count : 0;
  if (!pads)
    return node_err(im, n, "the pads must be a constant list of integers");
  for (int i = 0; i < count; i++)
    if (pads[i] != 0)
      return node_err(im, n, "pads by %lld (mode %.20s): cnngen pads only inside conv2d",
                      (long long)pads[i], mode);
  add_comment(im, n, "pads nothing");
  return 0;
}

/* Gemm, or MatMul followed by an Add of a bias (which is *add when given). */
static int read_dense(Import *im, const OnnxNode *n, const OnnxNode *add) {
  bool gemm = strcmp(n->op, "Gemm") == 0;
  static const char *const known[] = {"alpha", "beta", "transA", "transB", NULL};
  static const char *const none[] = {NULL};
  int64_t ta = 0, tb = 0;
  double alpha = 1, beta = 1;
  if (check_attrs(im, n, gemm ? known : none) < 0 || check_input(im, n, 2) < 0 ||
      need_vector(im, n) < 0 || get_int(im, n, "transA", 0, &ta) < 0 ||
      get_int(im, n, "transB", 0, &tb) < 0 || get_float(im, n, "alpha", 1, &alpha) < 0 ||
      get_float(im, n, "beta", 1, &beta) < 0)
    return -1;
  if (ta)
    return node_err(im, n, "attribute 'transA' is 1: the input must not be transposed");
  if (alpha != 1 || beta != 1)
    return node_err(im, n, "attribute '%s' is %g: cnngen's dense scales by 1",
                    alpha != 1 ? "alpha" : "beta", alpha != 1 ? alpha : beta);
  const OnnxTensor *w = weight(im, n, 1, 2), *b = NULL;
  if (!w)
    return -1;
  int64_t out = tb ? w->dims[0] : w->dims[1], in = tb ? w->dims[1] : w->dims[0];
  if (in != im->c)
    return node_err(im, n, "weight '%.60s' takes %lld inputs but the input has %d", w->name,
                    (long long)in, im->c);
  if (gemm && n->nin >= 3 && *n->in[2]) {
    b = onnx_init(im->m, n->in[2]);
    if (!b || b->dtype != ONNX_FLOAT || !b->f || b->count != out || b->rank > 2)
      return node_err(im, n, "input 2 (the bias) must be a constant of %lld floats",
                      (long long)out);
  }
  Line *l = add_line(im, n);
  if (add) {
    const char *bn = strcmp(add->in[0], n->out[0]) == 0 ? add->in[1] : add->in[0];
    b = onnx_init(im->m, bn);
    size_t k = strlen(l->from);
    char name[NODE_NAME_MAX + 1];
    clean_name(name, sizeof name, add->name);
    snprintf(l->from + k, sizeof l->from - k, ", %s (Add)", *name ? name : "unnamed");
  }
  snprintf(l->stmt, sizeof l->stmt, "dense %lld%s", (long long)out, b ? "" : " bias=false");
  l->takes_act = true;
  l->wcount = (long)w->count;
  l->b = b ? b->f : NULL;
  l->bcount = b ? (long)b->count : 0;
  if (tb) {
    l->w = w->f;
  } else { /* [IN][OUT] to PyTorch's [OUT][IN] */
    if (!(l->own = malloc((size_t)w->count * sizeof *l->own))) {
      im->e->internal = 1;
      return err_set(im->e, im->path, "out of memory");
    }
    for (int64_t o = 0; o < out; o++)
      for (int64_t i = 0; i < in; i++)
        l->own[o * in + i] = w->f[i * out + o];
    l->w = l->own;
  }
  im->rank = 2;
  im->c = (int)out;
  im->h = im->w = 1;
  im->pooled = false;
  return 0;
}

/* The Add after a MatMul that adds a bias to it, or NULL. */
static const OnnxNode *bias_add(const Import *im, const OnnxNode *mm, const OnnxNode *next) {
  if (!next || strcmp(next->op, "Add") != 0 || next->nin != 2 || next->nattrs || mm->nout < 1 ||
      mm->nin < 2)
    return NULL;
  int k = strcmp(next->in[0], mm->out[0]) == 0 ? 1 : strcmp(next->in[1], mm->out[0]) == 0 ? 0 : -1;
  if (k < 0)
    return NULL;
  const OnnxTensor *b = onnx_init(im->m, next->in[k]), *w = onnx_init(im->m, mm->in[1]);
  if (!b || !w || b->dtype != ONNX_FLOAT || !b->f || w->rank != 2 || b->count != w->dims[1] ||
      b->rank > 2)
    return NULL;
  return next;
}

static int read_act(Import *im, const OnnxNode *n, Act act) {
  static const char *const known[] = {"axis", NULL};
  static const char *const none[] = {NULL};
  if (check_attrs(im, n, act == ACT_SOFTMAX ? known : none) < 0 || check_input(im, n, 1) < 0)
    return -1;
  if (act == ACT_SOFTMAX) {
    int64_t axis;
    if (need_vector(im, n) < 0 || get_int(im, n, "axis", im->m->opset >= 13 ? -1 : 1, &axis) < 0)
      return -1;
    if (axis != 1 && axis != -1)
      return node_err(im, n, "attribute 'axis' is %lld: cnngen's softmax runs over the vector",
                      (long long)axis);
  }
  Line *prev = im->nlines ? &im->lines[im->nlines - 1] : NULL;
  char name[NODE_NAME_MAX + 1];
  clean_name(name, sizeof name, n->name);
  if (prev && prev->takes_act) {
    prev->act = act;
    prev->takes_act = false;
    size_t k = strlen(prev->from);
    snprintf(prev->from + k, sizeof prev->from - k, ", %s (%s)", *name ? name : "unnamed", n->op);
  } else {
    snprintf(add_line(im, n)->stmt, STMT_MAX, "%s", act_words[act]);
  }
  return 0;
}

/* BatchNormalization in inference mode: scale, B, mean, var, one per channel
   (an image) or per element (a vector); ONNX's momentum is 1 - PyTorch's. */
static int read_batchnorm(Import *im, const OnnxNode *n) {
  static const char *const known[] = {"epsilon", "momentum", "training_mode", "spatial", NULL};
  double eps, momentum;
  int64_t training = 0, spatial = 1;
  if (check_attrs(im, n, known) < 0 || check_input(im, n, 5) < 0 ||
      get_float(im, n, "epsilon", 1e-5, &eps) < 0 ||
      get_float(im, n, "momentum", 0.9, &momentum) < 0 ||
      get_int(im, n, "training_mode", 0, &training) < 0 ||
      get_int(im, n, "spatial", 1, &spatial) < 0)
    return -1;
  if (training || !spatial)
    return node_err(im, n, "attribute '%s' is %lld: cnngen imports inference's batch norm",
                    training ? "training_mode" : "spatial", (long long)(training ? training : 0));
  if (n->nout > 1)
    return node_err(im, n, "has %d outputs: cnngen imports inference's batch norm (one)", n->nout);
  if (!(eps > 0 && eps <= 1) || !(momentum >= 0 && momentum <= 1))
    return node_err(im, n, "epsilon %g or momentum %g out of range", eps, momentum);
  const OnnxTensor *t[4];
  for (int k = 0; k < 4; k++) {
    if (!(t[k] = weight(im, n, k + 1, 1)))
      return -1;
    if (t[k]->count != im->c)
      return node_err(im, n, "input %d has %lld values but the input has %d channels", k + 1,
                      (long long)t[k]->count, im->c);
  }
  Line *l = add_line(im, n);
  snprintf(l->stmt, sizeof l->stmt, "batchnorm momentum=%g eps=%g", 1 - momentum, eps);
  l->w = t[0]->f, l->b = t[1]->f, l->rm = t[2]->f, l->rv = t[3]->f;
  l->wcount = l->bcount = im->c;
  return 0;
}

static int read_dropout(Import *im, const OnnxNode *n) {
  static const char *const known[] = {"ratio", "seed", "is_test", NULL};
  double ratio;
  if (check_attrs(im, n, known) < 0 || check_input(im, n, 1) < 0 ||
      get_float(im, n, "ratio", 0.5, &ratio) < 0)
    return -1;
  if (n->nin >= 2 && *n->in[1]) {
    const OnnxTensor *t = onnx_init(im->m, n->in[1]);
    if (!t || t->dtype != ONNX_FLOAT || !t->f || t->count != 1)
      return node_err(im, n, "input 1 (the ratio) must be a constant float");
    ratio = t->f[0];
  }
  if (!(ratio >= 0 && ratio < 1))
    return node_err(im, n, "the ratio %g is not in [0, 1)", ratio);
  snprintf(add_line(im, n)->stmt, STMT_MAX, "dropout %g", ratio);
  return 0;
}

/* ---- residual blocks ---- */

static Tensor held(const Import *im) {
  return (Tensor){im->cur, im->rank, im->c, im->h, im->w, im->pooled};
}

static void hold(Import *im, Tensor t) {
  im->cur = t.name, im->rank = t.rank, im->c = t.c, im->h = t.h, im->w = t.w;
  im->pooled = t.pooled;
}

/* The nodes that read tensor `name`. */
static int readers(const Import *im, const char *name) {
  int count = 0;
  for (int i = 0; i < im->m->nnodes; i++)
    for (int k = 0; k < im->m->nodes[i].nin; k++)
      if (strcmp(im->m->nodes[i].in[k], name) == 0) {
        count++;
        break;
      }
  return count;
}

/* "residual {", "shortcut {" or "}", for node n. */
static void block_line(Import *im, const OnnxNode *n, const char *stmt, const char *why) {
  Line *l = add_line(im, n);
  snprintf(l->stmt, STMT_MAX, "%s", stmt);
  size_t k = strlen(l->from);
  snprintf(l->from + k, sizeof l->from - k, ": %s", why);
}

/* Before node n: a tensor that two nodes read opens a block; a node that
   reads the block's input after its main path opens the shortcut. */
static int block_begin(Import *im, const OnnxNode *n) {
  Block *top = im->nblocks ? &im->blocks[im->nblocks - 1] : NULL;
  if (top && !top->shortcut && n->nin >= 1 && strcmp(n->op, "Add") != 0 &&
      strcmp(n->in[0], top->x.name) == 0 && strcmp(im->cur, top->x.name) != 0) {
    block_line(im, n, "shortcut {", "reads the block's input again");
    im->depth++;
    top->main = held(im);
    top->shortcut = true;
    hold(im, top->x);
    return 0;
  }
  if (top && strcmp(top->x.name, im->cur) == 0)
    return 0; /* this block's input: opened already */
  int count = readers(im, im->cur);
  if (count <= 1)
    return 0;
  char name[NODE_NAME_MAX + 1];
  clean_name(name, sizeof name, im->cur);
  if (count > 2)
    return node_err(im, n, "'%s' is read by %d nodes: a cnngen residual block forks in two", name,
                    count);
  if (im->nblocks == BLOCKS_MAX)
    return node_err(im, n, "residual blocks nested more than %d deep", BLOCKS_MAX);
  block_line(im, n, "residual {", "the first node of a block");
  im->depth++;
  im->blocks[im->nblocks++] = (Block){.x = held(im)};
  return 0;
}

/* An Add of the two paths' outputs closes the innermost block: 1; an Add
   that is no such sum: 0 (for read_node's messages). */
static int block_end(Import *im, const OnnxNode *n) {
  const Block *top = im->nblocks ? &im->blocks[im->nblocks - 1] : NULL;
  if (!top || n->nin != 2 || n->nattrs || n->nout < 1)
    return 0;
  const char *other = top->shortcut ? top->main.name : top->x.name;
  bool ours = (strcmp(n->in[0], im->cur) == 0 && strcmp(n->in[1], other) == 0) ||
              (strcmp(n->in[1], im->cur) == 0 && strcmp(n->in[0], other) == 0);
  if (!ours)
    return 0;
  if (top->shortcut) {
    im->depth--;
    block_line(im, n, "}", "the end of the shortcut");
  }
  im->depth--;
  block_line(im, n, "}", top->shortcut ? "main path + shortcut" : "main path + the block's input");
  im->nblocks--;
  return 1;
}

static int read_node(Import *im, const OnnxNode *n, const OnnxNode *next, bool *took_next) {
  static const char *const none[] = {NULL};
  static const struct {
    const char *op;
    Act act;
  } acts[] = {
      {"Relu", ACT_RELU}, {"Sigmoid", ACT_SIGMOID}, {"Tanh", ACT_TANH}, {"Softmax", ACT_SOFTMAX}};
  const char *op = n->op;
  int rc;
  if (*n->domain && strcmp(n->domain, "ai.onnx") != 0)
    return node_err(im, n, "domain '%.40s' is not the standard one", n->domain);
  if (block_begin(im, n) < 0)
    return -1;
  if (strcmp(op, "Add") == 0 && block_end(im, n))
    rc = 0;
  else if (strcmp(op, "Conv") == 0)
    rc = read_conv(im, n);
  else if (strcmp(op, "MaxPool") == 0)
    rc = read_pool(im, n, "maxpool");
  else if (strcmp(op, "AveragePool") == 0)
    rc = read_pool(im, n, "avgpool");
  else if (strcmp(op, "GlobalAveragePool") == 0) {
    if ((rc = check_attrs(im, n, none)) == 0 && (rc = check_input(im, n, 1)) == 0 &&
        (rc = need_image(im, n)) == 0) {
      snprintf(add_line(im, n)->stmt, STMT_MAX, "globalavgpool");
      im->h = im->w = 1;
      im->pooled = true;
    }
  } else if (strcmp(op, "Flatten") == 0)
    rc = read_flatten(im, n);
  else if (strcmp(op, "Reshape") == 0)
    rc = read_reshape(im, n);
  else if (strcmp(op, "Gemm") == 0)
    rc = read_dense(im, n, NULL);
  else if (strcmp(op, "MatMul") == 0) {
    const OnnxNode *add = bias_add(im, n, next);
    rc = read_dense(im, n, add);
    *took_next = add != NULL;
  } else if (strcmp(op, "Dropout") == 0)
    rc = read_dropout(im, n);
  else if (strcmp(op, "Pad") == 0)
    rc = read_pad(im, n);
  else if (strcmp(op, "Identity") == 0) {
    if ((rc = check_input(im, n, 1)) == 0)
      add_comment(im, n, "passes its input on");
  } else if (strcmp(op, "BatchNormalization") == 0)
    rc = read_batchnorm(im, n);
  else if (strcmp(op, "Add") == 0) {
    bool consts = n->nin == 2 && (onnx_init(im->m, n->in[0]) || onnx_init(im->m, n->in[1]));
    return node_err(im, n,
                    consts ? "adds a constant, which no cnngen layer does here (only as "
                             "the bias of a MatMul)"
                           : "adds two tensors that are not the two paths of a residual "
                             "block (a branch cnngen cannot say)");
  } else {
    size_t i = 0;
    while (i < sizeof acts / sizeof acts[0] && strcmp(acts[i].op, op) != 0)
      i++;
    if (i == sizeof acts / sizeof acts[0])
      return node_err(im, n, "cnngen has no layer for this op");
    rc = read_act(im, n, acts[i].act);
  }
  if (rc < 0)
    return -1;
  const OnnxNode *last = *took_next ? next : n;
  im->cur = last->out[0];
  return 0;
}

static int read_input(Import *im) {
  const OnnxModel *m = im->m;
  if (m->opset < 9 || m->opset > 17)
    return err_set(im->e, im->path, "opset %lld: cnngen imports opsets 9 to 17",
                   (long long)m->opset);
  if (m->ninputs != 1)
    return err_set(im->e, im->path, "the graph has %d inputs: cnngen networks take one image",
                   m->ninputs);
  if (m->noutputs != 1)
    return err_set(im->e, im->path, "the graph has %d outputs: cnngen networks give one",
                   m->noutputs);
  const OnnxValue *v = &m->inputs[0];
  char name[NODE_NAME_MAX + 1];
  clean_name(name, sizeof name, v->name);
  if (v->elem_type != ONNX_FLOAT)
    return err_set(im->e, im->path, "input '%s' is not float (element type %d)", name,
                   v->elem_type);
  if (v->rank != 4 || v->dims[1] < 1 || v->dims[2] < 1 || v->dims[3] < 1 || v->dims[1] > 1 << 20 ||
      v->dims[2] > 1 << 20 || v->dims[3] > 1 << 20)
    return err_set(im->e, im->path,
                   "input '%s' is not a 4-D image [N, C, H, W] with known C, "
                   "H and W (rank %d)",
                   name, v->rank);
  im->cur = v->name;
  im->rank = 4;
  im->c = (int)v->dims[1];
  im->h = (int)v->dims[2];
  im->w = (int)v->dims[3];
  return 0;
}

/* The network's name from the .cnn file's: a C identifier. */
static void net_name(char *dst, const char *cnn) {
  const char *base = strrchr(cnn, '/');
  base = base ? base + 1 : cnn;
  size_t n = strcspn(base, ".");
  int k = 0;
  if (n && base[0] >= '0' && base[0] <= '9')
    k = snprintf(dst, NAME_SIZE, "net_");
  for (size_t i = 0; i < n && k < NAME_SIZE - 1; i++) {
    char ch = base[i];
    bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
    dst[k++] = ok ? ch : '_';
  }
  dst[k] = 0;
  if (!k || net_name_problem(dst))
    snprintf(dst, NAME_SIZE, "imported");
}

/* A train block to start from: ONNX holds no training recipe, so the loss
   is the one that fits the output's activation and the rest are the
   language's defaults. */
static void write_train(Act out, FILE *f) {
  const char *loss = out == ACT_SOFTMAX   ? "sparse_categorical_crossentropy"
                     : out == ACT_SIGMOID ? "binary_crossentropy"
                                          : "mse";
  const char *why = out == ACT_SOFTMAX   ? "softmax outputs (one class per image)"
                    : out == ACT_SIGMOID ? "sigmoid outputs (labels)"
                                         : "outputs that are not probabilities";
  fprintf(f,
          "\n# A starting point for cnngen train: the ONNX model holds no training\n"
          "# recipe. The loss fits %s; the rest are\n# the language's defaults.\n",
          why);
  fprintf(f,
          "train {\n  loss      %s\n  optimizer adam lr=0.001\n  batch     32\n"
          "  epochs    5\n}\n",
          loss);
}

/* The .cnn text; with a train block for outputs `out` unless out < 0. */
static void write_text(const Import *im, const char *cnn, int out, FILE *f) {
  const OnnxModel *m = im->m;
  char name[NAME_SIZE], prod[NODE_NAME_MAX + 1], ver[NODE_NAME_MAX + 1], in[NODE_NAME_MAX + 1];
  const char *src = strrchr(im->path, '/');
  char srcname[NODE_NAME_MAX + 1];
  clean_name(srcname, sizeof srcname, src ? src + 1 : im->path);
  clean_name(prod, sizeof prod, *m->producer ? m->producer : "unknown");
  clean_name(ver, sizeof ver, m->producer_version);
  clean_name(in, sizeof in, m->inputs[0].name);
  net_name(name, cnn);
  fprintf(f, "# imported by cnngen import from %s (%s%s%s, opset %lld);\n", srcname, prod,
          *ver ? " " : "", ver, (long long)m->opset);
  fprintf(f, "# each line names the ONNX nodes it came from\n");
  fprintf(f, "network %s\n\n", name);
  char stmt[64];
  snprintf(stmt, sizeof stmt, "input %dx%dx%d", (int)m->inputs[0].dims[2],
           (int)m->inputs[0].dims[3], (int)m->inputs[0].dims[1]);
  fprintf(f, "%-32s # %s [N, %lld, %lld, %lld]\n\n", stmt, in, (long long)m->inputs[0].dims[1],
          (long long)m->inputs[0].dims[2], (long long)m->inputs[0].dims[3]);
  for (int i = 0; i < im->nlines; i++) {
    const Line *l = &im->lines[i];
    if (!*l->stmt) {
      fprintf(f, "# %s\n", l->from);
      continue;
    }
    char line[STMT_MAX + 16];
    snprintf(line, sizeof line, "%s%s%s", l->stmt, l->act != ACT_LINEAR ? " " : "",
             l->act != ACT_LINEAR ? act_words[l->act] : "");
    int indent = 2 * l->depth;
    fprintf(f, "%*s%-*s # %s\n", indent, "", indent < 32 ? 32 - indent : 0, line, l->from);
  }
  if (out >= 0)
    write_train((Act)out, f);
}

/* The compiled network's flat parameters from the lines' weights. */
static float *lay_out(const Import *im, const Net *net) {
  float *params = calloc((size_t)net->param_count + 1, sizeof *params);
  if (!params)
    return NULL;
  int li = 0;
  for (int i = 0; i < net->nlayers; i++) {
    const Layer *l = &net->layers[i];
    if (!op_modules[l->op]->weights)
      continue;
    while (li < im->nlines && !im->lines[li].w)
      li++;
    const Line *src = &im->lines[li++];
    if (li > im->nlines || src->wcount != l->weight_count || src->bcount != l->bias_count) {
      free(params); /* the text and the lines disagree: a bug here */
      return NULL;
    }
    memcpy(params + l->weight_offset, src->w, (size_t)src->wcount * sizeof *params);
    if (src->bcount)
      memcpy(params + l->bias_offset, src->b, (size_t)src->bcount * sizeof *params);
    if (src->rm) { /* running statistics */
      memcpy(params + l->stats_offset, src->rm, (size_t)src->bcount * sizeof *params);
      memcpy(params + l->stats_offset + src->bcount, src->rv, (size_t)src->bcount * sizeof *params);
    }
  }
  return params;
}

/* Compiles the text as `cnn` would be; the first error as one line. */
static Net *check_text(const Import *im, Arena *a, const char *cnn, const char *text, size_t len) {
  char *msgs = NULL;
  size_t mlen = 0;
  FILE *mf = open_memstream(&msgs, &mlen);
  if (!mf) {
    im->e->internal = 1;
    err_set(im->e, im->path, "out of memory");
    return NULL;
  }
  Diag d;
  diag_init(&d, mf, text, len);
  CompileOptions opt = {0};
  Net *net = compile(a, cnn, text, len, &opt, &d);
  fclose(mf);
  if (!net) {
    /* "NET.cnn:LINE:COL: error: MSG": quote that line of the text, which
       names the nodes it came from. */
    const char *m = msgs ? strstr(msgs, "error: ") : NULL;
    int n = m ? (int)strcspn(m + 7, "\n") : 0;
    size_t plen = strlen(cnn);
    long line = msgs && strncmp(msgs, cnn, plen) == 0 ? strtol(msgs + plen + 1, NULL, 10) : 0;
    const char *t = text;
    for (long i = 1; i < line && t; i++)
      if ((t = strchr(t, '\n')))
        t++;
    if (line > 0 && t && *t && *t != '#') {
      int stmt = (int)strcspn(t, "#\n"), from = 0;
      while (stmt && t[stmt - 1] == ' ')
        stmt--;
      const char *c = t + strcspn(t, "#\n");
      if (*c == '#')
        from = (int)strcspn(c += 2, "\n");
      err_set(im->e, im->path, "'%.*s' (from %.*s) does not check: %.*s", stmt, t, from, c, n,
              m ? m + 7 : "");
    } else {
      err_set(im->e, im->path, "the network it gives does not check: %.*s", n, m ? m + 7 : "");
    }
  }
  free(msgs);
  return net;
}

/* The text (malloc'd in *text) compiled in `a`: the layers alone first,
   for the output's activation, then with the train block that fits it. */
static Net *render(const Import *im, Arena *a, const char *cnn, char **text, size_t *len) {
  Net *net = NULL;
  int out = -1; /* no train block on the first pass */
  for (int pass = 0; pass < 2; pass++) {
    if (net) /* before the arena goes; a softmax of one output has no classes to tell */
      out = net->train_out_act == ACT_SOFTMAX && shape_size(net->output) < 2
                ? ACT_LINEAR
                : (int)net->train_out_act;
    free(*text);
    *text = NULL;
    arena_free(a);
    *a = (Arena){0};
    FILE *f = open_memstream(text, len);
    if (!f) {
      im->e->internal = 1;
      err_set(im->e, im->path, "out of memory");
      return NULL;
    }
    write_text(im, cnn, out, f);
    fclose(f);
    if (!(net = check_text(im, a, cnn, *text, *len)))
      return NULL;
  }
  return net;
}

static int write_files(const CliArgs *a, const Net *net, const float *params, const char *text,
                       size_t len, Err *e) {
  AtomicFile af = {0};
  if (atomic_open(&af, a->value[CLI_OUT], e) < 0)
    return -1;
  if (fwrite(text, 1, len, af.f) != len) {
    atomic_abort(&af);
    return err_set(e, a->value[CLI_OUT], "cannot write (disk full?)");
  }
  const char *wout = a->value[CLI_WEIGHTS_OUT];
  if (wout && cli_write_weights(wout, net, params, NULL, e) < 0) {
    atomic_abort(&af);
    return -1;
  }
  return atomic_commit(&af, e);
}

static int run(const CliArgs *a) {
  Err e = {0};
  OnnxModel m = {0};
  Arena arena = {0};
  char *text = NULL;
  size_t len = 0;
  float *params = NULL;
  int status = 0;
  const char *cnn = a->value[CLI_OUT];
  IoPath out[2] = {{"-o", cnn}, {"--weights-out", a->value[CLI_WEIGHTS_OUT]}};
  IoPath in[1] = {{"the ONNX model", a->net_path}};
  if (io_check_outputs(out, out[1].path ? 2 : 1, in, 1, &e) < 0 ||
      onnx_read(a->net_path, &m, &e) < 0)
    return cli_fail(&e);
  Import im = {.m = &m, .path = a->net_path, .e = &e};
  im.lines = calloc(3 * (size_t)m.nnodes + 1, sizeof *im.lines); /* a node and two of '{', '}' */
  if (!im.lines) {
    e.internal = 1;
    err_set(&e, a->net_path, "out of memory");
    goto fail;
  }
  if (read_input(&im) < 0)
    goto fail;
  for (int i = 0; i < m.nnodes; i++) {
    bool took_next = false;
    im.node = i;
    if (read_node(&im, &m.nodes[i], i + 1 < m.nnodes ? &m.nodes[i + 1] : NULL, &took_next) < 0)
      goto fail;
    i += took_next;
  }
  if (im.nblocks) {
    char x[NODE_NAME_MAX + 1];
    clean_name(x, sizeof x, im.blocks[im.nblocks - 1].x.name);
    err_set(&e, a->net_path,
            "'%s' is read by two nodes whose paths never meet in an Add: a branch cnngen "
            "cannot say (it has residual blocks)",
            x);
    goto fail;
  }
  if (strcmp(im.cur, m.outputs[0].name) != 0) {
    char want[NODE_NAME_MAX + 1], got[NODE_NAME_MAX + 1];
    clean_name(want, sizeof want, m.outputs[0].name);
    clean_name(got, sizeof got, im.cur);
    err_set(&e, a->net_path,
            "the graph's output '%s' is not what its last node writes ('%s'): "
            "not a chain of layers, or a truncated file",
            want, got);
    goto fail;
  }
  Net *net = render(&im, &arena, cnn, &text, &len);
  if (!net)
    goto fail;
  if (!(params = lay_out(&im, net))) {
    e.internal = 1;
    err_set(&e, a->net_path, "the weights do not fit the network written (a bug)");
    goto fail;
  }
  if (write_files(a, net, params, text, len, &e) < 0)
    goto fail;
  goto done;
fail:
  status = cli_fail(&e);
done:
  for (int i = 0; im.lines && i < im.nlines; i++)
    free(im.lines[i].own);
  free(im.lines);
  free(params);
  free(text);
  arena_free(&arena);
  onnx_free(&m);
  return status;
}

const Command cmd_import = {
    .name = "import",
    .summary = "turn an ONNX model into a .cnn file and its weights",
    .help = help,
    .options = OPT(CLI_OUT) | OPT(CLI_WEIGHTS_OUT),
    .required = OPT(CLI_OUT),
    .first = "ONNX model",
    .min_args = 1,
    .max_args = 1,
    .run = run,
};
