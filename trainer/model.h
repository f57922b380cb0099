/* model.h: the MindVL-shaped vision-language model, forward and backward.
 *
 * The math, exactly (tests/parity/model.py is the same in PyTorch):
 *
 * Vision.  An image of H x W pixels (multiples of 28) is cut into 14 x 14
 * patches in row-major order; patch (r, c) becomes the vector of its
 * pixels, channel-major ([c][y][x], 588 values), each value px/127.5 - 1,
 * and patch_embed.proj (Linear 588 -> Dv, no bias) embeds it.  Blocks
 * (pre-norm): x += attn(norm1(x)); x += mlp(norm2(x)), where attn is qkv
 * (Linear Dv -> 3 Dv, no bias: rows q, then k, then v) and proj (Dv ->
 * Dv), heads of dh = Dv / heads, 2D rotary embedding on q and k
 * (rope_angles_2d with the patch's row and column, theta vit_rope_theta),
 * full attention among the patches of the same image only; mlp is SwiGLU:
 * down_proj(silu(gate_proj(x)) * up_proj(x)).
 *
 * Merger.  Patches (2i, 2j), (2i, 2j+1), (2i+1, 2j), (2i+1, 2j+1) are
 * concatenated in that order (4 Dv), then RMSNorm over the 4 Dv (ln_q;
 * note: Qwen2.5-VL normalizes each Dv patch before concatenating), mlp.0
 * (Linear 4 Dv -> 4 Dv with bias), GELU (erf), mlp.2 (4 Dv -> D with bias):
 * one LLM token per 2 x 2 patches, in row-major order of (i, j).
 *
 * LLM.  x = embed_tokens[ids]; the rows of <|image_pad|> tokens are
 * replaced, in order, by the merger's outputs of the sequence's images in
 * order.  Layers: x += self_attn(input_layernorm(x)); x +=
 * mlp(post_attention_layernorm(x)).  self_attn: q_proj (D -> heads*dh),
 * k_proj and v_proj (D -> kv_heads*dh), dh = D / heads, no biases;
 * q_norm and k_norm are RMSNorms over dh (one weight vector of dh shared by
 * all heads), applied per head before the rotary embedding
 * (rope_angles_1d of the token's position, theta rope_theta); grouped-query
 * attention, causal and within the token's segment only; o_proj (heads*dh
 * -> D).  Then model.norm and the head: logits = x lm_head^T (lm_head =
 * embed_tokens when tied).  RMSNorm eps is norm_eps everywhere.
 *
 * MoE.  With n_experts > 0, the mlp of LLM layers first_moe_layer and
 * after is the mixture of experts of moe.h (DeepSeek-V3): a shared SwiGLU
 * expert of shared_mlp (0: none) plus n_experts routed SwiGLU experts of
 * expert_mlp, top_k of them per token chosen by sigmoid(router) + bias,
 * gates the chosen scores normalized to sum 1, times routed_scale.  The
 * routed rows are the rows in a segment (padding rows take the shared
 * expert only), one model_step's rows at a time: capacity (0: none)
 * limits each expert to ceil(capacity * T * top_k / n_experts) of the T
 * routed rows of the step, in row order, and a "sequence" of the balance
 * loss is a segment.  The balance term (moe.h: balance_alpha * segment
 * length * sum_i f_i P_i, summed over segments and MoE layers) is added
 * to the summed loss that the backward differentiates (so scaled alike),
 * but not to *loss_sum, which stays the cross-entropy.  The bias is a
 * buffer, not a parameter: no gradient, no optimizer; after each
 * optimizer step model_moe_balance() moves it by bias_gamma toward equal
 * load, the load being the choices of the backward steps since the last
 * call.
 *
 * Loss.  Position r predicts token r+1 of the same segment where
 * loss[r+1] == 1: cross-entropy summed over those and divided by their
 * count over the whole (global) batch.
 *
 * Tensors: the Qwen2.5-VL / Qwen3 names (../shared/DESIGN.md), PyTorch
 * [out, in] shapes, by part:
 *   vit:       visual.patch_embed.proj.weight [Dv, 588];
 *              visual.blocks.I.{norm1,norm2}.weight [Dv];
 *              visual.blocks.I.attn.qkv.weight [3Dv, Dv], .proj.weight [Dv, Dv];
 *              visual.blocks.I.mlp.{gate_proj,up_proj}.weight [Fv, Dv],
 *              .down_proj.weight [Dv, Fv]
 *   projector: visual.merger.ln_q.weight [4Dv];
 *              visual.merger.mlp.0.weight [4Dv, 4Dv], .bias [4Dv];
 *              visual.merger.mlp.2.weight [D, 4Dv], .bias [D]
 *   llm:       model.embed_tokens.weight [V, D];
 *              model.layers.I.{input_layernorm,post_attention_layernorm}.weight [D];
 *              model.layers.I.self_attn.q_proj.weight [heads*dh, D],
 *              .k_proj/.v_proj.weight [kv_heads*dh, D], .o_proj.weight
 *              [D, heads*dh], .q_norm/.k_norm.weight [dh];
 *              model.layers.I.mlp.{gate_proj,up_proj}.weight [F, D],
 *              .down_proj.weight [D, F];
 *              model.norm.weight [D]; lm_head.weight [V, D] unless tied.
 *              MoE layers, instead of mlp.{gate,up,down}_proj (DeepSeek-V3's
 *              names): model.layers.I.mlp.gate.weight [E, D] (the router),
 *              .mlp.gate.e_score_correction_bias [E] (buffer),
 *              .mlp.shared_experts.{gate_proj,up_proj}.weight [Fs, D],
 *              .down_proj.weight [D, Fs] (when Fs > 0),
 *              .mlp.experts.J.{gate_proj,up_proj}.weight [Fe, D],
 *              .down_proj.weight [D, Fe], J < E.
 * Initialization: norms 1, biases and buffers 0, everything else normal(0, 0.02) from
 * the seed.
 */
#ifndef MVL_MODEL_H
#define MVL_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "dist.h"
#include "util.h"

typedef struct model_config {
	int vit_dim, vit_layers, vit_heads, vit_mlp;
	int dim, layers, heads, kv_heads, mlp, vocab;
	int tied;
	float norm_eps, rope_theta, vit_rope_theta;
	/* the preset's training shape (synthetic runs, defaults) */
	int image, seq_len, batch;
	/* MoE (see above); n_experts 0: every layer dense, the rest unused */
	int n_experts, top_k, expert_mlp, shared_mlp, first_moe_layer;
	float routed_scale, bias_gamma, balance_alpha, capacity;
} model_config;

/* model_is_moe() : whether LLM layer l has the MoE mlp */
int model_is_moe(const model_config *c, int l);

/* model_preset() : "tiny" or "small" (the sizes the benchmark compares
 * with PyTorch), "micro" (for tests), "tiny-moe" (tiny with MoE layers of
 * about tiny's active parameters per token) or "micro-moe".  @return 0/-1. */
int model_preset(const char *name, model_config *c);

/* parts, as a recipe names them */
enum { MPART_VIT = 1, MPART_PROJECTOR = 2, MPART_LLM = 4, MPART_ALL = 7 };

typedef struct mtensor {
	char name[64];
	int ndim;
	int shape[2];
	size_t off, n;     /* in floats, into params (and grads / m / v) */
	int part;          /* MPART_* */
	int no_decay;      /* norms, biases, embeddings: no weight decay unless asked */
	int buffer;        /* saved, but no gradient (part 0: never trainable) */
	int expert;        /* J of an MoE layer's mlp.experts.J.*, else -1 */
} mtensor;

/* MoE accounting: routed / dropped / load add up over backward steps
 * since the last model_moe_balance(); aux and digest are the last
 * forward's (its balance term, a hash of its routing choices). */
typedef struct moe_stats {
	uint64_t routed, dropped;
	double aux;
	uint64_t digest;
} moe_stats;

typedef struct model {
	model_config c;
	mtensor *t;
	int nt;
	size_t nparams;
	float *params;
	float *grads;      /* nparams; only trainable tensors are written */
	int trainable;     /* MPART_* mask */
	struct mact *act;  /* activations of the last forward */
	/* Optional, set by data parallel (ddp.h): during a backward,
	 * grad_ready(ctx, off, n) says that grads[off, off + n) will not be
	 * written again by this model_step, so their allreduce may start
	 * while the earlier layers still run.  Called for lm_head and
	 * model.norm (before the layers), then each LLM layer and each ViT
	 * block as it finishes; the rest (embedding, merger, patch embed) is
	 * final when model_step returns.  NULL: not called. */
	void (*grad_ready)(void *ctx, size_t off, size_t n);
	void *grad_ready_ctx;
	moe_stats moe;
	uint64_t *moe_load; /* [layers * n_experts]: choices per expert, as moe */
	struct moe_ep **ep; /* [layers]: expert parallel MoE layers, or NULL */
	int ep_ranks;       /* ... over that many ranks (0: not expert parallel) */
} model;

/* model_new() : the tensor table for c, parameters initialized from seed. */
model *model_new(const model_config *c, uint64_t seed);
/* model_layout() : the tensor table and nparams alone (params, grads
 * NULL; model_free() frees it): what a file must hold, checked before
 * any parameter memory is allocated. */
model *model_layout(const model_config *c);
/* model_tensor_count() : the number of tensors of c (what model_layout()
 * allocates the table for), counted without allocating. */
size_t model_tensor_count(const model_config *c);
void model_free(model *m);
/* model_tensor() : by name, or NULL. */
mtensor *model_tensor(model *m, const char *name);

/* A batch: B sequences of L tokens as a pack holds them, and their images. */
typedef struct mimage {
	int seq;           /* which sequence */
	int token;         /* index in it of the first image pad */
	int h, w;          /* pixels, multiples of 28 */
	const uint8_t *px; /* h * w * 3 RGB */
} mimage;

typedef struct mbatch {
	int B, L;
	const uint32_t *ids, *pos, *seg; /* [B * L] */
	const uint8_t *loss;             /* [B * L] */
	const mimage *img;
	int nimg;
	uint32_t image_pad;              /* the pad token's id */
	double *seq_loss;                /* optional [B]: each sequence's summed
					  * loss (evaluation scores candidates) */
} mbatch;

/* model_step() : forward; with backward, also adds every trainable
 * tensor's gradient of (sum of losses) * scale into m->grads.
 * *loss_sum gets the summed cross-entropy and *count the number of
 * predicted tokens.  @return 0, or -1 with *err (pads and images
 * disagree, an image of the wrong size ...). */
int model_step(model *m, const mbatch *b, int backward, float scale, double *loss_sum, uint64_t *count,
	       mvl_err *err);

/* How model_generate() continues a prompt. */
typedef struct gen_opts {
	int max_new;          /* new tokens at most */
	const uint32_t *stop; /* generation ends after any of these nstop ids */
	int nstop;
	float temperature;    /* 0: greedy */
	float top_p;          /* nucleus mass (1: every token) */
	uint64_t seed;        /* sampling */
	int ids;              /* only ids below this are produced: the tokenizer's
			       * size, when the model's vocabulary is padded past
			       * it (rows no text maps to); 0: the model's vocab */
} gen_opts;

/* model_generate() : continues prompt (B == 1, one segment, its images)
 * by up to g->max_new tokens into out, stopping after any of g->stop.
 * The prompt runs once through the training forward, whose keys and
 * values become the KV cache; then one token at a time against the
 * cache.  Temperature 0: greedy; else softmax(logits / temperature)
 * sampled from the smallest set of tokens holding top_p of it, with
 * seed.  @return 0 or -1 + *err. */
int model_generate(model *m, const mbatch *prompt, const gen_opts *g, uint32_t *out, int *nout, mvl_err *err);

/* model_set_expert_parallel() : spreads the routed experts of every MoE
 * layer over d's ranks (moe_ep.h): rank r owns experts [r E/N, (r+1) E/N)
 * of each layer.  From then on a model_step with backward is collective
 * (every rank makes it, the same number of times): its MoE layers send
 * the rows to the experts' owners, and the owner's gradient of its
 * experts is complete (every rank's rows); other ranks' expert gradients
 * stay untouched.  The parameter buffer stays whole on every rank (the
 * caller keeps the experts' weights in step, see ddp.h), so a forward
 * alone (backward 0: evaluation, which rank 0 runs by itself) and
 * model_generate() run the local layer.  d NULL: back to local.
 * @return 0, or -1 with *err (no MoE layer; E not a multiple of N) */
int model_set_expert_parallel(model *m, dist *d, mvl_err *err);

/* model_expert_owner() : under expert parallelism, the rank that owns
 * tensor i (an mlp.experts.J.* tensor); -1 for every other tensor, and
 * for all when not expert parallel. */
int model_expert_owner(const model *m, int i);

/* model_moe_balance() : after an optimizer step: each MoE layer's bias
 * moves by bias_gamma toward balance (moe_bias_update) when the LLM
 * trains; then the load, routed and dropped counts restart at 0. */
void model_moe_balance(model *m);

/* model_flops() : multiply-adds x 2 of a forward over the batch (train 0),
 * or of a training step (train 1: the forward and the backward products
 * the trainable parts need; 3x the forward when everything trains).  MoE
 * layers count their active parameters: router, shared, top_k experts. */
double model_flops(const model *m, const mbatch *b, int train);

#endif
