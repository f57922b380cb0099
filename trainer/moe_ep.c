/* moe_ep.c: expert parallelism (moe_ep.h) on moe.c's stages and dist.h's
 * alltoallv; it makes no MPI call of its own. */
#include "moe_ep.h"

#include <stdlib.h>
#include <string.h>

#include "moe_impl.h"

struct moe_ep {
	dist *d;
	int E, first, count;     /* owned experts [first, first + count) */
	uint64_t *chosen;        /* [size, E + 1]: each rank's assignments per
				  * expert before capacity, then its routed rows */
	int *kept;               /* [size, E]: of those, kept */
	size_t *scount, *rcount; /* [size] bytes sent to / received from each rank */
	int nrecv;               /* rows received by this owner */
	int *perm;               /* [nrecv]: expert-order row -> arrival-order row */
	int *eofs;               /* [count + 1]: expert-order rows per owned expert */
	float *xe, *g, *u, *h, *ye; /* expert order: [nrecv, d] / [nrecv, fe] */
};

moe_ep *moe_ep_new(dist *d, const moe_shape *s, mvl_err *err)
{
	if (s->experts <= 0 || s->experts % d->size) {
		mvl_errf(err, "expert parallel: %d experts do not split evenly over %d ranks", s->experts, d->size);
		return NULL;
	}
	moe_ep *ep = xcalloc(1, sizeof *ep);
	ep->d = d;
	ep->E = s->experts;
	ep->count = s->experts / d->size;
	ep->first = d->rank * ep->count;
	ep->chosen = xcalloc((size_t)d->size * (s->experts + 1), sizeof *ep->chosen);
	ep->kept = xcalloc((size_t)d->size * s->experts, sizeof *ep->kept);
	ep->scount = xcalloc(2 * (size_t)d->size, sizeof *ep->scount);
	ep->rcount = ep->scount + d->size;
	ep->eofs = xcalloc((size_t)ep->count + 1, sizeof *ep->eofs);
	return ep;
}

static void free_rows(moe_ep *ep)
{
	free(ep->perm);
	free(ep->xe);
	free(ep->g);
	free(ep->u);
	free(ep->h);
	free(ep->ye);
	ep->perm = NULL;
	ep->xe = ep->g = ep->u = ep->h = ep->ye = NULL;
}

void moe_ep_free(moe_ep *ep)
{
	if (!ep)
		return;
	free_rows(ep);
	free(ep->chosen);
	free(ep->kept);
	free(ep->scount);
	free(ep->eofs);
	free(ep);
}

void moe_ep_owned(const moe_ep *ep, int *first, int *count)
{
	*first = ep->first;
	*count = ep->count;
}

/* Every rank's per-expert counts, the global capacity, and from them the
 * kept count of every (rank, expert): rank q's assignments to e come after
 * those of ranks < q, so q keeps what the cap leaves after them.  before
 * [E] gets what ranks before this one took of each expert. */
static long long plan(moe_ep *ep, const moe_shape *s, const moe_act *a, int T, long long *before)
{
	int E = ep->E, P = ep->d->size, k = s->top_k;
	memset(ep->chosen, 0, (size_t)P * (E + 1) * sizeof *ep->chosen);
	uint64_t *mine = ep->chosen + (size_t)ep->d->rank * (E + 1);
	for (size_t sl = 0; sl < (size_t)a->n * k; sl++)
		if (a->choice[sl] >= 0)
			mine[a->choice[sl]]++;
	mine[E] = (uint64_t)T;
	/* an allgather written as a sum: every other rank's row is zero here */
	dist_sum_u64(ep->d, ep->chosen, P * (E + 1));
	long long Tg = 0;
	for (int q = 0; q < P; q++)
		Tg += (long long)ep->chosen[(size_t)q * (E + 1) + E];
	long long cap = moe_cap(s, Tg);
	for (int e = 0; e < E; e++) {
		long long taken = 0;
		for (int q = 0; q < P; q++) {
			long long c = (long long)ep->chosen[(size_t)q * (E + 1) + e];
			long long room = cap - taken > 0 ? cap - taken : 0;
			if (q == ep->d->rank)
				before[e] = taken;
			ep->kept[(size_t)q * E + e] = (int)(c < room ? c : room);
			taken += ep->kept[(size_t)q * E + e];
		}
	}
	return cap;
}

/* rows of this owner's experts, arrival order (rank, expert, row) ->
 * expert order (expert, rank, row) */
static void regroup_plan(moe_ep *ep, const moe_shape *s)
{
	int E = ep->E, P = ep->d->size, d = s->d, fe = s->expert_mlp;
	int n = 0;
	for (int q = 0; q < P; q++)
		for (int j = 0; j < ep->count; j++)
			n += ep->kept[(size_t)q * E + ep->first + j];
	free_rows(ep);
	ep->nrecv = n;
	ep->perm = xmalloc(((size_t)n + 1) * sizeof *ep->perm);
	ep->xe = xmalloc(((size_t)n * d + 1) * sizeof *ep->xe);
	ep->ye = xmalloc(((size_t)n * d + 1) * sizeof *ep->ye);
	ep->g = xmalloc(((size_t)n * fe + 1) * sizeof *ep->g);
	ep->u = xmalloc(((size_t)n * fe + 1) * sizeof *ep->u);
	ep->h = xmalloc(((size_t)n * fe + 1) * sizeof *ep->h);
	/* start of (q, j) in arrival order */
	int *at = xmalloc(((size_t)P * ep->count + 1) * sizeof *at), o = 0;
	for (int q = 0; q < P; q++)
		for (int j = 0; j < ep->count; j++) {
			at[q * ep->count + j] = o;
			o += ep->kept[(size_t)q * E + ep->first + j];
		}
	int i = 0;
	for (int j = 0; j < ep->count; j++) {
		ep->eofs[j] = i;
		for (int q = 0; q < P; q++)
			for (int r = 0; r < ep->kept[(size_t)q * E + ep->first + j]; r++)
				ep->perm[i++] = at[q * ep->count + j] + r;
	}
	ep->eofs[ep->count] = i;
	free(at);
}

/* send rows of the sender's expert-ordered buffer to their owners:
 * counts per owner from the sender's kept counts */
static void send_counts(moe_ep *ep, const moe_shape *s, const moe_act *a)
{
	int P = ep->d->size;
	for (int p = 0; p < P; p++) {
		int lo = p * ep->count, hi = lo + ep->count;
		ep->scount[p] = (size_t)(a->ofs[hi] - a->ofs[lo]) * s->d * sizeof(float);
	}
}

/* one exchange of d-float rows; *got must hold want rows */
static int exchange(moe_ep *ep, const float *send, const size_t *counts, float *got, size_t want, int d,
		    mvl_err *err)
{
	void *recv = NULL;
	size_t *rc = xmalloc((size_t)ep->d->size * sizeof *rc);
	double t0 = now_sec(); /* the trainer reports the communication share */
	int rv = dist_alltoallv(ep->d, send, counts, &recv, rc, err);
	if (rv == 0) {
		size_t total = 0;
		for (int q = 0; q < ep->d->size; q++)
			total += rc[q];
		/* the layout both sides derived from the same counts must agree */
		if (total != want * d * sizeof(float))
			rv = mvl_errf(err, "expert parallel: rank %d expected %zu rows, received %zu bytes",
				      ep->d->rank, want, total);
		else if (total)
			memcpy(got, recv, total);
	}
	/* fail together: a rank that went on alone would wait forever */
	if (dist_max_int(ep->d, rv != 0) && rv == 0)
		rv = mvl_errf(err, "expert parallel: another rank's exchange failed");
	ep->d->comm_s += now_sec() - t0;
	free(recv);
	free(rc);
	return rv;
}

int moe_ep_fwd(moe_ep *ep, const moe_shape *s, const moe_w *w, moe_act *a, float *y, const float *x, int n,
	       const attn_seg *seg, int nseg, moe_count *cnt, mvl_err *err)
{
	int d = s->d, fe = s->expert_mlp, P = ep->d->size;
	int T = moe_route(s, w, a, y, x, n, seg, nseg);
	long long *before = xcalloc((size_t)ep->E, sizeof *before);
	long long cap = plan(ep, s, a, T, before);
	moe_keep(s, a, cap, before, cnt);
	free(before);
	moe_gather(s, a, x);
	send_counts(ep, s, a);
	regroup_plan(ep, s);
	for (int q = 0; q < P; q++) {
		size_t rows = 0;
		for (int j = 0; j < ep->count; j++)
			rows += (size_t)ep->kept[(size_t)q * ep->E + ep->first + j];
		ep->rcount[q] = rows * d * sizeof(float);
	}
	/* dispatch: inputs to the owners */
	float *arrive = xmalloc(((size_t)ep->nrecv * d + 1) * sizeof *arrive);
	int rv = exchange(ep, a->xg, ep->scount, arrive, (size_t)ep->nrecv, d, err);
	if (rv == 0) {
		for (int i = 0; i < ep->nrecv; i++)
			memcpy(ep->xe + (size_t)i * d, arrive + (size_t)ep->perm[i] * d, (size_t)d * sizeof *arrive);
		for (int j = 0; j < ep->count; j++) {
			int o = ep->eofs[j], ne = ep->eofs[j + 1] - o;
			if (ne)
				moe_expert_fwd(s, w, ep->first + j, ep->xe + (size_t)o * d, ep->g + (size_t)o * fe,
					       ep->u + (size_t)o * fe, ep->h + (size_t)o * fe, ep->ye + (size_t)o * d,
					       ne);
		}
		/* combine: outputs back in the layout they came in */
		for (int i = 0; i < ep->nrecv; i++)
			memcpy(arrive + (size_t)ep->perm[i] * d, ep->ye + (size_t)i * d, (size_t)d * sizeof *arrive);
		rv = exchange(ep, arrive, ep->rcount, a->y, (size_t)a->na, d, err);
	}
	free(arrive);
	if (rv)
		return rv;
	moe_combine(s, a, y);
	moe_balance(s, a, seg, nseg, cnt);
	return 0;
}

int moe_ep_bwd(moe_ep *ep, const moe_shape *s, const moe_w *w, const moe_act *a, float *dx, const float *dy,
	       const float *x, float scale, mvl_err *err)
{
	int d = s->d, fe = s->expert_mlp, n = a->n, k = s->top_k;
	moe_shared_bwd(s, w, a, dx, dy, x);
	float *dgate = xcalloc((size_t)n * k + 1, sizeof *dgate);
	float *dye = xmalloc(((size_t)a->na * d + 1) * sizeof *dye);
	moe_gate_grad(s, a, dy, dye, dgate);
	/* gated output gradients to the owners */
	size_t nr = (size_t)ep->nrecv;
	float *arrive = xmalloc((nr * d + 1) * sizeof *arrive), *dyo = xmalloc((nr * d + 1) * sizeof *dyo),
	      *dxo = xmalloc((nr * d + 1) * sizeof *dxo);
	int rv = exchange(ep, dye, ep->scount, arrive, nr, d, err);
	if (rv == 0) {
		for (size_t i = 0; i < nr; i++)
			memcpy(dyo + i * d, arrive + (size_t)ep->perm[i] * d, (size_t)d * sizeof *dyo);
		int maxne = 0;
		for (int j = 0; j < ep->count; j++)
			if (ep->eofs[j + 1] - ep->eofs[j] > maxne)
				maxne = ep->eofs[j + 1] - ep->eofs[j];
		float *scratch = xmalloc((3 * (size_t)maxne * fe + 1) * sizeof *scratch);
		for (int j = 0; j < ep->count; j++) {
			int o = ep->eofs[j], ne = ep->eofs[j + 1] - o;
			if (ne)
				moe_expert_bwd(s, w, ep->first + j, dyo + (size_t)o * d, ep->xe + (size_t)o * d,
					       ep->g + (size_t)o * fe, ep->u + (size_t)o * fe, ep->h + (size_t)o * fe,
					       dxo + (size_t)o * d, ne, scratch);
		}
		free(scratch);
		/* input-row gradients back to the senders, into dye's layout */
		for (size_t i = 0; i < nr; i++)
			memcpy(arrive + (size_t)ep->perm[i] * d, dxo + i * d, (size_t)d * sizeof *arrive);
		rv = exchange(ep, arrive, ep->rcount, dye, (size_t)a->na, d, err);
	}
	if (rv == 0) {
		for (int r = 0; r < a->na; r++) {
			float *dxt = dx + (size_t)a->arow[r] * d;
			for (int i = 0; i < d; i++)
				dxt[i] += dye[(size_t)r * d + i];
		}
		moe_router_bwd(s, w, a, dx, x, dgate, scale);
	}
	free(arrive);
	free(dyo);
	free(dxo);
	free(dye);
	free(dgate);
	return rv;
}
