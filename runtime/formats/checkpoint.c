/*
 * checkpoint.c: the checkpoint's tensors and metadata. Names longer than
 * StParam holds are cut the same way on write and read, so they still match.
 */
#include "checkpoint.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

StParam *ckpt_params(const StParam *p, int np, const char *const *slots, int nslots,
                     long param_count, int *count) {
  StParam *all = calloc((size_t)(np * (1 + nslots)) + 1, sizeof *all);
  if (!all)
    return NULL;
  memcpy(all, p, (size_t)np * sizeof *p);
  for (int s = 0; s < nslots; s++)
    for (int i = 0; i < np; i++) {
      StParam *t = &all[(s + 1) * np + i];
      *t = p[i];
      char full[sizeof t->name + 32];
      snprintf(full, sizeof full, "%s.%s", slots[s], p[i].name);
      snprintf(t->name, sizeof t->name, "%.*s", (int)sizeof t->name - 1, full);
      t->offset += (long)(s + 1) * param_count;
    }
  *count = np * (1 + nslots);
  return all;
}

int ckpt_write(const char *path, const StParam *t, int n, const float *state, const CkptMeta *m,
               Err *e) {
  StEntry *st = calloc((size_t)n + 1, sizeof *st);
  if (!st) {
    e->internal = 1;
    return err_set(e, path, "out of memory");
  }
  for (int i = 0; i < n; i++) {
    st[i] = (StEntry){.name = t[i].name, .rank = t[i].rank, .data = state + t[i].offset};
    for (int d = 0; d < t[i].rank; d++)
      st[i].shape[d] = t[i].shape[d];
  }
  char epoch[24], steps[24], run_steps[24], seed[24], batch[24], samples[24], threads[24], acc[32],
      loss[32];
  char batches[24], sums[160], lr[32], best_epoch[24], best_loss[48], waited[24];
  snprintf(epoch, sizeof epoch, "%llu", m->epoch);
  snprintf(batches, sizeof batches, "%llu", m->epoch_batches);
  /* Hex floats, so that the resumed epoch's line sums exactly what it would have. */
  snprintf(sums, sizeof sums, "%a %a %a %a", m->sums[0], m->sums[1], m->sums[2], m->sums[3]);
  snprintf(lr, sizeof lr, "%.17g", m->lr);
  snprintf(best_epoch, sizeof best_epoch, "%llu", m->best_epoch);
  snprintf(best_loss, sizeof best_loss, "%a", m->best_loss);
  snprintf(waited, sizeof waited, "%llu", m->waited);
  snprintf(steps, sizeof steps, "%llu", m->step);
  snprintf(run_steps, sizeof run_steps, "%llu", m->run_step);
  snprintf(seed, sizeof seed, "%llu", m->seed);
  snprintf(batch, sizeof batch, "%llu", m->batch);
  snprintf(samples, sizeof samples, "%llu", m->samples);
  snprintf(threads, sizeof threads, "%llu", m->threads);
  snprintf(acc, sizeof acc, "%.4f", m->test_accuracy);
  snprintf(loss, sizeof loss, "%.6f", m->test_loss);
  /* clang-format off */
  const char *meta[] = {
      "format", "cnngen",               "network", m->network,
      "kind", "checkpoint",             "epoch", epoch,
      "step", steps,                    "run_step", run_steps,
      "seed", seed,
      "batch", batch,                   "optimizer", m->optimizer,
      "train_samples", samples,         "threads", threads,
      "backend", m->backend,
      "test_accuracy", acc,             "test_loss", loss,
      "epoch_batches", batches,         "epoch_sums", sums,
      "lr", lr,
      "best_epoch", best_epoch,         "best_val_loss", best_loss,
      "epochs_without_improvement", waited,
      NULL, NULL, /* "classes" */
      NULL};
  /* clang-format on */
  if (m->classes) { /* as the weights have them: predict shows them from a checkpoint too */
    size_t k = sizeof meta / sizeof *meta - 3;
    meta[k] = "classes";
    meta[k + 1] = m->classes;
  }
  int rc = st_write_counts(path, st, n, m->counts, m->ncounts, meta, e);
  free(st);
  return rc;
}

/* A metadata number of the checkpoint, or -1 with e filled. */
static int meta_number(const StFile *f, const char *key, unsigned long long *v, Err *e) {
  const char *s = st_meta(f, key);
  char *end;
  errno = 0;
  if (!s || !*s || (*v = strtoull(s, &end, 10), *end) || errno)
    return err_set(e, f->path,
                   "checkpoint metadata lacks a valid '%s' (is this a checkpoint "
                   "written by cnngen train?)",
                   key);
  return 0;
}

/* A metadata number written with %.4f, %.17g or %a; NaN when missing or not a number
   (checkpoints before the key existed). */
static double meta_real(const StFile *f, const char *key) {
  const char *s = st_meta(f, key);
  char *end;
  double v = s && *s ? strtod(s, &end) : NAN;
  return s && *s && !*end ? v : NAN;
}

int ckpt_read_meta(const StFile *f, CkptMeta *m, Err *e) {
  *m = (CkptMeta){0};
  const char *fmt = st_meta(f, "format"), *kind = st_meta(f, "kind");
  if (!fmt || strcmp(fmt, "cnngen") || !kind || strcmp(kind, "checkpoint"))
    return err_set(e, f->path,
                   "not a cnngen checkpoint (metadata kind=checkpoint missing); to start "
                   "from plain weights use --weights");
  m->network = st_meta(f, "network");
  m->optimizer = st_meta(f, "optimizer");
  m->backend = st_meta(f, "backend");
  if (meta_number(f, "epoch", &m->epoch, e) < 0 || meta_number(f, "step", &m->step, e) < 0 ||
      meta_number(f, "seed", &m->seed, e) < 0 || meta_number(f, "batch", &m->batch, e) < 0 ||
      meta_number(f, "train_samples", &m->samples, e) < 0)
    return -1;
  Err ignored = {0};
  if (meta_number(f, "threads", &m->threads, &ignored) < 0)
    m->threads = 0;
  /* run_step: absent before zero-weight batches were told apart, when the
     optimizer's step was taken for the run's. */
  m->run_step = m->step;
  if (st_meta(f, "run_step") && meta_number(f, "run_step", &m->run_step, e) < 0)
    return -1;
  if (m->run_step < m->step)
    return err_set(e, f->path, "checkpoint metadata out of range (run_step %llu below step %llu)",
                   m->run_step, m->step);
  m->lr = meta_real(f, "lr");
  m->test_accuracy = meta_real(f, "test_accuracy");
  m->test_loss = meta_real(f, "test_loss");
  /* Early stopping's state: absent before it existed (no best epoch yet). */
  if (st_meta(f, "best_epoch") && (meta_number(f, "best_epoch", &m->best_epoch, e) < 0 ||
                                   meta_number(f, "epochs_without_improvement", &m->waited, e) < 0))
    return -1;
  m->best_loss = meta_real(f, "best_val_loss");
  if (m->best_epoch > 0 && isnan(m->best_loss))
    return err_set(e, f->path, "checkpoint metadata lacks a valid 'best_val_loss'");
  /* epoch_batches and epoch_sums: absent before a stop inside an epoch was
     possible (position 0). */
  if (st_meta(f, "epoch_batches") && meta_number(f, "epoch_batches", &m->epoch_batches, e) < 0)
    return -1;
  const char *s = st_meta(f, "epoch_sums");
  char *end = NULL;
  for (int i = 0; s && i < 4; i++, s = end)
    m->sums[i] = strtod(s, &end);
  m->sums_ok = s && !*s && m->sums[1] > 0;
  return 0;
}
