/*
 * peak_fma.c: the machine's peak float rate, for `make bench` (tests/bench/run
 * builds it with -O2 -march=native -pthread), which prints each model figure
 * as a share of it.
 *
 *   peak_fma
 *
 * Each thread runs ACC independent chains of fused multiply-adds,
 * a = a * m + c, on the widest vectors the compiling target has: 16-float
 * zmm registers under __AVX512F__, 8-float ymm under __FMA__ (AVX2 machines),
 * 8-float GCC vectors elsewhere. A chain waits for its previous FMA (4 cycles
 * on current x86 cores), and a core starts two FMAs a cycle, so at least 8
 * chains in flight keep both units busy; ACC = 12 covers a latency of 6,
 * and with m and c the loop needs 14 registers, within AVX2's 16. An FMA
 * counts 2 FLOPs per lane. With m just below 1 the chains converge to
 * c / (1 - m) and never overflow or go denormal.
 *
 * The machine is shared, so a thread's rate is its FLOPs over its own CPU
 * time (CLOCK_THREAD_CPUTIME_ID): what a core does while it runs the
 * thread, whatever else runs beside it. Wall time, from a common start to
 * the last thread's end, gives what this run got, which the load lowers.
 *
 * Prints `RESULT peak METRIC VALUE` lines: isa, width (floats per vector),
 * gflops_t1 (one thread) and gflops_t2 (two threads, the sum of their
 * rates: two cores), and wall_t1 and wall_t2 (the same in wall time); each
 * the median over BENCH_REPS repetitions (default 7) of about 0.25 s each.
 */
#define _POSIX_C_SOURCE 200809L /* pthread barriers */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__AVX512F__)
#include <immintrin.h>
typedef __m512 vec;
#define WIDTH 16
#define ISA "avx512"
#define SPLAT(s) _mm512_set1_ps(s)
#define FMA(a, m, c) ((a) = _mm512_fmadd_ps((a), (m), (c)))
#elif defined(__FMA__)
#include <immintrin.h>
typedef __m256 vec;
#define WIDTH 8
#define ISA "avx2"
#define SPLAT(s) _mm256_set1_ps(s)
#define FMA(a, m, c) ((a) = _mm256_fmadd_ps((a), (m), (c)))
#else
typedef float vec __attribute__((vector_size(32)));
#define WIDTH 8
#define ISA "generic"
#define SPLAT(s) ((vec){(s), (s), (s), (s), (s), (s), (s), (s)})
#define FMA(a, m, c) ((a) = (a) * (m) + (c))
#endif

enum { ACC = 12, MAX_REPS = 64 };

static double seconds(clockid_t clock) {
  struct timespec t;
  clock_gettime(clock, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* iters rounds of ACC FMAs; returns the sum of every lane so that none of
   the work can be left out. Written out by hand: a loop over an array of
   accumulators is not always kept in registers at -O2. */
static float chains(long iters) {
  vec m = SPLAT(0.9999f), c = SPLAT(1e-4f);
  vec a0 = SPLAT(0.0f), a1 = SPLAT(0.1f), a2 = SPLAT(0.2f), a3 = SPLAT(0.3f), a4 = SPLAT(0.4f);
  vec a5 = SPLAT(0.5f), a6 = SPLAT(0.6f), a7 = SPLAT(0.7f), a8 = SPLAT(0.8f), a9 = SPLAT(0.9f);
  vec a10 = SPLAT(1.0f), a11 = SPLAT(1.1f);
  for (long k = 0; k < iters; k++) {
    FMA(a0, m, c), FMA(a1, m, c), FMA(a2, m, c), FMA(a3, m, c), FMA(a4, m, c), FMA(a5, m, c);
    FMA(a6, m, c), FMA(a7, m, c), FMA(a8, m, c), FMA(a9, m, c), FMA(a10, m, c), FMA(a11, m, c);
  }
  vec all[ACC] = {a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11};
  float lanes[ACC * WIDTH], sum = 0;
  memcpy(lanes, all, sizeof lanes);
  for (int i = 0; i < ACC * WIDTH; i++)
    sum += lanes[i];
  return sum;
}

static pthread_barrier_t start;
static long iters;

typedef struct Thread {
  pthread_t id;
  double cpu; /* its CPU seconds */
  float sum;  /* what chains returned, so that its work counts */
} Thread;

static void *worker(void *arg) {
  Thread *t = arg;
  pthread_barrier_wait(&start);
  double t0 = seconds(CLOCK_THREAD_CPUTIME_ID);
  t->sum = chains(iters);
  t->cpu = seconds(CLOCK_THREAD_CPUTIME_ID) - t0;
  return NULL;
}

/* Runs `threads` threads of `iters` rounds each from a common start (a
   barrier the timing thread passes too); their CPU seconds in t, the wall
   seconds to the last one's end returned. */
static double run(int threads, Thread *t) {
  pthread_barrier_init(&start, NULL, (unsigned)threads + 1);
  for (int i = 0; i < threads; i++)
    if (pthread_create(&t[i].id, NULL, worker, &t[i]) != 0) {
      perror("peak_fma: pthread_create");
      exit(1);
    }
  pthread_barrier_wait(&start);
  double t0 = seconds(CLOCK_MONOTONIC);
  for (int i = 0; i < threads; i++)
    pthread_join(t[i].id, NULL);
  double wall = seconds(CLOCK_MONOTONIC) - t0;
  pthread_barrier_destroy(&start);
  return wall;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof v[0], cmp_double);
  return v[n / 2];
}

/* GFLOP/s of `threads` threads over reps repetitions: the medians of the
   sum of their CPU-time rates and of the wall-time rate. */
static void measure(int threads, int reps) {
  double cpu[MAX_REPS], wall[MAX_REPS], flops = 2.0 * WIDTH * ACC * (double)iters;
  float sum = 0;
  for (int r = 0; r < reps; r++) {
    Thread t[2];
    wall[r] = flops * threads / run(threads, t) / 1e9;
    cpu[r] = 0;
    for (int i = 0; i < threads; i++) {
      cpu[r] += flops / t[i].cpu / 1e9;
      sum += t[i].sum;
    }
  }
  printf("RESULT peak gflops_t%d %.1f\n", threads, median(cpu, reps));
  printf("RESULT peak wall_t%d %.1f\n", threads, median(wall, reps));
  if (sum != sum)
    printf("peak_fma: the chains' sum is not a number\n"); /* uses sum; never happens */
}

int main(void) {
  const char *env = getenv("BENCH_REPS");
  int reps = env ? atoi(env) : 7;
  if (reps < 1 || reps > MAX_REPS) {
    fprintf(stderr, "peak_fma: BENCH_REPS must be from 1 to %d\n", MAX_REPS);
    return 2;
  }
  /* Rounds for about 0.25 s of one thread's CPU time, after a warm-up that
     also lets the core reach its clock. */
  Thread t[1];
  iters = 1000;
  while ((run(1, t), t[0].cpu) < 0.05)
    iters *= 2;
  iters = (long)((double)iters * 0.25 / t[0].cpu) + 1;
  printf("RESULT peak isa %s\n", ISA);
  printf("RESULT peak width %d\n", WIDTH);
  measure(1, reps);
  measure(2, reps);
  return 0;
}
