/* packfile.c: pack files, little-endian, as mixers/PACK_FORMAT.md says. */
#include "packfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "pack files are little-endian; this build writes them by memcpy"
#endif

enum { RECORD_MAGIC = 0x31514553u /* "SEQ1" */, RECORD_HEAD = 24, SEG_ENTRY = 16, IMG_ENTRY = 24 };
/* far above any packed image (smart_resize keeps them near max_pixels),
 * low enough that h * w * 3 cannot overflow */
enum { MAX_IMAGE_SIDE = 1 << 20 };

static size_t align8(size_t n)
{
	return (n + 7) & ~(size_t)7;
}

/* bytes of the fixed part of a record: header + four arrays, aligned */
static size_t arrays_bytes(uint32_t L)
{
	return align8(RECORD_HEAD + (size_t)L * (4 + 4 + 4 + 1));
}

/* ---------------------------------------------------------------------- */
/* writing */

struct pack_writer {
	atomic_file af;
	uint32_t seq_len;
	uint64_t off;        /* bytes written so far */
	uint64_t *index;
	size_t n, cap;
	buf rec;
};

static int put(pack_writer *w, const void *p, size_t n, mvl_err *err)
{
	if (n && fwrite(p, 1, n, w->af.f) != n)
		return mvl_errf(err, "cannot write '%s': %s", w->af.path, strerror(errno));
	w->off += n;
	return 0;
}

pack_writer *pack_writer_open(const char *path, uint32_t seq_len, mvl_err *err)
{
	pack_writer *w = xcalloc(1, sizeof *w);
	w->seq_len = seq_len;
	if (atomic_file_open(&w->af, path, err) != 0) {
		free(w);
		return NULL;
	}
	uint8_t head[PACK_HEADER] = {0}; /* completed at close */
	if (put(w, head, sizeof head, err) != 0) {
		atomic_file_abort(&w->af);
		free(w);
		return NULL;
	}
	return w;
}

static void pad8(buf *b)
{
	static const uint8_t zero[8];
	buf_append(b, zero, align8(b->len) - b->len);
}

int pack_writer_add(pack_writer *w, const pack_seq *s, mvl_err *err)
{
	uint32_t L = w->seq_len;
	if (s->seq_len != L)
		return mvl_errf(err, "sequence of %u tokens in a pack of %u", s->seq_len, L);
	buf *b = &w->rec;
	b->len = 0;
	uint32_t head[4] = {RECORD_MAGIC, s->ntok, s->nseg, s->nimg};
	buf_append(b, head, sizeof head);
	uint64_t total = 0; /* patched below */
	buf_append(b, &total, 8);
	buf_append(b, s->ids, (size_t)L * 4);
	buf_append(b, s->pos, (size_t)L * 4);
	buf_append(b, s->seg, (size_t)L * 4);
	buf_append(b, s->loss, L);
	pad8(b);
	for (uint32_t i = 0; i < s->nseg; i++) {
		uint32_t e[4] = {s->segs[i].start, s->segs[i].len, s->segs[i].flags, s->segs[i].keylen};
		buf_append(b, e, sizeof e);
	}
	for (uint32_t i = 0; i < s->nseg; i++)
		buf_append(b, s->segs[i].key, s->segs[i].keylen);
	pad8(b);
	size_t table = b->len;
	uint64_t px = align8(table + (size_t)s->nimg * IMG_ENTRY);
	for (uint32_t i = 0; i < s->nimg; i++) {
		const pack_image *im = &s->img[i];
		uint32_t e[4] = {im->segment, im->token, im->h, im->w};
		buf_append(b, e, sizeof e);
		buf_append(b, &px, 8);
		px = align8(px + (uint64_t)im->h * im->w * 3);
	}
	pad8(b);
	for (uint32_t i = 0; i < s->nimg; i++) {
		buf_append(b, s->img[i].px, (size_t)s->img[i].h * s->img[i].w * 3);
		pad8(b);
	}
	total = b->len;
	memcpy(b->data + 16, &total, 8);
	if (w->n == w->cap) {
		w->cap = w->cap ? w->cap * 2 : 1024;
		w->index = xrealloc(w->index, w->cap * sizeof *w->index);
	}
	w->index[w->n++] = w->off;
	return put(w, b->data, b->len, err);
}

uint64_t pack_writer_count(const pack_writer *w)
{
	return w->n;
}

int pack_writer_close(pack_writer *w, int ok, mvl_err *err)
{
	int rc = 0;
	if (ok) {
		uint64_t index_off = w->off;
		rc = put(w, w->index, w->n * sizeof *w->index, err);
		uint8_t head[PACK_HEADER] = {0};
		uint32_t v[2] = {PACK_VERSION, w->seq_len};
		uint64_t n = w->n;
		uint32_t hs[2] = {PACK_HEADER, 0};
		memcpy(head, PACK_MAGIC, 8);
		memcpy(head + 8, v, 8);
		memcpy(head + 16, &n, 8);
		memcpy(head + 24, &index_off, 8);
		memcpy(head + 32, hs, 8);
		if (rc == 0 && (fseeko(w->af.f, 0, SEEK_SET) != 0 || fwrite(head, 1, sizeof head, w->af.f) != sizeof head))
			rc = mvl_errf(err, "cannot write '%s': %s", w->af.path, strerror(errno));
		if (rc == 0)
			rc = atomic_file_commit(&w->af, err);
		else
			atomic_file_abort(&w->af);
	} else {
		atomic_file_abort(&w->af);
	}
	free(w->index);
	buf_free(&w->rec);
	free(w);
	return rc;
}

/* ---------------------------------------------------------------------- */
/* reading */

struct pack_reader {
	char *path;
	int fd;
	uint64_t size, n, index_off;
	uint32_t seq_len;
	uint64_t *index;
	buf rec;
	pack_segment *segs;
	pack_image *img;
	size_t segcap, imgcap;
};

int is_pack_file(const char *path)
{
	char m[8];
	FILE *f = fopen(path, "rb");
	int yes = f && fread(m, 1, 8, f) == 8 && !memcmp(m, PACK_MAGIC, 8);
	if (f)
		fclose(f);
	return yes;
}

static int read_at(pack_reader *r, void *p, size_t n, uint64_t off, mvl_err *err)
{
	size_t got = 0;
	while (got < n) {
		ssize_t k = pread(r->fd, (char *)p + got, n - got, (off_t)(off + got));
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return mvl_errf(err, "'%s': %s at byte %llu", r->path, k < 0 ? strerror(errno) : "truncated",
					(unsigned long long)(off + got));
		got += (size_t)k;
	}
	return 0;
}

pack_reader *pack_open(const char *path, mvl_err *err)
{
	pack_reader *r = xcalloc(1, sizeof *r);
	r->path = xstrdup(path);
	r->fd = open(path, O_RDONLY);
	struct stat st;
	uint8_t head[PACK_HEADER];
	if (r->fd < 0 || fstat(r->fd, &st) != 0) {
		mvl_errf(err, "cannot open '%s': %s", path, strerror(errno));
		goto fail;
	}
	r->size = (uint64_t)st.st_size;
	if (r->size < PACK_HEADER || read_at(r, head, sizeof head, 0, err) != 0 || memcmp(head, PACK_MAGIC, 8)) {
		mvl_errf(err, "'%s' is not a pack (no %s header)", path, PACK_MAGIC);
		goto fail;
	}
	uint32_t v[2];
	memcpy(v, head + 8, 8);
	memcpy(&r->n, head + 16, 8);
	memcpy(&r->index_off, head + 24, 8);
	r->seq_len = v[1];
	if (v[0] != PACK_VERSION) {
		mvl_errf(err, "'%s': pack version %u (this mvl reads %d)", path, v[0], PACK_VERSION);
		goto fail;
	}
	if (r->seq_len == 0 || r->seq_len > (1u << 24)) {
		mvl_errf(err, "'%s': sequence length %u out of range", path, r->seq_len);
		goto fail;
	}
	if (r->index_off < PACK_HEADER || r->index_off > r->size || r->n > (r->size - r->index_off) / 8 ||
	    r->index_off + r->n * 8 != r->size) {
		mvl_errf(err, "'%s': index (%llu sequences at byte %llu) does not fit the file's %llu bytes "
			      "(truncated or not finished)", path, (unsigned long long)r->n,
			 (unsigned long long)r->index_off, (unsigned long long)r->size);
		goto fail;
	}
	r->index = xmalloc((r->n ? r->n : 1) * sizeof *r->index);
	if (read_at(r, r->index, r->n * 8, r->index_off, err) != 0)
		goto fail;
	return r;
fail:
	pack_close(r);
	return NULL;
}

uint64_t pack_count(const pack_reader *r)
{
	return r->n;
}

uint32_t pack_seq_len(const pack_reader *r)
{
	return r->seq_len;
}

int pack_read(pack_reader *r, uint64_t i, pack_seq *s, mvl_err *err)
{
	if (i >= r->n)
		return mvl_errf(err, "'%s': no sequence %llu (%llu in the pack)", r->path, (unsigned long long)i,
				(unsigned long long)r->n);
	uint64_t off = r->index[i], end = i + 1 < r->n ? r->index[i + 1] : r->index_off;
	uint32_t L = r->seq_len;
	if (off < PACK_HEADER || end > r->index_off || off >= end || end - off < arrays_bytes(L) ||
	    end - off > ((uint64_t)1 << 36))
		return mvl_errf(err, "'%s': sequence %llu: bad offsets", r->path, (unsigned long long)i);
	size_t n = (size_t)(end - off);
	r->rec.len = 0;
	buf_reserve(&r->rec, n);
	uint8_t *p = r->rec.data;
	if (read_at(r, p, n, off, err) != 0)
		return -1;
	uint32_t head[4];
	uint64_t total;
	memcpy(head, p, 16);
	memcpy(&total, p + 16, 8);
#define BAD(...) mvl_errf(err, "'%s': sequence %llu: %s", r->path, (unsigned long long)i, __VA_ARGS__)
	if (head[0] != RECORD_MAGIC || total != n)
		return BAD("not a sequence record");
	s->seq_len = L;
	s->ntok = head[1];
	s->nseg = head[2];
	s->nimg = head[3];
	if (s->ntok > L || s->nseg > L || s->nimg > L)
		return BAD("counts out of range");
	s->ids = (uint32_t *)(p + RECORD_HEAD);
	s->pos = s->ids + L;
	s->seg = s->pos + L;
	s->loss = (uint8_t *)(s->seg + L);
	size_t q = arrays_bytes(L);
	if ((uint64_t)s->nseg * SEG_ENTRY > n - q)
		return BAD("segment table past the record");
	if (s->nseg > r->segcap) {
		r->segcap = s->nseg;
		r->segs = xrealloc(r->segs, r->segcap * sizeof *r->segs);
	}
	s->segs = r->segs;
	size_t keys = q + (size_t)s->nseg * SEG_ENTRY;
	for (uint32_t k = 0; k < s->nseg; k++) {
		uint32_t e[4];
		memcpy(e, p + q + (size_t)k * SEG_ENTRY, 16);
		if ((uint64_t)e[0] + e[1] > L || e[1] == 0 || e[3] > n - keys)
			return BAD("segment out of range");
		s->segs[k] = (pack_segment){e[0], e[1], e[2], (const char *)p + keys, e[3]};
		keys += e[3];
	}
	for (uint32_t t = 0; t < L; t++)
		if (s->seg[t] > s->nseg)
			return BAD("segment id out of range");
	size_t table = align8(keys);
	if (table > n || (uint64_t)s->nimg * IMG_ENTRY > n - table)
		return BAD("image table past the record");
	if (s->nimg > r->imgcap) {
		r->imgcap = s->nimg;
		r->img = xrealloc(r->img, r->imgcap * sizeof *r->img);
	}
	s->img = r->img;
	for (uint32_t k = 0; k < s->nimg; k++) {
		uint32_t e[4];
		uint64_t po;
		memcpy(e, p + table + (size_t)k * IMG_ENTRY, 16);
		memcpy(&po, p + table + (size_t)k * IMG_ENTRY + 16, 8);
		/* sides bounded first: h * w * 3 of two u32 can wrap around
		 * 2^64 to a size that fits the record */
		if (e[2] > MAX_IMAGE_SIDE || e[3] > MAX_IMAGE_SIDE)
			return BAD("image size out of range");
		uint64_t bytes = (uint64_t)e[2] * e[3] * 3;
		if (e[0] == 0 || e[0] > s->nseg || e[1] >= L || po > n || bytes > n - po)
			return BAD("image out of range");
		s->img[k] = (pack_image){e[0], e[1], e[2], e[3], p + po};
	}
#undef BAD
	return 0;
}

void pack_close(pack_reader *r)
{
	if (!r)
		return;
	if (r->fd >= 0)
		close(r->fd);
	free(r->path);
	free(r->index);
	free(r->segs);
	free(r->img);
	buf_free(&r->rec);
	free(r);
}
