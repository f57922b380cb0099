/* filter.c: filter chains: parsing specs, running, counting, commands. */
#include "filter.h"

#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "image.h"
#include "parallel.h"
#include "stream_cmd.h"
#include "text.h"

/* ---------------------------------------------------------------------- */
/* counts and histograms */

enum { NWORDS = 12, NCHARS = 11, NSIDE = 9, NASPECT = 6, NLANG = 64 };
static const unsigned words_lo[NWORDS] = {0, 1, 2, 3, 4, 5, 6, 11, 21, 51, 101, 201};
static const unsigned chars_lo[NCHARS] = {0, 1, 6, 11, 26, 51, 101, 201, 501, 1001, 2001};
static const unsigned side_lo[NSIDE] = {0, 64, 128, 200, 256, 384, 512, 1024, 2048};
static const double aspect_lo[NASPECT] = {1.0, 1.25, 1.5, 2.0, 3.0, 5.0};

typedef struct reason_n {
	char reason[64];
	uint64_t n;
} reason_n;

typedef struct lang_n {
	char code[8];
	uint64_t n;
} lang_n;

typedef struct fstats {
	uint64_t in, kept;
	reason_n *r;
	int nr, cap;
	uint64_t words[NWORDS], chars[NCHARS], side[NSIDE], aspect[NASPECT];
	uint64_t no_caption, no_image;
	lang_n lang[NLANG];
	int nlang;
} fstats;

static void count_reason(fstats *st, const char *reason, uint64_t n)
{
	for (int i = 0; i < st->nr; i++)
		if (strcmp(st->r[i].reason, reason) == 0) {
			st->r[i].n += n;
			return;
		}
	if (st->nr == st->cap) {
		st->cap = st->cap ? st->cap * 2 : 8;
		st->r = xrealloc(st->r, (size_t)st->cap * sizeof *st->r);
	}
	snprintf(st->r[st->nr].reason, sizeof st->r[st->nr].reason, "%s", reason);
	st->r[st->nr++].n = n;
}

static void count_lang(fstats *st, const char *code, uint64_t n)
{
	for (int i = 0; i < st->nlang; i++)
		if (strcmp(st->lang[i].code, code) == 0) {
			st->lang[i].n += n;
			return;
		}
	if (st->nlang == NLANG)
		code = "other";
	for (int i = 0; i < st->nlang; i++)
		if (strcmp(st->lang[i].code, code) == 0) {
			st->lang[i].n += n;
			return;
		}
	if (st->nlang < NLANG) {
		snprintf(st->lang[st->nlang].code, sizeof st->lang[0].code, "%s", code);
		st->lang[st->nlang++].n = n;
	}
}

static int bucket_u(const unsigned *lo, int n, uint64_t v)
{
	int b = 0;
	while (b + 1 < n && v >= lo[b + 1])
		b++;
	return b;
}

/* Histograms of what a filter sees: caption words and chars, image min
 * side and aspect ratio (from the header), language (from KEY.json). */
static void observe(fstats *st, text_ctx *tc, const sample *s)
{
	member *t = sample_get(s, "txt");
	if (t) {
		const word_span *w;
		size_t nw = text_words(tc, (const char *)t->data, t->size, &w);
		st->words[bucket_u(words_lo, NWORDS, nw)]++;
		st->chars[bucket_u(chars_lo, NCHARS, utf8_count(t->data, t->size))]++;
	} else {
		st->no_caption++;
	}
	member *img = sample_image(s, NULL);
	img_info info;
	if (img && img_probe(img->data, img->size, &info, NULL) == 0 && info.width && info.height) {
		int lo = info.width < info.height ? info.width : info.height;
		int hi = info.width < info.height ? info.height : info.width;
		st->side[bucket_u(side_lo, NSIDE, (uint64_t)lo)]++;
		double a = (double)hi / lo;
		int b = 0;
		while (b + 1 < NASPECT && a >= aspect_lo[b + 1])
			b++;
		st->aspect[b]++;
	} else {
		st->no_image++;
	}
	member *j = sample_get(s, "json");
	const char *lang = "unknown";
	json_t *o = NULL;
	if (j) {
		o = json_loadb((const char *)j->data, j->size, 0, NULL);
		json_t *l = json_object_get(o, "language");
		if (json_is_string(l))
			lang = json_string_value(l);
	}
	count_lang(st, lang, 1);
	json_decref(o);
}

static void fstats_add(fstats *into, const fstats *from)
{
	into->in += from->in;
	into->kept += from->kept;
	for (int i = 0; i < from->nr; i++)
		count_reason(into, from->r[i].reason, from->r[i].n);
	for (int i = 0; i < NWORDS; i++)
		into->words[i] += from->words[i];
	for (int i = 0; i < NCHARS; i++)
		into->chars[i] += from->chars[i];
	for (int i = 0; i < NSIDE; i++)
		into->side[i] += from->side[i];
	for (int i = 0; i < NASPECT; i++)
		into->aspect[i] += from->aspect[i];
	into->no_caption += from->no_caption;
	into->no_image += from->no_image;
	for (int i = 0; i < from->nlang; i++)
		count_lang(into, from->lang[i].code, from->lang[i].n);
}

/* ---------------------------------------------------------------------- */
/* chains */

typedef struct filter_inst {
	const filter_def *d;
	void *conf;
	void *state;
	int opened;
	fstats st;
} filter_inst;

struct filter_chain {
	filter_inst *f;
	int n;
	int want_stats;
	char *spec;
	pthread_mutex_t mu; /* guards the totals while threads merge */
	char **vals;        /* option values the configs point into */
	int nvals;
	fstats ordered_st;  /* the last filter's ordered drops (writer thread) */
	fstats run_st;      /* every rejection of the run by reason, the
			     * reader's included (filter_chain_note_rejects) */
	opt_spec *cmd_specs; /* filter_chain_single: the command-line table */
};

struct chain_tls {
	void **tls;
	fstats *st;
	text_ctx *tc;
};

const filter_def *filter_find(const char *name)
{
	for (int i = 0; filter_defs[i]; i++)
		if (strcmp(filter_defs[i]->name, name) == 0)
			return filter_defs[i];
	return NULL;
}

static opt_spec spec_for(const fopt *o, void *conf)
{
	opt_spec s = {o->name, 0, o->kind, (char *)conf + o->off, o->def, o->arg, o->help};
	return s;
}

static int apply_defaults(const filter_def *d, void *conf, mvl_err *err)
{
	for (const fopt *o = d->opts; o && o->name; o++) {
		opt_spec s = spec_for(o, conf);
		if (o->kind == OPT_STR || o->kind == OPT_CHOICE)
			*(const char **)s.dst = o->def;
		else if (o->def && opts_set_value(&s, o->def, err) != 0)
			return mvl_errprefix(err, "filter '%s'", d->name);
	}
	return 0;
}

static filter_inst *add_filter(filter_chain *c, const filter_def *d, mvl_err *err)
{
	c->f = xrealloc(c->f, (size_t)(c->n + 1) * sizeof *c->f);
	filter_inst *fi = &c->f[c->n++];
	memset(fi, 0, sizeof *fi);
	fi->d = d;
	fi->conf = xcalloc(1, d->conf_size ? d->conf_size : 1);
	if (apply_defaults(d, fi->conf, err) != 0)
		return NULL;
	return fi;
}

static filter_chain *chain_new(const char *spec)
{
	filter_chain *c = xcalloc(1, sizeof *c);
	c->spec = xstrdup(spec);
	pthread_mutex_init(&c->mu, NULL);
	return c;
}

/* Splits s at unescaped sep; "\sep" becomes sep, other escapes stay. */
static char **split_esc(const char *s, char sep, int *n)
{
	char **v = NULL;
	*n = 0;
	buf cur = {0};
	buf_append(&cur, "", 0);
	for (const char *p = s;; p++) {
		if (*p == '\\' && p[1] == sep) {
			buf_append(&cur, p + 1, 1);
			p++;
			continue;
		}
		if (*p == sep || !*p) {
			v = xrealloc(v, (size_t)(*n + 1) * sizeof *v);
			v[(*n)++] = xstrndup((char *)cur.data, cur.len);
			cur.len = 0;
			if (!*p)
				break;
			continue;
		}
		buf_append(&cur, p, 1);
	}
	buf_free(&cur);
	return v;
}

static void free_strv(char **v, int n)
{
	for (int i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static const fopt *find_fopt(const filter_def *d, const char *name, size_t len)
{
	for (const fopt *o = d->opts; o && o->name; o++) {
		if (strlen(o->name) != len)
			continue;
		size_t i;
		for (i = 0; i < len; i++) {
			char a = o->name[i], b = name[i] == '-' ? '_' : name[i];
			if (a != b)
				break;
		}
		if (i == len)
			return o;
	}
	return NULL;
}

/* Parses "name:k=v:k=v" into a new filter of the chain. */
static int parse_one(filter_chain *c, const char *item, mvl_err *err)
{
	int nparts;
	char **parts = split_esc(item, ':', &nparts);
	int rc = 0;
	const filter_def *d = filter_find(parts[0]);
	filter_inst *fi = NULL;
	if (!d) {
		buf names = {0};
		for (int i = 0; filter_defs[i]; i++)
			buf_printf(&names, "%s%s", i ? ", " : "", filter_defs[i]->name);
		rc = mvl_errf(err, "unknown filter '%s' (filters: %s)", parts[0],
			      names.data ? (char *)names.data : "");
		buf_free(&names);
	} else if (!(fi = add_filter(c, d, err))) {
		rc = -1;
	}
	for (int i = 1; i < nparts && rc == 0; i++) {
		char *eq = strchr(parts[i], '=');
		if (!eq) {
			rc = mvl_errf(err, "filter '%s': '%s' is not name=value", d->name, parts[i]);
			break;
		}
		const fopt *o = find_fopt(d, parts[i], (size_t)(eq - parts[i]));
		if (!o) {
			rc = mvl_errf(err, "filter '%s': unknown option '%.*s' (see 'mvl help %s')",
				      d->name, (int)(eq - parts[i]), parts[i], d->name);
			break;
		}
		opt_spec s = spec_for(o, fi->conf);
		/* the value must outlive the parse: strings point into it */
		char *val = xstrdup(eq + 1);
		c->vals = xrealloc(c->vals, (size_t)(c->nvals + 1) * sizeof *c->vals);
		c->vals[c->nvals++] = val; /* string options point into it */
		if (opts_set_value(&s, val, err) != 0) {
			mvl_errprefix(err, "filter '%s'", d->name);
			rc = -1;
		}
	}
	free_strv(parts, nparts);
	return rc;
}

filter_chain *filter_chain_parse(const char *spec, mvl_err *err)
{
	filter_chain *c = chain_new(spec);
	int n;
	char **items = split_esc(spec, ',', &n);
	/* a comma-separated word that is not a filter continues the previous
	 * item's value: "capfilter:lang=en,de,imgfilter" */
	buf item = {0};
	int rc = 0;
	for (int i = 0; i < n && rc == 0; i++) {
		char *colon = strchr(items[i], ':');
		size_t nl = colon ? (size_t)(colon - items[i]) : strlen(items[i]);
		char name[64];
		snprintf(name, sizeof name, "%.*s", (int)(nl < 63 ? nl : 63), items[i]);
		int is_filter = filter_find(name) != NULL;
		if (item.len && !is_filter) {
			buf_append(&item, ",", 1);
			buf_append(&item, items[i], strlen(items[i]));
			continue;
		}
		if (item.len)
			rc = parse_one(c, (char *)item.data, err);
		item.len = 0;
		buf_append(&item, items[i], strlen(items[i]));
	}
	if (rc == 0 && item.len)
		rc = parse_one(c, (char *)item.data, err);
	if (rc == 0 && c->n == 0)
		rc = mvl_errf(err, "empty filter chain '%s'", spec);
	for (int i = 0; rc == 0 && i + 1 < c->n; i++)
		if (c->f[i].d->ordered)
			rc = mvl_errf(err, "'%s' must come last in a chain (it judges each sample against "
				      "the ones before, so it must see exactly what the chain keeps)",
				      c->f[i].d->name);
	buf_free(&item);
	free_strv(items, n);
	if (rc) {
		filter_chain_free(c);
		return NULL;
	}
	return c;
}

filter_chain *filter_chain_single(const filter_def *d)
{
	filter_chain *c = chain_new(d->name);
	mvl_err err;
	filter_inst *fi = add_filter(c, d, &err);
	if (!fi)
		die("%s", err.msg); /* a bad built-in default is a bug */
	int n = 0;
	for (const fopt *o = d->opts; o && o->name; o++)
		n++;
	c->cmd_specs = xcalloc((size_t)n + 1, sizeof *c->cmd_specs);
	for (int i = 0; i < n; i++) {
		c->cmd_specs[i] = spec_for(&d->opts[i], fi->conf);
		char *dash = xstrdup(d->opts[i].name);
		for (char *p = dash; *p; p++)
			if (*p == '_')
				*p = '-';
		c->cmd_specs[i].name = dash;
	}
	return c;
}

int filter_chain_open(filter_chain *c, int want_stats, mvl_err *err)
{
	c->want_stats = want_stats;
	for (int i = 0; i < c->n; i++) {
		filter_inst *fi = &c->f[i];
		int rc = fi->d->open ? fi->d->open(fi->conf, &fi->state, err) : 0;
		/* a failed open may leave half-built state: close() frees it */
		fi->opened = rc == 0 || fi->state != NULL;
		if (rc != 0)
			return mvl_errprefix(err, "filter '%s'", fi->d->name);
	}
	return 0;
}

chain_tls *chain_tls_new(filter_chain *c)
{
	chain_tls *t = xcalloc(1, sizeof *t);
	t->tls = xcalloc((size_t)c->n, sizeof *t->tls);
	t->st = xcalloc((size_t)c->n, sizeof *t->st);
	for (int i = 0; i < c->n; i++)
		if (c->f[i].d->tls_new)
			t->tls[i] = c->f[i].d->tls_new(c->f[i].state);
	if (c->want_stats)
		t->tc = text_ctx_new();
	return t;
}

void chain_tls_merge(filter_chain *c, chain_tls *t)
{
	pthread_mutex_lock(&c->mu);
	for (int i = 0; i < c->n; i++) {
		fstats_add(&c->f[i].st, &t->st[i]);
		free(t->st[i].r);
		if (c->f[i].d->tls_free)
			c->f[i].d->tls_free(t->tls[i]);
	}
	pthread_mutex_unlock(&c->mu);
	text_ctx_free(t->tc);
	free(t->tls);
	free(t->st);
	free(t);
}

int filter_chain_apply(filter_chain *c, chain_tls *t, sample *s, reject_info *rj)
{
	for (int i = 0; i < c->n; i++) {
		filter_inst *fi = &c->f[i];
		fstats *st = &t->st[i];
		st->in++;
		if (c->want_stats)
			observe(st, t->tc, s);
		if (fi->d->apply(fi->state, t->tls[i], s, rj)) {
			count_reason(st, rj->reason, 1);
			/* "FILTER.REASON", truncated to the field if it must be */
			char full[2 * sizeof rj->reason];
			snprintf(full, sizeof full, "%s.%s", fi->d->name, rj->reason);
			full[sizeof rj->reason - 1] = 0;
			memcpy(rj->reason, full, sizeof rj->reason);
			return 1;
		}
		st->kept++;
	}
	return 0;
}

int filter_chain_ordered(filter_chain *c, sample *s, reject_info *rj)
{
	filter_inst *fi = &c->f[c->n - 1];
	if (!fi->d->ordered || !fi->d->ordered(fi->state, s, rj))
		return 0;
	count_reason(&c->ordered_st, rj->reason, 1);
	c->ordered_st.in++; /* counts the samples moved from kept to dropped */
	char full[2 * sizeof rj->reason];
	snprintf(full, sizeof full, "%s.%s", fi->d->name, rj->reason);
	full[sizeof rj->reason - 1] = 0;
	memcpy(rj->reason, full, sizeof rj->reason);
	return 1;
}

int filter_chain_finish(filter_chain *c, mvl_err *err)
{
	/* fold the ordered drops into the last filter's counts */
	filter_inst *fi = &c->f[c->n - 1];
	fi->st.kept -= c->ordered_st.in;
	for (int k = 0; k < c->ordered_st.nr; k++)
		count_reason(&fi->st, c->ordered_st.r[k].reason, c->ordered_st.r[k].n);
	c->ordered_st.in = 0;
	c->ordered_st.nr = 0;
	for (int i = 0; i < c->n; i++)
		if (c->f[i].d->finish && c->f[i].d->finish(c->f[i].state, err) != 0)
			return mvl_errprefix(err, "filter '%s'", c->f[i].d->name);
	return 0;
}

static json_t *hist_u(const unsigned *lo, const uint64_t *v, int n)
{
	/* {"0": n, "1": n, ..., "6-10": n, "201+": n}: label -> count */
	json_t *a = json_object();
	for (int i = 0; i < n; i++) {
		char label[32];
		if (i + 1 < n && lo[i + 1] - 1 == lo[i])
			snprintf(label, sizeof label, "%u", lo[i]);
		else if (i + 1 < n)
			snprintf(label, sizeof label, "%u-%u", lo[i], lo[i + 1] - 1);
		else
			snprintf(label, sizeof label, "%u+", lo[i]);
		json_object_set_new(a, label, json_integer((json_int_t)v[i]));
	}
	return a;
}

static int by_count(const void *a, const void *b)
{
	const reason_n *x = a, *y = b;
	if (x->n != y->n)
		return x->n < y->n ? 1 : -1;
	return strcmp(x->reason, y->reason);
}

static int by_lang_count(const void *a, const void *b)
{
	const lang_n *x = a, *y = b;
	if (x->n != y->n)
		return x->n < y->n ? 1 : -1;
	return strcmp(x->code, y->code);
}

void filter_chain_note_rejects(filter_chain *c, const rejects *rj)
{
	c->run_st.nr = 0;
	for (int i = 0; i < rejects_reasons(rj); i++) {
		uint64_t n;
		const char *reason = rejects_reason(rj, i, &n);
		count_reason(&c->run_st, reason, n);
	}
}

int filter_chain_stats(filter_chain *c, const char *path, uint64_t in, uint64_t kept, int damaged,
		       mvl_err *err)
{
	json_t *root = json_pack("{s:s,s:I,s:I,s:I,s:i}", "chain", c->spec, "in", (json_int_t)in, "kept",
				 (json_int_t)kept, "dropped", (json_int_t)(in - kept), "damaged_inputs", damaged);
	/* in = kept + the sum of these: the reader's rejections (unsafe
	 * names, broken shards) have no filter to count them */
	json_t *all = json_object();
	if (c->run_st.nr > 1)
		qsort(c->run_st.r, (size_t)c->run_st.nr, sizeof *c->run_st.r, by_count);
	for (int k = 0; k < c->run_st.nr; k++)
		json_object_set_new(all, c->run_st.r[k].reason, json_integer((json_int_t)c->run_st.r[k].n));
	json_object_set_new(root, "reasons", all);
	json_t *fs = json_array();
	for (int i = 0; i < c->n; i++) {
		fstats *st = &c->f[i].st;
		json_t *drop = json_object();
		/* most frequent first: the order threads (or ranks) first met the
		 * reasons in is no property of the data */
		if (st->nr > 1)
			qsort(st->r, (size_t)st->nr, sizeof *st->r, by_count);
		for (int k = 0; k < st->nr; k++) {
			char full[96];
			snprintf(full, sizeof full, "%s.%s", c->f[i].d->name, st->r[k].reason);
			json_object_set_new(drop, full, json_integer((json_int_t)st->r[k].n));
		}
		json_t *f = json_pack("{s:s,s:I,s:I,s:I,s:o}", "name", c->f[i].d->name, "in",
				      (json_int_t)st->in, "kept", (json_int_t)st->kept, "dropped",
				      (json_int_t)(st->in - st->kept), "reasons", drop);
		if (c->want_stats) {
			json_t *h = json_object();
			json_object_set_new(h, "caption_words", hist_u(words_lo, st->words, NWORDS));
			json_object_set_new(h, "caption_chars", hist_u(chars_lo, st->chars, NCHARS));
			json_object_set_new(h, "image_min_side", hist_u(side_lo, st->side, NSIDE));
			json_t *asp = json_object();
			for (int k = 0; k < NASPECT; k++) {
				char label[32];
				if (k + 1 < NASPECT)
					snprintf(label, sizeof label, "%.2f-%.2f", aspect_lo[k], aspect_lo[k + 1]);
				else
					snprintf(label, sizeof label, "%.2f+", aspect_lo[k]);
				json_object_set_new(asp, label, json_integer((json_int_t)st->aspect[k]));
			}
			json_object_set_new(h, "aspect_ratio", asp);
			json_t *lang = json_object();
			qsort(st->lang, (size_t)st->nlang, sizeof st->lang[0], by_lang_count);
			for (int k = 0; k < st->nlang; k++)
				json_object_set_new(lang, st->lang[k].code, json_integer((json_int_t)st->lang[k].n));
			json_object_set_new(h, "language", lang);
			json_object_set_new(h, "no_caption", json_integer((json_int_t)st->no_caption));
			json_object_set_new(h, "no_image", json_integer((json_int_t)st->no_image));
			json_object_set_new(f, "histograms", h);
		}
		json_array_append_new(fs, f);
	}
	json_object_set_new(root, "filters", fs);
	atomic_file af;
	int rc = atomic_file_open(&af, path, err);
	if (rc == 0) {
		if (json_dumpf(root, af.f, JSON_INDENT(2) | JSON_PRESERVE_ORDER) != 0)
			fputs("", af.f);
		fputc('\n', af.f);
		rc = atomic_file_commit(&af, err);
	}
	json_decref(root);
	return rc;
}

void filter_chain_free(filter_chain *c)
{
	if (!c)
		return;
	for (int i = 0; i < c->n; i++) {
		if (c->f[i].opened && c->f[i].d->close)
			c->f[i].d->close(c->f[i].state);
		free(c->f[i].conf);
		free(c->f[i].st.r);
	}
	if (c->cmd_specs) {
		for (int i = 0; c->cmd_specs[i].name; i++)
			free((char *)c->cmd_specs[i].name);
		free(c->cmd_specs);
	}
	free(c->ordered_st.r);
	free(c->run_st.r);
	pthread_mutex_destroy(&c->mu);
	for (int i = 0; i < c->nvals; i++)
		free(c->vals[i]);
	free(c->vals);
	free(c->f);
	free(c->spec);
	free(c);
}

/* ---------------------------------------------------------------------- */
/* commands */

/* A worker's state: its chain_tls and, for the merge at exit, the chain. */
typedef struct tls_box {
	chain_tls *t;
	filter_chain *c;
} tls_box;

static int box_work(void *ctx, void *tls, sample *s, reject_info *rj)
{
	return filter_chain_apply(ctx, ((tls_box *)tls)->t, s, rj);
}

static void *box_new(void *ctx)
{
	tls_box *b = xmalloc(sizeof *b);
	b->t = chain_tls_new(ctx);
	b->c = ctx;
	return b;
}

static int discard(void *ctx, const sample *s, mvl_err *err)
{
	(void)ctx;
	(void)s;
	(void)err;
	return 0;
}

static int chain_ordered(void *ctx, sample *s, reject_info *rj)
{
	return filter_chain_ordered(ctx, s, rj);
}

static void box_free(void *tls)
{
	tls_box *b = tls;
	chain_tls_merge(b->c, b->t);
	free(b);
}

int filter_chain_run(filter_chain *c, stream_run *sr, int threads, int writes)
{
	filter_inst *last = &c->f[c->n - 1];
	parallel_work w = {box_work, c, box_new, box_free, threads, writes, discard,
			   last->d->ordered ? chain_ordered : NULL};
	return stream_run_parallel(sr, &w);
}

/* ---------------------------------------------------------------------- */
/* split runs */

int filter_chain_dist_start(filter_chain *c, const dist *d, mvl_err *err)
{
	filter_inst *last = &c->f[c->n - 1];
	if (!last->d->ordered)
		return 1; /* every verdict is the sample's own: any rank gives it */
	if (!last->d->dist_start)
		return mvl_errf(err, "filter '%s' cannot run split across ranks", last->d->name);
	if (last->d->dist_start(last->state, d, err) != 0)
		return mvl_errprefix(err, "filter '%s'", last->d->name);
	return 2;
}

int filter_chain_dist_exchange(filter_chain *c, mvl_err *err)
{
	filter_inst *last = &c->f[c->n - 1];
	if (last->d->dist_exchange && last->d->dist_exchange(last->state, err) != 0)
		return mvl_errprefix(err, "filter '%s'", last->d->name);
	return 0;
}

void filter_chain_reset_counts(filter_chain *c)
{
	for (int i = 0; i < c->n; i++) {
		free(c->f[i].st.r);
		memset(&c->f[i].st, 0, sizeof c->f[i].st);
	}
	free(c->ordered_st.r);
	memset(&c->ordered_st, 0, sizeof c->ordered_st);
}

static json_t *u64s(const uint64_t *v, int n)
{
	json_t *a = json_array();
	for (int i = 0; i < n; i++)
		json_array_append_new(a, json_integer((json_int_t)v[i]));
	return a;
}

static void add_u64s(uint64_t *v, int n, const json_t *a)
{
	for (int i = 0; i < n; i++)
		v[i] += (uint64_t)json_integer_value(json_array_get(a, (size_t)i));
}

/* one filter's counts as JSON, to travel between ranks */
static json_t *fstats_json(const fstats *st)
{
	json_t *r = json_object(), *l = json_object();
	for (int k = 0; k < st->nr; k++)
		json_object_set_new(r, st->r[k].reason, json_integer((json_int_t)st->r[k].n));
	for (int k = 0; k < st->nlang; k++)
		json_object_set_new(l, st->lang[k].code, json_integer((json_int_t)st->lang[k].n));
	uint64_t misc[4] = {st->in, st->kept, st->no_caption, st->no_image};
	return json_pack("{s:o,s:o,s:o,s:o,s:o,s:o,s:o}", "misc", u64s(misc, 4), "reasons", r, "lang", l,
			 "words", u64s(st->words, NWORDS), "chars", u64s(st->chars, NCHARS), "side",
			 u64s(st->side, NSIDE), "aspect", u64s(st->aspect, NASPECT));
}

static void fstats_add_json(fstats *st, const json_t *j)
{
	uint64_t misc[4] = {0};
	add_u64s(misc, 4, json_object_get(j, "misc"));
	st->in += misc[0];
	st->kept += misc[1];
	st->no_caption += misc[2];
	st->no_image += misc[3];
	const char *k;
	json_t *v;
	json_object_foreach(json_object_get(j, "reasons"), k, v)
		count_reason(st, k, (uint64_t)json_integer_value(v));
	json_object_foreach(json_object_get(j, "lang"), k, v)
		count_lang(st, k, (uint64_t)json_integer_value(v));
	add_u64s(st->words, NWORDS, json_object_get(j, "words"));
	add_u64s(st->chars, NCHARS, json_object_get(j, "chars"));
	add_u64s(st->side, NSIDE, json_object_get(j, "side"));
	add_u64s(st->aspect, NASPECT, json_object_get(j, "aspect"));
}

int filter_chain_gather_counts(filter_chain *c, const dist *d, mvl_err *err)
{
	json_t *all = json_array();
	for (int i = 0; i < c->n; i++)
		json_array_append_new(all, fstats_json(&c->f[i].st));
	char *js = json_dumps(all, JSON_COMPACT);
	json_decref(all);
	void *got = NULL;
	size_t *counts = xcalloc((size_t)d->size, sizeof *counts);
	int rc = dist_gatherv(d, js, strlen(js) + 1, &got, counts, err);
	free(js);
	if (rc == 0 && d->rank == 0) {
		filter_chain_reset_counts(c); /* rank 0's own come back in the gather */
		const char *p = got;
		for (int r = 0; r < d->size; r++) {
			json_t *a = json_loads(p, 0, NULL);
			for (int i = 0; i < c->n; i++)
				fstats_add_json(&c->f[i].st, json_array_get(a, (size_t)i));
			json_decref(a);
			p += counts[r];
		}
	}
	free(got);
	free(counts);
	return rc;
}

int filter_command(const filter_def *d, int argc, char **argv)
{
	stream_opts so;
	const char *stats = NULL;
	int threads = 0;
	filter_chain *c = d ? filter_chain_single(d) : NULL;
	const opt_spec common[] = {
		STREAM_OUTPUT_SPECS(so, "0", "0"),
		{"stats", 0, OPT_STR, &stats, NULL, "FILE",
		 "write per-filter counts and histograms as JSON"},
		{"threads", 'j', OPT_INT, &threads, "0", "N", "worker threads (0: all cores)"},
		STREAM_INPUT_SPECS(so),
	};
	size_t ncommon = sizeof common / sizeof common[0], nf = 0;
	if (c)
		while (c->cmd_specs[nf].name)
			nf++;
	opt_spec *specs = xcalloc(ncommon + nf + 1, sizeof *specs);
	if (nf)
		memcpy(specs, c->cmd_specs, nf * sizeof *specs);
	memcpy(specs + nf, common, ncommon * sizeof *specs);
	buf summary = {0};
	if (d)
		buf_printf(&summary, "%s\n\nReads a sample stream (INPUTs or stdin), writes the kept samples to\n"
				     "stdout (or -o shards); drops are counted per reason (see --rejects).",
			   d->summary);
	else
		buf_printf(&summary,
			   "Run a chain of filters in one process: SPEC is\n"
			   "'FILTER[:opt=value[:...]][,FILTER...]', e.g.\n"
			   "  'clean,capfilter:min_words=3:max_words=64,imgfilter:min_side=200'.\n"
			   "Filters: clean, capfilter, imgfilter ('mvl help FILTER' for options).\n"
			   "A sample stops at its first drop; the reason is FILTER.REASON.");
	opt_cmd cmd = {d ? d->name : "filter", d ? "[OPTIONS] [INPUT...]" : "SPEC [OPTIONS] [INPUT...]",
		       (char *)summary.data, d ? d->details : NULL, specs};
	char **args;
	int nargs;
	opts_main(&cmd, argc, argv, &args, &nargs);
	const char *name = cmd.name;
	mvl_err err;
	int first = 0, status = 0;
	stream_run sr;
	dist dg = {.rank = 0, .size = 1};
	if (!d) {
		if (nargs < 1) {
			fprintf(stderr, "mvl filter: a SPEC is required\nsee 'mvl filter --help'\n");
			status = 2;
			goto out;
		}
		if (!(c = filter_chain_parse(args[0], &err))) {
			fprintf(stderr, "mvl filter: %s\n", err.msg);
			status = 2;
			goto out;
		}
		first = 1;
	}
	if (threads < 0) {
		fprintf(stderr, "mvl %s: option '--threads' must be >= 0\n", name);
		status = 2;
		goto out;
	}
	if (filter_chain_open(c, stats != NULL, &err) != 0) {
		fprintf(stderr, "mvl %s: %s\n", name, err.msg);
		status = 2;
		goto out;
	}
	/* under mpirun the inputs are split across the ranks (filter_split.c) */
	if (dist_init(&dg, &err) != 0) {
		fprintf(stderr, "mvl %s: %s\n", name, err.msg);
		status = 1;
		goto out;
	}
	if (dg.size > 1) {
		status = filter_run_split(c, name, &so, args + first, nargs - first, stats, threads, &dg);
		goto out;
	}
	filter_inst *last = &c->f[c->n - 1];
	int writes = !(last->d->no_output && last->d->no_output(last->state));
	if (stream_run_open(&sr, name, &so, args + first, nargs - first, writes ? RUN_WRITES : RUN_SHARDS,
			    &err) != 0) {
		fprintf(stderr, "mvl %s: %s\n", name, err.msg);
		status = 1;
		goto out;
	}
	filter_chain_run(c, &sr, threads, writes);
	uint64_t in = sr.nin, kept = sr.nkept;
	if (filter_chain_finish(c, &err) != 0) {
		fprintf(stderr, "mvl %s: %s\n", name, err.msg);
		sr.output_failed = 1; /* the run's report is incomplete: fail */
	}
	filter_chain_note_rejects(c, sr.rj);
	status = stream_run_close(&sr);
	if (stats && filter_chain_stats(c, stats, in, kept, sr.input_errors, &err) != 0) {
		fprintf(stderr, "mvl %s: %s\n", name, err.msg);
		status = 1;
	}
out:
	dist_finalize(&dg);
	filter_chain_free(c);
	free(args);
	free(specs);
	buf_free(&summary);
	return status;
}
