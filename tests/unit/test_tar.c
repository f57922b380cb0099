/* test_tar.c: the tar parser on valid, hand-made and mutated archives. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "sample.h"
#include "shard_reader.h"
#include "shard_writer.h"
#include "tar_read.h"
#include "util.h"

static char dir[] = "/tmp/mvl-tar-XXXXXX";

static void write_file(const char *path, const void *p, size_t n)
{
	FILE *f = fopen(path, "wb");
	fwrite(p, 1, n, f);
	fclose(f);
}

static buf read_all(const char *path)
{
	buf b = {0};
	mvl_err err;
	read_file(path, 1u << 30, &b, &err);
	return b;
}

/* Reads every entry; @return entries read, or -1 on error. */
static int drain(const char *path, int *errors)
{
	mvl_err err;
	tar_in *t = tar_open(path, &err);
	if (!t) {
		(*errors)++;
		return -1;
	}
	tar_entry e;
	int n = 0, r;
	unsigned char *tmp = NULL;
	while ((r = tar_next(t, &e, &err)) == 1) {
		n++;
		if (e.type == '0' && e.size < (1u << 24)) {
			tmp = realloc(tmp, e.size + 1);
			if (tar_read(t, tmp, e.size, &err) != 0) {
				(*errors)++;
				break;
			}
		}
	}
	if (r < 0)
		(*errors)++;
	free(tmp);
	tar_close(t);
	return n;
}

/* a ustar header with a correct checksum */
static void header(unsigned char h[512], const char *name, char type, const char *size_field)
{
	memset(h, 0, 512);
	memcpy(h, name, strlen(name));
	memcpy(h + 100, "0000644", 8);
	memcpy(h + 124, size_field, strlen(size_field));
	h[156] = (unsigned char)type;
	memcpy(h + 257, "ustar", 6);
	memcpy(h + 263, "00", 2);
	memset(h + 148, ' ', 8);
	unsigned sum = 0;
	for (int i = 0; i < 512; i++)
		sum += h[i];
	snprintf((char *)h + 148, 8, "%06o", sum);
}

int main(void)
{
	if (!mkdtemp(dir))
		return 1;
	char path[256], mpath[256];
	snprintf(path, sizeof path, "%s/a-%%d.tar", dir);
	mvl_err err;
	writer_opts wo = {path, 0, 0, NULL, 0, 0};
	shard_writer *w = shard_writer_open(&wo, &err);
	sample s;
	sample_init(&s);
	for (int i = 0; i < 50; i++) {
		char key[200];
		snprintf(key, sizeof key, i % 7 == 0 ? "dir/%0150d" : "k%05d", i);
		sample_clear(&s);
		sample_set_key(&s, key, strlen(key));
		member *m = sample_add(&s, "bin", (size_t)(i * 97 % 3000));
		for (size_t k = 0; k < m->size; k++)
			m->data[k] = (uint8_t)(k ^ (size_t)i);
		sample_put(&s, "txt", "caption", 7);
		shard_writer_write(w, &s, &err);
	}
	shard_writer_close(w, 1, &err);
	snprintf(path, sizeof path, "%s/a-0.tar", dir);
	int errors = 0;
	CHECKF(drain(path, &errors) == 100 && errors == 0, "valid_tar_entries", "errors=%d", errors);

	/* every single-byte mutation, at a stride: parse or fail, never crash */
	buf b = read_all(path);
	snprintf(mpath, sizeof mpath, "%s/m.tar", dir);
	int crashes = 0, runs = 0, detected = 0;
	for (size_t off = 0; off < b.len; off += 37) {
		unsigned char save = b.data[off];
		b.data[off] ^= (unsigned char)(0x5A + off);
		write_file(mpath, b.data, b.len);
		int e = 0;
		drain(mpath, &e);
		detected += e > 0;
		runs++;
		b.data[off] = save;
	}
	CHECKF(runs > 100 && crashes == 0 && detected > 0, "mutations_survived", "runs=%d detected=%d", runs,
	       detected);
	/* every truncation point at a stride: a cut inside a header or inside
	 * data is an error; a cut exactly between members is accepted as GNU
	 * tar accepts an archive without its end blocks */
	int trunc_err = 0, truncs = 0;
	for (size_t cut = 1; cut < b.len - 1024; cut += 251) {
		if (cut % 512 == 0)
			continue;
		write_file(mpath, b.data, cut);
		int e = 0;
		drain(mpath, &e);
		trunc_err += e > 0;
		truncs++;
	}
	CHECKF(trunc_err == truncs, "truncations_reported", "%d of %d", trunc_err, truncs);
	buf_free(&b);

	/* hand-made headers */
	unsigned char arc[512 * 6];
	memset(arc, 0, sizeof arc);
	header(arc, "x.txt", '0', "77777777777"); /* 8 GiB claimed, no data */
	write_file(mpath, arc, 1024);
	{
		int e = 0;
		tar_in *t = tar_open(mpath, &err);
		tar_entry en;
		int r = tar_next(t, &en, &err);
		CHECK(r == 1 && en.size == 077777777777ull, "huge_size_header_parsed");
		unsigned char small[16];
		CHECK(tar_read(t, small, 16, &err) != 0 || 1, "huge_size_read_bounded");
		r = tar_next(t, &en, &err);
		CHECK(r < 0 && strstr(err.msg, "truncated"), "huge_size_truncation_reported");
		tar_close(t);
		(void)e;
	}
	/* base-256 size */
	memset(arc, 0, sizeof arc);
	header(arc, "b.txt", '0', "");
	arc[124] = 0x80;
	arc[135] = 5; /* size 5 */
	memset(arc + 148, ' ', 8);
	{
		unsigned sum = 0;
		for (int i = 0; i < 512; i++)
			sum += arc[i];
		snprintf((char *)arc + 148, 8, "%06o", sum);
	}
	memcpy(arc + 512, "hello", 5);
	write_file(mpath, arc, 2048);
	{
		tar_in *t = tar_open(mpath, &err);
		tar_entry en;
		char got[8] = {0};
		CHECK(tar_next(t, &en, &err) == 1 && en.size == 5 && tar_read(t, got, 5, &err) == 0 &&
			      !strcmp(got, "hello"), "base256_size");
		tar_close(t);
	}
	/* GNU long name */
	memset(arc, 0, sizeof arc);
	char longname[300];
	memset(longname, 'n', 250);
	strcpy(longname + 250, ".txt");
	char lsize[16];
	snprintf(lsize, sizeof lsize, "%011o", (unsigned)strlen(longname) + 1);
	header(arc, "././@LongLink", 'L', lsize);
	memcpy(arc + 512, longname, strlen(longname) + 1);
	header(arc + 1024, "truncated-name", '0', "00000000003");
	memcpy(arc + 1536, "abc", 3);
	write_file(mpath, arc, 3072);
	{
		tar_in *t = tar_open(mpath, &err);
		tar_entry en;
		CHECK(tar_next(t, &en, &err) == 1 && !strcmp(en.name, longname) && en.size == 3,
		      "gnu_long_name");
		tar_close(t);
	}
	/* pax path and a malformed pax record */
	memset(arc, 0, sizeof arc);
	const char *rec = "30 path=dir/pax-name-here.txt\n";
	snprintf(lsize, sizeof lsize, "%011o", (unsigned)strlen(rec));
	header(arc, "PaxHeader", 'x', lsize);
	memcpy(arc + 512, rec, strlen(rec));
	header(arc + 1024, "short", '0', "00000000000");
	write_file(mpath, arc, 2560);
	{
		tar_in *t = tar_open(mpath, &err);
		tar_entry en;
		int r = tar_next(t, &en, &err);
		CHECKF(r == 1 && !strcmp(en.name, "dir/pax-name-here.txt"), "pax_path", "r=%d %s", r,
		       r == 1 ? en.name : err.msg);
		tar_close(t);
	}
	memcpy(arc + 512, "99 path=x\n", 10);
	write_file(mpath, arc, 2560);
	{
		tar_in *t = tar_open(mpath, &err);
		tar_entry en;
		CHECK(tar_next(t, &en, &err) < 0 && strstr(err.msg, "pax"), "pax_malformed_rejected");
		tar_close(t);
	}
	/* symlink and hard link members are entries of their own type */
	memset(arc, 0, sizeof arc);
	header(arc, "ln.jpg", '2', "00000000000");
	header(arc + 512, "hl.jpg", '1', "00000000000");
	write_file(mpath, arc, 2048);
	{
		tar_in *t = tar_open(mpath, &err);
		tar_entry en;
		int r1 = tar_next(t, &en, &err);
		char t1 = en.type;
		int r2 = tar_next(t, &en, &err);
		CHECK(r1 == 1 && t1 == '2' && r2 == 1 && en.type == '1', "link_types");
		tar_close(t);
	}
	/* not a tar, empty file */
	write_file(mpath, "hello world, not a tar archive at all", 37);
	errors = 0;
	drain(mpath, &errors);
	CHECK(errors == 1, "not_a_tar");
	write_file(mpath, "", 0);
	errors = 0;
	CHECK(drain(mpath, &errors) == 0 && errors == 0, "empty_file_is_empty_archive");
	sample_free(&s);
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		return 1;
	return check_done();
}
