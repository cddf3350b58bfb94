/*
 * test_cli.c: the command line. Option parsing is tested through
 * cli_parse(); the commands by running the binary (testutil.h's tu_run:
 * $CNNGEN, set by tests/run-all; default build/cnngen) on files written to
 * its temporary directory, checking exit statuses, the files left behind
 * and the output.
 * The eval data sets are tiny, so their numbers are worked out by hand in
 * the comments.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "idx.h"
#include "safetensors.h"
#include "testutil.h"

/* ---- helpers (files and runs: testutil.h) ---- */

/* A 1x1x1 input, one dense layer of two outputs: the outputs are worked out
   by hand from the weights. */
static void write_tiny_net(const char *name, const char *act, const char *loss) {
  char text[512];
  snprintf(text, sizeof text,
           "network tiny\ninput 1x1x1\nflatten\ndense 2 %s\ntrain {\n  loss %s\n}\n", act, loss);
  tu_write_text(name, text);
}

static void write_tiny_weights(const char *name, float w0, float w1, float b0, float b1) {
  static float w[2], b[2];
  w[0] = w0, w[1] = w1, b[0] = b0, b[1] = b1;
  StEntry t[2] = {{"dense1.weight", 2, {2, 1}, w}, {"dense1.bias", 1, {2}, b}};
  const char *meta[] = {"format", "cnngen", "network", "tiny", NULL};
  Err e = {0};
  if (st_write(tu_path(name), t, 2, meta, &e) < 0)
    fail_msg("%s", e.msg);
}

/* One data directory: t10k images 1x1x1 of the given bytes and labels
   (k = 0: class indices; k > 0: rows). */
static void write_data(const char *dir, const uint8_t *pixels, int n, const uint8_t *labels, int k,
                       int h) {
  mkdir(tu_path(dir), 0777);
  char p[512];
  Err e = {0};
  uint8_t *data = calloc((size_t)n * h * h, 1);
  for (int i = 0; i < n; i++)
    data[(long)i * h * h] = pixels[i];
  IdxImages im = {n, h, h, 1, data};
  snprintf(p, sizeof p, "%s/t10k-images-idx3-ubyte", tu_path(dir));
  if (idx_write_images(p, &im, &e) < 0)
    fail_msg("%s", e.msg);
  IdxLabels lb = {n, k, (uint8_t *)labels};
  snprintf(p, sizeof p, "%s/t10k-labels-idx1-ubyte", tu_path(dir));
  if (idx_write_labels(p, &lb, &e) < 0)
    fail_msg("%s", e.msg);
  free(data);
}

static double json_number(const cJSON *o, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  if (!cJSON_IsNumber(v))
    fail_msg("no number \"%s\" in the JSON output", key);
  return v->valuedouble;
}

static double json_at(const cJSON *o, const char *list, int i, const char *key) {
  const cJSON *l = cJSON_GetObjectItemCaseSensitive(o, list);
  assert_true(cJSON_IsArray(l));
  return json_number(cJSON_GetArrayItem(l, i), key);
}

#define assert_near(got, want)                                                                     \
  do {                                                                                             \
    double g_ = (got), w_ = (want);                                                                \
    if (!(fabs(g_ - w_) <= 1e-6))                                                                  \
      fail_msg("%s = %.9g, expected %.9g (difference %.3g)", #got, g_, w_, fabs(g_ - w_));         \
  } while (0)

/* ---- option parsing ---- */

static int parse(const Command *cmd, CliArgs *a, int argc, ...) {
  static char *argv[32];
  va_list ap;
  va_start(ap, argc);
  for (int i = 0; i < argc; i++)
    argv[i] = va_arg(ap, char *);
  va_end(ap);
  return cli_parse(cmd, argc, argv, a);
}

static void test_cli_parse_accepts_every_spelling(void **state) {
  (void)state;
  CliArgs a;
  assert_int_equal(parse(&cmd_predict, &a, 7, "--weights=w.st", "net.cnn", "--threads", "4",
                         "--json", "a.png", "b.pgm"),
                   0);
  assert_string_equal(a.net_path, "net.cnn");
  assert_string_equal(a.value[CLI_WEIGHTS], "w.st");
  assert_int_equal(a.threads, 4);
  assert_non_null(a.value[CLI_JSON]);
  assert_int_equal(a.ninputs, 2);
  assert_string_equal(a.inputs[0], "a.png");
  assert_string_equal(a.inputs[1], "b.pgm");
  assert_int_equal(a.num[CLI_TOP], 3); /* default */
  assert_int_equal(a.backend, BACKEND_AUTO);
  cli_args_free(&a);

  assert_int_equal(parse(&cmd_compile, &a, 3, "-oout.c", "--inference-only", "n.cnn"), 0);
  assert_string_equal(a.value[CLI_OUT], "out.c");
  assert_non_null(a.value[CLI_INFERENCE_ONLY]);
  cli_args_free(&a);

  assert_int_equal(parse(&cmd_compile, &a, 3, "-o", "x.c", "n.cnn"), 0);
  assert_string_equal(a.value[CLI_OUT], "x.c");
  cli_args_free(&a);

  /* After "--" everything is an argument, even what looks like an option. */
  assert_int_equal(
      parse(&cmd_predict, &a, 6, "--weights", "w", "--backend=tcc", "--", "n.cnn", "--json"), 0);
  assert_int_equal(a.backend, BACKEND_TCC);
  assert_null(a.value[CLI_JSON]);
  assert_int_equal(a.ninputs, 1);
  assert_string_equal(a.inputs[0], "--json");
  cli_args_free(&a);

  assert_int_equal(parse(&cmd_eval, &a, 5, "n.cnn", "--weights", "w", "--threshold", "0.25"), 0);
  assert_true(a.real[CLI_THRESHOLD] == 0.25);
  assert_true(a.threads >= 1 && a.threads <= 256);
  cli_args_free(&a);
}

static void test_cli_parse_rejects_bad_options(void **state) {
  (void)state;
  CliArgs a;
  assert_int_equal(parse(&cmd_predict, &a, 5, "n.cnn", "--weights", "w", "--threads", "0"), 1);
  assert_int_equal(parse(&cmd_predict, &a, 5, "n.cnn", "--weights", "w", "--threads", "257"), 1);
  assert_int_equal(parse(&cmd_predict, &a, 5, "n.cnn", "--weights", "w", "--threads", "4x"), 1);
  assert_int_equal(parse(&cmd_predict, &a, 4, "n.cnn", "--weights", "w", "--threads"), 1);
  assert_int_equal(parse(&cmd_predict, &a, 5, "n.cnn", "--weights", "w", "--backend", "gcc"), 1);
  assert_int_equal(parse(&cmd_predict, &a, 4, "n.cnn", "--weights", "w", "--json=1"), 1);
  assert_int_equal(parse(&cmd_predict, &a, 4, "n.cnn", "--weights", "w", "--bogus"), 1);
  assert_int_equal(parse(&cmd_predict, &a, 5, "n.cnn", "--weights", "w", "--weights", "v"), 1);
  assert_int_equal(parse(&cmd_predict, &a, 2, "n.cnn", "x.png"), 1); /* --weights required */
  assert_int_equal(parse(&cmd_predict, &a, 3, "n.cnn", "--weights", "w"), 1); /* no INPUT */
  assert_int_equal(parse(&cmd_eval, &a, 5, "n.cnn", "--weights", "w", "--threshold", "2"), 1);
  assert_int_equal(parse(&cmd_eval, &a, 5, "n.cnn", "--weights", "w", "--top", "2"), 1);
  assert_int_equal(parse(&cmd_check, &a, 2, "a.cnn", "b.cnn"), 1);
  assert_int_equal(parse(&cmd_check, &a, 0), 1);
  assert_int_equal(parse(&cmd_check, &a, 1, "--help"), -1);
}

static void test_cli_suggest_finds_typos(void **state) {
  (void)state;
  const char *words[] = {"compile", "check", "predict", "eval", "train"};
  assert_string_equal(cli_suggest("chek", words, 5), "check");
  assert_string_equal(cli_suggest("predcit", words, 5), "predict");
  assert_string_equal(cli_suggest("evl", words, 5), "eval");
  assert_string_equal(cli_suggest("comp", words, 5), "compile");
  assert_null(cli_suggest("xyzzy", words, 5));
  const char *opts[] = {"--weights", "--threads", "--json"};
  assert_string_equal(cli_suggest("--wieghts", opts, 3), "--weights");
  assert_string_equal(cli_suggest("--thread", opts, 3), "--threads");
}

/* ---- the binary ---- */

static const char good_net[] = "network small\n"
                               "input 6x6x1\n"
                               "conv2d 2 3x3 relu\n"
                               "flatten\n"
                               "dense 3 softmax\n";

static void test_cli_exit_statuses(void **state) {
  (void)state;
  tu_write_text("good.cnn", good_net);
  tu_write_text("bad.cnn", "network bad\ninput 6x6x1\ndense 3 softmax\n");
  assert_int_equal(tu_run("check good.cnn"), 0);
  assert_contains(tu_out, "conv2d");
  assert_int_equal(tu_run("check bad.cnn"), 1);
  assert_contains(tu_err, "bad.cnn:3:");
  assert_int_equal(tu_run("check missing.cnn"), 1);
  assert_contains(tu_err, "cnngen: error: missing.cnn");
  assert_int_equal(tu_run("%s", ""), 1); /* no arguments */
  assert_int_equal(tu_run("--version"), 0);
  assert_contains(tu_out, "cnngen " CNNGEN_VERSION);
  /* A system compiler that fails on the generated C is cnngen's fault: 2. */
  write_tiny_net("tiny.cnn", "softmax", "sparse_categorical_crossentropy");
  write_tiny_weights("tiny.safetensors", 0, 1, 0, 0);
  tu_write_text("white.pgm", "P2\n1 1\n255\n255\n");
  setenv("CC", "false", 1);
  setenv("XDG_CACHE_HOME", tu_tmp, 1);
  int status = tu_run("predict tiny.cnn --weights tiny.safetensors --backend cc white.pgm");
  unsetenv("CC");
  unsetenv("XDG_CACHE_HOME");
  assert_int_equal(status, 2);
  assert_contains(tu_err, "cnngen: error: ");
  assert_int_equal(tu_run("predict tiny.cnn --weights tiny.safetensors --backend tcc white.pgm"),
                   0);
}

static void test_cli_unknown_words_get_hints(void **state) {
  (void)state;
  assert_int_equal(tu_run("chek good.cnn"), 1);
  assert_contains(tu_err, "unknown command 'chek' (did you mean 'check'?)");
  assert_int_equal(tu_run("frobnicate"), 1);
  assert_contains(tu_err, "unknown command 'frobnicate'");
  assert_int_equal(tu_run("predict good.cnn --wieghts w.st x.png"), 1);
  assert_contains(tu_err, "did you mean '--weights'?");
  assert_int_equal(tu_run("check good.cnn --json"), 1);
  assert_contains(tu_err, "--json is not an option of check");
  assert_int_equal(tu_run("eval good.cnn --weights w --threads 0"), 1);
  assert_contains(tu_err, "--threads needs a whole number from 1 to 256");
}

static void test_cli_help_for_every_command(void **state) {
  (void)state;
  const char *names[] = {
#define X_NAME(name) #name,
      COMMANDS(X_NAME)
#undef X_NAME
  };
  assert_int_equal(tu_run("--help"), 0);
  char *overview = strdup(tu_out);
  assert_int_equal(tu_run("help"), 0);
  assert_string_equal(tu_out, overview);
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    char want[64];
    snprintf(want, sizeof want, "\n  %s ", names[i]);
    assert_contains(overview, want);
    assert_int_equal(tu_run("help %s", names[i]), 0);
    char *page = strdup(tu_out);
    assert_contains(page, "usage: cnngen");
    assert_contains(page, "Exit status");
    assert_contains(page, "Example");
    assert_int_equal(tu_run("%s --help", names[i]), 0);
    assert_string_equal(tu_out, page);
    free(page);
  }
  free(overview);
  assert_int_equal(tu_run("help nosuch"), 1);
}

static void test_cli_compile_writes_source_and_header(void **state) {
  (void)state;
  tu_write_text("good.cnn", good_net);
  mkdir(tu_path("out"), 0777);
  assert_int_equal(tu_run("good.cnn -o out/small.c"), 0);
  assert_true(tu_exists("out/small.c"));
  assert_true(tu_exists("out/small.h"));
  static char text[1 << 20];
  tu_read_file(tu_path("out/small.c"), text, sizeof text);
  assert_contains(text, "#include \"small.h\"");
  tu_read_file(tu_path("out/small.h"), text, sizeof text);
  assert_contains(text, "small_infer");

  /* Without -o: the .cnn's base name with .c, in the current directory. */
  assert_int_equal(tu_run("compile ./good.cnn"), 0);
  assert_true(tu_exists("good.c"));
  assert_true(tu_exists("good.h"));

  /* '-o -': one translation unit on standard output, no header file. */
  assert_int_equal(tu_run("good.cnn -o -"), 0);
  assert_contains(tu_out, "small_infer");
  assert_null(strstr(tu_out, "#include \"small.h\""));
  assert_false(tu_exists("-"));

  /* The generated pair compiles on its own. */
  if (tu_shell("cc -std=c99 -Wall -Wextra -pedantic -Werror -c out/small.c -o out/small.o") != 0)
    fail_msg("the generated C does not compile:\n%s", tu_err);
}

static void test_cli_compile_error_writes_nothing(void **state) {
  (void)state;
  tu_write_text("bad.cnn", "network bad\ninput 6x6x1\ndense 3 softmax\n");
  assert_int_equal(tu_run("bad.cnn -o fresh.c"), 1);
  assert_false(tu_exists("fresh.c"));
  assert_false(tu_exists("fresh.h"));

  /* An older output stays as it was. */
  tu_write_text("old.c", "/* old */\n");
  tu_write_text("old.h", "/* old header */\n");
  assert_int_equal(tu_run("bad.cnn -o old.c"), 1);
  char text[64];
  tu_read_file(tu_path("old.c"), text, sizeof text);
  assert_string_equal(text, "/* old */\n");
  tu_read_file(tu_path("old.h"), text, sizeof text);
  assert_string_equal(text, "/* old header */\n");

  /* Weights that do not fit: nothing either. */
  tu_write_text("good.cnn", good_net);
  write_tiny_weights("tiny.safetensors", 1, 1, 0, 0);
  assert_int_equal(tu_run("good.cnn --weights tiny.safetensors -o baked.c"), 1);
  assert_contains(tu_err, "tiny.safetensors");
  assert_false(tu_exists("baked.c"));
  assert_false(tu_exists("baked.h"));
  /* No temporaries left behind either. */
  assert_int_equal(tu_shell("ls -A"), 0);
  assert_null(strstr(tu_out, "tmp"));
}

/* Every line one object {"index", "class", "outputs"}, the class the first
   largest output; a multi-label network adds "labels", the outputs above
   0.5 (the default --threshold) in increasing order. Numbers are
   golden-check's business. */
static void check_predict_json(const char *text, int images, int outputs, bool multilabel) {
  int lines = 0;
  for (const char *line = text; *line; lines++) {
    const char *end = strchr(line, '\n');
    assert_non_null(end);
    cJSON *o = cJSON_ParseWithLength(line, (size_t)(end - line));
    assert_non_null(o);
    assert_int_equal(cJSON_GetArraySize(o), multilabel ? 4 : 3);
    assert_int_equal((int)json_number(o, "index"), lines);
    const cJSON *out = cJSON_GetObjectItemCaseSensitive(o, "outputs");
    assert_int_equal(cJSON_GetArraySize(out), outputs);
    int best = 0;
    for (int j = 1; j < outputs; j++)
      if (cJSON_GetArrayItem(out, j)->valuedouble > cJSON_GetArrayItem(out, best)->valuedouble)
        best = j;
    assert_int_equal((int)json_number(o, "class"), best);
    if (multilabel) {
      const cJSON *labels = cJSON_GetObjectItemCaseSensitive(o, "labels");
      assert_true(cJSON_IsArray(labels));
      int n = 0;
      for (int j = 0; j < outputs; j++)
        if (cJSON_GetArrayItem(out, j)->valuedouble > 0.5) {
          const cJSON *label = cJSON_GetArrayItem(labels, n++);
          assert_non_null(label);
          assert_int_equal(label->valueint, j);
        }
      assert_int_equal(cJSON_GetArraySize(labels), n);
    }
    cJSON_Delete(o);
    line = end + 1;
  }
  assert_int_equal(lines, images);
}

static void test_cli_predict_json_on_reference_cases(void **state) {
  (void)state;
  for (int i = 0; i < TU_REFERENCE_CASES; i++) {
    const char *name = tu_reference_cases[i];
    char dir[1100];
    snprintf(dir, sizeof dir, "%s/%s", tu_repo, tu_reference("%s", name));
    Err e = {0};
    IdxImages im;
    char images[1200];
    snprintf(images, sizeof images, "%s/data/t10k-images-idx3-ubyte", dir);
    if (idx_read_images(images, &im, &e) < 0)
      fail_msg("%s", e.msg);
    int n = im.n;
    idx_images_free(&im);
    char expected[1200];
    snprintf(expected, sizeof expected, "%s/expected_outputs.jsonl", dir);
    static char want[1 << 20];
    tu_read_file(expected, want, sizeof want);
    cJSON *first = cJSON_ParseWithLength(want, strcspn(want, "\n"));
    int outputs = cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(first, "outputs"));
    cJSON_Delete(first);

    /* Two threads, and the image file given twice: indices keep counting. */
    assert_int_equal(tu_run("predict %s/net.cnn --weights %s/init.safetensors --json --threads 2 "
                            "%s %s",
                            dir, dir, images, images),
                     0);
    check_predict_json(tu_out, 2 * n, outputs, strcmp(name, "multilabel_bce") == 0);

    /* Both backends and any thread count agree. */
    assert_int_equal(tu_run("predict %s/net.cnn --weights %s/init.safetensors --json --backend tcc "
                            "--threads 1 %s",
                            dir, dir, images),
                     0);
    char *tcc_out = strdup(tu_out);
    assert_int_equal(tu_run("predict %s/net.cnn --weights %s/init.safetensors --json --backend cc "
                            "--threads 3 %s",
                            dir, dir, images),
                     0);
    const char *a = tcc_out, *b = tu_out;
    for (int line = 0; line < n; line++) {
      cJSON *x = cJSON_ParseWithLength(a, strcspn(a, "\n"));
      cJSON *y = cJSON_ParseWithLength(b, strcspn(b, "\n"));
      assert_non_null(x);
      assert_non_null(y);
      const cJSON *ox = cJSON_GetObjectItemCaseSensitive(x, "outputs");
      const cJSON *oy = cJSON_GetObjectItemCaseSensitive(y, "outputs");
      for (int j = 0; j < outputs; j++) {
        double u = cJSON_GetArrayItem(ox, j)->valuedouble,
               v = cJSON_GetArrayItem(oy, j)->valuedouble;
        if (!(fabs(u - v) <= 1e-5 + 1e-4 * fabs(u)))
          fail_msg("%s image %d output %d: tcc %.9g, cc %.9g", name, line, j, u, v);
      }
      cJSON_Delete(x);
      cJSON_Delete(y);
      a += strcspn(a, "\n") + 1;
      b += strcspn(b, "\n") + 1;
    }
    free(tcc_out);
  }
}

static void test_cli_predict_checks_image_size(void **state) {
  (void)state;
  /* Softmax of (0, ln 3 * x): a white pixel gives p = (0.25, 0.75). */
  write_tiny_net("tiny.cnn", "softmax", "sparse_categorical_crossentropy");
  write_tiny_weights("tiny.safetensors", 0, logf(3), 0, 0);
  tu_write_text("white.pgm", "P2\n1 1\n255\n255\n");
  tu_write_text("big.pgm", "P2\n2 3\n255\n1 2\n3 4\n5 6\n");
  assert_int_equal(tu_run("predict tiny.cnn --weights tiny.safetensors white.pgm"), 0);
  assert_contains(tu_out, "0 white.pgm: class 1 (p=0.750), next 0 (0.250)");
  assert_int_equal(tu_run("predict tiny.cnn --weights tiny.safetensors big.pgm white.pgm"), 1);
  assert_contains(tu_err, "big.pgm: image is 3x2, the network tiny.cnn takes 1x1");
  /* The good input is still run, and counted from 0. */
  assert_contains(tu_out, "0 white.pgm: class 1");
  assert_int_equal(tu_run("predict tiny.cnn --weights tiny.safetensors nothere.png"), 1);
  assert_contains(tu_err, "nothere.png");
}

static void test_cli_eval_single_label_by_hand(void **state) {
  (void)state;
  /* p = softmax(0, ln 3 * x): black (x = 0) -> (0.5, 0.5), class 0 (first
     maximum); white (x = 1) -> (0.25, 0.75), class 1.
       image   0     1     2     3     4
       pixel   0     0     255   255   255
       label   0     1     1     1     0
       class   0     0     1     1     1
     confusion [[1, 1], [1, 2]]: accuracy 3/5; class 0 precision 1/2,
     recall 1/2; class 1 precision 2/3, recall 2/3.
     loss = (-ln .5 - ln .5 - ln .75 - ln .75 - ln .25) / 5
          = (8 ln 2 - 2 ln 3) / 5 */
  write_tiny_net("tiny.cnn", "softmax", "sparse_categorical_crossentropy");
  write_tiny_weights("tiny.safetensors", 0, logf(3), 0, 0);
  const uint8_t pixels[] = {0, 0, 255, 255, 255}, labels[] = {0, 1, 1, 1, 0};
  write_data("single", pixels, 5, labels, 0, 1);
  assert_int_equal(tu_run("eval tiny.cnn --weights tiny.safetensors --data single --json"), 0);
  cJSON *o = cJSON_Parse(tu_out);
  assert_non_null(o);
  assert_near(json_number(o, "accuracy"), 0.6);
  assert_near(json_number(o, "loss"), (8 * log(2) - 2 * log(3)) / 5);
  assert_near(json_at(o, "per_class", 0, "precision"), 0.5);
  assert_near(json_at(o, "per_class", 0, "recall"), 0.5);
  assert_near(json_at(o, "per_class", 1, "precision"), 2.0 / 3);
  assert_near(json_at(o, "per_class", 1, "recall"), 2.0 / 3);
  assert_near(json_number(o, "macro_recall"), (0.5 + 2.0 / 3) / 2);
  assert_near(json_number(o, "macro_f1"), (0.5 + 2.0 / 3) / 2);
  const cJSON *conf = cJSON_GetObjectItemCaseSensitive(o, "confusion");
  const int want[2][2] = {{1, 1}, {1, 2}};
  for (int t = 0; t < 2; t++)
    for (int p = 0; p < 2; p++)
      assert_int_equal(cJSON_GetArrayItem(cJSON_GetArrayItem(conf, t), p)->valueint, want[t][p]);
  cJSON_Delete(o);

  /* The plain report says the same. */
  assert_int_equal(tu_run("eval tiny.cnn --weights tiny.safetensors --data single --threads 2"), 0);
  assert_contains(tu_out, "accuracy      0.6000  (3 of 5)");
  assert_contains(tu_out, "confusion matrix");

  /* Categorical CE takes the same labels as one-hot rows: same loss. */
  write_tiny_net("tiny_ce.cnn", "softmax", "categorical_crossentropy");
  assert_int_equal(tu_run("eval tiny_ce.cnn --weights tiny.safetensors --data single --json"), 0);
  o = cJSON_Parse(tu_out);
  assert_non_null(o);
  assert_near(json_number(o, "loss"), (8 * log(2) - 2 * log(3)) / 5);
  cJSON_Delete(o);
}

static void test_cli_eval_multi_label_by_hand(void **state) {
  (void)state;
  /* y = sigmoid(ln 3 * x, ln 3): black -> (0.5, 0.75), white -> (0.75, 0.75);
     on above 0.5: black (off, on), white (on, on).
       image   0       1       2       3
       pixel   0       255     255     0
       labels  0 1     1 0     1 1     1 1
       on      0 1     1 1     1 1     0 1
     label 0: tp 2, fp 0, fn 1 -> precision 1, recall 2/3, F1 0.8
     label 1: tp 3, fp 1, fn 0 -> precision 3/4, recall 1, F1 6/7
     micro F1 = 2*5 / (2*5 + 1 + 1) = 5/6; exact match 2/4.
     loss = (2 ln 2 + 5 ln 4/3 + ln 4) / 8 = (14 ln 2 - 5 ln 3) / 8 */
  write_tiny_net("multi.cnn", "sigmoid", "binary_crossentropy");
  write_tiny_weights("multi.safetensors", logf(3), 0, 0, logf(3));
  const uint8_t pixels[] = {0, 255, 255, 0}, rows[] = {0, 1, 1, 0, 1, 1, 1, 1};
  write_data("multi", pixels, 4, rows, 2, 1);
  assert_int_equal(tu_run("eval multi.cnn --weights multi.safetensors --data multi --json"), 0);
  cJSON *o = cJSON_Parse(tu_out);
  assert_non_null(o);
  assert_near(json_number(o, "loss"), (14 * log(2) - 5 * log(3)) / 8);
  assert_near(json_at(o, "per_label", 0, "precision"), 1.0);
  assert_near(json_at(o, "per_label", 0, "recall"), 2.0 / 3);
  assert_near(json_at(o, "per_label", 1, "precision"), 0.75);
  assert_near(json_at(o, "per_label", 1, "recall"), 1.0);
  assert_near(json_number(o, "micro_f1"), 5.0 / 6);
  assert_near(json_number(o, "macro_f1"), (0.8 + 6.0 / 7) / 2);
  assert_near(json_number(o, "exact_match"), 0.5);
  cJSON_Delete(o);

  /* Above 0.8 nothing is on: no label right where a 1 is wanted. */
  assert_int_equal(
      tu_run("eval multi.cnn --weights multi.safetensors --data multi --json --threshold 0.8"), 0);
  o = cJSON_Parse(tu_out);
  assert_non_null(o);
  assert_near(json_number(o, "exact_match"), 0.0);
  assert_near(json_number(o, "micro_f1"), 0.0);
  cJSON_Delete(o);
}

static void test_cli_eval_refuses_data_that_does_not_fit(void **state) {
  (void)state;
  write_tiny_net("tiny.cnn", "softmax", "sparse_categorical_crossentropy");
  write_tiny_weights("tiny.safetensors", 0, logf(3), 0, 0);
  const uint8_t pixels[] = {0, 255}, rows[] = {0, 1, 1, 0}, big[] = {0, 5};
  /* Rows for a sparse loss. */
  write_data("rows", pixels, 2, rows, 2, 1);
  assert_int_equal(tu_run("eval tiny.cnn --weights tiny.safetensors --data rows"), 1);
  assert_contains(tu_err, "sparse_categorical_crossentropy");
  /* A class the network does not have. */
  write_data("big", pixels, 2, big, 0, 1);
  assert_int_equal(tu_run("eval tiny.cnn --weights tiny.safetensors --data big"), 1);
  assert_contains(tu_err, "label 5");
  /* Images of another size. */
  const uint8_t labels[] = {0, 1};
  write_data("wide", pixels, 2, labels, 0, 2);
  assert_int_equal(tu_run("eval tiny.cnn --weights tiny.safetensors --data wide"), 1);
  assert_contains(tu_err, "2x2x1");
  assert_contains(tu_err, "1x1x1");
  /* No data there at all. */
  assert_int_equal(tu_run("eval tiny.cnn --weights tiny.safetensors --data nowhere"), 1);
  assert_contains(tu_err, "nowhere");
  /* Weights for another network. */
  tu_write_text("good.cnn", good_net);
  assert_int_equal(tu_run("predict good.cnn --weights tiny.safetensors white.pgm"), 1);
  assert_contains(tu_err, "tiny.safetensors");
}

/* SPEC section 3: the PyTorch-trained weights give PyTorch's test numbers,
   which the file's metadata records to 4 and 6 decimals. */
static void test_cli_eval_reproduces_pytorch(void **state) {
  (void)state;
  if (access(CNNGEN_DEFAULT_DATA, R_OK) != 0)
    skip(); /* Debian's dataset-fashion-mnist is not installed */
  const char *weights = tu_reference("fashion-pytorch.safetensors");
  StFile f;
  Err e = {0};
  if (st_read(weights, &f, &e) < 0)
    fail_msg("%s", e.msg);
  double want_accuracy = atof(st_meta(&f, "test_accuracy"));
  double want_loss = atof(st_meta(&f, "test_loss"));
  st_free(&f);
  assert_int_equal(
      tu_run("eval %s/examples/fashion.cnn --weights %s/%s --json", tu_repo, tu_repo, weights), 0);
  cJSON *o = cJSON_Parse(tu_out);
  assert_non_null(o);
  double accuracy = json_number(o, "accuracy"), loss = json_number(o, "loss");
  if (!(fabs(accuracy - want_accuracy) < 0.5e-4 && fabs(loss - want_loss) <= 0.5e-6))
    fail_msg("accuracy %.6f and loss %.7f; PyTorch: %.4f and %.6f", accuracy, loss, want_accuracy,
             want_loss);
  cJSON_Delete(o);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_cli_parse_accepts_every_spelling),
      cmocka_unit_test(test_cli_parse_rejects_bad_options),
      cmocka_unit_test(test_cli_suggest_finds_typos),
      cmocka_unit_test(test_cli_exit_statuses),
      cmocka_unit_test(test_cli_unknown_words_get_hints),
      cmocka_unit_test(test_cli_help_for_every_command),
      cmocka_unit_test(test_cli_compile_writes_source_and_header),
      cmocka_unit_test(test_cli_compile_error_writes_nothing),
      cmocka_unit_test(test_cli_predict_json_on_reference_cases),
      cmocka_unit_test(test_cli_predict_checks_image_size),
      cmocka_unit_test(test_cli_eval_single_label_by_hand),
      cmocka_unit_test(test_cli_eval_multi_label_by_hand),
      cmocka_unit_test(test_cli_eval_refuses_data_that_does_not_fit),
      cmocka_unit_test(test_cli_eval_reproduces_pytorch),
  };
  return cmocka_run_group_tests(tests, tu_setup, tu_teardown);
}
