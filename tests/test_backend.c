/*
 * test_backend.c: both backends compile the same small C file (math.h's
 * expf, string.h's memcpy, the headers generated code uses) and give the same
 * results; the cc backend caches by hash and reuses the object; compiler
 * errors come back as internal errors quoting the compiler.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../compiler/arena.h"
#include "backend.h"
#include "cli.h"
#include "engine.h"
#include "testutil.h"

static const char source[] =
    "#include <stdint.h>\n"
    "#include <stddef.h>\n"
    "#include <string.h>\n"
    "#include <math.h>\n"
    "/* softmax of n <= 16 values, through a copy */\n"
    "void t_softmax(const float *x, float *y, int n) {\n"
    "  float tmp[16];\n"
    "  memcpy(tmp, x, (size_t)n * sizeof(float));\n"
    "  float m = tmp[0], s = 0;\n"
    "  for (int i = 1; i < n; i++) if (tmp[i] > m) m = tmp[i];\n"
    "  for (int i = 0; i < n; i++) { y[i] = expf(tmp[i] - m); s += y[i]; }\n"
    "  for (int i = 0; i < n; i++) y[i] /= s;\n"
    "}\n"
    "int32_t t_answer(void) { return (int32_t)sqrt(1764.0); }\n";

typedef void (*SoftmaxFn)(const float *, float *, int);
typedef int32_t (*AnswerFn)(void);
typedef int (*IntFn)(void);

/* Function pointers from void * (POSIX dlsym style): copy the bits. */
#define LOOKUP(fn, prog, name)                                                                     \
  do {                                                                                             \
    void *sym_ = program_symbol(prog, name);                                                       \
    assert_non_null(sym_);                                                                         \
    memcpy(&(fn), &sym_, sizeof sym_);                                                             \
  } while (0)

static char *saved_cc;

/* The test directory (testutil.h) as a private cache, and the default
   compiler command for every test. */
static int setup(void **state) {
  if (tu_setup(state) != 0)
    return -1;
  setenv("XDG_CACHE_HOME", tu_tmp, 1);
  const char *cc = getenv("CC");
  saved_cc = cc ? strdup(cc) : NULL;
  unsetenv("CC");
  return 0;
}

static int teardown(void **state) {
  if (saved_cc)
    setenv("CC", saved_cc, 1);
  free(saved_cc);
  return tu_teardown(state);
}

/* What the source computes, by the host compiler. */
static void reference(const float *x, float *y, int n) {
  float m = x[0], s = 0;
  for (int i = 1; i < n; i++)
    if (x[i] > m)
      m = x[i];
  for (int i = 0; i < n; i++) {
    y[i] = expf(x[i] - m);
    s += y[i];
  }
  for (int i = 0; i < n; i++)
    y[i] /= s;
}

static void check_program(Program *p, float *out) {
  SoftmaxFn f;
  AnswerFn a;
  LOOKUP(f, p, "t_softmax");
  LOOKUP(a, p, "t_answer");
  assert_null(program_symbol(p, "no_such_symbol"));
  assert_int_equal(a(), 42);
  const float x[5] = {0.5f, -1.25f, 3.0f, 2.0f, -7.5f};
  float want[5];
  reference(x, want, 5);
  f(x, out, 5);
  for (int i = 0; i < 5; i++)
    assert_float_equal(out[i], want[i], 1e-6);
  assert_true(program_compile_seconds(p) >= 0);
}

static void test_backend_parse_words(void **state) {
  (void)state;
  assert_int_equal(backend_parse("auto"), BACKEND_AUTO);
  assert_int_equal(backend_parse("tcc"), BACKEND_TCC);
  assert_int_equal(backend_parse("cc"), BACKEND_CC);
  assert_int_equal(backend_parse("cc-kernels"), BACKEND_CC_KERNELS);
  assert_int_equal(backend_parse("gcc"), -1);
  assert_int_equal(backend_parse("TCC"), -1);
  assert_int_equal(backend_parse(""), -1);
}

/* Same source, both backends, same numbers. */
static void test_backend_tcc_and_cc_agree(void **state) {
  (void)state;
  Err e = {0};
  Program *t = backend_compile(BACKEND_TCC, source, strlen(source), &e);
  if (!t)
    fail_msg("%s", e.msg);
  Program *c = backend_compile(BACKEND_CC, source, strlen(source), &e);
  if (!c)
    fail_msg("%s", e.msg);
  assert_string_equal(program_backend(t), "tcc");
  assert_false(program_cached(t)); /* tcc compiles every time */
  assert_string_equal(program_backend(c), "cc");
  float yt[5], yc[5];
  check_program(t, yt);
  check_program(c, yc);
  /* expf, subtraction and division only: no contraction, so bit for bit. */
  assert_memory_equal(yt, yc, sizeof yt);
  program_free(t);
  program_free(c);
}

/* The object a cc compile leaves: CACHE/cnngen/HASH.so, HASH the FNV-1a of
   "cnngen-cc-1\0" COMMAND "\0" SOURCE; its name inside the test directory. */
static void expected_object(char *out, size_t n, const char *cmd, const char *src) {
  uint64_t h = 0xcbf29ce484222325ULL;
  const char *parts[3] = {"cnngen-cc-1", cmd, src};
  for (int k = 0; k < 3; k++) {
    size_t len = strlen(parts[k]) + (k < 2); /* the NULs between parts */
    for (size_t i = 0; i < len; i++) {
      h ^= (unsigned char)parts[k][i];
      h *= 0x100000001b3ULL;
    }
  }
  snprintf(out, n, "cnngen/%016llx.so", (unsigned long long)h);
}

static int count_files(const char *dir) {
  DIR *d = opendir(dir);
  assert_non_null(d);
  int n = 0;
  struct dirent *de;
  while ((de = readdir(d)))
    n += de->d_name[0] != '.';
  closedir(d);
  return n;
}

static void test_backend_cc_cache_hit(void **state) {
  (void)state;
  const char *src2 = "int t_two(void) { return 2; }\n";
  char obj[256];
  expected_object(obj, sizeof obj, "cc -O3 -march=native", src2);
  char dir[512];
  snprintf(dir, sizeof dir, "%s", tu_path("cnngen"));
  Err e = {0};
  Program *p1 = backend_compile(BACKEND_CC, src2, strlen(src2), &e);
  if (!p1)
    fail_msg("%s", e.msg);
  struct stat s1, s2;
  assert_int_equal(stat(tu_path(obj), &s1), 0);
  double first = program_compile_seconds(p1);
  assert_false(program_cached(p1));
  program_free(p1);
  int files = count_files(dir); /* objects only: no temporaries left */

  Program *p2 = backend_compile(BACKEND_CC, src2, strlen(src2), &e);
  if (!p2)
    fail_msg("%s", e.msg);
  IntFn two;
  LOOKUP(two, p2, "t_two");
  assert_int_equal(two(), 2);
  assert_int_equal(stat(tu_path(obj), &s2), 0);
  assert_int_equal(s1.st_ino, s2.st_ino); /* the same file, not rebuilt */
  assert_int_equal(s1.st_mtime, s2.st_mtime);
  assert_int_equal(count_files(dir), files);
  double second = program_compile_seconds(p2);
  assert_true(program_cached(p2));
  print_message("cc: compile %.3f s, cache hit %.4f s\n", first, second);
  assert_true(second < first);
  program_free(p2);

  /* Another command is another object. */
  setenv("CC", "cc -O1", 1);
  Program *p3 = backend_compile(BACKEND_CC, src2, strlen(src2), &e);
  unsetenv("CC");
  if (!p3)
    fail_msg("%s", e.msg);
  expected_object(obj, sizeof obj, "cc -O1", src2);
  assert_int_equal(stat(tu_path(obj), &s2), 0);
  assert_int_equal(count_files(dir), files + 1);
  program_free(p3);

  /* A damaged object in the cache is rebuilt. */
  tu_write_text(obj, "not an ELF file");
  setenv("CC", "cc -O1", 1);
  Program *p4 = backend_compile(BACKEND_CC, src2, strlen(src2), &e);
  unsetenv("CC");
  if (!p4)
    fail_msg("%s", e.msg);
  LOOKUP(two, p4, "t_two");
  assert_int_equal(two(), 2);
  program_free(p4);
}

static const char broken[] = "int t_bad(void) { return undeclared_thing + ; }\n";

static void test_backend_compile_error_is_internal(void **state) {
  (void)state;
  for (int k = 0; k < 2; k++) {
    Err e = {0};
    BackendKind kind = k ? BACKEND_CC : BACKEND_TCC;
    Program *p = backend_compile(kind, broken, strlen(broken), &e);
    assert_null(p);
    assert_int_equal(e.internal, 1);
    print_message("%s\n", e.msg);
    assert_non_null(strstr(e.msg, k ? "'cc -O3 -march=native' failed on the generated C"
                                    : "tcc failed to compile the generated C"));
    assert_non_null(strstr(e.msg, "error"));
    assert_non_null(strstr(e.msg, "undeclared_thing")); /* the compiler's own words */
    assert_non_null(strstr(e.msg, "undeclared"));
  }
}

/* A compiler that cannot be run at all is the user's environment, not a bug
   in the generated C: a user error that names it and says how it failed. */
static void test_backend_unusable_compiler_is_user_error(void **state) {
  (void)state;
  static const struct {
    const char *cc, *how;
  } cases[] = {{"/nonexistent/cc", "not found"}, {"false", "exit status 1"}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    Err e = {0};
    setenv("CC", cases[i].cc, 1);
    assert_null(backend_compile(BACKEND_CC, source, strlen(source), &e));
    unsetenv("CC");
    print_message("%s\n", e.msg);
    assert_int_equal(e.internal, 0);
    char named[64];
    snprintf(named, sizeof named, "the C compiler '%s'", cases[i].cc);
    assert_contains(e.msg, named);
    assert_contains(e.msg, cases[i].how);
    assert_contains(e.msg, "--backend tcc");
  }
}

static void test_backend_auto_choice(void **state) {
  (void)state;
  Err e = {0};
  Program *p = backend_compile(BACKEND_AUTO, source, strlen(source), &e);
  if (!p)
    fail_msg("%s", e.msg);
  assert_string_equal(program_backend(p), access("/usr/bin/cc", X_OK) == 0 ? "cc" : "tcc");
  program_free(p);
  /* No system compiler: tcc. */
  setenv("CC", "/nonexistent/cc -O2", 1);
  p = backend_compile(BACKEND_AUTO, source, strlen(source), &e);
  unsetenv("CC");
  if (!p)
    fail_msg("%s", e.msg);
  assert_string_equal(program_backend(p), "tcc");
  float y[5];
  check_program(p, y);
  program_free(p);
  /* A NUL inside the source is refused. */
  assert_null(backend_compile(BACKEND_TCC, "int a;\0int b;", 13, &e));
  assert_int_equal(e.internal, 1);
}

/* --backend auto takes the backend that finishes the run first (engine_pick):
   tcc for a run shorter than cc's compile, cc for a longer one, for a run of
   unknown size and once cc's cache holds the code; tcc where there is no cc. */
static void test_backend_auto_picks_the_first_to_finish(void **state) {
  (void)state;
  tu_write_text("a.cnn", "network a\ninput 12x12x1\nconv2d 8 3x3 relu\nflatten\n"
                         "dense 10 softmax\ntrain {\n  batch 4\n}\n");
  Arena arena = {0};
  int status = 0;
  Net *net = cli_compile_net(&arena, tu_path("a.cnn"), NULL, &status);
  assert_non_null(net);
  /* 13,000 multiply-adds an image: 100 images take microseconds, 1e9 minutes */
  assert_int_equal(engine_pick(net, true, 100, 2), BACKEND_TCC);
  assert_int_equal(engine_pick(net, false, 1, 1), BACKEND_TCC);
  assert_int_equal(engine_pick(net, true, 1e9, 2), BACKEND_CC);
  assert_int_equal(engine_pick(net, true, 0, 2), BACKEND_CC);
  setenv("CC", "/nonexistent/cc", 1);
  assert_int_equal(engine_pick(net, true, 1e9, 2), BACKEND_TCC);
  unsetenv("CC");
  Engine en;
  Err e = {0};
  if (engine_open(&en, net, BACKEND_CC, true, 1, &e) < 0) /* now in the cache */
    fail_msg("%s", e.msg);
  engine_close(&en);
  assert_int_equal(engine_pick(net, true, 100, 2), BACKEND_CC);
  assert_int_equal(engine_pick(net, false, 1, 1), BACKEND_TCC); /* inference's is not */
  arena_free(&arena);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_backend_parse_words),
      cmocka_unit_test(test_backend_tcc_and_cc_agree),
      cmocka_unit_test(test_backend_cc_cache_hit),
      cmocka_unit_test(test_backend_compile_error_is_internal),
      cmocka_unit_test(test_backend_auto_choice),
      cmocka_unit_test(test_backend_auto_picks_the_first_to_finish),
      cmocka_unit_test(test_backend_unusable_compiler_is_user_error),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
