/* dist.c: OpenMPI when launched by mpirun, a group of one otherwise. */
#include <stdio.h>
#include <stdlib.h>

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
