/* tok_cmd.c: `mvl tok encode | decode`: the tokenizer on its own. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "bpe.h"
#include "bpe_train.h"
#include "commands.h"
#include "opts.h"
#include "parallel.h"
#include "stream_cmd.h"

typedef struct tok_opts {
	const char *tiktoken, *hf, *encoding, *special, *format;
	int lines, stream, threads;
	/* train */
	int vocab, min_frequency;
	const char *specials, *output;
	const char *rejects; /* --stream, count: the samples without a caption */
	int allow_damaged;   /* --stream: damaged inputs do not fail the run */
} tok_opts;

static int special_mode(const char *s)
{
	return !strcmp(s, "allow") ? BPE_SPECIAL_ALLOW
	       : !strcmp(s, "ordinary") ? BPE_SPECIAL_ORDINARY : BPE_SPECIAL_DISALLOW;
}

static int read_all(FILE *f, buf *b)
{
	char tmp[1 << 16];
	size_t k;
	while ((k = fread(tmp, 1, sizeof tmp, f)) > 0)
		buf_append(b, tmp, k);
	buf_append(b, "", 0);
	return ferror(f) ? -1 : 0;
}

static bpe *load(const tok_opts *o, mvl_err *err)
{
	if (o->hf) {
		if (o->tiktoken) {
			mvl_errf(err, "give --tiktoken or --hf, not both");
			return NULL;
		}
		return bpe_load_hf(o->hf, err);
	}
	const char *pattern = bpe_pattern(o->encoding);
	if (!pattern) {
		mvl_errf(err, "unknown encoding '%s' (gpt2, r50k_base, cl100k_base, o200k_base)", o->encoding);
		return NULL;
	}
	if (!o->tiktoken) {
		mvl_errf(err, "--tiktoken FILE (a .tiktoken rank file) or --hf FILE (tokenizer.json) is required");
		return NULL;
	}
	bpe *b = bpe_load_tiktoken(o->tiktoken, pattern, err);
	if (b && bpe_add_preset_specials(b, o->encoding, err) != 0) {
		bpe_free(b);
		return NULL;
	}
	return b;
}

static void print_ids(FILE *out, const uint32_t *ids, size_t n)
{
	/* by hand into a block, written in one go: stdio per id was a fifth of
	 * encoding time for a text dump */
	char blk[1 << 14];
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		if (k > sizeof blk - 12) {
			fwrite(blk, 1, k, out);
			k = 0;
		}
		char num[10], *e = num + sizeof num, *p = e;
		uint32_t v = ids[i];
		do
			*--p = (char)('0' + v % 10);
		while (v /= 10);
		if (i)
			blk[k++] = ' ';
		memcpy(blk + k, p, (size_t)(e - p));
		k += (size_t)(e - p);
	}
	blk[k++] = '\n';
	fwrite(blk, 1, k, out);
}

/* ids in the chosen form: text (space-separated, one line), u32 (little
 * endian, no separators), or a JSON array (jsonl wraps it with the key). */
static void emit_ids(FILE *out, const char *format, const char *key, const uint32_t *ids, size_t n)
{
	if (!strcmp(format, "u32")) {
		fwrite(ids, sizeof *ids, n, out); /* x86 and ARM are little endian */
		return;
	}
	if (!strcmp(format, "jsonl")) {
		fputs("{\"key\":\"", out);
		for (const char *k = key ? key : ""; *k; k++) {
			if (*k == '"' || *k == '\\')
				fputc('\\', out);
			if ((unsigned char)*k < 0x20)
				fprintf(out, "\\u%04x", *k);
			else
				fputc(*k, out);
		}
		fputs("\",\"ids\":[", out);
		for (size_t i = 0; i < n; i++)
			fprintf(out, i ? ",%u" : "%u", ids[i]);
		fputs("]}\n", out);
		return;
	}
	print_ids(out, ids, n);
}

/* ---- sample streams: captions in, ids or counts out, on all cores ---- */

typedef struct stream_tok {
	const bpe *b;
	const tok_opts *o;
	int count;
	uint64_t total, samples;
} stream_tok;

typedef struct tok_tls {
	bpe_ctx *c;
} tok_tls;

static void *tok_tls_new(void *ctx)
{
	tok_tls *t = xcalloc(1, sizeof *t);
	t->c = bpe_ctx_new(((stream_tok *)ctx)->b);
	return t;
}

static void tok_tls_free(void *tls)
{
	tok_tls *t = tls;
	bpe_ctx_free(t->c);
	free(t);
}

/* the ids travel from the worker to the in-order printer in sample.aux
 * when they fit, else in a member "mvl.ids" the printer drops */
static int tok_work(void *ctx, void *tls, sample *s, reject_info *rj)
{
	stream_tok *st = ctx;
	tok_tls *t = tls;
	member *m = sample_get(s, "txt");
	if (!m)
		return reject_set(rj, "no_caption", "no .txt member to tokenize");
	uint32_t *ids = NULL;
	size_t cap = 0, len = 0;
	mvl_err err;
	if (bpe_encode(st->b, t->c, (const char *)m->data, m->size, special_mode(st->o->special), &ids, &cap,
		       &len, &err) != 0) {
		free(ids);
		return reject_set(rj, "special_token", "%s", err.msg);
	}
	sample_put(s, "mvl.ids", ids, len * sizeof *ids);
	free(ids);
	return 0;
}

static int tok_sink(void *ctx, const sample *s, mvl_err *err)
{
	stream_tok *st = ctx;
	member *m = sample_get(s, "mvl.ids");
	size_t n = m ? m->size / sizeof(uint32_t) : 0;
	st->total += n;
	st->samples++;
	if (st->count) {
		tsv_put(stdout, s->key); /* a key may hold tabs and newlines */
		printf("\t%zu\n", n);
	} else {
		emit_ids(stdout, st->o->format, s->key, m ? (const uint32_t *)m->data : NULL, n);
	}
	if (ferror(stdout))
		return mvl_errf(err, "cannot write standard output");
	return 0;
}

static int tok_stream(const tok_opts *o, char **args, int nargs, int count)
{
	mvl_err err;
	const char *cmd = count ? "tok count" : "tok encode";
	bpe *b = load(o, &err);
	if (!b) {
		fprintf(stderr, "mvl %s: %s\n", cmd, err.msg);
		return 2;
	}
	stream_opts so = {0};
	so.quiet = 1;
	so.rejects = o->rejects;
	so.allow_damaged = o->allow_damaged;
	stream_run sr;
	if (stream_run_open(&sr, cmd, &so, args, nargs, RUN_SHARDS, &err) != 0) {
		fprintf(stderr, "mvl %s: %s\n", cmd, err.msg);
		bpe_free(b);
		return 1;
	}
	stream_tok st = {b, o, count, 0, 0};
	parallel_work w = {tok_work, &st, tok_tls_new, tok_tls_free, o->threads, 0, tok_sink, NULL};
	stream_run_parallel(&sr, &w);
	if (count)
		fprintf(stderr, "mvl tok count: %llu tokens in %llu samples\n", (unsigned long long)st.total,
			(unsigned long long)st.samples);
	int rc = stream_run_close(&sr);
	bpe_free(b);
	return rc;
}

static int tok_encode(const tok_opts *o, char **args, int nargs)
{
	mvl_err err;
	bpe *b = load(o, &err);
	if (!b) {
		fprintf(stderr, "mvl tok encode: %s\n", err.msg);
		return 2;
	}
	bpe_ctx *c = bpe_ctx_new(b);
	uint32_t *ids = NULL;
	size_t cap = 0, len;
	int rc = 0;
	for (int a = 0; a <= nargs && rc == 0; a++) {
		if (a == nargs && nargs > 0)
			break;
		FILE *f = nargs ? fopen(args[a], "rb") : stdin;
		if (!f) {
			fprintf(stderr, "mvl tok encode: cannot open '%s': %s\n", args[a], strerror(errno));
			rc = 1;
			break;
		}
		buf text = {0};
		if (read_all(f, &text) != 0) {
			fprintf(stderr, "mvl tok encode: read error\n");
			rc = 1;
		}
		if (f != stdin)
			fclose(f);
		if (o->lines) {
			const char *s = (const char *)text.data;
			size_t i = 0;
			while (i < text.len) {
				const char *nl = memchr(s + i, '\n', text.len - i);
				size_t e = nl ? (size_t)(nl - s) : text.len;
				len = 0;
				bpe_encode_ordinary(b, c, s + i, e - i, &ids, &cap, &len);
				print_ids(stdout, ids, len);
				i = e + 1;
			}
		} else {
			len = 0;
			if (bpe_encode(b, c, (const char *)text.data, text.len, special_mode(o->special), &ids, &cap,
				       &len, &err) != 0) {
				fprintf(stderr, "mvl tok encode: %s: %s\n", nargs ? args[a] : "stdin", err.msg);
				rc = 1;
			} else {
				emit_ids(stdout, o->format, nargs ? args[a] : "-", ids, len);
			}
		}
		buf_free(&text);
	}
	free(ids);
	bpe_ctx_free(c);
	bpe_free(b);
	return rc;
}

static int tok_decode(const tok_opts *o)
{
	mvl_err err;
	bpe *b = load(o, &err);
	if (!b) {
		fprintf(stderr, "mvl tok decode: %s\n", err.msg);
		return 2;
	}
	buf text = {0}, out = {0};
	read_all(stdin, &text);
	uint32_t *ids = NULL;
	size_t n = 0, cap = 0;
	int rc = 0;
	const char *s = (const char *)text.data;
	for (size_t i = 0; i < text.len;) {
		if (s[i] == ' ' || s[i] == '\n' || s[i] == '\t' || s[i] == '\r') {
			i++;
			continue;
		}
		char *end;
		unsigned long v = strtoul(s + i, &end, 10);
		if (end == s + i || v > UINT32_MAX) {
			fprintf(stderr, "mvl tok decode: '%.20s' is not a token id\n", s + i);
			rc = 2;
			break;
		}
		if (n == cap) {
			cap = cap ? cap * 2 : 1024;
			ids = xrealloc(ids, cap * sizeof *ids);
		}
		ids[n++] = (uint32_t)v;
		i = (size_t)(end - s);
	}
	if (rc == 0 && bpe_decode(b, ids, n, &out, &err) != 0) {
		fprintf(stderr, "mvl tok decode: %s\n", err.msg);
		rc = 1;
	}
	if (rc == 0 && out.len) /* no ids, no buffer: fwrite(NULL) is undefined */
		fwrite(out.data, 1, out.len, stdout);
	free(ids);
	buf_free(&text);
	buf_free(&out);
	bpe_free(b);
	return rc;
}

/* ---- training ---- */

static char *utf8_bytes_to_hf(const uint8_t *p, size_t n)
{
	/* GPT-2's byte-level alphabet: printable bytes as themselves, the
	 * rest as U+0100 upward in byte order */
	static int map[256];
	static int ready;
	if (!ready) {
		int k = 0;
		for (int c = 0; c < 256; c++) {
			int printable = (c >= 33 && c <= 126) || (c >= 161 && c <= 172) || (c >= 174 && c <= 255);
			map[c] = printable ? c : 256 + k++;
		}
		ready = 1;
	}
	char *out = xmalloc(n * 2 + 1), *o = out;
	for (size_t i = 0; i < n; i++) {
		int cp = map[p[i]];
		if (cp < 0x80)
			*o++ = (char)cp;
		else {
			*o++ = (char)(0xC0 | cp >> 6);
			*o++ = (char)(0x80 | (cp & 0x3F));
		}
	}
	*o = 0;
	return out;
}

/* OUT.json (pattern, special tokens) and OUT.tokenizer.json (Hugging Face:
 * BPE, Split(Regex) + ByteLevel, ["a", "b"] merges, added tokens). */
static int write_meta(bpe_trainer *tr, const tok_opts *o, const char *pattern, mvl_err *err)
{
	size_t ntok = bpe_trainer_ntokens(tr);
	json_t *specials = json_object();
	json_t *added = json_array();
	uint32_t next = (uint32_t)ntok;
	const char *p = o->specials ? o->specials : "";
	while (*p) {
		size_t len = strcspn(p, ",");
		char *name = xstrndup(p, len);
		if (len) {
			json_object_set_new(specials, name, json_integer(next));
			json_array_append_new(added, json_pack("{s:i,s:s,s:b,s:b,s:b,s:b,s:b}", "id", (int)next, "content",
							       name, "single_word", 0, "lstrip", 0, "rstrip", 0,
							       "normalized", 0, "special", 1));
			next++;
		}
		free(name);
		p += len;
		if (*p)
			p++;
	}
	json_t *meta = json_pack("{s:s,s:O,s:i}", "pattern", pattern, "special_tokens", specials, "n_vocab", (int)next);
	json_t *vocab = json_object(), *merges = json_array();
	for (uint32_t r = 0; r < ntok; r++) {
		size_t len;
		const uint8_t *t = bpe_trainer_token(tr, r, &len);
		char *h = utf8_bytes_to_hf(t, len);
		json_object_set_new(vocab, h, json_integer(r));
		free(h);
		uint32_t l, rr;
		uint64_t cnt;
		if (r >= 256 && bpe_trainer_merge(tr, r, &l, &rr, &cnt) == 0) {
			size_t ll, rl;
			const uint8_t *lt = bpe_trainer_token(tr, l, &ll), *rt = bpe_trainer_token(tr, rr, &rl);
			char *a = utf8_bytes_to_hf(lt, ll), *b = utf8_bytes_to_hf(rt, rl);
			json_array_append_new(merges, json_pack("[s,s]", a, b));
			free(a);
			free(b);
		}
	}
	json_t *hf = json_pack(
		"{s:s,s:n,s:n,s:o,s:n,s:{s:s,s:[{s:s,s:{s:s},s:s,s:b},{s:s,s:b,s:b,s:b}]},s:n,"
		"s:{s:s,s:b,s:b,s:b},s:{s:s,s:n,s:n,s:n,s:n,s:b,s:b,s:o,s:o}}",
		"version", "1.0", "truncation", "padding", "added_tokens", added, "normalizer", "pre_tokenizer",
		"type", "Sequence", "pretokenizers", "type", "Split", "pattern", "Regex", pattern, "behavior", "Isolated",
		"invert", 0, "type", "ByteLevel", "add_prefix_space", 0, "trim_offsets", 1, "use_regex", 0,
		"post_processor", "decoder", "type", "ByteLevel", "add_prefix_space", 0, "trim_offsets", 1, "use_regex", 0,
		"model", "type", "BPE", "dropout", "unk_token", "continuing_subword_prefix", "end_of_word_suffix",
		"fuse_unk", 0, "byte_fallback", 0, "vocab", vocab, "merges", merges);
	int rc = 0;
	char path[4096];
	const char *files[2] = {".json", ".tokenizer.json"};
	json_t *docs[2] = {meta, hf};
	for (int i = 0; i < 2 && rc == 0; i++) {
		snprintf(path, sizeof path, "%s%s", o->output, files[i]);
		atomic_file af;
		if ((rc = atomic_file_open(&af, path, err)) != 0)
			break;
		if (json_dumpf(docs[i], af.f, JSON_INDENT(i ? 0 : 2) | JSON_PRESERVE_ORDER) != 0) {
			rc = mvl_errf(err, "cannot write '%s': %s", af.tmp, strerror(errno));
			atomic_file_abort(&af);
			break;
		}
		fputc('\n', af.f);
		rc = atomic_file_commit(&af, err);
	}
	json_decref(meta);
	json_decref(hf);
	json_decref(specials);
	return rc;
}

static int tok_train(const tok_opts *o, char **args, int nargs)
{
	mvl_err err;
	const char *pattern = bpe_pattern(o->encoding);
	if (!o->output) {
		fprintf(stderr, "mvl tok train: -o OUT is required (writes OUT.tiktoken, OUT.json, OUT.tokenizer.json)\n");
		return 2;
	}
	if (o->vocab < 256 || o->min_frequency < 1) {
		fprintf(stderr, "mvl tok train: --vocab must be >= 256 and --min-frequency >= 1\n");
		return 2;
	}
	bpe_trainer *tr = bpe_trainer_new(pattern, &err);
	if (!tr) {
		fprintf(stderr, "mvl tok train: %s\n", err.msg);
		return 2;
	}
	int rc = 0;
	if (o->stream) {
		/* captions of sample streams, one document each */
		stream_opts so = {0};
		so.quiet = 1;
		so.allow_damaged = o->allow_damaged;
		stream_run sr;
		if (stream_run_open(&sr, "tok train", &so, args, nargs, RUN_SHARDS, &err) != 0) {
			fprintf(stderr, "mvl tok train: %s\n", err.msg);
			bpe_trainer_free(tr);
			return 1;
		}
		sample s;
		sample_init(&s);
		while (stream_run_read(&sr, &s)) {
			member *m = sample_get(&s, "txt");
			if (m)
				bpe_trainer_add(tr, (const char *)m->data, m->size);
			sr.nkept++;
		}
		sample_free(&s);
		rc = stream_run_close(&sr);
	} else {
		/* text files (stdin when none), line by line: a piece never spans
		 * a line, and lines keep memory bounded */
		for (int a = 0; a < (nargs ? nargs : 1) && rc == 0; a++) {
			FILE *f = nargs ? fopen(args[a], "rb") : stdin;
			if (!f) {
				fprintf(stderr, "mvl tok train: cannot open '%s': %s\n", args[a], strerror(errno));
				rc = 1;
				break;
			}
			char *line = NULL;
			size_t cap = 0;
			ssize_t len;
			while ((len = getline(&line, &cap, f)) > 0)
				bpe_trainer_add(tr, line, (size_t)len);
			free(line);
			if (f != stdin)
				fclose(f);
		}
	}
	char path[4096];
	snprintf(path, sizeof path, "%s.tiktoken", o->output);
	if (rc == 0 && (bpe_trainer_train(tr, o->vocab, o->min_frequency, path, &err) != 0 ||
			write_meta(tr, o, pattern, &err) != 0)) {
		fprintf(stderr, "mvl tok train: %s\n", err.msg);
		rc = 1;
	}
	if (rc == 0)
		fprintf(stderr, "mvl tok train: %zu distinct pieces, %zu tokens -> %s\n", bpe_trainer_npieces(tr),
			bpe_trainer_ntokens(tr), path);
	bpe_trainer_free(tr);
	return rc;
}

int cmd_tok(int argc, char **argv)
{
	tok_opts o;
	const opt_spec specs[] = {
		{"tiktoken", 0, OPT_STR, &o.tiktoken, NULL, "FILE", "rank file (base64 token, space, rank per line)"},
		{"hf", 0, OPT_STR, &o.hf, NULL, "FILE",
		 "Hugging Face tokenizer.json (BPE, byte-level) instead of --tiktoken"},
		{"encoding", 0, OPT_CHOICE, &o.encoding, "cl100k_base", "gpt2|r50k_base|cl100k_base|o200k_base",
		 "pre-tokenizer pattern as tiktoken defines it"},
		{"lines", 0, OPT_FLAG, &o.lines, NULL, NULL,
		 "encode each input line (without its newline) on its own with encode_ordinary "
		 "semantics; one line of ids per line"},
		{"special-mode", 0, OPT_CHOICE, &o.special, "disallow", "allow|disallow|ordinary",
		 "special tokens in the text: their ids, an error (tiktoken's default), or plain text"},
		{"format", 0, OPT_CHOICE, &o.format, "text", "text|jsonl|u32",
		 "ids as space-separated text, JSON lines {key, ids}, or raw little-endian u32"},
		{"stream", 0, OPT_FLAG, &o.stream, NULL, NULL,
		 "INPUTs are sample streams (tar, .tar.zst, ...): tokenize each KEY.txt"},
		{"threads", 'j', OPT_INT, &o.threads, "0", "N", "worker threads for streams (0: all cores)"},
		{"rejects", 0, OPT_STR, &o.rejects, NULL, "FILE",
		 "streams: write the samples not tokenized (no caption, a special token) as TSV"},
		{"allow-damaged", 0, OPT_FLAG, &o.allow_damaged, NULL, NULL,
		 "streams: exit 0 when an input was unreadable or broke mid-way (still reported)"},
		{"vocab", 0, OPT_INT, &o.vocab, "8192", "N", "train: ordinary tokens (256 bytes + merges)"},
		{"min-frequency", 0, OPT_INT, &o.min_frequency, "2", "N", "train: rarest pair still merged"},
		{"special", 0, OPT_STR, &o.specials, NULL, "LIST",
		 "train: special tokens, comma-separated, numbered after the vocabulary"},
		{"output", 'o', OPT_STR, &o.output, NULL, "OUT", "train: writes OUT.tiktoken, OUT.json, OUT.tokenizer.json"},
		{0},
	};
	const opt_cmd cmd = {
		"tok", "encode|decode|count|train [OPTIONS] [FILE...]",
		"Byte-level BPE, identical to tiktoken (gpt2, cl100k_base, o200k_base rank\n"
		"files): `encode` prints the ids of text files (or stdin) or, with --stream,\n"
		"of each sample's caption; `decode` reads ids and writes the bytes; `count`\n"
		"prints KEY<TAB>tokens per sample of a stream and the total on stderr.",
		NULL,
		specs,
	};
	if (argc < 2 || (strcmp(argv[1], "encode") && strcmp(argv[1], "decode") && strcmp(argv[1], "count") &&
			 strcmp(argv[1], "train"))) {
		if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
			opts_usage(&cmd, stdout);
			return 0;
		}
		fprintf(stderr, "mvl tok: expected 'encode', 'decode' or 'count'\nsee 'mvl tok --help'\n");
		return 2;
	}
	char **args;
	int nargs;
	opts_main(&cmd, argc - 1, argv + 1, &args, &nargs);
	int rc;
	if (!strcmp(argv[1], "count"))
		rc = tok_stream(&o, args, nargs, 1);
	else if (!strcmp(argv[1], "train"))
		rc = tok_train(&o, args, nargs);
	else if (!strcmp(argv[1], "encode"))
		rc = o.stream ? tok_stream(&o, args, nargs, 0) : tok_encode(&o, args, nargs);
	else
		rc = tok_decode(&o);
	free(args);
	return rc;
}
