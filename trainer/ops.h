/* ops.h: the trainer's kernels, forward and backward, float32.
 *
 * Arrays are row-major.  A weight W of a linear layer is [out, in], as
 * PyTorch stores nn.Linear.weight, so y = x W^T.  Every matmul goes to
 * OpenBLAS sgemm (forward and both backward products); the rest are loops
 * with OpenMP.  Backward functions ACCUMULATE into their gradient outputs
 * (dx += ..., dW += ...), so a tensor used twice sums its gradients, and
 * any gradient output may be NULL (a frozen weight computes nothing).
 * Each kernel has a finite-difference check in tests/unit/test_ops.c.
 */
#ifndef MVL_OPS_H
#define MVL_OPS_H

#include <stddef.h>
#include <stdint.h>

/* ---- linear: y[n,out] = x[n,in] W[out,in]^T ---- */
void linear_fwd(float *y, const float *x, const float *W, int n, int in, int out);
/* dx[n,in] += dy W ; dW[out,in] += dy^T x */
void linear_bwd(float *dx, float *dW, const float *dy, const float *x, const float *W, int n, int in, int out);

/* ---- RMSNorm over the last dimension d: y = x / sqrt(mean(x^2) + eps) * w ----
 * rstd[n] receives 1 / sqrt(mean(x^2) + eps) for the backward. */
void rmsnorm_fwd(float *y, float *rstd, const float *x, const float *w, int n, int d, float eps);
/* dx[n,d] += ..., dw[d] += ... */
void rmsnorm_bwd(float *dx, float *dw, const float *dy, const float *x, const float *w, const float *rstd, int n,
		 int d);

/* ---- SwiGLU: h = silu(g) * u, silu(z) = z * sigmoid(z) ---- */
void swiglu_fwd(float *h, const float *g, const float *u, size_t n);
void swiglu_bwd(float *dg, float *du, const float *dh, const float *g, const float *u, size_t n);

/* ---- GELU, the exact (erf) form: y = x/2 (1 + erf(x / sqrt 2)) ---- */
void gelu_fwd(float *y, const float *x, size_t n);
void gelu_bwd(float *dx, const float *dy, const float *x, size_t n);

/* ---- rotary position embedding, "rotate half" convention ----
 * x is [n, heads, dh]; for row r the angles are ang[r * dh/2 + k],
 * k < dh/2, and with x1 = x[..., :dh/2], x2 = x[..., dh/2:]:
 *     x1' = x1 cos - x2 sin,   x2' = x2 cos + x1 sin
 * (Qwen2/LLaMA's apply_rotary_pos_emb with emb = cat(freqs, freqs)).
 * In place.  The backward is the inverse rotation, also in place. */
void rope_fwd(float *x, const float *ang, int n, int heads, int dh);
void rope_bwd(float *dx, const float *ang, int n, int heads, int dh);
/* rope_angles_1d() : ang[r * dh/2 + k] = pos[r] * theta^(-2k/dh). */
void rope_angles_1d(float *ang, const uint32_t *pos, int n, int dh, float theta);
/* rope_angles_2d() : for image patches (Qwen2-VL's vision rotary): with
 * q = dh/4 frequencies f_k = theta^(-2k/(dh/2)), k < q:
 *     ang[r*dh/2 + k] = row[r] f_k,  ang[r*dh/2 + q + k] = col[r] f_k.
 * dh must be a multiple of 4. */
void rope_angles_2d(float *ang, const int *row, const int *col, int n, int dh, float theta);

/* ---- attention over segments ----
 * Rows [start, start+len) of a segment attend only to rows of the same
 * segment: all of them (causal = 0, image patches) or those at or before
 * themselves (causal = 1, text).  Rows in no segment are left alone.
 * q [n, H*dh], k and v [n, Hkv*dh] (grouped-query: query head h reads
 * kv head h / (H/Hkv)), o [n, H*dh]; scale 1/sqrt(dh).  lse[H*n] saves
 * each row's log-sum-exp (index h*n + r) so the backward recomputes the
 * probabilities instead of storing them.  Work per segment is len^2, never
 * n^2: packing costs nothing across samples. */
typedef struct attn_seg {
	int start, len, causal;
} attn_seg;
void attn_fwd(float *o, float *lse, const float *q, const float *k, const float *v, const attn_seg *seg, int nseg,
	      int n, int H, int Hkv, int dh);
/* dq += ..., dk += ..., dv += ... */
void attn_bwd(float *dq, float *dk, float *dv, const float *dout, const float *o, const float *lse, const float *q,
	      const float *k, const float *v, const attn_seg *seg, int nseg, int n, int H, int Hkv, int dh);

/* ---- embedding ---- */
void embed_fwd(float *x, const float *E, const uint32_t *ids, int n, int d);
/* dE[ids[r]] += dx[r] */
void embed_bwd(float *dE, const float *dx, const uint32_t *ids, int n, int d);

/* ---- cross-entropy, fused forward and backward, on a block of rows ----
 * Rows with target[r] < 0 are ignored.  Returns the sum over the other
 * rows of -log softmax(logits[r])[target[r]] (in double); overwrites
 * logits[r] with scale * (softmax - onehot) for those rows and zero for
 * ignored rows (the gradient of scale * sum). */
double xent_fwd_bwd(float *logits, const int32_t *target, int n, int V, float scale);

/* ---- AdamW, decoupled weight decay (PyTorch's torch.optim.AdamW) ----
 * step t >= 1; m and v are updated in place. */
void adamw_update(float *p, const float *g, float *m, float *v, size_t n, float lr, float beta1, float beta2,
		  float eps, float weight_decay, int64_t t);

/* sum of squares (double), for global grad-norm clipping */
double sumsq(const float *x, size_t n);
/* x *= s */
void scale_inplace(float *x, size_t n, float s);

#endif
