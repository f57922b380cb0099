/* model.c: the vision-language model of model.h, forward and backward,
 * composed from the kernels of ops.h. */
#include "model.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "moe.h"
#include "moe_ep.h"
#include "ops.h"

enum { PATCH = 14, PATCH_IN = 3 * 14 * 14, LOGIT_ROWS = 256 };

int model_preset(const char *name, model_config *c)
{
	if (!strcmp(name, "tiny")) {
		*c = (model_config){192, 4, 3, 512, 256, 4, 4, 2, 688, 8192, 0, 1e-6f, 1e6f, 1e4f, 112, 256, 8, .n_experts = 0};
		return 0;
	}
	if (!strcmp(name, "micro")) { /* for tests: seconds, not minutes */
		*c = (model_config){32, 1, 2, 64, 64, 2, 4, 2, 128, 512, 0, 1e-6f, 1e6f, 1e4f, 56, 64, 2, .n_experts = 0};
		return 0;
	}
	/* tiny's LLM with MoE after a dense first layer (DeepSeek-V3 keeps its
	 * first layers dense): shared 344 + 2 of 8 experts of 172 = tiny's
	 * 688 active intermediate width per token */
	if (!strcmp(name, "tiny-moe")) {
		*c = (model_config){192, 4, 3, 512, 256, 4, 4, 2, 688, 8192, 0, 1e-6f, 1e6f, 1e4f, 112, 256, 8,
				    8, 2, 172, 344, 1, 1.0f, 1e-3f, 1e-4f, 0.0f};
		return 0;
	}
	if (!strcmp(name, "micro-moe")) {
		*c = (model_config){32, 1, 2, 64, 64, 2, 4, 2, 128, 512, 0, 1e-6f, 1e6f, 1e4f, 56, 64, 2,
				    4, 2, 32, 64, 0, 1.0f, 1e-3f, 1e-2f, 0.0f};
		return 0;
	}
	if (!strcmp(name, "small")) {
		*c = (model_config){384, 6, 6, 1024, 512, 8, 8, 4, 1376, 32768, 0, 1e-6f, 1e6f, 1e4f, 224, 1024, 4, .n_experts = 0};
		return 0;
	}
	return -1;
}

int model_is_moe(const model_config *c, int l)
{
	return c->n_experts > 0 && l >= c->first_moe_layer;
}

/* ---------------------------------------------------------------------- */
/* the tensor table */

static mtensor *add(model *m, int part, int no_decay, int r, int c, const char *fmt, ...)
{
	mtensor *t = &m->t[m->nt++];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(t->name, sizeof t->name, fmt, ap);
	va_end(ap);
	t->ndim = c ? 2 : 1;
	t->shape[0] = r;
	t->shape[1] = c;
	t->n = (size_t)r * (size_t)(c ? c : 1);
	t->off = m->nparams;
	t->part = part;
	t->no_decay = no_decay;
	t->expert = -1;
	m->nparams += t->n;
	return t;
}

static uint64_t splitmix(uint64_t *s)
{
	uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

/* normal(0, 1) by Box-Muller */
static double gauss(uint64_t *s)
{
	double u1 = ((double)(splitmix(s) >> 11) + 0.5) / 9007199254740992.0;
	double u2 = (double)(splitmix(s) >> 11) / 9007199254740992.0;
	return sqrt(-2 * log(u1)) * cos(2 * M_PI * u2);
}

size_t model_tensor_count(const model_config *c)
{
	/* model_layout()'s adds, counted: patch embed, merger (5), embedding,
	 * final norm, the head unless tied; 7 per ViT block; per layer 8 and
	 * its MLP (3 dense; router, bias, shared expert, 3 per expert) */
	size_t n = 8 + !c->tied + 7 * (size_t)c->vit_layers;
	for (int i = 0; i < c->layers; i++)
		n += 8 + (model_is_moe(c, i) ? 2 + 3 * (c->shared_mlp > 0) + 3 * (size_t)c->n_experts : 3);
	return n;
}

model *model_layout(const model_config *c)
{
	model *m = xcalloc(1, sizeof *m);
	m->c = *c;
	int Dv = c->vit_dim, Fv = c->vit_mlp, D = c->dim, F = c->mlp, V = c->vocab;
	int dh = D / c->heads;
	int E = c->n_experts, Fe = c->expert_mlp, Fs = c->shared_mlp;
	size_t nt = model_tensor_count(c);
	m->t = xcalloc(nt, sizeof *m->t);
	add(m, MPART_VIT, 0, Dv, PATCH_IN, "visual.patch_embed.proj.weight", 0);
	for (int i = 0; i < c->vit_layers; i++) {
		add(m, MPART_VIT, 1, Dv, 0, "visual.blocks.%d.norm1.weight", i);
		add(m, MPART_VIT, 0, 3 * Dv, Dv, "visual.blocks.%d.attn.qkv.weight", i); /* q; k; v rows */
		add(m, MPART_VIT, 0, Dv, Dv, "visual.blocks.%d.attn.proj.weight", i);
		add(m, MPART_VIT, 1, Dv, 0, "visual.blocks.%d.norm2.weight", i);
		add(m, MPART_VIT, 0, Fv, Dv, "visual.blocks.%d.mlp.gate_proj.weight", i);
		add(m, MPART_VIT, 0, Fv, Dv, "visual.blocks.%d.mlp.up_proj.weight", i);
		add(m, MPART_VIT, 0, Dv, Fv, "visual.blocks.%d.mlp.down_proj.weight", i);
	}
	add(m, MPART_PROJECTOR, 1, 4 * Dv, 0, "visual.merger.ln_q.weight", 0);
	add(m, MPART_PROJECTOR, 0, 4 * Dv, 4 * Dv, "visual.merger.mlp.0.weight", 0);
	add(m, MPART_PROJECTOR, 1, 4 * Dv, 0, "visual.merger.mlp.0.bias", 0);
	add(m, MPART_PROJECTOR, 0, D, 4 * Dv, "visual.merger.mlp.2.weight", 0);
	add(m, MPART_PROJECTOR, 1, D, 0, "visual.merger.mlp.2.bias", 0);
	add(m, MPART_LLM, 1, V, D, "model.embed_tokens.weight", 0);
	for (int i = 0; i < c->layers; i++) {
		add(m, MPART_LLM, 1, D, 0, "model.layers.%d.input_layernorm.weight", i);
		add(m, MPART_LLM, 0, c->heads * dh, D, "model.layers.%d.self_attn.q_proj.weight", i);
		add(m, MPART_LLM, 0, c->kv_heads * dh, D, "model.layers.%d.self_attn.k_proj.weight", i);
		add(m, MPART_LLM, 0, c->kv_heads * dh, D, "model.layers.%d.self_attn.v_proj.weight", i);
		add(m, MPART_LLM, 0, D, c->heads * dh, "model.layers.%d.self_attn.o_proj.weight", i);
		add(m, MPART_LLM, 1, dh, 0, "model.layers.%d.self_attn.q_norm.weight", i);
		add(m, MPART_LLM, 1, dh, 0, "model.layers.%d.self_attn.k_norm.weight", i);
		add(m, MPART_LLM, 1, D, 0, "model.layers.%d.post_attention_layernorm.weight", i);
		if (!model_is_moe(c, i)) {
			add(m, MPART_LLM, 0, F, D, "model.layers.%d.mlp.gate_proj.weight", i);
			add(m, MPART_LLM, 0, F, D, "model.layers.%d.mlp.up_proj.weight", i);
			add(m, MPART_LLM, 0, D, F, "model.layers.%d.mlp.down_proj.weight", i);
			continue;
		}
		add(m, MPART_LLM, 0, E, D, "model.layers.%d.mlp.gate.weight", i);
		add(m, 0, 1, E, 0, "model.layers.%d.mlp.gate.e_score_correction_bias", i)->buffer = 1;
		if (Fs > 0) {
			add(m, MPART_LLM, 0, Fs, D, "model.layers.%d.mlp.shared_experts.gate_proj.weight", i);
			add(m, MPART_LLM, 0, Fs, D, "model.layers.%d.mlp.shared_experts.up_proj.weight", i);
			add(m, MPART_LLM, 0, D, Fs, "model.layers.%d.mlp.shared_experts.down_proj.weight", i);
		}
		for (int j = 0; j < E; j++) {
			add(m, MPART_LLM, 0, Fe, D, "model.layers.%d.mlp.experts.%d.gate_proj.weight", i, j)->expert = j;
			add(m, MPART_LLM, 0, Fe, D, "model.layers.%d.mlp.experts.%d.up_proj.weight", i, j)->expert = j;
			add(m, MPART_LLM, 0, D, Fe, "model.layers.%d.mlp.experts.%d.down_proj.weight", i, j)->expert = j;
		}
	}
	add(m, MPART_LLM, 1, D, 0, "model.norm.weight", 0);
	if (!c->tied)
		add(m, MPART_LLM, 0, V, D, "lm_head.weight", 0);
	if ((size_t)m->nt != nt) /* model_tensor_count() must follow the adds */
		abort();
	return m;
}

model *model_new(const model_config *c, uint64_t seed)
{
	model *m = model_layout(c);
	int E = c->n_experts;
	m->params = xmalloc(m->nparams * sizeof *m->params);
	m->grads = xcalloc(m->nparams, sizeof *m->grads);
	m->trainable = MPART_ALL;
	if (E > 0)
		m->moe_load = xcalloc((size_t)c->layers * E, sizeof *m->moe_load);
	uint64_t s = seed;
	for (int i = 0; i < m->nt; i++) {
		mtensor *t = &m->t[i];
		float *p = m->params + t->off;
		int bias = strstr(t->name, ".bias") != NULL || t->buffer, norm = t->ndim == 1 && !bias;
		for (size_t k = 0; k < t->n; k++)
			p[k] = bias ? 0.0f : norm ? 1.0f : (float)(0.02 * gauss(&s));
	}
	return m;
}

mtensor *model_tensor(model *m, const char *name)
{
	for (int i = 0; i < m->nt; i++)
		if (!strcmp(m->t[i].name, name))
			return &m->t[i];
	return NULL;
}

/* ---------------------------------------------------------------------- */
/* activations: one arena per step shape */

typedef struct block_act {
	float *x, *n1, *r1, *qraw, *qrs, *q, *kraw, *krs, *k, *v, *o, *lse, *xmid, *n2, *r2, *g, *u, *h;
	moe_act *moe;            /* MoE layers: the mlp's activations */
	moe_count mc;            /* ... and its accounting */
} block_act;

typedef struct mact {
	float *arena;
	size_t cap, used;
	size_t n, np, nm;        /* LLM rows, patch rows, merged rows (of the
				  * images the vision tower runs on) */
	float *patches;
	block_act *vb, *lb;
	float *vout;             /* ViT output [np, Dv] */
	float *mcat, *mn, *mr, *f1, *gl, *mout;
	float *xf, *nf, *rf;     /* LLM output, final norm */
	float *vang, *lang;
	attn_seg *vseg, *lseg;
	int nvseg, nlseg;
	int32_t *target;         /* [n]: id predicted at row r, -1 none */
	size_t *pad_row;         /* [every image's merged tokens]: its LLM row */
	size_t *pad_src;         /* ... and its row of mout (an image repeated
				  * in a forward-only batch runs once) */
	moe_act **moe;           /* [layers], kept across steps */
	uint64_t *load;          /* [layers * n_experts]: this step's choices */
} mact;

/* the next n floats of the arena (64-byte aligned); with no arena yet,
 * only counts (the measuring pass of act_layout) */
static float *take(mact *a, size_t n)
{
	n = (n + 15) & ~(size_t)15;
	float *p = a->arena ? a->arena + a->used : NULL;
	a->used += n;
	return p;
}

static void block_alloc(mact *a, block_act *b, size_t n, int d, int H, int Hkv, int dh, int f, int qknorm)
{
	int hq = H * dh, hkv = Hkv * dh;
	b->x = take(a, n * d);
	b->n1 = take(a, n * d);
	b->r1 = take(a, n);
	if (qknorm) {
		b->qraw = take(a, n * hq);
		b->qrs = take(a, n * H);
		b->kraw = take(a, n * hkv);
		b->krs = take(a, n * Hkv);
	}
	b->q = take(a, n * hq);
	b->k = take(a, n * hkv);
	b->v = take(a, n * hkv);
	b->o = take(a, n * hq);
	b->lse = take(a, n * H);
	b->xmid = take(a, n * d);
	b->n2 = take(a, n * d);
	b->r2 = take(a, n);
	b->g = take(a, n * f);
	b->u = take(a, n * f);
	b->h = take(a, n * f);
}

/* ---------------------------------------------------------------------- */
/* one transformer block */

typedef struct block_w {
	const float *norm1, *q, *k, *v, *o, *qn, *kn, *norm2, *gate, *up, *down;
	float *dnorm1, *dq, *dk, *dv, *dout, *dqn, *dkn, *dnorm2, *dgate, *dup, *ddown;
	moe_w *moe;              /* NULL: the dense mlp */
	moe_ep *ep;              /* with moe: its experts spread over the ranks */
} block_w;

typedef struct block_shape {
	size_t n;
	int d, H, Hkv, dh, f, qknorm;
	float eps;
	const float *ang;
	const attn_seg *seg;
	int nseg;
	const moe_shape *moe;    /* for layers whose block_w has moe */
	float scale;             /* the loss scale, for the MoE balance term */
} block_shape;

/* x -> out; saves what the backward needs in b (b->x holds x).
 * @return 0, or -1 with *err when an expert parallel exchange failed */
static int block_fwd(const block_shape *s, const block_w *w, block_act *b, float *out, float *tmp, mvl_err *err)
{
	size_t n = s->n;
	int hq = s->H * s->dh, hkv = s->Hkv * s->dh;
	rmsnorm_fwd(b->n1, b->r1, b->x, w->norm1, (int)n, s->d, s->eps);
	if (s->qknorm) {
		linear_fwd(b->qraw, b->n1, w->q, (int)n, s->d, hq);
		linear_fwd(b->kraw, b->n1, w->k, (int)n, s->d, hkv);
		rmsnorm_fwd(b->q, b->qrs, b->qraw, w->qn, (int)n * s->H, s->dh, s->eps);
		rmsnorm_fwd(b->k, b->krs, b->kraw, w->kn, (int)n * s->Hkv, s->dh, s->eps);
	} else {
		linear_fwd(b->q, b->n1, w->q, (int)n, s->d, hq);
		linear_fwd(b->k, b->n1, w->k, (int)n, s->d, hkv);
	}
	linear_fwd(b->v, b->n1, w->v, (int)n, s->d, hkv);
	rope_fwd(b->q, s->ang, (int)n, s->H, s->dh);
	rope_fwd(b->k, s->ang, (int)n, s->Hkv, s->dh);
	memset(b->o, 0, n * hq * sizeof *b->o); /* rows in no segment stay 0 */
	attn_fwd(b->o, b->lse, b->q, b->k, b->v, s->seg, s->nseg, (int)n, s->H, s->Hkv, s->dh);
	linear_fwd(tmp, b->o, w->o, (int)n, hq, s->d);
	for (size_t i = 0; i < n * s->d; i++)
		b->xmid[i] = b->x[i] + tmp[i];
	rmsnorm_fwd(b->n2, b->r2, b->xmid, w->norm2, (int)n, s->d, s->eps);
	if (w->ep) {
		if (moe_ep_fwd(w->ep, s->moe, w->moe, b->moe, tmp, b->n2, (int)n, s->seg, s->nseg, &b->mc, err) != 0)
			return -1;
	} else if (w->moe) {
		moe_fwd(s->moe, w->moe, b->moe, tmp, b->n2, (int)n, s->seg, s->nseg, &b->mc);
	} else {
		linear_fwd(b->g, b->n2, w->gate, (int)n, s->d, s->f);
		linear_fwd(b->u, b->n2, w->up, (int)n, s->d, s->f);
		swiglu_fwd(b->h, b->g, b->u, n * s->f);
		linear_fwd(tmp, b->h, w->down, (int)n, s->f, s->d);
	}
	for (size_t i = 0; i < n * s->d; i++)
		out[i] = b->xmid[i] + tmp[i];
	return 0;
}

/* scratch for a block's backward, sized by the caller */
typedef struct block_scratch {
	float *dh, *dg, *du, *dn, *dq, *dk, *dv, *dqraw, *dkraw, *dattn;
} block_scratch;

/* dx: in, the gradient of the block's output; out, of its input.
 * @return 0, or -1 with *err as block_fwd */
static int block_bwd(const block_shape *s, const block_w *w, const block_act *b, float *dx, block_scratch *t,
		     mvl_err *err)
{
	size_t n = s->n;
	int hq = s->H * s->dh, hkv = s->Hkv * s->dh;
	/* mlp: out = xmid + down(swiglu(gate(n2), up(n2))), or the MoE */
	memset(t->dn, 0, n * s->d * sizeof(float));
	if (w->ep) {
		if (moe_ep_bwd(w->ep, s->moe, w->moe, b->moe, t->dn, dx, b->n2, s->scale, err) != 0)
			return -1;
	} else if (w->moe) {
		moe_bwd(s->moe, w->moe, b->moe, t->dn, dx, b->n2, s->scale);
	} else {
		memset(t->dh, 0, n * s->f * sizeof(float));
		linear_bwd(t->dh, w->ddown, dx, b->h, w->down, (int)n, s->f, s->d);
		memset(t->dg, 0, n * s->f * sizeof(float));
		memset(t->du, 0, n * s->f * sizeof(float));
		swiglu_bwd(t->dg, t->du, t->dh, b->g, b->u, n * s->f);
		linear_bwd(t->dn, w->dgate, t->dg, b->n2, w->gate, (int)n, s->d, s->f);
		linear_bwd(t->dn, w->dup, t->du, b->n2, w->up, (int)n, s->d, s->f);
	}
	rmsnorm_bwd(dx, w->dnorm2, t->dn, b->xmid, w->norm2, b->r2, (int)n, s->d); /* dx = d xmid */
	/* attention: xmid = x + o_proj(attn(q, k, v)) */
	memset(t->dattn, 0, n * hq * sizeof(float));
	linear_bwd(t->dattn, w->dout, dx, b->o, w->o, (int)n, hq, s->d);
	memset(t->dq, 0, n * hq * sizeof(float));
	memset(t->dk, 0, n * hkv * sizeof(float));
	memset(t->dv, 0, n * hkv * sizeof(float));
	attn_bwd(t->dq, t->dk, t->dv, t->dattn, b->o, b->lse, b->q, b->k, b->v, s->seg, s->nseg, (int)n, s->H, s->Hkv,
		 s->dh);
	rope_bwd(t->dq, s->ang, (int)n, s->H, s->dh);
	rope_bwd(t->dk, s->ang, (int)n, s->Hkv, s->dh);
	float *dq = t->dq, *dk = t->dk;
	if (s->qknorm) {
		memset(t->dqraw, 0, n * hq * sizeof(float));
		memset(t->dkraw, 0, n * hkv * sizeof(float));
		rmsnorm_bwd(t->dqraw, w->dqn, t->dq, b->qraw, w->qn, b->qrs, (int)n * s->H, s->dh);
		rmsnorm_bwd(t->dkraw, w->dkn, t->dk, b->kraw, w->kn, b->krs, (int)n * s->Hkv, s->dh);
		dq = t->dqraw;
		dk = t->dkraw;
	}
	memset(t->dn, 0, n * s->d * sizeof(float));
	linear_bwd(t->dn, w->dq, dq, b->n1, w->q, (int)n, s->d, hq);
	linear_bwd(t->dn, w->dk, dk, b->n1, w->k, (int)n, s->d, hkv);
	linear_bwd(t->dn, w->dv, t->dv, b->n1, w->v, (int)n, s->d, hkv);
	rmsnorm_bwd(dx, w->dnorm1, t->dn, b->x, w->norm1, b->r1, (int)n, s->d); /* dx = d x */
	return 0;
}

/* ---------------------------------------------------------------------- */
/* weights of a block by name */

static const float *P(model *m, const char *fmt, int i, float **grad, int need_grad)
{
	char name[64];
	snprintf(name, sizeof name, fmt, i);
	mtensor *t = model_tensor(m, name);
	*grad = need_grad && (m->trainable & t->part) ? m->grads + t->off : NULL;
	return m->params + t->off;
}

/* tells grad_ready that the tensors FIRST .. LAST of block i (adjacent in
 * the table, so one range) are final */
/* grads_layer_final() : the same for every tensor named PREFIX* (a layer's
 * tensors are contiguous in the table, dense or MoE alike). */
static void grads_layer_final(model *m, const char *prefix, int i)
{
	if (!m->grad_ready)
		return;
	char p[64];
	snprintf(p, sizeof p, prefix, i);
	size_t pl = strlen(p), lo = SIZE_MAX, hi = 0;
	for (int k = 0; k < m->nt; k++)
		if (!strncmp(m->t[k].name, p, pl)) {
			lo = m->t[k].off < lo ? m->t[k].off : lo;
			hi = m->t[k].off + m->t[k].n > hi ? m->t[k].off + m->t[k].n : hi;
		}
	if (lo < hi)
		m->grad_ready(m->grad_ready_ctx, lo, hi - lo);
}

static void grads_final(model *m, const char *first, const char *last, int i)
{
	if (!m->grad_ready)
		return;
	char name[64];
	snprintf(name, sizeof name, first, i);
	const mtensor *a = model_tensor(m, name);
	snprintf(name, sizeof name, last, i);
	const mtensor *b = model_tensor(m, name);
	if (a && b && b->off >= a->off)
		m->grad_ready(m->grad_ready_ctx, a->off, b->off + b->n - a->off);
}

static block_w vit_w(model *m, int i, int g)
{
	block_w w = {0};
	size_t dd = (size_t)m->c.vit_dim * m->c.vit_dim;
	float *dqkv;
	w.norm1 = P(m, "visual.blocks.%d.norm1.weight", i, &w.dnorm1, g);
	w.q = P(m, "visual.blocks.%d.attn.qkv.weight", i, &dqkv, g); /* rows: q, then k, then v */
	w.k = w.q + dd;
	w.v = w.q + 2 * dd;
	if (dqkv) {
		w.dq = dqkv;
		w.dk = dqkv + dd;
		w.dv = dqkv + 2 * dd;
	}
	w.o = P(m, "visual.blocks.%d.attn.proj.weight", i, &w.dout, g);
	w.norm2 = P(m, "visual.blocks.%d.norm2.weight", i, &w.dnorm2, g);
	w.gate = P(m, "visual.blocks.%d.mlp.gate_proj.weight", i, &w.dgate, g);
	w.up = P(m, "visual.blocks.%d.mlp.up_proj.weight", i, &w.dup, g);
	w.down = P(m, "visual.blocks.%d.mlp.down_proj.weight", i, &w.ddown, g);
	return w;
}

/* the MoE mlp's weights of layer i into mw (moe_w_alloc'ed) */
static void llm_moe_w(model *m, int i, int g, moe_w *mw)
{
	float *unused;
	moe_w_alloc(mw, m->c.n_experts);
	mw->router = P(m, "model.layers.%d.mlp.gate.weight", i, &mw->drouter, g);
	mw->bias = P(m, "model.layers.%d.mlp.gate.e_score_correction_bias", i, &unused, 0);
	if (m->c.shared_mlp > 0) {
		mw->sgate = P(m, "model.layers.%d.mlp.shared_experts.gate_proj.weight", i, &mw->dsgate, g);
		mw->sup = P(m, "model.layers.%d.mlp.shared_experts.up_proj.weight", i, &mw->dsup, g);
		mw->sdown = P(m, "model.layers.%d.mlp.shared_experts.down_proj.weight", i, &mw->dsdown, g);
	}
	for (int j = 0; j < m->c.n_experts; j++) {
		char name[64];
		const char *kind[3] = {"gate_proj", "up_proj", "down_proj"};
		const float **wp[3] = {&mw->gate[j], &mw->up[j], &mw->down[j]};
		float **gp[3] = {&mw->dgate[j], &mw->dup[j], &mw->ddown[j]};
		for (int q = 0; q < 3; q++) {
			snprintf(name, sizeof name, "model.layers.%d.mlp.experts.%d.%s.weight", i, j, kind[q]);
			mtensor *t = model_tensor(m, name);
			*wp[q] = m->params + t->off;
			*gp[q] = g && (m->trainable & t->part) ? m->grads + t->off : NULL;
		}
	}
}

static block_w llm_w(model *m, int i, int g, moe_w *mw)
{
	block_w w = {0};
	w.norm1 = P(m, "model.layers.%d.input_layernorm.weight", i, &w.dnorm1, g);
	w.q = P(m, "model.layers.%d.self_attn.q_proj.weight", i, &w.dq, g);
	w.k = P(m, "model.layers.%d.self_attn.k_proj.weight", i, &w.dk, g);
	w.v = P(m, "model.layers.%d.self_attn.v_proj.weight", i, &w.dv, g);
	w.o = P(m, "model.layers.%d.self_attn.o_proj.weight", i, &w.dout, g);
	w.qn = P(m, "model.layers.%d.self_attn.q_norm.weight", i, &w.dqn, g);
	w.kn = P(m, "model.layers.%d.self_attn.k_norm.weight", i, &w.dkn, g);
	w.norm2 = P(m, "model.layers.%d.post_attention_layernorm.weight", i, &w.dnorm2, g);
	if (model_is_moe(&m->c, i)) {
		llm_moe_w(m, i, g, mw);
		w.moe = mw;
		return w;
	}
	w.gate = P(m, "model.layers.%d.mlp.gate_proj.weight", i, &w.dgate, g);
	w.up = P(m, "model.layers.%d.mlp.up_proj.weight", i, &w.dup, g);
	w.down = P(m, "model.layers.%d.mlp.down_proj.weight", i, &w.ddown, g);
	return w;
}

/* y[r] += b (the merger's biases) */
static void add_bias(float *y, const float *b, size_t n, int d)
{
	for (size_t r = 0; r < n; r++)
		for (int j = 0; j < d; j++)
			y[r * d + j] += b[j];
}

/* db += column sums of dy */
static void bias_bwd(float *db, const float *dy, size_t n, int d)
{
	if (!db)
		return;
	for (size_t r = 0; r < n; r++)
		for (int j = 0; j < d; j++)
			db[j] += dy[r * d + j];
}

/* ---------------------------------------------------------------------- */
/* the step */

static int check_batch(const model *m, const mbatch *b, size_t *np, size_t *nm, mvl_err *err)
{
	size_t pads = 0, covered = 0;
	*np = *nm = 0;
	for (size_t r = 0; r < (size_t)b->B * b->L; r++) {
		if (b->ids[r] >= (uint32_t)m->c.vocab)
			return mvl_errf(err, "token id %u at row %zu is outside the model's vocabulary of %d (a "
					     "tokenizer bigger than the model?)", b->ids[r], r, m->c.vocab);
		pads += b->ids[r] == b->image_pad;
	}
	for (int k = 0; k < b->nimg; k++) {
		const mimage *im = &b->img[k];
		if (im->h <= 0 || im->w <= 0 || im->h % 28 || im->w % 28 || im->seq < 0 || im->seq >= b->B)
			return mvl_errf(err, "image %d: %dx%d in sequence %d: sides must be positive multiples of 28", k,
					im->w, im->h, im->seq);
		size_t t = (size_t)(im->h / 28) * (size_t)(im->w / 28);
		if (im->token < 0 || (size_t)im->token + t > (size_t)b->L)
			return mvl_errf(err, "image %d: its %zu pads run past the sequence", k, t);
		for (size_t i = 0; i < t; i++)
			if (b->ids[(size_t)im->seq * b->L + im->token + i] != b->image_pad)
				return mvl_errf(err, "image %d: token %zu of its block is not <|image_pad|>", k,
						(size_t)im->token + i);
		covered += t;
		*nm += t;
		*np += 4 * t;
	}
	if (covered != pads)
		return mvl_errf(err, "%zu image pad tokens but the images cover %zu", pads, covered);
	(void)m;
	return 0;
}

static void act_layout(mact *a, const model_config *c, size_t n, size_t np, size_t nm)
{
	int Dv = c->vit_dim, D = c->dim, dhv = Dv / c->vit_heads, dh = D / c->heads;
	for (int l = 0; l < c->vit_layers; l++)
		block_alloc(a, &a->vb[l], np, Dv, c->vit_heads, c->vit_heads, dhv, c->vit_mlp, 0);
	for (int l = 0; l < c->layers; l++)
		block_alloc(a, &a->lb[l], n, D, c->heads, c->kv_heads, dh, model_is_moe(c, l) ? 0 : c->mlp, 1);
	a->patches = take(a, np * PATCH_IN);
	a->vout = take(a, np * Dv);
	a->mcat = take(a, nm * 4 * Dv);
	a->mn = take(a, nm * 4 * Dv);
	a->mr = take(a, nm);
	a->f1 = take(a, nm * 4 * Dv);
	a->gl = take(a, nm * 4 * Dv);
	a->mout = take(a, nm * D);
	a->xf = take(a, n * D);
	a->nf = take(a, n * D);
	a->rf = take(a, n);
	a->vang = take(a, np * (dhv / 2));
	a->lang = take(a, n * (dh / 2));
}

static int max3(int a, int b, int c)
{
	return a > b ? (a > c ? a : c) : (b > c ? b : c);
}

int model_step(model *m, const mbatch *b, int backward, float scale, double *loss_sum, uint64_t *count, mvl_err *err)
{
	const model_config *c = &m->c;
	size_t np, nm;
	if (check_batch(m, b, &np, &nm, err) != 0)
		return -1;
	size_t n = (size_t)b->B * b->L, npads = nm;
	/* Without a backward, an image the batch holds more than once (eval's
	 * retrieval candidates share one, score's contrast rows reuse their
	 * neighbours') goes through the vision tower once: first[k] is the
	 * first image with k's pixels, and np, nm count the distinct ones. */
	int *first = xmalloc(((size_t)b->nimg + 1) * sizeof *first);
	for (int k = 0; k < b->nimg; k++) {
		const mimage *im = &b->img[k];
		first[k] = k;
		for (int j = 0; !backward && j < k && first[k] == k; j++) {
			const mimage *o = &b->img[j];
			if (first[j] == j && o->h == im->h && o->w == im->w &&
			    (o->px == im->px || !memcmp(o->px, im->px, (size_t)im->h * im->w * 3)))
				first[k] = j;
		}
		if (first[k] != k) {
			size_t t = (size_t)(im->h / 28) * (size_t)(im->w / 28);
			nm -= t;
			np -= 4 * t;
		}
	}
	int Dv = c->vit_dim, D = c->dim, dhv = Dv / c->vit_heads, dh = D / c->heads;
	int hq = c->heads * dh, hkv = c->kv_heads * dh;
	mact *a = m->act;
	if (!a)
		a = m->act = xcalloc(1, sizeof *a);
	a->n = n;
	a->np = np;
	a->nm = nm;
	free(a->vb);
	free(a->lb);
	a->vb = xcalloc((size_t)c->vit_layers + 1, sizeof *a->vb);
	a->lb = xcalloc((size_t)c->layers + 1, sizeof *a->lb);
	/* measure, (re)allocate, lay out */
	float *keep = a->arena;
	a->arena = NULL;
	a->used = 0;
	act_layout(a, c, n, np, nm);
	size_t need = a->used;
	a->arena = keep;
	if (a->cap < need) {
		free(a->arena);
		a->arena = xmalloc(need * sizeof *a->arena);
		a->cap = need;
	}
	a->used = 0;
	act_layout(a, c, n, np, nm);
	free(a->vseg);
	free(a->lseg);
	free(a->target);
	free(a->pad_row);
	free(a->pad_src);
	a->vseg = xcalloc((size_t)b->nimg + 1, sizeof *a->vseg);
	a->lseg = xcalloc(n + 1, sizeof *a->lseg);
	a->target = xmalloc(n * sizeof *a->target);
	a->pad_row = xmalloc((npads + 1) * sizeof *a->pad_row);
	a->pad_src = xmalloc((npads + 1) * sizeof *a->pad_src);
	if (c->n_experts > 0) {
		if (!a->moe) {
			a->moe = xcalloc((size_t)c->layers, sizeof *a->moe);
			a->load = xcalloc((size_t)c->layers * c->n_experts, sizeof *a->load);
		}
		memset(a->load, 0, (size_t)c->layers * c->n_experts * sizeof *a->load);
		for (int l = 0; l < c->layers; l++)
			if (model_is_moe(c, l)) {
				if (!a->moe[l])
					a->moe[l] = moe_act_new();
				a->lb[l].moe = a->moe[l];
				a->lb[l].mc.load = a->load + (size_t)l * c->n_experts;
			}
	}

	/* ---- vision ---- */
	int *prow = xmalloc((np + 1) * sizeof *prow), *pcol = xmalloc((np + 1) * sizeof *pcol);
	size_t p = 0, mk = 0, mq = 0;
	size_t *mstart = xmalloc(((size_t)b->nimg + 1) * sizeof *mstart); /* image k's first row of mout */
	a->nvseg = 0;
	for (int k = 0; k < b->nimg; k++) {
		const mimage *im = &b->img[k];
		int ph = im->h / PATCH, pw = im->w / PATCH, t = (im->h / 28) * (im->w / 28);
		mstart[k] = first[k] == k ? mq : mstart[first[k]];
		for (int i = 0; i < t; i++, mk++) {
			a->pad_row[mk] = (size_t)im->seq * b->L + im->token + i;
			a->pad_src[mk] = mstart[k] + i;
		}
		if (first[k] != k)
			continue;
		mq += t;
		a->vseg[a->nvseg++] = (attn_seg){(int)p, ph * pw, 0};
		for (int r = 0; r < ph; r++)
			for (int cc = 0; cc < pw; cc++, p++) {
				float *v = a->patches + p * PATCH_IN;
				for (int ch = 0; ch < 3; ch++)
					for (int y = 0; y < PATCH; y++)
						for (int x = 0; x < PATCH; x++)
							v[ch * 196 + y * 14 + x] =
								im->px[((size_t)(r * PATCH + y) * im->w + cc * PATCH + x) * 3 + ch] /
									127.5f -
								1.0f;
				prow[p] = r;
				pcol[p] = cc;
			}
	}
	free(mstart);
	rope_angles_2d(a->vang, prow, pcol, (int)np, dhv, c->vit_rope_theta);
	free(prow);
	free(pcol);
	int gvit = backward && (m->trainable & MPART_VIT), gproj = backward && (m->trainable & MPART_PROJECTOR);
	int gllm = backward && (m->trainable & MPART_LLM);
	size_t maxrows = np > n ? np : n;
	int maxf = max3(c->vit_mlp, c->mlp, 4 * Dv);
	int maxd = max3(Dv, D, 4 * Dv);
	float *tmp = xmalloc(maxrows * (size_t)(maxd > hq ? maxd : hq) * sizeof *tmp + 64);
	float *unused;
	if (np) {
		const float *pe = P(m, "visual.patch_embed.proj.weight", 0, &unused, 0);
		float *x = c->vit_layers ? a->vb[0].x : a->vout;
		linear_fwd(x, a->patches, pe, (int)np, PATCH_IN, Dv);
		for (int l = 0; l < c->vit_layers; l++) {
			block_shape s = {np, Dv, c->vit_heads, c->vit_heads, dhv, c->vit_mlp, 0, c->norm_eps, a->vang,
					 a->vseg, a->nvseg, NULL, 0};
			block_w w = vit_w(m, l, 0);
			block_fwd(&s, &w, &a->vb[l], l + 1 < c->vit_layers ? a->vb[l + 1].x : a->vout, tmp, err);
		}
		/* merger */
		size_t q = 0, base = 0;
		for (int k = 0; k < b->nimg; k++) {
			if (first[k] != k)
				continue;
			int pw = b->img[k].w / PATCH, mh = b->img[k].h / 28, mw = b->img[k].w / 28;
			for (int i = 0; i < mh; i++)
				for (int j = 0; j < mw; j++, q++) {
					size_t src[4] = {base + (size_t)(2 * i) * pw + 2 * j, base + (size_t)(2 * i) * pw + 2 * j + 1,
							 base + (size_t)(2 * i + 1) * pw + 2 * j,
							 base + (size_t)(2 * i + 1) * pw + 2 * j + 1};
					for (int e = 0; e < 4; e++)
						memcpy(a->mcat + q * 4 * Dv + (size_t)e * Dv, a->vout + src[e] * Dv, Dv * sizeof(float));
				}
			base += (size_t)(b->img[k].h / PATCH) * pw;
		}
		rmsnorm_fwd(a->mn, a->mr, a->mcat, P(m, "visual.merger.ln_q.weight", 0, &unused, 0), (int)nm, 4 * Dv,
			    c->norm_eps);
		linear_fwd(a->f1, a->mn, P(m, "visual.merger.mlp.0.weight", 0, &unused, 0), (int)nm, 4 * Dv, 4 * Dv);
		add_bias(a->f1, P(m, "visual.merger.mlp.0.bias", 0, &unused, 0), nm, 4 * Dv);
		gelu_fwd(a->gl, a->f1, nm * 4 * Dv);
		linear_fwd(a->mout, a->gl, P(m, "visual.merger.mlp.2.weight", 0, &unused, 0), (int)nm, 4 * Dv, D);
		add_bias(a->mout, P(m, "visual.merger.mlp.2.bias", 0, &unused, 0), nm, D);
	}

	free(first);

	/* ---- LLM ---- */
	float *dE_ptr;
	const float *E = P(m, "model.embed_tokens.weight", 0, &dE_ptr, gllm);
	float *x0 = c->layers ? a->lb[0].x : a->xf;
	embed_fwd(x0, E, b->ids, (int)n, D);
	for (size_t t = 0; t < npads; t++)
		memcpy(x0 + a->pad_row[t] * D, a->mout + a->pad_src[t] * D, D * sizeof(float));
	rope_angles_1d(a->lang, b->pos, (int)n, dh, c->rope_theta);
	a->nlseg = 0;
	for (int s = 0; s < b->B; s++)
		for (int r = 0; r < b->L;) {
			size_t i = (size_t)s * b->L + r;
			int e = r + 1;
			while (e < b->L && b->seg[(size_t)s * b->L + e] == b->seg[i])
				e++;
			if (b->seg[i])
				a->lseg[a->nlseg++] = (attn_seg){(int)i, e - r, 1};
			r = e;
		}
	uint64_t cnt = 0;
	for (int s = 0; s < b->B; s++)
		for (int r = 0; r < b->L; r++) {
			size_t i = (size_t)s * b->L + r;
			int ok = r + 1 < b->L && b->seg[i] && b->seg[i + 1] == b->seg[i] && b->loss[i + 1];
			a->target[i] = ok ? (int32_t)b->ids[i + 1] : -1;
			cnt += ok;
		}
	moe_shape ms = {D, c->n_experts, c->top_k, c->expert_mlp, c->shared_mlp, c->routed_scale, c->capacity,
			c->balance_alpha};
	block_shape ls = {n, D, c->heads, c->kv_heads, dh, c->mlp, 1, c->norm_eps, a->lang, a->lseg, a->nlseg, &ms,
			  scale};
	moe_w mw = {0};
	m->moe.aux = 0;
	m->moe.digest = 0;
	for (int l = 0; l < c->layers; l++) {
		block_w w = llm_w(m, l, 0, &mw);
		/* a forward alone may run on one rank (evaluation): local experts */
		w.ep = backward && m->ep ? m->ep[l] : NULL;
		int rc = block_fwd(&ls, &w, &a->lb[l], l + 1 < c->layers ? a->lb[l + 1].x : a->xf, tmp, err);
		moe_w_free(&mw);
		if (rc != 0) {
			free(tmp);
			return -1;
		}
		if (model_is_moe(c, l)) {
			const moe_count *mc = &a->lb[l].mc;
			m->moe.aux += mc->aux;
			m->moe.digest = m->moe.digest * 0x100000001B3ull ^ mc->digest;
			if (backward) {
				m->moe.routed += mc->routed;
				m->moe.dropped += mc->dropped;
				for (int e = 0; e < c->n_experts; e++)
					m->moe_load[(size_t)l * c->n_experts + e] += mc->load[e];
			}
		}
	}
	float *dnormf;
	const float *wnf = P(m, "model.norm.weight", 0, &dnormf, gllm);
	rmsnorm_fwd(a->nf, a->rf, a->xf, wnf, (int)n, D, c->norm_eps);
	float *dhead;
	const float *head = c->tied ? P(m, "model.embed_tokens.weight", 0, &dhead, gllm)
				    : P(m, "lm_head.weight", 0, &dhead, gllm);
	/* logits only for rows that predict something, LOGIT_ROWS at a time */
	int need_dx = backward && (gllm || gproj || gvit);
	float *dnf = need_dx ? xcalloc(n * D, sizeof *dnf) : NULL;
	float *xs = xmalloc((size_t)LOGIT_ROWS * D * sizeof *xs), *logits = xmalloc((size_t)LOGIT_ROWS * c->vocab * sizeof *logits);
	float *dxs = xmalloc((size_t)LOGIT_ROWS * D * sizeof *dxs);
	size_t rows[LOGIT_ROWS];
	int32_t tg[LOGIT_ROWS];
	double total = 0;
	if (b->seq_loss)
		memset(b->seq_loss, 0, (size_t)b->B * sizeof *b->seq_loss);
	for (size_t r = 0; r < n;) {
		int k = 0;
		/* with per-sequence sums asked, a block never spans two sequences */
		size_t seq = r / (size_t)b->L;
		for (; r < n && k < LOGIT_ROWS && (!b->seq_loss || r / (size_t)b->L == seq); r++)
			if (a->target[r] >= 0) {
				rows[k] = r;
				tg[k] = a->target[r];
				memcpy(xs + (size_t)k * D, a->nf + r * D, D * sizeof(float));
				k++;
			}
		if (!k) {
			if (r < n)
				continue;
			break;
		}
		linear_fwd(logits, xs, head, k, D, c->vocab);
		double part = xent_fwd_bwd(logits, tg, k, c->vocab, scale);
		total += part;
		if (b->seq_loss)
			b->seq_loss[rows[0] / (size_t)b->L] += part;
		if (!backward)
			continue;
		if (need_dx) {
			memset(dxs, 0, (size_t)k * D * sizeof *dxs);
			linear_bwd(dxs, dhead, logits, xs, head, k, D, c->vocab);
			for (int i = 0; i < k; i++)
				memcpy(dnf + rows[i] * D, dxs + (size_t)i * D, D * sizeof(float));
		}
	}
	free(xs);
	free(logits);
	free(dxs);
	*loss_sum = total;
	*count = cnt;
	if (!need_dx) {
		free(tmp);
		return 0;
	}

	/* ---- backward ---- */
	float *dx = xcalloc(n * D, sizeof *dx);
	rmsnorm_bwd(dx, dnormf, dnf, a->xf, wnf, a->rf, (int)n, D);
	free(dnf);
	grads_final(m, "model.norm.weight", "model.norm.weight", 0);
	if (!c->tied) /* a tied head is the embedding: final only after embed_bwd */
		grads_final(m, "lm_head.weight", "lm_head.weight", 0);
	size_t sr = maxrows;
	block_scratch bs;
	bs.dh = xmalloc(sr * (size_t)maxf * sizeof(float));
	bs.dg = xmalloc(sr * (size_t)maxf * sizeof(float));
	bs.du = xmalloc(sr * (size_t)maxf * sizeof(float));
	bs.dn = xmalloc(sr * (size_t)maxd * sizeof(float));
	bs.dq = xmalloc(sr * (size_t)(hq > Dv ? hq : Dv) * sizeof(float));
	bs.dk = xmalloc(sr * (size_t)(hq > Dv ? hq : Dv) * sizeof(float));
	bs.dv = xmalloc(sr * (size_t)(hq > Dv ? hq : Dv) * sizeof(float));
	bs.dqraw = xmalloc(n * (size_t)hq * sizeof(float));
	bs.dkraw = xmalloc(n * (size_t)hkv * sizeof(float));
	bs.dattn = xmalloc(sr * (size_t)(hq > Dv ? hq : Dv) * sizeof(float));
	int into_vision = nm && (gproj || gvit), rc = 0;
	for (int l = c->layers - 1; l >= 0; l--) {
		block_w w = llm_w(m, l, 1, &mw);
		w.ep = m->ep ? m->ep[l] : NULL;
		rc = block_bwd(&ls, &w, &a->lb[l], dx, &bs, err);
		moe_w_free(&mw);
		if (rc != 0) {
			free(dx);
			goto out;
		}
		grads_layer_final(m, "model.layers.%d.", l);
	}
	/* the embedding rows; image rows go to the merger */
	float *dmout = into_vision ? xmalloc(nm * D * sizeof *dmout) : NULL;
	for (size_t t = 0; t < nm; t++) {
		if (dmout)
			memcpy(dmout + t * D, dx + a->pad_row[t] * D, D * sizeof(float));
		memset(dx + a->pad_row[t] * D, 0, D * sizeof(float));
	}
	if (dE_ptr) {
		embed_bwd(dE_ptr, dx, b->ids, (int)n, D);
		grads_final(m, "model.embed_tokens.weight", "model.embed_tokens.weight", 0);
	}
	free(dx);
	if (into_vision) {
		float *dw;
		float *dgl = xcalloc(nm * 4 * Dv, sizeof *dgl), *df1 = xcalloc(nm * 4 * Dv, sizeof *df1);
		float *dmn = xcalloc(nm * 4 * Dv, sizeof *dmn), *dmcat = xcalloc(nm * 4 * Dv, sizeof *dmcat);
		P(m, "visual.merger.mlp.2.bias", 0, &dw, 1);
		bias_bwd(dw, dmout, nm, D);
		const float *w2 = P(m, "visual.merger.mlp.2.weight", 0, &dw, 1);
		linear_bwd(dgl, dw, dmout, a->gl, w2, (int)nm, 4 * Dv, D);
		gelu_bwd(df1, dgl, a->f1, nm * 4 * Dv);
		P(m, "visual.merger.mlp.0.bias", 0, &dw, 1);
		bias_bwd(dw, df1, nm, 4 * Dv);
		const float *w1 = P(m, "visual.merger.mlp.0.weight", 0, &dw, 1);
		linear_bwd(dmn, dw, df1, a->mn, w1, (int)nm, 4 * Dv, 4 * Dv);
		const float *wn = P(m, "visual.merger.ln_q.weight", 0, &dw, 1);
		rmsnorm_bwd(dmcat, dw, dmn, a->mcat, wn, a->mr, (int)nm, 4 * Dv);
		grads_final(m, "visual.merger.ln_q.weight", "visual.merger.mlp.2.bias", 0);
		free(dgl);
		free(df1);
		free(dmn);
		if (gvit) {
			/* un-concatenate into the patch rows, then back through the ViT */
			float *dv = xcalloc(np * Dv, sizeof *dv);
			size_t q = 0, base = 0;
			for (int k = 0; k < b->nimg; k++) {
				int pw = b->img[k].w / PATCH, mh = b->img[k].h / 28, mw = b->img[k].w / 28;
				for (int i = 0; i < mh; i++)
					for (int j = 0; j < mw; j++, q++) {
						size_t src[4] = {base + (size_t)(2 * i) * pw + 2 * j,
								 base + (size_t)(2 * i) * pw + 2 * j + 1,
								 base + (size_t)(2 * i + 1) * pw + 2 * j,
								 base + (size_t)(2 * i + 1) * pw + 2 * j + 1};
						for (int e = 0; e < 4; e++)
							memcpy(dv + src[e] * Dv, dmcat + q * 4 * Dv + (size_t)e * Dv,
							       Dv * sizeof(float));
					}
				base += (size_t)(b->img[k].h / PATCH) * pw;
			}
			for (int l = c->vit_layers - 1; l >= 0; l--) {
				block_shape s = {np, Dv, c->vit_heads, c->vit_heads, dhv, c->vit_mlp, 0, c->norm_eps, a->vang,
						 a->vseg, a->nvseg, NULL, 0};
				block_w w = vit_w(m, l, 1);
				block_bwd(&s, &w, &a->vb[l], dv, &bs, err);
				grads_final(m, "visual.blocks.%d.norm1.weight", "visual.blocks.%d.mlp.down_proj.weight", l);
			}
			const float *pe = P(m, "visual.patch_embed.proj.weight", 0, &dw, 1);
			linear_bwd(NULL, dw, dv, a->patches, pe, (int)np, PATCH_IN, Dv);
			free(dv);
		}
		free(dmcat);
		free(dmout);
	}
out:
	free(bs.dh);
	free(bs.dg);
	free(bs.du);
	free(bs.dn);
	free(bs.dq);
	free(bs.dk);
	free(bs.dv);
	free(bs.dqraw);
	free(bs.dkraw);
	free(bs.dattn);
	free(tmp);
	return rc;
}

double model_flops(const model *m, const mbatch *b, int train)
{
	const model_config *c = &m->c;
	double n = (double)b->B * b->L, np = 0;
	for (int k = 0; k < b->nimg; k++)
		np += (double)(b->img[k].h / PATCH) * (b->img[k].w / PATCH);
	double Dv = c->vit_dim, D = c->dim, dh = D / c->heads;
	double vit = np * (PATCH_IN * Dv + c->vit_layers * (4 * Dv * Dv + 3 * Dv * c->vit_mlp));
	double merger = np / 4 * (16 * Dv * Dv + 4 * Dv * D);
	double llm = n * (c->layers * D * dh * (c->heads * 2 + c->kv_heads * 2) + D * c->vocab);
	for (int l = 0; l < c->layers; l++) /* active parameters: router, shared, top_k experts */
		llm += n * (model_is_moe(c, l) ? D * (c->n_experts + 3.0 * (c->shared_mlp + (double)c->top_k * c->expert_mlp))
					       : 3 * D * c->mlp);
	/* attention scores and values: per segment len^2 * dh * heads * 2 (x 1/2 causal) */
	double att = 0, vatt = 0;
	for (int k = 0; k < b->nimg; k++) {
		double p = (double)(b->img[k].h / PATCH) * (b->img[k].w / PATCH);
		vatt += c->vit_layers * 2 * p * p * Dv;
	}
	for (int s = 0; s < b->B; s++)
		for (int r = 0; r < b->L;) {
			int e = r + 1;
			while (e < b->L && b->seg[(size_t)s * b->L + e] == b->seg[(size_t)s * b->L + r])
				e++;
			if (b->seg[(size_t)s * b->L + r])
				att += c->layers * (double)(e - r) * (e - r) * D; /* 2 products, causal half */
			r = e;
		}
	vit += vatt;
	llm += att;
	if (!train)
		return 2 * (vit + merger + llm);
	/* a training step: the forward, then per part a backward product for
	 * its input's gradient when anything before it trains, and one for its
	 * weights' gradients when it trains (a frozen ViT costs no backward) */
	int tv = (m->trainable & MPART_VIT) != 0, tp = (m->trainable & MPART_PROJECTOR) != 0,
	    tl = (m->trainable & MPART_LLM) != 0;
	double f = vit * (1 + tv) + merger * (1 + tp + tv) + llm * (1 + tl + (tv || tp));
	return 2 * f;
}

void model_free(model *m)
{
	if (!m)
		return;
	if (m->act) {
		free(m->act->arena);
		free(m->act->vb);
		free(m->act->lb);
		free(m->act->vseg);
		free(m->act->lseg);
		free(m->act->target);
		free(m->act->pad_row);
		free(m->act->pad_src);
		for (int l = 0; m->act->moe && l < m->c.layers; l++)
			moe_act_free(m->act->moe[l]);
		free(m->act->moe);
		free(m->act->load);
		free(m->act);
	}
	free(m->t);
	free(m->params);
	free(m->grads);
	free(m->moe_load);
	for (int l = 0; m->ep && l < m->c.layers; l++)
		moe_ep_free(m->ep[l]);
	free(m->ep);
	free(m);
}

int model_set_expert_parallel(model *m, dist *d, mvl_err *err)
{
	const model_config *c = &m->c;
	for (int l = 0; m->ep && l < c->layers; l++)
		moe_ep_free(m->ep[l]);
	free(m->ep);
	m->ep = NULL;
	m->ep_ranks = 0;
	if (!d)
		return 0;
	int any = 0;
	for (int l = 0; l < c->layers; l++)
		any |= model_is_moe(c, l);
	if (!any)
		return mvl_errf(err, "expert parallel: the model has no MoE layer");
	moe_shape ms = {c->dim, c->n_experts, c->top_k, c->expert_mlp, c->shared_mlp, c->routed_scale, c->capacity,
			c->balance_alpha};
	m->ep = xcalloc((size_t)c->layers, sizeof *m->ep);
	for (int l = 0; l < c->layers; l++)
		if (model_is_moe(c, l) && !(m->ep[l] = moe_ep_new(d, &ms, err))) {
			model_set_expert_parallel(m, NULL, err);
			return -1;
		}
	m->ep_ranks = d->size;
	return 0;
}

int model_expert_owner(const model *m, int i)
{
	int e = m->t[i].expert;
	return m->ep_ranks && e >= 0 ? e / (m->c.n_experts / m->ep_ranks) : -1;
}

void model_moe_balance(model *m)
{
	const model_config *c = &m->c;
	for (int l = 0; m->moe_load && l < c->layers; l++) {
		uint64_t *load = m->moe_load + (size_t)l * c->n_experts;
		if (model_is_moe(c, l) && (m->trainable & MPART_LLM)) {
			mtensor *t = NULL;
			char name[64];
			snprintf(name, sizeof name, "model.layers.%d.mlp.gate.e_score_correction_bias", l);
			t = model_tensor(m, name);
			moe_bias_update(m->params + t->off, load, c->n_experts, c->bias_gamma);
		}
		memset(load, 0, (size_t)c->n_experts * sizeof *load);
	}
	m->moe.routed = m->moe.dropped = 0;
}

/* ---------------------------------------------------------------------- */
/* generation with a KV cache */

/* one new row (position pos) through the LLM, attending to the cache;
 * its keys and values are appended.  x [D] in, hidden [D] out. */
static void decode_row(model *m, float *x, uint32_t pos, float **kc, float **vc, int t, float *s, moe_act *ma)
{
	const model_config *c = &m->c;
	int D = c->dim, H = c->heads, Hkv = c->kv_heads, dh = D / H, F = c->mlp;
	int hq = H * dh, hkv = Hkv * dh, g = H / Hkv;
	float *n1 = s, *q = n1 + D, *k = q + hq, *v = k + hkv, *o = v + hkv, *tmp = o + hq, *gt = tmp + D,
	      *ut = gt + F, *ht = ut + F, *sc = ht + F, r, ang[512];
	rope_angles_1d(ang, &pos, 1, dh, c->rope_theta);
	for (int l = 0; l < c->layers; l++) {
		moe_w mw = {0};
		block_w w = llm_w(m, l, 0, &mw);
		rmsnorm_fwd(n1, &r, x, w.norm1, 1, D, c->norm_eps);
		linear_fwd(q, n1, w.q, 1, D, hq);
		linear_fwd(k, n1, w.k, 1, D, hkv);
		linear_fwd(v, n1, w.v, 1, D, hkv);
		float rs[64];
		rmsnorm_fwd(q, rs, q, w.qn, H, dh, c->norm_eps);
		rmsnorm_fwd(k, rs, k, w.kn, Hkv, dh, c->norm_eps);
		rope_fwd(q, ang, 1, H, dh);
		rope_fwd(k, ang, 1, Hkv, dh);
		memcpy(kc[l] + (size_t)t * hkv, k, hkv * sizeof(float));
		memcpy(vc[l] + (size_t)t * hkv, v, hkv * sizeof(float));
		float scale = 1.0f / sqrtf((float)dh);
		for (int h = 0; h < H; h++) {
			int kh = h / g;
			float mx = -INFINITY;
			for (int j = 0; j <= t; j++) {
				float d = 0;
				for (int e = 0; e < dh; e++)
					d += q[h * dh + e] * kc[l][(size_t)j * hkv + kh * dh + e];
				sc[j] = d * scale;
				mx = sc[j] > mx ? sc[j] : mx;
			}
			double z = 0;
			for (int j = 0; j <= t; j++)
				z += sc[j] = expf(sc[j] - mx);
			for (int e = 0; e < dh; e++)
				o[h * dh + e] = 0;
			for (int j = 0; j <= t; j++)
				for (int e = 0; e < dh; e++)
					o[h * dh + e] += (float)(sc[j] / z) * vc[l][(size_t)j * hkv + kh * dh + e];
		}
		linear_fwd(tmp, o, w.o, 1, hq, D);
		for (int i = 0; i < D; i++)
			x[i] += tmp[i];
		rmsnorm_fwd(n1, &r, x, w.norm2, 1, D, c->norm_eps);
		if (w.moe) {
			/* one row, one segment: no capacity can bind */
			moe_shape ms = {D, c->n_experts, c->top_k, c->expert_mlp, c->shared_mlp, c->routed_scale, 0, 0};
			attn_seg one = {0, 1, 1};
			moe_count mc = {0};
			moe_fwd(&ms, w.moe, ma, tmp, n1, 1, &one, 1, &mc);
			moe_w_free(&mw);
		} else {
			linear_fwd(gt, n1, w.gate, 1, D, F);
			linear_fwd(ut, n1, w.up, 1, D, F);
			swiglu_fwd(ht, gt, ut, (size_t)F);
			linear_fwd(tmp, ht, w.down, 1, F, D);
		}
		for (int i = 0; i < D; i++)
			x[i] += tmp[i];
	}
}

static int by_logit_desc(const void *a, const void *b, void *logits)
{
	float x = ((const float *)logits)[*(const int *)a], y = ((const float *)logits)[*(const int *)b];
	return x < y ? 1 : x > y ? -1 : *(const int *)a - *(const int *)b;
}

/* the next token among logits[0..V): greedy at temperature 0, else top-p */
static uint32_t pick(float *logits, int V, float temperature, float top_p, uint64_t *rng)
{
	int best = 0;
	for (int i = 1; i < V; i++)
		if (logits[i] > logits[best])
			best = i;
	if (temperature <= 0)
		return (uint32_t)best;
	double z = 0;
	for (int i = 0; i < V; i++)
		z += logits[i] = expf((logits[i] - logits[best]) / temperature);
	/* nucleus: the smallest set of most likely tokens holding top_p (a
	 * sort: a vocabulary of 150k with a flat distribution needs thousands) */
	int *idx = xmalloc((size_t)V * sizeof *idx), n = 0;
	for (int i = 0; i < V; i++)
		idx[i] = i;
	qsort_r(idx, (size_t)V, sizeof *idx, by_logit_desc, logits);
	double mass = 0, cut = top_p > 0 && top_p < 1 ? top_p * z : z;
	while (n < V && (n == 0 || mass < cut))
		mass += logits[idx[n++]];
	double u = (double)(splitmix(rng) >> 11) / 9007199254740992.0 * mass, acc = 0;
	uint32_t tok = (uint32_t)idx[n - 1];
	for (int i = 0; i < n; i++)
		if ((acc += logits[idx[i]]) >= u) {
			tok = (uint32_t)idx[i];
			break;
		}
	free(idx);
	return tok;
}

int model_generate(model *m, const mbatch *prompt, const gen_opts *g, uint32_t *out, int *nout, mvl_err *err)
{
	const model_config *c = &m->c;
	const int max_new = g->max_new, V = g->ids > 0 && g->ids < c->vocab ? g->ids : c->vocab;
	int n = prompt->L, D = c->dim, dh = D / c->heads, hkv = c->kv_heads * dh, hq = c->heads * dh;
	*nout = 0;
	if (prompt->B != 1 || n < 1)
		return mvl_errf(err, "generation takes one prompt sequence");
	if (dh / 2 > 512 || c->heads > 64)
		return mvl_errf(err, "head dimension %d or %d heads too large for generation", dh, c->heads);
	/* the prompt through the training forward: its keys and values are the
	 * cache, its last hidden row the first prediction */
	double ls;
	uint64_t cnt;
	if (model_step(m, prompt, 0, 1.0f, &ls, &cnt, err) != 0)
		return -1;
	mact *a = m->act;
	int cap = n + max_new + 1;
	float **kc = xcalloc((size_t)c->layers, sizeof *kc), **vc = xcalloc((size_t)c->layers, sizeof *vc);
	for (int l = 0; l < c->layers; l++) {
		kc[l] = xmalloc((size_t)cap * hkv * sizeof(float));
		vc[l] = xmalloc((size_t)cap * hkv * sizeof(float));
		memcpy(kc[l], a->lb[l].k, (size_t)n * hkv * sizeof(float));
		memcpy(vc[l], a->lb[l].v, (size_t)n * hkv * sizeof(float));
	}
	float *x = xmalloc((size_t)D * sizeof *x), *h = xmalloc((size_t)D * sizeof *h);
	float *logits = xmalloc((size_t)c->vocab * sizeof *logits);
	float *s = xmalloc(((size_t)D * 3 + (size_t)hq * 2 + (size_t)hkv * 2 + (size_t)c->mlp * 3 + (size_t)cap) *
			   sizeof *s);
	float *unused;
	const float *E = P(m, "model.embed_tokens.weight", 0, &unused, 0);
	const float *head = c->tied ? E : P(m, "lm_head.weight", 0, &unused, 0);
	const float *wnf = P(m, "model.norm.weight", 0, &unused, 0);
	memcpy(h, a->nf + (size_t)(n - 1) * D, (size_t)D * sizeof *h);
	uint32_t pos = prompt->pos[n - 1];
	uint64_t rng = g->seed;
	float r;
	moe_act *ma = c->n_experts > 0 ? moe_act_new() : NULL;
	for (int t = n; *nout < max_new; t++) {
		linear_fwd(logits, h, head, 1, D, c->vocab);
		uint32_t tok = pick(logits, V, g->temperature, g->top_p, &rng);
		out[(*nout)++] = tok;
		int halt = 0;
		for (int i = 0; i < g->nstop; i++)
			halt |= tok == g->stop[i];
		if (halt || *nout == max_new)
			break;
		memcpy(x, E + (size_t)tok * D, (size_t)D * sizeof *x);
		decode_row(m, x, ++pos, kc, vc, t, s, ma);
		rmsnorm_fwd(h, &r, x, wnf, 1, D, c->norm_eps);
	}
	for (int l = 0; l < c->layers; l++) {
		free(kc[l]);
		free(vc[l]);
	}
	free(kc);
	free(vc);
	free(x);
	free(h);
	free(logits);
	free(s);
	moe_act_free(ma);
	return 0;
}
