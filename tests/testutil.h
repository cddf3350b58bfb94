/*
 * testutil.h: what the CMocka test programs share. Each program works in a
 * temporary directory of its own (tu_setup / tu_teardown, given to
 * cmocka_run_group_tests), writes files there, and runs the cnngen binary
 * ($CNNGEN as tests/run-all sets it; default build/cnngen) inside it.
 * Programs that test the compiler in process compile networks from memory
 * and build their generated training code with a backend (tu_compile,
 * tu_build_training).
 */
#ifndef CNNGEN_TESTUTIL_H
#define CNNGEN_TESTUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "backend.h"
#include "compile.h"
#include "formats/idx.h"

extern char tu_tmp[];           /* the test program's directory */
extern char tu_repo[];          /* where it started: the repository root */
extern const char *tu_cnngen;   /* the binary, as an absolute path */
extern char tu_out[], tu_err[]; /* the last tu_run's stdout and stderr */
extern const size_t tu_out_cap, tu_err_cap;

/* Group setup and teardown: make and remove the directory. */
int tu_setup(void **state);
int tu_teardown(void **state);

/* NAME inside the directory (a rotating set of 8 buffers). */
char *tu_path(const char *name);
void tu_write_text(const char *name, const char *text);
/* Reads FILE (any path) into buf, NUL-terminated; returns its length. */
size_t tu_read_file(const char *file, char *buf, size_t cap);
bool tu_exists(const char *name);
/* How many times needle occurs in text. */
int tu_count(const char *text, const char *needle);

/* The reference cases that tests/reference/make-reference writes (PyTorch,
   float64), and TU_REFERENCE "/" NAME (a case, a file in one, or
   fashion-pytorch.safetensors), relative to the repository root, where the
   programs run (a rotating set of 8 buffers). A missing one fails the test
   with its path and the command that makes it. */
#define TU_REFERENCE "tests/reference"
enum { TU_REFERENCE_CASES = 18 };
extern const char *const tu_reference_cases[TU_REFERENCE_CASES];
const char *tu_reference(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* tests/reference/check's tolerances for outputs: float32 against a float64
   reference, |got - want| <= ATOL + RTOL |want|. */
#define TU_PREDICT_ATOL 2e-5
#define TU_PREDICT_RTOL 1e-4

/* NAME.cnn from SRC (which must compile), random weights for it in
   NAME.safetensors and n random images for it in the IDX file NAME-images,
   all in the directory; the same files on every call. */
void tu_random_net(const char *name, const char *src, int n);

/* The numbers of every `"outputs": [...]` list in text (the lines of `cnngen
   predict --json`, or an expected_outputs.jsonl), in order, at most max
   (more fails the test); returns how many. */
int tu_outputs(const char *text, double *out, int max);
/* Each got[i] within the tolerances above of want[i] (otherwise fails the
   test, naming `what` and i); returns the largest difference. */
double tu_compare_outputs(const char *what, const double *got, const double *want, int count);

/* Runs `cnngen ARGS` (a shell word list) inside the directory; returns the
   exit status (128 + signal when killed), stdout and stderr in tu_out and
   tu_err. A sanitizer report fails the test whatever the status. */
int tu_run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The same for any shell command line. */
int tu_shell(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Whether the shell finds program NAME on the PATH. */
bool tu_has_program(const char *name);
/* Starts `cnngen ARGS` inside the directory without waiting for it (its
   stdout and stderr go to the files ".out" and ".err" there); its pid. */
pid_t tu_start(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The same for any shell command line (`exec` it for the pid to be the
   command's). */
pid_t tu_start_shell(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Polls until file NAME in the directory (".out", ".err", a checkpoint)
   holds `needle`; fails the test if the started run ends first. */
void tu_await(pid_t pid, const char *name, const char *needle);
/* Waits for the started run to end: its exit status as tu_run returns it,
   stdout and stderr in tu_out and tu_err. */
int tu_finish(pid_t pid);

/* DIR in the directory with n_train / n_test 12x12 gray images in IDX files:
   class k (of 4) is a bright square in quadrant k on noise, so a small
   network learns it in an epoch. The same images on every call. */
void tu_quadrant_data(const char *dir, int n_train, int n_test);
/* DIR in the directory with the first n_train / n_test images of the real
   Fashion-MNIST (Debian's dataset-fashion-mnist) as IDX files; false, and
   nothing made, when the data set is not installed. A DIR already there is
   taken as made. */
bool tu_fashion_subset(const char *dir, int n_train, int n_test);
/* im and lb as DIR/WHICH-images-idx3-ubyte and DIR/WHICH-labels-idx1-ubyte
   in the directory (WHICH: "train" or "t10k"). */
void tu_write_idx(const char *dir, const char *which, const IdxImages *im, const IdxLabels *lb);

/* A JPEG of h x w x c (1 or 3) bytes as NAME in the directory, encoded by
   libjpeg at `quality` (100: near lossless); returns its path. */
const char *tu_write_jpeg(const char *name, const unsigned char *pixels, int h, int w, int c,
                          int quality);

/* Compiles SRC as PATH, its messages into *msgs (free them); the Net, which
   exists exactly when there was no error; *errors (when not NULL) counts
   the errors. */
Net *tu_compile(Arena *a, const char *path, const char *src, size_t len, char **msgs, int *errors);
/* SRC as t.cnn, which must compile. */
Net *tu_compile_ok(Arena *a, const char *src);

/* NET's C with its training code, built by backend KIND, with
   NAME_t_model_bytes() and NAME_t_work_bytes() added. With dbl, `float` is
   defined as `double` (expf as exp, ...): the code runs in double. */
Program *tu_build_training(const Net *net, BackendKind kind, bool dbl);
/* NAME<suffix> in PROG; a missing one fails the test. */
void *tu_symbol(Program *prog, const Net *net, const char *suffix);
/* What the function NAME<suffix>(void) returns (a size in bytes). */
size_t tu_call_size(Program *prog, const Net *net, const char *suffix);
/* BYTES rounded up to 64 (at least 64), zeroed, 64-byte aligned. */
void *tu_zalloc(size_t bytes);

/* The tensors of two weights files in the directory, bit for bit (metadata
   aside); a file that cannot be read fails the test. */
bool tu_same_tensors(const char *a, const char *b);

#define assert_contains(hay, needle)                                                               \
  do {                                                                                             \
    if (!strstr(hay, needle))                                                                      \
      fail_msg("expected to find \"%s\" in:\n%s", needle, hay);                                    \
  } while (0)

#endif
