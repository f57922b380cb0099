/* test_bpe_train.c: BPE training (tokenizer/bpe_train.h) against the
 * tiktoken-compatible encoder (tokenizer/bpe.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bpe.h"
#include "bpe_train.h"
#include "check.h"

static char dir[256];

static const char *path(const char *name)
{
	static char p[4][512];
	static int k;
	k = (k + 1) % 4;
	snprintf(p[k], sizeof p[k], "%s/%s", dir, name);
	return p[k];
}

static bpe_trainer *trained(const char *pattern, const char *text, size_t n, int vocab, int minf,
			    const char *out)
{
	mvl_err err = {{0}};
	bpe_trainer *t = bpe_trainer_new(pattern, &err);
	if (!t) {
		printf("# %s\n", err.msg);
		return NULL;
	}
	bpe_trainer_add(t, text, n);
	if (bpe_trainer_train(t, vocab, minf, out, &err) != 0) {
		printf("# %s\n", err.msg);
		bpe_trainer_free(t);
		return NULL;
	}
	return t;
}

static int tok_is(const bpe_trainer *t, uint32_t r, const char *s)
{
	size_t n;
	const uint8_t *p = bpe_trainer_token(t, r, &n);
	return p && n == strlen(s) && !memcmp(p, s, n);
}

static int same_file(const char *a, const char *b)
{
	buf x = {0}, y = {0};
	mvl_err err;
	int ok = read_file(a, 1u << 30, &x, &err) == 0 && read_file(b, 1u << 30, &y, &err) == 0 &&
		 x.len == y.len && !memcmp(x.data, y.data, x.len);
	buf_free(&x);
	buf_free(&y);
	return ok;
}

/* The trained file loads; bpe_encode_ordinary gives the trainer's own ids
 * on text; the ids decode back to text.  @return 0 when all hold, else a
 * failure code (printed by the caller). */
static int consistent(bpe_trainer *t, const char *file, const char *pattern, const char *text,
		      size_t n, char *why, size_t whyn)
{
	mvl_err err = {{0}};
	bpe *b = bpe_load_tiktoken(file, pattern, &err);
	if (!b) {
		snprintf(why, whyn, "load: %.200s", err.msg);
		return 1;
	}
	int rc = 0;
	bpe_ctx *c = bpe_ctx_new(b);
	uint32_t *x = NULL, *y = NULL;
	size_t xc = 0, xl = 0, yc = 0, yl = 0;
	bpe_encode_ordinary(b, c, text, n, &x, &xc, &xl);
	bpe_trainer_encode(t, text, n, &y, &yc, &yl);
	if (bpe_vocab_size(b) != bpe_trainer_ntokens(t)) {
		snprintf(why, whyn, "vocab %zu vs %zu", bpe_vocab_size(b), bpe_trainer_ntokens(t));
		rc = 2;
	} else if (xl != yl || memcmp(x, y, xl * sizeof *x)) {
		size_t i = 0;
		while (i < xl && i < yl && x[i] == y[i])
			i++;
		snprintf(why, whyn, "ids differ at %zu of %zu/%zu (%u vs %u)", i, xl, yl,
			 i < xl ? x[i] : 0, i < yl ? y[i] : 0);
		rc = 3;
	} else {
		buf out = {0};
		if (bpe_decode(b, x, xl, &out, &err) != 0 || out.len != n || memcmp(out.data, text, n)) {
			snprintf(why, whyn, "decode does not round trip");
			rc = 4;
		}
		buf_free(&out);
	}
	free(x);
	free(y);
	bpe_ctx_free(c);
	bpe_free(b);
	return rc;
}

/* A naive re-application of the learned merges, independent of both
 * encoders: join the adjacent pair whose bytes have the lowest rank,
 * leftmost, until none has one (tiktoken's definition). */
static size_t naive(const bpe_trainer *t, const uint8_t *p, size_t n, uint32_t *out)
{
	size_t m = n, st[512 + 1];
	if (n > 512)
		return 0;
	for (size_t i = 0; i <= n; i++)
		st[i] = i;
	for (;;) {
		uint32_t best = UINT32_MAX;
		size_t bi = 0;
		for (size_t i = 0; i + 1 < m; i++)
			for (uint32_t r = 256; r < bpe_trainer_ntokens(t) && r < best; r++) {
				size_t tl;
				const uint8_t *tp = bpe_trainer_token(t, r, &tl);
				if (tl == st[i + 2] - st[i] && !memcmp(tp, p + st[i], tl)) {
					best = r;
					bi = i;
				}
			}
		if (best == UINT32_MAX)
			break;
		memmove(st + bi + 1, st + bi + 2, (m - bi - 1) * sizeof *st);
		m--;
	}
	for (size_t i = 0; i < m; i++) {
		uint32_t r = 0;
		for (; r < bpe_trainer_ntokens(t); r++) {
			size_t tl;
			const uint8_t *tp = bpe_trainer_token(t, r, &tl);
			if (tl == st[i + 1] - st[i] && !memcmp(tp, p + st[i], tl))
				break;
		}
		out[i] = r;
	}
	return m;
}

int main(void)
{
	snprintf(dir, sizeof dir, "/tmp/mvl_bpe_train.%ld", (long)getpid());
	char cmd[600];
	snprintf(cmd, sizeof cmd, "mkdir -p %s", dir);
	if (system(cmd) != 0)
		return 1;
	const char *cl = bpe_pattern("cl100k_base"), *g2 = bpe_pattern("gpt2");
	mvl_err err = {{0}};
	char why[256];

	/* the classic example: one piece "aaabdaaabac".  Pairs: aa 4
	 * (overlapping occurrences count), ab 2, ...: "aa" first.  Then
	 * [aa a b d aa a b a c]: (aa,a) 2 and (a,b) 2 tie; "aaa" < "ab" in
	 * bytes, so "aaa"; then (aaa,b) 2 -> "aaab"; the rest occur once. */
	{
		const char *s = "aaabdaaabac";
		bpe_trainer *t = trained(cl, s, strlen(s), 1000, 2, path("classic.tiktoken"));
		CHECK(t, "classic: trains");
		if (t) {
			CHECKF(bpe_trainer_ntokens(t) == 259, "classic: three merges at min frequency 2",
			       "%zu tokens", bpe_trainer_ntokens(t));
			CHECK(tok_is(t, 256, "aa") && tok_is(t, 257, "aaa") && tok_is(t, 258, "aaab"),
			      "classic: merges aa, aaa, aaab in order");
			uint32_t l, r;
			uint64_t c;
			CHECK(bpe_trainer_merge(t, 256, &l, &r, &c) == 0 && l == 'a' && r == 'a' && c == 4,
			      "classic: aa from (a,a) counted 4");
			CHECK(bpe_trainer_merge(t, 258, &l, &r, &c) == 0 && l == 257 && r == 'b' && c == 2,
			      "classic: aaab from (aaa,b) counted 2");
			uint32_t *ids = NULL;
			size_t cap = 0, len = 0;
			bpe_trainer_encode(t, s, strlen(s), &ids, &cap, &len);
			CHECK(len == 5 && ids[0] == 258 && ids[1] == 'd' && ids[2] == 258 && ids[3] == 'a' &&
				      ids[4] == 'c',
			      "classic: segmentation aaab d aaab a c");
			free(ids);
			CHECKF(!consistent(t, path("classic.tiktoken"), cl, s, strlen(s), why, sizeof why),
			       "classic: encoder agrees", "%s", why);
			bpe_trainer_free(t);
		}
		/* min frequency 1 keeps merging until one token is left */
		t = trained(cl, s, strlen(s), 1000, 1, NULL);
		CHECKF(t && bpe_trainer_ntokens(t) == 256 + 7, "classic: min frequency 1 merges to one token",
		       "%zu", t ? bpe_trainer_ntokens(t) : 0);
		if (t) {
			size_t n;
			const uint8_t *p = bpe_trainer_token(t, 256 + 6, &n);
			CHECK(p && n == 11 && !memcmp(p, s, 11), "classic: last token is the whole piece");
		}
		bpe_trainer_free(t);
		/* vocab size caps it */
		t = trained(cl, s, strlen(s), 257, 1, NULL);
		CHECK(t && bpe_trainer_ntokens(t) == 257 && tok_is(t, 256, "aa"), "classic: vocab 257 = one merge");
		bpe_trainer_free(t);
	}

	/* a multilingual corpus */
	buf corpus = {0};
	{
		static const char *lines[] = {
			"The quick brown fox jumps over the lazy dog. ",
			"Le renard brun rapide saute par-dessus le chien paresseux. ",
			"Der schnelle braune Fuchs springt über den faulen Hund. ",
			"Быстрая коричневая лиса прыгает через ленивую собаку. ",
			"敏捷的棕色狐狸跳过了懒狗。我们今天去公园散步吧！",
			"すばやい茶色の狐がのろまな犬を飛び越える。",
			"빠른 갈색 여우가 게으른 개를 뛰어넘는다. ",
			"الثعلب البني السريع يقفز فوق الكلب الكسول. ",
			"Η γρήγορη καφέ αλεπού πηδάει πάνω από τον τεμπέλη σκύλο. ",
			"  indented\tcode(x) { return x*2; }\r\n",
			"numbers 1234567 and 3.14159, emoji 🦊🐶👍🏽 and don't we'll I'M\n",
			"   \n\n  trailing spaces   \n",
		};
		unsigned seed = 12345;
		for (int k = 0; k < 600; k++) {
			seed = seed * 1103515245u + 12345u;
			const char *l = lines[(seed >> 16) % (sizeof lines / sizeof *lines)];
			buf_append(&corpus, l, strlen(l));
			if (k % 7 == 0)
				buf_printf(&corpus, "item%u ", seed % 1000);
		}
	}
	const char *txt = (const char *)corpus.data;
	size_t tn = corpus.len;
	{
		bpe_trainer *a = trained(cl, txt, tn, 600, 2, path("m1.tiktoken"));
		bpe_trainer *b = trained(cl, txt, tn, 600, 2, path("m2.tiktoken"));
		CHECK(a && b, "multilingual: trains");
		CHECK(same_file(path("m1.tiktoken"), path("m2.tiktoken")), "determinism: same input, same file");
		CHECKF(a && bpe_trainer_ntokens(a) == 600, "vocab size respected", "%zu",
		       a ? bpe_trainer_ntokens(a) : 0);
		if (a) {
			CHECKF(!consistent(a, path("m1.tiktoken"), cl, txt, tn, why, sizeof why),
			       "multilingual: loads, encoder gives trainer's ids, round trips", "%s", why);
			/* text the trainer has not seen */
			const char *u = "Über-schnelle Füchse und faule Hunde! 狐狸很快。 xyzzy 99999";
			CHECKF(!consistent(a, path("m1.tiktoken"), cl, u, strlen(u), why, sizeof why),
			       "multilingual: unseen text agrees too", "%s", why);
			/* the merges, re-applied naively, give the same parts */
			int ok = 1;
			const char *pieces[] = {" quick", " paresseux", "敏捷的棕色狐狸跳过了懒狗", " ленивую", "  "};
			for (size_t k = 0; k < sizeof pieces / sizeof *pieces && ok; k++) {
				uint32_t want[512], *got = NULL;
				size_t cap = 0, len = 0;
				size_t m = naive(a, (const uint8_t *)pieces[k], strlen(pieces[k]), want);
				bpe_trainer_encode(a, pieces[k], strlen(pieces[k]), &got, &cap, &len);
				ok = len == m && !memcmp(got, want, m * sizeof *want);
				if (!ok)
					printf("# piece '%s': %zu vs %zu parts\n", pieces[k], len, m);
				free(got);
			}
			CHECK(ok, "multilingual: naive re-application of the merges agrees");
			/* no two ranks share bytes (the loader would refuse anyway) */
			int uniq = 1;
			for (uint32_t r = 256; r < bpe_trainer_ntokens(a) && uniq; r++) {
				size_t n;
				const uint8_t *p = bpe_trainer_token(a, r, &n);
				uint32_t l, rr;
				uint64_t c;
				size_t ln, rn;
				bpe_trainer_merge(a, r, &l, &rr, &c);
				const uint8_t *lp = bpe_trainer_token(a, l, &ln), *rp = bpe_trainer_token(a, rr, &rn);
				uniq = l < r && rr < r && c >= 2 && ln + rn == n && !memcmp(p, lp, ln) &&
				       !memcmp(p + ln, rp, rn);
			}
			CHECK(uniq, "merges: each token is its pair's bytes, pairs earlier, count >= min");
		}
		bpe_trainer_free(a);
		bpe_trainer_free(b);
	}

	/* min frequency: with a high threshold every merge counted at least it */
	{
		bpe_trainer *t = trained(cl, txt, tn, 5000, 150, path("minf.tiktoken"));
		int ok = t != NULL && bpe_trainer_ntokens(t) < 5000;
		for (uint32_t r = 256; t && r < bpe_trainer_ntokens(t); r++) {
			uint32_t l, rr;
			uint64_t c;
			bpe_trainer_merge(t, r, &l, &rr, &c);
			ok &= c >= 150;
		}
		CHECKF(ok, "min frequency respected", "%zu tokens", t ? bpe_trainer_ntokens(t) : 0);
		if (t)
			CHECKF(!consistent(t, path("minf.tiktoken"), cl, txt, tn, why, sizeof why),
			       "min frequency: encoder agrees", "%s", why);
		bpe_trainer_free(t);
	}

	/* the order pieces arrive in does not matter; absorb adds counts */
	{
		bpe_trainer *x = bpe_trainer_new(cl, &err), *y = bpe_trainer_new(cl, &err);
		bpe_trainer_add(x, txt, tn / 2);
		bpe_trainer_add(y, txt + tn / 2, tn - tn / 2);
		bpe_trainer_absorb(y, x);
		int ok = bpe_trainer_train(y, 600, 2, path("abs.tiktoken"), &err) == 0;
		bpe_trainer *z = bpe_trainer_new(cl, &err);
		bpe_trainer_add(z, txt, tn / 2);
		bpe_trainer_add(z, txt + tn / 2, tn - tn / 2);
		ok &= bpe_trainer_train(z, 600, 2, path("abs2.tiktoken"), &err) == 0;
		CHECK(ok && same_file(path("abs.tiktoken"), path("abs2.tiktoken")),
		      "determinism: absorbed per-thread counts give the same file");
		bpe_trainer_free(x);
		bpe_trainer_free(y);
		bpe_trainer_free(z);
	}

	/* invalid UTF-8 and random bytes: pieces split as the encoder does */
	{
		buf r = {0};
		unsigned seed = 7;
		for (int k = 0; k < 20000; k++) {
			seed = seed * 1103515245u + 12345u;
			uint8_t c = (uint8_t)(seed >> 16);
			if (k % 3 == 0)
				c = "ab \xff\xc3\xe4\x80"[(seed >> 8) % 7];
			buf_append(&r, &c, 1);
		}
		static const char tail[] = "caf\xc3\xa9 \xc3( \xed\xa0\x80 \xf4\x90\x80\x80 end";
		buf_append(&r, tail, sizeof tail - 1);
		bpe_trainer *t = trained(cl, (const char *)r.data, r.len, 1200, 1, path("bad.tiktoken"));
		CHECK(t, "invalid UTF-8: trains");
		if (t)
			CHECKF(!consistent(t, path("bad.tiktoken"), cl, (const char *)r.data, r.len, why, sizeof why),
			       "invalid UTF-8: encoder agrees, round trips", "%s", why);
		bpe_trainer_free(t);
		/* and with gpt2's pattern */
		t = trained(g2, (const char *)r.data, r.len, 700, 1, path("bad2.tiktoken"));
		if (t)
			CHECKF(!consistent(t, path("bad2.tiktoken"), g2, txt, tn, why, sizeof why),
			       "gpt2 pattern: unseen multilingual text agrees", "%s", why);
		else
			CHECK(0, "gpt2 pattern: trains");
		bpe_trainer_free(t);
		buf_free(&r);
	}

	/* a long piece without boundaries (the cascade path, many merges in one word) */
	{
		buf r = {0};
		for (int k = 0; k < 5000; k++)
			buf_append(&r, k % 5 ? "a" : "b", 1);
		bpe_trainer *t = trained(cl, (const char *)r.data, r.len, 400, 1, path("long.tiktoken"));
		if (t)
			CHECKF(!consistent(t, path("long.tiktoken"), cl, (const char *)r.data, r.len, why, sizeof why),
			       "long piece: encoder agrees", "%s", why);
		else
			CHECK(0, "long piece: trains");
		bpe_trainer_free(t);
		buf_free(&r);
	}

	/* errors */
	{
		bpe_trainer *t = bpe_trainer_new("(unclosed", &err);
		CHECK(!t && strstr(err.msg, "pattern"), "bad pattern: error");
		t = bpe_trainer_new(cl, &err);
		CHECK(bpe_trainer_train(t, 100, 1, NULL, &err) != 0 && strstr(err.msg, "256"),
		      "vocab below 256: error");
		bpe_trainer_free(t);
		t = bpe_trainer_new(cl, &err);
		CHECK(bpe_trainer_train(t, 300, 0, NULL, &err) != 0, "min frequency 0: error");
		bpe_trainer_free(t);
		t = bpe_trainer_new(cl, &err);
		CHECK(bpe_trainer_train(t, 300, 1, "/nonexistent/dir/x.tiktoken", &err) != 0 &&
			      strstr(err.msg, "/nonexistent"),
		      "unwritable output: error");
		bpe_trainer_free(t);
		/* empty input: just the bytes */
		t = trained(cl, "", 0, 1000, 1, path("empty.tiktoken"));
		CHECK(t && bpe_trainer_ntokens(t) == 256, "empty input: the 256 bytes");
		if (t)
			CHECKF(!consistent(t, path("empty.tiktoken"), cl, txt, tn, why, sizeof why),
			       "empty input: byte vocabulary loads and agrees", "%s", why);
		bpe_trainer_free(t);
	}

	buf_free(&corpus);
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	if (system(cmd) != 0)
		return 1;
	return check_done();
}
