/* safetensors.c: the safetensors container with jansson. */
#include "safetensors.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/stat.h>

#include <jansson.h>

int st_write(const char *path, const st_tensor *t, int n, const char *const *meta, int nmeta, mvl_err *err)
{
	json_t *h = json_object();
	uint64_t off = 0;
	json_t *md = json_object();
	for (int i = 0; i < nmeta; i++)
		json_object_set_new(md, meta[2 * i], json_string(meta[2 * i + 1]));
	json_object_set_new(h, "__metadata__", md);
	for (int i = 0; i < n; i++) {
		json_t *shape = json_array();
		uint64_t count = 1;
		for (int d = 0; d < t[i].ndim; d++) {
			json_array_append_new(shape, json_integer(t[i].shape[d]));
			count *= (uint64_t)t[i].shape[d];
		}
		json_object_set_new(h, t[i].name,
				    json_pack("{s:s,s:o,s:[I,I]}", "dtype", "F32", "shape", shape, "data_offsets",
					      (json_int_t)off, (json_int_t)(off + 4 * count)));
		off += 4 * count;
	}
	char *text = json_dumps(h, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(h);
	size_t hl = strlen(text), padded = (hl + 7) & ~(size_t)7;
	atomic_file af;
	if (atomic_file_open(&af, path, err) != 0) {
		free(text);
		return -1;
	}
	uint64_t len = padded;
	int ok = fwrite(&len, 8, 1, af.f) == 1 && fwrite(text, 1, hl, af.f) == hl;
	for (size_t i = hl; ok && i < padded; i++)
		ok = fputc(' ', af.f) != EOF;
	for (int i = 0; ok && i < n; i++) {
		size_t count = 1;
		for (int d = 0; d < t[i].ndim; d++)
			count *= (size_t)t[i].shape[d];
		ok = fwrite(t[i].data, 4, count, af.f) == count;
	}
	int e = errno;
	free(text);
	if (!ok) {
		/* the reason (a full disk, a file too large) names the file */
		mvl_errf(err, "cannot write '%s': %s", af.tmp, strerror(e));
		atomic_file_abort(&af);
		return -1;
	}
	return atomic_file_commit(&af, err);
}

struct st_file {
	buf data;
	st_tensor *t;
	char **names;
	uint64_t *begin; /* each tensor's first byte after the header */
	int n;
	json_t *meta;
};

static int by_begin(const void *a, const void *b, void *file)
{
	const st_file *f = file;
	uint64_t x = f->begin[*(const int *)a], y = f->begin[*(const int *)b];
	return (x > y) - (x < y);
}

static size_t tensor_bytes(const st_tensor *t)
{
	size_t n = 4;
	for (int d = 0; d < t->ndim; d++)
		n *= (size_t)t->shape[d];
	return n;
}

/* As the format asks: the tensors tile the data exactly (no byte read
 * twice, no hole, nothing after), and every value is finite: a NaN
 * weight would only show as a NaN loss much later, far from its file. */
static int check_layout(st_file *f, const char *path, size_t avail, mvl_err *err)
{
	int *order = xmalloc((size_t)f->n * sizeof *order + 1);
	for (int i = 0; i < f->n; i++)
		order[i] = i;
	qsort_r(order, (size_t)f->n, sizeof *order, by_begin, f);
	uint64_t at = 0;
	int rc = 0;
	for (int j = 0; j < f->n && rc == 0; j++) {
		const st_tensor *t = &f->t[order[j]];
		if (f->begin[order[j]] != at)
			rc = mvl_errf(err, "'%s': tensor '%s' %s the data of the tensor before it", path, t->name,
				      f->begin[order[j]] < at ? "overlaps" : "leaves a hole after");
		at += tensor_bytes(t);
	}
	if (rc == 0 && at != avail)
		rc = mvl_errf(err, "'%s': %zu bytes of data after the last tensor", path, (size_t)(avail - at));
	for (int i = 0; i < f->n && rc == 0; i++) {
		size_t n = tensor_bytes(&f->t[i]) / 4;
		for (size_t k = 0; k < n; k++)
			if (!isfinite(f->t[i].data[k])) {
				rc = mvl_errf(err, "'%s': tensor '%s' holds a non-finite value (NaN or Inf) at element %zu",
					      path, f->t[i].name, k);
				break;
			}
	}
	free(order);
	return rc;
}

st_file *st_open(const char *path, mvl_err *err)
{
	st_file *f = xcalloc(1, sizeof *f);
	json_t *h = NULL;
	struct stat sb;
	/* a device or a FIFO would be read to its (absent) end */
	if (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode)) {
		mvl_errf(err, "'%s': not a regular file", path);
		goto fail;
	}
	if (read_file(path, (size_t)1 << 40, &f->data, err) != 0)
		goto fail;
	uint64_t hl;
	if (f->data.len < 8) {
		mvl_errf(err, "'%s': not a safetensors file (shorter than its header length)", path);
		goto fail;
	}
	memcpy(&hl, f->data.data, 8);
	if (hl > f->data.len - 8 || hl > (100u << 20)) {
		mvl_errf(err, "'%s': header length %llu does not fit the file", path, (unsigned long long)hl);
		goto fail;
	}
	json_error_t je;
	h = json_loadb((const char *)f->data.data + 8, (size_t)hl, 0, &je);
	if (!json_is_object(h)) {
		mvl_errf(err, "'%s': header: %s", path, h ? "not an object" : je.text);
		goto fail;
	}
	size_t base = 8 + (size_t)hl, avail = f->data.len - base;
	if (base % 4) {
		mvl_errf(err, "'%s': header length %llu leaves the data unaligned", path, (unsigned long long)hl);
		goto fail;
	}
	f->t = xcalloc(json_object_size(h) + 1, sizeof *f->t);
	f->names = xcalloc(json_object_size(h) + 1, sizeof *f->names);
	f->begin = xcalloc(json_object_size(h) + 1, sizeof *f->begin);
	const char *k;
	json_t *v;
	json_object_foreach(h, k, v) {
		if (!strcmp(k, "__metadata__")) {
			f->meta = json_incref(v);
			continue;
		}
		const char *dt = json_string_value(json_object_get(v, "dtype"));
		json_t *shape = json_object_get(v, "shape"), *offs = json_object_get(v, "data_offsets");
		if (!dt || strcmp(dt, "F32")) {
			mvl_errf(err, "'%s': tensor '%s' is %s (only F32 is read)", path, k, dt ? dt : "untyped");
			goto fail;
		}
		if (!json_is_array(shape) || json_array_size(shape) > 4 || !json_is_array(offs) ||
		    json_array_size(offs) != 2) {
			mvl_errf(err, "'%s': tensor '%s': bad shape or data_offsets", path, k);
			goto fail;
		}
		st_tensor *t = &f->t[f->n];
		uint64_t count = 1;
		t->ndim = (int)json_array_size(shape);
		for (int d = 0; d < t->ndim; d++) {
			json_int_t s = json_integer_value(json_array_get(shape, (size_t)d));
			if (!json_is_integer(json_array_get(shape, (size_t)d)) || s < 0 || s > ((json_int_t)1 << 40) ||
			    (s && count > UINT64_MAX / 4 / (uint64_t)s)) {
				mvl_errf(err, "'%s': tensor '%s': bad shape", path, k);
				goto fail;
			}
			t->shape[d] = s;
			count *= (uint64_t)s;
		}
		json_int_t b = json_integer_value(json_array_get(offs, 0)), e = json_integer_value(json_array_get(offs, 1));
		if (b < 0 || e < b || (uint64_t)e > avail || (uint64_t)(e - b) != 4 * count || b % 4) {
			mvl_errf(err, "'%s': tensor '%s': data_offsets [%lld, %lld] do not match its shape or the file",
				 path, k, (long long)b, (long long)e);
			goto fail;
		}
		f->names[f->n] = xstrdup(k);
		t->name = f->names[f->n];
		t->data = (const float *)(f->data.data + base + b);
		f->begin[f->n] = (uint64_t)b;
		f->n++;
	}
	if (check_layout(f, path, avail, err) != 0)
		goto fail;
	json_decref(h);
	return f;
fail:
	json_decref(h);
	st_close(f);
	return NULL;
}

const st_tensor *st_get(const st_file *f, const char *name)
{
	for (int i = 0; i < f->n; i++)
		if (!strcmp(f->t[i].name, name))
			return &f->t[i];
	return NULL;
}

int st_count(const st_file *f)
{
	return f->n;
}

const st_tensor *st_at(const st_file *f, int i)
{
	return &f->t[i];
}

const char *st_meta(const st_file *f, const char *key)
{
	return json_string_value(json_object_get(f->meta, key));
}

void st_close(st_file *f)
{
	if (!f)
		return;
	for (int i = 0; i < f->n; i++)
		free(f->names[i]);
	free(f->names);
	free(f->begin);
	free(f->t);
	json_decref(f->meta);
	buf_free(&f->data);
	free(f);
}
