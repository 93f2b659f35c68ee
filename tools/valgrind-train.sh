#!/bin/sh
# valgrind-train.sh BUILD_DIR - a short training run, start to finish, under valgrind.
#
# The unit suites exercise the library op by op; this exercises the command the way a user runs
# it: train a tiny ContextPool char-LM (checkpoints, evaluations, loss.csv, result.txt and the
# figures, whose gnuplot runs as a child valgrind does not follow), then evaluate and sample
# from its checkpoint. Every command runs under memcheck with leak checking; any report fails the target.
# The corpus is a few copies of README.md, so no data set is needed. BUILD_DIR holds a cpool
# built without -march=native (valgrind does not know AVX-512); see `make valgrind-train`.
set -eu
build=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for i in 1 2 3 4 5 6 7 8; do cat README.md; done >"$work/corpus.txt"

VG="valgrind --quiet --suppressions=tools/valgrind.supp --leak-check=full \
    --show-leak-kinds=definite,indirect,possible --errors-for-leak-kinds=definite,indirect,possible \
    --error-exitcode=99"
KEYS="model=charlm dim=16 heads=2 layers=1 seq_len=32 batch=4 steps=6 warmup=2 eval_every=3 \
      eval_batches=2 checkpoint_every=3 n_valid=2000 pool=contextpool data=$work/corpus.txt"

run() {
    echo "== $*"
    OMP_NUM_THREADS=1 $VG "$@"
}
# shellcheck disable=SC2086 # KEYS is a list of words
run "$build/cpool" train $KEYS --out "$work/run" --quiet --threads 1
run "$build/cpool" eval --ckpt "$work/run/checkpoint.safetensors" --data "$work/corpus.txt" --split test --batches 2
run "$build/cpool" sample --ckpt "$work/run/checkpoint.safetensors" --prompt "The " --length 20 --seed 1
echo "valgrind-train: 3 commands, no valgrind reports"
