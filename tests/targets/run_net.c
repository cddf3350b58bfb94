/*
 * run_net.c: runs the generated inference C of a network written with
 * `--name net`, for tests/test_targets.c, which builds this driver with the
 * same generated C for the host and for arm64 (run under qemu-user) and
 * compares what the two print.
 *
 *   run_net N < IMAGES.f32
 *
 * Reads N images of net_INPUT_SIZE little-endian floats from stdin, runs them
 * through net_infer in one call and prints the N * net_OUTPUT_SIZE outputs,
 * one per line, with 9 significant digits (each float exactly), with the
 * weights model.h says.
 */
#include <stdio.h>
#include <stdlib.h>

#include "model.h"

enum { MAX_IMAGES = 64 };

static float x[MAX_IMAGES * net_INPUT_SIZE];
static float y[MAX_IMAGES * net_OUTPUT_SIZE];

int main(int argc, char **argv) {
  int n = argc == 2 ? atoi(argv[1]) : 0, i;
  if (n < 1 || n > MAX_IMAGES) {
    fprintf(stderr, "usage: run_net N < IMAGES.f32 (N from 1 to %d)\n", MAX_IMAGES);
    return 2;
  }
  if (fread(x, sizeof x[0] * net_INPUT_SIZE, (size_t)n, stdin) != (size_t)n) {
    fprintf(stderr, "run_net: stdin holds fewer than %d images\n", n);
    return 1;
  }
  MODEL_INIT();
  net_infer(MODEL, &work, x, n, y);
  for (i = 0; i < n * net_OUTPUT_SIZE; i++)
    printf("%.9g\n", y[i]);
  return fflush(stdout) == 0 ? 0 : 1;
}
