/*
 * infer_bench.c: times a generated network's NAME_infer, for tuning the
 * inference emitter. Build against any generated pair, e.g. for fashion:
 *
 *   build/cnngen examples/fashion.cnn -o /tmp/fashion.c --inference-only
 *   cc -O3 -march=native -pthread -I/tmp -DNET=fashion -include fashion.h \
 *      -o /tmp/infer_bench tests/bench/infer_bench.c /tmp/fashion.c -lm
 *   /tmp/infer_bench [REPS]
 *
 * Random Glorot weights (NAME_init) and random pixels in [0, 1]; the time
 * does not depend on the values. Prints the median (and the fastest) over
 * REPS (default 15) repetitions, each long enough (BENCH_REP_S, default
 * 0.1 s) to swamp the clock, of:
 *   batch 1, 1 thread         microseconds per image (latency)
 *   batch 64, 1 and 2 threads images per second; each thread runs NAME_infer
 *                             on its share of the batch with its own work.
 * On a busy machine, many short repetitions (BENCH_REP_S=0.005, REPS=101)
 * and the fastest figure compare two versions more reliably.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef NET
#error "compile with -DNET=name -include name.h"
#endif
#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define SYM(s) CAT(NET, s)

enum { BATCH = 64, MAX_THREADS = 2, IMAGES = 256 };

static SYM(_model) * model;
static SYM(_work) * work[MAX_THREADS];
static float *images, *outputs;

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

typedef struct Job {
  int first, count, thread;
} Job;

static void *run_job(void *arg) {
  const Job *j = arg;
  SYM(_infer)
  (model, work[j->thread], images + (size_t)j->first * SYM(_INPUT_SIZE), j->count,
   outputs + (size_t)j->first * SYM(_OUTPUT_SIZE));
  return NULL;
}

/* One call of `batch` images starting at image `first`, on `threads` threads. */
static void run(int first, int batch, int threads) {
  pthread_t t[MAX_THREADS];
  Job jobs[MAX_THREADS];
  int per = batch / threads;
  for (int k = 0; k < threads; k++)
    jobs[k] = (Job){first + k * per, k == threads - 1 ? batch - k * per : per, k};
  for (int k = 1; k < threads; k++)
    pthread_create(&t[k], NULL, run_job, &jobs[k]);
  run_job(&jobs[0]);
  for (int k = 1; k < threads; k++)
    pthread_join(t[k], NULL);
}

static double fastest;           /* the fastest repetition of the last measure() */
static double rep_seconds = 0.1; /* BENCH_REP_S */

/* Median seconds per call of run(batch, threads); the fastest in `fastest`. */
static double measure(int batch, int threads, int reps) {
  double times[101];
  long calls = 0, per_rep;
  double t0 = now();
  while (now() - t0 < 0.05) {
    run((int)(calls * batch % (IMAGES - batch + 1)), batch, threads);
    calls++;
  }
  per_rep = (long)(calls * rep_seconds / (now() - t0)) + 1;
  for (int r = 0; r < reps; r++) {
    t0 = now();
    for (long i = 0; i < per_rep; i++)
      run((int)(i * batch % (IMAGES - batch + 1)), batch, threads);
    times[r] = (now() - t0) / (double)per_rep;
  }
  qsort(times, (size_t)reps, sizeof times[0], cmp);
  fastest = times[0];
  return times[reps / 2];
}

int main(int argc, char **argv) {
  int reps = argc > 1 ? atoi(argv[1]) : 15;
  if (reps < 1 || reps > 101)
    reps = 15;
  if (getenv("BENCH_REP_S"))
    rep_seconds = atof(getenv("BENCH_REP_S"));
  model = aligned_alloc(64, (sizeof *model + 63) / 64 * 64);
  for (int k = 0; k < MAX_THREADS; k++)
    work[k] = aligned_alloc(64, (sizeof *work[k] + 63) / 64 * 64);
  images = malloc(sizeof(float) * IMAGES * SYM(_INPUT_SIZE));
  outputs = malloc(sizeof(float) * IMAGES * SYM(_OUTPUT_SIZE));
  if (!model || !work[0] || !work[1] || !images || !outputs)
    return 1;
  SYM(_init)(model, 1);
  uint64_t s = 42;
  for (long i = 0; i < (long)IMAGES * SYM(_INPUT_SIZE); i++) {
    s = s * 6364136223846793005u + 1442695040888963407u;
    images[i] = (float)(s >> 40) / 16777216.0f;
  }
  printf("median (fastest) of %d repetitions\n", reps);
  double t1 = measure(1, 1, reps);
  printf("batch 1, 1 thread:   %8.2f us/image   (%.2f)\n", t1 * 1e6, fastest * 1e6);
  double t64 = measure(BATCH, 1, reps);
  printf("batch 64, 1 thread:  %8.0f images/s   (%.0f)\n", BATCH / t64, BATCH / fastest);
  double t64b = measure(BATCH, 2, reps);
  printf("batch 64, 2 threads: %8.0f images/s   (%.0f)\n", BATCH / t64b, BATCH / fastest);
  float sum = 0;
  for (int i = 0; i < BATCH * SYM(_OUTPUT_SIZE); i++)
    sum += outputs[i];
  printf("(checksum %g)\n", sum);
  return 0;
}
