/*
 * cmd_train.c: `cnngen train NET.cnn` compiles the network with its training
 * code and runs the train block's recipe on --data: IDX files or an image
 * folder (formats/dataset.c), with the class names the network, the data
 * and --weights give, which must agree, written into the weights.
 *
 * Each epoch visits the training set in an order drawn from the seed and the
 * epoch number alone, in mini-batches (the last one partial); a step is one
 * trainer_step (trainer.c). After the epoch the test set is scored and a
 * checkpoint written atomically: the parameters, the optimizer state as
 * `opt.SLOT.TENSOR` tensors and, in the metadata, the epoch, the step counts
 * (the optimizer's and the run's, which a batch of loss weights summing to 0
 * moves on alone) and the recipe. --resume loads all of that, so the rest of the run is the
 * same, bit for bit, as if it had never stopped. Resuming with another
 * thread count, backend or learning rate is allowed and noted, one line each
 * (note_changes).
 *
 * A first SIGINT or SIGTERM only sets a flag. The batch that runs ends (on
 * every thread), then the checkpoint is written as it is, inside the epoch:
 * its metadata adds how many of the epoch's batches are done and the running
 * sums of the epoch's line (as hex floats), so a resume goes on from the next
 * batch and prints the line it would have. Then the weights, the command
 * that resumes, and exit 128 + the signal. A second signal exits at once.
 *
 * The train block's augment line transforms each training image as it is
 * read into the batch (augment.c), on the thread that runs that part of the
 * batch (the trainer's prepare hook), keyed by the seed, the epoch and the
 * image's index, so resuming and thread counts do not change what is drawn.
 *
 * --log keeps one EpochStats row per epoch and rewrites the CSV atomically
 * after each epoch; --resume first reads back the rows of the epochs the
 * checkpoint holds. --plot draws the same rows as a PNG or SVG (plot.c), redrawn
 * after each epoch too.
 *
 * Under `mpirun -n R` (dist.h) every rank compiles the network, reads the
 * data and runs its T threads' share of each batch; the trainer sums over
 * all R*T threads. Rank 0 alone reads --resume, scores the test set, prints
 * and writes files. start_ranks checks that every rank has the same network
 * text, data and thread count, then sends rank 0's state (weights, optimizer
 * state, position) to the others; after that, whatever can fail on one rank
 * only (rank 0's writes) is agreed on (dist_agree) before the ranks go on,
 * and a stop signal on any rank stops all of them after the same batch.
 */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../compiler/compile.h"
#include "augment.h"
#include "cli.h"
#include "dist.h"
#include "formats/checkpoint.h"
#include "formats/dataset.h"
#include "formats/image.h"
#include "formats/trainlog.h"
#include "io.h"
#include "plot.h"
#include "trainer.h"

static const char help[] =
    "usage: cnngen train NET.cnn [--data DIR] [--epochs N] [--batch N] [--seed N]\n"
    "                    [--weights INIT] [--out W.safetensors] [--checkpoint CKPT]\n"
    "                    [--resume CKPT] [--log FILE.csv] [--plot FILE.png|.svg]\n"
    "                    [--backend auto|tcc|cc|cc-kernels] [--threads N]\n"
    "\n"
    "Compiles the network with its training code (backward passes, loss and\n"
    "optimizer are generated C too) and trains it as its train { } block says.\n"
    "Each epoch shuffles the training set (from the seed), steps through it in\n"
    "mini-batches (the last one may be smaller), then prints the training loss\n"
    "and accuracy, the validation (if any) and test loss and accuracy, the\n"
    "learning rate, seconds and images/s (a terminal shows a progress bar).\n"
    "\n"
    "The train block's augment line (hflip, vflip, crop, shift, rotate, noise,\n"
    "applied in that order) transforms each training image as it is read, drawn\n"
    "from the seed, the epoch and the image's index; test scores use the images\n"
    "as they are.\n"
    "\n"
    "After each epoch a checkpoint (weights, optimizer state, epoch, step) is\n"
    "written atomically; --resume continues from one exactly where it stopped.\n"
    "A run is bit for bit repeatable for a given seed, thread count and backend.\n"
    "If the loss becomes NaN or infinite, training stops with exit status 1 and\n"
    "names the last good checkpoint.\n"
    "\n"
    "Ctrl-C (SIGINT) or SIGTERM lets the running batch finish, writes the\n"
    "checkpoint (inside the epoch, if it stopped there) and the weights, prints\n"
    "the command that resumes, and exits with status 130 (143 for SIGTERM).\n"
    "Resumed, the run ends with the same weights, bit for bit, as one never\n"
    "stopped. A second Ctrl-C stops at once; the files on disk stay whole.\n"
    "\n"
    "mpirun -n R cnngen train: data-parallel (README).\n"
    "\n"
    "--resume takes the seed and batch from the checkpoint (a --seed or --batch\n"
    "that differs is refused). Another thread count or backend, or a learning\n"
    "rate changed in the train block (after a divergence, say) is allowed and\n"
    "noted, one line each: the first two change only the last bits.\n"
    "\n"
    "Options:\n"
    "  --data DIR         IDX files {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]\n"
    "                     or an image folder DIR/{train,test}/CLASS/IMAGE (PNG, JPEG,\n"
    "                     PGM/PPM). Default: " CNNGEN_DEFAULT_DATA "\n"
    "  --epochs N         override the train block's epochs\n"
    "  --batch N          override its batch size\n"
    "  --seed N           override its seed (initialization, shuffling, augmentation,\n"
    "                     dropout)\n"
    "  --weights INIT     start from these weights instead of NAME_init(seed)\n"
    "                     (safetensors, or a raw .f32 file as NAME_store writes)\n"
    "  --out W            the final weights (default: NAME.safetensors)\n"
    "  --checkpoint CKPT  where each epoch's checkpoint goes (default: the --out\n"
    "                     name with .ckpt.safetensors in place of .safetensors)\n"
    "  --resume CKPT      continue a run from its checkpoint\n"
    "  --log FILE.csv     a row per epoch: epoch,loss,accuracy,[val_loss,\n"
    "                     val_accuracy,]test_loss,test_accuracy,seconds,lr\n"
    "                     (--resume keeps the checkpoint's rows)\n"
    "  --plot FILE        loss and accuracy (training, validation, test), a PNG or\n"
    "                     SVG by the suffix, redrawn each epoch (with --resume and\n"
    "                     --log, the rows read back too)\n"
    "  --backend B        tcc (compiles in ms), cc (in seconds, cached), cc-kernels\n"
    "                     (tcc's kernels, cc's glue) or auto: cc if cached, else\n"
    "                     tcc if cc's compile (1 s/60 KB of C) outlasts the run\n"
    "                     on cc (50 G multiply-adds/s/thread)\n"
    "  --threads N        split each batch across N threads (default: the CPUs)\n"
    "\n"
    "Examples:\n"
    "  cnngen train examples/fashion.cnn --out fashion.safetensors\n"
    "  cnngen train net.cnn --data mydata --epochs 2 --backend tcc --threads 1\n"
    "  cnngen train net.cnn --resume net.ckpt.safetensors\n"
    "  cnngen train examples/fashion.cnn --log fashion.csv --plot fashion.png\n"
    "\n"
    "Exit status: 0 success; 1 an error in the network, the data or the options,\n"
    "or training diverged; 2 internal error; 130 (143) stopped by SIGINT (TERM).\n";

/* The running sums of an epoch's line, kept across a stop inside it. */
typedef struct EpochSums {
  double wloss, wsum; /* sum of weight * loss, sum of weights */
  double acc;         /* sum of per-image accuracies */
  double seconds;     /* spent on the epoch's batches */
} EpochSums;

typedef struct Run {
  const CliArgs *a;
  Dist dist;             /* the ranks under mpirun; one process otherwise */
  int threads;           /* in all ranks together */
  uint64_t *rank_hashes; /* [ranks]: check_same_weights's */
  Net *net;
  Engine en;
  Trainer tr;
  Dataset data;
  ClassNames names; /* of the network, the weights and the data */
  TrainSet train, test;
  TrainSet val;     /* validation: the last images of the training file (n = 0: none) */
  char *out, *ckpt; /* paths */
  float *x, *y;     /* one batch: [batch][in], [batch][out] */
  float *target, *weight;
  int *order;
  float *state;   /* [1 + opt_slots][param_count]: parameters, then optimizer state */
  uint64_t step;  /* the run's steps so far: batches, zero-weight ones included */
  int epoch;      /* epochs done */
  int batch_done; /* batches of epoch epoch + 1 done: > 0 only when a signal stopped it there */
  EpochSums sums; /* of epoch epoch + 1 so far */
  const char *good_ckpt;      /* the checkpoint that holds the latest state, or NULL */
  int good_epoch, good_batch; /* its epoch and batch_done */
  double test_loss, test_acc; /* the last test scores (NaN: none yet) */
  double val_loss, val_acc;   /* the last validation scores (NaN: none yet) */
  /* early_stopping: the epoch with the lowest validation loss (0: none yet),
     that loss, and the epochs since; its weights are best_params(). */
  int best_epoch, waited;
  double best_loss;
  bool tty;
  Augmenter aug;
  bool augment;     /* any transform on */
  float *aug_tmp;   /* [threads][in]: augment_apply's scratch */
  int batch_first;  /* the step's first sample in order[] */
  EpochStats *rows; /* --log or --plot: one per epoch done, epochs 1.. */
  int nrows, rows_cap;
  long long *tracked; /* [nlayers]: a batchnorm's num_batches_tracked (steps so far) */
} Run;

/* After a step: every batch_stats layer tracked one batch more. */
static void count_batch(Run *r) {
  for (int i = 0; i < r->net->nlayers; i++)
    if (op_modules[r->net->layers[i].op]->batch_stats)
      r->tracked[i]++;
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The first `keep` bytes of `base` followed by `suffix`, malloc'd. */
static char *with_suffix(const char *base, size_t keep, const char *suffix) {
  size_t len = keep + strlen(suffix) + 1;
  char *s = malloc(len);
  if (s)
    snprintf(s, len, "%.*s%s", (int)keep, base, suffix);
  return s;
}

/* "W.safetensors" -> "W.ckpt.safetensors"; other names get ".ckpt" appended. */
static char *checkpoint_path(const char *out) {
  size_t n = strlen(out), el = strlen(".safetensors");
  if (n > el && strcmp(out + n - el, ".safetensors") == 0)
    return with_suffix(out, n - el, ".ckpt.safetensors");
  return with_suffix(out, n, ".ckpt");
}

/* The copies of the parameters that a checkpoint holds after them: each
   optimizer slot's state, then with early_stopping the best epoch's weights
   (best_params). Returns their number. */
static int checkpoint_slots(const Run *r, const char *names[3]) {
  int n = 0;
  if (r->net->train.optimizer == OPT_ADAM) {
    names[n++] = "opt.m";
    names[n++] = "opt.v";
  } else if (r->tr.opt_slots) {
    names[n++] = "opt.velocity";
  }
  if (r->net->train.patience)
    names[n++] = "best";
  return n;
}

static float *best_params(const Run *r) {
  return r->state + (long)(1 + r->tr.opt_slots) * r->net->param_count;
}

/* The tensors of a checkpoint: parameters, then each slot's copy. */
static StParam *checkpoint_tensors(const Run *r, int *count) {
  int np = cli_params(r->net, NULL);
  const char *slots[3];
  int nslots = checkpoint_slots(r, slots);
  StParam *p = calloc((size_t)np + 1, sizeof *p);
  StParam *all = p && cli_params(r->net, p) >= 0
                     ? ckpt_params(p, np, slots, nslots, r->net->param_count, count)
                     : NULL;
  free(p);
  return all;
}

/* The class names as the weights' metadata holds them (a JSON list, malloc'd
   in *json), or NULL where there are none. */
static int classes_json(const Run *r, const char *path, char **json, Err *e) {
  *json = r->names.n ? st_json_strings((const char *const *)r->names.names, r->names.n) : NULL;
  if (r->names.n && !*json) {
    e->internal = 1;
    return err_set(e, path, "out of memory");
  }
  return 0;
}

static int write_checkpoint(Run *r, Err *e) {
  r->en.store(r->en.model, r->state);
  uint64_t step;
  r->tr.store_opt(r->en.model, r->state + r->net->param_count, &step);
  int n;
  char *classes;
  if (classes_json(r, r->ckpt, &classes, e) < 0)
    return -1;
  StParam *t = checkpoint_tensors(r, &n);
  int ncounts;
  StCount *counts = cli_counts(r->net, r->tracked, &ncounts);
  if (!t || !counts) {
    free(t);
    free(counts);
    free(classes);
    e->internal = 1;
    return err_set(e, r->ckpt, "out of memory");
  }
  CkptMeta m = {.counts = counts,
                .ncounts = ncounts,
                .network = r->net->name,
                .classes = classes,
                .optimizer = optimizer_words[r->net->train.optimizer],
                .backend = program_backend(r->en.prog),
                .epoch = (unsigned long long)r->epoch,
                .step = step,
                .run_step = r->step,
                .seed = r->net->train.seed,
                .batch = (unsigned long long)r->net->train.batch,
                .samples = (unsigned long long)r->train.n,
                .threads = (unsigned long long)r->threads,
                .epoch_batches = (unsigned long long)r->batch_done,
                .sums = {r->sums.wloss, r->sums.wsum, r->sums.acc, r->sums.seconds},
                .lr = r->net->train.lr,
                .test_accuracy = r->test_acc,
                .test_loss = r->test_loss,
                .best_epoch = (unsigned long long)r->best_epoch,
                .waited = (unsigned long long)r->waited,
                .best_loss = r->best_loss};
  int rc = ckpt_write(r->ckpt, t, n, r->state, &m, e);
  free(t);
  free(classes);
  free(counts);
  if (rc == 0) {
    r->good_ckpt = r->ckpt;
    r->good_epoch = r->epoch;
    r->good_batch = r->batch_done;
  }
  return rc;
}

/* The position inside an epoch that the checkpoint records (0: at an
   epoch's end). */
static int resume_position(Run *r, const StFile *f, const CkptMeta *m, int nbatches, Err *e) {
  if (m->epoch_batches >= (unsigned long long)nbatches)
    return err_set(e, f->path, "checkpoint metadata out of range (epoch_batches %llu of %d)",
                   m->epoch_batches, nbatches);
  r->batch_done = (int)m->epoch_batches;
  r->sums = (EpochSums){0};
  if (m->epoch_batches == 0)
    return 0;
  if (!m->sums_ok)
    return err_set(e, f->path, "checkpoint stopped inside epoch %llu lacks valid 'epoch_sums'",
                   m->epoch + 1);
  r->sums = (EpochSums){m->sums[0], m->sums[1], m->sums[2], m->sums[3]};
  if (m->epoch >= (unsigned long long)r->net->train.epochs)
    return err_set(e, f->path,
                   "checkpoint stopped inside epoch %llu, past the %d epochs of this run (pass "
                   "--epochs %llu or more)",
                   m->epoch + 1, r->net->train.epochs, m->epoch + 1);
  return 0;
}

/* What differs from the run that made the checkpoint but is allowed: one
   note each. Threads and backend only move the last bits of the sums; the
   learning rate (the train block's) is the user's to change, as after a
   divergence. */
static void note_changes(const Run *r, const StFile *f, const CkptMeta *m) {
  const char *path = f->path, *was = m->backend, *now = program_backend(r->en.prog);
  unsigned long long threads = m->threads;
  if (threads && threads != (unsigned long long)r->threads)
    fprintf(stderr,
            "cnngen: note: %s: made with %llu thread%s, continuing with %d (the weights will "
            "not match an uninterrupted run bit for bit; --threads %llu would)\n",
            path, threads, threads == 1 ? "" : "s", r->threads, threads);
  if (was && strcmp(was, now))
    fprintf(stderr,
            "cnngen: note: %s: made with backend %s, continuing with %s (the weights will not "
            "match an uninterrupted run bit for bit; --backend %s would)\n",
            path, was, now, was);
  if (!isnan(m->lr) && m->lr != r->net->train.lr)
    fprintf(stderr,
            "cnngen: note: %s: made with lr %g, continuing with lr %g as %s says (the rest of "
            "the run follows the new rate)\n",
            path, m->lr, r->net->train.lr, r->net->file);
}

/* Loads --resume: weights, optimizer state, epoch, step and the position
   inside the epoch; the seed and batch come from the checkpoint unless the
   command line names them, and then they must agree. */
static int resume(Run *r, const char *path, Err *e) {
  StFile f;
  if (st_read(path, &f, e) < 0)
    return -1;
  int rc = -1;
  CkptMeta m;
  if (ckpt_read_meta(&f, &m, e) < 0)
    goto done;
  if (!m.network || strcmp(m.network, r->net->name)) {
    err_set(e, path, "checkpoint of network '%s', not '%s'", m.network ? m.network : "?",
            r->net->name);
    goto done;
  }
  unsigned long long epoch = m.epoch, step = m.step, seed = m.seed, batch = m.batch,
                     samples = m.samples;
  const char *opt = m.optimizer;
  if (!opt || strcmp(opt, optimizer_words[r->net->train.optimizer])) {
    err_set(e, path, "checkpoint was made with optimizer %s, the network now uses %s",
            opt ? opt : "?", optimizer_words[r->net->train.optimizer]);
    goto done;
  }
  const CliArgs *a = r->a;
  if (a->value[CLI_SEED] && (unsigned long long)a->num[CLI_SEED] != seed) {
    err_set(e, path, "checkpoint was made with seed %llu; drop --seed or pass --seed %llu", seed,
            seed);
    goto done;
  }
  if (a->value[CLI_BATCH] && (unsigned long long)a->num[CLI_BATCH] != batch) {
    err_set(e, path, "checkpoint was made with batch %llu; drop --batch or pass --batch %llu",
            batch, batch);
    goto done;
  }
  /* Over several ranks another thread count would change every step's
     split across the ranks: refused rather than noted. */
  if (r->dist.size > 1 && m.threads && m.threads != (unsigned long long)r->threads) {
    err_set(e, path,
            "checkpoint was made with %llu threads in all, these %d ranks run %d (resume with "
            "a rank count and --threads whose product is %llu)",
            m.threads, r->dist.size, r->threads, m.threads);
    goto done;
  }
  if (samples != (unsigned long long)r->train.n) {
    err_set(e, path, "checkpoint was made on %llu training images, this data has %d", samples,
            r->train.n);
    goto done;
  }
  if (batch < 1 || batch > (1u << 20) || epoch > 1000000) {
    err_set(e, path, "checkpoint metadata out of range (batch %llu, epoch %llu)", batch, epoch);
    goto done;
  }
  r->net->train.seed = seed;
  r->net->train.batch = (int)batch;
  if (resume_position(r, &f, &m, (int)((samples + batch - 1) / batch), e) < 0)
    goto done;
  int n;
  StParam *ti = checkpoint_tensors(r, &n);
  if (!ti) {
    e->internal = 1;
    err_set(e, path, "out of memory");
    goto done;
  }
  rc = st_load_params(&f, ti, n, r->state, e);
  if (rc == 0)
    rc = params_check_finite(path, ti, n, r->state, e);
  free(ti);
  if (rc < 0)
    goto done;
  r->en.load(r->en.model, r->state);
  r->tr.load_opt(r->en.model, r->state + r->net->param_count, step);
  r->epoch = (int)epoch;
  r->step = m.run_step;
  r->test_acc = m.test_accuracy;
  r->test_loss = m.test_loss;
  r->best_epoch = m.best_epoch <= epoch ? (int)m.best_epoch : 0;
  r->waited = m.waited <= epoch ? (int)m.waited : 0;
  r->best_loss = m.best_loss;
  r->good_ckpt = path;
  r->good_epoch = r->epoch;
  r->good_batch = r->batch_done;
  cli_read_counts(r->net, &f, r->tracked);
  note_changes(r, &f, &m);
done:
  st_free(&f);
  return rc;
}

static int load_data(Run *r, Err *e) {
  const char *dir = r->a->value[CLI_DATA] ? r->a->value[CLI_DATA] : CNNGEN_DEFAULT_DATA;
  Shape in = r->net->input;
  double t0 = now();
  if (dataset_load(&r->data, dir, true, in.h, in.w, in.c, r->a->threads, e) < 0) {
    if (!r->a->value[CLI_DATA] && strlen(e->msg) + 80 < sizeof e->msg)
      strcat(e->msg, " (install Debian's dataset-fashion-mnist or pass --data DIR)");
    return -1;
  }
  if (r->data.folder)
    printf("decoded %d images (%d test) from %s in %.1f s, %d thread%s\n",
           r->data.train_im.n + r->data.test_im.n, r->data.test_im.n, dir, now() - t0,
           r->a->threads, r->a->threads == 1 ? "" : "s");
  Dataset *d = &r->data;
  IdxImages im = d->train_im;
  IdxLabels lb = d->train_lb;
  const TrainConfig *tc = &r->net->train;
  if (tc->validation > 0) { /* the last round(F * N) images, before any shuffling */
    int held = (int)round(tc->validation * im.n);
    if (held < 1 || held >= im.n)
      return err_set(e, dir,
                     "validation %g of %d training images holds out %d, which leaves nothing "
                     "to %s (change validation in %s)",
                     tc->validation, im.n, held, held < 1 ? "score" : "train on", r->net->file);
    IdxImages vim = im;
    IdxLabels vlb = lb;
    vim.n = vlb.n = held;
    vim.data += (size_t)(im.n - held) * (size_t)im.h * (size_t)im.w * (size_t)im.c;
    vlb.data += (size_t)(lb.n - held) * (size_t)(lb.k > 0 ? lb.k : 1);
    im.n -= held;
    lb.n -= held;
    if (trainset_make(&r->val, r->net, &vim, &vlb, dir, 0, e) < 0)
      return -1;
  }
  if (trainset_make(&r->train, r->net, &im, &lb, dir, 1, e) < 0 ||
      trainset_make(&r->test, r->net, &d->test_im, &d->test_lb, dir, 0, e) < 0)
    return -1;
  trainset_smooth(&r->train, tc->loss, tc->label_smoothing);
  return 0;
}

/* Mean loss and accuracy of the test or validation set (without class
   weights or label smoothing: the loss `cnngen eval` prints). */
static void evaluate(Run *r, const TrainSet *s, double *mean_loss, double *mean_acc) {
  enum { CHUNK = 1024 };
  long in = s->image_size;
  float *x = malloc((size_t)CHUNK * (size_t)in * sizeof *x);
  float *y = malloc((size_t)CHUNK * (size_t)s->k * sizeof *y);
  double loss = 0, acc = 0;
  if (!x || !y) {
    *mean_loss = *mean_acc = NAN;
    free(x);
    free(y);
    return;
  }
  for (int first = 0; first < s->n; first += CHUNK) {
    int n = s->n - first < CHUNK ? s->n - first : CHUNK;
    image_bytes_to_floats(s->images + first * in, n * in, x);
    engine_infer(&r->en, x, n, y);
    for (int i = 0; i < n; i++) {
      const float *t = s->target + (long)(first + i) * s->k;
      loss += train_loss(r->net->train.loss, y + (long)i * s->k, t, s->k);
      acc += train_accuracy(r->net->train.loss, y + (long)i * s->k, t, s->label[first + i], s->k);
    }
  }
  *mean_loss = loss / s->n;
  *mean_acc = acc / s->n;
  free(x);
  free(y);
}

static void progress(const Run *r, int epochs, int done, int total, double loss, double acc,
                     double seconds) {
  enum { WIDTH = 20 }; /* the whole line stays under 80 columns */
  char bar[WIDTH + 1];
  int fill = (int)((long)WIDTH * done / total);
  for (int i = 0; i < WIDTH; i++)
    bar[i] = i < fill ? '=' : i == fill ? '>' : ' ';
  bar[WIDTH] = 0;
  fprintf(stderr, "\r\033[Kepoch %d/%d [%s] %d/%d  loss %.4f  acc %.4f  %.0f s", r->epoch + 1,
          epochs, bar, done, total, loss, acc, seconds);
  fflush(stderr);
}

/* The trainer's prepare hook: batch rows [first, first + n) as floats,
   augmented, on the thread that runs them. */
static void prepare_images(void *ctx, int thread, int first, int n) {
  Run *r = ctx;
  const TrainSet *s = &r->train;
  long in = s->image_size;
  for (int i = first; i < first + n; i++) {
    int j = r->order[r->batch_first + i];
    float *x = r->x + i * in;
    image_bytes_to_floats(s->images + j * in, in, x);
    if (r->augment)
      augment_image(&r->aug, augment_key(r->net->train.seed, r->epoch, j), x,
                    r->aug_tmp + thread * in);
  }
}

/* A stop signal's number, 0 for none: this process's own, or over several
   ranks the largest that any rank had at the end of the last step. */
static int stop_requested(const Run *r);

static int batches_per_epoch(const Run *r) {
  return (r->train.n + r->net->train.batch - 1) / r->net->train.batch;
}

/* "after epoch 2", or "in epoch 3 after batch 5 of 32" for a stop inside it. */
static void describe_position(const Run *r, int epoch, int batch, char *buf, size_t size) {
  if (batch == 0)
    snprintf(buf, size, "after epoch %d", epoch);
  else
    snprintf(buf, size, "in epoch %d after batch %d of %d", epoch + 1, batch, batches_per_epoch(r));
}

/* The first SIGINT or SIGTERM sets stop_signal; training stops after the
   batch that runs (on every thread), saves and exits with 128 + the signal.
   A second one exits at once: the atomic writes leave no half file. */
static volatile sig_atomic_t stop_signal;
static bool stop_tty;

static void on_stop_signal(int sig) {
  if (stop_signal)
    _exit(128 + sig);
  stop_signal = sig;
  static const char tty_msg[] = "\r\033[Kcnngen: stopping after this batch (press Ctrl-C again "
                                "to stop at once)\n";
  static const char msg[] = "cnngen: stopping after this batch (a second signal stops at once)\n";
  ssize_t unused = stop_tty ? write(2, tty_msg, sizeof tty_msg - 1) : write(2, msg, sizeof msg - 1);
  (void)unused;
}

/* Catches SIGINT and SIGTERM (an ignored one stays ignored, as a background
   job's SIGINT is); `old` keeps what to restore. */
static void catch_stop_signals(bool tty, struct sigaction old[2]) {
  static const int sigs[2] = {SIGINT, SIGTERM};
  struct sigaction sa = {0};
  sa.sa_handler = on_stop_signal;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  stop_tty = tty;
  for (int i = 0; i < 2; i++) {
    sigaction(sigs[i], NULL, &old[i]);
    if (old[i].sa_handler != SIG_IGN)
      sigaction(sigs[i], &sa, NULL);
  }
}

static void restore_stop_signals(const struct sigaction old[2]) {
  sigaction(SIGINT, &old[0], NULL);
  sigaction(SIGTERM, &old[1], NULL);
}

static int stop_requested(const Run *r) {
  return r->dist.size > 1 ? r->tr.stop : stop_signal;
}

/* early_stopping, after an epoch scored on the validation set: a loss below
   the best by more than min_delta (or the first one) is the new best, and
   its weights are kept; otherwise one more epoch without improvement. */
static void track_best(Run *r) {
  const TrainConfig *tc = &r->net->train;
  if (!tc->patience)
    return;
  bool better =
      r->best_epoch == 0 ? !isnan(r->val_loss) : r->val_loss < r->best_loss - tc->min_delta;
  if (!better) {
    r->waited++;
    return;
  }
  r->best_epoch = r->epoch;
  r->best_loss = r->val_loss;
  r->waited = 0;
  r->en.store(r->en.model, best_params(r));
}

/* early_stopping's patience is spent. */
static bool patience_out(const Run *r) {
  return r->net->train.patience && r->waited >= r->net->train.patience;
}

/* One epoch over the training set, from batch r->batch_done on. Returns 0
   at its end; 1 when a stop signal came before a batch ended: after the
   last one the epoch is finished (so an epoch of one batch stops too),
   otherwise r->batch_done and r->sums say where it stopped; -1 (with e)
   when the loss diverges. A signal that comes after the last batch (while
   the test set is scored or files written) stops the next epoch after its
   first batch. */
static int train_epoch(Run *r, int epochs, Err *e) {
  const TrainSet *s = &r->train;
  int batch = r->net->train.batch, k = s->k, nbatches = batches_per_epoch(r);
  uint64_t seed = r->net->train.seed;
  train_order(seed, r->epoch, r->order, s->n);
  EpochSums *sum = &r->sums;
  double t0 = now() - sum->seconds, shown = 0;
  for (int b = r->batch_done; b < nbatches; b++) {
    int first = b * batch, n = s->n - first < batch ? s->n - first : batch;
    for (int i = 0; i < n; i++) {
      int j = r->order[first + i];
      memcpy(r->target + (long)i * k, s->target + (long)j * k, (size_t)k * sizeof *r->target);
      if (s->weight)
        r->weight[i] = s->weight[j];
    }
    r->batch_first = first; /* prepare_images reads its samples from here */
    r->tr.lr = train_lr(&r->net->train, r->step, nbatches, epochs);
    double ws;
    double loss = trainer_step(&r->tr, r->x, r->target, s->weight ? r->weight : NULL, n,
                               train_key(seed, r->step), r->y, &ws);
    r->step++;
    count_batch(r);
    if (!isfinite(loss)) {
      if (r->tty)
        fputs("\r\033[K", stderr);
      char kept[300], where[64];
      describe_position(r, r->good_epoch, r->good_batch, where, sizeof where);
      if (r->good_ckpt)
        snprintf(kept, sizeof kept, "the last good checkpoint, %s, is %s", where, r->good_ckpt);
      else
        snprintf(kept, sizeof kept, "no checkpoint was written yet");
      return err_set(e, r->net->file,
                     "training diverged at epoch %d, step %d of %d (step %" PRIu64 " of the run"
                     "): the loss is %s; %s (try a smaller learning rate)",
                     r->epoch + 1, b + 1, nbatches, r->step, isnan(loss) ? "NaN" : "infinite",
                     kept);
    }
    sum->wloss += loss;
    sum->wsum += ws;
    for (int i = 0; i < n; i++) {
      int j = r->order[first + i];
      sum->acc += train_accuracy(r->net->train.loss, r->y + (long)i * k, r->target + (long)i * k,
                                 s->label[j], k);
    }
    r->batch_done = b + 1;
    double t = now();
    if (r->tty && (t - shown >= 0.1 || b + 1 == nbatches)) {
      shown = t;
      progress(r, epochs, b + 1, nbatches, sum->wloss / sum->wsum, sum->acc / (first + n), t - t0);
    }
    if (stop_requested(r) && b + 1 < nbatches) {
      sum->seconds = t - t0;
      if (r->tty)
        fputs("\r\033[K", stderr);
      return 1;
    }
  }
  double seconds = now() - t0;
  int stop = stop_requested(r) != 0;
  if (r->tty)
    fputs("\r\033[K", stderr);
  if (r->dist.rank == 0)
    evaluate(r, &r->test, &r->test_loss, &r->test_acc);
  r->epoch++;
  char val[96] = "";
  if (r->val.n) {
    evaluate(r, &r->val, &r->val_loss, &r->val_acc);
    snprintf(val, sizeof val, "  val loss %.4f  val accuracy %.4f", r->val_loss, r->val_acc);
    track_best(r);
  }
  EpochStats row = {.epoch = r->epoch,
                    .loss = sum->wsum > 0 ? sum->wloss / sum->wsum : 0.0,
                    .accuracy = sum->acc / s->n,
                    .test_loss = r->test_loss,
                    .test_accuracy = r->test_acc,
                    .seconds = seconds,
                    .lr = r->tr.lr,
                    .val_loss = r->val.n ? r->val_loss : NAN,
                    .val_accuracy = r->val.n ? r->val_acc : NAN};
  r->batch_done = 0;
  *sum = (EpochSums){0};
  printf("epoch %d/%d  loss %.4f  accuracy %.4f%s  test loss %.4f  test accuracy %.4f  lr %g  "
         "%.1f s  %.0f images/s\n",
         r->epoch, epochs, row.loss, row.accuracy, val, r->test_loss, r->test_acc, row.lr, seconds,
         s->n / seconds);
  fflush(stdout);
  if (r->rows) {
    assert(r->nrows < r->rows_cap);
    r->rows[r->nrows++] = row;
  }
  return stop;
}

/* ---- --log ---- */

static int write_log(const Run *r, Err *e) {
  return trainlog_write(r->a->value[CLI_LOG], r->rows, r->nrows, r->val.n > 0, e);
}

static int read_log(Run *r, Err *e) {
  return trainlog_read(r->a->value[CLI_LOG], r->epoch, r->rows, &r->nrows, r->rows_cap, e);
}

/* --plot: the rows so far, drawn (before the first epoch, empty axes that
   say "no epochs yet"). */
static int write_plot(const Run *r, Err *e) {
  const char *path = r->a->value[CLI_PLOT];
  if (!path)
    return 0;
  return plot_write(path, r->net->name, r->rows, r->nrows, e);
}

/* Before any training: rows for --log and --plot, the earlier rows read back
   on --resume, the log and the plot written once (so a path that cannot be
   written fails now, not after an epoch). */
static int start_log(Run *r, Err *e) {
  const CliArgs *a = r->a;
  if (!a->value[CLI_LOG] && !a->value[CLI_PLOT])
    return 0;
  int epochs = r->net->train.epochs;
  r->rows_cap = (epochs > r->epoch ? epochs : r->epoch) + 1;
  if (!(r->rows = calloc((size_t)r->rows_cap, sizeof *r->rows))) {
    e->internal = 1;
    return err_set(e, NULL, "out of memory for %d log rows", r->rows_cap);
  }
  if (a->value[CLI_LOG] && ((a->value[CLI_RESUME] && read_log(r, e) < 0) || write_log(r, e) < 0))
    return -1;
  return write_plot(r, e);
}

/* After each epoch. */
static int update_log(Run *r, Err *e) {
  if (r->a->value[CLI_LOG] && write_log(r, e) < 0)
    return -1;
  return write_plot(r, e);
}

/* Each layer's num_batches_tracked when the best epoch ended: the batches
   since (each counted once by every batch_stats layer) taken back off.
   malloc'd; NULL when out of memory. */
static long long *best_tracked(const Run *r) {
  long long *t = malloc(((size_t)r->net->nlayers + 1) * sizeof *t);
  const long long since =
      (long long)(r->epoch - r->best_epoch) * batches_per_epoch(r) + r->batch_done;
  for (int i = 0; t && i < r->net->nlayers; i++)
    t[i] = r->tracked[i] - (op_modules[r->net->layers[i].op]->batch_stats ? since : 0);
  return t;
}

/* The weights: the last epoch's, or with early_stopping the best epoch's
   (with that epoch's num_batches_tracked). */
static int write_weights(Run *r, Err *e) {
  r->en.store(r->en.model, r->state);
  const bool best = r->net->train.patience && r->best_epoch > 0;
  char epochs[24], seed[24], acc[32], loss[32], best_epoch[24];
  snprintf(epochs, sizeof epochs, "%d", r->epoch);
  snprintf(seed, sizeof seed, "%llu", r->net->train.seed);
  snprintf(acc, sizeof acc, "%.4f", r->test_acc);
  snprintf(loss, sizeof loss, "%.6f", r->test_loss);
  char *classes;
  if (classes_json(r, r->out, &classes, e) < 0)
    return -1;
  const char *meta[14] = {"epochs", epochs, "seed", seed};
  int m = 4;
  if (best) {
    snprintf(best_epoch, sizeof best_epoch, "%d", r->best_epoch);
    meta[m++] = "best_epoch";
    meta[m++] = best_epoch;
  }
  if (classes) {
    meta[m++] = "classes";
    meta[m++] = classes;
  }
  /* an epoch ran, and the scores are its weights' */
  if (!isnan(r->test_acc) && r->batch_done == 0 && (!best || r->best_epoch == r->epoch)) {
    meta[m++] = "test_accuracy";
    meta[m++] = acc;
    meta[m++] = "test_loss";
    meta[m++] = loss;
  }
  long long *tracked = best ? best_tracked(r) : r->tracked;
  int rc = tracked ? cli_write_trained(r->out, r->net, best ? best_params(r) : r->state, tracked,
                                       meta, e)
                   : (e->internal = 1, err_set(e, r->out, "out of memory"));
  if (best)
    free(tracked);
  free(classes);
  return rc;
}

/* The files written against those read: the network, --weights, --resume
   and the IDX files the data directory may hold. --checkpoint may be the
   --resume file (continuing a run where it left off), which is read whole
   before the first checkpoint replaces it. */
static int check_outputs(const Run *r, Err *e) {
  const CliArgs *a = r->a;
  const char *dir = a->value[CLI_DATA] ? a->value[CLI_DATA] : CNNGEN_DEFAULT_DATA;
  static const char *const which[] = {"train", "t10k"};
  static const char *const kinds[] = {"images-idx3", "images-idx4", "labels-idx1", "labels-idx2"};
  enum { NDATA = 2 * 4 * 2 };
  char data[NDATA][4096];
  IoPath in[2 + NDATA] = {{"the network file", a->net_path}};
  int nin = 1, nd = 0;
  if (a->value[CLI_WEIGHTS])
    in[nin++] = (IoPath){"--weights", a->value[CLI_WEIGHTS]};
  for (int w = 0; w < 2; w++)
    for (int k = 0; k < 4; k++)
      for (int gz = 0; gz < 2; gz++, nd++) {
        snprintf(data[nd], sizeof data[nd], "%s/%s-%s-ubyte%s", dir, which[w], kinds[k],
                 gz ? ".gz" : "");
        in[nin++] = (IoPath){"a data file", data[nd]};
      }
  IoPath out[4] = {{"--out", r->out}, {"--checkpoint", r->ckpt}};
  int nout = 2;
  if (a->value[CLI_LOG])
    out[nout++] = (IoPath){"--log", a->value[CLI_LOG]};
  if (a->value[CLI_PLOT])
    out[nout++] = (IoPath){"--plot", a->value[CLI_PLOT]};
  if (io_check_outputs(out, nout, in, nin, e) < 0)
    return -1;
  /* All but --checkpoint against --resume too. */
  if (a->value[CLI_RESUME]) {
    IoPath resume = {"--resume", a->value[CLI_RESUME]};
    out[1] = out[--nout];
    if (io_check_outputs(out, nout, &resume, 1, e) < 0)
      return -1;
  }
  return 0;
}

/* A layer on the batch's statistics (batchnorm) of one value per channel
   and image (a vector, a 1x1 image) needs two images in every batch, as
   PyTorch does ("Expected more than 1 value per channel when training"):
   refused before training, naming the batch that would hold one. */
static int check_batch_values(const Run *r, Err *e) {
  const int batch = r->net->train.batch, n = r->train.n;
  const int last = n < batch ? n : n % batch ? n % batch : batch;
  for (int i = 0; i < r->net->nlayers; i++) {
    const Layer *l = &r->net->layers[i];
    if (!op_modules[l->op]->batch_stats || (long)l->out.h * l->out.w > 1 || (batch > 1 && last > 1))
      continue;
    return err_set(e, r->net->file,
                   "line %d: %s needs more than one value per channel in a batch, but %s holds "
                   "one image (%d training images, batch %d) (change batch%s)",
                   l->loc.line, op_words[l->op],
                   batch == 1 ? "every batch" : "the last batch of each epoch", n, batch,
                   batch == 1 ? "" : " so that the last batch holds two or more");
  }
  return 0;
}

static int setup(Run *r, Err *e) {
  const CliArgs *a = r->a;
  TrainConfig *tc = &r->net->train;
  if (a->value[CLI_EPOCHS])
    tc->epochs = (int)a->num[CLI_EPOCHS];
  if (a->value[CLI_BATCH])
    tc->batch = (int)a->num[CLI_BATCH];
  if (a->value[CLI_SEED])
    tc->seed = (unsigned long long)a->num[CLI_SEED];
  /* With a train block, shape.c has checked the loss against the output. */
  Act out = net_output_act(r->net);
  bool ce = tc->loss == LOSS_SPARSE_CE || tc->loss == LOSS_CE;
  if (!tc->present && ((ce && out != ACT_SOFTMAX) || (tc->loss == LOSS_BCE && out != ACT_SIGMOID)))
    return err_set(e, r->net->file,
                   "no train block, and the default loss %s needs a %s output, but the network "
                   "ends in %s (add 'train { loss mse }' or end with softmax)",
                   loss_words[tc->loss], ce ? "softmax" : "sigmoid", act_words[out]);
  r->augment = augment_init(&r->aug, tc, r->net->input);
  const char *name = r->net->name;
  r->out = a->value[CLI_OUT] ? strdup(a->value[CLI_OUT])
                             : with_suffix(name, strlen(name), ".safetensors");
  r->ckpt = a->value[CLI_CHECKPOINT] ? strdup(a->value[CLI_CHECKPOINT])
            : r->out                 ? checkpoint_path(r->out)
                                     : NULL;
  if (!r->out || !r->ckpt) {
    e->internal = 1;
    return err_set(e, NULL, "out of memory");
  }
  if ((r->dist.rank == 0 && check_outputs(r, e) < 0) || load_data(r, e) < 0)
    return -1;
  return check_batch_values(r, e);
}

static int allocate(Run *r, Err *e) {
  long in = r->train.image_size;
  r->order = malloc((size_t)r->train.n * sizeof *r->order);
  const char *slots[3];
  r->state = calloc((size_t)(r->net->param_count * (1 + checkpoint_slots(r, slots)) + 1),
                    sizeof *r->state);
  r->aug_tmp = malloc((size_t)(in * r->en.threads) * sizeof *r->aug_tmp);
  r->tracked = calloc((size_t)r->net->nlayers + 1, sizeof *r->tracked);
  if (!r->order || !r->state || !r->aug_tmp || !r->tracked) {
    e->internal = 1;
    return err_set(e, NULL, "out of memory for %d images' order and the training state",
                   r->train.n);
  }
  return 0;
}

/* The batch's buffers, once the batch is known: --resume takes the
   checkpoint's. */
static int allocate_batch(Run *r, Err *e) {
  long in = r->train.image_size, k = r->train.k, batch = r->net->train.batch;
  r->x = malloc((size_t)(batch * in) * sizeof *r->x);
  r->y = malloc((size_t)(batch * k) * sizeof *r->y);
  r->target = malloc((size_t)(batch * k) * sizeof *r->target);
  r->weight = malloc((size_t)batch * sizeof *r->weight);
  if (!r->x || !r->y || !r->target || !r->weight) {
    e->internal = 1;
    return err_set(e, NULL, "out of memory for a batch of %ld images", batch);
  }
  return 0;
}

/* ---- several ranks ---- */

/* What must be the same on every rank for the sums to be one run's. */
typedef struct RankCheck {
  uint64_t net_hash, data_hash;
  long long train_n, test_n, image_size, k;
  int threads;
  char backend[16]; /* "tcc", "cc", "cc-kernels" */
} RankCheck;

static uint64_t hash_set(uint64_t h, const TrainSet *s) {
  h = io_hash(h, s->images, (size_t)s->n * (size_t)s->image_size);
  h = io_hash(h, s->target, (size_t)s->n * (size_t)s->k * sizeof *s->target);
  return io_hash(h, s->label, (size_t)s->n * sizeof *s->label);
}

static int rank_check(Run *r, RankCheck *c, Err *e) {
  size_t len;
  char *text = io_read_file(r->a->net_path, &len, e);
  if (!text)
    return -1;
  *c = (RankCheck){.net_hash = io_hash(IO_HASH_START, text, len),
                   .data_hash = hash_set(hash_set(IO_HASH_START, &r->train), &r->test),
                   .train_n = r->train.n,
                   .test_n = r->test.n,
                   .image_size = r->train.image_size,
                   .k = r->train.k,
                   .threads = r->en.threads};
  snprintf(c->backend, sizeof c->backend, "%s", program_backend(r->en.prog));
  free(text);
  return 0;
}

/* The state that rank 0 sends: where the run is, besides the parameters and
   optimizer state. */
typedef struct RankState {
  unsigned long long seed;
  uint64_t step, opt_step;
  int batch, epoch, batch_done;
  EpochSums sums;
  int best_epoch, waited; /* early_stopping's (checkpoint_slots holds the best weights) */
  double best_loss;
} RankState;

/* After every rank has set up, rc its verdict (rank 0 has also read --resume
   and started the log): all ranks agree, check each other (RankCheck), and
   take rank 0's state. Returns -1 on every rank when any failed. */
static int start_ranks(Run *r, int rc, Err *e) {
  Dist *d = &r->dist;
  RankCheck mine = {0};
  if (rc == 0)
    rc = rank_check(r, &mine, e);
  if (dist_agree(d, rc, e) < 0)
    return -1;
  RankCheck *all = calloc((size_t)d->size, sizeof *all);
  if (!all) {
    e->internal = 1;
    return err_set(e, NULL, "out of memory for %d ranks", d->size);
  }
  dist_allgather(d, &mine, sizeof mine, all);
  const char *dir = r->a->value[CLI_DATA] ? r->a->value[CLI_DATA] : CNNGEN_DEFAULT_DATA;
  rc = 0;
  for (int k = 1; k < d->size && rc == 0; k++) {
    const RankCheck *a = &all[0], *b = &all[k];
    if (b->net_hash != a->net_hash)
      rc = err_set(e, r->a->net_path,
                   "rank %d's network file differs from rank 0's (every rank must train the same "
                   "network: copy it to every machine)",
                   k);
    else if (b->train_n != a->train_n || b->test_n != a->test_n || b->image_size != a->image_size ||
             b->k != a->k)
      rc =
          err_set(e, dir,
                  "rank %d's data differ from rank 0's: %lld training and %lld test images of %lld "
                  "values there, %lld and %lld of %lld on rank 0 (every rank must read the same "
                  "data)",
                  k, b->train_n, b->test_n, b->image_size, a->train_n, a->test_n, a->image_size);
    else if (b->data_hash != a->data_hash)
      rc = err_set(e, dir,
                   "rank %d's data differ from rank 0's: the same sizes but other images or "
                   "labels (every rank must read the same data)",
                   k);
    else if (b->threads != a->threads)
      rc = err_set(e, r->a->net_path,
                   "rank %d runs %d threads, rank 0 runs %d (pass the same --threads to every "
                   "rank)",
                   k, b->threads, a->threads);
    else if (strcmp(b->backend, a->backend))
      rc = err_set(e, r->a->net_path,
                   "rank %d compiled with backend %s, rank 0 with %s (pass the same --backend to "
                   "every rank)",
                   k, b->backend, a->backend);
  }
  free(all);
  if (rc < 0)
    return -1;

  const char *slots[3];
  long count = r->net->param_count * (1 + checkpoint_slots(r, slots));
  RankState st = {0};
  if (d->rank == 0) {
    r->en.store(r->en.model, r->state);
    r->tr.store_opt(r->en.model, r->state + r->net->param_count, &st.opt_step);
    st = (RankState){r->net->train.seed, r->step, st.opt_step,   r->net->train.batch, r->epoch,
                     r->batch_done,      r->sums, r->best_epoch, r->waited,           r->best_loss};
  }
  dist_bcast(d, &st, sizeof st);
  dist_bcast(d, r->state, (size_t)count * sizeof *r->state);
  if (d->rank != 0) {
    r->en.load(r->en.model, r->state);
    r->tr.load_opt(r->en.model, r->state + r->net->param_count, st.opt_step);
    r->net->train.seed = st.seed;
    r->net->train.batch = st.batch;
    r->step = st.step;
    r->epoch = st.epoch;
    r->batch_done = st.batch_done;
    r->sums = st.sums;
    r->best_epoch = st.best_epoch;
    r->waited = st.waited;
    r->best_loss = st.best_loss;
  }
  rc = trainer_distribute(&r->tr, d, r->net->train.batch, e);
  if (rc == 0 && !(r->rank_hashes = calloc((size_t)d->size, sizeof *r->rank_hashes))) {
    e->internal = 1;
    rc = err_set(e, NULL, "out of memory for %d ranks", d->size);
  }
  return dist_agree(d, rc, e);
}

/* After each epoch under mpirun: every rank's weights must still be rank
   0's. Ranks that compute differently (another CC, or -march=native on
   another CPU) would otherwise drift apart without a word. */
static int check_same_weights(Run *r, Err *e) {
  if (r->dist.size == 1)
    return 0;
  r->en.store(r->en.model, r->state);
  uint64_t mine = io_hash(IO_HASH_START, r->state, (size_t)r->net->param_count * sizeof *r->state);
  dist_allgather(&r->dist, &mine, sizeof mine, r->rank_hashes);
  for (int k = 1; k < r->dist.size; k++)
    if (r->rank_hashes[k] != r->rank_hashes[0]) {
      char where[64];
      describe_position(r, r->epoch, r->batch_done, where, sizeof where);
      return err_set(e, r->net->file,
                     "rank %d's weights differ from rank 0's %s: the ranks compute differently "
                     "(use the same backend and CC on every machine, and a -march that they "
                     "all share in place of -march=native)",
                     k, where);
    }
  return 0;
}

/* Rank 0's writes (checkpoint, log, weights); every rank learns whether
   they worked. */
static int on_rank0(Run *r, int (*write)(Run *, Err *), Err *e) {
  return dist_agree(&r->dist, r->dist.rank == 0 ? write(r, e) : 0, e);
}

static int write_epoch_files(Run *r, Err *e) {
  if (write_checkpoint(r, e) < 0 || (r->batch_done == 0 && update_log(r, e) < 0))
    return -1;
  return 0;
}

static int run(const CliArgs *cli) {
  CliArgs args = *cli; /* under mpirun, threads divided among the machine's ranks */
  const CliArgs *a = &args;
  Arena arena = {0};
  Err e = {0};
  int status = 0;
  Run r = {
      .a = a, .test_loss = NAN, .test_acc = NAN, .val_loss = NAN, .val_acc = NAN, .best_loss = NAN};
  bool engine_open = false, trainer_open_ok = false, caught = false, agreed = false;
  struct sigaction old_signals[2];
  if (dist_open(&r.dist, &e) < 0)
    goto fail;
  r.tty = isatty(2); /* after dist_open: only rank 0 keeps its terminal */
  if (r.dist.size > 1 && !a->value[CLI_THREADS]) {
    args.threads /= dist_local_ranks();
    args.threads = args.threads < 1 ? 1 : args.threads;
  }
  if (a->value[CLI_RESUME] && a->value[CLI_WEIGHTS]) {
    status = cli_usage_error("train: --resume already holds the weights; drop --weights");
    goto done;
  }
  if (a->value[CLI_PLOT] && !plot_format_ok(a->value[CLI_PLOT])) {
    status =
        cli_usage_error("train: --plot %s: the name must end in .png or .svg", a->value[CLI_PLOT]);
    goto done;
  }
  if (!(r.net = cli_compile_net(&arena, a->net_path, NULL, &status)))
    goto done;
  if (setup(&r, &e) < 0)
    goto fail;
  /* each epoch: the training images forward and backward, the test images forward */
  const double images = r.net->train.epochs * (r.train.n + r.test.n / 3.0);
  if ((status = cli_open_engine(&r.en, r.net, a, true, images, &r.names)) != 0)
    goto done;
  engine_open = true;
  r.threads = r.en.threads * r.dist.size;
  if (cli_class_names_add(&r.names, (const char *const *)r.data.classes, r.data.nclasses,
                          r.data.classes_path, r.data.classes_what, r.train.k, &e) < 0)
    goto fail;
  if (trainer_open(&r.tr, &r.en, &e) < 0)
    goto fail;
  trainer_open_ok = true;
  if (allocate(&r, &e) < 0)
    goto fail;
  r.tr.prepare = prepare_images;
  r.tr.prepare_ctx = &r;
  r.tr.stop_request = &stop_signal;
  if (a->value[CLI_RESUME]) {
    if (r.dist.rank == 0 && resume(&r, a->value[CLI_RESUME], &e) < 0)
      goto fail;
  } else if (!a->value[CLI_WEIGHTS]) {
    r.en.init(r.en.model, r.net->train.seed);
  } else if (cli_read_weight_counts(a->value[CLI_WEIGHTS], r.net, r.tracked, &e) < 0) {
    goto fail;
  }
  if (r.dist.rank == 0 && start_log(&r, &e) < 0)
    goto fail;
  catch_stop_signals(r.tty, old_signals); /* before the ranks start together */
  caught = true;
  if (r.dist.size > 1) {
    agreed = true;
    if (start_ranks(&r, 0, &e) < 0)
      goto fail;
  }
  if (dist_agree(&r.dist, allocate_batch(&r, &e), &e) < 0)
    goto fail;
  const TrainConfig *tc = &r.net->train;
  char resumed[96] = "", where[64];
  describe_position(&r, r.epoch, r.batch_done, where, sizeof where);
  if (a->value[CLI_RESUME])
    snprintf(resumed, sizeof resumed, " (resuming %s)", where);
  /* A cache hit compiled nothing: its time would only be the lookup's. */
  char compiled[48] = "cached";
  if (!program_cached(r.en.prog))
    snprintf(compiled, sizeof compiled, "compiled in %.2f s", program_compile_seconds(r.en.prog));
  char ranks[32] = "", held[48] = "";
  if (r.dist.size > 1)
    snprintf(ranks, sizeof ranks, "%d ranks x ", r.dist.size);
  if (r.val.n)
    snprintf(held, sizeof held, ", %d for validation", r.val.n);
  printf("training %s: %d images (%d test%s), batch %d, %d epoch%s%s, %s, backend %s (%s), %s%d "
         "thread%s\n",
         r.net->name, r.train.n, r.test.n, held, tc->batch, tc->epochs, tc->epochs == 1 ? "" : "s",
         resumed, optimizer_words[tc->optimizer], program_backend(r.en.prog), compiled, ranks,
         r.en.threads, r.en.threads == 1 ? "" : "s");
  if (r.augment) {
    printf("augmenting training images:");
    for (int i = 0; i < AUG_COUNT; i++) {
      Augment k = augment_order[i];
      if (tc->augment[k].on && augment_takes_value[k])
        printf(" %s=%g", augment_words[k], tc->augment[k].value);
      else if (tc->augment[k].on)
        printf(" %s", augment_words[k]);
    }
    printf("\n");
  }
  double started = now();
  r.dist.comm_seconds = 0;
  for (int rc = 0; r.epoch < tc->epochs && rc == 0 && !patience_out(&r);) {
    rc = train_epoch(&r, tc->epochs, &e);
    if (rc < 0 || check_same_weights(&r, &e) < 0 || on_rank0(&r, write_epoch_files, &e) < 0)
      goto fail;
  }
  const bool early = r.epoch < tc->epochs && patience_out(&r);
  if (early)
    printf("early stopping after epoch %d: the validation loss has not fallen below epoch %d's "
           "%.4f for %d epochs\n",
           r.epoch, r.best_epoch, r.best_loss, r.waited);
  if (on_rank0(&r, write_weights, &e) < 0)
    goto fail;
  if (r.dist.size > 1) {
    double total = now() - started;
    printf("communication: %.1f s of %.1f s (%.0f%%) on rank 0, waiting for the other ranks "
           "included\n",
           r.dist.comm_seconds, total, total > 0 ? 100 * r.dist.comm_seconds / total : 0.0);
  }
  if (tc->patience && r.best_epoch > 0)
    printf("wrote %s: epoch %d's weights, the lowest validation loss (checkpoint %s)\n", r.out,
           r.best_epoch, r.good_ckpt ? r.good_ckpt : "none");
  else
    printf("wrote %s (checkpoint %s)\n", r.out, r.good_ckpt ? r.good_ckpt : "none");
  if (r.epoch < tc->epochs && !early) { /* stopped by a signal */
    describe_position(&r, r.epoch, r.batch_done, where, sizeof where);
    int sig = stop_requested(&r);
    printf("stopped by %s %s; to continue:\n  ", sig == SIGINT ? "Ctrl-C" : "SIGTERM", where);
    if (r.dist.size > 1)
      printf("mpirun -n %d ", r.dist.size);
    cli_write_command(stdout, a,
                      OPT(CLI_DATA) | OPT(CLI_EPOCHS) | OPT(CLI_OUT) | OPT(CLI_CHECKPOINT) |
                          OPT(CLI_LOG) | OPT(CLI_PLOT) | OPT(CLI_BACKEND) | OPT(CLI_THREADS));
    fputs(" --resume ", stdout);
    cli_write_word(stdout, r.ckpt);
    fputc('\n', stdout);
    status = 128 + sig;
  }
  goto done;
fail:
  status = cli_fail(&e);
done:
  if (r.dist.size > 1 && !agreed) /* the others wait for this rank's verdict */
    dist_agree(&r.dist, -1, &e);
  if (caught)
    restore_stop_signals(old_signals);
  if (trainer_open_ok)
    trainer_close(&r.tr);
  if (engine_open)
    engine_close(&r.en);
  trainset_free(&r.train);
  trainset_free(&r.test);
  trainset_free(&r.val);
  dataset_free(&r.data);
  cli_class_names_free(&r.names);
  free(r.out);
  free(r.ckpt);
  free(r.x);
  free(r.y);
  free(r.target);
  free(r.weight);
  free(r.order);
  free(r.state);
  free(r.tracked);
  free(r.aug_tmp);
  free(r.rows);
  free(r.rank_hashes);
  dist_close(&r.dist);
  arena_free(&arena);
  return status;
}

const Command cmd_train = {
    .name = "train",
    .summary = "train a network on IDX data or an image folder (Fashion-MNIST by default)",
    .help = help,
    .options = OPT(CLI_DATA) | OPT(CLI_EPOCHS) | OPT(CLI_BATCH) | OPT(CLI_SEED) | OPT(CLI_WEIGHTS) |
               OPT(CLI_OUT) | OPT(CLI_CHECKPOINT) | OPT(CLI_RESUME) | OPT(CLI_LOG) | OPT(CLI_PLOT) |
               OPT(CLI_BACKEND) | OPT(CLI_THREADS),
    .min_args = 1,
    .max_args = 1,
    .run = run,
};
