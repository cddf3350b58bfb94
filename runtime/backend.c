/*
 * backend.c: picks a backend, times it, and hands out symbols. The real
 * work is in backend_tcc.c (libtcc, in process) and backend_cc.c (system
 * compiler, shared object cache, dlopen).
 */
#include "backend_impl.h"
#include "kernels/kernels.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int backend_parse(const char *word) {
  if (!strcmp(word, "auto"))
    return BACKEND_AUTO;
  if (!strcmp(word, "tcc"))
    return BACKEND_TCC;
  if (!strcmp(word, "cc"))
    return BACKEND_CC;
  if (!strcmp(word, "cc-kernels"))
    return BACKEND_CC_KERNELS;
  return -1;
}

/* Is `prog` (a path, or a name to find on $PATH) an executable? */
static int executable_found(const char *prog, size_t n) {
  char path[4096];
  if (memchr(prog, '/', n)) {
    snprintf(path, sizeof path, "%.*s", (int)n, prog);
    return access(path, X_OK) == 0;
  }
  const char *dirs = getenv("PATH");
  if (!dirs)
    dirs = "/usr/local/bin:/usr/bin:/bin";
  for (const char *d = dirs;; d++) {
    const char *colon = strchr(d, ':');
    size_t dl = colon ? (size_t)(colon - d) : strlen(d);
    snprintf(path, sizeof path, "%.*s/%.*s", dl ? (int)dl : 1, dl ? d : ".", (int)n, prog);
    if (access(path, X_OK) == 0)
      return 1;
    if (!colon)
      return 0;
    d = colon;
  }
}

/* auto: cc when $CC's first word (or `cc`) is an executable on $PATH. */
bool backend_cc_available(void) {
  const char *cc = getenv("CC");
  if (!cc || !*cc)
    cc = "cc";
  cc += strspn(cc, " \t");
  size_t n = strcspn(cc, " \t");
  return n > 0 && executable_found(cc, n);
}

void backend_first_lines(char *out, size_t n, const char *text, int max_lines) {
  size_t k = 0;
  for (int line = 0; *text && line < max_lines && k + 1 < n; line++) {
    size_t l = strcspn(text, "\n");
    if (k + l + 2 > n)
      l = n - k - 2;
    if (line)
      out[k++] = '\n';
    memcpy(out + k, text, l);
    k += l;
    text += strcspn(text, "\n");
    if (*text)
      text++;
  }
  out[k] = 0;
}

BackendKind backend_resolve(BackendKind kind) {
  if (kind == BACKEND_AUTO)
    return backend_cc_available() ? BACKEND_CC : BACKEND_TCC;
  return kind;
}

/* --backend cc-kernels: each kernel's pointer in the loaded object set to
   this CPU's kernel (the glue declares them, EmitOptions.kernel_pointers). */
static Program *bind_kernels(Program *p, Err *e) {
  const CnkSet *set = cnk_select();
  for (int i = 0; i < set->count; i++) {
    void *slot = program_symbol(p, set->symbols[i].name);
    if (!slot) {
      e->internal = 1;
      err_set(e, NULL, "the generated C lacks the kernel pointer %s", set->symbols[i].name);
      program_free(p);
      return NULL;
    }
    memcpy(slot, &set->symbols[i].fn, sizeof set->symbols[i].fn);
  }
  p->backend = "cc-kernels";
  return p;
}

Program *backend_compile(BackendKind kind, const char *source, size_t len, Err *e) {
  if (memchr(source, 0, len)) {
    e->internal = 1;
    err_set(e, NULL, "the generated C contains a NUL byte");
    return NULL;
  }
  char *src = malloc(len + 1);
  if (!src) {
    err_set(e, NULL, "out of memory");
    return NULL;
  }
  memcpy(src, source, len);
  src[len] = 0;
  kind = backend_resolve(kind);
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  Program *p = kind == BACKEND_TCC ? backend_tcc_compile(src, e) : backend_cc_compile(src, len, e);
  if (p && kind == BACKEND_CC_KERNELS)
    p = bind_kernels(p, e);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  free(src);
  if (p)
    p->seconds = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
  return p;
}

void *program_symbol(Program *p, const char *name) {
  return p->symbol(p->handle, name);
}

const char *program_backend(const Program *p) {
  return p->backend;
}

double program_compile_seconds(const Program *p) {
  return p->seconds;
}

bool program_cached(const Program *p) {
  return p->cached;
}

void program_free(Program *p) {
  if (!p)
    return;
  p->release(p->handle);
  free(p);
}

Program *program_new(const char *backend, void *handle,
                     void *(*symbol)(void *handle, const char *name), void (*release)(void *handle),
                     Err *e) {
  Program *p = calloc(1, sizeof *p);
  if (!p) {
    release(handle);
    err_set(e, NULL, "out of memory");
    return NULL;
  }
  p->backend = backend;
  p->handle = handle;
  p->symbol = symbol;
  p->release = release;
  return p;
}
