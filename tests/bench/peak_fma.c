/*
 * peak_fma.c: the machine's peak single-precision FMA rate, the ceiling that
 * `make bench` measures cnngen's figures against. Each thread runs 24
 * independent accumulator chains of FMAs on the widest vectors the compiler
 * targets (16 floats under AVX-512, 8 under AVX2 + FMA, 4 under NEON; else
 * scalar), all in registers, nothing loaded or stored in the loop: a + s * b
 * with a scalar s and b that keep the values finite.
 *
 *   cc -O2 -march=native -pthread -o peak_fma tests/bench/peak_fma.c
 *   ./peak_fma [SECONDS_PER_REP]
 *
 * Prints `RESULT peak gflops_t1 X` and `RESULT peak gflops_t2 Y`: the best of 5
 * repetitions (each SECONDS_PER_REP, default 0.2) of 1 and of 2 threads
 * (2 FLOPs per lane of each FMA).
 */
#define _POSIX_C_SOURCE 199309L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#if defined(__AVX512F__) && defined(__FMA__)
typedef float vec __attribute__((vector_size(64)));
#define LANES 16
#define FMA(a, b, s) ((a) = __builtin_ia32_vfmaddps512_mask((b), (s), (a), (unsigned short)-1, 4))
#elif defined(__AVX2__) && defined(__FMA__)
typedef float vec __attribute__((vector_size(32)));
#define LANES 8
#define FMA(a, b, s) ((a) = __builtin_ia32_vfmaddps256((b), (s), (a)))
#elif defined(__ARM_NEON)
#include <arm_neon.h>
typedef float32x4_t vec;
#define LANES 4
#define FMA(a, b, s) ((a) = vfmaq_f32((a), (b), (s)))
#else
typedef float vec;
#define LANES 1
#define FMA(a, b, s) ((a) = (a) + (b) * (s))
#endif

enum { CHAINS = 24, INNER = 1000 };

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static vec splat(float x) {
  vec v;
  float *f = (float *)&v;
  for (int i = 0; i < LANES; i++)
    f[i] = x;
  return v;
}

typedef struct Job {
  double seconds; /* how long to run */
  double flops;   /* what it did */
  float sink;     /* keeps the result live */
} Job;

static void *run(void *arg) {
  Job *job = arg;
  vec a[CHAINS];
  for (int c = 0; c < CHAINS; c++)
    a[c] = splat(1e-3f * (float)c);
  const vec b = splat(0.999f), s = splat(1e-4f);
  long iters = 0;
  const double end = now() + job->seconds;
  do {
    for (int i = 0; i < INNER; i++) {
      /* each chain on its own: the compiler keeps all 24 in registers */
      FMA(a[0], b, s), FMA(a[1], b, s), FMA(a[2], b, s), FMA(a[3], b, s);
      FMA(a[4], b, s), FMA(a[5], b, s), FMA(a[6], b, s), FMA(a[7], b, s);
      FMA(a[8], b, s), FMA(a[9], b, s), FMA(a[10], b, s), FMA(a[11], b, s);
      FMA(a[12], b, s), FMA(a[13], b, s), FMA(a[14], b, s), FMA(a[15], b, s);
      FMA(a[16], b, s), FMA(a[17], b, s), FMA(a[18], b, s), FMA(a[19], b, s);
      FMA(a[20], b, s), FMA(a[21], b, s), FMA(a[22], b, s), FMA(a[23], b, s);
    }
    iters += INNER;
  } while (now() < end);
  job->flops = 2.0 * LANES * CHAINS * (double)iters;
  float sum = 0;
  for (int c = 0; c < CHAINS; c++)
    sum += ((float *)&a[c])[0];
  job->sink = sum;
  return NULL;
}

/* GFLOP/s of `threads` threads together, the best of 5 repetitions. */
static double peak(int threads, double seconds) {
  double best = 0;
  for (int rep = 0; rep < 5; rep++) {
    Job jobs[2] = {{seconds, 0, 0}, {seconds, 0, 0}};
    pthread_t other;
    const double t0 = now();
    if (threads > 1 && pthread_create(&other, NULL, run, &jobs[1]) != 0) {
      perror("pthread_create");
      exit(1);
    }
    run(&jobs[0]);
    if (threads > 1)
      pthread_join(other, NULL);
    const double rate = (jobs[0].flops + jobs[1].flops) / (now() - t0) / 1e9;
    best = rate > best ? rate : best;
    if (jobs[0].sink == 12345.0f) /* never: the results stay live */
      puts("");
  }
  return best;
}

int main(int argc, char **argv) {
  const double seconds = argc > 1 ? atof(argv[1]) : 0.2;
  printf("peak FMA rate, %d-float vectors, %d chains per thread\n", LANES, CHAINS);
  printf("RESULT peak lanes %d\n", LANES);
  printf("RESULT peak gflops_t1 %.1f\n", peak(1, seconds));
  printf("RESULT peak gflops_t2 %.1f\n", peak(2, seconds));
  return 0;
}
