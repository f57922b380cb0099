/* moe.h: the mixture-of-experts FFN of an LLM layer (DeepSeek-V3 style),
 * forward and backward on a block of rows.
 *
 * For a row x [d] in a segment (rows in no segment, padding, take the
 * shared expert only and count nowhere):
 *     s     = sigmoid(x W_router^T)                      [E] scores
 *     C     = the top_k experts by s + bias (ties: the lower index);
 *             bias is a selection-only buffer, it never weights anything
 *     g_j   = routed_scale * s_j / sum_{i in C} s_i      for j in C
 *     y     = shared(x) + sum_{j in C, kept} g_j expert_j(x)
 * where shared and every expert are SwiGLU FFNs, down(silu(gate x) * up x),
 * of intermediate sizes shared_mlp (0: no shared expert) and expert_mlp.
 *
 * Capacity.  With capacity c > 0 each expert takes at most
 * ceil(c * T * top_k / E) of the T routed rows of the call, first come
 * first served in row order (then slot order within a row); an assignment
 * over that is dropped: its expert adds nothing to the row (the other
 * gates are not renormalized) and it is counted.
 *
 * Balance loss (DeepSeek-V3's sequence-wise auxiliary loss), per segment
 * of T rows: f_i = E / (top_k T) * (rows of the segment that chose i,
 * dropped or not), p_t,i = s_t,i / sum_j s_t,j, and the term
 *     aux = balance_alpha * sum_t sum_i f_i p_t,i  over the segment's rows
 * = balance_alpha * T * sum_i f_i P_i: DeepSeek's per-sequence loss,
 * weighted by the sequence's length so that it sums over tokens like the
 * cross-entropy does.  f is a count (no gradient); p carries one.
 *
 * The backward differentiates y and scale * aux: through the gates g
 * into the scores and the router (the top-k choice itself is not
 * differentiated), through each kept expert, and through the shared one.
 * Every matmul is one sgemm per expert on its gathered rows.
 *
 * moe_ep.h runs the same layer with the experts spread over MPI ranks.
 */
#ifndef MVL_MOE_H
#define MVL_MOE_H

#include <stdint.h>

#include "ops.h"

typedef struct moe_shape {
	int d;                        /* model width */
	int experts, top_k, expert_mlp, shared_mlp;
	float routed_scale, capacity, balance_alpha;
} moe_shape;

/* weights [out, in] as model.h names them; gradient pointers may be NULL
 * (a frozen layer): nothing is accumulated there */
typedef struct moe_w {
	const float *router;          /* [E, d] mlp.gate.weight */
	const float *bias;            /* [E] mlp.gate.e_score_correction_bias */
	const float *sgate, *sup, *sdown; /* shared_experts.*: [fs,d] [fs,d] [d,fs] */
	const float **gate, **up, **down; /* [E] each: experts.J.*: [fe,d] [fe,d] [d,fe] */
	float *drouter, *dsgate, *dsup, *dsdown;
	float **dgate, **dup, **ddown; /* [E] each, or NULL */
} moe_w;

/* moe_w_alloc() / moe_w_free() : the per-expert pointer arrays of w */
void moe_w_alloc(moe_w *w, int experts);
void moe_w_free(moe_w *w);

/* what a forward leaves for its backward; grows as needed */
typedef struct moe_act moe_act;
moe_act *moe_act_new(void);
void moe_act_free(moe_act *a);

/* a forward's accounting, added to (the caller zeroes it) */
typedef struct moe_count {
	uint64_t *load;               /* [E]: rows that chose each expert, or NULL */
	uint64_t routed, dropped;     /* assignments made, of those dropped */
	double aux;                   /* the balance term (0 when alpha is 0) */
	uint64_t digest;              /* a hash of every choice and drop: a test
				       * sees whether a perturbation rerouted */
} moe_count;

/* moe_fwd() : y[n,d] = moe(x[n,d]); rows of seg (ops.h attn_seg; causal
 * unused) are routed, one balance term per segment. */
void moe_fwd(const moe_shape *s, const moe_w *w, moe_act *a, float *y, const float *x, int n, const attn_seg *seg,
	     int nseg, moe_count *cnt);

/* moe_bwd() : dx[n,d] += the gradient through the last moe_fwd of a, of
 * <dy, y> + scale * aux; weight gradients accumulate into w's. */
void moe_bwd(const moe_shape *s, const moe_w *w, const moe_act *a, float *dx, const float *dy, const float *x,
	     float scale);

/* moe_bias_update() : auxiliary-loss-free balancing after an optimizer
 * step: bias_i += gamma * sign(mean(load) - load_i). */
void moe_bias_update(float *bias, const uint64_t *load, int experts, float gamma);

#endif
