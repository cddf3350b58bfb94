/*
 * trainlog.c: writing and reading back the --log CSV.
 */
#include "trainlog.h"

#include <assert.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io.h"

static const char log_header[] = "epoch,loss,accuracy,test_loss,test_accuracy,seconds,lr";
static const char log_header_old[] = "epoch,loss,accuracy,test_loss,test_accuracy,seconds";

int trainlog_write(const char *path, const EpochStats *rows, int n, Err *e) {
  AtomicFile af;
  if (atomic_open(&af, path, e) < 0)
    return -1;
  fprintf(af.f, "%s\n", log_header);
  for (int i = 0; i < n; i++) {
    const EpochStats *s = &rows[i];
    fprintf(af.f, "%d,%.6f,%.6f,%.6f,%.6f,%.6f,", s->epoch, s->loss, s->accuracy, s->test_loss,
            s->test_accuracy, s->seconds);
    if (!isnan(s->lr))
      fprintf(af.f, "%g", s->lr);
    fputc('\n', af.f);
  }
  return atomic_commit(&af, e);
}

int trainlog_read(const char *path, int max_epoch, EpochStats *rows, int *n, int cap, Err *e) {
  if (access(path, F_OK) != 0)
    return 0;
  size_t len;
  static const IoLimit limit = {.max = (size_t)64 << 20, .what = "a training log (at most 64 MB)"};
  char *text = io_read_capped(path, &limit, &len, e);
  if (!text)
    return -1;
  int rc = 0, lineno = 1;
  bool has_lr = true;
  char *line = text, *next;
  for (; line && *line; line = next, lineno++) {
    next = strchr(line, '\n');
    if (next)
      *next++ = 0;
    size_t width = strlen(line);
    if (width && line[width - 1] == '\r')
      line[--width] = 0;
    if (lineno == 1) {
      has_lr = strcmp(line, log_header_old) != 0;
      if (has_lr && strcmp(line, log_header)) {
        rc = err_set(e, path,
                     "not a training log: its first line is not '%s' (pass another --log or "
                     "remove the file)",
                     log_header);
        break;
      }
      continue;
    }
    EpochStats s = {.lr = NAN};
    int used = -1;
    char *end = NULL;
    if (sscanf(line, "%d,%lf,%lf,%lf,%lf,%lf%n", &s.epoch, &s.loss, &s.accuracy, &s.test_loss,
               &s.test_accuracy, &s.seconds, &used) == 6 &&
        has_lr && line[used] == ',' && line[used + 1]) /* the lr, when the row has one */
      s.lr = strtod(line + used + 1, &end);
    if (used < 0 || (!has_lr && used != (int)width) ||
        (has_lr && (line[used] != ',' || (end && *end)))) {
      rc = err_set(e, path,
                   "line %d is not a row of numbers like '%s' (pass another --log or remove "
                   "the file)",
                   lineno, has_lr ? log_header : log_header_old);
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
