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

int dist_init(dist *d, mvl_err *err)
{
	d->rank = 0;
	d->size = 1;
	d->mpi = 0;
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
