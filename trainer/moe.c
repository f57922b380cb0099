/* moe.c: the MoE FFN of moe.h.  Rows are grouped by expert so that each
 * expert runs as three sgemms on its gathered rows, never per token. */
#include "moe.h"
#include "moe_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"


void moe_w_alloc(moe_w *w, int experts)
{
	const float **c = xcalloc((size_t)experts * 3, sizeof *c);
	float **g = xcalloc((size_t)experts * 3, sizeof *g);
	w->gate = c;
	w->up = c + experts;
	w->down = c + 2 * experts;
	w->dgate = g;
	w->dup = g + experts;
	w->ddown = g + 2 * experts;
}

void moe_w_free(moe_w *w)
{
	free(w->gate);
	free(w->dgate);
	w->gate = w->up = w->down = NULL;
	w->dgate = w->dup = w->ddown = NULL;
}

moe_act *moe_act_new(void)
{
	return xcalloc(1, sizeof(moe_act));
}

static void act_free_bufs(moe_act *a)
{
	free(a->s);
	free(a->choice);
	free(a->gate);
	free(a->kept);
	free(a->rseg);
	free(a->f);
	free(a->ofs);
	free(a->arow);
	free(a->aslot);
	free(a->xg);
	free(a->y);
	free(a->g);
	free(a->u);
	free(a->h);
	free(a->sg);
	free(a->su);
	free(a->sh);
}

void moe_act_free(moe_act *a)
{
	if (!a)
		return;
	act_free_bufs(a);
	free(a);
}

/* room for n rows and nseg segments of shape s; buffers only grow */
static void act_reserve(moe_act *a, const moe_shape *s, int n, int nseg)
{
	size_t N = (size_t)n + 1, A = N * (size_t)s->top_k, S = (size_t)nseg + 1;
	if (N > a->cap_n || S > a->cap_seg || a->E != s->experts || a->k != s->top_k) {
		act_free_bufs(a);
		size_t E = (size_t)s->experts, fe = (size_t)s->expert_mlp, fs = (size_t)s->shared_mlp + 1,
		       d = (size_t)s->d;
		a->s = xmalloc(N * E * sizeof *a->s);
		a->choice = xmalloc(A * sizeof *a->choice);
		a->gate = xmalloc(A * sizeof *a->gate);
		a->kept = xmalloc(A);
		a->rseg = xmalloc(N * sizeof *a->rseg);
		a->f = xmalloc(S * E * sizeof *a->f);
		a->ofs = xmalloc((E + 1) * sizeof *a->ofs);
		a->arow = xmalloc(A * sizeof *a->arow);
		a->aslot = xmalloc(A * sizeof *a->aslot);
		a->xg = xmalloc(A * d * sizeof *a->xg);
		a->y = xmalloc(A * d * sizeof *a->y);
		a->g = xmalloc(A * fe * sizeof *a->g);
		a->u = xmalloc(A * fe * sizeof *a->u);
		a->h = xmalloc(A * fe * sizeof *a->h);
		a->sg = xmalloc(N * fs * sizeof *a->sg);
		a->su = xmalloc(N * fs * sizeof *a->su);
		a->sh = xmalloc(N * fs * sizeof *a->sh);
		a->cap_n = N;
		a->cap_a = A;
		a->cap_seg = S;
		a->E = s->experts;
		a->k = s->top_k;
	}
}

static uint64_t mix(uint64_t h, uint64_t v)
{
	h ^= v + 0x9E3779B97F4A7C15ull + (h << 6) + (h >> 2);
	return h * 0xBF58476D1CE4E5B9ull;
}

/* ---------------------------------------------------------------------- */
/* forward */

int moe_route(const moe_shape *s, const moe_w *w, moe_act *a, float *y, const float *x, int n,
	      const attn_seg *seg, int nseg)
{
	int E = s->experts, k = s->top_k, d = s->d, fs = s->shared_mlp;
	act_reserve(a, s, n, nseg);
	a->n = n;
	a->nseg = nseg;
	/* the shared expert, on every row */
	if (fs > 0) {
		linear_fwd(a->sg, x, w->sgate, n, d, fs);
		linear_fwd(a->su, x, w->sup, n, d, fs);
		swiglu_fwd(a->sh, a->sg, a->su, (size_t)n * fs);
		linear_fwd(y, a->sh, w->sdown, n, fs, d);
	} else {
		memset(y, 0, (size_t)n * d * sizeof *y);
	}
	/* routing: scores, top-k by score + bias, gates */
	for (int t = 0; t < n; t++)
		a->rseg[t] = -1;
	int T = 0;
	for (int q = 0; q < nseg; q++)
		for (int t = seg[q].start; t < seg[q].start + seg[q].len; t++, T++)
			a->rseg[t] = q;
	linear_fwd(a->s, x, w->router, n, d, E);
	for (int t = 0; t < n; t++) {
		int *ch = a->choice + (size_t)t * k;
		if (a->rseg[t] < 0) {
			for (int j = 0; j < k; j++)
				ch[j] = -1;
			continue;
		}
		float *st = a->s + (size_t)t * E;
		for (int e = 0; e < E; e++)
			st[e] = 1.0f / (1.0f + expf(-st[e]));
		double sum = 0;
		for (int j = 0; j < k; j++) {
			int best = -1;
			for (int e = 0; e < E; e++) {
				int taken = 0;
				for (int i = 0; i < j; i++)
					taken |= ch[i] == e;
				if (!taken && (best < 0 || st[e] + w->bias[e] > st[best] + w->bias[best]))
					best = e;
			}
			ch[j] = best;
			sum += st[best];
		}
		for (int j = 0; j < k; j++)
			a->gate[(size_t)t * k + j] = (float)(s->routed_scale * st[ch[j]] / sum);
	}
	return T;
}

long long moe_cap(const moe_shape *s, long long T)
{
	if (s->capacity > 0)
		return (long long)ceil((double)s->capacity * (double)T * s->top_k / s->experts);
	return T * s->top_k + 1;
}

void moe_keep(const moe_shape *s, moe_act *a, long long cap, const long long *before, moe_count *cnt)
{
	int E = s->experts, k = s->top_k, n = a->n;
	long long *used = xcalloc((size_t)E, sizeof *used);
	uint64_t dg = cnt->digest;
	for (int t = 0; t < n; t++)
		for (int j = 0; j < k; j++) {
			size_t sl = (size_t)t * k + j;
			int e = a->choice[sl];
			if (e < 0)
				continue;
			a->kept[sl] = (before ? before[e] : 0) + used[e] < cap;
			used[e] += a->kept[sl];
			cnt->routed++;
			cnt->dropped += !a->kept[sl];
			if (cnt->load)
				cnt->load[e]++;
			dg = mix(dg, ((uint64_t)sl << 16) ^ ((uint64_t)e << 1) ^ a->kept[sl]);
		}
	cnt->digest = dg;
	a->ofs[0] = 0;
	for (int e = 0; e < E; e++)
		a->ofs[e + 1] = a->ofs[e] + (int)used[e];
	a->na = a->ofs[E];
	memset(used, 0, (size_t)E * sizeof *used);
	for (int t = 0; t < n; t++)
		for (int j = 0; j < k; j++) {
			size_t sl = (size_t)t * k + j;
			int e = a->choice[sl];
			if (e < 0 || !a->kept[sl])
				continue;
			int r = a->ofs[e] + (int)used[e]++;
			a->arow[r] = t;
			a->aslot[r] = (int)sl;
		}
	free(used);
}

void moe_gather(const moe_shape *s, moe_act *a, const float *x)
{
	int d = s->d;
	for (int r = 0; r < a->na; r++)
		memcpy(a->xg + (size_t)r * d, x + (size_t)a->arow[r] * d, (size_t)d * sizeof *a->xg);
}

void moe_expert_fwd(const moe_shape *s, const moe_w *w, int e, const float *xg, float *g, float *u, float *h,
		    float *ye, int ne)
{
	int d = s->d, fe = s->expert_mlp;
	linear_fwd(g, xg, w->gate[e], ne, d, fe);
	linear_fwd(u, xg, w->up[e], ne, d, fe);
	swiglu_fwd(h, g, u, (size_t)ne * fe);
	linear_fwd(ye, h, w->down[e], ne, fe, d);
}

void moe_combine(const moe_shape *s, const moe_act *a, float *y)
{
	int d = s->d;
	for (int r = 0; r < a->na; r++) {
		float gt = a->gate[a->aslot[r]];
		float *yt = y + (size_t)a->arow[r] * d;
		const float *ye = a->y + (size_t)r * d;
		for (int i = 0; i < d; i++)
			yt[i] += gt * ye[i];
	}
}

void moe_balance(const moe_shape *s, moe_act *a, const attn_seg *seg, int nseg, moe_count *cnt)
{
	int E = s->experts, k = s->top_k;
	if (s->balance_alpha <= 0)
		return;
	double aux = 0;
	for (int q = 0; q < nseg; q++) {
		float *f = a->f + (size_t)q * E;
		memset(f, 0, (size_t)E * sizeof *f);
		for (int t = seg[q].start; t < seg[q].start + seg[q].len; t++)
			for (int j = 0; j < k; j++)
				f[a->choice[(size_t)t * k + j]] += 1;
		for (int e = 0; e < E; e++)
			f[e] *= (float)E / ((float)k * (float)seg[q].len);
		for (int t = seg[q].start; t < seg[q].start + seg[q].len; t++) {
			const float *st = a->s + (size_t)t * E;
			double z = 0, dot = 0;
			for (int e = 0; e < E; e++) {
				z += st[e];
				dot += (double)f[e] * st[e];
			}
			aux += dot / z;
		}
	}
	cnt->aux += s->balance_alpha * aux;
}

void moe_fwd(const moe_shape *s, const moe_w *w, moe_act *a, float *y, const float *x, int n, const attn_seg *seg,
	     int nseg, moe_count *cnt)
{
	int E = s->experts, d = s->d, fe = s->expert_mlp;
	int T = moe_route(s, w, a, y, x, n, seg, nseg);
	moe_keep(s, a, moe_cap(s, T), NULL, cnt);
	moe_gather(s, a, x);
	for (int e = 0; e < E; e++) {
		int o = a->ofs[e], ne = a->ofs[e + 1] - o;
		if (ne)
			moe_expert_fwd(s, w, e, a->xg + (size_t)o * d, a->g + (size_t)o * fe, a->u + (size_t)o * fe,
				       a->h + (size_t)o * fe, a->y + (size_t)o * d, ne);
	}
	moe_combine(s, a, y);
	moe_balance(s, a, seg, nseg, cnt);
}

/* ---------------------------------------------------------------------- */
/* backward */

void moe_shared_bwd(const moe_shape *s, const moe_w *w, const moe_act *a, float *dx, const float *dy,
		    const float *x)
{
	int d = s->d, fs = s->shared_mlp, n = a->n;
	if (fs <= 0)
		return;
	float *dh = xcalloc((size_t)n * fs, sizeof *dh), *dgs = xcalloc((size_t)n * fs, sizeof *dgs),
	      *dus = xcalloc((size_t)n * fs, sizeof *dus);
	linear_bwd(dh, w->dsdown, dy, a->sh, w->sdown, n, fs, d);
	swiglu_bwd(dgs, dus, dh, a->sg, a->su, (size_t)n * fs);
	linear_bwd(dx, w->dsgate, dgs, x, w->sgate, n, d, fs);
	linear_bwd(dx, w->dsup, dus, x, w->sup, n, d, fs);
	free(dh);
	free(dgs);
	free(dus);
}

/* y_t += g y_e  ->  dy_e = g dy_t, dg = <dy_t, y_e> */
void moe_gate_grad(const moe_shape *s, const moe_act *a, const float *dy, float *dye, float *dgate)
{
	int d = s->d;
	for (int r = 0; r < a->na; r++) {
		const float *dyt = dy + (size_t)a->arow[r] * d, *ye = a->y + (size_t)r * d;
		float gt = a->gate[a->aslot[r]];
		double dot = 0;
		for (int i = 0; i < d; i++) {
			dye[(size_t)r * d + i] = gt * dyt[i];
			dot += (double)dyt[i] * ye[i];
		}
		dgate[a->aslot[r]] = (float)dot;
	}
}

void moe_expert_bwd(const moe_shape *s, const moe_w *w, int e, const float *dye, const float *xg,
		    const float *g, const float *u, const float *h, float *dxe, int ne, float *scratch)
{
	int d = s->d, fe = s->expert_mlp;
	size_t m = (size_t)ne * fe;
	float *dh = scratch, *dg = scratch + m, *du = scratch + 2 * m;
	memset(scratch, 0, 3 * m * sizeof *scratch);
	linear_bwd(dh, w->ddown ? w->ddown[e] : NULL, dye, h, w->down[e], ne, fe, d);
	swiglu_bwd(dg, du, dh, g, u, m);
	memset(dxe, 0, (size_t)ne * d * sizeof *dxe);
	linear_bwd(dxe, w->dgate ? w->dgate[e] : NULL, dg, xg, w->gate[e], ne, d, fe);
	linear_bwd(dxe, w->dup ? w->dup[e] : NULL, du, xg, w->up[e], ne, d, fe);
}

/* g_j = rs s_j / S  ->  ds_j = rs / S (dg_j - sum_i dg_i s_i / S);
 * the balance term: p = s / Z  ->  ds_e += (dp_e - sum_i dp_i p_i) / Z, dp = alpha scale f */
void moe_router_bwd(const moe_shape *s, const moe_w *w, const moe_act *a, float *dx, const float *x,
		    const float *dgate, float scale)
{
	int E = s->experts, k = s->top_k, d = s->d, n = a->n;
	float *dl = xcalloc((size_t)n * E + 1, sizeof *dl);
	for (int t = 0; t < n; t++) {
		if (a->rseg[t] < 0)
			continue;
		const float *st = a->s + (size_t)t * E;
		const int *ch = a->choice + (size_t)t * k;
		const float *dgt = dgate + (size_t)t * k;
		float *dst = dl + (size_t)t * E;
		double S = 0, q = 0;
		for (int j = 0; j < k; j++)
			S += st[ch[j]];
		for (int j = 0; j < k; j++)
			q += (double)dgt[j] * st[ch[j]];
		q /= S;
		for (int j = 0; j < k; j++)
			dst[ch[j]] += (float)(s->routed_scale / S * (dgt[j] - q));
		if (s->balance_alpha > 0) {
			const float *f = a->f + (size_t)a->rseg[t] * E;
			double z = 0, wp = 0, c = (double)s->balance_alpha * scale;
			for (int e = 0; e < E; e++)
				z += st[e];
			for (int e = 0; e < E; e++)
				wp += c * f[e] * st[e] / z;
			for (int e = 0; e < E; e++)
				dst[e] += (float)((c * f[e] - wp) / z);
		}
		for (int e = 0; e < E; e++)
			dst[e] *= st[e] * (1 - st[e]); /* through the sigmoid */
	}
	linear_bwd(dx, w->drouter, dl, x, w->router, n, d, E);
	free(dl);
}

void moe_bwd(const moe_shape *s, const moe_w *w, const moe_act *a, float *dx, const float *dy, const float *x,
	     float scale)
{
	int E = s->experts, k = s->top_k, d = s->d, fe = s->expert_mlp, n = a->n;
	moe_shared_bwd(s, w, a, dx, dy, x);
	float *dgate = xcalloc((size_t)n * k + 1, sizeof *dgate);
	float *dye = xmalloc(((size_t)a->na * d + 1) * sizeof *dye);
	moe_gate_grad(s, a, dy, dye, dgate);
	int maxne = 0;
	for (int e = 0; e < E; e++)
		if (a->ofs[e + 1] - a->ofs[e] > maxne)
			maxne = a->ofs[e + 1] - a->ofs[e];
	float *dxe = xmalloc(((size_t)maxne * d + 1) * sizeof *dxe);
	float *scratch = xmalloc((3 * (size_t)maxne * fe + 1) * sizeof *scratch);
	for (int e = 0; e < E; e++) {
		int o = a->ofs[e], ne = a->ofs[e + 1] - o;
		if (!ne)
			continue;
		moe_expert_bwd(s, w, e, dye + (size_t)o * d, a->xg + (size_t)o * d, a->g + (size_t)o * fe,
			       a->u + (size_t)o * fe, a->h + (size_t)o * fe, dxe, ne, scratch);
		for (int r = 0; r < ne; r++) {
			float *dxt = dx + (size_t)a->arow[o + r] * d;
			for (int i = 0; i < d; i++)
				dxt[i] += dxe[(size_t)r * d + i];
		}
	}
	free(dye);
	free(dxe);
	free(scratch);
	moe_router_bwd(s, w, a, dx, x, dgate, scale);
	free(dgate);
}

void moe_bias_update(float *bias, const uint64_t *load, int experts, float gamma)
{
	double mean = 0;
	for (int e = 0; e < experts; e++)
		mean += (double)load[e];
	mean /= experts;
	for (int e = 0; e < experts; e++)
		bias[e] += (double)load[e] < mean ? gamma : (double)load[e] > mean ? -gamma : 0.0f;
}
