/*
 * plot.c: training curves, drawn once and painted twice.
 *
 * One layout (two panels side by side: loss on the left, accuracy on the
 * right, epochs along x, the training curve solid blue, the validation curve
 * (where the run has a validation set) solid green and the test curve dashed
 * orange, a shared legend under the title) is drawn through a tiny
 * Canvas with five verbs: fill, polyline, dot, text and group. For SVG each
 * verb prints an element; for PNG it paints an RGB buffer that
 * image_write_png then writes atomically. SVG and PNG share pixel
 * coordinates (the SVG's viewBox is the PNG's size).
 *
 * Axes: y spans the finite values plus 5%, rounded out to ticks of 1, 2 or 5
 * times a power of ten (at most 7 intervals); accuracy stays inside [0, 1]
 * and a non-negative series never gets a negative axis. x spans the epochs
 * with integer ticks. A non-finite value (NaN, inf, or beyond 1e300) is a
 * gap: the line breaks there, as matplotlib's does. Points get round markers
 * up to PLOT_MARKERS epochs, and a point alone between gaps always gets one.
 *
 * PNG lines are anti-aliased by coverage: each pixel takes
 * clamp(width/2 + 0.5 - distance to the polyline, 0, 1), the maximum over a
 * polyline's segments (so joints are not painted twice), then blends the
 * colour in by it. Dashes fade over half a pixel at their ends.
 *
 * PNG text uses a built-in 5x8 bitmap font (printable ASCII, drawn for this
 * file), enlarged by Scale2x / Scale3x so diagonals stay smooth. A real font
 * would need FreeType or libgd, and Debian's libgd-dev pulls in X11, AVIF
 * and HEIF development packages: too much for tick labels.
 */
#include "plot.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "formats/image.h"
#include "io.h"

/* ---- the font ---- */

enum { FONT_W = 5, FONT_H = 8, FONT_ADVANCE = 6 };

/* Rows top to bottom, bit 4 the leftmost column; rows 0-6 stand on the
   baseline, row 7 is for descenders. Characters 32 to 126. */
static const uint8_t font[95][FONT_H] = {
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00}, /* ' ' */
    {0x04, 0x04, 0x04, 0x04, 0x04, 0x00, 0x04, 0x00}, /* '!' */
    {0x0A, 0x0A, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00}, /* '"' */
    {0x0A, 0x0A, 0x1F, 0x0A, 0x1F, 0x0A, 0x0A, 0x00}, /* '#' */
    {0x04, 0x0F, 0x14, 0x0E, 0x05, 0x1E, 0x04, 0x00}, /* '$' */
    {0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03, 0x00}, /* '%' */
    {0x0C, 0x12, 0x14, 0x08, 0x15, 0x12, 0x0D, 0x00}, /* '&' */
    {0x04, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00}, /* "'" */
    {0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02, 0x00}, /* '(' */
    {0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08, 0x00}, /* ')' */
    {0x00, 0x04, 0x15, 0x0E, 0x15, 0x04, 0x00, 0x00}, /* '*' */
    {0x00, 0x04, 0x04, 0x1F, 0x04, 0x04, 0x00, 0x00}, /* '+' */
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x04, 0x08}, /* ',' */
    {0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00, 0x00}, /* '-' */
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C, 0x00}, /* '.' */
    {0x00, 0x01, 0x02, 0x04, 0x08, 0x10, 0x00, 0x00}, /* '/' */
    {0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E, 0x00}, /* '0' */
    {0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E, 0x00}, /* '1' */
    {0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F, 0x00}, /* '2' */
    {0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E, 0x00}, /* '3' */
    {0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02, 0x00}, /* '4' */
    {0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E, 0x00}, /* '5' */
    {0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E, 0x00}, /* '6' */
    {0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08, 0x00}, /* '7' */
    {0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E, 0x00}, /* '8' */
    {0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C, 0x00}, /* '9' */
    {0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00, 0x00}, /* ':' */
    {0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x04, 0x08, 0x00}, /* ';' */
    {0x02, 0x04, 0x08, 0x10, 0x08, 0x04, 0x02, 0x00}, /* '<' */
    {0x00, 0x00, 0x1F, 0x00, 0x1F, 0x00, 0x00, 0x00}, /* '=' */
    {0x08, 0x04, 0x02, 0x01, 0x02, 0x04, 0x08, 0x00}, /* '>' */
    {0x0E, 0x11, 0x01, 0x02, 0x04, 0x00, 0x04, 0x00}, /* '?' */
    {0x0E, 0x11, 0x01, 0x0D, 0x15, 0x15, 0x0E, 0x00}, /* '@' */
    {0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11, 0x00}, /* 'A' */
    {0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E, 0x00}, /* 'B' */
    {0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E, 0x00}, /* 'C' */
    {0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C, 0x00}, /* 'D' */
    {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F, 0x00}, /* 'E' */
    {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10, 0x00}, /* 'F' */
    {0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F, 0x00}, /* 'G' */
    {0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11, 0x00}, /* 'H' */
    {0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E, 0x00}, /* 'I' */
    {0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C, 0x00}, /* 'J' */
    {0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11, 0x00}, /* 'K' */
    {0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F, 0x00}, /* 'L' */
    {0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11, 0x00}, /* 'M' */
    {0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11, 0x00}, /* 'N' */
    {0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E, 0x00}, /* 'O' */
    {0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10, 0x00}, /* 'P' */
    {0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D, 0x00}, /* 'Q' */
    {0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11, 0x00}, /* 'R' */
    {0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E, 0x00}, /* 'S' */
    {0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x00}, /* 'T' */
    {0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E, 0x00}, /* 'U' */
    {0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04, 0x00}, /* 'V' */
    {0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A, 0x00}, /* 'W' */
    {0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11, 0x00}, /* 'X' */
    {0x11, 0x11, 0x0A, 0x04, 0x04, 0x04, 0x04, 0x00}, /* 'Y' */
    {0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F, 0x00}, /* 'Z' */
    {0x0E, 0x08, 0x08, 0x08, 0x08, 0x08, 0x0E, 0x00}, /* '[' */
    {0x00, 0x10, 0x08, 0x04, 0x02, 0x01, 0x00, 0x00}, /* '\\' */
    {0x0E, 0x02, 0x02, 0x02, 0x02, 0x02, 0x0E, 0x00}, /* ']' */
    {0x04, 0x0A, 0x11, 0x00, 0x00, 0x00, 0x00, 0x00}, /* '^' */
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1F}, /* '_' */
    {0x08, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00}, /* '`' */
    {0x00, 0x00, 0x0E, 0x01, 0x0F, 0x11, 0x0F, 0x00}, /* 'a' */
    {0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x1E, 0x00}, /* 'b' */
    {0x00, 0x00, 0x0E, 0x10, 0x10, 0x11, 0x0E, 0x00}, /* 'c' */
    {0x01, 0x01, 0x0D, 0x13, 0x11, 0x11, 0x0F, 0x00}, /* 'd' */
    {0x00, 0x00, 0x0E, 0x11, 0x1F, 0x10, 0x0E, 0x00}, /* 'e' */
    {0x06, 0x09, 0x08, 0x1C, 0x08, 0x08, 0x08, 0x00}, /* 'f' */
    {0x00, 0x00, 0x0F, 0x11, 0x11, 0x0F, 0x01, 0x0E}, /* 'g' */
    {0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x11, 0x00}, /* 'h' */
    {0x04, 0x00, 0x0C, 0x04, 0x04, 0x04, 0x0E, 0x00}, /* 'i' */
    {0x02, 0x00, 0x06, 0x02, 0x02, 0x02, 0x12, 0x0C}, /* 'j' */
    {0x10, 0x10, 0x12, 0x14, 0x18, 0x14, 0x12, 0x00}, /* 'k' */
    {0x0C, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E, 0x00}, /* 'l' */
    {0x00, 0x00, 0x1A, 0x15, 0x15, 0x11, 0x11, 0x00}, /* 'm' */
    {0x00, 0x00, 0x16, 0x19, 0x11, 0x11, 0x11, 0x00}, /* 'n' */
    {0x00, 0x00, 0x0E, 0x11, 0x11, 0x11, 0x0E, 0x00}, /* 'o' */
    {0x00, 0x00, 0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10}, /* 'p' */
    {0x00, 0x00, 0x0F, 0x11, 0x11, 0x0F, 0x01, 0x01}, /* 'q' */
    {0x00, 0x00, 0x16, 0x19, 0x10, 0x10, 0x10, 0x00}, /* 'r' */
    {0x00, 0x00, 0x0F, 0x10, 0x0E, 0x01, 0x1E, 0x00}, /* 's' */
    {0x08, 0x08, 0x1C, 0x08, 0x08, 0x09, 0x06, 0x00}, /* 't' */
    {0x00, 0x00, 0x11, 0x11, 0x11, 0x13, 0x0D, 0x00}, /* 'u' */
    {0x00, 0x00, 0x11, 0x11, 0x11, 0x0A, 0x04, 0x00}, /* 'v' */
    {0x00, 0x00, 0x11, 0x11, 0x15, 0x15, 0x0A, 0x00}, /* 'w' */
    {0x00, 0x00, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x00}, /* 'x' */
    {0x00, 0x00, 0x11, 0x11, 0x11, 0x0F, 0x01, 0x0E}, /* 'y' */
    {0x00, 0x00, 0x1F, 0x02, 0x04, 0x08, 0x1F, 0x00}, /* 'z' */
    {0x02, 0x04, 0x04, 0x08, 0x04, 0x04, 0x02, 0x00}, /* '{' */
    {0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x00}, /* '|' */
    {0x08, 0x04, 0x04, 0x02, 0x04, 0x04, 0x08, 0x00}, /* '}' */
    {0x00, 0x00, 0x08, 0x15, 0x02, 0x00, 0x00, 0x00}, /* '~' */
};

/* ---- the canvas ---- */

typedef struct Rgb {
  uint8_t r, g, b;
} Rgb;

enum { ALIGN_LEFT, ALIGN_CENTER, ALIGN_RIGHT };

typedef struct Canvas {
  int w, h;
  FILE *svg;              /* SVG: elements are printed here */
  uint8_t *px;            /* PNG: [h][w][3] */
  float *cover;           /* PNG: coverage of the shape being painted, [h][w] */
  int bx0, by0, bx1, by1; /* PNG: the box that holds its nonzero coverage */
} Canvas;

static double clampd(double v, double lo, double hi) {
  return v < lo ? lo : v > hi ? hi : v;
}

static void svg_color(FILE *f, Rgb c) {
  fprintf(f, "#%02x%02x%02x", c.r, c.g, c.b);
}

/* Length of the valid UTF-8 sequence at s, or 0. */
static int utf8_len(const unsigned char *s) {
  unsigned char c = s[0];
  int n = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
  unsigned char lo = c == 0xE0 ? 0xA0 : c == 0xF0 ? 0x90 : 0x80;
  unsigned char hi = c == 0xED ? 0x9F : c == 0xF4 ? 0x8F : 0xBF;
  if (n && (s[1] < lo || s[1] > hi))
    return 0;
  for (int i = 2; i < n; i++)
    if ((s[i] & 0xC0) != 0x80)
      return 0;
  return n;
}

/* Text as XML character data: markup escaped, control bytes and invalid
   UTF-8 shown as '?'. */
static void svg_escape(FILE *f, const char *text) {
  for (const unsigned char *s = (const unsigned char *)text; *s;) {
    int n = *s >= 0x80 ? utf8_len(s) : 1;
    if (*s == '&')
      fputs("&amp;", f);
    else if (*s == '<')
      fputs("&lt;", f);
    else if (*s == '>')
      fputs("&gt;", f);
    else if (n == 0 || (*s < 0x20 && *s != '\t'))
      fputc('?', f);
    else
      fwrite(s, 1, (size_t)n, f);
    s += n ? n : 1;
  }
}

static void cv_fill(Canvas *cv, Rgb c) {
  if (cv->svg) {
    fprintf(cv->svg, "<rect width=\"%d\" height=\"%d\" fill=\"", cv->w, cv->h);
    svg_color(cv->svg, c);
    fputs("\"/>\n", cv->svg);
    return;
  }
  for (size_t i = 0; i < (size_t)cv->w * cv->h; i++) {
    cv->px[3 * i] = c.r;
    cv->px[3 * i + 1] = c.g;
    cv->px[3 * i + 2] = c.b;
  }
}

static void cv_group(Canvas *cv, const char *cls) {
  if (cv->svg) {
    if (cls)
      fprintf(cv->svg, "<g class=\"%s\">\n", cls);
    else
      fputs("</g>\n", cv->svg);
  }
}

/* PNG: pixels whose centres lie within the box [x0,x1] x [y0,y1], clipped. */
static void cover_box(const Canvas *cv, double x0, double y0, double x1, double y1, int *ix0,
                      int *iy0, int *ix1, int *iy1) {
  *ix0 = (int)clampd(floor(x0), 0, cv->w);
  *iy0 = (int)clampd(floor(y0), 0, cv->h);
  *ix1 = (int)clampd(ceil(x1) + 1, 0, cv->w);
  *iy1 = (int)clampd(ceil(y1) + 1, 0, cv->h);
}

static void cover_add(Canvas *cv, int x, int y, double a) {
  float *p = &cv->cover[(size_t)y * cv->w + x];
  if (a > *p)
    *p = (float)a;
  if (x < cv->bx0)
    cv->bx0 = x;
  if (x >= cv->bx1)
    cv->bx1 = x + 1;
  if (y < cv->by0)
    cv->by0 = y;
  if (y >= cv->by1)
    cv->by1 = y + 1;
}

/* PNG: blends c in by the coverage, then clears it. */
static void cover_paint(Canvas *cv, Rgb c) {
  for (int y = cv->by0; y < cv->by1; y++)
    for (int x = cv->bx0; x < cv->bx1; x++) {
      float *a = &cv->cover[(size_t)y * cv->w + x];
      uint8_t *p = &cv->px[((size_t)y * cv->w + x) * 3];
      if (*a > 0) {
        p[0] = (uint8_t)lrint(p[0] + (c.r - p[0]) * *a);
        p[1] = (uint8_t)lrint(p[1] + (c.g - p[1]) * *a);
        p[2] = (uint8_t)lrint(p[2] + (c.b - p[2]) * *a);
        *a = 0;
      }
    }
  cv->bx0 = cv->w;
  cv->by0 = cv->h;
  cv->bx1 = cv->by1 = 0;
}

enum { DASH_ON = 6, DASH_PERIOD = 10 };

/* points xy[0..2n); `dashed` draws DASH_ON pixels of every DASH_PERIOD. */
static void cv_polyline(Canvas *cv, const char *cls, const double *xy, int n, Rgb c, double width,
                        int dashed) {
  if (n < 2)
    return;
  if (cv->svg) {
    fprintf(cv->svg, "<polyline class=\"%s\" fill=\"none\" stroke=\"", cls);
    svg_color(cv->svg, c);
    fprintf(cv->svg, "\" stroke-width=\"%g\" stroke-linejoin=\"round\"%s points=\"", width,
            dashed ? " stroke-dasharray=\"6 4\"" : " stroke-linecap=\"round\"");
    for (int i = 0; i < n; i++)
      fprintf(cv->svg, "%s%.1f,%.1f", i ? " " : "", xy[2 * i], xy[2 * i + 1]);
    fputs("\"/>\n", cv->svg);
    return;
  }
  double half = width / 2, along = 0;
  for (int i = 0; i + 1 < n; i++) {
    double ax = xy[2 * i], ay = xy[2 * i + 1], bx = xy[2 * i + 2], by = xy[2 * i + 3];
    double dx = bx - ax, dy = by - ay, len2 = dx * dx + dy * dy, len = sqrt(len2);
    int x0, y0, x1, y1;
    cover_box(cv, fmin(ax, bx) - half - 1, fmin(ay, by) - half - 1, fmax(ax, bx) + half + 1,
              fmax(ay, by) + half + 1, &x0, &y0, &x1, &y1);
    for (int y = y0; y < y1; y++)
      for (int x = x0; x < x1; x++) {
        double qx = x + 0.5 - ax, qy = y + 0.5 - ay;
        double t = len2 > 0 ? clampd((qx * dx + qy * dy) / len2, 0, 1) : 0;
        double ex = qx - t * dx, ey = qy - t * dy;
        double a = clampd(half + 0.5 - sqrt(ex * ex + ey * ey), 0, 1);
        if (a > 0 && dashed) {
          double phase = fmod(along + t * len, DASH_PERIOD);
          double edge = phase < DASH_ON ? fmin(phase, DASH_ON - phase)
                                        : -fmin(phase - DASH_ON, DASH_PERIOD - phase);
          a *= clampd(edge + 0.5, 0, 1);
        }
        if (a > 0)
          cover_add(cv, x, y, a);
      }
    along += len;
  }
  cover_paint(cv, c);
}

static void cv_dot(Canvas *cv, const char *cls, double x, double y, double r, Rgb c) {
  if (cv->svg) {
    fprintf(cv->svg, "<circle class=\"%s\" cx=\"%.1f\" cy=\"%.1f\" r=\"%g\" fill=\"", cls, x, y, r);
    svg_color(cv->svg, c);
    fputs("\"/>\n", cv->svg);
    return;
  }
  int x0, y0, x1, y1;
  cover_box(cv, x - r - 1, y - r - 1, x + r + 1, y + r + 1, &x0, &y0, &x1, &y1);
  for (int py = y0; py < y1; py++)
    for (int px = x0; px < x1; px++) {
      double a = clampd(r + 0.5 - hypot(px + 0.5 - x, py + 0.5 - y), 0, 1);
      if (a > 0)
        cover_add(cv, px, py, a);
    }
  cover_paint(cv, c);
}

static int glyph_bit(const uint8_t *g, int x, int y) {
  return x >= 0 && x < FONT_W && y >= 0 && y < FONT_H && (g[y] >> (FONT_W - 1 - x) & 1);
}

/* Pixel (sx, sy) of glyph g enlarged `scale` times: Scale2x and Scale3x
   (AdvanceMAME) round the staircase of diagonals; other scales repeat. */
static int glyph_scaled(const uint8_t *g, int scale, int sx, int sy) {
  int x = sx / scale, y = sy / scale, i = sx % scale, j = sy % scale;
  int A = glyph_bit(g, x - 1, y - 1), B = glyph_bit(g, x, y - 1), C = glyph_bit(g, x + 1, y - 1);
  int D = glyph_bit(g, x - 1, y), E = glyph_bit(g, x, y), F = glyph_bit(g, x + 1, y);
  int G = glyph_bit(g, x - 1, y + 1), H = glyph_bit(g, x, y + 1), I = glyph_bit(g, x + 1, y + 1);
  int ul = D == B && B != F && D != H, ur = B == F && B != D && F != H;
  int dl = D == H && D != B && H != F, dr = H == F && D != H && B != F;
  if (scale == 2)
    return j == 0 ? (i == 0 ? (ul ? D : E) : (ur ? F : E)) : (i == 0 ? (dl ? D : E) : (dr ? F : E));
  if (scale == 3) {
    switch (j * 3 + i) {
    case 0:
      return ul ? D : E;
    case 1:
      return (ul && E != C) || (ur && E != A) ? B : E;
    case 2:
      return ur ? F : E;
    case 3:
      return (ul && E != G) || (dl && E != A) ? D : E;
    case 5:
      return (ur && E != I) || (dr && E != C) ? F : E;
    case 6:
      return dl ? D : E;
    case 7:
      return (dl && E != I) || (dr && E != G) ? H : E;
    case 8:
      return dr ? F : E;
    default:
      return E;
    }
  }
  return E;
}

/* Characters drawn for the text: a UTF-8 sequence or a byte outside
   printable ASCII is one '?'. */
static int text_chars(const char *text, char *out, int cap) {
  int n = 0;
  for (const unsigned char *s = (const unsigned char *)text; *s && n < cap;) {
    int len = *s >= 0x80 ? utf8_len(s) : 1;
    out[n++] = *s >= 32 && *s < 127 ? (char)*s : '?';
    s += len ? len : 1;
  }
  return n;
}

/* Width in pixels of text at `scale` in the bitmap font. */
static int text_width(const char *text, int scale) {
  char chars[256];
  int n = text_chars(text, chars, sizeof chars);
  return n ? (n * FONT_ADVANCE - 1) * scale : 0;
}

int plot_text_width(const char *text, int scale) {
  return text_width(text, scale);
}

/* Calls paint(ctx, px, py) for each pixel of text at `s` with its top left
   corner at (left, top) that falls inside w x h. */
static void text_pixels(const char *text, int s, int left, int top, int w, int h,
                        void (*paint)(void *ctx, int px, int py), void *ctx) {
  char chars[256];
  int n = text_chars(text, chars, sizeof chars);
  for (int k = 0; k < n; k++) {
    const uint8_t *g = font[chars[k] - 32];
    for (int sy = 0; sy < FONT_H * s; sy++)
      for (int sx = 0; sx < FONT_W * s; sx++) {
        int px = left + k * FONT_ADVANCE * s + sx, py = top + sy;
        if (px >= 0 && px < w && py >= 0 && py < h && glyph_scaled(g, s, sx, sy))
          paint(ctx, px, py);
      }
  }
}

static void paint_black(void *ctx, int px, int py) {
  Image *img = ctx;
  memset(img->data + ((size_t)py * img->w + px) * img->c, 0, (size_t)img->c);
}

void plot_image_text(Image *img, int x, int y, int scale, const char *text) {
  text_pixels(text, scale, x, y, img->w, img->h, paint_black, img);
}

static void paint_cover(void *ctx, int px, int py) {
  cover_add(ctx, px, py, 1);
}

/* Text whose capitals are centred on y; x is its left end, centre or right
   end by align. size: 1 for labels, 2 for headings, 3 for the title. */
static void cv_text(Canvas *cv, const char *cls, double x, double y, int size, int align, Rgb c,
                    const char *text) {
  static const char *anchor[] = {"start", "middle", "end"};
  static const int svg_px[] = {0, 13, 15, 22}, scale[] = {0, 2, 2, 3};
  if (cv->svg) {
    /* The baseline sits 0.36 em below the middle of the capitals (DejaVu,
       Helvetica); dominant-baseline would say so, but renderers differ. */
    fprintf(cv->svg, "<text class=\"%s\" x=\"%.1f\" y=\"%.1f\" font-size=\"%d\"%s", cls, x,
            y + 0.36 * svg_px[size], svg_px[size], size >= 2 ? " font-weight=\"bold\"" : "");
    if (align != ALIGN_LEFT)
      fprintf(cv->svg, " text-anchor=\"%s\"", anchor[align]);
    fputs(" fill=\"", cv->svg);
    svg_color(cv->svg, c);
    fputs("\">", cv->svg);
    svg_escape(cv->svg, text);
    fputs("</text>\n", cv->svg);
    return;
  }
  char chars[256];
  int n = text_chars(text, chars, sizeof chars), s = scale[size];
  int w = text_width(text, s);
  int left = (int)lrint(align == ALIGN_LEFT ? x : align == ALIGN_CENTER ? x - w / 2.0 : x - w);
  int top = (int)lrint(y - 3.5 * s);
  text_pixels(text, s, left, top, cv->w, cv->h, paint_cover, cv);
  /* Headings and the title are bold: each column painted twice. */
  for (int k = 0; k < n; k++) {
    if (size >= 2)
      for (int sy = 0; sy < FONT_H * s; sy++)
        for (int sx = FONT_W * s - 1; sx >= 0; sx--) {
          int px = left + k * FONT_ADVANCE * s + sx, py = top + sy;
          if (px >= 0 && px + 1 < cv->w && py >= 0 && py < cv->h &&
              cv->cover[(size_t)py * cv->w + px] > 0)
            cover_add(cv, px + 1, py, 1);
        }
  }
  cover_paint(cv, c);
}

/* ---- the layout ---- */

enum { PLOT_W = 960, PLOT_H = 430, PLOT_MARKERS = 30 };
enum {
  SERIES_LOSS,
  SERIES_ACCURACY,
  SERIES_TEST_LOSS,
  SERIES_TEST_ACCURACY,
  SERIES_VAL_LOSS,
  SERIES_VAL_ACCURACY
};
/* The curves of a panel, in the legend's order. */
enum { KIND_TRAINING, KIND_VALIDATION, KIND_TEST, KINDS };
static const char *const kind_names[KINDS] = {"training", "validation", "test"};

static const Rgb white = {255, 255, 255}, ink = {34, 34, 34}, grey = {85, 85, 85},
                 grid = {228, 228, 228};
static const Rgb kind_rgb[KINDS] = {{31, 119, 180}, {44, 160, 44}, {255, 127, 14}};

typedef struct Axis {
  double lo, hi, step; /* the span drawn, and the distance between ticks */
  int decimals;        /* for tick labels; -1: %g */
} Axis;

typedef struct Panel {
  const char *name;      /* "loss" or "accuracy": the heading and the SVG class */
  int series[KINDS];     /* by kind */
  int unit;              /* values are fractions: the axis stays inside [0, 1] */
  double x0, y0, x1, y1; /* the plotting area, pixels */
  Axis x, y;
} Panel;

static double row_value(const EpochStats *r, int series) {
  double v = series == SERIES_LOSS           ? r->loss
             : series == SERIES_ACCURACY     ? r->accuracy
             : series == SERIES_TEST_LOSS    ? r->test_loss
             : series == SERIES_VAL_LOSS     ? r->val_loss
             : series == SERIES_VAL_ACCURACY ? r->val_accuracy
                                             : r->test_accuracy;
  /* Beyond 1e300 spans overflow: such a value is no more drawable than inf. */
  return isfinite(v) && fabs(v) <= 1e300 ? v : NAN;
}

/* The smallest of 1, 2, 5 times a power of ten that cuts span into at most
   `most` intervals, and at least `least`. */
static double tick_step(double span, int most, double least) {
  double p = pow(10, floor(log10(span / most)));
  static const double m[] = {1, 2, 5, 10};
  double step = 10 * p;
  for (int i = 0; i < 4; i++)
    if (span / (m[i] * p) <= most) {
      step = m[i] * p;
      break;
    }
  return step < least ? least : step;
}

/* The y axis for values in [lo, hi] (lo > hi: none). */
static Axis y_axis(double lo, double hi, int unit) {
  if (!(lo <= hi))
    return (Axis){0, 1, 0.2, 1};
  /* A span of at least 5% of the values' size, so that one epoch, or two
     equal values, do not blow rounding noise up to the whole panel. */
  double a = lo, b = hi, least = 0.05 * fmax(fabs(lo), fabs(hi));
  if (b - a < least) {
    a = (lo + hi - least) / 2;
    b = (lo + hi + least) / 2;
  }
  if (b == a) { /* all zero */
    a -= 0.5;
    b += 0.5;
  }
  double pad = 0.05 * (b - a);
  Axis ax;
  ax.step = tick_step(b - a + 2 * pad, 7, 0);
  ax.lo = floor((a - pad) / ax.step) * ax.step;
  ax.hi = ceil((b + pad) / ax.step) * ax.step;
  if (lo >= 0 && ax.lo < 0)
    ax.lo = 0;
  if (unit && hi <= 1 && ax.hi > 1)
    ax.hi = 1;
  double big = fmax(fabs(ax.lo), fabs(ax.hi));
  ax.decimals = big >= 1e6 || ax.step < 1e-6 ? -1
                : ax.step >= 1               ? 0
                                             : (int)ceil(-log10(ax.step) - 1e-9);
  return ax;
}

/* The x axis for epochs first..last: integer ticks, 3% margins. */
static Axis x_axis(int first, int last) {
  Axis a;
  a.lo = first;
  a.hi = last;
  if (a.hi - a.lo < 1) {
    a.lo -= 0.5;
    a.hi += 0.5;
  }
  a.step = tick_step(a.hi - a.lo, 10, 1);
  double pad = 0.03 * (a.hi - a.lo);
  a.lo -= pad;
  a.hi += pad;
  a.decimals = 0;
  return a;
}

static double map_x(const Panel *p, double v) {
  return p->x0 + (v - p->x.lo) / (p->x.hi - p->x.lo) * (p->x1 - p->x0);
}

static double map_y(const Panel *p, double v) {
  return p->y1 - (v - p->y.lo) / (p->y.hi - p->y.lo) * (p->y1 - p->y0);
}

static void tick_label(char *buf, size_t n, const Axis *a, double v) {
  if (fabs(v) < a->step * 1e-9)
    v = 0; /* no "-0.00" */
  if (a->decimals < 0)
    snprintf(buf, n, "%.3g", v);
  else
    snprintf(buf, n, "%.*f", a->decimals, v);
}

/* The values of a's ticks into out; returns how many (at most 64). */
static int axis_ticks(const Axis *a, double *out) {
  double k0 = ceil(a->lo / a->step - 1e-9), k1 = floor(a->hi / a->step + 1e-9);
  int n = 0;
  for (double k = k0; k <= k1 && n < 64; k++)
    out[n++] = k * a->step;
  return n;
}

/* One series: polylines through runs of finite values, markers on points;
   the test curve dashed. */
static void draw_series(Canvas *cv, const Panel *p, const EpochStats *rows, int n, int series,
                        int kind) {
  Rgb c = kind_rgb[kind];
  const char *cls = kind_names[kind];
  int test = kind == KIND_TEST;
  double *xy = malloc(sizeof *xy * 2 * (size_t)(n ? n : 1));
  if (!xy)
    return; /* only the curve is lost; the caller checks memory up front */
  for (int i = 0; i < n;) {
    int m = 0;
    for (; i < n && !isnan(row_value(&rows[i], series)); i++, m++) {
      xy[2 * m] = map_x(p, rows[i].epoch);
      xy[2 * m + 1] = map_y(p, row_value(&rows[i], series));
    }
    cv_polyline(cv, cls, xy, m, c, 2, test);
    for (int k = 0; k < m; k++)
      if (n <= PLOT_MARKERS || m == 1)
        cv_dot(cv, cls, xy[2 * k], xy[2 * k + 1], 3, c);
    for (; i < n && isnan(row_value(&rows[i], series)); i++)
      ;
  }
  free(xy);
}

static void draw_panel(Canvas *cv, Panel *p, const EpochStats *rows, int n) {
  double lo = INFINITY, hi = -INFINITY;
  for (int s = 0; s < KINDS; s++)
    for (int i = 0; i < n; i++) {
      double v = row_value(&rows[i], p->series[s]);
      if (!isnan(v)) {
        lo = fmin(lo, v);
        hi = fmax(hi, v);
      }
    }
  p->y = y_axis(lo, hi, p->unit);
  int first = n ? rows[0].epoch : 1, last = first;
  for (int i = 1; i < n; i++) { /* rows come in order, but do not rely on it */
    first = rows[i].epoch < first ? rows[i].epoch : first;
    last = rows[i].epoch > last ? rows[i].epoch : last;
  }
  p->x = x_axis(first, last);

  cv_group(cv, p->name);
  cv_text(cv, "heading", p->x0, p->y0 - 17, 2, ALIGN_LEFT, ink, p->name);
  /* Grid lines on pixel centres, so that a 1-pixel line is crisp. */
  double ticks[64];
  char label[64];
  int nt = axis_ticks(&p->y, ticks);
  for (int i = 0; i < nt; i++) {
    double y = floor(map_y(p, ticks[i])) + 0.5;
    double line[4] = {p->x0, y, p->x1, y};
    cv_polyline(cv, "grid", line, 2, grid, 1, 0);
    tick_label(label, sizeof label, &p->y, ticks[i]);
    cv_text(cv, "ytick", p->x0 - 8, y, 1, ALIGN_RIGHT, grey, label);
  }
  nt = axis_ticks(&p->x, ticks);
  for (int i = 0; i < nt; i++) {
    double x = floor(map_x(p, ticks[i])) + 0.5;
    double line[4] = {x, p->y0, x, p->y1};
    cv_polyline(cv, "grid", line, 2, grid, 1, 0);
    tick_label(label, sizeof label, &p->x, ticks[i]);
    cv_text(cv, "xtick", x, p->y1 + 15, 1, ALIGN_CENTER, grey, label);
  }
  cv_text(cv, "xlabel", (p->x0 + p->x1) / 2, p->y1 + 40, 1, ALIGN_CENTER, ink, "epoch");
  if (n == 0)
    cv_text(cv, "empty", (p->x0 + p->x1) / 2, (p->y0 + p->y1) / 2, 1, ALIGN_CENTER, grey,
            "no epochs yet");
  for (int k = KINDS - 1; k >= 0; k--) /* training on top */
    draw_series(cv, p, rows, n, p->series[k], k);
  double frame[10] = {p->x0, p->y0, p->x1, p->y0, p->x1, p->y1, p->x0, p->y1, p->x0, p->y0};
  cv_polyline(cv, "frame", frame, 5, grey, 1, 0);
  cv_group(cv, NULL);
}

static void draw(Canvas *cv, const char *title, const EpochStats *rows, int n) {
  cv_fill(cv, white);
  cv_text(cv, "title", PLOT_W / 2.0, 22, 3, ALIGN_CENTER, ink, title);
  /* The legend: a stretch of each line with a marker, then its name; the
     validation curve only where some epoch has a validation score. */
  bool validation = false;
  for (int i = 0; i < n; i++)
    validation |= !isnan(row_value(&rows[i], SERIES_VAL_LOSS)) ||
                  !isnan(row_value(&rows[i], SERIES_VAL_ACCURACY));
  for (int k = 0, shown = 0; k < KINDS; k++) {
    if (k == KIND_VALIDATION && !validation)
      continue;
    double x = PLOT_W / 2.0 - (validation ? 235 : 150) + 170 * shown++, y = 56;
    double line[4] = {x, y, x + 28, y};
    cv_group(cv, "legend");
    cv_polyline(cv, kind_names[k], line, 2, kind_rgb[k], 2, k == KIND_TEST);
    cv_dot(cv, kind_names[k], x + 14, y, 3, kind_rgb[k]);
    cv_text(cv, kind_names[k], x + 36, y, 1, ALIGN_LEFT, ink, kind_names[k]);
    cv_group(cv, NULL);
  }
  /* Plot areas on pixel centres: 84 px for y labels (six characters), panels
     384 px wide. */
  Panel panels[2] = {
      {.name = "loss", .series = {SERIES_LOSS, SERIES_VAL_LOSS, SERIES_TEST_LOSS}, .unit = 0},
      {.name = "accuracy",
       .series = {SERIES_ACCURACY, SERIES_VAL_ACCURACY, SERIES_TEST_ACCURACY},
       .unit = 1},
  };
  for (int i = 0; i < 2; i++) {
    panels[i].x0 = 84.5 + 468 * i;
    panels[i].x1 = panels[i].x0 + 384;
    panels[i].y0 = 98.5;
    panels[i].y1 = 370.5;
  }
  for (int i = 0; i < 2; i++)
    draw_panel(cv, &panels[i], rows, n);
}

/* ---- files ---- */

static const char *suffix(const char *path) {
  const char *dot = strrchr(path, '.'), *slash = strrchr(path, '/');
  return dot && (!slash || dot > slash) ? dot : "";
}

bool plot_format_ok(const char *path) {
  return path && (!strcasecmp(suffix(path), ".png") || !strcasecmp(suffix(path), ".svg"));
}

int plot_write(const char *path, const char *title, const EpochStats *rows, int n, Err *e) {
  if (!plot_format_ok(path))
    return err_set(e, path, "cannot draw this format (name the plot FILE.png or FILE.svg)");
  if (!title)
    title = "";
  if (n < 0 || (n > 0 && !rows))
    n = 0;
  Canvas cv = {.w = PLOT_W, .h = PLOT_H, .bx0 = PLOT_W, .by0 = PLOT_H};
  if (!strcasecmp(suffix(path), ".svg")) {
    AtomicFile af;
    if (atomic_open(&af, path, e) < 0)
      return -1;
    cv.svg = af.f;
    fprintf(cv.svg,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
            "viewBox=\"0 0 %d %d\" font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\">\n",
            PLOT_W, PLOT_H, PLOT_W, PLOT_H);
    fputs("<title>", cv.svg);
    svg_escape(cv.svg, title);
    fputs(": training curves</title>\n", cv.svg);
    draw(&cv, title, rows, n);
    fputs("</svg>\n", cv.svg);
    return atomic_commit(&af, e);
  }
  cv.px = malloc((size_t)PLOT_W * PLOT_H * 3);
  cv.cover = calloc((size_t)PLOT_W * PLOT_H, sizeof *cv.cover);
  int rc;
  if (!cv.px || !cv.cover) {
    e->internal = 1;
    rc = err_set(e, path, "out of memory for a %dx%d picture", PLOT_W, PLOT_H);
  } else {
    draw(&cv, title, rows, n);
    Image img = {PLOT_H, PLOT_W, 3, cv.px};
    rc = image_write_png(path, &img, e);
  }
  free(cv.cover);
  free(cv.px);
  return rc;
}
