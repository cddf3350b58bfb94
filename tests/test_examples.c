/*
 * test_examples.c: every example network checks; the ResNet and MobileNet
 * examples train an epoch; the imbalanced and multi-label examples, and
 * multi-label predict.
 *
 * The examples' make-data scripts run on the real Fashion-MNIST (Debian's
 * dataset-fashion-mnist; the tests skip without it) with --limit, so they
 * take a second, and their IDX output is checked here in C against the
 * source images read through idx.h: the imbalanced set keeps every image of
 * the other classes and the 1st, 11th, ... of each cut class, in order; each
 * 28x56 pair's halves are the source images its pairs.txt line names, and
 * its label row has exactly their two classes on. Multi-label predict runs a
 * hand-made one-layer sigmoid network whose outputs are known.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <cjson/cJSON.h>
#include <glob.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "formats/idx.h"
#include "formats/safetensors.h"
#include "testutil.h"

enum { LIMIT = 300 }; /* source images per split the scripts read */

/* Skips the test when Debian's Fashion-MNIST is not installed. */
static void need_dataset(void) {
  if (access(CNNGEN_DEFAULT_DATA, R_OK) != 0) {
    print_message("skipped: %s not found (Debian package dataset-fashion-mnist)\n",
                  CNNGEN_DEFAULT_DATA);
    skip();
  }
}

static void load_split(const char *dir, const char *which, IdxImages *im, IdxLabels *lb) {
  Err e = {0};
  if (idx_load_split(dir, which, im, lb, &e) < 0)
    fail_msg("%s", e.msg);
}

static int make_data(const char *example, const char *args) {
  int rc = tu_shell("%s/examples/%s/make-data %s", tu_repo, example, args);
  if (rc)
    fail_msg("make-data of %s %s: exit status %d\n%s", example, args, rc, tu_err);
  return rc;
}

/* ---- imbalanced ---- */

static bool is_cut(int c) {
  return c == 2 || c == 4 || c == 6;
}

static void test_examples_imbalanced_cuts_three_classes(void **state) {
  (void)state;
  need_dataset();
  char args[64];
  snprintf(args, sizeof args, "--limit %d imb", LIMIT);
  make_data("imbalanced", args);
  const char *splits[] = {"train", "t10k"};
  for (int s = 0; s < 2; s++) {
    IdxImages src, got;
    IdxLabels srcl, gotl;
    load_split(CNNGEN_DEFAULT_DATA, splits[s], &src, &srcl);
    load_split(tu_path("imb"), splits[s], &got, &gotl);
    assert_int_equal(got.h, 28);
    assert_int_equal(got.w, 28);
    assert_int_equal(got.c, 1);
    assert_int_equal(gotl.k, 0);
    assert_int_equal(gotl.n, got.n);
    /* Walk the source in order; the output must be exactly the kept ones. */
    int seen[10] = {0}, kept[10] = {0}, j = 0;
    for (int i = 0; i < LIMIT; i++) {
      int c = srcl.data[i];
      bool keep = s == 1 || !is_cut(c) || seen[c] % 10 == 0;
      seen[c]++;
      if (!keep)
        continue;
      assert_true(j < got.n);
      assert_int_equal(gotl.data[j], c);
      assert_memory_equal(got.data + (long)j * 784, src.data + (long)i * 784, 784);
      kept[c]++, j++;
    }
    assert_int_equal(j, got.n);
    for (int c = 0; c < 10; c++) {
      if (s == 0 && is_cut(c)) {
        /* A tenth, to rounding up; with a class of fewer than 10 images
           there would be nothing to check. */
        assert_true(seen[c] >= 10);
        assert_int_equal(kept[c], (seen[c] + 9) / 10);
      } else {
        assert_int_equal(kept[c], seen[c]);
      }
    }
    idx_images_free(&src), idx_images_free(&got);
    idx_labels_free(&srcl), idx_labels_free(&gotl);
  }
}

static void test_examples_make_data_errors_are_clear(void **state) {
  (void)state;
  assert_int_equal(tu_shell("%s/examples/imbalanced/make-data", tu_repo), 1);
  assert_contains(tu_err, "usage: make-data");
  assert_int_equal(tu_shell("%s/examples/multilabel/make-data --source nowhere out", tu_repo), 1);
  assert_contains(tu_err, "nowhere: no train-images-idx3-ubyte");
  assert_int_equal(tu_shell("%s/examples/multilabel/make-data --limit x out", tu_repo), 1);
  assert_contains(tu_err, "--limit needs a number");
}

/* ---- multi-label pairs ---- */

static void check_pairs(const char *which) {
  IdxImages src, got;
  IdxLabels srcl, gotl;
  load_split(CNNGEN_DEFAULT_DATA, which, &src, &srcl);
  load_split(tu_path("pairs"), which, &got, &gotl);
  assert_int_equal(got.n, LIMIT);
  assert_int_equal(got.h, 28);
  assert_int_equal(got.w, 56);
  assert_int_equal(got.c, 1);
  assert_int_equal(gotl.n, LIMIT);
  assert_int_equal(gotl.k, 10);
  char name[64];
  snprintf(name, sizeof name, "pairs/%s-pairs.txt", which);
  FILE *f = fopen(tu_path(name), "r");
  assert_non_null(f);
  int i = 0, left, right, cl, cr;
  while (fscanf(f, "%d %d %d %d", &left, &right, &cl, &cr) == 4) {
    assert_true(i < LIMIT);
    assert_int_equal(left, i); /* every source image on the left once */
    assert_true(right >= 0 && right < LIMIT);
    assert_int_equal(cl, srcl.data[left]);
    assert_int_equal(cr, srcl.data[right]);
    assert_int_not_equal(cl, cr);
    const uint8_t *img = got.data + (long)i * 28 * 56;
    for (int y = 0; y < 28; y++) {
      assert_memory_equal(img + y * 56, src.data + (long)left * 784 + y * 28, 28);
      assert_memory_equal(img + y * 56 + 28, src.data + (long)right * 784 + y * 28, 28);
    }
    for (int c = 0; c < 10; c++)
      assert_int_equal(gotl.data[(long)i * 10 + c], c == cl || c == cr);
    i++;
  }
  assert_true(feof(f));
  fclose(f);
  assert_int_equal(i, LIMIT);
  idx_images_free(&src), idx_images_free(&got);
  idx_labels_free(&srcl), idx_labels_free(&gotl);
}

static void test_examples_pairs_are_their_sources(void **state) {
  (void)state;
  need_dataset();
  char args[64];
  snprintf(args, sizeof args, "--limit %d --samples 2 pairs", LIMIT);
  make_data("multilabel", args);
  check_pairs("train");
  check_pairs("t10k");

  /* The samples are the first test pairs, as PGM. */
  IdxImages got;
  IdxLabels gotl;
  load_split(tu_path("pairs"), "t10k", &got, &gotl);
  assert_int_equal(tu_shell("ls pairs/samples"), 0);
  char list[256];
  snprintf(list, sizeof list, "%s", tu_out);
  int n = 0;
  for (char *name = strtok(list, "\n"); name; name = strtok(NULL, "\n"), n++) {
    int index = atoi(name);
    char p[128];
    static char pgm[4096];
    snprintf(p, sizeof p, "pairs/samples/%s", name);
    size_t len = tu_read_file(tu_path(p), pgm, sizeof pgm);
    const char *header = "P5\n56 28\n255\n";
    assert_int_equal(len, strlen(header) + 28 * 56);
    assert_memory_equal(pgm, header, strlen(header));
    assert_memory_equal(pgm + strlen(header), got.data + (long)index * 28 * 56, 28 * 56);
  }
  assert_int_equal(n, 2);
  idx_images_free(&got);
  idx_labels_free(&gotl);

  /* The same seed gives the same pairs; another seed others. */
  snprintf(args, sizeof args, "--limit %d --samples 0 again", LIMIT);
  make_data("multilabel", args);
  assert_int_equal(tu_shell("cmp pairs/train-pairs.txt again/train-pairs.txt"), 0);
  snprintf(args, sizeof args, "--limit %d --samples 0 --seed 7 other", LIMIT);
  make_data("multilabel", args);
  assert_int_not_equal(tu_shell("cmp -s pairs/train-pairs.txt other/train-pairs.txt"), 0);
}

/* ---- multi-label predict ---- */

/* One white pixel x = 1 through dense 3 sigmoid: outputs sigmoid(w + b). */
static const float tiny_w[3] = {2.0f, -1.0f, 0.5f}, tiny_b[3] = {0.0f, 0.0f, -3.0f};

static double tiny_output(int j) {
  return 1.0 / (1.0 + exp(-(double)(tiny_w[j] + tiny_b[j])));
}

static void write_tiny(const char *act, const char *loss) {
  char text[256];
  snprintf(text, sizeof text,
           "network tiny\ninput 1x1x1\nflatten\ndense 3 %s\ntrain {\n  loss %s\n}\n", act, loss);
  tu_write_text("tiny.cnn", text);
  StEntry t[2] = {{"dense1.weight", 2, {3, 1}, tiny_w}, {"dense1.bias", 1, {3}, tiny_b}};
  const char *meta[] = {"format", "cnngen", "network", "tiny", NULL};
  Err e = {0};
  if (st_write(tu_path("tiny.safetensors"), t, 2, meta, &e) < 0)
    fail_msg("%s", e.msg);
  tu_write_text("white.pgm", "P2\n1 1\n255\n255\n");
}

/* The "labels" list of a predict --json line, as a string like "0,1". */
static void json_labels(const char *line, char *out, size_t cap) {
  cJSON *o = cJSON_Parse(line);
  assert_non_null(o);
  assert_true(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(o, "index")));
  assert_true(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(o, "class")));
  assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(o, "outputs")), 3);
  const cJSON *labels = cJSON_GetObjectItemCaseSensitive(o, "labels"), *l;
  assert_true(cJSON_IsArray(labels));
  out[0] = '\0';
  cJSON_ArrayForEach(l, labels) {
    assert_true(cJSON_IsNumber(l));
    snprintf(out + strlen(out), cap - strlen(out), "%s%d", l == labels->child ? "" : ",",
             l->valueint);
  }
  cJSON_Delete(o);
}

static void test_examples_predict_lists_labels_above_threshold(void **state) {
  (void)state;
  write_tiny("sigmoid", "binary_crossentropy");
  double y0 = tiny_output(0), y1 = tiny_output(1), y2 = tiny_output(2);
  assert_true(y0 > 0.5 && y1 < 0.5 && y2 < y1); /* the cases below need this */
  char want[128], labels[64];

  /* Default 0.5: only output 0. */
  assert_int_equal(tu_run("predict tiny.cnn --weights tiny.safetensors white.pgm"), 0);
  snprintf(want, sizeof want, "0 white.pgm: label 0 (%.3f)\n", y0);
  assert_string_equal(tu_out, want);

  /* Just below output 1: it is listed too; just above: it is not. */
  assert_int_equal(
      tu_run("predict tiny.cnn --weights tiny.safetensors --threshold %.6f white.pgm", y1 - 1e-3),
      0);
  snprintf(want, sizeof want, "0 white.pgm: labels 0 (%.3f), 1 (%.3f)\n", y0, y1);
  assert_string_equal(tu_out, want);
  assert_int_equal(tu_run("predict tiny.cnn --weights tiny.safetensors --threshold %.6f --json "
                          "white.pgm",
                          y1 - 1e-3),
                   0);
  json_labels(tu_out, labels, sizeof labels);
  assert_string_equal(labels, "0,1");
  assert_int_equal(tu_run("predict tiny.cnn --weights tiny.safetensors --threshold %.6f --json "
                          "white.pgm",
                          y1 + 1e-3),
                   0);
  json_labels(tu_out, labels, sizeof labels);
  assert_string_equal(labels, "0");

  /* Below every output: all three; above every output: none. */
  assert_int_equal(
      tu_run("predict tiny.cnn --weights tiny.safetensors --json --threshold %.6f white.pgm",
             y2 - 1e-3),
      0);
  json_labels(tu_out, labels, sizeof labels);
  assert_string_equal(labels, "0,1,2");
  assert_int_equal(tu_run("predict tiny.cnn --weights tiny.safetensors --threshold 0.95 --json "
                          "white.pgm"),
                   0);
  json_labels(tu_out, labels, sizeof labels);
  assert_string_equal(labels, "");
  assert_int_equal(tu_run("predict tiny.cnn --weights tiny.safetensors --threshold 0.95 white.pgm"),
                   0);
  assert_string_equal(tu_out, "0 white.pgm: no label above 0.95\n");

  /* Not a threshold. */
  assert_int_equal(tu_run("predict tiny.cnn --weights tiny.safetensors --threshold 2 white.pgm"),
                   1);
}

static void test_examples_predict_single_label_unchanged(void **state) {
  (void)state;
  write_tiny("softmax", "sparse_categorical_crossentropy");
  assert_int_equal(tu_run("predict tiny.cnn --weights tiny.safetensors --threshold 0.9 --json "
                          "white.pgm"),
                   0);
  cJSON *o = cJSON_Parse(tu_out);
  assert_non_null(o);
  assert_int_equal(cJSON_GetArraySize(o), 4); /* index, file, class, outputs */
  assert_null(cJSON_GetObjectItemCaseSensitive(o, "labels"));
  cJSON_Delete(o);
  assert_int_equal(tu_run("predict tiny.cnn --weights tiny.safetensors white.pgm"), 0);
  assert_contains(tu_out, "0 white.pgm: class 0 (p=");
}

/* ---- the pairs network, end to end on a few hundred images ---- */

static double unit_number(const cJSON *o, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  if (!cJSON_IsNumber(v))
    fail_msg("no number \"%s\" in %s", key, tu_out);
  if (!(v->valuedouble >= 0 && v->valuedouble <= 1))
    fail_msg("\"%s\" is %g, not in [0, 1]", key, v->valuedouble);
  return v->valuedouble;
}

static void test_examples_pairs_network_trains_and_evaluates(void **state) {
  (void)state;
  need_dataset();
  char args[64];
  snprintf(args, sizeof args, "--limit %d --samples 1 quick", LIMIT);
  make_data("multilabel", args);
  int rc =
      tu_run("train %s/examples/multilabel/pairs.cnn --data quick --epochs 1 --out q.st", tu_repo);
  if (rc)
    fail_msg("train: exit status %d\n%s", rc, tu_err);
  assert_int_equal(
      tu_run("eval %s/examples/multilabel/pairs.cnn --weights q.st --data quick --json", tu_repo),
      0);
  cJSON *o = cJSON_Parse(tu_out);
  assert_non_null(o);
  const cJSON *loss = cJSON_GetObjectItemCaseSensitive(o, "loss");
  assert_true(cJSON_IsNumber(loss) && loss->valuedouble > 0 && isfinite(loss->valuedouble));
  unit_number(o, "micro_f1");
  unit_number(o, "macro_f1");
  unit_number(o, "exact_match");
  const cJSON *per = cJSON_GetObjectItemCaseSensitive(o, "per_label"), *l;
  assert_int_equal(cJSON_GetArraySize(per), 10);
  long support = 0;
  cJSON_ArrayForEach(l, per) {
    unit_number(l, "precision");
    unit_number(l, "recall");
    support += (long)cJSON_GetObjectItemCaseSensitive(l, "support")->valuedouble;
  }
  assert_int_equal(support, 2 * LIMIT); /* two labels per test pair */
  cJSON_Delete(o);

  /* predict on the sample PGM and on the IDX file: one line per image. */
  assert_int_equal(tu_run("predict %s/examples/multilabel/pairs.cnn --weights q.st --json "
                          "quick/t10k-images-idx3-ubyte",
                          tu_repo),
                   0);
  int lines = 0;
  for (char *line = strtok(tu_out, "\n"); line; line = strtok(NULL, "\n"), lines++) {
    cJSON *p = cJSON_Parse(line);
    assert_non_null(p);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(p, "outputs")), 10);
    assert_true(cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(p, "labels")));
    cJSON_Delete(p);
  }
  assert_int_equal(lines, LIMIT);
  assert_int_equal(
      tu_run("predict %s/examples/multilabel/pairs.cnn --weights q.st quick/samples/*.pgm",
             tu_repo),
      0);
  assert_contains(tu_out, "0 quick/samples/0-");
}

/* ---- the example networks ---- */

/* Every .cnn file in examples/ and its folders passes `cnngen check`. */
static void test_examples_every_network_checks(void **state) {
  (void)state;
  glob_t g;
  char pattern[2][600];
  snprintf(pattern[0], sizeof pattern[0], "%s/examples/*.cnn", tu_repo);
  snprintf(pattern[1], sizeof pattern[1], "%s/examples/*/*.cnn", tu_repo);
  assert_int_equal(glob(pattern[0], 0, NULL, &g), 0);
  assert_int_equal(glob(pattern[1], GLOB_APPEND, NULL, &g), 0);
  bool resnet = false, mobilenet = false;
  for (size_t i = 0; i < g.gl_pathc; i++) {
    int rc = tu_run("check '%s'", g.gl_pathv[i]);
    if (rc != 0)
      fail_msg("cnngen check %s: exit %d\n%s", g.gl_pathv[i], rc, tu_err);
    resnet |= strstr(g.gl_pathv[i], "/examples/resnet.cnn") != NULL;
    mobilenet |= strstr(g.gl_pathv[i], "/examples/mobilenet.cnn") != NULL;
  }
  assert_true(g.gl_pathc >= 10);
  assert_true(resnet && mobilenet);
  globfree(&g);
}

/* The ResNet and MobileNet examples train one epoch of their own recipe
   (augmentation, schedule, smoothing) on 128 real images, then evaluate. */
static void test_examples_resnet_and_mobilenet_train_an_epoch(void **state) {
  (void)state;
  if (!tu_fashion_subset("fm", 128, 32))
    need_dataset(); /* skips */
  const char *nets[] = {"resnet", "mobilenet"};
  for (int i = 0; i < 2; i++) {
    int rc = tu_run("train %s/examples/%s.cnn --data fm --epochs 1 --backend tcc --threads 2 "
                    "--out %s.safetensors",
                    tu_repo, nets[i], nets[i]);
    if (rc != 0)
      fail_msg("training %s: exit %d\n%s", nets[i], rc, tu_err);
    assert_contains(tu_out, "epoch 1/1 ");
    rc = tu_run("eval %s/examples/%s.cnn --data fm --backend tcc --weights %s.safetensors", tu_repo,
                nets[i], nets[i]);
    if (rc != 0)
      fail_msg("evaluating %s: exit %d\n%s", nets[i], rc, tu_err);
    assert_contains(tu_out, "32 images, 10 classes");
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_examples_every_network_checks),
      cmocka_unit_test(test_examples_resnet_and_mobilenet_train_an_epoch),
      cmocka_unit_test(test_examples_imbalanced_cuts_three_classes),
      cmocka_unit_test(test_examples_make_data_errors_are_clear),
      cmocka_unit_test(test_examples_pairs_are_their_sources),
      cmocka_unit_test(test_examples_predict_lists_labels_above_threshold),
      cmocka_unit_test(test_examples_predict_single_label_unchanged),
      cmocka_unit_test(test_examples_pairs_network_trains_and_evaluates),
  };
  return cmocka_run_group_tests(tests, tu_setup, tu_teardown);
}
