/*
 * err.h: how the runtime reports user errors. Functions that can fail
 * return -1 (or NULL) and fill an Err; main() prints it as
 *
 *   cnngen: error: PATH: what is wrong (hint)
 *
 * and exits with status 1. Nothing deep in a reader calls exit().
 */
#ifndef CNNGEN_ERR_H
#define CNNGEN_ERR_H

typedef struct Err {
  char msg[1024]; /* "PATH: what is wrong (hint)", without "cnngen: error: " */
  int internal;   /* 1: a bug or environment failure (exit status 2) */
} Err;

/* Formats "PATH: message" into e (path may be NULL); returns -1. */
int err_set(Err *e, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
