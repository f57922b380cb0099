/* moe_impl.h: the stages of moe.c's forward and backward, shared with the
 * expert-parallel layer (moe_ep.c) and nothing else.  moe_fwd() is
 * route, keep, gather, experts, combine, balance; moe_ep_fwd() is the
 * same with the experts run on the ranks that own them.  Keeping one copy
 * of each stage is what makes the two paths agree to the bit.
 */
#ifndef MVL_MOE_IMPL_H
#define MVL_MOE_IMPL_H

#include "moe.h"

struct moe_act {
	int n, na, nseg, E, k;
	size_t cap_n, cap_a, cap_seg;
	float *s;             /* [n, E] sigmoid scores of routed rows */
	int *choice;          /* [n, k] chosen expert, -1: row not routed */
	float *gate;          /* [n, k] gate weight of each slot */
	unsigned char *kept;  /* [n, k] */
	int *rseg;            /* [n] segment index of each row, -1 none */
	float *f;             /* [nseg, E] balance loss counts f_i */
	int *ofs;             /* [E + 1] kept assignments, grouped by expert */
	int *arow, *aslot;    /* [na] row and slot (row * k + j), row order within an expert */
	float *xg, *y;        /* [na, d] gathered inputs, expert outputs before the gate */
	float *g, *u, *h;     /* [na, fe] (unused by the expert-parallel path) */
	float *sg, *su, *sh;  /* [n, fs] the shared expert */
};

/* moe_route() : sizes a for n rows, runs the shared expert into y (zero
 * without one) and routes: scores, top-k choices, gates.
 * @return T, the number of routed rows */
int moe_route(const moe_shape *s, const moe_w *w, moe_act *a, float *y, const float *x, int n,
	      const attn_seg *seg, int nseg);

/* moe_cap() : an expert's capacity for T routed rows (a bound no call
 * reaches when capacity is off) */
long long moe_cap(const moe_shape *s, long long T);

/* moe_keep() : marks each assignment kept or dropped, first come first
 * served in row order, expert e having already taken before[e] of its
 * cap (NULL: none); counts into cnt; groups the kept assignments by
 * expert (ofs, arow, aslot). */
void moe_keep(const moe_shape *s, moe_act *a, long long cap, const long long *before, moe_count *cnt);

/* moe_gather() : a->xg = the input row of each kept assignment */
void moe_gather(const moe_shape *s, moe_act *a, const float *x);

/* moe_expert_fwd() : expert e on ne rows: xg [ne, d] -> g, u [ne, fe]
 * -> h -> ye [ne, d] */
void moe_expert_fwd(const moe_shape *s, const moe_w *w, int e, const float *xg, float *g, float *u, float *h,
		    float *ye, int ne);

/* moe_combine() : y_t += gate * a->y of each kept assignment, a row's
 * experts in expert order */
void moe_combine(const moe_shape *s, const moe_act *a, float *y);

/* moe_balance() : the balance term of each segment into cnt->aux */
void moe_balance(const moe_shape *s, moe_act *a, const attn_seg *seg, int nseg, moe_count *cnt);

/* moe_shared_bwd() : the shared expert's backward into dx and its grads */
void moe_shared_bwd(const moe_shape *s, const moe_w *w, const moe_act *a, float *dx, const float *dy,
		    const float *x);

/* moe_gate_grad() : for each kept assignment r: dye[r] = gate dy_t and
 * dgate[slot] = <dy_t, a->y[r]> (dgate: [n*k], zeroed by the caller) */
void moe_gate_grad(const moe_shape *s, const moe_act *a, const float *dy, float *dye, float *dgate);

/* moe_expert_bwd() : expert e's backward on ne rows of the forward's xg,
 * g, u, h: weight gradients accumulate; dxe [ne, d] is overwritten.
 * scratch: 3 * ne * fe floats. */
void moe_expert_bwd(const moe_shape *s, const moe_w *w, int e, const float *dye, const float *xg,
		    const float *g, const float *u, const float *h, float *dxe, int ne, float *scratch);

/* moe_router_bwd() : from the gate gradients and the balance term into
 * the scores, the router's gradient and dx */
void moe_router_bwd(const moe_shape *s, const moe_w *w, const moe_act *a, float *dx, const float *x,
		    const float *dgate, float scale);

#endif
