#!/bin/sh
# deps.sh: install every Debian package mvl needs to build, test and bench.
# Idempotent: packages already installed are skipped; apt-get runs only when
# something is missing.  Usage: scripts/deps.sh [--bench|--test|--fuzz|--valgrind]
#   --bench  also installs the photo set the ingest benchmark reads
#            (mate-backgrounds: real JPEG photos of a few megapixels;
#            libexttextcat-dev: the language-ID comparison of scripts/eval_langid.sh).
#   --test   also installs chromium, in which the report test renders the
#            page headless, and strace, whose fault injection kills the
#            trainer at each rename of a checkpoint write (test_crash)
#            (`make test` asks for them; `make demo` does not).
#   --fuzz   also installs clang with libFuzzer's runtime (libclang-rt-dev:
#            libclang_rt.fuzzer and the sanitizers) and libomp-dev (clang's
#            OpenMP), for `make fuzz`.
#   --valgrind  also installs valgrind, for `make valgrind` (memcheck on a
#            small end to end).
set -eu

PKGS="build-essential pkg-config
libarchive-dev libzstd-dev zstd zlib1g-dev
libturbojpeg0-dev libwebp-dev libspng-dev libpng-dev
libicu-dev libpcre2-dev libopenblas-dev libopenblas-openmp-dev libopenmpi-dev openmpi-bin
libyaml-dev libjansson-dev libxxhash-dev libcld2-dev python3-torch
python3 python3-pil python3-numpy
nodejs npm"

if [ "${1:-}" = "--bench" ]; then
	PKGS="$PKGS mate-backgrounds libexttextcat-dev"
fi
if [ "${1:-}" = "--fuzz" ]; then
	PKGS="$PKGS clang libclang-rt-dev libomp-dev"
fi
if [ "${1:-}" = "--valgrind" ]; then
	PKGS="$PKGS valgrind"
fi
if [ "${1:-}" = "--test" ]; then
	PKGS="$PKGS chromium strace"
fi

missing=""
for p in $PKGS; do
	# node and npm from elsewhere (nodesource, nvm) do as well as Debian's
	if [ "$p" = nodejs ] && command -v node >/dev/null 2>&1; then continue; fi
	if [ "$p" = npm ] && command -v npm >/dev/null 2>&1; then continue; fi
	st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	case "$st" in
	*"install ok installed"*) ;;
	*) missing="$missing $p" ;;
	esac
done

npm_peers() {
	# the tokenizer's reference (npm tiktoken, js-tiktoken), pinned by
	# tests/node/package-lock.json, installed into tests/node/node_modules
	dir=$(cd "$(dirname "$0")/.." && pwd)/tests/node
	if [ ! -d "$dir/node_modules/tiktoken" ] || [ ! -d "$dir/node_modules/js-tiktoken" ]; then
		echo "deps.sh: npm ci in tests/node" >&2
		(cd "$dir" && npm ci --no-audit --no-fund --silent)
	fi
}

if [ -z "$missing" ]; then
	npm_peers
	exit 0
fi

echo "deps.sh: installing:$missing" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
	SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing
npm_peers
