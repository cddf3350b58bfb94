/*
 * folder.c: an image folder's listing and its decoding.
 *
 * The listing is sorted (strcmp) so that the order of images, and with it a
 * training run, depends on the names alone, not on the file system: the
 * images in the order of their file names, then of their classes. So a
 * folder written from IDX files with each image named by its index
 * (00000.png, ...) lists the images in the IDX files' order, and training
 * on it is the same, bit for bit, as training on the IDX files. Hidden
 * entries (a leading '.') are skipped, and so are plain files beside the
 * class folders and folders inside them; every other file in a class folder
 * must be an image.
 *
 * The decode runs on `threads` POSIX threads that take the next image from
 * a shared counter; each writes its image's bytes into its own slot of the
 * one u8 array, so the result does not depend on the thread count. After a
 * failure the threads stop taking images past it, but finish those before
 * it, so the error reported is that of the first bad file in the listing.
 */
#include "folder.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "image.h"

/* dir/name, malloc'd. */
static char *join(const char *dir, const char *name) {
  size_t n = strlen(dir) + strlen(name) + 2;
  char *s = malloc(n);
  if (s)
    snprintf(s, n, "%s/%s", dir, name);
  return s;
}

static int by_name(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static void free_names(char **names, int n) {
  for (int i = 0; i < n; i++)
    free(names[i]);
  free(names);
}

/* The sorted names of dir's visible entries that are directories (dirs) or
   regular files (!dirs), following links. -1 with e on failure. */
static int list(const char *dir, bool dirs, char ***out, int *count, Err *e) {
  DIR *d = opendir(dir);
  if (!d)
    return err_set(e, dir, "cannot open folder: %s", strerror(errno));
  char **names = NULL;
  int n = 0, cap = 0, rc = 0;
  for (struct dirent *ent; (ent = readdir(d));) {
    if (ent->d_name[0] == '.')
      continue;
    char *path = join(dir, ent->d_name);
    struct stat st;
    bool keep = path && stat(path, &st) == 0 && (dirs ? S_ISDIR(st.st_mode) : S_ISREG(st.st_mode));
    free(path);
    if (!keep)
      continue;
    if (n == cap) {
      cap = cap ? 2 * cap : 64;
      char **grown = realloc(names, (size_t)cap * sizeof *names);
      if (!grown) {
        rc = -1;
        break;
      }
      names = grown;
    }
    if (!(names[n] = strdup(ent->d_name))) {
      rc = -1;
      break;
    }
    n++;
  }
  closedir(d);
  if (rc < 0) {
    free_names(names, n);
    e->internal = 1;
    return err_set(e, dir, "out of memory listing the folder");
  }
  if (n)
    qsort(names, (size_t)n, sizeof *names, by_name);
  *out = names;
  *count = n;
  return 0;
}

bool folder_is(const char *dir) {
  char *train = join(dir, "train");
  struct stat st;
  bool is = train && stat(train, &st) == 0 && S_ISDIR(st.st_mode);
  free(train);
  return is;
}

void folder_close(ImageFolder *f) {
  free_names(f->classes, f->nclasses);
  free(f->dir);
  memset(f, 0, sizeof *f);
}

int folder_open(ImageFolder *f, const char *dir, Err *e) {
  memset(f, 0, sizeof *f);
  char *train = join(dir, "train");
  f->dir = strdup(dir);
  if (!train || !f->dir) {
    free(train);
    e->internal = 1;
    return err_set(e, dir, "out of memory");
  }
  int rc = list(train, true, &f->classes, &f->nclasses, e);
  if (rc == 0 && f->nclasses == 0)
    rc = err_set(e, train,
                 "no class folders (an image folder holds train/CLASS/* and test/CLASS/*)");
  if (rc == 0 && f->nclasses > FOLDER_MAX_CLASSES)
    rc = err_set(e, train, "%d class folders, more than the %d cnngen takes", f->nclasses,
                 FOLDER_MAX_CLASSES);
  free(train);
  if (rc < 0)
    folder_close(f);
  return rc;
}

/* ---- decoding ---- */

typedef struct Job {
  char **paths; /* [n] */
  int n, h, w, c;
  uint8_t *out; /* [n][h][w][c] */
  atomic_int next;
  atomic_int first_bad; /* the lowest index that failed so far; n: none */
  pthread_mutex_t lock;
  Err err; /* first_bad's */
} Job;

static void *decode(void *arg) {
  Job *j = arg;
  size_t size = (size_t)j->h * (size_t)j->w * (size_t)j->c;
  for (;;) {
    int i = atomic_fetch_add(&j->next, 1);
    if (i >= j->n || i > atomic_load(&j->first_bad))
      break;
    Image img;
    Err e = {0};
    int rc = image_read(j->paths[i], &img, &e);
    if (rc == 0 && image_fit(&img, j->h, j->w, j->c) < 0) {
      e.internal = 1;
      rc = err_set(&e, j->paths[i], "out of memory converting the image");
    }
    if (rc == 0) {
      memcpy(j->out + (size_t)i * size, img.data, size);
      image_free(&img);
      continue;
    }
    pthread_mutex_lock(&j->lock);
    if (i < atomic_load(&j->first_bad)) {
      atomic_store(&j->first_bad, i);
      j->err = e;
    }
    pthread_mutex_unlock(&j->lock);
  }
  return NULL;
}

/* Runs the decode on `threads` threads (this one among them). */
static int decode_all(Job *j, int threads, Err *e) {
  atomic_init(&j->next, 0);
  atomic_init(&j->first_bad, j->n);
  pthread_mutex_init(&j->lock, NULL);
  if (threads > j->n)
    threads = j->n > 0 ? j->n : 1;
  pthread_t *tid = calloc((size_t)threads, sizeof *tid);
  int started = 0;
  for (int t = 1; tid && t < threads; t++, started++)
    if (pthread_create(&tid[t], NULL, decode, j) != 0)
      break; /* fewer threads: the others take their share */
  decode(j);
  for (int t = 1; t <= started; t++)
    pthread_join(tid[t], NULL);
  free(tid);
  pthread_mutex_destroy(&j->lock);
  if (atomic_load(&j->first_bad) < j->n) {
    *e = j->err;
    return -1;
  }
  return 0;
}

/* The listing's order: by file name, then class. */
typedef struct Entry {
  const char *base; /* the file name in its class folder */
  char *path;
  uint8_t label;
} Entry;

static int by_file_name(const void *a, const void *b) {
  const Entry *x = a, *y = b;
  int d = strcmp(x->base, y->base);
  return d ? d : (int)x->label - (int)y->label;
}

static int sort_listing(char **paths, uint8_t *labels, int n) {
  Entry *e = malloc((size_t)(n ? n : 1) * sizeof *e);
  if (!e)
    return -1;
  for (int i = 0; i < n; i++)
    e[i] = (Entry){strrchr(paths[i], '/') + 1, paths[i], labels[i]};
  qsort(e, (size_t)n, sizeof *e, by_file_name);
  for (int i = 0; i < n; i++) {
    paths[i] = e[i].path;
    labels[i] = e[i].label;
  }
  free(e);
  return 0;
}

/* The index of `name` among f's classes, or -1. */
static int class_index(const ImageFolder *f, const char *name) {
  char **hit = bsearch(&name, f->classes, (size_t)f->nclasses, sizeof *f->classes, by_name);
  return hit ? (int)(hit - f->classes) : -1;
}

/* "a, b, c" or "a, b, ... (12 in all)" */
static void class_list(const ImageFolder *f, char *buf, size_t n) {
  size_t k = 0;
  buf[0] = 0;
  for (int i = 0; i < f->nclasses && k + 40 < n; i++)
    k += (size_t)snprintf(buf + k, n - k, "%s%.30s", i ? ", " : "", f->classes[i]);
  if (k + 40 >= n)
    snprintf(buf + k, n - k, ", ... (%d in all)", f->nclasses);
}

int folder_load(const ImageFolder *f, const char *which, int h, int w, int c, int threads,
                IdxImages *im, IdxLabels *lb, Err *e) {
  memset(im, 0, sizeof *im);
  memset(lb, 0, sizeof *lb);
  char *split = join(f->dir, which), **sub = NULL, **paths = NULL;
  int nsub = 0, n = 0, cap = 0, rc = -1;
  uint8_t *labels = NULL;
  if (!split)
    goto oom;
  struct stat st;
  if (stat(split, &st) != 0 || !S_ISDIR(st.st_mode)) {
    err_set(e, split, "no such folder (an image folder holds train/CLASS/* and test/CLASS/*)");
    goto done;
  }
  if (list(split, true, &sub, &nsub, e) < 0)
    goto done;
  if (nsub == 0) {
    err_set(e, split, "no class folders (an image folder holds train/CLASS/* and test/CLASS/*)");
    goto done;
  }
  for (int s = 0; s < nsub; s++) {
    int k = class_index(f, sub[s]);
    if (k < 0) {
      char have[512];
      class_list(f, have, sizeof have);
      err_set(e, split,
              "class '%s' is not among the training classes (%s/train has %s; the classes "
              "come from train's folders)",
              sub[s], f->dir, have);
      goto done;
    }
    char *cdir = join(split, sub[s]), **files = NULL;
    int nfiles = 0;
    if (!cdir || list(cdir, false, &files, &nfiles, e) < 0) {
      free(cdir);
      if (!cdir)
        goto oom;
      goto done;
    }
    if (nfiles == 0) {
      err_set(e, cdir, "empty class folder: no image files (remove it or add images)");
      free(cdir);
      free_names(files, nfiles);
      goto done;
    }
    if (n + nfiles > cap) {
      cap = 2 * (n + nfiles);
      char **grown = realloc(paths, (size_t)cap * sizeof *paths);
      uint8_t *lgrown = grown ? realloc(labels, (size_t)cap) : NULL;
      if (grown)
        paths = grown;
      if (lgrown)
        labels = lgrown;
      if (!grown || !lgrown) {
        free(cdir);
        free_names(files, nfiles);
        goto oom;
      }
    }
    for (int i = 0; i < nfiles; i++) {
      labels[n] = (uint8_t)k;
      if (!(paths[n] = join(cdir, files[i]))) {
        free(cdir);
        free_names(files, nfiles);
        goto oom;
      }
      n++;
    }
    free(cdir);
    free_names(files, nfiles);
  }
  if (sort_listing(paths, labels, n) < 0)
    goto oom;
  size_t size = (size_t)h * (size_t)w * (size_t)c;
  *im = (IdxImages){.n = n, .h = h, .w = w, .c = c, .data = malloc(size * (size_t)n)};
  if (!im->data)
    goto oom;
  Job job = {.paths = paths, .n = n, .h = h, .w = w, .c = c, .out = im->data};
  if (decode_all(&job, threads, e) < 0) {
    idx_images_free(im);
    goto done;
  }
  *lb = (IdxLabels){.n = n, .k = 0, .data = labels};
  labels = NULL;
  rc = 0;
  goto done;
oom:
  e->internal = 1;
  err_set(e, f->dir, "out of memory reading the image folder");
done:
  free(split);
  free_names(sub, nsub);
  free_names(paths, n);
  free(labels);
  return rc;
}
