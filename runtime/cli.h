/*
 * cli.h: the command line. main.c finds the command (a Command from the
 * COMMANDS table), cli_parse() reads its options and arguments the same way
 * for every command, and the command's run() does the work and returns the
 * exit status: 0 success, 1 user error, 2 internal error.
 *
 * Adding a command: write runtime/cmd_NAME.c defining `const Command
 * cmd_NAME`, add X(NAME) to COMMANDS below and cmd_NAME to the Makefile's
 * RUNTIME list. Adding an option: one line in CLI_OPTIONS.
 */
#ifndef CNNGEN_CLI_H
#define CNNGEN_CLI_H

#include <stdbool.h>
#include <stdio.h>

#include "../compiler/arena.h"
#include "../compiler/ir.h"
#include "backend.h"
#include "engine.h"
#include "err.h"
#include "formats/safetensors.h"

#define CNNGEN_VERSION "0.1.0"

/* The commands, in the order `cnngen --help` lists them. */
#define COMMANDS(X) X(compile) X(check) X(predict) X(eval) X(train) X(explain) X(export) X(import)

/* Every option any command takes, described once. */
/* clang-format off */
/*   enum                long name         short  value     range (ARG_INT, ARG_REAL) */
#define CLI_OPTIONS(X)                                                        \
  X(CLI_OUT,            "out",            'o',   ARG_TEXT, 0, 0)              \
  X(CLI_WEIGHTS,        "weights",        0,     ARG_TEXT, 0, 0)              \
  X(CLI_DATA,           "data",           0,     ARG_TEXT, 0, 0)              \
  X(CLI_JSON,           "json",           0,     ARG_NONE, 0, 0)              \
  X(CLI_BACKEND,        "backend",        0,     ARG_TEXT, 0, 0)              \
  X(CLI_THREADS,        "threads",        0,     ARG_INT,  1, 256)            \
  X(CLI_TOP,            "top",            0,     ARG_INT,  1, 1000000)        \
  X(CLI_THRESHOLD,      "threshold",      0,     ARG_REAL, 0, 1)              \
  X(CLI_INFERENCE_ONLY, "inference-only", 0,     ARG_NONE, 0, 0)              \
  X(CLI_DUMP_IR,        "dump-ir",        0,     ARG_NONE, 0, 0)              \
  X(CLI_EPOCHS,         "epochs",         0,     ARG_INT,  0, 1000000)        \
  X(CLI_BATCH,          "batch",          0,     ARG_INT,  1, 1048576)        \
  X(CLI_SEED,           "seed",           0,     ARG_INT,  0, 1e18)           \
  X(CLI_CHECKPOINT,     "checkpoint",     0,     ARG_TEXT, 0, 0)              \
  X(CLI_RESUME,         "resume",         0,     ARG_TEXT, 0, 0)              \
  X(CLI_LOG,            "log",            0,     ARG_TEXT, 0, 0)              \
  X(CLI_PLOT,           "plot",           0,     ARG_TEXT, 0, 0)              \
  X(CLI_METHOD,         "method",         0,     ARG_TEXT, 0, 0)              \
  X(CLI_CLASS,          "class",          0,     ARG_INT,  0, 1000000)        \
  X(CLI_INDEX,          "index",          0,     ARG_INT,  0, 1e9)            \
  X(CLI_NAME,           "name",           0,     ARG_TEXT, 0, 0)              \
  X(CLI_WEIGHTS_OUT,    "weights-out",    0,     ARG_TEXT, 0, 0)
/* clang-format on */

typedef enum { ARG_NONE, ARG_TEXT, ARG_INT, ARG_REAL } CliArgKind;

#define X_ENUM(e, ...) e,
typedef enum { CLI_OPTIONS(X_ENUM) CLI_COUNT } CliOption;
#undef X_ENUM

#define OPT(o) (1u << (o)) /* a set of options, for Command */

typedef struct CliArgs CliArgs;

typedef struct Command {
  const char *name;
  const char *summary; /* one line for `cnngen --help` */
  const char *help;    /* the full text of `cnngen help NAME` */
  unsigned options;    /* OPT(CLI_...) | ...: the options it takes */
  unsigned required;   /* the options it cannot do without */
  const char *first;   /* what the first argument is, for "no X given"; NULL: "network file" */
  int min_args;        /* positional arguments, NET.cnn included */
  int max_args;        /*   (-1: no limit) */
  int (*run)(const CliArgs *a);
} Command;

struct CliArgs {
  const Command *cmd;
  const char *program;  /* argv[0] as invoked (main sets it), for commands printed back */
  const char *net_path; /* the first positional argument */
  char **inputs;        /* the others */
  int ninputs;
  const char *value[CLI_COUNT]; /* as written; NULL if not given, "" for flags */
  long num[CLI_COUNT];          /* ARG_INT values (defaults filled in) */
  double real[CLI_COUNT];       /* ARG_REAL values (defaults filled in) */
  BackendKind backend;          /* --backend, default auto */
  int threads;                  /* --threads, default the number of CPUs */
};

#define X_DECL(name) extern const Command cmd_##name;
COMMANDS(X_DECL)
#undef X_DECL

/* Parses argv[0..argc) (the words after the command) for `cmd`. Returns 0
   on success; otherwise the exit status to return at once, having printed
   an error (1) or the help asked for with --help (-1: exit 0). */
int cli_parse(const Command *cmd, int argc, char **argv, CliArgs *a);
void cli_args_free(CliArgs *a);

/* Writes the command line `PROGRAM COMMAND NET.cnn [INPUT...]` with the
   options of a that are in `keep` (a set of OPT(CLI_...)), each word quoted
   for a POSIX shell where it needs to be; no newline. */
void cli_write_command(FILE *out, const CliArgs *a, unsigned keep);
/* One word, single-quoted unless it is plain (letters, digits, - _ . / = : , + @ %). */
void cli_write_word(FILE *out, const char *word);

/* The closest of `words` to `word` by edit distance, or NULL when none is
   near enough to be a likely typo. */
const char *cli_suggest(const char *word, const char *const *words, int n);

/* Prints "cnngen: error: MSG" to stderr; returns 1, or 2 for an internal
   error. */
int cli_fail(const Err *e);
/* Prints "cnngen: error: FMT..." (a usage mistake); returns 1. */
int cli_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Reads and compiles a .cnn file into arena `a`; diagnostics go to stderr.
   On failure returns NULL with *status set (1, or 2 for an internal error). */
Net *cli_compile_net(Arena *a, const char *path, FILE *dump_ir, int *status);

/* The network's parameter tensors in file order, as the weights formats see
   them; returns their number. `out` may be NULL to count. */
int cli_params(const Net *net, StParam *out);
/* Writes `net`'s weights (flat `params`) as safetensors with the network's
   name and `extra_meta` pairs (may be NULL) in the metadata. */
int cli_write_weights(const char *path, const Net *net, const float *params,
                      const char *const *extra_meta, Err *e);
/* The counts of batches each layer with running statistics has tracked,
   tracked[layer index], as LAYER.num_batches_tracked: a malloc'd array (NULL
   when out of memory), their number in *n (0 where tracked is NULL). */
StCount *cli_counts(const Net *net, const long long *tracked, int *n);
/* The reverse: each LAYER.num_batches_tracked that f holds into
   tracked[layer index] (optional, as in PyTorch's files: the others are left
   as they are). */
void cli_read_counts(const Net *net, const StFile *f, long long *tracked);
/* cli_read_counts from the weights file at path, where it is safetensors: a
   raw .f32 file (cli_read_weights) holds parameters only, and reads none. */
int cli_read_weight_counts(const char *path, const Net *net, long long *tracked, Err *e);
/* cli_write_weights with the layers' num_batches_tracked (tracked: as
   cli_counts takes it; NULL: none written). */
int cli_write_trained(const char *path, const Net *net, const float *params,
                      const long long *tracked, const char *const *extra_meta, Err *e);

/* The names of a network's outputs, from the first source that gives them:
   the network's classes statement, the data (an image folder's class
   folders, classes.txt), the weights' metadata ("classes"). */
typedef struct ClassNames {
  int n;          /* 0: none yet */
  char **names;   /* [n], owned */
  char from[512]; /* "examples/fashion.cnn's classes statement" */
} ClassNames;

/* Adds a source of names (`path` and `what` say which, for messages): the
   first one gives the names; a later one must agree with them, name for
   name, or it is an error naming both. A source whose count is not the
   network's k outputs is an error too. n = 0 adds nothing. */
int cli_class_names_add(ClassNames *cn, const char *const *names, int n, const char *path,
                        const char *what, int k, Err *e);
void cli_class_names_free(ClassNames *cn);
/* The name of class i, or NULL. */
const char *cli_class_name(const ClassNames *cn, int i);

/* Reads a weights file for `net` into a new flat parameter array (NAME_load's
   order, PyTorch layout); NULL and e filled on failure. With cn, the names
   in a safetensors file's metadata are added to it (cli_class_names_add). */
float *cli_read_weights(const char *path, const Net *net, ClassNames *cn, Err *e);

/* Compiles `net` for a.backend and a.threads and, when --weights was given,
   loads them. With cn, gathers the class names of the network and of the
   weights into it. `images`: what the run will put through the network, for
   --backend auto (engine_open_run). Returns 0, or the exit status after
   printing the error. */
int cli_open_engine(Engine *en, const Net *net, const CliArgs *a, bool training, double images,
                    ClassNames *cn);

/* Prints v so that it reads back as the same float (JSON: null for NaN/inf). */
void cli_print_float(FILE *out, float v);
/* Prints s as a JSON string: quoted, with '"', '\\' and control bytes escaped. */
void cli_print_json_string(FILE *out, const char *s);

#endif
