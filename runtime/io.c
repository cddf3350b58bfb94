/*
 * io.c: whole-file reads and atomic writes, every libc call checked here.
 *
 * Reading slurps the file; data that starts with the gzip magic (1f 8b 08)
 * is inflated with zlib (concatenated members too), so every reader above
 * takes `.gz` files for free. A truncated or corrupt stream is an error, never
 * a short result.
 *
 * Writing goes to a temporary made by mkstemp beside the target (same
 * directory, so rename is atomic), then fflush, fsync, fclose and rename.
 * Any failure removes the temporary and leaves the target as it was.
 */
#include "io.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

/* Grows *buf to at least `need` bytes (plus one for the NUL). */
static int grow(unsigned char **buf, size_t *cap, size_t need) {
  if (need < *cap)
    return 0;
  size_t n = *cap ? *cap : 4096;
  while (n <= need) {
    if (n > SIZE_MAX / 2)
      return -1;
    n *= 2;
  }
  unsigned char *p = realloc(*buf, n);
  if (!p)
    return -1;
  *buf = p;
  *cap = n;
  return 0;
}

void *io_read_raw(const char *path, size_t *len, Err *e) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    err_set(e, path, "cannot open: %s", strerror(errno));
    return NULL;
  }
  struct stat st;
  if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
    fclose(f);
    err_set(e, path, "is a directory, not a file");
    return NULL;
  }
  size_t cap = 0, n = 0;
  unsigned char *buf = NULL;
  if (S_ISREG(st.st_mode) && st.st_size > 0 && grow(&buf, &cap, (size_t)st.st_size + 1) < 0) {
    fclose(f);
    err_set(e, path, "out of memory reading %lld bytes", (long long)st.st_size);
    return NULL;
  }
  for (;;) {
    if (grow(&buf, &cap, n + 1) < 0) {
      free(buf);
      fclose(f);
      err_set(e, path, "out of memory after %zu bytes", n);
      return NULL;
    }
    size_t got = fread(buf + n, 1, cap - n - 1, f);
    n += got;
    if (got == 0)
      break;
  }
  int bad = ferror(f);
  int saved = errno;
  fclose(f);
  if (bad) {
    free(buf);
    err_set(e, path, "read error: %s", strerror(saved));
    return NULL;
  }
  buf[n] = 0;
  *len = n;
  return buf;
}

/* Inflates gzip data (all members); the result has a NUL after it. */
static unsigned char *gunzip(const char *path, const unsigned char *in, size_t inlen,
                             size_t *outlen, Err *e) {
  z_stream z;
  memset(&z, 0, sizeof z);
  if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK) {
    err_set(e, path, "cannot start zlib");
    return NULL;
  }
  /* The trailer's ISIZE (length mod 2^32) is a good first guess. */
  size_t cap = 0, n = 0;
  unsigned char *out = NULL;
  size_t guess = inlen >= 4 ? (size_t)in[inlen - 4] | (size_t)in[inlen - 3] << 8 |
                                  (size_t)in[inlen - 2] << 16 | (size_t)in[inlen - 1] << 24
                            : 0;
  if (guess > inlen * 1032) /* deflate never compresses better than 1032:1 */
    guess = inlen * 1032;
  if (guess > (size_t)1 << 30)
    guess = (size_t)1 << 30;
  size_t pos = 0;
  int rc = Z_OK;
  if (grow(&out, &cap, guess > inlen ? guess + 1 : inlen * 4 + 1) < 0)
    goto oom;
  for (;;) {
    if (grow(&out, &cap, n + 1) < 0)
      goto oom;
    size_t in_chunk = inlen - pos > UINT_MAX ? UINT_MAX : inlen - pos;
    size_t out_chunk = cap - n - 1 > UINT_MAX ? UINT_MAX : cap - n - 1;
    z.next_in = (Bytef *)(in + pos);
    z.avail_in = (uInt)in_chunk;
    z.next_out = out + n;
    z.avail_out = (uInt)out_chunk;
    rc = inflate(&z, Z_NO_FLUSH);
    pos += in_chunk - z.avail_in;
    n += out_chunk - z.avail_out;
    if (rc == Z_STREAM_END) {
      /* Another member may follow (as `cat a.gz b.gz` makes). */
      if (pos + 2 <= inlen && in[pos] == 0x1f && in[pos + 1] == 0x8b) {
        inflateReset(&z);
        continue;
      }
      break;
    }
    if (rc == Z_BUF_ERROR && pos == inlen && z.avail_out > 0) {
      inflateEnd(&z);
      free(out);
      err_set(e, path,
              "truncated gzip data: the stream ends after %zu compressed bytes "
              "(%zu bytes inflated); is the download complete?",
              inlen, n);
      return NULL;
    }
    if (rc == Z_MEM_ERROR)
      goto oom;
    if (rc != Z_OK && rc != Z_BUF_ERROR) {
      err_set(e, path, "corrupt gzip data at compressed byte %zu (%s)", pos,
              z.msg ? z.msg : "zlib error");
      inflateEnd(&z);
      free(out);
      return NULL;
    }
  }
  inflateEnd(&z);
  out[n] = 0;
  *outlen = n;
  return out;
oom:
  inflateEnd(&z);
  free(out);
  err_set(e, path, "out of memory inflating gzip data");
  return NULL;
}

void *io_read_file(const char *path, size_t *len, Err *e) {
  size_t n = 0;
  unsigned char *raw = io_read_raw(path, &n, e);
  if (!raw)
    return NULL;
  /* The gzip magic is 1f 8b; the third byte is the method, always 8. */
  if (n >= 3 && raw[0] == 0x1f && raw[1] == 0x8b && raw[2] == 8) {
    unsigned char *out = gunzip(path, raw, n, len, e);
    free(raw);
    return out;
  }
  *len = n;
  return raw;
}

/* Permissions for a new file: what open(0666) would give under the umask,
   or the existing target's mode. */
static mode_t target_mode(const char *path) {
  struct stat st;
  if (stat(path, &st) == 0 && S_ISREG(st.st_mode))
    return st.st_mode & 07777;
  mode_t mask = umask(0);
  umask(mask);
  return 0666 & ~mask;
}

int atomic_open(AtomicFile *af, const char *path, Err *e) {
  memset(af, 0, sizeof *af);
  const char *slash = strrchr(path, '/');
  size_t dirlen = slash ? (size_t)(slash - path) + 1 : 0;
  const char *base = path + dirlen;
  if (!*base)
    return err_set(e, path, "is a directory name, not a file name");
  size_t n = strlen(path) + 16;
  af->path = strdup(path);
  af->tmp = malloc(n);
  if (!af->path || !af->tmp) {
    free(af->path);
    free(af->tmp);
    memset(af, 0, sizeof *af);
    return err_set(e, path, "out of memory");
  }
  /* DIR/.BASE.XXXXXX: hidden, beside the target, so rename stays in one file system. */
  snprintf(af->tmp, n, "%.*s.%s.XXXXXX", (int)dirlen, path, base);
  int fd = mkstemp(af->tmp);
  if (fd < 0) {
    int saved = errno;
    char dir[4096];
    snprintf(dir, sizeof dir, "%.*s", dirlen ? (int)dirlen : 1, dirlen ? path : ".");
    free(af->path);
    free(af->tmp);
    memset(af, 0, sizeof *af);
    return err_set(e, path, "cannot create a temporary file in '%s': %s", dir, strerror(saved));
  }
  if (fchmod(fd, target_mode(path)) < 0 || !(af->f = fdopen(fd, "wb"))) {
    int saved = errno;
    close(fd);
    unlink(af->tmp);
    free(af->path);
    free(af->tmp);
    memset(af, 0, sizeof *af);
    return err_set(e, path, "cannot prepare a temporary file: %s", strerror(saved));
  }
  return 0;
}

void atomic_abort(AtomicFile *af) {
  if (af->f)
    fclose(af->f);
  if (af->tmp)
    unlink(af->tmp);
  free(af->path);
  free(af->tmp);
  memset(af, 0, sizeof *af);
}

int atomic_commit(AtomicFile *af, Err *e) {
  const char *what = NULL;
  if (fflush(af->f) != 0 || ferror(af->f))
    what = "cannot write";
  else if (fsync(fileno(af->f)) != 0)
    what = "cannot sync";
  int saved = errno;
  if (fclose(af->f) != 0 && !what) {
    what = "cannot close";
    saved = errno;
  }
  af->f = NULL;
  if (!what && rename(af->tmp, af->path) != 0) {
    what = "cannot rename the temporary file over it";
    saved = errno;
  }
  if (what) {
    err_set(e, af->path, "%s: %s (the file is unchanged)", what,
            saved ? strerror(saved) : "I/O error");
    atomic_abort(af);
    return -1;
  }
  /* Make the rename itself durable; best effort (some file systems refuse). */
  char *slash = strrchr(af->path, '/');
  if (slash) {
    *slash = 0;
    int dfd = open(*af->path ? af->path : "/", O_RDONLY | O_DIRECTORY);
    *slash = '/';
    if (dfd >= 0) {
      (void)fsync(dfd);
      close(dfd);
    }
  }
  free(af->path);
  free(af->tmp);
  memset(af, 0, sizeof *af);
  return 0;
}

int io_write_atomic(const char *path, const void *data, size_t len, Err *e) {
  AtomicFile af;
  if (atomic_open(&af, path, e) < 0)
    return -1;
  errno = 0;
  if (len && fwrite(data, 1, len, af.f) != len) {
    int saved = errno;
    atomic_abort(&af);
    return err_set(e, path, "cannot write: %s (the file is unchanged)",
                   saved ? strerror(saved) : "I/O error");
  }
  return atomic_commit(&af, e);
}
