/* test_model.c: the whole model's gradients against finite differences,
 * on a micro configuration with packed segments, padding, two images of
 * different shapes, GQA, tied and untied heads, and frozen parts.
 *
 * With PARITY_DIR set, also writes weights, batch and this C model's loss,
 * gradients and AdamW losses there for tests/parity/model.py compare. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "check.h"
#include "model.h"
#include "ops.h"
#include "safetensors.h"
#include "train.h"

enum { B = 2, L = 24, V = 40, PAD = 39, VS = 38, VE = 37 };

static uint32_t ids[B * L], pos[B * L], seg[B * L];
static uint8_t loss[B * L];
static uint8_t px0[28 * 56 * 3], px1[56 * 28 * 3];
static mimage imgs[2];

static uint64_t rng = 12345;
static uint32_t rnd(void)
{
	rng = rng * 6364136223846793005ull + 1442695040888963407ull;
	return (uint32_t)(rng >> 33);
}

/* sequence 0: [vs pad pad ve t t t t t t t t] [t t t t t t t t] pad pad pad pad
 * sequence 1: [t t t t t t] [vs pad pad ve t t t t t t t t t t t t] pad pad */
static void make_batch(mbatch *b)
{
	int s0[B][L] = {{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0},
			{1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0}};
	for (int s = 0; s < B; s++) {
		int p = 0;
		for (int t = 0; t < L; t++) {
			size_t i = (size_t)s * L + t;
			seg[i] = (uint32_t)s0[s][t];
			if (t && seg[i] != seg[i - 1])
				p = 0;
			pos[i] = seg[i] ? (uint32_t)p++ : 0;
			ids[i] = seg[i] ? rnd() % (V - 3) : VE; /* padding: any id */
			loss[i] = seg[i] != 0 && pos[i] > 0;
		}
	}
	/* images: 28x56 (2 pads) in sequence 0 at token 1; 56x28 in sequence 1 at 7 */
	const int at[2][2] = {{0, 0}, {1, 6}};
	for (int k = 0; k < 2; k++) {
		size_t base = (size_t)at[k][0] * L + at[k][1];
		ids[base] = VS;
		ids[base + 1] = PAD;
		ids[base + 2] = PAD;
		ids[base + 3] = VE;
		for (int j = 0; j < 4; j++)
			loss[base + j] = 0;
	}
	for (size_t i = 0; i < sizeof px0; i++)
		px0[i] = (uint8_t)rnd();
	for (size_t i = 0; i < sizeof px1; i++)
		px1[i] = (uint8_t)rnd();
	imgs[0] = (mimage){0, 1, 28, 56, px0};
	imgs[1] = (mimage){1, 7, 56, 28, px1};
	*b = (mbatch){B, L, ids, pos, seg, loss, imgs, 2, PAD, NULL};
}

static model_config micro(int tied)
{
	return (model_config){8, 1, 2, 12, 16, 2, 4, 2, 20, V, tied, 1e-6f, 1e4f, 1e4f, 56, L, B, .n_experts = 0};
}

static double loss_of(model *m, const mbatch *b)
{
	double ls;
	uint64_t n;
	mvl_err err;
	model_step(m, b, 0, 1.0f, &ls, &n, &err);
	return ls;
}

/* analytic vs central differences on a few elements of every tensor */
static void gradcheck(const char *what, int tied, int trainable)
{
	model_config c = micro(tied);
	model *m = model_new(&c, 7);
	/* non-trivial norm weights, so their gradients are exercised */
	for (int i = 0; i < m->nt; i++)
		if (m->t[i].ndim == 1)
			for (size_t k = 0; k < m->t[i].n; k++)
				m->params[m->t[i].off + k] = 0.5f + 1.0f * (float)(rnd() % 1000) / 1000.0f;
	/* larger weights than init's 0.02, so the loss depends on them clearly */
	for (size_t k = 0; k < m->nparams; k++)
		m->params[k] *= 2.0f;
	m->trainable = trainable;
	mbatch b;
	make_batch(&b);
	memset(m->grads, 0, m->nparams * sizeof *m->grads);
	double ls;
	uint64_t cnt;
	mvl_err err;
	int rc = model_step(m, &b, 1, 1.0f, &ls, &cnt, &err);
	char name[160];
	snprintf(name, sizeof name, "model %s: step runs", what);
	CHECKF(rc == 0, name, "%s", err.msg);
	int bad = 0, checked = 0, frozen_touched = 0;
	char worst[300] = "";
	for (int i = 0; i < m->nt; i++) {
		mtensor *t = &m->t[i];
		int train = (trainable & t->part) != 0;
		for (int r = 0; r < 3; r++) {
			size_t k = t->off + rnd() % t->n;
			float g = m->grads[k];
			if (!train) {
				frozen_touched += g != 0;
				continue;
			}
			float keep = m->params[k];
			double h = 1e-2 * (fabs(keep) > 0.1 ? fabs(keep) : 0.1);
			/* five-point stencil: truncation error O(h^4), so h can stay
			 * large enough for float32 rounding not to dominate */
			double f[4];
			const double at[4] = {-2, -1, 1, 2};
			for (int q = 0; q < 4; q++) {
				m->params[k] = (float)(keep + at[q] * h);
				f[q] = loss_of(m, &b);
			}
			m->params[k] = keep;
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
	snprintf(name, sizeof name, "model %s: %d gradients match finite differences", what, checked);
	CHECKF(!bad && checked > 0, name, "%d off, first %s", bad, worst);
	snprintf(name, sizeof name, "model %s: frozen tensors get no gradient", what);
	CHECKF(!frozen_touched, name, "%d elements of frozen tensors touched", frozen_touched);
	model_free(m);
}

/* padding rows and other segments do not change a row's loss */
static void isolation(void)
{
	model_config c = micro(0);
	model *m = model_new(&c, 3);
	mbatch b;
	make_batch(&b);
	double base = loss_of(m, &b);
	/* changing padding ids changes nothing */
	uint32_t keep = ids[21];
	ids[21] = 5;
	double p = loss_of(m, &b);
	ids[21] = keep;
	CHECKF(p == base, "model: padding tokens do not affect the loss", "%.9g vs %.9g", p, base);
	/* changing a token of segment 2 (sequence 0) leaves segment 1's rows
	 * alone: compare the loss restricted to segment 1 by masking */
	for (int t = 12; t < L; t++)
		loss[t] = 0;
	for (int t = L; t < 2 * L; t++)
		loss[t] = 0;
	double s1 = loss_of(m, &b);
	ids[15] = (ids[15] + 1) % (V - 3);
	double s1b = loss_of(m, &b);
	CHECKF(s1 == s1b, "model: a later segment does not affect an earlier one", "%.9g vs %.9g", s1, s1b);
	/* ...while a token of the same segment does */
	ids[8] = (ids[8] + 1) % (V - 3);
	double s1c = loss_of(m, &b);
	CHECKF(s1c != s1, "model: a token of the same segment does affect it", "%.9g", s1c);
	model_free(m);
	make_batch(&b);
}

static void bad_batches(void)
{
	model_config c = micro(0);
	model *m = model_new(&c, 3);
	mbatch b;
	make_batch(&b);
	double ls;
	uint64_t n;
	mvl_err err;
	imgs[1].h = 30;
	CHECK(model_step(m, &b, 0, 1, &ls, &n, &err) != 0 && strstr(err.msg, "multiples of 28"),
	      "model: an image side that is not a multiple of 28 is refused");
	make_batch(&b);
	b.nimg = 1;
	CHECK(model_step(m, &b, 0, 1, &ls, &n, &err) != 0 && strstr(err.msg, "pad"),
	      "model: pads without an image are refused");
	make_batch(&b);
	model_free(m);
}

/* writes what tests/parity/model.py compare reads; moe: layer 1 is a
 * MoE of 4 experts, top 2, with balance loss, capacity drops and
 * selection biases that the AdamW steps update */
static void parity_dump(const char *dir, int moe)
{
	model_config c = micro(0);
	if (moe) {
		c.n_experts = 4;
		c.top_k = 2;
		c.expert_mlp = 8;
		c.shared_mlp = 12;
		c.first_moe_layer = 1;
		c.routed_scale = 2.5f;
		c.bias_gamma = 1e-3f;
		c.balance_alpha = 0.01f;
		c.capacity = 0.75f;
	}
	model *m = model_new(&c, 11);
	for (int i = 0; moe && i < m->nt; i++) {
		mtensor *t = &m->t[i];
		if (t->buffer)
			for (size_t k = 0; k < t->n; k++)
				m->params[t->off + k] = 0.004f * (float)(k % 3) - 0.004f;
		else if (strstr(t->name, "mlp.gate.weight")) /* scores apart: no near-ties to split the sides */
			for (size_t k = 0; k < t->n; k++)
				m->params[t->off + k] *= 10.0f;
	}
	mbatch b;
	make_batch(&b);
	mkdir(dir, 0755);
	char path[512];
	mvl_err err;
	snprintf(path, sizeof path, "%s/weights.safetensors", dir);
	char *cfg = config_json(&m->c);
	st_tensor *t = calloc((size_t)m->nt * 2 + 4, sizeof *t);
	for (int i = 0; i < m->nt; i++)
		t[i] = (st_tensor){m->t[i].name, m->t[i].ndim, {m->t[i].shape[0], m->t[i].shape[1]}, m->params + m->t[i].off};
	const char *meta[] = {"format", "pt", "config", cfg, "trainable", "vit,projector,llm"};
	CHECKF(st_write(path, t, m->nt, meta, 3, &err) == 0, "parity: weights written", "%s", err.msg);
	/* the batch */
	snprintf(path, sizeof path, "%s/batch.json", dir);
	FILE *f = fopen(path, "w");
	fprintf(f, "{\"B\": %d, \"L\": %d, \"image_pad\": %d", B, L, PAD);
	const char *names[4] = {"ids", "pos", "seg", "loss"};
	for (int a = 0; a < 4; a++) {
		fprintf(f, ", \"%s\": [", names[a]);
		for (int i = 0; i < B * L; i++) {
			unsigned v = a == 0 ? ids[i] : a == 1 ? pos[i] : a == 2 ? seg[i] : loss[i];
			fprintf(f, "%s%u", i ? ", " : "", v);
		}
		fprintf(f, "]");
	}
	fprintf(f, ", \"images\": [");
	for (int k = 0; k < 2; k++) {
		fprintf(f, "%s{\"seq\": %d, \"token\": %d, \"h\": %d, \"w\": %d, \"file\": \"img%d.rgb\"}", k ? ", " : "",
			imgs[k].seq, imgs[k].token, imgs[k].h, imgs[k].w, k);
		char ip[512];
		snprintf(ip, sizeof ip, "%s/img%d.rgb", dir, k);
		FILE *g = fopen(ip, "wb");
		fwrite(imgs[k].px, 1, (size_t)imgs[k].h * imgs[k].w * 3, g);
		fclose(g);
	}
	fprintf(f, "]}\n");
	fclose(f);
	/* loss and gradients of loss_sum * scale */
	float scale = 0.5f;
	double ls;
	uint64_t cnt;
	memset(m->grads, 0, m->nparams * sizeof *m->grads);
	model_step(m, &b, 1, scale, &ls, &cnt, &err);
	float lsf = (float)ls, cf = (float)cnt, auxf = (float)m->moe.aux, dropf = (float)m->moe.dropped;
	int k = 0;
	t[k++] = (st_tensor){"loss_sum", 1, {1}, &lsf};
	t[k++] = (st_tensor){"count", 1, {1}, &cf};
	if (moe) {
		t[k++] = (st_tensor){"aux_sum", 1, {1}, &auxf};
		t[k++] = (st_tensor){"dropped", 1, {1}, &dropf};
	}
	/* the load of that step does not count below: clear it, bias untouched */
	int tr = m->trainable;
	m->trainable = 0;
	model_moe_balance(m);
	m->trainable = tr;
	char **gn = calloc((size_t)m->nt, sizeof *gn);
	float *g0 = malloc(m->nparams * sizeof *g0); /* the Adam steps below reuse m->grads */
	memcpy(g0, m->grads, m->nparams * sizeof *g0);
	for (int i = 0; i < m->nt; i++) {
		gn[i] = malloc(80);
		snprintf(gn[i], 80, "%s.%s", m->t[i].buffer ? "after" : "grad", m->t[i].name);
		/* buffers: their value after the AdamW steps and bias updates */
		t[k++] = (st_tensor){gn[i], m->t[i].ndim, {m->t[i].shape[0], m->t[i].shape[1]},
				     (m->t[i].buffer ? m->params : g0) + m->t[i].off};
	}
	/* AdamW: 10 steps on the same batch, loss = loss_sum / count */
	enum { K = 10 };
	float al[K];
	adamw o;
	adamw_init(&o, m);
	for (int s = 0; s < K; s++) {
		memset(m->grads, 0, m->nparams * sizeof *m->grads);
		model_step(m, &b, 1, 1.0f / (float)cnt, &ls, &cnt, &err);
		al[s] = (float)(ls / (double)cnt);
		o.t++;
		for (int i = 0; i < m->nt; i++)
			if (o.m[i])
				adamw_update(m->params + m->t[i].off, m->grads + m->t[i].off, o.m[i], o.v[i], m->t[i].n, 1e-3f,
					     0.9f, 0.95f, 1e-8f, 0.1f, o.t);
		model_moe_balance(m);
	}
	t[k++] = (st_tensor){"adam_losses", 1, {K}, al};
	char sc[32];
	snprintf(sc, sizeof sc, "%.9g", scale);
	const char *rmeta[] = {"scale", sc, "adam_lr", "0.001", "adam_beta1", "0.9", "adam_beta2", "0.95", "adam_eps",
			       "1e-08", "adam_wd", "0.1", "adam_steps", "10"};
	snprintf(path, sizeof path, "%s/result.safetensors", dir);
	CHECKF(st_write(path, t, k, rmeta, 7, &err) == 0, "parity: results written", "%s", err.msg);
	adamw_free(&o, m);
	for (int i = 0; i < m->nt; i++)
		free(gn[i]);
	free(gn);
	free(g0);
	free(t);
	free(cfg);
	model_free(m);
}

/* greedy generation through the KV cache picks what the full forward of
 * the longer prompt picks, token after token */
static void kv_cache(void)
{
	model_config c = micro(0);
	model *m = model_new(&c, 5);
	for (size_t k = 0; k < m->nparams; k++)
		m->params[k] *= 3.0f; /* sharper logits: no near-ties */
	enum { N = 12, NEW = 6 };
	uint32_t pid[N + NEW], ppos[N + NEW], pseg[N + NEW];
	uint8_t ploss[N + NEW] = {0};
	for (int i = 0; i < N + NEW; i++) {
		pid[i] = (uint32_t)(rnd() % (V - 3));
		ppos[i] = (uint32_t)i;
		pseg[i] = 1;
	}
	pid[1] = VS;
	pid[2] = pid[3] = PAD;
	pid[4] = VE;
	mimage im = {0, 2, 28, 56, px0};
	mbatch b = {1, N, pid, ppos, pseg, ploss, &im, 1, PAD, NULL};
	uint32_t gen[NEW], one[1];
	int ng = 0, n1 = 0, same = 1;
	mvl_err err;
	int rc = model_generate(m, &b, &(gen_opts){.max_new = NEW, .top_p = 1, .seed = 1}, gen, &ng, &err);
	CHECKF(rc == 0 && ng == NEW, "model: greedy generation runs", "%s", rc ? err.msg : "short");
	for (int j = 0; rc == 0 && j < NEW; j++) {
		for (int i = 0; i < j; i++)
			pid[N + i] = gen[i];
		b.L = N + j;
		if (model_generate(m, &b, &(gen_opts){.max_new = 1, .top_p = 1, .seed = 1}, one, &n1, &err) != 0 || one[0] != gen[j])
			same = 0;
	}
	CHECK(same, "model: KV-cache decoding equals the full forward, token by token");
	model_free(m);
}

/* a forward alone runs an image the batch holds twice through the vision
 * tower once: the same loss as a backward pass (which never shares), by
 * pointer or by equal pixels, and a one-pixel difference is not shared */
static void repeated_images(void)
{
	model_config c = micro(0);
	model *m = model_new(&c, 5);
	mbatch b;
	make_batch(&b);
	static uint8_t copy[28 * 56 * 3];
	memcpy(copy, px0, sizeof copy);
	const uint8_t *which[3] = {px0, copy, copy};
	for (int v = 0; v < 3; v++) {
		if (v == 2)
			copy[100] ^= 1;
		imgs[1] = (mimage){1, 7, 28, 56, which[v]};
		double fwd = loss_of(m, &b), both;
		uint64_t n;
		mvl_err err;
		model_step(m, &b, 1, 1.0f, &both, &n, &err);
		CHECKF(fabs(fwd - both) <= 1e-6 * fabs(both), "model: a repeated image shared in a forward",
		       "case %d: forward %.9g, with backward %.9g", v, fwd, both);
	}
	model_free(m);
	make_batch(&b);
}

int main(void)
{
	gradcheck("untied, all parts", 0, MPART_ALL);
	gradcheck("tied head, all parts", 1, MPART_ALL);
	gradcheck("projector only", 0, MPART_PROJECTOR);
	gradcheck("vit only", 0, MPART_VIT);
	gradcheck("llm only", 0, MPART_LLM);
	isolation();
	bad_batches();
	kv_cache();
	repeated_images();
	const char *dir = getenv("PARITY_DIR");
	if (dir)
		parity_dump(dir, getenv("PARITY_MOE") != NULL);
	return check_done();
}
