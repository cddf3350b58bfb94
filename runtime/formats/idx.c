/*
 * idx.c: MNIST-style IDX files.
 *
 * An IDX file is a 4-byte magic (0, 0, data type, rank), `rank` big-endian
 * u32 dimensions, then the data. cnngen reads u8 data (type 0x08) only:
 * images of rank 3 [N][H][W] or 4 [N][H][W][C], labels of rank 1 [N] (class
 * indices) or 2 [N][K] (0/1 rows, multi-label). The file name's "idx3" is
 * only a convention; the magic decides. The whole file is read (gunzipped
 * by io_read_file) and the data moved to the front of the same buffer.
 */
#include "idx.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io.h"

static const char *dtype_name(int t) {
  switch (t) {
  case 0x08:
    return "unsigned byte";
  case 0x09:
    return "signed byte";
  case 0x0B:
    return "int16";
  case 0x0C:
    return "int32";
  case 0x0D:
    return "float32";
  case 0x0E:
    return "float64";
  }
  return "unknown";
}

static uint32_t be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* "60000x28x28" */
static void dims_text(char *buf, size_t n, const uint32_t *dims, int rank) {
  int k = 0;
  buf[0] = 0;
  for (int i = 0; i < rank && k >= 0 && (size_t)k < n; i++)
    k += snprintf(buf + k, n - (size_t)k, i ? "x%u" : "%u", (unsigned)dims[i]);
}

/* IoLimit.declared: the header and the data its dimensions declare; -1 for
   what is not an IDX u8 file (idx_read says what is wrong). */
static int idx_declared(const unsigned char *head, size_t n, size_t *size) {
  if (n < 4)
    return 0;
  if (head[0] || head[1] || head[2] != 0x08 || head[3] < 1 || head[3] > 4)
    return -1;
  size_t need = 4 + 4 * (size_t)head[3];
  if (n < need)
    return 0;
  unsigned long long data = 1;
  for (int i = 0; i < head[3]; i++)
    if (__builtin_mul_overflow(data, (unsigned long long)be32(head + 4 + 4 * i), &data))
      return -1;
  if (data > SIZE_MAX - need)
    return -1;
  *size = need + (size_t)data;
  return 1;
}

/* Reads path and checks an IDX u8 file whose rank is lo or hi. On success
 *data holds the payload at its start (the caller frees it). */
static int idx_read(const char *path, int lo, int hi, const char *kind, uint8_t **data,
                    uint32_t *dims, int *rank, Err *e) {
  size_t len;
  static const IoLimit limit = {.what = "an IDX file", .declared = idx_declared};
  uint8_t *buf = io_read_capped(path, &limit, &len, e);
  if (!buf)
    return -1;
  if (len < 4) {
    free(buf);
    return err_set(e, path, "not an IDX file: only %zu bytes, shorter than the 4-byte magic", len);
  }
  uint32_t magic = be32(buf);
  int type = buf[2], r = buf[3];
  if (buf[0] || buf[1] || r < 1 || r > 4) {
    free(buf);
    return err_set(e, path, "not an IDX file: found magic 0x%08X, expected 0x%08X or 0x%08X for %s",
                   magic, 0x800 + lo, 0x800 + hi, kind);
  }
  if (type != 0x08) {
    free(buf);
    return err_set(e, path,
                   "unsupported IDX data type 0x%02X (%s); cnngen reads unsigned bytes "
                   "(0x08)",
                   type, dtype_name(type));
  }
  if (r < lo || r > hi) {
    free(buf);
    int labels = r <= 2;
    return err_set(e, path,
                   "found magic 0x%08X (rank %d), expected 0x%08X or 0x%08X for %s (is "
                   "this %s file?)",
                   magic, r, 0x800 + lo, 0x800 + hi, kind, labels ? "a labels" : "an images");
  }
  size_t header = 4 + 4 * (size_t)r;
  if (len < header) {
    free(buf);
    return err_set(e, path, "truncated IDX header: %d dimensions need %zu bytes, found %zu", r,
                   header, len);
  }
  unsigned long long need = 1;
  int overflow = 0;
  for (int i = 0; i < r; i++) {
    dims[i] = be32(buf + 4 + 4 * i);
    if (dims[i] == 0) {
      free(buf);
      return err_set(e, path, "dimension %d of %d is 0; an IDX %s file needs at least one of each",
                     i + 1, r, kind);
    }
    if (dims[i] > INT_MAX) {
      free(buf);
      return err_set(e, path, "dimension %d is %u, too large", i + 1, (unsigned)dims[i]);
    }
    overflow |= __builtin_mul_overflow(need, dims[i], &need);
  }
  char dt[64];
  dims_text(dt, sizeof dt, dims, r);
  size_t have = len - header;
  if (overflow || need > have) {
    free(buf);
    if (overflow)
      return err_set(e, path, "truncated: %s needs more bytes of data than exist, found %zu", dt,
                     have);
    return err_set(e, path, "truncated: expected %llu bytes of data for %s, found %zu", need, dt,
                   have);
  }
  if (need < have) {
    free(buf);
    return err_set(e, path,
                   "%llu trailing bytes after the %s data (expected %llu bytes of data, "
                   "found %zu)",
                   (unsigned long long)(have - need), dt, need, have);
  }
  memmove(buf, buf + header, have);
  *data = buf;
  *rank = r;
  return 0;
}

int idx_read_images(const char *path, IdxImages *out, Err *e) {
  memset(out, 0, sizeof *out);
  uint32_t d[4];
  int r;
  uint8_t *data;
  if (idx_read(path, 3, 4, "images", &data, d, &r, e) < 0)
    return -1;
  out->n = (int)d[0];
  out->h = (int)d[1];
  out->w = (int)d[2];
  out->c = r == 4 ? (int)d[3] : 1;
  out->data = data;
  return 0;
}

int idx_read_labels(const char *path, IdxLabels *out, Err *e) {
  memset(out, 0, sizeof *out);
  uint32_t d[4];
  int r;
  uint8_t *data;
  if (idx_read(path, 1, 2, "labels", &data, d, &r, e) < 0)
    return -1;
  int n = (int)d[0], k = r == 2 ? (int)d[1] : 0;
  if (k > 0) {
    for (long i = 0; i < (long)n * k; i++)
      if (data[i] > 1) {
        err_set(e, path,
                "row %ld has value %d in column %ld; multi-label rows (%dx%d) must hold 0 or 1",
                i / k, data[i], i % k, n, k);
        free(data);
        return -1;
      }
  }
  out->n = n;
  out->k = k;
  out->data = data;
  return 0;
}

void idx_images_free(IdxImages *im) {
  free(im->data);
  memset(im, 0, sizeof *im);
}

void idx_labels_free(IdxLabels *lb) {
  free(lb->data);
  memset(lb, 0, sizeof *lb);
}

static int idx_write(const char *path, int rank, const uint32_t *dims, const uint8_t *data,
                     Err *e) {
  uint8_t head[20] = {0, 0, 0x08, (uint8_t)rank};
  size_t n = 1;
  for (int i = 0; i < rank; i++) {
    head[4 + 4 * i] = (uint8_t)(dims[i] >> 24);
    head[5 + 4 * i] = (uint8_t)(dims[i] >> 16);
    head[6 + 4 * i] = (uint8_t)(dims[i] >> 8);
    head[7 + 4 * i] = (uint8_t)dims[i];
    n *= dims[i];
  }
  AtomicFile af;
  if (atomic_open(&af, path, e) < 0)
    return -1;
  if (fwrite(head, 1, 4 + 4 * (size_t)rank, af.f) != 4 + 4 * (size_t)rank ||
      fwrite(data, 1, n, af.f) != n) {
    int saved = errno;
    atomic_abort(&af);
    return err_set(e, path, "cannot write: %s (the file is unchanged)", strerror(saved));
  }
  return atomic_commit(&af, e);
}

int idx_write_images(const char *path, const IdxImages *im, Err *e) {
  if (im->n <= 0 || im->h <= 0 || im->w <= 0 || im->c <= 0)
    return err_set(e, path, "cannot write %dx%dx%dx%d images: every dimension must be positive",
                   im->n, im->h, im->w, im->c);
  uint32_t d[4] = {(uint32_t)im->n, (uint32_t)im->h, (uint32_t)im->w, (uint32_t)im->c};
  return idx_write(path, im->c == 1 ? 3 : 4, d, im->data, e);
}

int idx_write_labels(const char *path, const IdxLabels *lb, Err *e) {
  if (lb->n <= 0 || lb->k < 0)
    return err_set(e, path, "cannot write %d labels of width %d", lb->n, lb->k);
  uint32_t d[2] = {(uint32_t)lb->n, (uint32_t)lb->k};
  return idx_write(path, lb->k ? 2 : 1, d, lb->data, e);
}

/* Finds DIR/WHICH-KIND-idxR-ubyte[.gz] for the ranks given; 0 when found. */
static int find_file(const char *dir, const char *which, const char *kind, const int *ranks,
                     char *path, size_t n, char *tried, size_t tn) {
  int k = 0;
  tried[0] = 0;
  for (int i = 0; i < 2; i++) {
    for (int gz = 0; gz < 2; gz++) {
      snprintf(path, n, "%s/%s-%s-idx%d-ubyte%s", dir, which, kind, ranks[i], gz ? ".gz" : "");
      struct stat st;
      if (stat(path, &st) == 0 && !S_ISDIR(st.st_mode))
        return 0;
    }
    if (k >= 0 && (size_t)k < tn)
      k += snprintf(tried + k, tn - (size_t)k, "%s%s-%s-idx%d-ubyte[.gz]", i ? " or " : "", which,
                    kind, ranks[i]);
  }
  return -1;
}

static const char *base_name(const char *p) {
  const char *s = strrchr(p, '/');
  return s ? s + 1 : p;
}

int idx_load_split(const char *dir, const char *which, IdxImages *images, IdxLabels *labels,
                   Err *e) {
  memset(images, 0, sizeof *images);
  memset(labels, 0, sizeof *labels);
  struct stat st;
  if (stat(dir, &st) != 0)
    return err_set(e, dir, "cannot open data directory: %s", strerror(errno));
  if (!S_ISDIR(st.st_mode))
    return err_set(e, dir, "is not a directory (--data wants a directory of IDX files)");
  char ipath[4096], lpath[4096], tried[256];
  static const int image_ranks[2] = {3, 4}, label_ranks[2] = {1, 2};
  if (find_file(dir, which, "images", image_ranks, ipath, sizeof ipath, tried, sizeof tried) < 0)
    return err_set(e, dir, "no %s images: looked for %s", which, tried);
  if (find_file(dir, which, "labels", label_ranks, lpath, sizeof lpath, tried, sizeof tried) < 0)
    return err_set(e, dir, "no %s labels: looked for %s", which, tried);
  if (idx_read_images(ipath, images, e) < 0)
    return -1;
  if (idx_read_labels(lpath, labels, e) < 0) {
    idx_images_free(images);
    return -1;
  }
  if (images->n != labels->n) {
    err_set(e, dir, "%s has %d images but %s has %d labels; they must agree", base_name(ipath),
            images->n, base_name(lpath), labels->n);
    idx_images_free(images);
    idx_labels_free(labels);
    return -1;
  }
  return 0;
}
