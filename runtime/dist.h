/*
 * dist.h: data-parallel training across processes. Under `mpirun -n R`,
 * rank r's T threads are global threads r*T .. r*T+T-1 of a run of R*T
 * threads, and what the threads of one process would add up in thread
 * order (gradients, losses, later batch statistics) is added up in the same
 * order over every rank, so that R ranks of T threads give the weights of
 * one process of R*T threads bit for bit.
 *
 * Without mpirun (or with one rank) a Dist is one process: rank 0 of 1,
 * and no MPI is loaded. Under mpirun, dist_open loads the MPI plugin
 * (dist_ops.h) and calls MPI_Init; ranks other than 0 then write nothing to
 * standard output or error (their messages reach rank 0 through
 * dist_agree). A failed communication prints what failed and stops every
 * rank (MPI_Abort, exit status 1). A rank that dies makes no call fail:
 * while a rank waits, it looks every few milliseconds for the processes of
 * the ranks on its machine, and one that is gone stops it with a message
 * naming that rank (exit status 1); mpirun, which saw the death first,
 * stops the ranks on other machines. Nothing waits forever.
 */
#ifndef CNNGEN_DIST_H
#define CNNGEN_DIST_H

#include <stdbool.h>
#include <stddef.h>

#include "dist_ops.h"
#include "err.h"

typedef struct DistPeer DistPeer;

typedef struct Dist {
  int rank, size;     /* 0 of 1 for one process */
  DistPeer *peers;    /* [size]: each rank's process, for the wait check */
  const DistOps *ops; /* NULL for one process */
  void *lib;          /* the plugin's dlopen handle */
  int err_fd;         /* this rank's own standard error, for fatal messages */
  float *scratch;     /* dist_sum's running sum on ranks > 0 */
  long scratch_n;
  double comm_seconds; /* in dist_sum and dist_allgather, waiting included */
} Dist;

/* Whether mpirun started this process as one of several ranks
   (OMPI_COMM_WORLD_SIZE > 1). */
bool dist_launched(void);
/* How many ranks share this machine (OMPI_COMM_WORLD_LOCAL_SIZE; 1 alone). */
int dist_local_ranks(void);
/* One process unless dist_launched(); then loads the plugin (the file
   $CNNGEN_MPI_PLUGIN, or cnngen-mpi.so beside the binary) and joins the
   ranks. A cnngen built without MPI fails here, saying so. */
int dist_open(Dist *d, Err *e);
void dist_close(Dist *d);

/* A process on this machine, as the wait check sees it: 0 and its start
   time (/proc/PID/stat, so that a reused pid is told apart) in *start;
   DIST_GONE when there is no such process or it is a zombie; DIST_UNKNOWN
   when /proc could not be read this time (EMFILE, EINTR, ...): no answer,
   not a death. */
enum { DIST_GONE = -1, DIST_UNKNOWN = -2 };
int dist_process_start(int pid, unsigned long long *start);

/* The primitive: parts[0..nparts) are this rank's threads' n floats each,
   in thread order (NULL: that thread adds nothing); out gets, on every rank,
   p_0 + p_1 + ... over all global threads, added one after the other
   left to right as one process's threads are. out may be parts[0]. Global
   thread 0's part (rank 0's parts[0]) must be there: the sum starts from it. */
void dist_sum(Dist *d, float *const *parts, int nparts, long n, float *out);
/* Every rank's `bytes` bytes, in rank order, into all [size][bytes]. */
void dist_allgather(Dist *d, const void *mine, size_t bytes, void *all);
/* Rank 0's buf to every rank. */
void dist_bcast(Dist *d, void *buf, size_t bytes);
/* A collective verdict: rc is this rank's (0 or -1, with e). Returns -1 on
   every rank when any rank failed, with e holding the first failing rank's
   message (" (rank K)" added for K > 0); 0 otherwise. */
int dist_agree(Dist *d, int rc, Err *e);

#endif
