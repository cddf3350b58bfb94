/*
 * engine.h: a compiled network, ready to run. Emits the C for a Net (one
 * translation unit, header inlined) plus a little glue that reports the
 * struct sizes, compiles it through a backend, looks up the entry points,
 * and owns the model and one work area per thread.
 */
#ifndef CNNGEN_ENGINE_H
#define CNNGEN_ENGINE_H

#include <stdbool.h>
#include <stdint.h>

#include "../compiler/ir.h"
#include "backend.h"
#include "err.h"

enum { ENGINE_MAX_THREADS = 256 }; /* as --threads allows */

typedef struct Engine {
  const Net *net;
  Program *prog;
  int threads;
  size_t model_bytes, work_bytes;
  void *model;  /* NAME_model, 64-aligned */
  void **works; /* [threads] NAME_work */
  void (*init)(void *m, uint64_t seed);
  void (*load)(void *m, const float *params);
  void (*store)(const void *m, float *params);
  void (*infer)(const void *m, void *w, const float *x, int n, float *y);
} Engine;

int engine_open(Engine *en, const Net *net, BackendKind kind, bool training, int threads, Err *e);
/* The same, for a run that will put `images` images through the network
   (training images once per epoch, each counting as a forward and a
   backward pass; 0: not known), which --backend auto weighs (engine.c,
   engine_pick). */
int engine_open_run(Engine *en, const Net *net, BackendKind kind, bool training, double images,
                    int threads, Err *e);
/* What auto stands for on such a run: tcc or cc. */
BackendKind engine_pick(const Net *net, bool training, double images, int threads);
void engine_close(Engine *en);
/* n images [n][INPUT_SIZE] -> y [n][OUTPUT_SIZE], split across threads. */
void engine_infer(Engine *en, const float *x, int n, float *y);

#endif
