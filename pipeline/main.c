/* main.c: the `mvl` command table and dispatch (git-style). */
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "util.h"

static const struct command {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *summary;
} commands[] = {
	{"average", cmd_average, "average checkpoints (uniform, weighted, or a greedy soup on a dev pack)"},
	{"capfilter", cmd_capfilter, "drop captions by quality rules (words, chars, ratios, language)"},
	{"cat", cmd_cat, "concatenate, recompress or convert sample streams"},
	{"clean", cmd_clean, "clean caption text: UTF-8, HTML, URLs, Unicode, whitespace"},
	{"dedup", cmd_dedup, "drop exact and near-duplicate images and captions, decontaminate"},
	{"eval", cmd_eval, "score a checkpoint on held-out sets, with test-time resolution search"},
	{"filter", cmd_filter, "run a chain of filters: 'clean,capfilter:min_words=3,imgfilter'"},
	{"generate", cmd_generate, "run a checkpoint on an image and a prompt (greedy or top-p, KV cache)"},
	{"imgfilter", cmd_imgfilter, "drop images by size, aspect ratio, format, blankness"},
	{"ingest", cmd_ingest, "normalize images and captions from folders, JSONL or shards into a stream"},
	{"ls", cmd_ls, "list samples: key, members, image format and size, caption length"},
	{"mix", cmd_mix, "a stage's sample stream: sources interleaved by token weight, shuffled, from the seed"},
	{"pack", cmd_pack, "pack a stage's stream into fixed-length sequences for the trainer"},
	{"recipe", cmd_recipe, "check a recipe and print its resolved plan: tokens and epochs per source"},
	{"report", cmd_report, "write RUN_DIR/report.html: one self-contained page of what a run did"},
	{"run", cmd_run, "run a recipe end to end: filter, tokenizer, mix, pack, train, average, eval, report"},
	{"score", cmd_score, "score image-caption pairs with a checkpoint (KEY.json pairscore) for the pairscore filter"},
	{"shard", cmd_shard, "re-shard a stream into sized shards"},
	{"tok", cmd_tok, "byte-level BPE tokenizer, identical to tiktoken: encode, decode"},
	{"train", cmd_train, "train the vision-language model on packs (or synthetic data), stage by stage"},
};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

static void usage(FILE *f)
{
	fprintf(f, "usage: mvl [--version] [--help] COMMAND [ARGS]\n\ncommands:\n");
	for (size_t i = 0; i < NCOMMANDS; i++)
		fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
	fprintf(f, "\n'mvl help COMMAND' or 'mvl COMMAND --help' shows a command's options.\n");
}

static const struct command *lookup(const char *name)
{
	for (size_t i = 0; i < NCOMMANDS; i++)
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	return NULL;
}

static int finish(int rc)
{
	/* A full disk on stdout is an error, not a success. */
	if (fflush(stdout) != 0 || ferror(stdout)) {
		perror("mvl: error writing standard output");
		return rc ? rc : 1;
	}
	return rc;
}

int main(int argc, char **argv)
{
	/* Member names and captions are UTF-8 whatever the user's locale:
	 * libarchive converts names through the C library's locale, and in the
	 * "C" locale every name takes the slow ASCII path (and non-ASCII names
	 * draw warnings).  Messages and numbers stay in the C conventions. */
	if (!setlocale(LC_CTYPE, "C.UTF-8"))
		setlocale(LC_CTYPE, "C.utf8");
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	const char *name = argv[1];
	/* The trainer's threads meet at a barrier after every kernel.  libgomp
	 * spins there by default, and when another process takes one of the
	 * cores the spinning thread starves the one it waits for: tiny trained
	 * at 580 tokens/s instead of 1,820 beside one busy process.  The wait
	 * policy is read when libgomp loads, so it is set here, once, by
	 * re-executing; OMP_WAIT_POLICY set by the user is left alone.  Every
	 * command that runs the model is the same (eval took 3x the CPU time
	 * beside the training of a parallel job), and `mvl run` passes the
	 * setting to its steps. */
	static const char *const model_cmds[] = {"train", "eval", "score", "generate", "average", "run", NULL};
	int runs_model = 0;
	for (int i = 0; model_cmds[i]; i++)
		runs_model |= strcmp(name, model_cmds[i]) == 0;
	if (runs_model && !getenv("OMP_WAIT_POLICY")) {
		setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
		execv("/proc/self/exe", argv); /* on failure: go on spinning */
	}
	if (strcmp(name, "--version") == 0 || strcmp(name, "version") == 0) {
		printf("mvl %s\n", MVL_VERSION);
		return finish(0);
	}
	if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0) {
		usage(stdout);
		return finish(0);
	}
	if (strcmp(name, "help") == 0) {
		if (argc < 3) {
			usage(stdout);
			return finish(0);
		}
		const struct command *c = lookup(argv[2]);
		if (!c) {
			fprintf(stderr, "mvl: '%s' is not an mvl command; see 'mvl help'\n", argv[2]);
			return 2;
		}
		char *hargv[] = {(char *)c->name, "--help", NULL};
		return finish(c->fn(2, hargv));
	}
	const struct command *c = lookup(name);
	if (!c) {
		fprintf(stderr, "mvl: '%s' is not an mvl command; see 'mvl help'\n", name);
		return 2;
	}
	return finish(c->fn(argc - 1, argv + 1));
}
