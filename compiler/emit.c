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

void em_init(Emitter *em, FILE *out, int depth) {
  em->out = out;
  em->depth = depth;
  em->lines = 0;
  em->strings = (Arena){0};
  em->kernels = false;
}

void em_free(Emitter *em) {
  arena_free(&em->strings);
}

const char *em_str(Emitter *em, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *s = arena_vprintf(&em->strings, fmt, ap);
  va_end(ap);
  return s;
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

/* The formatted text, malloc'd (a line is written at once and freed, so it
   does not stay in the arena). */
static char *vformat(const char *fmt, va_list ap) {
  va_list again;
  va_copy(again, ap);
  int n = vsnprintf(NULL, 0, fmt, ap);
  char *buf = n >= 0 ? malloc((size_t)n + 1) : NULL;
  if (!buf) {
    fputs("cnngen: out of memory\n", stderr);
    abort();
  }
  vsnprintf(buf, (size_t)n + 1, fmt, again);
  va_end(again);
  return buf;
}

#define FORMAT(buf, fmt)                                                                           \
  va_list ap;                                                                                      \
  va_start(ap, fmt);                                                                               \
  char *buf = vformat(fmt, ap);                                                                    \
  va_end(ap)

void em_line(Emitter *em, const char *fmt, ...) {
  FORMAT(buf, fmt);
  put(em, em->depth, buf);
  free(buf);
}

void em_raw(Emitter *em, const char *fmt, ...) {
  FORMAT(buf, fmt);
  put(em, 0, buf);
  free(buf);
}

void em_define(Emitter *em, const char *fmt, ...) {
  FORMAT(buf, fmt);
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
  free(buf);
}

void em_blank(Emitter *em) {
  put(em, 0, "");
}

void em_open(Emitter *em, const char *fmt, ...) {
  FORMAT(buf, fmt);
  fprintf(em->out, "%*s%s%s{\n", 2 * em->depth, "", buf, buf[0] ? " " : "");
  free(buf);
  em->lines++;
  em->depth++;
}

/* `buf` ("NAME(A, B, ...)" and what follows) broken after the commas of the
   outer parentheses where a line would pass 100 columns at the current
   depth (`tail` more columns after the last piece), the later lines
   aligned one past the first parenthesis: malloc'd, or NULL when it fits. */
static char *wrap_call(const Emitter *em, const char *buf, int tail) {
  const int indent = 2 * em->depth, width = 100;
  const char *open = strchr(buf, '(');
  if (!open || indent + (int)strlen(buf) + tail <= width)
    return NULL;
  const int align = (int)(open - buf) + 1;
  /* Each piece adds at most a newline and `align` spaces. */
  size_t cap = strlen(buf) * (size_t)(align + 2) + 1, k = 0;
  char *out = malloc(cap);
  if (!out) {
    fputs("cnngen: out of memory\n", stderr);
    abort();
  }
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
    int last = *end ? 0 : tail;
    if (p != buf && col + 1 + len + last > width) { /* 1: the space before it */
      k += (size_t)snprintf(out + k, cap - k, "\n%*s", align, "");
      col = indent + align;
    } else if (p != buf) {
      out[k++] = ' ';
      col++;
    }
    k += (size_t)snprintf(out + k, cap - k, "%.*s", len, p);
    col += len;
    p = *end ? end + 1 : end;
  }
  out[k] = 0;
  return out;
}

void em_open_fn(Emitter *em, const char *fmt, ...) {
  FORMAT(buf, fmt);
  char *out = wrap_call(em, buf, 2); /* " {" after the last */
  em_open(em, "%s", out ? out : buf);
  free(out);
  free(buf);
}

void em_call(Emitter *em, const char *fmt, ...) {
  FORMAT(buf, fmt);
  char *out = wrap_call(em, buf, 0);
  put(em, em->depth, out ? out : buf);
  free(out);
  free(buf);
}

void em_close(Emitter *em) {
  em_close_with(em, "%s", "");
}

void em_close_with(Emitter *em, const char *fmt, ...) {
  FORMAT(buf, fmt);
  assert(em->depth > 0);
  em->depth--;
  fprintf(em->out, "%*s}%s\n", 2 * em->depth, "", buf);
  free(buf);
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
  FORMAT(buf, fmt);
  /* "*" "/" -> "* /"; each later line indented by 3 to sit under the text */
  char *safe = malloc(4 * strlen(buf) + 8);
  if (!safe) {
    fputs("cnngen: out of memory\n", stderr);
    abort();
  }
  size_t k = 0;
  memcpy(safe, "/* ", 3);
  k += 3;
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
  free(safe);
  free(buf);
}

const char *em_lin(Emitter *em, long c, ...) {
  va_list ap;
  va_start(ap, c);
  const char *s = "";
  for (;;) {
    const char *v = va_arg(ap, const char *);
    if (!v)
      break;
    long coef = va_arg(ap, long);
    if (coef == 0 || !v[0]) /* "" stands for a literal 0 */
      continue;
    if (coef == 1)
      s = em_str(em, "%s%s%s", s, *s ? " + " : "", v);
    else
      s = em_str(em, "%s%s%s * %ld", s, *s ? " + " : "", v, coef);
  }
  va_end(ap);
  if (c || !*s)
    s = em_str(em, "%s%s%ld", s, *s ? " + " : "", c);
  return s;
}

const char *em_float(Emitter *em, float v) {
  /* Divisions by zero: constant expressions for gcc, clang and tcc alike
     (tcc takes NAN and -INFINITY for non-constants) */
  if (isnan(v))
    return "(0.0f / 0.0f)";
  if (isinf(v))
    return v > 0 ? "(1.0f / 0.0f)" : "(-1.0f / 0.0f)";
  /* the shortest of %.6g .. %.9g that reads back as v */
  const char *s = em_str(em, "%.9g", (double)v);
  for (int prec = 6; prec < 9; prec++) {
    const char *t = em_str(em, "%.*g", prec, (double)v);
    if (strtof(t, NULL) == v) {
      s = t;
      break;
    }
  }
  return em_str(em, "%s%sf", s, strpbrk(s, ".en") ? "" : ".0");
}

/* "#define NAME_OP(args) (e0, e1, ..., e7)": `each` with Q replaced by 0..7. */
static void unrolled8(Emitter *em, const char *n, const char *op, const char *each) {
  const char *line = em_str(em, "#define %s_%s (", n, op);
  for (int q = 0; q < 8; q++) {
    if (q)
      line = em_str(em, "%s, ", line);
    for (const char *c = each; *c; c++)
      line = *c == 'Q' ? em_str(em, "%s%d", line, q) : em_str(em, "%s%c", line, *c);
  }
  em_raw(em, "%s)", line);
}

const EmVec em_vec8 = {8, "f8", "", 16}, em_vec16 = {16, "f16", "16", 32};
const EmVec *const em_widths[2] = {&em_vec16, &em_vec8};

void em_width_if(Emitter *em, const char *n, const EmVec *v) {
  if (v->w == 16)
    em_raw(em, "#if %s_VW == 16", n);
  else
    em_raw(em, "#else /* %s_VW == 8 */", n);
}

static void em_vector_v(Emitter *em, const char *n, bool training);

void em_vector_macros(Emitter *em, const char *n, bool training, bool every_width) {
  em_comment(em,
             "Vectors for the convolution and dense tiles: with GCC and Clang, vector\n"
             "extensions that stay in registers, of 16 floats (%s_f16) under AVX-512 and of\n"
             "8 (%s_f8) elsewhere; with other compilers (tcc), structs of 8 floats with the\n"
             "loops unrolled by hand (tcc does not unroll), the same arithmetic. %s_VW is\n"
             "the width of the layers' tiles, written once for every width on %s_v; a layer\n"
             "of fewer than 16 channels uses 8 on any target.\n"
             "%s_FMA(a, s, w) is a += s * w for a float s, fused where the machine has FMA\n"
             "(gcc in ISO C mode would round twice, at half the speed); %s_FMA16 and the\n"
             "other ...16 macros are the same on %s_f16. Layer functions are kept out of\n"
             "%s_infer (%s_NOINLINE): inlined into one large function, gcc allocates the\n"
             "tiles' registers worse.",
             n, n, n, n, n, n, n, n, n);
  /* (macros, not inline functions: a vector passed by value draws -Wpsabi
     from gcc without -mavx) */
  em_raw(em,
         "#if defined(__GNUC__) && !defined(__TINYC__)\n"
         "typedef float %s_f8 __attribute__((vector_size(32)));\n"
         "typedef int %s_i8 __attribute__((vector_size(32)));\n"
         "#define %s_SPLAT(s) ((%s_f8){(s), (s), (s), (s), (s), (s), (s), (s)})\n"
         "#ifdef __FMA__\n"
         "#define %s_FMA(a, s, w) ((a) = __builtin_ia32_vfmaddps256((w), %s_SPLAT(s), (a)))",
         n, n, n, n, n, n);
  if (training)
    em_raw(em, "#define %s_MAC(a, u, v) ((a) = __builtin_ia32_vfmaddps256((u), (v), (a)))", n);
  em_raw(em, "#else\n#define %s_FMA(a, s, w) ((a) += %s_SPLAT(s) * (w))", n, n);
  if (training)
    em_raw(em, "#define %s_MAC(a, u, v) ((a) += (u) * (v)) /* a += u * v */", n);
  em_raw(em, "#endif");
  em_define(em,
            "#define %s_MAX(a, b)\n"
            "  do {\n"
            "    %s_i8 ge_ = (a) >= (b); /* all ones where a >= b */\n"
            "    (a) = (%s_f8)(((%s_i8)(a) & ge_) | ((%s_i8)(b) & ~ge_));\n"
            "  } while (0)",
            n, n, n, n, n);
  em_raw(em, "#define %s_ADD(a, b) ((a) += (b))\n#define %s_SCALE(a, s) ((a) *= (s))", n, n);
  if (training) {
    em_define(em,
              "#define %s_ADDTO(p, a) /* p[0..7] += a */\n"
              "  do {\n"
              "    %s_f8 t_;\n"
              "    memcpy(&t_, (p), sizeof t_);\n"
              "    t_ += (a);\n"
              "    memcpy((p), &t_, sizeof t_);\n"
              "  } while (0)",
              n, n);
    em_raw(em,
           "#define %s_HSUM(a) ((((a)[0] + (a)[1]) + ((a)[2] + (a)[3])) + (((a)[4] + (a)[5]) + "
           "((a)[6] + (a)[7])))\n"
           "#ifdef __AVX__\n"
           "#define %s_SQRT(a) __builtin_ia32_sqrtps256(a)\n"
           "#endif\n"
           "#define %s_ZERO(a) memset(&(a), 0, sizeof(a))",
           n, n, n);
    /* a += s * x written as such: fused exactly where the C compiler fuses
       the same scalar expression */
    em_raw(em, "#define %s_MULADD(a, s, x) ((a) += %s_SPLAT(s) * (x))", n, n);
  }
  /* 16 floats: the same operations on zmm registers (the mask -1 and the
     rounding 4, the current direction, are what _mm512_fmadd_ps passes) */
  em_raw(em,
         "#if defined(__AVX512F__) && defined(__FMA__)\n"
         "#define %s_VW 16\n"
         "typedef float %s_f16 __attribute__((vector_size(64)));\n"
         "typedef int %s_i16 __attribute__((vector_size(64)));",
         n, n, n);
  em_raw(em,
         "#define %s_SPLAT16(s) ((%s_f16){(s), (s), (s), (s), (s), (s), (s), (s), (s), (s), (s), "
         "(s), (s), (s), (s), (s)})",
         n, n);
  em_define(
      em,
      "#define %s_FMA16(a, s, w)\n"
      "  ((a) = __builtin_ia32_vfmaddps512_mask((w), %s_SPLAT16(s), (a), (unsigned short)-1, 4))",
      n, n);
  em_define(em,
            "#define %s_MAX16(a, b)\n"
            "  do {\n"
            "    %s_i16 ge_ = (a) >= (b);\n"
            "    (a) = (%s_f16)(((%s_i16)(a) & ge_) | ((%s_i16)(b) & ~ge_));\n"
            "  } while (0)",
            n, n, n, n, n);
  if (training) {
    em_define(em,
              "#define %s_ADDTO16(p, a) /* p[0..15] += a */\n"
              "  do {\n"
              "    %s_f16 t_;\n"
              "    memcpy(&t_, (p), sizeof t_);\n"
              "    t_ += (a);\n"
              "    memcpy((p), &t_, sizeof t_);\n"
              "  } while (0)",
              n, n);
    em_raw(em, "#define %s_MULADD16(a, s, x) ((a) += %s_SPLAT16(s) * (x))", n, n);
  }
  em_raw(em, "#else\n#define %s_VW 8\n#endif", n);
  em_raw(em, "#define %s_NOINLINE __attribute__((noinline))", n);
  if (every_width)
    em_raw(em, "#define %s_UNROLL _Pragma(\"GCC unroll 32\")", n);
  em_raw(em, "#else");
  em_open(em, "typedef struct");
  em_line(em, "float f[8];");
  em_close_with(em, " %s_f8;", n);
  unrolled8(em, n, "FMA(a, s, w)", "(a).f[Q] += (s) * (w).f[Q]");
  if (training)
    unrolled8(em, n, "MAC(a, u, v)", "(a).f[Q] += (u).f[Q] * (v).f[Q]");
  unrolled8(em, n, "MAX(a, b)", "(a).f[Q] = (b).f[Q] > (a).f[Q] ? (b).f[Q] : (a).f[Q]");
  unrolled8(em, n, "ADD(a, b)", "(a).f[Q] += (b).f[Q]");
  unrolled8(em, n, "SCALE(a, s)", "(a).f[Q] *= (s)");
  if (training) {
    unrolled8(em, n, "ADDTO(p, a)", "(p)[Q] += (a).f[Q]");
    unrolled8(em, n, "MULADD(a, s, x)", "(a).f[Q] += (s) * (x).f[Q]");
    em_raw(em,
           "#define %s_HSUM(a) ((((a).f[0] + (a).f[1]) + ((a).f[2] + (a).f[3])) + (((a).f[4] + "
           "(a).f[5]) + ((a).f[6] + (a).f[7])))",
           n);
    unrolled8(em, n, "ZERO(a)", "(a).f[Q] = 0.0f");
  }
  em_raw(em, "#define %s_NOINLINE", n);
  if (every_width)
    em_raw(em, "#define %s_UNROLL", n);
  em_raw(em,
         "#define %s_VW 8\n"
         "#endif\n"
         "#define %s_LOAD(v, p) memcpy(&(v), (p), sizeof(v))\n"
         "#define %s_STORE(p, v) memcpy((p), &(v), sizeof(v))",
         n, n, n);
  if (training) /* (once per tile, outside the hot loops: plain C for both) */
    em_define(em,
              "#define %s_ADDTO_TAIL(p, a, from) /* p[from..] += a[from..], a of 8 or 16 */\n"
              "  do {\n"
              "    float t_[sizeof(a) / sizeof(float)];\n"
              "    memcpy(t_, &(a), sizeof t_);\n"
              "    for (int q_ = (from); q_ < (int)(sizeof t_ / sizeof(float)); q_++)\n"
              "      (p)[q_] += t_[q_];\n"
              "  } while (0)",
              n);
  /* the vector of NAME_VW floats, of the tiles written once for every width */
  if (every_width)
    em_vector_v(em, n, training);
  em_blank(em);
}

/* NAME_v and its macros (em_vector_macros). */
static void em_vector_v(Emitter *em, const char *n, bool training) {
  em_raw(em,
         "#if %s_VW == 16\n"
         "typedef %s_f16 %s_v;\n"
         "#define %s_FMAV %s_FMA16\n"
         "#define %s_MAXV %s_MAX16",
         n, n, n, n, n, n, n);
  if (training)
    em_raw(em, "#define %s_ADDTOV %s_ADDTO16\n#define %s_MULADDV %s_MULADD16", n, n, n, n);
  em_raw(em, "#else\ntypedef %s_f8 %s_v;\n#define %s_FMAV %s_FMA\n#define %s_MAXV %s_MAX", n, n, n,
         n, n, n);
  if (training)
    em_raw(em, "#define %s_ADDTOV %s_ADDTO\n#define %s_MULADDV %s_MULADD", n, n, n, n);
  em_raw(em, "#endif");
}
