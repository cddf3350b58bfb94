/*
 * compile.h: the compiler's one entry point. compile() runs the passes in
 * order (compile.c):
 *
 *   parse      grammar/parser.y + lexer.l -> statements (ast.h)
 *   lower      lower.c: statements -> Net (layers, train config, names)
 *   shape      shape.c: shapes, parameters, MACs, every check
 *   fuse       fuse.c: conv/dense + activation, conv + pool
 *   plan       plan.c: memory plan and state sizes
 *
 * Emitting C (emit.h) is a separate step on the finished Net.
 */
#ifndef CNNGEN_COMPILE_H
#define CNNGEN_COMPILE_H

#include <stdio.h>

#include "arena.h"
#include "diag.h"
#include "ir.h"

typedef struct CompileOptions {
  FILE *dump_ir; /* non-NULL: print the IR after each pass here */
} CompileOptions;

/* Compiles the source text `src` of file `path`. Everything (the Net, its
   strings) lives in arena `a`. Errors go to `d`; returns NULL if any. */
Net *compile(Arena *a, const char *path, const char *src, size_t len, const CompileOptions *opt,
             Diag *d);

/* The passes, for tests and for compile(). Each returns the number of
   errors it reported. lower() gives a Net (NULL only when parsing left
   nothing to lower) even after errors, with what it could not read marked
   for shape_check(), which then checks the rest without repeating them. */
int lower(Arena *a, const char *path, const char *src, size_t len, Diag *d, Net **out);
/* NULL when `name` can name a network (`network NAME`, `--name NAME`): a C
   identifier short enough for Net.name; else what is wrong with it, to
   follow "the network name ". (lower.c) */
const char *net_name_problem(const char *name);
/* Every word the language gives a meaning to (statements, layer kinds,
   activations, options, training settings and their values), read from
   the tables lowering itself uses; fills out[0..max) and returns how many
   there are. (lower.c) */
int lower_words(const char **out, int max);
int shape_check(Net *net, Diag *d);
void fuse(Net *net);
void plan_memory(Net *net);

/* Prints the table `cnngen check` shows (also the header's opening
   comment, each line prefixed with `prefix`). (summary.c) */
void summary_print(const Net *net, FILE *out, const char *prefix);
/* The classes statement's names as it writes them (a word bare, anything
   else quoted) after "classes (line N):"; nothing without one. Not part of
   summary_print: a name may hold what ends a C comment. (summary.c) */
void summary_classes(const Net *net, FILE *out, const char *prefix);
/* "26x26x32" for an image, "10" for a vector; returns buf. (summary.c) */
const char *summary_shape(char *buf, size_t size, Shape s);
/* Prints the IR, for --dump-ir. (summary.c) */
void ir_dump(const Net *net, FILE *out, const char *after_pass);

#endif
