/*
 * test_files.c: the runtime's file readers and writers (io, idx,
 * safetensors, image) against real files, good and malformed, written by the
 * tests into a fresh temporary directory. Error tests check that the message
 * names the file and says exactly what is wrong.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <glob.h>
#include <math.h>
#include <png.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include "idx.h"
#include "image.h"
#include "io.h"
#include "ir.h"
#include "safetensors.h"
#include "testutil.h"

/* ---- helpers (the directory and its paths: testutil.h) ---- */

/* Binary data as NAME in the test directory; returns its path. */
static const char *write_file(const char *name, const void *data, size_t len) {
  const char *p = tu_path(name);
  FILE *f = fopen(p, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(data, 1, len, f), len);
  assert_int_equal(fclose(f), 0);
  return p;
}

#define WRITE_LIT(name, lit) write_file(name, lit, sizeof lit - 1)
#define READ_BAD(name, lit, what) read_bad(name, lit, sizeof lit - 1, what)

static const char *write_gz(const char *name, const void *data, size_t len) {
  const char *p = tu_path(name);
  gzFile g = gzopen(p, "wb");
  assert_non_null(g);
  assert_int_equal(gzwrite(g, data, (unsigned)len), (int)len);
  assert_int_equal(gzclose(g), Z_OK);
  return p;
}

static unsigned char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *b = malloc((size_t)n + 1);
  assert_non_null(b);
  assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
  fclose(f);
  *len = (size_t)n;
  return b;
}

/* The error message holds `path: ` first and `what` somewhere. */
static void check_err(const Err *e, const char *path, const char *what) {
  if (path) {
    size_t n = strlen(path);
    if (strncmp(e->msg, path, n) || strncmp(e->msg + n, ": ", 2))
      fail_msg("message does not start with '%s: ': %s", path, e->msg);
  }
  if (!strstr(e->msg, what))
    fail_msg("message lacks '%s': %s", what, e->msg);
}

/* Number of entries in dir whose name starts with '.' (temporaries). */
static int hidden_files(const char *dir) {
  DIR *d = opendir(dir);
  assert_non_null(d);
  int n = 0;
  struct dirent *de;
  while ((de = readdir(d)))
    if (de->d_name[0] == '.' && strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
      n++;
  closedir(d);
  return n;
}

static void put_be32(unsigned char *p, uint32_t v) {
  p[0] = (unsigned char)(v >> 24);
  p[1] = (unsigned char)(v >> 16);
  p[2] = (unsigned char)(v >> 8);
  p[3] = (unsigned char)v;
}

/* An IDX file: magic type/rank, dims, then `datalen` bytes (i * 7 + 1). */
static size_t make_idx(unsigned char *buf, int type, int rank, const uint32_t *dims,
                       size_t datalen) {
  buf[0] = buf[1] = 0;
  buf[2] = (unsigned char)type;
  buf[3] = (unsigned char)rank;
  for (int i = 0; i < rank; i++)
    put_be32(buf + 4 + 4 * i, dims[i]);
  size_t h = 4 + 4 * (size_t)rank;
  for (size_t i = 0; i < datalen; i++)
    buf[h + i] = (unsigned char)(i * 7 + 1);
  return h + datalen;
}

/* ---- io ---- */

static void test_io_read_plain_and_gzip(void **state) {
  (void)state;
  static unsigned char data[100000];
  for (size_t i = 0; i < sizeof data; i++)
    data[i] = (unsigned char)(i % 251 ^ i / 1000);
  const char *plain = write_file("plain.bin", data, sizeof data);
  const char *gz = write_gz("plain.bin.gz", data, sizeof data);
  Err e = {0};
  size_t n1, n2;
  unsigned char *a = io_read_file(plain, &n1, &e);
  unsigned char *b = io_read_file(gz, &n2, &e);
  assert_non_null(a);
  assert_non_null(b);
  assert_int_equal(n1, sizeof data);
  assert_int_equal(n2, sizeof data);
  assert_memory_equal(a, data, sizeof data);
  assert_memory_equal(b, data, sizeof data);
  assert_int_equal(b[n2], 0); /* NUL after the data */
  free(a);
  free(b);
}

static void test_io_read_gzip_members_concatenated(void **state) {
  (void)state;
  const char *a = write_gz("m1.gz", "hello ", 6);
  const char *b = write_gz("m2.gz", "world", 5);
  size_t la, lb;
  unsigned char *x = slurp(a, &la), *y = slurp(b, &lb);
  unsigned char *both = malloc(la + lb);
  memcpy(both, x, la);
  memcpy(both + la, y, lb);
  const char *p = write_file("both.gz", both, la + lb);
  Err e = {0};
  size_t n;
  char *s = io_read_file(p, &n, &e);
  assert_non_null(s);
  assert_string_equal(s, "hello world");
  free(s);
  free(x);
  free(y);
  free(both);
}

static void test_io_read_gzip_corrupt(void **state) {
  (void)state;
  static unsigned char data[20000];
  for (size_t i = 0; i < sizeof data; i++)
    data[i] = (unsigned char)(i * i % 13);
  const char *gz = write_gz("c.gz", data, sizeof data);
  size_t n;
  unsigned char *b = slurp(gz, &n);
  for (size_t i = 20; i < 40 && i < n; i++) /* stomp on the deflate stream */
    b[i] ^= 0xA5;
  const char *bad = write_file("corrupt.gz", b, n);
  Err e = {0};
  size_t len;
  assert_null(io_read_file(bad, &len, &e));
  check_err(&e, bad, "corrupt gzip data");
  free(b);
}

static void test_io_read_gzip_truncated(void **state) {
  (void)state;
  static unsigned char data[50000];
  for (size_t i = 0; i < sizeof data; i++)
    data[i] = (unsigned char)(rand() & 0x7);
  const char *gz = write_gz("t.gz", data, sizeof data);
  size_t n;
  unsigned char *b = slurp(gz, &n);
  const char *cut = write_file("truncated.gz", b, n / 2);
  Err e = {0};
  size_t len;
  assert_null(io_read_file(cut, &len, &e));
  check_err(&e, cut, "truncated gzip data");
  /* Missing only the 8-byte trailer is still truncated. */
  cut = write_file("notrailer.gz", b, n - 8);
  assert_null(io_read_file(cut, &len, &e));
  check_err(&e, cut, "truncated gzip data");
  free(b);
}

static void test_io_read_missing_and_directory(void **state) {
  (void)state;
  Err e = {0};
  size_t n;
  const char *p = tu_path("no-such-file");
  assert_null(io_read_file(p, &n, &e));
  check_err(&e, p, "cannot open: No such file or directory");
  assert_null(io_read_file(tu_tmp, &n, &e));
  check_err(&e, tu_tmp, "is a directory");
}

static void test_io_atomic_write_replaces(void **state) {
  (void)state;
  mkdir(tu_path("aw"), 0755);
  const char *p = WRITE_LIT("aw/target", "old contents");
  Err e = {0};
  assert_int_equal(io_write_atomic(p, "new", 3, &e), 0);
  size_t n;
  unsigned char *b = slurp(p, &n);
  assert_int_equal(n, 3);
  assert_memory_equal(b, "new", 3);
  free(b);
  assert_int_equal(hidden_files(tu_path("aw")), 0);
  /* A relative name writes in the current directory. */
  char cwd[4096];
  assert_non_null(getcwd(cwd, sizeof cwd));
  assert_int_equal(chdir(tu_path("aw")), 0);
  assert_int_equal(io_write_atomic("rel", "x", 1, &e), 0);
  assert_int_equal(chdir(cwd), 0);
  struct stat st;
  assert_int_equal(stat(tu_path("aw/rel"), &st), 0);
  assert_int_equal(st.st_size, 1);
  mode_t mask = umask(0);
  umask(mask);
  assert_int_equal(st.st_mode & 0777, 0666 & ~mask);
}

static void check_untouched(const char *p, const char *dir) {
  size_t n;
  unsigned char *b = slurp(p, &n);
  assert_int_equal(n, 12);
  assert_memory_equal(b, "old contents", 12);
  free(b);
  assert_int_equal(hidden_files(dir), 0);
}

/* A write that fails half way (file size limit) leaves the target as it was. */
static void test_io_atomic_write_failure_leaves_target(void **state) {
  (void)state;
  mkdir(tu_path("fail"), 0755);
  const char *p = WRITE_LIT("fail/target", "old contents");
  static unsigned char big[1 << 20];
  struct rlimit old, lim;
  assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
  lim = old;
  lim.rlim_cur = 4096;
  void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
  assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
  Err e = {0};
  int rc = io_write_atomic(p, big, sizeof big, &e);
  assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
  signal(SIGXFSZ, prev);
  assert_int_equal(rc, -1);
  check_err(&e, p, "File too large (the file is unchanged)");
  check_untouched(p, tu_path("fail"));

  /* A target that is a directory: rename fails, the temporary goes. */
  mkdir(tu_path("fail/adir"), 0755);
  assert_int_equal(io_write_atomic(tu_path("fail/adir"), "x", 1, &e), -1);
  check_err(&e, tu_path("fail/adir"), "cannot rename the temporary file over it");
  assert_int_equal(hidden_files(tu_path("fail")), 0);

  /* Abort: nothing happens. */
  AtomicFile af;
  assert_int_equal(atomic_open(&af, p, &e), 0);
  fputs("partial", af.f);
  atomic_abort(&af);
  check_untouched(p, tu_path("fail"));

  /* A directory that does not exist. */
  const char *q = tu_path("no-dir/target");
  assert_int_equal(io_write_atomic(q, "x", 1, &e), -1);
  check_err(&e, q, "cannot create a temporary file in");
}

/* In a directory we may not write to, nothing changes. As root, permissions
   do not stop us, so the check runs in a child that drops to `nobody`. */
static void test_io_atomic_write_unwritable_dir(void **state) {
  (void)state;
  mkdir(tu_path("ro"), 0755);
  const char *p = WRITE_LIT("ro/target", "old contents");
  assert_int_equal(chmod(tu_path("ro"), 0555), 0);
  assert_int_equal(chmod(tu_tmp, 0755), 0);
  Err e = {0};
  int rc;
  if (geteuid() != 0) {
    rc = io_write_atomic(p, "new", 3, &e);
  } else {
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
      close(fds[0]);
      if (setgid(65534) != 0 || setuid(65534) != 0)
        _exit(3);
      int r = io_write_atomic(p, "new", 3, &e);
      if (write(fds[1], &e, sizeof e) != (ssize_t)sizeof e)
        _exit(4);
      _exit(r == -1 ? 0 : 1);
    }
    close(fds[1]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    if (WEXITSTATUS(status) == 3) { /* no CAP_SETUID here: cannot test as root */
      close(fds[0]);
      chmod(tu_path("ro"), 0755);
      chmod(tu_tmp, 0700);
      skip();
    }
    assert_int_equal(read(fds[0], &e, sizeof e), (ssize_t)sizeof e);
    close(fds[0]);
    rc = WEXITSTATUS(status) == 0 ? -1 : 0;
  }
  chmod(tu_path("ro"), 0755);
  chmod(tu_tmp, 0700);
  assert_int_equal(rc, -1);
  check_err(&e, p, "cannot create a temporary file in");
  check_err(&e, p, "Permission denied");
  check_untouched(p, tu_path("ro"));
}

/* ---- idx ---- */

static void test_idx_read_images_rank3(void **state) {
  (void)state;
  unsigned char buf[256] = {0};
  uint32_t d[3] = {2, 3, 4};
  const char *p = write_file("r3-idx3-ubyte", buf, make_idx(buf, 8, 3, d, 24));
  IdxImages im;
  Err e = {0};
  assert_int_equal(idx_read_images(p, &im, &e), 0);
  assert_int_equal(im.n, 2);
  assert_int_equal(im.h, 3);
  assert_int_equal(im.w, 4);
  assert_int_equal(im.c, 1);
  assert_memory_equal(im.data, buf + 16, 24);
  idx_images_free(&im);
}

static void test_idx_read_images_rank4_colour(void **state) {
  (void)state;
  unsigned char buf[256] = {0};
  uint32_t d[4] = {2, 2, 3, 3};
  const char *p = write_file("r4-idx4-ubyte", buf, make_idx(buf, 8, 4, d, 36));
  IdxImages im;
  Err e = {0};
  assert_int_equal(idx_read_images(p, &im, &e), 0);
  assert_int_equal(im.n, 2);
  assert_int_equal(im.h, 2);
  assert_int_equal(im.w, 3);
  assert_int_equal(im.c, 3);
  assert_memory_equal(im.data, buf + 20, 36);
  idx_images_free(&im);
}

static void test_idx_read_images_gzip(void **state) {
  (void)state;
  unsigned char buf[256] = {0};
  uint32_t d[3] = {3, 5, 5};
  size_t n = make_idx(buf, 8, 3, d, 75);
  const char *p = write_gz("gz-idx3-ubyte.gz", buf, n);
  IdxImages im;
  Err e = {0};
  assert_int_equal(idx_read_images(p, &im, &e), 0);
  assert_int_equal(im.n, 3);
  assert_memory_equal(im.data, buf + 16, 75);
  idx_images_free(&im);
}

static void test_idx_truncated_and_trailing(void **state) {
  (void)state;
  unsigned char buf[256] = {0};
  uint32_t d[3] = {2, 3, 4};
  size_t n = make_idx(buf, 8, 3, d, 24);
  IdxImages im;
  Err e = {0};
  const char *p = write_file("short-idx3", buf, n - 4);
  assert_int_equal(idx_read_images(p, &im, &e), -1);
  check_err(&e, p, "truncated: expected 24 bytes of data for 2x3x4, found 20");
  assert_null(im.data);
  p = write_file("long-idx3", buf, n + 3);
  assert_int_equal(idx_read_images(p, &im, &e), -1);
  check_err(&e, p, "3 trailing bytes after the 2x3x4 data");
  /* Header cut inside the dimensions. */
  p = write_file("hdr-idx3", buf, 9);
  assert_int_equal(idx_read_images(p, &im, &e), -1);
  check_err(&e, p, "truncated IDX header: 3 dimensions need 16 bytes, found 9");
  /* Dimensions whose product overflows 64 bits. */
  uint32_t huge[4] = {0x7fffffff, 0x7fffffff, 0x7fffffff, 0x7fffffff};
  p = write_file("huge-idx4", buf, make_idx(buf, 8, 4, huge, 8));
  assert_int_equal(idx_read_images(p, &im, &e), -1);
  check_err(&e, p, "truncated: 2147483647x2147483647x2147483647x2147483647 needs more bytes");
  /* Too short for a magic. */
  p = WRITE_LIT("tiny", "\0\0");
  assert_int_equal(idx_read_images(p, &im, &e), -1);
  check_err(&e, p, "not an IDX file: only 2 bytes");
}

static void test_idx_wrong_magic(void **state) {
  (void)state;
  unsigned char buf[256] = {0};
  IdxImages im;
  IdxLabels lb;
  Err e = {0};
  const char *p = WRITE_LIT("zip", "PK\x03\x04 this is a zip");
  assert_int_equal(idx_read_images(p, &im, &e), -1);
  check_err(&e, p, "not an IDX file: found magic 0x504B0304, expected 0x00000803 or 0x00000804");
  uint32_t d1[1] = {5};
  p = write_file("labels-idx1", buf, make_idx(buf, 8, 1, d1, 5));
  assert_int_equal(idx_read_images(p, &im, &e), -1);
  check_err(&e, p,
            "found magic 0x00000801 (rank 1), expected 0x00000803 or 0x00000804 "
            "for images (is this a labels file?)");
  uint32_t d3[3] = {1, 2, 2};
  p = write_file("images-idx3", buf, make_idx(buf, 8, 3, d3, 4));
  assert_int_equal(idx_read_labels(p, &lb, &e), -1);
  check_err(&e, p, "expected 0x00000801 or 0x00000802 for labels (is this an images file?)");
  p = write_file("float-idx3", buf, make_idx(buf, 0x0D, 3, d3, 16));
  assert_int_equal(idx_read_images(p, &im, &e), -1);
  check_err(&e, p, "unsupported IDX data type 0x0D (float32)");
  uint32_t z[3] = {4, 0, 2};
  p = write_file("zero-idx3", buf, make_idx(buf, 8, 3, z, 0));
  assert_int_equal(idx_read_images(p, &im, &e), -1);
  check_err(&e, p, "dimension 2 of 3 is 0");
}

static void test_idx_labels_classes_and_multilabel(void **state) {
  (void)state;
  unsigned char buf[256] = {0};
  IdxLabels lb;
  Err e = {0};
  uint32_t d1[1] = {4};
  make_idx(buf, 8, 1, d1, 0);
  memcpy(buf + 8, "\x03\x00\x09\x01", 4);
  const char *p = write_file("cls-idx1", buf, 12);
  assert_int_equal(idx_read_labels(p, &lb, &e), 0);
  assert_int_equal(lb.n, 4);
  assert_int_equal(lb.k, 0);
  assert_memory_equal(lb.data, "\x03\x00\x09\x01", 4);
  idx_labels_free(&lb);

  uint32_t d2[2] = {3, 4};
  make_idx(buf, 8, 2, d2, 0);
  static const unsigned char rows[12] = {1, 0, 0, 1, 0, 0, 0, 0, 1, 1, 1, 1};
  memcpy(buf + 12, rows, 12);
  p = write_file("ml-idx2", buf, 24);
  assert_int_equal(idx_read_labels(p, &lb, &e), 0);
  assert_int_equal(lb.n, 3);
  assert_int_equal(lb.k, 4);
  assert_memory_equal(lb.data, rows, 12);
  idx_labels_free(&lb);

  buf[12 + 7] = 2; /* row 1, column 3 */
  p = write_file("ml-bad-idx2", buf, 24);
  assert_int_equal(idx_read_labels(p, &lb, &e), -1);
  check_err(&e, p, "row 1 has value 2 in column 3; multi-label rows (3x4) must hold 0 or 1");
}

static void test_idx_write_read_round_trip(void **state) {
  (void)state;
  unsigned char px[2 * 3 * 2 * 2];
  for (size_t i = 0; i < sizeof px; i++)
    px[i] = (unsigned char)(i * 13);
  IdxImages im = {2, 3, 2, 2, px}, back;
  Err e = {0};
  const char *p = tu_path("rt-images");
  assert_int_equal(idx_write_images(p, &im, &e), 0);
  assert_int_equal(idx_read_images(p, &back, &e), 0);
  assert_int_equal(back.n, 2);
  assert_int_equal(back.h, 3);
  assert_int_equal(back.w, 2);
  assert_int_equal(back.c, 2);
  assert_memory_equal(back.data, px, sizeof px);
  idx_images_free(&back);
  unsigned char rows[6] = {0, 1, 1, 1, 0, 0};
  IdxLabels lb = {2, 3, rows}, lback;
  p = tu_path("rt-labels");
  assert_int_equal(idx_write_labels(p, &lb, &e), 0);
  assert_int_equal(idx_read_labels(p, &lback, &e), 0);
  assert_int_equal(lback.n, 2);
  assert_int_equal(lback.k, 3);
  assert_memory_equal(lback.data, rows, 6);
  idx_labels_free(&lback);
}

static void test_idx_load_split_finds_files(void **state) {
  (void)state;
  unsigned char buf[256] = {0};
  mkdir(tu_path("split"), 0755);
  uint32_t d4[4] = {3, 2, 2, 3}, d2[2] = {3, 2};
  write_file("split/train-images-idx4-ubyte", buf, make_idx(buf, 8, 4, d4, 36));
  size_t n = make_idx(buf, 8, 2, d2, 0);
  memcpy(buf + n, "\x01\x00\x00\x01\x01\x01", 6);
  write_gz("split/train-labels-idx2-ubyte.gz", buf, n + 6);
  IdxImages im;
  IdxLabels lb;
  Err e = {0};
  assert_int_equal(idx_load_split(tu_path("split"), "train", &im, &lb, &e), 0);
  assert_int_equal(im.n, 3);
  assert_int_equal(im.c, 3);
  assert_int_equal(lb.n, 3);
  assert_int_equal(lb.k, 2);
  idx_images_free(&im);
  idx_labels_free(&lb);

  /* Nothing for t10k. */
  assert_int_equal(idx_load_split(tu_path("split"), "t10k", &im, &lb, &e), -1);
  check_err(&e, tu_path("split"),
            "no t10k images: looked for t10k-images-idx3-ubyte[.gz] or "
            "t10k-images-idx4-ubyte[.gz]");
  uint32_t d3[3] = {4, 2, 2};
  write_file("split/t10k-images-idx3-ubyte", buf, make_idx(buf, 8, 3, d3, 16));
  assert_int_equal(idx_load_split(tu_path("split"), "t10k", &im, &lb, &e), -1);
  check_err(&e, tu_path("split"),
            "no t10k labels: looked for t10k-labels-idx1-ubyte[.gz] or "
            "t10k-labels-idx2-ubyte[.gz]");
  assert_null(im.data);

  /* Counts that disagree. */
  uint32_t d1[1] = {5};
  write_file("split/t10k-labels-idx1-ubyte", buf, make_idx(buf, 8, 1, d1, 5));
  assert_int_equal(idx_load_split(tu_path("split"), "t10k", &im, &lb, &e), -1);
  check_err(&e, tu_path("split"),
            "t10k-images-idx3-ubyte has 4 images but "
            "t10k-labels-idx1-ubyte has 5 labels");
  assert_null(im.data);
  assert_null(lb.data);

  /* A broken file inside: the message names that file. */
  write_file("split/t10k-labels-idx1-ubyte", buf, 7);
  assert_int_equal(idx_load_split(tu_path("split"), "t10k", &im, &lb, &e), -1);
  check_err(&e, tu_path("split/t10k-labels-idx1-ubyte"), "truncated IDX header");

  assert_int_equal(idx_load_split(tu_path("nodir"), "train", &im, &lb, &e), -1);
  check_err(&e, tu_path("nodir"), "cannot open data directory: No such file or directory");
}

static void test_idx_reference_data(void **state) {
  (void)state;
  static const struct {
    const char *dir;
    int h, w, c, k;
  } cases[] = {
      {"seed_fashion/data", 28, 28, 1, 0},
      {"sgd_same_stride/data", 12, 12, 3, 0},
      {"multilabel_bce/data", 10, 10, 1, 4},
      {"mse_gap/data", 9, 9, 2, 0},
      {"overlap_categorical/data", 11, 10, 2, 0},
      {"stride_padding_bias/data", 16, 20, 3, 0},
      {"stride_padding_bias_adam/data", 16, 20, 3, 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    for (int s = 0; s < 2; s++) {
      IdxImages im;
      IdxLabels lb;
      Err e = {0};
      if (idx_load_split(tu_reference("%s", cases[i].dir), s ? "t10k" : "train", &im, &lb, &e) < 0)
        fail_msg("%s", e.msg);
      assert_int_equal(im.h, cases[i].h);
      assert_int_equal(im.w, cases[i].w);
      assert_int_equal(im.c, cases[i].c);
      assert_int_equal(lb.k, cases[i].k);
      assert_int_equal(im.n, lb.n);
      idx_images_free(&im);
      idx_labels_free(&lb);
    }
  }
}

static void test_idx_fashion_mnist_gz(void **state) {
  (void)state;
  struct stat st;
  if (stat(CNNGEN_DEFAULT_DATA, &st) != 0) {
    skip(); /* dataset-fashion-mnist not installed */
  }
  IdxImages im;
  IdxLabels lb;
  Err e = {0};
  if (idx_load_split(CNNGEN_DEFAULT_DATA, "train", &im, &lb, &e) < 0)
    fail_msg("%s", e.msg);
  assert_int_equal(im.n, 60000);
  assert_int_equal(im.h, 28);
  assert_int_equal(im.w, 28);
  assert_int_equal(im.c, 1);
  assert_int_equal(lb.n, 60000);
  assert_int_equal(lb.k, 0);
  int count[10] = {0};
  for (int i = 0; i < lb.n; i++) {
    assert_true(lb.data[i] < 10);
    count[lb.data[i]]++;
  }
  for (int c = 0; c < 10; c++)
    assert_int_equal(count[c], 6000); /* Fashion-MNIST is balanced */
  idx_images_free(&im);
  idx_labels_free(&lb);
  if (idx_load_split(CNNGEN_DEFAULT_DATA, "t10k", &im, &lb, &e) < 0)
    fail_msg("%s", e.msg);
  assert_int_equal(im.n, 10000);
  assert_int_equal(lb.n, 10000);
  idx_images_free(&im);
  idx_labels_free(&lb);
}

/* ---- safetensors ---- */

/* A safetensors file from a header text and data bytes. */
static const char *write_st(const char *name, const char *header, const void *data,
                            size_t datalen) {
  size_t h = strlen(header);
  unsigned char *b = malloc(8 + h + datalen + 1);
  for (int i = 0; i < 8; i++)
    b[i] = (unsigned char)((unsigned long long)h >> (8 * i));
  memcpy(b + 8, header, h);
  if (datalen)
    memcpy(b + 8 + h, data, datalen);
  const char *p = write_file(name, b, 8 + h + datalen);
  free(b);
  return p;
}

static void st_bad(const char *name, const char *header, size_t datalen, const char *what) {
  static unsigned char zeros[256];
  assert_true(datalen <= sizeof zeros);
  const char *p = write_st(name, header, zeros, datalen);
  StFile f;
  Err e = {0};
  if (st_read(p, &f, &e) == 0)
    fail_msg("%s was accepted", name);
  check_err(&e, p, what);
  assert_null(f.blob);
}

static void test_st_malformed_headers(void **state) {
  (void)state;
  StFile f;
  Err e = {0};
  const char *p = WRITE_LIT("short.st", "\x10\0\0");
  assert_int_equal(st_read(p, &f, &e), -1);
  check_err(&e, p, "too short for a safetensors file: 3 bytes");

  unsigned char b[16] = {0xE8, 0x03}; /* header length 1000, file 16 bytes */
  memcpy(b + 8, "{\"a\":{}}", 8);
  p = write_file("long-header.st", b, 16);
  assert_int_equal(st_read(p, &f, &e), -1);
  check_err(&e, p,
            "header length 1000 is longer than the file (8 bytes after the 8-byte "
            "length)");

  st_bad("badjson.st", "{\"a\": {\"dtype\": \"F32\", ", 0, "invalid JSON in the header");
  st_bad("array.st", "[1, 2, 3]", 0, "the header is not a JSON object");
  st_bad("garbage-after.st", "{} x", 0, "unexpected bytes after the header's JSON object");
  st_bad("dtype.st", "{\"w\":{\"dtype\":\"Q8\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2,
         "tensor 'w' has unknown dtype 'Q8'");
  st_bad("fields.st", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8,
         "tensor 'w' needs \"dtype\" (a string), \"shape\" and \"data_offsets\"");
  st_bad("negshape.st", "{\"w\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8,
         "tensor 'w': shape entry 0 is not a non-negative integer");
  st_bad("fracshape.st", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,8]}}", 8,
         "shape entry 0 is not a non-negative integer");
  st_bad("range.st", "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8,
         "tensor 'w': data_offsets [0, 16] run past the data, which holds 8 bytes");
  st_bad("backwards.st", "{\"w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,0]}}", 8,
         "data_offsets [8, 0] end before they begin");
  st_bad("size.st", "{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8,
         "tensor 'w': shape [3] of F32 needs 12 bytes, data_offsets [0, 8] hold 8");
  st_bad("overlap.st",
         "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
         12, "tensors 'a' (bytes 0-8) and 'b' (bytes 4-12) overlap");
  st_bad("gap.st",
         "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]}}",
         20, "4 unused bytes before tensor 'b' (bytes 12-20)");
  st_bad("trailing.st", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 12,
         "4 bytes of data after the last tensor");
  st_bad("dup.st",
         "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
         8, "the header names 'a' twice");
  st_bad("meta.st", "{\"__metadata__\":{\"format\":\"cnngen\",\"epoch\":3}}", 0,
         "__metadata__ value for 'epoch' is not a string");
  st_bad("meta2.st", "{\"__metadata__\":[1]}", 0, "__metadata__ must be an object of strings");

  /* A truncated copy of a good file. */
  float v[4] = {1, 2, 3, 4};
  StEntry t = {"w", 1, {4}, v};
  p = tu_path("good.st");
  assert_int_equal(st_write(p, &t, 1, NULL, &e), 0);
  size_t n;
  unsigned char *g = slurp(p, &n);
  p = write_file("cut.st", g, n - 4);
  assert_int_equal(st_read(p, &f, &e), -1);
  check_err(&e, p,
            "tensor 'w': data_offsets [0, 16] run past the data, which holds 12 bytes "
            "(truncated file?)");
  free(g);
}

static void test_st_write_read_round_trip_bit_exact(void **state) {
  (void)state;
  uint32_t bits[6] = {0x7fc12345, 0x80000000, 0x00000001, 0x7f800000, 0x3eaaaaab, 0xff7fffff};
  float a[6], b[2] = {-1.5f, 2.25f};
  memcpy(a, bits, sizeof a);
  StEntry t[3] = {
      {"layer.weight", 2, {2, 3}, a}, {"layer.bias", 1, {2}, b}, {"quote\"name\\", 0, {0}, b}};
  const char *meta[] = {"format", "cnngen", "network", "net\n1", NULL};
  const char *p = tu_path("rt.safetensors");
  Err e = {0};
  assert_int_equal(st_write(p, t, 3, meta, &e), 0);
  size_t n;
  unsigned char *raw = slurp(p, &n);
  unsigned long long h = 0;
  for (int i = 7; i >= 0; i--)
    h = h << 8 | raw[i];
  assert_int_equal(h % 8, 0);
  assert_memory_equal(raw + 8, "{\"__metadata__\":{\"format\":\"cnngen\"", 34);
  assert_int_equal(raw[8 + h - 1] == ' ' || raw[8 + h - 1] == '}', 1);
  free(raw);

  StFile f;
  if (st_read(p, &f, &e) < 0)
    fail_msg("%s", e.msg);
  assert_int_equal(f.ntensors, 3);
  assert_string_equal(f.tensors[0].name, "layer.weight");
  assert_string_equal(f.tensors[1].name, "layer.bias");
  assert_string_equal(f.tensors[2].name, "quote\"name\\");
  assert_string_equal(f.tensors[0].dtype, "F32");
  assert_int_equal(f.tensors[0].rank, 2);
  assert_int_equal(f.tensors[0].shape[0], 2);
  assert_int_equal(f.tensors[0].shape[1], 3);
  assert_int_equal(f.tensors[0].nbytes, sizeof a);
  assert_memory_equal(f.tensors[0].data, bits, sizeof a);
  assert_memory_equal(f.tensors[1].data, b, sizeof b);
  assert_int_equal(f.tensors[2].rank, 0);
  assert_int_equal(f.tensors[2].nbytes, 4);
  assert_string_equal(st_meta(&f, "format"), "cnngen");
  assert_string_equal(st_meta(&f, "network"), "net\n1");
  assert_null(st_meta(&f, "missing"));
  assert_ptr_equal(st_find(&f, "layer.bias"), &f.tensors[1]);
  assert_null(st_find(&f, "layer"));
  st_free(&f);

  /* Caller mistakes are refused as internal errors. */
  StEntry dup[2] = {{"x", 1, {2}, b}, {"x", 1, {2}, b}};
  Err e2 = {0};
  assert_int_equal(st_write(tu_path("dup-write.st"), dup, 2, NULL, &e2), -1);
  assert_int_equal(e2.internal, 1);
  check_err(&e2, tu_path("dup-write.st"), "cannot write tensor 'x' twice");
  struct stat st;
  assert_int_equal(stat(tu_path("dup-write.st"), &st), -1);
}

/* The network of test_st_load_params_*: conv1 [4,1,3,3], dense1 [2,36]. */
static int small_net(TensorInfo *ti) {
  static const struct {
    const char *name;
    int rank, s0, s1, s2, s3;
  } t[4] = {{"conv1.weight", 4, 4, 1, 3, 3},
            {"conv1.bias", 1, 4, 0, 0, 0},
            {"dense1.weight", 2, 2, 36, 0, 0},
            {"dense1.bias", 1, 2, 0, 0, 0}};
  long off = 0;
  for (int i = 0; i < 4; i++) {
    memset(&ti[i], 0, sizeof ti[i]);
    snprintf(ti[i].name, sizeof ti[i].name, "%s", t[i].name);
    ti[i].rank = t[i].rank;
    int s[4] = {t[i].s0, t[i].s1, t[i].s2, t[i].s3};
    ti[i].count = 1;
    for (int d = 0; d < t[i].rank; d++) {
      ti[i].shape[d] = s[d];
      ti[i].count *= s[d];
    }
    ti[i].offset = off;
    off += ti[i].count;
  }
  return (int)off;
}

static void test_st_load_params_checks_against_network(void **state) {
  (void)state;
  TensorInfo ti[4];
  int total = small_net(ti);
  float *vals = malloc(sizeof(float) * (size_t)total * 2);
  for (int i = 0; i < total * 2; i++)
    vals[i] = (float)i * 0.5f - 3;
  /* In a different order than the network, plus checkpoint extras. */
  StEntry good[6] = {{"dense1.bias", 1, {2}, vals + 112},
                     {"opt.m.conv1.weight", 4, {4, 1, 3, 3}, vals},
                     {"conv1.weight", 4, {4, 1, 3, 3}, vals},
                     {"dense1.weight", 2, {2, 36}, vals + 40},
                     {"__step", 1, {1}, vals},
                     {"conv1.bias", 1, {4}, vals + 36}};
  Err e = {0};
  StFile f;
  const char *p = tu_path("params.st");
  assert_int_equal(st_write(p, good, 6, NULL, &e), 0);
  assert_int_equal(st_read(p, &f, &e), 0);
  float *params = calloc((size_t)total, sizeof(float));
  if (st_load_params(&f, ti, 4, params, &e) < 0)
    fail_msg("%s", e.msg);
  assert_memory_equal(params, vals, sizeof(float) * (size_t)total);
  st_free(&f);

  /* Two mismatches: the message names the first in network order. */
  StEntry bad1[3] = {{"conv1.weight", 4, {4, 1, 5, 5}, vals},
                     {"conv1.bias", 1, {4}, vals},
                     {"dense1.weight", 2, {2, 36}, vals}};
  p = tu_path("shape.st");
  assert_int_equal(st_write(p, bad1, 3, NULL, &e), 0);
  assert_int_equal(st_read(p, &f, &e), 0);
  assert_int_equal(st_load_params(&f, ti, 4, params, &e), -1);
  check_err(&e, p, "tensor 'conv1.weight' has shape [4, 1, 5, 5], the network needs [4, 1, 3, 3]");
  st_free(&f);

  StEntry bad2[4] = {{"conv1.weight", 4, {4, 1, 3, 3}, vals},
                     {"conv1.bias", 1, {4}, vals},
                     {"dense1.weight", 1, {72}, vals},
                     {"fc.bias", 1, {2}, vals}};
  p = tu_path("rank.st");
  assert_int_equal(st_write(p, bad2, 4, NULL, &e), 0);
  assert_int_equal(st_read(p, &f, &e), 0);
  assert_int_equal(st_load_params(&f, ti, 4, params, &e), -1);
  check_err(&e, p, "tensor 'dense1.weight' has shape [72], the network needs [2, 36]");
  st_free(&f);

  bad2[2].rank = 2;
  bad2[2].shape[0] = 2;
  bad2[2].shape[1] = 36;
  p = tu_path("missing.st");
  assert_int_equal(st_write(p, bad2, 4, NULL, &e), 0);
  assert_int_equal(st_read(p, &f, &e), 0);
  assert_int_equal(st_load_params(&f, ti, 4, params, &e), -1);
  check_err(&e, p,
            "missing tensor 'dense1.bias' (the file has fc.bias, which the network does "
            "not)");
  st_free(&f);

  StEntry extra[5] = {{"conv1.weight", 4, {4, 1, 3, 3}, vals},
                      {"conv1.bias", 1, {4}, vals},
                      {"dense1.weight", 2, {2, 36}, vals},
                      {"dense1.bias", 1, {2}, vals},
                      {"fc.weight", 2, {2, 2}, vals}};
  p = tu_path("extra.st");
  assert_int_equal(st_write(p, extra, 5, NULL, &e), 0);
  assert_int_equal(st_read(p, &f, &e), 0);
  assert_int_equal(st_load_params(&f, ti, 4, params, &e), -1);
  check_err(&e, p,
            "unexpected tensor 'fc.weight' (the network has conv1.weight, conv1.bias, "
            "dense1.weight, dense1.bias)");
  st_free(&f);

  /* F16 data where the network needs F32. */
  p = write_st("f16.st",
               "{\"conv1.weight\":{\"dtype\":\"F16\",\"shape\":[4,1,3,3],\"data_offsets\":[0,72]},"
               "\"conv1.bias\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[72,88]}}",
               vals, 88);
  assert_int_equal(st_read(p, &f, &e), 0);
  assert_int_equal(st_load_params(&f, ti, 4, params, &e), -1);
  check_err(&e, p, "tensor 'conv1.weight' has dtype F16, the network needs F32");
  st_free(&f);
  free(params);
  free(vals);
}

/* examples/fashion.cnn's network in PyTorch layout. */
static int fashion_net(TensorInfo *ti) {
  static const int shapes[10][5] = {{4, 32, 1, 3, 3},  {1, 32}, {4, 64, 32, 3, 3}, {1, 64},
                                    {4, 64, 64, 3, 3}, {1, 64}, {2, 64, 576},      {1, 64},
                                    {2, 10, 64},       {1, 10}};
  static const char *names[10] = {"conv1.weight",  "conv1.bias", "conv2.weight",  "conv2.bias",
                                  "conv3.weight",  "conv3.bias", "dense1.weight", "dense1.bias",
                                  "dense2.weight", "dense2.bias"};
  long off = 0;
  for (int i = 0; i < 10; i++) {
    memset(&ti[i], 0, sizeof ti[i]);
    snprintf(ti[i].name, sizeof ti[i].name, "%s", names[i]);
    ti[i].rank = shapes[i][0];
    ti[i].count = 1;
    for (int d = 0; d < ti[i].rank; d++) {
      ti[i].shape[d] = shapes[i][d + 1];
      ti[i].count *= ti[i].shape[d];
    }
    ti[i].offset = off;
    off += ti[i].count;
  }
  return (int)off;
}

static void test_st_read_pytorch_weights(void **state) {
  (void)state;
  const char *p = tu_reference("fashion-pytorch.safetensors");
  StFile f;
  Err e = {0};
  if (st_read(p, &f, &e) < 0)
    fail_msg("%s", e.msg);
  assert_string_equal(st_meta(&f, "format"), "cnngen");
  assert_string_equal(st_meta(&f, "network"), "fashion");
  assert_string_equal(st_meta(&f, "test_accuracy"), "0.9040");
  TensorInfo ti[10];
  int total = fashion_net(ti);
  assert_int_equal(total, 93322);
  float *params = malloc(sizeof(float) * (size_t)total);
  if (st_load_params(&f, ti, 10, params, &e) < 0)
    fail_msg("%s", e.msg);
  /* Each tensor lands at its offset, bit for bit. */
  for (int i = 0; i < 10; i++) {
    const StTensor *t = st_find(&f, ti[i].name);
    assert_non_null(t);
    assert_memory_equal(params + ti[i].offset, t->data, t->nbytes);
  }
  float sum = 0;
  for (int i = 0; i < total; i++) {
    assert_true(isfinite(params[i]));
    sum += fabsf(params[i]);
  }
  assert_true(sum > 100); /* trained weights, not zeros */
  /* The same file against a network whose conv2 is 5x5. */
  ti[2].shape[2] = ti[2].shape[3] = 5;
  assert_int_equal(st_load_params(&f, ti, 10, params, &e), -1);
  check_err(&e, p,
            "tensor 'conv2.weight' has shape [64, 32, 3, 3], the network needs "
            "[64, 32, 5, 5]");
  free(params);
  st_free(&f);
}

static void test_st_read_reference_files(void **state) {
  (void)state;
  glob_t g;
  assert_int_equal(glob(TU_REFERENCE "/*/*.safetensors", 0, NULL, &g), 0);
  assert_int_equal(g.gl_pathc, 2 * TU_REFERENCE_CASES);
  for (size_t i = 0; i < g.gl_pathc; i++) {
    StFile f;
    Err e = {0};
    if (st_read(g.gl_pathv[i], &f, &e) < 0)
      fail_msg("%s", e.msg);
    assert_string_equal(st_meta(&f, "format"), "cnngen");
    const char *net = st_meta(&f, "network");
    assert_non_null(net);
    char want[256];
    snprintf(want, sizeof want, "/%s/", net);
    assert_non_null(strstr(g.gl_pathv[i], want)); /* the folder is named after the network */
    assert_true(f.ntensors >= 4);
    for (int t = 0; t < f.ntensors; t++)
      assert_string_equal(f.tensors[t].dtype, "F32");
    /* The first convolution's weight, by its default name or its name=. */
    assert_non_null(st_find(&f, strcmp(net, "overlap_categorical") ? "conv1.weight" : "stem.weight"));
    st_free(&f);
  }
  globfree(&g);
}

/* The tensors of a network compiled from src, malloc'd; their number in
 *nt and the floats in *count. */
static TensorInfo *tensors_of(Arena *a, const char *src, int *nt, long *count) {
  Net *net = tu_compile_ok(a, src);
  *nt = net_tensors(net, NULL);
  TensorInfo *ti = calloc((size_t)*nt, sizeof *ti);
  assert_non_null(ti);
  net_tensors(net, ti);
  *count = net->param_count;
  return ti;
}

/* bias=false (tests/reference/stride_padding_bias): the case's own file,
   made without a conv1.bias, loads; a file with one, written for the same
   network with the bias, is refused, naming the tensor and bias=false; and
   the case's file is missing conv1.bias for the network with the bias. */
static void test_st_bias_false_has_no_bias_tensor(void **state) {
  (void)state;
  static char src[4096], with_bias[4096];
  tu_read_file(tu_reference("stride_padding_bias/net.cnn"), src, sizeof src);
  char *at = strstr(src, " bias=false"); /* the first: conv1's */
  assert_non_null(at);
  snprintf(with_bias, sizeof with_bias, "%.*s%s", (int)(at - src), src, at + strlen(" bias=false"));
  Arena a = {0};
  int nt, nt_b;
  long count, count_b;
  TensorInfo *ti = tensors_of(&a, src, &nt, &count);
  TensorInfo *ti_b = tensors_of(&a, with_bias, &nt_b, &count_b);
  assert_int_equal(nt_b, nt + 1);
  assert_int_equal(count_b, count + 8);
  const char *init = tu_reference("stride_padding_bias/init.safetensors");
  StFile f;
  Err e = {0};
  if (st_read(init, &f, &e) < 0)
    fail_msg("%s", e.msg);
  assert_null(st_find(&f, "conv1.bias"));
  float *params = calloc((size_t)count_b, sizeof *params);
  assert_non_null(params);
  if (st_load_params(&f, ti, nt, params, &e) < 0)
    fail_msg("%s", e.msg);
  assert_int_equal(st_load_params(&f, ti_b, nt_b, params, &e), -1);
  check_err(&e, init, "missing tensor 'conv1.bias'");
  st_free(&f);
  /* A file with conv1.bias, against the network without it. */
  Net *net_b = tu_compile_ok(&a, with_bias);
  const char *p = tu_path("with_bias.safetensors");
  assert_int_equal(st_write_params(p, net_b, params, NULL, &e), 0);
  assert_int_equal(st_read(p, &f, &e), 0);
  assert_int_equal(st_load_params(&f, ti, nt, params, &e), -1);
  check_err(&e, p,
            "unexpected tensor 'conv1.bias': layer conv1 has no bias in the network "
            "(bias=false)");
  st_free(&f);
  free(params);
  free(ti);
  free(ti_b);
  arena_free(&a);
}

static void test_st_write_params_of_a_net(void **state) {
  (void)state;
  Layer layers[3];
  memset(layers, 0, sizeof layers);
  layers[0].op = OP_CONV2D;
  snprintf(layers[0].name, sizeof layers[0].name, "conv1");
  layers[0].in = (Shape){5, 5, 2, false};
  layers[0].u.conv.filters = 3;
  layers[0].u.conv.kh = layers[0].u.conv.kw = 3;
  layers[0].u.conv.sh = layers[0].u.conv.sw = 1;
  layers[0].weight_offset = 0;
  layers[0].weight_count = 54;
  layers[0].bias_offset = 54;
  layers[0].bias_count = 3;
  layers[1].op = OP_FLATTEN;
  layers[2].op = OP_DENSE;
  snprintf(layers[2].name, sizeof layers[2].name, "out");
  layers[2].in = (Shape){1, 1, 27, true};
  layers[2].u.dense.units = 4;
  layers[2].weight_offset = 57;
  layers[2].weight_count = 108;
  layers[2].bias_offset = 165;
  layers[2].bias_count = 4;
  Net net;
  memset(&net, 0, sizeof net);
  snprintf(net.name, sizeof net.name, "tiny");
  net.layers = layers;
  net.nlayers = 3;
  net.param_count = 169;
  float params[169];
  for (int i = 0; i < 169; i++)
    params[i] = sinf((float)i);
  const char *p = tu_path("tiny.safetensors");
  const char *extra[] = {"epoch", "3", NULL};
  Err e = {0};
  assert_int_equal(st_write_params(p, &net, params, extra, &e), 0);
  StFile f;
  assert_int_equal(st_read(p, &f, &e), 0);
  assert_string_equal(st_meta(&f, "format"), "cnngen");
  assert_string_equal(st_meta(&f, "network"), "tiny");
  assert_string_equal(st_meta(&f, "epoch"), "3");
  assert_int_equal(f.ntensors, 4);
  assert_string_equal(f.tensors[0].name, "conv1.weight");
  assert_string_equal(f.tensors[2].name, "out.weight");
  assert_int_equal(f.tensors[2].shape[1], 27);
  TensorInfo ti[4];
  assert_int_equal(net_tensors(&net, ti), 4);
  float back[169];
  assert_int_equal(st_load_params(&f, ti, 4, back, &e), 0);
  assert_memory_equal(back, params, sizeof params);
  st_free(&f);
  /* "format" again in the extras is a caller bug, refused. */
  const char *clash[] = {"format", "other", NULL};
  assert_int_equal(st_write_params(tu_path("clash.st"), &net, params, clash, &e), -1);
  check_err(&e, tu_path("clash.st"), "metadata key 'format' given twice");
}

/* ---- images ---- */

static void read_ok(const char *p, Image *img) {
  Err e = {0};
  if (image_read(p, img, &e) < 0)
    fail_msg("%s", e.msg);
}

static void read_bad(const char *name, const void *data, size_t len, const char *what) {
  const char *p = write_file(name, data, len);
  Image img;
  Err e = {0};
  if (image_read(p, &img, &e) == 0)
    fail_msg("%s was accepted", name);
  check_err(&e, p, what);
  assert_null(img.data);
}

static void test_image_pgm_ppm_good(void **state) {
  (void)state;
  Image img;
  read_ok(WRITE_LIT("a.pgm", "P5\n# made by hand\n3 2\n255\n\x00\x10\x20\x30\x40\xff"), &img);
  assert_int_equal(img.w, 3);
  assert_int_equal(img.h, 2);
  assert_int_equal(img.c, 1);
  assert_memory_equal(img.data, "\x00\x10\x20\x30\x40\xff", 6);
  image_free(&img);

  read_ok(WRITE_LIT("b.pgm", "P2 # comment\n2 # w\n2\n15\n0 7\n15 # end\n8"), &img);
  assert_int_equal(img.w, 2);
  assert_int_equal(img.h, 2);
  /* v * 255 / 15, rounded */
  assert_memory_equal(img.data, "\x00\x77\xff\x88", 4);
  image_free(&img);

  read_ok(WRITE_LIT("c.ppm", "P3\n2 1\n255\n1 2 3   250 251 252\n"), &img);
  assert_int_equal(img.c, 3);
  assert_memory_equal(img.data, "\x01\x02\x03\xfa\xfb\xfc", 6);
  image_free(&img);

  /* 16-bit P6: big-endian samples, maxval 65535. */
  read_ok(WRITE_LIT("d.ppm", "P6\n1 1\n65535\n\xff\xff\x80\x00\x00\x00"), &img);
  assert_int_equal(img.c, 3);
  assert_int_equal(img.data[0], 255);
  assert_int_equal(img.data[1], 128);
  assert_int_equal(img.data[2], 0);
  image_free(&img);

  /* Trailing bytes after a binary raster are allowed (netpbm streams). */
  read_ok(WRITE_LIT("e.pgm", "P5 1 1 255\n\x42\x00\x00"), &img);
  assert_int_equal(img.data[0], 0x42);
  image_free(&img);
}

static void test_image_pgm_malformed(void **state) {
  (void)state;
  READ_BAD("t1.pgm", "P5\n3 2\n255\n\x01\x02\x03\x04",
           "truncated: expected 6 bytes of pixel data for 3x2, found 4");
  READ_BAD("t2.pgm", "P2\n2 2\n255\n1 2 3", "truncated: expected 4 pixel values, found 3");
  READ_BAD("t3.pgm", "P5\n3 2\n", "truncated header: expected the maxval");
  READ_BAD("t4.pgm", "P5\n3 2\n255", "truncated: no pixel data after the header");
  READ_BAD("g1.pgm", "P5\n3 y 255\n", "expected the height, found 'y'");
  READ_BAD("g2.pgm", "P2\n2 1\n255\n1 x\n", "expected a pixel value, found 'x'");
  READ_BAD("g3.pgm", "P2\n2 1\n15\n1 16\n", "a pixel value is larger than 15");
  READ_BAD("g4.pgm", "P5\n3x2 255\n", "unexpected 'x' after the width 3");
  READ_BAD("g5.pgm", "P5\n0 2 255\n", "image size 0x2 is empty");
  READ_BAD("g6.pgm", "P5\n100000 100000 255\n", "the width is larger than 16384");
  READ_BAD("g7.pgm", "P5\n2 2 0\n", "maxval is 0");
  READ_BAD("g8.pgm", "P5\n1 1 70000\n", "the maxval is larger than 65535");
  READ_BAD("g9.pgm", "P5\n1 2 1000\n\x03\xe9\x00\x00",
           "sample 1001 at pixel 0 is above "
           "maxval 1000");
  READ_BAD("p4.pbm", "P4\n1 1\n\x80", "P4 images (PBM bitmaps, PAM) are not supported");
  READ_BAD("x.jpg", "\xff\xd8\xff\xe0", "not a PGM/PPM or PNG image");
  READ_BAD("empty.pgm", "", "not a PGM/PPM or PNG image");
  READ_BAD("p5x.pgm", "P5x", "the magic P5 is not followed by whitespace");
  READ_BAD("p2.pgm", "P2\n1 1 255\n", "truncated: expected 1 pixel values, found 0");
}

/* Writes a PNG with libpng's classic API (the types image_write_png does not make). */
static const char *make_png(const char *name, int w, int h, int depth, int type, int interlace,
                            const unsigned char *rows, int tRNS) {
  const char *p = tu_path(name);
  FILE *f = fopen(p, "wb");
  assert_non_null(f);
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
  png_infop info = png_create_info_struct(png);
  assert_int_equal(setjmp(png_jmpbuf(png)), 0);
  png_init_io(png, f);
  png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, depth, type, interlace,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  if (type == PNG_COLOR_TYPE_PALETTE) {
    png_color pal[3] = {{255, 0, 0}, {0, 255, 0}, {10, 20, 30}};
    png_set_PLTE(png, info, pal, 3);
    if (tRNS) {
      png_byte alpha[3] = {0, 128, 255};
      png_set_tRNS(png, info, alpha, 3, NULL);
    }
  }
  png_write_info(png, info);
  size_t rowbytes = png_get_rowbytes(png, info);
  int passes = png_set_interlace_handling(png);
  for (int pass = 0; pass < passes; pass++)
    for (int y = 0; y < h; y++)
      png_write_row(png, (png_bytep)rows + (size_t)y * rowbytes);
  png_write_end(png, NULL);
  png_destroy_write_struct(&png, &info);
  fclose(f);
  return p;
}

static void test_image_png_kinds(void **state) {
  (void)state;
  Image img;
  /* gray + alpha: alpha dropped. */
  unsigned char ga[2 * 2 * 2] = {10, 255, 20, 0, 30, 128, 40, 1};
  read_ok(make_png("ga.png", 2, 2, 8, PNG_COLOR_TYPE_GRAY_ALPHA, 0, ga, 0), &img);
  assert_int_equal(img.c, 1);
  assert_memory_equal(img.data, "\x0a\x14\x1e\x28", 4);
  image_free(&img);
  /* RGBA: alpha dropped, colour kept. */
  unsigned char rgba[2 * 1 * 4] = {1, 2, 3, 0, 200, 100, 50, 255};
  read_ok(make_png("rgba.png", 2, 1, 8, PNG_COLOR_TYPE_RGBA, 0, rgba, 0), &img);
  assert_int_equal(img.c, 3);
  assert_memory_equal(img.data, "\x01\x02\x03\xc8\x64\x32", 6);
  image_free(&img);
  /* Palette with transparency: RGB from the palette. */
  unsigned char idx[3] = {2, 0, 1};
  read_ok(make_png("pal.png", 3, 1, 8, PNG_COLOR_TYPE_PALETTE, 0, idx, 1), &img);
  assert_int_equal(img.c, 3);
  assert_memory_equal(img.data, "\x0a\x14\x1e\xff\x00\x00\x00\xff\x00", 9);
  image_free(&img);
  /* 16-bit gray, big-endian samples: 0, 0x8000, 0xffff. */
  unsigned char g16[6] = {0, 0, 0x80, 0, 0xff, 0xff};
  read_ok(make_png("g16.png", 3, 1, 16, PNG_COLOR_TYPE_GRAY, 0, g16, 0), &img);
  assert_int_equal(img.c, 1);
  assert_memory_equal(img.data, "\x00\x80\xff", 3);
  image_free(&img);
  /* 1-bit gray: 0 -> 0, 1 -> 255. */
  unsigned char bits[1] = {0xA0}; /* 1 0 1 */
  read_ok(make_png("g1.png", 3, 1, 1, PNG_COLOR_TYPE_GRAY, 0, bits, 0), &img);
  assert_memory_equal(img.data, "\xff\x00\xff", 3);
  image_free(&img);
  /* Interlaced RGB 16-bit. */
  unsigned char rgb16[5 * 5 * 6];
  for (size_t i = 0; i < sizeof rgb16; i += 2) {
    rgb16[i] = (unsigned char)(i * 3);
    rgb16[i + 1] = 0;
  }
  read_ok(make_png("i16.png", 5, 5, 16, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_ADAM7, rgb16, 0), &img);
  assert_int_equal(img.w, 5);
  assert_int_equal(img.h, 5);
  assert_int_equal(img.c, 3);
  for (size_t i = 0; i < 75; i++) {
    unsigned v = rgb16[2 * i] << 8;
    assert_int_equal(img.data[i], (v * 255 + 32767) / 65535);
  }
  image_free(&img);
}

static void test_image_png_write_read_round_trip(void **state) {
  (void)state;
  unsigned char px[4 * 3 * 3];
  for (size_t i = 0; i < sizeof px; i++)
    px[i] = (unsigned char)(i * 17 + 3);
  for (int c = 1; c <= 3; c += 2) {
    Image img = {3, 4, c, px}, back;
    const char *p = tu_path(c == 1 ? "rt-gray.png" : "rt-rgb.png");
    Err e = {0};
    assert_int_equal(image_write_png(p, &img, &e), 0);
    read_ok(p, &back);
    assert_int_equal(back.h, 3);
    assert_int_equal(back.w, 4);
    assert_int_equal(back.c, c);
    assert_memory_equal(back.data, px, (size_t)12 * c);
    image_free(&back);
  }
  Image bad = {3, 4, 2, px};
  Err e = {0};
  assert_int_equal(image_write_png(tu_path("bad.png"), &bad, &e), -1);
  assert_int_equal(e.internal, 1);
  Image img = {3, 4, 1, px};
  assert_int_equal(image_write_png(tu_path("nodir/x.png"), &img, &e), -1);
  check_err(&e, tu_path("nodir/x.png"), "cannot create a temporary file in");
}

static void test_image_png_malformed(void **state) {
  (void)state;
  unsigned char px[16 * 16];
  for (size_t i = 0; i < sizeof px; i++)
    px[i] = (unsigned char)(i * 7);
  Image img = {16, 16, 1, px};
  Err e = {0};
  const char *p = tu_path("good.png");
  assert_int_equal(image_write_png(p, &img, &e), 0);
  size_t n;
  unsigned char *b = slurp(p, &n);
  read_bad("cut.png", b, n / 2, "bad PNG file: truncated PNG data");
  read_bad("sig.png", b, 8, "bad PNG file:");
  b[20] ^= 0xff; /* inside IHDR: CRC no longer matches */
  read_bad("crc.png", b, n, "bad PNG file: IHDR: CRC error");
  b[20] ^= 0xff;
  b[n - 20] ^= 0x55; /* inside the compressed data */
  read_bad("data.png", b, n, "bad PNG file:");
  free(b);
}

static void test_image_convert(void **state) {
  (void)state;
  unsigned char *px = malloc(6);
  memcpy(px, "\xff\x00\x00\x10\x80\xf0", 6);
  Image img = {1, 2, 3, px};
  assert_int_equal(image_convert(&img, 1), 0);
  assert_int_equal(img.c, 1);
  assert_int_equal(img.data[0], (255 * 19595 + 0x8000) >> 16);
  assert_int_equal(img.data[1], (16 * 19595 + 128 * 38470 + 240 * 7471 + 0x8000) >> 16);
  assert_int_equal(image_convert(&img, 3), 0);
  assert_int_equal(img.c, 3);
  assert_int_equal(img.data[3], img.data[4]);
  assert_int_equal(img.data[4], img.data[5]);
  assert_int_equal(image_convert(&img, 2), -1);
  image_free(&img);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_io_read_plain_and_gzip),
      cmocka_unit_test(test_io_read_gzip_members_concatenated),
      cmocka_unit_test(test_io_read_gzip_corrupt),
      cmocka_unit_test(test_io_read_gzip_truncated),
      cmocka_unit_test(test_io_read_missing_and_directory),
      cmocka_unit_test(test_io_atomic_write_replaces),
      cmocka_unit_test(test_io_atomic_write_failure_leaves_target),
      cmocka_unit_test(test_io_atomic_write_unwritable_dir),
      cmocka_unit_test(test_idx_read_images_rank3),
      cmocka_unit_test(test_idx_read_images_rank4_colour),
      cmocka_unit_test(test_idx_read_images_gzip),
      cmocka_unit_test(test_idx_truncated_and_trailing),
      cmocka_unit_test(test_idx_wrong_magic),
      cmocka_unit_test(test_idx_labels_classes_and_multilabel),
      cmocka_unit_test(test_idx_write_read_round_trip),
      cmocka_unit_test(test_idx_load_split_finds_files),
      cmocka_unit_test(test_idx_reference_data),
      cmocka_unit_test(test_idx_fashion_mnist_gz),
      cmocka_unit_test(test_st_malformed_headers),
      cmocka_unit_test(test_st_write_read_round_trip_bit_exact),
      cmocka_unit_test(test_st_load_params_checks_against_network),
      cmocka_unit_test(test_st_read_pytorch_weights),
      cmocka_unit_test(test_st_read_reference_files),
      cmocka_unit_test(test_st_write_params_of_a_net),
      cmocka_unit_test(test_st_bias_false_has_no_bias_tensor),
      cmocka_unit_test(test_image_pgm_ppm_good),
      cmocka_unit_test(test_image_pgm_malformed),
      cmocka_unit_test(test_image_png_kinds),
      cmocka_unit_test(test_image_png_write_read_round_trip),
      cmocka_unit_test(test_image_png_malformed),
      cmocka_unit_test(test_image_convert),
  };
  return cmocka_run_group_tests(tests, tu_setup, tu_teardown);
}
