/*
 * diag.h: the one diagnostics module. Messages look like gcc's:
 *
 *   net.cnn:9:1: error: dense needs a vector input, got 3x3x64
 *       9 | dense 64 relu
 *         | ^~~~~
 *   net.cnn:9:1: note: add 'flatten' before line 9
 *
 * The stream is a parameter so that tests read messages from memory.
 * Every error is counted, but after `max_errors` of them one line says
 * "too many errors" and the rest (and their notes) are not printed.
 *
 * compile() runs several passes that each report in line order; between
 * diag_hold() and diag_flush() the messages are kept and then printed in
 * the order of their lines and columns, the first max_errors of them, as a
 * one-pass compiler would have printed them.
 */
#ifndef CNNGEN_DIAG_H
#define CNNGEN_DIAG_H

#include <stdbool.h>
#include <stdio.h>

#include "ir.h"

enum { DIAG_MAX_ERRORS = 20 }; /* diag_init's max_errors */

typedef struct Diag {
  FILE *out;       /* where messages go */
  const char *src; /* the source text (for quoting lines); may be NULL */
  size_t src_len;
  int errors;       /* count so far, shown or not */
  int max_errors;   /* errors shown at most; 0: all */
  int error_line;   /* line of the last error: a note elsewhere quotes its own line */
  int cache_line;   /* a line start found before, so that quoting is linear */
  size_t cache_off; /*   in the number of errors, not quadratic */

  /* Between diag_hold and diag_flush (diag.c). */
  bool holding;
  struct DiagHeld **held; /* the messages kept, at most max_errors (if > 0) */
  int nheld, held_cap;
  struct DiagHeld *cur; /* the one the next note goes to; NULL: not kept */
  int held_errors;      /* errors since diag_hold, kept or not */
  int seq;
  const char *held_file; /* for the "too many errors" line */
} Diag;

void diag_init(Diag *d, FILE *out, const char *src, size_t src_len);
/* An error at loc: the message line, the source line and a caret. */
void diag_error(Diag *d, Loc loc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* A note attached to the last error (how to fix it, where a '{' opened). */
void diag_note(Diag *d, Loc loc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Keep the messages from now on; diag_flush prints them in line order. */
void diag_hold(Diag *d);
void diag_flush(Diag *d);

#endif
