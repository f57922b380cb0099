/* strset.c: open-addressing string set. */
#include "strset.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "util.h"

typedef struct slot {
	uint64_t h;
	char *p;
	size_t n;
} slot;

struct strset {
	slot *t;
	size_t cap, used;
};

strset *strset_new(void)
{
	strset *s = xcalloc(1, sizeof *s);
	s->cap = 64;
	s->t = xcalloc(s->cap, sizeof *s->t);
	return s;
}

void strset_free(strset *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->cap; i++)
		free(s->t[i].p);
	free(s->t);
	free(s);
}

static void insert(strset *s, uint64_t h, char *p, size_t n)
{
	size_t i = h & (s->cap - 1);
	while (s->t[i].p)
		i = (i + 1) & (s->cap - 1);
	s->t[i] = (slot){h, p, n};
	s->used++;
}

void strset_add(strset *s, const char *p, size_t n)
{
	if (strset_has(s, p, n))
		return;
	if ((s->used + 1) * 2 > s->cap) {
		slot *old = s->t;
		size_t oc = s->cap;
		s->cap *= 2;
		s->t = xcalloc(s->cap, sizeof *s->t);
		s->used = 0;
		for (size_t i = 0; i < oc; i++)
			if (old[i].p)
				insert(s, old[i].h, old[i].p, old[i].n);
		free(old);
	}
	insert(s, XXH3_64bits(p, n), xstrndup(p, n), n);
}

int strset_has(const strset *s, const char *p, size_t n)
{
	uint64_t h = XXH3_64bits(p, n);
	for (size_t i = h & (s->cap - 1); s->t[i].p; i = (i + 1) & (s->cap - 1))
		if (s->t[i].h == h && s->t[i].n == n && memcmp(s->t[i].p, p, n) == 0)
			return 1;
	return 0;
}

size_t strset_size(const strset *s)
{
	return s->used;
}

size_t strset_add_lines(strset *s, const char *text, size_t n)
{
	size_t added = 0;
	for (size_t i = 0; i < n;) {
		const char *nl = memchr(text + i, '\n', n - i);
		size_t e = nl ? (size_t)(nl - text) : n;
		size_t a = i, b = e;
		while (a < b && (text[a] == ' ' || text[a] == '\t'))
			a++;
		while (b > a && (text[b - 1] == ' ' || text[b - 1] == '\t' || text[b - 1] == '\r'))
			b--;
		if (b > a && text[a] != '#') {
			strset_add(s, text + a, b - a);
			added++;
		}
		i = e + 1;
	}
	return added;
}
