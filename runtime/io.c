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

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
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

static unsigned char *read_raw(const char *path, size_t *len, Err *e) {
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
  unsigned char *raw = read_raw(path, &n, e);
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
  size_t n = strlen(path) + 40;
  af->path = strdup(path);
  af->tmp = malloc(n);
  if (!af->path || !af->tmp) {
    free(af->path);
    free(af->tmp);
    memset(af, 0, sizeof *af);
    return err_set(e, path, "out of memory");
  }
  /* DIR/.BASE.PID.XXXXXX: hidden, beside the target, so rename stays in one
     file system; the pid tells io_check_outputs whether its writer lives. */
  snprintf(af->tmp, n, "%.*s.%s.%ld.XXXXXX", (int)dirlen, path, base, (long)getpid());
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

/* ---- outputs ---- */

/* Where a path leads, to compare two: the file's device and inode when it
   exists, else the absolute path of its directory (resolved) plus its name. */
typedef struct Where {
  bool exists;
  struct stat st;
  char *resolved; /* malloc'd; when !exists (NULL if the directory is missing) */
} Where;

static void where_of(const char *path, Where *w) {
  memset(w, 0, sizeof *w);
  if (stat(path, &w->st) == 0) {
    w->exists = true;
    return;
  }
  const char *slash = strrchr(path, '/');
  char *dir = slash ? strndup(path, (size_t)(slash - path) + 1) : strdup(".");
  char *real = dir ? realpath(dir, NULL) : NULL;
  const char *base = slash ? slash + 1 : path;
  if (real && (w->resolved = malloc(strlen(real) + strlen(base) + 2)))
    sprintf(w->resolved, "%s/%s", real, base);
  free(dir);
  free(real);
}

static bool same_file(const Where *a, const Where *b) {
  if (a->exists != b->exists)
    return false;
  if (a->exists)
    return a->st.st_dev == b->st.st_dev && a->st.st_ino == b->st.st_ino;
  return a->resolved && b->resolved && strcmp(a->resolved, b->resolved) == 0;
}

static const char *file_kind(mode_t m) {
  return S_ISDIR(m)    ? "a directory"
         : S_ISCHR(m)  ? "a character device"
         : S_ISBLK(m)  ? "a block device"
         : S_ISFIFO(m) ? "a FIFO"
         : S_ISSOCK(m) ? "a socket"
                       : "not a regular file";
}

/* Removes DIR/.BASE.PID.XXXXXX (atomic_open's temporaries of `path`) whose
   process no longer exists. Best effort: a directory that cannot be read
   has nothing to remove as far as this run can tell. */
static void remove_stale_temporaries(const char *path) {
  const char *slash = strrchr(path, '/');
  const char *base = slash ? slash + 1 : path;
  size_t dirlen = slash ? (size_t)(slash - path) + 1 : 0, blen = strlen(base);
  char *dir = dirlen ? strndup(path, dirlen) : strdup(".");
  DIR *d = dir ? opendir(dir) : NULL;
  if (!d) {
    free(dir);
    return;
  }
  struct dirent *ent;
  while ((ent = readdir(d))) {
    const char *name = ent->d_name;
    if (name[0] != '.' || strncmp(name + 1, base, blen) != 0 || name[1 + blen] != '.')
      continue;
    const char *p = name + 2 + blen, *digits = p;
    while (*p >= '0' && *p <= '9')
      p++;
    if (p == digits || p - digits > 10 || *p != '.' || strlen(p + 1) != 6)
      continue;
    bool alnum = true;
    for (const char *q = p + 1; *q; q++)
      alnum &= (*q >= '0' && *q <= '9') || (*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z');
    long pid = strtol(digits, NULL, 10);
    if (!alnum || pid <= 0 || pid > INT_MAX || (kill((pid_t)pid, 0) == 0 || errno != ESRCH))
      continue; /* a live writer (or one we may not signal: EPERM) keeps its file */
    char *tmp = malloc(dirlen + strlen(name) + 1);
    if (tmp) {
      sprintf(tmp, "%.*s%s", (int)dirlen, path, name);
      unlink(tmp);
      free(tmp);
    }
  }
  closedir(d);
  free(dir);
}

int io_check_outputs(const IoPath *out, int nout, const IoPath *in, int nin, Err *e) {
  Where *w = calloc((size_t)(nout + nin) + 1, sizeof *w);
  if (!w) {
    e->internal = 1;
    return err_set(e, NULL, "out of memory");
  }
  int rc = 0;
  for (int i = 0; i < nout + nin; i++)
    where_of(i < nout ? out[i].path : in[i - nout].path, &w[i]);
  for (int i = 0; i < nout && !rc; i++) {
    if (w[i].exists && !S_ISREG(w[i].st.st_mode)) {
      rc = err_set(e, out[i].path,
                   "%s names %s, not a regular file (cnngen replaces what it writes; name a "
                   "new or regular file)",
                   out[i].what, file_kind(w[i].st.st_mode));
      break;
    }
    for (int j = 0; j < nin && !rc; j++)
      if (same_file(&w[i], &w[nout + j]))
        rc = err_set(e, out[i].path,
                     "%s names %s (%s), an input of this run, which writing would destroy "
                     "(choose another name)",
                     out[i].what, in[j].what, in[j].path);
    for (int j = 0; j < i && !rc; j++)
      if (same_file(&w[i], &w[j]))
        rc = err_set(e, out[i].path, "%s and %s name the same file (give them different names)",
                     out[j].what, out[i].what);
  }
  for (int i = 0; i < nout + nin; i++)
    free(w[i].resolved);
  free(w);
  if (rc == 0)
    for (int i = 0; i < nout; i++)
      remove_stale_temporaries(out[i].path);
  return rc;
}
