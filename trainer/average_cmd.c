/* average_cmd.c: `mvl average`: checkpoints trained at different sequence
 * lengths (or seeds) averaged into one, uniformly, by weights, or as a
 * greedy soup that keeps a member only if the dev loss improves. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "commands.h"
#include "json_file.h"
#include "data.h"
#include "model.h"
#include "opts.h"
#include "safetensors.h"
#include "train.h"

typedef struct avg_opts {
	const char *output, *weights, *dev, *report;
	int soup, batch, dev_seqs;
} avg_opts;

/* Loads every member; all must share the first one's config exactly. */
static int load_members(char **names, int n, model **m, mvl_err *err)
{
	for (int i = 0; i < n; i++) {
		char *p = ckpt_weights(names[i], err);
		m[i] = p ? model_load_new(p, err) : NULL;
		free(p);
		if (!m[i])
			return mvl_errprefix(err, "member %d", i + 1);
		/* the architecture must match; the training shape (image,
		 * seq_len, batch) may differ: averaging variants trained at
		 * different sequence lengths is the point */
		model_config a = m[0]->c, b = m[i]->c;
		a.image = b.image = a.seq_len = b.seq_len = a.batch = b.batch = 0;
		if (i && memcmp(&a, &b, sizeof a) != 0) {
			char *a = config_json(&m[0]->c), *b = config_json(&m[i]->c);
			mvl_errf(err, "'%s' has another model config than '%s':\n  %s\n  %s", names[i], names[0], b, a);
			free(a);
			free(b);
			return -1;
		}
	}
	return 0;
}

/* out->params = sum w[i] * member i (w sums to 1; members not chosen: 0) */
static void mix(model *out, model **m, const double *w, int n)
{
	for (size_t k = 0; k < out->nparams; k++) {
		double s = 0;
		for (int i = 0; i < n; i++)
			if (w[i] != 0)
				s += w[i] * m[i]->params[k];
		out->params[k] = (float)s;
	}
}

static int dev_loss(model *m, const char *dev, int B, int max, double *loss, mvl_err *err)
{
	pack_src ps = {0};
	char *paths[1] = {(char *)dev};
	pack_reader *probe = pack_open(dev, err);
	if (!probe)
		return -1;
	int L = (int)pack_seq_len(probe);
	pack_close(probe);
	batch_buf bb = {0};
	int rc = pack_src_open(&ps, paths, 1, (uint32_t)L, err);
	if (rc == 0) {
		batch_alloc(&bb, B, L);
		rc = eval_pack(m, &ps, &bb, B, L, (uint64_t)max, loss, err);
		batch_free(&bb);
	}
	pack_src_close(&ps);
	return rc;
}

/* --weights: n non-negative finite numbers, not all 0, normalized to sum
 * 1 into w (none given: uniform).  Checked before any member is loaded;
 * @return 0, or -1 after saying why (a usage error). */
static int parse_weights(const char *p, double *w, int n)
{
	double sum = 0;
	for (int i = 0; i < n; i++) {
		if (p) {
			char *end;
			w[i] = strtod(p, &end);
			if (end == p || (*end && *end != ',') || !(w[i] >= 0) || !isfinite(w[i]) || (i == n - 1 && *end)) {
				fprintf(stderr, "mvl average: --weights: give %d non-negative numbers, comma-separated\n", n);
				return -1;
			}
			p = *end ? end + 1 : end;
		} else {
			w[i] = 1;
		}
		sum += w[i];
	}
	if (!(sum > 0) || !isfinite(sum)) {
		fprintf(stderr, "mvl average: --weights: they sum to %g; give at least one positive weight\n", sum);
		return -1;
	}
	for (int i = 0; i < n; i++)
		w[i] /= sum;
	return 0;
}

static int run_average(const avg_opts *o, char **names, int n)
{
	mvl_err err;
	model **m = xcalloc((size_t)n, sizeof *m);
	double *w = xcalloc((size_t)n, sizeof *w), *loss = xcalloc((size_t)n, sizeof *loss);
	json_t *rep = json_object(), *members = json_array();
	model *avg = NULL;
	int rc = 1;
	if (parse_weights(o->weights, w, n) != 0) {
		rc = 2;
		goto done;
	}
	if (load_members(names, n, m, &err) != 0)
		goto done;
	avg = model_new(&m[0]->c, 0);
	if (o->dev)
		for (int i = 0; i < n; i++) {
			if (dev_loss(m[i], o->dev, o->batch, o->dev_seqs, &loss[i], &err) != 0)
				goto done;
			fprintf(stderr, "mvl average: member %d (%s): dev loss %.6f\n", i + 1, names[i], loss[i]);
			json_array_append_new(members, json_pack("{s:s,s:f}", "name", names[i], "dev_loss", loss[i]));
		}
	if (o->soup) {
		/* greedy soup: members best first; each joins if the uniform
		 * average with it has a lower dev loss than without */
		int *order = xmalloc((size_t)n * sizeof *order), k = 0;
		for (int i = 0; i < n; i++)
			order[i] = i;
		for (int i = 1; i < n; i++)
			for (int j = i; j > 0 && loss[order[j]] < loss[order[j - 1]]; j--) {
				int t = order[j];
				order[j] = order[j - 1];
				order[j - 1] = t;
			}
		char *in = xcalloc((size_t)n, 1);
		in[order[0]] = 1;
		k = 1;
		double best = loss[order[0]];
		for (int j = 1; j < n; j++) {
			in[order[j]] = 1;
			for (int i = 0; i < n; i++)
				w[i] = in[i] ? 1.0 / (k + 1) : 0;
			mix(avg, m, w, n);
			double l;
			if (dev_loss(avg, o->dev, o->batch, o->dev_seqs, &l, &err) != 0) {
				free(order);
				free(in);
				goto done;
			}
			fprintf(stderr, "mvl average: soup + member %d: dev loss %.6f (%s)\n", order[j] + 1, l,
				l < best ? "kept" : "left out");
			if (l < best) {
				best = l;
				k++;
			} else {
				in[order[j]] = 0;
			}
		}
		for (int i = 0; i < n; i++)
			w[i] = in[i] ? 1.0 / k : 0;
		free(order);
		free(in);
	}
	mix(avg, m, w, n);
	json_t *wl = json_array();
	for (int i = 0; i < n; i++)
		json_array_append_new(wl, json_real(w[i]));
	json_object_set_new(rep, "weights", wl);
	if (o->dev) {
		double l;
		if (dev_loss(avg, o->dev, o->batch, o->dev_seqs, &l, &err) != 0)
			goto done;
		fprintf(stderr, "mvl average: %s: dev loss %.6f\n", o->soup ? "soup" : "average", l);
		json_object_set_new(rep, "dev_loss", json_real(l));
	}
	if (model_save(avg, o->output, &err) != 0)
		goto done;
	if (o->report) {
		json_object_set_new(rep, "members", json_incref(members));
		json_object_set_new(rep, "method", json_string(o->soup ? "greedy_soup" : o->weights ? "weighted" : "uniform"));
		if (json_save(o->report, rep, &err) != 0)
			goto done;
	}
	rc = 0;
done:
	if (rc == 1)
		fprintf(stderr, "mvl average: %s\n", err.msg);
	for (int i = 0; i < n; i++)
		model_free(m[i]);
	model_free(avg);
	free(m);
	free(w);
	free(loss);
	json_decref(members);
	json_decref(rep);
	return rc;
}

int cmd_average(int argc, char **argv)
{
	avg_opts o;
	const opt_spec specs[] = {
		{"output", 'o', OPT_STR, &o.output, NULL, "FILE", "the averaged model.safetensors (required)"},
		{"weights", 0, OPT_STR, &o.weights, NULL, "W1,W2,...", "one weight per checkpoint (normalized; default uniform)"},
		{"soup", 0, OPT_FLAG, &o.soup, NULL, NULL,
		 "greedy soup: add members best first, each only if the dev loss improves (needs --dev)"},
		{"dev", 0, OPT_STR, &o.dev, NULL, "PACK", "a held-out pack: every member's and the average's loss"},
		{"batch", 0, OPT_INT, &o.batch, "4", "N", "sequences per evaluation batch"},
		{"dev-seqs", 0, OPT_INT, &o.dev_seqs, "64", "N", "evaluate on the dev pack's first N sequences (0: all)"},
		{"report", 0, OPT_STR, &o.report, NULL, "FILE", "weights and dev losses as JSON"},
		{0},
	};
	const opt_cmd cmd = {
		"average", "-o FILE [OPTIONS] CKPT...",
		"Averages checkpoints of the same model config (checkpoint directories, run\n"
		"directories or model.safetensors files) parameter by parameter.",
		NULL, specs,
	};
	char **args;
	int nargs;
	opts_main(&cmd, argc, argv, &args, &nargs);
	if (!o.output || nargs < 1 || (o.soup && !o.dev) || o.batch < 1 || o.dev_seqs < 0) {
		fprintf(stderr, "mvl average: -o FILE and at least one checkpoint are required; --soup needs --dev PACK\n"
				"see 'mvl average --help'\n");
		free(args);
		return 2;
	}
	int rc = run_average(&o, args, nargs);
	free(args);
	return rc;
}
