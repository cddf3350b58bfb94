/*
 * backend.h: turning generated C into callable code.
 *   tcc   in process through libtcc (backend_tcc.c): milliseconds.
 *   cc    the system compiler ($CC, default "cc -O3 -march=native") into a
 *         shared object cached under $XDG_CACHE_HOME/cnngen (or
 *         ~/.cache/cnngen) by a hash of the source and the command, then
 *         dlopen (backend_cc.c).
 *   cc-kernels  the JIT's glue (as tcc gets it, the layers' loops in the
 *         prebuilt kernels, runtime/kernels/) compiled by the system compiler
 *         as cc does, the kernels' pointers set after dlopen.
 *   auto  cc where a system compiler is found, tcc otherwise.
 */
#ifndef CNNGEN_BACKEND_H
#define CNNGEN_BACKEND_H

#include <stdbool.h>
#include <stddef.h>

#include "err.h"

typedef enum { BACKEND_AUTO, BACKEND_TCC, BACKEND_CC, BACKEND_CC_KERNELS } BackendKind;

typedef struct Program Program;

/* Parses "auto", "tcc", "cc", "cc-kernels"; -1 for anything else. */
int backend_parse(const char *word);
/* auto as what it stands for when nothing is known of the run: cc where a
   system compiler is found, else tcc; others as they are. */
BackendKind backend_resolve(BackendKind kind);
/* Whether a system compiler is found ($CC's first word, or cc). */
bool backend_cc_available(void);
/* Whether the cc backend's cache holds this source's object already. */
bool backend_cc_cached(const char *source, size_t len);
/* Compiles one translation unit. Compiler diagnostics go into e (internal). */
Program *backend_compile(BackendKind kind, const char *source, size_t len, Err *e);
void *program_symbol(Program *p, const char *name);
const char *program_backend(const Program *p); /* "tcc", "cc" or "cc-kernels" */
double program_compile_seconds(const Program *p);
/* Whether the code came ready-made from the cc backend's cache (its compile
   seconds are then only the lookup). */
bool program_cached(const Program *p);
void program_free(Program *p);

#endif
