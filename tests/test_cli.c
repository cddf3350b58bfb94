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
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "compile.h"
#include "formats/idx.h"
#include "formats/image.h"
#include "formats/safetensors.h"
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

/* The command line written back: the options kept, in the table's order,
   each word quoted for the shell where it needs to be. */
static void test_cli_write_command_quotes_for_the_shell(void **state) {
  (void)state;
  CliArgs a;
  assert_int_equal(parse(&cmd_train, &a, 7, "my net.cnn", "--data", "it's", "--seed", "3", "--out",
                         "w.safetensors"),
                   0);
  a.program = "build/cnngen";
  char *text = NULL;
  size_t len;
  FILE *f = open_memstream(&text, &len);
  assert_non_null(f);
  cli_write_command(f, &a, OPT(CLI_OUT) | OPT(CLI_DATA) | OPT(CLI_EPOCHS));
  fputc('|', f);
  cli_write_word(f, "");
  fclose(f);
  assert_string_equal(text,
                      "build/cnngen train 'my net.cnn' --out w.safetensors --data 'it'\\''s'|''");
  free(text);
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

/* The classes statement's names in check's output and --dump-ir, as the
   statement writes them (a name that is not a word quoted); none without one. */
static void test_cli_check_shows_class_names(void **state) {
  (void)state;
  tu_write_text("named.cnn", "network named\ninput 6x6x1\nflatten\ndense 3 softmax\n"
                             "classes cat \"sea lion\" 7\n");
  assert_int_equal(tu_run("check named.cnn"), 0);
  assert_contains(tu_out, "\nclasses (line 5): cat \"sea lion\" \"7\"\n");
  assert_int_equal(tu_run("check named.cnn --dump-ir"), 0);
  assert_int_equal(tu_count(tu_out, "\n  classes (line 5): cat \"sea lion\" \"7\"\n"), 4);
  tu_write_text("good.cnn", good_net);
  assert_int_equal(tu_run("check good.cnn --dump-ir"), 0);
  assert_null(strstr(tu_out, "classes"));
}

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
  /* A system compiler that cannot compile anything is the user's: 1, naming it. */
  write_tiny_net("tiny.cnn", "softmax", "sparse_categorical_crossentropy");
  write_tiny_weights("tiny.safetensors", 0, 1, 0, 0);
  tu_write_text("white.pgm", "P2\n1 1\n255\n255\n");
  setenv("CC", "false", 1);
  setenv("XDG_CACHE_HOME", tu_tmp, 1);
  int status = tu_run("predict tiny.cnn --weights tiny.safetensors --backend cc white.pgm");
  unsetenv("CC");
  unsetenv("XDG_CACHE_HOME");
  assert_int_equal(status, 1);
  assert_contains(tu_err, "cnngen: error: the C compiler 'false'");
  assert_contains(tu_err, "exit status 1");
  setenv("CC", "/nonexistent/cc", 1);
  setenv("XDG_CACHE_HOME", tu_tmp, 1);
  status = tu_run("predict tiny.cnn --weights tiny.safetensors --backend cc white.pgm");
  unsetenv("CC");
  unsetenv("XDG_CACHE_HOME");
  assert_int_equal(status, 1);
  assert_contains(tu_err, "cnngen: error: the C compiler '/nonexistent/cc'");
  assert_contains(tu_err, "not found");
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
    if (strstr(page, "--backend"))
      assert_contains(page, "cc-kernels");
    free(page);
  }
  /* the overview's --backend names every backend backend_parse takes */
  const char *line = strstr(overview, "\n  --backend B ");
  assert_non_null(line);
  char backends[128];
  snprintf(backends, sizeof backends, "%.*s", (int)strcspn(line + 1, "\n"), line + 1);
  const char *words[] = {"auto", "tcc", "cc", "cc-kernels"};
  for (size_t i = 0; i < sizeof words / sizeof *words; i++) {
    assert_true(backend_parse(words[i]) >= 0);
    assert_contains(backends, words[i]);
  }
  free(overview);
  assert_int_equal(tu_run("help nosuch"), 1);
}

/* Whether `word` occurs in text as a whole word (not inside a longer one). */
static bool has_word(const char *text, const char *word) {
  size_t n = strlen(word);
  for (const char *p = strstr(text, word); p; p = strstr(p + 1, word)) {
    bool before = p > text && (isalnum((unsigned char)p[-1]) || p[-1] == '_');
    bool after = isalnum((unsigned char)p[n]) || p[n] == '_';
    if (!before && !after)
      return true;
  }
  return false;
}

/* The code of a Markdown text: its fenced blocks and `spans`, one per line. */
static char *markdown_code(const char *md) {
  char *out = calloc(strlen(md) + 1, 1), *o = out;
  bool fenced = false;
  for (const char *line = md; *line;) {
    size_t len = strcspn(line, "\n");
    if (strncmp(line, "```", 3) == 0) {
      fenced = !fenced;
    } else if (fenced) {
      memcpy(o, line, len);
      o += len;
      *o++ = '\n';
    } else {
      bool in = false;
      for (size_t i = 0; i < len; i++) {
        if (line[i] == '`')
          *o++ = (in = !in) ? ' ' : '\n';
        else if (in)
          *o++ = line[i];
      }
    }
    line += len + (line[len] == '\n');
  }
  return out;
}

/* `cnngen help language` and docs/language.md (in its code) name every word
   the lowering gives a meaning to, as lower.c's own tables list them. */
static void test_cli_language_help_and_docs_name_every_word(void **state) {
  (void)state;
  const char *words[256];
  int n = lower_words(words, 256);
  assert_true(n > 40 && n <= 256);
  assert_int_equal(tu_run("help language"), 0);
  char *help = strdup(tu_out);
  assert_contains(help, "docs/language.md");
  static char md[1 << 18];
  char path[4200];
  snprintf(path, sizeof path, "%s/docs/language.md", tu_repo);
  tu_read_file(path, md, sizeof md);
  char *code = markdown_code(md);
  for (int i = 0; i < n; i++) {
    if (!has_word(help, words[i]))
      fail_msg("'cnngen help language' does not mention '%s'", words[i]);
    if (!has_word(code, words[i]))
      fail_msg("docs/language.md has no code that mentions '%s'", words[i]);
  }
  free(code);
  free(help);
  /* The overview points at it. */
  assert_int_equal(tu_run("--help"), 0);
  assert_contains(tu_out, "cnngen help language");
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

/* --name renames every symbol: the same network emitted twice, once with
   its training code and once with baked weights, links into one program
   that runs both. Softmax of (0, ln 3 * x): x = 1 gives (0.25, 0.75). */
static void test_cli_compile_name_links_two_copies(void **state) {
  (void)state;
  write_tiny_net("tiny.cnn", "softmax", "sparse_categorical_crossentropy");
  write_tiny_weights("tiny.safetensors", 0, logf(3), 0, 0);
  assert_int_equal(tu_run("tiny.cnn --name trainer -o trainer.c"), 0);
  assert_int_equal(
      tu_run(
          "compile tiny.cnn --name baked --inference-only --weights tiny.safetensors -o baked.c"),
      0);
  static char header[1 << 16];
  tu_read_file(tu_path("baked.h"), header, sizeof header);
  assert_null(strstr(header, "tiny")); /* nothing left of the .cnn's name */
  tu_write_text("both.c",
                "#include <stdio.h>\n#include \"trainer.h\"\n#include \"baked.h\"\n"
                "static trainer_model tm;\nstatic trainer_work tw;\nstatic baked_work bw;\n"
                "int main(void) {\n"
                "  const float params[trainer_PARAM_COUNT] = {0, 1.0986123f, 0, 0}, x = 1;\n"
                "  float yt[2], yb[2];\n"
                "  trainer_load(&tm, params);\n"
                "  trainer_infer(&tm, &tw, &x, 1, yt);\n"
                "  baked_infer(&baked_trained, &bw, &x, 1, yb);\n"
                "  printf(\"%.4f %.4f %.4f %.4f\\n\", yt[0], yt[1], yb[0], yb[1]);\n"
                "  return 0;\n}\n");
  if (tu_shell("cc -std=c99 -Wall -Wextra -pedantic -Werror -o both both.c trainer.c baked.c -lm "
               "&& ./both") != 0)
    fail_msg("the two copies do not build and run together:\n%s", tu_err);
  assert_string_equal(tu_out, "0.2500 0.7500 0.2500 0.7500\n");

  /* Without --name, the two copies clash. */
  assert_int_equal(tu_run("tiny.cnn -o one.c"), 0);
  assert_int_equal(tu_run("tiny.cnn --inference-only -o two.c"), 0);
  tu_write_text("clash.c", "int main(void) { return 0; }\n");
  assert_int_not_equal(tu_shell("cc -o clash clash.c one.c two.c -lm"), 0);

  /* A name that is no C identifier, or too long: an error, nothing written. */
  assert_int_equal(tu_run("tiny.cnn --name 9lives -o bad.c"), 1);
  assert_contains(tu_err, "cnngen: error: compile: --name: the network name must be a C "
                          "identifier");
  assert_contains(tu_err, "'9lives'");
  assert_int_equal(tu_run("tiny.cnn --name my-net -o bad.c"), 1);
  char long_name[80];
  memset(long_name, 'n', 64);
  long_name[64] = '\0';
  assert_int_equal(tu_run("tiny.cnn --name %s -o bad.c", long_name), 1);
  assert_contains(tu_err, "must be at most 63 characters long");
  assert_false(tu_exists("bad.c"));
  assert_false(tu_exists("bad.h"));
}

/* FLOATS as a raw file of little-endian floats. */
static void write_f32(const char *name, const float *v, int n) {
  FILE *f = fopen(tu_path(name), "wb");
  assert_non_null(f);
  for (int i = 0; i < n; i++) {
    uint32_t u;
    memcpy(&u, &v[i], sizeof u);
    const unsigned char b[4] = {u & 255, u >> 8 & 255, u >> 16 & 255, u >> 24};
    assert_int_equal(fwrite(b, 1, 4, f), 4);
  }
  assert_int_equal(fclose(f), 0);
}

/* --weights takes a raw .f32 file of PARAM_COUNT floats (dense1.weight
   [2][1], then dense1.bias [2]) as well as safetensors; a wrong size says
   both byte counts; NaN or infinity in either format is refused, naming
   the tensor and index. */
static void test_cli_weights_raw_f32_and_non_finite(void **state) {
  (void)state;
  write_tiny_net("tiny.cnn", "softmax", "sparse_categorical_crossentropy");
  tu_write_text("white.pgm", "P2\n1 1\n255\n255\n");
  const float good[4] = {0, logf(3), 0, 0};
  write_f32("tiny.f32", good, 4);
  assert_int_equal(tu_run("predict tiny.cnn --weights tiny.f32 white.pgm"), 0);
  assert_contains(tu_out, "0 white.pgm: class 1 (p=0.750), next 0 (0.250)");
  /* Baked into the C, the same floats as from safetensors. */
  write_tiny_weights("tiny.safetensors", 0, logf(3), 0, 0);
  assert_int_equal(tu_run("tiny.cnn --inference-only --weights tiny.f32 -o -"), 0);
  char *from_f32 = strdup(tu_out);
  assert_int_equal(tu_run("tiny.cnn --inference-only --weights tiny.safetensors -o -"), 0);
  assert_string_equal(from_f32, tu_out);
  free(from_f32);

  /* Three floats for four: both sizes in bytes, and nothing written. */
  write_f32("short.f32", good, 3);
  assert_int_equal(tu_run("tiny.cnn --weights short.f32 -o short.c"), 1);
  assert_contains(tu_err, "cnngen: error: short.f32: is 12 bytes, but tiny.cnn's 4 parameters "
                          "take 16");
  assert_false(tu_exists("short.c"));
  assert_false(tu_exists("short.h"));
  assert_int_equal(tu_run("predict tiny.cnn --weights short.f32 white.pgm"), 1);
  assert_contains(tu_err, "is 12 bytes");

  /* NaN in the bias (its second element), infinity in the weight [1][0]. */
  const float nan_bias[4] = {0, 1, 0, NAN};
  write_f32("nan.f32", nan_bias, 4);
  assert_int_equal(tu_run("tiny.cnn --weights nan.f32 -o nan.c"), 1);
  assert_contains(tu_err, "cnngen: error: nan.f32: tensor 'dense1.bias' holds NaN at [1] "
                          "(element 1 of 2)");
  assert_false(tu_exists("nan.c"));
  write_tiny_weights("inf.safetensors", 0, -INFINITY, 0, 0);
  assert_int_equal(tu_run("predict tiny.cnn --weights inf.safetensors white.pgm"), 1);
  assert_contains(tu_err, "cnngen: error: inf.safetensors: tensor 'dense1.weight' holds -inf at "
                          "[1][0] (element 1 of 2)");
  assert_string_equal(tu_out, "");
}

/* Every line one object {"index", "file", "class", "outputs"}: the file
   `file`, given `copies` times, its images counted from 0 in each; the
   class the first largest output; a multi-label network adds "labels", the
   outputs above 0.5 (the default --threshold) in increasing order. Numbers
   are golden-check's business. */
static void check_predict_json(const char *text, const char *file, int copies, int images,
                               int outputs, bool multilabel) {
  int lines = 0;
  for (const char *line = text; *line; lines++) {
    const char *end = strchr(line, '\n');
    assert_non_null(end);
    cJSON *o = cJSON_ParseWithLength(line, (size_t)(end - line));
    assert_non_null(o);
    assert_int_equal(cJSON_GetArraySize(o), multilabel ? 5 : 4);
    assert_int_equal((int)json_number(o, "index"), lines % images);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "file")), file);
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
  assert_int_equal(lines, copies * images);
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

    /* Two threads, and the image file given twice: indices count each copy from 0. */
    assert_int_equal(tu_run("predict %s/net.cnn --weights %s/init.safetensors --json --threads 2 "
                            "%s %s",
                            dir, dir, images, images),
                     0);
    check_predict_json(tu_out, images, 2, n, outputs, strcmp(name, "multilabel_bce") == 0);

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

/* The file's tensors as a raw .f32 file, in the order of `ti` (the network's). */
static void write_f32_of(const char *name, const char *weights, const StParam *ti, int nt) {
  StFile f;
  Err e = {0};
  if (st_read(weights, &f, &e) < 0)
    fail_msg("%s", e.msg);
  long total = 0;
  for (int i = 0; i < nt; i++)
    total += ti[i].count;
  float *v = malloc((size_t)total * sizeof *v);
  assert_non_null(v);
  if (st_load_params(&f, ti, nt, v, &e) < 0)
    fail_msg("%s", e.msg);
  write_f32(name, v, (int)total);
  free(v);
  st_free(&f);
}

/* Weights for net `src` as PyTorch writes them: every tensor F32 (scales in
   [0.5, 1.5), running variances in [0.5, 1.5), the rest small), plus
   bn1.num_batches_tracked as `nbt_dtype` ("I64": a scalar, as PyTorch's). */
static void write_bn_weights(const char *name, const char *src, const char *nbt_dtype) {
  Arena a = {0};
  Net *n = tu_compile_ok(&a, src);
  const int nt = cli_params(n, NULL);
  StParam *ti = calloc((size_t)nt, sizeof *ti);
  float *p = calloc((size_t)n->param_count, sizeof *p);
  assert_true(ti && p);
  cli_params(n, ti);
  char *head = calloc(1, 65536);
  assert_non_null(head);
  strcat(head, "{\"__metadata__\":{\"format\":\"pt\"}");
  long at = 0;
  for (int i = 0; i < nt; i++) {
    const size_t len = strlen(ti[i].name);
    const bool var = len > 12 && !strcmp(ti[i].name + len - 12, ".running_var");
    const bool scale = strncmp(ti[i].name, "bn", 2) == 0 && strstr(ti[i].name, ".weight");
    for (long k = 0; k < ti[i].count; k++)
      p[ti[i].offset + k] = var || scale ? 0.5f + (float)((k * 7 + i) % 10) / 10
                                         : (float)((k * 13 + i * 5) % 21 - 10) / 40;
    char shape[64] = "";
    for (int d = 0; d < ti[i].rank; d++)
      snprintf(shape + strlen(shape), sizeof shape - strlen(shape), "%s%d", d ? "," : "",
               ti[i].shape[d]);
    snprintf(head + strlen(head), 65536 - strlen(head),
             ",\"%s\":{\"dtype\":\"F32\",\"shape\":[%s],\"data_offsets\":[%ld,%ld]}", ti[i].name,
             shape, at * 4, (at + ti[i].count) * 4);
    at += ti[i].count;
  }
  const int nbt = !strcmp(nbt_dtype, "I64") ? 8 : 4;
  snprintf(head + strlen(head), 65536 - strlen(head),
           ",\"bn1.num_batches_tracked\":{\"dtype\":\"%s\",\"shape\":[],\"data_offsets\":[%ld,"
           "%ld]}}",
           nbt_dtype, at * 4, at * 4 + nbt);
  FILE *f = fopen(tu_path(name), "wb");
  assert_non_null(f);
  const uint64_t hlen = strlen(head), count = 7;
  fwrite(&hlen, 8, 1, f);
  fwrite(head, 1, hlen, f);
  long done = 0;
  for (int i = 0; i < nt; i++) { /* in the header's order */
    fwrite(p + ti[i].offset, 4, (size_t)ti[i].count, f);
    done += ti[i].count;
  }
  fwrite(&count, (size_t)nbt, 1, f);
  fclose(f);
  assert_int_equal(done, at);
  free(head), free(p), free(ti);
  arena_free(&a);
}

/* batchnorm through every command: check says which layers fold; train
   gives the bits of the same network unfolded; predict reads PyTorch-style weights with
   num_batches_tracked and gives the outputs of the same network unfolded;
   a num_batches_tracked that is no I64 scalar is refused; compile bakes
   the folded weights; explain and export run. */
static void test_cli_batchnorm_through_every_command(void **state) {
  (void)state;
  static const char folded[] =
      "network bnc\ninput 16x20x3\n"
      "conv2d 8 3x3 bias=false\nbatchnorm\nrelu\nmaxpool 2x2\n"
      "conv2d 6 3x3 relu\nbatchnorm momentum=0.2\nflatten\ndense 10\nbatchnorm\nsoftmax\n";
  static const char unfolded[] =
      "network bnc\ninput 16x20x3\n"
      "conv2d 8 3x3 bias=false\ndropout 0\nbatchnorm\nrelu\nmaxpool 2x2\n"
      "conv2d 6 3x3 relu\nbatchnorm momentum=0.2\nflatten\ndense 10\ndropout 0\nbatchnorm\n"
      "softmax\n";
  char images[1200];
  snprintf(images, sizeof images, "%s/%s/data/t10k-images-idx3-ubyte", tu_repo,
           tu_reference("stride_padding_bias"));
  tu_write_text("bn.cnn", folded);
  tu_write_text("bn-unfolded.cnn", unfolded);
  assert_int_equal(tu_run("check bn.cnn"), 0);
  assert_contains(tu_out, "line 4: bn1 folded into conv1 (line 3) for inference\n");
  assert_contains(tu_out, "line 11: bn3 folded into dense1 (line 10) for inference\n");
  assert_contains(tu_out, "plus 48 running statistics (saved with the weights, not trained)\n");
  assert_int_equal(tu_run("check bn-unfolded.cnn"), 0);
  assert_null(strstr(tu_out, "folded into"));
  /* a grouped conv keeps its batchnorm unfolded (its loops read its own weights) */
  tu_write_text("grp.cnn", "network grp\ninput 6x6x4\nconv2d 4 3x3 groups=4 bias=false\n"
                           "batchnorm\nrelu\nflatten\ndense 2 softmax\n");
  assert_int_equal(tu_run("check grp.cnn"), 0);
  assert_null(strstr(tu_out, "folded into"));
  /* trains: the convs and the dense before a folded batchnorm on their own
     weights, so the same bits as without the fold */
  char data[1200];
  snprintf(data, sizeof data, "%s/%s/data", tu_repo, tu_reference("stride_padding_bias"));
  assert_int_equal(tu_run("train bn.cnn --data %s --backend tcc --epochs 2 --batch 5 --seed 4 "
                          "--out t1.safetensors",
                          data),
                   0);
  assert_int_equal(tu_run("train bn-unfolded.cnn --data %s --backend tcc --epochs 2 --batch 5 "
                          "--seed 4 --out t2.safetensors",
                          data),
                   0);
  assert_true(tu_same_tensors("t1.safetensors", "t2.safetensors"));
  /* a fold with no activation after it: inference's conv would read the
     folded weights */
  tu_write_text("lin.cnn", "network bnc\ninput 16x20x3\nconv2d 4 3x3 stride=2\nbatchnorm\n"
                           "flatten\ndense 10 softmax\n");
  tu_write_text("lin-unfolded.cnn", "network bnc\ninput 16x20x3\nconv2d 4 3x3 stride=2\n"
                                    "dropout 0\nbatchnorm\nflatten\ndense 10 softmax\n");
  for (int i = 0; i < 2; i++)
    assert_int_equal(tu_run("train %s --data %s --backend tcc --epochs 2 --batch 5 --seed 4 "
                            "--out t%d.safetensors",
                            i ? "lin-unfolded.cnn" : "lin.cnn", data, i + 1),
                     0);
  assert_true(tu_same_tensors("t1.safetensors", "t2.safetensors"));

  write_bn_weights("bn.safetensors", folded, "I64");
  assert_int_equal(tu_run("predict bn.cnn --weights bn.safetensors --json %s", images), 0);
  static double got[64], want[64];
  const int n = tu_outputs(tu_out, got, 64);
  assert_true(n >= 10);
  assert_int_equal(tu_run("predict bn-unfolded.cnn --weights bn.safetensors --json %s", images), 0);
  assert_int_equal(tu_outputs(tu_out, want, 64), n);
  tu_compare_outputs("folded against unfolded", got, want, n);
  /* on each backend: tcc's layers call the JIT's kernels, which must read
     the folded weights too */
  static const char *const backends[] = {"tcc", "cc"};
  for (int i = 0; i < 2; i++) {
    assert_int_equal(tu_run("predict bn.cnn --backend %s --weights bn.safetensors --json %s",
                            backends[i], images),
                     0);
    assert_int_equal(tu_outputs(tu_out, got, 64), n);
    tu_compare_outputs(backends[i], got, want, n);
  }

  write_bn_weights("bad.safetensors", folded, "F32");
  assert_int_equal(tu_run("predict bn.cnn --weights bad.safetensors %s", images), 1);
  assert_contains(tu_err, "bad.safetensors: tensor 'bn1.num_batches_tracked' must be a scalar I64");

  assert_int_equal(tu_run("bn.cnn --weights bn.safetensors -o baked.c"), 0);
  static char baked[1 << 20];
  tu_read_file(tu_path("baked.c"), baked, sizeof baked);
  assert_non_null(strstr(baked, ".conv1_fw ="));
  assert_non_null(strstr(baked, ".bn2_rv ="));
  assert_int_equal(
      tu_run("explain bn.cnn --weights bn.safetensors --index 1 %s --out s.png", images), 0);
  /* ONNX: export writes BatchNormalization nodes, import reads them back to
     the same network and outputs. */
  if (tu_run("export bn.cnn --weights bn.safetensors -o bn.onnx") != 0)
    fail_msg("export: %s", tu_err);
  if (tu_run("import bn.onnx -o back.cnn --weights-out back.safetensors") != 0)
    fail_msg("import: %s", tu_err);
  static char back[1 << 14];
  tu_read_file(tu_path("back.cnn"), back, sizeof back);
  assert_contains(back, "batchnorm momentum=0.2 eps=1e-05 ");
  assert_contains(back, "batchnorm momentum=0.1 eps=1e-05 ");
  assert_int_equal(tu_count(back, "batchnorm"), 3);
  assert_int_equal(tu_run("predict back.cnn --weights back.safetensors --json %s", images), 0);
  assert_int_equal(tu_outputs(tu_out, want, 64), n);
  tu_compare_outputs("imported against the original", want, got, n);
}

/* bias=false through every command, on tests/reference/stride_padding_bias:
   check's table and --dump-ir count no bias; train writes weights and a
   checkpoint without LAYER.bias or its optimizer state, and resumes on the
   reference's losses; predict gives the same outputs from the safetensors
   file and from the raw .f32 (no bias floats in it); compile bakes no bias
   member; explain runs both methods; a file holding conv1.bias is refused. */
static void test_cli_bias_false_through_every_command(void **state) {
  (void)state;
  char dir[1100], net[1200], images[1200];
  snprintf(dir, sizeof dir, "%s/%s", tu_repo, tu_reference("stride_padding_bias"));
  snprintf(net, sizeof net, "%s/net.cnn", dir);
  snprintf(images, sizeof images, "%s/data/t10k-images-idx3-ubyte", dir);
  assert_int_equal(tu_run("check %s", net), 0);
  assert_contains(tu_out, "bias=false relu   conv1   8x22x8     216");
  assert_contains(tu_out, "916  73,456\n"); /* the total: parameters, MACs */
  assert_int_equal(tu_run("check %s --dump-ir", net), 0);
  assert_contains(tu_out, "weight @0 x216  no bias");
  assert_contains(tu_out, "weight @216 x384  bias @600 x8");
  assert_contains(tu_out, "window 2x3  stride 2x3");

  assert_int_equal(tu_run("train %s --data %s/data --weights %s/init.safetensors --epochs 2 "
                          "--out w.safetensors --checkpoint c.safetensors",
                          net, dir, dir),
                   0);
  StFile f;
  Err e = {0};
  assert_int_equal(st_read(tu_path("c.safetensors"), &f, &e), 0);
  assert_non_null(st_find(&f, "conv1.weight"));
  assert_null(st_find(&f, "conv1.bias"));
  assert_null(st_find(&f, "dense1.bias"));
  assert_null(st_find(&f, "opt.velocity.conv1.bias"));
  assert_non_null(st_find(&f, "opt.velocity.conv1.weight"));
  assert_non_null(st_find(&f, "opt.velocity.conv2.bias"));
  st_free(&f);
  /* The third step's loss, as PyTorch's (expected_trained.safetensors' losses). */
  assert_int_equal(tu_run("train %s --data %s/data --resume c.safetensors --epochs 3 --out "
                          "w3.safetensors",
                          net, dir),
                   0);
  assert_contains(tu_out, "epoch 3/3  loss 1.3779");

  Arena a = {0};
  char *src = malloc(1 << 16);
  assert_non_null(src);
  tu_read_file(net, src, 1 << 16);
  Net *n = tu_compile_ok(&a, src);
  int nt = cli_params(n, NULL);
  assert_int_equal(nt, 7); /* 5 weights, conv2.bias, dense2.bias */
  StParam ti[7];
  cli_params(n, ti);
  write_f32_of("w.f32", tu_path("w.safetensors"), ti, nt);
  struct stat st;
  assert_int_equal(stat(tu_path("w.f32"), &st), 0);
  assert_int_equal(st.st_size, 916 * 4);
  assert_int_equal(tu_run("predict %s --weights w.safetensors --json %s", net, images), 0);
  char *from_st = strdup(tu_out);
  assert_int_equal(tu_run("predict %s --weights w.f32 --json %s", net, images), 0);
  assert_string_equal(from_st, tu_out);
  free(from_st);

  assert_int_equal(tu_run("%s --weights w.safetensors -o baked.c", net), 0);
  static char baked[1 << 20];
  tu_read_file(tu_path("baked.c"), baked, sizeof baked);
  assert_non_null(strstr(baked, ".conv2_b ="));
  assert_null(strstr(baked, ".conv1_b ="));
  assert_null(strstr(baked, ".dense1_b ="));
  tu_read_file(tu_path("baked.h"), baked, sizeof baked);
  assert_non_null(strstr(baked, "float conv2_b["));
  assert_null(strstr(baked, "float conv1_b["));
  assert_null(strstr(baked, "float dense1_b["));
  assert_int_equal(
      tu_run("explain %s --weights w.safetensors --index 1 %s --out s.png", net, images), 0);
  assert_int_equal(tu_run("explain %s --weights w.safetensors --method gradcam --index 1 %s "
                          "--out g.png",
                          net, images),
                   0);

  /* The same network with conv1's bias writes conv1.bias: refused here. */
  char *at = strstr(src, " bias=false");
  memmove(at, at + strlen(" bias=false"), strlen(at + strlen(" bias=false")) + 1);
  Net *with_bias = tu_compile_ok(&a, src);
  float *p = calloc((size_t)with_bias->param_count, sizeof *p);
  assert_non_null(p);
  assert_int_equal(cli_write_weights(tu_path("extra.safetensors"), with_bias, p, NULL, &e), 0);
  free(p);
  assert_int_equal(tu_run("predict %s --weights extra.safetensors %s", net, images), 1);
  assert_contains(tu_err, "cnngen: error: extra.safetensors: unexpected tensor 'conv1.bias': "
                          "layer conv1 has no bias in the network (bias=false)");
  assert_string_equal(tu_out, "");
  free(src);
  arena_free(&a);
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

/* --json names each image by its file and its index inside that file:
   a picture is index 0, an IDX file's images count from 0 in each file,
   and a file name that needs escaping still gives valid JSON. */
static void test_cli_predict_json_names_file_and_index(void **state) {
  (void)state;
  write_tiny_net("tiny.cnn", "softmax", "sparse_categorical_crossentropy");
  write_tiny_weights("tiny.safetensors", 0, logf(3), 0, 0);
  tu_write_text("white.pgm", "P2\n1 1\n255\n255\n");
  tu_write_text("we\"ird\\.pgm", "P2\n1 1\n255\n0\n");
  const uint8_t pixels[3] = {0, 255, 0}, labels[3] = {0, 1, 0};
  write_data("three", pixels, 3, labels, 0, 1);
  assert_int_equal(tu_run("predict tiny.cnn --weights tiny.safetensors --json white.pgm "
                          "three/t10k-images-idx3-ubyte 'we\"ird\\.pgm' "
                          "three/t10k-images-idx3-ubyte"),
                   0);
  static const struct {
    const char *file;
    int index, cls;
  } want[] = {{"white.pgm", 0, 1},
              {"three/t10k-images-idx3-ubyte", 0, 0},
              {"three/t10k-images-idx3-ubyte", 1, 1},
              {"three/t10k-images-idx3-ubyte", 2, 0},
              {"we\"ird\\.pgm", 0, 0},
              {"three/t10k-images-idx3-ubyte", 0, 0},
              {"three/t10k-images-idx3-ubyte", 1, 1},
              {"three/t10k-images-idx3-ubyte", 2, 0}};
  const char *line = tu_out;
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
    size_t len = strcspn(line, "\n");
    assert_int_equal(line[len], '\n');
    cJSON *o = cJSON_ParseWithLength(line, len);
    if (!o)
      fail_msg("line %zu is not JSON: %.*s", i, (int)len, line);
    assert_int_equal(cJSON_GetArraySize(o), 4);
    assert_int_equal((int)json_number(o, "index"), want[i].index);
    const char *file = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "file"));
    assert_non_null(file);
    assert_string_equal(file, want[i].file);
    assert_int_equal((int)json_number(o, "class"), want[i].cls);
    cJSON_Delete(o);
    line += len + 1;
  }
  assert_string_equal(line, "");
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

/* docs/language.md, Weights files: the PyTorch-trained weights give PyTorch's test numbers,
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

/* A tiny network, weights, an image and a data directory (train and t10k)
   for the commands that write files. */
static void write_tiny_run(void) {
  write_tiny_net("o.cnn", "softmax", "sparse_categorical_crossentropy");
  write_tiny_weights("o.safetensors", 0, 1, 0, 0);
  tu_write_text("o.pgm", "P2\n1 1\n255\n255\n");
  static const uint8_t pixels[2] = {0, 255}, labels[2] = {0, 1};
  write_data("od", pixels, 2, labels, 0, 1);
  assert_int_equal(tu_shell("cd od && cp t10k-images-idx3-ubyte train-images-idx3-ubyte && "
                            "cp t10k-labels-idx1-ubyte train-labels-idx1-ubyte"),
                   0);
}

/* NaN or infinite weights are refused by every command that reads weights,
   naming the tensor and the element. */
static void test_cli_refuses_weights_that_are_not_finite(void **state) {
  (void)state;
  write_tiny_run();
  write_tiny_weights("nan.safetensors", 0, NAN, 0, 0);
  write_tiny_weights("inf.safetensors", 0, 1, 0, -INFINITY);
  static const char *const commands[] = {
      "eval o.cnn --data od --backend tcc --weights %s",
      "predict o.cnn --backend tcc o.pgm --weights %s",
      "o.cnn -o fin.c --weights %s",
      "explain o.cnn --backend tcc o.pgm --out fin.png --weights %s",
      "train o.cnn --data od --epochs 1 --backend tcc --out fin.safetensors --weights %s",
  };
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
    char cmd[256];
    snprintf(cmd, sizeof cmd, commands[i], "nan.safetensors");
    assert_int_equal(tu_run("%s", cmd), 1);
    assert_contains(tu_err, "cnngen: error: nan.safetensors: tensor 'dense1.weight' holds NaN at "
                            "[1][0] (element 1 of 2)");
    snprintf(cmd, sizeof cmd, commands[i], "inf.safetensors");
    assert_int_equal(tu_run("%s", cmd), 1);
    assert_contains(tu_err, "cnngen: error: inf.safetensors: tensor 'dense1.bias' holds -inf at "
                            "[1] (element 1 of 2)");
  }
  assert_false(tu_exists("fin.c"));
  assert_false(tu_exists("fin.png"));
  assert_false(tu_exists("fin.safetensors"));
}

/* An output that is an input of the same run, that another output names
   too, or that is not a regular file is refused before any work, and left
   as it was. */
static void test_cli_outputs_never_replace_inputs_or_devices(void **state) {
  (void)state;
  write_tiny_run();
  char before[512], after[512];
  tu_read_file(tu_path("o.cnn"), before, sizeof before);
  assert_int_equal(tu_shell("mkfifo fifo && mkdir dir dir.png && ln -s o.cnn link.c"), 0);
  /* A device node: a copy of /dev/null of our own where we may make one (as
     root, which is also when a cnngen without this check would replace the
     system's /dev/null), else /dev/null itself. */
  const char *dev =
      mknod(tu_path("null"), S_IFCHR | 0666, makedev(1, 3)) == 0 ? "null" : "/dev/null";
  char dev_case[2][200];
  snprintf(dev_case[0], sizeof dev_case[0], "o.cnn -o %s", dev);
  snprintf(dev_case[1], sizeof dev_case[1],
           "explain o.cnn --backend tcc --weights o.safetensors o.pgm --out %s", dev);
  static const struct {
    const char *args, *message;
  } cases[] = {
      {NULL, "-o names a character device, not a regular file"},
      {NULL, "--out names a character device"},
      {"o.cnn -o fifo", "fifo: -o names a FIFO, not a regular file"},
      {"o.cnn -o dir", "dir: -o names a directory, not a regular file"},
      {"o.cnn -o o.cnn", "o.cnn: -o names the network file (o.cnn), an input of this run"},
      {"o.cnn -o link.c", "link.c: -o names the network file (o.cnn), an input of this run"},
      {"o.cnn -o ./o.safetensors --weights o.safetensors",
       "./o.safetensors: -o names --weights (o.safetensors), an input of this run"},
      {"explain o.cnn --backend tcc --weights o.safetensors o.pgm --out o.pgm",
       "o.pgm: --out names the image (o.pgm), an input of this run"},
      {"train o.cnn --data od --backend tcc --epochs 1 --out a.safetensors --checkpoint "
       "./a.safetensors",
       "./a.safetensors: --out and --checkpoint name the same file"},
      {"train o.cnn --data od --backend tcc --epochs 1 --out o.cnn",
       "o.cnn: --out names the network file (o.cnn)"},
      {"train o.cnn --data od --backend tcc --epochs 1 --out od/t10k-images-idx3-ubyte",
       "od/t10k-images-idx3-ubyte: --out names a data file"},
      {"train o.cnn --data od --backend tcc --epochs 1 --weights o.safetensors --log "
       "o.safetensors",
       "o.safetensors: --log names --weights (o.safetensors)"},
      {"train o.cnn --data od --backend tcc --epochs 1 --plot dir.png",
       "dir.png: --plot names a directory"},
      {"train o.cnn --data od --backend tcc --epochs 1 --log fifo", "fifo: --log names a FIFO"},
      {"train o.cnn --data od --backend tcc --epochs 1 --checkpoint fifo",
       "fifo: --checkpoint names a FIFO"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    assert_int_equal(tu_run("%s", cases[i].args ? cases[i].args : dev_case[i]), 1);
    assert_contains(tu_err, cases[i].message);
  }
  struct stat st;
  assert_int_equal(lstat(dev[0] == '/' ? dev : tu_path(dev), &st), 0);
  assert_true(S_ISCHR(st.st_mode));
  assert_int_equal(lstat(tu_path("fifo"), &st), 0);
  assert_true(S_ISFIFO(st.st_mode));
  assert_int_equal(lstat(tu_path("dir"), &st), 0);
  assert_true(S_ISDIR(st.st_mode));
  assert_int_equal(lstat(tu_path("link.c"), &st), 0);
  assert_true(S_ISLNK(st.st_mode));
  tu_read_file(tu_path("o.cnn"), after, sizeof after);
  assert_string_equal(before, after);
  assert_false(tu_exists("a.safetensors"));
  /* Continuing a run in place is allowed: --checkpoint may be the --resume file. */
  assert_int_equal(tu_run("train o.cnn --data od --backend tcc --epochs 1 --out b.safetensors"), 0);
  assert_int_equal(tu_run("train o.cnn --data od --backend tcc --epochs 2 --out b.safetensors "
                          "--resume b.ckpt.safetensors"),
                   0);
  assert_int_equal(tu_run("train o.cnn --data od --backend tcc --epochs 3 --out "
                          "b.ckpt.safetensors --resume b.ckpt.safetensors --checkpoint c.st"),
                   1);
  assert_contains(tu_err, "b.ckpt.safetensors: --out names --resume");
}

/* The temporaries of a killed run's outputs (DIR/.NAME.PID.XXXXXX whose
   process is gone) are removed when a command next writes those outputs;
   those of a live process stay, and so does anything else. */
static void test_cli_stale_temporaries_are_removed(void **state) {
  (void)state;
  write_tiny_run();
  pid_t dead = fork();
  if (dead == 0)
    _exit(0);
  assert_true(dead > 0);
  assert_int_equal(waitpid(dead, NULL, 0), dead);
  static const char *const outputs[] = {"o.c", "o.h", "t.safetensors", "t.ckpt.safetensors"};
  for (size_t i = 0; i < sizeof outputs / sizeof outputs[0]; i++) {
    char name[128];
    snprintf(name, sizeof name, ".%s.%ld.Ab12Cd", outputs[i], (long)dead);
    tu_write_text(name, "half a file");
    snprintf(name, sizeof name, ".%s.%ld.Ab12Cd", outputs[i], (long)getpid());
    tu_write_text(name, "being written");
    snprintf(name, sizeof name, ".%s.notes", outputs[i]);
    tu_write_text(name, "not a temporary");
  }
  assert_int_equal(tu_run("o.cnn -o o.c"), 0);
  assert_int_equal(tu_run("train o.cnn --data od --backend tcc --epochs 1 --out t.safetensors"), 0);
  for (size_t i = 0; i < sizeof outputs / sizeof outputs[0]; i++) {
    char name[128];
    snprintf(name, sizeof name, ".%s.%ld.Ab12Cd", outputs[i], (long)dead);
    if (tu_exists(name))
      fail_msg("%s was left behind", name);
    snprintf(name, sizeof name, ".%s.%ld.Ab12Cd", outputs[i], (long)getpid());
    assert_true(tu_exists(name));
    snprintf(name, sizeof name, ".%s.notes", outputs[i]);
    assert_true(tu_exists(name));
  }
}

/* /dev/zero and sparse files of gigabytes, in place of each kind of input,
   are refused after what the format can hold, naming the file. */
static void test_cli_reads_no_more_than_the_format_holds(void **state) {
  (void)state;
  write_tiny_run();
  Err e = {0};
  Image white = {1, 1, 1, (uint8_t[]){255}};
  if (image_write_png(tu_path("o.png"), &white, &e) < 0)
    fail_msg("%s", e.msg);
  tu_write_text("o5.pgm", "P5\n1 1\n255\n\377");
  /* Each valid file with 8 GB of zeros after it (sparse: no disk used). */
  assert_int_equal(tu_shell("truncate -s 8G zeros && "
                            "cp o.safetensors big.safetensors && truncate -s 8G big.safetensors && "
                            "cp od/t10k-images-idx3-ubyte big.idx && truncate -s 8G big.idx && "
                            "cp o5.pgm big.pgm && truncate -s 8G big.pgm && "
                            "cp o.png big.png && truncate -s 8G big.png && "
                            "printf '\\000\\000\\000\\020\\000\\000\\000\\000' > "
                            "hdr.safetensors && truncate -s 8G hdr.safetensors && "
                            "(head -c 8388608 /dev/zero | gzip > bomb.cnn.gz)"),
                   0);
  static const struct {
    const char *args, *message;
  } cases[] = {
      {"check /dev/zero", "/dev/zero: more than 4194304 bytes: too large for a network file"},
      {"check zeros", "zeros: more than 4194304 bytes: too large for a network file"},
      {"check bomb.cnn.gz", "bomb.cnn.gz: more than 4194304 bytes: too large for a network"},
      {"eval o.cnn --data od --backend tcc --weights /dev/zero",
       "/dev/zero: the header is not a JSON object"},
      {"eval o.cnn --data od --backend tcc --weights zeros", "zeros: the header is not a JSON"},
      {"eval o.cnn --data od --backend tcc --weights big.safetensors",
       "big.safetensors: holds more than the"},
      {"eval o.cnn --data od --backend tcc --weights hdr.safetensors",
       "hdr.safetensors: header length 268435456 is over the format's limit of 100 MB"},
      {"o.cnn -o o.c --weights big.safetensors", "big.safetensors: holds more than the"},
      {"predict o.cnn --backend tcc --weights o.safetensors /dev/zero",
       "/dev/zero: not an IDX file: found magic 0x00000000"},
      {"predict o.cnn --backend tcc --weights o.safetensors zeros",
       "zeros: not an IDX file: found magic 0x00000000"},
      {"predict o.cnn --backend tcc --weights o.safetensors big.idx",
       "big.idx: holds more than the 18 bytes its header declares"},
      {"predict o.cnn --backend tcc --weights o.safetensors big.pgm",
       "big.pgm: holds more than the 12 bytes its header declares"},
      {"predict o.cnn --backend tcc --weights o.safetensors big.png",
       "big.png: holds more than the"},
      {"explain o.cnn --backend tcc --weights o.safetensors big.png --out x.png",
       "big.png: holds more than the"},
      {"eval o.cnn --data od --backend tcc --weights o.safetensors", NULL}, /* the data is fine */
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    int status = tu_run("%s", cases[i].args);
    if (!cases[i].message) {
      assert_int_equal(status, 0);
      continue;
    }
    assert_int_equal(status, 1);
    assert_contains(tu_err, cases[i].message);
  }
  /* The files as they were, before the zeros, still read. */
  assert_int_equal(tu_run("predict o.cnn --backend tcc --weights o.safetensors o.png o5.pgm "
                          "od/t10k-images-idx3-ubyte"),
                   0);
  assert_int_equal(tu_shell("cp big.idx od/t10k-images-idx3-ubyte"), 0);
  assert_int_equal(tu_run("eval o.cnn --data od --backend tcc --weights o.safetensors"), 1);
  assert_contains(tu_err, "t10k-images-idx3-ubyte: holds more than the 18 bytes");
}

/* Writes NAME: "input INPUT" then `count` copies of LINE. */
static void write_repeated(const char *name, const char *input, const char *line, int count) {
  FILE *f = fopen(tu_path(name), "w");
  assert_non_null(f);
  fprintf(f, "input %s\n", input);
  for (int i = 0; i < count; i++)
    fprintf(f, "%s\n", line);
  assert_int_equal(fclose(f), 0);
}

/* Networks too large for reasonable C are refused at their line; large
   ones that are accepted compile at once (the tile search does not grow
   with the image, nothing is quadratic in the layer count). */
static void test_cli_large_networks_are_capped_or_quick(void **state) {
  (void)state;
  write_repeated("huge.cnn", "46000x46000x1", "conv2d 1 1", 1);
  assert_int_equal(tu_run("huge.cnn -o huge.c"), 1);
  assert_contains(tu_err, "huge.cnn:1:1: error: the input 46000x46000x1 is too large: at most "
                          "16384 pixels a side and 67108864 values in all");
  write_repeated("deep.cnn", "4x4x1", "relu", 100000);
  assert_int_equal(tu_run("deep.cnn -o deep.c"), 1);
  assert_contains(tu_err, "deep.cnn:10002:1: error: too many layers: at most 10000 (this is "
                          "layer 10001 of 100000)");
  assert_false(tu_exists("huge.c"));
  assert_false(tu_exists("deep.c"));
  /* The largest accepted input and layer count, and many layers with weights. */
  write_repeated("wide.cnn", "16384x4096x1", "conv2d 1 1", 1);
  assert_int_equal(tu_run("wide.cnn -o wide.c"), 0);
  write_repeated("long.cnn", "4x4x1", "relu", 10000);
  assert_int_equal(tu_run("long.cnn -o long.c"), 0);
  write_repeated("dense.cnn", "2x2x1\nflatten", "dense 2", 2000);
  assert_int_equal(tu_run("dense.cnn -o dense.c"), 0);
  assert_true(tu_exists("dense.h"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_cli_parse_accepts_every_spelling),
      cmocka_unit_test(test_cli_write_command_quotes_for_the_shell),
      cmocka_unit_test(test_cli_parse_rejects_bad_options),
      cmocka_unit_test(test_cli_suggest_finds_typos),
      cmocka_unit_test(test_cli_check_shows_class_names),
      cmocka_unit_test(test_cli_exit_statuses),
      cmocka_unit_test(test_cli_unknown_words_get_hints),
      cmocka_unit_test(test_cli_help_for_every_command),
      cmocka_unit_test(test_cli_language_help_and_docs_name_every_word),
      cmocka_unit_test(test_cli_compile_writes_source_and_header),
      cmocka_unit_test(test_cli_compile_error_writes_nothing),
      cmocka_unit_test(test_cli_compile_name_links_two_copies),
      cmocka_unit_test(test_cli_weights_raw_f32_and_non_finite),
      cmocka_unit_test(test_cli_predict_json_on_reference_cases),
      cmocka_unit_test(test_cli_bias_false_through_every_command),
      cmocka_unit_test(test_cli_batchnorm_through_every_command),
      cmocka_unit_test(test_cli_predict_checks_image_size),
      cmocka_unit_test(test_cli_predict_json_names_file_and_index),
      cmocka_unit_test(test_cli_eval_single_label_by_hand),
      cmocka_unit_test(test_cli_eval_multi_label_by_hand),
      cmocka_unit_test(test_cli_eval_refuses_data_that_does_not_fit),
      cmocka_unit_test(test_cli_eval_reproduces_pytorch),
      cmocka_unit_test(test_cli_refuses_weights_that_are_not_finite),
      cmocka_unit_test(test_cli_outputs_never_replace_inputs_or_devices),
      cmocka_unit_test(test_cli_stale_temporaries_are_removed),
      cmocka_unit_test(test_cli_reads_no_more_than_the_format_holds),
      cmocka_unit_test(test_cli_large_networks_are_capped_or_quick),
  };
  return cmocka_run_group_tests(tests, tu_setup, tu_teardown);
}
