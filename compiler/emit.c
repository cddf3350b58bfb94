/*
 * emit.c: the Emitter (emitter.h), the one writer of generated C. Lines are
 * formatted into a buffer, then written with the indentation of the current
 * depth; braces come from em_open()/em_close(), so the depth is always the
 * nesting of the code being written.
 */
#include "emitter.h"

#include <assert.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

enum { LINE_MAX_BYTES = 1 << 16 };

void em_init(Emitter *em, FILE *out, int depth) {
  em->out = out;
  em->depth = depth;
  em->lines = 0;
}

/* Writes `text` (one or more lines) at `depth`; an empty line stays empty. */
static void put(Emitter *em, int depth, const char *text) {
  for (;;) {
    const char *nl = strchr(text, '\n');
    size_t n = nl ? (size_t)(nl - text) : strlen(text);
    if (n)
      fprintf(em->out, "%*s%.*s\n", 2 * depth, "", (int)n, text);
    else
      fputc('\n', em->out);
    em->lines++;
    if (!nl)
      return;
    text = nl + 1;
  }
}

static void vformat(char *buf, const char *fmt, va_list ap) {
  int n = vsnprintf(buf, LINE_MAX_BYTES, fmt, ap);
  assert(n >= 0 && n < LINE_MAX_BYTES); /* lines are short; a longer one is a bug */
  (void)n;
}

void em_line(Emitter *em, const char *fmt, ...) {
  static char buf[LINE_MAX_BYTES];
  va_list ap;
  va_start(ap, fmt);
  vformat(buf, fmt, ap);
  va_end(ap);
  put(em, em->depth, buf);
}

void em_raw(Emitter *em, const char *fmt, ...) {
  static char buf[LINE_MAX_BYTES];
  va_list ap;
  va_start(ap, fmt);
  vformat(buf, fmt, ap);
  va_end(ap);
  put(em, 0, buf);
}

void em_define(Emitter *em, const char *fmt, ...) {
  static char buf[LINE_MAX_BYTES];
  va_list ap;
  va_start(ap, fmt);
  vformat(buf, fmt, ap);
  va_end(ap);
  int width = 0;
  for (const char *p = buf; *p;) {
    int n = (int)strcspn(p, "\n");
    width = n > width ? n : width;
    p += n + (p[n] == '\n');
  }
  for (const char *p = buf; *p;) {
    int n = (int)strcspn(p, "\n");
    if (p[n] == '\n')
      fprintf(em->out, "%-*.*s \\\n", width, n, p);
    else
      fprintf(em->out, "%.*s\n", n, p);
    em->lines++;
    p += n + (p[n] == '\n');
  }
}

void em_blank(Emitter *em) {
  put(em, 0, "");
}

void em_open(Emitter *em, const char *fmt, ...) {
  static char buf[LINE_MAX_BYTES];
  va_list ap;
  va_start(ap, fmt);
  vformat(buf, fmt, ap);
  va_end(ap);
  fprintf(em->out, "%*s%s%s{\n", 2 * em->depth, "", buf, buf[0] ? " " : "");
  em->lines++;
  em->depth++;
}

void em_open_fn(Emitter *em, const char *fmt, ...) {
  static char buf[LINE_MAX_BYTES], out[2 * LINE_MAX_BYTES];
  va_list ap;
  va_start(ap, fmt);
  vformat(buf, fmt, ap);
  va_end(ap);
  const int indent = 2 * em->depth, width = 100;
  const char *open = strchr(buf, '(');
  size_t k = 0;
  if (!open || indent + (int)strlen(buf) + 2 <= width) {
    snprintf(out, sizeof out, "%s", buf);
  } else {
    const int align = (int)(open - buf) + 1;
    int col = indent;
    for (const char *p = buf; *p;) {
      /* the next piece: up to and including a ", " at depth 1 (or the end) */
      const char *end = p;
      for (int depth = p == buf ? 0 : 1; *end; end++) {
        depth += (*end == '(') - (*end == ')');
        if (depth == 1 && end[0] == ',' && end[1] == ' ') {
          end++;
          break;
        }
      }
      int len = (int)(end - p); /* with the comma, without the space after it */
      int tail = *end ? 0 : 2;  /* " {" after the last */
      if (p != buf && col + len + tail > width) {
        k += (size_t)snprintf(out + k, sizeof out - k, "\n%*s", align, "");
        col = indent + align;
      } else if (p != buf) {
        out[k++] = ' ';
        col++;
      }
      k += (size_t)snprintf(out + k, sizeof out - k, "%.*s", len, p);
      col += len;
      p = *end ? end + 1 : end;
    }
  }
  em_open(em, "%s", out);
}

void em_close(Emitter *em) {
  em_close_with(em, "%s", "");
}

void em_close_with(Emitter *em, const char *fmt, ...) {
  static char buf[LINE_MAX_BYTES];
  va_list ap;
  va_start(ap, fmt);
  vformat(buf, fmt, ap);
  va_end(ap);
  assert(em->depth > 0);
  em->depth--;
  fprintf(em->out, "%*s}%s\n", 2 * em->depth, "", buf);
  em->lines++;
}

void em_indent(Emitter *em) {
  em->depth++;
}

void em_dedent(Emitter *em) {
  assert(em->depth > 0);
  em->depth--;
}

void em_comment(Emitter *em, const char *fmt, ...) {
  static char buf[LINE_MAX_BYTES], safe[2 * LINE_MAX_BYTES];
  va_list ap;
  va_start(ap, fmt);
  vformat(buf, fmt, ap);
  va_end(ap);
  /* "*" "/" -> "* /"; each later line indented by 3 to sit under the text */
  size_t k = 0;
  k += (size_t)snprintf(safe, sizeof safe, "/* ");
  for (const char *p = buf; *p; p++) {
    safe[k++] = *p;
    if (p[0] == '*' && p[1] == '/')
      safe[k++] = ' ';
    if (p[0] == '\n' && p[1]) {
      memcpy(safe + k, "   ", 3);
      k += 3;
    }
  }
  memcpy(safe + k, " */", 4);
  put(em, em->depth, safe);
}

const char *em_float(char *buf, float v) {
  /* Divisions by zero: constant expressions for gcc, clang and tcc alike
     (tcc takes NAN and -INFINITY for non-constants) */
  if (isnan(v))
    return strcpy(buf, "(0.0f / 0.0f)");
  if (isinf(v))
    return strcpy(buf, v > 0 ? "(1.0f / 0.0f)" : "(-1.0f / 0.0f)");
  snprintf(buf, EM_FLOAT_SIZE, "%.9g", (double)v);
  /* the shortest of %.6g .. %.9g that reads back as v */
  for (int prec = 6; prec < 9; prec++) {
    char tmp[EM_FLOAT_SIZE];
    snprintf(tmp, sizeof tmp, "%.*g", prec, (double)v);
    if (strtof(tmp, NULL) == v) {
      strcpy(buf, tmp);
      break;
    }
  }
  if (!strpbrk(buf, ".en"))
    strcat(buf, ".0");
  strcat(buf, "f");
  return buf;
}
