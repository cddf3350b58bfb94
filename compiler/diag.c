/*
 * diag.c: gcc-style diagnostics.
 *
 *   net.cnn:9:1: error: dense needs a vector input but gets 3x3x64
 *       9 | dense 64 relu
 *         | ^~~~~
 *   net.cnn:9:1: note: add 'flatten' before line 9
 *
 * The quoted line is printed as the terminal will show it: tabs expanded
 * to the next multiple of 8, control bytes and broken UTF-8 as '?', so
 * that the caret (byte column loc.col) and the tildes (loc.len bytes)
 * line up. A note quotes its own line only when that is not the error's.
 * Past max_errors, errors are counted but not shown, nor their notes.
 *
 * Held messages (diag_hold) are each written to a memory stream of their
 * own; only the max_errors first in line order are kept (a later one that
 * sorts first pushes the last out), so that a file of a million bad lines
 * costs no more memory than one of twenty.
 */
#include "diag.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct DiagHeld {
  int line, col, seq; /* sort key */
  FILE *f;            /* open while notes may follow */
  char *text;
  size_t len;
};

void diag_init(Diag *d, FILE *out, const char *src, size_t src_len) {
  *d = (Diag){.out = out, .src = src, .src_len = src_len, .max_errors = DIAG_MAX_ERRORS};
}

/* The text of line `line` (1-based) without its line ending; false past
   the end. A line is looked up from the last one found when that is
   above it, so that messages in line order read the source once. */
static bool find_line(Diag *d, int line, const char **text, size_t *len) {
  if (!d->src || line < 1)
    return false;
  int cur = 1;
  size_t off = 0;
  bool forward = d->cache_line >= 1 && d->cache_line <= line && d->cache_off <= d->src_len;
  if (forward) {
    cur = d->cache_line;
    off = d->cache_off;
  }
  for (; cur < line; cur++) {
    const char *nl = memchr(d->src + off, '\n', d->src_len - off);
    if (!nl)
      return false;
    off = (size_t)(nl - d->src) + 1;
  }
  d->cache_line = cur; /* the next line down is found from here */
  d->cache_off = off;
  const char *nl = memchr(d->src + off, '\n', d->src_len - off);
  size_t n = nl ? (size_t)(nl - (d->src + off)) : d->src_len - off;
  if (n > 0 && d->src[off + n - 1] == '\r')
    n--;
  *text = d->src + off;
  *len = n;
  return true;
}

/* Length of the UTF-8 sequence at s (at most n bytes), 0 if it is not one. */
static size_t utf8_len(const unsigned char *s, size_t n) {
  size_t need = s[0] >= 0xC2 && s[0] <= 0xDF   ? 2
                : s[0] >= 0xE0 && s[0] <= 0xEF ? 3
                : s[0] >= 0xF0 && s[0] <= 0xF4 ? 4
                                               : 0;
  if (need == 0 || need > n)
    return 0;
  for (size_t i = 1; i < need; i++)
    if ((s[i] & 0xC0) != 0x80)
      return 0;
  return need;
}

/* Walks the first `stop` bytes of the line (printing them to out if not
   NULL) and returns the display column reached. */
static size_t walk(const char *text, size_t len, size_t stop, FILE *out) {
  size_t col = 0, i = 0;
  const unsigned char *s = (const unsigned char *)text;
  while (i < stop && i < len) {
    size_t u;
    if (s[i] == '\t') {
      size_t next = (col / 8 + 1) * 8;
      for (; out && col < next; col++)
        fputc(' ', out);
      col = next;
      i++;
    } else if (s[i] >= 0x20 && s[i] < 0x7F) {
      if (out)
        fputc(s[i], out);
      col++;
      i++;
    } else if ((u = utf8_len(s + i, len - i)) > 0) {
      if (out)
        fwrite(s + i, 1, u, out);
      col++;
      i += u;
    } else {
      if (out)
        fputc('?', out);
      col++;
      i++;
    }
  }
  return col + (stop > len ? stop - len : 0);
}

static void quote(Diag *d, FILE *out, Loc loc) {
  const char *text;
  size_t len;
  if (!out || !find_line(d, loc.line, &text, &len))
    return;
  int width = snprintf(NULL, 0, "%d", loc.line);
  width = width < 4 ? 4 : width;
  fprintf(out, " %*d | ", width, loc.line);
  walk(text, len, len, out);
  fputc('\n', out);
  size_t start = loc.col > 1 ? (size_t)loc.col - 1 : 0;
  size_t n = loc.len > 1 ? (size_t)loc.len : 1;
  size_t from = walk(text, len, start, NULL), to = walk(text, len, start + n, NULL);
  fprintf(out, " %*s | %*s^", width, "", (int)from, "");
  for (size_t c = from + 1; c < to; c++)
    fputc('~', out);
  fputc('\n', out);
}

static void header(FILE *out, Loc loc, const char *kind, const char *fmt, va_list ap) {
  if (!out)
    return; /* counting only */
  const char *file = loc.file ? loc.file : "<input>";
  if (loc.line >= 1)
    fprintf(out, "%s:%d:%d: %s: ", file, loc.line, loc.col, kind);
  else
    fprintf(out, "%s: %s: ", file, kind);
  vfprintf(out, fmt, ap);
  fputc('\n', out);
}

static void too_many(FILE *out, const char *file, int shown) {
  if (out)
    fprintf(out, "%s: error: too many errors; only the first %d are shown\n",
            file ? file : "<input>", shown);
}

/* ---- held messages ---- */

static bool held_before(const struct DiagHeld *a, const struct DiagHeld *b) {
  if (a->line != b->line)
    return a->line < b->line;
  return a->col != b->col ? a->col < b->col : a->seq < b->seq;
}

static void held_close(Diag *d) {
  if (d->cur && d->cur->f) {
    fclose(d->cur->f);
    d->cur->f = NULL;
  }
  d->cur = NULL;
}

static void held_free(struct DiagHeld *h) {
  if (h->f)
    fclose(h->f);
  free(h->text);
  free(h);
}

/* A new held message at loc, or NULL if it is not kept: it sorts after
   max_errors others, or memory ran out (it is still counted). */
static struct DiagHeld *held_new(Diag *d, Loc loc) {
  struct DiagHeld key = {.line = loc.line > 0 ? loc.line : 0, .col = loc.col, .seq = d->seq++};
  if (d->max_errors > 0 && d->nheld >= d->max_errors) {
    int last = 0;
    for (int i = 1; i < d->nheld; i++)
      if (held_before(d->held[last], d->held[i]))
        last = i;
    if (!held_before(&key, d->held[last]))
      return NULL;
    held_free(d->held[last]);
    d->held[last] = d->held[--d->nheld];
  }
  if (d->nheld == d->held_cap) {
    int cap = d->held_cap ? 2 * d->held_cap : 16;
    struct DiagHeld **held = realloc(d->held, (size_t)cap * sizeof *held);
    if (!held)
      return NULL;
    d->held = held;
    d->held_cap = cap;
  }
  struct DiagHeld *h = calloc(1, sizeof *h);
  if (!h)
    return NULL;
  *h = key;
  h->f = open_memstream(&h->text, &h->len);
  if (!h->f) {
    free(h);
    return NULL;
  }
  d->held[d->nheld++] = h;
  return h;
}

static int held_compare(const void *x, const void *y) {
  const struct DiagHeld *a = *(const struct DiagHeld *const *)x;
  const struct DiagHeld *b = *(const struct DiagHeld *const *)y;
  return held_before(a, b) ? -1 : held_before(b, a);
}

void diag_hold(Diag *d) {
  d->holding = true;
  d->held_errors = 0;
  d->held_file = NULL;
}

void diag_flush(Diag *d) {
  if (!d->holding)
    return;
  held_close(d);
  if (d->nheld > 1)
    qsort(d->held, (size_t)d->nheld, sizeof *d->held, held_compare);
  for (int i = 0; i < d->nheld; i++) {
    if (d->out && d->held[i]->text)
      fwrite(d->held[i]->text, 1, d->held[i]->len, d->out);
    held_free(d->held[i]);
  }
  if (d->held_errors > d->nheld && d->nheld == d->max_errors)
    too_many(d->out, d->held_file, d->max_errors);
  free(d->held);
  d->held = NULL;
  d->nheld = d->held_cap = 0;
  d->holding = false;
}

/* ---- reporting ---- */

/* Where error number d->errors + 1 goes: NULL if it is not shown. */
static FILE *error_stream(Diag *d, Loc loc) {
  if (!d->out)
    return NULL;
  if (d->holding) {
    held_close(d);
    d->held_errors++;
    if (!d->held_file)
      d->held_file = loc.file;
    d->cur = held_new(d, loc);
    return d->cur ? d->cur->f : NULL;
  }
  if (d->max_errors <= 0 || d->errors < d->max_errors)
    return d->out;
  if (d->errors == d->max_errors)
    too_many(d->out, loc.file, d->max_errors);
  return NULL;
}

void diag_error(Diag *d, Loc loc, const char *fmt, ...) {
  FILE *out = error_stream(d, loc);
  d->errors++;
  d->error_line = out ? loc.line : -1; /* -1: its notes are not shown either */
  if (!out)
    return;
  va_list ap;
  va_start(ap, fmt);
  header(out, loc, "error", fmt, ap);
  va_end(ap);
  quote(d, out, loc);
}

void diag_note(Diag *d, Loc loc, const char *fmt, ...) {
  FILE *out = d->holding ? (d->cur ? d->cur->f : NULL) : d->out;
  if (d->error_line == -1 || !out)
    return;
  va_list ap;
  va_start(ap, fmt);
  header(out, loc, "note", fmt, ap);
  va_end(ap);
  if (loc.line != d->error_line)
    quote(d, out, loc);
}
