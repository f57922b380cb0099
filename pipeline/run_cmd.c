/* run_cmd.c: `mvl run RECIPE -o RUN_DIR`: every step from raw shards to an
 * evaluated model, each one an mvl command of its own, resumable.
 *
 * Steps, in order, each recorded in RUN_DIR/manifest.json when it ends:
 *   filter.SOURCE     mvl filter (or mvl cat without filters) -> filter/SOURCE/;
 *                     raw shards come from the web: a damaged one is
 *                     reported and passed over (--allow-damaged; its loss
 *                     is in the stats and the report) unless --stop-on-damaged
 *   tokenizer         mvl tok train on the recipe's sources (unless a file)
 *   score.STAGE.SRC   mvl score by an earlier stage's model (a stage's pairscore:)
 *   pairscore.STAGE.SRC  mvl filter pairscore -> stages/STAGE/data/SRC
 *   mix.STAGE         mvl mix --from filter/ (or STAGE/data/) -> stages/STAGE/mix/, mix.json
 *   pack.STAGE.L      mvl pack -> stages/STAGE/pack-L.pack (+ .json stats)
 *   train.STAGE.L     mvl train -> stages/STAGE/train-L/ (from the previous
 *                     stage's final model)
 *   pack.STAGE.dev    mvl pack of the eval set captions_dev (held-out loss)
 *   average.STAGE     mvl average of the stage's lengths -> average.safetensors
 *   eval              mvl eval on the recipe's eval sets -> eval.json
 *   report            mvl report -> report.html
 * A step recorded done whose outputs all exist is skipped, so a killed run
 * resumes at the step it was in (each command writes its outputs under
 * temporary names, so a half-written output never looks complete; a step
 * that is redone starts from an emptied output directory).
 * Each command runs as a child process of this same binary, its stdout
 * sent to stderr: the run's own stdout stays quiet.
 *
 * Scale out (--ranks N): `mvl run` itself is launched once, as a plain
 * process, and launches its split-aware steps as `mpirun -np N mvl ...`
 * (--allow-run-as-root added when run as root, --mpi-args for the rest).
 * Under `mpirun -np N mvl run` rank 0 is that driver (as with --ranks N)
 * and the other ranks leave at once: the steps are child processes, and a
 * child of an MPI rank cannot join a job of its own (OpenMPI forbids
 * MPI_Init in a forked child of a rank), so the driver clears the job's
 * variables and starts a fresh mpirun per split step; N drivers would
 * race on one manifest.  One driver
 * that starts an mpirun job per step keeps every step a command a user can
 * run by hand, resumable as before.  Split-aware steps: filter.SOURCE
 * (pipeline/filter_split.c: the result is that of one process) and
 * train.STAGE.L (data parallel, trainer/ddp.h: the stage's batch_tokens is
 * the global batch, shared by the ranks, so the model trained is that of
 * one process up to float summation order).  The other steps run as one
 * process, as without --ranks.
 */
#include <errno.h>
#include <sched.h>
#include <stdarg.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "bpe.h"
#include "chat.h"
#include "commands.h"
#include "json_file.h"
#include "opts.h"
#include "recipe.h"

typedef struct run {
	const char *dir, *recipe_path, *self;
	recipe *r;
	json_t *manifest, *steps;
	char *tok;       /* the tokenizer file */
	int vocab;       /* the model's vocabulary: tokenizer + chat tokens */
	int raw;         /* ablation: no filters */
	int quiet, threads;
	int stop_on_damaged; /* a damaged raw shard fails the filter step */
	int ranks;            /* > 1: split-aware steps under mpirun -np ranks */
	const char *mpi_args; /* extra mpirun options, space-separated */
	int nstep, done, skipped;
} run;

/* The commands that run split across ranks with the result of one
 * process; only these are started under mpirun. */
static const char *const MPI_STEPS[] = {"filter", "train", NULL};

static int split_aware(const char *cmd)
{
	for (int i = 0; MPI_STEPS[i]; i++)
		if (!strcmp(MPI_STEPS[i], cmd))
			return 1;
	return 0;
}

/* ---------------------------------------------------------------------- */
/* the manifest */

static int save_manifest(run *R, mvl_err *err)
{
	buf p = {0};
	buf_printf(&p, "%s/manifest.json", R->dir);
	int rc = json_save((char *)p.data, R->manifest, err);
	buf_free(&p);
	return rc;
}

static json_t *find_step(run *R, const char *name)
{
	size_t i;
	json_t *s;
	json_array_foreach(R->steps, i, s) if (!strcmp(json_string_value(json_object_get(s, "name")), name)) return s;
	return NULL;
}

/* done before, and every output still there */
static int already_done(run *R, const char *name)
{
	json_t *s = find_step(R, name);
	const char *st = json_string_value(json_object_get(s, "status"));
	if (!st || strcmp(st, "done"))
		return 0;
	size_t i;
	json_t *o;
	json_array_foreach(json_object_get(s, "outputs"), i, o) if (access(json_string_value(o), F_OK) != 0) return 0;
	return 1;
}

static void empty_dir(const char *path)
{
	remove_tree(path);
	mkdir(path, 0755);
}

static int mkdirs(const char *path)
{
	char *p = xstrdup(path);
	for (char *s = p + 1; *s; s++)
		if (*s == '/') {
			*s = 0;
			mkdir(p, 0755);
			*s = '/';
		}
	int rc = mkdir(p, 0755) == 0 || errno == EEXIST ? 0 : -1;
	free(p);
	return rc;
}

/* argv builder */
typedef struct cmdline {
	char **v;
	int n, cap;
} cmdline;

static void arg(cmdline *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void arg(cmdline *a, const char *fmt, ...)
{
	if (a->n + 2 > a->cap) {
		a->cap = a->cap ? 2 * a->cap : 32;
		a->v = xrealloc(a->v, (size_t)a->cap * sizeof *a->v);
	}
	va_list ap;
	va_start(ap, fmt);
	char *s = NULL;
	if (vasprintf(&s, fmt, ap) < 0)
		s = xstrdup("");
	va_end(ap);
	a->v[a->n++] = s;
	a->v[a->n] = NULL;
}

static void args_free(cmdline *a)
{
	for (int i = 0; i < a->n; i++)
		free(a->v[i]);
	free(a->v);
	memset(a, 0, sizeof *a);
}

/* Runs `mvl ARGS...` as a step unless it is done; outputs (NULL-ended)
 * are what must exist afterwards; clear: a directory emptied first. */
static int step(run *R, const char *name, cmdline *a, const char *const *outputs, const char *clear, mvl_err *err)
{
	R->nstep++;
	if (already_done(R, name)) {
		R->skipped++;
		if (!R->quiet)
			fprintf(stderr, "mvl run: [%d] %s: done before, skipped\n", R->nstep, name);
		args_free(a);
		return 0;
	}
	if (clear)
		empty_dir(clear);
	if (!R->quiet) {
		fprintf(stderr, "mvl run: [%d] %s:", R->nstep, name);
		for (int i = 0; i < a->n; i++)
			fprintf(stderr, " %s", a->v[i]);
		fprintf(stderr, "\n");
	}
	double t0 = now_sec();
	/* child: argv[0] "mvl", then the command; or mpirun [options] -np N
	 * /path/to/mvl, then the command */
	int mpi = R->ranks > 1 && a->n > 0 && split_aware(a->v[0]);
	cmdline pre = {0};
	if (mpi) {
		arg(&pre, "mpirun");
		if (geteuid() == 0)
			arg(&pre, "--allow-run-as-root");
		char *extra = xstrdup(R->mpi_args ? R->mpi_args : ""), *save = NULL;
		for (char *w = strtok_r(extra, " ", &save); w; w = strtok_r(NULL, " ", &save))
			arg(&pre, "%s", w);
		free(extra);
		arg(&pre, "-np");
		arg(&pre, "%d", R->ranks);
		arg(&pre, "%s", R->self);
	} else {
		arg(&pre, "mvl");
	}
	char **cv = xcalloc((size_t)(pre.n + a->n) + 1, sizeof *cv);
	for (int i = 0; i < pre.n; i++)
		cv[i] = pre.v[i];
	for (int i = 0; i < a->n; i++)
		cv[pre.n + i] = a->v[i];
	if (mpi && !R->quiet)
		fprintf(stderr, "mvl run: [%d] %s: on %d ranks (mpirun)\n", R->nstep, name, R->ranks);
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		dup2(2, 1);
		if (mpi)
			execvp(cv[0], cv);
		else
			execv(R->self, cv);
		_exit(127);
	}
	int status = 0;
	int rc = pid < 0 ? -1 : waitpid(pid, &status, 0) < 0 ? -1 : 0;
	free(cv);
	args_free(&pre);
	double secs = now_sec() - t0;
	int ok = rc == 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
	json_t *s = find_step(R, name);
	if (!s) {
		s = json_object();
		json_array_append_new(R->steps, s);
	}
	json_t *outs = json_array(), *argj = json_array();
	for (int i = 0; outputs && outputs[i]; i++)
		json_array_append_new(outs, json_string(outputs[i]));
	for (int i = 0; i < a->n; i++)
		json_array_append_new(argj, json_string(a->v[i]));
	json_object_set_new(s, "name", json_string(name));
	json_object_set_new(s, "status", json_string(ok ? "done" : "failed"));
	json_object_set_new(s, "seconds", json_real(secs));
	json_object_set_new(s, "outputs", outs);
	json_object_set_new(s, "command", argj);
	json_object_set_new(s, "ranks", json_integer(mpi ? R->ranks : 1));
	for (int i = 0; ok && outputs && outputs[i]; i++)
		if (access(outputs[i], F_OK) != 0) {
			ok = 0;
			json_object_set_new(s, "status", json_string("failed"));
			mvl_errf(err, "step %s: ended without writing '%s'", name, outputs[i]);
		}
	mvl_err e2;
	if (save_manifest(R, &e2) != 0 && ok) {
		*err = e2;
		ok = 0;
	}
	args_free(a);
	if (!ok) {
		if (!*err->msg || strstr(err->msg, "step ") != err->msg)
			mvl_errf(err, "step %s failed (%s %d); fix it and run again: finished steps are kept", name,
				 WIFEXITED(status) ? "exit status" : "signal",
				 WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
		return -1;
	}
	R->done++;
	if (!R->quiet)
		fprintf(stderr, "mvl run: [%d] %s: done in %.1f s\n", R->nstep, name, secs);
	return 0;
}

/* ---------------------------------------------------------------------- */
/* the steps */

static int filter_sources(run *R, mvl_err *err)
{
	for (int i = 0; i < R->r->nsrc; i++) {
		const rsource *s = &R->r->src[i];
		cmdline a = {0};
		buf name = {0}, dir = {0}, stats = {0}, rej = {0};
		buf_printf(&name, "filter.%s", s->name);
		buf_printf(&dir, "%s/filter/%s", R->dir, s->name);
		buf_printf(&stats, "%s/filter/%s.stats.json", R->dir, s->name);
		buf_printf(&rej, "%s/filter/%s.rejects.tsv", R->dir, s->name);
		mkdirs((char *)dir.data);
		int filtered = s->filters && !R->raw;
		if (filtered) {
			arg(&a, "filter");
			arg(&a, "%s", s->filters);
			arg(&a, "--stats");
			arg(&a, "%s", (char *)stats.data);
		} else {
			arg(&a, "cat");
		}
		arg(&a, "-q");
		if (!R->stop_on_damaged)
			arg(&a, "--allow-damaged");
		arg(&a, "--rejects");
		arg(&a, "%s", (char *)rej.data);
		arg(&a, "-o");
		arg(&a, "%s/%%06d.tar", (char *)dir.data);
		for (int k = 0; k < s->nshards; k++)
			arg(&a, "%s", s->shards[k]);
		const char *outs[] = {(char *)rej.data, filtered ? (char *)stats.data : NULL, NULL};
		int rc = step(R, (char *)name.data, &a, outs, (char *)dir.data, err);
		buf_free(&name);
		buf_free(&dir);
		buf_free(&stats);
		buf_free(&rej);
		if (rc)
			return -1;
	}
	return 0;
}

static int tokenizer(run *R, mvl_err *err)
{
	if (R->r->tok.file) {
		R->tok = xstrdup(R->r->tok.file);
	} else {
		buf out = {0}, tk = {0}, sp = {0};
		buf_printf(&out, "%s/tokenizer/tok", R->dir);
		buf_printf(&tk, "%s.tiktoken", (char *)out.data);
		mkdirs(R->dir);
		buf_printf(&sp, "%s/tokenizer", R->dir);
		mkdirs((char *)sp.data);
		sp.len = 0;
		/* the chat template's tokens first, then the recipe's own */
		buf_printf(&sp, "<|endoftext|>,<|vision_start|>,<|image_pad|>,<|vision_end|>,<|im_start|>,<|im_end|>");
		for (int i = 0; i < R->r->tok.nspecial; i++)
			if (!strstr((char *)sp.data, R->r->tok.special[i]))
				buf_printf(&sp, ",%s", R->r->tok.special[i]);
		cmdline a = {0};
		arg(&a, "tok");
		arg(&a, "train");
		arg(&a, "--stream");
		arg(&a, "--vocab");
		arg(&a, "%d", R->r->tok.vocab);
		arg(&a, "--min-frequency");
		arg(&a, "%d", R->r->tok.min_frequency);
		arg(&a, "--encoding");
		arg(&a, "%s", R->r->tok.pattern);
		arg(&a, "--special");
		arg(&a, "%s", (char *)sp.data);
		arg(&a, "-o");
		arg(&a, "%s", (char *)out.data);
		for (int i = 0; i < R->r->tok.nsources; i++)
			arg(&a, "%s/filter/%s", R->dir, R->r->src[R->r->tok.sources[i]].name);
		const char *outs[] = {(char *)tk.data, NULL};
		int rc = step(R, "tokenizer", &a, outs, NULL, err);
		R->tok = (char *)tk.data;
		buf_free(&out);
		buf_free(&sp);
		if (rc)
			return -1;
	}
	/* the model's vocabulary: the tokenizer's ids and the chat tokens */
	bpe *b = bpe_open(R->tok, R->r->tok.encoding, err);
	chat_tokens t;
	if (!b || chat_tokens_setup(b, &t, err) != 0) {
		bpe_free(b);
		return mvl_errprefix(err, "tokenizer '%s'", R->tok);
	}
	R->vocab = (int)bpe_vocab_size(b);
	bpe_free(b);
	return 0;
}

/* `mvl pack` of stage st at length L, up to its outputs and inputs */
static void pack_args(run *R, cmdline *a, const rstage *st, int L)
{
	arg(a, "pack");
	arg(a, "-q");
	arg(a, "--recipe");
	arg(a, "%s", R->recipe_path);
	arg(a, "--stage");
	arg(a, "%s", st->name);
	arg(a, "--seq-len");
	arg(a, "%d", L);
	arg(a, "--tokenizer");
	arg(a, "%s", R->tok);
}

/* The threshold below which the lowest fraction f of a metric lies, from
 * the percentiles `mvl score --stats` wrote. */
static int score_threshold(const char *stats, const char *metric, double f, double *out, mvl_err *err)
{
	json_error_t je;
	json_t *j = json_load_file(stats, 0, &je);
	json_t *mj = json_object_get(json_object_get(j, "metrics"), metric);
	json_t *q = json_object_get(mj, "quantiles");
	if (json_is_integer(json_object_get(mj, "n")) && json_integer_value(json_object_get(mj, "n")) == 0) {
		/* nothing scored by this metric: nothing to drop */
		*out = -1e30;
		json_decref(j);
		return 0;
	}
	if (json_array_size(q) != 101) {
		json_decref(j);
		return mvl_errf(err, "'%s': no percentiles of '%s'%s%s", stats, metric, j ? "" : ": ", j ? "" : je.text);
	}
	double at = f * 100;
	int i = (int)at;
	double lo = json_number_value(json_array_get(q, (size_t)i));
	double hi = json_number_value(json_array_get(q, (size_t)(i < 100 ? i + 1 : 100)));
	*out = lo + (hi - lo) * (at - i);
	json_decref(j);
	return 0;
}

/* Model-based pair filtering before stage st's mix: each scored source is
 * scored by the final model of the stage it names (score.STAGE.SRC) and
 * filtered by pairscore (pairscore.STAGE.SRC) into STAGE/data/SRC; the
 * other sources are linked there from filter/, so the mix reads one
 * directory. */
static int pair_filter(run *R, const rstage *st, const char *sd, const char *ckpt, mvl_err *err)
{
	const rstage *with = &R->r->stage[st->score_with];
	for (int i = 0; i < R->r->nsrc; i++) {
		const char *src = R->r->src[i].name;
		int scored = 0;
		for (int k = 0; k < st->nscore_src; k++)
			scored |= st->score_src[k] == i;
		buf data = {0};
		buf_printf(&data, "%s/data/%s", sd, src);
		if (!scored) {
			/* relative: the run directory can move */
			buf to = {0}, d2 = {0};
			buf_printf(&to, "../../../filter/%s", src);
			buf_printf(&d2, "%s/data", sd);
			mkdirs((char *)d2.data);
			buf_free(&d2);
			remove_tree((char *)data.data);
			int rc = symlink((char *)to.data, (char *)data.data);
			buf_free(&to);
			if (rc != 0) {
				mvl_errf(err, "cannot link '%s': %s", (char *)data.data, strerror(errno));
				buf_free(&data);
				return -1;
			}
			buf_free(&data);
			continue;
		}
		buf name = {0}, sc = {0}, stats = {0}, fst = {0}, rej = {0};
		buf_printf(&sc, "%s/score/%s", sd, src);
		buf_printf(&stats, "%s/score/%s.stats.json", sd, src);
		buf_printf(&fst, "%s/pairscore/%s.stats.json", sd, src);
		buf_printf(&rej, "%s/pairscore/%s.rejects.tsv", sd, src);
		mkdirs((char *)sc.data);
		mkdirs((char *)data.data);
		buf_printf(&name, "%s/pairscore", sd);
		mkdirs((char *)name.data);
		name.len = 0;
		buf_printf(&name, "score.%s.%s", st->name, src);
		cmdline a = {0};
		arg(&a, "score");
		arg(&a, "-q");
		arg(&a, "--ckpt");
		arg(&a, "%s", ckpt);
		arg(&a, "--tokenizer");
		arg(&a, "%s", R->tok);
		arg(&a, "--min-pixels");
		arg(&a, "%llu", (unsigned long long)with->min_pixels);
		arg(&a, "--max-pixels");
		arg(&a, "%llu", (unsigned long long)with->max_pixels);
		arg(&a, "--stats");
		arg(&a, "%s", (char *)stats.data);
		arg(&a, "-o");
		arg(&a, "%s/%%06d.tar", (char *)sc.data);
		arg(&a, "%s/filter/%s/*.tar", R->dir, src);
		const char *so[] = {(char *)stats.data, NULL};
		int rc = step(R, (char *)name.data, &a, so, (char *)sc.data, err);
		/* the threshold: given, or the lowest fraction's bound */
		const char *metric = ps_metric_names[st->score_by];
		double thr = st->score_min;
		if (rc == 0 && st->score_drop > 0)
			rc = score_threshold((char *)stats.data, metric, st->score_drop, &thr, err);
		if (rc == 0) {
			static const char *const opt[] = {"min_gain", "min_contrast", "min_with"};
			name.len = 0;
			buf_printf(&name, "pairscore.%s.%s", st->name, src);
			arg(&a, "filter");
			/* only the chosen rule: the others' defaults off */
			arg(&a, "pairscore:min_gain=-1e30:%s=%.9g", opt[st->score_by], thr);
			arg(&a, "--stats");
			arg(&a, "%s", (char *)fst.data);
			arg(&a, "-q");
			arg(&a, "--rejects");
			arg(&a, "%s", (char *)rej.data);
			arg(&a, "-o");
			arg(&a, "%s/%%06d.tar", (char *)data.data);
			arg(&a, "%s/*.tar", (char *)sc.data);
			const char *fo[] = {(char *)rej.data, (char *)fst.data, NULL};
			rc = step(R, (char *)name.data, &a, fo, (char *)data.data, err);
		}
		buf_free(&name);
		buf_free(&sc);
		buf_free(&stats);
		buf_free(&fst);
		buf_free(&rej);
		buf_free(&data);
		if (rc)
			return -1;
	}
	return 0;
}

static int stages(run *R, char **final, mvl_err *err)
{
	char *prev = NULL;
	int rc = 0;
	char **finals = xcalloc((size_t)R->r->nstage, sizeof *finals);
	for (int k = 0; k < R->r->nstage; k++) {
		const rstage *st = &R->r->stage[k];
		buf sd = {0}, name = {0}, mixdir = {0}, mixman = {0};
		buf_printf(&sd, "%s/stages/%s", R->dir, st->name);
		buf_printf(&mixdir, "%s/mix", (char *)sd.data);
		buf_printf(&mixman, "%s/mix.json", (char *)sd.data);
		mkdirs((char *)mixdir.data);
		/* model-based pair filtering (not in the raw ablation) */
		int scored = st->score_with >= 0 && st->nscore_src && !R->raw;
		if (scored && pair_filter(R, st, (char *)sd.data, finals[st->score_with], err) != 0) {
			for (int i = 0; i < k; i++)
				free(finals[i]);
			free(finals);
			free(prev);
			buf_free(&sd);
			buf_free(&mixdir);
			buf_free(&mixman);
			return -1;
		}
		cmdline a = {0};
		arg(&a, "mix");
		arg(&a, "%s", R->recipe_path);
		arg(&a, "--stage");
		arg(&a, "%s", st->name);
		arg(&a, "-q");
		arg(&a, "--from");
		if (scored)
			arg(&a, "%s/data", (char *)sd.data);
		else
			arg(&a, "%s/filter", R->dir);
		arg(&a, "--tokenizer");
		arg(&a, "%s", R->tok);
		arg(&a, "--manifest");
		arg(&a, "%s", (char *)mixman.data);
		arg(&a, "--rejects");
		arg(&a, "%s/mix.rejects.tsv", (char *)sd.data);
		arg(&a, "-o");
		arg(&a, "%s/%%06d.tar", (char *)mixdir.data);
		buf_printf(&name, "mix.%s", st->name);
		const char *mo[] = {(char *)mixman.data, NULL};
		rc = step(R, (char *)name.data, &a, mo, (char *)mixdir.data, err);
		char **variants = xcalloc((size_t)st->nseq, sizeof *variants);
		for (int i = 0; rc == 0 && i < st->nseq; i++) {
			int L = st->seq_len[i];
			buf pk = {0}, ps = {0}, td = {0}, tl = {0};
			buf_printf(&pk, "%s/pack-%d.pack", (char *)sd.data, L);
			buf_printf(&ps, "%s/pack-%d.json", (char *)sd.data, L);
			buf_printf(&td, "%s/train-%d", (char *)sd.data, L);
			buf_printf(&tl, "%s/latest", (char *)td.data);
			name.len = 0;
			buf_printf(&name, "pack.%s.%d", st->name, L);
			pack_args(R, &a, st, L);
			arg(&a, "--stats");
			arg(&a, "%s", (char *)ps.data);
			arg(&a, "--rejects");
			arg(&a, "%s/pack-%d.rejects.tsv", (char *)sd.data, L);
			arg(&a, "-o");
			arg(&a, "%s", (char *)pk.data);
			arg(&a, "%s/*.tar", (char *)mixdir.data);
			const char *po[] = {(char *)pk.data, (char *)ps.data, NULL};
			rc = step(R, (char *)name.data, &a, po, NULL, err);
			name.len = 0;
			buf_printf(&name, "train.%s.%d", st->name, L);
			if (rc == 0) {
				arg(&a, "train");
				arg(&a, "-q");
				arg(&a, "--recipe");
				arg(&a, "%s", R->recipe_path);
				arg(&a, "--stage");
				arg(&a, "%s", st->name);
				arg(&a, "--seq-len");
				arg(&a, "%d", L);
				arg(&a, "--preset");
				arg(&a, "%s", R->r->model_preset);
				arg(&a, "--tied");
				arg(&a, "%d", R->r->model_tied);
				arg(&a, "--vocab");
				arg(&a, "%d", R->vocab);
				arg(&a, "--seed");
				arg(&a, "%llu", (unsigned long long)R->r->seed);
				if (R->threads) {
					arg(&a, "-j");
					arg(&a, "%d", R->threads);
				}
				if (prev) {
					arg(&a, "--init");
					arg(&a, "%s", prev);
				}
				arg(&a, "-o");
				arg(&a, "%s", (char *)td.data);
				arg(&a, "%s", (char *)pk.data);
				const char *to[] = {(char *)tl.data, NULL};
				rc = step(R, (char *)name.data, &a, to, (char *)td.data, err);
			}
			variants[i] = (char *)td.data;
			buf_free(&pk);
			buf_free(&ps);
			buf_free(&tl);
		}
		char *next = NULL;
		if (rc == 0 && st->nseq > 1) {
			buf av = {0}, ar = {0}, dev = {0};
			buf_printf(&av, "%s/average.safetensors", (char *)sd.data);
			buf_printf(&ar, "%s/average.json", (char *)sd.data);
			/* the members are compared (and the soup chosen) on held-out
			 * captions when the recipe has a captions_dev set: the
			 * stage's own pack measures memorization, not quality */
			int Lmax = st->seq_len[st->nseq - 1];
			const char *devset = NULL;
			for (int i = 0; i < R->r->eval.nsets; i++)
				if (!strcmp(R->r->eval.set_name[i], "captions_dev"))
					devset = R->r->eval.set_shards[i];
			if (devset) {
				buf_printf(&dev, "%s/dev-%d.pack", (char *)sd.data, Lmax);
				name.len = 0;
				buf_printf(&name, "pack.%s.dev", st->name);
				pack_args(R, &a, st, Lmax);
				arg(&a, "-o");
				arg(&a, "%s", (char *)dev.data);
				arg(&a, "%s", devset);
				const char *po[] = {(char *)dev.data, NULL};
				rc = step(R, (char *)name.data, &a, po, NULL, err);
			} else {
				buf_printf(&dev, "%s/pack-%d.pack", (char *)sd.data, Lmax);
			}
			name.len = 0;
			buf_printf(&name, "average.%s", st->name);
			arg(&a, "average");
			if (st->soup)
				arg(&a, "--soup");
			arg(&a, "-o");
			arg(&a, "%s", (char *)av.data);
			arg(&a, "--report");
			arg(&a, "%s", (char *)ar.data);
			arg(&a, "--dev");
			arg(&a, "%s", (char *)dev.data);
			for (int i = 0; i < st->nseq; i++)
				arg(&a, "%s", variants[i]);
			const char *ao[] = {(char *)av.data, (char *)ar.data, NULL};
			if (rc == 0)
				rc = step(R, (char *)name.data, &a, ao, NULL, err);
			else
				args_free(&a);
			next = (char *)av.data;
			buf_free(&ar);
			buf_free(&dev);
		} else if (rc == 0) {
			next = xstrdup(variants[0]);
		}
		for (int i = 0; i < st->nseq; i++)
			free(variants[i]);
		free(variants);
		buf_free(&sd);
		buf_free(&name);
		buf_free(&mixdir);
		buf_free(&mixman);
		free(prev);
		prev = next;
		finals[k] = next ? xstrdup(next) : NULL;
		if (rc)
			break;
	}
	for (int k = 0; k < R->r->nstage; k++)
		free(finals[k]);
	free(finals);
	if (rc) {
		free(prev);
		return -1;
	}
	*final = prev;
	return 0;
}

static int evaluate(run *R, const char *final, mvl_err *err)
{
	const reval *e = &R->r->eval;
	static const char *const sets[][2] = {{"captions_dev", "--captions-dev"},
					      {"captions_test", "--captions-test"},
					      {"qa_dev", "--qa-dev"},
					      {"qa_test", "--qa-test"}};
	cmdline a = {0};
	arg(&a, "eval");
	arg(&a, "--ckpt");
	arg(&a, "%s", final);
	arg(&a, "--tokenizer");
	arg(&a, "%s", R->tok);
	int any = 0;
	for (int i = 0; i < e->nsets; i++)
		for (size_t k = 0; k < 4; k++)
			if (!strcmp(e->set_name[i], sets[k][0])) {
				arg(&a, "%s", sets[k][1]);
				arg(&a, "%s", e->set_shards[i]);
				any = 1;
			}
	if (!any) {
		args_free(&a);
		if (!R->quiet)
			fprintf(stderr, "mvl run: no eval sets named captions_dev/_test or qa_dev/_test: no evaluation\n");
		return 0;
	}
	if (e->nres) {
		buf g = {0};
		for (int i = 0; i < e->nres; i++)
			buf_printf(&g, "%s%llu", i ? "," : "", (unsigned long long)e->resolutions[i]);
		arg(&a, "--resolutions");
		arg(&a, "%s", (char *)g.data);
		buf_free(&g);
	}
	if (e->max_samples) {
		arg(&a, "--max-samples");
		arg(&a, "%d", e->max_samples);
	}
	arg(&a, "--candidates");
	arg(&a, "%d", e->candidates ? e->candidates : 8);
	/* the default resolution: the last stage's bound */
	arg(&a, "--default-pixels");
	arg(&a, "%llu", (unsigned long long)R->r->stage[R->r->nstage - 1].max_pixels);
	buf rep = {0};
	buf_printf(&rep, "%s/eval.json", R->dir);
	arg(&a, "--report");
	arg(&a, "%s", (char *)rep.data);
	const char *outs[] = {(char *)rep.data, NULL};
	int rc = step(R, "eval", &a, outs, NULL, err);
	buf_free(&rep);
	return rc;
}

static int run_all(run *R, mvl_err *err)
{
	if (mkdirs(R->dir) != 0)
		return mvl_errf(err, "cannot create '%s': %s", R->dir, strerror(errno));
	/* an earlier manifest: its finished steps are kept */
	buf p = {0};
	buf_printf(&p, "%s/manifest.json", R->dir);
	R->manifest = json_load_file((char *)p.data, 0, NULL);
	buf_free(&p);
	if (!json_is_object(R->manifest)) {
		json_decref(R->manifest);
		R->manifest = json_object();
	}
	json_object_set_new(R->manifest, "recipe", json_string(R->recipe_path));
	json_object_set_new(R->manifest, "ablation", json_string(R->raw ? "raw" : "none"));
	R->steps = json_object_get(R->manifest, "steps");
	if (!json_is_array(R->steps)) {
		R->steps = json_array();
		json_object_set_new(R->manifest, "steps", R->steps);
	}
	char *final = NULL;
	int rc = filter_sources(R, err);
	if (rc == 0)
		rc = tokenizer(R, err);
	if (rc == 0)
		rc = stages(R, &final, err);
	if (rc == 0)
		rc = evaluate(R, final, err);
	if (rc == 0) {
		json_object_set_new(R->manifest, "final", json_string(final));
		rc = save_manifest(R, err);
	}
	free(final);
	return rc;
}

int cmd_run(int argc, char **argv)
{
	const char *out = NULL, *ablation = NULL;
	int quiet = 0, threads = 0, ranks = 1, stop_on_damaged = 0;
	const char *mpi_args = NULL;
	const opt_spec specs[] = {
		{"output", 'o', OPT_STR, &out, NULL, "DIR", "the run directory (required; re-running resumes)"},
		{"ablation", 0, OPT_CHOICE, &ablation, "none", "none|raw",
		 "raw: also run the same recipe with filters and dedup off, into DIR/ablation"},
		{"threads", 'j', OPT_INT, &threads, "0", "N", "threads for training (0: all cores)"},
		{"quiet", 'q', OPT_FLAG, &quiet, NULL, NULL, "no step lines"},
		{"stop-on-damaged", 0, OPT_FLAG, &stop_on_damaged, NULL, NULL,
		 "fail the filter step when a raw shard is unreadable or broken (default: report it, go on)"},
		{"ranks", 0, OPT_INT, &ranks, "1", "N",
		 "run the filter steps as 'mpirun -np N mvl filter ...' (same result as one process)"},
		{"mpi-args", 0, OPT_STR, &mpi_args, "--oversubscribe", "ARGS",
		 "extra mpirun options for those steps (--allow-run-as-root is added for root)"},
		{0},
	};
	const opt_cmd cmd = {
		"run", "RECIPE -o DIR [OPTIONS]",
		"Runs a recipe end to end: filter each source, train the tokenizer, then per\n"
		"stage mix, pack, train (each sequence length, then average), evaluate, and\n"
		"write the report.  Every step is an mvl command; DIR/manifest.json records\n"
		"them, and a step already done with its outputs present is skipped, so a\n"
		"killed run picks up where it stopped.",
		NULL, specs,
	};
	char **args;
	int nargs;
	opts_main(&cmd, argc, argv, &args, &nargs);
	if (nargs != 1 || !out) {
		fprintf(stderr, "mvl run: expected RECIPE and -o DIR\nsee 'mvl run --help'\n");
		free(args);
		return 2;
	}
	if (ranks < 1) {
		fprintf(stderr, "mvl run: option '--ranks' must be >= 1\n");
		free(args);
		return 2;
	}
	const char *ws = getenv("OMPI_COMM_WORLD_SIZE"), *wr = getenv("OMPI_COMM_WORLD_RANK");
	if (ws && atoi(ws) > 1) {
		/* `mpirun -np N mvl run`: rank 0 drives the run as `--ranks N`
		 * would, the other ranks leave at once (they never join MPI);
		 * see the header comment */
		if (wr && atoi(wr) != 0) {
			free(args);
			return 0;
		}
		if (ranks == 1)
			ranks = atoi(ws);
		/* mpirun bound this rank to one core; the steps need them all */
		cpu_set_t all;
		CPU_ZERO(&all);
		long nc = sysconf(_SC_NPROCESSORS_ONLN);
		for (long i = 0; i < nc && i < CPU_SETSIZE; i++)
			CPU_SET((int)i, &all);
		sched_setaffinity(0, sizeof all, &all);
	}
	if (ws || wr) {
		/* the steps' own mpirun jobs must not see this job's variables:
		 * a child that finds them takes itself for one of its ranks */
		extern char **environ;
		int n = 0;
		for (char **e = environ; *e; e++)
			n++;
		char **names = xcalloc((size_t)n + 1, sizeof *names);
		int k = 0;
		static const char *const prefixes[] = {"OMPI_", "PMIX_", "ORTE_", "OPAL_", "HWLOC_", NULL};
		for (char **e = environ; *e; e++)
			for (int i = 0; prefixes[i]; i++)
				if (!strncmp(*e, prefixes[i], strlen(prefixes[i])) && strchr(*e, '='))
					names[k++] = xstrndup(*e, (size_t)(strchr(*e, '=') - *e));
		for (int i = 0; i < k; i++) {
			unsetenv(names[i]);
			free(names[i]);
		}
		free(names);
	}
	buf diag = {0};
	mvl_err err = {{0}};
	recipe *r = recipe_load(args[0], &diag, &err);
	if (diag.len)
		fwrite(diag.data, 1, diag.len, stderr);
	buf_free(&diag);
	if (!r) {
		fprintf(stderr, "mvl run: %s\n", err.msg);
		free(args);
		return 1;
	}
	char self[4096];
	ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 1);
	self[sl > 0 ? sl : 0] = 0;
	run R = {.dir = out, .recipe_path = args[0], .self = self, .r = r, .quiet = quiet, .threads = threads,
		 .ranks = ranks, .mpi_args = mpi_args, .stop_on_damaged = stop_on_damaged};
	int rc = run_all(&R, &err);
	int report_rc = 0;
	if (rc == 0 && !strcmp(ablation, "raw")) {
		/* the same recipe, same tokenizer, no filters */
		buf d = {0};
		buf_printf(&d, "%s/ablation", out);
		run A = {.dir = (char *)d.data, .recipe_path = args[0], .self = self, .r = r, .raw = 1, .quiet = quiet,
			 .threads = threads, .ranks = ranks, .mpi_args = mpi_args, .stop_on_damaged = stop_on_damaged};
		if (!quiet)
			fprintf(stderr, "mvl run: the ablation (filters off) into %s\n", (char *)d.data);
		rc = run_all(&A, &err);
		json_decref(A.manifest);
		free(A.tok);
		buf_free(&d);
	}
	if (rc == 0) {
		/* the report reads everything above; it is cheap, so it is always
		 * rewritten */
		cmdline a = {0};
		arg(&a, "report");
		arg(&a, "%s", out);
		json_t *s = find_step(&R, "report");
		if (s)
			json_object_set_new(s, "status", json_string("stale"));
		report_rc = step(&R, "report", &a, NULL, NULL, &err);
		rc = report_rc;
	}
	if (rc)
		fprintf(stderr, "mvl run: %s\n", err.msg);
	else if (!quiet)
		fprintf(stderr, "mvl run: %d steps, %d run, %d skipped; report: %s/report.html\n", R.nstep, R.done, R.skipped,
			out);
	json_decref(R.manifest);
	free(R.tok);
	recipe_free(r);
	free(args);
	return rc ? 1 : 0;
}
