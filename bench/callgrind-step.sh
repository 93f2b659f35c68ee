#!/bin/sh
# callgrind-step.sh BUILD_DIR [ROW] - instructions per run of one `cpool bench` row, counted by
# callgrind: a number that does not move with the machine's load, to compare two versions of the
# code (docs/performance.md, "Instructions").
#
# BUILD_DIR holds a cpool built for a target valgrind can run: valgrind 3.19 does not decode
# AVX-512, so `make callgrind` builds one with -march=x86-64-v3 (AVX2 and FMA) into
# build-callgrind/. Only work_run (tools/cmd_bench.c: one run of the row's work) and what it calls
# are counted, once for the warm-up run and once for the one timed run; the count is halved.
# The benchmark char-LM step takes about 10 minutes under callgrind on this machine.
set -eu
build=$1
row=${2:-charlm_step_cp}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "callgrind: $build/cpool bench --repeats 1 $row (one thread; a few minutes)" >&2
# The row runs in a child process (cmd_bench.c forks one per row), hence --trace-children.
OMP_NUM_THREADS=1 valgrind --tool=callgrind --trace-children=yes --toggle-collect=work_run \
    --callgrind-out-file="$work/out.%p" "$build/cpool" bench --repeats 1 "$row" >"$work/log" 2>&1 ||
    { cat "$work/log" >&2; exit 1; }
# The child's file is the one with instructions counted; the parent only waited.
total=$(for f in "$work"/out.*; do callgrind_annotate "$f" 2>/dev/null |
    awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }'; done | sort -n | tail -1)
[ -n "$total" ] || { echo "callgrind-step: no count found" >&2; exit 1; }
echo "$row: $((total / 2)) instructions per run ($total for the warm-up run and one timed run)"
child=$(grep -l "work_run" "$work"/out.* 2>/dev/null | head -1)
if [ -n "$child" ]; then
    echo "the functions with the most instructions (both runs):"
    callgrind_annotate "$child" 2>/dev/null | awk '/file:function/ { on = 1; next } on && NF' |
        head -12
fi
