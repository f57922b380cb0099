/* sample_text.c: captions and KEY.json fields of samples. */
#include "sample_text.h"

#include <stdlib.h>
#include <string.h>

const char *sample_caption(const sample *s, buf *scratch, size_t *n, int *bad_json)
{
	member *m = sample_get(s, "txt");
	if (bad_json)
		*bad_json = 0;
	if (m) {
		*n = m->size;
		return (const char *)m->data;
	}
	member *j = sample_get(s, "json");
	if (!j || !memmem(j->data, j->size, "\"conversations\"", 15))
		return NULL;
	json_t *o = json_loadb((const char *)j->data, j->size, 0, NULL);
	json_t *conv = json_object_get(o, "conversations");
	if (!json_is_array(conv)) {
		if (bad_json)
			*bad_json = o == NULL;
		json_decref(o);
		return NULL;
	}
	scratch->len = 0;
	size_t i;
	json_t *turn;
	json_array_foreach(conv, i, turn) {
		json_t *v = json_object_get(turn, "value");
		if (!json_is_string(v))
			continue;
		if (scratch->len)
			buf_append(scratch, " ", 1);
		buf_append(scratch, json_string_value(v), json_string_length(v));
	}
	buf_append(scratch, "", 0);
	json_decref(o);
	*n = scratch->len;
	return (const char *)scratch->data;
}

void sample_json_set(sample *s, const char *key, json_t *v)
{
	member *j = sample_get(s, "json");
	json_t *o = j ? json_loadb((const char *)j->data, j->size, 0, NULL) : json_object();
	if (!json_is_object(o)) {
		json_decref(o);
		json_decref(v);
		return; /* not ours to repair: clean and ingest report bad KEY.json */
	}
	json_object_set_new(o, key, v);
	char *js = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
	if (js) {
		sample_put(s, "json", js, strlen(js));
		free(js);
	}
	json_decref(o);
}
