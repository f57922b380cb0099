/* rejects.c: per-reason counts and the rejects TSV. */
#include "rejects.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

struct reason_count {
	char reason[64];
	uint64_t n;
};

struct rejects {
	atomic_file af;
	int has_file;
	struct reason_count *r;
	int nr, cap;
	uint64_t total;
};

int reject_set(reject_info *rj, const char *reason, const char *fmt, ...)
{
	snprintf(rj->reason, sizeof rj->reason, "%s", reason);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(rj->detail, sizeof rj->detail, fmt, ap);
	va_end(ap);
	return 1;
}

int reject_from_err(reject_info *rj, const char *fallback, const char *msg)
{
	size_t n = strspn(msg, "abcdefghijklmnopqrstuvwxyz_");
	if (n > 0 && n < sizeof rj->reason && msg[n] == ':' && msg[n + 1] == ' ') {
		memcpy(rj->reason, msg, n);
		rj->reason[n] = 0;
		snprintf(rj->detail, sizeof rj->detail, "%s", msg + n + 2);
	} else {
		snprintf(rj->reason, sizeof rj->reason, "%s", fallback);
		snprintf(rj->detail, sizeof rj->detail, "%s", msg);
	}
	return 1;
}

rejects *rejects_open(const char *path, mvl_err *err)
{
	rejects *r = xcalloc(1, sizeof *r);
	if (path) {
		if (atomic_file_open(&r->af, path, err) != 0) {
			free(r);
			return NULL;
		}
		r->has_file = 1;
		fputs("key\tsource\treason\tdetail\n", r->af.f);
	}
	return r;
}

void rejects_add_count(rejects *r, const char *reason, uint64_t n)
{
	int i;
	for (i = 0; i < r->nr; i++)
		if (strcmp(r->r[i].reason, reason) == 0)
			break;
	if (i == r->nr) {
		if (r->nr == r->cap) {
			r->cap = r->cap ? r->cap * 2 : 8;
			r->r = xrealloc(r->r, (size_t)r->cap * sizeof *r->r);
		}
		snprintf(r->r[i].reason, sizeof r->r[i].reason, "%s", reason);
		r->r[i].n = 0;
		r->nr++;
	}
	r->r[i].n += n;
	r->total += n;
}

int rejects_reasons(const rejects *r)
{
	return r->nr;
}

const char *rejects_reason(const rejects *r, int i, uint64_t *n)
{
	*n = r->r[i].n;
	return r->r[i].reason;
}

void rejects_add(rejects *r, const char *key, const char *source,
		 const reject_info *rj)
{
	rejects_add_count(r, rj->reason, 1);
	if (r->has_file) {
		FILE *f = r->af.f;
		tsv_put(f, key);
		fputc('\t', f);
		tsv_put(f, source ? source : "-");
		fputc('\t', f);
		tsv_put(f, rj->reason);
		fputc('\t', f);
		tsv_put(f, rj->detail);
		fputc('\n', f);
	}
}

uint64_t rejects_total(const rejects *r)
{
	return r->total;
}

uint64_t rejects_count(const rejects *r, const char *reason)
{
	for (int i = 0; i < r->nr; i++)
		if (strcmp(r->r[i].reason, reason) == 0)
			return r->r[i].n;
	return 0;
}

static int by_count(const void *a, const void *b)
{
	const struct reason_count *x = a, *y = b;
	if (x->n != y->n)
		return x->n < y->n ? 1 : -1;
	return strcmp(x->reason, y->reason);
}

void rejects_summary(const rejects *r, const char *cmd, uint64_t in,
		     uint64_t kept, FILE *f)
{
	fprintf(f, "mvl %s: %llu in, %llu kept, %llu rejected", cmd,
		(unsigned long long)in, (unsigned long long)kept,
		(unsigned long long)r->total);
	if (r->nr) {
		qsort(r->r, (size_t)r->nr, sizeof *r->r, by_count);
		fputs(" (", f);
		for (int i = 0; i < r->nr; i++)
			fprintf(f, "%s%s %llu", i ? ", " : "", r->r[i].reason,
				(unsigned long long)r->r[i].n);
		fputs(")", f);
	}
	fputc('\n', f);
}

int rejects_close(rejects *r, int complete, mvl_err *err)
{
	int rc = 0;
	if (r->has_file) {
		if (complete)
			rc = atomic_file_commit(&r->af, err);
		else
			atomic_file_abort(&r->af);
	}
	free(r->r);
	free(r);
	return rc;
}
