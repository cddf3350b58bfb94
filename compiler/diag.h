/*
 * diag.h: the one diagnostics module. Messages look like gcc's:
 *
 *   net.cnn:9:1: error: dense needs a vector input, got 3x3x64
 *       9 | dense 64 relu
 *         | ^~~~~
 *   net.cnn:9:1: note: add 'flatten' before line 9
 *
 * The stream is a parameter so that tests read messages from memory.
 */
#ifndef CNNGEN_DIAG_H
#define CNNGEN_DIAG_H

#include <stdio.h>

#include "ir.h"

typedef struct Diag {
  FILE *out;        /* where messages go */
  const char *src;  /* the source text (for quoting lines); may be NULL */
  size_t src_len;
  int errors;       /* count so far */
  int error_line;   /* line of the last error: a note elsewhere quotes its own line */
  int cache_line;   /* a line start found before, so that quoting is linear */
  size_t cache_off; /*   in the number of errors, not quadratic */
} Diag;

void diag_init(Diag *d, FILE *out, const char *src, size_t src_len);
/* An error at loc: the message line, the source line and a caret. */
void diag_error(Diag *d, Loc loc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A note attached to the last error (how to fix it, where a '{' opened). */
void diag_note(Diag *d, Loc loc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
