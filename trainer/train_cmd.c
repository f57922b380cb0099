/* train_cmd.c: `mvl train`. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <ftw.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cblas.h>
#include <jansson.h>
#include <omp.h>

#include "commands.h"
#include "ddp.h"
#include "dist.h"
#include "json_file.h"
#include "model.h"
#include "opts.h"
#include "ops.h"
#include "packfile.h"
#include "recipe.h"
#include "safetensors.h"
#include "train.h"
#include "data.h"

typedef struct train_opts {
	const char *preset, *recipe, *stage, *init, *output, *resume, *eval_pack, *trainable, *scheduler;
	int synthetic, steps, threads, grad_accum, seq_len, batch, tied, save_every, eval_every, quiet, warmup, vocab;
	int zero;          /* 1: ZeRO-1 optimizer sharding across the ranks */
	int expert_parallel; /* MoE experts spread over the ranks (ddp.h) */
	double bucket_mb;  /* allreduce bucket size */
	double peak_gflops; /* MFU's denominator; 0: measured at start */
	uint64_t seed;
	double lr, min_lr, weight_decay, grad_clip, beta1, beta2, eps, decay_fraction;
	int decay_norms;
} train_opts;

/* ---------------------------------------------------------------------- */
/* data */

/* ---------------------------------------------------------------------- */
/* the machine's sgemm peak, for MFU */

static double sgemm_peak(void)
{
	/* 2048^3 (17 GFLOP), after a warm-up call, best of three: a smaller
	 * product or a single call under-reads the peak and MFU then reads
	 * above 100% */
	int n = 2048;
	float *a = xcalloc((size_t)n * n, 4), *b = xcalloc((size_t)n * n, 4), *c = xcalloc((size_t)n * n, 4);
	double best = 1e9;
	for (int r = 0; r < 4; r++) {
		double t0 = now_sec();
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a, n, b, n, 0, c, n);
		double t = now_sec() - t0;
		if (r && t < best)
			best = t;
	}
	free(a);
	free(b);
	free(c);
	return 2.0 * n * n * n / best;
}

/* ---------------------------------------------------------------------- */
/* checkpoints */

/* step-*.tmp.PID / step-*.old.PID left by a killed run (that PID no longer
 * running): a step-N.old.PID whose step-N is missing is a complete
 * checkpoint moved aside by put_in_place() and goes back to its name; the
 * others are removed.  A live writer's are left alone. */
static void clean_stale_tmp(const char *out)
{
	DIR *d = opendir(out);
	struct dirent *e;
	while (d && (e = readdir(d))) {
		const char *t = strstr(e->d_name, ".tmp.");
		int old = !t;
		if (old)
			t = strstr(e->d_name, ".old.");
		if (strncmp(e->d_name, "step-", 5) || !t)
			continue;
		long pid = strtol(t + 5, NULL, 10);
		if (pid > 0 && !writer_gone(pid))
			continue;
		buf p = {0}, base = {0};
		buf_printf(&p, "%s/%s", out, e->d_name);
		buf_printf(&base, "%s/%.*s", out, (int)(t - e->d_name), e->d_name);
		if (!(old && access((char *)base.data, F_OK) != 0 && rename((char *)p.data, (char *)base.data) == 0))
			remove_tree((char *)p.data);
		buf_free(&p);
		buf_free(&base);
	}
	if (d)
		closedir(d);
}

/* On resume, metrics.jsonl keeps only the lines of steps before the
 * checkpoint's: the ones after it are trained again (and a killed run may
 * have left half a line). */
static int keep_metrics_before(const char *path, int64_t step0, mvl_err *err)
{
	buf in = {0};
	if (access(path, F_OK) != 0)
		return 0;
	if (read_file(path, (size_t)1 << 30, &in, err) != 0)
		return -1;
	atomic_file af;
	if (atomic_file_open(&af, path, err) != 0) {
		buf_free(&in);
		return -1;
	}
	const char *s = (const char *)in.data;
	for (size_t i = 0; i < in.len;) {
		const char *nl = memchr(s + i, '\n', in.len - i);
		if (!nl)
			break; /* a cut line */
		size_t e = (size_t)(nl - s);
		long long st;
		if (sscanf(s + i, "{\"step\":%lld", &st) == 1 && st < step0)
			fwrite(s + i, 1, e + 1 - i, af.f);
		i = e + 1;
	}
	buf_free(&in);
	return atomic_file_commit(&af, err);
}

/* "latest" in out names checkpoint NAME (step-N), atomically. */
static int set_latest(const char *out, const char *name, mvl_err *err)
{
	buf p = {0};
	buf_printf(&p, "%s/latest", out);
	atomic_file af;
	int rc = atomic_file_open(&af, (char *)p.data, err);
	if (rc == 0) {
		fprintf(af.f, "%s\n", name);
		rc = atomic_file_commit(&af, err);
	}
	buf_free(&p);
	return rc;
}

/* The newest complete checkpoint of out before step (its name into
 * name), or 0 when there is none. */
static int newest_before(const char *out, int64_t step, char name[32])
{
	DIR *d = opendir(out);
	struct dirent *e;
	long long best = -1, n;
	char tail;
	while (d && (e = readdir(d))) {
		if (sscanf(e->d_name, "step-%lld%c", &n, &tail) != 1 || n >= step || n <= best ||
		    strlen(e->d_name) != 13)
			continue;
		buf p = {0};
		buf_printf(&p, "%s/%s/state.json", out, e->d_name);
		if (access((char *)p.data, F_OK) == 0)
			best = n;
		buf_free(&p);
	}
	if (d)
		closedir(d);
	if (best < 0)
		return 0;
	snprintf(name, 32, "step-%08lld", best);
	return 1;
}

/* Puts the finished checkpoint directory tmp in place as out/NAME (NAME =
 * step-N).  A run resumed from an earlier checkpoint rewrites later ones,
 * and "latest" may still name one of them (the abandoned run's): what it
 * names must never be missing, even for the instant a kill could land in.
 * RENAME_EXCHANGE swaps the two in one step (the old one then goes from
 * tmp's name).  A file system without it (NFS, some FUSE) gets two
 * renames, old one aside to NAME.old.PID first; "latest" then names the
 * newest checkpoint before this one until the new one is in. */
static int put_in_place(const char *out, const char *name, int64_t step, const char *tmp, mvl_err *err)
{
	buf dir = {0}, old = {0};
	buf_printf(&dir, "%s/%s", out, name);
	int rc = 0;
	if (renameat2(AT_FDCWD, tmp, AT_FDCWD, (char *)dir.data, RENAME_EXCHANGE) == 0) {
		remove_tree(tmp);
		goto out;
	}
	if (errno == ENOENT) { /* no older one: the common case */
		if (rename(tmp, (char *)dir.data) != 0)
			rc = mvl_errf(err, "cannot rename '%s': %s", tmp, strerror(errno));
		goto out;
	}
	mvl_err ignore;
	char prev[32], *cur = ckpt_latest(out, &ignore);
	int named = cur && !strcmp(cur, (char *)dir.data);
	free(cur);
	if (named && newest_before(out, step, prev) && set_latest(out, prev, err) != 0) {
		rc = -1;
		goto out;
	}
	buf_printf(&old, "%s.old.%d", (char *)dir.data, (int)getpid());
	int had = rename((char *)dir.data, (char *)old.data) == 0;
	if (rename(tmp, (char *)dir.data) != 0) {
		rc = mvl_errf(err, "cannot rename '%s': %s", tmp, strerror(errno));
		if (had)
			rename((char *)old.data, (char *)dir.data);
	} else if (had) {
		remove_tree((char *)old.data);
	}
out:
	buf_free(&dir);
	buf_free(&old);
	return rc;
}

/* om / ov: each trainable tensor's whole m and v (NULL when frozen), so a
 * checkpoint has one format whether the state was sharded or not */
static int save_checkpoint(const char *out, const model *m, float **om, float **ov, int64_t adam_t, int64_t step,
			   uint64_t data_pos, json_t *losses, uint64_t skipped, mvl_err *err)
{
	buf dir = {0}, tmp = {0}, p = {0};
	buf_printf(&dir, "%s/step-%08lld", out, (long long)step);
	buf_printf(&tmp, "%s.tmp.%d", (char *)dir.data, (int)getpid());
	int rc = -1;
	if (mkdir((char *)tmp.data, 0755) != 0 && errno != EEXIST) {
		mvl_errf(err, "cannot create '%s': %s", (char *)tmp.data, strerror(errno));
		goto out;
	}
	buf_printf(&p, "%s/model.safetensors", (char *)tmp.data);
	if (model_save(m, (char *)p.data, err) != 0)
		goto out;
	/* optimizer state of the trainable tensors */
	st_tensor *t = xcalloc((size_t)m->nt * 2, sizeof *t);
	char **names = xcalloc((size_t)m->nt * 2, sizeof *names);
	int k = 0;
	for (int i = 0; i < m->nt; i++) {
		if (!om[i])
			continue;
		for (int w = 0; w < 2; w++) {
			buf nb = {0};
			buf_printf(&nb, "%s.%s", w ? "v" : "m", m->t[i].name);
			names[k] = (char *)nb.data;
			t[k] = (st_tensor){names[k], 1, {(int64_t)m->t[i].n}, w ? ov[i] : om[i]};
			k++;
		}
	}
	p.len = 0;
	buf_printf(&p, "%s/optim.safetensors", (char *)tmp.data);
	int orc = st_write((char *)p.data, t, k, NULL, 0, err);
	for (int i = 0; i < k; i++)
		free(names[i]);
	free(names);
	free(t);
	if (orc != 0)
		goto out;
	json_t *st = json_pack("{s:I,s:I,s:I,s:i,s:O,s:I}", "step", (json_int_t)step, "data_pos", (json_int_t)data_pos,
			       "adam_t", (json_int_t)adam_t, "trainable", m->trainable, "losses", losses, "skipped",
			       (json_int_t)skipped);
	p.len = 0;
	buf_printf(&p, "%s/state.json", (char *)tmp.data);
	int src = json_save((char *)p.data, st, err);
	json_decref(st);
	if (src != 0)
		goto out;
	char name[32];
	snprintf(name, sizeof name, "step-%08lld", (long long)step);
	if (put_in_place(out, name, step, (char *)tmp.data, err) != 0)
		goto out;
	/* "latest" names the newest complete checkpoint */
	rc = set_latest(out, name, err);
out:
	if (rc != 0)
		remove_tree((char *)tmp.data); /* a failed write (full disk) leaves nothing half-made */
	buf_free(&dir);
	buf_free(&tmp);
	buf_free(&p);
	return rc;
}

static int load_optim(const char *dir, const model *m, adamw *o, mvl_err *err)
{
	buf p = {0};
	buf_printf(&p, "%s/optim.safetensors", dir);
	st_file *f = st_open((char *)p.data, err);
	buf_free(&p);
	if (!f)
		return -1;
	int rc = 0;
	for (int i = 0; i < m->nt && rc == 0; i++) {
		size_t a, b; /* a ZeRO-1 rank loads its slice only */
		if (!o->m[i] || !adamw_span(o, m, i, &a, &b))
			continue;
		for (int w = 0; w < 2 && rc == 0; w++) {
			char name[80];
			snprintf(name, sizeof name, "%s.%s", w ? "v" : "m", m->t[i].name);
			const st_tensor *t = st_get(f, name);
			if (!t || t->ndim != 1 || (size_t)t->shape[0] != m->t[i].n)
				rc = mvl_errf(err, "'%s': optimizer state '%s' missing or of another size", dir, name);
			else
				memcpy(w ? o->v[i] : o->m[i], (const float *)t->data + (a - m->t[i].off),
				       (b - a) * sizeof(float));
		}
	}
	st_close(f);
	return rc;
}

/* ---------------------------------------------------------------------- */

static int parse_parts(const char *s, int *mask)
{
	*mask = 0;
	while (s && *s) {
		size_t n = strcspn(s, ",");
		if (n == 3 && !strncmp(s, "vit", 3))
			*mask |= MPART_VIT;
		else if (n == 9 && !strncmp(s, "projector", 9))
			*mask |= MPART_PROJECTOR;
		else if (n == 3 && !strncmp(s, "llm", 3))
			*mask |= MPART_LLM;
		else if (n == 3 && !strncmp(s, "all", 3))
			*mask |= MPART_ALL;
		else
			return -1;
		s += n + (s[n] == ',');
	}
	return *mask ? 0 : -1;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* the checkpoint of step: ZeRO-1 slices (or other owners' experts'
 * state) are gathered to rank 0 first (a collective: every rank calls
 * this), and rank 0 writes */
static int checkpoint(dist *d, ddp *dp, int gather, const char *out, const model *m, const adamw *o, int64_t step,
		      uint64_t data_pos, json_t *losses, uint64_t skipped, mvl_err *err)
{
	float *fm = NULL, *fv = NULL;
	float **om = o->m, **ov = o->v;
	if (gather) {
		ddp_gather_optim(dp, o, &fm, &fv);
		om = xcalloc((size_t)m->nt, sizeof *om);
		ov = xcalloc((size_t)m->nt, sizeof *ov);
		for (int i = 0; fm && i < m->nt; i++)
			if (m->trainable & m->t[i].part) {
				om[i] = fm + m->t[i].off;
				ov[i] = fv + m->t[i].off;
			}
	}
	int rc = d->rank == 0 ? save_checkpoint(out, m, om, ov, o->t, step, data_pos, losses, skipped, err) : 0;
	if (gather) {
		free(om);
		free(ov);
		free(fm);
		free(fv);
	}
	return rc;
}

static int run_train(train_opts *o, char **packs, int npacks, dist *d)
{
	/* rank 0 alone logs, writes metrics and checkpoints */
	const int lead = d->rank == 0, N = d->size;
	ddp *dp = NULL;
	mvl_err err;
	int rc = 1;
	model *m = NULL;
	recipe *r = NULL;
	json_t *losses = json_array();
	adamw opt = {0};
	pack_src ps = {0}, evs = {0};
	batch_buf *bb = NULL, evb = {0};
	FILE *metrics = NULL;
	char *resume_dir = NULL;
	double *step_tps = NULL;
	model_config c;
	sched sc = {o->lr, o->min_lr >= 0 ? o->min_lr : o->lr / 10, o->decay_fraction, o->warmup, o->steps, 0};
	int parts = MPART_ALL;
	uint64_t data_pos = 0, skipped = 0;
	int64_t step0 = 0;
	int L = 0, B = 0, K = 0; /* sequence length, micro-batch, accumulation */
	if (!strcmp(o->scheduler, "wsd"))
		sc.kind = SCHED_WSD;
	else if (!strcmp(o->scheduler, "constant"))
		sc.kind = SCHED_CONSTANT;
	if (o->trainable && parse_parts(o->trainable, &parts) != 0) {
		fprintf(stderr, "mvl train: --train takes vit, projector, llm or all, comma-separated\n");
		json_decref(losses);
		return 2;
	}
	if (o->recipe) {
		buf diag = {0};
		r = recipe_load(o->recipe, &diag, &err);
		if (diag.len)
			fwrite(diag.data, 1, diag.len, stderr);
		buf_free(&diag);
		if (!r)
			goto fail;
		const rstage *st = o->stage ? recipe_stage(r, o->stage) : NULL;
		if (!st) {
			mvl_errf(&err, "--recipe needs --stage NAME (one of the recipe's stages)");
			goto fail;
		}
		parts = (st->parts & PART_VIT ? MPART_VIT : 0) | (st->parts & PART_PROJECTOR ? MPART_PROJECTOR : 0) |
			(st->parts & PART_LLM ? MPART_LLM : 0);
		sc = (sched){st->lr, st->min_lr, st->decay_fraction, (int64_t)st->warmup_steps, 0, st->scheduler};
		o->weight_decay = st->weight_decay;
		o->grad_clip = st->grad_clip;
		o->beta1 = st->beta1;
		o->beta2 = st->beta2;
		o->eps = st->eps;
		if (!o->seq_len)
			o->seq_len = st->seq_len[0];
	}
	/* the model: resumed, initialized from a checkpoint, or a preset.  A
	 * killed writer's leftovers go first: one may hold the checkpoint
	 * "latest" names (clean_stale_tmp) */
	if (o->output && lead)
		clean_stale_tmp(o->output);
	if (o->resume) {
		resume_dir = ckpt_latest(o->resume, &err);
		if (!resume_dir)
			goto fail;
		buf p = {0};
		buf_printf(&p, "%s/model.safetensors", resume_dir);
		m = model_load_new((char *)p.data, &err);
		buf_free(&p);
	} else if (o->init) {
		struct stat st;
		buf p = {0};
		if (stat(o->init, &st) == 0 && S_ISDIR(st.st_mode)) {
			char *l = ckpt_latest(o->init, &err);
			buf_printf(&p, "%s/latest", o->init);
			int has_latest = access((char *)p.data, F_OK) == 0;
			p.len = 0;
			/* a directory holding model.safetensors alone is one too;
			 * a "latest" that cannot be followed is an error */
			if (l || !has_latest)
				buf_printf(&p, "%s/model.safetensors", l ? l : o->init);
			free(l);
		} else {
			buf_printf(&p, "%s", o->init);
		}
		m = p.len ? model_load_new((char *)p.data, &err) : NULL;
		buf_free(&p);
	} else {
		if (model_preset(o->preset, &c) != 0) {
			mvl_errf(&err, "unknown preset '%s' (tiny, small, micro, tiny-moe, micro-moe)", o->preset);
			goto fail;
		}
		if (o->tied >= 0)
			c.tied = o->tied;
		if (o->vocab > 0)
			c.vocab = o->vocab;
		m = model_new(&c, o->seed);
	}
	if (!m)
		goto fail;
	c = m->c;
	L = o->seq_len ? o->seq_len : c.seq_len;
	B = o->batch ? o->batch : c.batch;
	K = o->grad_accum;
	if (r && o->stage) {
		/* the stage's batch in tokens and budget decide accumulation and steps */
		const rstage *st = recipe_stage(r, o->stage);
		uint64_t per = (uint64_t)B * (uint64_t)L;
		/* the stage's batch is global: N ranks share it */
		if (!K)
			K = (int)((st->batch_tokens + per * N - 1) / (per * N));
		if (!o->steps)
			o->steps = (int)((st->tokens + (uint64_t)K * N * per - 1) / ((uint64_t)K * N * per));
	}
	if (!K)
		K = 1;
	if (!o->steps)
		o->steps = 10;
	if (L < 16 || B < 1 || K < 1) {
		mvl_errf(&err, "sequence length, batch and accumulation must be positive");
		goto fail;
	}
	m->trainable = parts;
	if (o->expert_parallel) {
		if (c.n_experts <= 0) {
			mvl_errf(&err, "--expert-parallel needs an MoE model (--preset tiny-moe or micro-moe)");
			goto fail;
		}
		if (c.n_experts % N) {
			mvl_errf(&err, "--expert-parallel: %d experts do not split evenly over %d ranks", c.n_experts, N);
			goto fail;
		}
		if (model_set_expert_parallel(m, d, &err) != 0)
			goto fail;
	}
	if (N > 1 || o->zero) {
		size_t lo, hi;
		dp = ddp_new(d, m, o->zero, (size_t)(o->bucket_mb * (1 << 20)));
		ddp_shard(dp, &lo, &hi);
		adamw_init_shard(&opt, m, lo, hi);
		for (int i = 0; i < m->nt; i++)
			if (opt.m[i] && !ddp_owns(dp, i))
				adamw_drop(&opt, i); /* another owner's expert */
	} else {
		adamw_init(&opt, m);
	}
	const int ep = dp && ddp_expert_parallel(dp), gather = o->zero || ep;
	if (!o->synthetic) {
		if (!npacks) {
			mvl_errf(&err, "give pack files to train on, or --synthetic");
			goto fail;
		}
		if (pack_src_open(&ps, packs, npacks, (uint32_t)L, &err) != 0)
			goto fail;
	} else if (c.image <= 0 || (c.image / 28) * (c.image / 28) + 3 > L) {
		mvl_errf(&err, "--synthetic needs an image that fits the sequence");
		goto fail;
	}
	if (o->eval_pack && pack_src_open(&evs, (char **)&o->eval_pack, 1, (uint32_t)L, &err) != 0)
		goto fail;
	if (resume_dir) {
		buf p = {0}, js = {0};
		buf_printf(&p, "%s/state.json", resume_dir);
		json_error_t je;
		json_t *s = json_load_file((char *)p.data, 0, &je);
		buf_free(&p);
		buf_free(&js);
		if (!s) {
			mvl_errf(&err, "'%s/state.json': %s", resume_dir, je.text);
			goto fail;
		}
		/* every count a non-negative integer: a negative step would run
		 * more steps than the run has room for */
		static const char *const keys[] = {"step", "data_pos", "adam_t", "skipped", "trainable"};
		for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
			json_t *v = json_object_get(s, keys[i]);
			if (!json_is_integer(v) || json_integer_value(v) < 0) {
				mvl_errf(&err, "'%s/state.json': '%s' missing or not a non-negative integer", resume_dir,
					 keys[i]);
				json_decref(s);
				goto fail;
			}
		}
		step0 = json_integer_value(json_object_get(s, "step"));
		data_pos = (uint64_t)json_integer_value(json_object_get(s, "data_pos"));
		opt.t = json_integer_value(json_object_get(s, "adam_t"));
		skipped = (uint64_t)json_integer_value(json_object_get(s, "skipped"));
		json_t *ls = json_object_get(s, "losses");
		if (json_is_array(ls)) {
			json_decref(losses);
			losses = json_incref(ls);
		}
		int tp = (int)json_integer_value(json_object_get(s, "trainable"));
		json_decref(s);
		if (tp != parts) {
			mvl_errf(&err, "'%s/state.json': the checkpoint trained other parts (%d) than asked (%d)", resume_dir,
				 tp, parts);
			goto fail;
		}
		if (load_optim(resume_dir, m, &opt, &err) != 0)
			goto fail;
	}
	if (o->output && lead) {
		if (mkdir(o->output, 0755) != 0 && errno != EEXIST) {
			mvl_errf(&err, "cannot create '%s': %s", o->output, strerror(errno));
			goto fail;
		}
		buf p = {0};
		buf_printf(&p, "%s/metrics.jsonl", o->output);
		if (o->resume && keep_metrics_before((char *)p.data, step0, &err) != 0) {
			buf_free(&p);
			goto fail;
		}
		metrics = fopen((char *)p.data, o->resume ? "a" : "w");
		if (!metrics) {
			mvl_errf(&err, "cannot write '%s': %s", (char *)p.data, strerror(errno));
			buf_free(&p);
			goto fail;
		}
		buf_free(&p);
	}
	sc.total = o->steps;
	double peak = o->peak_gflops > 0 ? o->peak_gflops * 1e9 : sgemm_peak();
	if (!o->quiet && lead) {
		fprintf(stderr, "mvl train: %zu parameters (%s trainable), seq %d x batch %d x accum %d", m->nparams,
			o->trainable ? o->trainable : "all", L, B, K);
		if (N > 1)
			fprintf(stderr, " x %d ranks (%s, %d buckets)", N,
				o->zero ? "ZeRO-1" : ep ? "allreduce, experts parallel" : "allreduce", ddp_buckets(dp));
		fprintf(stderr, ", %s peak %.1f GFLOP/s\n", o->peak_gflops > 0 ? "given" : "sgemm", peak / 1e9);
	}
	bb = xcalloc((size_t)K, sizeof *bb);
	for (int k = 0; k < K; k++)
		batch_alloc(&bb[k], B, L);
	if (o->eval_pack)
		batch_alloc(&evb, B, L);
	step_tps = xcalloc((size_t)o->steps + 1, sizeof *step_tps);
	int nsteps = 0, bad_run = 0;
	double comm_sum = 0, time_sum = 0; /* over the steps after the first */
	uint32_t pad = (uint32_t)c.vocab - 1, vstart = (uint32_t)c.vocab - 2, vend = (uint32_t)c.vocab - 3;
	for (int64_t step = step0; step < o->steps; step++) {
		double t0 = now_sec(), c0 = d->comm_s;
		/* The global batch: N ranks x K micro-batches of B sequences.
		 * Rank r's micro-batch k is the one a single process would take
		 * at micro-step k N + r: sequences data_pos + (k N + r) B + s.  So
		 * N ranks x K = 1 rank x N K (same sequences, same global loss),
		 * the ranks' parts are disjoint, and N = 1 is the plain order. */
		uint64_t targets = 0;
		for (int k = 0; k < K; k++) {
			batch_clear_images(&bb[k]);
			for (int s = 0; s < B; s++) {
				uint64_t g = data_pos + ((uint64_t)k * N + (uint64_t)d->rank) * B + s;
				if (o->synthetic)
					synth_seq(&bb[k], s, o->seed, g, &c, pad, vstart, vend);
				else if (pack_fill(&ps, &bb[k], s, g, &err) != 0)
					goto fail;
			}
			for (size_t i = 0; i + 1 < (size_t)B * L; i++)
				targets += (i + 1) % L && bb[k].seg[i] && bb[k].seg[i + 1] == bb[k].seg[i] && bb[k].loss[i + 1];
		}
		data_pos += (uint64_t)N * K * B;
		/* the loss is normalized by the global count of predicted tokens */
		dist_sum_u64(d, &targets, 1);
		memset(m->grads, 0, m->nparams * sizeof *m->grads);
		double loss = 0, flops = 0;
		float scale = targets ? 1.0f / (float)targets : 0;
		for (int k = 0; k < K; k++) {
			mbatch mb = {B, L, bb[k].ids, bb[k].pos, bb[k].seg, bb[k].loss, bb[k].img, bb[k].nimg,
				     o->synthetic ? pad : 0, NULL};
			if (!o->synthetic)
				mb.image_pad = ps.image_pad; /* what the packs' images carry */
			double ls;
			uint64_t cnt;
			if (dp && k == K - 1)
				ddp_arm(dp); /* buckets start as the last backward finishes them */
			if (model_step(m, &mb, 1, scale, &ls, &cnt, &err) != 0)
				goto fail;
			loss += ls;
			flops += model_flops(m, &mb, 1);
		}
		if (dp)
			ddp_reduce_grads(dp);
		dist_sum_f64(d, &loss, 1);
		loss = targets ? loss / (double)targets : 0;
		/* global grad norm over the trainable tensors (under ZeRO-1 each
		 * rank holds the global gradient of its slice only; expert
		 * parallel, of its own experts and the replicated rest), clipping */
		double ss[2] = {0, 0}; /* replicated or sliced tensors; own experts */
		size_t sa, sb;
		for (int i = 0; i < m->nt; i++)
			if (opt.m[i] && adamw_span(&opt, m, i, &sa, &sb))
				ss[model_expert_owner(m, i) >= 0] += sumsq(m->grads + sa, sb - sa);
		if (o->zero)
			dist_sum_f64(d, &ss[0], 1);
		if (ep)
			dist_sum_f64(d, &ss[1], 1);
		double gnorm = sqrt(ss[0] + ss[1]);
		double lr = sched_lr(&sc, step);
		if (!isfinite(loss) || !isfinite(gnorm)) {
			skipped++;
			if (lead)
				fprintf(stderr, "mvl train: step %lld: non-finite %s, step skipped (%llu so far)\n", (long long)step,
				isfinite(loss) ? "gradient" : "loss", (unsigned long long)skipped);
			if (++bad_run >= 5) {
				mvl_errf(&err, "5 non-finite steps in a row: stopping (the last checkpoint is intact)");
				goto fail;
			}
			json_array_append_new(losses, json_null()); /* JSON has no NaN: null keeps losses[i] = step i */
			continue;
		}
		bad_run = 0;
		float clip = o->grad_clip > 0 && gnorm > o->grad_clip ? (float)(o->grad_clip / gnorm) : 1.0f;
		opt.t++;
		for (int i = 0; i < m->nt; i++) {
			if (!opt.m[i] || !adamw_span(&opt, m, i, &sa, &sb))
				continue;
			mtensor *t = &m->t[i];
			if (clip != 1.0f)
				scale_inplace(m->grads + sa, sb - sa, clip);
			float wd = t->no_decay && !o->decay_norms ? 0.0f : (float)o->weight_decay;
			adamw_update(m->params + sa, m->grads + sa, opt.m[i], opt.v[i], sb - sa, (float)lr,
				     (float)o->beta1, (float)o->beta2, (float)o->eps, wd, opt.t);
		}
		if (dp)
			ddp_gather_params(dp);
		if (dp)
			ddp_sum_moe_load(dp, m); /* every rank's biases follow the global load */
		uint64_t routed = m->moe.routed, dropped = m->moe.dropped;
		model_moe_balance(m); /* the selection biases follow this step's load */
		double dt = now_sec() - t0, comm = d->comm_s - c0;
		/* tokens of the global batch; MFU of this rank (flops are its own) */
		double tps = (double)N * K * B * L / dt, mfu = flops / dt / peak;
		step_tps[nsteps++] = tps;
		if (nsteps > 1) {
			comm_sum += comm;
			time_sum += dt;
		}
		json_array_append_new(losses, json_real(loss));
		if (!o->quiet && lead) {
			fprintf(stderr, "step %lld loss %.6f lr %.3e gnorm %.4f tok/s %.0f mfu %.1f%%", (long long)step, loss,
				lr, gnorm, tps, 100 * mfu);
			if (c.n_experts > 0)
				fprintf(stderr, " dropped %llu/%llu", (unsigned long long)dropped, (unsigned long long)routed);
			if (N > 1)
				fprintf(stderr, " comm %.1f%%", 100 * comm / dt);
			fputc('\n', stderr);
		}
		if (metrics && c.n_experts > 0)
			fprintf(metrics, "{\"step\":%lld,\"loss\":%.8g,\"lr\":%.8g,\"grad_norm\":%.8g,\"tokens_per_s\":%.1f,\"mfu\":%.4f,"
				"\"moe_dropped\":%llu,\"moe_routed\":%llu}\n",
				(long long)step, loss, lr, gnorm, tps, mfu, (unsigned long long)dropped, (unsigned long long)routed);
		else if (metrics)
			fprintf(metrics, "{\"step\":%lld,\"loss\":%.8g,\"lr\":%.8g,\"grad_norm\":%.8g,\"tokens_per_s\":%.1f,\"mfu\":%.4f}\n",
				(long long)step, loss, lr, gnorm, tps, mfu);
		if (metrics && (fflush(metrics) != 0 || ferror(metrics))) { /* whole lines only, even if killed */
			mvl_errf(&err, "cannot write '%s/metrics.jsonl': %s", o->output, strerror(errno));
			goto fail;
		}
		if (o->eval_pack && lead && ((o->eval_every > 0 && (step + 1) % o->eval_every == 0) || step + 1 == o->steps)) {
			double ev = 0;
			if (eval_pack(m, &evs, &evb, B, L, 0, &ev, &err) != 0)
				goto fail;
			if (!o->quiet)
				fprintf(stderr, "step %lld eval_loss %.6f\n", (long long)step, ev);
			if (metrics && (fprintf(metrics, "{\"step\":%lld,\"eval_loss\":%.8g}\n", (long long)step, ev) < 0 ||
					fflush(metrics) != 0)) {
				mvl_errf(&err, "cannot write '%s/metrics.jsonl': %s", o->output, strerror(errno));
				goto fail;
			}
		}
		if (o->output && o->save_every > 0 && (step + 1) % o->save_every == 0 && step + 1 < o->steps &&
		    checkpoint(d, dp, gather, o->output, m, &opt, step + 1, data_pos, losses, skipped, &err) != 0)
			goto fail;
	}
	if (o->output &&
	    checkpoint(d, dp, gather, o->output, m, &opt, o->steps, data_pos, losses, skipped, &err) != 0)
		goto fail;
	if (!lead) {
		rc = 0;
		goto out;
	}
	if (N > 1 || o->zero)
		printf("optimizer state: %zu bytes per rank (m and v, %s, %d rank%s)\n", adamw_bytes(&opt, m),
		       o->zero ? "ZeRO-1" : ep ? "experts on their owners" : "replicated", N, N > 1 ? "s" : "");
	if (N > 1 && time_sum > 0)
		printf("communication: %.1f%% of step time (%.3f s in MPI of %.3f s)\n", 100 * comm_sum / time_sum,
		       comm_sum, time_sum);
	/* tokens/s: median over the steps after the first (warm-up) */
	if (nsteps > 1) {
		qsort(step_tps + 1, (size_t)nsteps - 1, sizeof *step_tps, cmp_double);
		printf("tokens/s: %.1f\n", step_tps[1 + (nsteps - 1) / 2]);
	} else if (nsteps == 1) {
		printf("tokens/s: %.1f\n", step_tps[0]);
	}
	rc = 0;
	goto out;
fail:
	if (N > 1) {
		/* the other ranks wait in a collective: end them all */
		char msg[sizeof err.msg + 16];
		snprintf(msg, sizeof msg, "mvl train: %s", err.msg);
		dist_abort(d, msg);
	}
	fprintf(stderr, "mvl train: %s\n", err.msg);
out:
	ddp_free(dp);
	if (metrics && fclose(metrics) != 0 && rc == 0) {
		fprintf(stderr, "mvl train: cannot write '%s/metrics.jsonl': %s\n", o->output, strerror(errno));
		rc = 1;
	}
	for (int k = 0; bb && k < K; k++)
		batch_free(&bb[k]);
	free(bb);
	free(step_tps);
	free(resume_dir);
	pack_src_close(&ps);
	pack_src_close(&evs);
	batch_free(&evb);
	if (m)
		adamw_free(&opt, m);
	model_free(m);
	recipe_free(r);
	json_decref(losses);
	return rc;
}

int cmd_train(int argc, char **argv)
{
	train_opts o;
	const opt_spec specs[] = {
		{"preset", 0, OPT_CHOICE, &o.preset, "tiny", "tiny|small|micro|tiny-moe|micro-moe",
		 "model sizes (model.h; micro is for tests; -moe: MoE LLM layers)"},
		{"synthetic", 0, OPT_FLAG, &o.synthetic, NULL, NULL,
		 "random tokens and one image per sequence of the preset's shape (no data)"},
		{"steps", 0, OPT_INT, &o.steps, "0", "N",
		 "optimizer steps (0: the stage's token budget / batch tokens, or 10 without a recipe)"},
		{"recipe", 0, OPT_STR, &o.recipe, NULL, "FILE", "take parts, schedule and optimizer from a recipe stage"},
		{"stage", 0, OPT_STR, &o.stage, NULL, "NAME", "the recipe's stage"},
		{"init", 0, OPT_STR, &o.init, NULL, "CKPT", "start from these weights (a checkpoint dir or .safetensors)"},
		{"resume", 0, OPT_STR, &o.resume, NULL, "DIR",
		 "continue from a checkpoint directory, or from the latest one of a run's -o DIR"},
		{"output", 'o', OPT_STR, &o.output, NULL, "DIR", "checkpoints and metrics.jsonl"},
		{"save-every", 0, OPT_INT, &o.save_every, "0", "N", "checkpoint every N steps (0: only at the end)"},
		{"train", 0, OPT_STR, &o.trainable, NULL, "PARTS", "vit,projector,llm or all (default all, or the stage's)"},
		{"seq-len", 0, OPT_INT, &o.seq_len, "0", "N", "tokens per sequence (default: preset or stage)"},
		{"batch", 0, OPT_INT, &o.batch, "0", "N", "sequences per micro-batch (default: the preset's)"},
		{"grad-accum", 0, OPT_INT, &o.grad_accum, "0", "K",
		 "micro-batches per optimizer step (0: the stage's batch_tokens / (batch x seq), or 1)"},
		{"eval-pack", 0, OPT_STR, &o.eval_pack, NULL, "PACK", "held-out pack: its mean loss is logged"},
		{"eval-every", 0, OPT_INT, &o.eval_every, "0", "N", "evaluate every N steps (0: only at the end)"},
		{"tied", 0, OPT_INT, &o.tied, "-1", "0|1", "tie the LM head to the embedding (-1: the preset's)"},
		{"vocab", 0, OPT_INT, &o.vocab, "0", "N", "vocabulary size (0: the preset's; packs need the tokenizer's)"},
		{"seed", 0, OPT_U64, &o.seed, "1", "N", "initialization and synthetic data"},
		{"lr", 0, OPT_DOUBLE, &o.lr, "3e-4", "X", "peak learning rate"},
		{"min-lr", 0, OPT_DOUBLE, &o.min_lr, "-1", "X", "final learning rate (-1: lr / 10)"},
		{"warmup", 0, OPT_INT, &o.warmup, "0", "N", "warmup steps"},
		{"scheduler", 0, OPT_CHOICE, &o.scheduler, "cosine", "cosine|wsd|constant", "learning-rate schedule"},
		{"decay-fraction", 0, OPT_DOUBLE, &o.decay_fraction, "0.1", "X", "wsd: fraction of steps decaying"},
		{"weight-decay", 0, OPT_DOUBLE, &o.weight_decay, "0.1", "X", "AdamW decoupled weight decay"},
		{"decay-norms", 0, OPT_FLAG, &o.decay_norms, NULL, NULL, "also decay norms and embeddings"},
		{"grad-clip", 0, OPT_DOUBLE, &o.grad_clip, "1.0", "X", "global gradient norm clip (0: none)"},
		{"beta1", 0, OPT_DOUBLE, &o.beta1, "0.9", "X", "AdamW beta1"},
		{"beta2", 0, OPT_DOUBLE, &o.beta2, "0.95", "X", "AdamW beta2"},
		{"eps", 0, OPT_DOUBLE, &o.eps, "1e-8", "X", "AdamW epsilon"},
		{"zero", 0, OPT_INT, &o.zero, "0", "0|1",
		 "1: ZeRO-1, AdamW state sharded across the mpirun ranks (1/N each)"},
		{"expert-parallel", 0, OPT_FLAG, &o.expert_parallel, NULL, NULL,
		 "mpirun, MoE: each rank owns n_experts / N of every MoE layer's experts"},
		{"bucket-mb", 0, OPT_DOUBLE, &o.bucket_mb, "25", "X", "mpirun: gradient allreduce bucket size in MB"},
		{"threads", 'j', OPT_INT, &o.threads, "0", "N", "threads (0: all cores, shared by the ranks of a machine)"},
		{"peak-gflops", 0, OPT_DOUBLE, &o.peak_gflops, "0", "X",
		 "MFU against this peak (the hardware's spec sheet); 0: the sgemm peak measured at start"},
		{"quiet", 'q', OPT_FLAG, &o.quiet, NULL, NULL, "no per-step log on stderr"},
		{0},
	};
	const opt_cmd cmd = {
		"train", "[OPTIONS] [PACK...]",
		"Trains the vision-language model (trainer/model.h) on packs from `mvl pack`, or\n"
		"on synthetic data of a preset's shape.  Logs loss, lr, grad norm, tokens/s and\n"
		"MFU (against the sgemm peak measured at start) per step; ends with a line\n"
		"`tokens/s: X` (median over the steps after the first).\n"
		"\n"
		"Data parallel: `mpirun -np N mvl train ...`.  --batch (the preset's) is per\n"
		"rank, so a step trains on N x K x batch sequences; rank r's micro-batch k is\n"
		"what one process would take at micro-step k N + r, so N ranks x --grad-accum K\n"
		"log the same losses as 1 rank x --grad-accum N K.  Gradients are summed in\n"
		"buckets (--bucket-mb) overlapped with the backward; --zero 1 shards the AdamW\n"
		"state instead.  Rank 0 logs and writes checkpoints in the single-process\n"
		"format (ZeRO-1 state is gathered first), so --resume works with any N.  A\n"
		"failed or killed rank ends the whole job; the last checkpoint is intact.\n"
		"\n"
		"--expert-parallel (MoE, N dividing the experts, not with --zero): rank r\n"
		"computes and updates experts [r E/N, (r+1) E/N) of each MoE layer for the\n"
		"rows of every rank (sent with alltoallv); the rest stays data parallel.  Same\n"
		"losses as plain data parallel when capacity is off (with capacity, the\n"
		"experts' limit counts the global batch: see trainer/moe_ep.h).",
		NULL, specs,
	};
	char **args;
	int nargs;
	opts_main(&cmd, argc, argv, &args, &nargs);
	/* the ranks of one machine share its cores */
	int threads = o.threads > 0 ? o.threads : (int)sysconf(_SC_NPROCESSORS_ONLN) / dist_local_size();
	if (threads < 1)
		threads = 1;
	omp_set_num_threads(threads);
	openblas_set_num_threads(threads);
	if (o.expert_parallel && o.zero) {
		fprintf(stderr, "mvl train: --expert-parallel does not combine with --zero 1 (the experts' state "
				"is already split over the ranks)\n");
		free(args);
		return 2;
	}
	if (o.steps < 0 || o.grad_accum < 0 || o.eval_every < 0 || o.zero < 0 || o.zero > 1 || !(o.bucket_mb > 0)) {
		fprintf(stderr, "mvl train: --steps, --grad-accum and --eval-every must be >= 0, --zero 0 or 1, "
				"--bucket-mb positive\n");
		free(args);
		return 2;
	}
	dist d;
	mvl_err err;
	if (dist_init(&d, &err) != 0)
		die("%s", err.msg);
	int rc = run_train(&o, args, nargs, &d);
	dist_finalize(&d);
	free(args);
	return rc;
}
