/*
 * checkpoint.h: training checkpoints, safetensors files (safetensors.h)
 * holding the parameters, each optimizer slot's copy of them as
 * `opt.SLOT.TENSOR`, and in the metadata (kind=checkpoint) where the run
 * stands and with what recipe, so that a resume continues bit for bit.
 */
#ifndef CNNGEN_CHECKPOINT_H
#define CNNGEN_CHECKPOINT_H

#include "err.h"
#include "safetensors.h"

typedef struct CkptMeta {
  const char *network, *optimizer, *backend; /* on read: into the StFile (backend may be NULL) */
  const char *classes; /* on write: the outputs' names as a JSON list, or NULL for none */
  unsigned long long epoch, step, seed, batch, samples;
  /* The run's steps: batches stepped through, those whose loss weights sum
     to 0 (no optimizer step: `step` stays) included; they drive the
     learning rate and the dropout keys. On read: `step` where absent
     (checkpoints before it was written). */
  unsigned long long run_step;
  unsigned long long threads;       /* on read: 0 where absent */
  unsigned long long epoch_batches; /* of epoch + 1 done: > 0 only for a stop inside it */
  double sums[4]; /* that epoch's running sums: weighted loss, weights, accuracy, seconds
                     (written as hex floats, so exact) */
  int sums_ok;    /* on read: 1 when epoch_sums held four numbers with weights > 0 */
  double lr, test_accuracy, test_loss; /* on read: NaN where absent */
  /* early_stopping: the epoch with the lowest validation loss so far (0:
     none yet), that loss, and the epochs since it (0 where absent). */
  unsigned long long best_epoch, waited;
  double best_loss;
  /* On write: scalar I64 tensors after the others (LAYER.num_batches_tracked). */
  const StCount *counts;
  int ncounts;
} CkptMeta;

/* The tensors of a checkpoint: the np parameter tensors p, then for each of
   the nslots slots (optimizer state "opt.m", "opt.v", "opt.velocity"; early
   stopping's best weights "best") a copy named SLOT.NAME whose offset is
   moved on by param_count per slot. malloc'd; *count gets their number; NULL
   when out of memory. */
StParam *ckpt_params(const StParam *p, int np, const char *const *slots, int nslots,
                     long param_count, int *count);

/* Writes `state` (the flat arrays that ckpt_params' tensors index) and m's
   metadata atomically. */
int ckpt_write(const char *path, const StParam *t, int n, const float *state, const CkptMeta *m,
               Err *e);

/* Reads a checkpoint's metadata: refuses a file that is not a cnngen
   checkpoint or lacks a valid number, naming f's path. */
int ckpt_read_meta(const StFile *f, CkptMeta *m, Err *e);

#endif
