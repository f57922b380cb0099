/* moe_ep.h: the MoE FFN of moe.h with its routed experts spread over the
 * ranks of an mpirun job (expert parallelism).
 *
 * Placement.  With N ranks and E experts (E a multiple of N), rank r owns
 * experts [r E/N, (r+1) E/N): only their weights need exist there, and
 * only their gradients are accumulated there.  The router, the selection
 * bias and the shared expert are replicated: every rank routes its own
 * rows, and their gradients are this rank's share (sum them over ranks,
 * as data parallelism does).
 *
 * Dispatch.  A forward routes the rank's rows locally, groups its kept
 * assignments by expert (so by owner, owners holding ascending ranges),
 * and sends each assignment's input row, d floats, to the owner in one
 * alltoallv.  The owner receives, from each rank in rank order, that
 * rank's rows for its experts in expert order, row order within an
 * expert; it regroups them by expert (rank order within an expert), runs
 * each expert as three sgemms on its rows, and returns the outputs in the
 * layout it received them (a second alltoallv).  The sender combines with
 * its gates.  The backward is the reverse: gated output gradients go to
 * the owners, who accumulate the expert weight gradients and return the
 * input rows' gradients.  No row indices travel: both sides derive the
 * layout from the per-rank, per-expert assignment counts, which every
 * rank learns from one allreduce before the exchange.
 *
 * Capacity.  The tokens of the job are taken in (rank, row) order, as if
 * rank 0's rows were followed by rank 1's and so on.  With capacity c > 0
 * each expert takes at most ceil(c * T * top_k / E) assignments, T the
 * routed rows of all ranks together, first come first served in that
 * order; the rest are dropped and counted on the rank that routed them.
 * So the layer computes exactly what moe_fwd() computes on the
 * concatenated rows (with every rank's segments), to float rounding.
 *
 * Accounting: cnt gets this rank's routed/dropped assignments, its
 * rows' load and its segments' balance term; sum them over ranks.  The
 * digest mixes local slot numbers, so it is not the single-rank digest.
 *
 * Every rank must call moe_ep_fwd() and moe_ep_bwd() together, the same
 * number of times, even with no rows.
 */
#ifndef MVL_MOE_EP_H
#define MVL_MOE_EP_H

#include "dist.h"
#include "moe.h"
#include "util.h"

/* the exchange of one layer on one rank: which experts it owns and what
 * its last forward received, for the backward */
typedef struct moe_ep moe_ep;

/* moe_ep_new() : the layer of shape s on d's ranks.
 * @return NULL with *err set when the experts do not split evenly */
moe_ep *moe_ep_new(dist *d, const moe_shape *s, mvl_err *err);
void moe_ep_free(moe_ep *ep);

/* moe_ep_owned() : the experts this rank owns, [*first, *first + *count) */
void moe_ep_owned(const moe_ep *ep, int *first, int *count);

/* moe_ep_fwd() : y[n,d] = moe(x[n,d]) as moe_fwd(), with w's expert
 * pointers needed for the owned experts only (others may be NULL).
 * @return 0, or -1 with *err (a message past MPI's int limit; every rank
 * fails together) */
int moe_ep_fwd(moe_ep *ep, const moe_shape *s, const moe_w *w, moe_act *a, float *y, const float *x, int n,
	       const attn_seg *seg, int nseg, moe_count *cnt, mvl_err *err);

/* moe_ep_bwd() : as moe_bwd(); the owned experts' weight gradients get
 * every rank's contribution, the router's and shared expert's get this
 * rank's rows only.  @return 0 or -1 with *err */
int moe_ep_bwd(moe_ep *ep, const moe_shape *s, const moe_w *w, const moe_act *a, float *dx, const float *dy,
	       const float *x, float scale, mvl_err *err);

#endif
