/*
 * engine.c: a Net made runnable. engine_open writes the generated C (header
 * inlined, so one translation unit) into memory, adds two glue functions
 * that report sizeof(NAME_model) and sizeof(NAME_work), compiles it through
 * a backend and looks up the entry points. The model and one work area per
 * thread are 64-byte aligned blocks owned here.
 *
 * engine_infer cuts a batch into `threads` contiguous slices; slice 0 runs
 * on the caller, the others on threads created for the call (a thread costs
 * tens of microseconds, an image of a small CNN about as much or more).
 */
#include "engine.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../compiler/emit.h"

static void *alloc_zeroed(size_t bytes) {
  size_t rounded = (bytes + 63) / 64 * 64;
  if (rounded == 0)
    rounded = 64;
  void *p = aligned_alloc(64, rounded);
  if (p)
    memset(p, 0, rounded);
  return p;
}

/* Writes the whole translation unit into a malloc'd buffer. */
static char *generate(const Net *net, bool training, BackendKind kind, size_t *len) {
  char *buf = NULL;
  FILE *f = open_memstream(&buf, len);
  if (!f)
    return NULL;
  /* tcc and cc-kernels run the layers' loops in the prebuilt kernels (runtime/kernels/) */
  EmitOptions opt = {.training = training,
                     .kernels = kind == BACKEND_TCC || kind == BACKEND_CC_KERNELS,
                     .kernel_pointers = kind == BACKEND_CC_KERNELS};
  emit_source(net, &opt, f);
  fprintf(f,
          "\n/* engine glue */\n"
          "size_t cnngen_model_bytes(void) { return sizeof(%s_model); }\n"
          "size_t cnngen_work_bytes(void) { return sizeof(%s_work); }\n",
          net->name, net->name);
  if (fclose(f) != 0) {
    free(buf);
    return NULL;
  }
  return buf;
}

static void *symbol(Engine *en, const char *suffix, Err *e) {
  char name[128];
  if (suffix[0] == '_')
    snprintf(name, sizeof name, "%s%s", en->net->name, suffix);
  else
    snprintf(name, sizeof name, "%s", suffix);
  void *p = program_symbol(en->prog, name);
  if (!p) {
    err_set(e, en->net->file, "generated code lacks %s (a bug in cnngen)", name);
    e->internal = 1;
  }
  return p;
}

/* --backend auto: the backend that finishes the run first. tcc compiles in
   milliseconds and runs the layers on the prebuilt kernels at half cc's speed
   or better (README, Performance); cc compiles for seconds, about one per
   CC_BYTES_PER_S of generated C, unless its cache holds the object. So cc when
   its object is cached or nothing is known of the run, and tcc when cc's
   compile would outlast the whole run on cc's code (then tcc, even at half
   the speed, is done first): a big network and a short run. The run's time on
   cc is its multiply-adds (3 per forward one when training) at
   CC_MACS_PER_S per thread, a low figure for an AVX2 or AVX-512 core. */
enum { CC_BYTES_PER_S = 60000 };
#define CC_MACS_PER_S 50e9

BackendKind engine_pick(const Net *net, bool training, double images, int threads) {
  if (!backend_cc_available())
    return BACKEND_TCC;
  size_t len;
  char *src = images > 0 ? generate(net, training, BACKEND_CC, &len) : NULL;
  if (!src)
    return BACKEND_CC;
  const bool cached = backend_cc_cached(src, len);
  free(src);
  const double compile = (double)len / CC_BYTES_PER_S;
  const double run = images * (double)net->macs * (training ? 3 : 1) /
                     (CC_MACS_PER_S * (threads < 1 ? 1 : threads));
  return !cached && compile > run ? BACKEND_TCC : BACKEND_CC;
}

int engine_open(Engine *en, const Net *net, BackendKind kind, bool training, int threads, Err *e) {
  return engine_open_run(en, net, kind, training, 0, threads, e);
}

int engine_open_run(Engine *en, const Net *net, BackendKind kind, bool training, double images,
                    int threads, Err *e) {
  memset(en, 0, sizeof *en);
  en->net = net;
  en->threads = threads < 1 ? 1 : threads > ENGINE_MAX_THREADS ? ENGINE_MAX_THREADS : threads;
  size_t len;
  if (kind == BACKEND_AUTO)
    kind = engine_pick(net, training, images, en->threads);
  char *src = generate(net, training, kind, &len);
  if (!src) {
    err_set(e, net->file, "cannot generate code in memory (out of memory)");
    e->internal = 1;
    return -1;
  }
  en->prog = backend_compile(kind, src, len, e);
  free(src);
  if (!en->prog)
    return -1;

  size_t (*model_bytes)(void), (*work_bytes)(void);
  /* Function pointers from void * (POSIX dlsym style): copy the bits. */
  void *p;
#define LOOKUP(field, suffix)                                                                      \
  if (!(p = symbol(en, suffix, e)))                                                                \
    goto fail;                                                                                     \
  memcpy(&field, &p, sizeof p);
  LOOKUP(en->init, "_init");
  LOOKUP(en->load, "_load");
  LOOKUP(en->store, "_store");
  LOOKUP(en->infer, "_infer");
  LOOKUP(model_bytes, "cnngen_model_bytes");
  LOOKUP(work_bytes, "cnngen_work_bytes");
#undef LOOKUP
  en->model_bytes = model_bytes();
  en->work_bytes = work_bytes();

  en->model = alloc_zeroed(en->model_bytes);
  en->works = calloc((size_t)en->threads, sizeof *en->works);
  if (!en->model || !en->works)
    goto oom;
  for (int t = 0; t < en->threads; t++)
    if (!(en->works[t] = alloc_zeroed(en->work_bytes)))
      goto oom;
  return 0;

oom:
  err_set(e, net->file, "out of memory for the model (%zu bytes) and %d work areas (%zu each)",
          en->model_bytes, en->threads, en->work_bytes);
  e->internal = 1;
fail:
  engine_close(en);
  return -1;
}

void engine_close(Engine *en) {
  if (en->works)
    for (int t = 0; t < en->threads; t++)
      free(en->works[t]);
  free(en->works);
  free(en->model);
  if (en->prog)
    program_free(en->prog);
  memset(en, 0, sizeof *en);
}

typedef struct Slice {
  Engine *en;
  void *work;
  const float *x;
  float *y;
  int n;
} Slice;

static void *run_slice(void *arg) {
  Slice *s = arg;
  s->en->infer(s->en->model, s->work, s->x, s->n, s->y);
  return NULL;
}

void engine_infer(Engine *en, const float *x, int n, float *y) {
  int parts = en->threads < n ? en->threads : n;
  if (parts <= 1) {
    if (n > 0)
      en->infer(en->model, en->works[0], x, n, y);
    return;
  }
  long in_size = shape_size(en->net->input), out_size = shape_size(en->net->output);
  Slice slices[ENGINE_MAX_THREADS];
  pthread_t tids[ENGINE_MAX_THREADS];
  bool started[ENGINE_MAX_THREADS] = {0};
  for (int t = 0, first = 0; t < parts; t++) {
    int count = n / parts + (t < n % parts);
    slices[t] =
        (Slice){en, en->works[t], x + (long)first * in_size, y + (long)first * out_size, count};
    first += count;
  }
  for (int t = 1; t < parts; t++)
    started[t] = pthread_create(&tids[t], NULL, run_slice, &slices[t]) == 0;
  run_slice(&slices[0]);
  for (int t = 1; t < parts; t++) {
    if (started[t])
      pthread_join(tids[t], NULL);
    else /* no thread to be had: do its share here */
      run_slice(&slices[t]);
  }
}
