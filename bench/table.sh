#!/bin/sh
# bench/table.sh - docs/performance.md's table: `cpool bench --json --torch` lines as markdown.
#
#   bench/table.sh --run [BUILD] [REPEATS]   run every row (one thread) from BUILD/cpool (build),
#                                            REPEATS timed runs each (5), then print the machine,
#                                            the load before and after, torch's versions, and the
#                                            table; paste it into docs/performance.md
#   bench/table.sh FILE                      only the table, from saved JSON lines (- for stdin)
#
# Columns: ours (ms median, fastest-slowest, CPU ms per run, GFLOP/s, peak RSS), PyTorch's
# (ms median, CPU ms, the variant timed), and the two ratios ours / torch: of the medians
# (wall) and of the CPU times, the steadier one on a machine shared with other jobs. Run from
# the repository's top directory. Formatting needs only /usr/bin/python3 (no torch).
set -eu
PYTHON=/usr/bin/python3

format_table() {
    # shellcheck disable=SC2016  # the single-quoted text is Python, not shell
    "$PYTHON" -c '
import json, sys
print("| row | ms median | ms min - max | cpu ms | GFLOP/s | peak RSS MB | torch ms | torch cpu ms | torch variant | ratio | cpu ratio |")
print("|---|--:|--:|--:|--:|--:|--:|--:|---|--:|--:|")
for line in sys.stdin:
    line = line.strip()
    if not line.startswith("{"):
        continue
    r = json.loads(line)
    if "skipped" in r:
        print("| `%s` | %s |" % (r["name"], r["skipped"]) + " |" * 9)
        continue
    cells = ["`%s`" % r["name"], "%.2f" % r["ms_median"],
             "%.2f - %.2f" % (r["ms_min"], r["ms_max"]), "%.2f" % r["cpu_ms_median"],
             "%.1f" % r["gflops"], "%.1f" % r["peak_rss_mb"]]
    if "torch_ms_median" in r:
        cells += ["%.2f" % r["torch_ms_median"], "%.2f" % r["torch_cpu_ms_median"],
                  r["torch_variant"], "**%.2f**" % r["ratio"], "%.2f" % r.get("cpu_ratio", 0)]
    else:
        cells += ["n/a", "n/a", r.get("torch_note", ""), "n/a", "n/a"]
    print("| " + " | ".join(cells) + " |")
'
}

load() { cut -d' ' -f1-3 /proc/loadavg; }

if [ "${1:-}" != "--run" ]; then
    [ $# -eq 1 ] || { echo "usage: bench/table.sh --run [BUILD] [REPEATS] | bench/table.sh FILE" >&2; exit 2; }
    if [ "$1" = - ]; then format_table; else format_table < "$1"; fi
    exit 0
fi

build=${2:-build}
repeats=${3:-5}
[ -x "$build/cpool" ] || { echo "bench/table.sh: $build/cpool is missing (make BUILD=$build)" >&2; exit 1; }
lines=$(mktemp)
trap 'rm -f "$lines"' EXIT
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
start_load=$(load)
"$build/cpool" bench --json --torch --repeats "$repeats" > "$lines"
end_load=$(load)
# torch_bench.py's first line, {"torch_version", "blas", ...}, said in words.
torch=$(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=1 "$PYTHON" bench/torch_bench.py - < /dev/null 2>/dev/null \
    | "$PYTHON" -c 'import json, sys; h = json.loads(sys.stdin.readline()); print("%s, BLAS %s" % (h["torch_version"], h["blas"]))' 2>/dev/null || true)
echo "- Machine: $cpu, $(nproc) cores; $(cc --version | head -n 1); $(date -u '+%Y-%m-%d %H:%M UTC')."
echo "- Load average (1, 5, 15 min): $start_load before, $end_load after."
echo "- PyTorch: ${torch:-n/a}."
echo "- \`$build/cpool bench --json --torch --repeats $repeats\`, one thread, float32:"
echo
format_table < "$lines"
