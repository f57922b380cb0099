/* fuzz.h: what the libFuzzer harnesses in tests/fuzz share.
 *
 * Each harness defines LLVMFuzzerTestOneInput() over one parser of outside
 * bytes.  The same file links either with libFuzzer (make fuzz: clang,
 * -fsanitize=fuzzer,address,undefined) or with tests/fuzz/replay.c (make
 * test: any CC), which feeds it the committed corpus and regression inputs.
 *
 * Several parsers take a path, not a buffer, because that is how mvl
 * meets those files; fuzz_file() puts the input behind a path for them.
 */
#ifndef MVL_FUZZ_H
#define MVL_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* fuzz_file() : writes data to a per-process file whose name ends in
 * suffix (parsers that choose by extension see the one they expect) and
 * returns its path, valid until the next call.  The file is rewritten on
 * every call and removed at exit; a write failure aborts (the harness,
 * not the input, is broken). */
const char *fuzz_file(const char *suffix, const uint8_t *data, size_t size);

/* Harnesses store what they read here so the compiler keeps the reads
 * that let ASan check a parser's pointers and sizes. */
extern volatile uint64_t fuzz_sink;

/* fuzz_cstr() : data as a NUL-terminated string (malloc'd; free it). */
char *fuzz_cstr(const uint8_t *data, size_t size);

#endif
