/* dist.c: OpenMPI when launched by mpirun, a group of one otherwise. */
#include <stdio.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include "dist.h"

int dist_launched(void)
{
	/* set by OpenMPI's launcher for every rank; a plain run has none */
	const char *s = getenv("OMPI_COMM_WORLD_SIZE");
	return s && *s;
}

int dist_local_size(void)
{
	const char *s = getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
	int n = s ? atoi(s) : 1;
	return n > 0 ? n : 1;
}

int dist_init(dist *d, mvl_err *err)
{
	d->rank = 0;
	d->size = 1;
	d->mpi = 0;
	d->comm_s = 0;
	if (!dist_launched())
		return 0;
	int inited = 0;
	MPI_Initialized(&inited);
	if (!inited) {
		int provided = 0;
		if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
			return mvl_errf(err, "MPI_Init_thread failed");
		d->mpi = 1;
	}
	MPI_Comm_rank(MPI_COMM_WORLD, &d->rank);
	MPI_Comm_size(MPI_COMM_WORLD, &d->size);
	return 0;
}

void dist_finalize(dist *d)
{
	if (!d->mpi)
		return;
	MPI_Barrier(MPI_COMM_WORLD);
	MPI_Finalize();
	d->mpi = 0;
}

void dist_abort(const dist *d, const char *msg)
{
	fprintf(stderr, "mvl: rank %d of %d: %s\n", d->rank, d->size, msg);
	fflush(stderr);
	if (d->mpi)
		MPI_Abort(MPI_COMM_WORLD, 1);
	exit(1);
}

void dist_sum_u64(dist *d, uint64_t *x, int n)
{
	if (d->size < 2)
		return;
	double t0 = now_sec();
	MPI_Allreduce(MPI_IN_PLACE, x, n, MPI_UINT64_T, MPI_SUM, MPI_COMM_WORLD);
	d->comm_s += now_sec() - t0;
}

void dist_sum_f64(dist *d, double *x, int n)
{
	if (d->size < 2)
		return;
	double t0 = now_sec();
	MPI_Allreduce(MPI_IN_PLACE, x, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
	d->comm_s += now_sec() - t0;
}

/* ---------------------------------------------------------------------- */
/* collectives: a group of one copies, a job calls MPI.  size, not mpi,
 * decides: MPI may have been initialized by someone else. */

void dist_barrier(const dist *d)
{
	if (d->size > 1)
		MPI_Barrier(MPI_COMM_WORLD);
}

void dist_allgather_u64(const dist *d, uint64_t v, uint64_t *out)
{
	if (d->size == 1) {
		out[0] = v;
		return;
	}
	MPI_Allgather(&v, 1, MPI_UINT64_T, out, 1, MPI_UINT64_T, MPI_COMM_WORLD);
}

int dist_max_int(const dist *d, int v)
{
	int m = v;
	if (d->size > 1)
		MPI_Allreduce(&v, &m, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
	return m;
}

/* counts and displacements as MPI wants them, or -1 past INT_MAX */
static int to_ints(const size_t *counts, int n, int *c, int *disp, size_t *total)
{
	size_t off = 0;
	for (int i = 0; i < n; i++) {
		if (counts[i] > INT_MAX || off > INT_MAX)
			return -1;
		c[i] = (int)counts[i];
		disp[i] = (int)off;
		off += counts[i];
	}
	*total = off;
	return off > INT_MAX ? -1 : 0;
}

static void *copy_bytes(const void *p, size_t n)
{
	void *q = xmalloc(n ? n : 1);
	if (n)
		memcpy(q, p, n);
	return q;
}

int dist_alltoallv(const dist *d, const void *send, const size_t *counts, void **recv,
		   size_t *rcounts, mvl_err *err)
{
	if (d->size == 1) {
		rcounts[0] = counts[0];
		*recv = copy_bytes(send, counts[0]);
		return 0;
	}
	int n = d->size;
	int *sc = xmalloc(4 * (size_t)n * sizeof *sc), *sd = sc + n, *rc = sc + 2 * n, *rd = sc + 3 * n;
	size_t stotal, rtotal;
	int bad = to_ints(counts, n, sc, sd, &stotal) != 0;
	/* every rank must learn of an oversized message, or the others hang */
	if (dist_max_int(d, bad)) {
		free(sc);
		return mvl_errf(err, "alltoallv: a message passes 2 GiB (rank %d)", d->rank);
	}
	MPI_Alltoall(sc, 1, MPI_INT, rc, 1, MPI_INT, MPI_COMM_WORLD);
	size_t off = 0;
	for (int i = 0; i < n; i++) {
		rcounts[i] = (size_t)rc[i];
		rd[i] = (int)off;
		off += (size_t)rc[i];
	}
	rtotal = off;
	bad = rtotal > INT_MAX;
	if (dist_max_int(d, bad)) {
		free(sc);
		return mvl_errf(err, "alltoallv: rank %d would receive more than 2 GiB", d->rank);
	}
	*recv = xmalloc(rtotal ? rtotal : 1);
	MPI_Alltoallv(send, sc, sd, MPI_BYTE, *recv, rc, rd, MPI_BYTE, MPI_COMM_WORLD);
	free(sc);
	return 0;
}

int dist_gatherv(const dist *d, const void *send, size_t n, void **recv, size_t *rcounts,
		 mvl_err *err)
{
	*recv = NULL;
	if (d->size == 1) {
		rcounts[0] = n;
		*recv = copy_bytes(send, n);
		return 0;
	}
	uint64_t *all = xmalloc((size_t)d->size * sizeof *all);
	dist_allgather_u64(d, n, all);
	int *c = xmalloc(2 * (size_t)d->size * sizeof *c), *disp = c + d->size;
	size_t total;
	size_t *sz = xmalloc((size_t)d->size * sizeof *sz);
	for (int i = 0; i < d->size; i++)
		sz[i] = all[i];
	int rc = 0;
	if (to_ints(sz, d->size, c, disp, &total) != 0) {
		rc = mvl_errf(err, "gatherv: rank 0 would receive more than 2 GiB");
	} else {
		if (d->rank == 0) {
			*recv = xmalloc(total ? total : 1);
			for (int i = 0; i < d->size; i++)
				rcounts[i] = sz[i];
		}
		MPI_Gatherv(send, (int)n, MPI_BYTE, *recv, c, disp, MPI_BYTE, 0, MPI_COMM_WORLD);
	}
	free(all);
	free(c);
	free(sz);
	return rc;
}

int dist_scatterv(const dist *d, const void *send, const size_t *counts, void **recv, size_t *n,
		  mvl_err *err)
{
	if (d->size == 1) {
		*n = counts[0];
		*recv = copy_bytes(send, counts[0]);
		return 0;
	}
	int *c = xmalloc(2 * (size_t)d->size * sizeof *c), *disp = c + d->size;
	size_t total = 0;
	int bad = d->rank == 0 && to_ints(counts, d->size, c, disp, &total) != 0;
	if (dist_max_int(d, bad)) {
		free(c);
		return mvl_errf(err, "scatterv: rank 0 would send more than 2 GiB");
	}
	int mine = 0;
	MPI_Scatter(c, 1, MPI_INT, &mine, 1, MPI_INT, 0, MPI_COMM_WORLD);
	*n = (size_t)mine;
	*recv = xmalloc(*n ? *n : 1);
	MPI_Scatterv(send, c, disp, MPI_BYTE, *recv, mine, MPI_BYTE, 0, MPI_COMM_WORLD);
	free(c);
	return 0;
}
