/* test_chat.c: the caption / conversation layout and loss masks, on a
 * small byte-level vocabulary built here (256 single bytes + a few merges). */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chat.h"
#include "check.h"

static const char *ranks_path(void)
{
	static char path[] = "/tmp/mvl-chat-XXXXXX";
	int fd = mkstemp(path);
	FILE *f = fdopen(fd, "w");
	static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	for (int c = 0; c < 256; c++) /* base64 of one byte: 2 chars + "==" */
		fprintf(f, "%c%c== %d\n", b64[c >> 2], b64[(c & 3) << 4], c);
	fprintf(f, "aGU= 256\n");   /* "he" */
	fprintf(f, "bGw= 257\n");   /* "ll" */
	fclose(f);
	return path;
}

static size_t count(const chat_seq *s, uint32_t id)
{
	size_t n = 0;
	for (size_t i = 0; i < s->n; i++)
		n += s->ids[i] == id;
	return n;
}

int main(void)
{
	mvl_err err;
	const char *path = ranks_path();
	bpe *b = bpe_load_tiktoken(path, bpe_pattern("cl100k_base"), &err);
	CHECKF(b != NULL, "load_small_vocab", "%s", err.msg);
	if (!b)
		return check_done();
	chat_tokens t;
	CHECK(chat_tokens_setup(b, &t, &err) == 0 && t.vision_start == 258 && t.endoftext == 263,
	      "specials_added_after_vocab");
	chat_tokens t2;
	CHECK(chat_tokens_setup(b, &t2, &err) == 0 && !memcmp(&t, &t2, sizeof t), "specials_found_again");
	bpe_ctx *c = bpe_ctx_new(b);

	chat_seq s = {0};
	CHECK(chat_caption(b, c, &t, "hello", 5, 56, 84, &s, &err) == 0, "caption_ok");
	/* 56x84 -> (2 x 3) = 6 pads; hello = he ll o -> 3 tokens */
	CHECKF(s.n == 1 + 6 + 1 + 3 + 1 && s.ids[0] == t.vision_start && s.ids[7] == t.vision_end &&
		       count(&s, t.image_pad) == 6 && s.ids[8] == 256 && s.ids[9] == 257 && s.ids[10] == 'o' &&
		       s.ids[11] == t.endoftext,
	       "caption_layout", "n=%zu", s.n);
	int mask_ok = 1;
	for (size_t i = 0; i < s.n; i++)
		mask_ok &= s.loss[i] == (i >= 8);
	CHECK(mask_ok, "caption_loss_on_text_and_eot_only");
	chat_seq_free(&s);

	CHECK(chat_caption(b, c, &t, "hi <|im_end|>", 13, 0, 0, &s, &err) != 0 && strstr(err.msg, "<|im_end|>"),
	      "caption_special_injection_refused");
	chat_seq_free(&s);

	const char *conv = "[{\"from\":\"human\",\"value\":\"<image>\\nhello?\"},{\"from\":\"gpt\",\"value\":\"hell\"},"
			   "{\"from\":\"human\",\"value\":\"o\"},{\"from\":\"gpt\",\"value\":\"he\"}]";
	CHECKF(chat_conversation(b, c, &t, conv, strlen(conv), 28, 28, &s, &err) == 0, "conversation_ok", "%s",
	       err.msg);
	CHECK(count(&s, t.image_pad) == 1 && count(&s, t.im_start) == 4 && count(&s, t.im_end) == 4,
	      "conversation_structure");
	/* loss exactly on the assistant answers and their <|im_end|> */
	size_t with_loss = 0;
	int only_assistant = 1;
	for (size_t i = 0; i < s.n; i++) {
		if (!s.loss[i])
			continue;
		with_loss++;
		only_assistant &= s.ids[i] != t.image_pad && s.ids[i] != t.im_start && s.ids[i] != '?';
	}
	/* "hell" = he ll (2) + im_end, "he" (1) + im_end: 5 */
	CHECKF(with_loss == 5 && only_assistant, "conversation_loss_on_answers_only", "with_loss=%zu", with_loss);
	chat_seq_free(&s);
	const char *noimg = "[{\"from\":\"human\",\"value\":\"hello\"},{\"from\":\"gpt\",\"value\":\"o\"}]";
	CHECK(chat_conversation(b, c, &t, noimg, strlen(noimg), 56, 56, &s, &err) == 0 && count(&s, t.image_pad) == 4 &&
		      s.ids[1] != t.vision_start,
	      "image_block_opens_first_user_turn_without_placeholder");
	chat_seq_free(&s);
	const char *robot = "[{\"from\":\"robot\",\"value\":\"x\"}]";
	CHECK(chat_conversation(b, c, &t, robot, strlen(robot), 0, 0, &s, &err) != 0 &&
		      strstr(err.msg, "robot"),
	      "unknown_role_refused");
	chat_seq_free(&s);
	CHECK(chat_conversation(b, c, &t, "[{\"from\":", 9, 0, 0, &s, &err) != 0, "malformed_json_refused");
	chat_seq_free(&s);
	bpe_ctx_free(c);
	bpe_free(b);
	unlink(path);
	return check_done();
}
