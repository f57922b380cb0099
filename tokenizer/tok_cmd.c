/* tok_cmd.c: `mvl tok encode | decode`: the tokenizer on its own. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bpe.h"
#include "commands.h"
#include "opts.h"

typedef struct tok_opts {
	const char *tiktoken, *encoding;
	int lines;
} tok_opts;

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
	const char *pattern = bpe_pattern(o->encoding);
	if (!pattern) {
		mvl_errf(err, "unknown encoding '%s' (gpt2, r50k_base, cl100k_base)", o->encoding);
		return NULL;
	}
	if (!o->tiktoken) {
		mvl_errf(err, "--tiktoken FILE is required (a .tiktoken rank file)");
		return NULL;
	}
	return bpe_load_tiktoken(o->tiktoken, pattern, err);
}

static void print_ids(FILE *out, const uint32_t *ids, size_t n)
{
	char num[16];
	for (size_t i = 0; i < n; i++) {
		/* by hand: printf per id is the slow part of a text dump */
		char *e = num + sizeof num, *p = e;
		uint32_t v = ids[i];
		do
			*--p = (char)('0' + v % 10);
		while (v /= 10);
		if (i)
			fputc(' ', out);
		fwrite(p, 1, (size_t)(e - p), out);
	}
	fputc('\n', out);
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
			bpe_encode_ordinary(b, c, (const char *)text.data, text.len, &ids, &cap, &len);
			print_ids(stdout, ids, len);
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
	if (rc == 0)
		fwrite(out.data, 1, out.len, stdout);
	free(ids);
	buf_free(&text);
	buf_free(&out);
	bpe_free(b);
	return rc;
}

int cmd_tok(int argc, char **argv)
{
	tok_opts o;
	const opt_spec specs[] = {
		{"tiktoken", 0, OPT_STR, &o.tiktoken, NULL, "FILE", "rank file (base64 token, space, rank per line)"},
		{"encoding", 0, OPT_CHOICE, &o.encoding, "cl100k_base", "gpt2|r50k_base|cl100k_base",
		 "pre-tokenizer pattern as tiktoken defines it"},
		{"lines", 0, OPT_FLAG, &o.lines, NULL, NULL,
		 "encode each input line (without its newline) on its own; one line of ids per line"},
		{0},
	};
	const opt_cmd cmd = {
		"tok", "encode|decode [OPTIONS] [FILE...]",
		"Byte-level BPE, identical to tiktoken: `encode` prints the ids of the\n"
		"input (stdin or FILEs) with encode_ordinary semantics, separated by single\n"
		"spaces; `decode` reads ids and writes the bytes.",
		NULL,
		specs,
	};
	if (argc < 2 || (strcmp(argv[1], "encode") && strcmp(argv[1], "decode"))) {
		if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
			opts_usage(&cmd, stdout);
			return 0;
		}
		fprintf(stderr, "mvl tok: expected 'encode' or 'decode'\nsee 'mvl tok --help'\n");
		return 2;
	}
	char **args;
	int nargs;
	opts_main(&cmd, argc - 1, argv + 1, &args, &nargs);
	int rc = !strcmp(argv[1], "encode") ? tok_encode(&o, args, nargs) : tok_decode(&o);
	free(args);
	return rc;
}
