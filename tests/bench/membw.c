/*
 * membw.c: the machine's memory bandwidth on one core, for `make bench`
 * (tests/bench/run builds it with -O2 -march=native), which prints the
 * depthwise and grouped layers' traffic as a share of it.
 *
 *   membw
 *
 * STREAM's triad, a[i] = b[i] + s * c[i], on arrays of 16 Mi floats (64 MiB
 * each, far beyond the caches), counted as STREAM counts it: 12 bytes per
 * element (two reads, one write; the write-allocate read is not counted).
 * Prints `RESULT membw gbs_t1 VALUE`: the median over BENCH_REPS
 * repetitions (default 7) of one pass over the arrays, in GB/s (1e9 bytes).
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

enum { N = 16 << 20 };

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_double(const void *x, const void *y) {
  double u = *(const double *)x, v = *(const double *)y;
  return (u > v) - (u < v);
}

int main(void) {
  const char *env = getenv("BENCH_REPS");
  int reps = env ? atoi(env) : 7;
  reps = reps < 1 ? 1 : reps > 64 ? 64 : reps;
  float *a = malloc(sizeof(float) * N), *b = malloc(sizeof(float) * N),
        *c = malloc(sizeof(float) * N);
  if (!a || !b || !c) {
    fprintf(stderr, "membw: out of memory\n");
    return 1;
  }
  for (long i = 0; i < N; i++)
    a[i] = 0.0f, b[i] = 1.0f, c[i] = 2.0f;
  double gbs[64], sum = 0;
  for (int r = 0; r < reps + 1; r++) { /* the first pass warms up */
    const float s = 0.5f + (float)r;
    double t0 = now();
    for (long i = 0; i < N; i++)
      a[i] = b[i] + s * c[i];
    double t = now() - t0;
    sum += a[r];
    if (r)
      gbs[r - 1] = 12.0 * N / t / 1e9;
  }
  qsort(gbs, (size_t)reps, sizeof gbs[0], cmp_double);
  double median = reps % 2 ? gbs[reps / 2] : (gbs[reps / 2 - 1] + gbs[reps / 2]) / 2;
  printf("membw: triad %.1f GB/s on one core (checksum %g)\n", median, sum);
  printf("RESULT membw gbs_t1 %.3f\n", median);
  free(a), free(b), free(c);
  return 0;
}
