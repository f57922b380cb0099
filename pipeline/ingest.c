/* ingest.c: `mvl ingest`: folders, JSONL, img2dataset output or shards in,
 * a validated, normalized stream out, on all cores. */
#include "ingest.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "commands.h"
#include "parallel.h"
#include "stream_cmd.h"

int ingest_opts_check(ingest_opts *o, mvl_err *err)
{
	unsigned r, g, b;
	char tail;
	if (strlen(o->background) != 6 ||
	    sscanf(o->background, "%2x%2x%2x%c", &r, &g, &b, &tail) != 3)
		return mvl_errf(err, "option '--background': '%s' is not RRGGBB hex", o->background);
	o->bg[0] = (uint8_t)r;
	o->bg[1] = (uint8_t)g;
	o->bg[2] = (uint8_t)b;
	if (o->quality < 1 || o->quality > 101)
		return mvl_errf(err, "option '--quality': %d is not in 1..101 (101: lossless WebP)",
				o->quality);
	if (!strcmp(o->resize, "max-side") && o->max_side < 1)
		return mvl_errf(err, "option '--max-side': %d must be at least 1", o->max_side);
	if (!strcmp(o->resize, "smart") &&
	    (o->min_pixels > o->resize_max_pixels || o->resize_max_pixels < 28 * 28))
		return mvl_errf(err, "options '--min-pixels' / '--resize-max-pixels': need "
				     "784 <= max and min <= max");
	o->out_format = IMG_UNKNOWN;
	if (strcmp(o->encode, "auto") != 0)
		o->out_format = img_format_from_ext(!strcmp(o->encode, "jpeg") ? "jpg" : o->encode);
	return 0;
}

static int is_blank(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != ' ' && p[i] != '\t' && p[i] != '\n' && p[i] != '\r' &&
		    p[i] != '\f' && p[i] != '\v')
			return 0;
	return 1;
}

/* Caption checks.  @return 0 or 1 (rejected). */
static int ingest_caption(const ingest_opts *o, sample *s, json_t *meta, reject_info *rj)
{
	member *t = sample_get(s, "txt");
	if (!t) {
		/* img2dataset keeps the caption in KEY.json when asked */
		json_t *c = json_object_get(meta, "caption");
		if (json_is_string(c))
			t = sample_put(s, "txt", json_string_value(c), json_string_length(c));
	}
	if (!t) {
		if (json_is_array(json_object_get(meta, "conversations")) || o->allow_no_caption)
			return 0;
		return reject_set(rj, "missing_caption", "no .txt member and no conversations");
	}
	if (t->size > o->max_caption)
		return reject_set(rj, "caption_too_long", "%zu bytes (limit %llu)", t->size,
				  (unsigned long long)o->max_caption);
	if (!utf8_valid(t->data, t->size)) {
		if (strcmp(o->utf8, "repair") != 0)
			return reject_set(rj, "invalid_utf8", "caption is not valid UTF-8");
		buf fixed = {0};
		utf8_repair(t->data, t->size, &fixed);
		sample_put(s, "txt", fixed.data, fixed.len);
		buf_free(&fixed);
		t = sample_get(s, "txt");
	}
	if (is_blank(t->data, t->size))
		return reject_set(rj, "empty_caption", "caption is empty or blank");
	return 0;
}

/* Sets key only when absent (provenance keeps the earliest value). */
static void set_default(json_t *o, const char *key, json_t *v)
{
	if (json_object_get(o, key))
		json_decref(v);
	else
		json_object_set_new(o, key, v);
}

static int ingest_image(img_ctx *c, const ingest_opts *o, sample *s, json_t *meta,
			reject_info *rj)
{
	int nimg;
	member *m = sample_image(s, &nimg);
	if (!m)
		return o->allow_no_image ? 0
					 : reject_set(rj, "missing_image", "no image member (jpg, png, webp)");
	if (nimg > 1)
		return reject_set(rj, "multiple_images", "%d image members", nimg);
	img_info info;
	mvl_err err;
	if (m->size == 0)
		return reject_set(rj, "not_an_image", "'%s' member is empty", m->ext);
	if (img_probe(m->data, m->size, &info, &err) != 0)
		return reject_from_err(rj, "not_an_image", err.msg);
	if (o->max_pixels && (uint64_t)info.width * (uint64_t)info.height > o->max_pixels)
		return reject_set(rj, "too_large", "%dx%d is more than %llu pixels", info.width,
				  info.height, (unsigned long long)o->max_pixels);
	int swap = info.orientation >= 5 && info.orientation <= 8;
	int ow = swap ? info.height : info.width, oh = swap ? info.width : info.height;
	int tw = ow, th = oh;
	if (!strcmp(o->resize, "smart")) {
		if (smart_resize(oh, ow, 28, o->min_pixels, o->resize_max_pixels, &th, &tw, &err) != 0)
			return reject_set(rj, "bad_aspect_ratio", "%s", err.msg);
	} else if (!strcmp(o->resize, "max-side")) {
		fit_max_side(ow, oh, o->max_side, &tw, &th);
	}
	img_format outf = o->out_format ? o->out_format : info.format;
	int pixels_change = tw != ow || th != oh || info.orientation != 1;
	int reencode = pixels_change || outf != info.format;
	if (pixels_change && !o->out_format)
		outf = IMG_JPEG;

	char hash[33];
	XXH128_hash_t h = XXH3_128bits(m->data, m->size);
	snprintf(hash, sizeof hash, "%016llx%016llx", (unsigned long long)h.high64,
		 (unsigned long long)h.low64);

	if (reencode || !strcmp(o->validate, "decode")) {
		img_decode_opts d;
		img_decode_opts_default(&d);
		d.max_pixels = o->max_pixels;
		memcpy(d.bg, o->bg, 3);
		/* validation only: the smallest decode still reads every bit */
		d.want_w = reencode ? tw : 1;
		d.want_h = reencode ? th : 1;
		img_rgb im = {0};
		if (img_decode(c, m->data, m->size, &d, &im, NULL, &err) != 0)
			return reject_from_err(rj, "corrupt_image", err.msg);
		if (reencode) {
			img_rgb rs = {0};
			const img_rgb *src = &im;
			if (im.w != tw || im.h != th) {
				if (img_resize(&im, tw, th, &rs, &err) != 0) {
					img_rgb_free(&im);
					return reject_from_err(rj, "corrupt_image", err.msg);
				}
				src = &rs;
			}
			buf enc = {0};
			int rc = img_encode(c, src, outf, o->quality, &enc, &err);
			img_rgb_free(&im);
			img_rgb_free(&rs);
			if (rc != 0) {
				buf_free(&enc);
				return reject_from_err(rj, "encode_failed", err.msg);
			}
			sample_remove(s, m->ext);
			sample_put(s, img_format_ext(outf), enc.data, enc.len);
			buf_free(&enc);
		} else {
			img_rgb_free(&im);
		}
	}
	if (!reencode && strcmp(m->ext, img_format_ext(info.format)) != 0) {
		/* the name said .jpg, the bytes say PNG: the bytes win */
		snprintf(m->ext, sizeof m->ext, "%s", img_format_ext(info.format));
	}
	json_object_set_new(meta, "width", json_integer(reencode ? tw : ow));
	json_object_set_new(meta, "height", json_integer(reencode ? th : oh));
	set_default(meta, "original_width", json_integer(ow));
	set_default(meta, "original_height", json_integer(oh));
	json_object_set_new(meta, "format", json_string(img_format_name(reencode ? outf : info.format)));
	set_default(meta, "source_xxh128", json_string(hash));
	if (info.orientation != 1 && reencode)
		json_object_set_new(meta, "orientation", json_integer(info.orientation));
	return 0;
}

int ingest_sample(img_ctx *c, const ingest_opts *o, sample *s, reject_info *rj)
{
	json_t *meta;
	member *jm = sample_get(s, "json");
	if (jm) {
		json_error_t je;
		meta = json_loadb((const char *)jm->data, jm->size, JSON_REJECT_DUPLICATES, &je);
		if (!meta)
			return reject_set(rj, "bad_json", "line %d column %d: %s", je.line, je.column,
					  je.text);
		if (!json_is_object(meta)) {
			json_decref(meta);
			return reject_set(rj, "bad_json", "KEY.json is not an object");
		}
	} else {
		meta = json_object();
	}
	int rc = ingest_caption(o, s, meta, rj);
	if (!rc)
		rc = ingest_image(c, o, s, meta, rj);
	if (!rc) {
		set_default(meta, "source", json_string(s->source ? s->source : "-"));
		char *js = json_dumps(meta, JSON_COMPACT | JSON_SORT_KEYS);
		if (!js)
			rc = reject_set(rj, "bad_json", "cannot serialize KEY.json");
		else {
			sample_put(s, "json", js, strlen(js));
			free(js);
		}
	}
	json_decref(meta);
	return rc;
}

/* ---------------------------------------------------------------------- */
/* the command */

static int ingest_work(void *ctx, void *tls, sample *s, reject_info *rj)
{
	return ingest_sample(tls, ctx, s, rj);
}

static void *ingest_tls_new(void *ctx)
{
	(void)ctx;
	return img_ctx_new();
}

static void ingest_tls_free(void *tls)
{
	img_ctx_free(tls);
}

int cmd_ingest(int argc, char **argv)
{
	stream_opts so;
	ingest_opts o;
	int threads;
	const opt_spec specs[] = {
		STREAM_OUTPUT_SPECS(so, "0", "0"),
		{"resize", 0, OPT_CHOICE, &o.resize, "none", "none|smart|max-side",
		 "resize rule: keep, Qwen2.5-VL smart_resize (sides multiples of 28), or fit --max-side"},
		{"max-side", 0, OPT_INT, &o.max_side, "512", "N", "longest side for --resize max-side"},
		{"min-pixels", 0, OPT_U64, &o.min_pixels, "3136", "N", "smart_resize lower bound on H*W"},
		{"resize-max-pixels", 0, OPT_U64, &o.resize_max_pixels, "1003520", "N",
		 "smart_resize upper bound on H*W"},
		{"max-pixels", 0, OPT_U64, &o.max_pixels, "178956970", "N",
		 "refuse images whose header claims more pixels (decompression bombs)"},
		{"encode", 0, OPT_CHOICE, &o.encode, "auto", "auto|jpeg|webp|png",
		 "output format; auto keeps unchanged images byte for byte, re-encodes changed ones as JPEG"},
		{"quality", 0, OPT_INT, &o.quality, "90", "N", "JPEG/WebP quality (101: lossless WebP)"},
		{"background", 0, OPT_STR, &o.background, "ffffff", "RRGGBB",
		 "colour transparent pixels are composited onto"},
		{"validate", 0, OPT_CHOICE, &o.validate, "decode", "decode|header",
		 "decode every image to prove it whole, or trust a readable header"},
		{"utf8", 0, OPT_CHOICE, &o.utf8, "reject", "reject|repair",
		 "captions that are not valid UTF-8: reject, or replace bad bytes with U+FFFD"},
		{"max-caption-bytes", 0, OPT_SIZE, &o.max_caption, "1MiB", "SIZE", "reject longer captions"},
		{"allow-no-image", 0, OPT_FLAG, &o.allow_no_image, NULL, NULL, "keep samples without an image"},
		{"allow-no-caption", 0, OPT_FLAG, &o.allow_no_caption, NULL, NULL,
		 "keep samples without a caption"},
		{"threads", 'j', OPT_INT, &threads, "0", "N", "worker threads (0: all cores)"},
		STREAM_INPUT_SPECS(so),
		{0},
	};
	const opt_cmd cmd = {
		"ingest", "[OPTIONS] [INPUT...]",
		"Turn image-text data into a normalized WebDataset stream.  INPUTs are\n"
		"shards (tar, .tar.zst, .tar.gz; '-' or none: stdin), img2dataset output\n"
		"folders, folders of image + caption files grouped by name, or JSONL files\n"
		"of {\"image\": PATH, \"caption\": TEXT, ...}.  Each image is validated,\n"
		"optionally EXIF-oriented, resized and re-encoded; KEY.json records width,\n"
		"height, original size, format, source_xxh128 and source.",
		"Rejection reasons: missing_image, multiple_images, not_an_image,\n"
		"corrupt_image, unsupported_image, too_large, bad_aspect_ratio,\n"
		"missing_caption, empty_caption, invalid_utf8, caption_too_long, bad_json,\n"
		"missing_file, unreadable_file, and the stream's own (see 'mvl cat --help').\n",
		specs,
	};
	char **args;
	int nargs;
	opts_main(&cmd, argc, argv, &args, &nargs);
	mvl_err err;
	if (ingest_opts_check(&o, &err) != 0 || threads < 0) {
		fprintf(stderr, "mvl ingest: %s\n", threads < 0 ? "option '--threads' must be >= 0" : err.msg);
		free(args);
		return 2;
	}
	stream_run sr;
	if (stream_run_open(&sr, "ingest", &so, args, nargs, RUN_INGEST | RUN_WRITES, &err) != 0) {
		fprintf(stderr, "mvl ingest: %s\n", err.msg);
		free(args);
		return 1;
	}
	parallel_work w = {ingest_work, &o, ingest_tls_new, ingest_tls_free, threads, 1, NULL, NULL};
	stream_run_parallel(&sr, &w);
	free(args);
	return stream_run_close(&sr);
}
