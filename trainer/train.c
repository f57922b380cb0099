/* train.c: AdamW state, schedules, model files and checkpoints. */
#include "train.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "recipe.h"
#include "safetensors.h"

void adamw_init(adamw *o, const model *md)
{
	adamw_init_shard(o, md, 0, md->nparams);
}

void adamw_init_shard(adamw *o, const model *md, size_t lo, size_t hi)
{
	o->m = xcalloc((size_t)md->nt, sizeof *o->m);
	o->v = xcalloc((size_t)md->nt, sizeof *o->v);
	o->t = 0;
	o->lo = lo;
	o->hi = hi;
	for (int i = 0; i < md->nt; i++) {
		size_t a, b;
		if (adamw_span(o, md, i, &a, &b)) {
			o->m[i] = xcalloc(b - a, sizeof(float));
			o->v[i] = xcalloc(b - a, sizeof(float));
		}
	}
}

int adamw_span(const adamw *o, const model *md, int i, size_t *a, size_t *b)
{
	const mtensor *t = &md->t[i];
	if (!(md->trainable & t->part))
		return 0;
	*a = t->off > o->lo ? t->off : o->lo;
	*b = t->off + t->n < o->hi ? t->off + t->n : o->hi;
	return *a < *b;
}

size_t adamw_bytes(const adamw *o, const model *md)
{
	size_t n = 0, a, b;
	for (int i = 0; i < md->nt; i++)
		if (o->m[i] && adamw_span(o, md, i, &a, &b))
			n += 2 * (b - a) * sizeof(float);
	return n;
}

void adamw_drop(adamw *o, int i)
{
	free(o->m[i]);
	free(o->v[i]);
	o->m[i] = o->v[i] = NULL;
}

void adamw_free(adamw *o, const model *md)
{
	for (int i = 0; o->m && i < md->nt; i++) {
		free(o->m[i]);
		free(o->v[i]);
	}
	free(o->m);
	free(o->v);
	o->m = o->v = NULL;
}

double sched_lr(const sched *s, int64_t step)
{
	if (s->warmup > 0 && step < s->warmup)
		return s->lr * (double)(step + 1) / (double)s->warmup;
	if (s->kind == SCHED_CONSTANT || s->total <= s->warmup)
		return s->lr;
	double span = (double)(s->total - s->warmup), at = (double)(step - s->warmup);
	if (s->kind == SCHED_WSD) {
		/* warmup, stable, then linear decay over the last decay_fraction */
		double start = span * (1 - s->decay_fraction);
		if (at < start || s->decay_fraction <= 0)
			return s->lr;
		double f = (at - start) / (span - start);
		return s->lr + (s->min_lr - s->lr) * (f > 1 ? 1 : f);
	}
	double f = at / span;
	if (f > 1)
		f = 1;
	return s->min_lr + (s->lr - s->min_lr) * 0.5 * (1 + cos(M_PI * f));
}

/* ---------------------------------------------------------------------- */
/* config */

char *config_json(const model_config *c)
{
	json_t *j = json_pack("{s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:f,s:f,s:f,s:i,s:i,s:i}", "vit_dim", c->vit_dim,
			      "vit_layers", c->vit_layers, "vit_heads", c->vit_heads, "vit_mlp", c->vit_mlp, "dim", c->dim,
			      "layers", c->layers, "heads", c->heads, "kv_heads", c->kv_heads, "mlp", c->mlp, "vocab",
			      c->vocab, "tied", c->tied, "norm_eps", (double)c->norm_eps, "rope_theta",
			      (double)c->rope_theta, "vit_rope_theta", (double)c->vit_rope_theta, "image", c->image,
			      "seq_len", c->seq_len, "batch", c->batch);
	/* only MoE configs carry the MoE keys: dense checkpoints stay as they were */
	if (c->n_experts > 0) {
		json_object_set_new(j, "n_experts", json_integer(c->n_experts));
		json_object_set_new(j, "top_k", json_integer(c->top_k));
		json_object_set_new(j, "expert_mlp", json_integer(c->expert_mlp));
		json_object_set_new(j, "shared_mlp", json_integer(c->shared_mlp));
		json_object_set_new(j, "first_moe_layer", json_integer(c->first_moe_layer));
		json_object_set_new(j, "routed_scale", json_real(c->routed_scale));
		json_object_set_new(j, "bias_gamma", json_real(c->bias_gamma));
		json_object_set_new(j, "balance_alpha", json_real(c->balance_alpha));
		json_object_set_new(j, "capacity", json_real(c->capacity));
	}
	char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(j);
	return s;
}

int config_parse(const char *text, model_config *c, mvl_err *err)
{
	json_error_t je;
	json_t *j = json_loads(text ? text : "", 0, &je);
	if (!json_is_object(j)) {
		json_decref(j);
		return mvl_errf(err, "model config: %s", j ? "not an object" : je.text);
	}
	struct {
		const char *k;
		int *v;
		int lo;
	} ints[] = {{"vit_dim", &c->vit_dim, 4},   {"vit_layers", &c->vit_layers, 0}, {"vit_heads", &c->vit_heads, 1},
		    {"vit_mlp", &c->vit_mlp, 1},   {"dim", &c->dim, 4},               {"layers", &c->layers, 0},
		    {"heads", &c->heads, 1},       {"kv_heads", &c->kv_heads, 1},     {"mlp", &c->mlp, 1},
		    {"vocab", &c->vocab, 2},       {"tied", &c->tied, 0},             {"image", &c->image, 0},
		    {"seq_len", &c->seq_len, 0},   {"batch", &c->batch, 0}};
	int rc = 0;
	for (size_t i = 0; i < sizeof ints / sizeof ints[0] && rc == 0; i++) {
		json_t *v = json_object_get(j, ints[i].k);
		if (!json_is_integer(v) || json_integer_value(v) < ints[i].lo || json_integer_value(v) > (1 << 24))
			rc = mvl_errf(err, "model config: '%s' missing or out of range", ints[i].k);
		else
			*ints[i].v = (int)json_integer_value(v);
	}
	c->norm_eps = (float)json_number_value(json_object_get(j, "norm_eps"));
	c->rope_theta = (float)json_number_value(json_object_get(j, "rope_theta"));
	c->vit_rope_theta = (float)json_number_value(json_object_get(j, "vit_rope_theta"));
	/* MoE keys: absent in dense configs */
	struct {
		const char *k;
		int *v;
		int lo;
	} moe_ints[] = {{"n_experts", &c->n_experts, 0},   {"top_k", &c->top_k, 1},
			{"expert_mlp", &c->expert_mlp, 1}, {"shared_mlp", &c->shared_mlp, 0},
			{"first_moe_layer", &c->first_moe_layer, 0}};
	c->n_experts = 0;
	for (size_t i = 0; i < sizeof moe_ints / sizeof moe_ints[0] && rc == 0 && json_object_get(j, "n_experts"); i++) {
		json_t *v = json_object_get(j, moe_ints[i].k);
		if (!json_is_integer(v) || json_integer_value(v) < moe_ints[i].lo || json_integer_value(v) > (1 << 24))
			rc = mvl_errf(err, "model config: '%s' missing or out of range", moe_ints[i].k);
		else
			*moe_ints[i].v = (int)json_integer_value(v);
	}
	if (c->n_experts > 0) {
		c->routed_scale = (float)json_number_value(json_object_get(j, "routed_scale"));
		c->bias_gamma = (float)json_number_value(json_object_get(j, "bias_gamma"));
		c->balance_alpha = (float)json_number_value(json_object_get(j, "balance_alpha"));
		c->capacity = (float)json_number_value(json_object_get(j, "capacity"));
		if (rc == 0 && (c->top_k > c->n_experts || !(c->routed_scale > 0) || c->bias_gamma < 0 ||
				c->balance_alpha < 0 || c->capacity < 0))
			rc = mvl_errf(err, "model config: inconsistent MoE settings (top_k above n_experts, or a "
					   "non-positive routed_scale, or a negative gamma, alpha or capacity)");
	}
	if (rc == 0 && (c->vit_dim % c->vit_heads || (c->vit_dim / c->vit_heads) % 4 || c->dim % c->heads ||
			(c->dim / c->heads) % 2 || c->heads % c->kv_heads || !(c->norm_eps > 0) || !(c->rope_theta > 0) ||
			!(c->vit_rope_theta > 0)))
		rc = mvl_errf(err, "model config: inconsistent sizes (heads must divide widths, head dims even, "
				   "the ViT's a multiple of 4)");
	json_decref(j);
	return rc;
}

/* ---------------------------------------------------------------------- */
/* model files */

int model_save(const model *m, const char *path, mvl_err *err)
{
	st_tensor *t = xcalloc((size_t)m->nt, sizeof *t);
	for (int i = 0; i < m->nt; i++) {
		t[i].name = m->t[i].name;
		t[i].ndim = m->t[i].ndim;
		t[i].shape[0] = m->t[i].shape[0];
		t[i].shape[1] = m->t[i].shape[1];
		t[i].data = m->params + m->t[i].off;
	}
	char *cfg = config_json(&m->c);
	const char *meta[] = {"format", "pt", "config", cfg, "producer", "mvl"};
	int rc = st_write(path, t, m->nt, meta, 3, err);
	free(cfg);
	free(t);
	return rc;
}

/* every tensor of m in f, of m's shape, and nothing else in f */
static int check_tensors(const model *m, const st_file *f, const char *path, mvl_err *err)
{
	for (int i = 0; i < m->nt; i++) {
		const mtensor *mt = &m->t[i];
		const st_tensor *t = st_get(f, mt->name);
		if (!t)
			return mvl_errf(err, "'%s' has no tensor '%s'", path, mt->name);
		if (t->ndim != mt->ndim || t->shape[0] != mt->shape[0] || (mt->ndim == 2 && t->shape[1] != mt->shape[1]))
			return mvl_errf(err, "'%s': tensor '%s' has another shape than this model's", path, mt->name);
	}
	/* names are unique on both sides: equal counts leave no stranger */
	for (int i = 0; st_count(f) != m->nt && i < st_count(f); i++)
		if (!model_tensor((model *)m, st_at(f, i)->name))
			return mvl_errf(err, "'%s': tensor '%s' is not part of this model (another config?)", path,
					st_at(f, i)->name);
	return 0;
}

static void copy_tensors(model *m, const st_file *f)
{
	for (int i = 0; i < m->nt; i++)
		memcpy(m->params + m->t[i].off, st_get(f, m->t[i].name)->data, m->t[i].n * sizeof(float));
}

int model_load(model *m, const char *path, mvl_err *err)
{
	st_file *f = st_open(path, err);
	if (!f)
		return -1;
	int rc = check_tensors(m, f, path, err);
	if (rc == 0)
		copy_tensors(m, f);
	st_close(f);
	return rc;
}

model *model_load_new(const char *path, mvl_err *err)
{
	st_file *f = st_open(path, err);
	if (!f)
		return NULL;
	model_config c = {0};
	model *m = NULL;
	if (config_parse(st_meta(f, "config"), &c, err) != 0) {
		mvl_errprefix(err, "'%s'", path);
		goto fail;
	}
	/* the config's claims are checked against the file's tensors before
	 * anything of their size is allocated */
	if (model_tensor_count(&c) > 2 * (size_t)st_count(f) + 64) { /* else check_tensors() names the odd one */
		mvl_errf(err, "'%s': the model config has %zu tensors, the file holds %d", path,
			 model_tensor_count(&c), st_count(f));
		goto fail;
	}
	m = model_layout(&c);
	if (check_tensors(m, f, path, err) != 0)
		goto fail;
	model_free(m);
	m = model_new(&c, 0);
	copy_tensors(m, f);
	st_close(f);
	return m;
fail:
	model_free(m);
	st_close(f);
	return NULL;
}
