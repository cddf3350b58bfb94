/*
 * emitter.h: the one object that writes generated C (emit.c).
 *
 * An Emitter owns the output stream and the indentation: every line of code
 * goes through em_line() (or em_open()/em_close() for braces), which indents
 * it to the current depth. Comments go through em_comment(), which keeps a
 * stray end-of-comment out of quoted text. Nothing here depends on the
 * network: the inference emitter (emit_infer.c) and the training emitter
 * use the same calls, and the output depends only on what they print, so it
 * is deterministic byte for byte.
 *
 *   em_open(em, "static void %s(void)", name);   ->  static void f(void) {
 *   em_line(em, "x = %d;", 1);                   ->    x = 1;
 *   em_close(em);                                ->  }
 */
#ifndef CNNGEN_EMITTER_H
#define CNNGEN_EMITTER_H

#include <stdbool.h>
#include <stdio.h>

#include "arena.h"

#define EM_PRINTF(f, a) __attribute__((format(printf, f, a)))

typedef struct Emitter {
  FILE *out;
  int depth;     /* indentation level; 2 spaces each */
  long lines;    /* lines written so far */
  Arena strings; /* em_str's, until em_free */
  bool kernels;  /* the layers' loops as calls to the JIT's kernels (emit_glue.h) */
} Emitter;

void em_init(Emitter *em, FILE *out, int depth);
void em_free(Emitter *em);

/* A formatted string of any length (names, expressions) that lives until
   em_free: the emitters build text with this, never in fixed buffers. */
const char *em_str(Emitter *em, const char *fmt, ...) EM_PRINTF(2, 3);

/* One line of code at the current depth (an empty format gives a blank line). */
void em_line(Emitter *em, const char *fmt, ...) EM_PRINTF(2, 3);
/* Lines ('\n'-separated) at depth 0: preprocessor directives. */
void em_raw(Emitter *em, const char *fmt, ...) EM_PRINTF(2, 3);
void em_blank(Emitter *em);
/* A macro of several lines at depth 0: the lines of the formatted text
   ('\n'-separated) with their continuation backslashes aligned. */
void em_define(Emitter *em, const char *fmt, ...) EM_PRINTF(2, 3);

/* "TEXT {" then one level deeper; em_close() writes "}" one level up,
   em_close_with() writes "}TEXT" (e.g. "} NAME_model;" or "};"). */
void em_open(Emitter *em, const char *fmt, ...) EM_PRINTF(2, 3);
/* em_open() for a function head "TYPE NAME(PARAMS)": lines longer than 100
   columns break after a comma, the rest aligned under the first parameter. */
void em_open_fn(Emitter *em, const char *fmt, ...) EM_PRINTF(2, 3);
/* em_line() for a call or declaration "NAME(ARGS);", broken as em_open_fn's. */
void em_call(Emitter *em, const char *fmt, ...) EM_PRINTF(2, 3);
void em_close(Emitter *em);
void em_close_with(Emitter *em, const char *fmt, ...) EM_PRINTF(2, 3);
/* Indentation without braces (the body of a one-line for/if). */
void em_indent(Emitter *em);
void em_dedent(Emitter *em);

/* A comment: one line, or for text with newlines a block whose later lines
   align under the first. A comment terminator inside the text is written
   with a space ("* /") so quoted source cannot end the comment early. */
void em_comment(Emitter *em, const char *fmt, ...) EM_PRINTF(2, 3);

/* An index expression with its constants folded: "a * 3 + b * 5 + 7" from
   the constant 7 and (const char *var, long coefficient) pairs ending with a
   NULL var; terms with coefficient 0 (or var "") go, "* 1" goes, "0" when
   nothing is left. An em_str. */
const char *em_lin(Emitter *em, long c, ...);

/* A float literal that reads back as the same float: "0.5f", "2.0f", "1e-07f";
   "(1.0f / 0.0f)", "(-1.0f / 0.0f)" and "(0.0f / 0.0f)" for the infinities and
   NaN (an em_str). */
const char *em_float(Emitter *em, float v);

/* The vector types NAME_f8 and (under AVX-512) NAME_f16 and their macros
   (NAME_FMA, NAME_LOAD, ...; NAME_FMA16, ...), written once at the top of
   the source for the inference and the training code alike; `training` adds
   the ones only training uses; `every_width` adds NAME_v (NAME_VW floats)
   and NAME_UNROLL for the kernels written once for every width. NAME_VW is
   the widest the compiling target has: 16 under AVX-512 (GCC or Clang),
   else 8. */
void em_vector_macros(Emitter *em, const char *n, bool training, bool every_width);

/* A vector width of the kernels: its floats, the suffix of its type
   (NAME_f8, NAME_f16) and of its macros (NAME_FMA, NAME_FMA16; LOAD, STORE,
   ADD, SCALE and ZERO take either), and the vector registers a tile may
   count on where that width runs: 16 ymm under AVX2 (16 f8 in NEON's 32
   q registers), 32 zmm under AVX-512. */
typedef struct EmVec {
  int w;
  const char *type, *op;
  int regs;
} EmVec;
extern const EmVec em_vec8, em_vec16;

/* The widths in the order their kernels are written, when they are written
   once per width, and the preprocessor line before each: "#if NAME_VW == 16"
   before em_vec16's, "#else" before em_vec8's (the caller writes "#endif"). */
extern const EmVec *const em_widths[2];
void em_width_if(Emitter *em, const char *n, const EmVec *v);

#endif
