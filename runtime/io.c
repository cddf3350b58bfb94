/*
 * io.c: whole-file reads and atomic writes, every libc call checked here.
 *
 * Reading goes through zlib's gzread, which inflates gzip data (concatenated
 * members too) and passes other data through, so every reader above takes
 * `.gz` files for free. A truncated or corrupt stream is an error, never a
 * short result. A reader caps what it reads by what its format can hold (an
 * IoLimit): a fixed maximum, and the size the file's own header declares, so
 * /dev/zero or a sparse file of terabytes is refused after a few bytes.
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

/* Bytes read past the size a header declares (see io_read_capped). */
enum { IO_SLACK = 65536 };

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

/* The message for a failed gzread: zlib says Z_BUF_ERROR when the data ends
   inside a gzip stream, Z_DATA_ERROR when it is not valid deflate data. */
static void *read_failed(gzFile gz, const char *path, size_t n, Err *e) {
  int code;
  const char *msg = gzerror(gz, &code);
  int saved = errno;
  if (code == Z_ERRNO)
    err_set(e, path, "read error: %s", strerror(saved));
  else if (code == Z_BUF_ERROR)
    err_set(e, path,
            "truncated gzip data: the stream ends after %zu bytes inflated; is the download "
            "complete?",
            n);
  else if (code == Z_MEM_ERROR)
    err_set(e, path, "out of memory inflating gzip data");
  else
    err_set(e, path, "corrupt gzip data after %zu bytes inflated (%s)", n,
            msg ? msg : "zlib error");
  return NULL;
}

/* Closes what io_read_capped opened: the gzip stream owns fd once made. */
static void close_input(gzFile gz, int fd) {
  if (gz)
    gzclose(gz);
  else
    close(fd);
}

void *io_read_capped(const char *path, const IoLimit *lim, size_t *len, Err *e) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    err_set(e, path, "cannot open: %s", strerror(errno));
    return NULL;
  }
  struct stat st;
  if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
    close(fd);
    err_set(e, path, "is a directory, not a file");
    return NULL;
  }
  /* gzread inflates gzip data (all members) and passes anything else
     through; data taken as it is (lim->plain) is read with read(2). */
  gzFile gz = NULL;
  if (!(lim && lim->plain) && !(gz = gzdopen(fd, "rb"))) {
    close(fd);
    err_set(e, path, "out of memory opening the file");
    return NULL;
  }
  size_t cap = 0, n = 0, limit = lim && lim->max ? lim->max : SIZE_MAX;
  bool declared = false;
  unsigned char *buf = NULL;
  /* A regular file's size is a good first guess, once no header can say less. */
  bool guess = S_ISREG(st.st_mode) && st.st_size > 0 && (size_t)st.st_size < limit;
  if (guess && !(lim && lim->declared) && grow(&buf, &cap, (size_t)st.st_size + 1) < 0)
    goto oom;
  for (;;) {
    if (lim && lim->declared && !declared) {
      size_t size;
      int r = lim->declared(buf, n, &size);
      if (r < 0)
        break; /* not this format: the caller's parser says why */
      /* A little more than declared is read, so that the format's own
         parser can say exactly what is wrong with a few stray bytes. */
      size = size < SIZE_MAX - IO_SLACK ? size + IO_SLACK : SIZE_MAX;
      if (r > 0 && size < limit) {
        limit = size;
        declared = true;
        if (guess && (size_t)st.st_size < limit && grow(&buf, &cap, (size_t)st.st_size + 1) < 0)
          goto oom;
      }
    }
    if (n > limit) {
      free(buf);
      close_input(gz, fd);
      if (declared)
        err_set(e, path,
                "holds more than the %zu bytes its header declares, where %s ends (damaged, or "
                "something appended?)",
                limit - IO_SLACK, lim->what);
      else
        err_set(e, path, "more than %zu bytes: too large for %s", limit, lim->what);
      return NULL;
    }
    /* Small steps until the header has told the size, then up to one byte past it. */
    size_t want = cap > n + 1 ? cap - n - 1 : 65536;
    if (lim && lim->declared && !declared && want > 65536)
      want = 65536;
    if (limit != SIZE_MAX && want > limit + 1 - n)
      want = limit + 1 - n;
    if (want > (size_t)1 << 30)
      want = (size_t)1 << 30;
    if (grow(&buf, &cap, n + want) < 0)
      goto oom;
    int code = Z_OK;
    long got = gz ? gzread(gz, buf + n, (unsigned)want) : (long)read(fd, buf + n, want);
    if (!gz && got < 0 && errno == EINTR)
      continue;
    /* (gzread reports a stream cut short only through gzerror) */
    if (got < 0 || (gz && got == 0 && (gzerror(gz, &code), code != Z_OK))) {
      if (gz)
        read_failed(gz, path, n, e);
      else
        err_set(e, path, "read error: %s", strerror(errno));
      free(buf);
      close_input(gz, fd);
      return NULL;
    }
    if (got == 0)
      break;
    n += (size_t)got;
  }
  close_input(gz, fd);
  if (grow(&buf, &cap, n) < 0) {
    free(buf);
    err_set(e, path, "out of memory after %zu bytes", n);
    return NULL;
  }
  buf[n] = 0;
  *len = n;
  return buf;
oom:
  free(buf);
  close_input(gz, fd);
  err_set(e, path, "out of memory after %zu bytes", n);
  return NULL;
}

void *io_read_file(const char *path, size_t *len, Err *e) {
  return io_read_capped(path, NULL, len, e);
}

/* Bytes of path up to and including its last '/' (0 without one): the
   directory part, the file's name after it. */
static size_t dir_length(const char *path) {
  const char *slash = strrchr(path, '/');
  return slash ? (size_t)(slash - path) + 1 : 0;
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
  size_t dirlen = dir_length(path);
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
  size_t dirlen = dir_length(path);
  char *dir = dirlen ? strndup(path, dirlen) : strdup(".");
  char *real = dir ? realpath(dir, NULL) : NULL;
  const char *base = path + dirlen;
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
  size_t dirlen = dir_length(path), blen = strlen(path + dirlen);
  const char *base = path + dirlen;
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

uint64_t io_hash(uint64_t h, const void *data, size_t n) {
  const unsigned char *p = data;
  for (size_t i = 0; i < n; i++) {
    h ^= p[i];
    h *= 0x100000001b3ULL;
  }
  return h;
}
