/*
 * dist.c: ranks and the ordered sum (see dist.h).
 *
 * The sum. One process adds its threads' gradients as g0 += g1, g0 += g2,
 * ... and float addition is not associative, so an allreduce (which adds in
 * an order of its own, a tree or a ring) cannot give the same bits. Two
 * ways keep the order: every rank gathers every thread's array and adds
 * them all (R*T arrays in per rank and step), or the running sum walks the
 * ranks in order. dist_sum does the second: rank 0 adds its threads into
 * the sum and sends it to rank 1, which adds its threads and sends it on,
 * to the last rank, which broadcasts the total. Each rank receives and
 * sends about twice the array, whatever R (as a ring allreduce would);
 * what grows with R is the chain's latency, which the array's pieces hide:
 * rank r adds piece k while rank r+1 adds piece k-1.
 */
#include "dist.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { PIECE = 16384 }; /* floats per message of the chain: 64 KB */

/* A rank's process as a rank on the same machine finds it: its pid, its
   start time (so that a reused pid is not taken for it) and the machine
   (the boot's id and the pid namespace, which make pids comparable; ""
   where unknown: never compared). */
struct DistPeer {
  int pid;
  unsigned long long start;
  char machine[96];
};

bool dist_launched(void) {
  const char *s = getenv("OMPI_COMM_WORLD_SIZE");
  return s && atoi(s) > 1;
}

int dist_local_ranks(void) {
  const char *s = getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
  int n = s ? atoi(s) : 1;
  return n < 1 ? 1 : n;
}

/* $CNNGEN_MPI_PLUGIN, or cnngen-mpi.so in the binary's directory. */
static void plugin_path(char *buf, size_t cap) {
  const char *env = getenv("CNNGEN_MPI_PLUGIN");
  if (env) {
    snprintf(buf, cap, "%s", env);
    return;
  }
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  exe[n > 0 ? n : 0] = 0;
  char *slash = strrchr(exe, '/');
  if (slash)
    slash[1] = 0;
  else
    exe[0] = 0;
  snprintf(buf, cap, "%scnngen-mpi.so", exe);
}

/* Points standard output and error at /dev/null, keeping the error stream
   in d->err_fd for a fatal message. */
static void quiet(Dist *d) {
  int null = open("/dev/null", O_WRONLY);
  d->err_fd = dup(2);
  if (null >= 0) {
    fflush(stdout);
    fflush(stderr);
    dup2(null, 1);
    dup2(null, 2);
    close(null);
  }
  if (d->err_fd < 0)
    d->err_fd = 2;
}

/* A small file of /proc into buf, NUL-terminated; its length, -1 with
   errno when it cannot be read. Not io.c's readers: this runs in the wait
   loop, where a missing file is an answer, not an error, and nothing is
   allocated. */
static ssize_t read_proc(const char *path, char *buf, size_t cap) {
  buf[0] = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -1;
  ssize_t n = read(fd, buf, cap - 1);
  int err = errno;
  close(fd);
  buf[n > 0 ? n : 0] = 0;
  errno = err;
  return n;
}

/* /proc/PID/stat's state (field 3) and start time (field 22). */
int dist_process_start(int pid, unsigned long long *start) {
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  if (read_proc(path, buf, sizeof buf) < 0) /* ESRCH: it went while the file was open */
    return errno == ENOENT || errno == ESRCH ? DIST_GONE : DIST_UNKNOWN;
  char *p = strrchr(buf, ')'); /* after the command's name, which may hold anything */
  if (!p || p[1] != ' ' || !p[2])
    return DIST_UNKNOWN;
  const char state = p[2];
  for (int field = 2; field < 22 && p; field++)
    if ((p = strchr(p + 1, ' ')))
      p++;
  if (!p)
    return DIST_UNKNOWN;
  *start = strtoull(p, NULL, 10);
  return state == 'Z' || state == 'X' ? DIST_GONE : 0;
}

static void this_process(DistPeer *me) {
  memset(me, 0, sizeof *me);
  me->pid = (int)getpid();
  if (dist_process_start(me->pid, &me->start) != 0)
    return;
  char boot[40], ns[48];
  ssize_t nb = read_proc("/proc/sys/kernel/random/boot_id", boot, sizeof boot);
  ssize_t nn = readlink("/proc/self/ns/pid", ns, sizeof ns - 1);
  if (nb < 32 || nn <= 0)
    return;
  boot[strcspn(boot, "\n")] = 0;
  ns[nn] = 0;
  snprintf(me->machine, sizeof me->machine, "%s %s", boot, ns);
}

/* The wait check: a rank on this machine whose process is gone (or a
   zombie, or another process under its pid) has died. mpirun ends the job,
   naming it, but the ranks it stops would say nothing: this rank says which
   one and stops. Where /proc cannot tell this time (no descriptor left,
   an interrupted read), the next round asks again. */
static void check_peers(void *arg) {
  Dist *d = arg;
  const DistPeer *me = &d->peers[d->rank];
  for (int r = 0; r < d->size && me->machine[0]; r++) {
    const DistPeer *p = &d->peers[r];
    unsigned long long start;
    if (r == d->rank || strcmp(p->machine, me->machine) != 0)
      continue;
    int there = dist_process_start(p->pid, &start);
    if (there == DIST_UNKNOWN || (there == 0 && start == p->start))
      continue;
    char msg[300];
    int n = snprintf(msg, sizeof msg,
                     "cnngen: error: rank %d of %d: rank %d (pid %d on this machine) has died; "
                     "stopping (mpirun stops every rank and says how it ended)\n",
                     d->rank, d->size, r, p->pid);
    ssize_t unused = write(d->err_fd, msg, n > 0 && (size_t)n < sizeof msg ? (size_t)n : 0);
    (void)unused;
    _exit(1); /* not MPI_Abort: mpirun is ending the job already */
  }
}

int dist_open(Dist *d, Err *e) {
  memset(d, 0, sizeof *d);
  d->size = 1;
  d->err_fd = 2;
  if (!dist_launched())
    return 0;
  /* Until MPI runs, the ranks know who they are from mpirun's variables:
     rank 0 alone says what fails. */
  const char *rank = getenv("OMPI_COMM_WORLD_RANK");
  if (rank && atoi(rank) != 0)
    quiet(d);
  char path[PATH_MAX + 32];
  plugin_path(path, sizeof path);
  /* RTLD_GLOBAL: Open MPI's own components resolve libmpi's symbols. */
  d->lib = dlopen(path, RTLD_NOW | RTLD_GLOBAL);
  if (!d->lib)
    return err_set(e, path,
                   "mpirun started %s ranks, but this cnngen has no MPI support (%s) (install "
                   "libopenmpi-dev and rebuild, or run without mpirun)",
                   getenv("OMPI_COMM_WORLD_SIZE"), dlerror());
  const DistOps *(*get)(void);
  void *sym = dlsym(d->lib, DIST_OPS_SYMBOL);
  memcpy(&get, &sym, sizeof sym);
  const DistOps *ops = sym ? get() : NULL;
  if (!ops || ops->version != DIST_OPS_VERSION) {
    dlclose(d->lib);
    d->lib = NULL;
    return err_set(e, path, "not a cnngen MPI plugin of this version (rebuild cnngen)");
  }
  int rc = ops->init(&d->rank, &d->size);
  if (rc != 0) {
    char why[256] = "";
    ops->error_string(rc, why, sizeof why);
    return err_set(e, path, "MPI_Init failed: %s", why);
  }
  d->ops = ops;
  if (d->rank != 0 && d->err_fd == 2) /* only rank 0 speaks */
    quiet(d);
  if (!(d->peers = calloc((size_t)d->size, sizeof *d->peers))) {
    e->internal = 1;
    return err_set(e, path, "out of memory for %d ranks", d->size);
  }
  DistPeer me;
  this_process(&me);
  dist_allgather(d, &me, sizeof me, d->peers);
  ops->set_wait_check(check_peers, d);
  return 0;
}

void dist_close(Dist *d) {
  if (d->ops) {
    d->ops->set_wait_check(NULL, NULL);
    d->ops->finalize();
  }
  free(d->peers);
  free(d->scratch);
  memset(d, 0, sizeof *d);
}

/* A communication failed: no rank can go on, and waiting would hang. */
static void fatal(Dist *d, int rc, const char *what, int peer) {
  char why[256] = "", msg[512];
  d->ops->error_string(rc, why, sizeof why);
  int n = snprintf(msg, sizeof msg,
                   "cnngen: error: rank %d of %d: %s rank %d failed (%s); stopping every rank "
                   "(did a rank die? see mpirun's message)\n",
                   d->rank, d->size, what, peer, why);
  ssize_t unused = write(d->err_fd, msg, n > 0 && (size_t)n < sizeof msg ? (size_t)n : 0);
  (void)unused;
  d->ops->abort(1);
  _exit(1); /* MPI_Abort does not return; in case it does */
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void add_piece(float *restrict acc, const float *restrict p, long n) {
  for (long i = 0; i < n; i++)
    acc[i] += p[i];
}

void dist_sum(Dist *d, float *const *parts, int nparts, long n, float *out) {
  if (n == 0)
    return;
  if (!d || d->size == 1) {
    if (out != parts[0])
      memcpy(out, parts[0], (size_t)n * sizeof *out);
    for (int i = 1; i < nparts; i++)
      if (parts[i])
        add_piece(out, parts[i], n);
    return;
  }
  int first = d->rank == 0 ? 1 : 0; /* rank 0 starts from its parts[0] */
  float *acc = out;
  if (d->rank > 0) {
    if (d->scratch_n < n) {
      free(d->scratch);
      if (!(d->scratch = malloc((size_t)n * sizeof *d->scratch))) {
        char msg[] = "cnngen: error: out of memory for the sum of a step's gradients\n";
        ssize_t unused = write(d->err_fd, msg, sizeof msg - 1);
        (void)unused;
        d->ops->abort(2);
        _exit(2);
      }
      d->scratch_n = n;
    }
    acc = d->scratch;
  } else if (out != parts[0]) {
    memcpy(out, parts[0], (size_t)n * sizeof *out);
  }
  int last = d->size - 1, rc;
  double t0 = now();
  for (long at = 0; at < n; at += PIECE) {
    long len = n - at < PIECE ? n - at : PIECE;
    if (d->rank > 0 && (rc = d->ops->recv(acc + at, (size_t)len * sizeof *acc, d->rank - 1)))
      fatal(d, rc, "receiving the running sum from", d->rank - 1);
    for (int i = first; i < nparts; i++)
      if (parts[i])
        add_piece(acc + at, parts[i] + at, len);
    if (d->rank < last && (rc = d->ops->send(acc + at, (size_t)len * sizeof *acc, d->rank + 1)))
      fatal(d, rc, "sending the running sum to", d->rank + 1);
  }
  if (d->rank == last && acc != out)
    memcpy(out, acc, (size_t)n * sizeof *out);
  if ((rc = d->ops->bcast(out, (size_t)n * sizeof *out, last)))
    fatal(d, rc, "receiving the sum from", last);
  d->comm_seconds += now() - t0;
}

void dist_allgather(Dist *d, const void *mine, size_t bytes, void *all) {
  if (d->size == 1) {
    memmove(all, mine, bytes);
    return;
  }
  double t0 = now();
  int rc = d->ops->allgather(mine, bytes, all);
  if (rc)
    fatal(d, rc, "gathering from every rank; rank", d->rank);
  d->comm_seconds += now() - t0;
}

void dist_bcast(Dist *d, void *buf, size_t bytes) {
  if (d->size == 1)
    return;
  int rc = d->ops->bcast(buf, bytes, 0);
  if (rc)
    fatal(d, rc, "receiving from", 0);
}

typedef struct Verdict {
  int rc, internal;
  char msg[sizeof(((Err *)0)->msg)];
} Verdict;

int dist_agree(Dist *d, int rc, Err *e) {
  if (d->size == 1)
    return rc < 0 ? -1 : 0;
  Verdict mine = {.rc = rc < 0 ? -1 : 0, .internal = rc < 0 && e->internal};
  if (rc < 0)
    memcpy(mine.msg, e->msg, sizeof mine.msg);
  Verdict *all = malloc((size_t)d->size * sizeof *all);
  if (!all) {
    char msg[] = "cnngen: error: out of memory for every rank's verdict\n";
    ssize_t unused = write(d->err_fd, msg, sizeof msg - 1);
    (void)unused;
    d->ops->abort(2);
    _exit(2);
  }
  dist_allgather(d, &mine, sizeof mine, all);
  int failed = -1;
  for (int r = 0; r < d->size && failed < 0; r++)
    if (all[r].rc < 0)
      failed = r;
  if (failed >= 0) {
    Verdict *v = &all[failed];
    v->msg[sizeof v->msg - 1] = 0;
    if (!v->msg[0])
      snprintf(v->msg, sizeof v->msg,
               "rank %d stopped (run the command without mpirun on its machine to see why)",
               failed);
    memcpy(e->msg, v->msg, sizeof e->msg);
    size_t len = strlen(e->msg);
    if (failed > 0 && len + 16 < sizeof e->msg)
      snprintf(e->msg + len, sizeof e->msg - len, " (rank %d)", failed);
    e->internal = v->internal;
  }
  free(all);
  return failed >= 0 ? -1 : 0;
}
