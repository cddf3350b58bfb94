/*
 * trainlog.h: the training log, `cnngen train --log FILE.csv`: a header line
 * and one row per epoch, epoch,loss,accuracy,test_loss,test_accuracy,seconds,lr.
 * Logs from before the lr column (its header without ",lr") are read back
 * with an unknown lr and rewritten with the new header.
 */
#ifndef CNNGEN_TRAINLOG_H
#define CNNGEN_TRAINLOG_H

#include "err.h"

typedef struct EpochStats {
  int epoch; /* 1, 2, ... */
  double loss, accuracy, test_loss, test_accuracy, seconds;
  double lr; /* the learning rate; NaN where a log from before the column is read back */
} EpochStats;

/* Writes rows[0..n) to path, atomically. */
int trainlog_write(const char *path, const EpochStats *rows, int n, Err *e);

/* Appends to rows (*n of cap used) the rows of epochs 1 .. max_epoch of the
   log at path, in order: rows out of order or past max_epoch are skipped, a
   log cut short gives what it has, a missing file none. */
int trainlog_read(const char *path, int max_epoch, EpochStats *rows, int *n, int cap, Err *e);

#endif
