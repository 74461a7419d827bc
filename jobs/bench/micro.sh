#!/usr/bin/env bash
# micro.sh - the GPT example's tokens/s by train.micro_batch, at 1 and 2 ranks x 1 thread.
#
#   bash jobs/bench/micro.sh          (REPEATS=3 rounds; MB="0 8 4 2 1"; OUT=build/bench)
#
# One epoch of jobs/configs/gpt-char.yaml on the license texts per run (the epoch record's samples/s x 64),
# train.micro_batch=N overriding the config's (0 = each rank's whole share at once). A round runs every
# setting once, so noise on a shared machine spreads over all of them; each figure is the median.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPEATS=${REPEATS:-3}
MB=${MB:-0 8 4 2 1}
# shellcheck source=jobs/bench/lib.sh
. jobs/bench/lib.sh
bench_setup
d=bench-data
[ -f $d/licenses64.h5 ] || { echo "micro.sh: run jobs/bench/gpt.sh first (it makes $d/licenses64.h5)" >&2; exit 1; }
run() { # run NP MB: tokens/s
    local log=$OUT/micro-np$1.jsonl
    rm -f "$log"
    local cmd=("$ddtrain" train jobs/configs/gpt-char.yaml "data.train=$d/licenses64.h5" data.val= train.epochs=1
               "train.micro_batch=$2" "train.metrics=$log" checkpoint.dir= train.threads=1 --quiet)
    if [ "$1" = 1 ]; then "${cmd[@]}"; else mpirun -np "$1" --bind-to core "${cmd[@]}"; fi
    $PY -c "
import json
print([x for x in map(json.loads, open('$log')) if x['event'] == 'epoch'][-1]['samples_per_s'] * 64)"
}
declare -A res
for r in $(seq 1 "$REPEATS"); do
    for np in 1 2; do
        for mb in $MB; do
            res[$np,$mb]+="$(run "$np" "$mb") "
        done
    done
    echo "  round $r done" >&2
done
{
echo "# GPT (gpt-char.yaml) tokens/s by train.micro_batch ($(date -u +%Y-%m-%dT%H:%MZ), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), family $(grep -m1 'cpu family' /proc/cpuinfo | cut -d: -f2 | xargs) model $(grep -m1 '^model' /proc/cpuinfo | cut -d: -f2 | xargs); BLAS kernels $(bench_kernels); median of $REPEATS)"
for np in 1 2; do
    line="$np rank(s):"
    for mb in $MB; do
        # shellcheck disable=SC2086
        line+="  micro_batch $mb: $(median ${res[$np,$mb]} | cut -d. -f1) [$(echo ${res[$np,$mb]} | tr ' ' '\n' | cut -d. -f1 | sort -n | tr '\n' ' ' | sed 's/ $//')]"
    done
    echo "$line"
done
} | tee "$OUT/micro.txt"
