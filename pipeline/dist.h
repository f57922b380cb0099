/* dist.h: the group of processes a command runs in.
 *
 * One process on its own (rank 0 of 1), or one rank of an `mpirun` job:
 * mvl scales out through OpenMPI and nothing home-made.  A command that can
 * run distributed calls dist_init() first; when the process was not started
 * by mpirun (no OMPI_COMM_WORLD_SIZE in the environment) MPI is never
 * initialized, so single-process runs pay nothing and need no launcher.
 *
 * Errors: MPI's default handler aborts the whole job on a communication
 * failure (a rank died): that is the behaviour we want, since a job with a
 * missing rank cannot finish; checkpoints are written under temporary names,
 * so the last complete one survives.  dist_abort() ends every rank after a
 * local error, naming the rank.
 */
#ifndef MVL_DIST_H
#define MVL_DIST_H

#include <stdint.h>

#include "util.h"

typedef struct dist {
	int rank, size;
	int mpi;         /* 1: MPI initialized by dist_init (finalize it) */
	double comm_s;   /* seconds spent inside MPI calls made through dist
			  * and its users (trainer/ddp.c): the communication
			  * share of a step is measured, not guessed */
} dist;

/* dist_init() : joins the mpirun job if there is one, else rank 0 of 1.
 * Threads: MPI_THREAD_FUNNELED (OpenMP threads never call MPI).
 * @return 0, or -1 with *err set */
int dist_init(dist *d, mvl_err *err);

/* dist_finalize() : leaves the job (a barrier first, so no rank exits while
 * another still talks to it).  Safe on a single process. */
void dist_finalize(dist *d);

/* dist_abort() : prints "mvl: rank R of N: MESSAGE" and ends every rank of
 * the job with status 1 (exit(1) on a single process).  Command mains only. */
void dist_abort(const dist *d, const char *msg) __attribute__((noreturn));

/* dist_launched() : 1 when this process was started by mpirun. */
int dist_launched(void);

/* dist_local_size() : ranks of this job on this machine (1 outside
 * mpirun): a command sizes its thread pool to cores / local ranks so that
 * `mpirun -np 2` on 2 cores does not run 4 threads. */
int dist_local_size(void);

/* dist_sum_u64() / dist_sum_f64() : x[0..n) summed over every rank, in
 * place, on every rank (a blocking allreduce; nothing on a single
 * process).  MPI's errors are fatal, so there is no error to return. */
void dist_sum_u64(dist *d, uint64_t *x, int n);
void dist_sum_f64(dist *d, double *x, int n);
/* ---- collectives (every rank calls them, in the same order) ----
 * Byte messages: MPI counts are ints, so one rank sends or receives at
 * most 2 GiB per call; more is an error, not a silent truncation.  On a
 * group of one they are plain copies. */

/* dist_barrier() : waits for every rank. */
void dist_barrier(const dist *d);

/* dist_allgather_u64() : out[r] = the v of rank r (out: size entries). */
void dist_allgather_u64(const dist *d, uint64_t v, uint64_t *out);

/* dist_max_int() : the largest v over the ranks, on every rank. */
int dist_max_int(const dist *d, int v);

/* dist_alltoallv() : rank r sends send[off..off+counts[q]) to each rank q
 * (blocks in rank order); *recv gets what every rank sent to r, in rank
 * order, rcounts[q] bytes from q (malloc'd; free it).
 * @return 0, or -1 with *err when a message passes the int limit */
int dist_alltoallv(const dist *d, const void *send, const size_t *counts, void **recv,
		   size_t *rcounts, mvl_err *err);

/* dist_gatherv() : every rank's n bytes to rank 0: *recv (malloc'd, rank
 * order) and rcounts[q] there; other ranks get *recv NULL.
 * @return 0 or -1 with *err */
int dist_gatherv(const dist *d, const void *send, size_t n, void **recv, size_t *rcounts,
		 mvl_err *err);

/* dist_scatterv() : rank 0 sends counts[q] bytes of send (blocks in rank
 * order) to each rank q; *recv (malloc'd) and *n get this rank's block.
 * send and counts matter on rank 0 only.  @return 0 or -1 with *err */
int dist_scatterv(const dist *d, const void *send, const size_t *counts, void **recv, size_t *n,
		  mvl_err *err);

#endif
