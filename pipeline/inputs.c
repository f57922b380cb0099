/* inputs.c: brace ranges, lists and globs. */
#include "inputs.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <glob.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_EXPANSION 1000000

static void push(inputs *in, char *s)
{
	if (in->n == in->cap) {
		in->cap = in->cap ? in->cap * 2 : 16;
		in->path = xrealloc(in->path, (size_t)in->cap * sizeof(char *));
	}
	in->path[in->n++] = s;
}

/* Finds the first top-level "{...}" in s: *open, *close indices. */
static int find_brace(const char *s, size_t *open, size_t *close)
{
	int depth = 0;
	for (size_t i = 0; s[i]; i++) {
		if (s[i] == '{') {
			if (depth++ == 0)
				*open = i;
		} else if (s[i] == '}' && depth > 0) {
			if (--depth == 0) {
				*close = i;
				return 1;
			}
		}
	}
	return depth ? -1 : 0;
}

static int is_range(const char *body, size_t n, long *lo, long *hi, int *width)
{
	const char *dots = NULL;
	for (size_t i = 0; i + 1 < n; i++)
		if (body[i] == '.' && body[i + 1] == '.') {
			dots = body + i;
			break;
		}
	if (!dots)
		return 0;
	size_t la = (size_t)(dots - body), lb = n - la - 2;
	if (!la || !lb || la > 18 || lb > 18)
		return 0;
	for (size_t i = 0; i < la; i++)
		if (!isdigit((unsigned char)body[i]))
			return 0;
	for (size_t i = 0; i < lb; i++)
		if (!isdigit((unsigned char)dots[2 + i]))
			return 0;
	*lo = strtol(body, NULL, 10);
	*hi = strtol(dots + 2, NULL, 10);
	*width = (body[0] == '0' && la > 1) ? (int)la : 0;
	return 1;
}

/* Expands braces recursively into out (no globbing yet). */
static int expand_braces(inputs *out, const char *s, mvl_err *err)
{
	size_t o = 0, c = 0;
	int r = find_brace(s, &o, &c);
	if (r < 0)
		return mvl_errf(err, "'%s': unbalanced '{'", s);
	if (r == 0) {
		if (out->n >= MAX_EXPANSION)
			return mvl_errf(err, "'%s': expands to more than %d names", s, MAX_EXPANSION);
		push(out, xstrdup(s));
		return 0;
	}
	const char *body = s + o + 1;
	size_t blen = c - o - 1;
	const char *rest = s + c + 1;
	buf b = {0};
	long lo, hi;
	int width;
	int rc = 0;
	if (is_range(body, blen, &lo, &hi, &width)) {
		long step = lo <= hi ? 1 : -1;
		if (labs(hi - lo) >= MAX_EXPANSION)
			return mvl_errf(err, "'%s': range of more than %d names", s, MAX_EXPANSION);
		for (long v = lo;; v += step) {
			b.len = 0;
			buf_append(&b, s, o);
			buf_printf(&b, "%0*ld%s", width, v, rest);
			if ((rc = expand_braces(out, (char *)b.data, err)) != 0)
				break;
			if (v == hi)
				break;
		}
	} else {
		/* comma list at depth 0 of the body */
		size_t start = 0;
		int depth = 0, alts = 0;
		for (size_t i = 0; i <= blen && rc == 0; i++) {
			char ch = i < blen ? body[i] : ',';
			if (ch == '{')
				depth++;
			else if (ch == '}')
				depth--;
			else if (ch == ',' && depth == 0) {
				b.len = 0;
				buf_append(&b, s, o);
				buf_append(&b, body + start, i - start);
				buf_printf(&b, "%s", rest);
				rc = expand_braces(out, (char *)b.data, err);
				start = i + 1;
				alts++;
			}
		}
		(void)alts;
	}
	buf_free(&b);
	return rc;
}

int inputs_expand(inputs *in, const char *pattern, mvl_err *err)
{
	inputs tmp = {0};
	int rc = expand_braces(&tmp, pattern, err);
	for (int i = 0; i < tmp.n && rc == 0; i++) {
		char *p = tmp.path[i];
		if (strcmp(p, "-") == 0 || !strpbrk(p, "*?[")) {
			push(in, p);
			tmp.path[i] = NULL;
			continue;
		}
		glob_t g;
		int gr = glob(p, 0, NULL, &g);
		if (gr == GLOB_NOMATCH) {
			rc = mvl_errf(err, "'%s': no file matches", p);
		} else if (gr != 0) {
			rc = mvl_errf(err, "'%s': cannot expand the pattern", p);
		} else {
			for (size_t k = 0; k < g.gl_pathc; k++)
				push(in, xstrdup(g.gl_pathv[k]));
		}
		if (gr == 0)
			globfree(&g);
	}
	for (int i = 0; i < tmp.n; i++)
		free(tmp.path[i]);
	free(tmp.path);
	return rc;
}

void inputs_free(inputs *in)
{
	for (int i = 0; i < in->n; i++)
		free(in->path[i]);
	free(in->path);
	memset(in, 0, sizeof *in);
}

static int ends_with(const char *s, const char *suf)
{
	size_t n = strlen(s), m = strlen(suf);
	return n >= m && strcmp(s + n - m, suf) == 0;
}

int is_shard_name(const char *s)
{
	return ends_with(s, ".tar") || ends_with(s, ".tar.zst") || ends_with(s, ".tzst") ||
	       ends_with(s, ".tar.gz") || ends_with(s, ".tgz");
}

static int name_cmp(const struct dirent **a, const struct dirent **b)
{
	return strcmp((*a)->d_name, (*b)->d_name);
}

int inputs_shard_dirs(inputs *in, mvl_err *err)
{
	inputs out = {0};
	int rc = 0;
	for (int i = 0; i < in->n; i++) {
		struct stat st;
		if (rc || strcmp(in->path[i], "-") == 0 || stat(in->path[i], &st) != 0 ||
		    !S_ISDIR(st.st_mode)) {
			push(&out, in->path[i]);
			continue;
		}
		struct dirent **ent;
		int n = scandir(in->path[i], &ent, NULL, name_cmp);
		if (n < 0) {
			rc = mvl_errf(err, "cannot read directory '%s': %s", in->path[i], strerror(errno));
			push(&out, in->path[i]);
			continue;
		}
		int found = 0;
		for (int k = 0; k < n; k++) {
			if (ent[k]->d_name[0] != '.' && is_shard_name(ent[k]->d_name)) {
				buf b = {0};
				buf_printf(&b, "%s%s%s", in->path[i], ends_with(in->path[i], "/") ? "" : "/",
					   ent[k]->d_name);
				push(&out, (char *)b.data);
				found++;
			}
			free(ent[k]);
		}
		free(ent);
		if (!found)
			rc = mvl_errf(err, "'%s': a directory without shards (*.tar, *.tar.zst, *.tar.gz)",
				      in->path[i]);
		free(in->path[i]);
	}
	free(in->path);
	*in = out;
	return rc;
}
