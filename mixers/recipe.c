/* recipe.c: the recipe YAML (libyaml's document API) walked against the
 * schema of recipes/README.md, collecting every problem with its place. */
#include "recipe.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "bpe.h"
#include "filter.h"

const char *const src_kind_names[] = {"captions", "conversations", "text", NULL};
const char *const sched_names[] = {"cosine", "wsd", "constant", NULL};

typedef struct ctx {
	const char *path;
	yaml_document_t *doc;
	buf *diag;
	int errors, warnings;
	char scope[160]; /* "stage 'sft'" ... prefixed to messages */
} ctx;

/* ---------------------------------------------------------------------- */
/* messages */

static void vsay(ctx *c, int error, const yaml_node_t *n, const char *fmt, va_list ap)
{
	char msg[600];
	vsnprintf(msg, sizeof msg, fmt, ap);
	if (n)
		buf_printf(c->diag, "%s:%zu:%zu: ", c->path, (size_t)n->start_mark.line + 1,
			   (size_t)n->start_mark.column + 1);
	else
		buf_printf(c->diag, "%s: ", c->path);
	buf_printf(c->diag, "%s%s%s%s\n", error ? "" : "warning: ", c->scope, *c->scope ? ": " : "", msg);
	if (error)
		c->errors++;
	else
		c->warnings++;
}

static void __attribute__((format(printf, 3, 4))) bad(ctx *c, const yaml_node_t *n, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsay(c, 1, n, fmt, ap);
	va_end(ap);
}

static void __attribute__((format(printf, 3, 4))) warn(ctx *c, const yaml_node_t *n, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsay(c, 0, n, fmt, ap);
	va_end(ap);
}

/* edit distance, for "did you mean" (short strings only) */
static int distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	if (la > 40 || lb > 40)
		return 99;
	int d[41][41];
	for (size_t i = 0; i <= la; i++)
		d[i][0] = (int)i;
	for (size_t j = 0; j <= lb; j++)
		d[0][j] = (int)j;
	for (size_t i = 1; i <= la; i++)
		for (size_t j = 1; j <= lb; j++) {
			int v = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
			if (d[i - 1][j] + 1 < v)
				v = d[i - 1][j] + 1;
			if (d[i][j - 1] + 1 < v)
				v = d[i][j - 1] + 1;
			d[i][j] = v;
		}
	return d[la][lb];
}

/* " (did you mean 'x'?)" when a candidate is close, else "" */
static const char *suggest(const char *word, const char *const *cands, int n, char *out, size_t cap)
{
	int best = 99;
	const char *pick = NULL;
	for (int i = 0; n < 0 ? cands[i] != NULL : i < n; i++) {
		int d = distance(word, cands[i]);
		if (d < best) {
			best = d;
			pick = cands[i];
		}
	}
	int limit = strlen(word) < 5 ? 1 : (int)strlen(word) / 3;
	if (pick && best <= limit)
		snprintf(out, cap, " (did you mean '%s'?)", pick);
	else
		*out = 0;
	return out;
}

/* ---------------------------------------------------------------------- */
/* nodes */

static yaml_node_t *node(ctx *c, int id)
{
	return id ? yaml_document_get_node(c->doc, id) : NULL;
}

static const char *scalar(const yaml_node_t *n)
{
	return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

/* value of key in mapping m, or NULL */
static yaml_node_t *get(ctx *c, const yaml_node_t *m, const char *key)
{
	if (!m || m->type != YAML_MAPPING_NODE)
		return NULL;
	for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
		const char *k = scalar(node(c, p->key));
		if (k && !strcmp(k, key))
			return node(c, p->value);
	}
	return NULL;
}

/* Checks that m is a mapping whose keys are scalars, known and unique.
 * @return 0 when it is a mapping (key problems are reported, not fatal). */
static int check_map(ctx *c, const yaml_node_t *m, const char *what, const char *const *known)
{
	if (!m || m->type != YAML_MAPPING_NODE) {
		bad(c, m, "%s must be a mapping (key: value lines)", what);
		return -1;
	}
	for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
		yaml_node_t *kn = node(c, p->key);
		const char *k = scalar(kn);
		if (!k) {
			bad(c, kn, "%s: a key must be a plain string", what);
			continue;
		}
		for (yaml_node_pair_t *q = m->data.mapping.pairs.start; q < p; q++)
			if (scalar(node(c, q->key)) && !strcmp(scalar(node(c, q->key)), k)) {
				bad(c, kn, "duplicate key '%s'", k);
				break;
			}
		if (!known)
			continue;
		int ok = 0;
		for (int i = 0; known[i]; i++)
			ok |= !strcmp(known[i], k);
		if (!ok) {
			char s[96];
			bad(c, kn, "unknown key '%s'%s", k, suggest(k, known, -1, s, sizeof s));
		}
	}
	return 0;
}

static const char *get_str(ctx *c, const yaml_node_t *m, const char *key, int required)
{
	yaml_node_t *n = get(c, m, key);
	if (!n) {
		if (required)
			bad(c, m, "missing key '%s'", key);
		return NULL;
	}
	const char *s = scalar(n);
	if (!s || !*s) {
		bad(c, n, "'%s' must be a non-empty string", key);
		return NULL;
	}
	return s;
}

/* an integer (count suffixes allowed) in [lo, hi]; def when absent */
static uint64_t get_u64(ctx *c, const yaml_node_t *m, const char *key, uint64_t def, uint64_t lo, uint64_t hi,
			int required)
{
	yaml_node_t *n = get(c, m, key);
	if (!n) {
		if (required)
			bad(c, m, "missing key '%s'", key);
		return def;
	}
	const char *s = scalar(n);
	uint64_t v;
	if (!s || parse_count(s, &v) != 0) {
		bad(c, n, "'%s' must be a whole number (suffixes k M G T, Ki Mi Gi Ti allowed), not '%s'", key,
		    s ? s : "a list or mapping");
		return def;
	}
	if (v < lo || v > hi) {
		bad(c, n, "'%s' is %llu, outside [%llu, %llu]", key, (unsigned long long)v, (unsigned long long)lo,
		    (unsigned long long)hi);
		return def;
	}
	return v;
}

static int parse_double(const char *s, double *out)
{
	char *end;
	if (!s || !*s)
		return -1;
	double v = strtod(s, &end);
	if (*end || !isfinite(v))
		return -1;
	*out = v;
	return 0;
}

static double get_double(ctx *c, const yaml_node_t *m, const char *key, double def, double lo, double hi)
{
	yaml_node_t *n = get(c, m, key);
	if (!n)
		return def;
	double v;
	if (parse_double(scalar(n), &v) != 0) {
		bad(c, n, "'%s' must be a number, not '%s'", key, scalar(n) ? scalar(n) : "a list or mapping");
		return def;
	}
	if (v < lo || v > hi) {
		bad(c, n, "'%s' is %g, outside [%g, %g]", key, v, lo, hi);
		return def;
	}
	return v;
}

static int get_bool(ctx *c, const yaml_node_t *m, const char *key, int def)
{
	yaml_node_t *n = get(c, m, key);
	if (!n)
		return def;
	const char *s = scalar(n);
	if (s && (!strcmp(s, "true") || !strcmp(s, "yes") || !strcmp(s, "on")))
		return 1;
	if (s && (!strcmp(s, "false") || !strcmp(s, "no") || !strcmp(s, "off")))
		return 0;
	bad(c, n, "'%s' must be true or false, not '%s'", key, s ? s : "a list or mapping");
	return def;
}

/* one of names (NULL-terminated) */
static int get_enum(ctx *c, const yaml_node_t *m, const char *key, const char *const *names, int def, int required)
{
	yaml_node_t *n = get(c, m, key);
	if (!n) {
		if (required)
			bad(c, m, "missing key '%s'", key);
		return def;
	}
	const char *s = scalar(n);
	for (int i = 0; s && names[i]; i++)
		if (!strcmp(s, names[i]))
			return i;
	char list[200] = "", sug[96] = "";
	for (int i = 0; names[i]; i++)
		snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "", names[i]);
	bad(c, n, "'%s' must be one of %s, not '%s'%s", key, list, s ? s : "a list or mapping",
	    s ? suggest(s, names, -1, sug, sizeof sug) : "");
	return def;
}

/* a string or a list of strings, as a malloc'd array */
static char **get_strs(ctx *c, const yaml_node_t *m, const char *key, int *count, int required)
{
	*count = 0;
	yaml_node_t *n = get(c, m, key);
	if (!n) {
		if (required)
			bad(c, m, "missing key '%s'", key);
		return NULL;
	}
	if (scalar(n)) {
		if (!*scalar(n)) {
			bad(c, n, "'%s' must not be empty", key);
			return NULL;
		}
		char **v = xmalloc(sizeof *v);
		v[0] = xstrdup(scalar(n));
		*count = 1;
		return v;
	}
	if (n->type != YAML_SEQUENCE_NODE) {
		bad(c, n, "'%s' must be a string or a list of strings", key);
		return NULL;
	}
	size_t len = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
	char **v = xcalloc(len ? len : 1, sizeof *v);
	for (size_t i = 0; i < len; i++) {
		yaml_node_t *e = node(c, n->data.sequence.items.start[i]);
		if (!scalar(e) || !*scalar(e)) {
			bad(c, e, "'%s' item %zu must be a non-empty string", key, i + 1);
			continue;
		}
		v[(*count)++] = xstrdup(scalar(e));
	}
	if (!len)
		bad(c, n, "'%s' must not be an empty list", key);
	return v;
}

static void free_strs(char **v, int n)
{
	for (int i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/* ---------------------------------------------------------------------- */
/* counts */

int parse_count(const char *s, uint64_t *out)
{
	if (!s)
		return -1;
	while (isspace((unsigned char)*s))
		s++;
	if (!isdigit((unsigned char)*s) && *s != '.')
		return -1; /* no sign, no hex, no words */
	/* the number: whole numbers exactly (strtoull), fractions and
	 * exponents ("1.5G", "2e6") through a double */
	const char *p = s;
	while (isdigit((unsigned char)*p))
		p++;
	int whole = *p != '.' && *p != 'e' && *p != 'E';
	char *end;
	errno = 0;
	uint64_t iv = whole ? strtoull(s, &end, 10) : 0;
	double dv = whole ? 0 : strtod(s, &end);
	if (errno == ERANGE || (!whole && !isfinite(dv)))
		return -1;
	uint64_t mult = 1;
	if (*end == 'k' || *end == 'K' || *end == 'M' || *end == 'G' || *end == 'T') {
		int bin = end[1] == 'i';
		uint64_t base = bin ? 1024 : 1000;
		int pow = *end == 'T' ? 4 : *end == 'G' ? 3 : *end == 'M' ? 2 : 1;
		while (pow--)
			mult *= base;
		end += 1 + bin;
	}
	if (*end)
		return -1;
	if (whole) {
		if (iv && mult > UINT64_MAX / iv)
			return -1;
		*out = iv * mult;
		return 0;
	}
	dv *= (double)mult;
	if (dv < 0 || dv >= 1.8e19 || dv != floor(dv))
		return -1;
	*out = (uint64_t)dv;
	return 0;
}

/* ---------------------------------------------------------------------- */
/* sections */

/* a path in the recipe, relative to the recipe file's directory */
static char *resolve(const ctx *c, const char *p)
{
	const char *slash = strrchr(c->path, '/');
	if (p[0] == '/' || !slash)
		return xstrdup(p);
	buf b = {0};
	buf_printf(&b, "%.*s/%s", (int)(slash - c->path), c->path, p);
	return (char *)b.data;
}

static void resolve_all(const ctx *c, char **v, int n)
{
	for (int i = 0; i < n; i++) {
		char *r = resolve(c, v[i]);
		free(v[i]);
		v[i] = r;
	}
}

static void read_model(ctx *c, recipe *r, const yaml_node_t *m)
{
	static const char *const keys[] = {"preset", "tied", NULL};
	static const char *const presets[] = {"tiny", "small", "micro", "tiny-moe", "micro-moe", NULL};
	snprintf(c->scope, sizeof c->scope, "model");
	r->model_preset = xstrdup("tiny");
	if (!m || check_map(c, m, "'model'", keys) != 0)
		return;
	free(r->model_preset);
	r->model_preset = xstrdup(presets[get_enum(c, m, "preset", presets, 0, 0)]);
	r->model_tied = get_bool(c, m, "tied", 0);
}

static void read_sources(ctx *c, recipe *r, const yaml_node_t *m, const yaml_node_t *root)
{
	static const char *const keys[] = {"kind", "shards", "filters", NULL};
	snprintf(c->scope, sizeof c->scope, "sources");
	if (!m) {
		bad(c, root, "missing 'sources' (at least one source of samples)");
		return;
	}
	if (check_map(c, m, "'sources'", NULL) != 0)
		return;
	size_t n = (size_t)(m->data.mapping.pairs.top - m->data.mapping.pairs.start);
	r->src = xcalloc(n ? n : 1, sizeof *r->src);
	if (!n)
		bad(c, m, "no source defined");
	for (size_t i = 0; i < n; i++) {
		yaml_node_pair_t *p = &m->data.mapping.pairs.start[i];
		const char *name = scalar(node(c, p->key));
		if (!name)
			continue;
		yaml_node_t *v = node(c, p->value);
		snprintf(c->scope, sizeof c->scope, "source '%s'", name);
		rsource *s = &r->src[r->nsrc++];
		s->name = xstrdup(name);
		if (check_map(c, v, "a source", keys) != 0)
			continue;
		s->kind = get_enum(c, v, "kind", src_kind_names, SRC_CAPTIONS, 1);
		s->shards = get_strs(c, v, "shards", &s->nshards, 1);
		resolve_all(c, s->shards, s->nshards);
		const char *f = get_str(c, v, "filters", 0);
		if (f) {
			mvl_err e;
			filter_chain *fc = filter_chain_parse(f, &e);
			if (!fc)
				bad(c, get(c, v, "filters"), "filters: %s", e.msg);
			filter_chain_free(fc);
			s->filters = xstrdup(f);
		}
	}
}

static int source_ref(ctx *c, const recipe *r, const yaml_node_t *n, const char *name)
{
	int k = recipe_source(r, name);
	if (k < 0) {
		const char **names = xmalloc((size_t)(r->nsrc + 1) * sizeof *names);
		for (int i = 0; i < r->nsrc; i++)
			names[i] = r->src[i].name;
		char s[96];
		bad(c, n, "source '%s' is not defined under 'sources'%s", name, suggest(name, names, r->nsrc, s, sizeof s));
		free(names);
	}
	return k;
}

static void read_tokenizer(ctx *c, recipe *r, const yaml_node_t *m, const yaml_node_t *root)
{
	static const char *const keys[] = {"file", "encoding", "train", NULL};
	static const char *const tkeys[] = {"vocab", "sources", "pattern", "min_frequency", "special", NULL};
	static const char *const encodings[] = {"gpt2", "r50k_base", "cl100k_base", "o200k_base", NULL};
	rtokenizer *t = &r->tok;
	snprintf(c->scope, sizeof c->scope, "tokenizer");
	if (!m) {
		bad(c, root, "missing 'tokenizer' (a file, or train settings)");
		return;
	}
	if (check_map(c, m, "'tokenizer'", keys) != 0)
		return;
	const char *f = get_str(c, m, "file", 0);
	yaml_node_t *tr = get(c, m, "train");
	t->encoding = xstrdup(encodings[get_enum(c, m, "encoding", encodings, 2, 0)]);
	if (f && tr)
		bad(c, m, "give either 'file' or 'train', not both");
	if (!f && !tr)
		bad(c, m, "give 'file' (a .tiktoken or tokenizer.json) or 'train' settings");
	if (f)
		t->file = resolve(c, f);
	if (!tr)
		return;
	if (get(c, m, "encoding"))
		warn(c, get(c, m, "encoding"), "'encoding' is ignored when training (train.pattern sets the pattern)");
	snprintf(c->scope, sizeof c->scope, "tokenizer.train");
	if (check_map(c, tr, "'train'", tkeys) != 0)
		return;
	t->vocab = (int)get_u64(c, tr, "vocab", 8192, 257, 1u << 20, 1);
	t->min_frequency = (int)get_u64(c, tr, "min_frequency", 2, 1, INT32_MAX, 0);
	const char *pat = get_str(c, tr, "pattern", 0);
	if (pat && !bpe_pattern(pat))
		bad(c, get(c, tr, "pattern"), "'pattern' must be gpt2, r50k_base, cl100k_base or o200k_base, not '%s'", pat);
	t->pattern = xstrdup(pat ? pat : "cl100k_base");
	int ns;
	char **names = get_strs(c, tr, "sources", &ns, 1);
	t->sources = xcalloc((size_t)(ns ? ns : 1), sizeof *t->sources);
	yaml_node_t *sn = get(c, tr, "sources");
	for (int i = 0; i < ns; i++) {
		int k = source_ref(c, r, sn, names[i]);
		if (k >= 0)
			t->sources[t->nsources++] = k;
	}
	free_strs(names, ns);
	t->special = get_strs(c, tr, "special", &t->nspecial, 0);
}

const char *const ps_metric_names[] = {"gain", "contrast", "with_image", NULL};

/* pairscore: {with: STAGE, sources: [...], by: METRIC, min: X | drop_lowest: F} */
static void read_pairscore(ctx *c, recipe *r, rstage *st, const yaml_node_t *m)
{
	static const char *const keys[] = {"with", "sources", "by", "min", "drop_lowest", NULL};
	st->score_with = -1;
	if (!m)
		return;
	if (check_map(c, m, "'pairscore'", keys) != 0)
		return;
	const char *with = get_str(c, m, "with", 1);
	if (with) {
		for (rstage *o = r->stage; o < st; o++)
			if (!strcmp(o->name, with))
				st->score_with = (int)(o - r->stage);
		if (st->score_with < 0)
			bad(c, get(c, m, "with"), "'with' must name an earlier stage (its final model scores the pairs), "
						 "not '%s'", with);
	}
	int n;
	char **names = get_strs(c, m, "sources", &n, 1);
	st->score_src = xcalloc((size_t)(n ? n : 1), sizeof *st->score_src);
	for (int i = 0; i < n; i++) {
		int k = source_ref(c, r, get(c, m, "sources"), names[i]);
		if (k < 0)
			continue;
		if (r->src[k].kind != SRC_CAPTIONS)
			bad(c, get(c, m, "sources"), "source '%s' is %s: only captions sources are scored", names[i],
			    src_kind_names[r->src[k].kind]);
		else if (!(st->weight[k] > 0))
			bad(c, get(c, m, "sources"), "source '%s' is not in this stage's mix", names[i]);
		else
			st->score_src[st->nscore_src++] = k;
	}
	free_strs(names, n);
	st->score_by = get_enum(c, m, "by", ps_metric_names, PS_CONTRAST, 0);
	yaml_node_t *mn = get(c, m, "min"), *dn = get(c, m, "drop_lowest");
	if (!mn == !dn)
		bad(c, m, "'pairscore' takes one of 'min' (a threshold) or 'drop_lowest' (a fraction)");
	st->score_min = get_double(c, m, "min", 0, -1e9, 1e9);
	st->score_drop = get_double(c, m, "drop_lowest", 0, 0, 1);
	if (dn && (st->score_drop <= 0 || st->score_drop >= 1))
		bad(c, dn, "'drop_lowest' is a fraction in (0, 1)");
}

static void read_stage(ctx *c, recipe *r, rstage *st, const yaml_node_t *m, int index)
{
	static const char *const keys[] = {"name", "train", "seq_len", "tokens", "mix", "lr", "min_lr",
					   "lr_scheduler", "warmup_steps", "decay_fraction", "batch_tokens",
					   "weight_decay", "grad_clip", "beta1", "beta2", "eps", "min_pixels",
					   "max_pixels", "truncate", "average", "pairscore", NULL};
	static const char *const averages[] = {"uniform", "soup", NULL};
	static const char *const parts[] = {"projector", "vit", "llm", "all", NULL};
	st->weight = xcalloc((size_t)(r->nsrc ? r->nsrc : 1), sizeof *st->weight);
	st->score_with = -1;
	st->name = xstrdup("?");
	/* the scope names the stage as soon as it is known */
	const char *name = m && m->type == YAML_MAPPING_NODE ? scalar(get(c, m, "name")) : NULL;
	if (name && *name)
		snprintf(c->scope, sizeof c->scope, "stage '%s'", name);
	else
		snprintf(c->scope, sizeof c->scope, "stage %d", index + 1);
	if (check_map(c, m, "a stage", keys) != 0)
		return;
	name = get_str(c, m, "name", 1);
	if (name) {
		free(st->name);
		st->name = xstrdup(name);
		for (rstage *o = r->stage; o < st; o++)
			if (!strcmp(o->name, name))
				bad(c, get(c, m, "name"), "a stage called '%s' already exists", name);
	}
	/* train: which parts */
	int np;
	char **pn = get_strs(c, m, "train", &np, 1);
	for (int i = 0; i < np; i++) {
		int k = -1;
		for (int j = 0; parts[j]; j++)
			if (!strcmp(pn[i], parts[j]))
				k = j;
		if (k < 0) {
			char s[96];
			bad(c, get(c, m, "train"), "'train' names parts projector, vit, llm or all, not '%s'%s", pn[i],
			    suggest(pn[i], parts, -1, s, sizeof s));
		} else {
			st->parts |= k == 3 ? (PART_PROJECTOR | PART_VIT | PART_LLM) : 1u << k;
		}
	}
	free_strs(pn, np);
	/* seq_len: one length or a list */
	yaml_node_t *sl = get(c, m, "seq_len");
	if (!sl) {
		bad(c, m, "missing key 'seq_len'");
	} else if (sl->type == YAML_SEQUENCE_NODE) {
		for (yaml_node_item_t *it = sl->data.sequence.items.start; it < sl->data.sequence.items.top; it++) {
			yaml_node_t *e = node(c, *it);
			uint64_t v;
			if (!scalar(e) || parse_count(scalar(e), &v) || v < 16 || v > 1u << 20)
				bad(c, e, "'seq_len' items must be whole numbers in [16, 1048576]");
			else if (st->nseq == MAX_SEQ_LENS)
				bad(c, e, "at most %d sequence lengths", MAX_SEQ_LENS);
			else
				st->seq_len[st->nseq++] = (int)v;
		}
		if (!st->nseq && sl->data.sequence.items.top == sl->data.sequence.items.start)
			bad(c, sl, "'seq_len' must not be an empty list");
	} else {
		st->seq_len[0] = (int)get_u64(c, m, "seq_len", 0, 16, 1u << 20, 1);
		st->nseq = 1;
	}
	st->tokens = get_u64(c, m, "tokens", 0, 1, UINT64_MAX / 2, 1);
	/* mix: source -> weight by tokens */
	yaml_node_t *mix = get(c, m, "mix");
	if (!mix) {
		bad(c, m, "missing key 'mix' (source: weight, by tokens)");
	} else if (check_map(c, mix, "'mix'", NULL) == 0) {
		double sum = 0;
		int bad_weight = 0;
		for (yaml_node_pair_t *p = mix->data.mapping.pairs.start; p < mix->data.mapping.pairs.top; p++) {
			yaml_node_t *kn = node(c, p->key), *vn = node(c, p->value);
			if (!scalar(kn))
				continue;
			int k = source_ref(c, r, kn, scalar(kn));
			double w;
			if (parse_double(scalar(vn), &w) != 0) {
				bad(c, vn, "mix weight of '%s' must be a number", scalar(kn));
				bad_weight = 1;
			} else if (w <= 0) {
				bad(c, vn, "mix weight of '%s' is %g: weights must be > 0 (leave a source out instead)",
				    scalar(kn), w);
				bad_weight = 1;
			} else if (k >= 0) {
				st->weight[k] = w;
				sum += w;
			}
		}
		if (mix->data.mapping.pairs.top == mix->data.mapping.pairs.start)
			bad(c, mix, "'mix' names no source");
		else if (!bad_weight && sum > 0 && fabs(sum - 1) > 1e-6)
			warn(c, mix, "mix weights sum to %g, not 1: normalized", sum);
		for (int i = 0; sum > 0 && i < r->nsrc; i++)
			st->weight[i] /= sum;
	}
	int e0 = c->errors;
	st->lr = get_double(c, m, "lr", 3e-4, 0, 10);
	st->min_lr = get_double(c, m, "min_lr", st->lr / 10, 0, 10);
	if (c->errors == e0 && st->min_lr > st->lr)
		bad(c, get(c, m, "min_lr") ? get(c, m, "min_lr") : get(c, m, "lr"), "'min_lr' %g is above 'lr' %g%s",
		    st->min_lr, st->lr, get(c, m, "min_lr") ? "" : " (min_lr's default)");
	st->scheduler = get_enum(c, m, "lr_scheduler", sched_names, SCHED_COSINE, 0);
	st->warmup_steps = get_u64(c, m, "warmup_steps", 0, 0, UINT32_MAX, 0);
	st->decay_fraction = get_double(c, m, "decay_fraction", 0.1, 0, 1);
	st->batch_tokens = get_u64(c, m, "batch_tokens", 16384, 1, UINT64_MAX / 2, 0);
	st->weight_decay = get_double(c, m, "weight_decay", 0.1, 0, 10);
	st->grad_clip = get_double(c, m, "grad_clip", 1.0, 0, 1e9);
	st->beta1 = get_double(c, m, "beta1", 0.9, 0, 0.999999);
	st->beta2 = get_double(c, m, "beta2", 0.95, 0, 0.999999999);
	st->eps = get_double(c, m, "eps", 1e-8, 0, 1);
	e0 = c->errors;
	st->min_pixels = get_u64(c, m, "min_pixels", 56 * 56, 28 * 28, (uint64_t)1 << 40, 0);
	st->max_pixels = get_u64(c, m, "max_pixels", 28 * 28 * 1280, 28 * 28, (uint64_t)1 << 40, 0);
	if (c->errors == e0 && st->min_pixels > st->max_pixels) {
		yaml_node_t *at = get(c, m, "min_pixels") ? get(c, m, "min_pixels") : get(c, m, "max_pixels");
		bad(c, at ? at : m, "'min_pixels' %llu%s is above 'max_pixels' %llu%s", (unsigned long long)st->min_pixels,
		    get(c, m, "min_pixels") ? "" : " (the default)", (unsigned long long)st->max_pixels,
		    get(c, m, "max_pixels") ? "" : " (the default)");
	}
	st->truncate = get_bool(c, m, "truncate", 1);
	st->soup = get_enum(c, m, "average", averages, 0, 0) == 1;
	read_pairscore(c, r, st, get(c, m, "pairscore"));
	for (int i = 0; i < st->nseq; i++)
		if (st->batch_tokens < (uint64_t)st->seq_len[i]) {
			yaml_node_t *at = get(c, m, "batch_tokens") ? get(c, m, "batch_tokens") : get(c, m, "seq_len");
			bad(c, at ? at : m, "'batch_tokens' %llu%s is less than one sequence (%d)",
			    (unsigned long long)st->batch_tokens, get(c, m, "batch_tokens") ? "" : " (the default)",
			    st->seq_len[i]);
			break;
		}
}

static void read_eval(ctx *c, recipe *r, const yaml_node_t *m)
{
	static const char *const keys[] = {"sets", "resolutions", "metrics", "max_samples", "candidates", NULL};
	static const char *const metrics[] = {"loss", "accuracy", "exact_match", NULL};
	reval *e = &r->eval;
	snprintf(c->scope, sizeof c->scope, "eval");
	if (!m || check_map(c, m, "'eval'", keys) != 0)
		return;
	yaml_node_t *sets = get(c, m, "sets");
	if (sets && check_map(c, sets, "'sets'", NULL) == 0) {
		size_t n = (size_t)(sets->data.mapping.pairs.top - sets->data.mapping.pairs.start);
		e->set_name = xcalloc(n ? n : 1, sizeof *e->set_name);
		e->set_shards = xcalloc(n ? n : 1, sizeof *e->set_shards);
		for (size_t i = 0; i < n; i++) {
			yaml_node_pair_t *p = &sets->data.mapping.pairs.start[i];
			const char *k = scalar(node(c, p->key)), *v = scalar(node(c, p->value));
			if (!k)
				continue;
			if (!v || !*v) {
				bad(c, node(c, p->value), "eval set '%s' must be a shard pattern", k);
				continue;
			}
			e->set_name[e->nsets] = xstrdup(k);
			e->set_shards[e->nsets++] = resolve(c, v);
		}
	}
	yaml_node_t *res = get(c, m, "resolutions");
	if (res && res->type != YAML_SEQUENCE_NODE) {
		bad(c, res, "'resolutions' must be a list of max_pixels values");
	} else if (res) {
		size_t n = (size_t)(res->data.sequence.items.top - res->data.sequence.items.start);
		e->resolutions = xcalloc(n ? n : 1, sizeof *e->resolutions);
		for (size_t i = 0; i < n; i++) {
			yaml_node_t *it = node(c, res->data.sequence.items.start[i]);
			uint64_t v;
			if (!scalar(it) || parse_count(scalar(it), &v) || v < 28 * 28)
				bad(c, it, "'resolutions' item %zu must be a pixel count >= 784", i + 1);
			else
				e->resolutions[e->nres++] = v;
		}
	}
	e->metrics = get_strs(c, m, "metrics", &e->nmetrics, 0);
	e->max_samples = (int)get_u64(c, m, "max_samples", 0, 0, INT32_MAX, 0);
	e->candidates = (int)get_u64(c, m, "candidates", 8, 2, 1000, 0);
	for (int i = 0; i < e->nmetrics; i++) {
		int ok = 0;
		for (int j = 0; metrics[j]; j++)
			ok |= !strcmp(metrics[j], e->metrics[i]);
		if (!ok) {
			char s[96];
			bad(c, get(c, m, "metrics"), "unknown metric '%s' (loss, accuracy, exact_match)%s", e->metrics[i],
			    suggest(e->metrics[i], metrics, -1, s, sizeof s));
		}
	}
}

/* ---------------------------------------------------------------------- */

/* libyaml's scanner pays for every open flow collection ([ or {) on every
 * token: a file nested 100,000 deep took minutes.  A recipe nests a few
 * levels; brackets are counted on the raw bytes (inside strings too: only
 * more caution), so nothing deeper reaches the parser.  @return 0 or -1. */
enum { MAX_FLOW_DEPTH = 64 };

static int check_flow_depth(const char *path, const buf *text, mvl_err *err)
{
	size_t line = 1, col = 0;
	int depth = 0;
	for (size_t i = 0; i < text->len; i++) {
		unsigned char ch = text->data[i];
		col++;
		if (ch == '\n') {
			line++;
			col = 0;
		} else if (ch == '[' || ch == '{') {
			if (++depth > MAX_FLOW_DEPTH)
				return mvl_errf(err, "%s:%zu:%zu: brackets nested deeper than %d levels", path, line, col,
						MAX_FLOW_DEPTH);
		} else if ((ch == ']' || ch == '}') && depth > 0) {
			depth--;
		}
	}
	return 0;
}

recipe *recipe_load(const char *path, buf *diag, mvl_err *err)
{
	buf text = {0};
	if (read_file(path, 64u << 20, &text, err) != 0) {
		buf_free(&text);
		return NULL;
	}
	if (check_flow_depth(path, &text, err) != 0) {
		buf_free(&text);
		return NULL;
	}
	yaml_parser_t parser;
	yaml_document_t doc;
	yaml_parser_initialize(&parser);
	yaml_parser_set_input_string(&parser, text.data, text.len);
	if (!yaml_parser_load(&parser, &doc)) {
		mvl_errf(err, "%s:%zu:%zu: YAML: %s%s%s", path, (size_t)parser.problem_mark.line + 1,
			 (size_t)parser.problem_mark.column + 1, parser.problem ? parser.problem : "malformed",
			 parser.context ? " " : "", parser.context ? parser.context : "");
		yaml_parser_delete(&parser);
		buf_free(&text);
		return NULL;
	}
	/* a second document would be ignored: refuse it */
	yaml_document_t more;
	int extra = 0;
	if (yaml_parser_load(&parser, &more)) {
		extra = yaml_document_get_root_node(&more) != NULL;
		yaml_document_delete(&more);
	}
	yaml_parser_delete(&parser);
	buf_free(&text);
	if (extra) {
		yaml_document_delete(&doc);
		mvl_errf(err, "%s: more than one YAML document ('---'): a recipe is one document", path);
		return NULL;
	}

	ctx c = {.path = path, .doc = &doc, .diag = diag};
	recipe *r = xcalloc(1, sizeof *r);
	r->path = xstrdup(path);
	yaml_node_t *root = yaml_document_get_root_node(&doc);
	static const char *const keys[] = {"seed", "max_epochs", "model", "sources", "tokenizer", "stages", "eval", NULL};
	if (!root) {
		bad(&c, NULL, "the file is empty");
	} else if (check_map(&c, root, "the recipe", keys) == 0) {
		r->seed = get_u64(&c, root, "seed", 0, 0, UINT64_MAX / 2, 0);
		r->max_epochs = (int)get_u64(&c, root, "max_epochs", 10, 1, 1000000, 0);
		read_model(&c, r, get(&c, root, "model"));
		read_sources(&c, r, get(&c, root, "sources"), root);
		read_tokenizer(&c, r, get(&c, root, "tokenizer"), root);
		yaml_node_t *st = get(&c, root, "stages");
		*c.scope = 0;
		if (!st || st->type != YAML_SEQUENCE_NODE ||
		    st->data.sequence.items.top == st->data.sequence.items.start) {
			bad(&c, st ? st : root, "'stages' must be a non-empty list of stages");
		} else {
			size_t n = (size_t)(st->data.sequence.items.top - st->data.sequence.items.start);
			r->stage = xcalloc(n, sizeof *r->stage);
			for (size_t i = 0; i < n; i++) {
				read_stage(&c, r, &r->stage[i], node(&c, st->data.sequence.items.start[i]), (int)i);
				r->nstage++;
			}
		}
		read_eval(&c, r, get(&c, root, "eval"));
		/* sources no stage mixes */
		*c.scope = 0;
		for (int i = 0; i < r->nsrc && r->nstage; i++) {
			int used = 0;
			for (int k = 0; k < r->nstage; k++)
				used |= r->stage[k].weight && r->stage[k].weight[i] > 0;
			for (int k = 0; k < r->tok.nsources; k++)
				used |= r->tok.sources[k] == i;
			if (!used)
				warn(&c, get(&c, get(&c, root, "sources"), r->src[i].name), "source '%s' is used by no stage",
				     r->src[i].name);
		}
	}
	yaml_document_delete(&doc);
	if (c.errors) {
		mvl_errf(err, "%s: %d error%s", path, c.errors, c.errors == 1 ? "" : "s");
		recipe_free(r);
		return NULL;
	}
	return r;
}

void recipe_free(recipe *r)
{
	if (!r)
		return;
	for (int i = 0; i < r->nsrc; i++) {
		free(r->src[i].name);
		free_strs(r->src[i].shards, r->src[i].nshards);
		free(r->src[i].filters);
	}
	free(r->src);
	for (int i = 0; i < r->nstage; i++) {
		free(r->stage[i].name);
		free(r->stage[i].weight);
		free(r->stage[i].score_src);
	}
	free(r->stage);
	free(r->tok.file);
	free(r->tok.encoding);
	free(r->tok.pattern);
	free(r->tok.sources);
	free_strs(r->tok.special, r->tok.nspecial);
	free_strs(r->eval.set_name, r->eval.nsets);
	free_strs(r->eval.set_shards, r->eval.nsets);
	free(r->eval.resolutions);
	free_strs(r->eval.metrics, r->eval.nmetrics);
	free(r->model_preset);
	free(r->path);
	free(r);
}

int recipe_source(const recipe *r, const char *name)
{
	for (int i = 0; i < r->nsrc; i++)
		if (!strcmp(r->src[i].name, name))
			return i;
	return -1;
}

const rstage *recipe_stage(const recipe *r, const char *name)
{
	for (int i = 0; i < r->nstage; i++)
		if (!strcmp(r->stage[i].name, name))
			return &r->stage[i];
	return NULL;
}
