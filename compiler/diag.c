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
 */
#include "diag.h"

#include <stdarg.h>
#include <stdbool.h>
#include <string.h>

void diag_init(Diag *d, FILE *out, const char *src, size_t src_len) {
  *d = (Diag){.out = out, .src = src, .src_len = src_len};
}

/* The text of line `line` (1-based) without its line ending; false past
   the end. Lines are looked up from the furthest one found so far, so
   reporting errors in source order reads the source once. */
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
  if (forward || d->cache_line < 1) { /* a note further up keeps the place */
    d->cache_line = cur;
    d->cache_off = off;
  }
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

static void quote(Diag *d, Loc loc) {
  const char *text;
  size_t len;
  if (!d->out || !find_line(d, loc.line, &text, &len))
    return;
  int width = snprintf(NULL, 0, "%d", loc.line);
  width = width < 4 ? 4 : width;
  fprintf(d->out, " %*d | ", width, loc.line);
  walk(text, len, len, d->out);
  fputc('\n', d->out);
  size_t start = loc.col > 1 ? (size_t)loc.col - 1 : 0;
  size_t n = loc.len > 1 ? (size_t)loc.len : 1;
  size_t from = walk(text, len, start, NULL), to = walk(text, len, start + n, NULL);
  fprintf(d->out, " %*s | %*s^", width, "", (int)from, "");
  for (size_t c = from + 1; c < to; c++)
    fputc('~', d->out);
  fputc('\n', d->out);
}

static void header(Diag *d, Loc loc, const char *kind, const char *fmt, va_list ap) {
  if (!d->out)
    return; /* counting only */
  const char *file = loc.file ? loc.file : "<input>";
  if (loc.line >= 1)
    fprintf(d->out, "%s:%d:%d: %s: ", file, loc.line, loc.col, kind);
  else
    fprintf(d->out, "%s: %s: ", file, kind);
  vfprintf(d->out, fmt, ap);
  fputc('\n', d->out);
}

void diag_error(Diag *d, Loc loc, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  header(d, loc, "error", fmt, ap);
  va_end(ap);
  quote(d, loc);
  d->errors++;
  d->error_line = loc.line;
}

void diag_note(Diag *d, Loc loc, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  header(d, loc, "note", fmt, ap);
  va_end(ap);
  if (loc.line != d->error_line)
    quote(d, loc);
}
