/* util.c: errors, allocation, buffers, sizes, UTF-8, atomic files. */
#include "util.h"

#include <dirent.h>
#include <ftw.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int mvl_errf(mvl_err *err, const char *fmt, ...)
{
	if (err) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err->msg, sizeof err->msg, fmt, ap);
		va_end(ap);
	}
	return -1;
}

int mvl_errprefix(mvl_err *err, const char *fmt, ...)
{
	if (!err)
		return -1;
	char pre[512], old[sizeof err->msg];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(pre, sizeof pre, fmt, ap);
	va_end(ap);
	memcpy(old, err->msg, sizeof old);
	size_t n = strlen(pre);
	if (n > sizeof err->msg - 3)
		n = sizeof err->msg - 3;
	memcpy(err->msg, pre, n);
	memcpy(err->msg + n, ": ", 2);
	memcpy(err->msg + n + 2, old, sizeof err->msg - n - 2);
	err->msg[sizeof err->msg - 1] = 0;
	return -1;
}

void die(const char *fmt, ...)
{
	va_list ap;
	fflush(stdout);
	fputs("mvl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

void mvl_warn(const char *fmt, ...)
{
	va_list ap;
	fputs("mvl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		die("out of memory allocating %zu bytes", n);
	return p;
}

void *xcalloc(size_t n, size_t sz)
{
	void *p = calloc(n ? n : 1, sz ? sz : 1);
	if (!p)
		die("out of memory allocating %zu x %zu bytes", n, sz);
	return p;
}

void *xrealloc(void *p, size_t n)
{
	p = realloc(p, n ? n : 1);
	if (!p)
		die("out of memory allocating %zu bytes", n);
	return p;
}

char *xstrdup(const char *s)
{
	return xstrndup(s, strlen(s));
}

char *xstrndup(const char *s, size_t n)
{
	char *p = xmalloc(n + 1);
	memcpy(p, s, n);
	p[n] = 0;
	return p;
}

void buf_reserve(buf *b, size_t need)
{
	if (b->cap - b->len >= need)
		return;
	size_t cap = b->cap ? b->cap : 256;
	while (cap - b->len < need)
		cap *= 2;
	b->data = xrealloc(b->data, cap);
	b->cap = cap;
}

void buf_append(buf *b, const void *p, size_t n)
{
	buf_reserve(b, n + 1);
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = 0; /* keeps text buffers NUL-terminated for free */
}

void buf_printf(buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	buf_reserve(b, (size_t)n + 1);
	va_start(ap, fmt);
	vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

void buf_free(buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

double now_sec(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int parse_size(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (end == s || errno || v < 0)
		return -1;
	double mul = 1;
	const char *u = end;
	int bin = (u[0] && (u[1] == 'i' || u[1] == 'I'));
	switch (u[0]) {
	case 0: break;
	case 'k': case 'K': mul = bin ? 1024.0 : 1e3; break;
	case 'm': case 'M': mul = bin ? 1048576.0 : 1e6; break;
	case 'g': case 'G': mul = bin ? 1073741824.0 : 1e9; break;
	case 't': case 'T': mul = bin ? 1099511627776.0 : 1e12; break;
	case 'b': case 'B': if (u[1]) return -1; break;
	default: return -1;
	}
	if (u[0] && u[0] != 'b' && u[0] != 'B') {
		const char *r = u + 1 + bin;
		if (*r == 'b' || *r == 'B')
			r++;
		if (*r)
			return -1;
	}
	v *= mul;
	if (v > 1.8e19)
		return -1;
	*out = (uint64_t)(v + 0.5);
	return 0;
}

const char *fmt_bytes(double n, char out[32])
{
	const char *u[] = {"B", "kB", "MB", "GB", "TB"};
	int i = 0;
	while (n >= 1000 && i < 4) {
		n /= 1000;
		i++;
	}
	snprintf(out, 32, i ? "%.1f %s" : "%.0f %s", n, u[i]);
	return out;
}

/* utf8_seq() : length of the well-formed sequence at s (1..4), or 0 when
 * s starts an ill-formed one.  Table 3-7 of the Unicode standard. */
static int utf8_seq(const unsigned char *s, size_t n)
{
	unsigned c = s[0];
	if (c < 0x80)
		return 1;
	if (c < 0xC2 || c > 0xF4)
		return 0;
	if (c < 0xE0)
		return (n >= 2 && (s[1] & 0xC0) == 0x80) ? 2 : 0;
	if (c < 0xF0) {
		if (n < 3)
			return 0;
		unsigned lo = 0x80, hi = 0xBF;
		if (c == 0xE0) lo = 0xA0;
		if (c == 0xED) hi = 0x9F;
		if (s[1] < lo || s[1] > hi || (s[2] & 0xC0) != 0x80)
			return 0;
		return 3;
	}
	if (n < 4)
		return 0;
	unsigned lo = 0x80, hi = 0xBF;
	if (c == 0xF0) lo = 0x90;
	if (c == 0xF4) hi = 0x8F;
	if (s[1] < lo || s[1] > hi || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80)
		return 0;
	return 4;
}

int utf8_valid(const unsigned char *s, size_t n)
{
	size_t i = 0;
	while (i < n) {
		/* ASCII fast path: 8 bytes at a time */
		while (i + 8 <= n) {
			uint64_t w;
			memcpy(&w, s + i, 8);
			if (w & 0x8080808080808080ull)
				break;
			i += 8;
		}
		if (i >= n)
			break;
		int k = utf8_seq(s + i, n - i);
		if (!k)
			return 0;
		i += (size_t)k;
	}
	return 1;
}

size_t utf8_count(const unsigned char *s, size_t n)
{
	size_t cnt = 0;
	for (size_t i = 0; i < n; i++)
		if ((s[i] & 0xC0) != 0x80)
			cnt++;
	return cnt;
}

/* Length of the maximal prefix of an ill-formed sequence at s: the bytes
 * that could start a valid sequence, each replaced by one U+FFFD. */
static size_t utf8_bad_len(const unsigned char *s, size_t n)
{
	unsigned c = s[0];
	size_t want;
	unsigned lo = 0x80, hi = 0xBF;
	if (c >= 0xC2 && c <= 0xDF)
		want = 2;
	else if (c >= 0xE0 && c <= 0xEF) {
		want = 3;
		if (c == 0xE0) lo = 0xA0;
		if (c == 0xED) hi = 0x9F;
	} else if (c >= 0xF0 && c <= 0xF4) {
		want = 4;
		if (c == 0xF0) lo = 0x90;
		if (c == 0xF4) hi = 0x8F;
	} else
		return 1;
	size_t i = 1;
	if (i < n && i < want && s[i] >= lo && s[i] <= hi) {
		i++;
		while (i < n && i < want && (s[i] & 0xC0) == 0x80)
			i++;
	}
	return i;
}

void tsv_put(FILE *f, const char *s)
{
	for (; s && *s; s++) {
		switch (*s) {
		case '\t': fputs("\\t", f); break;
		case '\n': fputs("\\n", f); break;
		case '\r': fputs("\\r", f); break;
		case '\\': fputs("\\\\", f); break;
		default: fputc(*s, f);
		}
	}
}

void tsv_unescape(char *s)
{
	char *o = s;
	for (; *s; s++) {
		if (*s != '\\' || !s[1]) {
			*o++ = *s;
			continue;
		}
		s++;
		*o++ = *s == 't' ? '\t' : *s == 'n' ? '\n' : *s == 'r' ? '\r' : *s;
	}
	*o = 0;
}

size_t utf8_repair(const unsigned char *s, size_t n, buf *out)
{
	size_t i = 0, bad = 0;
	buf_reserve(out, n + 1);
	while (i < n) {
		int k = utf8_seq(s + i, n - i);
		if (k) {
			buf_append(out, s + i, (size_t)k);
			i += (size_t)k;
		} else {
			buf_append(out, "\xEF\xBF\xBD", 3);
			i += utf8_bad_len(s + i, n - i);
			bad++;
		}
	}
	return bad;
}

int writer_gone(long pid)
{
	if (pid <= 0 || pid == (long)getpid())
		return 0;
	if (kill((pid_t)pid, 0) != 0)
		return errno == ESRCH;
	/* killed but not reaped (an orphan waits for init): state Z */
	char path[64], st[512];
	snprintf(path, sizeof path, "/proc/%ld/stat", pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, st, sizeof st - 1);
	close(fd);
	if (n <= 0)
		return 0;
	st[n] = 0;
	const char *paren = strrchr(st, ')'); /* "PID (COMM) STATE ..." */
	return paren && paren[1] == ' ' && paren[2] == 'Z';
}

void remove_stale_tmp(const char *dir, int (*keep)(const char *name, size_t len, void *ctx), void *ctx)
{
	DIR *d = opendir(*dir ? dir : ".");
	struct dirent *e;
	while (d && (e = readdir(d))) {
		const char *t = strstr(e->d_name, ".tmp."), *p;
		if (!t || t == e->d_name)
			continue;
		for (p = t + 5; *p >= '0' && *p <= '9'; p++)
			;
		if (p == t + 5 || *p || p - (t + 5) > 10)
			continue;
		if (!writer_gone(strtol(t + 5, NULL, 10)))
			continue;
		if (keep(e->d_name, (size_t)(t - e->d_name), ctx))
			unlinkat(dirfd(d), e->d_name, 0);
	}
	if (d)
		closedir(d);
}

static int same_name(const char *name, size_t len, void *base)
{
	return strlen(base) == len && !memcmp(name, base, len);
}

int atomic_file_open(atomic_file *af, const char *path, mvl_err *err)
{
	char *dir = xstrdup(path), *slash = strrchr(dir, '/');
	if (slash)
		slash[slash == dir] = 0; /* "/x" -> "/" */
	remove_stale_tmp(slash ? dir : "", same_name, (void *)(slash ? path + (slash - dir) + 1 : path));
	free(dir);
	memset(af, 0, sizeof *af);
	af->path = xstrdup(path);
	size_t n = strlen(path) + 32;
	af->tmp = xmalloc(n);
	snprintf(af->tmp, n, "%s.tmp.%ld", path, (long)getpid());
	af->f = fopen(af->tmp, "wb");
	if (!af->f) {
		int e = errno;
		mvl_errf(err, "cannot create '%s': %s", af->tmp, strerror(e));
		free(af->path);
		free(af->tmp);
		af->path = af->tmp = NULL;
		return -1;
	}
	return 0;
}

int atomic_file_commit(atomic_file *af, mvl_err *err)
{
	int rc = 0;
	if (fflush(af->f) != 0 || ferror(af->f))
		rc = mvl_errf(err, "cannot write '%s': %s", af->tmp, strerror(errno));
	else if (fsync(fileno(af->f)) != 0 && errno != EINVAL)
		rc = mvl_errf(err, "cannot sync '%s': %s", af->tmp, strerror(errno));
	if (fclose(af->f) != 0 && rc == 0)
		rc = mvl_errf(err, "cannot write '%s': %s", af->tmp, strerror(errno));
	af->f = NULL;
	if (rc == 0 && rename(af->tmp, af->path) != 0)
		rc = mvl_errf(err, "cannot rename '%s' to '%s': %s", af->tmp,
			      af->path, strerror(errno));
	if (rc)
		unlink(af->tmp);
	free(af->path);
	free(af->tmp);
	af->path = af->tmp = NULL;
	return rc;
}

void atomic_file_abort(atomic_file *af)
{
	if (af->f)
		fclose(af->f);
	if (af->tmp)
		unlink(af->tmp);
	free(af->path);
	free(af->tmp);
	memset(af, 0, sizeof *af);
}

int write_all(int fd, const void *p, size_t n)
{
	const char *c = p;
	while (n) {
		ssize_t w = write(fd, c, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		c += w;
		n -= (size_t)w;
	}
	return 0;
}

int read_file(const char *path, size_t max, buf *out, mvl_err *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return mvl_errf(err, "cannot open '%s': %s", path, strerror(errno));
	out->len = 0;
	for (;;) {
		buf_reserve(out, 65536 + 1);
		ssize_t r = read(fd, out->data + out->len, 65536);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			int e = errno;
			close(fd);
			return mvl_errf(err, "cannot read '%s': %s", path, strerror(e));
		}
		if (r == 0)
			break;
		out->len += (size_t)r;
		if (out->len > max) {
			close(fd);
			return mvl_errf(err, "'%s' is larger than %zu bytes", path, max);
		}
	}
	close(fd);
	out->data[out->len] = 0;
	return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

void remove_tree(const char *path)
{
	nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}
