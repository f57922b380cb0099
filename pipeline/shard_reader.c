/* shard_reader.c: tar grouping over libarchive. */
#include "shard_reader.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct shard_reader {
	char **paths;
	int n, cur;           /* inputs, index of the open one */
	const char *stdin_name[1];
	struct archive *a;    /* NULL between inputs */
	struct archive_entry *pending; /* header read but not yet consumed */
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
	if (!r->a)
		return;
	r->done_bytes += (uint64_t)archive_filter_bytes(r->a, -1);
	archive_read_free(r->a);
	r->a = NULL;
	r->pending = NULL;
	r->at_eof = 0;
}

/* Opens the next input; @return 1 opened, 0 no more, -1 error (in err). */
static int open_next(shard_reader *r, mvl_err *err)
{
	close_input(r);
	if (++r->cur >= r->n)
		return 0;
	const char *path = r->paths[r->cur];
	r->last_key[0] = 0;
	struct archive *a = archive_read_new();
	archive_read_support_filter_gzip(a);
	archive_read_support_filter_zstd(a);
	archive_read_support_filter_bzip2(a);
	archive_read_support_filter_xz(a);
	archive_read_support_format_tar(a);
	archive_read_support_format_empty(a);
	int rc = strcmp(path, "-") == 0 ? archive_read_open_fd(a, 0, 1 << 20)
					: archive_read_open_filename(a, path, 1 << 20);
	if (rc != ARCHIVE_OK) {
		/* libarchive says "Failed to open 'x'" for system errors:
		 * the errno says more; otherwise its message is the news */
		const char *m = archive_error_string(a);
		int e = archive_errno(a);
		if (!m || (e > 0 && strncmp(m, "Failed to open", 14) == 0))
			m = e > 0 ? strerror(e) : "unknown error";
		if (strcmp(m, "Unrecognized archive format") == 0)
			m = "not a tar archive (plain, .zst or .gz)";
		mvl_errf(err, "cannot read '%s': %s", path, m);
		archive_read_free(a);
		return -1;
	}
	r->a = a;
	return 1;
}

static void poison(shard_reader *r, const char *reason, const char *fmt,
		   const char *name)
{
	if (r->poison)
		return; /* the first reason is the one reported */
	r->poison = reason;
	snprintf(r->poison_detail, sizeof r->poison_detail, fmt, name);
}

/* Describes the archive failure of the open input into err. */
static void archive_failure(shard_reader *r, mvl_err *err, const char *key)
{
	const char *msg = archive_error_string(r->a);
	const char *path = r->paths[r->cur];
	if (!msg)
		msg = "unknown error";
	if (key && *key)
		mvl_errf(err, "'%s': truncated or corrupt archive in sample '%s': %s", path, key, msg);
	else if (r->last_key[0])
		mvl_errf(err, "'%s': truncated or corrupt archive after sample '%s': %s", path,
			 r->last_key, msg);
	else
		mvl_errf(err, "'%s': not a readable tar archive (plain, .zst or .gz): %s", path, msg);
}

/* Finishes the group in *s: a sample, or a rejection when poisoned. */
static int emit(shard_reader *r, sample *s, reject_info *rj)
{
	s->source = r->paths[r->cur];
	s->index = r->index++;
	snprintf(r->last_key, sizeof r->last_key, "%s", s->key);
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
		if (!r->a) {
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
		struct archive_entry *e = r->pending;
		r->pending = NULL;
		if (!e) {
			int hr = archive_read_next_header(r->a, &e);
			if (hr == ARCHIVE_EOF) {
				if (started) {
					r->at_eof = 1; /* closes on the next call */
					return emit(r, s, rj);
				}
				close_input(r);
				continue;
			}
			if (hr < ARCHIVE_WARN) {
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
		const char *raw = archive_entry_pathname(e);
		const char *name = strip_dot_slash(raw ? raw : "");
		mode_t type = archive_entry_filetype(e);
		if (type == AE_IFDIR && !archive_entry_hardlink(e))
			continue;
		size_t keylen;
		char ext[sizeof s->m[0].ext];
		int bad = split_member_name(name, &keylen, ext, sizeof ext);
		if (bad)
			keylen = strlen(name);
		if (started && (strlen(s->key) != keylen || memcmp(s->key, name, keylen) != 0)) {
			r->pending = e; /* belongs to the next sample */
			return emit(r, s, rj);
		}
		if (!started) {
			sample_set_key(s, name, keylen);
			started = 1;
		}
		const char *why = unsafe_member_name(name);
		if (why)
			poison(r, "unsafe_path", "member '%s': unsafe name", name);
		else if (archive_entry_hardlink(e) || type != AE_IFREG)
			poison(r, "not_regular_file", "member '%s' is not a regular file", name);
		else if (bad)
			poison(r, "bad_name", "member '%s' has no usable extension", name);
		else if (sample_get(s, ext))
			poison(r, "duplicate_member", "member '%s' appears twice in the sample", name);
		else if (archive_entry_size(e) < 0 || (uint64_t)archive_entry_size(e) > r->max_member)
			poison(r, "member_too_large", "member '%s' is larger than the member limit", name);
		if (r->poison)
			continue; /* libarchive skips unread data on the next header */
		size_t size = (size_t)archive_entry_size(e);
		member *m = sample_add(s, ext, size);
		size_t got = 0;
		while (got < size) {
			la_ssize_t k = archive_read_data(r->a, m->data + got, size - got);
			if (k <= 0) {
				if (k == 0)
					archive_set_error(r->a, EIO, "member '%s' ends after %zu of %zu bytes",
							  name, got, size);
				archive_failure(r, err, s->key);
				s->source = r->paths[r->cur];
				s->index = r->index++;
				reject_set(rj, "truncated_shard", "%s", err->msg);
				close_input(r);
				return READ_BROKEN;
			}
			got += (size_t)k;
		}
	}
}

uint64_t shard_reader_bytes(const shard_reader *r)
{
	uint64_t b = r->done_bytes;
	if (r->a)
		b += (uint64_t)archive_filter_bytes(r->a, -1);
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
