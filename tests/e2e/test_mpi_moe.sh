#!/bin/sh
# test_mpi_moe.sh: expert parallelism (trainer/moe_ep.h) on two ranks:
# build/tests/test_moe_ep under `mpirun -np 2`, each rank holding half the
# rows and half the experts, checked against the single-rank layer on all
# rows (see tests/unit/test_moe_ep.c).  Rank 0 prints the checks.
# Skipped (one `ok` saying so) when mpirun is missing.
set -u
cd "$(dirname "$0")/../.."
: "${B:=build}"
if ! command -v mpirun >/dev/null 2>&1; then
	echo "ok mpi_moe # skipped: no mpirun"
	exit 0
fi
# OpenMPI refuses root without the flag; --oversubscribe: fewer cores than ranks
root=
[ "$(id -u)" -eq 0 ] && root=--allow-run-as-root
OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE timeout 120 \
	mpirun $root --oversubscribe -np 2 "$B/tests/test_moe_ep"
