/*
 * backend_tcc.c: compiles generated C in process with libtcc, shaped like
 * tcc's own tests/libtcc_test.c: new state, errors to a buffer, output to
 * memory, link libm, compile the string, relocate, look symbols up.
 * Debian's libtcc 0.9.27 keeps global state, so one compilation at a time.
 */
#include <libtcc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend_impl.h"
#include "kernels/kernels.h"

/* Collects tcc's messages (errors and warnings, one per call). */
typedef struct {
  char text[4096];
  size_t len;
} TccLog;

static void tcc_log(void *opaque, const char *msg) {
  TccLog *log = opaque;
  if (log->len + 1 < sizeof log->text)
    log->len += (size_t)snprintf(log->text + log->len, sizeof log->text - log->len, "%s\n", msg);
  if (log->len >= sizeof log->text)
    log->len = sizeof log->text - 1;
}

/* The one place that knows tcc_relocate's signature: Debian's 0.9.27 takes
   a memory argument (TCC_RELOCATE_AUTO: tcc allocates and owns the code);
   tcc 0.9.28 dropped both the argument and the macro. */
static int tcc_relocate_auto(TCCState *s) {
#ifdef TCC_RELOCATE_AUTO
  return tcc_relocate(s, TCC_RELOCATE_AUTO);
#else
  return tcc_relocate(s);
#endif
}

static void *tcc_symbol(void *handle, const char *name) {
  return tcc_get_symbol(handle, name);
}

static void tcc_release(void *handle) {
  tcc_delete(handle);
}

static Program *tcc_fail(TCCState *s, TccLog *log, const char *what, Err *e) {
  char first[600];
  backend_first_lines(first, sizeof first, log->text, 6);
  e->internal = 1;
  err_set(e, NULL, "tcc %s the generated C:\n%s", what, *first ? first : "(no message)");
  if (s)
    tcc_delete(s);
  return NULL;
}

Program *backend_tcc_compile(const char *source, Err *e) {
  TccLog log = {"", 0};
  TCCState *s = tcc_new();
  if (!s)
    return tcc_fail(NULL, &log, "could not start to compile", e);
  tcc_set_error_func(s, &log, tcc_log);
  /* CNNGEN_TCC_LIB overrides where libtcc1.a and tcc's own headers live
     (Debian: /usr/lib/x86_64-linux-gnu/tcc, compiled in as the default). */
  const char *lib = getenv("CNNGEN_TCC_LIB");
  if (lib && *lib)
    tcc_set_lib_path(s, lib);
  if (tcc_set_output_type(s, TCC_OUTPUT_MEMORY) < 0)
    return tcc_fail(s, &log, "could not set up for", e);
  if (tcc_compile_string(s, source) < 0)
    return tcc_fail(s, &log, "failed to compile", e);
  if (tcc_add_library(s, "m") < 0)
    return tcc_fail(s, &log, "could not link libm for", e);
  /* the kernels that code generated for tcc calls (EmitOptions.kernels) */
  const CnkSet *set = cnk_select();
  for (int i = 0; i < set->count; i++) {
    void *fn; /* a function's address as tcc takes it (POSIX dlsym style): copy the bits */
    memcpy(&fn, &set->symbols[i].fn, sizeof fn);
    if (tcc_add_symbol(s, set->symbols[i].name, fn) < 0)
      return tcc_fail(s, &log, "could not add the kernels to", e);
  }
  if (tcc_relocate_auto(s) < 0)
    return tcc_fail(s, &log, "failed to link", e);
  return program_new("tcc", s, tcc_symbol, tcc_release, e);
}
