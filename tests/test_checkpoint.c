/*
 * test_checkpoint.c: the training formats on their own
 * (runtime/formats/checkpoint.c and trainlog.c): a checkpoint's tensor names
 * and metadata written and read back, what a file that is not a checkpoint
 * gets, and the --log CSV with and without its lr column.
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

#include "formats/checkpoint.h"
#include "formats/trainlog.h"
#include "testutil.h"

/* conv1.weight [2,1,1,1], conv1.bias [2]: 4 floats. */
static const StParam params[2] = {
    {"conv1.weight", 4, {2, 1, 1, 1}, 0, 2},
    {"conv1.bias", 1, {2}, 2, 2},
};

static void test_ckpt_params_names_and_offsets(void **state) {
  (void)state;
  static const char *const slots[2] = {"opt.m", "opt.v"};
  int n;
  StParam *all = ckpt_params(params, 2, slots, 2, 4, &n);
  assert_non_null(all);
  assert_int_equal(n, 6);
  assert_string_equal(all[0].name, "conv1.weight");
  assert_string_equal(all[2].name, "opt.m.conv1.weight");
  assert_string_equal(all[5].name, "opt.v.conv1.bias");
  assert_int_equal(all[3].offset, 4 + 2);
  assert_int_equal(all[5].offset, 8 + 2);
  assert_int_equal(all[5].rank, 1);
  free(all);
}

static void test_ckpt_write_read_round_trip(void **state) {
  (void)state;
  static const char *const slots[2] = {"opt.velocity", "best"};
  int n;
  StParam *all = ckpt_params(params, 2, slots, 2, 4, &n);
  assert_string_equal(all[4].name, "best.conv1.weight");
  float data[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
  CkptMeta m = {.network = "net",
                .optimizer = "sgd",
                .backend = "tcc",
                .epoch = 3,
                .step = 120,
                .run_step = 150,
                .seed = 18446744073709551615ull,
                .batch = 32,
                .samples = 1000,
                .threads = 2,
                .epoch_batches = 7,
                .sums = {0.1, 224.0, 1.0 / 3.0, 2.5},
                .lr = 0.001,
                .test_accuracy = 0.875,
                .test_loss = 0.25,
                .best_epoch = 2,
                .waited = 1,
                .best_loss = 1.0 / 3.0};
  Err e = {0};
  assert_int_equal(ckpt_write(tu_path("c.st"), all, n, data, &m, &e), 0);
  StFile f;
  assert_int_equal(st_read(tu_path("c.st"), &f, &e), 0);
  CkptMeta r;
  assert_int_equal(ckpt_read_meta(&f, &r, &e), 0);
  assert_string_equal(r.network, "net");
  assert_string_equal(r.optimizer, "sgd");
  assert_string_equal(r.backend, "tcc");
  assert_true(r.epoch == 3 && r.step == 120 && r.run_step == 150 && r.batch == 32 &&
              r.samples == 1000);
  assert_true(r.seed == 18446744073709551615ull && r.threads == 2 && r.epoch_batches == 7);
  assert_true(r.sums_ok);
  for (int i = 0; i < 4; i++) /* hex floats: exact */
    assert_true(r.sums[i] == m.sums[i]);
  assert_true(r.lr == 0.001 && r.test_accuracy == 0.875 && r.test_loss == 0.25);
  assert_true(r.best_epoch == 2 && r.waited == 1 && r.best_loss == 1.0 / 3.0); /* exact */
  float back[12] = {0};
  assert_int_equal(st_load_params(&f, all, n, back, &e), 0);
  assert_memory_equal(back, data, sizeof data);
  st_free(&f);
  free(all);
}

static void test_ckpt_read_meta_refuses(void **state) {
  (void)state;
  float w[4] = {0};
  Err e = {0};
  const char *plain[] = {"format", "cnngen", "network", "net", NULL};
  StEntry t = {"conv1.weight", 4, {2, 1, 1, 1}, w};
  assert_int_equal(st_write(tu_path("w.st"), &t, 1, plain, &e), 0);
  StFile f;
  CkptMeta m;
  assert_int_equal(st_read(tu_path("w.st"), &f, &e), 0);
  assert_int_equal(ckpt_read_meta(&f, &m, &e), -1);
  assert_non_null(strstr(e.msg, "not a cnngen checkpoint"));
  assert_non_null(strstr(e.msg, tu_path("w.st")));
  st_free(&f);
  const char *no_step[] = {"format", "cnngen", "kind", "checkpoint", "epoch", "1", NULL};
  assert_int_equal(st_write(tu_path("s.st"), &t, 1, no_step, &e), 0);
  assert_int_equal(st_read(tu_path("s.st"), &f, &e), 0);
  assert_int_equal(ckpt_read_meta(&f, &m, &e), -1);
  assert_non_null(strstr(e.msg, "checkpoint metadata lacks a valid 'step'"));
  st_free(&f);
  /* the run's step below the optimizer's */
  const char *behind[] = {"format",        "cnngen", "kind",     "checkpoint", "epoch", "1",
                          "step",          "5",      "seed",     "1",          "batch", "2",
                          "train_samples", "10",     "run_step", "4",          NULL};
  assert_int_equal(st_write(tu_path("b.st"), &t, 1, behind, &e), 0);
  assert_int_equal(st_read(tu_path("b.st"), &f, &e), 0);
  assert_int_equal(ckpt_read_meta(&f, &m, &e), -1);
  assert_non_null(strstr(e.msg, "checkpoint metadata out of range (run_step 4 below step 5)"));
  assert_non_null(strstr(e.msg, tu_path("b.st")));
  st_free(&f);
}

/* A checkpoint written before run_step: the run's step is the optimizer's. */
static void test_ckpt_read_meta_without_run_step(void **state) {
  (void)state;
  float w[4] = {0};
  Err e = {0};
  StEntry t = {"conv1.weight", 4, {2, 1, 1, 1}, w};
  const char *old[] = {"format",        "cnngen", "kind", "checkpoint", "epoch", "1",
                       "step",          "5",      "seed", "1",          "batch", "2",
                       "train_samples", "10",     NULL};
  assert_int_equal(st_write(tu_path("o.st"), &t, 1, old, &e), 0);
  StFile f;
  CkptMeta m;
  assert_int_equal(st_read(tu_path("o.st"), &f, &e), 0);
  assert_int_equal(ckpt_read_meta(&f, &m, &e), 0);
  assert_true(m.step == 5 && m.run_step == 5);
  st_free(&f);
}

static void test_trainlog_round_trip_and_old_header(void **state) {
  (void)state;
  EpochStats rows[3] = {{1, 0.5, 0.8, 0.4, 0.85, 1.5, 0.001, NAN, NAN},
                        {2, 0.25, 0.9, 0.3, 0.875, 1.25, NAN, NAN, NAN}};
  Err e = {0};
  assert_int_equal(trainlog_write(tu_path("log.csv"), rows, 2, false, &e), 0);
  char text[512];
  tu_read_file(tu_path("log.csv"), text, sizeof text);
  assert_string_equal(text, "epoch,loss,accuracy,test_loss,test_accuracy,seconds,lr\n"
                            "1,0.500000,0.800000,0.400000,0.850000,1.500000,0.001\n"
                            "2,0.250000,0.900000,0.300000,0.875000,1.250000,\n");
  EpochStats back[3];
  int n = 0;
  assert_int_equal(trainlog_read(tu_path("log.csv"), 1, back, &n, 3, &e), 0);
  assert_int_equal(n, 1); /* epochs past max_epoch are left out */
  assert_true(back[0].lr == 0.001 && back[0].test_accuracy == 0.85);
  tu_write_text("old.csv", "epoch,loss,accuracy,test_loss,test_accuracy,seconds\n"
                           "1,0.5,0.8,0.4,0.85,1.5\r\n");
  n = 0;
  assert_int_equal(trainlog_read(tu_path("old.csv"), 5, back, &n, 3, &e), 0);
  assert_int_equal(n, 1);
  assert_true(isnan(back[0].lr));
  tu_write_text("bad.csv", "epoch,loss,accuracy,test_loss,test_accuracy,seconds,lr\n1,x\n");
  n = 0;
  assert_int_equal(trainlog_read(tu_path("bad.csv"), 5, back, &n, 3, &e), -1);
  assert_non_null(strstr(e.msg, "line 2 is not a row of numbers"));
  n = 0;
  assert_int_equal(trainlog_read(tu_path("none.csv"), 5, back, &n, 3, &e), 0);
  assert_int_equal(n, 0);
  /* With a validation set: its columns after accuracy, read back by name. */
  rows[0].val_loss = 0.375;
  rows[0].val_accuracy = 0.8125;
  assert_int_equal(trainlog_write(tu_path("val.csv"), rows, 2, true, &e), 0);
  tu_read_file(tu_path("val.csv"), text, sizeof text);
  assert_string_equal(
      text, "epoch,loss,accuracy,val_loss,val_accuracy,test_loss,test_accuracy,seconds,lr\n"
            "1,0.500000,0.800000,0.375000,0.812500,0.400000,0.850000,1.500000,0.001\n"
            "2,0.250000,0.900000,,,0.300000,0.875000,1.250000,\n");
  n = 0;
  assert_int_equal(trainlog_read(tu_path("val.csv"), 5, back, &n, 3, &e), 0);
  assert_int_equal(n, 2);
  assert_true(back[0].val_loss == 0.375 && back[0].val_accuracy == 0.8125);
  assert_true(back[0].test_loss == 0.4 && back[0].lr == 0.001);
  assert_true(isnan(back[1].val_loss) && isnan(back[1].val_accuracy) && isnan(back[1].lr));
  assert_true(back[1].seconds == 1.25);
  /* A plain log reads back without validation scores. */
  n = 0;
  assert_int_equal(trainlog_read(tu_path("log.csv"), 5, back, &n, 3, &e), 0);
  assert_true(isnan(back[0].val_loss) && isnan(back[0].val_accuracy));
  tu_write_text("short.csv",
                "epoch,loss,accuracy,val_loss,val_accuracy,test_loss,test_accuracy,seconds,lr\n"
                "1,0.5,0.8,0.4,0.85,1.5,0.001\n");
  n = 0;
  assert_int_equal(trainlog_read(tu_path("short.csv"), 5, back, &n, 3, &e), -1);
  assert_non_null(
      strstr(e.msg, "line 2 is not a row of numbers like 'epoch,loss,accuracy,val_loss"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_ckpt_params_names_and_offsets),
      cmocka_unit_test(test_ckpt_write_read_round_trip),
      cmocka_unit_test(test_ckpt_read_meta_refuses),
      cmocka_unit_test(test_ckpt_read_meta_without_run_step),
      cmocka_unit_test(test_trainlog_round_trip_and_old_header),
  };
  return cmocka_run_group_tests(tests, tu_setup, tu_teardown);
}
