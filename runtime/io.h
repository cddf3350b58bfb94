/*
 * io.h: every libc file call checked in one place. Writes are atomic: a
 * temporary file beside the target, fsync, then rename, so a crash or a
 * failed write never leaves a half-written output.
 */
#ifndef CNNGEN_IO_H
#define CNNGEN_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "err.h"

/* How much a reader takes of a file (after gunzipping). */
typedef struct IoLimit {
  size_t max;       /* bytes at most, whatever the data says; 0: no maximum */
  const char *what; /* "a network file": for the message */
  /* Optional: the size the file declares, judged from its first n bytes
     (all of them when it is shorter): 1 with *size set; 0 while n is too
     short to tell; -1 when the data is not of this format (reading stops
     and the caller's parser, given what was read, says what is wrong). */
  int (*declared)(const unsigned char *head, size_t n, size_t *size);
  bool plain; /* the bytes as they are, never gunzipped (raw floats may
                 begin with the gzip magic by chance) */
} IoLimit;

/* Reads a whole file, gunzipping gzip data, and refuses more than `lim`
   allows, naming the file. Returns a malloc'd buffer with a NUL after the
   data, or NULL. */
void *io_read_capped(const char *path, const IoLimit *lim, size_t *len, Err *e);
/* The same without a limit: for files the program itself wrote (tests). */
void *io_read_file(const char *path, size_t *len, Err *e);

typedef struct AtomicFile {
  FILE *f;    /* write here */
  char *path; /* the target */
  char *tmp;  /* the temporary beside it */
} AtomicFile;

/* Creates DIR/.BASE.PID.XXXXXX beside the target (PID: this process's), so a
   later run can tell a temporary whose writer was killed (io_check_outputs
   removes those) from one still being written. */
int atomic_open(AtomicFile *af, const char *path, Err *e);
/* Flushes, fsyncs and renames over the target; on any failure the target is
   untouched and the temporary removed. */
int atomic_commit(AtomicFile *af, Err *e);
void atomic_abort(AtomicFile *af);
/* Whole buffer at once. */
int io_write_atomic(const char *path, const void *data, size_t len, Err *e);

/* A file a command reads or writes, and the words that name it in messages
   ("-o", "--checkpoint", "the network file"). */
typedef struct IoPath {
  const char *what;
  const char *path;
} IoPath;

/* Before a command does any work: refuses an output that exists and is not
   a regular file (a device, a FIFO, a directory), that is one of the inputs
   (the same file by device and inode, or by resolved path where it does not
   exist yet), or that another output names too; the message names the
   option and the path. Then removes the temporaries that atomic_open left
   beside each output in runs that were killed (their process is gone). */
int io_check_outputs(const IoPath *out, int nout, const IoPath *in, int nin, Err *e);

/* 64-bit FNV-1a of n bytes, continuing from h (IO_HASH_START to begin). */
#define IO_HASH_START 0xcbf29ce484222325ULL
uint64_t io_hash(uint64_t h, const void *data, size_t n);

#endif
