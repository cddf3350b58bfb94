/*
 * cmd_compile.c: `cnngen NET.cnn -o NET.c` writes the generated source and
 * its header. Both are written to temporaries first and renamed only when
 * both are complete, so an error leaves the old files as they were.
 */
#include <stdlib.h>
#include <string.h>

#include "../compiler/compile.h"
#include "../compiler/emit.h"
#include "cli.h"
#include "io.h"

static const char help[] =
    "usage: cnngen NET.cnn [-o NET.c] [--inference-only] [--weights W] [--name NAME]\n"
    "       cnngen compile NET.cnn [options]\n"
    "\n"
    "Compiles a network to C: writes NET.c and its header NET.h, whose comments\n"
    "document the API (NAME_init, NAME_load, NAME_store, NAME_infer and the\n"
    "training entry points, with NAME the network's name). The .c file includes\n"
    "the header by its base name, so keep the two side by side. The generated C\n"
    "is C99 and needs only <stdint.h>, <stddef.h>, <string.h> and <math.h>.\n"
    "\n"
    "Both files are written completely or not at all: on any error (in the\n"
    ".cnn file or while writing) the old files stay as they were.\n"
    "\n"
    "Options:\n"
    "  -o FILE, --out FILE  the C file to write; the header is FILE with .c replaced\n"
    "                       by .h. '-o -' writes one self-contained translation unit\n"
    "                       (header inlined) to standard output. Default: the .cnn\n"
    "                       file's base name with .c, in the current directory.\n"
    "  --inference-only     leave the training code (backward passes, optimizer) out\n"
    "  --weights W          bake these trained weights into the C as\n"
    "                       `const NAME_model NAME_trained`: safetensors (PyTorch\n"
    "                       layout), or a file named *.f32 of exactly PARAM_COUNT\n"
    "                       little-endian floats, as NAME_store writes them\n"
    "  --name NAME          NAME instead of the network's name as the prefix of every\n"
    "                       generated symbol (NAME_infer, NAME_model, ...), so two\n"
    "                       builds of one network (say, the trainer's C and one with\n"
    "                       baked weights) link into one program; a C identifier\n"
    "  --dump-ir            print the IR after each compiler pass (to stderr)\n"
    "\n"
    "Examples:\n"
    "  cnngen examples/fashion.cnn -o fashion.c\n"
    "  cnngen compile net.cnn --inference-only --weights net.safetensors -o net.c\n"
    "  cnngen net.cnn --name net_v2 --inference-only --weights v2.safetensors -o v2.c\n"
    "  cc -O2 -c fashion.c\n"
    "\n"
    "Exit status: 0 success; 1 an error in the .cnn file, the weights or the\n"
    "options (nothing is written); 2 internal error.\n";

/* "dir/net.cnn" -> "net.c" */
static char *default_output(const char *cnn) {
  const char *base = strrchr(cnn, '/');
  base = base ? base + 1 : cnn;
  size_t n = strlen(base);
  if (n > 4 && strcmp(base + n - 4, ".cnn") == 0)
    n -= 4;
  char *out = malloc(n + 3);
  if (out)
    snprintf(out, n + 3, "%.*s.c", (int)n, base);
  return out;
}

/* "out/net.c" -> "out/net.h"; anything else gets ".h" appended. */
static char *header_path(const char *src) {
  size_t n = strlen(src);
  if (n > 2 && strcmp(src + n - 2, ".c") == 0)
    n -= 2;
  char *h = malloc(n + 3);
  if (h)
    snprintf(h, n + 3, "%.*s.h", (int)n, src);
  return h;
}

static int write_pair(const Net *net, EmitOptions *opt, const char *src_path, Err *e) {
  char *hdr_path = header_path(src_path);
  if (!hdr_path) {
    e->internal = 1;
    return err_set(e, src_path, "out of memory");
  }
  const char *slash = strrchr(hdr_path, '/');
  opt->header_name = slash ? slash + 1 : hdr_path;
  AtomicFile hf = {0}, sf = {0};
  int rc = -1;
  if (atomic_open(&hf, hdr_path, e) < 0)
    goto done;
  if (atomic_open(&sf, src_path, e) < 0) {
    atomic_abort(&hf);
    goto done;
  }
  emit_header(net, opt, hf.f);
  emit_source(net, opt, sf.f);
  /* Surface write errors (a full disk) before either file replaces its target. */
  if (fflush(hf.f) != 0 || ferror(hf.f) || fflush(sf.f) != 0 || ferror(sf.f)) {
    atomic_abort(&hf);
    atomic_abort(&sf);
    err_set(e, src_path, "cannot write the generated C (disk full?)");
    goto done;
  }
  if (atomic_commit(&hf, e) < 0) {
    atomic_abort(&sf);
    goto done;
  }
  rc = atomic_commit(&sf, e);
done:
  free(hdr_path);
  return rc;
}

/* The source and its header against the network file and the weights. */
static int check_outputs(const CliArgs *a, const char *src_path, Err *e) {
  char *hdr_path = header_path(src_path);
  if (!hdr_path) {
    e->internal = 1;
    return err_set(e, src_path, "out of memory");
  }
  IoPath out[2] = {{"-o", src_path}, {"the header of -o", hdr_path}};
  IoPath in[2] = {{"the network file", a->net_path}, {"--weights", a->value[CLI_WEIGHTS]}};
  int rc = io_check_outputs(out, 2, in, in[1].path ? 2 : 1, e);
  free(hdr_path);
  return rc;
}

static int run(const CliArgs *a) {
  Arena arena = {0};
  Err e = {0};
  int status = 0;
  float *weights = NULL;
  char *out = NULL;
  const char *name = a->value[CLI_NAME], *problem = name ? net_name_problem(name) : NULL;
  if (problem)
    return cli_usage_error("compile: --name: the network name %s, got '%.80s'", problem, name);
  const char *target = a->value[CLI_OUT];
  if (!target && !(target = out = default_output(a->net_path))) {
    status = 2;
    goto done;
  }
  if (strcmp(target, "-") != 0 && check_outputs(a, target, &e) < 0) {
    status = cli_fail(&e);
    goto done;
  }
  Net *net = cli_compile_net(&arena, a->net_path, a->value[CLI_DUMP_IR] ? stderr : NULL, &status);
  if (!net)
    goto done;
  if (name) /* only the C's prefix: nothing before emitting depends on it */
    snprintf(net->name, sizeof net->name, "%s", name);
  if (a->value[CLI_WEIGHTS] &&
      !(weights = cli_read_weights(a->value[CLI_WEIGHTS], net, NULL, &e))) {
    status = cli_fail(&e);
    goto done;
  }
  EmitOptions opt = {.training = !a->value[CLI_INFERENCE_ONLY], .weights = weights};
  if (strcmp(target, "-") == 0) {
    emit_source(net, &opt, stdout);
    goto done;
  }
  if (write_pair(net, &opt, target, &e) < 0)
    status = cli_fail(&e);
done:
  free(out);
  free(weights);
  arena_free(&arena);
  return status;
}

const Command cmd_compile = {
    .name = "compile",
    .summary = "write NET.c and NET.h (also: cnngen NET.cnn -o NET.c)",
    .help = help,
    .options = OPT(CLI_OUT) | OPT(CLI_INFERENCE_ONLY) | OPT(CLI_WEIGHTS) | OPT(CLI_NAME) |
               OPT(CLI_DUMP_IR),
    .min_args = 1,
    .max_args = 1,
    .run = run,
};
