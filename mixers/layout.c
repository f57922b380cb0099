/* layout.c: sample -> chat ids, loss mask and image size. */
#include "layout.h"

#include <string.h>

#include <jansson.h>

#include "image.h"
#include "recipe.h"

/* the "conversations" array of KEY.json as JSON text, or NULL */
static const char *conversations(const sample *s, buf *scratch, size_t *n, int *bad)
{
	member *j = sample_get(s, "json");
	*bad = 0;
	if (!j || !memmem(j->data, j->size, "\"conversations\"", 15))
		return NULL;
	json_error_t je;
	json_t *root = json_loadb((const char *)j->data, j->size, 0, &je);
	json_t *conv = json_object_get(root, "conversations");
	if (!json_is_array(conv)) {
		*bad = 1;
		json_decref(root);
		return NULL;
	}
	char *text = json_dumps(conv, JSON_COMPACT);
	json_decref(root);
	if (!text) {
		*bad = 1;
		return NULL;
	}
	scratch->len = 0;
	buf_append(scratch, text, strlen(text));
	free(text);
	*n = scratch->len;
	return (const char *)scratch->data;
}

static int image_size(const layout *L, const member *m, int *h, int *w, reject_info *rj)
{
	img_info info;
	mvl_err err;
	if (img_probe(m->data, m->size, &info, &err) != 0)
		return reject_set(rj, "bad_image", "%s: %s", m->ext, err.msg);
	int sh = info.height, sw = info.width;
	if (info.orientation >= 5) { /* transposing orientations swap the sides */
		sh = info.width;
		sw = info.height;
	}
	if (smart_resize(sh, sw, 28, L->min_pixels, L->max_pixels, h, w, &err) != 0)
		return reject_set(rj, "bad_image", "%s %dx%d: %s", m->ext, sw, sh, err.msg);
	return 0;
}

/* a sample that trains nothing (an empty conversation, a user turn
 * alone) is rejected, not packed */
static int targets(const chat_seq *s, reject_info *rj)
{
	for (size_t i = 1; i < s->n; i++)
		if (s->loss[i])
			return 0;
	return reject_set(rj, "no_target", s->n ? "no token carries loss (no assistant turn?)" : "no tokens");
}

int layout_sample(layout *L, const sample *s, int kind, chat_seq *out, const member **img, int *h, int *w,
		  reject_info *rj)
{
	out->n = 0;
	*h = *w = 0;
	*img = kind == SRC_TEXT ? NULL : sample_image(s, NULL);
	if (*img && image_size(L, *img, h, w, rj))
		return 1;
	mvl_err err;
	size_t n = 0;
	int bad = 0;
	const char *conv = kind == SRC_CAPTIONS || kind == SRC_TEXT ? NULL : conversations(s, &L->scratch, &n, &bad);
	if (bad)
		return reject_set(rj, "bad_conversation", "KEY.json's \"conversations\" is not a JSON array of turns");
	int rc;
	if (conv) {
		rc = chat_conversation(L->b, L->c, L->t, conv, n, *h, *w, out, &err);
		if (rc)
			return reject_set(rj, strstr(err.msg, "special token") ? "special_token" : "bad_conversation", "%s",
					  err.msg);
		/* the image goes in the first user turn: without one it has no place */
		size_t pads = 0;
		for (size_t i = 0; *img && i < out->n; i++)
			pads += out->ids[i] == L->t->image_pad;
		if (*img && pads != image_tokens(*h, *w))
			return reject_set(rj, "bad_conversation", "the image has no place: no user turn");
		return targets(out, rj);
	}
	if (kind == SRC_CONVERSATIONS)
		return reject_set(rj, "no_text", "no \"conversations\" in KEY.json");
	member *txt = sample_get(s, "txt");
	if (!txt || !txt->size)
		return reject_set(rj, "no_text", txt ? "empty KEY.txt" : "no KEY.txt");
	rc = chat_caption(L->b, L->c, L->t, (const char *)txt->data, txt->size, *h, *w, out, &err);
	if (rc)
		return reject_set(rj, "special_token", "%s", err.msg);
	return targets(out, rj);
}
