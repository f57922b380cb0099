/* test_moe.c: the MoE FFN (moe.h, model.h "MoE") inside the model:
 * finite-difference gradients of every tensor with the balance term in the
 * loss, with and without capacity dropping; the capacity and load
 * accounting; the selection bias moving load toward balance; padding rows
 * unrouted; checkpoints of MoE models; KV-cache decoding through MoE. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "model.h"
#include "moe.h"
#include "train.h"

enum { B = 2, L = 20, V = 40 };

static uint32_t ids[B * L], pos[B * L], seg[B * L];
static uint8_t loss[B * L];

static uint64_t rng = 777;
static uint32_t rnd(void)
{
	rng = rng * 6364136223846793005ull + 1442695040888963407ull;
	return (uint32_t)(rng >> 33);
}

/* sequence 0: two segments and 3 padding rows; sequence 1: one segment, 2 padding rows */
static void make_batch(mbatch *b)
{
	for (int s = 0; s < B; s++) {
		int p = 0;
		for (int t = 0; t < L; t++) {
			size_t i = (size_t)s * L + t;
			seg[i] = s == 0 ? (t < 9 ? 1 : t < 17 ? 2 : 0) : (t < 18 ? 1 : 0);
			if (t && seg[i] != seg[i - 1])
				p = 0;
			pos[i] = seg[i] ? (uint32_t)p++ : 0;
			ids[i] = rnd() % (V - 3);
			loss[i] = seg[i] != 0 && pos[i] > 0;
		}
	}
	*b = (mbatch){B, L, ids, pos, seg, loss, NULL, 0, V - 1, NULL};
}

/* a micro model: layer 0 dense, layer 1 MoE of 4 experts, top 2 */
static model_config micro_moe(float alpha, float capacity, int shared)
{
	model_config c = {8, 1, 2, 12, 16, 2, 4, 2, 20, V, 0, 1e-6f, 1e4f, 1e4f, 56, L, B, .n_experts = 4};
	c.top_k = 2;
	c.expert_mlp = 8;
	c.shared_mlp = shared;
	c.first_moe_layer = 1;
	c.routed_scale = 2.5f;
	c.bias_gamma = 0.05f;
	c.balance_alpha = alpha;
	c.capacity = capacity;
	return c;
}

/* the objective the backward differentiates: cross-entropy + balance term */
static double objective(model *m, const mbatch *b, uint64_t *digest)
{
	double ls;
	uint64_t n;
	mvl_err err;
	model_step(m, b, 0, 1.0f, &ls, &n, &err);
	*digest = m->moe.digest;
	return ls + m->moe.aux;
}

static model *make_model(const model_config *c)
{
	model *m = model_new(c, 21);
	for (int i = 0; i < m->nt; i++)
		if (m->t[i].ndim == 1 && !m->t[i].buffer)
			for (size_t k = 0; k < m->t[i].n; k++)
				m->params[m->t[i].off + k] = 0.5f + (float)(rnd() % 1000) / 1000.0f;
	for (size_t k = 0; k < m->nparams; k++)
		m->params[k] *= 2.0f;
	/* a selection bias that matters, and routers wide enough for clear margins */
	mtensor *bt = model_tensor(m, "model.layers.1.mlp.gate.e_score_correction_bias");
	for (int e = 0; e < c->n_experts; e++)
		m->params[bt->off + e] = 0.05f * (float)(e % 3) - 0.04f;
	mtensor *rt = model_tensor(m, "model.layers.1.mlp.gate.weight");
	for (size_t k = 0; k < rt->n; k++)
		m->params[rt->off + k] *= 10.0f;
	return m;
}

static void gradcheck(const char *what, const model_config *c, int trainable)
{
	model *m = make_model(c);
	m->trainable = trainable;
	mbatch b;
	make_batch(&b);
	memset(m->grads, 0, m->nparams * sizeof *m->grads);
	double ls;
	uint64_t cnt, d0;
	mvl_err err;
	char name[200];
	int rc = model_step(m, &b, 1, 1.0f, &ls, &cnt, &err);
	snprintf(name, sizeof name, "moe %s: step runs", what);
	CHECKF(rc == 0, name, "%s", err.msg);
	uint64_t dropped = m->moe.dropped;
	objective(m, &b, &d0);
	int bad = 0, checked = 0, rerouted = 0, stray = 0, moe_tensors = 0;
	char worst[300] = "";
	for (int i = 0; i < m->nt; i++) {
		mtensor *t = &m->t[i];
		int train = !t->buffer && (trainable & t->part);
		moe_tensors += !strncmp(t->name, "model.layers.1.mlp.", 19);
		for (int r = 0; r < 4; r++) {
			size_t k = t->off + rnd() % t->n;
			float g = m->grads[k];
			if (!train) {
				stray += g != 0;
				continue;
			}
			float keep = m->params[k];
			double h = 1e-2 * (fabs(keep) > 0.1 ? fabs(keep) : 0.1);
			double f[4];
			const double at[4] = {-2, -1, 1, 2};
			int moved = 0;
			for (int q = 0; q < 4; q++) {
				uint64_t dq;
				m->params[k] = (float)(keep + at[q] * h);
				f[q] = objective(m, &b, &dq);
				moved |= dq != d0;
			}
			m->params[k] = keep;
			if (moved) { /* a top-k or capacity switch inside the stencil: not differentiable there */
				rerouted++;
				continue;
			}
			double num = (8 * (f[2] - f[1]) - (f[3] - f[0])) / (12 * h);
			double tol = 3e-2 * fmax(fabs(num), fabs(g)) + 2e-3;
			checked++;
			if (fabs(num - g) > tol) {
				if (!bad)
					snprintf(worst, sizeof worst, "%s[%zu]: analytic %.6g numeric %.6g", t->name, k - t->off, g,
						 num);
				bad++;
			}
		}
	}
	snprintf(name, sizeof name, "moe %s: %d gradients match finite differences (%d skipped: rerouted)", what,
		 checked, rerouted);
	CHECKF(!bad && checked >= 100, name, "%d off, first %s", bad, worst);
	snprintf(name, sizeof name, "moe %s: the bias buffer and frozen tensors get no gradient", what);
	CHECKF(!stray, name, "%d elements touched", stray);
	snprintf(name, sizeof name, "moe %s: every routed expert, shared expert and the router are tensors", what);
	CHECKF(moe_tensors == 2 + 3 * c->n_experts + (c->shared_mlp > 0 ? 3 : 0), name, "%d", moe_tensors);
	if (c->capacity > 0) {
		snprintf(name, sizeof name, "moe %s: some assignments were dropped", what);
		CHECKF(dropped > 0, name, "none dropped at capacity %g", c->capacity);
	}
	model_free(m);
}

/* drops are exactly what the capacity rule says; padding is not routed */
static void accounting(void)
{
	model_config c = micro_moe(0, 0.75f, 12);
	model *m = make_model(&c);
	mbatch b;
	make_batch(&b);
	double ls;
	uint64_t n;
	mvl_err err;
	model_step(m, &b, 1, 1.0f, &ls, &n, &err);
	int T = 0;
	for (int i = 0; i < B * L; i++)
		T += seg[i] != 0;
	long long cap = (long long)ceil(0.75 * T * c.top_k / c.n_experts), want = 0, total = 0;
	for (int e = 0; e < c.n_experts; e++) {
		long long ld = (long long)m->moe_load[(size_t)1 * c.n_experts + e];
		want += ld > cap ? ld - cap : 0;
		total += ld;
	}
	CHECKF(m->moe.routed == (uint64_t)T * c.top_k && total == T * c.top_k,
	       "moe: the rows of segments are routed, padding rows are not", "routed %llu, load %lld, %d rows",
	       (unsigned long long)m->moe.routed, total, T);
	CHECKF(m->moe.dropped == (uint64_t)want && want > 0, "moe: dropped = assignments over each expert's capacity",
	       "dropped %llu, want %lld (cap %lld)", (unsigned long long)m->moe.dropped, want, cap);
	/* a forward without backward counts nothing toward the bias update */
	model_moe_balance(m);
	model_step(m, &b, 0, 1.0f, &ls, &n, &err);
	CHECK(m->moe.routed == 0 && m->moe_load[c.n_experts] == 0, "moe: evaluation forwards do not count as load");
	model_free(m);
}

/* with everything routed to expert 0 by the bias, repeated bias updates
 * spread the load */
static void bias_balances(void)
{
	model_config c = micro_moe(0, 0, 12);
	model *m = make_model(&c);
	mtensor *bt = model_tensor(m, "model.layers.1.mlp.gate.e_score_correction_bias");
	float *bias = m->params + bt->off;
	bias[0] = 2.0f; /* skewed: expert 0 always wins */
	bias[1] = bias[2] = bias[3] = 0;
	mbatch b;
	make_batch(&b);
	double ls;
	uint64_t n;
	mvl_err err;
	double spread0 = 0, spread = 0;
	for (int it = 0; it < 80; it++) {
		memset(m->grads, 0, m->nparams * sizeof *m->grads);
		model_step(m, &b, 1, 1.0f, &ls, &n, &err);
		uint64_t *ld = m->moe_load + c.n_experts, mx = 0, mn = UINT64_MAX;
		for (int e = 0; e < c.n_experts; e++) {
			mx = ld[e] > mx ? ld[e] : mx;
			mn = ld[e] < mn ? ld[e] : mn;
		}
		if (it == 0)
			spread0 = (double)(mx - mn);
		if (it >= 60)
			spread += (double)(mx - mn) / 20;
		model_moe_balance(m);
	}
	CHECKF(spread < spread0 / 2 && bias[0] < 1.5f, "moe: the bias update moves a skewed load toward balance",
	       "max-min load %g -> %g (mean of the last 20), bias[0] %g", spread0, spread, bias[0]);
	float before = bias[1];
	m->trainable = MPART_PROJECTOR;
	model_step(m, &b, 1, 1.0f, &ls, &n, &err);
	model_moe_balance(m);
	CHECK(bias[1] == before, "moe: a frozen LLM keeps its bias");
	model_free(m);
}

/* a saved MoE model loads from its own config with the same loss */
static void checkpoint(void)
{
	model_config c = micro_moe(0.01f, 1.0f, 12);
	model *m = make_model(&c);
	mbatch b;
	make_batch(&b);
	char path[64];
	snprintf(path, sizeof path, "/tmp/test_moe.%d.safetensors", (int)getpid());
	mvl_err err;
	int rc = model_save(m, path, &err);
	model *m2 = rc == 0 ? model_load_new(path, &err) : NULL;
	CHECKF(m2 != NULL, "moe: a checkpoint loads from its stored config", "%s", err.msg);
	if (m2) {
		uint64_t d1, d2;
		double a = objective(m, &b, &d1), a2 = objective(m2, &b, &d2);
		CHECKF(a == a2 && d1 == d2 && m2->c.n_experts == 4 && m2->c.capacity == 1.0f &&
			       m2->c.routed_scale == 2.5f,
		       "moe: the loaded model routes and scores the same", "%.9g vs %.9g", a, a2);
	}
	model_free(m2);
	model_free(m);
	unlink(path);
	model_config d;
	model_preset("tiny", &d);
	char *j = config_json(&d);
	CHECKF(!strstr(j, "experts"), "moe: dense configs carry no MoE keys", "%s", j);
	free(j);
	CHECK(model_preset("tiny-moe", &d) == 0 && d.n_experts == 8 && d.top_k == 2 &&
		      d.shared_mlp + d.top_k * d.expert_mlp == 688,
	      "moe: tiny-moe has tiny's active intermediate width");
}

/* greedy decoding through the cache equals the full forward */
static void kv_cache(void)
{
	model_config c = micro_moe(0, 0, 12);
	model *m = make_model(&c);
	enum { N = 8, NEW = 5 };
	uint32_t pid[N + NEW], ppos[N + NEW], pseg[N + NEW];
	uint8_t ploss[N + NEW] = {0};
	for (int i = 0; i < N + NEW; i++) {
		pid[i] = (uint32_t)(rnd() % (V - 3));
		ppos[i] = (uint32_t)i;
		pseg[i] = 1;
	}
	mbatch b = {1, N, pid, ppos, pseg, ploss, NULL, 0, V - 1, NULL};
	uint32_t gen[NEW], one[1];
	int ng = 0, n1 = 0, same = 1;
	mvl_err err;
	int rc = model_generate(m, &b, &(gen_opts){.max_new = NEW, .top_p = 1, .seed = 1}, gen, &ng, &err);
	for (int j = 0; rc == 0 && j < NEW; j++) {
		for (int i = 0; i < j; i++)
			pid[N + i] = gen[i];
		b.L = N + j;
		if (model_generate(m, &b, &(gen_opts){.max_new = 1, .top_p = 1, .seed = 1}, one, &n1, &err) != 0 || one[0] != gen[j])
			same = 0;
	}
	CHECKF(rc == 0 && ng == NEW && same, "moe: KV-cache decoding equals the full forward, token by token", "%s",
	       rc ? err.msg : "differs");
	model_free(m);
}

int main(void)
{
	model_config c = micro_moe(0.05f, 0, 12);
	gradcheck("balance loss, shared expert", &c, MPART_ALL);
	c = micro_moe(0.05f, 0.6f, 12);
	gradcheck("capacity dropping", &c, MPART_ALL);
	c = micro_moe(0, 0, 0);
	gradcheck("no shared expert, no balance loss", &c, MPART_ALL);
	c = micro_moe(0.05f, 0, 12);
	gradcheck("projector frozen", &c, MPART_LLM);
	accounting();
	bias_balances();
	checkpoint();
	kv_cache();
	return check_done();
}
