/*
 * ast.h: what the parser hands to lower.c, internal to the front end.
 *
 * The grammar knows no layer kinds: every line is a generic statement, a
 * word followed by arguments, optionally opening a block of statements:
 *
 *   conv2d 32 3x3 stride=2 relu        word, then args: number, dims, key=value, word
 *   class_weights 1,2,0.5              a comma list is one argument
 *   train { ... }                      a block: the same statements inside
 *
 * lower.c decides what each word means, so a new layer kind never touches
 * grammar/parser.y. Everything lives in the compilation's arena.
 */
#ifndef CNNGEN_AST_H
#define CNNGEN_AST_H

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "arena.h"
#include "diag.h"
#include "ir.h"

typedef enum {
  ARG_WORD,   /* relu, same, balanced */
  ARG_NUMBER, /* 32, 0.001, 1e-7, -1 */
  ARG_DIMS,   /* 3x3, 28x28x1 */
  ARG_KEYVAL, /* stride=2: text is the key, value the value */
  ARG_LIST,   /* 1,2,0.5: items */
  ARG_STRING, /* "T-shirt/top": text without the quotes (classes only) */
} ArgKind;

enum { ARG_MAX_DIMS = 4 }; /* dims kept; ndims counts them all */

typedef struct Arg Arg;
typedef struct ArgList {
  Arg *head, *tail;
  int n;
} ArgList;

struct Arg {
  ArgKind kind;
  Loc loc;
  const char *text; /* the token as written (ARG_KEYVAL: the key; ARG_LIST: a,b,c) */
  double num;       /* ARG_NUMBER */
  int ndims;        /* ARG_DIMS */
  long dims[ARG_MAX_DIMS];
  Arg *value;    /* ARG_KEYVAL */
  ArgList items; /* ARG_LIST: two or more plain values */
  Arg *next;
};

typedef struct Stmt Stmt;
typedef struct StmtList {
  Stmt *head, *tail;
  int n;
} StmtList;

struct Stmt {
  Loc loc;          /* the statement's word */
  const char *word; /* conv2d, train, loss, ... */
  const char *text; /* the source line, trimmed, without its comment */
  ArgList args;
  Loc end;     /* just after the last argument: where a missing one goes */
  bool broken; /* its line had a syntax error (reported): the arguments are
                  missing or not to be trusted; word is NULL if the line did
                  not begin with one. A block: the line of its '{'. */
  bool orphan; /* it follows a '{' lost on a broken line, not yet closed */
  bool block;
  bool unclosed; /* block: its '}' is missing (reported), it ends with the file */
  Loc open_loc;  /* block: the '{' */
  StmtList body; /* block: the statements inside */
  Stmt *next;
};

/* At most 40 bytes of s, with "..." when cut: user text quoted in messages. */
static inline const char *ast_clip(char *buf, size_t size, const char *s) {
  snprintf(buf, size, "%.40s%s", s, strlen(s) > 40 ? "..." : "");
  return buf;
}

/* Parses src (parser.y). Reports syntax errors to d and returns their
   number; out receives the statements, broken ones included (empty if the
   parser gave up). */
int parse(Arena *a, const char *path, const char *src, size_t len, Diag *d, StmtList *out);

#endif
