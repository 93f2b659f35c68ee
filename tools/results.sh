#!/bin/sh
# results.sh EXP_DIR RESULTS_MD - write the experiment tables into docs/results.md.
#
# Each table sits between "<!-- table:NAME -->" and "<!-- end:NAME -->" lines of RESULTS_MD and
# is rebuilt from the runs' result.txt files (written by `cpool train` at the end of a run); the
# prose around them is left alone. A run without a result shows as "not run". The new file
# replaces the old one only when complete.
set -eu
dir=$1 md=$2

# value RUN KEY: one value of RUN's result.txt, or empty.
value() {
    [ -f "$dir/$1/result.txt" ] || return 0
    awk -F ' = ' -v k="$2" '$1 == k { print $2 }' "$dir/$1/result.txt"
}

# row RUN LABEL...: "| label | params | MFLOP | metric (test) | metric (valid) | minutes |"
row() {
    run=$1 metric=$2
    shift 2
    if [ ! -f "$dir/$run/result.txt" ]; then
        echo "| $* | | | not run | | |"
        return
    fi
    awk -F ' = ' -v label="$*" -v metric="$metric" '
        { v[$1] = $2 }
        END {
            printf "| %s | %.0fk | %.2f | %.4f | %.4f | %.1f |\n", label, v["parameters"] / 1000,
                   v["train_flops_per_example"] / 1e6, v["test_" metric], v["valid_" metric],
                   v["train_seconds"] / 60
        }' "$dir/$run/result.txt"
}

# seeds LABEL RUN...: mean and sample standard deviation of test bpc over the runs.
seeds() {
    label=$1
    shift
    values=""
    for run in "$@"; do values="$values $(value "$run" test_bpc)"; done
    echo "$values" | awk -v label="$label" '{
        n = NF; sum = 0; for (i = 1; i <= n; i++) sum += $i
        if (n == 0) { printf "| %s | not run | | |\n", label; exit }
        mean = sum / n; ss = 0; for (i = 1; i <= n; i++) ss += ($i - mean) ^ 2
        list = ""; for (i = 1; i <= n; i++) list = list sprintf("%s%.4f", i > 1 ? ", " : "", $i)
        sd = n > 1 ? sqrt(ss / (n - 1)) : 0 # (a bare ">" among the printf arguments would redirect)
        printf "| %s | %s | %.4f | %.4f |\n", label, list, mean, sd
    }'
}

HEAD_LM="| run | parameters | train MFLOP / token | test bpc | valid bpc | minutes (1 thread) |
|---|---|---|---|---|---|"
HEAD_IMG="| run | parameters | train MFLOP / image | test accuracy | valid accuracy | minutes (1 thread) |
|---|---|---|---|---|---|"

table_depth() {
    echo "$HEAD_LM"
    row charlm-plain-L2 bpc plain, L = 2
    row charlm-plain-L4 bpc plain, L = 4
    row charlm-plain-L6 bpc plain, L = 6
    row charlm-cp-L1 bpc ContextPool, L = 1
    row charlm-cp-L2 bpc ContextPool, L = 2
    row charlm-cp-L3 bpc ContextPool, L = 3
}

table_ablations() {
    echo "$HEAD_LM"
    row charlm-cp-L2 bpc ContextPool "(kv, learned w and s)"
    row charlm-cp-L2-uniform bpc "weights=uniform (w = 1)"
    row charlm-cp-L2-fixed bpc "size=fixed (s = 2)"
    row charlm-cp-L2-qkv bpc pool_feeds=qkv
    row charlm-cp-L2-stream bpc pool_feeds=stream
    row charlm-window-L2 bpc "plain, local window 24"
    row charlm-span-L2 bpc "plain, adaptive span"
    row charlm-plain-L2 bpc "plain"
}

table_seeds() {
    echo "| configuration | test bpc, seeds 1, 2, 3 | mean | standard deviation |"
    echo "|---|---|---|---|"
    seeds "ContextPool, L = 2" charlm-cp-L2 charlm-cp-L2-seed2 charlm-cp-L2-seed3
    seeds "plain, L = 4" charlm-plain-L4 charlm-plain-L4-seed2 charlm-plain-L4-seed3
}

table_images() {
    echo "$HEAD_IMG"
    row vit-plain accuracy "ViT, no pool"
    row vit-cp accuracy "ViT, contextpool2d"
    row cnn-avg accuracy "CNN, 2x2 average pooling"
    row cnn-cp accuracy "CNN, contextpool2d stride 2"
}

tmp="$md.tmp.$$"
trap 'rm -f "$tmp" "$tmp".*' EXIT
table_depth > "$tmp.depth"
table_ablations > "$tmp.ablations"
table_seeds > "$tmp.seeds"
table_images > "$tmp.images"
awk -v prefix="$tmp" '
    /^<!-- table:[a-z]+ -->$/ {
        print; name = $0; sub(/^<!-- table:/, "", name); sub(/ -->$/, "", name)
        while ((getline line < (prefix "." name)) > 0) print line
        skipping = 1; next
    }
    /^<!-- end:[a-z]+ -->$/ { skipping = 0 }
    !skipping { print }
' "$md" > "$tmp"
mv "$tmp" "$md"
echo "  wrote the tables of $md from $dir"
