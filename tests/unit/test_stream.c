/* test_stream.c: unit tests for util, options, inputs, sample naming, and
 * the shard writer/reader round trip. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "inputs.h"
#include "opts.h"
#include "sample.h"
#include "shard_reader.h"
#include "shard_writer.h"
#include "util.h"

static void test_utf8(void)
{
	const char *good[] = {"", "abc", "caf\xc3\xa9", "\xe4\xb8\xad\xe6\x96\x87",
			      "\xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd", "\xef\xbf\xbd", NULL};
	const char *bad[] = {"\xc0\xaf",         /* overlong '/' */
			     "\xe0\x80\xaf",     /* overlong */
			     "\xed\xa0\x80",     /* surrogate */
			     "\xf4\x90\x80\x80", /* above U+10FFFF */
			     "\xff", "abc\x80", "\xe4\xb8", /* truncated */
			     NULL};
	for (int i = 0; good[i]; i++)
		CHECKF(utf8_valid((const unsigned char *)good[i], strlen(good[i])), "utf8_valid_good",
		       "case %d", i);
	for (int i = 0; bad[i]; i++)
		CHECKF(!utf8_valid((const unsigned char *)bad[i], strlen(bad[i])), "utf8_valid_bad",
		       "case %d", i);
	/* long ASCII run with one bad byte at the end exercises the fast path */
	char longs[100];
	memset(longs, 'a', sizeof longs);
	longs[99] = (char)0x80;
	CHECK(!utf8_valid((unsigned char *)longs, 100), "utf8_valid_fastpath_tail");
	CHECK(utf8_valid((unsigned char *)longs, 99), "utf8_valid_fastpath");

	buf b = {0};
	/* "a" E0 80 "b" F0 9F 91 "c" FF: each maximal ill-formed subpart -> one U+FFFD
	 * (E0 80: E0 is a valid start but 80 is not a valid second byte -> two) */
	const unsigned char in[] = {'a', 0xE0, 0x80, 'b', 0xF0, 0x9F, 0x91, 'c', 0xFF};
	size_t nbad = utf8_repair(in, sizeof in, &b);
	const char *want = "a\xef\xbf\xbd\xef\xbf\xbd" "b\xef\xbf\xbd" "c\xef\xbf\xbd";
	CHECKF(nbad == 4 && b.len == strlen(want) && memcmp(b.data, want, b.len) == 0, "utf8_repair",
	       "nbad=%zu len=%zu", nbad, b.len);
	CHECK(utf8_valid(b.data, b.len), "utf8_repair_valid");
	buf_free(&b);
	CHECK(utf8_count((const unsigned char *)"caf\xc3\xa9", 5) == 4, "utf8_count");
}

static void test_sizes(void)
{
	uint64_t v;
	CHECK(parse_size("123", &v) == 0 && v == 123, "size_plain");
	CHECK(parse_size("64k", &v) == 0 && v == 64000, "size_k");
	CHECK(parse_size("1.5M", &v) == 0 && v == 1500000, "size_M");
	CHECK(parse_size("2GB", &v) == 0 && v == 2000000000ull, "size_GB");
	CHECK(parse_size("1GiB", &v) == 0 && v == 1073741824ull, "size_GiB");
	CHECK(parse_size("1Ki", &v) == 0 && v == 1024, "size_Ki");
	CHECK(parse_size("abc", &v) != 0, "size_bad");
	CHECK(parse_size("-5", &v) != 0, "size_negative");
	CHECK(parse_size("5X", &v) != 0, "size_bad_unit");
	CHECK(parse_size("5Mx", &v) != 0, "size_trailing");
}

static void test_names(void)
{
	size_t kl;
	char ext[64];
	CHECK(split_member_name("a/b/x01.JPG", &kl, ext, sizeof ext) == 0 && kl == 7 &&
		      !strcmp(ext, "jpg"), "split_dir_upper");
	CHECK(split_member_name("x.seg.png", &kl, ext, sizeof ext) == 0 && kl == 1 &&
		      !strcmp(ext, "seg.png"), "split_first_dot");
	CHECK(split_member_name("a.b/c.txt", &kl, ext, sizeof ext) == 0 && kl == 5 &&
		      !strcmp(ext, "txt"), "split_dot_in_dir");
	CHECK(split_member_name("noext", &kl, ext, sizeof ext) != 0, "split_noext");
	CHECK(split_member_name("dir/.hidden", &kl, ext, sizeof ext) != 0, "split_dotfile");
	CHECK(split_member_name("x.", &kl, ext, sizeof ext) != 0, "split_empty_ext");
	CHECK(unsafe_member_name("/etc/passwd.txt") != NULL, "unsafe_abs");
	CHECK(unsafe_member_name("a/../../x.jpg") != NULL, "unsafe_dotdot");
	CHECK(unsafe_member_name("..\\x.jpg") != NULL, "unsafe_backslash");
	CHECK(unsafe_member_name("C:/x.jpg") != NULL, "unsafe_drive");
	CHECK(unsafe_member_name("a/..b/x.jpg") == NULL, "safe_dotdot_prefix");
	CHECK(unsafe_member_name("a/b/x.jpg") == NULL, "safe_plain");
}

static void test_inputs(void)
{
	inputs in = {0};
	mvl_err err;
	CHECK(inputs_expand(&in, "s-{008..011}.tar", &err) == 0 && in.n == 4 &&
		      !strcmp(in.path[0], "s-008.tar") && !strcmp(in.path[3], "s-011.tar"),
	      "brace_range_padded");
	inputs_free(&in);
	CHECK(inputs_expand(&in, "{a,b}-{1..2}.tar", &err) == 0 && in.n == 4 &&
		      !strcmp(in.path[1], "a-2.tar") && !strcmp(in.path[2], "b-1.tar"),
	      "brace_list_product");
	inputs_free(&in);
	CHECK(inputs_expand(&in, "x{a,{b,c}}y", &err) == 0 && in.n == 3 &&
		      !strcmp(in.path[2], "xcy"), "brace_nested");
	inputs_free(&in);
	CHECK(inputs_expand(&in, "s-{3..1}", &err) == 0 && in.n == 3 && !strcmp(in.path[0], "s-3"),
	      "brace_descending");
	inputs_free(&in);
	CHECK(inputs_expand(&in, "s-{0..9999999}", &err) != 0, "brace_too_many");
	inputs_free(&in);
	CHECK(inputs_expand(&in, "s-{1..2", &err) != 0, "brace_unbalanced");
	inputs_free(&in);
	CHECK(inputs_expand(&in, "/nonexistent-dir-xyz/*.tar", &err) != 0 &&
		      strstr(err.msg, "no file matches"), "glob_nomatch");
	inputs_free(&in);
}

static void test_opts(void)
{
	int flag, n;
	uint64_t size;
	const char *mode, *name;
	const opt_spec specs[] = {
		{"flag", 'f', OPT_FLAG, &flag, NULL, NULL, "a flag"},
		{"count", 'n', OPT_INT, &n, "7", "N", "a count"},
		{"size", 0, OPT_SIZE, &size, "1k", "SIZE", "a size"},
		{"mode", 0, OPT_CHOICE, &mode, "a", "a|bb|c", "a mode"},
		{"name", 'o', OPT_STR, &name, NULL, "NAME", "a name"},
		{0},
	};
	const opt_cmd cmd = {"t", "[X]", "test", NULL, specs};
	char *argv1[] = {"t", "-f", "--count=3", "x", "--size", "2M", "-oOUT", "--mode", "bb", "--", "-y", NULL};
	char **args;
	int nargs, help;
	mvl_err err;
	int rc = opts_parse(&cmd, 11, argv1, &args, &nargs, &help, &err);
	CHECKF(rc == 0 && flag == 1 && n == 3 && size == 2000000 && !strcmp(mode, "bb") &&
		       !strcmp(name, "OUT") && nargs == 2 && !strcmp(args[0], "x") && !strcmp(args[1], "-y"),
	       "opts_parse", "rc=%d %s", rc, rc ? err.msg : "");
	free(args);
	char *argv2[] = {"t", NULL};
	rc = opts_parse(&cmd, 1, argv2, &args, &nargs, &help, &err);
	CHECK(rc == 0 && flag == 0 && n == 7 && size == 1000 && !strcmp(mode, "a") && !name,
	      "opts_defaults");
	free(args);
	char *argv3[] = {"t", "--nope", NULL};
	CHECK(opts_parse(&cmd, 2, argv3, &args, &nargs, &help, &err) != 0 && strstr(err.msg, "--nope"),
	      "opts_unknown");
	free(args);
	char *argv4[] = {"t", "--mode", "z", NULL};
	CHECK(opts_parse(&cmd, 3, argv4, &args, &nargs, &help, &err) != 0, "opts_bad_choice");
	free(args);
	char *argv5[] = {"t", "--count", "3x", NULL};
	CHECK(opts_parse(&cmd, 3, argv5, &args, &nargs, &help, &err) != 0, "opts_bad_int");
	free(args);
	char *argv6[] = {"t", "--count", NULL};
	CHECK(opts_parse(&cmd, 2, argv6, &args, &nargs, &help, &err) != 0, "opts_missing_value");
	free(args);
}

/* Writes samples to a shard file and reads them back. */
static void test_roundtrip(const char *dir, const char *suffix)
{
	char pattern[512], path[512], name[64];
	snprintf(pattern, sizeof pattern, "%s/rt-%%03d%s", dir, suffix);
	snprintf(path, sizeof path, "%s/rt-000%s", dir, suffix);
	snprintf(name, sizeof name, "roundtrip%s", suffix);
	mvl_err err;
	writer_opts wo = {pattern, 0, 0, NULL, 0, 0};
	shard_writer *w = shard_writer_open(&wo, &err);
	CHECKF(w != NULL, name, "open: %s", err.msg);
	if (!w)
		return;
	sample s;
	sample_init(&s);
	char longkey[300];
	memset(longkey, 'k', 160);
	longkey[160] = 0; /* no slash: needs a pax path record */
	const char *keys[] = {"a", "dir/sub/b", longkey, "x"};
	for (int i = 0; i < 4; i++) {
		sample_clear(&s);
		sample_set_key(&s, keys[i], strlen(keys[i]));
		member *m = sample_add(&s, "txt", 5 + (size_t)i * 700);
		for (size_t k = 0; k < m->size; k++)
			m->data[k] = (uint8_t)(k * 7 + (size_t)i);
		sample_put(&s, "json", "{}", 2);
		shard_writer_write(w, &s, &err);
	}
	CHECK(shard_writer_close(w, 1, &err) == 0, name);
	CHECK(access(path, F_OK) == 0, name);
	char *paths[] = {path};
	shard_reader *r = shard_reader_new(paths, 1, NULL);
	reject_info rj;
	int got = 0, ok = 1;
	while (shard_reader_next(r, &s, &rj, &err) == READ_SAMPLE) {
		if (got >= 4 || strcmp(s.key, keys[got]) != 0 || s.n != 2)
			ok = 0;
		/* sorted extension order: json before txt */
		else if (strcmp(s.m[0].ext, "json") || strcmp(s.m[1].ext, "txt") ||
			 s.m[1].size != 5 + (size_t)got * 700)
			ok = 0;
		else
			for (size_t k = 0; k < s.m[1].size; k++)
				if (s.m[1].data[k] != (uint8_t)(k * 7 + (size_t)got))
					ok = 0;
		got++;
	}
	CHECKF(ok && got == 4, name, "got %d samples, ok=%d", got, ok);
	shard_reader_free(r);
	sample_free(&s);
}

static void test_maxcount(const char *dir)
{
	char pattern[512];
	snprintf(pattern, sizeof pattern, "%s/mc-%%d.tar", dir);
	mvl_err err;
	writer_opts wo = {pattern, 3, 0, NULL, 0, 0};
	shard_writer *w = shard_writer_open(&wo, &err);
	sample s;
	sample_init(&s);
	for (int i = 0; i < 7; i++) {
		char key[16];
		snprintf(key, sizeof key, "k%d", i);
		sample_clear(&s);
		sample_set_key(&s, key, strlen(key));
		sample_put(&s, "txt", "hi", 2);
		shard_writer_write(w, &s, &err);
	}
	CHECK(shard_writer_shards(w) == 2, "maxcount_rotation_before_close");
	shard_writer_close(w, 1, &err);
	char p[512];
	snprintf(p, sizeof p, "%s/mc-2.tar", dir);
	CHECK(access(p, F_OK) == 0, "maxcount_three_shards");
	snprintf(p, sizeof p, "%s/mc-3.tar", dir);
	CHECK(access(p, F_OK) != 0, "maxcount_no_fourth");
	sample_free(&s);
	CHECK(shard_writer_open(&(writer_opts){"x-%s.tar", 0, 0, NULL, 0, 0}, &err) == NULL,
	      "pattern_rejects_s");
	CHECK(shard_writer_open(&(writer_opts){"x.tar", 0, 0, NULL, 0, 0}, &err) == NULL,
	      "pattern_needs_conversion");
}

int main(void)
{
	char dir[] = "/tmp/mvl-unit-XXXXXX";
	if (!mkdtemp(dir))
		return 1;
	test_utf8();
	test_sizes();
	test_names();
	test_inputs();
	test_opts();
	test_roundtrip(dir, ".tar");
	test_roundtrip(dir, ".tar.zst");
	test_roundtrip(dir, ".tar.gz");
	test_maxcount(dir);
	char cmd[600];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		return 1;
	return check_done();
}
