/*
 * cli.c: what every command shares. Options are parsed GNU style (anywhere
 * among the arguments; `--name VALUE`, `--name=VALUE`, `-o VALUE`, `-oVALUE`;
 * `--` ends them) against the CLI_OPTIONS table, checked against the
 * command's set, and converted once here, so a command only reads CliArgs.
 */
#include "cli.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../compiler/compile.h"
#include "../compiler/diag.h"
#include "io.h"
#include "safetensors.h"

/* A .cnn file is text of a few lines per layer; far below this. */
#define CLI_MAX_NET_BYTES ((size_t)4 << 20)

typedef struct CliOptionInfo {
  const char *name;
  char short_name;
  CliArgKind kind;
  double lo, hi;
} CliOptionInfo;

static const CliOptionInfo options[CLI_COUNT] = {
#define X_INFO(e, name, short_name, kind, lo, hi) {name, short_name, kind, lo, hi},
    CLI_OPTIONS(X_INFO)
#undef X_INFO
};

int cli_fail(const Err *e) {
  fprintf(stderr, "cnngen: error: %s\n", e->msg);
  return e->internal ? 2 : 1;
}

int cli_usage_error(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("cnngen: error: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  return 1;
}

/* Levenshtein distance, capped: words here are short. */
static int edit_distance(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  if (la > 63 || lb > 63)
    return 64;
  int row[64];
  for (size_t j = 0; j <= lb; j++)
    row[j] = (int)j;
  for (size_t i = 1; i <= la; i++) {
    int diag = row[0];
    row[0] = (int)i;
    for (size_t j = 1; j <= lb; j++) {
      int up = row[j];
      int best = diag + (a[i - 1] != b[j - 1]);
      if (up + 1 < best)
        best = up + 1;
      if (row[j - 1] + 1 < best)
        best = row[j - 1] + 1;
      row[j] = best;
      diag = up;
    }
  }
  return row[lb];
}

const char *cli_suggest(const char *word, const char *const *words, int n) {
  const char *best = NULL;
  int best_d = 0;
  size_t len = strlen(word);
  for (int i = 0; i < n; i++) {
    int d = edit_distance(word, words[i]);
    /* A prefix ("--thr" for "--threads") counts as close too. */
    if (len >= 2 && strncmp(word, words[i], len) == 0)
      d = 1;
    if (!best || d < best_d) {
      best = words[i];
      best_d = d;
    }
  }
  int limit = len <= 4 ? 1 : len <= 8 ? 2 : 3;
  return best && best_d <= limit ? best : NULL;
}

/* The option spelled `name` (without dashes), or -1. */
static int find_long(const char *name, size_t len) {
  for (int i = 0; i < CLI_COUNT; i++)
    if (strlen(options[i].name) == len && strncmp(options[i].name, name, len) == 0)
      return i;
  return -1;
}

static int find_short(char c) {
  for (int i = 0; i < CLI_COUNT; i++)
    if (options[i].short_name && options[i].short_name == c)
      return i;
  return -1;
}

/* "--weights" or "-o" for messages. */
static const char *spelling(int opt) {
  static char buf[CLI_COUNT][40];
  snprintf(buf[opt], sizeof buf[opt], "--%s", options[opt].name);
  return buf[opt];
}

static int unknown_option(const Command *cmd, const char *arg) {
  const char *words[CLI_COUNT];
  char spelled[CLI_COUNT][40];
  int n = 0;
  for (int i = 0; i < CLI_COUNT; i++)
    if (cmd->options & OPT(i)) {
      snprintf(spelled[n], sizeof spelled[n], "--%s", options[i].name);
      words[n] = spelled[n];
      n++;
    }
  char name[64];
  snprintf(name, sizeof name, "%.*s", (int)strcspn(arg, "="), arg);
  const char *near = cli_suggest(name, words, n);
  if (near)
    return cli_usage_error("%s: unknown option '%s' (did you mean '%s'?)", cmd->name, name, near);
  return cli_usage_error("%s: unknown option '%s' (see 'cnngen help %s')", cmd->name, name,
                         cmd->name);
}

static int set_value(const Command *cmd, CliArgs *a, int opt, const char *text) {
  const CliOptionInfo *o = &options[opt];
  a->value[opt] = text;
  if (o->kind == ARG_INT) {
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (end == text || *end || errno || v < (long)o->lo || v > (long)o->hi)
      return cli_usage_error("%s: %s needs a whole number from %ld to %ld, got '%s'", cmd->name,
                             spelling(opt), (long)o->lo, (long)o->hi, text);
    a->num[opt] = v;
  } else if (o->kind == ARG_REAL) {
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (end == text || *end || errno || !(v >= o->lo && v <= o->hi))
      return cli_usage_error("%s: %s needs a number from %g to %g, got '%s'", cmd->name,
                             spelling(opt), o->lo, o->hi, text);
    a->real[opt] = v;
  } else if (opt == CLI_BACKEND) {
    int b = backend_parse(text);
    if (b < 0)
      return cli_usage_error("%s: --backend needs auto, tcc or cc, got '%s'", cmd->name, text);
    a->backend = (BackendKind)b;
  }
  return 0;
}

static int default_threads(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n < 1 ? 1 : n > 256 ? 256 : (int)n;
}

int cli_parse(const Command *cmd, int argc, char **argv, CliArgs *a) {
  memset(a, 0, sizeof *a);
  a->cmd = cmd;
  a->backend = BACKEND_AUTO;
  a->num[CLI_TOP] = 3;
  a->real[CLI_THRESHOLD] = 0.5;
  char **pos = calloc((size_t)argc + 1, sizeof *pos);
  if (!pos)
    return cli_usage_error("out of memory");
  int npos = 0;
  bool options_done = false;
  int status = 0;
  for (int i = 0; i < argc && !status; i++) {
    char *arg = argv[i];
    if (options_done || arg[0] != '-' || arg[1] == '\0') { /* "-" is an argument */
      pos[npos++] = arg;
      continue;
    }
    if (strcmp(arg, "--") == 0) {
      options_done = true;
      continue;
    }
    if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
      fputs(cmd->help, stdout);
      free(pos);
      return -1;
    }
    int opt;
    const char *inline_value = NULL;
    if (arg[1] == '-') {
      const char *name = arg + 2, *eq = strchr(name, '=');
      opt = find_long(name, eq ? (size_t)(eq - name) : strlen(name));
      if (eq)
        inline_value = eq + 1;
    } else {
      opt = find_short(arg[1]);
      if (arg[2])
        inline_value = arg + 2;
    }
    if (opt < 0 || !(cmd->options & OPT(opt))) {
      if (opt >= 0)
        status = cli_usage_error("%s: %s is not an option of %s (see 'cnngen help %s')", cmd->name,
                                 spelling(opt), cmd->name, cmd->name);
      else
        status = unknown_option(cmd, arg);
      break;
    }
    if (a->value[opt]) {
      status = cli_usage_error("%s: %s given twice", cmd->name, spelling(opt));
      break;
    }
    if (options[opt].kind == ARG_NONE) {
      if (inline_value) {
        status = cli_usage_error("%s: %s takes no value", cmd->name, spelling(opt));
        break;
      }
      a->value[opt] = "";
      continue;
    }
    if (!inline_value) {
      if (i + 1 >= argc) {
        status = cli_usage_error("%s: %s needs a value (see 'cnngen help %s')", cmd->name,
                                 spelling(opt), cmd->name);
        break;
      }
      inline_value = argv[++i];
    }
    status = set_value(cmd, a, opt, inline_value);
  }
  if (!status)
    for (int i = 0; i < CLI_COUNT; i++)
      if ((cmd->required & OPT(i)) && !a->value[i]) {
        status = cli_usage_error("%s: %s is required (see 'cnngen help %s')", cmd->name,
                                 spelling(i), cmd->name);
        break;
      }
  if (!status && npos < cmd->min_args) {
    const char *usage = strstr(cmd->help, "usage: ");
    int len = usage ? (int)strcspn(usage, "\n") : 0;
    status = cli_usage_error("%s: %s (%.*s)", cmd->name,
                             npos == 0 ? "no network file given" : "too few arguments", len,
                             usage ? usage : "");
  }
  if (!status && cmd->max_args >= 0 && npos > cmd->max_args)
    status = cli_usage_error("%s: unexpected argument '%s' (see 'cnngen help %s')", cmd->name,
                             pos[cmd->max_args], cmd->name);
  if (status) {
    free(pos);
    return status;
  }
  a->threads = a->value[CLI_THREADS] ? (int)a->num[CLI_THREADS] : default_threads();
  a->net_path = pos[0];
  a->inputs = pos + 1; /* pos has argc + 1 slots, so this is valid even when empty */
  a->ninputs = npos > 0 ? npos - 1 : 0;
  return 0;
}

void cli_args_free(CliArgs *a) {
  if (a->inputs)
    free(a->inputs - 1);
  a->inputs = NULL;
}

Net *cli_compile_net(Arena *a, const char *path, FILE *dump_ir, int *status) {
  Err e = {0};
  size_t len;
  static const IoLimit limit = {CLI_MAX_NET_BYTES, "a network file (at most 4 MB)", NULL};
  char *src = io_read_capped(path, &limit, &len, &e);
  if (!src) {
    *status = cli_fail(&e);
    return NULL;
  }
  /* The Net may point into the source text: keep a copy in the arena. */
  char *text = arena_alloc(a, len + 1);
  memcpy(text, src, len);
  free(src);
  Diag d;
  diag_init(&d, stderr, text, len);
  CompileOptions opt = {.dump_ir = dump_ir};
  Net *net = compile(a, path, text, len, &opt, &d);
  if (!net)
    *status = 1;
  return net;
}

float *cli_read_weights(const char *path, const Net *net, Err *e) {
  StFile f;
  if (st_read(path, &f, e) < 0)
    return NULL;
  int nt = net_tensors(net, NULL);
  TensorInfo *ti = calloc((size_t)nt + 1, sizeof *ti);
  float *params = malloc(((size_t)net->param_count + 1) * sizeof *params);
  if (!ti || !params) {
    err_set(e, path, "out of memory");
    e->internal = 1;
  } else {
    net_tensors(net, ti);
    if (st_load_params(&f, ti, nt, params, e) == 0 &&
        params_check_finite(path, ti, nt, params, e) == 0) {
      free(ti);
      st_free(&f);
      return params;
    }
  }
  free(ti);
  free(params);
  st_free(&f);
  return NULL;
}

int cli_open_engine(Engine *en, const Net *net, const CliArgs *a, bool training) {
  Err e = {0};
  if (engine_open(en, net, a->backend, training, a->threads, &e) < 0)
    return cli_fail(&e);
  const char *wpath = a->value[CLI_WEIGHTS];
  if (wpath) {
    float *params = cli_read_weights(wpath, net, &e);
    if (!params) {
      engine_close(en);
      return cli_fail(&e);
    }
    en->load(en->model, params);
    free(params);
  }
  return 0;
}

void cli_bytes_to_floats(const unsigned char *src, long count, float *dst) {
  for (long i = 0; i < count; i++)
    dst[i] = (float)src[i] / 255.0f;
}

void cli_print_float(FILE *out, float v) {
  if (isfinite(v))
    fprintf(out, "%.9g", (double)v);
  else
    fputs("null", out);
}
