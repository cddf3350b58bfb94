/*
 * io.h: every libc file call checked in one place. Writes are atomic: a
 * temporary file beside the target, fsync, then rename, so a crash or a
 * failed write never leaves a half-written output.
 */
#ifndef CNNGEN_IO_H
#define CNNGEN_IO_H

#include <stdio.h>
#include <stddef.h>

#include "err.h"

/* Reads a whole file (transparently gunzipping when it starts with the gzip
   magic). Returns a malloc'd buffer with a NUL after the data, or NULL. */
void *io_read_file(const char *path, size_t *len, Err *e);
/* The same without the gunzipping: the bytes as they are (for raw data
   that may begin with the gzip magic by chance). */
void *io_read_raw(const char *path, size_t *len, Err *e);

typedef struct AtomicFile {
  FILE *f;        /* write here */
  char *path;     /* the target */
  char *tmp;      /* the temporary beside it */
} AtomicFile;

int atomic_open(AtomicFile *af, const char *path, Err *e);
/* Flushes, fsyncs and renames over the target; on any failure the target is
   untouched and the temporary removed. */
int atomic_commit(AtomicFile *af, Err *e);
void atomic_abort(AtomicFile *af);
/* Whole buffer at once. */
int io_write_atomic(const char *path, const void *data, size_t len, Err *e);

#endif
