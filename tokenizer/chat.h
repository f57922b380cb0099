/* chat.h: the model's text layout: special tokens, image pads, and which
 * positions carry loss.  The packer turns every sample into ids with this.
 *
 * Caption (pre-training, warm-up):
 *   <|vision_start|> N x <|image_pad|> <|vision_end|> CAPTION <|endoftext|>
 *   loss on CAPTION and <|endoftext|>.
 * Conversation (SFT, LLaVA "conversations": from human/gpt):
 *   <|im_start|>user\n ... <|im_end|>\n<|im_start|>assistant\n ANSWER <|im_end|>\n
 *   the image block replaces the "<image>" placeholder (or opens the first
 *   user turn when there is none); loss on ANSWER and its <|im_end|> only.
 * N = (H / 28) * (W / 28) for an image resized to H x W (multiples of 28):
 * 14-pixel patches, merged 2 x 2 into one LLM token.
 */
#ifndef MVL_CHAT_H
#define MVL_CHAT_H

#include <stddef.h>
#include <stdint.h>

#include "bpe.h"

typedef struct chat_tokens {
	uint32_t vision_start, image_pad, vision_end, im_start, im_end, endoftext;
} chat_tokens;

/* chat_tokens_setup() : finds the six special tokens in b, adding those it
 * lacks at the next free ids (so any base tokenizer can carry them). */
int chat_tokens_setup(bpe *b, chat_tokens *t, mvl_err *err);

typedef struct chat_seq {
	uint32_t *ids;
	uint8_t *loss; /* 1 where the next-token loss counts */
	size_t n, cap;
} chat_seq;
void chat_seq_free(chat_seq *s);

/* image_tokens() : LLM tokens of an h x w image (multiples of 28). */
static inline size_t image_tokens(int h, int w)
{
	return (size_t)(h / 28) * (size_t)(w / 28);
}

/* chat_caption() : appends a caption sample (img_h == 0: text only, no
 * image block).  @return 0 or -1 (a special token inside the caption). */
int chat_caption(const bpe *b, bpe_ctx *c, const chat_tokens *t, const char *caption, size_t n,
		 int img_h, int img_w, chat_seq *out, mvl_err *err);

/* chat_conversation() : appends the turns of a LLaVA conversations JSON
 * array (text of KEY.json's "conversations").  Roles: human/user ->
 * user, gpt/assistant -> assistant, system -> system.  @return 0 or -1
 * (malformed JSON, an unknown role, a special token in a turn). */
int chat_conversation(const bpe *b, bpe_ctx *c, const chat_tokens *t, const char *json, size_t n,
		      int img_h, int img_w, chat_seq *out, mvl_err *err);

/* chat_question() : the prompt a model answers: one user turn holding the
 * question (the image block opens it when img_h > 0), then
 * "<|im_start|>assistant\n"; nothing carries loss.  @return 0 or -1. */
int chat_question(const bpe *b, bpe_ctx *c, const chat_tokens *t, const char *question, int img_h, int img_w,
		  chat_seq *out, mvl_err *err);

#endif
