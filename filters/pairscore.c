/* pairscore.c: the `pairscore` filter: drops image-text pairs whose
 * caption the image does not explain, by the score `mvl score` wrote into
 * KEY.json ("pairscore": {"with_image", "without_image", "gain"}: mean
 * log-likelihood per caption token under a trained checkpoint with and
 * without the image, and their difference).  A fluent caption of another
 * image has a gain near zero or below; heuristics cannot see it. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "filter.h"

typedef struct ps_conf {
	double min_gain, min_with, min_contrast;
	int require;
} ps_conf;

#define O(f) offsetof(ps_conf, f)
static const fopt ps_opts[] = {
	{"min_gain", OPT_DOUBLE, O(min_gain), "0", "X",
	 "gain (nats per caption token the image adds) below: drop as misaligned"},
	{"min_contrast", OPT_DOUBLE, O(min_contrast), "-1e30", "X",
	 "contrast (own image vs other images, nats per token) below: drop as misaligned (off by default)"},
	{"min_with", OPT_DOUBLE, O(min_with), "-1e30", "X", "log-likelihood with the image below: drop as unlikely"},
	{"require", OPT_INT, O(require), "0", "0|1", "1: drop samples without a score (unscored); 0: keep them"},
	{0},
};
#undef O

static int ps_open(const void *conf, void **state, mvl_err *err)
{
	ps_conf *c = xmalloc(sizeof *c);
	*c = *(const ps_conf *)conf;
	*state = c;
	if (c->require != 0 && c->require != 1)
		return mvl_errf(err, "require must be 0 or 1");
	return 0;
}

static int ps_apply(const void *state, void *tls, sample *s, reject_info *rj)
{
	const ps_conf *c = state;
	(void)tls;
	member *j = sample_get(s, "json");
	json_t *root = j ? json_loadb((const char *)j->data, j->size, 0, NULL) : NULL;
	json_t *ps = json_object_get(root, "pairscore");
	int rc = 0;
	if (!json_is_object(ps)) {
		if (c->require)
			rc = reject_set(rj, "unscored", "no \"pairscore\" in KEY.json (run mvl score first)");
	} else {
		double gain = json_number_value(json_object_get(ps, "gain"));
		double with = json_number_value(json_object_get(ps, "with_image"));
		json_t *ct = json_object_get(ps, "contrast");
		if (gain < c->min_gain)
			rc = reject_set(rj, "misaligned", "gain %.4f < %.4f nats/token", gain, c->min_gain);
		else if (ct && json_number_value(ct) < c->min_contrast)
			rc = reject_set(rj, "misaligned", "contrast %.4f < %.4f nats/token", json_number_value(ct),
					c->min_contrast);
		else if (with < c->min_with)
			rc = reject_set(rj, "unlikely", "log-likelihood %.4f < %.4f", with, c->min_with);
	}
	json_decref(root);
	return rc;
}

static void ps_close(void *state)
{
	free(state);
}

const filter_def filter_pairscore = {
	"pairscore",
	"Drop pairs whose caption the image does not explain, by mvl score's\n"
	"model-based score in KEY.json.",
	"Rules (drop reason pairscore.NAME): misaligned (gain below min_gain, default\n"
	"0: the image makes the caption no likelier), unlikely (log-likelihood with\n"
	"the image below min_with; off by default), unscored (no score, with\n"
	"require=1).  Scores come from `mvl score --ckpt C` (a checkpoint of the\n"
	"warm-up stage is enough).\n",
	ps_opts,
	sizeof(ps_conf),
	ps_open,
	NULL,
	NULL,
	ps_apply,
	ps_close,
	NULL,
	NULL,
	NULL,
	NULL, /* runs on any rank as it is: no dist_start */
	NULL,
};
