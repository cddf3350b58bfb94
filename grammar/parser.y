/*
 * parser.y: the grammar of .cnn files.
 *
 * The grammar is generic on purpose: a statement is a word and its
 * arguments, optionally opening a block of more statements. It does not
 * know what conv2d or train mean; lower.c and the tables in ops.h do, so a
 * new layer kind never touches this file.
 *
 * Errors: the custom reporter turns Bison's LAC-exact expected-token sets
 * into "expected a value after 'stride=', got end of line". `error NEWLINE`
 * resynchronizes at the end of the line, so one bad line costs one message;
 * an unclosed '{' is reported at the end of the file with a note pointing
 * back at it (the scanner then closes it). The scanner (lexer.l) reports
 * stray characters and malformed numbers itself; the parser then keeps
 * quiet about that line.
 *
 * Parsing always ends with a statement list, so that lower.c can go on to
 * find the errors of meaning in the same run. A line with a syntax error
 * still becomes a statement, marked `broken` (its word, if it began with
 * one, and no arguments to trust): lower.c then knows that, say, a layer
 * was meant there, and checks nothing that depends on it. Statements after
 * a '{' that was lost on a broken line are marked `orphan`.
 */

%code requires {
#include "ast.h"

#ifndef YY_TYPEDEF_YY_SCANNER_T
#define YY_TYPEDEF_YY_SCANNER_T
typedef void *yyscan_t;
#endif

typedef struct OpenBlock {
  Loc loc; /* the '{' */
  struct OpenBlock *up;
} OpenBlock;

/* Shared by the scanner (as its yyextra) and the parser. */
typedef struct ParseState {
  Arena *arena;
  Diag *diag;
  const char *path;
  const char *src;
  size_t len;
  const size_t *line_start; /* byte offset of each line, [0] = line 1 */
  int nlines;

  /* Scanner position and what it saw last (for messages). */
  int line, col;
  bool line_has_token; /* a NEWLINE is due at the end of this line */
  Loc after_last;      /* just after the last token: where NEWLINE and EOF point */
  int tok, prev_tok;   /* token kinds */
  bool tok_first;      /* the last token was the first of its line */
  bool tok_unmatched;  /* the last token was a '}' without any '{' before it */
  const char *tok_text; /* the last word, number or dimensions */
  const char *last_word;
  int depth; /* '{' minus '}' seen by the scanner */

  /* The first token of the line being read, and the '{' depth before it:
     what a broken line was (a statement word, a '}'). */
  int line_tok;
  const char *line_word;
  Loc line_loc;
  int line_depth;

  int error_line; /* the last line that got a message: one per line */
  OpenBlock *open; /* blocks the parser is inside, innermost first */
  int nopen;       /*   and how many */
  int lost;        /* '{' dropped with broken top-level lines and not yet closed */
  bool eof_closing; /* at the end of the file: unclosed blocks are being closed */
  StmtList stmts;
} ParseState;
}

%code {
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lexer.h"

/* Locations are Loc (ir.h): a nonterminal is where its first symbol is. */
#define YYLLOC_DEFAULT(Cur, Rhs, N)   \
  do {                                \
    if (N)                            \
      (Cur) = YYRHSLOC(Rhs, 1);       \
    else                              \
      (Cur) = YYRHSLOC(Rhs, 0);       \
  } while (0)

static void yyerror(const Loc *loc, yyscan_t scanner, ParseState *ps, const char *msg);
static void parse_finish(ParseState *ps, StmtList *stmts);
static StmtList stmt_append(StmtList list, Stmt *s);
static Stmt *stmt_new(ParseState *ps, const char *word, const Loc *loc, ArgList args,
                      const Loc *end);
static Stmt *block_new(ParseState *ps, const char *word, const Loc *loc, ArgList args,
                       StmtList body, bool broken);
static Stmt *stmt_broken(ParseState *ps);
static bool line_had_error(const ParseState *ps, const Loc *newline);
static void block_open(ParseState *ps, const Loc *loc);
static ArgList arg_append(ArgList list, Arg *a);
static ArgList arg_pair(Arg *a, Arg *b);
static Arg *arg_atom(ParseState *ps, ArgKind kind, const char *text, const Loc *loc);
static Arg *arg_string(ParseState *ps, const char *text, const Loc *loc);
static Arg *arg_keyval(ParseState *ps, const char *key, const Loc *loc, Arg *value);
static Arg *arg_list(ParseState *ps, ArgList items);
}

%define api.pure full
%define api.location.type {Loc}
%locations
%param {yyscan_t scanner}
%parse-param {ParseState *ps}
%define parse.error custom
%define parse.lac full
%expect 0

%union {
  const char *str;
  Arg *arg;
  ArgList args;
  Stmt *stmt;
  StmtList stmts;
  bool flag;
}

%token <str> WORD NUMBER DIMS STRING
%token NEWLINE
%type <arg> arg value atom
%type <args> args list
%type <stmt> stmt
%type <stmts> stmts
%type <flag> end

%%

file  : stmts                             { parse_finish(ps, &$1); }
      ;
stmts : %empty                            { $$ = (StmtList){0}; }
      | stmts stmt                        { $$ = stmt_append($1, $2); }
      ;
stmt  : WORD args NEWLINE                 { $$ = stmt_new(ps, $1, &@1, $2, &@3); }
      | WORD args open end stmts '}' end  { $$ = block_new(ps, $1, &@1, $2, $5, $4); }
      | WORD args open '}' end            { $$ = block_new(ps, $1, &@1, $2, (StmtList){0}, $5); }
      | error NEWLINE                     { $$ = stmt_broken(ps); yyerrok; }
      ;
open  : '{'                               { block_open(ps, &@1); }
      ;
end   : NEWLINE                           { $$ = line_had_error(ps, &@1); }
      | error NEWLINE                     { $$ = true; yyerrok; }
      ;
args  : %empty                            { $$ = (ArgList){0}; }
      | args arg                          { $$ = arg_append($1, $2); }
      ;
arg   : value
      | WORD '=' value                    { $$ = arg_keyval(ps, $1, &@1, $3); }
      ;
value : atom
      | list                              { $$ = arg_list(ps, $1); }
      ;
list  : atom ',' atom                     { $$ = arg_pair($1, $3); }
      | list ',' atom                     { $$ = arg_append($1, $3); }
      ;
atom  : WORD                              { $$ = arg_atom(ps, ARG_WORD, $1, &@1); }
      | NUMBER                            { $$ = arg_atom(ps, ARG_NUMBER, $1, &@1); }
      | DIMS                              { $$ = arg_atom(ps, ARG_DIMS, $1, &@1); }
      | STRING                            { $$ = arg_string(ps, $1, &@1); }
      ;

%%

/* ---- error messages ---- */

static void yyerror(const Loc *loc, yyscan_t scanner, ParseState *ps, const char *msg) {
  (void)scanner;
  /* Only "memory exhausted": the parser stack outgrew YYMAXDEPTH. */
  diag_error(ps->diag, *loc, "%s (blocks nested too deeply?)", msg);
}

/* What the lookahead is, as the user wrote it. */
static void describe_seen(char *out, size_t size, yysymbol_kind_t kind, const ParseState *ps) {
  char buf[64];
  const char *text = ps->tok_text ? ast_clip(buf, sizeof buf, ps->tok_text) : "";
  switch (kind) {
  case YYSYMBOL_WORD:
    snprintf(out, size, "word '%s'", text);
    break;
  case YYSYMBOL_NUMBER:
    snprintf(out, size, "number '%s'", text);
    break;
  case YYSYMBOL_DIMS:
    snprintf(out, size, "dimensions '%s'", text);
    break;
  case YYSYMBOL_STRING:
    snprintf(out, size, "quoted name \"%s\"", text);
    break;
  case YYSYMBOL_NEWLINE:
    snprintf(out, size, "end of line");
    break;
  default:
    snprintf(out, size, "%s", yysymbol_name(kind)); /* '=' and the like */
    break;
  }
}

/* "an argument, ',', '{' or end of line" from the expected token kinds; a
   word, number and dimensions together are "a value" after '=' or ',' and
   "an argument" elsewhere. */
static void describe_expected(char *out, size_t size, const yysymbol_kind_t *exp, int n,
                              const ParseState *ps) {
  const struct {
    yysymbol_kind_t kind;
    const char *name;
  } order[] = {{YYSYMBOL_WORD, "a word"},
               {YYSYMBOL_NUMBER, "a number"},
               {YYSYMBOL_DIMS, "dimensions like 3x3"},
               {YYTRANSLATE('='), "'='"},
               {YYTRANSLATE(','), "','"},
               {YYTRANSLATE('{'), "'{'"},
               {YYTRANSLATE('}'), "'}'"},
               {YYSYMBOL_NEWLINE, "end of line"}};
  enum { NORDER = sizeof order / sizeof order[0] };
  bool want[NORDER] = {false};
  for (int i = 0; i < n; i++)
    for (int k = 0; k < NORDER; k++)
      want[k] |= exp[i] == order[k].kind;
  const char *names[NORDER];
  int count = 0;
  bool value = want[0] && want[1] && want[2];
  if (value)
    names[count++] = ps->prev_tok == '=' || ps->prev_tok == ',' ? "a value" : "an argument";
  for (int k = value ? 3 : 0; k < NORDER; k++)
    if (want[k])
      names[count++] = order[k].name;
  size_t used = 0;
  out[0] = '\0';
  for (int i = 0; i < count && used < size; i++) {
    const char *sep = i == 0 ? "" : i == count - 1 ? " or " : ", ";
    used += (size_t)snprintf(out + used, size - used, "%s%s", sep, names[i]);
  }
}

/* Where the parser was: "after 'stride='", "at the start of a statement". */
static void describe_context(char *out, size_t size, const ParseState *ps) {
  char buf[64];
  out[0] = '\0';
  if (ps->tok_first)
    snprintf(out, size, " at the start of a statement");
  else if (ps->prev_tok == '=' && ps->last_word)
    snprintf(out, size, " after '%s='", ast_clip(buf, sizeof buf, ps->last_word));
  else if (ps->prev_tok == ',' || ps->prev_tok == '{' || ps->prev_tok == '}')
    snprintf(out, size, " after '%c'", ps->prev_tok);
}

static int yyreport_syntax_error(const yypcontext_t *ctx, yyscan_t scanner, ParseState *ps) {
  (void)scanner;
  yysymbol_kind_t kind = yypcontext_token(ctx);
  Loc loc = *yypcontext_location(ctx);
  if (kind == YYSYMBOL_YYEOF) {
    if (ps->depth == 0)
      return 0; /* every '{' was closed, but on a line dropped with an error */
    diag_error(ps->diag, loc, "expected '}' before end of file");
    if (ps->open)
      diag_note(ps->diag, ps->open->loc, "to match this '{'");
    return 0;
  }
  if (loc.line == ps->error_line)
    return 0; /* the scanner already reported this line */
  ps->error_line = loc.line;
  if (kind == YYSYMBOL_YYerror)
    return 0;
  if (ps->tok == '}' && ps->tok_unmatched) {
    diag_error(ps->diag, loc, "'}' without a matching '{'");
    return 0;
  }
  if (ps->tok == '}' && !ps->open) {
    ps->lost -= ps->lost > 0;
    return 0; /* its '{' was dropped with a line that already got a message */
  }
  yysymbol_kind_t exp[YYNTOKENS];
  int n = yypcontext_expected_tokens(ctx, exp, YYNTOKENS);
  char seen[128], expected[256], context[96];
  describe_seen(seen, sizeof seen, kind, ps);
  describe_expected(expected, sizeof expected, exp, n < 0 ? 0 : n, ps);
  describe_context(context, sizeof context, ps);
  diag_error(ps->diag, loc, "expected %s%s, got %s", expected, context, seen);
  return 0;
}

/* ---- building the statement list (one call per grammar action) ---- */

/* file: stmts */
static void parse_finish(ParseState *ps, StmtList *stmts) { ps->stmts = *stmts; }

/* stmts: stmts stmt */
static StmtList stmt_append(StmtList list, Stmt *s) {
  if (!s)
    return list; /* a line dropped by error recovery */
  if (list.tail)
    list.tail->next = s;
  else
    list.head = s;
  list.tail = s;
  list.n++;
  return list;
}

/* The source line of loc, trimmed, without its comment. */
static const char *line_text(ParseState *ps, const Loc *loc) {
  if (loc->line < 1 || loc->line > ps->nlines)
    return "";
  const char *p = ps->src + ps->line_start[loc->line - 1];
  const char *end = ps->src + ps->len;
  const char *q = p;
  while (q < end && *q != '\n' && *q != '#')
    q++;
  while (p < q && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\f' || *p == '\v'))
    p++;
  while (q > p && (q[-1] == ' ' || q[-1] == '\t' || q[-1] == '\r' || q[-1] == '\f' ||
                   q[-1] == '\v'))
    q--;
  return arena_strndup(ps->arena, p, (size_t)(q - p));
}

/* Whether the line that `newline` ends got a message (from the scanner:
   the parser's own errors go through `error`). */
static bool line_had_error(const ParseState *ps, const Loc *newline) {
  return ps->error_line == newline->line;
}

/* stmt: WORD args NEWLINE */
static Stmt *stmt_new(ParseState *ps, const char *word, const Loc *loc, ArgList args,
                      const Loc *end) {
  Stmt *s = arena_alloc(ps->arena, sizeof *s);
  s->loc = *loc;
  s->word = word;
  s->text = line_text(ps, loc);
  s->args = args;
  s->end = *end;
  s->broken = line_had_error(ps, end);
  s->orphan = ps->lost > 0 && ps->nopen == 0;
  return s;
}

/* stmt: error NEWLINE. The line as far as it is known: its first word (NULL
   if it began otherwise), no arguments. A line that began with '}' closed
   something and is no statement. */
static Stmt *stmt_broken(ParseState *ps) {
  if (ps->line_tok == '}')
    return NULL;
  Stmt *s = stmt_new(ps, ps->line_tok == WORD ? ps->line_word : NULL, &ps->line_loc,
                     (ArgList){0}, &ps->after_last);
  s->broken = true;
  if (ps->nopen == 0 && ps->depth > ps->line_depth)
    ps->lost += ps->depth - ps->line_depth; /* its '{' is gone: what follows is orphan */
  return s;
}

/* open: '{' */
static void block_open(ParseState *ps, const Loc *loc) {
  OpenBlock *b = arena_alloc(ps->arena, sizeof *b);
  b->loc = *loc;
  b->up = ps->open;
  ps->open = b;
  ps->nopen++;
}

/* stmt: WORD args open end stmts '}' end | WORD args open '}' end.
   `broken`: the line of the '{' had an error (its end was dropped). */
static Stmt *block_new(ParseState *ps, const char *word, const Loc *loc, ArgList args,
                       StmtList body, bool broken) {
  Loc open = ps->open->loc;
  ps->open = ps->open->up;
  ps->nopen--;
  Stmt *s = stmt_new(ps, word, loc, args, &open);
  s->broken = broken;
  s->block = true;
  s->unclosed = ps->eof_closing;
  s->open_loc = open;
  s->body = body;
  return s;
}

/* args: args arg, list: list ',' atom */
static ArgList arg_append(ArgList list, Arg *a) {
  if (list.tail)
    list.tail->next = a;
  else
    list.head = a;
  list.tail = a;
  list.n++;
  return list;
}

/* list: atom ',' atom */
static ArgList arg_pair(Arg *a, Arg *b) { return arg_append(arg_append((ArgList){0}, a), b); }

/* atom: WORD | NUMBER | DIMS. The value of a number or dimensions token
   (lexer.l checked the form). */
static Arg *arg_atom(ParseState *ps, ArgKind kind, const char *text, const Loc *loc) {
  Arg *a = arena_alloc(ps->arena, sizeof *a);
  a->kind = kind;
  a->loc = *loc;
  a->text = text;
  if (kind == ARG_NUMBER)
    a->num = strtod(text, NULL);
  if (kind == ARG_DIMS) {
    for (const char *p = text; *p;) {
      long v = 0;
      for (; *p >= '0' && *p <= '9'; p++)
        v = v > 100000000 ? v : v * 10 + (*p - '0'); /* saturates: lower.c says too large */
      if (a->ndims < ARG_MAX_DIMS)
        a->dims[a->ndims] = v;
      a->ndims++;
      if (*p == 'x')
        p++;
    }
  }
  return a;
}

/* atom: STRING, the text between the quotes. Quotes are for the names of a
   `classes` statement; elsewhere the text is taken as a word, after the
   error a stray quote always got (one per line). */
static Arg *arg_string(ParseState *ps, const char *text, const Loc *loc) {
  if (ps->line_word && strcmp(ps->line_word, "classes") == 0)
    return arg_atom(ps, ARG_STRING, text, loc);
  if (loc->line != ps->error_line) {
    Loc quote = *loc;
    quote.len = 1;
    ps->error_line = loc->line;
    diag_error(ps->diag, quote, "unexpected character '\"'");
    diag_note(ps->diag, quote, "names and words are written without quotes");
  }
  return arg_atom(ps, ARG_WORD, text, loc);
}

/* arg: WORD '=' value */
static Arg *arg_keyval(ParseState *ps, const char *key, const Loc *loc, Arg *value) {
  Arg *a = arena_alloc(ps->arena, sizeof *a);
  a->kind = ARG_KEYVAL;
  a->loc = *loc;
  a->text = key;
  a->value = value;
  return a;
}

/* value: list */
static Arg *arg_list(ParseState *ps, ArgList items) {
  size_t len = 0;
  for (Arg *i = items.head; i; i = i->next)
    len += strlen(i->text) + 1;
  char *text = arena_alloc(ps->arena, len), *p = text;
  for (Arg *i = items.head; i; i = i->next) {
    size_t n = strlen(i->text);
    memcpy(p, i->text, n);
    p += n;
    *p++ = i->next ? ',' : '\0';
  }
  Arg *a = arena_alloc(ps->arena, sizeof *a);
  a->kind = ARG_LIST;
  a->loc = items.head->loc;
  a->text = text;
  a->items = items;
  return a;
}

/* ---- the entry point ---- */

int parse(Arena *a, const char *path, const char *src, size_t len, Diag *d, StmtList *out) {
  int errors = d->errors;
  if (!src)
    src = "", len = 0;
  ParseState ps = {.arena = a, .diag = d, .path = path, .src = src, .len = len, .line = 1,
                   .col = 1};
  ps.after_last = (Loc){path, 1, 1, 1};
  *out = (StmtList){0};
  if (len > (size_t)INT_MAX / 2) {
    diag_error(d, ps.after_last, "the file is too large (%zu bytes)", len);
    return 1;
  }
  ps.nlines = 1;
  for (size_t i = 0; i < len; i++)
    ps.nlines += src[i] == '\n';
  size_t *starts = arena_alloc(a, (size_t)ps.nlines * sizeof *starts);
  for (size_t i = 0, line = 1; i < len; i++)
    if (src[i] == '\n')
      starts[line++] = i + 1;
  ps.line_start = starts;

  yyscan_t scanner;
  if (yylex_init_extra(&ps, &scanner)) {
    diag_error(d, ps.after_last, "out of memory");
    return 1;
  }
  YY_BUFFER_STATE buf = yy_scan_bytes(src, (int)len, scanner);
  if (yyparse(scanner, &ps) != 0)
    ps.stmts = (StmtList){0}; /* gave up (stack exhausted): nothing to lower */
  yy_delete_buffer(buf, scanner);
  yylex_destroy(scanner);
  *out = ps.stmts;
  return d->errors - errors;
}
