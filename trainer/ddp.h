/* ddp.h: data parallel training over the ranks of a dist group.
 *
 * Every rank holds the whole model and runs the same steps on its own part
 * of the global batch; ddp makes the gradients global and, with ZeRO-1,
 * shards the optimizer.  MPI is called here and in dist.c, nowhere else in
 * the trainer.
 *
 * Plain data parallel: the trainable tensors are cut into buckets (whole
 * tensors, about bucket_bytes each, in backward order: lm_head, the last
 * layer ... the first, the embedding, the merger, the ViT) and each bucket
 * is summed over the ranks with MPI_Iallreduce as soon as the model's
 * grad_ready hook (model.h) says its gradients are final, so the exchange
 * of the late layers overlaps the backward of the early ones.  Buckets
 * start strictly in that order on every rank (MPI requires collectives to
 * start in the same order everywhere; a rank whose batch has no image
 * reports no ViT block), so a bucket whose turn has not come waits.
 * Progress: OpenMPI advances a non-blocking collective only inside MPI
 * calls, so each hook call also tests the ones in flight.
 *
 * ZeRO-1 (zero = 1): rank r owns the floats [lo, hi) of the flat parameter
 * buffer (nparams split in N near-equal slices); after the backward one
 * MPI_Reduce_scatter leaves on each rank the global gradient of its slice
 * only (not overlapped with the backward), the optimizer (train.h,
 * adamw_init_shard) keeps m and v for that slice only, and
 * MPI_Allgatherv spreads the updated slices back.  Optimizer memory per
 * rank falls by N (for the trainable floats; a partly frozen model may
 * shard unevenly, since the slices cut the whole buffer).
 *
 * Expert parallel (the model set so with model_set_expert_parallel before
 * ddp_new; not with ZeRO): the routed experts' tensors are in no bucket,
 * since their owner's gradient is already complete and other ranks hold
 * none.  Each owner's optimizer updates its own experts (the caller drops
 * the optimizer state of the others, ddp_owns), and ddp_gather_params()
 * allgathers the experts' updated weights, one MPI_Allgatherv per MoE
 * layer, so that every rank's parameter buffer stays whole and identical
 * after each step.  That costs each rank the other owners' experts once
 * a step ((N-1)/N of the experts' floats received), half what a ring
 * allreduce of their gradients would move; keeping the buffer whole is
 * what lets rank 0 alone write checkpoints and evaluate.
 *
 * Every call is collective: all ranks make it, in the same order.  On a
 * single process they only do the local part (no MPI).  Errors are MPI's
 * default (fatal: the job ends), so nothing here returns one.
 */
#ifndef MVL_DDP_H
#define MVL_DDP_H

#include "dist.h"
#include "model.h"
#include "train.h"

typedef struct ddp ddp;

/* ddp_new() : data parallel state for m's trainable tensors in group d
 * (both must outlive it); zero: 1 for ZeRO-1.  bucket_bytes: 0 = 25 MB. */
ddp *ddp_new(dist *d, model *m, int zero, size_t bucket_bytes);
void ddp_free(ddp *p);

/* ddp_shard() : the floats [*lo, *hi) of the parameter buffer this rank
 * updates (0, nparams without ZeRO). */
void ddp_shard(const ddp *p, size_t *lo, size_t *hi);

/* ddp_buckets() : how many allreduce buckets (0 under ZeRO). */
int ddp_buckets(const ddp *p);

/* ddp_arm() : the next model_step backward is the step's last one: its
 * grad_ready calls start the buckets' allreduces.  Without ZeRO only. */
void ddp_arm(ddp *p);

/* ddp_reduce_grads() : after the last backward of a step (disarms the
 * hook).  Without ZeRO every trainable gradient is then the sum over the
 * ranks; with ZeRO only the shard's is (the rest is stale). */
void ddp_reduce_grads(ddp *p);

/* ddp_sum_moe_load() : MoE: sums each expert's load (and the routed and
 * dropped counts) over the ranks, before model_moe_balance(). */
void ddp_sum_moe_load(ddp *p, model *m);

/* ddp_expert_parallel() : 1 when the model was expert parallel at ddp_new */
int ddp_expert_parallel(const ddp *p);

/* ddp_owns() : whether this rank's optimizer updates tensor i: every
 * trainable tensor but, under expert parallelism, other owners' experts.
 * (ZeRO's slices are the optimizer's own business: adamw_init_shard.) */
int ddp_owns(const ddp *p, int i);

/* ddp_gather_params() : after the optimizer step: ZeRO: every rank's
 * updated slice of the parameters to every rank; expert parallel: every
 * owner's experts to every rank.  Nothing otherwise (each rank updated
 * everything). */
void ddp_gather_params(ddp *p);

/* ddp_gather_optim() : ZeRO: the slices of o's m and v onto rank 0 (expert
 * parallel: the other owners' experts' m and v), as flat buffers of
 * nparams floats (tensor i at t[i].off; frozen ones 0) in *m and *v, for a
 * checkpoint in the single-process format.  Other ranks get NULL.  The
 * caller frees them. */
void ddp_gather_optim(ddp *p, const adamw *o, float **m, float **v);

#endif
