/* testutil.c: see testutil.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
/* jpeglib.h needs size_t and FILE declared first. */
#include <jpeglib.h>

#include "cli.h"
#include "emit.h"
#include "formats/idx.h"
#include "formats/safetensors.h"
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

const char *const tu_reference_cases[TU_REFERENCE_CASES] = {"seed_fashion",
                                                            "sgd_same_stride",
                                                            "mse_gap",
                                                            "multilabel_bce",
                                                            "overlap_categorical",
                                                            "stride_padding_bias",
                                                            "stride_padding_bias_adam",
                                                            "depthwise",
                                                            "depthwise_adam",
                                                            "groups_rect",
                                                            "grouped_wide",
                                                            "residual_identity",
                                                            "residual_projection",
                                                            "recipe_cosine_smoothing",
                                                            "recipe_step_weights",
                                                            "recipe_early_stopping",
                                                            "batchnorm_sgd",
                                                            "batchnorm_adam"};

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

/* After a command ran with its output in .out and .err: those in tu_out and
   tu_err, and its exit status from the wait status. */
static int collect(const char *what, int wstatus) {
  tu_read_file(tu_path(".out"), tu_out, sizeof tu_out);
  tu_read_file(tu_path(".err"), tu_err, sizeof tu_err);
  /* Under SAN=1 a report must fail the test, whatever the exit status. */
  if (strstr(tu_err, "Sanitizer") || strstr(tu_err, "runtime error:"))
    fail_msg("%s:\n%s", what, tu_err);
  return WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : 128 + WTERMSIG(wstatus);
}

static int shell(const char *what) {
  char cmd[8192];
  snprintf(cmd, sizeof cmd, "cd %s && %s >%s/.out 2>%s/.err", tu_tmp, what, tu_tmp, tu_tmp);
  return collect(what, system(cmd));
}

/* "PREFIX cnngen ARGS" in cmd, ARGS from fmt. */
static void cnngen_command(char *cmd, size_t size, const char *prefix, const char *fmt,
                           va_list ap) {
  char args[4096];
  vsnprintf(args, sizeof args, fmt, ap);
  snprintf(cmd, size, "%s%s %s", prefix, tu_cnngen, args);
}

/* Starts the shell command line `run` in the directory (see tu_start). */
static pid_t start(const char *run) {
  char cmd[8192];
  snprintf(cmd, sizeof cmd, "cd %s && %s >%s/.out 2>%s/.err", tu_tmp, run, tu_tmp, tu_tmp);
  unlink(tu_path(".out")); /* so that tu_await never reads an earlier run's */
  unlink(tu_path(".err"));
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
    _exit(127);
  }
  return pid;
}

pid_t tu_start(const char *fmt, ...) {
  char run[6144];
  va_list ap;
  va_start(ap, fmt);
  cnngen_command(run, sizeof run, "exec ", fmt, ap); /* exec: the pid is cnngen's, for signals */
  va_end(ap);
  return start(run);
}

pid_t tu_start_shell(const char *fmt, ...) {
  char run[6144];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(run, sizeof run, fmt, ap);
  va_end(ap);
  return start(run);
}

void tu_await(pid_t pid, const char *name, const char *needle) {
  static char text[1 << 16];
  for (;;) {
    tu_read_file(tu_path(name), text, sizeof text);
    if (strstr(text, needle))
      return;
    int wstatus;
    if (waitpid(pid, &wstatus, WNOHANG) == pid)
      fail_msg("cnngen ended (exit %d) before %s held \"%s\":\n%s", collect("tu_await", wstatus),
               name, needle, text);
    struct timespec ts = {0, 2000000}; /* 2 ms between looks */
    nanosleep(&ts, NULL);
  }
}

int tu_finish(pid_t pid) {
  int wstatus;
  assert_int_equal(waitpid(pid, &wstatus, 0), pid);
  return collect("a started cnngen", wstatus);
}

int tu_run(const char *fmt, ...) {
  char cmd[6144];
  va_list ap;
  va_start(ap, fmt);
  cnngen_command(cmd, sizeof cmd, "", fmt, ap);
  va_end(ap);
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

bool tu_has_program(const char *name) {
  return tu_shell("command -v %s", name) == 0;
}

/* Deterministic pseudo-random values in [0, 1) (float: the images are the
   ones test_augment.c made before this moved here). */
static float next_uniform(uint64_t *s) {
  *s = *s * 6364136223846793005u + 1442695040888963407u;
  return (float)((double)(*s >> 11) / 9007199254740992.0);
}

void tu_write_idx(const char *dir, const char *which, const IdxImages *im, const IdxLabels *lb) {
  char p[600];
  Err e = {0};
  snprintf(p, sizeof p, "%s/%s-images-idx3-ubyte", tu_path(dir), which);
  assert_int_equal(idx_write_images(p, im, &e), 0);
  snprintf(p, sizeof p, "%s/%s-labels-idx1-ubyte", tu_path(dir), which);
  assert_int_equal(idx_write_labels(p, lb, &e), 0);
}

bool tu_fashion_subset(const char *dir, int n_train, int n_test) {
  if (tu_exists(dir))
    return true;
  if (access(CNNGEN_DEFAULT_DATA, R_OK) != 0)
    return false;
  char cmd[600];
  snprintf(cmd, sizeof cmd, "mkdir -p %s", tu_path(dir));
  assert_int_equal(system(cmd), 0);
  const char *which[2] = {"train", "t10k"};
  int counts[2] = {n_train, n_test};
  for (int s = 0; s < 2; s++) {
    IdxImages im;
    IdxLabels lb;
    Err e = {0};
    if (idx_load_split(CNNGEN_DEFAULT_DATA, which[s], &im, &lb, &e) < 0)
      fail_msg("%s", e.msg);
    im.n = lb.n = counts[s];
    tu_write_idx(dir, which[s], &im, &lb);
    idx_images_free(&im);
    idx_labels_free(&lb);
  }
  return true;
}

void tu_quadrant_data(const char *dir, int n_train, int n_test) {
  char cmd[600];
  snprintf(cmd, sizeof cmd, "mkdir -p %s", tu_path(dir));
  assert_int_equal(system(cmd), 0);
  uint64_t seed = 42;
  const char *which[2] = {"train", "t10k"};
  int counts[2] = {n_train, n_test};
  for (int s = 0; s < 2; s++) {
    int n = counts[s];
    IdxImages im = {.n = n, .h = 12, .w = 12, .c = 1, .data = malloc((size_t)n * 144)};
    IdxLabels lb = {.n = n, .data = malloc((size_t)n)};
    assert_non_null(im.data);
    assert_non_null(lb.data);
    for (int i = 0; i < n; i++) {
      int k = (int)(next_uniform(&seed) * 4);
      lb.data[i] = (uint8_t)k;
      for (int p = 0; p < 144; p++) {
        int y = p / 12, x = p % 12, inside = (y / 6) * 2 + x / 6 == k && y % 6 > 0 && x % 6 > 0;
        im.data[i * 144 + p] =
            (uint8_t)(inside ? 160 + next_uniform(&seed) * 95 : next_uniform(&seed) * 90);
      }
    }
    tu_write_idx(dir, which[s], &im, &lb);
    idx_images_free(&im);
    idx_labels_free(&lb);
  }
}

const char *tu_write_jpeg(const char *name, const unsigned char *pixels, int h, int w, int c,
                          int quality) {
  const char *path = tu_path(name);
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  struct jpeg_compress_struct cinfo;
  struct jpeg_error_mgr err;
  cinfo.err = jpeg_std_error(&err);
  jpeg_create_compress(&cinfo);
  jpeg_stdio_dest(&cinfo, f);
  cinfo.image_width = (JDIMENSION)w;
  cinfo.image_height = (JDIMENSION)h;
  cinfo.input_components = c;
  cinfo.in_color_space = c == 1 ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_set_defaults(&cinfo);
  jpeg_set_quality(&cinfo, quality, TRUE);
  jpeg_start_compress(&cinfo, TRUE);
  while (cinfo.next_scanline < cinfo.image_height) {
    JSAMPROW row = (JSAMPROW)(pixels + (size_t)cinfo.next_scanline * (size_t)w * (size_t)c);
    jpeg_write_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_compress(&cinfo);
  jpeg_destroy_compress(&cinfo);
  assert_int_equal(fclose(f), 0);
  return path;
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

int tu_outputs(const char *text, double *out, int max) {
  int i = 0;
  const char *p = text;
  while ((p = strstr(p, "\"outputs\": ["))) {
    char *q = (char *)p + 12;
    for (;;) {
      if (i >= max)
        fail_msg("more than %d outputs in:\n%.2000s", max, text);
      out[i++] = strtod(q, &q);
      if (*q != ',')
        break;
      q++;
    }
    assert_int_equal(*q, ']');
    p = q;
  }
  return i;
}

double tu_compare_outputs(const char *what, const double *got, const double *want, int count) {
  double worst = 0;
  for (int i = 0; i < count; i++) {
    double d = fabs(got[i] - want[i]);
    if (!(d <= TU_PREDICT_ATOL + TU_PREDICT_RTOL * fabs(want[i])))
      fail_msg("%s: output %d is %.9g, not %.9g", what, i, got[i], want[i]);
    if (d > worst)
      worst = d;
  }
  return worst;
}

/* NAME.cnn with random weights in NAME.safetensors, and n random images
   for it in NAME-images. */
void tu_random_net(const char *name, const char *src, int n) {
  Arena a = {0};
  Net *net = tu_compile_ok(&a, src);
  char path[64];
  snprintf(path, sizeof path, "%s.cnn", name);
  tu_write_text(path, src);
  float *params = malloc((size_t)net->param_count * sizeof *params);
  assert_non_null(params);
  uint32_t r = 12345;
  for (long i = 0; i < net->param_count; i++) {
    r = r * 1664525u + 1013904223u;
    params[i] = (float)((r >> 8) / 16777216.0 - 0.5);
  }
  Err e = {0};
  snprintf(path, sizeof path, "%s.safetensors", name);
  if (cli_write_weights(tu_path(path), net, params, NULL, &e) < 0)
    fail_msg("%s", e.msg);
  IdxImages im = {.n = n, .h = net->input.h, .w = net->input.w, .c = net->input.c};
  im.data = malloc((size_t)n * im.h * im.w * im.c);
  assert_non_null(im.data);
  for (long i = 0; i < (long)n * im.h * im.w * im.c; i++) {
    r = r * 1664525u + 1013904223u;
    im.data[i] = (uint8_t)(r >> 24);
  }
  snprintf(path, sizeof path, "%s-images", name);
  if (idx_write_images(tu_path(path), &im, &e) < 0)
    fail_msg("%s", e.msg);
  free(im.data);
  free(params);
  arena_free(&a);
}
