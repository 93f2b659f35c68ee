#!/bin/sh
# run-experiment.sh CPOOL DIR KEY=VALUE... - one run of `make experiments`, safe to repeat.
#
# A finished run (DIR/result.txt exists) is left alone; an interrupted one (a checkpoint but no
# result) is resumed from its checkpoint; anything else starts afresh. Every run uses one
# OpenMP thread, so `make -j2 experiments` runs two at a time on two cores and a run's wall time
# does not depend on how many others share the machine's threads. The progress goes to
# DIR/train.log.
set -eu
cpool=$1 dir=$2
shift 2
if [ -f "$dir/result.txt" ]; then
    echo "  done  $dir"
    exit 0
fi
mkdir -p "$dir"
if [ -f "$dir/checkpoint.safetensors" ]; then
    echo "  RESUME $dir"
    set -- --resume
else
    echo "  TRAIN $dir: $*"
fi
if ! "$cpool" train "$@" --threads 1 --out "$dir" > "$dir/train.log" 2>&1; then
    echo "run-experiment: $dir failed; the last lines of $dir/train.log:" >&2
    tail -n 5 "$dir/train.log" >&2
    exit 1
fi
tail -n 1 "$dir/train.log"
