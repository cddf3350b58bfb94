/* testutil.c: see testutil.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "emit.h"
#include "safetensors.h"
#include "testutil.h"

char tu_tmp[64], tu_repo[1024];
const char *tu_cnngen;
char tu_out[1 << 20], tu_err[1 << 16];
const size_t tu_out_cap = sizeof tu_out, tu_err_cap = sizeof tu_err;

int tu_setup(void **state) {
  (void)state;
  snprintf(tu_tmp, sizeof tu_tmp, "/tmp/cnngen-test-XXXXXX");
  if (!mkdtemp(tu_tmp))
    return -1;
  static char bin[2048];
  const char *env = getenv("CNNGEN");
  if (!getcwd(tu_repo, sizeof tu_repo))
    return -1;
  if (env && env[0] == '/')
    snprintf(bin, sizeof bin, "%s", env);
  else
    snprintf(bin, sizeof bin, "%s/%s", tu_repo, env && *env ? env : "build/cnngen");
  tu_cnngen = bin;
  return 0;
}

int tu_teardown(void **state) {
  (void)state;
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", tu_tmp);
  return system(cmd) == 0 ? 0 : -1;
}

char *tu_path(const char *name) {
  static char buf[8][512];
  static int next;
  char *p = buf[next++ % 8];
  snprintf(p, sizeof buf[0], "%s/%s", tu_tmp, name);
  return p;
}

void tu_write_text(const char *name, const char *text) {
  FILE *f = fopen(tu_path(name), "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}

size_t tu_read_file(const char *file, char *buf, size_t cap) {
  FILE *f = fopen(file, "rb");
  if (!f) {
    buf[0] = '\0';
    return 0;
  }
  size_t n = fread(buf, 1, cap - 1, f);
  buf[n] = '\0';
  fclose(f);
  return n;
}

bool tu_exists(const char *name) {
  struct stat st;
  return stat(tu_path(name), &st) == 0;
}

int tu_count(const char *text, const char *needle) {
  int n = 0;
  for (const char *p = strstr(text, needle); p; p = strstr(p + 1, needle))
    n++;
  return n;
}

const char *const tu_reference_cases[TU_REFERENCE_CASES] = {
    "seed_fashion", "sgd_same_stride", "mse_gap", "multilabel_bce", "overlap_categorical"};

const char *tu_reference(const char *fmt, ...) {
  static char buf[8][512];
  static int next;
  char *p = buf[next++ % 8];
  int n = snprintf(p, sizeof buf[0], "%s/", TU_REFERENCE);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(p + n, sizeof buf[0] - (size_t)n, fmt, ap);
  va_end(ap);
  const char *name = p + n;
  if (access(p, R_OK) == 0)
    return p;
  if (!strncmp(name, "fashion-pytorch", 15))
    fail_msg("%s is missing: make it with %s/train-fashion-pytorch (PyTorch, a few minutes)", p,
             TU_REFERENCE);
  fail_msg("%s is missing: make it with %s/make-reference %.*s", p, TU_REFERENCE,
           (int)strcspn(name, "/"), name);
  return p; /* not reached */
}

static int shell(const char *what) {
  char cmd[8192];
  snprintf(cmd, sizeof cmd, "cd %s && %s >%s/.out 2>%s/.err", tu_tmp, what, tu_tmp, tu_tmp);
  int rc = system(cmd);
  tu_read_file(tu_path(".out"), tu_out, sizeof tu_out);
  tu_read_file(tu_path(".err"), tu_err, sizeof tu_err);
  /* Under SAN=1 a report must fail the test, whatever the exit status. */
  if (strstr(tu_err, "Sanitizer") || strstr(tu_err, "runtime error:"))
    fail_msg("%s:\n%s", what, tu_err);
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128 + WTERMSIG(rc);
}

int tu_run(const char *fmt, ...) {
  char args[4096], cmd[6144];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(args, sizeof args, fmt, ap);
  va_end(ap);
  snprintf(cmd, sizeof cmd, "%s %s", tu_cnngen, args);
  return shell(cmd);
}

int tu_shell(const char *fmt, ...) {
  char cmd[6144];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cmd, sizeof cmd, fmt, ap);
  va_end(ap);
  return shell(cmd);
}

Net *tu_compile(Arena *a, const char *path, const char *src, size_t len, char **msgs, int *errors) {
  size_t size;
  FILE *mem = open_memstream(msgs, &size);
  assert_non_null(mem);
  Diag d;
  diag_init(&d, mem, src, len);
  Net *net = compile(a, path, src, len, NULL, &d);
  fclose(mem);
  if (errors)
    *errors = d.errors;
  assert_true((net != NULL) == (d.errors == 0));
  return net;
}

Net *tu_compile_ok(Arena *a, const char *src) {
  char *msgs;
  Net *net = tu_compile(a, "t.cnn", src, strlen(src), &msgs, NULL);
  if (!net)
    fail_msg("unexpected errors:\n%s", msgs);
  free(msgs);
  return net;
}

static const char double_prelude[] =
    "#include <stdint.h>\n#include <stddef.h>\n#include <string.h>\n#include <math.h>\n"
    "#define float double\n#define expf exp\n#define logf log\n#define sqrtf sqrt\n"
    "#define tanhf tanh\n#define fabsf fabs\n#define fmaxf fmax\n#define fminf fmin\n"
    "#define powf pow\n#define log1pf log1p\n#define floorf floor\n";

Program *tu_build_training(const Net *net, BackendKind kind, bool dbl) {
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  assert_non_null(f);
  if (dbl)
    fputs(double_prelude, f);
  emit_source(net, &(EmitOptions){.training = true}, f);
  const char *n = net->name;
  fprintf(f,
          "size_t %s_t_model_bytes(void) { return sizeof(%s_model); }\n"
          "size_t %s_t_work_bytes(void) { return sizeof(%s_work); }\n",
          n, n, n, n);
  fclose(f);
  Err e = {0};
  Program *prog = backend_compile(kind, text, len, &e);
  free(text);
  if (!prog)
    fail_msg("cannot compile the generated C: %s", e.msg);
  return prog;
}

void *tu_symbol(Program *prog, const Net *net, const char *suffix) {
  char name[160];
  snprintf(name, sizeof name, "%s%s", net->name, suffix);
  void *p = program_symbol(prog, name);
  if (!p)
    fail_msg("generated code lacks %s", name);
  return p;
}

size_t tu_call_size(Program *prog, const Net *net, const char *suffix) {
  size_t (*f)(void);
  void *p = tu_symbol(prog, net, suffix);
  memcpy(&f, &p, sizeof p);
  return f();
}

void *tu_zalloc(size_t bytes) {
  size_t n = (bytes + 63) / 64 * 64;
  void *p = aligned_alloc(64, n ? n : 64);
  assert_non_null(p);
  memset(p, 0, n ? n : 64);
  return p;
}

bool tu_same_tensors(const char *a, const char *b) {
  StFile fa, fb;
  Err e = {0};
  if (st_read(tu_path(a), &fa, &e) < 0 || st_read(tu_path(b), &fb, &e) < 0)
    fail_msg("%s", e.msg);
  bool same = fa.ntensors == fb.ntensors;
  for (int i = 0; same && i < fa.ntensors; i++) {
    const StTensor *t = st_find(&fb, fa.tensors[i].name);
    same = t && t->nbytes == fa.tensors[i].nbytes &&
           memcmp(t->data, fa.tensors[i].data, t->nbytes) == 0;
  }
  st_free(&fa);
  st_free(&fb);
  return same;
}
