/*
 * image.c: input images for `predict`, `explain` and image folders, heat
 * maps out.
 *
 * The first bytes decide the format. Netpbm (P2/P5 gray, P3/P6 colour) is
 * parsed by hand: a header of whitespace-separated numbers with `#` comments,
 * then ASCII values or raw bytes (two big-endian bytes per sample when maxval
 * > 255); samples are rescaled to 0..255. PNG goes through libpng's classic
 * API with setjmp error handling and transforms that leave 8-bit gray, gray+
 * alpha, RGB or RGBA; alpha is dropped (as PIL's convert("L") does). JPEG
 * goes through libjpeg(-turbo) with its errors turned into a longjmp and its
 * warnings (a file cut short, corrupt data) into errors too: libjpeg would
 * otherwise fill the missing rows with gray and carry on.
 * Every size is checked before anything is allocated, so a hostile header
 * cannot ask for gigabytes.
 */
#include "image.h"

#include <png.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
/* jpeglib.h needs size_t and FILE declared first. */
#include <jpeglib.h>

#include "io.h"

#define IMAGE_MAX_SIDE 16384
#define IMAGE_MAX_PIXELS ((size_t)1 << 26)
#define IMAGE_MAX_FILE ((size_t)1 << 30)

void image_free(Image *img) {
  free(img->data);
  memset(img, 0, sizeof *img);
}

static int check_size(const char *path, long w, long h, Err *e) {
  if (w < 1 || h < 1)
    return err_set(e, path, "image size %ldx%ld is empty", w, h);
  if (w > IMAGE_MAX_SIDE || h > IMAGE_MAX_SIDE || (size_t)w * (size_t)h > IMAGE_MAX_PIXELS)
    return err_set(e, path,
                   "image size %ldx%ld is too large (at most %d pixels a side, %zu in "
                   "all)",
                   w, h, IMAGE_MAX_SIDE, IMAGE_MAX_PIXELS);
  return 0;
}

/* ---- Netpbm ---- */

typedef struct {
  const uint8_t *p, *end;
  const char *path;
  Err *e;
} Pnm;

static int is_space(int c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* Skips whitespace and (in headers) `#` comments. */
static void pnm_skip(Pnm *s, int comments) {
  while (s->p < s->end) {
    if (is_space(*s->p))
      s->p++;
    else if (comments && *s->p == '#')
      while (s->p < s->end && *s->p != '\n')
        s->p++;
    else
      break;
  }
}

static void describe(char *buf, size_t n, int c) {
  if (c > 32 && c < 127)
    snprintf(buf, n, "'%c'", c);
  else
    snprintf(buf, n, "byte 0x%02X", c);
}

/* Reads an unsigned decimal number <= max. Returns 1 on success, 0 at the end
   of the data, -1 on garbage (e filled). */
static int pnm_number(Pnm *s, int comments, long max, const char *what, long *out) {
  pnm_skip(s, comments);
  if (s->p >= s->end)
    return 0;
  if (*s->p < '0' || *s->p > '9') {
    char d[16];
    describe(d, sizeof d, *s->p);
    return err_set(s->e, s->path, "expected %s, found %s", what, d);
  }
  long v = 0;
  while (s->p < s->end && *s->p >= '0' && *s->p <= '9') {
    v = v * 10 + (*s->p++ - '0');
    if (v > max)
      return err_set(s->e, s->path, "%s is larger than %ld", what, max);
  }
  if (s->p < s->end && !is_space(*s->p) && !(comments && *s->p == '#')) {
    char d[16];
    describe(d, sizeof d, *s->p);
    return err_set(s->e, s->path, "unexpected %s after %s %ld", d, what, v);
  }
  *out = v;
  return 1;
}

static int read_pnm(const char *path, const uint8_t *buf, size_t len, Image *img, Err *e) {
  int kind = buf[1] - '0'; /* 2, 3, 5, 6 */
  int c = kind == 3 || kind == 6 ? 3 : 1;
  int binary = kind >= 5;
  Pnm s = {buf + 2, buf + len, path, e};
  if (s.p < s.end && !is_space(*s.p) && *s.p != '#')
    return err_set(e, path, "not a PGM/PPM file: the magic P%d is not followed by whitespace",
                   kind);
  long w, h, maxval;
  static const char *what[3] = {"the width", "the height", "the maxval"};
  long *val[3] = {&w, &h, &maxval};
  static const long limit[3] = {IMAGE_MAX_SIDE, IMAGE_MAX_SIDE, 65535};
  for (int i = 0; i < 3; i++) {
    int r = pnm_number(&s, 1, limit[i], what[i], val[i]);
    if (r < 0)
      return -1;
    if (r == 0)
      return err_set(e, path, "truncated header: expected %s", what[i]);
  }
  if (maxval < 1)
    return err_set(e, path, "maxval is 0; it must be between 1 and 65535");
  if (check_size(path, w, h, e) < 0)
    return -1;
  size_t count = (size_t)w * (size_t)h * (size_t)c;
  int wide = maxval > 255;
  size_t avail;
  if (binary) {
    /* Exactly one whitespace byte separates maxval from the raster. */
    if (s.p >= s.end)
      return err_set(e, path, "truncated: no pixel data after the header");
    s.p++;
    avail = (size_t)(s.end - s.p);
    size_t need = count * (wide ? 2 : 1);
    if (avail < need)
      return err_set(e, path,
                     "truncated: expected %zu bytes of pixel data for %ldx%ld%s, found "
                     "%zu",
                     need, w, h, c == 3 ? "x3" : "", avail);
  } else if (count > (size_t)(s.end - s.p)) {
    /* Every ASCII value takes at least one byte. */
    return err_set(e, path, "truncated: expected %zu pixel values, the file is too short", count);
  }
  uint8_t *data = malloc(count);
  if (!data)
    return err_set(e, path, "out of memory");
  for (size_t i = 0; i < count; i++) {
    long v;
    if (binary) {
      v = wide ? (long)s.p[0] << 8 | s.p[1] : s.p[0];
      s.p += wide ? 2 : 1;
      if (v > maxval) {
        free(data);
        return err_set(e, path, "sample %ld at pixel %zu is above maxval %ld", v, i / (size_t)c,
                       maxval);
      }
    } else {
      int r = pnm_number(&s, 1, maxval, "a pixel value", &v);
      if (r <= 0) {
        free(data);
        if (r == 0)
          return err_set(e, path, "truncated: expected %zu pixel values, found %zu", count, i);
        return -1;
      }
    }
    data[i] = (uint8_t)((v * 255 + maxval / 2) / maxval);
  }
  img->w = (int)w;
  img->h = (int)h;
  img->c = c;
  img->data = data;
  return 0;
}

/* ---- PNG ---- */

#define PNG_MSG 200
typedef struct {
  const uint8_t *p;
  size_t len, pos;
  char msg[PNG_MSG];
} PngIo;

/* The error pointer is a char[PNG_MSG] that receives the message. */
static void png_on_error(png_structp png, png_const_charp msg) {
  snprintf(png_get_error_ptr(png), PNG_MSG, "%s", msg);
  png_longjmp(png, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg) {
  (void)png;
  (void)msg;
}

static void png_read_mem(png_structp png, png_bytep out, size_t n) {
  PngIo *io = png_get_io_ptr(png);
  if (n > io->len - io->pos)
    png_error(png, "truncated PNG data");
  memcpy(out, io->p + io->pos, n);
  io->pos += n;
}

static int read_png(const char *path, const uint8_t *buf, size_t len, Image *img, Err *e) {
  PngIo io = {buf, len, 0, ""};
  png_structp png =
      png_create_read_struct(PNG_LIBPNG_VER_STRING, io.msg, png_on_error, png_on_warning);
  png_infop info = png ? png_create_info_struct(png) : NULL;
  if (!info) {
    png_destroy_read_struct(&png, NULL, NULL);
    return err_set(e, path, "out of memory");
  }
  uint8_t *volatile data = NULL;
  png_bytep *volatile rows = NULL;
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, NULL);
    free(data);
    free(rows);
    return err_set(e, path, "bad PNG file: %s", io.msg);
  }
  png_set_read_fn(png, &io, png_read_mem);
  png_set_user_limits(png, IMAGE_MAX_SIDE, IMAGE_MAX_SIDE);
  png_read_info(png, info);
  png_uint_32 w, h;
  int depth, type;
  png_get_IHDR(png, info, &w, &h, &depth, &type, NULL, NULL, NULL);
  if (check_size(path, (long)w, (long)h, e) < 0) {
    png_destroy_read_struct(&png, &info, NULL);
    return -1;
  }
  if (type == PNG_COLOR_TYPE_PALETTE)
    png_set_palette_to_rgb(png);
  if (type == PNG_COLOR_TYPE_GRAY && depth < 8)
    png_set_expand_gray_1_2_4_to_8(png);
  if (depth == 16)
    png_set_scale_16(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  int ch = png_get_channels(png, info);
  size_t rowbytes = png_get_rowbytes(png, info);
  if (png_get_bit_depth(png, info) != 8 || ch < 1 || ch > 4 || rowbytes != (size_t)w * ch)
    png_error(png, "unexpected pixel layout after conversion");
  data = malloc((size_t)h * rowbytes);
  rows = malloc((size_t)h * sizeof *rows);
  if (!data || !rows)
    png_error(png, "out of memory");
  for (png_uint_32 y = 0; y < h; y++)
    rows[y] = data + (size_t)y * rowbytes;
  png_read_image(png, rows);
  png_destroy_read_struct(&png, &info, NULL);
  free(rows);
  /* Drop alpha in place: gray+alpha -> gray, RGBA -> RGB. */
  int c = ch <= 2 ? 1 : 3;
  size_t n = (size_t)w * h;
  if (ch != c)
    for (size_t i = 0; i < n; i++)
      for (int k = 0; k < c; k++)
        data[i * c + k] = data[i * ch + k];
  img->w = (int)w;
  img->h = (int)h;
  img->c = c;
  img->data = data;
  return 0;
}

/* ---- JPEG ---- */

typedef struct {
  struct jpeg_error_mgr mgr; /* first: libjpeg passes a pointer to it */
  jmp_buf jump;
  char msg[JMSG_LENGTH_MAX];
} JpegErr;

static void jpeg_on_error(j_common_ptr cinfo) {
  JpegErr *je = (JpegErr *)cinfo->err;
  je->mgr.format_message(cinfo, je->msg);
  longjmp(je->jump, 1);
}

/* Warnings (msg_level -1: a premature end, corrupt data) stop the decode
   as errors do; trace messages (>= 0) are ignored. */
static void jpeg_on_message(j_common_ptr cinfo, int level) {
  if (level < 0)
    jpeg_on_error(cinfo);
}

static int read_jpeg(const char *path, const uint8_t *buf, size_t len, Image *img, Err *e) {
  struct jpeg_decompress_struct cinfo;
  JpegErr je;
  cinfo.err = jpeg_std_error(&je.mgr);
  je.mgr.error_exit = jpeg_on_error;
  je.mgr.emit_message = jpeg_on_message;
  uint8_t *volatile data = NULL;
  if (setjmp(je.jump)) {
    jpeg_destroy_decompress(&cinfo);
    free(data);
    return err_set(e, path, "bad JPEG file: %s", je.msg);
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, buf, (unsigned long)len);
  jpeg_read_header(&cinfo, TRUE);
  if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK) {
    jpeg_destroy_decompress(&cinfo);
    return err_set(e, path, "CMYK JPEG images are not supported (convert to RGB)");
  }
  if (check_size(path, (long)cinfo.image_width, (long)cinfo.image_height, e) < 0) {
    jpeg_destroy_decompress(&cinfo);
    return -1;
  }
  cinfo.out_color_space = cinfo.num_components == 1 ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_start_decompress(&cinfo);
  int c = (int)cinfo.output_components;
  size_t row = (size_t)cinfo.output_width * (size_t)c;
  data = malloc(row * cinfo.output_height);
  if (!data) {
    jpeg_destroy_decompress(&cinfo);
    return err_set(e, path, "out of memory");
  }
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW r = data + row * cinfo.output_scanline;
    jpeg_read_scanlines(&cinfo, &r, 1);
  }
  jpeg_finish_decompress(&cinfo);
  img->w = (int)cinfo.output_width;
  img->h = (int)cinfo.output_height;
  img->c = c;
  img->data = data;
  jpeg_destroy_decompress(&cinfo);
  return 0;
}

/* IoLimit.declared for images: a binary PGM/PPM's header and raster, a
   plain one's header and each sample's digits with room for whitespace, a
   PNG's chunks up to IEND; a JPEG declares no size (0: read on, up to the
   limit); -1 for anything else (image_read says what). */
static int image_declared(const unsigned char *head, size_t n, size_t *size) {
  static const uint8_t png_magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (n >= 3 && head[0] == 0xff && head[1] == 0xd8 && head[2] == 0xff)
    return 0;
  if (n < 8)
    return 0;
  if (head[0] == 'P' && head[1] && strchr("2356", head[1])) {
    Err e;
    Pnm s = {head + 2, head + n, "", &e};
    long v[3];
    static const long limit[3] = {IMAGE_MAX_SIDE, IMAGE_MAX_SIDE, 65535};
    for (int i = 0; i < 3; i++) {
      int r = pnm_number(&s, 1, limit[i], "", &v[i]);
      if (r < 0)
        return -1;
      if (r == 0 || s.p >= s.end)
        return 0; /* the header goes on past what was read */
    }
    if (v[2] < 1 || check_size("", v[0], v[1], &e) < 0)
      return -1;
    size_t count = (size_t)v[0] * (size_t)v[1] * (head[1] == '3' || head[1] == '6' ? 3 : 1);
    size_t header = (size_t)(s.p - head) + 1;
    if (head[1] >= '5')
      *size = header + count * (v[2] > 255 ? 2 : 1);
    else
      *size = header + count * 8 + 65536; /* "65535" and whitespace per sample */
    return 1;
  }
  if (memcmp(head, png_magic, 8) != 0)
    return -1;
  for (size_t at = 8; at + 8 <= n;) {
    uint32_t len = (uint32_t)head[at] << 24 | (uint32_t)head[at + 1] << 16 |
                   (uint32_t)head[at + 2] << 8 | head[at + 3];
    for (int i = 4; i < 8; i++)
      if (!((head[at + i] | 0x20) >= 'a' && (head[at + i] | 0x20) <= 'z'))
        return -1; /* not a chunk type */
    if (len > 0x7fffffffu)
      return -1;
    if (!memcmp(head + at + 4, "IEND", 4)) {
      *size = at + 12 + len;
      return 1;
    }
    at += 12 + (size_t)len;
  }
  return 0;
}

int image_read(const char *path, Image *img, Err *e) {
  memset(img, 0, sizeof *img);
  size_t len;
  static const IoLimit limit = {
      .max = IMAGE_MAX_FILE, .what = "an image (at most 1 GB)", .declared = image_declared};
  uint8_t *buf = io_read_capped(path, &limit, &len, e);
  if (!buf)
    return -1;
  int rc = image_decode(path, buf, len, img, e);
  free(buf);
  return rc;
}

int image_decode(const char *path, const uint8_t *buf, size_t len, Image *img, Err *e) {
  memset(img, 0, sizeof *img);
  int rc;
  static const uint8_t png_magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (len >= 2 && buf[0] == 'P' && strchr("2356", buf[1]) && buf[1])
    rc = read_pnm(path, buf, len, img, e);
  else if (len >= 8 && !memcmp(buf, png_magic, 8))
    rc = read_png(path, buf, len, img, e);
  else if (len >= 3 && buf[0] == 0xff && buf[1] == 0xd8 && buf[2] == 0xff)
    rc = read_jpeg(path, buf, len, img, e);
  else if (len >= 2 && buf[0] == 'P' && strchr("147", buf[1]) && buf[1])
    rc = err_set(e, path,
                 "P%c images (PBM bitmaps, PAM) are not supported; convert to PGM (P5), "
                 "PPM (P6) or PNG",
                 buf[1]);
  else
    rc = err_set(e, path, "not a PNG, JPEG or PGM/PPM image (unknown first bytes)");
  return rc;
}

int image_convert(Image *img, int c) {
  if (c != 1 && c != 3)
    return -1;
  if (img->c == c)
    return 0;
  size_t n = (size_t)img->w * img->h;
  uint8_t *out = malloc(n * c);
  if (!out)
    return -1;
  for (size_t i = 0; i < n; i++) {
    const uint8_t *p = img->data + i * img->c;
    if (c == 3) {
      out[3 * i] = out[3 * i + 1] = out[3 * i + 2] = p[0];
    } else {
      /* ITU-R 601 luma in 16-bit fixed point, rounded (PIL's convert("L")). */
      out[i] = (uint8_t)((p[0] * 19595u + p[1] * 38470u + p[2] * 7471u + 0x8000u) >> 16);
    }
  }
  free(img->data);
  img->data = out;
  img->c = c;
  return 0;
}

/* Bilinear with half-pixel centres (PyTorch's interpolate(mode="bilinear",
   align_corners=False) without antialiasing): output pixel (y, x) samples
   the input at ((y + 0.5) * ih / oh - 0.5, ...), clamped to the edge, and is
   rounded to the nearest byte. */
/* Where output pixel i of n samples an input of m: the two neighbours and
   the second one's weight. */
typedef struct Tap {
  int i0, i1;
  double a;
} Tap;

static Tap tap(int i, int n, int m) {
  double f = (i + 0.5) * m / n - 0.5;
  if (f < 0)
    f = 0;
  int i0 = (int)f;
  return (Tap){i0, i0 + 1 < m ? i0 + 1 : i0, f - i0};
}

int image_resize(Image *img, int h, int w) {
  if (img->h == h && img->w == w)
    return 0;
  int c = img->c;
  size_t iw = (size_t)img->w;
  uint8_t *out = malloc((size_t)h * (size_t)w * (size_t)c);
  if (!out)
    return -1;
  for (int y = 0; y < h; y++) {
    Tap ty = tap(y, h, img->h);
    const uint8_t *r0 = img->data + (size_t)ty.i0 * iw * c,
                  *r1 = img->data + (size_t)ty.i1 * iw * c;
    for (int x = 0; x < w; x++) {
      Tap tx = tap(x, w, img->w);
      for (int k = 0; k < c; k++) {
        int a = tx.i0 * c + k, b = tx.i1 * c + k;
        double top = r0[a] + (r0[b] - r0[a]) * tx.a, bottom = r1[a] + (r1[b] - r1[a]) * tx.a;
        double v = top + (bottom - top) * ty.a + 0.5;
        out[((size_t)y * w + x) * c + k] = (uint8_t)(v > 255 ? 255 : v);
      }
    }
  }
  free(img->data);
  img->data = out;
  img->h = h;
  img->w = w;
  return 0;
}

int image_fit(Image *img, int h, int w, int c) {
  if (img->c != c && image_convert(img, c) < 0)
    return -1;
  return image_resize(img, h, w);
}

bool image_is_picture(const char *path) {
  unsigned char m[4] = {0};
  FILE *f = fopen(path, "rb");
  if (!f)
    return true; /* let image_read say why it cannot be opened */
  size_t n = fread(m, 1, sizeof m, f);
  fclose(f);
  return (n == 4 && memcmp(m, "\x89PNG", 4) == 0) ||
         (n >= 3 && m[0] == 0xff && m[1] == 0xd8 && m[2] == 0xff) ||
         (n >= 2 && m[0] == 'P' && m[1] >= '1' && m[1] <= '6');
}

int image_read_input(const char *path, int h, int w, int c, const char *net, Image *img, Err *e) {
  if (image_read(path, img, e) < 0)
    return -1;
  if (img->h != h || img->w != w)
    err_set(e, path, "image is %dx%d, the network %s takes %dx%d (resize the image)", img->h,
            img->w, net, h, w);
  else if (img->c != c && c != 1 && c != 3)
    err_set(e, path, "the network %s takes %d channels; images give 1 (gray) or 3 (RGB)", net, c);
  else if (img->c != c && image_convert(img, c) < 0)
    err_set(e, path, "cannot convert the image to %d channels (out of memory)", c);
  else
    return 0;
  image_free(img);
  return -1;
}

void image_bytes_to_floats(const unsigned char *src, long count, float *dst) {
  for (long i = 0; i < count; i++)
    dst[i] = (float)src[i] / 255.0f;
}

typedef struct {
  uint8_t *p;
  size_t len, cap;
  char msg[PNG_MSG];
} PngOut;

static void png_write_mem(png_structp png, png_bytep in, size_t n) {
  PngOut *o = png_get_io_ptr(png);
  if (o->len + n > o->cap) {
    size_t cap = o->cap ? o->cap : 4096;
    while (cap < o->len + n)
      cap *= 2;
    uint8_t *p = realloc(o->p, cap);
    if (!p)
      png_error(png, "out of memory");
    o->p = p;
    o->cap = cap;
  }
  memcpy(o->p + o->len, in, n);
  o->len += n;
}

static void png_flush_mem(png_structp png) {
  (void)png;
}

int image_write_png(const char *path, const Image *img, Err *e) {
  if ((img->c != 1 && img->c != 3) || img->w < 1 || img->h < 1) {
    e->internal = 1;
    return err_set(e, path, "cannot write a %dx%dx%d image as PNG", img->h, img->w, img->c);
  }
  PngOut out = {0};
  png_structp png =
      png_create_write_struct(PNG_LIBPNG_VER_STRING, out.msg, png_on_error, png_on_warning);
  png_infop info = png ? png_create_info_struct(png) : NULL;
  if (!info) {
    png_destroy_write_struct(&png, NULL);
    return err_set(e, path, "out of memory");
  }
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    free(out.p);
    return err_set(e, path, "cannot encode PNG: %s", out.msg);
  }
  png_set_write_fn(png, &out, png_write_mem, png_flush_mem);
  png_set_IHDR(png, info, (png_uint_32)img->w, (png_uint_32)img->h, 8,
               img->c == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  for (int y = 0; y < img->h; y++)
    png_write_row(png, img->data + (size_t)y * img->w * img->c);
  png_write_end(png, NULL);
  png_destroy_write_struct(&png, &info);
  int rc = io_write_atomic(path, out.p, out.len, e);
  free(out.p);
  return rc;
}
