/*
 * trainlog.c: writing and reading back the --log CSV.
 *
 * A log's header is one of `headers` (the columns by name); each row has a
 * field per column. The optional columns (lr, val_loss, val_accuracy) write
 * NaN as an empty field and read an empty field as NaN.
 */
#include "trainlog.h"

#include <assert.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io.h"

/* With a validation set, without, and from before the lr column. */
static const char *const headers[] = {
    "epoch,loss,accuracy,val_loss,val_accuracy,test_loss,test_accuracy,seconds,lr",
    "epoch,loss,accuracy,test_loss,test_accuracy,seconds,lr",
    "epoch,loss,accuracy,test_loss,test_accuracy,seconds",
};
enum { HEADER_VAL, HEADER_PLAIN, HEADER_OLD, MAX_COLUMNS = 9 };

static const struct {
  const char *name;
  size_t offset; /* of a double in EpochStats; epoch is the int */
  bool optional;
} columns[] = {
    {"epoch", 0, false},
    {"loss", offsetof(EpochStats, loss), false},
    {"accuracy", offsetof(EpochStats, accuracy), false},
    {"val_loss", offsetof(EpochStats, val_loss), true},
    {"val_accuracy", offsetof(EpochStats, val_accuracy), true},
    {"test_loss", offsetof(EpochStats, test_loss), false},
    {"test_accuracy", offsetof(EpochStats, test_accuracy), false},
    {"seconds", offsetof(EpochStats, seconds), false},
    {"lr", offsetof(EpochStats, lr), true},
};

/* The columns of header h, as indices into `columns`; returns how many. */
static int header_columns(int h, int *out) {
  char names[128];
  snprintf(names, sizeof names, "%s", headers[h]);
  int n = 0;
  for (char *save, *name = strtok_r(names, ",", &save); name; name = strtok_r(NULL, ",", &save))
    for (int c = 0; c < (int)(sizeof columns / sizeof columns[0]); c++)
      if (!strcmp(columns[c].name, name))
        out[n++] = c;
  return n;
}

static double *field(EpochStats *s, int c) {
  return (double *)((char *)s + columns[c].offset);
}

int trainlog_write(const char *path, const EpochStats *rows, int n, bool validation, Err *e) {
  AtomicFile af;
  if (atomic_open(&af, path, e) < 0)
    return -1;
  int h = validation ? HEADER_VAL : HEADER_PLAIN, col[MAX_COLUMNS];
  int ncol = header_columns(h, col);
  fprintf(af.f, "%s\n", headers[h]);
  for (int i = 0; i < n; i++) {
    EpochStats s = rows[i];
    fprintf(af.f, "%d", s.epoch);
    for (int k = 1; k < ncol; k++) {
      double v = *field(&s, col[k]);
      fputc(',', af.f);
      if (!columns[col[k]].optional)
        fprintf(af.f, "%.6f", v);
      else if (!isnan(v))
        fprintf(af.f, columns[col[k]].offset == offsetof(EpochStats, lr) ? "%g" : "%.6f", v);
    }
    fputc('\n', af.f);
  }
  return atomic_commit(&af, e);
}

/* One row of the log's columns into s; false if it is not one. */
static bool parse_row(char *line, const int *col, int ncol, EpochStats *s) {
  *s = (EpochStats){.lr = NAN, .val_loss = NAN, .val_accuracy = NAN};
  char *p = line;
  for (int k = 0; k < ncol; k++) {
    if (k > 0 && *p++ != ',')
      return false;
    if (k == 0) {
      char *end;
      long v = strtol(p, &end, 10);
      if (end == p || v < -2147483647L || v > 2147483647L)
        return false;
      s->epoch = (int)v;
      p = end;
      continue;
    }
    if ((*p == ',' || !*p) && columns[col[k]].optional)
      continue; /* empty: unknown */
    char *end;
    *field(s, col[k]) = strtod(p, &end);
    if (end == p)
      return false;
    p = end;
  }
  return !*p;
}

int trainlog_read(const char *path, int max_epoch, EpochStats *rows, int *n, int cap, Err *e) {
  if (access(path, F_OK) != 0)
    return 0;
  size_t len;
  static const IoLimit limit = {.max = (size_t)64 << 20, .what = "a training log (at most 64 MB)"};
  char *text = io_read_capped(path, &limit, &len, e);
  if (!text)
    return -1;
  int rc = 0, lineno = 1, h = -1, col[MAX_COLUMNS], ncol = 0;
  char *line = text, *next;
  for (; line && *line; line = next, lineno++) {
    next = strchr(line, '\n');
    if (next)
      *next++ = 0;
    size_t width = strlen(line);
    if (width && line[width - 1] == '\r')
      line[--width] = 0;
    if (lineno == 1) {
      for (int i = 0; i < (int)(sizeof headers / sizeof headers[0]); i++)
        if (!strcmp(line, headers[i]))
          h = i;
      if (h < 0) {
        rc = err_set(e, path,
                     "not a training log: its first line is not '%s' (pass another --log or "
                     "remove the file)",
                     headers[HEADER_PLAIN]);
        break;
      }
      ncol = header_columns(h, col);
      continue;
    }
    EpochStats s;
    if (!parse_row(line, col, ncol, &s)) {
      rc = err_set(e, path,
                   "line %d is not a row of numbers like '%s' (pass another --log or remove "
                   "the file)",
                   lineno, headers[h]);
      break;
    }
    if (s.epoch <= (*n ? rows[*n - 1].epoch : 0) || s.epoch > max_epoch)
      continue; /* out of order, or past the checkpoint: that run's later epochs */
    assert(*n < cap);
    rows[(*n)++] = s;
  }
  free(text);
  return rc;
}
