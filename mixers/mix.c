/* mix.c: token-weighted interleaving of endless, shuffled sources. */
#include "mix.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <xxhash.h>

#include "inputs.h"
#include "sample_text.h"
#include "shard_reader.h"

typedef struct source {
	const rsource *def;
	int index;               /* in the recipe */
	double weight;
	inputs files;
	char **order;            /* this epoch's shard order (borrowed paths) */
	shard_reader *rd;
	uint64_t rng;            /* shard order and shuffle buffer */
	uint32_t epoch;          /* epochs started reading (1 = the first) */
	sample *buf;             /* shuffle buffer */
	int nbuf, cap;
	int epoch_done;          /* this epoch's shards are all read */
	uint64_t read_this_epoch, per_epoch; /* per_epoch: 0 until one pass ends */
	uint64_t tokens, samples, rejected, shards_opened;
	int damaged;             /* inputs that broke or could not be read (first epoch) */
	int warned_input;
} source;

struct mixer {
	const recipe *r;
	const rstage *st;
	layout *L;
	source *src;
	int nsrc;
	uint64_t budget, tokens, emitted;
	chat_seq seq;
};

/* ---------------------------------------------------------------------- */
/* one source */

/* "read.truncated_shard": which step dropped it */
static void prefix_reason(reject_info *rj, const char *p)
{
	char r[sizeof rj->reason];
	snprintf(r, sizeof r, "%s%.*s", p, (int)(sizeof r - 1 - strlen(p)), rj->reason);
	memcpy(rj->reason, r, sizeof r);
}

static int start_epoch(source *s, mvl_err *err)
{
	if (s->rd)
		shard_reader_free(s->rd);
	s->epoch++;
	/* Fisher-Yates over the shards, seeded by (recipe seed, source, epoch) */
	for (int i = 0; i < s->files.n; i++)
		s->order[i] = s->files.path[i];
	for (int i = s->files.n - 1; i > 0; i--) {
		int j = (int)(mix_rand(&s->rng) % (uint64_t)(i + 1));
		char *t = s->order[i];
		s->order[i] = s->order[j];
		s->order[j] = t;
	}
	reader_opts ro = {0};
	s->rd = shard_reader_new(s->order, s->files.n, &ro);
	s->shards_opened += (uint64_t)s->files.n;
	s->read_this_epoch = 0;
	(void)err;
	return 0;
}

/* the next sample of this epoch read from the shards into *out.
 * @return 1 a sample, 0 the epoch is over, -1 a whole epoch held none. */
static int read_raw(source *s, sample *out, rejects *log, mvl_err *err)
{
	for (;;) {
		reject_info rj;
		mvl_err e;
		int rc = shard_reader_next(s->rd, out, &rj, &e);
		if (rc == READ_SAMPLE) {
			s->read_this_epoch++;
			return 1;
		}
		if ((rc == READ_REJECT || rc == READ_BROKEN) && s->epoch == 1) {
			prefix_reason(&rj, "read.");
			rejects_add(log, out->key, out->source, &rj);
		}
		if ((rc == READ_INPUT_ERROR || rc == READ_BROKEN) && s->epoch == 1) {
			fprintf(stderr, "mvl mix: source '%s': %s\n", s->def->name, e.msg);
			s->damaged++;
		}
		if (rc != READ_END)
			continue;
		if (s->read_this_epoch == 0)
			return mvl_errf(err, "source '%s': no readable sample in its %d shard%s", s->def->name,
					s->files.n, s->files.n == 1 ? "" : "s");
		if (!s->per_epoch)
			s->per_epoch = s->read_this_epoch;
		return 0;
	}
}

/* The next sample through the shuffle buffer (swapped into *out).  The
 * buffer never spans two epochs: every sample of epoch e leaves before
 * any of epoch e + 1 is read. */
static int next_shuffled(source *s, sample *out, uint32_t *epoch, rejects *log, mvl_err *err)
{
	for (;;) {
		while (!s->epoch_done && s->nbuf < s->cap) {
			int rc = read_raw(s, &s->buf[s->nbuf], log, err);
			if (rc < 0)
				return -1;
			if (rc == 0)
				s->epoch_done = 1;
			else
				s->nbuf++;
		}
		if (s->nbuf > 0)
			break;
		start_epoch(s, err);
		s->epoch_done = 0;
	}
	int j = (int)(mix_rand(&s->rng) % (uint64_t)s->nbuf);
	sample t = *out;
	*out = s->buf[j];
	s->buf[j] = s->buf[--s->nbuf];
	s->buf[s->nbuf] = t;
	*epoch = s->epoch;
	return 0;
}

static int source_open(source *s, const recipe *r, const rsource *def, int index, double weight,
		       const mix_opts *o, mvl_err *err)
{
	s->def = def;
	s->index = index;
	s->weight = weight;
	if (o->from) {
		char *dir = NULL;
		buf b = {0};
		buf_printf(&b, "%s/%s", o->from, def->name);
		dir = (char *)b.data;
		int rc = inputs_expand(&s->files, dir, err);
		free(dir);
		if (rc != 0)
			return mvl_errprefix(err, "source '%s'", def->name);
	} else {
		if (def->filters)
			fprintf(stderr, "mvl mix: warning: source '%s' has filters '%s' but is mixed from its raw shards "
					"(run `mvl filter` first and pass --from DIR)\n", def->name, def->filters);
		for (int i = 0; i < def->nshards; i++)
			if (inputs_expand(&s->files, def->shards[i], err) != 0)
				return mvl_errprefix(err, "source '%s'", def->name);
	}
	if (inputs_shard_dirs(&s->files, err) != 0)
		return mvl_errprefix(err, "source '%s'", def->name);
	if (s->files.n == 0)
		return mvl_errf(err, "source '%s': no shards", def->name);
	s->order = xcalloc((size_t)s->files.n, sizeof *s->order);
	s->rng = r->seed ^ XXH3_64bits(def->name, strlen(def->name));
	s->cap = o->shuffle_buffer > 0 ? o->shuffle_buffer : 1;
	s->buf = xcalloc((size_t)s->cap, sizeof *s->buf);
	for (int i = 0; i < s->cap; i++)
		sample_init(&s->buf[i]);
	return start_epoch(s, err);
}

static void source_close(source *s)
{
	shard_reader_free(s->rd);
	for (int i = 0; i < s->cap; i++)
		sample_free(&s->buf[i]);
	free(s->buf);
	free(s->order);
	inputs_free(&s->files);
}

/* ---------------------------------------------------------------------- */

mixer *mixer_new(const recipe *r, const rstage *st, const mix_opts *o, layout *L, mvl_err *err)
{
	mixer *m = xcalloc(1, sizeof *m);
	m->r = r;
	m->st = st;
	m->L = L;
	m->budget = o->budget ? o->budget : st->tokens;
	m->src = xcalloc((size_t)r->nsrc, sizeof *m->src);
	for (int i = 0; i < r->nsrc; i++) {
		if (st->weight[i] <= 0)
			continue;
		if (source_open(&m->src[m->nsrc], r, &r->src[i], i, st->weight[i], o, err) != 0) {
			m->nsrc++;
			mixer_free(m);
			return NULL;
		}
		m->nsrc++;
	}
	return m;
}

/* the source furthest behind its share: least tokens / weight */
static source *behind(mixer *m)
{
	source *best = NULL;
	double bv = 0;
	for (int i = 0; i < m->nsrc; i++) {
		double v = (double)m->src[i].tokens / m->src[i].weight;
		if (!best || v < bv) {
			best = &m->src[i];
			bv = v;
		}
	}
	return best;
}

int mixer_next(mixer *m, sample *s, rejects *log, mvl_err *err)
{
	while (m->tokens < m->budget) {
		source *src = behind(m);
		uint32_t epoch;
		if (next_shuffled(src, s, &epoch, log, err) != 0)
			return -1;
		const member *img;
		int h, w;
		reject_info rj;
		if (layout_sample(m->L, s, src->def->kind, &m->seq, &img, &h, &w, &rj)) {
			src->rejected++;
			if (epoch == 1) { /* later epochs repeat the same verdicts */
				prefix_reason(&rj, "mix.");
				rejects_add(log, s->key, s->source, &rj);
			}
			/* a source whose every sample is rejected would loop forever */
			if (src->per_epoch && src->rejected >= src->per_epoch && src->samples == 0)
				return mvl_errf(err, "source '%s': every sample is rejected (last: %s: %s)", src->def->name,
						rj.reason, rj.detail);
			continue;
		}
		uint64_t t = m->seq.n;
		src->tokens += t;
		src->samples++;
		m->tokens += t;
		m->emitted++;
		/* SOURCE/EPOCH/KEY and the record of where it came from */
		buf k = {0};
		buf_printf(&k, "%s/%u/%s", src->def->name, epoch, s->key);
		sample_set_key(s, (const char *)k.data, k.len);
		buf_free(&k);
		sample_json_set(s, "mix", json_pack("{s:s,s:s,s:i,s:I}", "source", src->def->name, "kind",
						   src_kind_names[src->def->kind], "epoch", (int)epoch,
						   "tokens", (json_int_t)t));
		return 1;
	}
	return 0;
}

json_t *mixer_report(const mixer *m, FILE *table)
{
	json_t *list = json_array();
	if (table)
		fprintf(table, "%-20s %9s %9s %14s %10s %8s\n", "source", "requested", "realized", "tokens", "samples",
			"epochs");
	for (int i = 0; i < m->nsrc; i++) {
		const source *s = &m->src[i];
		double share = m->tokens ? (double)s->tokens / (double)m->tokens : 0;
		/* epochs: emitted over one pass; while the first pass is still
		 * running, over what it has read so far (a lower bound of a pass) */
		uint64_t pass = s->per_epoch ? s->per_epoch : s->read_this_epoch;
		double epochs = pass ? (double)(s->samples + s->rejected) / (double)pass : 0;
		json_array_append_new(list, json_pack("{s:s,s:f,s:f,s:I,s:I,s:f,s:I,s:I,s:I}", "name", s->def->name,
						      "weight", s->weight, "share", share, "tokens", (json_int_t)s->tokens,
						      "samples", (json_int_t)s->samples, "epochs", epochs,
						      "samples_per_epoch", (json_int_t)s->per_epoch, "shards_opened",
						      (json_int_t)s->shards_opened, "rejected", (json_int_t)s->rejected));
		if (table)
			fprintf(table, "%-20s %8.2f%% %8.2f%% %14llu %10llu %8.2f%s\n", s->def->name, 100 * s->weight,
				100 * share, (unsigned long long)s->tokens, (unsigned long long)s->samples, epochs,
				s->per_epoch ? "" : " (first pass not finished)");
	}
	json_t *root = json_pack("{s:s,s:I,s:I,s:I,s:I,s:o}", "stage", m->st->name, "seed", (json_int_t)m->r->seed,
				 "budget", (json_int_t)m->budget, "emitted", (json_int_t)m->emitted, "tokens",
				 (json_int_t)m->tokens, "sources", list);
	return root;
}

uint64_t mixer_emitted(const mixer *m)
{
	return m ? m->emitted : 0;
}

int mixer_damaged(const mixer *m)
{
	int n = 0;
	for (int i = 0; m && i < m->nsrc; i++)
		n += m->src[i].damaged;
	return n;
}

void mixer_free(mixer *m)
{
	if (!m)
		return;
	for (int i = 0; i < m->nsrc; i++)
		source_close(&m->src[i]);
	free(m->src);
	chat_seq_free(&m->seq);
	free(m);
}
