/* ops.c: the trainer's CPU kernels (see ops.h): matmuls on OpenBLAS sgemm,
 * everything else plain loops under OpenMP.  Every parallel loop splits its
 * work so that each output element is computed by one thread in a fixed
 * order: results do not depend on the thread count (the two sums reduced
 * across threads, sumsq and the xent loss, differ only by reassociation).
 */
#include "ops.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* loops over fewer elements than this run on one thread */
#define PAR_MIN 16384
/* columns per task where a gradient sums over rows (dw, dE) */
#define COL_CHUNK 64
/* query rows per attention block: scratch is ATTN_BQ x len, never len x len */
#define ATTN_BQ 64

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p) {
		fprintf(stderr, "mvl: out of memory (%zu bytes in the trainer's kernels)\n", n);
		abort();
	}
	return p;
}

/* ====================================================================== */
/* linear */

/* x (n,in), W (out,in) -> y (n,out) */
void linear_fwd(float *y, const float *x, const float *W, int n, int in, int out)
{
	if (n <= 0 || out <= 0)
		return;
	if (in <= 0) {
		memset(y, 0, (size_t)n * out * sizeof *y);
		return;
	}
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out, in, 1.0f, x, in, W, in, 0.0f, y, out);
}

/* dy (n,out) -> dx (n,in) += dy W, dW (out,in) += dy^T x */
void linear_bwd(float *dx, float *dW, const float *dy, const float *x, const float *W, int n, int in, int out)
{
	if (n <= 0 || in <= 0 || out <= 0)
		return;
	if (dx)
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, in, out, 1.0f, dy, out, W, in, 1.0f, dx,
			    in);
	if (dW)
		cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, n, 1.0f, dy, out, x, in, 1.0f, dW,
			    in);
}

/* ====================================================================== */
/* RMSNorm */

/* x (n,d), w (d) -> y (n,d), rstd (n) */
void rmsnorm_fwd(float *y, float *rstd, const float *x, const float *w, int n, int d, float eps)
{
#pragma omp parallel for schedule(static) if ((size_t)n * d >= PAR_MIN)
	for (int r = 0; r < n; r++) {
		const float *xr = x + (size_t)r * d;
		float *yr = y + (size_t)r * d;
		double ss = 0;
		for (int j = 0; j < d; j++)
			ss += (double)xr[j] * xr[j];
		/* as Qwen2RMSNorm: w * (x * rsqrt(mean(x^2) + eps)) */
		float rs = (float)(1.0 / sqrt(ss / d + (double)eps));
		rstd[r] = rs;
		for (int j = 0; j < d; j++)
			yr[j] = w[j] * (xr[j] * rs);
	}
}

/* dy (n,d) -> dx (n,d) += ..., dw (d) += sum over rows of dy * x * rstd */
void rmsnorm_bwd(float *dx, float *dw, const float *dy, const float *x, const float *w, const float *rstd, int n,
		 int d)
{
	if (n <= 0 || d <= 0)
		return;
	if (dx) {
		/* dx_k = r w_k dy_k - r^3 x_k / d * sum_j dy_j w_j x_j */
#pragma omp parallel for schedule(static) if ((size_t)n * d >= PAR_MIN)
		for (int r = 0; r < n; r++) {
			const float *xr = x + (size_t)r * d, *dyr = dy + (size_t)r * d;
			float *dxr = dx + (size_t)r * d;
			double dot = 0;
			for (int j = 0; j < d; j++)
				dot += (double)dyr[j] * w[j] * xr[j];
			float rs = rstd[r];
			float c = (float)(dot * rs * rs * rs / d);
			for (int j = 0; j < d; j++)
				dxr[j] += rs * w[j] * dyr[j] - c * xr[j];
		}
	}
	if (dw) {
		/* a sum over rows: split the columns, not the rows, so no two
		 * threads write one weight */
		int nchunk = (d + COL_CHUNK - 1) / COL_CHUNK;
#pragma omp parallel for schedule(static) if ((size_t)n * d >= PAR_MIN)
		for (int c = 0; c < nchunk; c++) {
			int j0 = c * COL_CHUNK, j1 = j0 + COL_CHUNK < d ? j0 + COL_CHUNK : d;
			double acc[COL_CHUNK] = {0};
			for (int r = 0; r < n; r++) {
				const float *xr = x + (size_t)r * d, *dyr = dy + (size_t)r * d;
				float rs = rstd[r];
				for (int j = j0; j < j1; j++)
					acc[j - j0] += (double)dyr[j] * (xr[j] * rs);
			}
			for (int j = j0; j < j1; j++)
				dw[j] += (float)acc[j - j0];
		}
	}
}

/* ====================================================================== */
/* SwiGLU, GELU */

/* g, u (n) -> h (n) */
void swiglu_fwd(float *h, const float *g, const float *u, size_t n)
{
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
	for (size_t i = 0; i < n; i++) {
		float s = 1.0f / (1.0f + expf(-g[i]));
		h[i] = g[i] * s * u[i];
	}
}

/* dh (n) -> dg += dh u silu'(g), du += dh silu(g) */
void swiglu_bwd(float *dg, float *du, const float *dh, const float *g, const float *u, size_t n)
{
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
	for (size_t i = 0; i < n; i++) {
		float s = 1.0f / (1.0f + expf(-g[i]));
		float silu = g[i] * s;
		if (dg)
			dg[i] += dh[i] * u[i] * (s + silu * (1.0f - s));
		if (du)
			du[i] += dh[i] * silu;
	}
}

/* x (n) -> y (n) */
void gelu_fwd(float *y, const float *x, size_t n)
{
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
	for (size_t i = 0; i < n; i++)
		y[i] = 0.5f * x[i] * (1.0f + erff(x[i] * (float)M_SQRT1_2));
}

/* dy (n) -> dx += dy (Phi(x) + x phi(x)) */
void gelu_bwd(float *dx, const float *dy, const float *x, size_t n)
{
	if (!dx)
		return;
	const float inv_sqrt_2pi = (float)(0.5 * M_2_SQRTPI * M_SQRT1_2);
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
	for (size_t i = 0; i < n; i++) {
		float cdf = 0.5f * (1.0f + erff(x[i] * (float)M_SQRT1_2));
		float pdf = inv_sqrt_2pi * expf(-0.5f * x[i] * x[i]);
		dx[i] += dy[i] * (cdf + x[i] * pdf);
	}
}

/* ====================================================================== */
/* rotary position embedding */

/* rotates every head of rows [0, n) by +ang (dir 1) or -ang (dir -1) */
static void rope_rotate(float *x, const float *ang, int n, int heads, int dh, float dir)
{
	int half = dh / 2;
#pragma omp parallel for schedule(static) if ((size_t)n * heads * dh >= PAR_MIN)
	for (int r = 0; r < n; r++) {
		float *xr = x + (size_t)r * heads * dh;
		const float *ar = ang + (size_t)r * half;
		for (int k = 0; k < half; k++) {
			float c = cosf(ar[k]), s = dir * sinf(ar[k]);
			for (int h = 0; h < heads; h++) {
				float *p = xr + (size_t)h * dh;
				float x1 = p[k], x2 = p[k + half];
				p[k] = x1 * c - x2 * s;
				p[k + half] = x2 * c + x1 * s;
			}
		}
	}
}

/* x (n,heads,dh), ang (n,dh/2) -> x rotated in place */
void rope_fwd(float *x, const float *ang, int n, int heads, int dh)
{
	rope_rotate(x, ang, n, heads, dh, 1.0f);
}

/* the rotation is orthogonal: its transpose, the gradient, is its inverse */
void rope_bwd(float *dx, const float *ang, int n, int heads, int dh)
{
	if (dx)
		rope_rotate(dx, ang, n, heads, dh, -1.0f);
}

/* inverse frequencies as HF computes them (1 / theta^(2k/dim)), rounded to
 * float, so angles match PyTorch's float products */
static float inv_freq(float theta, int k, int dim)
{
	return (float)(1.0 / pow((double)theta, 2.0 * k / dim));
}

/* pos (n) -> ang (n, dh/2) */
void rope_angles_1d(float *ang, const uint32_t *pos, int n, int dh, float theta)
{
	int half = dh / 2;
	for (int r = 0; r < n; r++)
		for (int k = 0; k < half; k++)
			ang[(size_t)r * half + k] = (float)pos[r] * inv_freq(theta, k, dh);
}

/* row, col (n) -> ang (n, dh/2): dh/4 row angles, then dh/4 column angles */
void rope_angles_2d(float *ang, const int *row, const int *col, int n, int dh, float theta)
{
	int half = dh / 2, q = dh / 4;
	for (int r = 0; r < n; r++)
		for (int k = 0; k < q; k++) {
			float f = inv_freq(theta, k, half);
			ang[(size_t)r * half + k] = (float)row[r] * f;
			ang[(size_t)r * half + q + k] = (float)col[r] * f;
		}
}

/* ====================================================================== */
/* attention over segments */

/* A pthread build of OpenBLAS would start its own threads inside each of
 * ours (20 to 50 times slower on 2 cores): keep it on one thread while an
 * OpenMP team calls it, and give it its threads back after.  An OpenMP
 * build goes single-threaded inside a parallel region by itself, and its
 * openblas_set_num_threads() would also set our team's size: leave it be.
 * @return what to pass to blas_team_end(). */
static int blas_team_begin(int ntasks)
{
#ifdef _OPENMP
	if (openblas_get_parallel() != 1) /* 1: pthreads */
		return 0;
	int nb = openblas_get_num_threads();
	if (nb > 1 && ntasks > 1 && omp_get_max_threads() > 1 && !omp_in_parallel()) {
		openblas_set_num_threads(1);
		return nb;
	}
#endif
	(void)ntasks;
	return 0;
}

static void blas_team_end(int nb)
{
	if (nb > 1)
		openblas_set_num_threads(nb);
}

static int max_seg_len(const attn_seg *seg, int nseg)
{
	int m = 0;
	for (int s = 0; s < nseg; s++)
		if (seg[s].len > m)
			m = seg[s].len;
	return m;
}

static int nthreads_max(void)
{
#ifdef _OPENMP
	return omp_get_max_threads();
#else
	return 1;
#endif
}

static int thread_id(void)
{
#ifdef _OPENMP
	return omp_get_thread_num();
#else
	return 0;
#endif
}

/* one task: segment s, query head h, query rows [i0, i0 + ATTN_BQ) of it */
static void attn_fwd_block(float *o, float *lse, const float *q, const float *k, const float *v,
			   const attn_seg *sg, int h, int i0, int n, int H, int Hkv, int dh, float *S)
{
	int len = sg->len, g = h / (H / Hkv);
	int i1 = i0 + ATTN_BQ < len ? i0 + ATTN_BQ : len, bq = i1 - i0;
	int kend = sg->causal ? i1 : len; /* keys any row of the block sees */
	int ldq = H * dh, ldk = Hkv * dh;
	const float *Q = q + (size_t)(sg->start + i0) * ldq + (size_t)h * dh;
	const float *K = k + (size_t)sg->start * ldk + (size_t)g * dh;
	const float *V = v + (size_t)sg->start * ldk + (size_t)g * dh;
	float *O = o + (size_t)(sg->start + i0) * ldq + (size_t)h * dh;
	float scale = 1.0f / sqrtf((float)dh);

	/* S (bq,kend) = scale Q K^T */
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, bq, kend, dh, scale, Q, ldq, K, ldk, 0.0f, S, kend);
	for (int ii = 0; ii < bq; ii++) {
		float *Sr = S + (size_t)ii * kend;
		int jmax = sg->causal ? i0 + ii + 1 : kend;
		float m = -INFINITY;
		for (int j = 0; j < jmax; j++)
			m = Sr[j] > m ? Sr[j] : m;
		float sum = 0;
		for (int j = 0; j < jmax; j++) {
			Sr[j] = expf(Sr[j] - m);
			sum += Sr[j];
		}
		float inv = 1.0f / sum;
		for (int j = 0; j < jmax; j++)
			Sr[j] *= inv;
		for (int j = jmax; j < kend; j++)
			Sr[j] = 0;
		lse[(size_t)h * n + sg->start + i0 + ii] = m + logf(sum);
	}
	/* O (bq,dh) = P V */
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, bq, dh, kend, 1.0f, S, kend, V, ldk, 0.0f, O, ldq);
}

/* q (n,H*dh), k v (n,Hkv*dh) -> o (n,H*dh), lse (H,n) */
void attn_fwd(float *o, float *lse, const float *q, const float *k, const float *v, const attn_seg *seg, int nseg,
	      int n, int H, int Hkv, int dh)
{
	if (nseg <= 0 || H <= 0 || Hkv <= 0 || dh <= 0)
		return;
	/* tasks: (segment, head, query block), numbered through an offset table */
	int *first = xmalloc(((size_t)nseg + 1) * sizeof *first);
	first[0] = 0;
	for (int s = 0; s < nseg; s++) {
		int nb = seg[s].len > 0 ? (seg[s].len + ATTN_BQ - 1) / ATTN_BQ : 0;
		first[s + 1] = first[s] + H * nb;
	}
	int ntask = first[nseg], maxlen = max_seg_len(seg, nseg);
	if (ntask == 0) {
		free(first);
		return;
	}
	size_t per = (size_t)ATTN_BQ * maxlen;
	float *scratch = xmalloc((size_t)nthreads_max() * per * sizeof *scratch);
	int nb = blas_team_begin(ntask);
#pragma omp parallel for schedule(dynamic, 1) if (ntask > 1)
	for (int t = 0; t < ntask; t++) {
		int s = 0;
		while (first[s + 1] <= t)
			s++;
		int nblk = (seg[s].len + ATTN_BQ - 1) / ATTN_BQ;
		int h = (t - first[s]) / nblk, b = (t - first[s]) % nblk;
		attn_fwd_block(o, lse, q, k, v, &seg[s], h, b * ATTN_BQ, n, H, Hkv, dh,
			       scratch + (size_t)thread_id() * per);
	}
	blas_team_end(nb);
	free(scratch);
	free(first);
}

/* one task: segment sg, kv head g with all its query heads, so that no two
 * tasks write the same rows of dk and dv */
static void attn_bwd_group(float *dq, float *dk, float *dv, const float *dout, const float *o, const float *lse,
			   const float *q, const float *k, const float *v, const attn_seg *sg, int g, int n, int H,
			   int Hkv, int dh, float *P, float *dP)
{
	int len = sg->len, rep = H / Hkv, ldq = H * dh, ldk = Hkv * dh;
	float scale = 1.0f / sqrtf((float)dh);
	const float *K = k + (size_t)sg->start * ldk + (size_t)g * dh;
	const float *V = v + (size_t)sg->start * ldk + (size_t)g * dh;
	float *dK = dk ? dk + (size_t)sg->start * ldk + (size_t)g * dh : NULL;
	float *dV = dv ? dv + (size_t)sg->start * ldk + (size_t)g * dh : NULL;

	for (int h = g * rep; h < (g + 1) * rep; h++) {
		for (int i0 = 0; i0 < len; i0 += ATTN_BQ) {
			int i1 = i0 + ATTN_BQ < len ? i0 + ATTN_BQ : len, bq = i1 - i0;
			int kend = sg->causal ? i1 : len;
			size_t row0 = (size_t)(sg->start + i0) * ldq + (size_t)h * dh;
			const float *Q = q + row0, *O = o + row0, *dO = dout + row0;
			const float *L = lse + (size_t)h * n + sg->start + i0;

			/* P (bq,kend) = exp(scale Q K^T - lse), recomputed */
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, bq, kend, dh, scale, Q, ldq, K, ldk, 0.0f,
				    P, kend);
			for (int ii = 0; ii < bq; ii++) {
				float *Pr = P + (size_t)ii * kend;
				int jmax = sg->causal ? i0 + ii + 1 : kend;
				for (int j = 0; j < jmax; j++)
					Pr[j] = expf(Pr[j] - L[ii]);
				for (int j = jmax; j < kend; j++)
					Pr[j] = 0;
			}
			/* dV (kend,dh) += P^T dO */
			if (dV)
				cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, kend, dh, bq, 1.0f, P, kend, dO,
					    ldq, 1.0f, dV, ldk);
			if (!dq && !dK)
				continue;
			/* dP (bq,kend) = dO V^T */
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, bq, kend, dh, 1.0f, dO, ldq, V, ldk, 0.0f,
				    dP, kend);
			/* dS = P * (dP - rowsum(dO * O)), into dP */
			for (int ii = 0; ii < bq; ii++) {
				const float *dOr = dO + (size_t)ii * ldq, *Or = O + (size_t)ii * ldq;
				float D = 0;
				for (int c = 0; c < dh; c++)
					D += dOr[c] * Or[c];
				float *Pr = P + (size_t)ii * kend, *dPr = dP + (size_t)ii * kend;
				for (int j = 0; j < kend; j++)
					dPr[j] = Pr[j] * (dPr[j] - D);
			}
			/* dQ (bq,dh) += scale dS K */
			if (dq)
				cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, bq, dh, kend, scale, dP, kend, K,
					    ldk, 1.0f, dq + row0, ldq);
			/* dK (kend,dh) += scale dS^T Q */
			if (dK)
				cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, kend, dh, bq, scale, dP, kend, Q,
					    ldq, 1.0f, dK, ldk);
		}
	}
}

void attn_bwd(float *dq, float *dk, float *dv, const float *dout, const float *o, const float *lse, const float *q,
	      const float *k, const float *v, const attn_seg *seg, int nseg, int n, int H, int Hkv, int dh)
{
	if ((!dq && !dk && !dv) || nseg <= 0 || H <= 0 || Hkv <= 0 || dh <= 0)
		return;
	int ntask = nseg * Hkv, maxlen = max_seg_len(seg, nseg);
	if (maxlen <= 0)
		return;
	size_t per = (size_t)ATTN_BQ * maxlen;
	float *scratch = xmalloc((size_t)nthreads_max() * 2 * per * sizeof *scratch);
	int nb = blas_team_begin(ntask);
#pragma omp parallel for schedule(dynamic, 1) if (ntask > 1)
	for (int t = 0; t < ntask; t++) {
		const attn_seg *sg = &seg[t / Hkv];
		if (sg->len <= 0)
			continue;
		float *P = scratch + (size_t)thread_id() * 2 * per;
		attn_bwd_group(dq, dk, dv, dout, o, lse, q, k, v, sg, t % Hkv, n, H, Hkv, dh, P, P + per);
	}
	blas_team_end(nb);
	free(scratch);
}

/* ====================================================================== */
/* embedding */

/* E (V,d), ids (n) -> x (n,d) */
void embed_fwd(float *x, const float *E, const uint32_t *ids, int n, int d)
{
#pragma omp parallel for schedule(static) if ((size_t)n * d >= PAR_MIN)
	for (int r = 0; r < n; r++)
		memcpy(x + (size_t)r * d, E + (size_t)ids[r] * d, (size_t)d * sizeof *x);
}

/* a repeated id sums its rows: split the columns so that no two threads
 * write one element */
void embed_bwd(float *dE, const float *dx, const uint32_t *ids, int n, int d)
{
	if (!dE || n <= 0 || d <= 0)
		return;
	int nchunk = (d + COL_CHUNK - 1) / COL_CHUNK;
#pragma omp parallel for schedule(static) if ((size_t)n * d >= PAR_MIN)
	for (int c = 0; c < nchunk; c++) {
		int j0 = c * COL_CHUNK, j1 = j0 + COL_CHUNK < d ? j0 + COL_CHUNK : d;
		for (int r = 0; r < n; r++) {
			float *e = dE + (size_t)ids[r] * d;
			const float *g = dx + (size_t)r * d;
			for (int j = j0; j < j1; j++)
				e[j] += g[j];
		}
	}
}

/* ====================================================================== */
/* cross-entropy */

/* logits (n,V), target (n) -> loss summed over kept rows; logits <- dloss */
double xent_fwd_bwd(float *logits, const int32_t *target, int n, int V, float scale)
{
	double loss = 0;
#pragma omp parallel for schedule(static) reduction(+ : loss) if ((size_t)n * V >= PAR_MIN)
	for (int r = 0; r < n; r++) {
		float *z = logits + (size_t)r * V;
		int32_t t = target[r];
		if (t < 0 || t >= V) {
			/* ignored; a target past the vocabulary is a caller's bug
			 * that must show, not a silently ignored row */
			memset(z, 0, (size_t)V * sizeof *z);
			if (t >= V)
				loss += NAN;
			continue;
		}
		float m = -INFINITY, zt = z[t];
		for (int j = 0; j < V; j++)
			m = z[j] > m ? z[j] : m;
		double sum = 0;
		for (int j = 0; j < V; j++) {
			z[j] = expf(z[j] - m);
			sum += z[j];
		}
		/* -log softmax[t] = log(sum exp(z - m)) + m - z[t] */
		loss += log(sum) + ((double)m - zt);
		float inv = (float)(scale / sum);
		for (int j = 0; j < V; j++)
			z[j] *= inv;
		z[t] -= scale;
	}
	return loss;
}

/* ====================================================================== */
/* AdamW */

/* torch.optim.AdamW's single-tensor step, operation for operation: the
 * scalars are Python floats (double) rounded once as PyTorch rounds them */
void adamw_update(float *p, const float *g, float *m, float *v, size_t n, float lr, float beta1, float beta2,
		  float eps, float weight_decay, int64_t t)
{
	float decay = (float)(1.0 - (double)lr * weight_decay);
	double bc1 = 1.0 - pow(beta1, (double)t), bc2 = 1.0 - pow(beta2, (double)t);
	float step = (float)(-(double)lr / bc1), bc2_sqrt = (float)sqrt(bc2);
	float w1 = (float)(1.0 - beta1), w2 = (float)(1.0 - beta2);
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
	for (size_t i = 0; i < n; i++) {
		p[i] *= decay;
		m[i] += w1 * (g[i] - m[i]); /* lerp(m, g, 1 - beta1) */
		v[i] = v[i] * beta2 + w2 * g[i] * g[i];
		float denom = sqrtf(v[i]) / bc2_sqrt + eps;
		p[i] += step * (m[i] / denom);
	}
}

/* ====================================================================== */
/* gradient norm */

double sumsq(const float *x, size_t n)
{
	double s = 0;
#pragma omp parallel for schedule(static) reduction(+ : s) if (n >= PAR_MIN)
	for (size_t i = 0; i < n; i++)
		s += (double)x[i] * x[i];
	return s;
}

void scale_inplace(float *x, size_t n, float s)
{
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
	for (size_t i = 0; i < n; i++)
		x[i] *= s;
}
