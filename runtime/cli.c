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
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../compiler/compile.h"
#include "../compiler/diag.h"
#include "formats/safetensors.h"
#include "io.h"

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
      return cli_usage_error("%s: --backend needs auto, tcc, cc or cc-kernels, got '%s'", cmd->name, text);
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
    if (npos)
      status = cli_usage_error("%s: too few arguments (%.*s)", cmd->name, len, usage ? usage : "");
    else
      status = cli_usage_error("%s: no %s given (%.*s)", cmd->name,
                               cmd->first ? cmd->first : "network file", len, usage ? usage : "");
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

void cli_write_word(FILE *out, const char *word) {
  static const char plain[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                              "-_./=:,+@%";
  if (*word && word[strspn(word, plain)] == '\0') {
    fputs(word, out);
    return;
  }
  fputc('\'', out);
  for (const char *c = word; *c; c++)
    if (*c == '\'')
      fputs("'\\''", out); /* close the quotes, an escaped quote, reopen */
    else
      fputc(*c, out);
  fputc('\'', out);
}

void cli_write_command(FILE *out, const CliArgs *a, unsigned keep) {
  cli_write_word(out, a->program ? a->program : "cnngen");
  fprintf(out, " %s ", a->cmd->name);
  cli_write_word(out, a->net_path);
  for (int i = 0; i < a->ninputs; i++) {
    fputc(' ', out);
    cli_write_word(out, a->inputs[i]);
  }
  for (int i = 0; i < CLI_COUNT; i++)
    if ((keep & OPT(i)) && a->value[i]) {
      fprintf(out, " %s", spelling(i));
      if (options[i].kind != ARG_NONE) {
        fputc(' ', out);
        cli_write_word(out, a->value[i]);
      }
    }
}

Net *cli_compile_net(Arena *a, const char *path, FILE *dump_ir, int *status) {
  Err e = {0};
  size_t len;
  static const IoLimit limit = {.max = CLI_MAX_NET_BYTES, .what = "a network file (at most 4 MB)"};
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

int cli_params(const Net *net, StParam *out) {
  int nt = net_tensors(net, NULL);
  if (!out)
    return nt;
  TensorInfo *ti = calloc((size_t)nt + 1, sizeof *ti);
  if (!ti)
    return -1;
  net_tensors(net, ti);
  for (int i = 0; i < nt; i++) {
    StParam *p = &out[i];
    snprintf(p->name, sizeof p->name, "%s", ti[i].name);
    p->rank = ti[i].rank;
    for (int d = 0; d < 4; d++)
      p->shape[d] = ti[i].shape[d];
    p->offset = ti[i].offset;
    p->count = ti[i].count;
  }
  free(ti);
  return nt;
}

/* LAYER.num_batches_tracked of layer i into name, or false where the layer
   has no running statistics. */
static bool count_name(const Net *net, int i, char *name, size_t size) {
  if (!op_modules[net->layers[i].op]->stats)
    return false;
  snprintf(name, size, "%s.num_batches_tracked", net->layers[i].name);
  return true;
}

StCount *cli_counts(const Net *net, const long long *tracked, int *n) {
  StCount *out = calloc((size_t)net->nlayers + 1, sizeof *out);
  *n = 0;
  for (int i = 0; out && tracked && i < net->nlayers; i++)
    if (count_name(net, i, out[*n].name, sizeof out[*n].name))
      out[(*n)++].value = tracked[i];
  return out;
}

void cli_read_counts(const Net *net, const StFile *f, long long *tracked) {
  char name[sizeof((StCount *)0)->name];
  for (int i = 0; i < net->nlayers; i++)
    if (count_name(net, i, name, sizeof name))
      st_count(f, name, &tracked[i]);
}

/* A raw .f32 weights file (by its name) rather than safetensors. */
static bool is_raw_f32(const char *path) {
  size_t n = strlen(path);
  return n > 4 && strcmp(path + n - 4, ".f32") == 0;
}

int cli_read_weight_counts(const char *path, const Net *net, long long *tracked, Err *e) {
  if (is_raw_f32(path) || !net_has_stats(net))
    return 0;
  StFile f;
  if (st_read(path, &f, e) < 0)
    return -1;
  cli_read_counts(net, &f, tracked);
  st_free(&f);
  return 0;
}

int cli_write_trained(const char *path, const Net *net, const float *params,
                      const long long *tracked, const char *const *extra_meta, Err *e) {
  int np = cli_params(net, NULL), nc;
  StParam *p = calloc((size_t)np + 1, sizeof *p);
  StCount *counts = cli_counts(net, tracked, &nc);
  if (!p || !counts || cli_params(net, p) < 0) {
    free(p);
    free(counts);
    e->internal = 1;
    return err_set(e, path, "out of memory");
  }
  int rc = st_write_params(path, net->name, p, np, params, counts, nc, extra_meta, e);
  free(p);
  free(counts);
  return rc;
}

int cli_write_weights(const char *path, const Net *net, const float *params,
                      const char *const *extra_meta, Err *e) {
  return cli_write_trained(path, net, params, NULL, extra_meta, e);
}

void cli_class_names_free(ClassNames *cn) {
  for (int i = 0; i < cn->n; i++)
    free(cn->names[i]);
  free(cn->names);
  memset(cn, 0, sizeof *cn);
}

const char *cli_class_name(const ClassNames *cn, int i) {
  return cn && i >= 0 && i < cn->n ? cn->names[i] : NULL;
}

int cli_class_names_add(ClassNames *cn, const char *const *names, int n, const char *path,
                        const char *what, int k, Err *e) {
  if (n == 0)
    return 0;
  if (n != k)
    return err_set(e, path, "its %s give%s %d class name%s, but the network has %d outputs", what,
                   n == 1 ? "s" : "", n, n == 1 ? "" : "s", k);
  if (cn->n) {
    for (int i = 0; i < n; i++)
      if (strcmp(names[i], cn->names[i]))
        return err_set(e, path,
                       "class %d is '%s' in its %s but '%s' in %s (the class names of the "
                       "network, the data and the weights must agree)",
                       i, names[i], what, cn->names[i], cn->from);
    return 0;
  }
  cn->names = calloc((size_t)n, sizeof *cn->names);
  for (int i = 0; cn->names && i < n; i++)
    if (!(cn->names[cn->n++] = strdup(names[i]))) {
      cli_class_names_free(cn);
      break;
    }
  if (!cn->names) {
    e->internal = 1;
    return err_set(e, path, "out of memory");
  }
  snprintf(cn->from, sizeof cn->from, "%s's %s", path, what);
  return 0;
}

/* Safetensors: every tensor of the network, by name, shape and dtype; the
   class names of the metadata into cn. */
static int read_safetensors(const char *path, const StParam *ti, int nt, float *params,
                            ClassNames *cn, int k, Err *e) {
  StFile f;
  if (st_read(path, &f, e) < 0)
    return -1;
  int rc = st_load_params(&f, ti, nt, params, e);
  char **names = NULL;
  int n = 0;
  if (rc == 0 && cn && (rc = st_meta_strings(&f, "classes", &names, &n, e)) == 0)
    rc = cli_class_names_add(cn, (const char *const *)names, n, path, "metadata", k, e);
  for (int i = 0; i < n; i++)
    free(names[i]);
  free(names);
  st_free(&f);
  return rc;
}

/* A raw .f32 file: exactly PARAM_COUNT little-endian floats, what NAME_store
   writes. Read without gunzipping: floats may begin with the gzip magic. */
static int read_f32(const char *path, const Net *net, float *params, Err *e) {
  size_t len;
  size_t want = (size_t)net->param_count * sizeof(float);
  /* Never gunzipped: floats may begin with the gzip magic by chance. */
  IoLimit lim = {.max = want + 65536, .what = "a raw .f32 weights file", .plain = true};
  unsigned char *raw = io_read_capped(path, &lim, &len, e);
  if (!raw)
    return -1;
  int rc = 0;
  if (len != want)
    rc = err_set(e, path,
                 "is %zu bytes, but %s's %ld parameters take %zu (a raw .f32 weights file "
                 "holds them as little-endian floats, as %s_store writes them)",
                 len, net->file, (long)net->param_count, want, net->name);
  for (long i = 0; rc == 0 && i < net->param_count; i++) {
    const unsigned char *b = raw + 4 * i;
    uint32_t u = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    memcpy(&params[i], &u, sizeof u);
  }
  free(raw);
  return rc;
}

/* NaN or infinity anywhere would make every output NaN: the first one is
   refused, named by its tensor and index. */
float *cli_read_weights(const char *path, const Net *net, ClassNames *cn, Err *e) {
  int nt = cli_params(net, NULL);
  StParam *ti = calloc((size_t)nt + 1, sizeof *ti);
  float *params = malloc(((size_t)net->param_count + 1) * sizeof *params);
  int rc = -1;
  if (!ti || !params) {
    err_set(e, path, "out of memory");
    e->internal = 1;
  } else {
    cli_params(net, ti);
    if (is_raw_f32(path))
      rc = read_f32(path, net, params, e);
    else
      rc = read_safetensors(path, ti, nt, params, cn, (int)shape_size(net->output), e);
    if (rc == 0)
      rc = params_check_finite(path, ti, nt, params, e);
  }
  free(ti);
  if (rc < 0) {
    free(params);
    return NULL;
  }
  return params;
}

int cli_open_engine(Engine *en, const Net *net, const CliArgs *a, bool training, double images,
                    ClassNames *cn) {
  Err e = {0};
  if (cn && cli_class_names_add(cn, net->classes, net->nclasses, net->file, "classes statement",
                                (int)shape_size(net->output), &e) < 0)
    return cli_fail(&e);
  if (engine_open_run(en, net, a->backend, training, images, a->threads, &e) < 0)
    return cli_fail(&e);
  const char *wpath = a->value[CLI_WEIGHTS];
  if (wpath) {
    float *params = cli_read_weights(wpath, net, cn, &e);
    if (!params) {
      engine_close(en);
      return cli_fail(&e);
    }
    en->load(en->model, params);
    free(params);
  }
  return 0;
}

void cli_print_float(FILE *out, float v) {
  if (isfinite(v))
    fprintf(out, "%.9g", (double)v);
  else
    fputs("null", out);
}

void cli_print_json_string(FILE *out, const char *s) {
  fputc('"', out);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p == '"' || *p == '\\')
      fprintf(out, "\\%c", *p);
    else if (*p < 0x20 || *p == 0x7f)
      fprintf(out, "\\u%04x", *p);
    else
      fputc(*p, out);
  }
  fputc('"', out);
}
