/* mix_cmd.c: `mvl recipe check` and `mvl mix`. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "commands.h"
#include "json_file.h"
#include "inputs.h"
#include "mix.h"
#include "opts.h"
#include "recipe.h"
#include "shard_reader.h"
#include "shard_writer.h"

/* Loads a recipe, printing its warnings (and errors) to stderr. */
static recipe *load_recipe(const char *cmd, const char *path)
{
	buf diag = {0};
	mvl_err err;
	recipe *r = recipe_load(path, &diag, &err);
	if (diag.len)
		fwrite(diag.data, 1, diag.len, stderr);
	buf_free(&diag);
	if (!r)
		fprintf(stderr, "mvl %s: %s\n", cmd, err.msg);
	return r;
}

/* the recipe's tokenizer (or override), with the chat template's tokens */
static bpe *load_tokenizer(const recipe *r, const char *override, chat_tokens *t, mvl_err *err)
{
	const char *file = override ? override : r->tok.file;
	if (!file) {
		mvl_errf(err, "the recipe trains its tokenizer: pass --tokenizer FILE (as `mvl tok train` wrote it)");
		return NULL;
	}
	bpe *b = bpe_open(file, r->tok.encoding, err);
	if (b && chat_tokens_setup(b, t, err) != 0) {
		bpe_free(b);
		return NULL;
	}
	return b;
}

/* ---------------------------------------------------------------------- */
/* mvl recipe check */

/* tokens of one pass over source i at a stage's pixel bounds */
static int count_source(const recipe *r, int i, const rstage *st, bpe *b, const chat_tokens *t, uint64_t *tokens,
			uint64_t *samples, uint64_t *rejected, mvl_err *err)
{
	inputs in = {0};
	for (int k = 0; k < r->src[i].nshards; k++)
		if (inputs_expand(&in, r->src[i].shards[k], err) != 0) {
			inputs_free(&in);
			return -1;
		}
	if (inputs_shard_dirs(&in, err) != 0) {
		inputs_free(&in);
		return -1;
	}
	reader_opts ro = {0};
	shard_reader *rd = shard_reader_new(in.path, in.n, &ro);
	layout L = {.b = b, .c = bpe_ctx_new(b), .t = t, .min_pixels = st->min_pixels, .max_pixels = st->max_pixels};
	sample s;
	sample_init(&s);
	chat_seq seq = {0};
	*tokens = *samples = *rejected = 0;
	for (;;) {
		reject_info rj;
		mvl_err e;
		int rc = shard_reader_next(rd, &s, &rj, &e);
		if (rc == READ_END)
			break;
		if (rc != READ_SAMPLE) {
			*rejected += rc != READ_INPUT_ERROR;
			continue;
		}
		const member *img;
		int h, w;
		if (layout_sample(&L, &s, r->src[i].kind, &seq, &img, &h, &w, &rj)) {
			(*rejected)++;
			continue;
		}
		*tokens += seq.n;
		(*samples)++;
	}
	chat_seq_free(&seq);
	sample_free(&s);
	bpe_ctx_free(L.c);
	buf_free(&L.scratch);
	shard_reader_free(rd);
	inputs_free(&in);
	return 0;
}

static int recipe_check(const char *path, const char *tokfile, int count)
{
	recipe *r = load_recipe("recipe check", path);
	if (!r)
		return 1;
	mvl_err err;
	chat_tokens t;
	bpe *b = NULL;
	if (count && (tokfile || r->tok.file)) {
		b = load_tokenizer(r, tokfile, &t, &err);
		if (!b) {
			fprintf(stderr, "mvl recipe check: %s\n", err.msg);
			recipe_free(r);
			return 1;
		}
	}
	printf("recipe %s\nseed %llu\n", path, (unsigned long long)r->seed);
	if (r->tok.file) {
		if (strlen(r->tok.file) > 9 && !strcmp(r->tok.file + strlen(r->tok.file) - 9, ".tiktoken"))
			printf("tokenizer: %s (%s pattern unless a .json beside it says otherwise)\n", r->tok.file,
			       r->tok.encoding);
		else
			printf("tokenizer: %s (Hugging Face tokenizer.json)\n", r->tok.file);
	} else {
		printf("tokenizer: trained, %d tokens, pattern %s, min frequency %d, on", r->tok.vocab, r->tok.pattern,
		       r->tok.min_frequency);
		for (int i = 0; i < r->tok.nsources; i++)
			printf(" %s", r->src[r->tok.sources[i]].name);
		printf("\n");
	}
	for (int i = 0; i < r->nsrc; i++) {
		printf("source '%s': %s, shards", r->src[i].name, src_kind_names[r->src[i].kind]);
		for (int k = 0; k < r->src[i].nshards; k++)
			printf(" %s", r->src[i].shards[k]);
		printf("%s%s\n", r->src[i].filters ? ", filters " : "", r->src[i].filters ? r->src[i].filters : "");
	}
	int rc = 0, warnings = 0;
	for (int k = 0; k < r->nstage; k++) {
		const rstage *st = &r->stage[k];
		printf("\nstage '%s': trains", st->name);
		if (st->parts & PART_VIT)
			printf(" vit");
		if (st->parts & PART_PROJECTOR)
			printf(" projector");
		if (st->parts & PART_LLM)
			printf(" llm");
		printf("; seq_len");
		for (int i = 0; i < st->nseq; i++)
			printf("%s%d", i ? ", " : " ", st->seq_len[i]);
		if (st->nseq > 1)
			printf(" (one model each, then %s)", st->soup ? "a greedy soup" : "averaged");
		printf("; %llu tokens = %llu steps of %llu\n", (unsigned long long)st->tokens,
		       (unsigned long long)((st->tokens + st->batch_tokens - 1) / st->batch_tokens),
		       (unsigned long long)st->batch_tokens);
		printf("  lr %g -> %g, %s, warmup %llu steps%s; weight decay %g, grad clip %g, betas %g %g\n", st->lr,
		       st->min_lr, sched_names[st->scheduler], (unsigned long long)st->warmup_steps,
		       st->scheduler == SCHED_WSD ? " (decay over the last fraction given)" : "", st->weight_decay,
		       st->grad_clip, st->beta1, st->beta2);
		printf("  images %llu..%llu pixels; over-long samples %s\n", (unsigned long long)st->min_pixels,
		       (unsigned long long)st->max_pixels, st->truncate ? "truncated (text only)" : "rejected");
		if (st->score_with >= 0) {
			printf("  pairscore: the final model of stage '%s' scores", r->stage[st->score_with].name);
			for (int i = 0; i < st->nscore_src; i++)
				printf("%s%s", i ? ", " : " ", r->src[st->score_src[i]].name);
			if (st->score_drop > 0)
				printf("; the lowest %g%% by %s are dropped\n", 100 * st->score_drop,
				       ps_metric_names[st->score_by]);
			else
				printf("; pairs with %s below %g are dropped\n", ps_metric_names[st->score_by], st->score_min);
		}
		printf("  %-20s %8s %14s %14s %8s\n", "source", "weight", "tokens", "per epoch", "epochs");
		for (int i = 0; i < r->nsrc; i++) {
			if (st->weight[i] <= 0)
				continue;
			uint64_t want = (uint64_t)(st->weight[i] * (double)st->tokens + 0.5), per = 0, ns = 0, nr = 0;
			if (b && count_source(r, i, st, b, &t, &per, &ns, &nr, &err) != 0) {
				fprintf(stderr, "mvl recipe check: source '%s': %s\n", r->src[i].name, err.msg);
				rc = 1;
				continue;
			}
			if (b) {
				double epochs = per ? (double)want / (double)per : 0;
				printf("  %-20s %7.2f%% %14llu %14llu %8.2f\n", r->src[i].name, 100 * st->weight[i],
				       (unsigned long long)want, (unsigned long long)per, epochs);
				if (!per) {
					fprintf(stderr, "%s: stage '%s': source '%s' has no usable sample (%llu rejected)\n",
						path, st->name, r->src[i].name, (unsigned long long)nr);
					rc = 1;
				} else if (epochs > r->max_epochs) {
					fprintf(stderr, "%s: warning: stage '%s' repeats source '%s' %.1f times (max_epochs %d)\n",
						path, st->name, r->src[i].name, epochs, r->max_epochs);
					warnings++;
				}
			} else {
				printf("  %-20s %7.2f%% %14llu %14s %8s\n", r->src[i].name, 100 * st->weight[i],
				       (unsigned long long)want, "?", "?");
			}
		}
	}
	if (r->eval.nsets || r->eval.nres) {
		printf("\neval:");
		for (int i = 0; i < r->eval.nsets; i++)
			printf(" %s=%s", r->eval.set_name[i], r->eval.set_shards[i]);
		printf("; resolutions");
		for (int i = 0; i < r->eval.nres; i++)
			printf(" %llu", (unsigned long long)r->eval.resolutions[i]);
		printf("; metrics");
		for (int i = 0; i < r->eval.nmetrics; i++)
			printf(" %s", r->eval.metrics[i]);
		printf("\n");
	}
	if (!b)
		printf("\n(tokens per epoch not counted: %s)\n",
		       count ? "no tokenizer file yet; pass --tokenizer FILE" : "--no-count");
	printf("\n%s: %s\n", path, rc ? "INVALID (see the errors above)" : "valid");
	(void)warnings;
	bpe_free(b);
	recipe_free(r);
	return rc;
}

int cmd_recipe(int argc, char **argv)
{
	const char *tokfile;
	int nocount;
	const opt_spec specs[] = {
		{"tokenizer", 0, OPT_STR, &tokfile, NULL, "FILE", "count tokens with this tokenizer (default: the recipe's file)"},
		{"no-count", 0, OPT_FLAG, &nocount, NULL, NULL, "do not read the sources (no tokens per epoch, no epochs)"},
		{0},
	};
	const opt_cmd cmd = {
		"recipe", "check [OPTIONS] RECIPE",
		"Validates a recipe (every error with file:line:column) and prints the resolved\n"
		"plan: per stage, the parts trained, schedule, and per source its weight, tokens,\n"
		"tokens per epoch and how many epochs the stage reads (warning above max_epochs).",
		NULL, specs,
	};
	if (argc < 2 || strcmp(argv[1], "check")) {
		if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
			opts_usage(&cmd, stdout);
			return 0;
		}
		fprintf(stderr, "mvl recipe: expected 'check'\nsee 'mvl recipe --help'\n");
		return 2;
	}
	char **args;
	int nargs;
	opts_main(&cmd, argc - 1, argv + 1, &args, &nargs);
	if (nargs != 1) {
		fprintf(stderr, "mvl recipe check: expected one RECIPE file\nsee 'mvl recipe --help'\n");
		free(args);
		return 2;
	}
	int rc = recipe_check(args[0], tokfile, !nocount);
	free(args);
	return rc;
}

/* ---------------------------------------------------------------------- */
/* mvl mix */

typedef struct mix_cmd_opts {
	const char *stage, *from, *tokenizer, *output, *compress, *manifest, *resume, *rejects;
	uint64_t budget, limit, maxcount, maxsize;
	int shuffle_buffer, quiet, allow_damaged;
} mix_cmd_opts;

/* "emitted" (and "shards" written) of a manifest mvl mix wrote for this
 * stage and seed */
static int resume_point(const char *path, const char *stage, uint64_t seed, uint64_t *skip, int *shards,
			mvl_err *err)
{
	json_error_t je;
	json_t *m = json_load_file(path, 0, &je);
	if (!m)
		return mvl_errf(err, "'%s' line %d: %s", path, je.line, je.text);
	json_t *e = json_object_get(m, "emitted");
	const char *st = json_string_value(json_object_get(m, "stage"));
	int rc = 0;
	if (!json_is_integer(e) || json_integer_value(e) < 0)
		rc = mvl_errf(err, "'%s': no \"emitted\" count (not a mix manifest?)", path);
	else if (!st || strcmp(st, stage))
		rc = mvl_errf(err, "'%s' records stage '%s', not '%s'", path, st ? st : "?", stage);
	else if ((uint64_t)json_integer_value(json_object_get(m, "seed")) != seed)
		rc = mvl_errf(err, "'%s' records seed %lld, the recipe says %llu: the streams would not continue each other",
			      path, (long long)json_integer_value(json_object_get(m, "seed")), (unsigned long long)seed);
	else {
		*skip = (uint64_t)json_integer_value(e);
		*shards = (int)json_integer_value(json_object_get(m, "shards"));
	}
	json_decref(m);
	return rc;
}

static int run_mix(const char *path, const mix_cmd_opts *o)
{
	recipe *r = load_recipe("mix", path);
	if (!r)
		return 1;
	mvl_err err;
	int rc = 1;
	chat_tokens t;
	bpe *b = NULL;
	mixer *m = NULL;
	shard_writer *w = NULL;
	rejects *log = NULL;
	layout L = {0};
	sample s;
	sample_init(&s);
	uint64_t skip = 0, written = 0;
	const rstage *st = recipe_stage(r, o->stage);
	if (!st) {
		mvl_errf(&err, "%s has no stage '%s'", path, o->stage);
		goto out;
	}
	int first_shard = 0;
	if (o->resume && resume_point(o->resume, o->stage, r->seed, &skip, &first_shard, &err) != 0)
		goto out;
	if (!(b = load_tokenizer(r, o->tokenizer, &t, &err)))
		goto out;
	L = (layout){.b = b, .c = bpe_ctx_new(b), .t = &t, .min_pixels = st->min_pixels, .max_pixels = st->max_pixels};
	mix_opts mo = {.from = o->from, .shuffle_buffer = o->shuffle_buffer, .budget = o->budget};
	if (!(m = mixer_new(r, st, &mo, &L, &err)))
		goto out;
	if (!(log = rejects_open(o->rejects, &err)))
		goto out;
	/* a resumed run goes on numbering the shards after the earlier run's */
	writer_opts wo = {.pattern = o->output, .maxcount = o->maxcount, .maxsize = o->maxsize, .compress = o->compress,
			  .start = o->output ? first_shard : 0};
	if (!(w = shard_writer_open(&wo, &err)))
		goto out;
	int k;
	uint64_t n = 0;
	while ((k = mixer_next(m, &s, log, &err)) == 1) {
		if (n++ < skip)
			continue;
		if (shard_writer_write(w, &s, &err) != 0) {
			k = -1;
			break;
		}
		if (o->limit && ++written >= o->limit)
			break;
	}
	if (k < 0)
		goto out;
	rc = 0;
out:; /* a label before a declaration is C23; clang (make fuzz) says so */
	mvl_err werr;
	/* completed shards, and the open one close() completes */
	int shards = w && o->output ? shard_writer_shards(w) + (shard_writer_samples(w) > 0) : 0;
	if (w && shard_writer_close(w, rc == 0, &werr) != 0 && rc == 0) {
		err = werr;
		rc = 1;
	}
	if (rc == 0 && m) {
		json_t *j = mixer_report(m, o->quiet ? NULL : stderr);
		/* the manifest also records the shards written, for --resume */
		json_object_set_new(j, "shards", json_integer(first_shard + shards));
		if (o->manifest && json_save(o->manifest, j, &err) != 0)
			rc = 1;
		json_decref(j);
	}
	if (log) {
		if (!o->quiet || rejects_total(log))
			rejects_summary(log, "mix", mixer_emitted(m) + rejects_total(log), mixer_emitted(m), stderr);
		mvl_err e2;
		if (rejects_close(log, rc == 0, &e2) != 0 && rc == 0) {
			err = e2;
			rc = 1;
		}
	}
	if (rc)
		fprintf(stderr, "mvl mix: %s\n", err.msg);
	int damaged = mixer_damaged(m);
	if (rc == 0 && damaged) {
		/* the stream is whole but lacks the damaged inputs' samples:
		 * exit 1 as filter does, unless the user accepts that */
		fprintf(stderr, "mvl mix: %d damaged source input%s%s\n", damaged, damaged == 1 ? "" : "s",
			o->allow_damaged ? " passed over (--allow-damaged)" : " (see above; --allow-damaged accepts them)");
		rc = !o->allow_damaged;
	}
	mixer_free(m);
	sample_free(&s);
	bpe_ctx_free(L.c);
	buf_free(&L.scratch);
	bpe_free(b);
	recipe_free(r);
	return rc;
}

int cmd_mix(int argc, char **argv)
{
	mix_cmd_opts o;
	const opt_spec specs[] = {
		{"stage", 0, OPT_STR, &o.stage, NULL, "NAME", "the stage to mix (required)"},
		{"from", 0, OPT_STR, &o.from, NULL, "DIR",
		 "read source NAME's filtered shards from DIR/NAME/ (default: the recipe's shard patterns)"},
		{"tokenizer", 0, OPT_STR, &o.tokenizer, NULL, "FILE", "tokenizer to count with (default: the recipe's file)"},
		{"budget", 0, OPT_SIZE, &o.budget, "0", "TOKENS", "token budget (0: the stage's)"},
		{"shuffle-buffer", 0, OPT_INT, &o.shuffle_buffer, "256", "N", "samples held per source for shuffling"},
		{"limit", 0, OPT_U64, &o.limit, "0", "N", "write at most N samples (0: until the budget)"},
		{"resume", 0, OPT_STR, &o.resume, NULL, "MANIFEST",
		 "continue after the samples an earlier run's --manifest records as emitted"},
		{"manifest", 0, OPT_STR, &o.manifest, NULL, "FILE",
		 "write what was consumed (per source: samples, tokens, epochs, shards) as JSON"},
		{"rejects", 0, OPT_STR, &o.rejects, NULL, "FILE", "write rejected samples as TSV (key, source, reason, detail)"},
		{"allow-damaged", 0, OPT_FLAG, &o.allow_damaged, NULL, NULL,
		 "exit 0 when a source shard was unreadable or broke mid-way (still reported, its lost samples counted)"},
		{"output", 'o', OPT_STR, &o.output, NULL, "PATTERN",
		 "write shards named by PATTERN (one %d, e.g. mix/%06d.tar) instead of stdout"},
		{"maxcount", 0, OPT_U64, &o.maxcount, "10000", "N", "start a new shard after N samples (0: no limit)"},
		{"maxsize", 0, OPT_SIZE, &o.maxsize, "1GB", "SIZE", "start a new shard before SIZE bytes of tar"},
		{"compress", 0, OPT_CHOICE, &o.compress, "none", "none|zst|gz", "compression of the stdout stream"},
		{"quiet", 'q', OPT_FLAG, &o.quiet, NULL, NULL, "no mixture table"},
		{0},
	};
	const opt_cmd cmd = {
		"mix", "RECIPE --stage NAME [OPTIONS]",
		"Writes a stage's sample stream: its sources interleaved by token weight (tokens\n"
		"as the packer lays samples out), shards shuffled per epoch and samples through a\n"
		"bounded shuffle buffer, sources re-read as the budget requires, all from the\n"
		"recipe's seed.  Keys become SOURCE/EPOCH/KEY; KEY.json gets \"mix\".  Prints the\n"
		"requested and realized mixture.",
		NULL, specs,
	};
	char **args;
	int nargs;
	opts_main(&cmd, argc, argv, &args, &nargs);
	if (nargs != 1 || !o.stage) {
		fprintf(stderr, "mvl mix: expected RECIPE and --stage NAME\nsee 'mvl mix --help'\n");
		free(args);
		return 2;
	}
	if (o.shuffle_buffer < 1 || o.shuffle_buffer > 1000000) {
		fprintf(stderr, "mvl mix: --shuffle-buffer must be in [1, 1000000]\n");
		free(args);
		return 2;
	}
	int rc = run_mix(args[0], &o);
	free(args);
	return rc;
}
