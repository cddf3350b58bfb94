/*
 * dist_sum.c: what dist_sum (runtime/dist.c) costs alone, with no training
 * around it. Under `mpirun -n R`: REPS sums of COUNT floats back to back
 * (after a warm-up and with every rank ready), T parts per rank; rank 0
 * prints the time per sum. tests/bench/mpi builds and runs it.
 *
 *   dist_sum [COUNT [REPS [T]]]     (default: fashion.cnn's 93,322 floats,
 *                                    2000 sums, 1 part per rank)
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "dist.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
  long count = argc > 1 ? atol(argv[1]) : 93322;
  int reps = argc > 2 ? atoi(argv[2]) : 2000, parts = argc > 3 ? atoi(argv[3]) : 1;
  if (count < 1 || reps < 1 || parts < 1 || parts > 64) {
    fprintf(stderr, "usage: dist_sum [COUNT [REPS [T]]]\n");
    return 2;
  }
  Dist d;
  Err e = {0};
  if (dist_open(&d, &e) < 0) {
    fprintf(stderr, "dist_sum: %s\n", e.msg);
    return 1;
  }
  float *p[64];
  for (int i = 0; i < parts; i++) {
    if (!(p[i] = malloc((size_t)count * sizeof *p[i])))
      return 2;
    for (long j = 0; j < count; j++)
      p[i][j] = (float)(j % 7) * 0.25f;
  }
  int ready = 1, *all = malloc((size_t)d.size * sizeof *all);
  for (int i = 0; i < 100; i++)
    dist_sum(&d, p, parts, count, p[0]);
  dist_allgather(&d, &ready, sizeof ready, all);
  double t0 = now();
  for (int i = 0; i < reps; i++)
    dist_sum(&d, p, parts, count, p[0]);
  dist_allgather(&d, &ready, sizeof ready, all);
  double t = (now() - t0) / reps;
  printf("dist_sum: %d rank%s x %d part%s of %ld floats (%.0f KB): %.1f us per sum, %.2f GB/s "
         "of gradients\n",
         d.size, d.size == 1 ? "" : "s", parts, parts == 1 ? "" : "s", count,
         (double)count * 4 / 1000, t * 1e6, (double)count * 4 / t / 1e9);
  dist_close(&d);
  return 0;
}
