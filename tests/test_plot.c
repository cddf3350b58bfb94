/*
 * test_plot.c: training curves (runtime/plot.c).
 *
 * The SVG is read back as text: its elements must nest, each panel (a <g>
 * with the panel's class) holds a polyline per series with one point per
 * finite value, and the tick labels, paired with their grid lines, give the
 * mapping from values to pixels. Through that mapping the test finds where a
 * known value must land, and checks the SVG's point and the PNG's pixels
 * there: the PNG shares the SVG's pixel coordinates.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/image.h"
#include "plot.h"
#include "testutil.h"

static const EpochStats four[4] = {
    {1, 0.90, 0.70, 1.00, 0.65, 3.0, 0.001, NAN, NAN},
    {2, 0.60, 0.80, 0.70, 0.78, 3.1, 0.001, NAN, NAN},
    {3, 0.50, 0.85, 0.55, 0.83, 3.0, 0.001, NAN, NAN},
    {4, 0.45, 0.87, 0.50, 0.86, 3.2, 0.001, NAN, NAN},
};

static char *read_text(const char *path) {
  static char buf[1 << 20];
  size_t n = tu_read_file(path, buf, sizeof buf);
  assert_true(n > 0 && n < sizeof buf - 1);
  return buf;
}

/* ---- a little SVG reading ---- */

/* Checks that the elements nest: every <x ...> has its </x>, and every
   attribute value is quoted. */
static void assert_xml_nests(const char *s) {
  char stack[64][32];
  int depth = 0, elements = 0;
  for (const char *p = strchr(s, '<'); p; p = strchr(p + 1, '<')) {
    if (p[1] == '?')
      continue;
    const char *end = strchr(p, '>');
    assert_non_null(end);
    for (const char *q = p + 1; q < end; q++)
      assert_false(*q == '<');
    if (p[1] == '/') {
      assert_true(depth > 0);
      depth--;
      size_t n = strlen(stack[depth]);
      if (strncmp(p + 2, stack[depth], n) || p[2 + n] != '>')
        fail_msg("</%.*s> closes <%s>", (int)n, p + 2, stack[depth]);
    } else if (end[-1] != '/') {
      assert_true(depth < 64);
      size_t n = strcspn(p + 1, " \t\n>");
      assert_true(n > 0 && n < 32);
      memcpy(stack[depth], p + 1, n);
      stack[depth++][n] = '\0';
    }
    int quotes = 0;
    for (const char *q = p; q < end; q++)
      quotes += *q == '"';
    assert_int_equal(quotes % 2, 0);
    elements++;
  }
  assert_int_equal(depth, 0);
  assert_true(elements > 10);
}

/* The text of the panel group <g class="NAME"> ... </g>, malloc'd. */
static char *panel(const char *svg, const char *name) {
  char open[64];
  snprintf(open, sizeof open, "<g class=\"%s\">", name);
  const char *a = strstr(svg, open);
  if (!a)
    fail_msg("no %s in the SVG", open);
  const char *b = strstr(a, "</g>");
  assert_non_null(b);
  char *out = strndup(a, (size_t)(b - a));
  assert_non_null(out);
  return out;
}

/* The points of the polyline whose tag starts at p; returns their count. */
static int points(const char *p, double *xy, int cap) {
  const char *q = strstr(p, "points=\"");
  assert_non_null(q);
  q += 8;
  int n = 0;
  while (*q != '"') {
    char *end;
    double x = strtod(q, &end);
    assert_true(end > q && *end == ',');
    double y = strtod(end + 1, &end);
    assert_true(n < cap);
    xy[2 * n] = x;
    xy[2 * n + 1] = y;
    n++;
    q = end;
    while (*q == ' ')
      q++;
  }
  return n;
}

/* Every `<polyline class="CLS"` in text: counts, points of the k-th. */
static int polylines(const char *text, const char *cls, int *counts, int cap) {
  char tag[64];
  snprintf(tag, sizeof tag, "<polyline class=\"%s\"", cls);
  int n = 0;
  double xy[2 * 512];
  for (const char *p = strstr(text, tag); p; p = strstr(p + 1, tag)) {
    assert_true(n < cap);
    counts[n++] = points(p, xy, 512);
  }
  return n;
}

/* Tick labels of the panel (class "ytick" or "xtick"), each paired with the
   grid line drawn just before it: pixel position and value. */
static int ticks(const char *text, const char *cls, double *pixel, double *value, int cap) {
  char tag[64];
  snprintf(tag, sizeof tag, "<text class=\"%s\"", cls);
  int n = 0;
  for (const char *p = strstr(text, tag); p; p = strstr(p + 1, tag)) {
    /* The last grid line before this label. */
    const char *grid = NULL;
    for (const char *g = strstr(text, "<polyline class=\"grid\""); g && g < p;
         g = strstr(g + 1, "<polyline class=\"grid\""))
      grid = g;
    assert_non_null(grid);
    double xy[4];
    assert_int_equal(points(grid, xy, 2), 2);
    assert_true(n < cap);
    pixel[n] = cls[0] == 'y' ? xy[1] : xy[0];
    const char *body = strchr(p, '>') + 1;
    char *end;
    value[n] = strtod(body, &end);
    assert_true(end > body && *end == '<');
    n++;
  }
  return n;
}

/* The pixel position of `v` on a panel's axis, from its tick labels. */
static double locate(const char *text, const char *cls, double v) {
  double pixel[64], value[64];
  int n = ticks(text, cls, pixel, value, 64);
  if (n == 1 && value[0] == v) /* one epoch: one tick */
    return pixel[0];
  assert_true(n >= 2);
  /* Ticks are on pixel centres (floor + 0.5), so they may sit half a pixel
     away from the exact mapping: fit the line through the first and last. */
  double slope = (pixel[n - 1] - pixel[0]) / (value[n - 1] - value[0]);
  for (int i = 1; i + 1 < n; i++)
    assert_true(fabs(pixel[0] + slope * (value[i] - value[0]) - pixel[i]) <= 1.0);
  return pixel[0] + slope * (v - value[0]);
}

/* The SVG's width and height attributes. */
static void svg_size(const char *svg, int *w, int *h) {
  const char *p = strstr(svg, "<svg ");
  assert_non_null(p);
  const char *pw = strstr(p, " width=\""), *ph = strstr(p, " height=\"");
  assert_non_null(pw);
  assert_non_null(ph);
  *w = atoi(pw + 8);
  *h = atoi(ph + 9);
}

/* ---- PNG pixels ---- */

/* True when some pixel within r of (x, y) has colour c (within 40 in sum of
   channel differences). */
static int colour_near(const Image *img, double x, double y, int r, const int c[3]) {
  for (int py = (int)floor(y) - r; py <= (int)floor(y) + r; py++)
    for (int px = (int)floor(x) - r; px <= (int)floor(x) + r; px++) {
      if (px < 0 || py < 0 || px >= img->w || py >= img->h)
        continue;
      const uint8_t *p = &img->data[((size_t)py * img->w + px) * 3];
      if (abs(p[0] - c[0]) + abs(p[1] - c[1]) + abs(p[2] - c[2]) < 40)
        return 1;
    }
  return 0;
}

static const int blue[3] = {31, 119, 180}, orange[3] = {255, 127, 14};

/* ---- tests ---- */

static void test_plot_format_ok(void **state) {
  (void)state;
  assert_true(plot_format_ok("curves.png"));
  assert_true(plot_format_ok("dir/curves.PNG"));
  assert_true(plot_format_ok("curves.svg"));
  assert_true(plot_format_ok("a.b/curves.Svg"));
  assert_false(plot_format_ok("curves.jpg"));
  assert_false(plot_format_ok("curves.png.txt"));
  assert_false(plot_format_ok("png"));
  assert_false(plot_format_ok("dir.png/curves"));
  assert_false(plot_format_ok(""));
}

static void test_plot_svg_structure(void **state) {
  (void)state;
  Err e = {0};
  assert_int_equal(plot_write(tu_path("four.svg"), "fashion <&> \"net\"", four, 4, &e), 0);
  const char *svg = read_text(tu_path("four.svg"));
  assert_true(!strncmp(svg, "<?xml", 5));
  assert_contains(svg, "xmlns=\"http://www.w3.org/2000/svg\"");
  assert_xml_nests(svg);
  assert_contains(svg, ">fashion &lt;&amp;&gt; \"net\"</text>");
  assert_null(strstr(svg, "<&>"));
  static const char *names[] = {"loss", "accuracy"};
  for (int k = 0; k < 2; k++) {
    char *g = panel(svg, names[k]);
    assert_contains(g, names[k]);
    int counts[8];
    assert_int_equal(polylines(g, "training", counts, 8), 1);
    assert_int_equal(counts[0], 4);
    assert_int_equal(polylines(g, "test", counts, 8), 1);
    assert_int_equal(counts[0], 4);
    /* Few epochs: a marker on every point. */
    assert_int_equal(tu_count(g, "<circle class=\"training\""), 4);
    assert_int_equal(tu_count(g, "<circle class=\"test\""), 4);
    assert_contains(g, ">epoch</text>");
    free(g);
  }
  char *legend = panel(svg, "legend");
  assert_contains(legend, ">training</text>");
  free(legend);
  assert_contains(svg, ">test</text>");
}

/* Every point of the SVG's curves lands where the tick labels say. */
static void test_plot_svg_points_follow_ticks(void **state) {
  (void)state;
  Err e = {0};
  assert_int_equal(plot_write(tu_path("ticks.svg"), "net", four, 4, &e), 0);
  const char *svg = read_text(tu_path("ticks.svg"));
  char *loss = panel(svg, "loss"), *acc = panel(svg, "accuracy");
  double xy[16];
  const char *p = strstr(loss, "<polyline class=\"training\"");
  assert_int_equal(points(p, xy, 8), 4);
  for (int i = 0; i < 4; i++) {
    assert_true(fabs(xy[2 * i] - locate(loss, "xtick", four[i].epoch)) < 1.0);
    assert_true(fabs(xy[2 * i + 1] - locate(loss, "ytick", four[i].loss)) < 1.0);
  }
  p = strstr(acc, "<polyline class=\"test\"");
  assert_int_equal(points(p, xy, 8), 4);
  for (int i = 0; i < 4; i++) {
    assert_true(fabs(xy[2 * i] - locate(acc, "xtick", four[i].epoch)) < 1.0);
    assert_true(fabs(xy[2 * i + 1] - locate(acc, "ytick", four[i].test_accuracy)) < 1.0);
  }
  /* The y axes cover the values, and accuracy does not pass 1. */
  double pixel[64], value[64];
  int n = ticks(acc, "ytick", pixel, value, 64);
  assert_true(value[0] <= 0.65 && value[n - 1] >= 0.87 && value[n - 1] <= 1.0);
  free(loss);
  free(acc);
}

static void test_plot_png_pixels(void **state) {
  (void)state;
  Err e = {0};
  assert_int_equal(plot_write(tu_path("four.svg"), "net", four, 4, &e), 0);
  assert_int_equal(plot_write(tu_path("four.png"), "net", four, 4, &e), 0);
  const char *svg = read_text(tu_path("four.svg"));
  int w, h;
  svg_size(svg, &w, &h);
  Image img;
  assert_int_equal(image_read(tu_path("four.png"), &img, &e), 0);
  assert_int_equal(img.w, w);
  assert_int_equal(img.h, h);
  assert_int_equal(img.c, 3);
  char *loss = panel(svg, "loss"), *acc = panel(svg, "accuracy");
  /* Epoch 1's training loss (0.90) and test loss (1.00). */
  double x1 = locate(loss, "xtick", 1), y1 = locate(loss, "ytick", 0.90);
  assert_true(colour_near(&img, x1, y1, 1, blue));
  assert_true(colour_near(&img, x1, locate(loss, "ytick", 1.00), 1, orange));
  /* The line between epochs 1 and 2 passes through the middle. */
  double x2 = locate(loss, "xtick", 2), y2 = locate(loss, "ytick", 0.60);
  assert_true(colour_near(&img, (x1 + x2) / 2, (y1 + y2) / 2, 1, blue));
  /* No curve colour where no value is: epoch 1 at loss 0.75. */
  assert_false(colour_near(&img, x1, locate(loss, "ytick", 0.75), 2, blue));
  assert_false(colour_near(&img, x1, locate(loss, "ytick", 0.75), 2, orange));
  /* Accuracy: epoch 4, training 0.87. */
  assert_true(colour_near(&img, locate(acc, "xtick", 4), locate(acc, "ytick", 0.87), 1, blue));
  image_free(&img);
  free(loss);
  free(acc);
}

/* NaN and inf are gaps: the lines break there and no "nan" is printed. */
static void test_plot_nonfinite_values_are_gaps(void **state) {
  (void)state;
  EpochStats rows[6];
  for (int i = 0; i < 6; i++)
    rows[i] = (EpochStats){
        i + 1, 1.0 / (i + 1), 0.5 + 0.05 * i, 1.1 / (i + 1), 0.5, 2.0, 0.001, NAN, NAN};
  rows[2].loss = NAN;
  rows[4].test_loss = INFINITY;
  rows[5].test_loss = NAN;
  for (int i = 0; i < 6; i++)
    rows[i].test_accuracy = NAN; /* no test set */
  Err e = {0};
  assert_int_equal(plot_write(tu_path("gaps.svg"), "net", rows, 6, &e), 0);
  assert_int_equal(plot_write(tu_path("gaps.png"), "net", rows, 6, &e), 0);
  const char *svg = read_text(tu_path("gaps.svg"));
  assert_null(strstr(svg, "nan"));
  assert_null(strstr(svg, "inf"));
  char *loss = panel(svg, "loss"), *acc = panel(svg, "accuracy");
  int counts[8];
  assert_int_equal(polylines(loss, "training", counts, 8), 2);
  assert_int_equal(counts[0], 2);
  assert_int_equal(counts[1], 3);
  assert_int_equal(polylines(loss, "test", counts, 8), 1);
  assert_int_equal(counts[0], 4);
  assert_int_equal(polylines(acc, "test", counts, 8), 0);
  assert_int_equal(tu_count(acc, "<circle class=\"test\""), 0);
  free(loss);
  free(acc);
  Image img;
  assert_int_equal(image_read(tu_path("gaps.png"), &img, &e), 0);
  image_free(&img);
}

/* Values at the ends of double's range, negative epochs, rows out of
   order: drawn or skipped, never a crash or a "nan" coordinate. */
static void test_plot_extreme_values(void **state) {
  (void)state;
  EpochStats rows[5] = {
      {3, 1e300, 1e-300, -1e300, 2.0, 1, 0.001, NAN, NAN},
      {-2, 1e308, -0.5, 0.0, 1e-12, 1, 0.001, NAN, NAN},
      {7, 0.0, 0.0, 0.0, 0.0, 1, 0.001, NAN, NAN},
      {1, -1e-300, 1e300, 5e299, -7.0, 1, 0.001, NAN, NAN},
      {2000000000, 3.0, 0.5, HUGE_VAL, 1.5, 1, 0.001, NAN, NAN},
  };
  Err e = {0};
  assert_int_equal(plot_write(tu_path("odd.svg"), "net", rows, 5, &e), 0);
  assert_int_equal(plot_write(tu_path("odd.png"), "net", rows, 5, &e), 0);
  const char *svg = read_text(tu_path("odd.svg"));
  assert_xml_nests(svg);
  assert_null(strstr(svg, "nan"));
  assert_null(strstr(svg, "inf"));
  Image img;
  assert_int_equal(image_read(tu_path("odd.png"), &img, &e), 0);
  image_free(&img);
}

/* One epoch: no line, but the point is drawn. Hundreds: lines, no markers. */
static void test_plot_one_and_many_epochs(void **state) {
  (void)state;
  Err e = {0};
  assert_int_equal(plot_write(tu_path("one.svg"), "net", four, 1, &e), 0);
  assert_int_equal(plot_write(tu_path("one.png"), "net", four, 1, &e), 0);
  const char *svg = read_text(tu_path("one.svg"));
  char *loss = panel(svg, "loss");
  int counts[8];
  assert_int_equal(polylines(loss, "training", counts, 8), 0);
  assert_int_equal(tu_count(loss, "<circle class=\"training\""), 1);
  Image img;
  assert_int_equal(image_read(tu_path("one.png"), &img, &e), 0);
  assert_true(colour_near(&img, locate(loss, "xtick", 1), locate(loss, "ytick", 0.90), 1, blue));
  image_free(&img);
  free(loss);

  enum { N = 300 };
  EpochStats *rows = calloc(N, sizeof *rows);
  assert_non_null(rows);
  for (int i = 0; i < N; i++)
    rows[i] = (EpochStats){i + 1,
                           0.3 + 1.0 / (i + 1),
                           0.9 - 0.1 / (i + 1),
                           0.32 + 1.0 / (i + 1) + 0.0002 * i,
                           0.88,
                           1.0,
                           0.001,
                           NAN,
                           NAN};
  assert_int_equal(plot_write(tu_path("many.svg"), "net", rows, N, &e), 0);
  assert_int_equal(plot_write(tu_path("many.png"), "net", rows, N, &e), 0);
  svg = read_text(tu_path("many.svg"));
  loss = panel(svg, "loss");
  assert_int_equal(polylines(loss, "training", counts, 8), 1);
  assert_int_equal(counts[0], N);
  assert_int_equal(tu_count(loss, "<circle"), 0);
  /* x ticks stay few. */
  double pixel[64], value[64];
  int n = ticks(loss, "xtick", pixel, value, 64);
  assert_true(n >= 3 && n <= 11);
  assert_true(value[n - 1] == N);
  free(loss);
  free(rows);
}

static void test_plot_no_rows(void **state) {
  (void)state;
  Err e = {0};
  assert_int_equal(plot_write(tu_path("none.svg"), "net", NULL, 0, &e), 0);
  assert_int_equal(plot_write(tu_path("none.png"), "net", NULL, 0, &e), 0);
  const char *svg = read_text(tu_path("none.svg"));
  assert_xml_nests(svg);
  char *loss = panel(svg, "loss");
  int counts[8];
  assert_int_equal(polylines(loss, "training", counts, 8), 0);
  assert_int_equal(polylines(loss, "test", counts, 8), 0);
  assert_contains(loss, "ytick");
  free(loss);
  Image img;
  assert_int_equal(image_read(tu_path("none.png"), &img, &e), 0);
  image_free(&img);
}

static void test_plot_bad_path_fails_cleanly(void **state) {
  (void)state;
  static const char *names[] = {"nodir/curves.png", "nodir/curves.svg", "curves.jpg"};
  for (int i = 0; i < 3; i++) {
    Err e = {0};
    assert_int_equal(plot_write(tu_path(names[i]), "net", four, 4, &e), -1);
    assert_contains(e.msg, names[i]);
    assert_false(tu_exists(names[i]));
  }
  assert_false(tu_exists("nodir"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_plot_format_ok),
      cmocka_unit_test(test_plot_svg_structure),
      cmocka_unit_test(test_plot_svg_points_follow_ticks),
      cmocka_unit_test(test_plot_png_pixels),
      cmocka_unit_test(test_plot_nonfinite_values_are_gaps),
      cmocka_unit_test(test_plot_extreme_values),
      cmocka_unit_test(test_plot_one_and_many_epochs),
      cmocka_unit_test(test_plot_no_rows),
      cmocka_unit_test(test_plot_bad_path_fails_cleanly),
  };
  return cmocka_run_group_tests(tests, tu_setup, tu_teardown);
}
