/* ls.c: `mvl ls`: one line per sample. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "image.h"
#include "stream_cmd.h"

/* The caption: KEY.txt, else a "caption"/"text" string is not parsed here
 * (ls reads headers only); "-" when absent. */
static void print_sample(const sample *s, FILE *f)
{
	fputs(s->key, f);
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
		"KEY.txt.  '-' marks what a sample lacks.",
		NULL,
		specs,
	};
	char **args;
	int nargs;
	opts_main(&cmd, argc, argv, &args, &nargs);
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
