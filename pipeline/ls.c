/* ls.c: `mvl ls`: one line per sample. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "image.h"
#include "packfile.h"
#include "stream_cmd.h"

/* A pack (mixers/PACK_FORMAT.md): one line per sequence,
 *   INDEX  TOKENS/LEN  SEGMENTS  IMAGES  KEY,KEY,...  (truncated keys end in '~') */
static int list_pack(const char *path, int quiet)
{
	mvl_err err;
	pack_reader *r = pack_open(path, &err);
	if (!r) {
		fprintf(stderr, "mvl ls: %s\n", err.msg);
		return 1;
	}
	pack_seq s;
	uint64_t tokens = 0, segs = 0;
	int rc = 0;
	for (uint64_t i = 0; i < pack_count(r); i++) {
		if (pack_read(r, i, &s, &err) != 0) {
			fprintf(stderr, "mvl ls: %s\n", err.msg);
			rc = 1;
			break;
		}
		printf("%llu\t%u/%u\t%u\t%u\t", (unsigned long long)i, s.ntok, s.seq_len, s.nseg, s.nimg);
		for (uint32_t k = 0; k < s.nseg; k++)
			printf("%s%.*s%s", k ? "," : "", (int)s.segs[k].keylen, s.segs[k].key,
			       s.segs[k].flags & PACK_SEG_TRUNCATED ? "~" : "");
		printf("\n");
		tokens += s.ntok;
		segs += s.nseg;
	}
	if (!quiet && rc == 0 && pack_count(r))
		fprintf(stderr, "mvl ls: %s: %llu sequences of %u, %llu samples, padding %.2f%%\n", path,
			(unsigned long long)pack_count(r), pack_seq_len(r), (unsigned long long)segs,
			100.0 * (1 - (double)tokens / ((double)pack_count(r) * pack_seq_len(r))));
	pack_close(r);
	return rc;
}

/* The caption: KEY.txt, else a "caption"/"text" string is not parsed here
 * (ls reads headers only); "-" when absent. */
static void print_sample(const sample *s, FILE *f)
{
	tsv_put(f, s->key); /* a key may hold tabs and newlines */
	fputc('\t', f);
	for (int i = 0; i < s->n; i++)
		fprintf(f, "%s%s", i ? "," : "", s->m[i].ext);
	int nimg;
	member *img = sample_image(s, &nimg);
	img_info info;
	if (!img)
		fputs("\t-\t-", f);
	else if (img_probe(img->data, img->size, &info, NULL) != 0)
		fputs("\tinvalid\t-", f);
	else
		fprintf(f, "\t%s\t%dx%d", img_format_name(info.format), info.width, info.height);
	member *txt = sample_get(s, "txt");
	if (txt)
		fprintf(f, "\t%zu\n", utf8_count(txt->data, txt->size));
	else
		fputs("\t-\n", f);
}

int cmd_ls(int argc, char **argv)
{
	stream_opts o;
	const opt_spec specs[] = {
		STREAM_INPUT_SPECS(o),
		{0},
	};
	const opt_cmd cmd = {
		"ls", "[OPTIONS] [INPUT...]",
		"List the samples of WebDataset streams, one tab-separated line each:\n"
		"  KEY  MEMBERS  FORMAT  WIDTHxHEIGHT  CAPTION_CHARS\n"
		"MEMBERS are the extensions in stream order (comma-separated); FORMAT and\n"
		"size come from the first image's header (jpeg, png, webp; 'invalid' when\n"
		"the header cannot be read); CAPTION_CHARS counts the code points of\n"
		"KEY.txt.  '-' marks what a sample lacks.  A key holding tabs, newlines or\n"
		"backslashes is escaped (\\t \\n \\\\), as in the rejects TSV.\n"
		"Pack files (mvl pack) list one line per sequence instead:\n"
		"  INDEX  TOKENS/SEQ_LEN  SAMPLES  IMAGES  KEYS (comma-separated; '~': truncated)",
		NULL,
		specs,
	};
	char **args;
	int nargs;
	opts_main(&cmd, argc, argv, &args, &nargs);
	int packs = 0;
	for (int i = 0; i < nargs; i++)
		packs += is_pack_file(args[i]);
	if (packs) {
		int rc = 0;
		for (int i = 0; i < nargs; i++)
			if (!is_pack_file(args[i])) {
				fprintf(stderr, "mvl ls: '%s' is not a pack; list packs and shards separately\n", args[i]);
				rc = 1;
			} else if (list_pack(args[i], o.quiet) != 0) {
				rc = 1;
			}
		free(args);
		return rc;
	}
	o.output = NULL;
	stream_run sr;
	mvl_err err;
	if (stream_run_open(&sr, "ls", &o, args, nargs, RUN_SHARDS, &err) != 0) {
		fprintf(stderr, "mvl ls: %s\n", err.msg);
		free(args);
		return 1;
	}
	sample s;
	sample_init(&s);
	while (stream_run_read(&sr, &s)) {
		print_sample(&s, stdout);
		sr.nkept++;
	}
	sample_free(&s);
	free(args);
	if (ferror(stdout))
		sr.output_failed = 1;
	return stream_run_close(&sr);
}
