/*
 * test_embed.c: examples/embed, the deployable C.
 *
 * Builds the example with its Makefile (cnngen --weights --inference-only,
 * then the C compiler on classify.c and the generated C, warnings checked)
 * with gcc and with tcc, runs it on real Fashion-MNIST test images written
 * as PGM files, and checks each answer against `cnngen predict --json` on
 * the same files: the same class, the same score up to float rounding. A
 * second network (a reference case: 12x12 colour images, PPM input) checks
 * that NET names the generated symbols. Bad images must fail with exit
 * status 1 and a message, and not stop the good ones.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "idx.h"
#include "testutil.h"

#define FASHION_WEIGHTS TU_REFERENCE "/fashion-pytorch.safetensors"
#define REFERENCE_COLOUR TU_REFERENCE "/sgd_same_stride"
enum { N_IMAGES = 12 };

/* Writes image i of im as DIR/NAME (P5 for gray, P6 for colour); `comment`
   puts a comment line in the header, as GIMP and ImageMagick do. */
static void write_pnm(const char *name, const IdxImages *im, int i, int comment) {
  FILE *f = fopen(tu_path(name), "wb");
  assert_non_null(f);
  fprintf(f, "P%c\n%s%d %d\n255\n", im->c == 1 ? '5' : '6', comment ? "# test image\n" : "", im->w,
          im->h);
  size_t n = (size_t)im->h * im->w * im->c;
  assert_int_equal(fwrite(im->data + (size_t)i * n, 1, n, f), n);
  fclose(f);
}

/* A file of tests/reference that is missing fails the test with the
   command that makes it. */
static void need(const char *path) {
  const size_t n = strlen(TU_REFERENCE "/");
  if (!strncmp(path, TU_REFERENCE "/", n))
    tu_reference("%s", path + n);
}

/* Runs the example's Makefile into tmp/OUT. The environment of an outer
   `make test` (MAKEFLAGS carries its command-line variables) is left out. */
static void build(const char *out, const char *cc, const char *net, const char *weights) {
  need(weights);
  int rc = tu_shell("env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s -C %s/examples/embed "
                    "CC=%s CNNGEN=%s NET=%s/%s WEIGHTS=%s/%s OUT=%s",
                    tu_repo, cc, tu_cnngen, tu_repo, net, tu_repo, weights, tu_path(out));
  if (rc != 0)
    fail_msg("building examples/embed with %s failed:\n%s%s", cc, tu_out, tu_err);
  if (strstr(tu_out, "warning") || strstr(tu_err, "warning"))
    fail_msg("building examples/embed with %s warned:\n%s%s", cc, tu_out, tu_err);
}

typedef struct Answer {
  int cls;
  double score;
} Answer;

/* `cnngen predict --json` on the files: each line's class and its output. */
static void predict(const char *net, const char *weights, const char *files, Answer *a, int n) {
  need(weights);
  assert_int_equal(tu_run("predict %s/%s --weights %s/%s --backend tcc --json %s", tu_repo, net,
                          tu_repo, weights, files),
                   0);
  const char *line = tu_out;
  for (int i = 0; i < n; i++) {
    const char *c = strstr(line, "\"class\": "), *o = strstr(line, "\"outputs\": [");
    assert_non_null(c);
    assert_non_null(o);
    a[i].cls = atoi(c + 9);
    char *p = (char *)o + 12;
    for (int k = 0; k <= a[i].cls; k++) {
      a[i].score = strtod(p, &p);
      assert_true(*p == ',' || *p == ']');
      p++;
    }
    line = strchr(line, '\n');
    assert_non_null(line);
    line++;
  }
  assert_int_equal(*line, '\0');
}

/* Runs tmp/PROGRAM on the files and checks each line against `want`. */
static void check_classify(const char *program, const char *files, const char *name_fmt,
                           const Answer *want, int n) {
  int rc = tu_shell("%s %s", tu_path(program), files);
  if (rc != 0)
    fail_msg("%s exited with %d:\n%s", program, rc, tu_err);
  const char *line = tu_out;
  double worst = 0;
  for (int i = 0; i < n; i++) {
    char name[64], head[96];
    snprintf(name, sizeof name, name_fmt, i);
    snprintf(head, sizeof head, "%s: class ", name);
    assert_true(!strncmp(line, head, strlen(head)));
    int cls;
    double score;
    assert_int_equal(sscanf(line + strlen(head), "%d, score %lf", &cls, &score), 2);
    assert_int_equal(cls, want[i].cls);
    double diff = fabs(score - want[i].score);
    if (diff > worst)
      worst = diff;
    if (diff > 1e-5 * fmax(1, fabs(want[i].score)))
      fail_msg("%s: score %.9g, predict says %.9g", name, score, want[i].score);
    line = strchr(line, '\n');
    assert_non_null(line);
    line++;
  }
  assert_int_equal(*line, '\0');
  print_message("%s: %d images, classes equal, largest score difference %.3g\n", program, n, worst);
}

/* Fashion-MNIST test images 0..N_IMAGES-1 as img0.pgm ..., and predict's
   answers for them (once for the program). */
static Answer fashion_want[N_IMAGES];
static char fashion_files[N_IMAGES * 16];

static void fashion_images(void) {
  if (fashion_files[0])
    return;
  IdxImages im;
  IdxLabels lb;
  Err e = {0};
  if (idx_load_split(CNNGEN_DEFAULT_DATA, "t10k", &im, &lb, &e) < 0) {
    /* Without Debian's dataset-fashion-mnist: the reference case's real test images. */
    assert_int_equal(idx_load_split(tu_reference("seed_fashion/data"), "t10k", &im, &lb, &e), 0);
  }
  assert_true(im.n >= N_IMAGES && im.h == 28 && im.w == 28 && im.c == 1);
  char *p = fashion_files;
  for (int i = 0; i < N_IMAGES; i++) {
    char name[16];
    snprintf(name, sizeof name, "img%d.pgm", i);
    write_pnm(name, &im, i, i % 3 == 0);
    p += sprintf(p, "%s ", name);
  }
  idx_images_free(&im);
  idx_labels_free(&lb);
  predict("examples/fashion.cnn", FASHION_WEIGHTS, fashion_files, fashion_want, N_IMAGES);
}

static void test_embed_gcc_matches_predict(void **state) {
  (void)state;
  fashion_images();
  build("gcc", "gcc", "examples/fashion.cnn", FASHION_WEIGHTS);
  /* What the Makefile made: the classifier and the generated pair. */
  assert_true(tu_exists("gcc/fashion.c") && tu_exists("gcc/fashion.h"));
  check_classify("gcc/classify", fashion_files, "img%d.pgm", fashion_want, N_IMAGES);
}

static void test_embed_tcc_matches_predict(void **state) {
  (void)state;
  if (!tu_has_program("tcc")) {
    print_message("tcc is not installed (Debian package tcc): the tcc build is not tested\n");
    skip();
  }
  fashion_images();
  build("tcc", "tcc", "examples/fashion.cnn", FASHION_WEIGHTS);
  check_classify("tcc/classify", fashion_files, "img%d.pgm", fashion_want, N_IMAGES);
}

/* Another network: another name for the symbols, colour input from PPM. */
static void test_embed_other_network(void **state) {
  (void)state;
  IdxImages im;
  IdxLabels lb;
  Err e = {0};
  assert_int_equal(idx_load_split(tu_reference("sgd_same_stride/data"), "t10k", &im, &lb, &e), 0);
  assert_int_equal(im.c, 3);
  int n = im.n < 6 ? im.n : 6;
  char files[128] = "";
  for (int i = 0; i < n; i++) {
    char name[16];
    snprintf(name, sizeof name, "rgb%d.ppm", i);
    write_pnm(name, &im, i, i == 1);
    strcat(files, name);
    strcat(files, " ");
  }
  idx_images_free(&im);
  idx_labels_free(&lb);
  Answer want[6];
  predict(REFERENCE_COLOUR "/net.cnn", REFERENCE_COLOUR "/expected_trained.safetensors", files, want, n);
  build("rgb", "gcc", REFERENCE_COLOUR "/net.cnn", REFERENCE_COLOUR "/expected_trained.safetensors");
  assert_true(tu_exists("rgb/sgd_same_stride.h"));
  check_classify("rgb/classify", files, "rgb%d.ppm", want, n);
}

static void test_embed_rejects_bad_images(void **state) {
  (void)state;
  fashion_images();
  if (!tu_exists("gcc/classify"))
    build("gcc", "gcc", "examples/fashion.cnn", FASHION_WEIGHTS);
  /* Wrong size, ASCII PGM, colour, truncated raster, 16-bit, not an image. */
  FILE *f = fopen(tu_path("small.pgm"), "wb");
  assert_non_null(f);
  fprintf(f, "P5 27 28 255\n");
  for (int i = 0; i < 27 * 28; i++)
    fputc(i & 255, f);
  fclose(f);
  tu_write_text("ascii.pgm", "P2\n28 28\n255\n0 0 0\n");
  tu_write_text("colour.ppm", "P6\n28 28\n255\n");
  tu_write_text("short.pgm", "P5\n28 28\n255\n\x01\x02\x03");
  tu_write_text("deep.pgm", "P5\n28 28\n65535\n");
  tu_write_text("text.pgm", "hello\n");
  static const struct {
    const char *file, *says;
  } bad[] = {
      {"small.pgm", "the image is 27x28; the network takes 28x28"},
      {"ascii.pgm", "not a binary PGM"},
      {"colour.ppm", "the network takes gray images"},
      {"short.pgm", "truncated"},
      {"deep.pgm", "16-bit"},
      {"text.pgm", "not a binary PGM"},
      {"missing.pgm", "cannot open"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    /* A good image after the bad one is still classified. */
    assert_int_equal(tu_shell("%s %s img0.pgm", tu_path("gcc/classify"), bad[i].file), 1);
    char want[128];
    snprintf(want, sizeof want, "classify: %s: %s", bad[i].file, bad[i].says);
    assert_contains(tu_err, want);
    char line[64];
    snprintf(line, sizeof line, "img0.pgm: class %d, score ", fashion_want[0].cls);
    assert_contains(tu_out, line);
    assert_null(strstr(tu_out, bad[i].file));
  }
  assert_int_equal(tu_shell("%s", tu_path("gcc/classify")), 2);
  assert_contains(tu_err, "usage: classify");
}

/* Weights given as WEIGHTS= that are not there: the message names them and
   does not send the user to `make fashion`, which makes other weights. */
static void test_embed_names_missing_weights(void **state) {
  (void)state;
  int rc = tu_shell("env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s -C %s/examples/embed "
                    "CNNGEN=%s WEIGHTS=%s OUT=%s",
                    tu_repo, tu_cnngen, tu_path("nowhere.safetensors"), tu_path("out"));
  assert_int_not_equal(rc, 0);
  char want[600];
  snprintf(want, sizeof want, "%s is missing", tu_path("nowhere.safetensors"));
  assert_contains(tu_err, want);
  assert_null(strstr(tu_err, "make fashion"));
  assert_false(tu_exists("out/classify"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_embed_gcc_matches_predict),
      cmocka_unit_test(test_embed_tcc_matches_predict),
      cmocka_unit_test(test_embed_other_network),
      cmocka_unit_test(test_embed_rejects_bad_images),
      cmocka_unit_test(test_embed_names_missing_weights),
  };
  return cmocka_run_group_tests(tests, tu_setup, tu_teardown);
}
