#!/bin/sh
# run.sh: runs libFuzzer harnesses one after the other, each in one
# process (no -jobs: libFuzzer would fork and log to ./fuzz-N.log).
#   tests/fuzz/run.sh BUILD SECONDS NAME...
# BUILD/fuzz/fuzz_NAME is the harness (make fuzz builds it).  Seeds are
# tests/fuzz/corpus/NAME and tests/fuzz/regress/NAME (read, never
# written); what the run learns goes to BUILD/corpus/NAME, crashes to
# tests/fuzz/crashes/NAME/, the log to BUILD/logs/NAME.log.  Each harness
# gets a -max_len suited to its format (an image or a shard needs room; a
# filter spec does not), and tests/fuzz/dict/NAME.dict when there is one
# (the format's keywords: JSON keys, recipe fields, tar magics).  Prints
# one line per harness; exits 1 when any harness crashed, leaked, timed
# out or ran out of memory.
set -u
cd "$(dirname "$0")/../.."
build=$1 secs=$2
shift 2
status=0
for name in "$@"; do
	bin=$build/fuzz/fuzz_$name
	case $name in
	tar | image | safetensors | packfile) max_len=65536 ;;
	tiktoken | tokenizer_json | recipe | sample_json) max_len=16384 ;;
	filter_spec) max_len=512 ;;
	*) max_len=4096 ;;
	esac
	work=$build/corpus/$name
	crashes=tests/fuzz/crashes/$name
	log=$build/logs/$name.log
	mkdir -p "$work" "$crashes" "$build/logs"
	seeds="" dict=""
	[ -f "tests/fuzz/dict/$name.dict" ] && dict=-dict=tests/fuzz/dict/$name.dict
	for d in tests/fuzz/corpus/$name tests/fuzz/regress/$name; do
		[ -d "$d" ] && seeds="$seeds $d"
	done
	# -rss_limit_mb: libFuzzer's default, written out: a parser that needs
	# more for a small input is a bug.  -timeout: no input may take 10 s.
	# shellcheck disable=SC2086
	"$bin" -max_total_time="$secs" -max_len="$max_len" -rss_limit_mb=2048 -timeout=10 \
		-print_final_stats=1 -artifact_prefix="$crashes/" $dict \
		"$work" $seeds >"$log" 2>&1
	rc=$?
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
	speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
	cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1)
	if [ "$rc" -eq 0 ]; then
		echo "fuzz $name: ${runs:-?} runs, ${speed:-?} exec/s, $cov, no crash (${secs}s)"
	else
		echo "fuzz $name: CRASH (exit $rc) after ${runs:-?} runs; see $log and $crashes/"
		grep -m 3 -E 'ERROR: |runtime error|SUMMARY' "$log" | sed 's/^/  /'
		status=1
	fi
done
exit $status
