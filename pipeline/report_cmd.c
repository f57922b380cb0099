/* report_cmd.c: `mvl report RUN_DIR`: what a run did, as one HTML page.
 *
 * The page is self-contained: inline CSS, charts as inline SVG, thumbnails
 * as data: URIs; no scripts, fonts or requests, so it opens anywhere and
 * can be mailed.  It reads only what `mvl run` leaves in RUN_DIR (each
 * step's own JSON), and every input is optional: a section whose files are
 * missing or unreadable says which, and the page opens with the list, so a
 * partial or failed run still gets a report of what exists.
 *
 * Everything that comes from data (captions, keys, paths, reasons, recipe
 * names) is HTML-escaped on the way out; captions are also repaired to
 * valid UTF-8 and cut.  Charts are drawn by two functions, one for bars and
 * one for lines, so they all look alike.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "commands.h"
#include "image.h"
#include "opts.h"
#include "shard_reader.h"
#include "util.h"

typedef struct report {
	const char *run;
	int examples;   /* rejected samples shown per reason */
	int reasons;    /* drop reasons shown per source */
	int thumb;      /* thumbnail side, px */
	json_t *manifest;
	buf missing;    /* <li> lines: inputs looked for and not found */
	buf toc;        /* <li> lines: the sections */
	int open;       /* a <section> is open */
	img_ctx *ic;
} report;

/* ---------------------------------------------------------------------- */
/* files */

static char *pathf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *pathf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *s = NULL;
	if (vasprintf(&s, fmt, ap) < 0)
		die("out of memory");
	va_end(ap);
	return s;
}

static int is_dir(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int is_file(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* list_dir() : names in dir ending in suffix (suffix cut off), or the
 * subdirectories when suffix is NULL; sorted.  @return the count (0 when
 * dir cannot be read); *out is malloc'd. */
static int list_dir(const char *dir, const char *suffix, char ***out)
{
	*out = NULL;
	DIR *d = opendir(dir);
	if (!d)
		return 0;
	int n = 0, cap = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		size_t len = strlen(e->d_name), sl = suffix ? strlen(suffix) : 0;
		if (suffix && (len <= sl || strcmp(e->d_name + len - sl, suffix) != 0))
			continue;
		if (!suffix) {
			char *p = pathf("%s/%s", dir, e->d_name);
			int ok = is_dir(p);
			free(p);
			if (!ok)
				continue;
		}
		if (n == cap) {
			cap = cap ? 2 * cap : 16;
			*out = xrealloc(*out, (size_t)cap * sizeof **out);
		}
		(*out)[n++] = xstrndup(e->d_name, len - sl);
	}
	closedir(d);
	if (n)
		qsort(*out, (size_t)n, sizeof **out, cmp_str);
	return n;
}

static void free_list(char **v, int n)
{
	for (int i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/* load_json() : @return the document, or NULL with *why saying "missing"
 * or what is wrong with it. */
static json_t *load_json(const char *path, char why[256])
{
	if (!is_file(path)) {
		snprintf(why, 256, "missing");
		return NULL;
	}
	json_error_t je;
	json_t *j = json_load_file(path, JSON_DECODE_ANY, &je);
	if (!j)
		snprintf(why, 256, "unreadable: line %d: %s", je.line, je.text);
	else if (!json_is_object(j)) {
		snprintf(why, 256, "unreadable: not a JSON object");
		json_decref(j);
		j = NULL;
	}
	return j;
}

static const char *jstr(const json_t *o, const char *k)
{
	json_t *v = json_object_get(o, k);
	return json_is_string(v) ? json_string_value(v) : NULL;
}

static int jnum(const json_t *o, const char *k, double *v)
{
	json_t *x = json_object_get(o, k);
	if (!json_is_number(x))
		return 0;
	*v = json_number_value(x);
	return 1;
}

static double jnum0(const json_t *o, const char *k)
{
	double v = 0;
	jnum(o, k, &v);
	return v;
}

/* ---------------------------------------------------------------------- */
/* HTML */

/* esc_n() : appends s[0..n) as HTML text: escaped, invalid UTF-8 repaired,
 * control characters as spaces, cut after max code points (0: whole). */
static void esc_n(buf *b, const char *s, size_t n, size_t max)
{
	buf fixed = {0};
	if (!utf8_valid((const unsigned char *)s, n)) {
		utf8_repair((const unsigned char *)s, n, &fixed);
		s = (const char *)fixed.data;
		n = fixed.len;
	}
	size_t cp = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if ((c & 0xC0) != 0x80 && max && cp++ == max) {
			buf_append(b, "\xe2\x80\xa6", 3); /* … */
			break;
		}
		switch (c) {
		case '&': buf_append(b, "&amp;", 5); break;
		case '<': buf_append(b, "&lt;", 4); break;
		case '>': buf_append(b, "&gt;", 4); break;
		case '"': buf_append(b, "&quot;", 6); break;
		case '\'': buf_append(b, "&#39;", 5); break;
		default:
			if (c < 0x20 || c == 0x7f)
				c = ' ';
			buf_append(b, &c, 1);
		}
	}
	buf_free(&fixed);
}

static void esc(buf *b, const char *s)
{
	if (s)
		esc_n(b, s, strlen(s), 0);
}

/* A number as people read it: integers with thousands separators. */
static const char *fmt_num(double v, char out[48])
{
	if (!isfinite(v)) {
		snprintf(out, 48, "%s", isnan(v) ? "-" : v > 0 ? "inf" : "-inf");
	} else if (v == floor(v) && fabs(v) < 1e15) {
		char t[32];
		int n = snprintf(t, sizeof t, "%.0f", fabs(v)), o = 0;
		if (v < 0)
			out[o++] = '-';
		for (int i = 0; i < n; i++) {
			if (i && (n - i) % 3 == 0)
				out[o++] = ',';
			out[o++] = t[i];
		}
		out[o] = 0;
	} else {
		snprintf(out, 48, "%.4g", v);
	}
	return out;
}

static void put_num(buf *b, double v)
{
	char t[48];
	buf_printf(b, "%s", fmt_num(v, t));
}

static void put_pct(buf *b, double frac)
{
	if (isfinite(frac))
		buf_printf(b, "%.1f%%", 100 * frac);
	else
		buf_printf(b, "-");
}

static void base64(buf *b, const uint8_t *p, size_t n)
{
	static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	buf_reserve(b, (n + 2) / 3 * 4);
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) |
			     (i + 2 < n ? p[i + 2] : 0);
		char q[4] = {t[v >> 18 & 63], t[v >> 12 & 63], i + 1 < n ? t[v >> 6 & 63] : '=',
			     i + 2 < n ? t[v & 63] : '='};
		buf_append(b, q, 4);
	}
}

/* missing() : a note in the section that also joins the page's list of
 * missing inputs. */
static void missing(report *r, buf *b, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void missing(report *r, buf *b, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	buf_printf(b, "<p class=\"missing\">");
	esc(b, msg);
	buf_printf(b, "</p>\n");
	buf_printf(&r->missing, "<li>");
	esc(&r->missing, msg);
	buf_printf(&r->missing, "</li>\n");
}

/* note() : a remark in the section only. */
static void note(buf *b, const char *msg)
{
	buf_printf(b, "<p class=\"missing\">");
	esc(b, msg);
	buf_printf(b, "</p>\n");
}

static void section(report *r, buf *b, const char *id, const char *title)
{
	buf_printf(b, "%s<section id=\"%s\">\n<h2>%s</h2>\n", r->open ? "</section>\n" : "", id, title);
	r->open = 1;
	buf_printf(&r->toc, "<li><a href=\"#%s\">%s</a></li>\n", id, title);
}

/* ---------------------------------------------------------------------- */
/* charts: one bar chart, one line chart */

static const char *const palette[] = {"#4e79a7", "#f28e2b", "#59a14f", "#e15759",
				      "#76b7b2", "#b07aa1", "#edc948", "#9c755f"};
#define NPAL (int)(sizeof palette / sizeof palette[0])

static void svg_open(buf *b, int w, int h, const char *title)
{
	buf_printf(b, "<svg class=\"chart\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" role=\"img\"><title>", w, h,
		   w, h);
	esc(b, title);
	buf_printf(b, "</title>\n<text x=\"4\" y=\"16\" class=\"ct\">");
	esc(b, title);
	buf_printf(b, "</text>\n");
}

/* svg_legend() : entries (a swatch, or a line when lines, dashed when
 * asked, in palette colour color[i] or i) wrapped to width w from y;
 * draw 0 only measures.  @return the height used. */
static int svg_legend(buf *b, int draw, int w, const char *const *names, const int *color, const int *dashed,
		      int n, int y)
{
	int x = 8, y0 = y;
	for (int i = 0; i < n; i++) {
		size_t cp = utf8_count((const unsigned char *)names[i], strlen(names[i]));
		int ew = 28 + 6 * (int)(cp < 48 ? cp : 48);
		if (x > 8 && x + ew > w) {
			x = 8;
			y += 15;
		}
		if (draw) {
			buf_printf(b, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-width=\"%d\"%s/>", x,
				   y - 4, x + 16, y - 4, palette[(color ? color[i] : i) % NPAL], dashed ? 2 : 8,
				   dashed && dashed[i] ? " stroke-dasharray=\"4 3\"" : "");
			buf_printf(b, "<text x=\"%d\" y=\"%d\">", x + 20, y);
			esc_n(b, names[i], strlen(names[i]), 48);
			buf_printf(b, "</text>\n");
		}
		x += ew;
	}
	return y - y0 + 15;
}

/* svg_bars() : horizontal grouped bars, W px wide: n rows labelled
 * labels[i], ns bars in each (series snames[s], value v[i * ns + s]);
 * percent: values are fractions shown as percentages. */
static void svg_bars(buf *b, int W, const char *title, const char *const *labels, int n,
		     const char *const *snames, int ns, const double *v, int percent)
{
	const int bh = ns > 1 ? 13 : 17, gap = 7;
	int top = ns > 1 ? 36 + svg_legend(b, 0, W, snames, NULL, NULL, ns, 36) : 28;
	int lw = 40;
	for (int i = 0; i < n; i++) {
		int w = 12 + 7 * (int)utf8_count((const unsigned char *)labels[i], strlen(labels[i]));
		if (w > lw)
			lw = w < W / 3 ? w : W / 3;
	}
	double max = 0;
	for (int i = 0; i < n * ns; i++)
		if (isfinite(v[i]) && v[i] > max)
			max = v[i];
	if (max <= 0)
		max = 1;
	int plot = W - lw - 80, H = top + n * (ns * bh + gap) + 6;
	svg_open(b, W, H, title);
	if (ns > 1)
		svg_legend(b, 1, W, snames, NULL, NULL, ns, 36);
	buf_printf(b, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" class=\"axis\"/>\n", lw, top - 4, lw, H - 4);
	for (int i = 0; i < n; i++) {
		int y0 = top + i * (ns * bh + gap);
		buf_printf(b, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">", lw - 6, y0 + ns * bh / 2 + 4);
		esc_n(b, labels[i], strlen(labels[i]), (size_t)(lw - 12) / 7);
		buf_printf(b, "</text>\n");
		for (int s = 0; s < ns; s++) {
			double x = v[i * ns + s];
			if (!isfinite(x))
				continue;
			double w = x > 0 ? x / max * plot : 0;
			buf_printf(b, "<rect x=\"%d\" y=\"%d\" width=\"%.1f\" height=\"%d\" fill=\"%s\"><title>", lw, y0 + s * bh,
				   w, bh - 2, palette[s % NPAL]);
			esc(b, labels[i]);
			if (ns > 1) {
				buf_printf(b, " / ");
				esc(b, snames[s]);
			}
			buf_printf(b, ": ");
			percent ? put_pct(b, x) : put_num(b, x);
			buf_printf(b, "</title></rect>");
			if (x != 0 || ns == 1) {
				buf_printf(b, "<text x=\"%.1f\" y=\"%d\" class=\"val\">", lw + w + 4, y0 + s * bh + bh - 4);
				percent ? put_pct(b, x) : put_num(b, x);
				buf_printf(b, "</text>");
			}
			buf_printf(b, "\n");
		}
	}
	buf_printf(b, "</svg>\n");
}

typedef struct series {
	const char *name;
	const double *x, *y;
	int n;
	int dashed, marks;
	int color; /* palette index */
} series;

static double nice_step(double range, int nticks)
{
	double raw = range / nticks, p = pow(10, floor(log10(raw))), f = raw / p;
	return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * p;
}

/* svg_lines() : series as polylines (with point marks when asked) on
 * shared axes; logx: a logarithmic x axis (ticks at the first series' x). */
static void svg_lines(buf *b, const char *title, const char *xlabel, const char *ylabel, const series *s,
		      int ns, int logx)
{
	const char *names[16] = {0};
	int dashed[16] = {0}, color[16] = {0}, nl = ns < 16 ? ns : 16;
	for (int k = 0; k < nl; k++)
		names[k] = s[k].name, dashed[k] = s[k].dashed, color[k] = s[k].color;
	const int W = 680, L = 64, R = 40, B = 44, T = 36 + svg_legend(b, 0, W, names, color, dashed, nl, 36),
		  H = T + 240 + B;
	double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
	for (int k = 0; k < ns; k++)
		for (int i = 0; i < s[k].n; i++) {
			double x = s[k].x[i], y = s[k].y[i];
			if (!isfinite(x) || !isfinite(y) || (logx && x <= 0))
				continue;
			x = logx ? log10(x) : x;
			x0 = fmin(x0, x), x1 = fmax(x1, x), y0 = fmin(y0, y), y1 = fmax(y1, y);
		}
	if (!(x0 <= x1)) {
		buf_printf(b, "<p class=\"missing\">");
		esc(b, title);
		buf_printf(b, ": no data points</p>\n");
		return;
	}
	if (x1 - x0 < 1e-12)
		x0 -= 1, x1 += 1;
	if (y1 - y0 < 1e-12)
		y0 -= fabs(y0) * 0.1 + 1e-3, y1 += fabs(y1) * 0.1 + 1e-3;
	double pad = (y1 - y0) * 0.05;
	y0 -= pad, y1 += pad;
#define PX(x) (L + ((logx ? log10(x) : (x)) - x0) / (x1 - x0) * (W - L - R))
#define PY(y) (T + (y1 - (y)) / (y1 - y0) * (H - T - B))
	svg_open(b, W, H, title);
	svg_legend(b, 1, W, names, color, dashed, nl, 36);
	/* y ticks */
	double st = nice_step(y1 - y0, 5);
	/* counted, not accumulated: a step below the values' precision must
	 * not loop for ever */
	for (int i = 0; i < 12; i++) {
		double t = (ceil(y0 / st) + i) * st;
		if (!(t <= y1 + st * 1e-9))
			break;
		double py = PY(t);
		buf_printf(b, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" class=\"grid\"/><text x=\"%d\" y=\"%.1f\" "
			      "text-anchor=\"end\">%.4g</text>\n",
			   L, py, W - R, py, L - 4, py + 4, fabs(t) < st * 1e-6 ? 0.0 : t);
	}
	/* x ticks */
	if (logx) {
		for (int i = 0; i < s[0].n && i < 12; i++) {
			if (!(s[0].x[i] > 0))
				continue;
			char t[48];
			buf_printf(b, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%s</text>\n", PX(s[0].x[i]), H - B + 16,
				   fmt_num(s[0].x[i], t));
		}
	} else {
		double sx = nice_step(x1 - x0, 6);
		for (int i = 0; i < 12; i++) {
			double t = (ceil(x0 / sx) + i) * sx;
			if (!(t <= x1 + sx * 1e-9))
				break;
			char tt[48];
			buf_printf(b, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%s</text>\n", PX(t), H - B + 16,
				   fmt_num(t, tt));
		}
	}
	buf_printf(b, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" class=\"axis\"/>", L, H - B, W - R, H - B);
	buf_printf(b, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" class=\"axis\"/>\n", L, T, L, H - B);
	buf_printf(b, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">", (L + W - R) / 2, H - 8);
	esc(b, xlabel);
	buf_printf(b, "</text><text transform=\"translate(14 %d) rotate(-90)\" text-anchor=\"middle\">", (T + H - B) / 2);
	esc(b, ylabel);
	buf_printf(b, "</text>\n");
	for (int k = 0; k < ns; k++) {
		const char *col = palette[s[k].color % NPAL];
		/* at most ~600 points a line: the page stays small */
		int stride = s[k].n > 600 ? (s[k].n + 599) / 600 : 1;
		buf_printf(b, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\"%s points=\"", col,
			   s[k].dashed ? " stroke-dasharray=\"5 3\"" : "");
		for (int i = 0; i < s[k].n; i++) {
			if (i % stride && i != s[k].n - 1)
				continue;
			double x = s[k].x[i], y = s[k].y[i];
			if (!isfinite(x) || !isfinite(y) || (logx && x <= 0))
				continue;
			buf_printf(b, "%.1f,%.1f ", PX(x), PY(y));
		}
		buf_printf(b, "\"/>\n");
		if (s[k].marks)
			for (int i = 0; i < s[k].n && i < 200; i++) {
				double x = s[k].x[i], y = s[k].y[i];
				if (!isfinite(x) || !isfinite(y) || (logx && x <= 0))
					continue;
				buf_printf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"><title>", PX(x), PY(y), col);
				esc(b, s[k].name);
				buf_printf(b, " (%.6g, %.6g)</title></circle>\n", x, y);
			}
	}
#undef PX
#undef PY
	buf_printf(b, "</svg>\n");
}

/* ---------------------------------------------------------------------- */
/* the run: manifest and steps */

static const char *css =
	"body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0 auto;max-width:1100px;"
	"padding:16px 24px;color:#222;background:#fff}"
	"h1{font-size:24px;margin:8px 0}h2{font-size:20px;border-bottom:2px solid #ddd;padding-bottom:4px;"
	"margin-top:36px}h3{font-size:16px;margin:22px 0 8px}"
	"table{border-collapse:collapse;margin:8px 0 12px}th,td{border:1px solid #ddd;padding:3px 8px;"
	"text-align:right;vertical-align:top}th{background:#f4f4f4}td.l,th.l{text-align:left}"
	"code{font:12px ui-monospace,Menlo,Consolas,monospace;word-break:break-all}"
	".missing{color:#8a5a00;background:#fff6e0;border-left:4px solid #e0a000;padding:4px 8px}"
	".done{color:#1a7f37}.failed{color:#c62828;font-weight:bold}.skipped{color:#777}"
	".better{background:#e6f4ea}.worse{background:#fdecea}.best{font-weight:bold}"
	"svg.chart{display:block;margin:6px 0 14px;font:11px system-ui,sans-serif;fill:#333;max-width:100%;"
	"height:auto}svg .ct{font-weight:bold;font-size:13px}svg .axis{stroke:#888}svg .grid{stroke:#eee}"
	"svg .val{fill:#555}"
	".grid2{display:flex;flex-wrap:wrap;gap:8px}"
	"figure.ex{width:190px;margin:0;border:1px solid #ddd;border-radius:4px;padding:6px;background:#fafafa}"
	"figure.ex img{display:block;margin:0 auto 4px;border:1px solid #ccc}"
	"figure.kept{border-color:#1a7f37;background:#f1faf3}"
	".noimg{height:60px;display:flex;align-items:center;justify-content:center;text-align:center;color:#777;"
	"font-size:12px;border:1px dashed #ccc;margin-bottom:4px;overflow:hidden}"
	"figcaption{font-size:12px;overflow-wrap:anywhere}.cap{color:#222}.detail{color:#777}"
	".cluster{border-left:3px solid #4e79a7;padding-left:8px;margin:10px 0}"
	"nav ul{columns:2}";

static void sec_summary(report *r, buf *b)
{
	section(r, b, "run", "Run");
	json_t *m = r->manifest;
	const char *recipe = jstr(m, "recipe"), *abl = jstr(m, "ablation");
	buf_printf(b, "<p>Recipe: <code>");
	esc(b, recipe ? recipe : "(not recorded)");
	buf_printf(b, "</code>%s</p>\n",
		   abl && !strcmp(abl, "raw") ? "; this is the ablation run: filters and dedup off" : "");
	json_t *steps = json_object_get(m, "steps");
	size_t n = json_array_size(steps);
	if (!n) {
		missing(r, b, "manifest.json lists no steps");
		return;
	}
	int done = 0, failed = 0, skipped = 0, other = 0;
	double total = 0;
	buf t = {0};
	buf_printf(&t, "<table><tr><th>#</th><th class=\"l\">step</th><th class=\"l\">status</th><th>seconds</th>"
		       "<th class=\"l\">outputs</th></tr>\n");
	for (size_t i = 0; i < n; i++) {
		json_t *s = json_array_get(steps, i);
		const char *name = jstr(s, "name"), *status = jstr(s, "status");
		double sec = 0;
		int has_sec = jnum(s, "seconds", &sec);
		total += has_sec ? sec : 0;
		if (!status)
			status = "unknown";
		if (!strcmp(status, "done"))
			done++;
		else if (!strcmp(status, "failed"))
			failed++;
		else if (!strcmp(status, "skipped"))
			skipped++;
		else
			other++;
		const char *cls = !strcmp(status, "done") ? "done" : !strcmp(status, "failed") ? "failed" : "skipped";
		buf_printf(&t, "<tr><td>%zu</td><td class=\"l\">", i + 1);
		esc(&t, name ? name : "(unnamed)");
		buf_printf(&t, "</td><td class=\"l %s\">", cls);
		esc(&t, status);
		buf_printf(&t, "</td><td>");
		if (has_sec)
			buf_printf(&t, "%.1f", sec);
		else
			buf_printf(&t, "-");
		buf_printf(&t, "</td><td class=\"l\">");
		json_t *outs = json_object_get(s, "outputs");
		size_t no = json_array_size(outs);
		if (no) {
			buf_printf(&t, "<details><summary>%zu</summary>", no);
			for (size_t k = 0; k < no && k < 50; k++) {
				json_t *o = json_array_get(outs, k);
				if (json_is_string(o)) {
					buf_printf(&t, "<code>");
					esc(&t, json_string_value(o));
					buf_printf(&t, "</code><br>");
				}
			}
			if (no > 50)
				buf_printf(&t, "... and %zu more", no - 50);
			buf_printf(&t, "</details>");
		} else {
			buf_printf(&t, "-");
		}
		buf_printf(&t, "</td></tr>\n");
	}
	buf_printf(&t, "</table>\n");
	buf_printf(b, "<p>%zu steps: %d done, %d failed, %d skipped", n, done, failed, skipped);
	if (other)
		buf_printf(b, ", %d not finished or unknown", other);
	buf_printf(b, "; %.1f s in all.</p>\n", total);
	buf_append(b, t.data, t.len);
	buf_free(&t);
}

/* has_word() : needle occurs in hay with no letter, digit, '_' or '-'
 * either side ("filter.captions" has "captions"; "captions2" has not). */
static int has_word(const char *hay, const char *needle)
{
	size_t n = strlen(needle);
	if (!n)
		return 0;
	for (const char *p = hay; (p = strstr(p, needle)); p++) {
		int before = p == hay || !(isalnum((unsigned char)p[-1]) || p[-1] == '_' || p[-1] == '-');
		char c = p[n];
		int after = !(isalnum((unsigned char)c) || c == '_' || c == '-');
		if (before && after)
			return 1;
	}
	return 0;
}

/* filter_step() : the manifest step that filtered source name: its
 * "source" is name, or its name starts with "filter" and has name as a
 * word.  NULL when none. */
static json_t *filter_step(report *r, const char *name)
{
	json_t *steps = json_object_get(r->manifest, "steps");
	for (size_t i = 0; i < json_array_size(steps); i++) {
		json_t *s = json_array_get(steps, i);
		const char *src = jstr(s, "source"), *sn = jstr(s, "name");
		if (src && !strcmp(src, name))
			return s;
		if (sn && !strncmp(sn, "filter", 6) && has_word(sn + 6, name))
			return s;
	}
	return NULL;
}

/* unfiltered() : the source's filter step ran and promised no stats: the
 * source has no filter chain (or it is the raw ablation). */
static int unfiltered(report *r, const char *name)
{
	json_t *s = filter_step(r, name), *o = json_object_get(s, "outputs");
	const char *status = jstr(s, "status");
	if (!status || strcmp(status, "done"))
		return 0;
	for (size_t i = 0; i < json_array_size(o); i++) {
		const char *p = json_string_value(json_array_get(o, i));
		if (p && strstr(p, ".stats.json"))
			return 0;
	}
	return 1;
}

/* ---------------------------------------------------------------------- */
/* data: funnel, histograms */

static char **source_names(report *r, int *n)
{
	char *dir = pathf("%s/filter", r->run), **a, **c;
	int na = list_dir(dir, ".stats.json", &a), nc = list_dir(dir, ".rejects.tsv", &c);
	free(dir);
	char **all = xmalloc((size_t)(na + nc + 64) * sizeof *all);
	int k = 0;
	for (int i = 0; i < na; i++)
		all[k++] = a[i];
	for (int i = 0; i < nc; i++)
		all[k++] = c[i];
	free(a);
	free(c);
	/* sources the manifest filtered (even when their files are missing) */
	json_t *steps = json_object_get(r->manifest, "steps");
	for (size_t i = 0; i < json_array_size(steps) && k < na + nc + 64; i++) {
		const char *src = jstr(json_array_get(steps, i), "source"), *sn = jstr(json_array_get(steps, i), "name");
		if (src && *src && !strchr(src, '/'))
			all[k++] = xstrdup(src);
		else if (sn && !strncmp(sn, "filter", 6) && sn[6] && strchr(".:/ ", sn[6]) && sn[7] && !strchr(sn + 7, '/'))
			all[k++] = xstrdup(sn + 7); /* "filter.NAME" */
	}
	qsort(all, (size_t)k, sizeof *all, cmp_str);
	int u = 0;
	for (int i = 0; i < k; i++)
		if (u && !strcmp(all[u - 1], all[i]))
			free(all[i]);
		else
			all[u++] = all[i];
	*n = u;
	return all;
}

typedef struct reason_row {
	char *name;
	double n;
} reason_row;

static int cmp_row_desc(const void *a, const void *b)
{
	double x = ((const reason_row *)a)->n, y = ((const reason_row *)b)->n;
	return x < y ? 1 : x > y ? -1 : strcmp(((const reason_row *)a)->name, ((const reason_row *)b)->name);
}

static void funnel_source(report *r, buf *b, const char *name, json_t *st)
{
	double in = jnum0(st, "in"), kept = jnum0(st, "kept");
	const char *chain = jstr(st, "chain");
	buf_printf(b, "<h3>");
	esc(b, name);
	buf_printf(b, "</h3>\n<p>Chain <code>");
	esc(b, chain ? chain : "?");
	buf_printf(b, "</code>: ");
	put_num(b, in);
	buf_printf(b, " in, ");
	put_num(b, kept);
	buf_printf(b, " kept (");
	put_pct(b, in > 0 ? kept / in : NAN);
	buf_printf(b, ").</p>\n");
	json_t *fs = json_object_get(st, "filters");
	/* rows: in, each reason (filter order, largest first), kept */
	int cap = 8, n = 0;
	reason_row *rows = xmalloc((size_t)cap * sizeof *rows);
	rows[n++] = (reason_row){xstrdup("in"), in};
	double accounted = 0;
	buf t = {0};
	buf_printf(&t, "<table><tr><th class=\"l\">filter</th><th>in</th><th>kept</th><th>dropped</th>"
		       "<th class=\"l\">reason</th><th>samples</th><th>%% of source</th></tr>\n");
	for (size_t i = 0; i < json_array_size(fs); i++) {
		json_t *f = json_array_get(fs, i), *rs = json_object_get(f, "reasons");
		int first = n;
		const char *k;
		json_t *v;
		json_object_foreach(rs, k, v)
		{
			if (!json_is_number(v))
				continue;
			if (n == cap)
				rows = xrealloc(rows, (size_t)(cap *= 2) * sizeof *rows);
			rows[n++] = (reason_row){xstrdup(k), json_number_value(v)};
			accounted += json_number_value(v);
		}
		qsort(rows + first, (size_t)(n - first), sizeof *rows, cmp_row_desc);
		int nr = n - first;
		buf_printf(&t, "<tr><td class=\"l\" rowspan=\"%d\">", nr ? nr : 1);
		esc(&t, jstr(f, "name") ? jstr(f, "name") : "?");
		buf_printf(&t, "</td><td rowspan=\"%d\">", nr ? nr : 1);
		put_num(&t, jnum0(f, "in"));
		buf_printf(&t, "</td><td rowspan=\"%d\">", nr ? nr : 1);
		put_num(&t, jnum0(f, "kept"));
		buf_printf(&t, "</td><td rowspan=\"%d\">", nr ? nr : 1);
		put_num(&t, jnum0(f, "dropped"));
		buf_printf(&t, "</td>");
		if (!nr)
			buf_printf(&t, "<td class=\"l\">-</td><td>0</td><td>-</td></tr>\n");
		for (int j = first; j < n; j++) {
			if (j > first)
				buf_printf(&t, "<tr>");
			buf_printf(&t, "<td class=\"l\"><code>");
			esc(&t, rows[j].name);
			buf_printf(&t, "</code></td><td>");
			put_num(&t, rows[j].n);
			buf_printf(&t, "</td><td>");
			put_pct(&t, in > 0 ? rows[j].n / in : NAN);
			buf_printf(&t, "</td></tr>\n");
		}
	}
	/* drops no filter counted (unreadable samples, broken shards) */
	double rest = in - kept - accounted;
	if (rest > 0.5) {
		if (n == cap)
			rows = xrealloc(rows, (size_t)(cap *= 2) * sizeof *rows);
		rows[n++] = (reason_row){xstrdup("read errors (no filter)"), rest};
		buf_printf(&t, "<tr><td class=\"l\">reader</td><td></td><td></td><td>");
		put_num(&t, rest);
		buf_printf(&t, "</td><td class=\"l\">unreadable samples</td><td>");
		put_num(&t, rest);
		buf_printf(&t, "</td><td>");
		put_pct(&t, in > 0 ? rest / in : NAN);
		buf_printf(&t, "</td></tr>\n");
	}
	buf_printf(&t, "</table>\n");
	if (n == cap)
		rows = xrealloc(rows, (size_t)(cap *= 2) * sizeof *rows);
	rows[n++] = (reason_row){xstrdup("kept"), kept};
	const char **labels = xmalloc((size_t)n * sizeof *labels);
	double *vals = xmalloc((size_t)n * sizeof *vals);
	for (int i = 0; i < n; i++)
		labels[i] = rows[i].name, vals[i] = rows[i].n;
	char *title = pathf("%s: samples in, dropped per reason, kept", name);
	svg_bars(b, 680, title, labels, n, NULL, 1, vals, 0);
	free(title);
	buf_append(b, t.data, t.len);
	buf_free(&t);
	for (int i = 0; i < n; i++)
		free(rows[i].name);
	free(rows);
	free(labels);
	free(vals);
}

/* One histogram of the stats as bars: what the first filter saw (the
 * source as it came) beside what the last one saw (after the others). */
static void hist_chart(buf *b, const char *src, json_t *fs, const char *key, const char *what, int top)
{
	size_t nf = json_array_size(fs);
	json_t *f0 = json_array_get(fs, 0), *fl = json_array_get(fs, nf - 1);
	json_t *h0 = json_object_get(json_object_get(f0, "histograms"), key);
	json_t *hl = nf > 1 ? json_object_get(json_object_get(fl, "histograms"), key) : NULL;
	if (!json_is_object(h0) || !json_object_size(h0))
		return;
	int n = (int)json_object_size(h0), ns = hl ? 2 : 1, k = 0;
	reason_row *rows = xmalloc((size_t)n * sizeof *rows);
	const char *lab;
	json_t *v;
	json_object_foreach(h0, lab, v)
	{
		rows[k++] = (reason_row){(char *)lab, json_number_value(v)};
	}
	if (top) { /* a category: the largest first, at most `top` */
		qsort(rows, (size_t)k, sizeof *rows, cmp_row_desc);
		if (k > top)
			k = top;
	} else { /* buckets: up to the last one anybody is in */
		while (k > 1 && rows[k - 1].n == 0 && !(hl && json_number_value(json_object_get(hl, rows[k - 1].name))))
			k--;
	}
	const char **labels = xmalloc((size_t)k * sizeof *labels);
	double *vals = xmalloc((size_t)k * ns * sizeof *vals);
	for (int i = 0; i < k; i++) {
		labels[i] = rows[i].name;
		vals[i * ns] = rows[i].n;
		if (hl)
			vals[i * ns + 1] = json_number_value(json_object_get(hl, rows[i].name));
	}
	char *s0 = pathf("all input (seen by %s)", jstr(f0, "name") ? jstr(f0, "name") : "?");
	char *s1 = pathf("after the others (seen by %s)", jstr(fl, "name") ? jstr(fl, "name") : "?");
	const char *sn[2] = {s0, s1};
	char *title = pathf("%s: %s", src, what);
	svg_bars(b, 520, title, labels, k, sn, ns, vals, 0);
	free(title);
	free(s0);
	free(s1);
	free(labels);
	free(vals);
	free(rows);
}

static void sec_data(report *r, buf *b, char **names, int n, json_t **stats)
{
	section(r, b, "funnel", "Data funnel");
	if (!n) {
		missing(r, b, "%s/filter/: no NAME.stats.json (the filter step has not run, or ran without --stats)",
			r->run);
		return;
	}
	/* overview: kept and dropped per source */
	const char **labels = xmalloc((size_t)n * sizeof *labels);
	double *vals = xmalloc((size_t)n * 2 * sizeof *vals);
	int k = 0;
	buf_printf(b, "<table><tr><th class=\"l\">source</th><th>in</th><th>dropped</th><th>kept</th><th>kept %%</th>"
		      "</tr>\n");
	for (int i = 0; i < n; i++) {
		if (!stats[i])
			continue;
		double in = jnum0(stats[i], "in"), kept = jnum0(stats[i], "kept");
		buf_printf(b, "<tr><td class=\"l\">");
		esc(b, names[i]);
		buf_printf(b, "</td><td>");
		put_num(b, in);
		buf_printf(b, "</td><td>");
		put_num(b, in - kept);
		buf_printf(b, "</td><td>");
		put_num(b, kept);
		buf_printf(b, "</td><td>");
		put_pct(b, in > 0 ? kept / in : NAN);
		buf_printf(b, "</td></tr>\n");
		labels[k] = names[i];
		vals[2 * k] = kept;
		vals[2 * k + 1] = in - kept;
		k++;
	}
	buf_printf(b, "</table>\n");
	for (int i = 0; i < n; i++) {
		/* a shard that broke mid-way lost the samples after the damage:
		 * the run went on (mvl run passes --allow-damaged), say so here */
		double dmg = stats[i] ? jnum0(stats[i], "damaged_inputs") : 0;
		if (dmg > 0) {
			buf_printf(b, "<p class=\"missing\">");
			esc(b, names[i]);
			buf_printf(b, ": %.0f damaged input%s passed over (unreadable, or broken mid-way: the samples after "
				      "the damage are lost; the filter step's stderr names them)</p>\n",
				   dmg, dmg == 1 ? "" : "s");
		}
	}
	const char *sn[2] = {"kept", "dropped"};
	if (k)
		svg_bars(b, 680, "Samples kept and dropped per source", labels, k, sn, 2, vals, 0);
	free(labels);
	free(vals);
	for (int i = 0; i < n; i++) {
		if (stats[i]) {
			funnel_source(r, b, names[i], stats[i]);
		} else {
			char why[256];
			char *p = pathf("%s/filter/%s.stats.json", r->run, names[i]);
			json_decref(load_json(p, why));
			buf_printf(b, "<h3>");
			esc(b, names[i]);
			buf_printf(b, "</h3>\n");
			if (!is_file(p) && unfiltered(r, names[i]))
				note(b, "No filter chain: the samples were copied as they came (no stats).");
			else
				missing(r, b, "%s: %s", p, why);
			free(p);
		}
	}
}

static void sec_hist(report *r, buf *b, char **names, int n, json_t **stats)
{
	section(r, b, "histograms", "Caption and image histograms");
	int any = 0;
	for (int i = 0; i < n; i++) {
		if (!stats[i])
			continue;
		json_t *fs = json_object_get(stats[i], "filters");
		buf_printf(b, "<h3>");
		esc(b, names[i]);
		buf_printf(b, "</h3>\n");
		json_t *h = json_object_get(json_array_get(fs, 0), "histograms");
		if (!json_is_object(h)) {
			missing(r, b, "%s/filter/%s.stats.json has no histograms (written without --stats?)", r->run,
				names[i]);
			continue;
		}
		any = 1;
		buf_printf(b, "<p>");
		put_num(b, jnum0(h, "no_caption"));
		buf_printf(b, " samples without a caption, ");
		put_num(b, jnum0(h, "no_image"));
		buf_printf(b, " without a readable image (as the first filter saw them).</p>\n<div class=\"grid2\">\n");
		hist_chart(b, names[i], fs, "caption_words", "caption length (words)", 0);
		hist_chart(b, names[i], fs, "caption_chars", "caption length (characters)", 0);
		hist_chart(b, names[i], fs, "image_min_side", "image shorter side (px)", 0);
		hist_chart(b, names[i], fs, "aspect_ratio", "image aspect ratio (long / short)", 0);
		hist_chart(b, names[i], fs, "language", "caption language (top 12)", 12);
		buf_printf(b, "</div>\n");
	}
	if (!any && !n)
		missing(r, b, "no filter stats: no histograms");
}

/* ---------------------------------------------------------------------- */
/* examples of dropped samples */

typedef struct example {
	char *key, *reason, *detail;
	int cluster;     /* dedup cluster index, -1: none */
	int kept;        /* the cluster's kept sample */
	long ordinal;    /* kept: its index in the filtered output, when the
			  * dedup named it "#N" rather than by key; else -1 */
	int found, searched;
	int rank;        /* of the reason, largest first */
	char count[48];  /* samples dropped for the reason */
	char *caption;   /* from the raw shard */
	buf img;         /* data URI, or empty */
	int w, h;
	char note[160];  /* why there is no image */
} example;

typedef struct ex_set {
	example *e;
	int n, cap;
} ex_set;

static example *ex_add(ex_set *s, const char *key, const char *reason, const char *detail, int cluster)
{
	if (s->n == s->cap)
		s->e = xrealloc(s->e, (size_t)(s->cap = s->cap ? 2 * s->cap : 32) * sizeof *s->e);
	example *e = &s->e[s->n++];
	memset(e, 0, sizeof *e);
	e->key = xstrdup(key);
	e->reason = xstrdup(reason);
	e->detail = xstrdup(detail);
	e->cluster = cluster;
	e->ordinal = -1;
	return e;
}

/* A small string -> int map (dedup clusters by kept key). */
typedef struct smap {
	char **k;
	int *v;
	size_t cap, n;
} smap;

static size_t smap_hash(const char *s)
{
	size_t h = 1469598103934665603ull;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

static int *smap_get(smap *m, const char *key)
{
	if (2 * (m->n + 1) > m->cap) {
		smap old = *m;
		m->cap = old.cap ? 2 * old.cap : 256;
		m->k = xcalloc(m->cap, sizeof *m->k);
		m->v = xcalloc(m->cap, sizeof *m->v);
		m->n = 0;
		for (size_t i = 0; i < old.cap; i++)
			if (old.k[i]) {
				size_t j = smap_hash(old.k[i]) & (m->cap - 1);
				while (m->k[j])
					j = (j + 1) & (m->cap - 1);
				m->k[j] = old.k[i];
				m->v[j] = old.v[i];
				m->n++;
			}
		free(old.k);
		free(old.v);
	}
	size_t j = smap_hash(key) & (m->cap - 1);
	while (m->k[j] && strcmp(m->k[j], key))
		j = (j + 1) & (m->cap - 1);
	if (!m->k[j]) {
		m->k[j] = xstrdup(key);
		m->v[j] = 0;
		m->n++;
	}
	return &m->v[j];
}

static void smap_free(smap *m)
{
	for (size_t i = 0; i < m->cap; i++)
		free(m->k[i]);
	free(m->k);
	free(m->v);
}

/* The sample a dedup drop duplicates: "duplicate of 'KEY' (distance ...)"
 * -> "KEY"; "duplicate of kept sample #N (...)" -> "#N" (the dedup's N-th
 * kept sample, which is the chain's N-th output: dedup comes last).
 * @return malloc'd, or NULL. */
static char *dup_of(const char *detail)
{
	const char *p = strstr(detail, "duplicate of '");
	if (p) {
		p += 14;
		const char *q = strstr(p, "' (");
		if (!q)
			q = strrchr(p, '\'');
		return q && q > p ? xstrndup(p, (size_t)(q - p)) : NULL;
	}
	if ((p = strstr(detail, "duplicate of kept sample #")) && isdigit((unsigned char)p[26]))
		return xstrndup(p + 25, 1 + strspn(p + 26, "0123456789"));
	return NULL;
}

typedef struct cluster_n {
	const char *key;
	int n;
} cluster_n;

static int cmp_cluster(const void *a, const void *b)
{
	const cluster_n *x = a, *y = b;
	return x->n != y->n ? (x->n < y->n ? 1 : -1) : strcmp(x->key, y->key);
}

/* Splits a rejects TSV line into its 4 columns, unescaped (detail may be
 * missing: ""). @return 0, or -1 for a line with fewer than 3. */
static int tsv_split(char *line, char *c[4])
{
	line[strcspn(line, "\r\n")] = 0;
	c[0] = line;
	for (int i = 1; i < 4; i++)
		if (c[i - 1] && (c[i] = strchr(c[i - 1], '\t')))
			*c[i]++ = 0;
		else
			c[i] = NULL;
	if (!c[2])
		return -1;
	if (!c[3])
		c[3] = "";
	for (int i = 0; i < 4; i++)
		tsv_unescape(c[i]);
	return 0;
}

enum { NCLUSTER = 3, PER_CLUSTER = 4, NSOURCES = 256 };

/* pick_examples() : reads the rejects TSV twice: first the counts per
 * reason and per dedup cluster (the kept key a duplicate names), then the
 * first few keys of the largest reasons and of the largest clusters (led
 * by their kept sample).  The distinct files of the source column go to
 * *srcs.  @return 0, or -1 with *why. */
static int pick_examples(report *r, const char *tsv, ex_set *out, char ***srcs, int *nsrcs, char why[256])
{
	FILE *f = fopen(tsv, "r");
	if (!f) {
		snprintf(why, 256, "%s", errno == ENOENT ? "missing" : strerror(errno));
		return -1;
	}
	char *line = NULL, *c[4];
	size_t lcap = 0;
	reason_row *rs = NULL;
	int nr = 0, rcap = 0;
	smap clusters = {0};
	*srcs = xcalloc(NSOURCES, sizeof **srcs);
	*nsrcs = 0;
	for (int lineno = 0; getline(&line, &lcap, f) > 0; lineno++) {
		if ((lineno == 0 && !strncmp(line, "key\t", 4)) || tsv_split(line, c) != 0)
			continue;
		int j = 0;
		while (j < nr && strcmp(rs[j].name, c[2]))
			j++;
		if (j == nr) {
			if (nr == rcap)
				rs = xrealloc(rs, (size_t)(rcap = rcap ? 2 * rcap : 16) * sizeof *rs);
			rs[nr++] = (reason_row){xstrdup(c[2]), 0};
		}
		rs[j].n++;
		char *k = !strncmp(c[2], "dedup.", 6) ? dup_of(c[3]) : NULL;
		if (k)
			++*smap_get(&clusters, k);
		free(k);
		int s = 0;
		while (s < *nsrcs && strcmp((*srcs)[s], c[1]))
			s++;
		if (s == *nsrcs && s < NSOURCES)
			(*srcs)[(*nsrcs)++] = xstrdup(c[1]);
	}
	if (nr)
		qsort(rs, (size_t)nr, sizeof *rs, cmp_row_desc);
	cluster_n *cl = xmalloc((clusters.n + 1) * sizeof *cl);
	int ncl = 0;
	for (size_t i = 0; i < clusters.cap; i++)
		if (clusters.k && clusters.k[i])
			cl[ncl++] = (cluster_n){clusters.k[i], clusters.v[i]};
	qsort(cl, (size_t)ncl, sizeof *cl, cmp_cluster);
	if (ncl > NCLUSTER)
		ncl = NCLUSTER;
	for (int i = 0; i < ncl; i++) {
		char *d = pathf("kept; %d duplicate%s of it dropped", cl[i].n, cl[i].n == 1 ? "" : "s");
		example *e = ex_add(out, cl[i].key, "kept", d, i);
		e->kept = 1;
		e->ordinal = cl[i].key[0] == '#' ? atol(cl[i].key + 1) : -1;
		free(d);
	}
	int *taken = xcalloc((size_t)nr + 1, sizeof *taken), ctaken[NCLUSTER] = {0};
	int shown = nr < r->reasons ? nr : r->reasons;
	rewind(f);
	for (int lineno = 0; getline(&line, &lcap, f) > 0; lineno++) {
		if ((lineno == 0 && !strncmp(line, "key\t", 4)) || tsv_split(line, c) != 0)
			continue;
		int j = 0;
		while (j < nr && strcmp(rs[j].name, c[2]))
			j++;
		char *k = !strncmp(c[2], "dedup.", 6) ? dup_of(c[3]) : NULL;
		int in = -1;
		for (int i = 0; k && i < ncl; i++)
			if (!strcmp(cl[i].key, k))
				in = i;
		free(k);
		if (in >= 0) {
			if (ctaken[in]++ < PER_CLUSTER)
				ex_add(out, c[0], c[2], c[3], in);
		} else if (j < shown && taken[j] < r->examples) {
			taken[j]++;
			example *e = ex_add(out, c[0], c[2], c[3], -1);
			e->rank = j;
			fmt_num(rs[j].n, e->count);
		}
	}
	free(taken);
	free(cl);
	free(line);
	fclose(f);
	for (int i = 0; i < nr; i++)
		free(rs[i].name);
	free(rs);
	smap_free(&clusters);
	return 0;
}

static void caption_of(const sample *s, buf *out)
{
	member *t = sample_get(s, "txt");
	if (t) {
		buf_append(out, t->data, t->size);
		return;
	}
	member *j = sample_get(s, "json");
	json_t *o = j ? json_loadb((const char *)j->data, j->size, 0, NULL) : NULL;
	json_t *conv = json_object_get(o, "conversations");
	for (size_t i = 0; i < json_array_size(conv) && out->len < 2000; i++) {
		json_t *turn = json_array_get(conv, i);
		const char *from = jstr(turn, "from"), *v = jstr(turn, "value");
		if (v)
			buf_printf(out, "%s%s: %s", i ? " | " : "", from ? from : "?", v);
	}
	if (!conv) {
		const char *c = jstr(o, "caption") ? jstr(o, "caption") : jstr(o, "text");
		if (c)
			buf_printf(out, "%s", c);
	}
	json_decref(o);
}

static void thumbnail(report *r, const sample *s, example *e)
{
	member *m = sample_image(s, NULL);
	if (!m) {
		snprintf(e->note, sizeof e->note, "no image");
		return;
	}
	img_decode_opts o;
	img_decode_opts_default(&o);
	o.max_pixels = 64u << 20;
	o.want_w = o.want_h = r->thumb;
	img_rgb im = {0}, sm = {0};
	img_info info;
	mvl_err err;
	buf jpg = {0};
	if (img_decode(r->ic, m->data, m->size, &o, &im, &info, &err) != 0) {
		snprintf(e->note, sizeof e->note, "%.150s", err.msg);
		return;
	}
	int w, h;
	fit_max_side(im.w, im.h, r->thumb, &w, &h);
	if (img_resize(&im, w, h, &sm, &err) != 0 || img_encode(r->ic, &sm, IMG_JPEG, 80, &jpg, &err) != 0) {
		snprintf(e->note, sizeof e->note, "%.150s", err.msg);
	} else {
		buf_printf(&e->img, "data:image/jpeg;base64,");
		base64(&e->img, jpg.data, jpg.len);
		e->w = w;
		e->h = h;
		snprintf(e->note, sizeof e->note, "%s %dx%d", img_format_name(info.format), info.width, info.height);
	}
	img_rgb_free(&im);
	img_rgb_free(&sm);
	buf_free(&jpg);
}

/* find_examples() : reads the raw shards until every example is found. */
static void find_examples(report *r, char **paths, int np, ex_set *ex, buf *notes)
{
	reader_opts ro = {0};
	shard_reader *rd = shard_reader_new(paths, np, &ro);
	sample s;
	sample_init(&s);
	reject_info rj;
	mvl_err err;
	int left = ex->n, k, errors = 0;
	for (int i = 0; i < ex->n; i++)
		ex->e[i].searched = 1;
	while (left > 0 && (k = shard_reader_next(rd, &s, &rj, &err)) != READ_END) {
		if (k == READ_INPUT_ERROR || k == READ_BROKEN) {
			if (errors++ < 3) {
				buf_printf(notes, "<p class=\"missing\">");
				esc(notes, err.msg);
				buf_printf(notes, "</p>\n");
			}
			if (k == READ_INPUT_ERROR)
				continue;
		}
		for (int i = 0; i < ex->n; i++) {
			example *e = &ex->e[i];
			if (e->found || strcmp(e->key, s.key))
				continue;
			e->found = 1;
			left--;
			if (k != READ_SAMPLE) {
				snprintf(e->note, sizeof e->note, "unreadable in the shard: %s", rj.reason);
				continue;
			}
			buf c = {0};
			caption_of(&s, &c);
			e->caption = c.len ? xstrndup((const char *)c.data, c.len) : NULL;
			buf_free(&c);
			thumbnail(r, &s, e);
		}
	}
	sample_free(&s);
	shard_reader_free(rd);
}

static void ex_free(ex_set *ex)
{
	for (int j = 0; j < ex->n; j++) {
		free(ex->e[j].key);
		free(ex->e[j].reason);
		free(ex->e[j].detail);
		free(ex->e[j].caption);
		buf_free(&ex->e[j].img);
	}
	free(ex->e);
}

static void example_card(buf *b, const example *e)
{
	buf_printf(b, "<figure class=\"ex%s\">", e->kept ? " kept" : "");
	if (e->img.len) {
		buf_printf(b, "<img src=\"%.*s\" width=\"%d\" height=\"%d\" alt=\"", (int)e->img.len,
			   (const char *)e->img.data, e->w, e->h);
		esc(b, e->key);
		buf_printf(b, "\" title=\"");
		esc(b, e->note);
		buf_printf(b, "\">");
	} else {
		buf_printf(b, "<div class=\"noimg\">");
		const char *why = e->found ? e->note : e->searched ? "not found in the raw shards" : "raw shards unknown";
		esc_n(b, why, strlen(why), 80);
		buf_printf(b, "</div>");
	}
	buf_printf(b, "<figcaption><code>");
	esc_n(b, e->key, strlen(e->key), 60);
	buf_printf(b, "</code><br><b>");
	esc(b, e->reason);
	buf_printf(b, "</b><br><span class=\"cap\">");
	if (e->caption)
		esc_n(b, e->caption, strlen(e->caption), 160);
	else if (e->found)
		buf_printf(b, "(no caption)");
	buf_printf(b, "</span><br><span class=\"detail\">");
	esc_n(b, e->detail, strlen(e->detail), 120);
	buf_printf(b, "</span></figcaption></figure>\n");
}

/* resolve_kept() : the keys of kept samples known by ordinal, from the
 * source's filtered shards (RUN/filter/NAME/, in name order). */
static void resolve_kept(report *r, const char *name, ex_set *ex)
{
	long last = -1;
	for (int i = 0; i < ex->n; i++)
		if (ex->e[i].ordinal > last)
			last = ex->e[i].ordinal;
	if (last < 0)
		return;
	char *dir = pathf("%s/filter/%s", r->run, name), **f;
	int nf = list_dir(dir, "", &f), np = 0;
	char **paths = xcalloc((size_t)nf + 1, sizeof *paths);
	for (int i = 0; i < nf; i++)
		if (strstr(f[i], ".tar"))
			paths[np++] = pathf("%s/%s", dir, f[i]);
	free_list(f, nf);
	free(dir);
	if (np) {
		reader_opts ro = {0};
		shard_reader *rd = shard_reader_new(paths, np, &ro);
		sample s;
		sample_init(&s);
		reject_info rj;
		mvl_err err;
		int k;
		for (long idx = 0; idx <= last && (k = shard_reader_next(rd, &s, &rj, &err)) != READ_END;) {
			if (k != READ_SAMPLE)
				continue;
			for (int i = 0; i < ex->n; i++)
				if (ex->e[i].ordinal == idx) {
					free(ex->e[i].key);
					ex->e[i].key = xstrdup(s.key);
				}
			idx++;
		}
		sample_free(&s);
		shard_reader_free(rd);
	}
	free_list(paths, np);
}

/* run_base() : the directory `mvl run` ran in, against which the
 * manifest's relative paths resolve.  Its outputs name RUN_DIR as it was
 * given then ("out/run/filter/a.stats.json"): RUN_DIR's real path less as
 * many components as that prefix has.  NULL when no output tells. */
static char *run_base(report *r)
{
	char *real = realpath(r->run, NULL);
	json_t *steps = json_object_get(r->manifest, "steps");
	for (size_t i = 0; real && i < json_array_size(steps); i++) {
		json_t *o = json_object_get(json_array_get(steps, i), "outputs");
		for (size_t j = 0; j < json_array_size(o); j++) {
			const char *p = json_string_value(json_array_get(o, j)), *m;
			if (!p || p[0] == '/' || !((m = strstr(p, "/filter/")) || (m = strstr(p, "/stages/"))))
				continue;
			int up = 1; /* components in p[0..m) */
			for (const char *q = p; q < m; q++)
				up += *q == '/';
			char *base = xstrdup(real);
			for (int k = 0; k < up; k++) {
				char *slash = strrchr(base, '/');
				if (!slash)
					break;
				slash[slash == base] = 0;
			}
			char *test = pathf("%s/%s", base, p);
			int ok = is_file(test) || is_dir(test);
			free(test);
			if (ok) {
				free(real);
				return base;
			}
			free(base);
		}
	}
	free(real);
	return NULL;
}

/* add_shards() : p as a shard file, or the shard files at the top of the
 * directory p; relative p as given, else against base. */
static void add_shards(const char *p, const char *base, char ***out, int *n, int *cap)
{
	char *q = NULL;
	if (p[0] != '/' && !is_file(p) && !is_dir(p) && base)
		q = pathf("%s/%s", base, p);
	else
		q = xstrdup(p);
	char **f = NULL;
	int nf = is_dir(q) ? list_dir(q, "", &f) : 0;
	for (int i = -1; i < nf; i++) {
		char *path = i < 0 ? (is_file(q) ? xstrdup(q) : NULL) : pathf("%s/%s", q, f[i]);
		if (!path || (i >= 0 && (!strstr(f[i], ".tar") || !is_file(path)))) {
			free(path);
			continue;
		}
		if (*n == *cap)
			*out = xrealloc(*out, (size_t)(*cap = *cap ? 2 * *cap : 16) * sizeof **out);
		(*out)[(*n)++] = path;
	}
	free_list(f, nf);
	free(q);
}

/* The raw shards a source's filter read: the manifest's filter step
 * "inputs" (files or directories of shards); failing that, the files of
 * the rejects' source column.  @return the count. */
static int raw_inputs(report *r, const char *name, char **tsv_srcs, int ntsv, char ***out, int *from_tsv)
{
	json_t *in = json_object_get(filter_step(r, name), "inputs");
	char *base = run_base(r);
	int n = 0, cap = 0;
	*out = NULL;
	*from_tsv = 0;
	for (size_t i = 0; i < json_array_size(in); i++) {
		const char *p = json_string_value(json_array_get(in, i));
		if (p && *p)
			add_shards(p, base, out, &n, &cap);
	}
	if (!n) {
		for (int i = 0; i < ntsv; i++)
			if (*tsv_srcs[i] && strcmp(tsv_srcs[i], "-"))
				add_shards(tsv_srcs[i], base, out, &n, &cap);
		*from_tsv = n > 0;
	}
	free(base);
	return n;
}

static void sec_examples(report *r, buf *b, char **names, int n)
{
	section(r, b, "examples", "Dropped samples and duplicate clusters");
	if (r->examples <= 0) {
		buf_printf(b, "<p>Not shown (--examples 0).</p>\n");
		return;
	}
	if (!n)
		note(b, "No sources: nothing to show.");
	for (int i = 0; i < n; i++) {
		char *tsv = pathf("%s/filter/%s.rejects.tsv", r->run, names[i]), why[256], **srcs;
		ex_set ex = {0};
		int nsrcs;
		buf_printf(b, "<h3>");
		esc(b, names[i]);
		buf_printf(b, "</h3>\n");
		if (pick_examples(r, tsv, &ex, &srcs, &nsrcs, why) != 0) {
			missing(r, b, "%s: %s (no examples)", tsv, why);
			free(tsv);
			continue;
		}
		free(tsv);
		if (!ex.n) {
			buf_printf(b, "<p>Nothing was dropped.</p>\n");
			free(ex.e);
			free_list(srcs, nsrcs);
			continue;
		}
		resolve_kept(r, names[i], &ex);
		char **paths;
		int from_tsv, np = raw_inputs(r, names[i], srcs, nsrcs, &paths, &from_tsv);
		free_list(srcs, nsrcs);
		if (np) {
			if (from_tsv)
				note(b, "The manifest names no raw shards for this source: read the files the rejects' source "
					"column names.");
			find_examples(r, paths, np, &ex, b);
		} else {
			missing(r, b, "manifest.json: no filter step with \"inputs\" for source '%s' (and the rejects name "
				      "no file that exists): dropped keys shown without images or captions",
				names[i]);
		}
		/* reasons largest first, then the clusters */
		int maxrank = -1;
		for (int j = 0; j < ex.n; j++)
			if (ex.e[j].cluster < 0 && ex.e[j].rank > maxrank)
				maxrank = ex.e[j].rank;
		for (int rk = 0; rk <= maxrank; rk++) {
			int started = 0;
			for (int j = 0; j < ex.n; j++) {
				example *e = &ex.e[j];
				if (e->cluster >= 0 || e->rank != rk)
					continue;
				if (!started) {
					buf_printf(b, "<h4><code>");
					esc(b, e->reason);
					buf_printf(b, "</code> (%s)</h4>\n<div class=\"grid2\">\n", e->count);
					started = 1;
				}
				example_card(b, e);
			}
			if (started)
				buf_printf(b, "</div>\n");
		}
		for (int c = 0; c < NCLUSTER; c++) {
			int started = 0;
			for (int j = 0; j < ex.n; j++) {
				example *e = &ex.e[j];
				if (e->cluster != c)
					continue;
				if (!started) {
					buf_printf(b, "<div class=\"cluster\"><h4>Duplicate cluster of <code>");
					esc_n(b, e->key, strlen(e->key), 60);
					buf_printf(b, "</code></h4><div class=\"grid2\">\n");
					started = 1;
				}
				example_card(b, e);
			}
			if (started)
				buf_printf(b, "</div></div>\n");
		}
		ex_free(&ex);
		free_list(paths, np);
	}
}

/* Examples of what one rejects TSV dropped, found in the given shards. */
static void dropped_examples(report *r, buf *b, const char *tsv, char **paths, int np)
{
	char why[256], **srcs;
	ex_set ex = {0};
	int nsrcs;
	if (pick_examples(r, tsv, &ex, &srcs, &nsrcs, why) != 0) {
		missing(r, b, "%s: %s (no examples)", tsv, why);
		return;
	}
	free_list(srcs, nsrcs);
	if (!ex.n) {
		buf_printf(b, "<p>Nothing was dropped.</p>\n");
		free(ex.e);
		return;
	}
	find_examples(r, paths, np, &ex, b);
	buf_printf(b, "<div class=\"grid2\">\n");
	for (int j = 0; j < ex.n; j++)
		if (ex.e[j].cluster < 0)
			example_card(b, &ex.e[j]);
	buf_printf(b, "</div>\n");
	ex_free(&ex);
}

/* Model-based pair filtering: for each stage that scored a source
 * (stages/STAGE/pairscore/SRC.stats.json), the scores' distribution with
 * the threshold, the funnel, and examples of the pairs dropped. */
static void sec_pairscore(report *r, buf *b, const char *stage_name, int *opened)
{
	char *dir = pathf("%s/stages/%s/pairscore", r->run, stage_name), **names;
	int n = list_dir(dir, ".stats.json", &names);
	for (int i = 0; i < n; i++) {
		if (!*opened) {
			section(r, b, "pairscore", "Model-based pair filtering");
			buf_printf(b, "<p>A trained checkpoint scores each image-caption pair (<code>mvl score</code>): "
				      "<em>gain</em> is how much likelier the caption is with its image than without, "
				      "<em>contrast</em> how much likelier under its own image than under other images "
				      "(nats per token).  A fluent caption of another image scores low; heuristics cannot "
				      "see it.  The <code>pairscore</code> filter drops the pairs below the threshold.</p>\n");
			*opened = 1;
		}
		char *src = names[i], why[256];
		char *fs = pathf("%s/%s.stats.json", dir, src);
		char *ss = pathf("%s/stages/%s/score/%s.stats.json", r->run, stage_name, src);
		json_t *fst = load_json(fs, why), *sst;
		buf_printf(b, "<h3>Stage ");
		esc(b, stage_name);
		buf_printf(b, ": ");
		esc(b, src);
		buf_printf(b, "</h3>\n");
		/* which model scored, from the step's command */
		char *step = pathf("score.%s.%s", stage_name, src);
		json_t *steps = json_object_get(r->manifest, "steps");
		for (size_t k = 0; k < json_array_size(steps); k++) {
			json_t *st = json_array_get(steps, k), *cmd = json_object_get(st, "command");
			if (!jstr(st, "name") || strcmp(jstr(st, "name"), step))
				continue;
			for (size_t a = 0; a + 1 < json_array_size(cmd); a++)
				if (!strcmp(json_string_value(json_array_get(cmd, a)) ?: "", "--ckpt")) {
					buf_printf(b, "<p>Scored by <code>");
					esc(b, json_string_value(json_array_get(cmd, a + 1)) ?: "?");
					buf_printf(b, "</code>.</p>\n");
				}
		}
		free(step);
		if (!fst) {
			missing(r, b, "%s: %s", fs, why);
		} else {
			funnel_source(r, b, src, fst);
			json_decref(fst);
		}
		if ((sst = load_json(ss, why)) == NULL) {
			missing(r, b, "%s: %s (no score distribution)", ss, why);
		} else {
			static const char *const ms[] = {"gain", "contrast"};
			series sr[2];
			double x[101], y[2][101];
			int nsr = 0;
			for (int m = 0; m < 2; m++) {
				json_t *q = json_object_get(json_object_get(json_object_get(sst, "metrics"), ms[m]),
							    "quantiles");
				if (json_array_size(q) != 101)
					continue;
				for (int p = 0; p <= 100; p++) {
					x[p] = p;
					y[nsr][p] = json_number_value(json_array_get(q, (size_t)p));
				}
				sr[nsr] = (series){ms[m], x, y[nsr], 101, 0, 0, m};
				nsr++;
			}
			buf_printf(b, "<p>");
			put_num(b, jnum0(sst, "scored"));
			buf_printf(b, " pairs scored, ");
			put_num(b, jnum0(sst, "unscored"));
			buf_printf(b, " passed through unscored.</p>\n");
			if (nsr)
				svg_lines(b, "Score percentiles (the lowest are dropped)", "percentile",
					  "nats per caption token", sr, nsr, 0);
			json_decref(sst);
		}
		char *tsv = pathf("%s/%s.rejects.tsv", dir, src);
		char *sd = pathf("%s/stages/%s/score/%s", r->run, stage_name, src), **shards;
		int nsh = list_dir(sd, ".tar", &shards);
		for (int k = 0; k < nsh; k++) {
			char *full = pathf("%s/%s.tar", sd, shards[k]);
			free(shards[k]);
			shards[k] = full;
		}
		buf_printf(b, "<h4>Dropped pairs</h4>\n");
		dropped_examples(r, b, tsv, shards, nsh);
		free_list(shards, nsh);
		free(sd);
		free(tsv);
		free(fs);
		free(ss);
	}
	free_list(names, n);
	free(dir);
}

/* ---------------------------------------------------------------------- */
/* stages: mixture, packing and training, averaging */

typedef struct stage {
	char *name;
	long rank;
	double mtime;
} stage;

static int cmp_stage(const void *a, const void *b)
{
	const stage *x = a, *y = b;
	if (x->rank != y->rank)
		return x->rank < y->rank ? -1 : 1;
	if (x->mtime != y->mtime)
		return x->mtime < y->mtime ? -1 : 1;
	return strcmp(x->name, y->name);
}

/* The stages in run order: the first manifest step that names the stage
 * (or writes under stages/NAME/), else the oldest file's time. */
static stage *list_stages(report *r, int *n)
{
	char *dir = pathf("%s/stages", r->run), **names;
	*n = list_dir(dir, NULL, &names);
	stage *st = xcalloc((size_t)*n + 1, sizeof *st);
	json_t *steps = json_object_get(r->manifest, "steps");
	for (int i = 0; i < *n; i++) {
		st[i].name = names[i];
		st[i].rank = 1L << 30;
		char *under = pathf("stages/%s/", names[i]);
		for (size_t k = 0; k < json_array_size(steps) && st[i].rank == 1L << 30; k++) {
			json_t *s = json_array_get(steps, k), *o = json_object_get(s, "outputs");
			const char *sn = jstr(s, "name");
			if (sn && has_word(sn, names[i]))
				st[i].rank = (long)k;
			for (size_t j = 0; j < json_array_size(o); j++) {
				const char *p = json_string_value(json_array_get(o, j));
				if (p && strstr(p, under)) {
					st[i].rank = (long)k;
					break;
				}
			}
		}
		free(under);
		st[i].mtime = INFINITY;
		char *sd = pathf("%s/%s", dir, names[i]), **files;
		int nf = list_dir(sd, "", &files);
		for (int k = 0; k < nf; k++) {
			char *p = pathf("%s/%s", sd, files[k]);
			struct stat sb;
			if (stat(p, &sb) == 0 && sb.st_mtime < st[i].mtime)
				st[i].mtime = (double)sb.st_mtime;
			free(p);
		}
		free_list(files, nf);
		free(sd);
	}
	free(names);
	free(dir);
	qsort(st, (size_t)*n, sizeof *st, cmp_stage);
	return st;
}

/* A stage's heading, then its JSON file p (freed), or a missing-input
 * line when it cannot be read (NULL). */
static json_t *stage_json(report *r, buf *b, const char *stage, char *p)
{
	char why[256];
	json_t *j = load_json(p, why);
	buf_printf(b, "<h3>");
	esc(b, stage);
	buf_printf(b, "</h3>\n");
	if (!j)
		missing(r, b, "%s: %s", p, why);
	free(p);
	return j;
}

static void sec_mix(report *r, buf *b, stage *st, int ns)
{
	section(r, b, "mixture", "Mixture per stage: requested and realized");
	if (!ns) {
		missing(r, b, "%s/stages/: no stage directories (nothing mixed yet)", r->run);
		return;
	}
	for (int i = 0; i < ns; i++) {
		json_t *m = stage_json(r, b, st[i].name, pathf("%s/stages/%s/mix.json", r->run, st[i].name));
		if (!m)
			continue;
		json_t *src = json_object_get(m, "sources");
		size_t n = json_array_size(src);
		buf_printf(b, "<p>Seed ");
		put_num(b, jnum0(m, "seed"));
		buf_printf(b, ", budget ");
		put_num(b, jnum0(m, "budget"));
		buf_printf(b, " tokens; ");
		put_num(b, jnum0(m, "emitted"));
		buf_printf(b, " samples, ");
		put_num(b, jnum0(m, "tokens"));
		buf_printf(b, " tokens emitted.</p>\n");
		if (!n) {
			missing(r, b, "stages/%s/mix.json lists no sources", st[i].name);
			json_decref(m);
			continue;
		}
		const char **labels = xmalloc(n * sizeof *labels);
		double *v = xmalloc(2 * n * sizeof *v), wsum = 0;
		for (size_t k = 0; k < n; k++)
			wsum += jnum0(json_array_get(src, k), "weight");
		buf_printf(b, "<table><tr><th class=\"l\">source</th><th>requested</th><th>realized</th><th>tokens</th>"
			      "<th>samples</th><th>epochs</th><th>rejected</th></tr>\n");
		for (size_t k = 0; k < n; k++) {
			json_t *s = json_array_get(src, k);
			labels[k] = jstr(s, "name") ? jstr(s, "name") : "?";
			v[2 * k] = wsum > 0 ? jnum0(s, "weight") / wsum : NAN;
			v[2 * k + 1] = jnum0(s, "share");
			buf_printf(b, "<tr><td class=\"l\">");
			esc(b, labels[k]);
			buf_printf(b, "</td><td>");
			put_pct(b, v[2 * k]);
			buf_printf(b, "</td><td>");
			put_pct(b, v[2 * k + 1]);
			buf_printf(b, "</td><td>");
			put_num(b, jnum0(s, "tokens"));
			buf_printf(b, "</td><td>");
			put_num(b, jnum0(s, "samples"));
			buf_printf(b, "</td><td>%.2f</td><td>", jnum0(s, "epochs"));
			put_num(b, jnum0(s, "rejected"));
			buf_printf(b, "</td></tr>\n");
		}
		buf_printf(b, "</table>\n");
		const char *sn[2] = {"requested (weight)", "realized (token share)"};
		char *title = pathf("%s: mixture by tokens", st[i].name);
		svg_bars(b, 680, title, labels, (int)n, sn, 2, v, 1);
		free(title);
		free(labels);
		free(v);
		json_decref(m);
	}
}

/* The sequence lengths a stage has files for (pack-L.json, train-L/). */
static int stage_lengths(report *r, const char *stage, long *len, int max)
{
	char *dir = pathf("%s/stages/%s", r->run, stage), **f, **d;
	int nf = list_dir(dir, ".json", &f), nd = list_dir(dir, NULL, &d), n = 0;
	for (int pass = 0; pass < 2; pass++) {
		char **v = pass ? d : f;
		int nv = pass ? nd : nf;
		const char *pre = pass ? "train-" : "pack-";
		for (int i = 0; i < nv; i++) {
			char *end;
			if (strncmp(v[i], pre, strlen(pre)))
				continue;
			long l = strtol(v[i] + strlen(pre), &end, 10);
			if (*end || l <= 0)
				continue;
			int j = 0;
			while (j < n && len[j] != l)
				j++;
			if (j == n && n < max)
				len[n++] = l;
		}
	}
	for (int i = 1; i < n; i++)
		for (int j = i; j > 0 && len[j] < len[j - 1]; j--) {
			long t = len[j];
			len[j] = len[j - 1];
			len[j - 1] = t;
		}
	free_list(f, nf);
	free_list(d, nd);
	free(dir);
	return n;
}

typedef struct metrics {
	double *step, *loss, *estep, *eloss, tps, mfu;
	int n, ne, cap, ecap, ntps, bad;
} metrics;

static int read_metrics(const char *path, metrics *m, char why[256])
{
	memset(m, 0, sizeof *m);
	FILE *f = fopen(path, "r");
	if (!f) {
		snprintf(why, 256, "%s", errno == ENOENT ? "missing" : strerror(errno));
		return -1;
	}
	char *line = NULL;
	size_t cap = 0;
	while (getline(&line, &cap, f) > 0) {
		json_t *o = json_loads(line, 0, NULL);
		double st, v;
		if (!o || !jnum(o, "step", &st)) {
			m->bad += line[0] != '\n';
		} else if (jnum(o, "loss", &v)) {
			if (m->n == m->cap) {
				m->cap = m->cap ? 2 * m->cap : 256;
				m->step = xrealloc(m->step, (size_t)m->cap * sizeof *m->step);
				m->loss = xrealloc(m->loss, (size_t)m->cap * sizeof *m->loss);
			}
			m->step[m->n] = st;
			m->loss[m->n++] = v;
			double t, u;
			if (jnum(o, "tokens_per_s", &t) && jnum(o, "mfu", &u)) {
				m->tps += t;
				m->mfu += u;
				m->ntps++;
			}
		} else if (jnum(o, "eval_loss", &v)) {
			if (m->ne == m->ecap) {
				m->ecap = m->ecap ? 2 * m->ecap : 32;
				m->estep = xrealloc(m->estep, (size_t)m->ecap * sizeof *m->estep);
				m->eloss = xrealloc(m->eloss, (size_t)m->ecap * sizeof *m->eloss);
			}
			m->estep[m->ne] = st;
			m->eloss[m->ne++] = v;
		}
		json_decref(o);
	}
	free(line);
	fclose(f);
	return 0;
}

static void metrics_free(metrics *m)
{
	free(m->step);
	free(m->loss);
	free(m->estep);
	free(m->eloss);
}

static void sec_train(report *r, buf *b, stage *st, int ns)
{
	section(r, b, "training", "Packing and loss curves");
	if (!ns) {
		missing(r, b, "%s/stages/: no stages: no packs, no training", r->run);
		return;
	}
	for (int i = 0; i < ns; i++) {
		long len[16];
		int nl = stage_lengths(r, st[i].name, len, 16);
		buf_printf(b, "<h3>");
		esc(b, st[i].name);
		buf_printf(b, "</h3>\n");
		if (!nl) {
			missing(r, b, "%s/stages/%s/: no pack-L.json and no train-L/ (not packed or trained yet)", r->run,
				st[i].name);
			continue;
		}
		metrics m[16];
		series s[32];
		char *sname[32];
		int nsr = 0;
		buf t = {0};
		buf_printf(&t, "<table><tr><th>seq len</th><th>samples</th><th>sequences</th><th>samples / seq</th>"
			       "<th>padding</th><th>truncated</th><th>steps</th><th>first loss</th><th>last loss</th>"
			       "<th>last eval loss</th><th>tokens/s</th><th>MFU</th></tr>\n");
		for (int k = 0; k < nl; k++) {
			char *pp = pathf("%s/stages/%s/pack-%ld.json", r->run, st[i].name, len[k]), why[256];
			json_t *pk = load_json(pp, why);
			if (!pk)
				missing(r, b, "%s: %s", pp, why);
			free(pp);
			buf_printf(&t, "<tr><td>%ld</td>", len[k]);
			if (pk) {
				buf_printf(&t, "<td>");
				put_num(&t, jnum0(pk, "samples"));
				buf_printf(&t, "</td><td>");
				put_num(&t, jnum0(pk, "sequences"));
				buf_printf(&t, "</td><td>%.2f</td><td>", jnum0(pk, "samples_per_sequence"));
				put_pct(&t, jnum0(pk, "padding"));
				buf_printf(&t, "</td><td>");
				put_num(&t, jnum0(pk, "truncated"));
				buf_printf(&t, "</td>");
			} else {
				buf_printf(&t, "<td>-</td><td>-</td><td>-</td><td>-</td><td>-</td>");
			}
			json_decref(pk);
			char *mp = pathf("%s/stages/%s/train-%ld/metrics.jsonl", r->run, st[i].name, len[k]);
			if (read_metrics(mp, &m[k], why) != 0) {
				missing(r, b, "%s: %s", mp, why);
				buf_printf(&t, "<td>-</td><td>-</td><td>-</td><td>-</td><td>-</td><td>-</td></tr>\n");
				free(mp);
				continue;
			}
			if (m[k].bad)
				buf_printf(b, "<p class=\"missing\">%s: %d unreadable line%s skipped</p>\n", "metrics.jsonl",
					   m[k].bad, m[k].bad == 1 ? "" : "s");
			free(mp);
			metrics *x = &m[k];
			buf_printf(&t, "<td>");
			if (x->n)
				put_num(&t, x->step[x->n - 1]);
			else
				buf_printf(&t, "-");
			buf_printf(&t, "</td><td>");
			x->n ? buf_printf(&t, "%.4f", x->loss[0]) : buf_printf(&t, "-");
			buf_printf(&t, "</td><td>");
			x->n ? buf_printf(&t, "%.4f", x->loss[x->n - 1]) : buf_printf(&t, "-");
			buf_printf(&t, "</td><td>");
			x->ne ? buf_printf(&t, "%.4f", x->eloss[x->ne - 1]) : buf_printf(&t, "-");
			buf_printf(&t, "</td><td>");
			x->ntps ? put_num(&t, round(x->tps / x->ntps)) : buf_printf(&t, "-");
			buf_printf(&t, "</td><td>");
			x->ntps ? put_pct(&t, x->mfu / x->ntps) : buf_printf(&t, "-");
			buf_printf(&t, "</td></tr>\n");
			if (x->n) {
				sname[nsr] = pathf("train loss, seq %ld", len[k]);
				s[nsr] = (series){sname[nsr], x->step, x->loss, x->n, 0, x->n < 40, k};
				nsr++;
			}
			if (x->ne) {
				sname[nsr] = pathf("eval loss, seq %ld", len[k]);
				s[nsr] = (series){sname[nsr], x->estep, x->eloss, x->ne, 1, 1, k};
				nsr++;
			}
		}
		buf_printf(&t, "</table>\n");
		/* one colour per length: train and eval of a length side by side */
		if (nsr) {
			char *title = pathf("%s: loss by step", st[i].name);
			svg_lines(b, title, "step", "loss", s, nsr, 0);
			free(title);
		}
		buf_append(b, t.data, t.len);
		buf_free(&t);
		for (int k = 0; k < nsr; k++)
			free(sname[k]);
		for (int k = 0; k < nl; k++)
			metrics_free(&m[k]);
	}
}

static void sec_average(report *r, buf *b, stage *st, int ns)
{
	section(r, b, "averaging", "Checkpoint averaging");
	int any = 0;
	for (int i = 0; i < ns; i++) {
		char *p = pathf("%s/stages/%s/average.json", r->run, st[i].name);
		if (!is_file(p)) {
			free(p);
			continue;
		}
		any = 1;
		json_t *a = stage_json(r, b, st[i].name, p);
		if (!a)
			continue;
		json_t *mem = json_object_get(a, "members"), *w = json_object_get(a, "weights");
		size_t n = json_array_size(mem) > json_array_size(w) ? json_array_size(mem) : json_array_size(w);
		double avg, best = INFINITY, mean = 0;
		int has_avg = jnum(a, "dev_loss", &avg), nm = 0;
		buf_printf(b, "<p>Method: ");
		esc(b, jstr(a, "method") ? jstr(a, "method") : "?");
		buf_printf(b, ".</p>\n<table><tr><th class=\"l\">checkpoint</th><th>weight</th><th>dev loss</th></tr>\n");
		for (size_t k = 0; k < n; k++) {
			json_t *m = json_array_get(mem, k);
			double l;
			buf_printf(b, "<tr><td class=\"l\">");
			esc(b, jstr(m, "name") ? jstr(m, "name") : "(member)");
			buf_printf(b, "</td><td>");
			json_is_number(json_array_get(w, k)) ? buf_printf(b, "%.3f", json_number_value(json_array_get(w, k)))
							     : buf_printf(b, "-");
			buf_printf(b, "</td><td>");
			if (jnum(m, "dev_loss", &l)) {
				buf_printf(b, "%.4f", l);
				best = fmin(best, l);
				mean += l;
				nm++;
			} else {
				buf_printf(b, "-");
			}
			buf_printf(b, "</td></tr>\n");
		}
		buf_printf(b, "<tr class=\"best\"><td class=\"l\">average</td><td>1.000</td><td>");
		has_avg ? buf_printf(b, "%.4f", avg) : buf_printf(b, "-");
		buf_printf(b, "</td></tr>\n</table>\n");
		if (has_avg && nm)
			buf_printf(b,
				   "<p>Gain of the average: <b class=\"%s\">%+.4f</b> dev loss against the best member, "
				   "%+.4f against the members' mean (negative is better).</p>\n",
				   avg <= best ? "better" : "worse", avg - best, avg - mean / nm);
		else
			buf_printf(b, "<p class=\"missing\">No dev losses: the gain is unknown (average without --dev).</p>\n");
		json_decref(a);
	}
	if (!any)
		missing(r, b, "%s/stages/*/average.json: none (no averaged stage yet)", r->run);
}

/* ---------------------------------------------------------------------- */
/* evaluation */

static int lower_better(const char *metric)
{
	return strstr(metric, "loss") || strstr(metric, "perplexity");
}

/* A metric's colour, the same in the recipe's and the ablation's lines. */
static int metric_index(const char *metric)
{
	static const char *const known[] = {"retrieval_accuracy", "caption_exact_match", "caption_token_accuracy",
					    "qa_accuracy", "caption_loss", "perplexity"};
	for (int i = 0; i < (int)(sizeof known / sizeof known[0]); i++)
		if (!strcmp(metric, known[i]))
			return i;
	return (int)(smap_hash(metric) % NPAL);
}

static void dev_grid_table(buf *b, json_t *grid)
{
	json_t *g0 = json_array_get(grid, 0);
	const char *k;
	json_t *v;
	buf_printf(b, "<table><tr><th>max pixels</th>");
	json_object_foreach(g0, k, v)
	{
		if (strcmp(k, "max_pixels")) {
			buf_printf(b, "<th>");
			esc(b, k);
			buf_printf(b, "</th>");
		}
	}
	buf_printf(b, "</tr>\n");
	for (size_t i = 0; i < json_array_size(grid); i++) {
		json_t *g = json_array_get(grid, i);
		buf_printf(b, "<tr><td>");
		put_num(b, jnum0(g, "max_pixels"));
		buf_printf(b, "</td>");
		json_object_foreach(g0, k, v)
		{
			if (!strcmp(k, "max_pixels"))
				continue;
			double x, best = NAN;
			for (size_t j = 0; j < json_array_size(grid); j++) {
				double y;
				if (jnum(json_array_get(grid, j), k, &y) &&
				    (isnan(best) || (lower_better(k) ? y < best : y > best)))
					best = y;
			}
			if (jnum(g, k, &x))
				buf_printf(b, "<td%s>%.4f</td>", x == best ? " class=\"best\"" : "", x);
			else
				buf_printf(b, "<td>-</td>");
		}
		buf_printf(b, "</tr>\n");
	}
	buf_printf(b, "</table>\n");
}

static void sec_eval(report *r, buf *b)
{
	section(r, b, "eval", "Evaluation and test-time resolution search");
	char *p0 = pathf("%s/eval.json", r->run), *p1 = pathf("%s/ablation/eval.json", r->run), w0[256], w1[256];
	json_t *e[2] = {load_json(p0, w0), load_json(p1, w1)};
	const char *label[2] = {"recipe", "ablation (raw)"};
	if (!e[0])
		missing(r, b, "%s: %s", p0, w0);
	if (!e[1] && is_file(p1))
		missing(r, b, "%s: %s", p1, w1);
	else if (!e[1])
		buf_printf(b, "<p>No ablation run (no ablation/eval.json): the recipe is shown alone.</p>\n");
	free(p0);
	free(p1);
	if (!e[0] && !e[1])
		return;
	int ne = e[1] ? 2 : 1, first = e[0] ? 0 : 1;
	/* test: default resolution and the dev-chosen one, per metric */
	const char *metrics[32];
	int nm = 0;
	for (int x = 0; x < 2; x++) {
		json_t *def = json_object_get(json_object_get(e[x], "test"), "default");
		const char *k;
		json_t *v;
		json_object_foreach(def, k, v)
		{
			int j = 0;
			while (j < nm && strcmp(metrics[j], k))
				j++;
			if (j == nm && nm < 32)
				metrics[nm++] = k;
		}
	}
	buf_printf(b, "<h3>Test</h3>\n<table><tr><th class=\"l\">metric</th>");
	for (int x = first; x < ne; x++) {
		json_t *t = json_object_get(e[x], "test");
		buf_printf(b, "<th>%s: default (", label[x]);
		put_num(b, jnum0(t, "default_max_pixels"));
		buf_printf(b, " px)</th><th>%s: dev-chosen</th><th>%s: max pixels</th>", label[x], label[x]);
	}
	if (ne == 2 && e[0])
		buf_printf(b, "<th>recipe &minus; ablation (chosen)</th>");
	buf_printf(b, "</tr>\n");
	for (int i = 0; i < nm; i++) {
		buf_printf(b, "<tr><td class=\"l\">");
		esc(b, metrics[i]);
		buf_printf(b, "</td>");
		double at[2] = {NAN, NAN};
		for (int x = first; x < ne; x++) {
			json_t *t = json_object_get(e[x], "test");
			json_t *c = json_object_get(json_object_get(t, "chosen"), metrics[i]);
			double d, s;
			int hd = jnum(json_object_get(t, "default"), metrics[i], &d), hs = jnum(c, "score", &s);
			hd ? buf_printf(b, "<td>%.4f</td>", d) : buf_printf(b, "<td>-</td>");
			if (hs) {
				int better = hd && (lower_better(metrics[i]) ? s < d : s > d);
				int worse = hd && (lower_better(metrics[i]) ? s > d : s < d);
				buf_printf(b, "<td class=\"%s\">%.4f</td><td>", better ? "better" : worse ? "worse" : "", s);
				put_num(b, jnum0(c, "max_pixels"));
				buf_printf(b, "</td>");
			} else {
				buf_printf(b, "<td>-</td><td>-</td>");
			}
			at[x] = hs ? s : hd ? d : NAN;
		}
		if (ne == 2 && e[0]) {
			double dd = at[0] - at[1];
			if (isfinite(dd)) {
				int better = lower_better(metrics[i]) ? dd < 0 : dd > 0;
				buf_printf(b, "<td class=\"%s\">%+.4f</td>", dd == 0 ? "" : better ? "better" : "worse", dd);
			} else {
				buf_printf(b, "<td>-</td>");
			}
		}
		buf_printf(b, "</tr>\n");
	}
	buf_printf(b, "</table>\n");
	double k;
	if (e[0] && jnum(e[0], "retrieval_candidates", &k) && k > 0)
		buf_printf(b, "<p>Retrieval chooses among %.0f captions: chance is %.4f.</p>\n", k, 1 / k);
	/* the dev grid: tables and one chart of the accuracies */
	series s[16];
	char *sname[16];
	double *xs[16], *ys[16];
	int nsr = 0;
	for (int x = first; x < ne; x++) {
		json_t *grid = json_object_get(e[x], "dev_grid");
		size_t n = json_array_size(grid);
		buf_printf(b, "<h3>Dev resolution grid: %s</h3>\n", label[x]);
		if (!n) {
			missing(r, b, "%s eval: no dev grid", label[x]);
			continue;
		}
		dev_grid_table(b, grid);
		const char *k2;
		json_t *v;
		json_object_foreach(json_array_get(grid, 0), k2, v)
		{
			if (nsr == 16 || !json_is_number(v) || !strcmp(k2, "max_pixels") ||
			    !(strstr(k2, "accuracy") || strstr(k2, "exact_match")))
				continue;
			xs[nsr] = xmalloc(n * sizeof(double));
			ys[nsr] = xmalloc(n * sizeof(double));
			for (size_t j = 0; j < n; j++) {
				json_t *g = json_array_get(grid, j);
				xs[nsr][j] = jnum0(g, "max_pixels");
				double y;
				ys[nsr][j] = jnum(g, k2, &y) ? y : NAN;
			}
			sname[nsr] = pathf("%s: %s", label[x], k2);
			s[nsr] = (series){sname[nsr], xs[nsr], ys[nsr], (int)n, x == 1, 1, metric_index(k2)};
			nsr++;
		}
	}
	if (nsr)
		svg_lines(b, "Dev accuracy by max pixels per image", "max pixels (log scale)", "score", s, nsr, 1);
	for (int i = 0; i < nsr; i++) {
		free(sname[i]);
		free(xs[i]);
		free(ys[i]);
	}
	json_decref(e[0]);
	json_decref(e[1]);
}

/* ---------------------------------------------------------------------- */
/* the command */

static int write_report(report *r, const char *out, mvl_err *err)
{
	char why[256];
	char *mp = pathf("%s/manifest.json", r->run);
	r->manifest = load_json(mp, why);
	buf body = {0};
	if (!r->manifest) {
		section(r, &body, "run", "Run");
		missing(r, &body, "%s: %s (no step list; sources and stages are found from the files)", mp, why);
	} else {
		sec_summary(r, &body);
	}
	free(mp);
	int nsrc;
	char **src = source_names(r, &nsrc);
	json_t **stats = xcalloc((size_t)nsrc + 1, sizeof *stats);
	for (int i = 0; i < nsrc; i++) {
		char *p = pathf("%s/filter/%s.stats.json", r->run, src[i]);
		stats[i] = load_json(p, why);
		free(p);
	}
	sec_data(r, &body, src, nsrc, stats);
	sec_examples(r, &body, src, nsrc);
	sec_hist(r, &body, src, nsrc, stats);
	int nst;
	stage *st = list_stages(r, &nst);
	int opened = 0;
	for (int i = 0; i < nst; i++)
		sec_pairscore(r, &body, st[i].name, &opened);
	sec_mix(r, &body, st, nst);
	sec_train(r, &body, st, nst);
	sec_average(r, &body, st, nst);
	sec_eval(r, &body);
	for (int i = 0; i < nsrc; i++)
		json_decref(stats[i]);
	free(stats);
	free_list(src, nsrc);
	for (int i = 0; i < nst; i++)
		free(st[i].name);
	free(st);

	atomic_file af;
	if (atomic_file_open(&af, out, err) != 0) {
		buf_free(&body);
		return -1;
	}
	time_t now = time(NULL);
	char when[64];
	strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S %Z", localtime(&now));
	buf head = {0};
	buf_printf(&head, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
			  "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>mvl report: ");
	esc(&head, r->run);
	buf_printf(&head, "</title>\n<style>%s</style>\n</head>\n<body>\n<h1>mvl run report</h1>\n<p>Run directory <code>",
		   css);
	esc(&head, r->run);
	buf_printf(&head, "</code>; written by mvl %s at %s.</p>\n<nav><ul>\n", MVL_VERSION, when);
	buf_append(&head, r->toc.data, r->toc.len);
	buf_printf(&head, "</ul></nav>\n");
	if (r->missing.len) {
		buf_printf(&head, "<details open><summary>Missing or unreadable inputs</summary><ul>\n");
		buf_append(&head, r->missing.data, r->missing.len);
		buf_printf(&head, "</ul></details>\n");
	} else {
		buf_printf(&head, "<p>Every input was found.</p>\n");
	}
	fwrite(head.data, 1, head.len, af.f);
	fwrite(body.data, 1, body.len, af.f);
	fputs("</section>\n<footer><p>Generated by <code>mvl report</code>; self-contained: no scripts, fonts or "
	      "requests.</p></footer>\n</body>\n</html>\n",
	      af.f);
	buf_free(&head);
	buf_free(&body);
	return atomic_file_commit(&af, err);
}

int cmd_report(int argc, char **argv)
{
	const char *out = NULL;
	int examples = 3, reasons = 12, thumb = 96, quiet = 0;
	const opt_spec specs[] = {
		{"output", 'o', OPT_STR, &out, NULL, "FILE", "write the page to FILE (default: RUN_DIR/report.html)"},
		{"examples", 0, OPT_INT, &examples, "3", "N",
		 "dropped samples shown per reason (0: none, and no shard is read)"},
		{"reasons", 0, OPT_INT, &reasons, "12", "N", "drop reasons shown with examples, per source"},
		{"thumb", 0, OPT_INT, &thumb, "96", "PX", "thumbnail size (longest side)"},
		{"quiet", 'q', OPT_FLAG, &quiet, NULL, NULL, "do not print where the page went"},
		{0},
	};
	const opt_cmd cmd = {
		"report", "RUN_DIR [OPTIONS]",
		"Write one self-contained HTML page (inline CSS, SVG charts, data: URI\n"
		"thumbnails; no scripts, fonts or requests) of what `mvl run` did in RUN_DIR:\n"
		"the steps and their times, the data funnel per source with examples of\n"
		"dropped samples and duplicate clusters, caption and image histograms, the\n"
		"requested and realized mixture per stage, packing and loss curves,\n"
		"checkpoint averaging, and the evaluation with its resolution search (beside\n"
		"RUN_DIR/ablation/eval.json when present).  Every input is optional: what is\n"
		"missing is listed at the top and in its section.",
		"Reads RUN_DIR/manifest.json, filter/NAME.stats.json and NAME.rejects.tsv (and\n"
		"the raw shards the manifest's filter step lists as \"inputs\", for the\n"
		"examples), stages/STAGE/{mix.json,pack-L.json,train-L/metrics.jsonl,\n"
		"average.json}, eval.json and ablation/eval.json.\n",
		specs,
	};
	char **args;
	int nargs;
	opts_main(&cmd, argc, argv, &args, &nargs);
	if (nargs != 1) {
		fprintf(stderr, "mvl report: expected one RUN_DIR\nsee 'mvl report --help'\n");
		free(args);
		return 2;
	}
	if (examples < 0 || reasons < 0 || thumb < 16 || thumb > 1024) {
		fprintf(stderr, "mvl report: --examples and --reasons must be >= 0, --thumb in [16, 1024]\n");
		free(args);
		return 2;
	}
	report r = {.run = args[0], .examples = examples, .reasons = reasons, .thumb = thumb};
	struct stat sb;
	if (stat(r.run, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
		fprintf(stderr, "mvl report: cannot open '%s': %s\n", r.run,
			stat(r.run, &sb) != 0 ? strerror(errno) : "Not a directory");
		free(args);
		return 1;
	}
	char *path = out ? xstrdup(out) : pathf("%s/report.html", r.run);
	r.ic = img_ctx_new();
	mvl_err err;
	int rc = write_report(&r, path, &err);
	if (rc != 0)
		fprintf(stderr, "mvl report: %s\n", err.msg);
	else if (!quiet)
		fprintf(stderr, "mvl report: wrote '%s'\n", path);
	img_ctx_free(r.ic);
	json_decref(r.manifest);
	buf_free(&r.missing);
	buf_free(&r.toc);
	free(path);
	free(args);
	return rc ? 1 : 0;
}
