/* tar_read.c: tar headers over a decompressing byte window. */
#include "tar_read.h"

#include <archive.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

enum { WIN = 1 << 20, CIN = 1 << 18, ZSTEP = 1 << 14 };
enum codec { PLAIN, ZSTD, GZIP, OTHER };

struct tar_in {
	int fd;
	int own_fd;
	const char *path;
	enum codec codec;
	/* compressed input */
	unsigned char *cin;
	size_t cpos, clen;
	int ceof;
	uint64_t cbytes;       /* read from fd */
	ZSTD_DStream *zd;
	z_stream zs;
	int zs_init, zs_end;   /* gzip: a member ended (another may follow) */
	int zmid;              /* zstd: inside a frame (more input needed) */
	int broken;            /* the decoder failed: after the bytes it gave */
	mvl_err broken_err;    /* before failing, this error ends the input */
	struct archive *a;     /* OTHER: libarchive raw reader */
	/* decompressed window */
	unsigned char *win;
	size_t wpos, wlen;
	int weof;
	uint64_t off;          /* decompressed offset of win[wpos] */
	/* the current entry */
	uint64_t left;         /* data bytes not yet read */
	uint64_t pad;          /* padding after them */
	buf name, longname, longlink, paxpath;
	int has_longname, has_paxpath, has_paxsize, ended;
	int past_end;          /* end-of-archive blocks were seen */
	uint64_t paxsize;
};

/* ---------------------------------------------------------------------- */
/* bytes in */

static ssize_t read_fd(tar_in *t, void *dst, size_t n)
{
	for (;;) {
		ssize_t r = read(t->fd, dst, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r > 0)
			t->cbytes += (uint64_t)r;
		return r;
	}
}

static int fill_cin(tar_in *t, mvl_err *err)
{
	if (t->cpos < t->clen || t->ceof)
		return 0;
	ssize_t r = read_fd(t, t->cin, CIN);
	if (r < 0)
		return mvl_errf(err, "'%s': read error: %s", t->path, strerror(errno));
	t->cpos = 0;
	t->clen = (size_t)r;
	if (r == 0)
		t->ceof = 1;
	return 0;
}

/* libarchive's raw reader pulls from what we already buffered, then fd. */
static la_ssize_t other_read(struct archive *a, void *ud, const void **out)
{
	tar_in *t = ud;
	(void)a;
	if (t->cpos < t->clen) {
		*out = t->cin + t->cpos;
		size_t n = t->clen - t->cpos;
		t->cpos = t->clen;
		return (la_ssize_t)n;
	}
	ssize_t r = read_fd(t, t->cin, CIN);
	if (r < 0) {
		archive_set_error(a, errno, "read error");
		return -1;
	}
	t->cpos = t->clen = (size_t)r;
	*out = t->cin;
	return r;
}

/* Refills the window; @return 0 (t->weof at the end) or -1. */
static int fill_win(tar_in *t, mvl_err *err)
{
	if (t->wpos < t->wlen)
		memmove(t->win, t->win + t->wpos, t->wlen - t->wpos);
	t->wlen -= t->wpos;
	t->wpos = 0;
	if (t->broken) {
		*err = t->broken_err;
		return -1;
	}
	size_t before = t->wlen;
	while (t->wlen == before && !t->weof) {
		switch (t->codec) {
		case PLAIN: {
			ssize_t r = read_fd(t, t->win + t->wlen, WIN - t->wlen);
			if (r < 0)
				return mvl_errf(err, "'%s': read error: %s", t->path, strerror(errno));
			if (r == 0)
				t->weof = 1;
			t->wlen += (size_t)r;
			break;
		}
		case ZSTD: {
			if (fill_cin(t, err) != 0)
				return -1;
			if (t->ceof && t->cpos == t->clen) {
				if (t->zmid)
					return mvl_errf(err, "'%s': zstd: the stream ends inside a frame (truncated)",
							t->path);
				t->weof = 1;
				break;
			}
			/* A call that fails reports none of what it decoded before
			 * the damage; small steps lose at most one block, and the
			 * samples decoded whole before it are still read. */
			size_t step = t->clen - t->cpos < ZSTEP ? t->clen : t->cpos + ZSTEP;
			ZSTD_inBuffer in = {t->cin, step, t->cpos};
			ZSTD_outBuffer out = {t->win, WIN, t->wlen};
			size_t rc = ZSTD_decompressStream(t->zd, &out, &in);
			if (ZSTD_isError(rc))
				return mvl_errf(err, "'%s': zstd: %s (corrupt compressed data)", t->path,
						ZSTD_getErrorName(rc));
			t->cpos = in.pos;
			t->wlen = out.pos;
			t->zmid = rc != 0;
			break;
		}
		case GZIP: {
			if (fill_cin(t, err) != 0)
				return -1;
			if (t->ceof && t->cpos == t->clen) {
				if (!t->zs_end)
					return mvl_errf(err, "'%s': gzip: the stream ends inside a member", t->path);
				t->weof = 1;
				break;
			}
			if (t->zs_end) {
				/* another gzip member follows (concatenated .gz) */
				inflateReset(&t->zs);
				t->zs_end = 0;
			}
			t->zs.next_in = t->cin + t->cpos;
			t->zs.avail_in = (uInt)(t->clen - t->cpos);
			t->zs.next_out = t->win + t->wlen;
			t->zs.avail_out = (uInt)(WIN - t->wlen);
			int zr = inflate(&t->zs, Z_NO_FLUSH);
			t->cpos = t->clen - t->zs.avail_in;
			t->wlen = WIN - t->zs.avail_out;
			if (zr != Z_OK && zr != Z_STREAM_END && zr != Z_BUF_ERROR) {
				mvl_errf(&t->broken_err, "'%s': gzip: %s", t->path,
					 t->zs.msg ? t->zs.msg : "corrupt data");
				t->broken = 1;
				if (t->wlen > before)
					break; /* what came out before the damage is read first */
				*err = t->broken_err;
				return -1;
			}
			if (zr == Z_STREAM_END)
				t->zs_end = 1;
			break;
		}
		case OTHER: {
			la_ssize_t r = archive_read_data(t->a, t->win + t->wlen, WIN - t->wlen);
			if (r < 0)
				return mvl_errf(err, "'%s': %s", t->path,
						archive_error_string(t->a) ? archive_error_string(t->a)
									   : "decompression failed");
			if (r == 0)
				t->weof = 1;
			t->wlen += (size_t)r;
			break;
		}
		}
	}
	return 0;
}

/* Copies exactly n bytes out of the stream.  @return n, or fewer at the
 * end of input, or -1. */
static int64_t take(tar_in *t, void *dst, uint64_t n, mvl_err *err)
{
	unsigned char *d = dst;
	uint64_t got = 0;
	while (got < n) {
		if (t->wpos == t->wlen) {
			if (t->codec == PLAIN && n - got >= WIN && d) {
				/* big members of plain tars: straight from the file */
				ssize_t r = read_fd(t, d + got, (size_t)(n - got));
				if (r < 0)
					return mvl_errf(err, "'%s': read error: %s", t->path, strerror(errno));
				if (r == 0)
					break;
				got += (uint64_t)r;
				t->off += (uint64_t)r;
				continue;
			}
			if (fill_win(t, err) != 0)
				return -1;
			if (t->wpos == t->wlen)
				break;
		}
		size_t k = t->wlen - t->wpos;
		if (k > n - got)
			k = (size_t)(n - got);
		if (d)
			memcpy(d + got, t->win + t->wpos, k);
		t->wpos += k;
		t->off += k;
		got += k;
	}
	return (int64_t)got;
}

/* ---------------------------------------------------------------------- */
/* open / close */

tar_in *tar_open(const char *path, mvl_err *err)
{
	tar_in *t = xcalloc(1, sizeof *t);
	t->path = path;
	if (strcmp(path, "-") == 0) {
		t->fd = 0;
	} else {
		t->fd = open(path, O_RDONLY | O_CLOEXEC);
		if (t->fd < 0) {
			mvl_errf(err, "cannot read '%s': %s", path, strerror(errno));
			free(t);
			return NULL;
		}
		t->own_fd = 1;
	}
	t->cin = xmalloc(CIN);
	t->win = xmalloc(WIN);
	/* sniff the first bytes (a short read from a pipe is topped up) */
	while (t->clen < 6 && !t->ceof) {
		ssize_t r = read_fd(t, t->cin + t->clen, CIN - t->clen);
		if (r < 0) {
			mvl_errf(err, "cannot read '%s': %s", path, strerror(errno));
			tar_close(t);
			return NULL;
		}
		if (r == 0)
			t->ceof = 1;
		t->clen += (size_t)r;
	}
	const unsigned char *m = t->cin;
	if (t->clen >= 4 && m[0] == 0x28 && m[1] == 0xB5 && m[2] == 0x2F && m[3] == 0xFD) {
		t->codec = ZSTD;
		t->zd = ZSTD_createDStream();
	} else if (t->clen >= 2 && m[0] == 0x1F && m[1] == 0x8B) {
		t->codec = GZIP;
		if (inflateInit2(&t->zs, 15 + 32) != Z_OK) {
			mvl_errf(err, "'%s': gzip: cannot initialise", path);
			tar_close(t);
			return NULL;
		}
		t->zs_init = 1;
	} else if ((t->clen >= 3 && m[0] == 'B' && m[1] == 'Z' && m[2] == 'h') ||
		   (t->clen >= 6 && m[0] == 0xFD && !memcmp(m + 1, "7zXZ", 4) && m[5] == 0) ||
		   (t->clen >= 4 && m[0] == 0x04 && m[1] == 0x22 && m[2] == 0x4D && m[3] == 0x18) ||
		   (t->clen >= 2 && m[0] == 0x5D && m[1] == 0x00)) {
		t->codec = OTHER;
		t->a = archive_read_new();
		archive_read_support_filter_all(t->a);
		archive_read_support_format_raw(t->a);
		struct archive_entry *ae;
		if (archive_read_open(t->a, t, NULL, other_read, NULL) != ARCHIVE_OK ||
		    archive_read_next_header(t->a, &ae) != ARCHIVE_OK) {
			mvl_errf(err, "cannot read '%s': %s", path,
				 archive_error_string(t->a) ? archive_error_string(t->a) : "unknown compression");
			tar_close(t);
			return NULL;
		}
	} else {
		/* plain: the sniffed bytes are the first bytes of the window */
		t->codec = PLAIN;
		memcpy(t->win, t->cin, t->clen);
		t->wlen = t->clen;
		t->clen = t->cpos = 0;
		if (t->ceof)
			t->weof = 1;
	}
	return t;
}

void tar_close(tar_in *t)
{
	if (!t)
		return;
	if (t->own_fd)
		close(t->fd);
	if (t->zd)
		ZSTD_freeDStream(t->zd);
	if (t->zs_init)
		inflateEnd(&t->zs);
	if (t->a)
		archive_read_free(t->a);
	free(t->cin);
	free(t->win);
	buf_free(&t->name);
	buf_free(&t->longname);
	buf_free(&t->longlink);
	buf_free(&t->paxpath);
	free(t);
}

uint64_t tar_bytes_in(const tar_in *t)
{
	if (t->codec == PLAIN)
		return t->off;
	return t->cbytes - (t->clen - t->cpos);
}

/* ---------------------------------------------------------------------- */
/* headers */

/* Numeric field: octal (spaces/NULs around) or GNU base-256.  @return 0/-1 */
static int num_field(const unsigned char *f, size_t w, uint64_t *out)
{
	if (f[0] & 0x80) {
		if (f[0] != 0x80)
			return -1; /* negative or too large */
		uint64_t v = 0;
		for (size_t i = 1; i < w; i++) {
			if (v >> 56)
				return -1;
			v = v << 8 | f[i];
		}
		*out = v;
		return 0;
	}
	size_t i = 0;
	while (i < w && f[i] == ' ')
		i++;
	uint64_t v = 0;
	int digits = 0;
	for (; i < w && f[i] >= '0' && f[i] <= '7'; i++, digits++) {
		if (v >> 60)
			return -1;
		v = v << 3 | (uint64_t)(f[i] - '0');
	}
	for (; i < w; i++)
		if (f[i] != ' ' && f[i] != 0)
			return -1;
	*out = v;
	return 0;
}

static int checksum_ok(const unsigned char *h)
{
	uint64_t want;
	if (num_field(h + 148, 8, &want) != 0)
		return 0;
	/* a plain unsigned sum vectorizes; the checksum field then counts as
	 * spaces.  Some old tars summed signed chars: tried only on mismatch. */
	unsigned u = 0;
	for (int i = 0; i < 512; i++)
		u += h[i];
	for (int i = 148; i < 156; i++)
		u += (unsigned)' ' - h[i];
	if (want == u)
		return 1;
	int s = 0;
	for (int i = 0; i < 512; i++)
		s += (i >= 148 && i < 156) ? ' ' : (signed char)h[i];
	return (int64_t)want == s;
}

static int all_zero_n(const unsigned char *h, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (h[i])
			return 0;
	return 1;
}

/* Reads a whole pseudo-entry's data (long name, pax records) into b. */
static int read_meta(tar_in *t, uint64_t size, buf *b, mvl_err *err)
{
	if (size > (16u << 20))
		return mvl_errf(err, "'%s': %llu-byte metadata entry at offset %llu (limit 16 MiB)",
				t->path, (unsigned long long)size, (unsigned long long)t->off);
	b->len = 0;
	buf_reserve(b, (size_t)size + 1);
	int64_t got = take(t, b->data, size, err);
	if (got < 0)
		return -1;
	if ((uint64_t)got < size)
		return mvl_errf(err, "'%s': truncated tar archive (in a metadata entry)", t->path);
	b->len = (size_t)size;
	b->data[b->len] = 0;
	uint64_t pad = (512 - size % 512) % 512;
	if (take(t, NULL, pad, err) < 0)
		return -1;
	return 0;
}

/* pax records "LEN key=value\n": path, size and linkpath are used. */
static int parse_pax(tar_in *t, const buf *b, mvl_err *err)
{
	size_t i = 0;
	while (i < b->len) {
		size_t j = i;
		uint64_t len = 0;
		while (j < b->len && b->data[j] >= '0' && b->data[j] <= '9' && len < (1u << 30))
			len = len * 10 + (uint64_t)(b->data[j++] - '0');
		if (j == i || j >= b->len || b->data[j] != ' ' || len < 5 || i + len > b->len ||
		    b->data[i + len - 1] != '\n')
			return mvl_errf(err, "'%s': malformed pax record at offset %llu", t->path,
					(unsigned long long)t->off);
		const char *kv = (const char *)b->data + j + 1;
		size_t kvlen = i + len - 1 - (j + 1);
		const char *eq = memchr(kv, '=', kvlen);
		if (!eq)
			return mvl_errf(err, "'%s': malformed pax record at offset %llu", t->path,
					(unsigned long long)t->off);
		size_t kl = (size_t)(eq - kv), vl = kvlen - kl - 1;
		if (kl == 4 && !memcmp(kv, "path", 4)) {
			t->paxpath.len = 0;
			buf_append(&t->paxpath, eq + 1, vl);
			t->has_paxpath = 1;
		} else if (kl == 4 && !memcmp(kv, "size", 4)) {
			uint64_t v = 0;
			for (size_t k = 0; k < vl; k++) {
				if (eq[1 + k] < '0' || eq[1 + k] > '9' || v > (UINT64_MAX - 9) / 10)
					return mvl_errf(err, "'%s': bad pax size at offset %llu", t->path,
							(unsigned long long)t->off);
				v = v * 10 + (uint64_t)(eq[1 + k] - '0');
			}
			t->paxsize = v;
			t->has_paxsize = 1;
		}
		i += len;
	}
	return 0;
}

int tar_next(tar_in *t, tar_entry *e, mvl_err *err)
{
	if (t->ended)
		return 0;
	/* skip what the caller did not read of the previous entry */
	if (t->left + t->pad) {
		int64_t k = take(t, NULL, t->left + t->pad, err);
		if (k < 0)
			return -1;
		if ((uint64_t)k < t->left + t->pad)
			return mvl_errf(err, "'%s': truncated tar archive (an entry's data ends early)", t->path);
		t->left = t->pad = 0;
	}
	t->has_longname = t->has_paxpath = t->has_paxsize = 0;
	t->longlink.len = 0;
	for (;;) {
		unsigned char h[512];
		uint64_t at = t->off;
		int64_t k = take(t, h, 512, err);
		if (k < 0)
			return -1;
		int meta = t->has_longname || t->has_paxpath || t->has_paxsize;
		if (k == 0 && !meta) {
			t->ended = 1; /* no end-of-archive blocks: accepted, as GNU tar does */
			return 0;
		}
		if (k < 512 && t->past_end && !meta && all_zero_n(h, (size_t)k)) {
			t->ended = 1; /* zero padding that is not a whole block */
			return 0;
		}
		if (k < 512)
			return mvl_errf(err, at == 0 ? "'%s': not a tar archive (plain, .zst or .gz)"
					: t->past_end ? "'%s': data after the end-of-archive blocks at offset %llu "
							"is not a tar header (garbage appended?)"
						      : "'%s': truncated tar archive (a header at offset %llu is cut)",
					t->path, (unsigned long long)at);
		if (all_zero_n(h, 512)) {
			/* End-of-archive blocks, then usually zero padding to the
			 * record size.  Reading goes on, as GNU tar's --ignore-zeros
			 * does: archives joined with `cat a.tar b.tar` keep the
			 * samples of the later ones instead of losing them without
			 * a word, and garbage after the end is an error. */
			if (meta) {
				t->ended = 1;
				return 0;
			}
			t->past_end = 1;
			continue;
		}
		if (!checksum_ok(h))
			return mvl_errf(err, at == 0 ? "'%s': not a tar archive (plain, .zst or .gz)"
					: t->past_end ? "'%s': data after the end-of-archive blocks at offset %llu "
							"is not a tar header (garbage appended?)"
						      : "'%s': corrupt tar header at offset %llu (bad checksum)",
					t->path, (unsigned long long)at);
		t->past_end = 0; /* a header: another archive followed the end */
		uint64_t size;
		if (num_field(h + 124, 12, &size) != 0)
			return mvl_errf(err, "'%s': bad size field in the header at offset %llu", t->path,
					(unsigned long long)at);
		char type = (char)h[156];
		if (type == 'x' || type == 'g' || type == 'L' || type == 'K') {
			buf *b = type == 'L' ? &t->longname : type == 'K' ? &t->longlink : &t->name;
			if (read_meta(t, size, b, err) != 0)
				return -1;
			if (type == 'x' && parse_pax(t, b, err) != 0)
				return -1;
			if (type == 'L') {
				t->longname.len = strnlen((char *)t->longname.data, t->longname.len);
				t->has_longname = 1;
			}
			/* 'g' (global) records change nothing mvl uses */
			continue;
		}
		if (t->has_paxsize)
			size = t->paxsize;
		/* the name: pax path > GNU long name > ustar prefix/name */
		buf *nm = &t->name;
		nm->len = 0;
		if (t->has_paxpath) {
			buf_append(nm, t->paxpath.data, t->paxpath.len);
		} else if (t->has_longname) {
			buf_append(nm, t->longname.data, t->longname.len);
		} else {
			int ustar = !memcmp(h + 257, "ustar\0", 6); /* POSIX, not GNU's "ustar  " */
			size_t pl = ustar ? strnlen((char *)h + 345, 155) : 0;
			if (pl) {
				buf_append(nm, h + 345, pl);
				buf_append(nm, "/", 1);
			}
			buf_append(nm, h, strnlen((char *)h, 100));
		}
		buf_append(nm, "", 0);
		/* embedded NULs (from pax/long names) would cut the name short */
		if (strlen((char *)nm->data) != nm->len)
			nm->len = strlen((char *)nm->data);
		switch (type) {
		case '0': case '\0': case '7': e->type = '0'; break;
		case '1': case '2': case '3': case '4': case '5': case '6': case 'S': e->type = type; break;
		case 'D': e->type = '5'; break; /* GNU dumpdir: a directory */
		default: e->type = '?';
		}
		if (type == '1' || type == '2')
			size = type == '1' ? 0 : size; /* links carry no data we keep */
		e->name = (const char *)nm->data;
		e->size = size;
		t->left = (type == '5' || type == '1') ? 0 : size;
		t->pad = t->left % 512 ? 512 - t->left % 512 : 0;
		if (type == '5' && size) {
			/* a directory with data: skip it */
			t->left = size;
			t->pad = size % 512 ? 512 - size % 512 : 0;
		}
		return 1;
	}
}

int tar_read(tar_in *t, void *dst, uint64_t n, mvl_err *err)
{
	if (n > t->left)
		return mvl_errf(err, "'%s': read past the entry's end", t->path);
	int64_t k = take(t, dst, n, err);
	if (k < 0)
		return -1;
	t->left -= (uint64_t)k;
	if ((uint64_t)k < n)
		return mvl_errf(err, "'%s': truncated tar archive (an entry's data ends early at offset %llu)",
				t->path, (unsigned long long)t->off);
	return 0;
}
