/* layout.h: what one sample becomes in a training sequence.
 *
 * The chat template (tokenizer/chat.h) gives ids and the loss mask; the
 * image's size is smart_resize() of its stored size (EXIF orientation
 * applied) within the stage's min/max pixels, and decides how many image
 * pad tokens it takes.  `mvl mix` weighs sources with these token counts
 * and `mvl pack` builds sequences with them, so both always agree.
 *
 * The layout follows the sample's content: KEY.json "conversations" -> a
 * conversation; else KEY.txt -> a caption; with the first image member,
 * if any (one image per sample).  A text source (SRC_TEXT) ignores images.
 */
#ifndef MVL_LAYOUT_H
#define MVL_LAYOUT_H

#include <stdint.h>

#include "bpe.h"
#include "chat.h"
#include "rejects.h"
#include "sample.h"

typedef struct layout {
	const bpe *b;
	bpe_ctx *c;            /* this thread's */
	const chat_tokens *t;
	uint64_t min_pixels, max_pixels;
	buf scratch;
} layout;

/* layout_sample() : out is cleared and filled; *img gets the image member
 * (NULL when none) and *h x *w its size in the sequence (0 x 0 when none).
 * kind is a recipe SRC_* or -1 (from the content).
 * @return 0, or 1 with *rj: no_text, bad_conversation (malformed, or an
 * image without a user turn to hold it), special_token, no_target (no
 * token carries loss), bad_image (the header cannot be read or
 * smart_resize refuses it). */
int layout_sample(layout *L, const sample *s, int kind, chat_seq *out, const member **img, int *h, int *w,
		  reject_info *rj);

#endif
