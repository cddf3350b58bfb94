/*
 * cnngen_infer.c: times cnngen's generated inference code for `make bench`.
 *
 *   cnngen_infer PARAMS.f32 IMAGES.f32 [OUT.f32 K]
 *
 * Uses only the documented API of the generated fashion.h (docs/language.md, The
 * generated C): one static model loaded from the flat parameter array (NAME_load's
 * order, written by torch_bench.py prep), one static work struct per thread. Measures
 *   - latency: fashion_infer on one image at a time, one thread (µs per image);
 *   - throughput: batches of 64, split in two halves of 32 run by two threads that
 *     meet at a barrier before and after each batch (images/s).
 * Each figure is the median over BENCH_REPS repetitions (default 7) of the mean time
 * per call, each repetition long enough (about 0.25 s) to swamp the clock's overhead.
 * With OUT.f32 K, also writes the outputs for the first K images for the sanity check.
 * Results go to stdout as `RESULT cnngen METRIC VALUE` lines for tests/bench/run.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "fashion.h"

enum { BATCH = 64, HALF = BATCH / 2 };

static fashion_model model;
static fashion_work work[2];
static float outputs[2][HALF * fashion_OUTPUT_SIZE];

static float *images;
static long n_images;
static long next_image; /* the image (batch 1) or first image (batch 64) of the next call */

static pthread_barrier_t start, done;
static int stop;

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Median over `reps` repetitions of the mean seconds per call of fn. */
static double measure(void (*fn)(void), int reps) {
  double times[64];
  long calls = 0, per_rep;
  double t0;
  int r;

  for (r = 0; r < 20; r++)
    fn();
  t0 = now();
  while (now() - t0 < 0.1) {
    fn();
    calls++;
  }
  per_rep = (long)((double)calls * 0.25 / (now() - t0));
  if (per_rep < 1)
    per_rep = 1;
  for (r = 0; r < reps; r++) {
    long i;
    t0 = now();
    for (i = 0; i < per_rep; i++)
      fn();
    times[r] = (now() - t0) / (double)per_rep;
  }
  qsort(times, (size_t)reps, sizeof times[0], cmp_double);
  return reps % 2 ? times[reps / 2] : (times[reps / 2 - 1] + times[reps / 2]) / 2;
}

static void infer_one(void) {
  fashion_infer(&model, &work[0], images + next_image * fashion_INPUT_SIZE, 1, outputs[0]);
  next_image = (next_image + 1) % n_images;
}

/* The second thread: the upper half of every batch the main thread starts. */
static void *worker(void *arg) {
  (void)arg;
  for (;;) {
    pthread_barrier_wait(&start);
    if (stop)
      return NULL;
    fashion_infer(&model, &work[1], images + (next_image + HALF) * fashion_INPUT_SIZE, HALF,
                  outputs[1]);
    pthread_barrier_wait(&done);
  }
}

static void infer_batch(void) {
  pthread_barrier_wait(&start);
  fashion_infer(&model, &work[0], images + next_image * fashion_INPUT_SIZE, HALF, outputs[0]);
  pthread_barrier_wait(&done);
  next_image = (next_image + BATCH) % (n_images - n_images % BATCH);
}

/* Reads a whole file of floats; returns the count or -1 with a message. */
static long read_floats(const char *path, float **out) {
  FILE *f = fopen(path, "rb");
  long bytes;
  if (!f || fseek(f, 0, SEEK_END) != 0 || (bytes = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
    perror(path);
    if (f)
      fclose(f);
    return -1;
  }
  *out = malloc((size_t)bytes + 1);
  if (!*out || fread(*out, 1, (size_t)bytes, f) != (size_t)bytes) {
    fprintf(stderr, "cnngen_infer: %s: cannot read\n", path);
    free(*out);
    *out = NULL;
    fclose(f);
    return -1;
  }
  fclose(f);
  return bytes / (long)sizeof(float);
}

int main(int argc, char **argv) {
  float *params = NULL;
  const char *env = getenv("BENCH_REPS");
  int reps = env ? atoi(env) : 7;
  pthread_t thread;
  double t;

  if (argc != 3 && argc != 5) {
    fprintf(stderr, "usage: cnngen_infer PARAMS.f32 IMAGES.f32 [OUT.f32 K]\n");
    return 1;
  }
  if (reps < 1 || reps > 64)
    reps = 7;
  if (read_floats(argv[1], &params) != fashion_PARAM_COUNT) {
    fprintf(stderr, "cnngen_infer: %s: expected %d floats\n", argv[1], fashion_PARAM_COUNT);
    free(params);
    return 1;
  }
  fashion_load(&model, params);
  free(params);
  n_images = read_floats(argv[2], &images) / fashion_INPUT_SIZE;
  if (n_images < BATCH) {
    fprintf(stderr, "cnngen_infer: %s: expected at least %d images\n", argv[2], BATCH);
    goto fail;
  }

  if (argc == 5) {
    int k = atoi(argv[4]);
    size_t written;
    FILE *f = fopen(argv[3], "wb");
    if (k < 1 || k > HALF || !f) {
      fprintf(stderr, "cnngen_infer: %s: cannot write %d outputs\n", argv[3], k);
      if (f)
        fclose(f);
      goto fail;
    }
    fashion_infer(&model, &work[0], images, k, outputs[0]);
    written = fwrite(outputs[0], sizeof(float), (size_t)k * fashion_OUTPUT_SIZE, f);
    if (fclose(f) != 0 || written != (size_t)k * fashion_OUTPUT_SIZE) {
      fprintf(stderr, "cnngen_infer: %s: write failed\n", argv[3]);
      goto fail;
    }
  }

  t = measure(infer_one, reps);
  printf("cnngen latency_b1_t1: %.1f us/image\n", t * 1e6);
  printf("RESULT cnngen latency_b1_t1 %.3f\n", t * 1e6);

  pthread_barrier_init(&start, NULL, 2);
  pthread_barrier_init(&done, NULL, 2);
  if (pthread_create(&thread, NULL, worker, NULL) != 0) {
    fprintf(stderr, "cnngen_infer: cannot start a thread\n");
    goto fail;
  }
  next_image = 0;
  t = measure(infer_batch, reps);
  stop = 1;
  pthread_barrier_wait(&start);
  pthread_join(thread, NULL);
  printf("cnngen throughput_b64_t2: %.1f images/s\n", BATCH / t);
  printf("RESULT cnngen throughput_b64_t2 %.3f\n", BATCH / t);
  free(images);
  return 0;
fail:
  free(images);
  return 1;
}
