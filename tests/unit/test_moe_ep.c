/* test_moe_ep.c: the expert-parallel MoE layer (moe_ep.h) against
 * moe_fwd()/moe_bwd() on the concatenated rows.
 *
 * Every rank builds the same random layer and the same rows of every
 * rank; the reference runs the single-rank layer on all of them locally,
 * the expert-parallel layer runs each rank's own rows with each rank's own
 * experts.  Outputs and input gradients (own rows), expert weight
 * gradients (owned experts, so all of them over the ranks), router and
 * shared gradients (summed over ranks), routed/dropped counts, load and
 * balance term (summed) must match within 1e-5 relative.  Cases: no
 * capacity, capacity dropping (no shared expert), the last E/2 experts
 * never chosen (their owner receives nothing), and a rank of padding
 * only.  Rank 0 prints the checks.
 *
 * Run plainly (tests/run.sh) it is a group of one, where the exchange is
 * a copy; tests/e2e/test_mpi_moe.sh runs it under `mpirun -np 2`. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "dist.h"
#include "moe.h"
#include "moe_ep.h"

enum { D = 8, E = 4, K = 2, FE = 6, FS = 5, MAXROWS = 64, MAXSEG = 8 };
#define TOL 1e-5

static uint64_t rng;
static float frnd(void)
{
	rng = rng * 6364136223846793005ull + 1442695040888963407ull;
	return (float)((rng >> 40) & 0xFFFFFF) / (float)0x1000000 - 0.5f;
}

/* rank q's rows: a few segments and padding; pad_only: padding alone */
static int chunk(int q, int pad_only, attn_seg *seg, int *nseg)
{
	static const int lens[3][3] = {{5, 7, 1}, {9, 2, 0}, {4, 4, 3}};
	const int *l = lens[q % 3];
	int n = 0;
	*nseg = 0;
	if (pad_only)
		return 3;
	for (int i = 0; i < 3 && l[i]; i++) {
		seg[(*nseg)++] = (attn_seg){.start = n, .len = l[i]};
		n += l[i];
	}
	return n + 1 + q % 2; /* padding rows at the end */
}

typedef struct layer {
	float router[E * D], bias[E], sg[FS * D], su[FS * D], sd[D * FS];
	float eg[E][FE * D], eu[E][FE * D], ed[E][D * FE];
	float drouter[E * D], dsg[FS * D], dsu[FS * D], dsd[D * FS];
	float deg[E][FE * D], deu[E][FE * D], ded[E][D * FE];
} layer;

/* w over l; with owned experts [first, first + count) only (count < 0: all) */
static void bind(moe_w *w, layer *l, int first, int count)
{
	moe_w_alloc(w, E);
	w->router = l->router;
	w->bias = l->bias;
	w->sgate = l->sg;
	w->sup = l->su;
	w->sdown = l->sd;
	w->drouter = l->drouter;
	w->dsgate = l->dsg;
	w->dsup = l->dsu;
	w->dsdown = l->dsd;
	for (int e = 0; e < E; e++) {
		if (count >= 0 && (e < first || e >= first + count))
			continue; /* NULL: a touch of another rank's expert crashes */
		w->gate[e] = l->eg[e];
		w->up[e] = l->eu[e];
		w->down[e] = l->ed[e];
		w->dgate[e] = l->deg[e];
		w->dup[e] = l->deu[e];
		w->ddown[e] = l->ded[e];
	}
}

static double relerr(const float *a, const float *b, size_t n)
{
	double m = 0, s = 0;
	for (size_t i = 0; i < n; i++) {
		m = fmax(m, fabs((double)a[i] - b[i]));
		s = fmax(s, fabs((double)b[i]));
	}
	return s > 0 ? m / s : m;
}

/* the largest of every rank's v, on every rank */
static double max_over(dist *d, double v)
{
	double *all = calloc((size_t)d->size, sizeof *all), m = 0;
	all[d->rank] = v;
	dist_sum_f64(d, all, d->size);
	for (int q = 0; q < d->size; q++)
		m = fmax(m, all[q]);
	free(all);
	return m;
}

/* a float tensor summed over ranks, in place */
static void sum_floats(dist *d, float *x, size_t n)
{
	double *t = malloc(n * sizeof *t);
	for (size_t i = 0; i < n; i++)
		t[i] = x[i];
	dist_sum_f64(d, t, (int)n);
	for (size_t i = 0; i < n; i++)
		x[i] = (float)t[i];
	free(t);
}

#define REPORT(d, name, cond, ...)                                        \
	do {                                                              \
		int ok_ = !!(cond);                                       \
		if ((d)->rank == 0)                                       \
			CHECKF(ok_, name, __VA_ARGS__);                   \
	} while (0)

static void run_case(dist *d, const char *name, float capacity, int shared, int idle, int pad_last)
{
	moe_shape s = {.d = D, .experts = E, .top_k = K, .expert_mlp = FE, .shared_mlp = shared ? FS : 0,
		       .routed_scale = 2.5f, .capacity = capacity, .balance_alpha = 0.01f};
	static layer ref, ep;
	rng = 4242;
	float *p = (float *)&ref;
	for (size_t i = 0; i < offsetof(layer, drouter) / sizeof(float); i++)
		p[i] = frnd();
	for (int e = 0; e < E; e++)
		ref.bias[e] = idle && e >= E / 2 ? -100.0f : 0.1f * frnd();
	memset(ref.drouter, 0, sizeof ref - offsetof(layer, drouter));
	ep = ref;

	/* every rank's rows, concatenated */
	static float x[MAXROWS * D], dy[MAXROWS * D], y[MAXROWS * D], dx[MAXROWS * D];
	attn_seg seg[MAXSEG], lseg[MAXSEG];
	int nseg = 0, n = 0, start = 0, mine = 0, lnseg = 0;
	for (int q = 0; q < d->size; q++) {
		int qn, qs;
		qn = chunk(q, pad_last && q == d->size - 1 && d->size > 1, lseg, &qs);
		if (q == d->rank) {
			start = n;
			mine = qn;
			lnseg = qs;
			memcpy(seg + MAXSEG - qs, lseg, (size_t)qs * sizeof *lseg); /* kept aside */
		}
		for (int i = 0; i < qs; i++)
			seg[nseg++] = (attn_seg){.start = lseg[i].start + n, .len = lseg[i].len};
		n += qn;
	}
	memcpy(lseg, seg + MAXSEG - lnseg, (size_t)lnseg * sizeof *lseg);
	for (int i = 0; i < n * D; i++) {
		x[i] = 2 * frnd();
		dy[i] = frnd();
	}

	/* (a) one rank, every row */
	moe_w rw;
	bind(&rw, &ref, 0, -1);
	uint64_t rload[E] = {0};
	moe_count rc = {.load = rload};
	moe_act *ra = moe_act_new();
	moe_fwd(&s, &rw, ra, y, x, n, seg, nseg, &rc);
	memset(dx, 0, sizeof dx);
	moe_bwd(&s, &rw, ra, dx, dy, x, 1.0f);

	/* (b) expert parallel, this rank's rows */
	mvl_err err = {{0}};
	moe_ep *ex = moe_ep_new(d, &s, &err);
	int first, count;
	moe_ep_owned(ex, &first, &count);
	moe_w ew;
	bind(&ew, &ep, first, count);
	uint64_t eload[E] = {0};
	moe_count ec = {.load = eload};
	moe_act *ea = moe_act_new();
	float ey[MAXROWS * D], edx[MAXROWS * D] = {0};
	int rv = moe_ep_fwd(ex, &s, &ew, ea, ey, x + (size_t)start * D, mine, lseg, lnseg, &ec, &err);
	if (rv == 0)
		rv = moe_ep_bwd(ex, &s, &ew, ea, edx, dy + (size_t)start * D, x + (size_t)start * D, 1.0f, &err);
	char nm[160];
	snprintf(nm, sizeof nm, "%s: the expert-parallel forward and backward run on %d ranks", name, d->size);
	int failed = max_over(d, rv != 0) != 0;
	REPORT(d, nm, !failed, "%s", err.msg);
	if (failed)
		goto out; /* a failed exchange leaves nothing to compare */

	double ey_err = max_over(d, relerr(ey, y + (size_t)start * D, (size_t)mine * D));
	double dx_err = max_over(d, relerr(edx, dx + (size_t)start * D, (size_t)mine * D));
	double ew_err = 0;
	for (int e = first; e < first + count; e++) {
		ew_err = fmax(ew_err, relerr(ep.deg[e], ref.deg[e], FE * D));
		ew_err = fmax(ew_err, relerr(ep.deu[e], ref.deu[e], FE * D));
		ew_err = fmax(ew_err, relerr(ep.ded[e], ref.ded[e], D * FE));
	}
	ew_err = max_over(d, ew_err);
	sum_floats(d, ep.drouter, E * D);
	sum_floats(d, ep.dsg, FS * D);
	sum_floats(d, ep.dsu, FS * D);
	sum_floats(d, ep.dsd, D * FS);
	double rs_err = relerr(ep.drouter, ref.drouter, E * D);
	if (shared) {
		rs_err = fmax(rs_err, relerr(ep.dsg, ref.dsg, FS * D));
		rs_err = fmax(rs_err, relerr(ep.dsu, ref.dsu, FS * D));
		rs_err = fmax(rs_err, relerr(ep.dsd, ref.dsd, D * FS));
	}
	uint64_t tot[2 + E] = {ec.routed, ec.dropped};
	memcpy(tot + 2, eload, sizeof eload);
	dist_sum_u64(d, tot, 2 + E);
	double aux = ec.aux;
	dist_sum_f64(d, &aux, 1);

	snprintf(nm, sizeof nm, "%s: outputs equal the single-rank layer's", name);
	REPORT(d, nm, ey_err <= TOL, "relative error %.3g", ey_err);
	snprintf(nm, sizeof nm, "%s: input gradients equal", name);
	REPORT(d, nm, dx_err <= TOL, "relative error %.3g", dx_err);
	snprintf(nm, sizeof nm, "%s: expert weight gradients equal on their owners", name);
	REPORT(d, nm, ew_err <= TOL, "relative error %.3g", ew_err);
	snprintf(nm, sizeof nm, "%s: router and shared gradients equal summed over ranks", name);
	REPORT(d, nm, rs_err <= TOL, "relative error %.3g", rs_err);
	snprintf(nm, sizeof nm, "%s: routed %llu and dropped %llu assignments as one rank", name,
		 (unsigned long long)rc.routed, (unsigned long long)rc.dropped);
	REPORT(d, nm, tot[0] == rc.routed && tot[1] == rc.dropped && !memcmp(tot + 2, rload, sizeof rload),
	       "routed %llu dropped %llu", (unsigned long long)tot[0], (unsigned long long)tot[1]);
	snprintf(nm, sizeof nm, "%s: balance term equal summed over ranks", name);
	REPORT(d, nm, fabs(aux - rc.aux) <= TOL * fabs(rc.aux) + 1e-12, "%.9g vs %.9g", aux, rc.aux);
	if (capacity > 0) {
		snprintf(nm, sizeof nm, "%s: the case drops assignments", name);
		REPORT(d, nm, rc.dropped > 0, "nothing dropped");
	}
	if (idle) {
		snprintf(nm, sizeof nm, "%s: experts %d..%d receive no rows", name, E / 2, E - 1);
		REPORT(d, nm, rload[E - 1] == 0 && rload[E / 2] == 0, "load %llu", (unsigned long long)rload[E - 1]);
	}
	if (d->rank == 0)
		printf("# %s: relative errors y %.3g dx %.3g experts %.3g router/shared %.3g\n", name, ey_err, dx_err,
		       ew_err, rs_err);
out:
	moe_act_free(ra);
	moe_act_free(ea);
	moe_w_free(&rw);
	moe_w_free(&ew);
	moe_ep_free(ex);
}

int main(void)
{
	dist d;
	mvl_err err = {{0}};
	if (dist_init(&d, &err) != 0) {
		printf("not ok dist_init: %s\n", err.msg);
		return 1;
	}
	run_case(&d, "no capacity", 0, 1, 0, 0);
	run_case(&d, "capacity", 0.6f, 0, 0, 0);
	run_case(&d, "idle experts", 0.9f, 1, 1, 0);
	if (d.size > 1)
		run_case(&d, "a rank of padding only", 0.6f, 1, 0, 1);
	/* the refusal: experts that do not split over the ranks */
	moe_shape odd = {.d = D, .experts = d.size + 1, .top_k = 1, .expert_mlp = FE};
	moe_ep *bad = moe_ep_new(&d, &odd, &err);
	char want[96];
	snprintf(want, sizeof want, "%d experts do not split evenly over %d ranks", d.size + 1, d.size);
	if (d.size > 1)
		REPORT(&d, "uneven experts are refused", !bad && strstr(err.msg, want), "'%s'", err.msg);
	moe_ep_free(bad);
	int rc = check_done();
	dist_finalize(&d);
	return rc;
}
