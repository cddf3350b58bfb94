/*
 * backend_impl.h: what backend.c shares with backend_tcc.c and backend_cc.c
 * (private to those three files). Each backend returns a Program whose
 * `symbol` and `release` know how to look up and free what it compiled.
 */
#ifndef CNNGEN_BACKEND_IMPL_H
#define CNNGEN_BACKEND_IMPL_H

#include <stdbool.h>

#include "backend.h"

struct Program {
  const char *backend; /* "tcc", "cc" or "cc-kernels" */
  double seconds;      /* wall time of backend_compile */
  bool cached;         /* cc: the object came from the cache, nothing was compiled */
  void *handle;        /* TCCState * or dlopen handle */
  void *(*symbol)(void *handle, const char *name);
  void (*release)(void *handle);
};

/* source is NUL-terminated (backend_compile copies it). */
Program *backend_tcc_compile(const char *source, Err *e);
Program *backend_cc_compile(const char *source, size_t len, Err *e);

/* A Program around `handle`; on failure calls release(handle), fills e and
   returns NULL. */
Program *program_new(const char *backend, void *handle,
                     void *(*symbol)(void *handle, const char *name), void (*release)(void *handle),
                     Err *e);

/* Keeps the first `max_lines` lines of compiler output (trailing newline
   dropped) in out, for an error message. */
void backend_first_lines(char *out, size_t n, const char *text, int max_lines);

#endif
