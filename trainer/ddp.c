/* ddp.c: gradient allreduce in buckets, ZeRO-1 slices (ddp.h). */
#include "ddp.h"

#include <stdlib.h>
#include <string.h>

#include <mpi.h>

/* one MoE layer's routed experts: adjacent tensors, rank q's [displs[q],
 * displs[q] + counts[q]) of them (floats of the parameter buffer) */
typedef struct expert_block {
	int *counts, *displs;
} expert_block;

typedef struct bucket {
	size_t lo, hi;   /* floats of the flat gradient buffer */
	size_t ready;    /* of them reported final in this backward */
} bucket;

struct ddp {
	dist *d;
	model *m;
	int zero;
	size_t lo, hi;           /* this rank's slice (ZeRO) */
	int *counts, *displs;    /* every rank's slice, for the collectives */
	float *slice;            /* reduce-scatter's receive buffer */
	bucket *b;
	int nb, next;            /* buckets; the next one to start */
	MPI_Request *req;
	expert_block *eb;        /* expert parallel: the MoE layers' experts */
	int neb;
};

/* ---------------------------------------------------------------------- */
/* plain data parallel: buckets */

/* starts bucket k's in-place allreduce */
static void start_bucket(ddp *p, int k)
{
	bucket *b = &p->b[k];
	double t0 = now_sec();
	MPI_Iallreduce(MPI_IN_PLACE, p->m->grads + b->lo, (int)(b->hi - b->lo), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD,
		       &p->req[k]);
	p->d->comm_s += now_sec() - t0;
}

/* the model's grad_ready hook: counts the final floats of each bucket and
 * starts, in order, those that are complete */
static void on_grad_ready(void *ctx, size_t off, size_t n)
{
	ddp *p = ctx;
	for (int k = p->next; k < p->nb; k++) {
		bucket *b = &p->b[k];
		size_t a = off > b->lo ? off : b->lo, e = off + n < b->hi ? off + n : b->hi;
		if (a < e)
			b->ready += e - a;
	}
	while (p->next < p->nb && p->b[p->next].ready >= p->b[p->next].hi - p->b[p->next].lo)
		start_bucket(p, p->next++);
	if (p->next > 0) {
		/* OpenMPI's non-blocking collectives move only inside MPI calls */
		int done;
		double t0 = now_sec();
		MPI_Testall(p->next, p->req, &done, MPI_STATUSES_IGNORE);
		p->d->comm_s += now_sec() - t0;
	}
}

/* buckets of whole trainable tensors, from the last tensor to the first
 * (the order the backward finishes them); a frozen tensor ends a bucket
 * so that each is one contiguous range */
static void make_buckets(ddp *p, size_t target)
{
	const model *m = p->m;
	p->b = xcalloc((size_t)m->nt, sizeof *p->b);
	bucket cur = {0};
	int open = 0;
	for (int i = m->nt - 1; i >= 0; i--) {
		const mtensor *t = &m->t[i];
		/* an expert's gradient is complete on its owner: nothing to sum */
		if (!(m->trainable & t->part) || model_expert_owner(m, i) >= 0) {
			if (open)
				p->b[p->nb++] = cur;
			open = 0;
			continue;
		}
		if (!open) {
			cur = (bucket){t->off, t->off + t->n, 0};
			open = 1;
		} else {
			cur.lo = t->off; /* tensors are adjacent: the range grows down */
		}
		if ((cur.hi - cur.lo) * sizeof(float) >= target) {
			p->b[p->nb++] = cur;
			open = 0;
		}
	}
	if (open)
		p->b[p->nb++] = cur;
	p->req = xcalloc((size_t)p->nb + 1, sizeof *p->req);
	for (int k = 0; k < p->nb; k++)
		p->req[k] = MPI_REQUEST_NULL;
}

/* expert parallel: each run of adjacent expert tensors (one MoE layer's
 * experts, in expert order, so in owner order) and every owner's part */
static void find_expert_blocks(ddp *p)
{
	const model *m = p->m;
	int N = p->d->size;
	p->eb = xcalloc((size_t)m->nt + 1, sizeof *p->eb);
	for (int i = 0; i < m->nt;) {
		if (model_expert_owner(m, i) < 0) {
			i++;
			continue;
		}
		expert_block *e = &p->eb[p->neb++];
		e->counts = xcalloc((size_t)N, sizeof *e->counts);
		e->displs = xcalloc((size_t)N, sizeof *e->displs);
		for (int q = 0; q < N; q++)
			e->displs[q] = -1;
		for (; i < m->nt && model_expert_owner(m, i) >= 0; i++) {
			int q = model_expert_owner(m, i);
			if (e->displs[q] < 0)
				e->displs[q] = (int)m->t[i].off;
			e->counts[q] += (int)m->t[i].n;
		}
	}
}

/* ---------------------------------------------------------------------- */

ddp *ddp_new(dist *d, model *m, int zero, size_t bucket_bytes)
{
	ddp *p = xcalloc(1, sizeof *p);
	p->d = d;
	p->m = m;
	p->zero = zero;
	p->lo = 0;
	p->hi = m->nparams;
	if (zero) {
		/* slices of whole 16-float groups (64-byte aligned starts) */
		size_t N = (size_t)d->size, per = (m->nparams + N - 1) / N;
		per = (per + 15) / 16 * 16;
		p->counts = xcalloc(N, sizeof *p->counts);
		p->displs = xcalloc(N, sizeof *p->displs);
		for (size_t r = 0; r < N; r++) {
			size_t lo = r * per < m->nparams ? r * per : m->nparams;
			size_t hi = lo + per < m->nparams ? lo + per : m->nparams;
			p->displs[r] = (int)lo;
			p->counts[r] = (int)(hi - lo);
		}
		p->lo = (size_t)p->displs[d->rank];
		p->hi = p->lo + (size_t)p->counts[d->rank];
		p->slice = xmalloc((p->hi - p->lo + 1) * sizeof *p->slice);
	} else {
		make_buckets(p, bucket_bytes ? bucket_bytes : (size_t)25 << 20);
	}
	find_expert_blocks(p);
	return p;
}

void ddp_free(ddp *p)
{
	if (!p)
		return;
	if (p->m->grad_ready_ctx == p) {
		p->m->grad_ready = NULL;
		p->m->grad_ready_ctx = NULL;
	}
	free(p->counts);
	free(p->displs);
	free(p->slice);
	free(p->b);
	free(p->req);
	for (int k = 0; k < p->neb; k++) {
		free(p->eb[k].counts);
		free(p->eb[k].displs);
	}
	free(p->eb);
	free(p);
}

void ddp_shard(const ddp *p, size_t *lo, size_t *hi)
{
	*lo = p->lo;
	*hi = p->hi;
}

int ddp_buckets(const ddp *p)
{
	return p->nb;
}

void ddp_arm(ddp *p)
{
	if (p->zero || p->d->size < 2)
		return;
	for (int k = 0; k < p->nb; k++)
		p->b[k].ready = 0;
	p->next = 0;
	p->m->grad_ready = on_grad_ready;
	p->m->grad_ready_ctx = p;
}

void ddp_reduce_grads(ddp *p)
{
	p->m->grad_ready = NULL;
	p->m->grad_ready_ctx = NULL;
	if (p->d->size < 2)
		return;
	double t0 = now_sec();
	if (p->zero) {
		MPI_Reduce_scatter(p->m->grads, p->slice, p->counts, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
		memcpy(p->m->grads + p->lo, p->slice, (p->hi - p->lo) * sizeof *p->slice);
	} else {
		/* what the backward did not report (embedding, merger ... or all,
		 * when not armed) is final now */
		p->d->comm_s += now_sec() - t0;
		while (p->next < p->nb)
			start_bucket(p, p->next++);
		t0 = now_sec();
		MPI_Waitall(p->nb, p->req, MPI_STATUSES_IGNORE);
	}
	p->d->comm_s += now_sec() - t0;
}

int ddp_expert_parallel(const ddp *p)
{
	return p->neb > 0;
}

void ddp_gather_params(ddp *p)
{
	if (p->d->size < 2)
		return;
	double t0 = now_sec();
	if (p->zero)
		MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, p->m->params, p->counts, p->displs, MPI_FLOAT,
			       MPI_COMM_WORLD);
	/* every rank keeps every expert's weights: checkpoints and the
	 * forward-only evaluation on rank 0 read them */
	for (int k = 0; k < p->neb; k++)
		MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, p->m->params, p->eb[k].counts, p->eb[k].displs,
			       MPI_FLOAT, MPI_COMM_WORLD);
	p->d->comm_s += now_sec() - t0;
}

void ddp_gather_optim(ddp *p, const adamw *o, float **fm, float **fv)
{
	const model *m = p->m;
	size_t n = p->hi - p->lo;
	float *sm = xcalloc(n + 1, sizeof *sm), *sv = xcalloc(n + 1, sizeof *sv);
	for (int i = 0; i < m->nt; i++) {
		size_t a, b;
		if (o->m[i] && adamw_span(o, m, i, &a, &b)) {
			memcpy(sm + (a - p->lo), o->m[i], (b - a) * sizeof *sm);
			memcpy(sv + (a - p->lo), o->v[i], (b - a) * sizeof *sv);
		}
	}
	*fm = *fv = NULL;
	if (p->neb > 0 && p->d->size > 1) {
		/* expert parallel (whole buffers, no ZeRO): rank 0 holds all but
		 * the other owners' experts */
		double t0 = now_sec();
		for (int k = 0; k < p->neb; k++) {
			const expert_block *e = &p->eb[k];
			int me = p->d->rank;
			for (int w = 0; w < 2; w++) {
				float *buf = w ? sv : sm;
				if (me == 0)
					MPI_Gatherv(MPI_IN_PLACE, 0, MPI_FLOAT, buf, e->counts, e->displs, MPI_FLOAT, 0,
						    MPI_COMM_WORLD);
				else
					MPI_Gatherv(buf + e->displs[me], e->counts[me], MPI_FLOAT, NULL, NULL, NULL,
						    MPI_FLOAT, 0, MPI_COMM_WORLD);
			}
		}
		p->d->comm_s += now_sec() - t0;
		if (p->d->rank == 0) {
			*fm = sm;
			*fv = sv;
		} else {
			free(sm);
			free(sv);
		}
		return;
	}
	if (p->d->size < 2 || !p->zero) {
		/* one rank (or every rank holding everything): the slice is the whole */
		*fm = sm;
		*fv = sv;
		return;
	}
	float *am = NULL, *av = NULL;
	if (p->d->rank == 0) {
		am = xmalloc(m->nparams * sizeof *am);
		av = xmalloc(m->nparams * sizeof *av);
	}
	double t0 = now_sec();
	MPI_Gatherv(sm, (int)n, MPI_FLOAT, am, p->counts, p->displs, MPI_FLOAT, 0, MPI_COMM_WORLD);
	MPI_Gatherv(sv, (int)n, MPI_FLOAT, av, p->counts, p->displs, MPI_FLOAT, 0, MPI_COMM_WORLD);
	p->d->comm_s += now_sec() - t0;
	free(sm);
	free(sv);
	*fm = am;
	*fv = av;
}

void ddp_sum_moe_load(ddp *p, model *m)
{
	if (!m->moe_load)
		return;
	/* the load decides the next selection biases: every rank must see
	 * the same global load, or their routings drift apart */
	dist_sum_u64(p->d, m->moe_load, m->c.layers * m->c.n_experts);
	uint64_t c[2] = {m->moe.routed, m->moe.dropped};
	dist_sum_u64(p->d, c, 2);
	m->moe.routed = c[0];
	m->moe.dropped = c[1];
}

int ddp_owns(const ddp *p, int i)
{
	const model *m = p->m;
	if (!(m->trainable & m->t[i].part))
		return 0;
	int q = model_expert_owner(m, i);
	return q < 0 || q == p->d->rank;
}
