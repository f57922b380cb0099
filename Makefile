# mvl: `make` builds ./mvl; `make test`; `make bench`; `make demo`; `make asan`;
# `make valgrind`; `make fuzz` (libFuzzer harnesses, tests/fuzz/README.md).
# CI (.ci/run) runs `make test`, then `make asan`.
# Missing Debian packages are installed by scripts/deps.sh on first build.

CC      ?= gcc
CXX     ?= g++
PKGS    := libarchive libzstd libturbojpeg libwebp libwebpdemux spng jansson libxxhash zlib \
           icu-uc icu-i18n libpcre2-8 yaml-0.1 ompi-c
CFLAGS  ?= -O2 -g
# project flags apply whatever CFLAGS the command line sets (make asan)
XCFLAGS := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter -fopenmp -MMD -MP
B       ?= build
# OpenBLAS built on OpenMP: the trainer's own loops are OpenMP, and two
# thread pools spinning against each other cost half the time (perf).
# The rpath pins it against the pthread build the alternatives prefer.
OBLAS   := /usr/lib/$(shell $(CC) -print-multiarch)/openblas-openmp

SRCDIRS := pipeline filters mixers tokenizer trainer
SRCS    := $(filter-out pipeline/main.c,$(foreach d,$(SRCDIRS),$(wildcard $(d)/*.c)))
# C++ only where a library offers nothing else (CLD2's API)
CXXSRCS := $(wildcard filters/*.cc)
OBJS    := $(SRCS:%.c=$(B)/%.o) $(CXXSRCS:%.cc=$(B)/%.o) $(B)/embed.o
# data files compiled into the binary (stopword lists, patterns)
DATA    := $(shell find filters/data -type f ! -name '*.md' ! -name '*.tsv' 2>/dev/null | LC_ALL=C sort)
TESTSRC := $(wildcard tests/unit/*.c)
TESTBIN := $(TESTSRC:tests/unit/%.c=$(B)/tests/%)
# fuzz harnesses: replayed over their corpus by `make test` (any CC), run
# under libFuzzer by `make fuzz` (clang)
FUZZSRC := $(wildcard tests/fuzz/fuzz_*.c)
REPLAYBIN := $(FUZZSRC:tests/fuzz/%.c=$(B)/tests-fuzz/%)
FUZZBIN := $(FUZZSRC:tests/fuzz/%.c=$(B)/fuzz/%)
FUZZ_SECONDS ?= 60
FUZZ_CFLAGS := -O1 -g -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer \
	-fno-sanitize-recover=undefined

all: mvl

# Installs what is missing (idempotent), then records the build flags.
$(B)/deps.mk: scripts/deps.sh Makefile
	@mkdir -p $(B)
	@pkg-config --exists $(PKGS) 2>/dev/null && command -v /usr/bin/python3 >/dev/null \
	  && [ -f /usr/include/cld2/public/compact_lang_det.h ] \
	  && [ -d tests/node/node_modules/tiktoken ] \
	  && [ -f $(OBLAS)/pkgconfig/openblas.pc ] \
	  && /usr/bin/python3 -c 'import PIL, numpy, torch' 2>/dev/null || scripts/deps.sh
	@echo "DEP_CFLAGS := $$(pkg-config --cflags $(PKGS)) $$(PKG_CONFIG_PATH=$(OBLAS)/pkgconfig pkg-config --cflags openblas)" > $@.tmp
	@echo "DEP_LIBS := $$(pkg-config --libs $(PKGS)) $$(PKG_CONFIG_PATH=$(OBLAS)/pkgconfig pkg-config --libs openblas) -Wl,-rpath,$(OBLAS) -lcld2 -lstdc++ -lm -lpthread" >> $@.tmp
	@mv $@.tmp $@

-include $(B)/deps.mk

$(B)/%.o: %.c $(B)/deps.mk
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(XCFLAGS) $(DEP_CFLAGS) -Ipipeline -Ifilters -Itokenizer -Imixers -Itrainer -c $< -o $@

$(B)/embed.c: $(DATA) scripts/embed.sh
	@mkdir -p $(B)
	scripts/embed.sh $(DATA) > $@.tmp && mv $@.tmp $@

$(B)/embed.o: $(B)/embed.c $(B)/deps.mk
	$(CC) $(CFLAGS) $(XCFLAGS) -Ifilters -c $< -o $@

$(B)/%.o: %.cc $(B)/deps.mk
	@mkdir -p $(dir $@)
	$(CXX) $(CFLAGS) -Wall -Wextra -MMD -MP -Ipipeline -Ifilters -Itokenizer -Imixers -Itrainer -c $< -o $@

$(B)/libmvl.a: $(OBJS)
	rm -f $@ && ar rcs $@ $^

$(B)/mvl: $(B)/pipeline/main.o $(B)/libmvl.a
	$(CC) $(CFLAGS) -fopenmp -o $@ $^ $(DEP_LIBS) $(LDFLAGS)

mvl: $(B)/mvl
	@if [ "$(B)" = build ]; then cp $(B)/mvl mvl.tmp && mv -f mvl.tmp mvl; fi

$(B)/tests/%: tests/unit/%.c $(B)/libmvl.a tests/unit/check.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(XCFLAGS) $(DEP_CFLAGS) -Ipipeline -Ifilters -Itokenizer -Imixers -Itrainer -Itests/unit -o $@ $< $(B)/libmvl.a $(DEP_LIBS) $(LDFLAGS)

$(B)/tests-fuzz/%: tests/fuzz/%.c tests/fuzz/replay.c tests/fuzz/fuzz.c tests/fuzz/fuzz.h $(B)/libmvl.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(XCFLAGS) $(DEP_CFLAGS) -Ipipeline -Ifilters -Itokenizer -Imixers -Itrainer -Itests/fuzz \
	  -o $@ $< tests/fuzz/replay.c tests/fuzz/fuzz.c $(B)/libmvl.a $(DEP_LIBS) $(LDFLAGS)

# built by `make fuzz` only, with B=build-fuzz and CC=clang
$(B)/fuzz/%: tests/fuzz/%.c tests/fuzz/fuzz.c tests/fuzz/fuzz.h $(B)/libmvl.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(XCFLAGS) $(DEP_CFLAGS) -Ipipeline -Ifilters -Itokenizer -Imixers -Itrainer -Itests/fuzz \
	  -fsanitize=fuzzer,address,undefined -o $@ $< tests/fuzz/fuzz.c $(B)/libmvl.a $(DEP_LIBS)

tests: $(B)/mvl $(TESTBIN) $(REPLAYBIN)

# the report test renders the page in headless chromium (deps.sh --test)
test: tests
	@command -v chromium >/dev/null 2>&1 && command -v strace >/dev/null 2>&1 || scripts/deps.sh --test
	@MVL=$(abspath $(B)/mvl) B=$(abspath $(B)) tests/run.sh

# OpenMPI keeps its MPI_Init state until exit (tests/lsan.supp names its
# libraries); ranks under mpirun unwind leak stacks fully so that the names
# are seen through libraries built without frame pointers (slow: only them).
# MVL_SANITIZED=1: tests whose budgets are sized for the plain build's
# speed (test_run's recipe) take smaller ones.
asan:
	OMPI_MCA_mca_base_env_list='ASAN_OPTIONS=fast_unwind_on_malloc=0' \
	LSAN_OPTIONS='suppressions=$(abspath tests/lsan.supp):print_suppressions=0' \
	MVL_SANITIZED=1 $(MAKE) B=build-asan \
	  CFLAGS='-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined' \
	  LDFLAGS='-fsanitize=address,undefined' test

# memcheck on a small end to end (tests/valgrind.sh: filter, ls, train);
# valgrind comes from scripts/deps.sh --valgrind
valgrind: $(B)/mvl
	@command -v valgrind >/dev/null 2>&1 || scripts/deps.sh --valgrind
	tests/valgrind.sh $(abspath $(B)/mvl)

# clang and libFuzzer come from scripts/deps.sh --fuzz; FUZZERS=NAME... runs
# a subset; crashes land in tests/fuzz/crashes/NAME/
fuzz:
	@command -v clang >/dev/null 2>&1 && tests/fuzz/have_libfuzzer.sh || scripts/deps.sh --fuzz
	$(MAKE) B=build-fuzz CC=clang CXX=clang++ CFLAGS='$(FUZZ_CFLAGS)' fuzz-build
	tests/fuzz/run.sh build-fuzz $(FUZZ_SECONDS) $(or $(FUZZERS),$(FUZZSRC:tests/fuzz/fuzz_%.c=%))

fuzz-build: $(FUZZBIN)

bench: mvl
	@scripts/deps.sh --bench
	scripts/bench_ingest.sh
	scripts/bench_filters.sh
	scripts/bench_dedup.sh
	scripts/tok/bench.sh
	scripts/bench_pack.sh
	scripts/bench_train.sh -t plain
	scripts/bench_train.sh -t tuned
	scripts/bench_mpi.sh

demo: mvl
	scripts/demo.sh

clean:
	rm -rf build build-asan build-fuzz mvl

.PHONY: all mvl test tests asan valgrind fuzz fuzz-build bench demo clean
-include $(OBJS:.o=.d) $(B)/pipeline/main.d
