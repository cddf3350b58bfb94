/*
 * test_mpi.c: `mpirun -n R cnngen train` (runtime/dist.c). R ranks of T
 * threads must give the weights and checkpoint of one process of R*T
 * threads byte for byte; a rank whose network or data differ stops every
 * rank with one message; a killed rank ends the job instead of hanging;
 * checkpoints resume across rank counts with the same thread total; a
 * cnngen without its MPI plugin refuses under mpirun. First, without
 * mpirun, the wait check's look at a process: gone, there, or no answer.
 *
 * Every rank runs through ./rank.sh, which records its pid in .rankN.pid
 * and, for rank 1, reads rank1.env and runs inside rank1/ when these exist
 * (so rank 1 can be given another network, data or CC under the same names);
 * where rank0.status exists, rank 0 runs as the script's child and the
 * script writes its exit status there (mpirun reports another). mpirun runs
 * under `timeout`, so a hang fails the test instead of stopping the suite.
 * Without mpirun or the plugin the program exits 77 (skipped).
 *
 * Every run that is compared byte for byte names its backend: under auto a
 * run picks cc once cc's cache holds the network (another run may have put
 * it there), and tcc's and cc's floats differ in the last bits.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dist.h"
#include "formats/idx.h"
#include "testutil.h"

/* mpirun as root and with more ranks than cores, as on a test machine;
   LSAN_OPTIONS (see group_setup) to every rank. */
#define MPIRUN "timeout 300 mpirun --allow-run-as-root --oversubscribe -x LSAN_OPTIONS"

static int mpi(int ranks, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* `mpirun -n RANKS cnngen ARGS` in the directory; like tu_run. */
static int mpi(int ranks, const char *fmt, ...) {
  char args[4096];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(args, sizeof args, fmt, ap);
  va_end(ap);
  return tu_shell(MPIRUN " -n %d ./rank.sh %s", ranks, args);
}

/* Starts `mpirun -n RANKS cnngen ARGS` in the directory without waiting
   (stdout and stderr to .out and .err, as tu_start); its pid. */
static pid_t mpi_start(int ranks, const char *args) {
  unlink(tu_path(".rank0.pid"));
  unlink(tu_path(".rank1.pid"));
  return tu_start_shell("exec " MPIRUN " -n %d ./rank.sh %s", ranks, args);
}

/* The pid in .rankN.pid, once rank N has started. */
static pid_t rank_pid(int rank) {
  char name[32], text[64];
  snprintf(name, sizeof name, ".rank%d.pid", rank);
  tu_read_file(tu_path(name), text, sizeof text);
  assert_true(atol(text) > 0);
  return (pid_t)atol(text);
}

/* Both files in the directory, byte for byte. */
static void assert_same_file(const char *a, const char *b) {
  if (tu_shell("cmp %s %s", a, b) != 0)
    fail_msg("%s and %s differ: %s", a, b, tu_out);
}

static int group_setup(void **state) {
  if (tu_setup(state) != 0)
    return -1;
  /* Under SAN=1: what Open MPI leaves allocated at MPI_Finalize is not
     cnngen's leak. Its components stay loaded (no dlclose) and stacks are
     unwound in full, so that the suppressions can name its libraries. */
  char lsan[4600];
  snprintf(lsan, sizeof lsan,
           "suppressions=%s/tests/lsan-mpi.supp:fast_unwind_on_malloc=0:print_suppressions=0",
           tu_repo);
  setenv("LSAN_OPTIONS", lsan, 1);
  setenv("OMPI_MCA_mca_base_component_disable_dlclose", "1", 1);
  char script[1024];
  snprintf(script, sizeof script,
           "#!/bin/sh\n"
           "echo $$ > .rank$OMPI_COMM_WORLD_RANK.pid\n"
           "if [ \"$OMPI_COMM_WORLD_RANK\" = 1 ] && [ -f rank1.env ]; then . ./rank1.env; fi\n"
           "if [ \"$OMPI_COMM_WORLD_RANK\" = 1 ] && [ -d rank1 ]; then cd rank1; fi\n"
           "if [ \"$OMPI_COMM_WORLD_RANK\" = 0 ] && [ -f rank0.status ]; then\n"
           /* mpirun's SIGTERM goes to the process group: cnngen gets it, the
              script waits on (a trap runs after its foreground command) */
           "  trap : TERM\n"
           "  %s \"$@\"\n"
           "  s=$?; echo $s > rank0.status; exit $s\n"
           "fi\n"
           "exec %s \"$@\"\n",
           tu_cnngen, tu_cnngen);
  tu_write_text("rank.sh", script);
  return chmod(tu_path("rank.sh"), 0755);
}

/* examples/fashion.cnn, batch 32 over 600 images (the last batch 24), one
   epoch: 2 ranks x 1 thread against 1 process x 2 threads. */
static void test_mpi_fashion_matches_threads(void **state) {
  (void)state;
  if (!tu_fashion_subset("fashion", 600, 100))
    fail_msg("%s not found (install Debian's dataset-fashion-mnist)", CNNGEN_DEFAULT_DATA);
  char net[4200];
  snprintf(net, sizeof net, "%s/examples/fashion.cnn", tu_repo);
  assert_int_equal(
      tu_run("train %s --data fashion --backend tcc --epochs 1 --threads 2 --out one.safetensors",
             net),
      0);
  int status = mpi(
      2, "train %s --data fashion --backend tcc --epochs 1 --threads 1 --out two.safetensors", net);
  if (status != 0)
    fail_msg("mpirun exited %d:\n%s%s", status, tu_out, tu_err);
  assert_contains(tu_out, "2 ranks x 1 thread");
  assert_int_equal(tu_count(tu_out, "epoch 1/1"), 1); /* rank 0 alone prints */
  assert_same_file("one.safetensors", "two.safetensors");
  assert_same_file("one.ckpt.safetensors", "two.ckpt.safetensors");
}

/* Conv, pool, dropout and dense on 12x12 quadrant images; the optimizer
   and its settings in %s. */
static const char small_net[] = "network small\n"
                                "input 12x12x1\n"
                                "conv2d 4 3x3 relu\n"
                                "maxpool 2x2\n"
                                "flatten\n"
                                "dropout 0.25\n"
                                "dense 4 softmax\n"
                                "train {\n"
                                "  optimizer %s\n"
                                "  batch 7\n"
                                "  epochs 2\n"
                                "  seed 3\n"
                                "}\n";

static void write_small_net(const char *name, const char *optimizer) {
  char text[1024];
  snprintf(text, sizeof text, small_net, optimizer);
  tu_write_text(name, text);
}

/* Adam and SGD with momentum; batches of 7 split unevenly (2 ranks x 2
   threads: 1, 2, 2, 2 images), the last batch of 100 images has 2. */
static void test_mpi_adam_and_sgd_match_threads(void **state) {
  (void)state;
  tu_quadrant_data("quad", 100, 30);
  static const char *const optimizers[2] = {"adam lr=0.01", "sgd lr=0.05 momentum=0.9"};
  for (int i = 0; i < 2; i++) {
    write_small_net("small.cnn", optimizers[i]);
    assert_int_equal(
        tu_run("train small.cnn --data quad --backend tcc --threads 4 --out one.safetensors"), 0);
    int status =
        mpi(2, "train small.cnn --data quad --backend tcc --threads 2 --out two.safetensors");
    if (status != 0)
      fail_msg("%s: mpirun exited %d:\n%s%s", optimizers[i], status, tu_out, tu_err);
    assert_same_file("one.safetensors", "two.safetensors");
    assert_same_file("one.ckpt.safetensors", "two.ckpt.safetensors");
    /* Three ranks of one thread against three threads. */
    assert_int_equal(
        tu_run("train small.cnn --data quad --backend tcc --threads 3 --out one.safetensors"), 0);
    status = mpi(3, "train small.cnn --data quad --backend tcc --threads 1 --out two.safetensors");
    if (status != 0)
      fail_msg("%s: mpirun -n 3 exited %d:\n%s%s", optimizers[i], status, tu_out, tu_err);
    assert_same_file("one.safetensors", "two.safetensors");
  }
}

/* Batchnorm: the batch's statistics summed over every rank's threads, in
   global thread order, inside the forward and backward passes. Batches of
   7 over 2 x 2 threads (1, 2, 2, 2 images), the last batch of 100 images
   with 2 (two empty chunks, global thread 0's among them); 2 ranks x 1
   thread and 2 ranks x 2 threads against 2 and 4 threads, and a checkpoint
   of 2 ranks resumed by one process and the other way round. */
static const char bn_net[] = "network bn\n"
                             "input 12x12x1\n"
                             "conv2d 4 3x3 bias=false\n"
                             "batchnorm\n"
                             "relu\n"
                             "residual {\n"
                             "  conv2d 4 3x3 padding=same bias=false\n"
                             "  batchnorm momentum=0.3\n"
                             "}\n"
                             "maxpool 2x2\n"
                             "flatten\n"
                             "dense 8\n"
                             "batchnorm\n"
                             "relu\n"
                             "dense 4 softmax\n"
                             "train {\n"
                             "  optimizer adam lr=0.01\n"
                             "  batch 7\n"
                             "  epochs 2\n"
                             "}\n";

static void test_mpi_batchnorm_matches_threads(void **state) {
  (void)state;
  tu_quadrant_data("quad", 100, 30);
  tu_write_text("bn.cnn", bn_net);
  for (int threads = 1; threads <= 2; threads++) {
    assert_int_equal(
        tu_run("train bn.cnn --data quad --backend tcc --threads %d --out one.safetensors",
               2 * threads),
        0);
    int status = mpi(2, "train bn.cnn --data quad --backend tcc --threads %d --out two.safetensors",
                     threads);
    if (status != 0)
      fail_msg("mpirun exited %d:\n%s%s", status, tu_out, tu_err);
    assert_same_file("one.safetensors", "two.safetensors");
    assert_same_file("one.ckpt.safetensors", "two.ckpt.safetensors");
  }
  /* one.safetensors: 4 threads, 2 epochs */
  assert_int_equal(
      mpi(2, "train bn.cnn --data quad --backend tcc --threads 2 --epochs 1 --out h.safetensors "
             "--checkpoint h.ckpt"),
      0);
  assert_int_equal(
      tu_run("train bn.cnn --data quad --backend tcc --threads 4 --resume h.ckpt --checkpoint "
             "h2.ckpt --out b.safetensors"),
      0);
  assert_same_file("one.safetensors", "b.safetensors");
  assert_int_equal(
      tu_run("train bn.cnn --data quad --backend tcc --threads 4 --epochs 1 --out g.safetensors "
             "--checkpoint g.ckpt"),
      0);
  int status =
      mpi(2, "train bn.cnn --data quad --backend tcc --threads 2 --resume g.ckpt --checkpoint "
             "g2.ckpt --out c.safetensors");
  if (status != 0)
    fail_msg("mpirun --resume exited %d:\n%s%s", status, tu_out, tu_err);
  assert_same_file("one.safetensors", "c.safetensors");
}

/* Rank 1 reads another small.cnn (one space more) or other data: every rank
   stops before training, rank 0 says which, nothing is written. */
static void test_mpi_rank_with_other_network_or_data(void **state) {
  (void)state;
  tu_quadrant_data("quad", 100, 30);
  write_small_net("small.cnn", "adam lr=0.01");
  /* (tu_shell sends stdout to .out: the files are named, not redirected) */
  assert_int_equal(tu_shell("rm -rf rank1 && mkdir rank1 && cp -r quad rank1/ && "
                            "cp small.cnn rank1/ && sed -i 's/dense 4/dense  4/' rank1/small.cnn"),
                   0);
  int status =
      mpi(2, "train small.cnn --data quad --backend tcc --threads 1 --out bad.safetensors");
  assert_int_equal(status, 1);
  assert_contains(tu_err, "cnngen: error: small.cnn: rank 1's network file differs from rank 0's");
  assert_int_equal(tu_count(tu_err, "cnngen: error:"), 1);
  assert_false(tu_exists("bad.safetensors"));
  assert_false(tu_exists("bad.ckpt.safetensors"));

  /* The same network, 90 training images instead of 100. */
  assert_int_equal(tu_shell("cp small.cnn rank1/small.cnn"), 0);
  tu_quadrant_data("rank1/quad", 90, 30);
  status = mpi(2, "train small.cnn --data quad --backend tcc --threads 1 --out bad.safetensors");
  assert_int_equal(status, 1);
  assert_contains(tu_err, "cnngen: error: quad: rank 1's data differ from rank 0's: 90 training");
  assert_false(tu_exists("bad.safetensors"));

  /* The same counts, one byte of one image changed. */
  assert_int_equal(tu_shell("rm -rf rank1/quad && cp -r quad rank1/ && "
                            "printf x | dd of=rank1/quad/train-images-idx3-ubyte bs=1 "
                            "seek=500 conv=notrunc"),
                   0);
  status = mpi(2, "train small.cnn --data quad --backend tcc --threads 1 --out bad.safetensors");
  assert_int_equal(status, 1);
  assert_contains(tu_err, "rank 1's data differ from rank 0's: the same sizes but other images");
  assert_int_equal(tu_shell("rm -rf rank1"), 0);
}

/* Rank 1 compiles with CC="cc -O2", rank 0 with the default -O3
   -march=native: both are backend cc, but their floats round differently;
   after the first epoch every rank stops, nothing is written that epoch. */
static void test_mpi_ranks_that_compute_differently(void **state) {
  (void)state;
  tu_quadrant_data("quad", 100, 30);
  write_small_net("small.cnn", "adam lr=0.01");
  tu_write_text("rank1.env", "export CC='cc -O2'\n");
  int status = mpi(2, "train small.cnn --data quad --threads 1 --backend cc --out cc.safetensors");
  unlink(tu_path("rank1.env"));
  assert_int_equal(status, 1);
  assert_contains(tu_err, "cnngen: error: small.cnn: rank 1's weights differ from rank 0's after "
                          "epoch 1: the ranks compute differently");
  assert_false(tu_exists("cc.safetensors"));
  assert_false(tu_exists("cc.ckpt.safetensors"));
}

/* Rank 1 killed by SIGKILL in the middle of a run (no hang, see MPIRUN's
   timeout): rank 0, waiting for it, sees its process gone, says so in one
   line naming it and exits 1 (rank0.status); mpirun's own status is 137,
   128 + SIGKILL, as it reports the first rank that failed, and its message
   names that rank too. The last checkpoint stays whole and resumes. Then
   rank 0 killed: rank 1, whose output is otherwise silenced, says so. */
static void test_mpi_killed_rank_stops_all(void **state) {
  (void)state;
  tu_quadrant_data("quad", 100, 30);
  write_small_net("small.cnn", "adam lr=0.01");
  tu_write_text("rank0.status", "");
  pid_t pid =
      mpi_start(2, "train small.cnn --data quad --backend tcc --threads 1 --epochs 100000 --out "
                   "k.safetensors --checkpoint k.ckpt");
  tu_await(pid, ".out", "epoch 2/");
  pid_t dead = rank_pid(1);
  assert_int_equal(kill(dead, SIGKILL), 0);
  int status = tu_finish(pid);
  if (status != 137)
    fail_msg("mpirun exited %d, not 137 (124: a rank hung):\n%s", status, tu_err);
  char line[200];
  snprintf(line, sizeof line,
           "cnngen: error: rank 0 of 2: rank 1 (pid %d on this machine) has died; stopping "
           "(mpirun stops every rank and says how it ended)\n",
           (int)dead);
  assert_contains(tu_err, line);
  assert_int_equal(tu_count(tu_err, "cnngen: error:"), 1);
  assert_contains(tu_err, "process rank 1 "); /* mpirun's */
  char text[16];
  tu_read_file(tu_path("rank0.status"), text, sizeof text);
  assert_string_equal(text, "1\n");
  unlink(tu_path("rank0.status"));
  assert_false(tu_exists("k.safetensors"));
  assert_int_equal(
      tu_run("train small.cnn --data quad --backend tcc --threads 2 --epochs 3 --resume k.ckpt "
             "--checkpoint k2.ckpt --out k.safetensors"),
      0);

  pid = mpi_start(2, "train small.cnn --data quad --backend tcc --threads 1 --epochs 100000 --out "
                     "k0.safetensors --checkpoint k0.ckpt");
  tu_await(pid, ".out", "epoch 2/");
  dead = rank_pid(0);
  assert_int_equal(kill(dead, SIGKILL), 0);
  status = tu_finish(pid);
  if (status != 137)
    fail_msg("mpirun exited %d, not 137 (124: a rank hung):\n%s", status, tu_err);
  snprintf(line, sizeof line,
           "cnngen: error: rank 1 of 2: rank 0 (pid %d on this machine) has died", (int)dead);
  assert_contains(tu_err, line);
  assert_false(tu_exists("k0.safetensors"));
}

/* Two epochs uninterrupted on 2 threads; the same from a checkpoint after
   epoch 1 made by 2 ranks x 1 thread and resumed by one process, and the
   other way round. 2 ranks x 2 threads cannot resume a 2-thread run. */
static void test_mpi_resume_across_rank_counts(void **state) {
  (void)state;
  tu_quadrant_data("quad", 100, 30);
  write_small_net("small.cnn", "adam lr=0.01");
  assert_int_equal(
      tu_run("train small.cnn --data quad --backend tcc --threads 2 --out a.safetensors"), 0);

  assert_int_equal(
      mpi(2, "train small.cnn --data quad --backend tcc --threads 1 --epochs 1 --out h.safetensors "
             "--checkpoint h.ckpt"),
      0);
  assert_int_equal(
      tu_run("train small.cnn --data quad --backend tcc --threads 2 --resume h.ckpt --checkpoint "
             "h2.ckpt --out b.safetensors"),
      0);
  assert_same_file("a.safetensors", "b.safetensors");
  assert_true(tu_count(tu_err, "note") == 0);

  assert_int_equal(
      tu_run("train small.cnn --data quad --backend tcc --threads 2 --epochs 1 --out g.safetensors "
             "--checkpoint g.ckpt"),
      0);
  int status =
      mpi(2, "train small.cnn --data quad --backend tcc --threads 1 --resume g.ckpt --checkpoint "
             "g2.ckpt --out c.safetensors");
  if (status != 0)
    fail_msg("mpirun exited %d:\n%s%s", status, tu_out, tu_err);
  assert_contains(tu_out, "resuming after epoch 1");
  assert_same_file("a.safetensors", "c.safetensors");

  status = mpi(
      2,
      "train small.cnn --data quad --backend tcc --threads 2 --resume g.ckpt --checkpoint g3.ckpt "
      "--out d.safetensors");
  assert_int_equal(status, 1);
  assert_contains(tu_err, "cnngen: error: g.ckpt: checkpoint was made with 2 threads in all, these "
                          "2 ranks run 4");
  assert_false(tu_exists("d.safetensors"));
}

/* The training recipes across ranks: a cosine schedule with warmup, label
   smoothing, a validation split and early stopping (min_delta so large that
   only epoch 1 counts as the best, so the run stops after epoch 3). Every
   rank scores the validation set and stops after the same epoch; resumed
   under mpirun from that epoch's checkpoint, every rank takes rank 0's
   patience count (else rank 1 trains on while rank 0 has stopped) and the
   best epoch's weights are written. */
static void test_mpi_recipes_and_early_stopping(void **state) {
  (void)state;
  tu_quadrant_data("quad", 100, 30);
  tu_write_text("rec.cnn", "network rec\n"
                           "input 12x12x1\n"
                           "conv2d 4 3x3 relu\n"
                           "maxpool 2x2\n"
                           "flatten\n"
                           "dense 4 softmax\n"
                           "train {\n"
                           "  optimizer adam lr=0.01\n"
                           "  schedule cosine warmup=1\n"
                           "  label_smoothing 0.1\n"
                           "  validation 0.2\n"
                           "  early_stopping patience=2 min_delta=10\n"
                           "  batch 7\n"
                           "  epochs 5\n"
                           "  seed 3\n"
                           "}\n");
  assert_int_equal(
      tu_run("train rec.cnn --data quad --backend tcc --threads 2 --out one.safetensors"), 0);
  assert_contains(tu_out, "early stopping after epoch 3");
  int status = mpi(2, "train rec.cnn --data quad --backend tcc --threads 1 --out two.safetensors");
  if (status != 0)
    fail_msg("mpirun exited %d:\n%s%s", status, tu_out, tu_err);
  assert_contains(tu_out, "early stopping after epoch 3");
  assert_int_equal(tu_count(tu_out, "val loss"), 3);
  assert_same_file("one.safetensors", "two.safetensors");
  assert_same_file("one.ckpt.safetensors", "two.ckpt.safetensors");

  status =
      mpi(2, "train rec.cnn --data quad --backend tcc --threads 1 --resume one.ckpt.safetensors "
             "--checkpoint three.ckpt --out three.safetensors");
  if (status != 0)
    fail_msg("mpirun --resume exited %d:\n%s%s", status, tu_out, tu_err);
  assert_same_file("one.safetensors", "three.safetensors");
}

/* SIGTERM to rank 1 alone: every rank stops after the same batch, rank 0
   writes the checkpoint inside the epoch and prints the command that
   resumes; resumed, the run ends where an uninterrupted one does. */
static void test_mpi_signal_stops_every_rank(void **state) {
  (void)state;
  tu_quadrant_data("quad", 4000, 30);
  write_small_net("small.cnn", "adam lr=0.01");
  assert_int_equal(
      tu_run(
          "train small.cnn --data quad --backend tcc --threads 2 --epochs 3 --out a.safetensors"),
      0);
  pid_t pid = mpi_start(2, "train small.cnn --data quad --backend tcc --threads 1 --epochs 3 --out "
                           "s.safetensors --checkpoint s.ckpt");
  tu_await(pid, ".out", "epoch 1/3");
  assert_int_equal(kill(rank_pid(1), SIGTERM), 0);
  int status = tu_finish(pid);
  if (status != 143)
    fail_msg("mpirun exited %d:\n%s%s", status, tu_out, tu_err);
  assert_contains(tu_out, "to continue:\n  mpirun -n 2 ");
  assert_int_equal(
      mpi(2, "train small.cnn --data quad --backend tcc --threads 1 --epochs 3 --out s.safetensors "
             "--checkpoint s.ckpt --resume s.ckpt"),
      0);
  assert_same_file("a.safetensors", "s.safetensors");
}

/* A cnngen whose plugin is missing (as one built without MPI) refuses to
   run as several ranks, saying so once. */
static void test_mpi_without_plugin_refuses(void **state) {
  (void)state;
  tu_quadrant_data("quad", 100, 30);
  write_small_net("small.cnn", "adam lr=0.01");
  int status =
      tu_shell("CNNGEN_MPI_PLUGIN=/nonexistent/cnngen-mpi.so " MPIRUN
               " -x CNNGEN_MPI_PLUGIN -n 2 ./rank.sh train small.cnn --data quad --backend tcc "
               "--threads 1 --out p.safetensors");
  assert_int_equal(status, 1);
  assert_contains(tu_err, "cnngen: error: /nonexistent/cnngen-mpi.so: mpirun started 2 ranks, but "
                          "this cnngen has no MPI support");
  assert_int_equal(tu_count(tu_err, "cnngen: error:"), 1);
  assert_false(tu_exists("p.safetensors"));
}

/* The wait check's look at a rank's process (no mpirun needed): this
   process is there, with a start time; a zombie and a reaped child are
   gone; with no descriptor left, /proc cannot say, and that is no answer
   rather than a death (a live rank was named dead before). */
static void test_mpi_wait_check_tells_gone_from_unknown(void **state) {
  (void)state;
  unsigned long long start = 0, again = 0;
  assert_int_equal(dist_process_start((int)getpid(), &start), 0);
  assert_true(start > 0);
  pid_t child = fork();
  assert_true(child >= 0);
  if (child == 0)
    _exit(0);
  int there = 0;
  for (int i = 0; i < 2000 && (there = dist_process_start((int)child, &again)) == 0; i++)
    usleep(1000); /* until it is a zombie */
  assert_int_equal(there, DIST_GONE);
  assert_int_equal(waitpid(child, NULL, 0), child);
  assert_int_equal(dist_process_start((int)child, &again), DIST_GONE);
  /* every descriptor taken: EMFILE */
  struct rlimit old, low;
  assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
  low = old;
  low.rlim_cur = 64;
  assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
  int fds[64], n = 0;
  while (n < 64 && (fds[n] = open("/dev/null", O_RDONLY)) >= 0)
    n++;
  there = dist_process_start((int)getpid(), &again);
  while (n > 0)
    close(fds[--n]);
  assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
  assert_int_equal(there, DIST_UNKNOWN);
}

int main(void) {
  const struct CMUnitTest local[] = {
      cmocka_unit_test(test_mpi_wait_check_tells_gone_from_unknown),
  };
  int failed = cmocka_run_group_tests(local, NULL, NULL);
  if (failed)
    return failed;
  if (system("command -v mpirun >/dev/null") != 0) {
    fprintf(stderr, "test_mpi: mpirun is missing (sh tests/install-deps installs Open MPI)\n");
    return 77;
  }
  /* The plugin beside $CNNGEN: make builds it where mpicc is found. */
  const char *bin = getenv("CNNGEN") ? getenv("CNNGEN") : "build/cnngen";
  const char *slash = strrchr(bin, '/');
  char plugin[4200];
  snprintf(plugin, sizeof plugin, "%.*scnngen-mpi.so", slash ? (int)(slash - bin + 1) : 0, bin);
  if (access(plugin, R_OK) != 0) {
    fprintf(stderr,
            "test_mpi: %s is missing: cnngen was built without mpicc (sh "
            "tests/install-deps installs Open MPI; then make)\n",
            plugin);
    return 77;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_mpi_fashion_matches_threads),
      cmocka_unit_test(test_mpi_adam_and_sgd_match_threads),
      cmocka_unit_test(test_mpi_batchnorm_matches_threads),
      cmocka_unit_test(test_mpi_rank_with_other_network_or_data),
      cmocka_unit_test(test_mpi_ranks_that_compute_differently),
      cmocka_unit_test(test_mpi_killed_rank_stops_all),
      cmocka_unit_test(test_mpi_resume_across_rank_counts),
      cmocka_unit_test(test_mpi_recipes_and_early_stopping),
      cmocka_unit_test(test_mpi_signal_stops_every_rank),
      cmocka_unit_test(test_mpi_without_plugin_refuses),
  };
  return cmocka_run_group_tests(tests, group_setup, tu_teardown);
}
