/* sample.c: samples and WebDataset member naming. */
#include "sample.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

void sample_init(sample *s)
{
	memset(s, 0, sizeof *s);
	sample_set_key(s, "", 0);
}

void sample_clear(sample *s)
{
	s->n = 0;
	s->key[0] = 0;
	s->source = NULL;
	s->aux_len = 0;
}

void sample_free(sample *s)
{
	for (int i = 0; i < s->cap; i++)
		free(s->m[i].data);
	free(s->m);
	free(s->key);
	memset(s, 0, sizeof *s);
}

void sample_set_key(sample *s, const char *key, size_t len)
{
	if (len + 1 > s->keycap) {
		s->keycap = len + 64;
		s->key = xrealloc(s->key, s->keycap);
	}
	memcpy(s->key, key, len);
	s->key[len] = 0;
}

member *sample_get(const sample *s, const char *ext)
{
	for (int i = 0; i < s->n; i++)
		if (strcmp(s->m[i].ext, ext) == 0)
			return &s->m[i];
	return NULL;
}

member *sample_add(sample *s, const char *ext, size_t size)
{
	if (s->n == s->cap) {
		int cap = s->cap ? s->cap * 2 : 4;
		s->m = xrealloc(s->m, (size_t)cap * sizeof *s->m);
		memset(s->m + s->cap, 0, (size_t)(cap - s->cap) * sizeof *s->m);
		s->cap = cap;
	}
	member *m = &s->m[s->n++];
	size_t el = strlen(ext);
	if (el >= sizeof m->ext)
		el = sizeof m->ext - 1;
	memcpy(m->ext, ext, el);
	m->ext[el] = 0;
	if (size + 1 > m->cap) {
		free(m->data);
		m->cap = size + 1;
		m->data = xmalloc(m->cap);
	}
	m->size = size;
	m->data[size] = 0; /* text members can be used as C strings */
	return m;
}

member *sample_put(sample *s, const char *ext, const void *data, size_t n)
{
	member *m = sample_get(s, ext);
	if (!m)
		m = sample_add(s, ext, n);
	else if (n + 1 > m->cap) {
		m->cap = n + 1;
		m->data = xrealloc(m->data, m->cap);
	}
	if (n)
		memmove(m->data, data, n);
	m->size = n;
	m->data[n] = 0;
	return m;
}

void sample_remove(sample *s, const char *ext)
{
	for (int i = 0; i < s->n; i++) {
		if (strcmp(s->m[i].ext, ext) != 0)
			continue;
		/* keep the buffer: rotate the removed slot past the end */
		member tmp = s->m[i];
		memmove(&s->m[i], &s->m[i + 1], (size_t)(s->n - i - 1) * sizeof *s->m);
		s->m[--s->n] = tmp;
		return;
	}
}

void sample_copy(sample *dst, const sample *src)
{
	sample_clear(dst);
	sample_set_key(dst, src->key, strlen(src->key));
	dst->source = src->source;
	dst->index = src->index;
	for (int i = 0; i < src->n; i++) {
		member *m = sample_add(dst, src->m[i].ext, src->m[i].size);
		memcpy(m->data, src->m[i].data, src->m[i].size);
	}
}

int is_image_ext(const char *ext)
{
	return !strcmp(ext, "jpg") || !strcmp(ext, "jpeg") || !strcmp(ext, "png") ||
	       !strcmp(ext, "webp");
}

member *sample_image(const sample *s, int *count)
{
	member *first = NULL;
	int c = 0;
	for (int i = 0; i < s->n; i++) {
		if (is_image_ext(s->m[i].ext)) {
			if (!first)
				first = &s->m[i];
			c++;
		}
	}
	if (count)
		*count = c;
	return first;
}

int split_member_name(const char *name, size_t *keylen, char *ext, size_t extcap)
{
	const char *slash = strrchr(name, '/');
	const char *file = slash ? slash + 1 : name;
	const char *dot = strchr(file, '.');
	if (!dot || dot == file || !dot[1])
		return -1;
	size_t n = strlen(dot + 1);
	if (n + 1 > extcap)
		return -1;
	for (size_t i = 0; i <= n; i++) {
		char c = dot[1 + i];
		ext[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
	}
	*keylen = (size_t)(dot - name);
	return 0;
}

const char *unsafe_member_name(const char *name)
{
	if (!name[0])
		return "empty name";
	if (name[0] == '/' || name[0] == '\\')
		return "absolute path";
	if (name[0] && name[1] == ':' && (name[2] == '/' || name[2] == '\\'))
		return "absolute path";
	const char *p = name;
	while (*p) {
		size_t len = strcspn(p, "/\\");
		if (len == 2 && p[0] == '.' && p[1] == '.')
			return "'..' component";
		p += len;
		if (*p)
			p++;
	}
	return NULL;
}
