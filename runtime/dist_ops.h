/*
 * dist_ops.h: what the MPI plugin (dist_mpi.c, built by mpicc into
 * cnngen-mpi.so beside the binary) gives dist.c. cnngen itself never links
 * libmpi: dist.c loads the plugin only when mpirun started the process, so
 * a plain run does not pay for MPI_Init and a cnngen built where Open MPI is
 * missing still builds and runs everything else.
 *
 * Every call works on MPI_COMM_WORLD, in bytes, and returns 0 or an MPI
 * error code (errors are returned, not fatal); error_string says what a code
 * means. A rank that dies makes no call fail (Open MPI's shared memory
 * transport waits on): the wait check is how a rank notices.
 */
#ifndef CNNGEN_DIST_OPS_H
#define CNNGEN_DIST_OPS_H

#include <stddef.h>

#define DIST_OPS_VERSION 2
#define DIST_OPS_SYMBOL "cnngen_dist_ops"

typedef struct DistOps {
  int version; /* DIST_OPS_VERSION */
  int (*init)(int *rank, int *size);
  int (*send)(const void *buf, size_t bytes, int to);
  int (*recv)(void *buf, size_t bytes, int from);
  int (*bcast)(void *buf, size_t bytes, int root);
  int (*allgather)(const void *mine, size_t bytes, void *all);
  void (*error_string)(int code, char *buf, size_t cap);
  void (*abort)(int status); /* ends every rank; mpirun exits with status */
  void (*finalize)(void);
  /* While a call waits for other ranks (past its first moments of
     polling), check(arg) runs every few milliseconds; it may end the
     process (a rank it waits for has died). */
  void (*set_wait_check)(void (*check)(void *arg), void *arg);
} DistOps;

#endif
