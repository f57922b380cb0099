/* shard_writer.c: reproducible ustar writing, zstd/gzip, sized shards. */
#include "shard_writer.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

enum comp { COMP_NONE, COMP_ZSTD, COMP_GZIP };

struct shard_writer {
	writer_opts o;
	enum comp comp;
	int fd;                /* -1 when no shard is open */
	char *path, *tmp;      /* current shard (NULL for stdout) */
	int shard;             /* number of the current/next shard */
	int shards_done;
	uint64_t count, size;  /* in the current shard */
	uint64_t total;
	buf out;               /* compressed bytes waiting for write() */
	buf name;              /* scratch for member names */
	ZSTD_CCtx *zc;
	z_stream zs;
	int zs_init;
};

#define OUT_CHUNK (1u << 20)

static int flush_out(shard_writer *w, mvl_err *err)
{
	if (!w->out.len)
		return 0;
	if (write_all(w->fd, w->out.data, w->out.len) != 0)
		return mvl_errf(err, "cannot write '%s': %s",
				w->tmp ? w->tmp : "standard output", strerror(errno));
	w->out.len = 0;
	return 0;
}

/* Pushes raw tar bytes through the compressor; end finishes the frame. */
static int emit(shard_writer *w, const void *p, size_t n, int end, mvl_err *err)
{
	if (w->comp == COMP_NONE) {
		if (n >= OUT_CHUNK) {
			if (flush_out(w, err) != 0)
				return -1;
			if (write_all(w->fd, p, n) != 0)
				return mvl_errf(err, "cannot write '%s': %s",
						w->tmp ? w->tmp : "standard output", strerror(errno));
		} else {
			buf_append(&w->out, p, n);
		}
	} else if (w->comp == COMP_ZSTD) {
		ZSTD_inBuffer in = {p, n, 0};
		ZSTD_EndDirective mode = end ? ZSTD_e_end : ZSTD_e_continue;
		for (;;) {
			buf_reserve(&w->out, ZSTD_CStreamOutSize());
			ZSTD_outBuffer ob = {w->out.data + w->out.len, w->out.cap - w->out.len, 0};
			size_t left = ZSTD_compressStream2(w->zc, &ob, &in, mode);
			if (ZSTD_isError(left))
				return mvl_errf(err, "zstd: %s", ZSTD_getErrorName(left));
			w->out.len += ob.pos;
			if (w->out.len >= OUT_CHUNK && flush_out(w, err) != 0)
				return -1;
			if (end ? left == 0 : in.pos == in.size)
				break;
		}
	} else {
		w->zs.next_in = (Bytef *)p;
		w->zs.avail_in = (uInt)n;
		for (;;) {
			buf_reserve(&w->out, 65536);
			w->zs.next_out = w->out.data + w->out.len;
			w->zs.avail_out = (uInt)(w->out.cap - w->out.len);
			size_t before = w->zs.avail_out;
			int zr = deflate(&w->zs, end ? Z_FINISH : Z_NO_FLUSH);
			if (zr == Z_STREAM_ERROR)
				return mvl_errf(err, "gzip: deflate failed");
			w->out.len += before - w->zs.avail_out;
			if (w->out.len >= OUT_CHUNK && flush_out(w, err) != 0)
				return -1;
			if (end ? zr == Z_STREAM_END : w->zs.avail_in == 0)
				break;
		}
	}
	if (w->out.len >= OUT_CHUNK)
		return flush_out(w, err);
	return 0;
}

static enum comp comp_from_name(const char *name)
{
	size_t n = strlen(name);
#define ENDS(s) (n >= sizeof(s) - 1 && strcmp(name + n - (sizeof(s) - 1), s) == 0)
	if (ENDS(".zst") || ENDS(".tzst"))
		return COMP_ZSTD;
	if (ENDS(".gz") || ENDS(".tgz"))
		return COMP_GZIP;
	return COMP_NONE;
#undef ENDS
}

/* Accepts exactly one %[0][width](d|i|u) conversion; "%%" is a literal. */
static int check_pattern(const char *p, mvl_err *err)
{
	int conv = 0;
	for (const char *c = p; *c; c++) {
		if (*c != '%')
			continue;
		if (c[1] == '%') {
			c++;
			continue;
		}
		c++;
		while (*c >= '0' && *c <= '9')
			c++;
		if (*c != 'd' && *c != 'i' && *c != 'u')
			return mvl_errf(err, "output pattern '%s': only %%d-style conversions are allowed", p);
		conv++;
	}
	if (conv != 1)
		return mvl_errf(err, "output pattern '%s' needs exactly one %%d-style conversion (e.g. 'shard-%%06d.tar')", p);
	return 0;
}

static int mkdirs_for(const char *path, mvl_err *err)
{
	char *d = xstrdup(path);
	char *slash = strrchr(d, '/');
	int rc = 0;
	if (slash && slash != d) {
		*slash = 0;
		for (char *c = d + 1; *c; c++) {
			if (*c != '/')
				continue;
			*c = 0;
			if (mkdir(d, 0777) != 0 && errno != EEXIST)
				rc = -1;
			*c = '/';
		}
		if (mkdir(d, 0777) != 0 && errno != EEXIST)
			rc = -1;
		struct stat st;
		if (stat(d, &st) != 0 || !S_ISDIR(st.st_mode))
			rc = mvl_errf(err, "cannot create directory '%s': %s", d, strerror(errno));
		else
			rc = 0;
	}
	free(d);
	return rc;
}

static int start_compressor(shard_writer *w, mvl_err *err)
{
	if (w->comp == COMP_ZSTD) {
		if (!w->zc)
			w->zc = ZSTD_createCCtx();
		ZSTD_CCtx_reset(w->zc, ZSTD_reset_session_and_parameters);
		ZSTD_CCtx_setParameter(w->zc, ZSTD_c_compressionLevel, w->o.level ? w->o.level : 3);
		ZSTD_CCtx_setParameter(w->zc, ZSTD_c_checksumFlag, 1);
		/* A fixed worker count keeps the bytes identical on any machine
		 * (zstd's output depends on nbWorkers being 0 or not, not on its
		 * value) while compressing on a second core. */
		ZSTD_CCtx_setParameter(w->zc, ZSTD_c_nbWorkers, 2);
	} else if (w->comp == COMP_GZIP) {
		memset(&w->zs, 0, sizeof w->zs);
		/* windowBits 15 + 16: a gzip header with mtime 0 and no name */
		if (deflateInit2(&w->zs, w->o.level ? w->o.level : 6, Z_DEFLATED, 15 + 16, 8,
				 Z_DEFAULT_STRATEGY) != Z_OK)
			return mvl_errf(err, "gzip: cannot initialise");
		w->zs_init = 1;
	}
	return 0;
}

static int open_shard(shard_writer *w, mvl_err *err)
{
	w->count = w->size = 0;
	if (!w->o.pattern) {
		w->fd = 1;
		return start_compressor(w, err);
	}
	char name[4096];
	int n = snprintf(name, sizeof name, w->o.pattern, w->shard);
	if (n < 0 || (size_t)n >= sizeof name)
		return mvl_errf(err, "output name from '%s' is too long", w->o.pattern);
	w->path = xstrdup(name);
	size_t tl = strlen(name) + 32;
	w->tmp = xmalloc(tl);
	snprintf(w->tmp, tl, "%s.tmp.%ld", name, (long)getpid());
	if (mkdirs_for(name, err) != 0)
		return -1;
	w->fd = open(w->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (w->fd < 0)
		return mvl_errf(err, "cannot create '%s': %s", w->tmp, strerror(errno));
	return start_compressor(w, err);
}

static int finish_shard(shard_writer *w, mvl_err *err)
{
	static const unsigned char zeros[1024];
	if (emit(w, zeros, sizeof zeros, 1, err) != 0 || flush_out(w, err) != 0)
		return -1;
	if (w->zs_init) {
		deflateEnd(&w->zs);
		w->zs_init = 0;
	}
	if (w->path) {
		if (fsync(w->fd) != 0 && errno != EINVAL)
			return mvl_errf(err, "cannot sync '%s': %s", w->tmp, strerror(errno));
		if (close(w->fd) != 0) {
			w->fd = -1;
			return mvl_errf(err, "cannot write '%s': %s", w->tmp, strerror(errno));
		}
		w->fd = -1;
		if (rename(w->tmp, w->path) != 0)
			return mvl_errf(err, "cannot rename '%s' to '%s': %s", w->tmp, w->path,
					strerror(errno));
		free(w->path);
		free(w->tmp);
		w->path = w->tmp = NULL;
	}
	w->fd = -1;
	w->shards_done++;
	w->shard++;
	return 0;
}

static void init_template(void);

/* a file name the pattern's name part makes: prefix, digits, suffix */
typedef struct name_form {
	const char *pre, *suf;
	size_t npre;
} name_form;

static int pattern_name(const char *name, size_t len, void *ctx)
{
	const name_form *f = ctx;
	size_t nsuf = strlen(f->suf), i = f->npre;
	if (len < f->npre + 1 + nsuf || memcmp(name, f->pre, f->npre) || memcmp(name + len - nsuf, f->suf, nsuf))
		return 0;
	for (; i < len - nsuf; i++)
		if (name[i] < '0' || name[i] > '9')
			return 0;
	return 1;
}

/* The temporaries a killed writer of the same pattern left ("NAME.tmp.PID"
 * of a PID that no longer runs) go before a rerun writes its shards. */
static void remove_stale_shards(const char *pattern)
{
	const char *slash = strrchr(pattern, '/'), *base = slash ? slash + 1 : pattern;
	const char *pct = strchr(base, '%');
	if (!pct || strchr(pct + 1, '%') || (slash && memchr(pattern, '%', (size_t)(slash - pattern))))
		return; /* "%%" or a number in the directory part: not worth the parsing */
	const char *conv = pct + 1;
	while (*conv >= '0' && *conv <= '9')
		conv++;
	name_form f = {base, conv + 1, (size_t)(pct - base)};
	char *dir = slash ? xstrndup(pattern, (size_t)(slash - pattern) + (slash == pattern)) : xstrdup("");
	remove_stale_tmp(dir, pattern_name, &f);
	free(dir);
}

shard_writer *shard_writer_open(const writer_opts *o, mvl_err *err)
{
	if (o->pattern && check_pattern(o->pattern, err) != 0)
		return NULL;
	if (o->pattern)
		remove_stale_shards(o->pattern);
	init_template();
	shard_writer *w = xcalloc(1, sizeof *w);
	w->o = *o;
	w->fd = -1;
	w->shard = o->start;
	if (o->pattern)
		w->comp = comp_from_name(o->pattern);
	else if (o->compress && !strcmp(o->compress, "zst"))
		w->comp = COMP_ZSTD;
	else if (o->compress && !strcmp(o->compress, "gz"))
		w->comp = COMP_GZIP;
	if (!o->pattern && open_shard(w, err) != 0) {
		free(w);
		return NULL;
	}
	return w;
}

/* ---------------------------------------------------------------------- */
/* ustar headers */

static void octal(char *field, size_t width, uint64_t v)
{
	/* width-1 digits, zero padded, NUL terminated */
	field[width - 1] = 0;
	for (size_t i = width - 1; i-- > 0;) {
		field[i] = (char)('0' + (v & 7));
		v >>= 3;
	}
}

/* The constant part of every header mvl writes (mode, ids, times, magic),
 * and its byte sum with the checksum field as spaces; a header is then
 * the template plus name, size and type, and its checksum a few adds. */
static unsigned char tmpl[512];
static unsigned tmpl_sum;

static void init_template(void)
{
	if (tmpl_sum)
		return;
	octal((char *)tmpl + 100, 8, 0644);
	octal((char *)tmpl + 108, 8, 0);
	octal((char *)tmpl + 116, 8, 0);
	octal((char *)tmpl + 124, 12, 0);
	octal((char *)tmpl + 136, 12, 0);
	memcpy(tmpl + 257, "ustar", 6);
	memcpy(tmpl + 263, "00", 2);
	octal((char *)tmpl + 329, 8, 0);
	octal((char *)tmpl + 337, 8, 0);
	memset(tmpl + 148, ' ', 8);
	unsigned sum = 0;
	for (int i = 0; i < 512; i++)
		sum += tmpl[i];
	tmpl_sum = sum;
}

static void fill_header(unsigned char h[512], const char *name, size_t namelen,
			const char *prefix, size_t prefixlen, uint64_t size, char type)
{
	memcpy(h, tmpl, 512);
	unsigned sum = tmpl_sum;
	for (size_t i = 0; i < namelen; i++)
		sum += (unsigned char)name[i];
	memcpy(h, name, namelen);
	for (int i = 124; i < 136; i++)
		sum -= h[i];
	octal((char *)h + 124, 12, size);
	for (int i = 124; i < 136; i++)
		sum += h[i];
	h[156] = (unsigned char)type;
	sum += (unsigned char)type;
	if (prefixlen) {
		memcpy(h + 345, prefix, prefixlen);
		for (size_t i = 0; i < prefixlen; i++)
			sum += (unsigned char)prefix[i];
	}
	octal((char *)h + 148, 7, sum);
	h[155] = ' ';
}

/* pax record "LEN key=value\n" where LEN counts the whole record. */
static void pax_record(buf *b, const char *key, const char *val)
{
	size_t body = strlen(key) + strlen(val) + 3; /* ' ' '=' '\n' */
	size_t len = body + 1;
	for (;;) {
		char tmp[32];
		size_t digits = (size_t)snprintf(tmp, sizeof tmp, "%zu", len);
		if (digits + body == len)
			break;
		len = digits + body;
	}
	buf_printf(b, "%zu %s=%s\n", len, key, val);
}

/* Splits name for ustar: name <= 100, or prefix <= 155 + '/' + name <= 100.
 * @return 1 when it fits. */
static int ustar_split(const char *full, size_t n, size_t *plen)
{
	*plen = 0;
	if (n <= 100)
		return 1;
	for (size_t i = n; i-- > 0;) {
		if (full[i] != '/')
			continue;
		if (i <= 155 && n - i - 1 <= 100 && n - i - 1 > 0) {
			*plen = i;
			return 1;
		}
	}
	return 0;
}

static const uint64_t USTAR_MAX = 077777777777ull;

static uint64_t member_tar_size(const char *key, const member *m)
{
	size_t n = strlen(key) + 1 + strlen(m->ext), plen;
	uint64_t sz = 512 + ((m->size + 511) & ~(uint64_t)511);
	if (!ustar_split(key, n, &plen) || m->size > USTAR_MAX)
		sz += 1024 + (n + 600) / 512 * 512; /* pax header estimate */
	return sz;
}

uint64_t tar_sample_size(const sample *s)
{
	uint64_t t = 0;
	for (int i = 0; i < s->n; i++)
		t += member_tar_size(s->key, &s->m[i]);
	return t;
}

static int write_member(shard_writer *w, const char *key, const member *m, mvl_err *err)
{
	static const unsigned char pad[512];
	unsigned char h[512];
	buf *nb = &w->name;
	size_t kl = strlen(key), el = strlen(m->ext);
	nb->len = 0;
	buf_reserve(nb, kl + el + 2);
	memcpy(nb->data, key, kl);
	nb->data[kl] = '.';
	memcpy(nb->data + kl + 1, m->ext, el + 1);
	nb->len = kl + 1 + el;
	buf name = *nb;
	size_t plen;
	int fits = ustar_split((char *)name.data, name.len, &plen);
	int rc = 0;
	if (!fits || m->size > USTAR_MAX) {
		buf pax = {0};
		if (!fits)
			pax_record(&pax, "path", (char *)name.data);
		if (m->size > USTAR_MAX) {
			char num[32];
			snprintf(num, sizeof num, "%llu", (unsigned long long)m->size);
			pax_record(&pax, "size", num);
		}
		fill_header(h, "PaxHeader", 9, NULL, 0, pax.len, 'x');
		rc = emit(w, h, 512, 0, err);
		if (!rc)
			rc = emit(w, pax.data, pax.len, 0, err);
		if (!rc && pax.len % 512)
			rc = emit(w, pad, 512 - pax.len % 512, 0, err);
		w->size += 512 + ((pax.len + 511) & ~(size_t)511);
		buf_free(&pax);
	}
	if (!rc) {
		size_t nlen = fits ? name.len - (plen ? plen + 1 : 0) : (name.len < 100 ? name.len : 100);
		const char *nm = fits && plen ? (char *)name.data + plen + 1 : (char *)name.data;
		fill_header(h, nm, nlen, fits ? (char *)name.data : NULL, fits ? plen : 0,
			    m->size > USTAR_MAX ? 0 : m->size, '0');
		rc = emit(w, h, 512, 0, err);
	}
	if (!rc && m->size)
		rc = emit(w, m->data, m->size, 0, err);
	if (!rc && m->size % 512)
		rc = emit(w, pad, 512 - m->size % 512, 0, err);
	w->size += 512 + ((m->size + 511) & ~(uint64_t)511);
	return rc;
}

static int by_ext(const void *a, const void *b)
{
	const member *x = *(const member *const *)a, *y = *(const member *const *)b;
	return strcmp(x->ext, y->ext);
}

int shard_writer_write(shard_writer *w, const sample *s, mvl_err *err)
{
	if (w->fd >= 0 && w->o.pattern && w->count > 0) {
		uint64_t need = tar_sample_size(s);
		if ((w->o.maxcount && w->count + 1 > w->o.maxcount) ||
		    (w->o.maxsize && w->size + need + 1024 > w->o.maxsize))
			if (finish_shard(w, err) != 0)
				return -1;
	}
	if (w->fd < 0 && open_shard(w, err) != 0)
		return -1;
	const member *stackv[16];
	const member **v = s->n <= 16 ? stackv : xmalloc((size_t)s->n * sizeof *v);
	for (int i = 0; i < s->n; i++)
		v[i] = &s->m[i];
	qsort(v, (size_t)s->n, sizeof *v, by_ext);
	int rc = 0;
	for (int i = 0; i < s->n && rc == 0; i++)
		rc = write_member(w, s->key, v[i], err);
	if (v != stackv)
		free(v);
	w->count++;
	w->total++;
	return rc;
}

int shard_writer_close(shard_writer *w, int ok, mvl_err *err)
{
	int rc = 0;
	if (ok && w->fd >= 0)
		rc = finish_shard(w, err);
	if (w->fd >= 0 && w->path)
		close(w->fd);
	if (w->tmp)
		unlink(w->tmp);
	if (w->zs_init)
		deflateEnd(&w->zs);
	ZSTD_freeCCtx(w->zc);
	free(w->path);
	free(w->tmp);
	buf_free(&w->out);
	buf_free(&w->name);
	free(w);
	return rc;
}

int shard_writer_pending(const shard_writer *w)
{
	return w->shards_done + (w->fd >= 0 && w->o.pattern != NULL);
}

int shard_writer_shards(const shard_writer *w)
{
	return w->shards_done;
}

uint64_t shard_writer_samples(const shard_writer *w)
{
	return w->total;
}
