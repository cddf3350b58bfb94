/*
 * trainer.h: the runtime side of training, around the generated training API
 * (NAME_accumulate, NAME_update, ...; see the generated header).
 *
 * A Trainer takes an Engine opened with training code and runs one optimizer
 * step per call: the batch is cut into `threads` contiguous chunks, thread t
 * accumulates its chunk's gradients into its own NAME_grads, the gradients
 * are summed in thread order (g0 += g1, g0 += g2, ...) and NAME_update
 * applies g0 / sum of weights. The order of every sum is fixed, so a run is
 * bit for bit repeatable for a given thread count and backend. Worker threads
 * live as long as the Trainer and wait on a condition variable between steps.
 * Under mpirun (trainer_distribute) the threads are those of every rank:
 * rank r's thread t is thread r*T+t of the batch's split, and the sums run
 * over all of them in that order (dist.h).
 *
 * The data side: a TrainSet turns IDX images and labels into what the loss
 * needs (one-hot or 0/1 target rows, class labels, per-sample class weights),
 * train_order() gives epoch e's shuffled order from the seed alone (so
 * resuming needs no generator state), and train_key() the dropout key of a
 * step.
 */
#ifndef CNNGEN_TRAINER_H
#define CNNGEN_TRAINER_H

#include <signal.h>
#include <stdint.h>

#include "../compiler/ir.h"
#include "dist.h"
#include "engine.h"
#include "err.h"
#include "formats/idx.h"

typedef struct TrainerPool TrainerPool;
typedef struct TrainerBatch TrainerBatch;

typedef struct Trainer {
  Engine *en;
  long in_size, out_size, param_count;
  int opt_slots;      /* optimizer state arrays: adam 2 (m, v), sgd+momentum 1, sgd 0 */
  size_t grads_bytes; /* sizeof(NAME_grads) */
  void **grads;       /* [threads] NAME_grads, 64-aligned */
  /* The generated entry points (NAME_ prefix). */
  void (*grads_zero)(void *g);
  double (*accumulate_y)(const void *m, void *w, void *g, const float *x, const float *target,
                         const float *weight, int n, uint64_t key, float *y);
  void (*update)(void *m, const void *g, float scale, float lr);
  void (*store_opt)(const void *m, float *state, uint64_t *step);
  void (*load_opt)(void *m, const float *state, uint64_t step);
  TrainerPool *pool; /* threads 1 .. threads-1; NULL with one thread */
  /* Optional, set by the caller after trainer_open: called by each thread,
     before its chunk's forward pass, to fill (or transform) x rows
     [first, first + n) of the step; `thread` is 0 .. threads-1. So the
     images of a batch are prepared in parallel. */
  void (*prepare)(void *ctx, int thread, int first, int n);
  void *prepare_ctx;
  /* Optional: a stop request (a signal number, 0: none), read as the step's
     own threads finish; trainer_step leaves in `stop` the largest request of
     any rank, so that every rank stops after the same step. */
  const volatile sig_atomic_t *stop_request;
  int stop;
  /* Batch statistics (a batchnorm: net_has_batch_stats): each thread's
     buffers for every image of its chunk, and the sum over the batch that
     the generated code calls from inside a step (trainer.c, reduce). */
  void (*batch_setup)(void *w, void *images, int slots, void (*reduce)(void *, double *, int),
                      void *ctx, int quiet);
  size_t image_bytes;  /* NAME_image_bytes() */
  void **images;       /* [threads] */
  int *image_slots;    /* [threads] */
  TrainerBatch *batch; /* NULL without batch statistics */
  Dist *dist;          /* NULL: this process alone (trainer_distribute) */
  unsigned char *recs; /* [ranks][rec_bytes]: a step's losses and outputs */
  size_t rec_bytes;
  int rec_rows; /* rows of outputs a rank's record holds */
  /* The learning rate of the next step: the caller sets it before each step
     (train_lr); trainer_open sets the train block's. */
  double lr;
} Trainer;

/* Looks up the training entry points in en (opened with training code) and
   starts en->threads - 1 worker threads. */
int trainer_open(Trainer *t, Engine *en, Err *e);
void trainer_close(Trainer *t);
/* Makes the steps data-parallel over d's ranks (every rank runs
   en->threads threads; steps of at most `batch` images). */
int trainer_distribute(Trainer *t, Dist *d, int batch, Err *e);

/* One optimizer step on n samples (x filled by t->prepare when set): x [n][in_size], target
   [n][out_size], weight [n] (NULL: all 1). Image i's dropout draws from key + i. Writes the forward
   pass's outputs to y [n][out_size] when y is not NULL. Returns sum_i weight_i * loss_i and stores
   sum_i weight_i in *weight_sum. */
double trainer_step(Trainer *t, const float *x, const float *target, const float *weight, int n,
                    uint64_t key, float *y, double *weight_sum);

/* Training or test data shaped for a network's loss. */
typedef struct TrainSet {
  int n;                 /* samples */
  long image_size;       /* bytes (= floats) per image: H*W*C */
  const uint8_t *images; /* [n][image_size], borrowed from the IdxImages */
  int k;                 /* outputs per sample */
  float *target;         /* [n][k]: one-hot rows for class labels, 0/1 rows as given */
  int *label;            /* [n]: the class, or -1 for a multi-label row */
  float *weight;         /* [n] class weights, or NULL (all 1) */
  double *class_weight;  /* [k] the weight of each class, or NULL */
} TrainSet;

/* Checks that the images fit the network's input and the labels its loss and
   output, and builds the targets. With `class_weights`, also the per-sample
   weights from the config (balanced: n / (classes * count of the class)).
   `what` names the data in messages (a path). */
int trainset_make(TrainSet *s, const Net *net, const IdxImages *im, const IdxLabels *lb,
                  const char *what, int class_weights, Err *e);
void trainset_free(TrainSet *s);

/* label_smoothing F for the cross-entropy losses (nothing for the others or
   F = 0): each target row t becomes (1 - F) t + F / K. With class weights,
   sample i's loss is weight_i * (row . -log p), so that it adds up to
   PyTorch's CrossEntropyLoss(weight, label_smoothing) numerator
   (1 - F) w_y (-log p_y) + F / K sum_c w_c (-log p_c), its row becomes
   (1 - F) onehot + F / K * w_c / w_y; a sample of weight 0 stays out. */
void trainset_smooth(TrainSet *s, Loss loss, double smoothing);

/* The runtime's random numbers: xoshiro256** seeded through splitmix64.
   One generator for shuffling (train_order) and augmentation (augment.c). */
typedef struct TrainRng {
  uint64_t s[4];
} TrainRng;

/* splitmix64's output for *state, advancing it: also a good 64-bit mix of a
   key into another. */
uint64_t train_splitmix64(uint64_t *state);
/* The four words of state from four splitmix64 outputs of `seed`. */
void train_rng_seed(TrainRng *r, uint64_t seed);
uint64_t train_rng_next(TrainRng *r);
/* Uniform in [0, bound), bound >= 1, free of modulo bias. */
uint64_t train_rng_below(TrainRng *r, uint64_t bound);
/* Uniform in [0, 1) with 53 random bits. */
double train_rng_uniform(TrainRng *r);

/* Epoch `epoch`'s order of n samples: a Fisher-Yates shuffle driven by
   xoshiro256** seeded from (seed, epoch) through splitmix64. */
void train_order(uint64_t seed, int epoch, int *order, int n);
/* The learning rate of optimizer step `step` (0, 1, ...) of a run of
   `epochs` epochs of `per_epoch` steps each, as tc's schedule says
   (docs/language.md, Training settings): the first warmup * per_epoch steps
   ramp up as lr * (step + 1) / that, then the schedule runs over the rest,
   its epochs and steps counted from the warmup's end. */
double train_lr(const TrainConfig *tc, uint64_t step, long per_epoch, int epochs);

/* The dropout key of optimizer step `step` (images use key + i). */
uint64_t train_key(uint64_t seed, uint64_t step);

/* One sample's loss from the network's outputs y (after the last
   activation), as docs/language.md, Numerics, defines it. */
double train_loss(Loss loss, const float *y, const float *target, int k);
/* One sample's accuracy in [0, 1]: the first largest output is the label;
   for binary cross-entropy, the fraction of outputs on the right side of 0.5. */
double train_accuracy(Loss loss, const float *y, const float *target, int label, int k);

#endif
