/* sources.c: shards, folders, JSONL and img2dataset output as samples. */
#include "sources.h"
#include "inputs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---------------------------------------------------------------------- */
/* shard_reader as a source */

static int shard_next(void *self, sample *s, reject_info *rj, mvl_err *err)
{
	return shard_reader_next(self, s, rj, err);
}
static uint64_t shard_bytes(const void *self) { return shard_reader_bytes(self); }
static uint64_t shard_total(const void *self) { return shard_reader_total_bytes(self); }
static void shard_free(void *self) { shard_reader_free(self); }

sample_source shard_source(char **paths, int n, const reader_opts *o)
{
	sample_source src = {shard_reader_new(paths, n, o), shard_next, shard_bytes,
			     shard_total, shard_free};
	return src;
}

/* ---------------------------------------------------------------------- */
/* folder walking */

typedef struct dir_level {
	dev_t dev;          /* which directory: a symlink back to one on */
	ino_t ino;          /* the stack is a loop, not more samples */
	char *path;         /* full path of the directory */
	char *rel;          /* relative to the root ("" for the root) */
	struct dirent **ent;
	int n, i;
} dir_level;

typedef struct folder_walk {
	dir_level *st;
	int depth, cap;
	char *root;
} folder_walk;

static int name_cmp(const struct dirent **a, const struct dirent **b)
{
	return strcmp((*a)->d_name, (*b)->d_name);
}

static int skip_name(const char *name)
{
	size_t n = strlen(name);
	if (name[0] == '.')
		return 1;
	if (n >= 11 && strcmp(name + n - 11, "_stats.json") == 0)
		return 1;
	if (n >= 8 && strcmp(name + n - 8, ".parquet") == 0)
		return 1;
	return 0;
}

static int walk_push(folder_walk *w, const char *path, const char *rel, mvl_err *err)
{
	struct stat st;
	if (stat(path, &st) != 0)
		return mvl_errf(err, "cannot read directory '%s': %s", path, strerror(errno));
	for (int i = 0; i < w->depth; i++)
		if (w->st[i].dev == st.st_dev && w->st[i].ino == st.st_ino)
			return mvl_errf(err, "'%s' is '%s' again (a symlink loop): not followed", path, w->st[i].path);
	struct dirent **ent;
	int n = scandir(path, &ent, NULL, name_cmp);
	if (n < 0)
		return mvl_errf(err, "cannot read directory '%s': %s", path, strerror(errno));
	if (w->depth == w->cap) {
		w->cap = w->cap ? w->cap * 2 : 8;
		w->st = xrealloc(w->st, (size_t)w->cap * sizeof *w->st);
	}
	dir_level *d = &w->st[w->depth++];
	d->dev = st.st_dev;
	d->ino = st.st_ino;
	d->path = xstrdup(path);
	d->rel = xstrdup(rel);
	d->ent = ent;
	d->n = n;
	d->i = 0;
	return 0;
}

static void walk_pop(folder_walk *w)
{
	dir_level *d = &w->st[--w->depth];
	for (int i = 0; i < d->n; i++)
		free(d->ent[i]);
	free(d->ent);
	free(d->path);
	free(d->rel);
}

/* ---------------------------------------------------------------------- */
/* the classifying ingest source */

enum in_kind { IN_NONE, IN_SHARDS, IN_FOLDER, IN_JSONL };

typedef struct ingest_src {
	char **paths;
	int n, cur;
	reader_opts ro;
	const char *cmd;
	enum in_kind kind;
	/* shards */
	shard_reader *sr;
	char **shard_list;
	int nshards;
	/* names of finished shard lists: samples already read (a batch ahead)
	 * still point at them as their source */
	char **retired;
	int nretired;
	int64_t stats_successes; /* -1: no _stats.json */
	uint64_t read_here;
	/* folder */
	folder_walk fw;
	char *pending_name; /* next file of the folder, already looked at */
	/* jsonl */
	FILE *jf;
	char *jdir;
	char *line;
	size_t linecap;
	uint64_t lineno;
	uint64_t bytes_done, total;
	uint64_t index;
} ingest_src;

static int has_suffix(const char *s, const char *suf)
{
	size_t n = strlen(s), m = strlen(suf);
	return n >= m && strcmp(s + n - m, suf) == 0;
}

static void free_shard_list(ingest_src *g)
{
	g->retired = xrealloc(g->retired, (size_t)(g->nretired + g->nshards + 1) * sizeof(char *));
	for (int i = 0; i < g->nshards; i++)
		g->retired[g->nretired++] = g->shard_list[i];
	free(g->shard_list);
	g->shard_list = NULL;
	g->nshards = 0;
}

static char *path_join(const char *a, const char *b)
{
	size_t n = strlen(a) + strlen(b) + 2;
	char *p = xmalloc(n);
	if (!*a)
		snprintf(p, n, "%s", b);
	else
		snprintf(p, n, "%s%s%s", a, has_suffix(a, "/") ? "" : "/", b);
	return p;
}

/* Sums "successes" over NNNNN_stats.json files of an img2dataset folder. */
static int64_t read_stats(const char *dir, struct dirent **ent, int n)
{
	int64_t total = -1;
	for (int i = 0; i < n; i++) {
		if (!has_suffix(ent[i]->d_name, "_stats.json"))
			continue;
		char *p = path_join(dir, ent[i]->d_name);
		json_error_t je;
		json_t *j = json_load_file(p, 0, &je);
		free(p);
		json_t *v = j ? json_object_get(j, "successes") : NULL;
		if (json_is_integer(v))
			total = (total < 0 ? 0 : total) + json_integer_value(v);
		json_decref(j);
	}
	return total;
}

static void finish_input(ingest_src *g)
{
	if (g->kind == IN_SHARDS) {
		g->bytes_done += shard_reader_bytes(g->sr);
		shard_reader_free(g->sr);
		g->sr = NULL;
		if (g->stats_successes >= 0 && (uint64_t)g->stats_successes != g->read_here)
			fprintf(stderr,
				"mvl %s: '%s': img2dataset's _stats.json count %lld successes, %llu samples were read\n",
				g->cmd, g->paths[g->cur], (long long)g->stats_successes,
				(unsigned long long)g->read_here);
		free_shard_list(g);
	} else if (g->kind == IN_FOLDER) {
		while (g->fw.depth)
			walk_pop(&g->fw);
		free(g->fw.root);
		g->fw.root = NULL;
		free(g->pending_name);
		g->pending_name = NULL;
	} else if (g->kind == IN_JSONL) {
		if (g->jf) {
			g->bytes_done += (uint64_t)ftello(g->jf);
			fclose(g->jf);
		}
		g->jf = NULL;
		free(g->jdir);
		g->jdir = NULL;
	}
	g->kind = IN_NONE;
}

/* Opens input g->cur.  @return 0 or -1 (err). */
static int start_input(ingest_src *g, mvl_err *err)
{
	const char *p = g->paths[g->cur];
	g->read_here = 0;
	g->stats_successes = -1;
	if (strcmp(p, "-") == 0) {
		g->kind = IN_SHARDS;
		g->sr = shard_reader_new(&g->paths[g->cur], 1, &g->ro);
		return 0;
	}
	struct stat st;
	if (stat(p, &st) != 0)
		return mvl_errf(err, "cannot read '%s': %s", p, strerror(errno));
	if (S_ISDIR(st.st_mode)) {
		struct dirent **ent;
		int n = scandir(p, &ent, NULL, name_cmp);
		if (n < 0)
			return mvl_errf(err, "cannot read directory '%s': %s", p, strerror(errno));
		for (int i = 0; i < n; i++)
			if (ent[i]->d_name[0] != '.' && is_shard_name(ent[i]->d_name)) {
				g->shard_list = xrealloc(g->shard_list,
							 (size_t)(g->nshards + 1) * sizeof(char *));
				g->shard_list[g->nshards++] = path_join(p, ent[i]->d_name);
			}
		if (g->nshards) {
			g->stats_successes = read_stats(p, ent, n);
			g->kind = IN_SHARDS;
			g->sr = shard_reader_new(g->shard_list, g->nshards, &g->ro);
		}
		for (int i = 0; i < n; i++)
			free(ent[i]);
		free(ent);
		if (g->nshards)
			return 0;
		g->kind = IN_FOLDER;
		g->fw.root = xstrdup(p);
		return walk_push(&g->fw, p, "", err);
	}
	/* a file: sniff the content */
	unsigned char head[512];
	int fd = open(p, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return mvl_errf(err, "cannot read '%s': %s", p, strerror(errno));
	ssize_t k = read(fd, head, sizeof head);
	close(fd);
	ssize_t i = 0;
	while (i < k && (head[i] == ' ' || head[i] == '\t' || head[i] == '\n' || head[i] == '\r'))
		i++;
	if (i < k && head[i] == '{') {
		g->jf = fopen(p, "rb");
		if (!g->jf)
			return mvl_errf(err, "cannot read '%s': %s", p, strerror(errno));
		char *slash = strrchr(p, '/');
		g->jdir = slash ? xstrndup(p, (size_t)(slash - p)) : xstrdup("");
		g->lineno = 0;
		g->kind = IN_JSONL;
		return 0;
	}
	g->kind = IN_SHARDS;
	g->sr = shard_reader_new(&g->paths[g->cur], 1, &g->ro);
	return 0;
}

/* Reads a whole file into member ext of s.  @return 0, or 1 with *rj. */
static int load_member(ingest_src *g, sample *s, const char *path, const char *ext,
		       reject_info *rj)
{
	/* O_NONBLOCK: opening a FIFO would wait for a writer forever; it is
	 * refused below as not a regular file (regular files ignore the flag) */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return reject_set(rj, errno == ENOENT ? "missing_file" : "unreadable_file",
				  "'%s': %s", path, strerror(errno));
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return reject_set(rj, "unreadable_file", "'%s' is not a regular file", path);
	}
	if ((uint64_t)st.st_size > g->ro.max_member) {
		close(fd);
		return reject_set(rj, "member_too_large", "'%s' is %lld bytes", path,
				  (long long)st.st_size);
	}
	if (sample_get(s, ext)) {
		close(fd);
		return reject_set(rj, "duplicate_member", "'%s': a second '%s' for the sample", path, ext);
	}
	member *m = sample_add(s, ext, (size_t)st.st_size);
	size_t got = 0;
	while (got < m->size) {
		ssize_t r = read(fd, m->data + got, m->size - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			int e = errno;
			close(fd);
			return reject_set(rj, "unreadable_file", "'%s': %s", path,
					  r < 0 ? strerror(e) : "file shrank while being read");
		}
		got += (size_t)r;
	}
	m->size = got;
	close(fd);
	return 0;
}

/* Next group of files sharing a key in the folder walk. */
static int folder_next(ingest_src *g, sample *s, reject_info *rj)
{
	folder_walk *w = &g->fw;
	int started = 0, rejected = 0;
	size_t keylen = 0;
	char *keybuf = NULL;
	while (w->depth) {
		dir_level *d = &w->st[w->depth - 1];
		if (d->i >= d->n) {
			if (started)
				break; /* a group never spans directories */
			walk_pop(w);
			continue;
		}
		const char *name = d->ent[d->i]->d_name;
		if (!strcmp(name, ".") || !strcmp(name, "..") || skip_name(name)) {
			d->i++;
			continue;
		}
		char *full = path_join(d->path, name);
		char *rel = path_join(d->rel, name);
		struct stat st;
		if (stat(full, &st) == 0 && S_ISDIR(st.st_mode)) {
			if (started) {
				free(full);
				free(rel);
				break;
			}
			d->i++;
			mvl_err err;
			if (walk_push(w, full, rel, &err) != 0)
				fprintf(stderr, "mvl %s: %s\n", g->cmd, err.msg);
			free(full);
			free(rel);
			continue;
		}
		char ext[sizeof s->m[0].ext];
		size_t kl;
		if (split_member_name(rel, &kl, ext, sizeof ext) != 0) {
			kl = strlen(rel);
			ext[0] = 0;
		}
		if (started && (kl != keylen || memcmp(keybuf, rel, kl) != 0)) {
			free(full);
			free(rel);
			break;
		}
		d->i++;
		if (!started) {
			started = 1;
			keylen = kl;
			keybuf = xstrndup(rel, kl);
			sample_set_key(s, rel, kl);
		}
		if (!rejected) {
			if (!ext[0])
				rejected = reject_set(rj, "bad_name", "'%s' has no extension", full);
			else
				rejected = load_member(g, s, full, ext, rj);
		}
		free(full);
		free(rel);
	}
	free(keybuf);
	if (!started)
		return READ_END;
	s->source = g->paths[g->cur];
	return rejected ? READ_REJECT : READ_SAMPLE;
}

static const char *first_string(json_t *o, const char *const *names, const char **which)
{
	for (int i = 0; names[i]; i++) {
		json_t *v = json_object_get(o, names[i]);
		if (json_is_string(v)) {
			if (which)
				*which = names[i];
			return json_string_value(v);
		}
	}
	return NULL;
}

/* Next line of a JSONL list. */
static int jsonl_next(ingest_src *g, sample *s, reject_info *rj, mvl_err *err)
{
	static const char *const img_keys[] = {"image", "image_path", "path", "file_name", NULL};
	static const char *const cap_keys[] = {"caption", "text", "txt", NULL};
	static const char *const key_keys[] = {"key", "id", NULL};
	for (;;) {
		ssize_t n = getline(&g->line, &g->linecap, g->jf);
		if (n < 0) {
			if (ferror(g->jf))
				return mvl_errf(err, "cannot read '%s': %s", g->paths[g->cur],
						strerror(errno));
			return READ_END;
		}
		g->lineno++;
		while (n > 0 && (g->line[n - 1] == '\n' || g->line[n - 1] == '\r'))
			g->line[--n] = 0;
		size_t sp = strspn(g->line, " \t");
		if ((size_t)n == sp)
			continue; /* blank lines are not samples */
		char key[64];
		snprintf(key, sizeof key, "%09llu", (unsigned long long)(g->lineno - 1));
		s->source = g->paths[g->cur];
		json_error_t je;
		json_t *o = json_loadb(g->line, (size_t)n, JSON_REJECT_DUPLICATES, &je);
		if (!o || !json_is_object(o)) {
			sample_set_key(s, key, strlen(key));
			if (o)
				reject_set(rj, "bad_json", "line %llu: not a JSON object",
					   (unsigned long long)g->lineno);
			else
				reject_set(rj, "bad_json", "line %llu column %d: %s",
					   (unsigned long long)g->lineno, je.column, je.text);
			json_decref(o);
			return READ_REJECT;
		}
		const char *kf = NULL;
		const char *k = first_string(o, key_keys, &kf);
		json_t *kid = json_object_get(o, "id");
		char idbuf[32];
		if (!k && json_is_integer(kid)) {
			snprintf(idbuf, sizeof idbuf, "%09lld", (long long)json_integer_value(kid));
			k = idbuf;
		}
		if (k && (!*k || strchr(k, '.') || unsafe_member_name(k) || strlen(k) > 200)) {
			sample_set_key(s, key, strlen(key));
			reject_set(rj, "bad_name", "line %llu: key '%.100s' cannot name tar members",
				   (unsigned long long)g->lineno, k);
			json_decref(o);
			return READ_REJECT;
		}
		sample_set_key(s, k ? k : key, strlen(k ? k : key));
		const char *which = NULL;
		const char *img = first_string(o, img_keys, &which);
		int rejected = 0;
		if (img) {
			char *path = img[0] == '/' ? xstrdup(img) : path_join(g->jdir, img);
			const char *dot = strrchr(img, '.');
			char ext[16] = "img";
			if (dot && strlen(dot + 1) < sizeof ext && !strchr(dot, '/')) {
				for (size_t i = 0; dot[1 + i]; i++)
					ext[i] = (char)((dot[1 + i] >= 'A' && dot[1 + i] <= 'Z')
							? dot[1 + i] - 'A' + 'a' : dot[1 + i]);
				ext[strlen(dot + 1)] = 0;
			}
			if (!is_image_ext(ext))
				snprintf(ext, sizeof ext, "jpg"); /* content decides later */
			rejected = load_member(g, s, path, ext, rj);
			free(path);
			/* img belongs to the member being deleted: record it first */
			json_object_set_new(o, "image_path", json_string(img));
			if (strcmp(which, "image_path") != 0)
				json_object_del(o, which);
		}
		const char *cap = rejected ? NULL : first_string(o, cap_keys, &which);
		if (cap) {
			sample_put(s, "txt", cap, strlen(cap));
			json_object_del(o, which);
		}
		if (!rejected) {
			if (kf)
				json_object_del(o, kf);
			char *js = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
			if (js) {
				sample_put(s, "json", js, strlen(js));
				free(js);
			}
		}
		json_decref(o);
		return rejected ? READ_REJECT : READ_SAMPLE;
	}
}

static int ingest_next(void *self, sample *s, reject_info *rj, mvl_err *err)
{
	ingest_src *g = self;
	for (;;) {
		sample_clear(s);
		if (g->kind == IN_NONE) {
			if (++g->cur >= g->n)
				return READ_END;
			if (start_input(g, err) != 0) {
				g->kind = IN_NONE;
				return READ_INPUT_ERROR;
			}
		}
		int k;
		if (g->kind == IN_SHARDS)
			k = shard_reader_next(g->sr, s, rj, err);
		else if (g->kind == IN_FOLDER)
			k = folder_next(g, s, rj);
		else {
			k = jsonl_next(g, s, rj, err);
			if (k < 0) {
				finish_input(g);
				return READ_INPUT_ERROR;
			}
		}
		if (k == READ_END) {
			finish_input(g);
			continue;
		}
		if (k == READ_SAMPLE)
			g->read_here++;
		if (k == READ_SAMPLE || k == READ_REJECT || k == READ_BROKEN)
			s->index = g->index++;
		return k;
	}
}

static uint64_t ingest_bytes(const void *self)
{
	const ingest_src *g = self;
	uint64_t b = g->bytes_done;
	if (g->sr)
		b += shard_reader_bytes(g->sr);
	if (g->jf)
		b += (uint64_t)ftello(g->jf);
	return b;
}

static uint64_t ingest_total(const void *self)
{
	return ((const ingest_src *)self)->total;
}

static void ingest_free(void *self)
{
	ingest_src *g = self;
	finish_input(g);
	for (int i = 0; i < g->nretired; i++)
		free(g->retired[i]);
	free(g->retired);
	free(g->line);
	free(g->fw.st);
	free(g);
}

sample_source ingest_source(char **paths, int n, const reader_opts *o, const char *cmd)
{
	ingest_src *g = xcalloc(1, sizeof *g);
	static char *dash[] = {"-"};
	g->paths = n ? paths : dash;
	g->n = n ? n : 1;
	g->cur = -1;
	g->ro = *o;
	if (!g->ro.max_member)
		g->ro.max_member = 1ull << 30;
	g->cmd = cmd;
	/* the total is known when every input is a regular file (shards or
	 * JSONL); folders make it unknown */
	for (int i = 0; i < g->n; i++) {
		struct stat st;
		if (strcmp(g->paths[i], "-") == 0 || stat(g->paths[i], &st) != 0 ||
		    !S_ISREG(st.st_mode)) {
			g->total = 0;
			break;
		}
		g->total += (uint64_t)st.st_size;
	}
	sample_source src = {g, ingest_next, ingest_bytes, ingest_total, ingest_free};
	return src;
}
