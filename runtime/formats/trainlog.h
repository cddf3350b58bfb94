/*
 * trainlog.h: the training log, `cnngen train --log FILE.csv`: a header line
 * and one row per epoch, epoch,loss,accuracy,test_loss,test_accuracy,seconds,lr;
 * a run with a validation set adds val_loss,val_accuracy after accuracy (the
 * train line's order). Logs from before the lr column (their header without
 * ",lr") are read back with an unknown lr and rewritten with the new header.
 */
#ifndef CNNGEN_TRAINLOG_H
#define CNNGEN_TRAINLOG_H

#include <stdbool.h>

#include "err.h"

typedef struct EpochStats {
  int epoch; /* 1, 2, ... */
  double loss, accuracy, test_loss, test_accuracy, seconds;
  double lr; /* the learning rate; NaN where a log from before the column is read back */
  double val_loss, val_accuracy; /* NaN: no validation set (or none in the log read back) */
} EpochStats;

/* Writes rows[0..n) to path, atomically; with the validation columns when
   `validation` (an empty field where a row's value is NaN). */
int trainlog_write(const char *path, const EpochStats *rows, int n, bool validation, Err *e);

/* Appends to rows (*n of cap used) the rows of epochs 1 .. max_epoch of the
   log at path, in order: rows out of order or past max_epoch are skipped, a
   log cut short gives what it has, a missing file none. Columns the log lacks
   (lr, val_loss, val_accuracy) and empty fields in them read as NaN. */
int trainlog_read(const char *path, int max_epoch, EpochStats *rows, int *n, int cap, Err *e);

#endif
