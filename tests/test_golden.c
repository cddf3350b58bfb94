/*
 * test_golden.c: forward numerics against the PyTorch (float64) reference
 * cases in tests/reference, through both backends, and the two backends
 * against each other. Every case folder holds net.cnn, init.safetensors,
 * data/t10k-images-idx3-ubyte and expected_outputs.jsonl.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>
#include <cmocka.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "compile.h"
#include "engine.h"
#include "idx.h"
#include "io.h"
#include "testutil.h"

typedef struct Case {
  Arena arena;
  Net *net;
  float *params;
  float *x; /* [n][INPUT_SIZE] */
  int n;
  double *want; /* [n][OUTPUT_SIZE] */
} Case;

/* Opens the reference case NAME; a missing file fails the test, naming it. */
static void case_open(Case *c, const char *name) {
  Err e = {0};
  memset(c, 0, sizeof *c);

  const char *path = tu_reference("%s/net.cnn", name);
  size_t len;
  char *src = io_read_file(path, &len, &e);
  assert_non_null(src);
  Diag d;
  diag_init(&d, stderr, src, len);
  CompileOptions opt = {0};
  c->net = compile(&c->arena, path, src, len, &opt, &d);
  assert_non_null(c->net);
  free(src);

  path = tu_reference("%s/init.safetensors", name);
  c->params = cli_read_weights(path, c->net, &e);
  if (!c->params)
    fail_msg("%s", e.msg);

  path = tu_reference("%s/data/t10k-images-idx3-ubyte", name);
  IdxImages im;
  if (idx_read_images(path, &im, &e) < 0)
    fail_msg("%s", e.msg);
  long size = shape_size(c->net->input);
  assert_int_equal((long)im.h * im.w * im.c, size);
  c->n = im.n;
  c->x = malloc(sizeof(float) * (size_t)(im.n * size));
  cli_bytes_to_floats(im.data, im.n * size, c->x);
  idx_images_free(&im);

  path = tu_reference("%s/expected_outputs.jsonl", name);
  char *lines = io_read_file(path, &len, &e);
  assert_non_null(lines);
  long outs = shape_size(c->net->output);
  c->want = calloc((size_t)(c->n * outs), sizeof(double));
  int row = 0;
  for (char *line = strtok(lines, "\n"); line; line = strtok(NULL, "\n"), row++) {
    assert_true(row < c->n);
    cJSON *obj = cJSON_Parse(line);
    assert_non_null(obj);
    assert_int_equal(cJSON_GetObjectItem(obj, "index")->valueint, row);
    cJSON *o = cJSON_GetObjectItem(obj, "outputs");
    assert_int_equal(cJSON_GetArraySize(o), outs);
    for (int k = 0; k < outs; k++)
      c->want[row * outs + k] = cJSON_GetArrayItem(o, k)->valuedouble;
    cJSON_Delete(obj);
  }
  assert_int_equal(row, c->n);
  free(lines);
}

static void case_close(Case *c) {
  free(c->params);
  free(c->x);
  free(c->want);
  arena_free(&c->arena);
}

/* Runs the case's images through `backend` with `threads`; returns the outputs. */
static float *run(Case *c, BackendKind backend, int threads) {
  Engine en;
  Err e = {0};
  if (engine_open(&en, c->net, backend, false, threads, &e) < 0)
    fail_msg("%s", e.msg);
  en.load(en.model, c->params);
  float *y = malloc(sizeof(float) * (size_t)(c->n * shape_size(c->net->output)));
  engine_infer(&en, c->x, c->n, y);
  engine_close(&en);
  return y;
}

static void check_case(const char *name, BackendKind backend, int threads) {
  Case c;
  case_open(&c, name);
  float *y = run(&c, backend, threads);
  long total = c.n * shape_size(c.net->output);
  double worst = 0;
  long bad = -1;
  for (long i = 0; i < total; i++) {
    double d = fabs(y[i] - c.want[i]);
    if (!(d <= TU_PREDICT_ATOL + TU_PREDICT_RTOL * fabs(c.want[i])) && bad < 0)
      bad = i;
    if (d > worst || isnan(d))
      worst = d;
  }
  print_message("%s %s threads=%d: %d images, max difference %.3g\n", name,
                backend == BACKEND_TCC ? "tcc" : "cc", threads, c.n, worst);
  if (bad >= 0)
    fail_msg("%s: output %ld is %.9g, PyTorch says %.9g", name, bad, (double)y[bad], c.want[bad]);
  free(y);
  case_close(&c);
}

static void test_golden_forward_tcc(void **state) {
  (void)state;
  for (int i = 0; i < TU_REFERENCE_CASES; i++)
    check_case(tu_reference_cases[i], BACKEND_TCC, 1);
}

static void test_golden_forward_cc(void **state) {
  (void)state;
  for (int i = 0; i < TU_REFERENCE_CASES; i++)
    check_case(tu_reference_cases[i], BACKEND_CC, 2);
}

/* The backends compile the same source; their outputs agree to float rounding,
   and thread count never changes an output (images are independent). */
static void test_golden_backends_agree(void **state) {
  (void)state;
  for (int i = 0; i < TU_REFERENCE_CASES; i++) {
    Case c;
    case_open(&c, tu_reference_cases[i]);
    float *a = run(&c, BACKEND_TCC, 1);
    float *b = run(&c, BACKEND_CC, 1);
    float *b3 = run(&c, BACKEND_CC, 3);
    long total = c.n * shape_size(c.net->output);
    double worst = 0;
    for (long k = 0; k < total; k++) {
      double d = fabs(a[k] - b[k]);
      worst = d > worst ? d : worst;
      assert_true(d <= 1e-6 + 1e-5 * fabs(b[k]));
      assert_memory_equal(&b[k], &b3[k], sizeof(float));
    }
    print_message("%s: tcc vs cc max difference %.3g\n", tu_reference_cases[i], worst);
    free(a);
    free(b);
    free(b3);
    case_close(&c);
  }
}

/* Every case folder in tests/reference (a folder with a net.cnn) is one of
   tu_reference_cases, so a new reference case cannot be silently skipped,
   and every one of those is there. */
static void test_golden_all_cases_listed(void **state) {
  (void)state;
  DIR *d = opendir(TU_REFERENCE);
  assert_non_null(d);
  struct dirent *ent;
  while ((ent = readdir(d))) {
    char net[512];
    snprintf(net, sizeof net, "%s/%s/net.cnn", TU_REFERENCE, ent->d_name);
    if (ent->d_name[0] == '.' || access(net, R_OK) != 0)
      continue;
    int found = 0;
    for (int i = 0; i < TU_REFERENCE_CASES; i++)
      found |= strcmp(tu_reference_cases[i], ent->d_name) == 0;
    if (!found)
      fail_msg("reference case %s is not in tests/testutil.c's tu_reference_cases", ent->d_name);
  }
  closedir(d);
  for (int i = 0; i < TU_REFERENCE_CASES; i++)
    tu_reference("%s/net.cnn", tu_reference_cases[i]);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_golden_all_cases_listed),
      cmocka_unit_test(test_golden_forward_tcc),
      cmocka_unit_test(test_golden_forward_cc),
      cmocka_unit_test(test_golden_backends_agree),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
