/* chat.c: captions and conversations into ids and loss masks. */
#include "chat.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static const char *const names[6] = {"<|vision_start|>", "<|image_pad|>", "<|vision_end|>",
				      "<|im_start|>", "<|im_end|>", "<|endoftext|>"};

int chat_tokens_setup(bpe *b, chat_tokens *t, mvl_err *err)
{
	uint32_t *slot[6] = {&t->vision_start, &t->image_pad, &t->vision_end, &t->im_start, &t->im_end,
			     &t->endoftext};
	for (int i = 0; i < 6; i++) {
		int64_t id = bpe_special_id(b, names[i]);
		if (id < 0) {
			id = (int64_t)bpe_vocab_size(b);
			if (bpe_add_special(b, names[i], (uint32_t)id, err) != 0)
				return -1;
		}
		*slot[i] = (uint32_t)id;
	}
	return 0;
}

void chat_seq_free(chat_seq *s)
{
	free(s->ids);
	free(s->loss);
	memset(s, 0, sizeof *s);
}

static void push(chat_seq *s, uint32_t id, uint8_t loss)
{
	if (s->n == s->cap) {
		s->cap = s->cap ? s->cap * 2 : 256;
		s->ids = xrealloc(s->ids, s->cap * sizeof *s->ids);
		s->loss = xrealloc(s->loss, s->cap);
	}
	s->ids[s->n] = id;
	s->loss[s->n++] = loss;
}

/* ordinary text: special tokens in data are refused (web text must not
 * inject structure) */
static int text(const bpe *b, bpe_ctx *c, const char *s, size_t n, uint8_t loss, chat_seq *out, mvl_err *err)
{
	uint32_t *ids = NULL;
	size_t cap = 0, len = 0;
	int rc = bpe_encode(b, c, s, n, BPE_SPECIAL_DISALLOW, &ids, &cap, &len, err);
	for (size_t i = 0; rc == 0 && i < len; i++)
		push(out, ids[i], loss);
	free(ids);
	return rc;
}

static void image_block(const chat_tokens *t, int h, int w, chat_seq *out)
{
	push(out, t->vision_start, 0);
	for (size_t i = 0, n = image_tokens(h, w); i < n; i++)
		push(out, t->image_pad, 0);
	push(out, t->vision_end, 0);
}

int chat_caption(const bpe *b, bpe_ctx *c, const chat_tokens *t, const char *caption, size_t n,
		 int img_h, int img_w, chat_seq *out, mvl_err *err)
{
	if (img_h > 0)
		image_block(t, img_h, img_w, out);
	if (text(b, c, caption, n, 1, out, err) != 0)
		return -1;
	push(out, t->endoftext, 1);
	return 0;
}

int chat_conversation(const bpe *b, bpe_ctx *c, const chat_tokens *t, const char *json, size_t n,
		      int img_h, int img_w, chat_seq *out, mvl_err *err)
{
	json_error_t je;
	json_t *conv = json_loadb(json, n, 0, &je);
	if (!json_is_array(conv)) {
		json_decref(conv);
		return mvl_errf(err, "conversations: %s", conv ? "not an array" : je.text);
	}
	int rc = 0, placed = img_h <= 0; /* the image block goes in once */
	size_t i;
	json_t *turn;
	json_array_foreach(conv, i, turn) {
		const char *from = json_string_value(json_object_get(turn, "from"));
		if (!from)
			from = json_string_value(json_object_get(turn, "role"));
		json_t *v = json_object_get(turn, "value");
		if (!v)
			v = json_object_get(turn, "content");
		if (!from || !json_is_string(v)) {
			rc = mvl_errf(err, "conversations[%zu]: needs from/role and a string value", i);
			break;
		}
		const char *role;
		int assistant = 0;
		if (!strcmp(from, "human") || !strcmp(from, "user"))
			role = "user";
		else if (!strcmp(from, "gpt") || !strcmp(from, "assistant")) {
			role = "assistant";
			assistant = 1;
		} else if (!strcmp(from, "system"))
			role = "system";
		else {
			rc = mvl_errf(err, "conversations[%zu]: unknown role '%s'", i, from);
			break;
		}
		push(out, t->im_start, 0);
		if ((rc = text(b, c, role, strlen(role), 0, out, err)) != 0 ||
		    (rc = text(b, c, "\n", 1, 0, out, err)) != 0)
			break;
		const char *s = json_string_value(v);
		size_t len = json_string_length(v);
		int user = !strcmp(role, "user"); /* the image opens a user turn, never a system turn */
		const char *ph = !placed && user ? memmem(s, len, "<image>", 7) : NULL;
		if (!placed && user && !ph) {
			image_block(t, img_h, img_w, out);
			placed = 1;
		}
		if (ph) {
			if ((rc = text(b, c, s, (size_t)(ph - s), 0, out, err)) != 0)
				break;
			image_block(t, img_h, img_w, out);
			placed = 1;
			size_t skip = (size_t)(ph - s) + 7;
			if (skip < len && s[skip] == '\n')
				skip++; /* LLaVA writes "<image>\n" */
			s += skip;
			len -= skip;
		}
		if ((rc = text(b, c, s, len, (uint8_t)assistant, out, err)) != 0)
			break;
		push(out, t->im_end, (uint8_t)assistant);
		if ((rc = text(b, c, "\n", 1, 0, out, err)) != 0)
			break;
	}
	json_decref(conv);
	return rc;
}

int chat_question(const bpe *b, bpe_ctx *c, const chat_tokens *t, const char *question, int img_h, int img_w,
		  chat_seq *out, mvl_err *err)
{
	json_t *conv = json_pack("[{s:s,s:s}]", "from", "human", "value", question);
	char *js = json_dumps(conv, JSON_COMPACT);
	json_decref(conv);
	int rc = chat_conversation(b, c, t, js, strlen(js), img_h, img_w, out, err);
	free(js);
	if (rc != 0)
		return -1;
	push(out, t->im_start, 0);
	return text(b, c, "assistant\n", 10, 0, out, err);
}
