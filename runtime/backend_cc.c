/*
 * backend_cc.c: compiles generated C with the system compiler into a shared
 * object and dlopens it.
 *
 * The command is $CC, or "cc -O3 -march=native" when $CC is unset or empty.
 * Objects are cached in $XDG_CACHE_HOME/cnngen (an absolute
 * $XDG_CACHE_HOME), else $HOME/.cache/cnngen, created when missing, as
 *
 *   CACHE/HHHHHHHHHHHHHHHH.so   (16 lowercase hex digits)
 *
 * where H is the 64-bit FNV-1a hash of "cnngen-cc-1", NUL, the command, NUL
 * and the source. A hit is dlopened directly; a miss writes CACHE/tmp-XXXXXX.c,
 * runs `/bin/sh -c 'CMD -shared -fPIC -o CACHE/tmp-XXXXXX.so CACHE/tmp-XXXXXX.c'`
 * with stdout and stderr captured, and renames the object into place (atomic,
 * so concurrent runs never see half an object). A compiler failure is an
 * internal error quoting the compiler's first lines; the source is kept for
 * inspection. Unless the compiler fails on a one-line program too: then it
 * cannot be used at all (CC=false, a path that does not exist), which is a
 * user error naming the compiler and how it failed. A cached object that fails to load is removed and rebuilt.
 */
#include <dlfcn.h>
#include <stdbool.h>
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backend_impl.h"
#include "io.h"

extern char **environ;

#define CC_DEFAULT "cc -O3 -march=native"
#define CC_SALT "cnngen-cc-1"

/* mkdir -p */
static int make_dirs(char *path) {
  for (char *p = path + 1;; p++) {
    if (*p != '/' && *p)
      continue;
    char c = *p;
    *p = 0;
    int rc = mkdir(path, 0777);
    int saved = errno;
    struct stat st;
    int ok = rc == 0 || (saved == EEXIST && stat(path, &st) == 0 && S_ISDIR(st.st_mode));
    *p = c;
    if (!ok) {
      errno = saved == EEXIST ? ENOTDIR : saved;
      return -1;
    }
    if (!c)
      return 0;
  }
}

static int cache_dir(char *out, size_t n, Err *e) {
  const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
  if (xdg && xdg[0] == '/')
    snprintf(out, n, "%s/cnngen", xdg);
  else if (home && *home)
    snprintf(out, n, "%s/.cache/cnngen", home);
  else
    return err_set(e, NULL, "no cache directory for --backend cc: set HOME or XDG_CACHE_HOME");
  if (make_dirs(out) < 0)
    return err_set(e, out, "cannot create the compiler cache directory: %s", strerror(errno));
  return 0;
}

/* Appends s to the shell line in single quotes. */
static void shell_quote(char *line, size_t n, const char *s) {
  size_t k = strlen(line);
  if (k + 1 < n)
    line[k++] = '\'';
  for (; *s && k + 5 < n; s++) {
    if (*s == '\'') {
      memcpy(line + k, "'\\''", 4);
      k += 4;
    } else {
      line[k++] = *s;
    }
  }
  if (k + 1 < n)
    line[k++] = '\'';
  line[k] = 0;
}

/* Runs the shell line, capturing stdout and stderr (the first n-1 bytes).
   Returns the wait status, or -1 when it could not start (errno set). */
static int run_captured(const char *line, char *out, size_t n) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) < 0)
    return -1;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 2);
  char *argv[] = {"/bin/sh", "-c", (char *)line, NULL};
  pid_t pid;
  int rc = posix_spawn(&pid, "/bin/sh", &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  close(fds[1]);
  if (rc != 0) {
    close(fds[0]);
    errno = rc;
    return -1;
  }
  size_t k = 0;
  char drain[4096];
  for (;;) {
    char *dst = k + 1 < n ? out + k : drain;
    size_t room = k + 1 < n ? n - 1 - k : sizeof drain;
    ssize_t got = read(fds[0], dst, room);
    if (got < 0 && errno == EINTR)
      continue;
    if (got <= 0)
      break;
    if (dst != drain)
      k += (size_t)got;
  }
  out[k] = 0;
  close(fds[0]);
  int status;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR)
      return -1;
  return status;
}

static int write_all(int fd, const char *p, size_t n) {
  while (n) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

static void *cc_symbol(void *handle, const char *name) {
  return dlsym(handle, name);
}

static void cc_release(void *handle) {
  dlclose(handle);
}

/* Writes `source` to a new DIR/tmp-XXXXXX.c (name in src) and runs
   `CMD -shared -fPIC -o DIR/tmp-XXXXXX.so DIR/tmp-XXXXXX.c`, the output in
   log. Returns the wait status, or -1 with e filled. */
static int cc_run(const char *cmd, const char *dir, const char *source, size_t len, char *src,
                  size_t src_size, char *tmp_so, size_t so_size, char *log, size_t log_size,
                  Err *e) {
  snprintf(src, src_size, "%s/tmp-XXXXXX.c", dir);
  int fd = mkstemps(src, 2);
  if (fd < 0)
    return err_set(e, dir, "cannot create a temporary file in the compiler cache: %s",
                   strerror(errno));
  if (write_all(fd, source, len) < 0 || close(fd) < 0) {
    int saved = errno;
    unlink(src);
    return err_set(e, src, "cannot write: %s", strerror(saved));
  }
  snprintf(tmp_so, so_size, "%.*s.so", (int)strlen(src) - 2, src);
  char line[12000];
  snprintf(line, sizeof line, "%s -shared -fPIC -o ", cmd);
  shell_quote(line, sizeof line, tmp_so);
  strncat(line, " ", sizeof line - strlen(line) - 1);
  shell_quote(line, sizeof line, src);
  int status = run_captured(line, log, log_size);
  if (status < 0) {
    int saved = errno;
    unlink(src);
    e->internal = 1;
    return err_set(e, NULL, "cannot run /bin/sh for '%s': %s", cmd, strerror(saved));
  }
  return status;
}

static int failed(int status) {
  return !WIFEXITED(status) || WEXITSTATUS(status) != 0;
}

/* "exit status 1", "killed by signal 9" */
static void how_it_failed(char *how, size_t n, int status) {
  if (WIFEXITED(status))
    snprintf(how, n, "exit status %d", WEXITSTATUS(status));
  else
    snprintf(how, n, "killed by signal %d", WTERMSIG(status));
}

/* After the compiler failed on the generated C: does it build a one-line
   program? If not, the compiler itself cannot be used, which is the user's
   environment (exit status 1), not a bug in the generated C; fills e then. */
static int cc_unusable(const char *cmd, const char *dir, Err *e) {
  static const char probe[] = "int cnngen_probe(void) { return 1; }\n";
  char src[4200], tmp_so[4200], log[8192];
  int status =
      cc_run(cmd, dir, probe, sizeof probe - 1, src, sizeof src, tmp_so, sizeof tmp_so, log,
             sizeof log, e);
  if (status < 0)
    return 1;
  unlink(src);
  unlink(tmp_so);
  if (!failed(status))
    return 0;
  char first[700], how[64];
  backend_first_lines(first, sizeof first, log, 4);
  how_it_failed(how, sizeof how, status);
  /* The shell says 127 for a command it cannot find, 126 for one it cannot run. */
  const char *what = !WIFEXITED(status)           ? how
                     : WEXITSTATUS(status) == 127 ? "not found"
                     : WEXITSTATUS(status) == 126 ? "found but cannot be run"
                                                  : how;
  e->internal = 0;
  err_set(e, NULL,
          "the C compiler '%s' (from $CC or the default) cannot compile even a one-line "
          "program: %s%s%s (set CC to a working compiler, or use --backend tcc)",
          cmd, what, *first ? ": " : "", first);
  return 1;
}

/* Compiles source into `so`; 0 on success. */
static int cc_build(const char *cmd, const char *dir, const char *source, size_t len,
                    const char *so, Err *e) {
  char src[4200], tmp_so[4200], log[8192];
  int status =
      cc_run(cmd, dir, source, len, src, sizeof src, tmp_so, sizeof tmp_so, log, sizeof log, e);
  if (status < 0)
    return -1;
  if (failed(status)) {
    unlink(tmp_so);
    if (cc_unusable(cmd, dir, e)) {
      unlink(src);
      return -1;
    }
    char first[700], how[64];
    backend_first_lines(first, sizeof first, log, 8);
    how_it_failed(how, sizeof how, status);
    e->internal = 1;
    return err_set(e, NULL, "'%s' failed on the generated C (%s; source kept in %s):\n%s", cmd, how,
                   src, *first ? first : "(no output)");
  }
  unlink(src);
  if (rename(tmp_so, so) < 0) {
    int saved = errno;
    unlink(tmp_so);
    e->internal = 1;
    return err_set(e, so, "cannot move the compiled object into the cache: %s", strerror(saved));
  }
  return 0;
}

/* The compile command, the cache directory and the object's path in it. */
static int object_path(const char *source, size_t len, const char **cmd, char *dir, size_t dn,
                       char *so, size_t sn, Err *e) {
  *cmd = getenv("CC");
  if (!*cmd || !**cmd)
    *cmd = CC_DEFAULT;
  if (cache_dir(dir, dn, e) < 0)
    return -1;
  uint64_t h = io_hash(IO_HASH_START, CC_SALT, sizeof CC_SALT);
  h = io_hash(h, *cmd, strlen(*cmd) + 1);
  h = io_hash(h, source, len);
  snprintf(so, sn, "%s/%016llx.so", dir, (unsigned long long)h);
  return 0;
}

bool backend_cc_cached(const char *source, size_t len) {
  const char *cmd;
  char dir[4096], so[4200];
  Err e = {0};
  return object_path(source, len, &cmd, dir, sizeof dir, so, sizeof so, &e) == 0 &&
         access(so, R_OK) == 0;
}

Program *backend_cc_compile(const char *source, size_t len, Err *e) {
  const char *cmd;
  char dir[4096], so[4200];
  if (object_path(source, len, &cmd, dir, sizeof dir, so, sizeof so, e) < 0)
    return NULL;
  void *handle = NULL;
  if (access(so, R_OK) == 0) {
    handle = dlopen(so, RTLD_NOW | RTLD_LOCAL);
    if (!handle)
      unlink(so); /* damaged: rebuild */
  }
  bool cached = handle != NULL;
  if (!handle) {
    if (cc_build(cmd, dir, source, len, so, e) < 0)
      return NULL;
    handle = dlopen(so, RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
      const char *why = dlerror();
      e->internal = 1;
      err_set(e, so, "cannot load the compiled object: %s", why ? why : "dlopen failed");
      return NULL;
    }
  }
  Program *p = program_new("cc", handle, cc_symbol, cc_release, e);
  if (p)
    p->cached = cached;
  return p;
}
