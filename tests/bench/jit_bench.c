/*
 * jit_bench.c: the two backends side by side on one network, for `make
 * bench` (issue 13):
 *
 *   jit_bench NET.cnn [REPS]
 *
 * For tcc, cc and cc-kernels (cc with whatever cache XDG_CACHE_HOME points
 * at: the bench gives it an empty one, so that cc really compiles): the seconds to
 * compile the training code (engine_open with training, as `cnngen train`
 * does) and the inference code, and the latency of inference at batch 1 on
 * one thread (NAME_infer through the engine, random Glorot weights and random
 * pixels: the time does not depend on them), the median over REPS (default 7)
 * repetitions of about 0.25 s. Prints `RESULT PEER METRIC VALUE` lines for
 * tests/bench/run, with PEER the network's name: compile_train_tcc,
 * compile_train_cc, compile_train_cc_kernels, compile_infer_tcc, ... (seconds),
 * latency_b1_tcc, latency_b1_cc, latency_b1_cc_kernels (microseconds).
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "../../compiler/arena.h"
#include "cli.h"
#include "engine.h"

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Median over reps of the mean seconds of engine_infer on one image. */
static double latency(Engine *en, const float *x, float *y, int reps) {
  double times[64];
  long calls = 0, per_rep;
  for (int i = 0; i < 20; i++)
    engine_infer(en, x, 1, y);
  double t0 = now();
  while (now() - t0 < 0.1) {
    engine_infer(en, x, 1, y);
    calls++;
  }
  per_rep = (long)((double)calls * 0.25 / (now() - t0));
  per_rep = per_rep < 1 ? 1 : per_rep;
  for (int r = 0; r < reps; r++) {
    t0 = now();
    for (long i = 0; i < per_rep; i++)
      engine_infer(en, x, 1, y);
    times[r] = (now() - t0) / (double)per_rep;
  }
  qsort(times, (size_t)reps, sizeof times[0], cmp_double);
  return times[reps / 2];
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: jit_bench NET.cnn [REPS]\n");
    return 2;
  }
  int reps = argc > 2 ? atoi(argv[2]) : 7;
  reps = reps < 1 ? 1 : reps > 63 ? 63 : reps;
  Arena arena = {0};
  int status = 0;
  Net *net = cli_compile_net(&arena, argv[1], NULL, &status);
  if (!net)
    return status ? status : 1;
  const long in = shape_size(net->input), out = shape_size(net->output);
  float *x = malloc((size_t)in * sizeof *x), *y = malloc((size_t)out * sizeof *y);
  if (!x || !y)
    return 2;
  srand(1);
  for (long i = 0; i < in; i++)
    x[i] = (float)rand() / (float)RAND_MAX;
  const BackendKind kinds[3] = {BACKEND_TCC, BACKEND_CC, BACKEND_CC_KERNELS};
  const char *names[3] = {"tcc", "cc", "cc_kernels"};
  for (int k = 0; k < 3; k++) {
    Engine en;
    Err e = {0};
    if (engine_open(&en, net, kinds[k], true, 1, &e) < 0) {
      fprintf(stderr, "jit_bench: %s\n", e.msg);
      return 1;
    }
    printf("RESULT %s compile_train_%s %.4f\n", net->name, names[k],
           program_compile_seconds(en.prog));
    engine_close(&en);
    if (engine_open(&en, net, kinds[k], false, 1, &e) < 0) {
      fprintf(stderr, "jit_bench: %s\n", e.msg);
      return 1;
    }
    printf("RESULT %s compile_infer_%s %.4f\n", net->name, names[k],
           program_compile_seconds(en.prog));
    en.init(en.model, 1);
    printf("RESULT %s latency_b1_%s %.2f\n", net->name, names[k],
           1e6 * latency(&en, x, y, reps));
    fflush(stdout);
    engine_close(&en);
  }
  free(x);
  free(y);
  arena_free(&arena);
  return 0;
}
