/*
 * test_onnx.c: `cnngen import` and `cnngen export`.
 *
 * The models in tests/onnx were exported by PyTorch (tests/onnx/make-models:
 * a LeNet-like network at opset 9; colour input with per-direction stride
 * and padding, bias=False, a Pad before an AveragePool and Gemm with
 * transB=0 at opset 13; Reshape to [-1, K] with MatMul + Add and MatMul
 * alone at opset 17; a small ResNet with both shortcut kinds at opset 13;
 * a depthwise-separable network with batch norms after convs and not, at
 * opset 15), and one that onnx.helper built with what PyTorch does not
 * write (weights as Constant nodes, Identity, a BatchNormalization with
 * ONNX's default attributes, Dropout's ratio as an attribute at opset 9).
 * Each is imported and run by `cnngen predict` to PyTorch's float64
 * outputs within tests/reference/check's tolerances, with a train block to
 * start from whose loss fits the output. The round trip import(export(net))
 * gives the same .cnn layers, the same weights and the same outputs, for
 * tests/onnx/every.cnn (every layer and option), flat.cnn, blocks.cnn and
 * each imported PyTorch model. Files that
 * are not ONNX, truncated or random, and graphs cnngen cannot say are
 * refused with one line naming the file (and the node, its op and the
 * attribute), and nothing is written. ONNX Runtime and onnx.checker are in
 * test_onnx_peers.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/safetensors.h"
#include "testutil.h"

enum { MAX_OUTPUTS = 4096 };

static const char *const models[] = {"lenet",     "strided", "matmul",
                                     "constants", "resnet",  "depthwise"};

/* Lines the imported .cnn must hold, per model: a layer with its fused
   activation and the comment naming its nodes. */
static const char *const model_lines[][4] = {
    {"conv2d 4 5x5 padding=2 relu      # /c1/Conv (Conv), /Relu (Relu)\n",
     "maxpool 2x2                      # /MaxPool (MaxPool)\n",
     "flatten                          # /Flatten (Flatten)\n",
     "dense 10 softmax                 # /f2/Gemm (Gemm), /Softmax (Softmax)\n"},
    {"conv2d 6 3x3 stride=2x1 padding=1x2 bias=false tanh # /c1/Conv (Conv), /Tanh (Tanh)\n",
     "# /Pad (Pad): pads nothing\navgpool 2x3 stride=1x2           # /AveragePool (AveragePool)\n",
     "relu                             # /Relu (Relu)\n",
     "globalavgpool                    # /GlobalAveragePool (GlobalAveragePool)\n"
     "# /Flatten (Flatten): the input is a vector already\ndense 4                          # "
     "/Gemm (Gemm)\n"},
    {"input 9x9x1                      # image [N, 1, 9, 9]\n",
     "maxpool 3x3 stride=2             # /MaxPool (MaxPool)\n",
     "flatten                          # /Reshape (Reshape)\n",
     "dense 12 tanh                    # /MatMul (MatMul), /Add (Add), /Tanh (Tanh)\n"
     "dense 6 bias=false softmax       # /MatMul_1 (MatMul), /Softmax (Softmax)\n"},
    {"# id0 (Identity): passes its input on\n"
     "conv2d 3 3x3 stride=2x1 padding=1x0 sigmoid # conv0 (Conv), sig0 (Sigmoid)\n"
     "batchnorm momentum=0.1 eps=1e-05 # bn0 (BatchNormalization)\n",
     "flatten                          # flat0 (Flatten)\n",
     "dropout 0.2                      # drop0 (Dropout)\n",
     "dense 4                          # gemm0 (Gemm)\n"},
    {"residual {                       # /a1/Conv (Conv): the first node of a block\n"
     "  conv2d 4 3x3 padding=1 relu    # /a1/Conv (Conv), /Relu_1 (Relu)\n",
     "}                                # /Add (Add): main path + the block's input\n"
     "relu                             # /Relu_2 (Relu)\n",
     "  shortcut {                     # /proj/Conv (Conv): reads the block's input again\n"
     "    conv2d 6 1x1 stride=2 bias=false # /proj/Conv (Conv)\n"
     "  }                              # /Add_1 (Add): the end of the shortcut\n",
     "}                                # /Add_1 (Add): main path + shortcut\n"},
    {"conv2d 8 3x3 padding=1 groups=8 bias=false # /dw1/Conv (Conv)\n"
     "batchnorm momentum=0.1 eps=1e-05 # /bn1/BatchNormalization (BatchNormalization)\n"
     "relu                             # /Relu_1 (Relu)\n"
     "conv2d 16 1x1 bias=false         # /pw1/Conv (Conv)\n",
     "conv2d 32 3x3 stride=2 padding=1 groups=16 bias=false # /dw2/Conv (Conv)\n",
     "maxpool 2x2                      # /MaxPool (MaxPool)\n"
     "batchnorm momentum=0.1 eps=1e-05 # /bn4/BatchNormalization (BatchNormalization)\n",
     "# /Flatten (Flatten): the input is a vector already\n"
     "batchnorm momentum=0.1 eps=1e-05 # /bn5/BatchNormalization (BatchNormalization)\n"
     "dense 5 softmax                  # /fc/Gemm (Gemm), /Softmax (Softmax)\n"},
};

/* The loss of each model's train block: from its output's activation. */
static const char *const model_losses[] = {
    "sparse_categorical_crossentropy", "mse", "sparse_categorical_crossentropy", "mse", "mse",
    "sparse_categorical_crossentropy"};

static void test_onnx_import_pytorch_models(void **state) {
  (void)state;
  static double got[MAX_OUTPUTS], want[MAX_OUTPUTS];
  static char text[1 << 16];
  for (size_t i = 0; i < sizeof models / sizeof models[0]; i++) {
    const char *m = models[i];
    assert_int_equal(tu_run("import %s/tests/onnx/%s.onnx -o %s.cnn --weights-out %s.safetensors",
                            tu_repo, m, m, m),
                     0);
    char cnn[64];
    snprintf(cnn, sizeof cnn, "%s.cnn", m);
    tu_read_file(tu_path(cnn), text, sizeof text);
    for (int k = 0; k < 4; k++)
      assert_contains(text, model_lines[i][k]);
    char train[200];
    snprintf(train, sizeof train,
             "train {\n  loss      %s\n  optimizer adam lr=0.001\n  batch     32\n"
             "  epochs    5\n}\n",
             model_losses[i]);
    assert_contains(text, train);
    assert_int_equal(tu_run("predict %s.cnn --weights %s.safetensors --json "
                            "%s/tests/onnx/%s-images-idx3-ubyte",
                            m, m, tu_repo, m),
                     0);
    int n = tu_outputs(tu_out, got, MAX_OUTPUTS);
    char expected[1200];
    snprintf(expected, sizeof expected, "%s/tests/onnx/%s.expected.jsonl", tu_repo, m);
    tu_read_file(expected, text, sizeof text);
    assert_int_equal(tu_outputs(text, want, MAX_OUTPUTS), n);
    assert_true(n > 0);
    double worst = tu_compare_outputs(m, got, want, n);
    print_message("%s: %d outputs, largest difference from PyTorch (float64) %.3g\n", m, n, worst);
  }
}

/* The networks of the round trip, in tests/onnx (every.cnn has every layer
   and option of the language). */
static const char *const round_trip_nets[] = {"every", "flat", "blocks"};

/* tests/onnx/NAME.cnn's text (a static buffer). */
static const char *net_text(const char *name) {
  static char text[1 << 14];
  char path[1100];
  snprintf(path, sizeof path, "%s/tests/onnx/%s.cnn", tu_repo, name);
  tu_read_file(path, text, sizeof text);
  return text;
}

/* The statements of a .cnn file, one per line, comments and blanks out. */
static void statements(const char *text, char *out, size_t cap) {
  size_t k = 0;
  for (const char *p = text; *p;) {
    size_t n = strcspn(p, "#\n");
    while (n && p[n - 1] == ' ')
      n--;
    if (n && k + n + 2 < cap) {
      memcpy(out + k, p, n);
      k += n;
      out[k++] = '\n';
    }
    p += strcspn(p, "\n");
    p += *p == '\n';
  }
  out[k] = 0;
}

/* The statements before a train block (which import writes as a starting
   point, and a network's source may lack). */
static void layer_statements(const char *text, char *out, size_t cap) {
  statements(text, out, cap);
  char *train = strstr(out, "train {\n");
  if (train && (train == out || train[-1] == '\n'))
    *train = 0;
}

/* import(export(imported)) for the PyTorch models: the same .cnn, train
   block included, the same weights, the same outputs. */
static void test_onnx_round_trip_of_pytorch_models(void **state) {
  (void)state;
  static char text[1 << 16], a[1 << 14], b[1 << 14], first[1 << 16];
  assert_int_equal(tu_shell("mkdir -p rt"), 0);
  for (size_t i = 0; i < sizeof models / sizeof models[0]; i++) {
    const char *m = models[i];
    assert_int_equal(tu_run("import %s/tests/onnx/%s.onnx -o rt/%s.cnn --weights-out "
                            "rt/%s.safetensors",
                            tu_repo, m, m, m),
                     0);
    assert_int_equal(tu_run("export rt/%s.cnn --weights rt/%s.safetensors -o rt.onnx", m, m), 0);
    assert_int_equal(tu_run("import rt.onnx -o %s.cnn --weights-out back.safetensors", m), 0);
    char path[64];
    snprintf(path, sizeof path, "rt/%s.cnn", m);
    tu_read_file(tu_path(path), text, sizeof text);
    statements(text, a, sizeof a);
    snprintf(path, sizeof path, "%s.cnn", m);
    tu_read_file(tu_path(path), text, sizeof text);
    statements(text, b, sizeof b);
    assert_string_equal(b, a);
    char weights[64];
    snprintf(weights, sizeof weights, "rt/%s.safetensors", m);
    assert_true(tu_same_tensors(weights, "back.safetensors"));
    /* one backend for both: auto may take cc for one and tcc for the other */
    assert_int_equal(tu_run("predict rt/%s.cnn --weights rt/%s.safetensors --backend tcc --json "
                            "%s/tests/onnx/%s-images-idx3-ubyte",
                            m, m, tu_repo, m),
                     0);
    snprintf(first, sizeof first, "%s", tu_out);
    assert_int_equal(tu_run("predict %s.cnn --weights back.safetensors --backend tcc --json "
                            "%s/tests/onnx/%s-images-idx3-ubyte",
                            m, tu_repo, m),
                     0);
    assert_string_equal(tu_out, first);
  }
}

/* The train block import writes fits the output: sigmoid outputs (labels)
   get binary cross-entropy; a softmax of one output, which has no classes
   to tell apart, mse (sparse cross-entropy would not check), as the help
   says. */
static void test_onnx_import_train_block_fits_the_output(void **state) {
  (void)state;
  static char text[1 << 14];
  tu_random_net("labels",
                "network labels\ninput 6x6x1\nconv2d 2 3x3 relu\nflatten\n"
                "dense 3 sigmoid\n",
                2);
  assert_int_equal(tu_run("export labels.cnn --weights labels.safetensors -o labels.onnx"), 0);
  assert_int_equal(tu_run("import labels.onnx -o back.cnn"), 0);
  tu_read_file(tu_path("back.cnn"), text, sizeof text);
  assert_contains(text, "# A starting point for cnngen train: the ONNX model holds no training\n"
                        "# recipe. The loss fits sigmoid outputs (labels); the rest are\n"
                        "# the language's defaults.\n"
                        "train {\n  loss      binary_crossentropy\n");
  assert_int_equal(tu_run("check back.cnn"), 0);
  tu_random_net("one", "network one\ninput 6x6x1\nflatten\ndense 1 softmax\n", 2);
  assert_int_equal(tu_run("export one.cnn --weights one.safetensors -o one.onnx"), 0);
  assert_int_equal(tu_run("import one.onnx -o back.cnn"), 0);
  tu_read_file(tu_path("back.cnn"), text, sizeof text);
  assert_contains(text, "train {\n  loss      mse\n");
  assert_int_equal(tu_run("help import"), 0); /* and its help says so */
  assert_contains(tu_out, "mse too for a softmax of one output");
}

static void test_onnx_round_trip(void **state) {
  (void)state;
  static char text[1 << 16], a[1 << 14], b[1 << 14], first[1 << 16];
  for (size_t i = 0; i < sizeof round_trip_nets / sizeof round_trip_nets[0]; i++) {
    const char *name = round_trip_nets[i], *src = net_text(name);
    tu_random_net("orig", src, 7);
    assert_int_equal(tu_run("export orig.cnn --weights orig.safetensors -o net.onnx"), 0);
    assert_string_equal(tu_out, "");
    /* -o names the network: the original's name back. */
    assert_int_equal(tu_run("import net.onnx -o %s.cnn --weights-out back.safetensors", name), 0);
    char cnn[64];
    snprintf(cnn, sizeof cnn, "%s.cnn", name);
    tu_read_file(tu_path(cnn), text, sizeof text);
    layer_statements(src, a, sizeof a);
    layer_statements(text, b, sizeof b);
    assert_string_equal(b, a);
    /* flat's output is linear, the others' softmax */
    assert_contains(text, strcmp(name, "flat") == 0
                              ? "  loss      mse\n"
                              : "  loss      sparse_categorical_crossentropy\n");
    assert_true(tu_same_tensors("orig.safetensors", "back.safetensors"));
    assert_int_equal(tu_run("predict orig.cnn --weights orig.safetensors --json orig-images"), 0);
    snprintf(first, sizeof first, "%s", tu_out);
    assert_int_equal(tu_run("predict %s --weights back.safetensors --json orig-images", cnn), 0);
    assert_string_equal(tu_out, first);
  }
}

/* A refused run: exit 1, one line naming the file, nothing written. */
static void refused(const char *file, const char *fragment) {
  char head[1200];
  snprintf(head, sizeof head, "cnngen: error: %s: ", file);
  if (strncmp(tu_err, head, strlen(head)) != 0)
    fail_msg("expected a message starting \"%s\", got:\n%s", head, tu_err);
  assert_int_equal(tu_count(tu_err, "\n"), 1);
  assert_contains(tu_err, fragment);
  assert_false(tu_exists("out.cnn"));
  assert_false(tu_exists("out.safetensors"));
}

static void test_onnx_import_refuses_what_cnngen_cannot_say(void **state) {
  (void)state;
  static const char *const cases[][2] = {
      {"fork3", "node 'c0' (Conv): 'x' is read by 3 nodes: a cnngen residual block forks in two"},
      {"addself", "node 'add0' (Add): adds two tensors that are not the two paths of a residual "
                  "block (a branch cnngen cannot say)"},
      {"concat", "node 'cat0' (Concat): cnngen has no layer for this op"},
      {"dilation", "node 'c0' (Conv): attribute 'dilations' is 2x2: cnngen's conv2d has no "
                   "dilation"},
      {"asympad", "node 'c0' (Conv): attribute 'pads' is [1, 0, 0, 0]: asymmetric padding"},
      {"groupchannels", "node 'c0' (Conv): attribute 'group' is 3: it must divide the input's 2 "
                        "channels"},
      {"bntraining", "node 'bn0' (BatchNormalization): attribute 'training_mode' is 1: cnngen "
                     "imports inference's batch norm"},
      {"bigkernel", "'conv2d 2 7x7 bias=false' (from big (Conv)) does not check: kernel 7x7 "
                    "is larger than its input 5x5x1"},
      {"twoinputs", "the graph has 2 inputs: cnngen networks take one image"},
      {"rank3", "input 'x' is not a 4-D image [N, C, H, W]"},
      {"intinput", "input 'x' is not float (element type 7)"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char file[1100];
    snprintf(file, sizeof file, "%s/tests/onnx/refuse-%s.onnx", tu_repo, cases[i][0]);
    assert_int_equal(tu_run("import %s -o out.cnn --weights-out out.safetensors", file), 1);
    refused(file, cases[i][1]);
  }
}

static void test_onnx_import_refuses_truncated_and_random_files(void **state) {
  (void)state;
  static char model[1 << 16];
  char src[1100];
  snprintf(src, sizeof src, "%s/tests/onnx/lenet.onnx", tu_repo);
  FILE *f = fopen(src, "rb");
  assert_non_null(f);
  size_t len = fread(model, 1, sizeof model, f);
  fclose(f);
  assert_true(len > 5000 && len < sizeof model);
  /* Cut inside the header, the nodes, the initializers' data, the opset. */
  size_t cuts[] = {0, 1, 7, 40, 100, 300, 1000, 2500, 5000, len / 2, len - 64, len - 5, len - 1};
  for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
    f = fopen(tu_path("cut.onnx"), "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(model, 1, cuts[i], f), cuts[i]);
    fclose(f);
    if (tu_run("import cut.onnx -o out.cnn --weights-out out.safetensors") != 1)
      fail_msg("cut at %zu of %zu bytes: exit status not 1:\n%s", cuts[i], len, tu_err);
    refused("cut.onnx", "");
  }
  uint32_t r = 7;
  f = fopen(tu_path("random.onnx"), "wb");
  assert_non_null(f);
  for (int i = 0; i < 4096; i++) {
    r = r * 1664525u + 1013904223u;
    fputc((int)(r >> 24), f);
  }
  fclose(f);
  assert_int_equal(tu_run("import random.onnx -o out.cnn --weights-out out.safetensors"), 1);
  refused("random.onnx", "not an ONNX model");
  tu_write_text("text.onnx", "network lenet\ninput 28x28x1\n");
  assert_int_equal(tu_run("import text.onnx -o out.cnn"), 1);
  refused("text.onnx", "not an ONNX model");
  assert_int_equal(tu_run("import missing.onnx -o out.cnn"), 1);
  refused("missing.onnx", "");
}

static void test_onnx_import_and_export_options(void **state) {
  (void)state;
  /* The model and -o are required; the output may not be the input. */
  assert_int_equal(tu_run("import -o x.cnn"), 1);
  assert_contains(tu_err, "cnngen: error: import: no ONNX model given (usage: cnngen import");
  assert_int_equal(tu_run("import %s/tests/onnx/lenet.onnx", tu_repo), 1);
  assert_contains(tu_err, "-o");
  tu_write_text("copy.onnx", "");
  assert_int_equal(tu_run("import copy.onnx -o copy.onnx"), 1);
  assert_contains(tu_err, "-o");
  /* Without --weights-out only the .cnn is written. */
  assert_int_equal(tu_run("import %s/tests/onnx/lenet.onnx -o only.cnn", tu_repo), 0);
  assert_true(tu_exists("only.cnn"));
  assert_int_equal(tu_run("check only.cnn"), 0);
  assert_int_equal(
      tu_run("import %s/tests/onnx/lenet.onnx -o lw.cnn --weights-out lw.safetensors", tu_repo), 0);

  tu_random_net("exp", net_text("flat"), 1);
  assert_int_equal(tu_run("export exp.cnn -o exp.onnx"), 1);
  assert_contains(tu_err, "--weights");
  assert_int_equal(tu_run("export exp.cnn --weights exp.safetensors"), 1);
  assert_contains(tu_err, "-o");
  assert_int_equal(tu_run("export exp.cnn --weights exp.safetensors -o exp.cnn"), 1);
  assert_contains(tu_err, "-o");
  /* Weights for another network, and a network whose output is an image. */
  assert_int_equal(tu_run("export exp.cnn --weights lw.safetensors -o exp.onnx"), 1);
  assert_contains(tu_err, "cnngen: error: lw.safetensors: ");
  tu_write_text("image.cnn", "network image\ninput 8x8x1\nconv2d 2 3x3\n");
  assert_int_equal(tu_run("export image.cnn --weights exp.safetensors -o image.onnx"), 1);
  assert_contains(tu_err, "cnngen: error: image.cnn: the network's output is an image (6x6x2)");
  assert_false(tu_exists("exp.onnx"));
  assert_false(tu_exists("image.onnx"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_onnx_import_pytorch_models),
      cmocka_unit_test(test_onnx_round_trip),
      cmocka_unit_test(test_onnx_round_trip_of_pytorch_models),
      cmocka_unit_test(test_onnx_import_train_block_fits_the_output),
      cmocka_unit_test(test_onnx_import_refuses_what_cnngen_cannot_say),
      cmocka_unit_test(test_onnx_import_refuses_truncated_and_random_files),
      cmocka_unit_test(test_onnx_import_and_export_options),
  };
  return cmocka_run_group_tests(tests, tu_setup, tu_teardown);
}
