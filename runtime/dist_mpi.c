/*
 * dist_mpi.c: the MPI plugin (see dist_ops.h), a thin layer over Open MPI
 * built by mpicc as cnngen-mpi.so. Messages larger than MPI's int counts
 * go in pieces of at most 1 GiB.
 *
 * Waiting: every call starts a nonblocking operation and waits for it in
 * finish(), which polls for SPIN seconds, then sleeps between polls. A rank
 * that waits for a slower one (still computing its share, or descheduled
 * on a busy machine) so leaves the core to it, where MPI's own blocking
 * calls would keep polling on it; a transfer under way finishes within the
 * spin. Every CHECK seconds of waiting, the wait check that dist.c set
 * looks for a rank that died (MPI itself would wait on).
 */
#include <mpi.h>
#include <string.h>
#include <time.h>

#include "dist_ops.h"

enum { PIECE = 1 << 30 };
#define SPIN 200e-6 /* seconds of polling before sleeping between polls */
#define NAP 20000   /* nanoseconds of each sleep */
#define CHECK 10e-3 /* seconds between wait checks */

static void (*wait_check)(void *arg);
static void *wait_arg;

static void set_wait_check(void (*check)(void *arg), void *arg) {
  wait_check = check;
  wait_arg = arg;
}

static int finish(MPI_Request *req) {
  double start = MPI_Wtime(), checked = start;
  for (;;) {
    int done = 0, rc = MPI_Test(req, &done, MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS || done)
      return rc;
    double t = MPI_Wtime();
    if (t - start > SPIN) {
      struct timespec nap = {0, NAP};
      nanosleep(&nap, NULL);
    }
    if (wait_check && t - checked > CHECK) {
      checked = t;
      wait_check(wait_arg);
    }
  }
}

/* init's own failure, which error_string says (MPI's codes are >= 0). */
enum { NO_THREAD_LEVEL = -1 };

static int init(int *rank, int *size) {
  int provided, rc;
  /* FUNNELED: cnngen runs threads, but only the one that called
     MPI_Init_thread calls MPI (a step's chunk 0 runs on it, and trainer.c's
     reduce sums the batch statistics over the ranks from chunk 0). */
  if ((rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided)) != MPI_SUCCESS)
    return rc;
  if (provided < MPI_THREAD_FUNNELED) { /* the same library on every rank: all stop here */
    MPI_Finalize();
    return NO_THREAD_LEVEL;
  }
  if ((rc = MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN)) != MPI_SUCCESS ||
      (rc = MPI_Comm_rank(MPI_COMM_WORLD, rank)) != MPI_SUCCESS)
    return rc;
  return MPI_Comm_size(MPI_COMM_WORLD, size);
}

static int piece(size_t left) {
  return left > PIECE ? PIECE : (int)left;
}

static int send(const void *buf, size_t bytes, int to) {
  const char *p = buf;
  for (size_t done = 0; done < bytes; done += PIECE) {
    MPI_Request req;
    int rc = MPI_Isend(p + done, piece(bytes - done), MPI_BYTE, to, 0, MPI_COMM_WORLD, &req);
    if (rc != MPI_SUCCESS || (rc = finish(&req)) != MPI_SUCCESS)
      return rc;
  }
  return 0;
}

static int recv(void *buf, size_t bytes, int from) {
  char *p = buf;
  for (size_t done = 0; done < bytes; done += PIECE) {
    MPI_Request req;
    int rc = MPI_Irecv(p + done, piece(bytes - done), MPI_BYTE, from, 0, MPI_COMM_WORLD, &req);
    if (rc != MPI_SUCCESS || (rc = finish(&req)) != MPI_SUCCESS)
      return rc;
  }
  return 0;
}

static int bcast(void *buf, size_t bytes, int root) {
  char *p = buf;
  for (size_t done = 0; done < bytes; done += PIECE) {
    MPI_Request req;
    int rc = MPI_Ibcast(p + done, piece(bytes - done), MPI_BYTE, root, MPI_COMM_WORLD, &req);
    if (rc != MPI_SUCCESS || (rc = finish(&req)) != MPI_SUCCESS)
      return rc;
  }
  return 0;
}

/* Small records (a step's losses, a start-up check): one call. */
static int allgather(const void *mine, size_t bytes, void *all) {
  if (bytes > PIECE)
    return MPI_ERR_COUNT;
  MPI_Request req;
  int rc =
      MPI_Iallgather(mine, (int)bytes, MPI_BYTE, all, (int)bytes, MPI_BYTE, MPI_COMM_WORLD, &req);
  return rc != MPI_SUCCESS ? rc : finish(&req);
}

static void error_string(int code, char *buf, size_t cap) {
  char s[MPI_MAX_ERROR_STRING] = "this MPI does not allow threads (MPI_THREAD_FUNNELED: only the "
                                 "thread that called MPI_Init calls MPI)";
  int len = code == NO_THREAD_LEVEL ? (int)strlen(s) : 0;
  if (code != NO_THREAD_LEVEL && MPI_Error_string(code, s, &len) != MPI_SUCCESS)
    len = 0;
  size_t n = (size_t)len < cap ? (size_t)len : cap - 1;
  for (size_t i = 0; i < n; i++)
    buf[i] = s[i];
  buf[n] = 0;
}

static void abort_all(int status) {
  MPI_Abort(MPI_COMM_WORLD, status);
}

static void finalize(void) {
  MPI_Finalize();
}

static const DistOps ops = {
    .version = DIST_OPS_VERSION,
    .init = init,
    .send = send,
    .recv = recv,
    .bcast = bcast,
    .allgather = allgather,
    .error_string = error_string,
    .abort = abort_all,
    .finalize = finalize,
    .set_wait_check = set_wait_check,
};

const DistOps *cnngen_dist_ops(void);
const DistOps *cnngen_dist_ops(void) {
  return &ops;
}
