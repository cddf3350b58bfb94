/*
 * test_shape.c: shape_check(): output shapes, padding, parameter offsets
 * and counts, MACs, and every shape rule with the token it blames.
 *
 * The parameter tensors of the reference networks in tests/reference are
 * checked against the init.safetensors next to each (names, shapes, total
 * count), and examples/fashion.cnn's network against the PyTorch-trained weights
 * tests/reference/fashion-pytorch.safetensors.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "compile.h"
#include "formats/safetensors.h"
#include "io.h"
#include "testutil.h"

/* The whole file, NUL-terminated (free it); NULL if unreadable. */
static char *read_text(const char *path, size_t *len) {
  Err e = {0};
  return io_read_file(path, len, &e);
}

/* src must fail with its first error at `where` ("line:col") saying `what`. */
static void expect_error(const char *src, const char *where, const char *what) {
  Arena a = {0};
  char *msgs;
  Net *net = tu_compile(&a, "t.cnn", src, strlen(src), &msgs, NULL);
  char head[600];
  snprintf(head, sizeof head, "t.cnn:%s: error: %s", where, what);
  if (net || strncmp(msgs, head, strlen(head)) != 0)
    fail_msg("expected the first error to start with\n%s\ngot:\n%s", head, msgs);
  free(msgs);
  arena_free(&a);
}

static void assert_shape(Shape s, int h, int w, int c, bool vec) {
  if (s.h != h || s.w != w || s.c != c || s.vec != vec)
    fail_msg("shape %dx%dx%d%s, expected %dx%dx%d%s", s.h, s.w, s.c, s.vec ? " (vector)" : "", h, w,
             c, vec ? " (vector)" : "");
}

/* ---- shapes and counts ---- */

static void test_shape_fashion_network(void **state) {
  (void)state;
  size_t len;
  char *src = read_text("examples/fashion.cnn", &len);
  assert_non_null(src);
  Arena a = {0};
  char *msgs;
  Net *net = tu_compile(&a, "examples/fashion.cnn", src, len, &msgs, NULL);
  assert_non_null(net);
  assert_string_equal(net->name, "fashion");
  assert_int_equal(net->nlayers, 8);
  const Layer *l = net->layers;
  assert_shape(l[0].out, 26, 26, 32, false);
  assert_shape(l[1].out, 13, 13, 32, false);
  assert_shape(l[2].out, 11, 11, 64, false);
  assert_shape(l[3].out, 5, 5, 64, false);
  assert_shape(l[4].out, 3, 3, 64, false);
  assert_shape(l[5].out, 1, 1, 576, true);
  assert_shape(l[6].out, 1, 1, 64, true);
  assert_shape(l[7].out, 1, 1, 10, true);
  assert_shape(net->output, 1, 1, 10, true);
  for (int i = 1; i < net->nlayers; i++)
    assert_shape(l[i].in, l[i - 1].out.h, l[i - 1].out.w, l[i - 1].out.c, l[i - 1].out.vec);
  assert_int_equal(net->param_count, 93322); /* Keras' model.summary() */
  /* Conv MACs: outputs x filters x C x KH x KW; dense: in x out. */
  assert_int_equal(l[0].macs, 26 * 26 * 32 * 1 * 9);
  assert_int_equal(l[2].macs, 11 * 11 * 64 * 32 * 9);
  assert_int_equal(l[6].macs, 576 * 64);
  assert_int_equal(l[1].macs, 0);
  assert_int_equal(net->macs, 194688 + 2230272 + 331776 + 36864 + 640);
  free(msgs);
  free(src);
  arena_free(&a);
}

static void test_shape_parameter_offsets(void **state) {
  (void)state;
  Arena a = {0};
  Net *net = tu_compile_ok(&a, "input 6x6x2\n"
                               "conv2d 3 3x3 relu\n" /* w 3*2*9 = 54, b 3 */
                               "maxpool 2x2\n"
                               "flatten\n"
                               "dropout 0.5\n"
                               "dense 4\n" /* w 4*12 = 48, b 4 */
                               "relu\n"
                               "dense 2 softmax\n"); /* w 8, b 2 */
  const Layer *l = net->layers;
  assert_int_equal(l[0].weight_offset, 0);
  assert_int_equal(l[0].weight_count, 54);
  assert_int_equal(l[0].bias_offset, 54);
  assert_int_equal(l[0].bias_count, 3);
  assert_int_equal(l[1].weight_count + l[1].bias_count, 0);
  assert_int_equal(l[4].weight_offset, 57);
  assert_int_equal(l[4].weight_count, 48);
  assert_int_equal(l[4].bias_offset, 105);
  assert_int_equal(l[4].bias_count, 4);
  assert_int_equal(l[6].weight_offset, 109);
  assert_int_equal(l[6].weight_count, 8);
  assert_int_equal(l[6].bias_offset, 117);
  assert_int_equal(l[6].bias_count, 2);
  assert_int_equal(net->param_count, 119);
  /* net_tensors lists them in the same order, PyTorch shapes. */
  TensorInfo ti[6];
  assert_int_equal(net_tensors(net, ti), 6);
  assert_string_equal(ti[0].name, "conv1.weight");
  assert_int_equal(ti[0].rank, 4);
  assert_int_equal(ti[0].shape[0], 3);
  assert_int_equal(ti[0].shape[1], 2);
  assert_string_equal(ti[2].name, "dense1.weight");
  assert_int_equal(ti[2].shape[1], 12);
  assert_int_equal(ti[5].offset, 117);
  arena_free(&a);
}

/* batchnorm: its options, the shape it keeps, its four tensors (weight and
   bias trained, then the running statistics) with PyTorch's names, bn1, ...
   by default; folded into a linear conv/dense right before it, not after a
   conv with its own activation; the activation after it is its own. */
static void test_shape_batchnorm(void **state) {
  (void)state;
  Arena a = {0};
  Net *net = tu_compile_ok(&a, "input 6x6x2\n"
                               "conv2d 3 3x3 bias=false\n" /* w 54 */
                               "batchnorm\n"               /* 3 + 3, stats 6 */
                               "relu\n"
                               "conv2d 4 1x1 relu\n"                           /* w 12, b 4 */
                               "batchnorm momentum=0.25 eps=0.001 name=norm\n" /* 4 + 4, 8 */
                               "globalavgpool\n"
                               "dense 5\n"           /* w 20, b 5 */
                               "batchnorm\n"         /* 5 + 5, 10 */
                               "dense 2 softmax\n"); /* w 10, b 2 */
  const Layer *l = net->layers;
  assert_int_equal(l[1].op, OP_BATCHNORM);
  assert_string_equal(l[1].name, "bn1");
  assert_string_equal(l[4].name, "norm");
  assert_string_equal(l[7].name, "bn3");
  assert_true(l[1].u.bn.momentum == 0.1 && l[1].u.bn.eps == 1e-5);
  assert_true(l[4].u.bn.momentum == 0.25 && l[4].u.bn.eps == 0.001);
  assert_shape(l[1].out, 4, 4, 3, false);
  assert_shape(l[7].out, 1, 1, 5, true);
  assert_int_equal(l[1].weight_offset, 54);
  assert_int_equal(l[1].weight_count, 3);
  assert_int_equal(l[1].bias_offset, 57);
  assert_int_equal(l[1].stats_offset, 60);
  assert_int_equal(l[3].weight_offset, 66);
  assert_int_equal(l[0].stats_offset, -1);
  assert_int_equal(net->param_count, 54 + 12 + 16 + 16 + 25 + 20 + 12);
  TensorInfo ti[19];
  assert_int_equal(net_tensors(net, NULL), 19);
  assert_int_equal(net_tensors(net, ti), 19);
  const char *names[] = {
      "conv1.weight",    "bn1.weight",        "bn1.bias",         "bn1.running_mean",
      "bn1.running_var", "conv2.weight",      "conv2.bias",       "norm.weight",
      "norm.bias",       "norm.running_mean", "norm.running_var", "dense1.weight",
      "dense1.bias",     "bn3.weight",        "bn3.bias",         "bn3.running_mean",
      "bn3.running_var", "dense2.weight",     "dense2.bias"};
  for (int i = 0; i < 19; i++)
    assert_string_equal(ti[i].name, names[i]);
  assert_int_equal(ti[4].rank, 1);
  assert_int_equal(ti[4].shape[0], 3);
  assert_int_equal(ti[4].offset, 63);
  assert_int_equal(ti[4].count, 3);
  /* folding (inference): bn1 into conv1 with the relu after it; not norm,
     after conv2's relu; bn3 into dense1 */
  assert_ptr_equal(l[0].fused_bn, &l[1]);
  assert_true(l[1].fused_away);
  assert_ptr_equal(l[1].fused_act, &l[2]);
  assert_int_equal(l[0].act, ACT_RELU);
  assert_int_equal(l[0].train.act, ACT_LINEAR);
  assert_int_equal(l[1].train.act, ACT_RELU);
  assert_null(l[3].fused_bn);
  assert_false(l[4].fused_away);
  assert_ptr_equal(l[6].fused_bn, &l[7]);
  arena_free(&a);
}

static void test_shape_batchnorm_refusals(void **state) {
  (void)state;
  expect_error("input 4x4x1\nbatchnorm momentum=1.5\n", "2:20",
               "the momentum must be in [0, 1], got '1.5'");
  expect_error("input 4x4x1\nbatchnorm eps=0\n", "2:15", "eps must be in (0, 1], got '0'");
  expect_error("input 4x4x1\nbatchnorm stride=2\n", "2:11",
               "batchnorm has no option 'stride' (expected one of: name, momentum, eps)");
  expect_error("input 4x4x1\nbatchnorm 3\n", "2:11", "too many arguments for batchnorm");
  expect_error("input 4x4x2\nflatten\nbatchnorm\n", "3:1",
               "batchnorm on a flattened image (4x4x2) is not supported");
}

/* groups=G: C/G weights per filter per tap, PyTorch's [F][C/G][KH][KW],
   MACs per output C/G * KH * KW; depthwise (G = C, F = C or 2C); and the
   errors when G does not divide C or F, with the counts that do. */
static void test_shape_groups(void **state) {
  (void)state;
  Arena a = {0};
  Net *net = tu_compile_ok(&a, "input 10x9x6\n"
                               "conv2d 12 3x2 stride=2x1 padding=1x0 groups=3 relu\n" /* 12*2*6 */
                               "conv2d 12 3x3 padding=1 groups=12\n" /* 12*1*9, depthwise */
                               "conv2d 24 3x3 padding=same groups=12 bias=false\n" /* F = 2C */
                               "conv2d 8 1x1 groups=4\n" /* 8*(24/4) */);
  const Layer *l = net->layers;
  assert_int_equal(l[0].weight_count, 144);
  assert_int_equal(l[0].bias_count, 12);
  assert_true(l[0].out.h == 5 && l[0].out.w == 8 && l[0].out.c == 12);
  assert_int_equal(l[0].macs, 5 * 8 * 144);
  assert_int_equal(l[1].weight_count, 108);
  assert_true(l[1].out.h == 5 && l[1].out.w == 8 && l[1].out.c == 12);
  assert_int_equal(l[1].macs, 5 * 8 * 108);
  assert_int_equal(l[2].weight_count, 216);
  assert_int_equal(l[2].bias_count, 0);
  assert_int_equal(l[2].out.c, 24);
  assert_int_equal(l[3].weight_count, 48);
  assert_int_equal(net->param_count, 144 + 12 + 108 + 12 + 216 + 48 + 8);
  TensorInfo ti[7];
  assert_int_equal(net_tensors(net, ti), 7);
  const int shapes[5][4] = {{12, 2, 3, 2}, {0}, {12, 1, 3, 3}, {0}, {24, 1, 3, 3}};
  for (int i = 0; i < 5; i += 2)
    for (int k = 0; k < 4; k++)
      assert_int_equal(ti[i].shape[k], shapes[i][k]);
  assert_string_equal(ti[5].name, "conv4.weight");
  assert_true(ti[5].shape[0] == 8 && ti[5].shape[1] == 24 / 4);
  expect_error("input 8x8x6\nconv2d 12 3x3 groups=4\n", "2:1",
               "groups=4 needs input channels divisible by 4, but the input has 6");
  expect_error("input 8x8x6\nconv2d 10 3x3 groups=3\n", "2:1",
               "groups=3 needs a filter count divisible by 3, got 10");
  const char *notes[][2] = {
      {"input 8x8x6\nconv2d 10 3x3 groups=3\n",
       "note: groups must divide both the 6 input channels and the 10 filters: 1, 2\n"},
      {"input 8x8x4\nconv2d 6 3x3 groups=4\n",
       "note: a depthwise conv (groups=4) needs 4 filters or a multiple; groups may be any of 1, "
       "2 here\n"}};
  for (int i = 0; i < 2; i++) {
    char *msgs;
    assert_null(tu_compile(&a, "t.cnn", notes[i][0], strlen(notes[i][0]), &msgs, NULL));
    if (!strstr(msgs, notes[i][1]))
      fail_msg("expected '%s' in:\n%s", notes[i][1], msgs);
    free(msgs);
  }
  expect_error("input 8x8x4\nconv2d 4 3x3 groups=0\n", "2:21",
               "the group count must be at least 1");
  arena_free(&a);
}

/* A conv's padding, as shape.c filled it: top, bottom, left, right. */
static void assert_pads(const Layer *l, int top, int bottom, int left, int right) {
  assert_int_equal(l->u.conv.pad_top, top);
  assert_int_equal(l->u.conv.pad_bottom, bottom);
  assert_int_equal(l->u.conv.pad_left, left);
  assert_int_equal(l->u.conv.pad_right, right);
}

static void test_shape_same_padding(void **state) {
  (void)state;
  /* TensorFlow: out = ceil(in / s), total = max((out-1)*s + k - in, 0),
     the odd pixel at the bottom/right. */
  static const struct {
    int in, k, s, out, before, after;
  } cases[] = {
      {8, 3, 2, 4, 0, 1}, /* stride 2: one pixel, at the bottom */
      {7, 3, 2, 4, 1, 1}, {5, 4, 1, 5, 1, 2},   {6, 1, 3, 2, 0, 0},
      {5, 5, 2, 3, 2, 2}, {12, 3, 1, 12, 1, 1}, {2, 5, 1, 2, 2, 2}, /* kernel larger than input */
      {9, 2, 3, 3, 0, 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char src[200];
    snprintf(src, sizeof src, "input %dx%dx1\nconv2d 1 %dx%d stride=%d padding=same\n", cases[i].in,
             cases[i].in, cases[i].k, cases[i].k, cases[i].s);
    Arena a = {0};
    Net *net = tu_compile_ok(&a, src);
    const Layer *l = &net->layers[0];
    assert_shape(l->out, cases[i].out, cases[i].out, 1, false);
    assert_pads(l, cases[i].before, cases[i].after, cases[i].before, cases[i].after);
    arena_free(&a);
  }
  /* Height and width on their own. */
  Arena a = {0};
  Net *net = tu_compile_ok(&a, "input 8x7x2\nconv2d 4 3x2 stride=2 padding=same\n");
  const Layer *l = &net->layers[0];
  assert_shape(l->out, 4, 4, 4, false);
  assert_pads(l, 0, 1, 0, 1);
  arena_free(&a);
  /* Each direction with its own stride: down 1 (keeps 8, pads 1 + 1), across 3
     (ceil(7 / 3) = 3, total (3 - 1) * 3 + 2 - 7 = 1, on the right). */
  net = tu_compile_ok(&a, "input 8x7x2\nconv2d 4 3x2 stride=1x3 padding=same\n");
  l = &net->layers[0];
  assert_shape(l->out, 8, 3, 4, false);
  assert_pads(l, 1, 1, 0, 1);
  arena_free(&a);
}

static void test_shape_valid_and_explicit_padding(void **state) {
  (void)state;
  Arena a = {0};
  Net *net = tu_compile_ok(&a, "input 28x28x1\n"
                               "conv2d 6 5x5 padding=2\n"                /* 28 */
                               "conv2d 6 5x5\n"                          /* 24 */
                               "conv2d 6 3x3 stride=2\n"                 /* (24-3)/2+1 = 11 */
                               "conv2d 6 4x2 padding=valid stride=3\n"   /* 3, 4 */
                               "conv2d 6 1 padding=1\n"                  /* 5, 6 */
                               "conv2d 6 3x3 stride=1x2 padding=2x0\n"); /* 7, 2 */
  const Layer *l = net->layers;
  assert_shape(l[0].out, 28, 28, 6, false);
  assert_pads(&l[0], 2, 2, 2, 2);
  assert_shape(l[1].out, 24, 24, 6, false);
  assert_int_equal(l[1].u.conv.pad_top + l[1].u.conv.pad_bottom, 0);
  assert_shape(l[2].out, 11, 11, 6, false);
  assert_shape(l[3].out, 3, 4, 6, false);
  assert_shape(l[4].out, 5, 6, 6, false);
  assert_int_equal(l[4].weight_count, 6 * 6);
  assert_shape(l[5].out, 7, 2, 6, false);
  assert_pads(&l[5], 2, 2, 0, 0);
  arena_free(&a);
}

static void test_shape_pools_and_vectors(void **state) {
  (void)state;
  Arena a = {0};
  Net *net = tu_compile_ok(&a, "input 7x9x3\n"
                               "maxpool 2x2\n"          /* floor: 3x4 */
                               "avgpool 2x3 stride=1\n" /* 2x2 */
                               "dropout 0.1\n"
                               "tanh\n"
                               "globalavgpool\n"
                               "dense 5 sigmoid\n");
  const Layer *l = net->layers;
  assert_shape(l[0].out, 3, 4, 3, false);
  assert_int_equal(l[0].u.pool.sh, 2);
  assert_int_equal(l[0].u.pool.sw, 2);
  assert_shape(l[1].out, 2, 2, 3, false);
  assert_shape(l[2].out, 2, 2, 3, false);
  assert_shape(l[3].out, 2, 2, 3, false);
  assert_shape(l[4].out, 1, 1, 3, true);
  assert_shape(l[5].out, 1, 1, 5, true);
  assert_int_equal(l[5].weight_count, 15);
  net = tu_compile_ok(&a, "input 7x7x3\nmaxpool 3x3 stride=2\nflatten\n");
  assert_shape(net->layers[0].out, 3, 3, 3, false);
  assert_shape(net->output, 1, 1, 27, true);
  arena_free(&a);
}

/* ---- against PyTorch ---- */

/* The network's tensors are exactly those of the PyTorch-written file. */
static void check_tensors(const char *cnn, const char *weights) {
  size_t len;
  char *src = read_text(cnn, &len);
  if (!src)
    fail_msg("cannot read %s", cnn);
  Arena a = {0};
  char *msgs;
  Net *net = tu_compile(&a, cnn, src, len, &msgs, NULL);
  if (!net)
    fail_msg("%s", msgs);
  StFile f;
  Err e = {0};
  if (st_read(weights, &f, &e) < 0)
    fail_msg("%s", e.msg);
  int nt = cli_params(net, NULL);
  StParam *ti = calloc((size_t)nt + 1, sizeof *ti);
  cli_params(net, ti);
  float *params = malloc(((size_t)net->param_count + 1) * sizeof *params);
  if (st_load_params(&f, ti, nt, params, &e) < 0)
    fail_msg("%s: %s", cnn, e.msg);
  long total = 0;
  for (int i = 0; i < f.ntensors; i++) {
    long n = 1;
    for (int d = 0; d < f.tensors[i].rank; d++)
      n *= f.tensors[i].shape[d];
    total += n;
  }
  long offset = 0; /* weight then bias, layer order, no gaps */
  for (int i = 0; i < nt; i++) {
    assert_int_equal(ti[i].offset, offset);
    offset += ti[i].count;
  }
  assert_int_equal(offset, net->param_count);
  assert_int_equal(total, net->param_count);
  st_free(&f);
  free(params);
  free(ti);
  free(msgs);
  free(src);
  arena_free(&a);
}

static void test_shape_reference_nets_match_pytorch(void **state) {
  (void)state;
  for (int i = 0; i < TU_REFERENCE_CASES; i++)
    check_tensors(tu_reference("%s/net.cnn", tu_reference_cases[i]),
                  tu_reference("%s/init.safetensors", tu_reference_cases[i]));
  check_tensors("examples/fashion.cnn", tu_reference("fashion-pytorch.safetensors"));
}

static void test_shape_examples(void **state) {
  (void)state;
  static const struct {
    const char *path;
    long params;
  } examples[] = {
      {"examples/fashion.cnn", 93322},
      {"examples/lenet.cnn", 61706}, /* LeNet-5's well-known count */
      {"examples/cifar.cnn", 896 + 9248 + 18496 + 36928 + (8 * 8 * 64 + 1) * 128 + 129 * 10},
      /* depthwise 3x3 (32 * 9 + 32, 64 * 9 + 64) and pointwise 1x1 in place of 3x3 convs */
      {"examples/separable.cnn", 320 + 320 + 2112 + 640 + 4160 + (3 * 3 * 64 + 1) * 64 + 65 * 10},
      /* stem, two 3x3 32s (identity), 3x3 64s with a 1x1 stride-2 projection, two 3x3 64s,
         all without bias; after each a batchnorm's scale, shift, running mean and variance
         (3 x 32 and 5 x 64 channels) */
      {"examples/resnet.cnn",
       288 + 2 * 9216 + 18432 + 36864 + 2048 + 2 * 36864 + 650 + 4 * (3 * 32 + 5 * 64)},
      /* the stem, then expand, depthwise (C * 9), project per block, the last 1x1, all without
         bias, the classifier; after each conv a batchnorm's scale, shift, running mean and
         variance (896 channels) */
      {"examples/mobilenet.cnn", 144 + (768 + 432 + 1152) + (1728 + 648 + 1728) +
                                     (1728 + 648 + 2880) + (4800 + 1080 + 4800) + 5120 + 1290 +
                                     4 * 896},
  };
  for (size_t i = 0; i < sizeof examples / sizeof examples[0]; i++) {
    size_t len;
    char *src = read_text(examples[i].path, &len);
    assert_non_null(src);
    Arena a = {0};
    char *msgs;
    Net *net = tu_compile(&a, examples[i].path, src, len, &msgs, NULL);
    if (!net)
      fail_msg("%s", msgs);
    assert_int_equal(net->param_count, examples[i].params);
    assert_shape(net->output, 1, 1, 10, true);
    assert_true(net->train.present);
    free(msgs);
    free(src);
    arena_free(&a);
  }
}

/* ---- the rules ---- */

static void test_shape_window_rules(void **state) {
  (void)state;
  expect_error("input 4x4x1\nconv2d 2 5x5\n", "2:10", "kernel 5x5 is larger than its input 4x4x1");
  expect_error("input 4x6x1\nconv2d 2 7x3 padding=1\n", "2:10",
               "kernel 7x3 is larger than its input 4x6x1 (6x8 with padding)");
  expect_error("input 8x8x3\nmaxpool 2x2\nmaxpool 2x2\nmaxpool 2x2\navgpool 2\n", "5:9",
               "window 2x2 is larger than its input 1x1x3");
  expect_error("input 5x5x1\navgpool 1x6 stride=1\n", "2:9", "window 1x6 is larger");
  /* A kernel that fits only thanks to the padding is fine. */
  Arena a = {0};
  Net *net = tu_compile_ok(&a, "input 2x2x1\nconv2d 1 4x4 padding=1\n");
  assert_shape(net->layers[0].out, 1, 1, 1, false);
  arena_free(&a);
}

static void test_shape_vector_rules(void **state) {
  (void)state;
  expect_error("input 28x28x1\nconv2d 8 3x3\n\ndense 10 softmax\n", "4:1",
               "dense needs a vector input but gets 26x26x8");
  expect_error("input 8x8x1\nflatten\nconv2d 2 3x3\n", "3:1",
               "conv2d needs an HxWxC input but gets a vector of 64");
  expect_error("input 8x8x4\nglobalavgpool\nmaxpool 2x2\n", "3:1",
               "maxpool needs an HxWxC input but gets a vector of 4");
  expect_error("input 8x8x4\nglobalavgpool\navgpool 2x2\n", "3:1", "avgpool needs an HxWxC");
  expect_error("input 8x8x4\nflatten\nglobalavgpool\n", "3:1", "globalavgpool needs an HxWxC");
  expect_error("input 8x8x4\nglobalavgpool\nflatten\n", "3:1",
               "flatten needs an HxWxC input but gets a vector of 4");
  /* The note names the line to add flatten before, and the vector's origin. */
  Arena a = {0};
  char *msgs;
  const char *src = "input 8x8x1\nflatten\nconv2d 2 3x3\n";
  tu_compile(&a, "t.cnn", src, strlen(src), &msgs, NULL);
  assert_non_null(strstr(msgs, "t.cnn:2:1: note: the input became a vector here\n"));
  free(msgs);
  src = "input 8x8x1\n\ndense 4\n";
  tu_compile(&a, "t.cnn", src, strlen(src), &msgs, NULL);
  assert_non_null(strstr(msgs, "t.cnn:3:1: note: add 'flatten' before line 3\n"));
  free(msgs);
  arena_free(&a);
}

static void test_shape_softmax_rules(void **state) {
  (void)state;
  expect_error("input 8x8x1\nflatten\ndense 4 softmax\ndense 2\n", "3:9",
               "softmax must be the last layer, but line 4 follows");
  expect_error("input 8x8x1\nflatten\ndense 4\nsoftmax\ndropout 0.5\n", "4:1",
               "softmax must be the last layer, but line 5 follows");
  expect_error("input 8x8x1\nflatten\ndense 4\nactivation softmax\nrelu\n", "4:12",
               "softmax must be the last layer");
  expect_error("input 8x8x1\nconv2d 4 3x3 softmax\n", "2:14",
               "softmax needs a vector but gets 6x6x4");
  expect_error("input 8x8x1\nsoftmax\n", "2:1", "softmax needs a vector but gets 8x8x1");
  /* Last, as an activation layer of its own, counts. */
  Arena a = {0};
  Net *net = tu_compile_ok(&a, "input 8x8x1\nflatten\ndense 4\nsoftmax\ntrain {\n}\n");
  assert_int_equal(net->layers[2].act, ACT_SOFTMAX);
  arena_free(&a);
}

static void test_shape_loss_rules(void **state) {
  (void)state;
  const char *head = "input 8x8x1\nflatten\n";
  char src[400];
  snprintf(src, sizeof src, "%sdense 4 relu\ntrain {\n  loss categorical_crossentropy\n}\n", head);
  expect_error(src, "5:8",
               "categorical_crossentropy needs a softmax output, but the network ends "
               "in relu (line 3)");
  snprintf(src, sizeof src, "%sdense 4\ntrain {\n  batch 8\n}\n", head); /* the default loss */
  expect_error(src, "4:1", "sparse_categorical_crossentropy needs a softmax output");
  snprintf(src, sizeof src, "%sdense 4 softmax\ntrain {\n  loss binary_crossentropy\n}\n", head);
  expect_error(src, "5:8", "binary_crossentropy needs a sigmoid output");
  snprintf(src, sizeof src, "%sdense 1 softmax\ntrain {\n  loss categorical_crossentropy\n}\n",
           head);
  expect_error(src, "5:8", "categorical_crossentropy needs at least 2 classes");
  snprintf(src, sizeof src, "%sdense 4 softmax\ntrain {\n  class_weights 1,2\n}\n", head);
  expect_error(src, "5:17", "class_weights has 2 weights but the network has 4 outputs");
  /* What fits. */
  const char *ok[] = {"dense 4 sigmoid\ntrain {\n  loss binary_crossentropy\n}\n",
                      "dense 1 sigmoid\ntrain {\n  loss binary_crossentropy\n}\n",
                      "dense 4 tanh\ntrain {\n  loss mse\n}\n",
                      "dense 4 softmax\ntrain {\n  loss mse\n  class_weights 1,1,2,2\n}\n",
                      "dense 2 softmax\ntrain {\n  loss categorical_crossentropy\n}\n",
                      "dense 4\n" /* no train block: nothing asks for a loss */};
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    snprintf(src, sizeof src, "%s%s", head, ok[i]);
    Arena a = {0};
    tu_compile_ok(&a, src);
    arena_free(&a);
  }
}

static void test_shape_size_limits(void **state) {
  (void)state;
  expect_error("input 60000x60000x1\nconv2d 1 1\n", "1:1",
               "the input 60000x60000x1 is too large: at most 16384 pixels a side and 67108864 "
               "values in all");
  expect_error("input 46000x46000x1\nconv2d 1 1\n", "1:1", "the input 46000x46000x1 is too large");
  expect_error("input 16385x1x1\nconv2d 1 1\n", "1:1",
               "the input 16385x1x1 is too large: at most 16384 pixels a side");
  expect_error("input 8192x8192x2\nconv2d 1 1\n", "1:1",
               "the input 8192x8192x2 is too large: at most 16384 pixels a side and 67108864");
  expect_error("input 1000x1000x1\nconv2d 4096 1x1\n", "2:1",
               "the output of this layer, 1000x1000x4096, is too large: at most 268435456 values");
  expect_error("input 4096x4096x4\nflatten\ndense 1000\n", "3:1",
               "the network is too large: more than 268435456 parameters");
  expect_error("input 4096x4096x4\nconv2d 16 1x1\nconv2d 16 1x1\nconv2d 16 1x1\nconv2d 16 1x1"
               "\nconv2d 16 1x1\n",
               "6:1",
               "the network is too large: its layers' outputs add up to more than 1073741824");
  /* The layer count: 10000 layers are fine, the next is refused at its line. */
  size_t cap = 12 + 10002 * 5;
  char *src = malloc(cap);
  size_t k = (size_t)snprintf(src, cap, "input 2x2x1\n");
  for (int i = 0; i < 10000; i++)
    k += (size_t)snprintf(src + k, cap - k, "relu\n");
  Arena a = {0};
  tu_compile_ok(&a, src);
  arena_free(&a);
  snprintf(src + k, cap - k, "relu\n");
  expect_error(src, "10002:1", "too many layers: at most 10000 (this is layer 10001 of 10001)");
  free(src);
}

/* Hand-built IR: shape_check refuses values lower.c would never produce. */
static void test_shape_bad_values_in_ir(void **state) {
  (void)state;
  Arena a = {0};
  Net *net = tu_compile_ok(&a, "input 8x8x1\nconv2d 2 3x3\nmaxpool 2x2\nflatten\ndropout 0.5\n"
                               "dense 3\n");
  char *msgs;
  size_t size;
  struct {
    int layer;
    const char *what;
  } cases[] = {{0, "the filter count"}, {0, "the stride"},       {0, "the group count"},
               {1, "the stride"},       {3, "the dropout rate"}, {4, "the number of units"}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    Net copy = *net;
    copy.layers = arena_alloc(&a, (size_t)net->nlayers * sizeof *copy.layers);
    memcpy(copy.layers, net->layers, (size_t)net->nlayers * sizeof *copy.layers);
    Layer *l = &copy.layers[cases[i].layer];
    if (i == 0)
      l->u.conv.filters = 0;
    else if (i == 1)
      l->u.conv.sw = 0;
    else if (i == 2)
      l->u.conv.groups = -1;
    else if (i == 3)
      l->u.pool.sh = 0;
    else if (i == 4)
      l->u.dropout.rate = 1;
    else
      l->u.dense.units = 0;
    FILE *mem = open_memstream(&msgs, &size);
    Diag d;
    diag_init(&d, mem, NULL, 0);
    assert_int_equal(shape_check(&copy, &d), 1);
    fclose(mem);
    if (!strstr(msgs, cases[i].what))
      fail_msg("expected '%s' in: %s", cases[i].what, msgs);
    free(msgs);
  }
  arena_free(&a);
}

/* What lower.c marked as reported is not reported again in other words:
   nothing after a broken layer, nothing on an unknown input, no loss check
   when the loss is unchecked (but the class weights still are). */
static void test_shape_skips_what_lower_reported(void **state) {
  (void)state;
  Arena a = {0};
  /* Two shape errors (dense on an image, softmax not last) and a loss that
     does not fit, class_weights of the wrong count. */
  const char *src = "input 8x8x1\nconv2d 2 3x3\ndense 3 softmax\nrelu\n"
                    "train {\n  loss binary_crossentropy\n  class_weights 1,2\n}\n";
  Diag d;
  diag_init(&d, NULL, src, strlen(src));
  Net *net;
  assert_int_equal(lower(&a, "t.cnn", src, strlen(src), &d, &net), 0);
  Net copy = *net;
  assert_int_equal(shape_check(&copy, &d), 3); /* dense, softmax, class_weights */
  /* The softmax placement needs no shapes; the loss is then not checked
     against the last activation (the same mistake). */
  copy = *net;
  copy.layers[1].broken = true; /* the dense layer */
  assert_int_equal(shape_check(&copy, &d), 1);
  copy.layers[1].broken = false;
  copy.input = (Shape){0, 0, 0, false};
  assert_int_equal(shape_check(&copy, &d), 1);
  /* Without the misplaced softmax: the loss, then unchecked. */
  src = "input 8x8x1\nflatten\ndense 3 softmax\n"
        "train {\n  loss binary_crossentropy\n  class_weights 1,2\n}\n";
  diag_init(&d, NULL, src, strlen(src));
  assert_int_equal(lower(&a, "t.cnn", src, strlen(src), &d, &net), 0);
  assert_int_equal(shape_check(net, &d), 2); /* the loss, class_weights */
  net->train.loss_unchecked = true;
  assert_int_equal(shape_check(net, &d), 1); /* class_weights */
  arena_free(&a);
}

/* ---- what people read ---- */

static void test_shape_summary_table(void **state) {
  (void)state;
  size_t len, size;
  char *src = read_text("examples/fashion.cnn", &len);
  Arena a = {0};
  char *msgs, *out;
  Net *net = tu_compile(&a, "examples/fashion.cnn", src, len, &msgs, NULL);
  assert_non_null(net);
  FILE *mem = open_memstream(&out, &size);
  summary_print(net, mem, " * ");
  fclose(mem);
  /* Every line carries the prefix; each layer its line, text, shape, counts. */
  int lines = 0;
  for (const char *p = out; *p; p = strchr(p, '\n') + 1, lines++)
    assert_memory_equal(p, " * ", 3);
  assert_int_equal(lines, 2 + net->nlayers + 3);
  assert_non_null(strstr(out, "network fashion: input 28x28x1, 10 outputs (softmax)\n"));
  assert_non_null(strstr(out, "    6  conv2d 32 3x3 relu  conv1   26x26x32     320    194,688\n"));
  assert_non_null(strstr(out, "   11  flatten                     576            0          0\n"));
  assert_non_null(strstr(out, "total                                 93,322  2,794,240\n"));
  assert_non_null(strstr(out, "state for training:"));
  assert_null(strstr(out, "*/"));
  free(out);
  free(msgs);
  free(src);
  arena_free(&a);
}

/* v with a comma between groups of three digits, as check prints counts. */
static const char *grouped(char *buf, size_t size, size_t v) {
  if (v < 1000) {
    snprintf(buf, size, "%zu", v);
  } else {
    char head[32];
    snprintf(buf, size, "%s,%03zu", grouped(head, sizeof head, v / 1000), v % 1000);
  }
  return buf;
}

/* With batchnorm, training keeps every image's buffers of a thread's share
   of the batch: check names that figure, NAME_image_bytes() of the
   generated C, and what the train block's batch takes on one thread;
   without, it says nothing of it. */
static void test_shape_summary_counts_batch_statistics_buffers(void **state) {
  (void)state;
  const char *src = "network bns\ninput 10x10x3\nconv2d 8 3x3 bias=false\nbatchnorm\nrelu\n"
                    "maxpool 2x2\nflatten\ndense 5 softmax\ntrain {\n  batch 12\n}\n";
  Arena a = {0};
  Net *net = tu_compile_ok(&a, src);
  size_t size;
  char *out;
  FILE *mem = open_memstream(&out, &size);
  summary_print(net, mem, " * ");
  fclose(mem);
  Program *prog = tu_build_training(net, BACKEND_TCC, false);
  size_t image = tu_call_size(prog, net, "_image_bytes");
  program_free(prog);
  assert_true(image > 0);
  char want[256], n[32];
  snprintf(want, sizeof want, " *   plus %s bytes", grouped(n, sizeof n, image));
  assert_contains(out, want);
  assert_contains(out, " per image of a thread's share of the batch (batch statistics):\n");
  snprintf(want, sizeof want, " *   %s bytes", grouped(n, sizeof n, 12 * image));
  assert_contains(out, want);
  assert_contains(out, " for batch 12 on one thread; on T threads, ceil(12 / T) images each\n");
  free(out);
  arena_free(&a);
  /* no batchnorm: no such line */
  net = tu_compile_ok(&a, "input 10x10x3\nconv2d 8 3x3\nflatten\ndense 5 softmax\n");
  mem = open_memstream(&out, &size);
  summary_print(net, mem, "");
  fclose(mem);
  assert_null(strstr(out, "batch statistics"));
  free(out);
  arena_free(&a);
}

static void test_shape_dump_ir_after_each_pass(void **state) {
  (void)state;
  const char *src = "input 6x6x1\nconv2d 2 3x3 padding=same relu\nmaxpool 2x2\nflatten\n"
                    "dense 3 softmax\ntrain {\n  schedule cosine min_lr=0.01 warmup=2\n"
                    "  validation 0.2\n  early_stopping patience=4\n}\n";
  size_t size;
  char *out;
  FILE *mem = open_memstream(&out, &size);
  Arena a = {0};
  Diag d;
  diag_init(&d, stderr, src, strlen(src));
  CompileOptions opt = {.dump_ir = mem};
  assert_non_null(compile(&a, "t.cnn", src, strlen(src), &opt, &d));
  fclose(mem);
  const char *lower = strstr(out, "== IR after lower:"), *shape = strstr(out, "== IR after shape:");
  const char *fuse = strstr(out, "== IR after fuse:"), *plan = strstr(out, "== IR after plan:");
  assert_true(lower && shape && fuse && plan && lower < shape && shape < fuse && fuse < plan);
  assert_non_null(strstr(shape, "padding same  pads top 1 left 1 bottom 1 right 1"));
  assert_non_null(strstr(shape, "in 6x6x1  out 6x6x2  act relu"));
  assert_non_null(strstr(lower, "schedule cosine min_lr 0.01 warmup 2  label_smoothing 0  "
                                "validation 0.2  early_stopping patience 4 min_delta 0\n"));
  free(out);
  arena_free(&a);
}

/* Residual blocks: the linear list lower.c makes of them (fork, main path,
   shortcut, its path, add), their layers numbered with the others in
   source order, the depth check indents by, the shapes, check's table; the
   inference plan keeps the block's input alive until the add, and a relu
   first on the main path does not work on it in place. */
static const char nested_src[] = "input 8x8x4\n"                 /* line 1 */
                                 "conv2d 4 3x3 padding=same\n"    /* 2 */
                                 "residual {\n"                   /* 3 */
                                 "  relu\n"                       /* 4 */
                                 "  conv2d 8 3x3 stride=2 padding=same relu\n"
                                 "  residual {\n"                 /* 6 */
                                 "    conv2d 8 3x3 padding=same\n"
                                 "  }\n"
                                 "  shortcut {\n"                 /* 9 */
                                 "    conv2d 8 1x1 stride=2\n"
                                 "  }\n"
                                 "}\n"
                                 "relu\n"                         /* 13 */
                                 "flatten\n"
                                 "dense 3 softmax\n";

static void test_shape_residual_blocks(void **state) {
  (void)state;
  Arena a = {0};
  Net *net = tu_compile_ok(&a, nested_src);
  const Layer *l = net->layers;
  const OpKind ops[] = {OP_CONV2D, OP_RESIDUAL, OP_ACT,   OP_CONV2D, OP_RESIDUAL, OP_CONV2D,
                        OP_ADD,    OP_SHORTCUT, OP_CONV2D, OP_ADD,    OP_ACT,      OP_FLATTEN,
                        OP_DENSE};
  const int depth[] = {0, 0, 1, 1, 1, 2, 1, 1, 2, 0, 0, 0, 0};
  const char *names[] = {"conv1", "", "", "conv2", "", "conv3", "", "", "conv4", "", "", "",
                         "dense1"};
  assert_int_equal(net->nlayers, 13);
  for (int i = 0; i < net->nlayers; i++) {
    assert_int_equal(l[i].op, ops[i]);
    assert_int_equal(l[i].depth, depth[i]);
    assert_string_equal(l[i].name, names[i]);
  }
  /* The outer block: fork #1, shortcut #7, add #9; the inner one has none. */
  assert_int_equal(l[1].u.block.shortcut, 7);
  assert_int_equal(l[1].u.block.add, 9);
  assert_int_equal(l[7].u.block.fork, 1);
  assert_int_equal(l[9].u.block.fork, 1);
  assert_int_equal(l[4].u.block.shortcut, -1);
  assert_int_equal(l[6].u.block.fork, 4);
  assert_int_equal(l[3].loc.line, 5);
  assert_int_equal(l[8].loc.line, 10);
  /* Shapes: the shortcut starts again from the block's input. */
  assert_int_equal(l[6].out.h, 4);
  assert_int_equal(l[7].out.h, 8);
  assert_int_equal(l[7].out.c, 4);
  assert_int_equal(l[9].out.h, 4);
  assert_int_equal(l[9].out.c, 8);
  assert_int_equal(net->param_count, 148 + 296 + 584 + 40 + 387);
  /* The relu after the outer block folds into its add. */
  assert_ptr_equal(l[9].fused_act, &l[10]);
  assert_int_equal(l[9].act, ACT_RELU);
  /* Inference: conv1's output is the outer block's x. The relu first on
     the main path gets a tensor of its own; x lives until the shortcut's
     conv reads it, and the main path's output (the inner add's) until the
     outer add. */
  const long x = l[0].infer_out_offset, m = l[6].infer_out_offset;
  assert_true(x >= 0 && m >= 0);
  assert_int_equal(l[1].infer_out_offset, x); /* the fork: a view */
  assert_true(l[2].infer_out_offset != x);
  assert_int_equal(l[7].infer_out_offset, x); /* the shortcut takes x up again */
  const long sc = l[8].infer_out_offset;
  assert_true(sc + 4 * 4 * 8 <= m || m + 4 * 4 * 8 <= sc);
  assert_true(sc + 4 * 4 * 8 <= x || x + 8 * 8 * 4 <= sc);
  /* Training: the fork and the shortcut keep no output of their own. */
  assert_false(l[1].train.own_output);
  assert_false(l[7].train.own_output);
  assert_true(l[9].train.own_output);
  /* check: blocks indented, the add as the block's '}' */
  char *out;
  size_t size;
  FILE *mem = open_memstream(&out, &size);
  summary_print(net, mem, "");
  fclose(mem);
  assert_non_null(strstr(out, "\n    3  residual {  "));
  assert_non_null(strstr(out, "\n    5    conv2d 8 3x3 stride=2 padding=same relu  conv2   4x4x8"));
  assert_non_null(strstr(out, "\n    7      conv2d 8 3x3 padding=same  "));
  assert_non_null(strstr(out, "\n    9    shortcut {  "));
  assert_non_null(strstr(out, "\n   10      conv2d 8 1x1 stride=2  "));
  assert_non_null(strstr(out, "\n    3  } +  "));
  free(out);
  arena_free(&a);
}

/* The training plan is a pass (plan.c) that fills Layer.train: which layers
   run, run backward, compute dx, transpose their weights, pair with a
   maxpool; the output activation goes to the loss. */
static void test_shape_training_plan(void **state) {
  (void)state;
  Arena a = {0};
  Net *net = tu_compile_ok(&a, "input 12x12x1\nconv2d 8 3x3 relu\nmaxpool 2x2\n"
                               "conv2d 16 3x3 padding=same\nrelu\nmaxpool 2x2\nflatten\n"
                               "dense 10\nsoftmax\n");
  assert_non_null(net);
  const Layer *l = net->layers;
  assert_int_equal(net->nlayers, 8);
  /* conv1: the first with weights, so no dx */
  assert_true(l[0].train.runs && l[0].train.backward && !l[0].train.dx);
  assert_int_equal(l[0].train.act, ACT_RELU);
  /* maxpool after conv1: KW * C = 3 < 16, so it runs its own backward */
  assert_true(l[1].train.runs && l[1].train.dx && !l[1].train.pooled);
  assert_null(l[0].train.pool);
  /* conv2 (padded, 8 input channels): transposed weights, paired with its pool */
  assert_true(l[2].train.dx && l[2].train.transposed);
  assert_int_equal(l[2].train.ph, 7); /* 5 rows and a zero each side */
  assert_ptr_equal(l[2].train.pool, &l[4]);
  assert_true(l[4].train.pooled);
  assert_false(l[3].train.runs); /* the relu folded into conv2 */
  assert_int_equal(l[2].train.act, ACT_RELU);
  /* flatten before a dense: the same floats */
  assert_true(l[5].train.runs && !l[5].train.own_output && !l[5].train.chw);
  /* the trailing softmax is the loss's; the dense before it runs linear */
  assert_false(l[7].train.runs);
  assert_int_equal(net->train_out_act, ACT_SOFTMAX);
  assert_int_equal(l[6].train.act, ACT_LINEAR);
  assert_true(l[6].train.own_output);
  int index = 0;
  for (int i = 0; i < net->nlayers; i++)
    if (l[i].train.runs)
      assert_int_equal(l[i].train.index, index++);
  /* gradients: the largest of every running layer's output and (padded) input */
  assert_int_equal(net->train_grad_floats, 10 * 10 * 8);
  assert_int_equal(net->opt_slots, 2); /* the default optimizer, adam: m and v */
  arena_free(&a);
}

/* Grouped convs transpose their weights for the input gradient where a
   group has 8 or more channels, each group's [F][C/G] (not a depthwise
   conv's one channel, not a pool after a grouped conv). */
static void test_shape_training_plan_groups(void **state) {
  (void)state;
  Arena a = {0};
  Net *net = tu_compile_ok(&a, "input 8x8x16\nconv2d 16 3x3 relu\n"
                               "conv2d 32 3x3 groups=2 relu\nmaxpool 2x2\n"
                               "conv2d 32 3x3 padding=1 groups=8\n"
                               "conv2d 32 3x3 padding=1 groups=32\nflatten\ndense 4\n");
  assert_non_null(net);
  const Layer *l = net->layers;
  assert_true(l[1].train.dx && l[1].train.transposed);  /* 8 channels a group */
  assert_null(l[1].train.pool);                         /* a grouped conv pairs with no pool */
  assert_true(l[3].train.dx && !l[3].train.transposed); /* 4 channels a group */
  assert_true(l[4].train.dx && !l[4].train.transposed); /* depthwise */
  arena_free(&a);
}

/* The op table (ops.h): every row answers what the passes ask of its kind,
   so that no layer kind falls through to another's code; a row with
   weights gives its tensor, whose PyTorch shape and [o][c][k] view count
   the floats shape.c placed. */
static void test_shape_op_table_rows_complete(void **state) {
  (void)state;
  for (int op = 0; op < OP_COUNT; op++) {
    const OpModule *m = op_modules[op];
    assert_non_null(m);
    assert_non_null(m->shape);
    assert_non_null(m->backward_call);
    assert_true(m->forward || m->infer_identity); /* else inference has nothing to call */
    assert_true(!m->takes_act || m->applies_act);
    if (!m->weights) {
      assert_null(m->counts);
      continue;
    }
    assert_non_null(m->prefix);
    assert_non_null(m->counts);
    assert_non_null(m->tensor);
    assert_non_null(m->weight_comment);
    assert_non_null(m->train_functions);
  }
  Arena a = {0};
  Net *net = tu_compile_ok(&a, "input 9x9x2\nconv2d 3 2x3 stride=2\nflatten\ndense 4 relu\n"
                               "dense 5 bias=false softmax\n");
  assert_non_null(net);
  for (int i = 0; i < net->nlayers; i++) {
    const Layer *l = &net->layers[i];
    if (!op_modules[l->op]->weights)
      continue;
    OpTensor t;
    op_modules[l->op]->tensor(net, l, &t);
    long size = 1;
    for (int d = 0; d < t.rank; d++)
      size *= t.shape[d];
    assert_int_equal(size, l->weight_count);
    assert_int_equal((long)t.o * t.c * t.k, l->weight_count);
    assert_int_equal(t.o, l->out.c);
  }
  arena_free(&a);
}

/* net_tensors writes as many entries as it counts: a last layer without a
   bias writes no bias entry past them. */
static void test_shape_tensor_list_fits_its_count(void **state) {
  (void)state;
  Arena a = {0};
  Net *net = tu_compile_ok(&a, "input 4x4x1\nflatten\ndense 3 bias=false\n");
  assert_non_null(net);
  int n = net_tensors(net, NULL);
  assert_int_equal(n, 1);
  TensorInfo ti[2];
  memset(ti, 0, sizeof ti);
  snprintf(ti[1].name, sizeof ti[1].name, "untouched");
  assert_int_equal(net_tensors(net, ti), 1);
  assert_string_equal(ti[0].name, "dense1.weight");
  assert_string_equal(ti[1].name, "untouched");
  arena_free(&a);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_shape_op_table_rows_complete),
      cmocka_unit_test(test_shape_tensor_list_fits_its_count),
      cmocka_unit_test(test_shape_training_plan),
      cmocka_unit_test(test_shape_training_plan_groups),
      cmocka_unit_test(test_shape_residual_blocks),
      cmocka_unit_test(test_shape_fashion_network),
      cmocka_unit_test(test_shape_parameter_offsets),
      cmocka_unit_test(test_shape_groups),
      cmocka_unit_test(test_shape_same_padding),
      cmocka_unit_test(test_shape_valid_and_explicit_padding),
      cmocka_unit_test(test_shape_pools_and_vectors),
      cmocka_unit_test(test_shape_reference_nets_match_pytorch),
      cmocka_unit_test(test_shape_examples),
      cmocka_unit_test(test_shape_window_rules),
      cmocka_unit_test(test_shape_vector_rules),
      cmocka_unit_test(test_shape_softmax_rules),
      cmocka_unit_test(test_shape_loss_rules),
      cmocka_unit_test(test_shape_size_limits),
      cmocka_unit_test(test_shape_bad_values_in_ir),
      cmocka_unit_test(test_shape_skips_what_lower_reported),
      cmocka_unit_test(test_shape_summary_table),
      cmocka_unit_test(test_shape_summary_counts_batch_statistics_buffers),
      cmocka_unit_test(test_shape_batchnorm),
      cmocka_unit_test(test_shape_batchnorm_refusals),
      cmocka_unit_test(test_shape_dump_ir_after_each_pass),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
