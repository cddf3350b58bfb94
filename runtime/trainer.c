/*
 * trainer.c: threaded optimizer steps over the generated training code, and
 * the data preparation around them (see trainer.h).
 *
 * A step with T threads: chunk t holds images [t*n/T, (t+1)*n/T). Chunk 0
 * runs on the caller; chunks 1..T-1 on worker threads woken through a
 * generation counter. Each chunk zeroes its own gradients and accumulates
 * into them (after the caller's prepare hook, if any, has filled its
 * images); then the caller adds g1, g2, ... into g0 in that order and runs
 * the update. Losses are summed in double, also in chunk order.
 *
 * Over R ranks the chunks are those of R*T threads, rank r holding chunks
 * r*T .. r*T+T-1; dist_sum adds the gradients over every rank in chunk
 * order, and one allgather brings every rank's chunk losses, output rows and
 * stop request, so every rank sums the same losses in the same order and
 * holds the whole batch's outputs.
 *
 * Batch statistics (batchnorm): the generated code calls reduce() from
 * inside every thread's step, each time with the same count. The threads
 * put their partial sums side by side and meet at a barrier; thread 0 (over
 * MPI: after an allgather of every rank's partials, the one communication
 * in a step besides dist_sum's) adds the partials of every global thread
 * in global thread order, in double; at a second barrier every thread takes
 * the sum. So one process of R*T threads and R ranks of T threads add the
 * same numbers in the same order. A thread with an empty chunk still runs
 * its step (on no images) and so still meets the others.
 */
#include "trainer.h"

#include <float.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct Chunk {
  const float *x, *target, *weight;
  float *y;
  int first, n; /* images [first, first + n) of the step */
  uint64_t key;
  double loss;
} Chunk;

struct TrainerPool {
  pthread_mutex_t mu;
  pthread_cond_t go, done;
  unsigned long generation; /* bumped once per step */
  int pending;              /* workers still running this step */
  bool quit;
  int nthreads; /* workers started (threads 1 .. nthreads) */
  Trainer *t;
  Chunk *chunks; /* [en->threads] */
  pthread_t *tids;
};

typedef struct Worker {
  TrainerPool *pool;
  int index;
} Worker;

static void *alloc_aligned(size_t bytes) {
  size_t rounded = (bytes + 63) / 64 * 64;
  void *p = aligned_alloc(64, rounded ? rounded : 64);
  if (p)
    memset(p, 0, rounded ? rounded : 64);
  return p;
}

struct TrainerBatch {
  pthread_barrier_t meet;
  int threads, width; /* doubles a thread's partials may take */
  double *parts;      /* [threads][width]: this rank's */
  double *all;        /* [ranks][threads][width]: every rank's (MPI) */
  double *sum;        /* [width] */
  struct BatchCtx {
    Trainer *t;
    int index;
  } *ctx; /* [threads] */
};

/* The generated code's w->reduce (see the top of this file). */
static void reduce(void *ctx, double *v, int n) {
  const struct BatchCtx *c = ctx;
  Trainer *t = c->t;
  TrainerBatch *b = t->batch;
  memcpy(b->parts + (size_t)c->index * (size_t)b->width, v, (size_t)n * sizeof *v);
  pthread_barrier_wait(&b->meet);
  if (c->index == 0) {
    const double *all = b->parts;
    int parts = b->threads;
    if (t->dist && t->dist->size > 1) {
      dist_allgather(t->dist, b->parts, (size_t)b->threads * (size_t)b->width * sizeof *v, b->all);
      all = b->all;
      parts *= t->dist->size;
    }
    for (int j = 0; j < n; j++) {
      double s = all[j];
      for (int g = 1; g < parts; g++)
        s += all[(size_t)g * (size_t)b->width + (size_t)j];
      b->sum[j] = s;
    }
  }
  pthread_barrier_wait(&b->meet);
  memcpy(v, b->sum, (size_t)n * sizeof *v);
}

static void batch_free(Trainer *t) {
  TrainerBatch *b = t->batch;
  if (b) {
    pthread_barrier_destroy(&b->meet);
    free(b->parts);
    free(b->all);
    free(b->sum);
    free(b->ctx);
    free(b);
  }
  if (t->images)
    for (int i = 0; i < t->en->threads; i++)
      free(t->images[i]);
  free(t->images);
  free(t->image_slots);
  t->batch = NULL;
}

/* The widest reduce of the network's layers: 2 * C + 1 doubles. */
static int batch_width(const Net *net) {
  int width = 1;
  for (int i = 0; i < net->nlayers; i++)
    if (op_modules[net->layers[i].op]->batch_stats && 2 * net->layers[i].out.c + 1 > width)
      width = 2 * net->layers[i].out.c + 1;
  return width;
}

static int batch_open(Trainer *t, int ranks) {
  const int threads = t->en->threads;
  TrainerBatch *b = calloc(1, sizeof *b);
  t->images = calloc((size_t)threads, sizeof *t->images);
  t->image_slots = calloc((size_t)threads, sizeof *t->image_slots);
  if (!b || !t->images || !t->image_slots) {
    free(b);
    return -1;
  }
  b->threads = threads;
  b->width = batch_width(t->en->net);
  b->parts = calloc((size_t)threads * (size_t)b->width, sizeof *b->parts);
  b->all = calloc((size_t)ranks * (size_t)threads * (size_t)b->width, sizeof *b->all);
  b->sum = calloc((size_t)b->width, sizeof *b->sum);
  b->ctx = calloc((size_t)threads, sizeof *b->ctx);
  pthread_barrier_init(&b->meet, NULL, (unsigned)threads);
  t->batch = b;
  if (!b->parts || !b->all || !b->sum || !b->ctx)
    return -1;
  for (int i = 0; i < threads; i++)
    b->ctx[i] = (struct BatchCtx){t, i};
  return 0;
}

/* Thread i's buffers for n images, and its w->reduce; only global thread 0
   writes the batch's statistics into its gradients (the sum of every
   thread's holds them once). Returns -1 when out of memory. */
static int batch_step(Trainer *t, int i, int n, int global) {
  if (n > t->image_slots[i]) {
    free(t->images[i]);
    t->image_slots[i] = 0;
    /* zeroed, as the work areas are: a padded input's border stays 0 */
    if (!(t->images[i] = alloc_aligned(t->image_bytes * (size_t)n)))
      return -1;
    t->image_slots[i] = n;
  }
  int all = t->batch->threads * (t->dist ? t->dist->size : 1);
  t->batch_setup(t->en->works[i], t->images[i], t->image_slots[i], all > 1 ? reduce : NULL,
                 &t->batch->ctx[i], global != 0);
  return 0;
}

static void run_chunk(Trainer *t, int index, Chunk *c) {
  t->grads_zero(t->grads[index]);
  if (t->prepare && c->n > 0)
    t->prepare(t->prepare_ctx, index, c->first, c->n);
  c->loss = c->n > 0 || t->batch
                ? t->accumulate_y(t->en->model, t->en->works[index], t->grads[index], c->x,
                                  c->target, c->weight, c->n, c->key, c->y)
                : 0.0;
}

static void *worker_main(void *arg) {
  Worker *w = arg;
  TrainerPool *p = w->pool;
  int index = w->index;
  free(w);
  unsigned long seen = 0;
  pthread_mutex_lock(&p->mu);
  for (;;) {
    while (p->generation == seen && !p->quit)
      pthread_cond_wait(&p->go, &p->mu);
    if (p->quit)
      break;
    seen = p->generation;
    pthread_mutex_unlock(&p->mu);
    run_chunk(p->t, index, &p->chunks[index]);
    pthread_mutex_lock(&p->mu);
    if (--p->pending == 0)
      pthread_cond_signal(&p->done);
  }
  pthread_mutex_unlock(&p->mu);
  return NULL;
}

static void pool_stop(TrainerPool *p) {
  pthread_mutex_lock(&p->mu);
  p->quit = true;
  pthread_cond_broadcast(&p->go);
  pthread_mutex_unlock(&p->mu);
  for (int i = 1; i <= p->nthreads; i++)
    pthread_join(p->tids[i], NULL);
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->go);
  pthread_cond_destroy(&p->done);
  free(p->chunks);
  free(p->tids);
  free(p);
}

static TrainerPool *pool_start(Trainer *t) {
  int threads = t->en->threads;
  TrainerPool *p = calloc(1, sizeof *p);
  if (!p)
    return NULL;
  p->t = t;
  p->chunks = calloc((size_t)threads, sizeof *p->chunks);
  p->tids = calloc((size_t)threads, sizeof *p->tids);
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->go, NULL);
  pthread_cond_init(&p->done, NULL);
  if (!p->chunks || !p->tids) {
    pool_stop(p);
    return NULL;
  }
  /* Workers block SIGINT and SIGTERM, so these reach the thread that runs
     the steps (cmd_train.c stops there) and never two handlers at once. */
  sigset_t stop, old;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, &old);
  for (int i = 1; i < threads; i++) {
    Worker *w = malloc(sizeof *w);
    if (!w)
      break;
    *w = (Worker){p, i};
    if (pthread_create(&p->tids[i], NULL, worker_main, w) != 0) {
      free(w);
      break;
    }
    p->nthreads = i;
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (p->nthreads < threads - 1) {
    pool_stop(p);
    return NULL;
  }
  return p;
}

/* NAME_suffix from the program; copies the bits into *fn (dlsym style). */
static int lookup(Trainer *t, const char *suffix, void *fn, size_t fn_size, Err *e) {
  char name[160];
  snprintf(name, sizeof name, "%s%s", t->en->net->name, suffix);
  void *p = program_symbol(t->en->prog, name);
  if (!p) {
    e->internal = 1;
    return err_set(e, t->en->net->file, "generated code lacks %s (a bug in cnngen)", name);
  }
  memcpy(fn, &p, fn_size);
  return 0;
}

int trainer_open(Trainer *t, Engine *en, Err *e) {
  memset(t, 0, sizeof *t);
  t->en = en;
  t->in_size = shape_size(en->net->input);
  t->out_size = shape_size(en->net->output);
  t->param_count = en->net->param_count;
  size_t (*grads_bytes)(void) = NULL;
  int (*opt_slots)(void) = NULL;
#define LOOKUP(field, suffix)                                                                      \
  if (lookup(t, suffix, &field, sizeof field, e) < 0)                                              \
    goto fail;
  LOOKUP(grads_bytes, "_grads_bytes");
  LOOKUP(opt_slots, "_opt_slots");
  LOOKUP(t->grads_zero, "_grads_zero");
  LOOKUP(t->accumulate_y, "_accumulate_y");
  LOOKUP(t->update, "_update");
  LOOKUP(t->store_opt, "_store_opt");
  LOOKUP(t->load_opt, "_load_opt");
  t->lr = en->net->train.lr;
  t->grads_bytes = grads_bytes();
  t->opt_slots = opt_slots();
  t->grads = calloc((size_t)en->threads, sizeof *t->grads);
  if (!t->grads)
    goto oom;
  for (int i = 0; i < en->threads; i++)
    if (!(t->grads[i] = alloc_aligned(t->grads_bytes)))
      goto oom;
  if (net_has_batch_stats(en->net)) {
    size_t (*image_bytes)(void) = NULL;
    LOOKUP(image_bytes, "_image_bytes");
    LOOKUP(t->batch_setup, "_batch_setup");
    t->image_bytes = image_bytes();
    if (batch_open(t, 1) < 0)
      goto oom;
  }
#undef LOOKUP
  if (en->threads > 1 && !(t->pool = pool_start(t))) {
    e->internal = 1;
    err_set(e, en->net->file, "cannot start %d training threads", en->threads - 1);
    goto fail;
  }
  return 0;
oom:
  e->internal = 1;
  err_set(e, en->net->file, "out of memory for %d gradient buffers of %zu bytes", en->threads,
          t->grads_bytes);
fail:
  trainer_close(t);
  return -1;
}

int trainer_distribute(Trainer *t, Dist *d, int batch, Err *e) {
  if (d->size == 1)
    return 0;
  int threads = t->en->threads;
  t->rec_rows = (batch + d->size - 1) / d->size;
  size_t head = (size_t)(1 + threads) * sizeof(double);
  t->rec_bytes = (head + (size_t)t->rec_rows * (size_t)t->out_size * sizeof(float) + 7) / 8 * 8;
  if (!(t->recs = malloc(t->rec_bytes * (size_t)(d->size + 1)))) {
    e->internal = 1;
    return err_set(e, NULL, "out of memory for %d ranks' step records", d->size);
  }
  t->dist = d;
  if (t->batch) { /* room for every rank's partial sums */
    TrainerBatch *b = t->batch;
    free(b->all);
    if (!(b->all = calloc((size_t)d->size * (size_t)threads * (size_t)b->width, sizeof *b->all))) {
      e->internal = 1;
      return err_set(e, NULL, "out of memory for %d ranks' batch statistics", d->size);
    }
  }
  return 0;
}

void trainer_close(Trainer *t) {
  free(t->recs);
  if (t->pool)
    pool_stop(t->pool);
  batch_free(t);
  if (t->grads)
    for (int i = 0; i < t->en->threads; i++)
      free(t->grads[i]);
  free(t->grads);
  memset(t, 0, sizeof *t);
}

/* After the ranks' chunks ran: every rank's record (its stop request, its
   chunks' losses, its output rows) to every rank; returns the loss summed
   over all chunks in order, sets t->stop, fills the other ranks' rows of y. */
static double gather_step(Trainer *t, const Chunk *chunks, int threads, int n, float *y) {
  Dist *d = t->dist;
  unsigned char *mine = t->recs + t->rec_bytes * (size_t)d->size;
  double head[1 + ENGINE_MAX_THREADS];
  head[0] = t->stop_request ? *t->stop_request : 0;
  for (int i = 0; i < threads; i++)
    head[1 + i] = chunks[i].loss;
  memcpy(mine, head, (size_t)(1 + threads) * sizeof *head);
  float *rows = (float *)(mine + (size_t)(1 + threads) * sizeof(double));
  /* Rank r's rows are its chunks': [n*r/R, n*(r+1)/R). */
  int first = (int)((long)n * d->rank / d->size);
  int count = (int)((long)n * (d->rank + 1) / d->size) - first;
  if (y)
    memcpy(rows, y + (long)first * t->out_size, (size_t)(count * t->out_size) * sizeof *y);
  dist_allgather(d, mine, t->rec_bytes, t->recs);
  double loss = 0;
  t->stop = 0;
  for (int r = 0; r < d->size; r++) {
    const unsigned char *rec = t->recs + t->rec_bytes * (size_t)r;
    memcpy(head, rec, (size_t)(1 + threads) * sizeof *head);
    if ((int)head[0] > t->stop)
      t->stop = (int)head[0];
    for (int i = 0; i < threads; i++)
      loss = r == 0 && i == 0 ? head[1] : loss + head[1 + i];
    first = (int)((long)n * r / d->size);
    count = (int)((long)n * (r + 1) / d->size) - first;
    if (y && r != d->rank)
      memcpy(y + (long)first * t->out_size, rec + (size_t)(1 + threads) * sizeof(double),
             (size_t)(count * t->out_size) * sizeof *y);
  }
  return loss;
}

double trainer_step(Trainer *t, const float *x, const float *target, const float *weight, int n,
                    uint64_t key, float *y, double *weight_sum) {
  int threads = t->pool ? t->en->threads : 1;
  int rank = t->dist ? t->dist->rank : 0, all = threads * (t->dist ? t->dist->size : 1);
  Chunk one, *chunks = t->pool ? t->pool->chunks : &one;
  for (int i = 0; i < threads; i++) {
    int g = rank * threads + i; /* the global thread */
    int first = (int)((long)n * g / all), last = (int)((long)n * (g + 1) / all);
    chunks[i] = (Chunk){
        .x = x + first * t->in_size,
        .target = target + first * t->out_size,
        .weight = weight ? weight + first : NULL,
        .y = y ? y + first * t->out_size : NULL,
        .first = first,
        .n = last - first,
        .key = key + (uint64_t)first,
    };
    if (t->batch && batch_step(t, i, last - first, g) < 0) {
      fputs("cnngen: error: out of memory for the images of a training step\n", stderr);
      exit(2);
    }
  }
  if (t->pool) {
    TrainerPool *p = t->pool;
    pthread_mutex_lock(&p->mu);
    p->pending = threads - 1;
    p->generation++;
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
  }
  run_chunk(t, 0, &chunks[0]);
  if (t->pool) {
    TrainerPool *p = t->pool;
    pthread_mutex_lock(&p->mu);
    while (p->pending > 0)
      pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
  }
  /* Global chunk 0 starts the sum; an empty chunk adds nothing (not even
     its zeros: -0 + 0 is +0). */
  float *parts[ENGINE_MAX_THREADS];
  for (int i = 0; i < threads; i++)
    parts[i] = chunks[i].n > 0 || rank * threads + i == 0 ? (float *)t->grads[i] : NULL;
  dist_sum(t->dist, parts, threads, t->param_count, t->grads[0]);
  double loss;
  if (t->dist) {
    loss = gather_step(t, chunks, threads, n, y);
  } else {
    loss = chunks[0].loss;
    for (int i = 1; i < threads; i++)
      loss += chunks[i].loss;
    t->stop = t->stop_request ? *t->stop_request : 0;
  }
  double wsum = 0;
  if (weight)
    for (int i = 0; i < n; i++)
      wsum += weight[i];
  else
    wsum = n;
  *weight_sum = wsum;
  /* weights summing to 0: no step, but batch statistics move the running
     ones (scale 0), as PyTorch's forward pass does whatever the loss */
  if (wsum > 0 || t->batch)
    t->update(t->en->model, t->grads[0], wsum > 0 ? (float)(1.0 / wsum) : 0.0f, (float)t->lr);
  return loss;
}

/* ---- data ---- */

static int first_max(const float *v, int k) {
  int best = 0;
  for (int j = 1; j < k; j++)
    if (v[j] > v[best])
      best = j;
  return best;
}

static int shape_error(const Net *net, const IdxImages *im, const char *what, Err *e) {
  Shape in = net->input;
  return err_set(e, what,
                 "images are %dx%dx%d but network '%s' takes %dx%dx%d (its input line: %s:%d)",
                 im->h, im->w, im->c, net->name, in.h, in.w, in.c, net->file, net->input_loc.line);
}

static int make_weights(TrainSet *s, const TrainConfig *tc, const char *what, Err *e) {
  if (tc->class_weights == CW_NONE)
    return 0;
  for (int i = 0; i < s->n; i++)
    if (s->label[i] < 0)
      return err_set(e, what,
                     "sample %d has a multi-label row; class_weights needs one class "
                     "per sample",
                     i);
  double *cw = calloc((size_t)s->k, sizeof *cw);
  if (!(s->weight = malloc((size_t)s->n * sizeof *s->weight)) || !cw) {
    free(cw);
    e->internal = 1;
    return err_set(e, what, "out of memory");
  }
  if (tc->class_weights == CW_LIST) {
    if (tc->class_weight_count != s->k) {
      free(cw);
      return err_set(e, what, "class_weights lists %d weights for %d outputs",
                     tc->class_weight_count, s->k);
    }
    for (int c = 0; c < s->k; c++)
      cw[c] = tc->class_weight_list[c];
  } else { /* balanced: n_samples / (n_classes * count_c) */
    long *count = calloc((size_t)s->k, sizeof *count);
    if (!count) {
      free(cw);
      e->internal = 1;
      return err_set(e, what, "out of memory");
    }
    for (int i = 0; i < s->n; i++)
      count[s->label[i]]++;
    for (int c = 0; c < s->k; c++)
      cw[c] = count[c] ? (double)s->n / ((double)s->k * (double)count[c]) : 0.0;
    free(count);
  }
  for (int i = 0; i < s->n; i++)
    s->weight[i] = (float)cw[s->label[i]];
  s->class_weight = cw;
  return 0;
}

int trainset_make(TrainSet *s, const Net *net, const IdxImages *im, const IdxLabels *lb,
                  const char *what, int class_weights, Err *e) {
  memset(s, 0, sizeof *s);
  if (im->h != net->input.h || im->w != net->input.w || im->c != net->input.c)
    return shape_error(net, im, what, e);
  Loss loss = net->train.loss;
  int k = (int)shape_size(net->output);
  if (lb->k > 0 && loss == LOSS_SPARSE_CE)
    return err_set(e, what,
                   "labels are %d-wide 0/1 rows, but sparse_categorical_crossentropy needs one "
                   "class index per image (use categorical_crossentropy or binary_crossentropy)",
                   lb->k);
  if (lb->k > 0 && lb->k != k)
    return err_set(e, what, "label rows have %d columns but network '%s' has %d outputs", lb->k,
                   net->name, k);
  s->n = im->n;
  s->k = k;
  s->image_size = (long)im->h * im->w * im->c;
  s->images = im->data;
  s->target = calloc((size_t)s->n * (size_t)k, sizeof *s->target);
  s->label = malloc((size_t)s->n * sizeof *s->label);
  if (!s->target || !s->label) {
    trainset_free(s);
    e->internal = 1;
    return err_set(e, what, "out of memory for %d targets", im->n);
  }
  for (int i = 0; i < s->n; i++) {
    float *t = s->target + (long)i * k;
    if (lb->k == 0) {
      int c = lb->data[i];
      if (c >= k) {
        trainset_free(s);
        return err_set(e, what, "label %d of image %d is not below the network's %d outputs", c, i,
                       k);
      }
      t[c] = 1.0f;
      s->label[i] = c;
    } else {
      int ones = 0;
      for (int j = 0; j < k; j++) {
        t[j] = lb->data[(long)i * k + j];
        ones += lb->data[(long)i * k + j];
      }
      s->label[i] = ones == 1 ? first_max(t, k) : -1;
    }
  }
  if (class_weights && make_weights(s, &net->train, what, e) < 0) {
    trainset_free(s);
    return -1;
  }
  return 0;
}

void trainset_smooth(TrainSet *s, Loss loss, double smoothing) {
  if (smoothing <= 0 || (loss != LOSS_SPARSE_CE && loss != LOSS_CE))
    return;
  const int k = s->k;
  for (int i = 0; i < s->n; i++) {
    float *t = s->target + (long)i * k;
    const double wy = s->class_weight ? s->class_weight[s->label[i]] : 1.0;
    if (wy <= 0)
      continue; /* weight 0: the sample adds nothing */
    for (int c = 0; c < k; c++) {
      const double wc = s->class_weight ? s->class_weight[c] : 1.0;
      t[c] = (float)((1.0 - smoothing) * t[c] + smoothing / k * wc / wy);
    }
  }
}

void trainset_free(TrainSet *s) {
  free(s->target);
  free(s->label);
  free(s->weight);
  free(s->class_weight);
  memset(s, 0, sizeof *s);
}

uint64_t train_splitmix64(uint64_t *state) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15u);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
  return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) {
  return (x << k) | (x >> (64 - k));
}

void train_rng_seed(TrainRng *r, uint64_t seed) {
  for (int i = 0; i < 4; i++)
    r->s[i] = train_splitmix64(&seed);
}

uint64_t train_rng_next(TrainRng *r) {
  uint64_t *s = r->s, result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return result;
}

/* Rejection keeps it free of modulo bias. */
uint64_t train_rng_below(TrainRng *r, uint64_t bound) {
  uint64_t limit = UINT64_MAX - UINT64_MAX % bound, x;
  do
    x = train_rng_next(r);
  while (x >= limit);
  return x % bound;
}

double train_rng_uniform(TrainRng *r) {
  return (double)(train_rng_next(r) >> 11) * 0x1p-53;
}

void train_order(uint64_t seed, int epoch, int *order, int n) {
  TrainRng r;
  train_rng_seed(&r, seed ^ (0xA0761D6478BD642Fu * (uint64_t)(epoch + 1)));
  for (int i = 0; i < n; i++)
    order[i] = i;
  for (int i = n - 1; i > 0; i--) {
    int j = (int)train_rng_below(&r, (uint64_t)i + 1);
    int tmp = order[i];
    order[i] = order[j];
    order[j] = tmp;
  }
}

double train_lr(const TrainConfig *tc, uint64_t step, long per_epoch, int epochs) {
  const double lr = tc->lr;
  const uint64_t warm = (uint64_t)tc->warmup * (uint64_t)per_epoch;
  if (step < warm)
    return lr * (double)(step + 1) / (double)warm;
  const uint64_t t = step - warm, total = (uint64_t)epochs * (uint64_t)per_epoch;
  switch (tc->schedule) {
  case SCHED_STEP:
    return lr * pow(tc->step_gamma, (double)(t / (uint64_t)per_epoch / (uint64_t)tc->step_every));
  case SCHED_COSINE: {
    if (total <= warm || t >= total - warm) /* past the run's last step (a shorter --epochs) */
      return tc->min_lr;
    const double pi = 3.14159265358979323846;
    return tc->min_lr +
           (lr - tc->min_lr) * (1.0 + cos(pi * (double)t / (double)(total - warm))) / 2.0;
  }
  case SCHED_CONSTANT:
  case SCHED_COUNT:
    break;
  }
  return lr;
}

uint64_t train_key(uint64_t seed, uint64_t step) {
  uint64_t sm = seed ^ (0xE7037ED1A0B428DBu * (step + 1));
  return train_splitmix64(&sm);
}

double train_loss(Loss loss, const float *y, const float *target, int k) {
  double sum = 0;
  switch (loss) {
  case LOSS_SPARSE_CE:
  case LOSS_CE:
    for (int j = 0; j < k; j++)
      if (target[j] != 0)
        sum -= target[j] * log(fmax(y[j], FLT_MIN));
    return sum;
  case LOSS_BCE: /* as PyTorch's BCELoss, which clamps each log at -100 */
    for (int j = 0; j < k; j++)
      sum -= target[j] * fmax(log(y[j]), -100.0) + (1 - target[j]) * fmax(log(1 - y[j]), -100.0);
    return sum / k;
  case LOSS_MSE:
    for (int j = 0; j < k; j++)
      sum += ((double)y[j] - target[j]) * ((double)y[j] - target[j]);
    return sum / k;
  case LOSS_COUNT:
    break;
  }
  return NAN;
}

double train_accuracy(Loss loss, const float *y, const float *target, int label, int k) {
  if (loss == LOSS_BCE) {
    int right = 0;
    for (int j = 0; j < k; j++)
      right += (y[j] >= 0.5f) == (target[j] >= 0.5f);
    return (double)right / k;
  }
  if (label < 0)
    label = first_max(target, k);
  return first_max(y, k) == label;
}
