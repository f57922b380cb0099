/* shard_reader.c: grouping tar members into samples (tar_read.c parses). */
#include "shard_reader.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tar_read.h"

struct shard_reader {
	char **paths;
	int n, cur;           /* inputs, index of the open one */
	const char *stdin_name[1];
	tar_in *t;            /* NULL between inputs */
	tar_entry e;          /* the current header */
	int pending;          /* e was read but belongs to the next sample */
	int at_eof;           /* the open input has no more members */
	uint64_t max_member;
	uint64_t done_bytes;  /* bytes of inputs already closed */
	uint64_t total_bytes;
	uint64_t index;
	char last_key[256];   /* last complete key of the open input */
	/* the group being assembled */
	const char *poison;   /* reason it must be rejected, or NULL */
	char poison_detail[300];
};

shard_reader *shard_reader_new(char **paths, int n, const reader_opts *o)
{
	shard_reader *r = xcalloc(1, sizeof *r);
	r->stdin_name[0] = "-";
	r->paths = n ? paths : (char **)r->stdin_name;
	r->n = n ? n : 1;
	r->cur = -1;
	r->max_member = (o && o->max_member) ? o->max_member : (1ull << 30);
	for (int i = 0; i < r->n; i++) {
		struct stat st;
		if (strcmp(r->paths[i], "-") == 0 || stat(r->paths[i], &st) != 0 ||
		    !S_ISREG(st.st_mode)) {
			r->total_bytes = 0;
			break;
		}
		r->total_bytes += (uint64_t)st.st_size;
	}
	return r;
}

static void close_input(shard_reader *r)
{
	if (!r->t)
		return;
	r->done_bytes += tar_bytes_in(r->t);
	tar_close(r->t);
	r->t = NULL;
	r->pending = 0;
	r->at_eof = 0;
}

/* Opens the next input; @return 1 opened, 0 no more, -1 error (in err). */
static int open_next(shard_reader *r, mvl_err *err)
{
	close_input(r);
	if (++r->cur >= r->n)
		return 0;
	r->last_key[0] = 0;
	r->t = tar_open(r->paths[r->cur], err);
	return r->t ? 1 : -1;
}

static void poison(shard_reader *r, const char *reason, const char *fmt,
		   const char *name)
{
	if (r->poison)
		return; /* the first reason is the one reported */
	r->poison = reason;
	snprintf(r->poison_detail, sizeof r->poison_detail, fmt, name);
}

/* Appends context to the archive error in *err: the sample being read
 * when the input broke, or the last good one. */
static void archive_failure(shard_reader *r, mvl_err *err, const char *key)
{
	char msg[sizeof err->msg];
	memcpy(msg, err->msg, sizeof msg);
	if (key && *key)
		mvl_errf(err, "%.900s (in sample '%.80s')", msg, key);
	else if (r->last_key[0])
		mvl_errf(err, "%.900s (after sample '%.80s')", msg, r->last_key);
}

/* Finishes the group in *s: a sample, or a rejection when poisoned. */
static int emit(shard_reader *r, sample *s, reject_info *rj)
{
	s->source = r->paths[r->cur];
	s->index = r->index++;
	size_t kl = strlen(s->key);
	if (kl >= sizeof r->last_key)
		kl = sizeof r->last_key - 1;
	memcpy(r->last_key, s->key, kl);
	r->last_key[kl] = 0;
	if (r->poison) {
		reject_set(rj, r->poison, "%s", r->poison_detail);
		r->poison = NULL;
		return READ_REJECT;
	}
	return READ_SAMPLE;
}

static const char *strip_dot_slash(const char *name)
{
	while (name[0] == '.' && name[1] == '/')
		name += 2;
	return name;
}

int shard_reader_next(shard_reader *r, sample *s, reject_info *rj, mvl_err *err)
{
	sample_clear(s);
	r->poison = NULL;
	int started = 0; /* does *s hold a group yet? */
	for (;;) {
		if (!r->t) {
			int o = open_next(r, err);
			if (o == 0)
				return READ_END;
			if (o < 0)
				return READ_INPUT_ERROR;
		}
		if (r->at_eof) {
			close_input(r);
			continue;
		}
		if (!r->pending) {
			int hr = tar_next(r->t, &r->e, err);
			if (hr == 0) {
				if (started) {
					r->at_eof = 1; /* closes on the next call */
					return emit(r, s, rj);
				}
				close_input(r);
				continue;
			}
			if (hr < 0) {
				archive_failure(r, err, started ? s->key : NULL);
				if (started) {
					s->source = r->paths[r->cur];
					s->index = r->index++;
					reject_set(rj, "truncated_shard", "%s", err->msg);
					r->poison = NULL;
					close_input(r);
					return READ_BROKEN;
				}
				close_input(r);
				return READ_INPUT_ERROR;
			}
		}
		r->pending = 0;
		const tar_entry *e = &r->e;
		const char *name = strip_dot_slash(e->name);
		if (e->type == '5')
			continue;
		size_t keylen;
		char ext[sizeof s->m[0].ext];
		int bad = split_member_name(name, &keylen, ext, sizeof ext);
		if (bad)
			keylen = strlen(name);
		if (started && (strlen(s->key) != keylen || memcmp(s->key, name, keylen) != 0)) {
			r->pending = 1; /* belongs to the next sample */
			return emit(r, s, rj);
		}
		if (!started) {
			sample_set_key(s, name, keylen);
			started = 1;
		}
		if (unsafe_member_name(name))
			poison(r, "unsafe_path", "member '%s': unsafe name", name);
		else if (e->type != '0')
			poison(r, "not_regular_file", "member '%s' is not a regular file", name);
		else if (bad)
			poison(r, "bad_name", "member '%s' has no usable extension", name);
		else if (sample_get(s, ext))
			poison(r, "duplicate_member", "member '%s' appears twice in the sample", name);
		else if (e->size > r->max_member)
			poison(r, "member_too_large", "member '%s' is larger than the member limit", name);
		if (r->poison)
			continue; /* tar_next skips the unread data */
		member *m = sample_add(s, ext, (size_t)e->size);
		if (tar_read(r->t, m->data, e->size, err) != 0) {
			archive_failure(r, err, s->key);
			s->source = r->paths[r->cur];
			s->index = r->index++;
			reject_set(rj, "truncated_shard", "%s", err->msg);
			close_input(r);
			return READ_BROKEN;
		}
	}
}

uint64_t shard_reader_bytes(const shard_reader *r)
{
	uint64_t b = r->done_bytes;
	if (r->t)
		b += tar_bytes_in(r->t);
	return b;
}

uint64_t shard_reader_total_bytes(const shard_reader *r)
{
	return r->total_bytes;
}

const char *shard_reader_source(const shard_reader *r)
{
	return (r->cur >= 0 && r->cur < r->n) ? r->paths[r->cur] : "-";
}

void shard_reader_free(shard_reader *r)
{
	if (!r)
		return;
	close_input(r);
	free(r);
}
