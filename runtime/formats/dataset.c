/*
 * dataset.c: --data DIR, whichever kind it is.
 */
#include "dataset.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "folder.h"
#include "io.h"

void classes_free(char **names, int n) {
  for (int i = 0; i < n; i++)
    free(names[i]);
  free(names);
}

int classes_read(const char *path, char ***names, int *count, Err *e) {
  static const IoLimit limit = {.max = (size_t)1 << 20, .what = "a classes.txt (at most 1 MB)"};
  size_t len;
  char *text = io_read_capped(path, &limit, &len, e);
  if (!text)
    return -1;
  int n = 0, rc = 0;
  char **out = calloc(len + 2, sizeof *out); /* at most one name per byte */
  if (!out) {
    free(text);
    e->internal = 1;
    return err_set(e, path, "out of memory");
  }
  if (memchr(text, 0, len))
    rc = err_set(e, path, "holds a NUL byte: not a text file of class names");
  char *line = text, *next;
  for (int lineno = 1; rc == 0 && line < text + len; line = next, lineno++) {
    next = strchr(line, '\n');
    if (next)
      *next++ = 0;
    else
      next = text + len;
    size_t width = strlen(line);
    if (width && line[width - 1] == '\r')
      line[--width] = 0;
    if (width == 0)
      rc = err_set(e, path, "line %d is empty (one class name per line)", lineno);
    else if (!(out[n++] = strdup(line))) {
      e->internal = 1;
      rc = err_set(e, path, "out of memory");
    }
  }
  if (rc == 0 && n == 0)
    rc = err_set(e, path, "holds no class names (one per line)");
  free(text);
  if (rc < 0) {
    classes_free(out, n);
    return -1;
  }
  *names = out;
  *count = n;
  return 0;
}

void dataset_free(Dataset *d) {
  idx_images_free(&d->train_im);
  idx_images_free(&d->test_im);
  idx_labels_free(&d->train_lb);
  idx_labels_free(&d->test_lb);
  classes_free(d->classes, d->nclasses);
  free(d->classes_path);
  memset(d, 0, sizeof *d);
}

static char *text_of(const char *fmt, const char *dir) {
  size_t n = strlen(fmt) + strlen(dir) + 1;
  char *s = malloc(n);
  if (s)
    snprintf(s, n, fmt, dir);
  return s;
}

static int load_folder(Dataset *d, const char *dir, bool train, int h, int w, int c, int threads,
                       Err *e) {
  ImageFolder f;
  if (folder_open(&f, dir, e) < 0)
    return -1;
  int rc = 0;
  if (train)
    rc = folder_load(&f, "train", h, w, c, threads, &d->train_im, &d->train_lb, e);
  if (rc == 0)
    rc = folder_load(&f, "test", h, w, c, threads, &d->test_im, &d->test_lb, e);
  if (rc == 0) {
    d->classes = f.classes;
    d->nclasses = f.nclasses;
    f.classes = NULL;
    f.nclasses = 0;
    d->classes_what = "class folders";
    if (!(d->classes_path = text_of("%s/train", dir))) {
      e->internal = 1;
      rc = err_set(e, dir, "out of memory");
    }
  }
  folder_close(&f);
  return rc;
}

static int load_idx(Dataset *d, const char *dir, bool train, Err *e) {
  if ((train && idx_load_split(dir, "train", &d->train_im, &d->train_lb, e) < 0) ||
      idx_load_split(dir, "t10k", &d->test_im, &d->test_lb, e) < 0)
    return -1;
  char *path = text_of("%s/classes.txt", dir);
  if (!path) {
    e->internal = 1;
    return err_set(e, dir, "out of memory");
  }
  int rc = 0;
  if (access(path, F_OK) == 0) {
    rc = classes_read(path, &d->classes, &d->nclasses, e);
    d->classes_path = path;
    d->classes_what = "lines";
  } else {
    free(path);
  }
  return rc;
}

int dataset_load(Dataset *d, const char *dir, bool train, int h, int w, int c, int threads,
                 Err *e) {
  memset(d, 0, sizeof *d);
  d->folder = folder_is(dir);
  d->test_name = d->folder ? "test" : "t10k";
  int rc = d->folder ? load_folder(d, dir, train, h, w, c, threads, e) : load_idx(d, dir, train, e);
  if (rc < 0)
    dataset_free(d);
  return rc;
}
