/* bpe.c: tiktoken-compatible byte-level BPE encode / decode. */
#include "bpe.h"
#include "pretok.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <jansson.h>
#include <unicode/unorm2.h>
#include <unicode/ustring.h>
#include <xxhash.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

enum { NO_RANK = UINT32_MAX, SMALL_PIECE = 64 };

/* One open-addressing table maps token bytes to ids.  Lookups dominate
 * encoding (every candidate merge is one), and most are of short strings,
 * so a token of at most 8 bytes is stored packed in its slot: a lookup is
 * one cache line, no hash function, no compare against the pool.  Longer
 * tokens are keyed by XXH3 and confirmed against the pool. */
typedef struct slot {
	uint64_t key; /* n <= 8: the bytes, packed (pack()); else XXH3 */
	uint32_t id;  /* NO_RANK: empty */
	uint32_t n;   /* byte length */
} slot;

struct bpe {
	buf pool;           /* token bytes */
	uint32_t *off, *len;/* by id */
	uint32_t *rank;     /* by id: merge priority; NULL: the id is the rank
			     * (tiktoken files); set for tokenizer.json */
	uint32_t nid;       /* ids in use (max id + 1) */
	uint32_t idcap;     /* ids allocated */
	slot *t;            /* bytes -> id */
	uint32_t *rank2;    /* [b0 << 8 | b1]: rank of the two-byte token, or
			     * NO_RANK: every merge starts with these */
	size_t cap, n;
	pcre2_code *re;
	const UNormalizer2 *norm; /* tokenizer.json's NFC/NFD/NFKC/NFKD, or NULL */
	pretok *pt;         /* the same pattern without the regex engine, when
			     * it is gpt2's or cl100k's (pretok.h) */
	struct { char *text; uint32_t id; } *special;
	int nspecial;
};

/* Per-thread cache of merged pieces: words repeat (Zipf), and a repeated
 * piece that is not one token costs a full merge otherwise.  Entries hold
 * the piece's bytes, so a hit is exact, never a hash guess. */
enum { CACHE_SLOTS = 1 << 14, CACHE_BYTES = 30, CACHE_IDS = 8 };
typedef struct cache_ent {
	uint64_t h;
	uint8_t len, nids;
	uint8_t bytes[CACHE_BYTES];
	uint32_t ids[CACHE_IDS];
} cache_ent;

struct bpe_ctx {
	pcre2_match_data *md;
	cache_ent *cache;
	/* normalizer scratch */
	UChar *u16, *u16n;
	size_t u16cap, u16ncap;
	buf normed;
	/* merge scratch */
	uint32_t *start, *rank;
	size_t cap;
	uint64_t *heap;
	size_t hcap;
	uint32_t *next, *prev, *prank;
};

/* ---------------------------------------------------------------------- */
/* the patterns */

/* tiktoken's patterns are Rust regexes, where \s is Unicode White_Space;
 * PCRE2's \s (with UCP) leaves out U+0085 and differs elsewhere, so \s and
 * \S are spelled out as White_Space before compiling. */
#define WS_LIST "\\t\\n\\x0B\\f\\r\\x20\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"

static const struct { const char *name, *pattern; } patterns[] = {
	{"gpt2", "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"},
	{"r50k_base", "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"},
	{"cl100k_base", "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
	{"o200k_base", "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
		       "|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
		       "|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
};

/* tiktoken's special tokens per encoding */
static const struct { const char *enc, *text; uint32_t id; } specials[] = {
	{"gpt2", "<|endoftext|>", 50256},
	{"r50k_base", "<|endoftext|>", 50256},
	{"cl100k_base", "<|endoftext|>", 100257},
	{"cl100k_base", "<|fim_prefix|>", 100258},
	{"cl100k_base", "<|fim_middle|>", 100259},
	{"cl100k_base", "<|fim_suffix|>", 100260},
	{"cl100k_base", "<|endofprompt|>", 100276},
	{"o200k_base", "<|endoftext|>", 199999},
	{"o200k_base", "<|endofprompt|>", 200018},
};

int bpe_add_preset_specials(bpe *b, const char *encoding, mvl_err *err)
{
	for (size_t i = 0; i < sizeof specials / sizeof specials[0]; i++)
		if (!strcmp(specials[i].enc, encoding) && bpe_add_special(b, specials[i].text, specials[i].id, err) != 0)
			return -1;
	return 0;
}

const char *bpe_pattern(const char *encoding)
{
	for (size_t i = 0; i < sizeof patterns / sizeof patterns[0]; i++)
		if (!strcmp(patterns[i].name, encoding))
			return patterns[i].pattern;
	return NULL;
}

/* Code points Unicode 15 and 16 assigned to these classes: tiktoken's Rust
 * regex has the Unicode 16 tables, Debian's PCRE2 10.42 Unicode 14, and a
 * new letter or digit changes where pieces split.  Added to each \\p{..}
 * so the classes agree (scripts/tok/regex_classes.js lists tiktoken's). */
static const struct { const char *cls, *extra; } unicode16[] = {
	{"L", "\\x{1C89}-\\x{1C8A}\\x{A7CB}-\\x{A7CD}\\x{A7DA}-\\x{A7DC}\\x{105C0}-\\x{105F3}\\x{10D4A}-\\x{10D65}\\x{10D6F}-\\x{10D85}\\x{10EC2}-\\x{10EC4}\\x{1123F}-\\x{11240}\\x{11380}-\\x{11389}\\x{1138B}\\x{1138E}\\x{11390}-\\x{113B5}\\x{113B7}\\x{113D1}\\x{113D3}\\x{11BC0}-\\x{11BE0}\\x{11F02}\\x{11F04}-\\x{11F10}\\x{11F12}-\\x{11F33}\\x{1342F}\\x{13441}-\\x{13446}\\x{13460}-\\x{143FA}\\x{16100}-\\x{1611D}\\x{16D40}-\\x{16D6C}\\x{18CFF}\\x{1B132}\\x{1B155}\\x{1DF25}-\\x{1DF2A}\\x{1E030}-\\x{1E06D}\\x{1E4D0}-\\x{1E4EB}\\x{1E5D0}-\\x{1E5ED}\\x{1E5F0}\\x{2B739}\\x{2EBF0}-\\x{2EE5D}\\x{31350}-\\x{323AF}"},
	{"N", "\\x{10D40}-\\x{10D49}\\x{116D0}-\\x{116E3}\\x{11BF0}-\\x{11BF9}\\x{11F50}-\\x{11F59}\\x{16130}-\\x{16139}\\x{16D70}-\\x{16D79}\\x{1CCF0}-\\x{1CCF9}\\x{1D2C0}-\\x{1D2D3}\\x{1E4F0}-\\x{1E4F9}\\x{1E5F1}-\\x{1E5FA}"},
	{"M", "\\x{897}\\x{CF3}\\x{ECE}\\x{10D69}-\\x{10D6D}\\x{10EFC}-\\x{10EFF}\\x{11241}\\x{113B8}-\\x{113C0}\\x{113C2}\\x{113C5}\\x{113C7}-\\x{113CA}\\x{113CC}-\\x{113D0}\\x{113D2}\\x{113E1}-\\x{113E2}\\x{11F00}-\\x{11F01}\\x{11F03}\\x{11F34}-\\x{11F3A}\\x{11F3E}-\\x{11F42}\\x{11F5A}\\x{13440}\\x{13447}-\\x{13455}\\x{1611E}-\\x{1612F}\\x{1E08F}\\x{1E4EC}-\\x{1E4EF}\\x{1E5EE}-\\x{1E5EF}"},
	{"Lu", "\\x{1C89}\\x{A7CB}-\\x{A7CC}\\x{A7DA}\\x{A7DC}\\x{10D50}-\\x{10D65}"},
	{"Ll", "\\x{1C8A}\\x{A7CD}\\x{A7DB}\\x{10D70}-\\x{10D85}\\x{1DF25}-\\x{1DF2A}"},
	{"Lm", "\\x{10D4E}\\x{10D6F}\\x{16D40}-\\x{16D42}\\x{16D6B}-\\x{16D6C}\\x{1E030}-\\x{1E06D}\\x{1E4EB}"},
	{"Lo", "\\x{105C0}-\\x{105F3}\\x{10D4A}-\\x{10D4D}\\x{10D4F}\\x{10EC2}-\\x{10EC4}\\x{1123F}-\\x{11240}\\x{11380}-\\x{11389}\\x{1138B}\\x{1138E}\\x{11390}-\\x{113B5}\\x{113B7}\\x{113D1}\\x{113D3}\\x{11BC0}-\\x{11BE0}\\x{11F02}\\x{11F04}-\\x{11F10}\\x{11F12}-\\x{11F33}\\x{1342F}\\x{13441}-\\x{13446}\\x{13460}-\\x{143FA}\\x{16100}-\\x{1611D}\\x{16D43}-\\x{16D6A}\\x{18CFF}\\x{1B132}\\x{1B155}\\x{1E4D0}-\\x{1E4EA}\\x{1E5D0}-\\x{1E5ED}\\x{1E5F0}\\x{2B739}\\x{2EBF0}-\\x{2EE5D}\\x{31350}-\\x{323AF}"},
};

/* Rewrites a tiktoken (Rust regex) pattern for PCRE2: \\s and \\S as
 * explicit White_Space classes, \\p{X} with its Unicode 15/16 additions. */
static void rust_whitespace(const char *p, buf *out)
{
	int in_class = 0;
	out->len = 0;
	for (size_t i = 0; p[i]; i++) {
		if (p[i] == '\\' && p[i + 1] == 'p' && p[i + 2] == '{') {
			const char *close = strchr(p + i + 3, '}');
			size_t nl = close ? (size_t)(close - (p + i + 3)) : 0;
			const char *extra = NULL;
			for (size_t k = 0; close && k < sizeof unicode16 / sizeof unicode16[0]; k++)
				if (strlen(unicode16[k].cls) == nl && !memcmp(unicode16[k].cls, p + i + 3, nl))
					extra = unicode16[k].extra;
			if (extra) {
				buf_printf(out, in_class ? "\\p{%.*s}%s" : "[\\p{%.*s}%s]", (int)nl, p + i + 3, extra);
				i += 3 + nl;
				continue;
			}
		}
		if (p[i] == '\\' && p[i + 1]) {
			char c = p[i + 1];
			if (c == 's')
				buf_printf(out, in_class ? "%s" : "[%s]", WS_LIST);
			else if (c == 'S' && !in_class)
				buf_printf(out, "[^%s]", WS_LIST);
			else
				buf_append(out, p + i, 2);
			i++;
			continue;
		}
		if (p[i] == '[' && !in_class)
			in_class = 1;
		else if (p[i] == ']' && in_class)
			in_class = 0;
		buf_append(out, p + i, 1);
	}
	buf_append(out, "", 0);
}

/* ---------------------------------------------------------------------- */
/* the table */

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "pack() assumes a little-endian machine"
#endif

/* 1..8 bytes as one word, byte k at bits 8k (little-endian loads; two
 * overlapping loads instead of a byte loop, never reading past p + n) */
static inline uint64_t pack(const uint8_t *p, size_t n)
{
	if (n >= 4) {
		uint32_t lo, hi;
		memcpy(&lo, p, 4);
		memcpy(&hi, p + n - 4, 4);
		return lo | (uint64_t)hi << (8 * (n - 4));
	}
	if (n >= 2) {
		uint16_t lo, hi;
		memcpy(&lo, p, 2);
		memcpy(&hi, p + n - 2, 2);
		return lo | (uint64_t)hi << (8 * (n - 2));
	}
	return p[0];
}

/* the slot a key starts probing at: packed words are mixed (their high
 * bytes are often zero), XXH3 hashes are used as they are */
static inline size_t home(const bpe *b, uint64_t key, size_t n)
{
	if (n <= 8) {
		key = (key ^ n << 59) * 0x9E3779B97F4A7C15ull;
		key ^= key >> 31;
	}
	return (size_t)key & (b->cap - 1);
}

static inline uint64_t key_of(const uint8_t *p, size_t n)
{
	return n <= 8 ? pack(p, n) : XXH3_64bits(p, n);
}

static inline uint32_t find(const bpe *b, const uint8_t *p, size_t n)
{
	uint64_t key = key_of(p, n);
	for (size_t i = home(b, key, n);; i = (i + 1) & (b->cap - 1)) {
		const slot *s = &b->t[i];
		if (s->id == NO_RANK)
			return NO_RANK;
		if (s->key == key && s->n == n && (n <= 8 || !memcmp(b->pool.data + b->off[s->id], p, n)))
			return s->id;
	}
}

/* the merge priority of the token with these bytes, NO_RANK if none */
static inline uint32_t rank_of(const bpe *b, const uint8_t *p, size_t n)
{
	if (n == 2)
		return b->rank2[p[0] << 8 | p[1]];
	uint32_t id = find(b, p, n);
	return (id == NO_RANK || !b->rank) ? id : b->rank[id];
}

static void insert(bpe *b, slot s)
{
	size_t i = home(b, s.key, s.n);
	while (b->t[i].id != NO_RANK)
		i = (i + 1) & (b->cap - 1);
	b->t[i] = s;
	b->n++;
}

static void grow_ids(bpe *b, uint32_t need)
{
	if (need <= b->nid)
		return;
	if (need > b->idcap) {
		/* geometric: rank files arrive one id at a time */
		uint32_t cap = b->idcap ? b->idcap : 1024;
		while (cap < need)
			cap = cap > UINT32_MAX / 2 ? need : cap * 2;
		b->off = xrealloc(b->off, (size_t)cap * sizeof *b->off);
		b->len = xrealloc(b->len, (size_t)cap * sizeof *b->len);
		b->idcap = cap;
	}
	for (uint32_t i = b->nid; i < need; i++)
		b->len[i] = UINT32_MAX; /* no token */
	b->nid = need;
}

/* Adds an ordinary token (bytes not yet in the table) with this id. */
static void add_token(bpe *b, const uint8_t *p, size_t n, uint32_t id)
{
	if ((b->n + 1) * 2 > b->cap) {
		slot *old = b->t;
		size_t oc = b->cap;
		b->cap *= 2;
		b->t = xmalloc(b->cap * sizeof *b->t);
		for (size_t k = 0; k < b->cap; k++)
			b->t[k].id = NO_RANK;
		b->n = 0;
		for (size_t k = 0; k < oc; k++)
			if (old[k].id != NO_RANK)
				insert(b, old[k]);
		free(old);
	}
	grow_ids(b, id + 1);
	b->off[id] = (uint32_t)b->pool.len;
	b->len[id] = (uint32_t)n;
	buf_append(&b->pool, p, n);
	insert(b, (slot){key_of(p, n), id, (uint32_t)n});
}

static int b64val(int c)
{
	if (c >= 'A' && c <= 'Z') return c - 'A';
	if (c >= 'a' && c <= 'z') return c - 'a' + 26;
	if (c >= '0' && c <= '9') return c - '0' + 52;
	if (c == '+') return 62;
	if (c == '/') return 63;
	return -1;
}

/* Decodes standard base64 (with padding) into out.  @return 0 or -1. */
static int b64decode(const char *s, size_t n, buf *out)
{
	out->len = 0;
	if (n % 4)
		return -1;
	for (size_t i = 0; i < n; i += 4) {
		int v[4];
		for (int k = 0; k < 4; k++)
			v[k] = s[i + (size_t)k] == '=' ? -2 : b64val((unsigned char)s[i + (size_t)k]);
		if (v[0] < 0 || v[1] < 0 || v[2] == -1 || v[3] == -1 || (v[2] == -2 && v[3] != -2) ||
		    ((v[2] == -2 || v[3] == -2) && i + 4 != n))
			return -1;
		unsigned char o[3] = {(unsigned char)(v[0] << 2 | v[1] >> 4),
				      (unsigned char)((v[1] & 15) << 4 | (v[2] < 0 ? 0 : v[2] >> 2)),
				      (unsigned char)((v[2] < 0 ? 0 : (v[2] & 3) << 6) | (v[3] < 0 ? 0 : v[3]))};
		buf_append(out, o, v[2] == -2 ? 1 : v[3] == -2 ? 2 : 3);
	}
	return 0;
}

static int compile_pattern(bpe *b, const char *pattern, mvl_err *err);

/* fills rank2 once every token is in (256 KiB, stays in L2) */
static void index_pairs(bpe *b)
{
	b->rank2 = xmalloc(65536 * sizeof *b->rank2);
	for (int i = 0; i < 65536; i++) {
		uint8_t two[2] = {(uint8_t)(i >> 8), (uint8_t)i};
		uint32_t id = find(b, two, 2);
		b->rank2[i] = (id == NO_RANK || !b->rank) ? id : b->rank[id];
	}
}

bpe *bpe_load_tiktoken(const char *path, const char *pattern, mvl_err *err)
{
	buf file = {0}, tok = {0};
	if (read_file(path, 1u << 30, &file, err) != 0)
		return NULL;
	bpe *b = xcalloc(1, sizeof *b);
	b->cap = 1u << 16;
	b->t = xmalloc(b->cap * sizeof *b->t);
	for (size_t i = 0; i < b->cap; i++)
		b->t[i].id = NO_RANK;
	int rc = 0;
	size_t lineno = 0;
	const char *d = (const char *)file.data;
	for (size_t i = 0; i < file.len && rc == 0;) {
		const char *nl = memchr(d + i, '\n', file.len - i);
		size_t e = nl ? (size_t)(nl - d) : file.len;
		lineno++;
		size_t le = e;
		if (le > i && d[le - 1] == '\r')
			le--;
		if (le > i) {
			const char *sp = memchr(d + i, ' ', le - i);
			char *end;
			unsigned long r = sp ? strtoul(sp + 1, &end, 10) : 0;
			if (!sp || end != d + le || sp + 1 == d + le)
				rc = mvl_errf(err, "'%s' line %zu: expected 'BASE64 RANK'", path, lineno);
			else if (r >= BPE_MAX_ID)
				rc = mvl_errf(err, "'%s' line %zu: rank %lu is not below %d", path, lineno, r,
					      BPE_MAX_ID);
			else if (b64decode(d + i, (size_t)(sp - (d + i)), &tok) != 0 || tok.len == 0)
				rc = mvl_errf(err, "'%s' line %zu: bad base64 token", path, lineno);
			else if (find(b, tok.data, tok.len) != NO_RANK)
				rc = mvl_errf(err, "'%s' line %zu: duplicate token", path, lineno);
			else if (r < b->nid && b->len[r] != UINT32_MAX)
				rc = mvl_errf(err, "'%s' line %zu: duplicate rank %lu", path, lineno, r);
			else {
				add_token(b, tok.data, tok.len, (uint32_t)r);
			}
		}
		i = e + 1;
	}
	/* byte-level BPE needs every single byte */
	for (int c = 0; rc == 0 && c < 256; c++) {
		uint8_t byte = (uint8_t)c;
		if (find(b, &byte, 1) == NO_RANK)
			rc = mvl_errf(err, "'%s': no token for byte 0x%02x (not a byte-level BPE)", path, c);
	}
	if (rc == 0)
		rc = compile_pattern(b, pattern, err);
	if (rc == 0)
		index_pairs(b);
	buf_free(&file);
	buf_free(&tok);
	if (rc) {
		bpe_free(b);
		return NULL;
	}
	return b;
}

/* ---------------------------------------------------------------------- */
/* Hugging Face tokenizer.json (model BPE, ByteLevel) */

/* GPT-2's bytes_to_unicode: printable bytes stand for themselves, the
 * others for U+0100 upward in byte order.  *byte_of maps back. */
static void byte_level_map(int byte_of[324])
{
	for (int i = 0; i < 324; i++)
		byte_of[i] = -1;
	int n = 0;
	for (int c = 0; c < 256; c++) {
		int printable = (c >= 33 && c <= 126) || (c >= 161 && c <= 172) || (c >= 174 && c <= 255);
		byte_of[printable ? c : 256 + n++] = c;
	}
}

/* Token string in byte-level form -> bytes.  @return 0 or -1. */
static int unbyte(const int byte_of[324], const char *s, size_t n, buf *out)
{
	out->len = 0;
	for (size_t i = 0; i < n;) {
		unsigned c = (unsigned char)s[i];
		uint32_t cp;
		if (c < 0x80) {
			cp = c;
			i++;
		} else if ((c & 0xE0) == 0xC0 && i + 1 < n) {
			cp = (c & 0x1F) << 6 | ((unsigned char)s[i + 1] & 0x3F);
			i += 2;
		} else {
			return -1;
		}
		if (cp >= 324 || byte_of[cp] < 0)
			return -1;
		unsigned char b = (unsigned char)byte_of[cp];
		buf_append(out, &b, 1);
	}
	return 0;
}

static const char gpt2_pattern[] =
	"'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

void *bpe_compile_pattern(const char *pattern, mvl_err *err)
{
	buf pat = {0};
	rust_whitespace(pattern, &pat);
	int ec;
	PCRE2_SIZE eo;
	pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat.data, PCRE2_ZERO_TERMINATED,
				       PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &ec, &eo, NULL);
	buf_free(&pat);
	if (!re) {
		PCRE2_UCHAR msg[256];
		pcre2_get_error_message(ec, msg, sizeof msg);
		mvl_errf(err, "pattern at offset %zu: %s", (size_t)eo, (char *)msg);
		return NULL;
	}
	pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
	return re;
}

static int compile_pattern(bpe *b, const char *pattern, mvl_err *err)
{
	b->re = bpe_compile_pattern(pattern, err);
	b->pt = b->re ? pretok_new(pattern) : NULL;
	return b->re ? 0 : -1;
}

/* A tokenizer.json normalizer: null, one of the Unicode normal forms, or a
 * Sequence holding one of them.  Anything else (Lowercase, Replace, Strip,
 * Prepend...) would change ids if ignored, so it is refused by name. */
static int hf_normalizer(json_t *n, const UNormalizer2 **out, mvl_err *err)
{
	*out = NULL;
	if (!n || json_is_null(n))
		return 0;
	const char *type = json_string_value(json_object_get(n, "type"));
	if (type && !strcmp(type, "Sequence")) {
		json_t *list = json_object_get(n, "normalizers");
		if (!json_is_array(list) || json_array_size(list) > 1)
			return mvl_errf(err, "normalizer Sequence: only a sequence of one normal form is supported");
		return hf_normalizer(json_array_get(list, 0), out, err);
	}
	UErrorCode st = U_ZERO_ERROR;
	if (type && !strcmp(type, "NFC"))
		*out = unorm2_getNFCInstance(&st);
	else if (type && !strcmp(type, "NFD"))
		*out = unorm2_getNFDInstance(&st);
	else if (type && !strcmp(type, "NFKC"))
		*out = unorm2_getNFKCInstance(&st);
	else if (type && !strcmp(type, "NFKD"))
		*out = unorm2_getNFKDInstance(&st);
	else
		return mvl_errf(err, "normalizer '%s' is not supported (NFC, NFD, NFKC, NFKD are)",
				type ? type : "(no type)");
	if (U_FAILURE(st) || !*out)
		return mvl_errf(err, "normalizer %s: ICU: %s", type, u_errorName(st));
	return 0;
}

/* The regex of the pre-tokenizer: ByteLevel (GPT-2's pattern when
 * use_regex) or a Sequence of Split(Regex) + ByteLevel(use_regex false). */
static const char *hf_pattern(json_t *pre, mvl_err *err)
{
	const char *type = json_string_value(json_object_get(pre, "type"));
	if (type && !strcmp(type, "ByteLevel")) {
		if (json_is_true(json_object_get(pre, "add_prefix_space"))) {
			mvl_errf(err, "pre_tokenizer ByteLevel with add_prefix_space is not supported");
			return NULL;
		}
		json_t *ur = json_object_get(pre, "use_regex");
		if (ur && !json_is_true(ur)) {
			mvl_errf(err, "a ByteLevel pre_tokenizer without a regex is not supported");
			return NULL;
		}
		return gpt2_pattern;
	}
	if (type && !strcmp(type, "Sequence")) {
		json_t *v = json_object_get(pre, "pretokenizers");
		const char *pat = NULL;
		int bytelevel = 0;
		size_t i;
		json_t *p;
		json_array_foreach(v, i, p) {
			const char *t = json_string_value(json_object_get(p, "type"));
			if (t && !strcmp(t, "Split")) {
				const char *beh = json_string_value(json_object_get(p, "behavior"));
				json_t *re = json_object_get(json_object_get(p, "pattern"), "Regex");
				if (pat || !json_is_string(re) || (beh && strcmp(beh, "Isolated")) ||
				    json_is_true(json_object_get(p, "invert"))) {
					mvl_errf(err, "pre_tokenizer Split: only one Regex split, Isolated, not inverted");
					return NULL;
				}
				pat = json_string_value(re);
			} else if (t && !strcmp(t, "ByteLevel")) {
				bytelevel = 1;
				if (json_is_true(json_object_get(p, "use_regex")))
					pat = pat ? pat : gpt2_pattern;
			} else {
				mvl_errf(err, "pre_tokenizer '%s' is not supported", t ? t : "?");
				return NULL;
			}
		}
		if (!bytelevel || !pat) {
			mvl_errf(err, "pre_tokenizer: a byte-level sequence with a regex is needed");
			return NULL;
		}
		return pat;
	}
	mvl_errf(err, "pre_tokenizer '%s' is not supported (ByteLevel or Sequence)", type ? type : "null");
	return NULL;
}

bpe *bpe_load_hf(const char *path, mvl_err *err)
{
	json_error_t je;
	json_t *root = json_load_file(path, 0, &je);
	if (!root) {
		mvl_errf(err, "'%s' line %d column %d: %s", path, je.line, je.column, je.text);
		return NULL;
	}
	bpe *b = xcalloc(1, sizeof *b);
	b->cap = 1u << 16;
	b->t = xmalloc(b->cap * sizeof *b->t);
	for (size_t i = 0; i < b->cap; i++)
		b->t[i].id = NO_RANK;
	int rc = 0, byte_of[324];
	byte_level_map(byte_of);
	buf tok = {0}, l = {0}, r = {0}, cat = {0};
	json_t *model = json_object_get(root, "model");
	json_t *vocab = json_object_get(model, "vocab"), *merges = json_object_get(model, "merges");
	const char *mtype = json_string_value(json_object_get(model, "type"));
	const char *pattern = NULL;
	if (!mtype || strcmp(mtype, "BPE"))
		rc = mvl_errf(err, "'%s': model type '%s' is not BPE", path, mtype ? mtype : "null");
	else if (!json_is_object(vocab) || !json_is_array(merges))
		rc = mvl_errf(err, "'%s': model.vocab or model.merges missing", path);
	else if (hf_normalizer(json_object_get(root, "normalizer"), &b->norm, err) != 0)
		rc = mvl_errprefix(err, "'%s'", path);
	else if (!(pattern = hf_pattern(json_object_get(root, "pre_tokenizer"), err)))
		rc = mvl_errprefix(err, "'%s'", path);
	/* vocab: byte-level strings -> ids */
	const char *k;
	json_t *v;
	json_object_foreach(vocab, k, v) {
		if (rc)
			break;
		json_int_t id = json_integer_value(v);
		if (!json_is_integer(v) || id < 0 || id >= BPE_MAX_ID) {
			rc = mvl_errf(err, "'%s': vocab entry '%.40s' has no valid id", path, k);
			break;
		}
		if (unbyte(byte_of, k, strlen(k), &tok) != 0 || !tok.len) {
			rc = mvl_errf(err, "'%s': vocab entry '%.40s' is not byte-level", path, k);
			break;
		}
		if (find(b, tok.data, tok.len) != NO_RANK) {
			rc = mvl_errf(err, "'%s': vocab entry '%.40s' duplicates another token's bytes", path, k);
			break;
		}
		if ((uint32_t)id < b->nid && b->len[id] != UINT32_MAX) {
			rc = mvl_errf(err, "'%s': id %lld used twice in vocab", path, (long long)id);
			break;
		}
		add_token(b, tok.data, tok.len, (uint32_t)id);
	}
	/* merges: the i-th merge's result gets rank i; single bytes rank
	 * below every merge (they never compete: ranks order pairs) */
	if (rc == 0) {
		b->rank = xmalloc((b->nid ? b->nid : 1) * sizeof *b->rank);
		for (uint32_t i = 0; i < b->nid; i++)
			b->rank[i] = NO_RANK;
		size_t i;
		json_t *m;
		json_array_foreach(merges, i, m) {
			const char *a = NULL, *c = NULL;
			size_t al = 0, cl = 0;
			if (json_is_string(m)) { /* "a b" */
				const char *s2 = json_string_value(m), *sp = strchr(s2, ' ');
				if (sp) {
					a = s2;
					al = (size_t)(sp - s2);
					c = sp + 1;
					cl = strlen(c);
				}
			} else if (json_is_array(m) && json_array_size(m) == 2) { /* ["a", "b"] */
				a = json_string_value(json_array_get(m, 0));
				c = json_string_value(json_array_get(m, 1));
				al = a ? strlen(a) : 0;
				cl = c ? strlen(c) : 0;
			}
			if (!a || !c || unbyte(byte_of, a, al, &l) || unbyte(byte_of, c, cl, &r)) {
				rc = mvl_errf(err, "'%s': merge %zu is malformed", path, i);
				break;
			}
			cat.len = 0;
			buf_append(&cat, l.data, l.len);
			buf_append(&cat, r.data, r.len);
			uint32_t id = find(b, cat.data, cat.len);
			if (id == NO_RANK) {
				rc = mvl_errf(err, "'%s': merge %zu makes a token missing from vocab", path, i);
				break;
			}
			if (b->rank[id] == NO_RANK) /* the first merge that makes it */
				b->rank[id] = (uint32_t)i;
		}
	}
	for (int c = 0; rc == 0 && c < 256; c++) {
		uint8_t byte = (uint8_t)c;
		if (find(b, &byte, 1) == NO_RANK)
			rc = mvl_errf(err, "'%s': no token for byte 0x%02x (not a byte-level BPE)", path, c);
	}
	if (rc == 0) {
		rc = compile_pattern(b, pattern, err);
		index_pairs(b);
	}
	/* added tokens: specials (and any other text tokens) by their ids */
	json_t *added = json_object_get(root, "added_tokens");
	size_t ai;
	json_t *at;
	json_array_foreach(added, ai, at) {
		if (rc)
			break;
		const char *content = json_string_value(json_object_get(at, "content"));
		json_int_t id = json_integer_value(json_object_get(at, "id"));
		if (!content || id < 0 || id >= BPE_MAX_ID) {
			rc = mvl_errf(err, "'%s': added_tokens[%zu] is malformed", path, ai);
			break;
		}
		if ((uint32_t)id < b->nid && b->len[id] != UINT32_MAX &&
		    b->len[id] == strlen(content) && !memcmp(b->pool.data + b->off[id], content, b->len[id]))
			continue; /* already a vocab token with these bytes */
		if (bpe_add_special(b, content, (uint32_t)id, err) != 0)
			rc = mvl_errprefix(err, "'%s'", path);
	}
	json_decref(root);
	buf_free(&tok);
	buf_free(&l);
	buf_free(&r);
	buf_free(&cat);
	if (rc) {
		bpe_free(b);
		return NULL;
	}
	return b;
}

static int ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), k = strlen(suffix);
	return n >= k && !strcmp(s + n - k, suffix);
}

bpe *bpe_open(const char *path, const char *encoding, mvl_err *err)
{
	if (!ends_with(path, ".tiktoken"))
		return bpe_load_hf(path, err);
	/* `mvl tok train -o OUT` leaves OUT.json beside OUT.tiktoken */
	char *meta = xstrdup(path);
	strcpy(meta + strlen(meta) - strlen(".tiktoken"), ".json");
	json_error_t je;
	json_t *m = access(meta, F_OK) == 0 ? json_load_file(meta, 0, &je) : NULL;
	if (access(meta, F_OK) == 0 && !m) {
		mvl_errf(err, "'%s' line %d: %s", meta, je.line, je.text);
		free(meta);
		return NULL;
	}
	/* "pattern" (mvl tok train) or tiktoken's own name "pat_str" */
	const char *pattern = !m ? bpe_pattern(encoding)
			      : json_object_get(m, "pattern") ? json_string_value(json_object_get(m, "pattern"))
							       : json_string_value(json_object_get(m, "pat_str"));
	bpe *b = NULL;
	if (!pattern)
		mvl_errf(err, m ? "'%s': no \"pattern\" (or \"pat_str\") string" : "unknown encoding '%s'",
			 m ? meta : encoding);
	else if (!(b = bpe_load_tiktoken(path, pattern, err)) && m && !strncmp(err->msg, "pattern", 7))
		mvl_errprefix(err, "'%s'", meta);
	if (b && !m && bpe_add_preset_specials(b, encoding, err) != 0) {
		bpe_free(b);
		b = NULL;
	}
	const char *k;
	json_t *v;
	json_object_foreach(b ? json_object_get(m, "special_tokens") : NULL, k, v) {
		if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 0x7FFFFFFF ||
		    bpe_add_special(b, k, (uint32_t)json_integer_value(v), err) != 0) {
			if (json_is_integer(v))
				mvl_errprefix(err, "'%s'", meta);
			else
				mvl_errf(err, "'%s': special token '%s' has no valid id", meta, k);
			bpe_free(b);
			b = NULL;
			break;
		}
	}
	json_decref(m);
	free(meta);
	return b;
}

void bpe_free(bpe *b)
{
	if (!b)
		return;
	buf_free(&b->pool);
	free(b->off);
	free(b->len);
	free(b->rank);
	free(b->rank2);
	free(b->t);
	pcre2_code_free(b->re);
	pretok_free(b->pt);
	for (int i = 0; i < b->nspecial; i++)
		free(b->special[i].text);
	free(b->special);
	free(b);
}

int bpe_add_special(bpe *b, const char *text, uint32_t id, mvl_err *err)
{
	if (id >= BPE_MAX_ID)
		return mvl_errf(err, "special token '%s': id %u is not below %d", text, id, BPE_MAX_ID);
	if (id < b->nid && b->len[id] != UINT32_MAX)
		return mvl_errf(err, "special token '%s': id %u is an ordinary token", text, id);
	b->special = xrealloc(b->special, (size_t)(b->nspecial + 1) * sizeof *b->special);
	b->special[b->nspecial].text = xstrdup(text);
	b->special[b->nspecial++].id = id;
	grow_ids(b, id + 1);
	b->off[id] = (uint32_t)b->pool.len;
	b->len[id] = (uint32_t)strlen(text);
	buf_append(&b->pool, text, strlen(text));
	return 0;
}

int64_t bpe_special_id(const bpe *b, const char *text)
{
	for (int i = 0; i < b->nspecial; i++)
		if (!strcmp(b->special[i].text, text))
			return b->special[i].id;
	return -1;
}

size_t bpe_vocab_size(const bpe *b)
{
	return b->nid;
}

bpe_ctx *bpe_ctx_new(const bpe *b)
{
	bpe_ctx *c = xcalloc(1, sizeof *c);
	c->md = pcre2_match_data_create_from_pattern(b->re, NULL);
	c->cache = xcalloc(CACHE_SLOTS, sizeof *c->cache);
	return c;
}

void bpe_ctx_free(bpe_ctx *c)
{
	if (!c)
		return;
	pcre2_match_data_free(c->md);
	free(c->cache);
	free(c->u16);
	free(c->u16n);
	buf_free(&c->normed);
	free(c->start);
	free(c->rank);
	free(c->heap);
	free(c->next);
	free(c->prev);
	free(c->prank);
	free(c);
}

/* ---------------------------------------------------------------------- */
/* merging one piece */

static void push_id(uint32_t **ids, size_t *cap, size_t *len, uint32_t id)
{
	if (*len == *cap) {
		*cap = *cap ? *cap * 2 : 1024;
		*ids = xrealloc(*ids, *cap * sizeof **ids);
	}
	(*ids)[(*len)++] = id;
}

static void reserve(bpe_ctx *c, size_t n)
{
	if (c->cap >= n + 2)
		return;
	c->cap = n + 64;
	c->start = xrealloc(c->start, c->cap * sizeof *c->start);
	c->rank = xrealloc(c->rank, c->cap * sizeof *c->rank);
	c->next = xrealloc(c->next, c->cap * sizeof *c->next);
	c->prev = xrealloc(c->prev, c->cap * sizeof *c->prev);
	c->prank = xrealloc(c->prank, c->cap * sizeof *c->prank);
}

/* tiktoken's loop, for short pieces: parts by start offset, rank[i] the
 * rank of joining part i with part i+1; merge the lowest, leftmost. */
static void merge_small(const bpe *b, bpe_ctx *c, const uint8_t *p, size_t n, uint32_t **ids,
			size_t *cap, size_t *len)
{
	size_t m = n + 1; /* parts + the end sentinel */
	for (size_t i = 0; i < m; i++)
		c->start[i] = (uint32_t)i;
	for (size_t i = 0; i + 2 < m; i++)
		c->rank[i] = rank_of(b, p + i, 2);
	c->rank[m - 2] = NO_RANK;
	c->rank[m - 1] = NO_RANK;
	for (;;) {
		uint32_t best = NO_RANK;
		size_t bi = 0;
		for (size_t i = 0; i + 1 < m; i++)
			if (c->rank[i] < best) {
				best = c->rank[i];
				bi = i;
			}
		if (best == NO_RANK)
			break;
		/* part bi absorbs part bi+1 */
		memmove(c->start + bi + 1, c->start + bi + 2, (m - bi - 2) * sizeof *c->start);
		memmove(c->rank + bi + 1, c->rank + bi + 2, (m - bi - 2) * sizeof *c->rank);
		m--;
		c->rank[bi] = bi + 2 < m ? rank_of(b, p + c->start[bi], c->start[bi + 2] - c->start[bi]) : NO_RANK;
		if (bi > 0)
			c->rank[bi - 1] = rank_of(b, p + c->start[bi - 1], c->start[bi + 1] - c->start[bi - 1]);
	}
	for (size_t i = 0; i + 1 < m; i++)
		push_id(ids, cap, len, find(b, p + c->start[i], c->start[i + 1] - c->start[i]));
}

/* The same merges for long pieces, with the pairs in a heap keyed by
 * (rank, start): O(n log n).  Stale heap entries are skipped. */
static void heap_push(bpe_ctx *c, size_t *hn, uint64_t key)
{
	if (*hn == c->hcap) {
		c->hcap = c->hcap ? c->hcap * 2 : 1024;
		c->heap = xrealloc(c->heap, c->hcap * sizeof *c->heap);
	}
	size_t i = (*hn)++;
	while (i > 0 && c->heap[(i - 1) / 2] > key) {
		c->heap[i] = c->heap[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	c->heap[i] = key;
}

static uint64_t heap_pop(bpe_ctx *c, size_t *hn)
{
	uint64_t top = c->heap[0], last = c->heap[--(*hn)];
	size_t i = 0;
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		uint64_t mv = last;
		if (l < *hn && c->heap[l] < mv) {
			m = l;
			mv = c->heap[l];
		}
		if (r < *hn && c->heap[r] < mv)
			m = r;
		if (m == i)
			break;
		c->heap[i] = c->heap[m];
		i = m;
	}
	if (*hn)
		c->heap[i] = last;
	return top;
}

static void merge_large(const bpe *b, bpe_ctx *c, const uint8_t *p, size_t n, uint32_t **ids,
			size_t *cap, size_t *len)
{
	/* parts are linked lists over byte offsets; next[n] is the end */
	uint32_t END = (uint32_t)n;
	size_t hn = 0;
	for (size_t i = 0; i < n; i++) {
		c->next[i] = (uint32_t)i + 1;
		c->prev[i] = i ? (uint32_t)i - 1 : UINT32_MAX;
		c->prank[i] = NO_RANK;
	}
	for (size_t i = 0; i + 1 < n; i++) {
		c->prank[i] = rank_of(b, p + i, 2);
		if (c->prank[i] != NO_RANK)
			heap_push(c, &hn, (uint64_t)c->prank[i] << 32 | i);
	}
	while (hn) {
		uint64_t k = heap_pop(c, &hn);
		uint32_t r = (uint32_t)(k >> 32), i = (uint32_t)k;
		if (c->prank[i] != r)
			continue; /* stale */
		uint32_t j = c->next[i];
		/* i absorbs j */
		uint32_t jn = c->next[j];
		c->next[i] = jn;
		if (jn != END)
			c->prev[jn] = i;
		c->prank[j] = NO_RANK;
		c->prank[i] = jn != END ? rank_of(b, p + i, c->next[jn] - i) : NO_RANK;
		if (c->prank[i] != NO_RANK)
			heap_push(c, &hn, (uint64_t)c->prank[i] << 32 | i);
		uint32_t h = c->prev[i];
		if (h != UINT32_MAX) {
			c->prank[h] = rank_of(b, p + h, c->next[i] - h);
			if (c->prank[h] != NO_RANK)
				heap_push(c, &hn, (uint64_t)c->prank[h] << 32 | h);
		}
	}
	for (uint32_t i = 0; i != END; i = c->next[i])
		push_id(ids, cap, len, find(b, p + i, c->next[i] - i));
}

static void encode_piece(const bpe *b, bpe_ctx *c, const uint8_t *p, size_t n, uint32_t **ids,
			 size_t *cap, size_t *len)
{
	uint32_t whole = find(b, p, n);
	if (whole != NO_RANK) {
		push_id(ids, cap, len, whole);
		return;
	}
	cache_ent *e = NULL;
	uint64_t h = 0;
	if (n <= CACHE_BYTES) {
		h = XXH3_64bits(p, n);
		e = &c->cache[h & (CACHE_SLOTS - 1)];
		if (e->h == h && e->len == n && !memcmp(e->bytes, p, n)) {
			for (int i = 0; i < e->nids; i++)
				push_id(ids, cap, len, e->ids[i]);
			return;
		}
	}
	reserve(c, n);
	size_t before = *len;
	if (n <= SMALL_PIECE)
		merge_small(b, c, p, n, ids, cap, len);
	else
		merge_large(b, c, p, n, ids, cap, len);
	if (e && *len - before <= CACHE_IDS) {
		e->h = h;
		e->len = (uint8_t)n;
		e->nids = (uint8_t)(*len - before);
		memcpy(e->bytes, p, n);
		memcpy(e->ids, *ids + before, (*len - before) * sizeof **ids);
	}
}

/* Applies the tokenizer's normal form to text[0..n) unless it is plain
 * ASCII (which every normal form leaves alone); the result lives in
 * c->normed.  Invalid UTF-8 becomes U+FFFD first: Hugging Face tokenizers
 * only ever see valid strings.  Text beyond ICU's int32 lengths (> 512 MB
 * in one call) is left as it is. */
static void normalize(const bpe *b, bpe_ctx *c, const char **text, size_t *n)
{
	size_t i = 0;
	while (i < *n && !((unsigned char)(*text)[i] & 0x80))
		i++;
	if (i == *n || *n > INT32_MAX / 4)
		return;
	if (c->u16cap < *n + 1) {
		c->u16cap = *n + 1;
		c->u16 = xrealloc(c->u16, c->u16cap * sizeof *c->u16);
	}
	UErrorCode st = U_ZERO_ERROR;
	int32_t l16 = 0, ln = 0, l8 = 0;
	u_strFromUTF8WithSub(c->u16, (int32_t)c->u16cap, &l16, *text, (int32_t)*n, 0xFFFD, NULL, &st);
	/* the normalized length is only known by trying: grow and repeat */
	for (int round = 0; round < 2; round++) {
		if (c->u16ncap < (size_t)l16 + 1 || (round && c->u16ncap < (size_t)ln + 1)) {
			c->u16ncap = round ? (size_t)ln + 1 : 2 * (size_t)l16 + 16;
			c->u16n = xrealloc(c->u16n, c->u16ncap * sizeof *c->u16n);
		}
		st = U_ZERO_ERROR;
		ln = unorm2_normalize(b->norm, c->u16, l16, c->u16n, (int32_t)c->u16ncap, &st);
		if (st != U_BUFFER_OVERFLOW_ERROR)
			break;
	}
	if (U_FAILURE(st))
		return; /* only out of memory inside ICU */
	st = U_ZERO_ERROR;
	u_strToUTF8(NULL, 0, &l8, c->u16n, ln, &st); /* the length */
	c->normed.len = 0;
	buf_reserve(&c->normed, (size_t)l8 + 1);
	st = U_ZERO_ERROR;
	u_strToUTF8((char *)c->normed.data, l8 + 1, &l8, c->u16n, ln, &st);
	if (U_FAILURE(st))
		return;
	c->normed.len = (size_t)l8;
	*text = (const char *)c->normed.data;
	*n = (size_t)l8;
}

size_t bpe_encode_ordinary(const bpe *b, bpe_ctx *c, const char *text, size_t n, uint32_t **ids,
			   size_t *cap, size_t *len)
{
	if (b->norm)
		normalize(b, c, &text, &n);
	size_t before = *len, pos = 0;
	const uint8_t *t = (const uint8_t *)text;
	if (b->pt) {
		while (pos < n) {
			size_t s, e = pretok_next(b->pt, t, n, pos, &s);
			if (s > pos)
				encode_piece(b, c, t + pos, s - pos, ids, cap, len);
			if (e > s)
				encode_piece(b, c, t + s, e - s, ids, cap, len);
			pos = e;
		}
		return *len - before;
	}
	while (pos < n) {
		int rc = pcre2_match(b->re, (PCRE2_SPTR)text, n, pos, 0, c->md, NULL);
		size_t s = n, e = n;
		if (rc >= 0) {
			PCRE2_SIZE *ov = pcre2_get_ovector_pointer(c->md);
			s = ov[0];
			e = ov[1];
		}
		/* bytes no match covers (invalid UTF-8) are a piece of their own */
		if (s > pos)
			encode_piece(b, c, t + pos, s - pos, ids, cap, len);
		if (e > s)
			encode_piece(b, c, t + s, e - s, ids, cap, len);
		else if (rc >= 0 && e < n) {
			/* an empty match: step one byte past it */
			e = s + 1;
			encode_piece(b, c, t + s, 1, ids, cap, len);
		}
		pos = e;
	}
	return *len - before;
}

/* The leftmost special token in text[0..n) (longest at a position), by
 * index; -1 when none.  *at gets its offset. */
static int next_special(const bpe *b, const char *text, size_t n, size_t *at)
{
	int best = -1;
	size_t bat = n, blen = 0;
	for (int i = 0; i < b->nspecial; i++) {
		size_t sl = strlen(b->special[i].text);
		const char *p = memmem(text, n, b->special[i].text, sl);
		if (!p)
			continue;
		size_t o = (size_t)(p - text);
		if (o < bat || (o == bat && sl > blen)) {
			best = i;
			bat = o;
			blen = sl;
		}
	}
	*at = bat;
	return best;
}

int bpe_encode(const bpe *b, bpe_ctx *c, const char *text, size_t n, int specials_mode, uint32_t **ids,
	       size_t *cap, size_t *len, mvl_err *err)
{
	if (specials_mode == BPE_SPECIAL_ORDINARY) {
		/* the special tokens' text is just text: one pre-tokenization over
		 * all of it, exactly encode_ordinary */
		bpe_encode_ordinary(b, c, text, n, ids, cap, len);
		return 0;
	}
	size_t pos = 0;
	while (pos < n) {
		size_t at;
		int k = b->nspecial ? next_special(b, text + pos, n - pos, &at) : -1;
		if (k < 0) {
			bpe_encode_ordinary(b, c, text + pos, n - pos, ids, cap, len);
			break;
		}
		if (specials_mode == BPE_SPECIAL_DISALLOW)
			return mvl_errf(err, "text contains the special token '%s' at byte %zu (allow it, or "
					     "encode it as ordinary text)", b->special[k].text, pos + at);
		bpe_encode_ordinary(b, c, text + pos, at, ids, cap, len);
		push_id(ids, cap, len, b->special[k].id);
		pos += at + strlen(b->special[k].text);
	}
	return 0;
}

int bpe_decode(const bpe *b, const uint32_t *ids, size_t n, buf *out, mvl_err *err)
{
	for (size_t i = 0; i < n; i++) {
		if (ids[i] >= b->nid || b->len[ids[i]] == UINT32_MAX)
			return mvl_errf(err, "token id %u is not in the vocabulary", ids[i]);
		buf_append(out, b->pool.data + b->off[ids[i]], b->len[ids[i]]);
	}
	return 0;
}
