#!/usr/bin/env bash
# kernels.sh - ddtrain's three reference models with each OpenBLAS kernel set, in one run.
#
#   bash jobs/bench/kernels.sh [mlp] [cnn] [lstm]
#
# 1 rank x 1 thread, samples/s of the last of EPOCHS epochs, median of REPEATS runs; the kernel
# sets (KERNELS, default: auto Prescott Haswell SkylakeX Cooperlake) are interleaved within each
# repeat so that noise on a shared machine hits them alike. "auto" is what ddtrain runs with
# nothing set (its own choice where OpenBLAS does not know the CPU); the others are forced with
# OPENBLAS_CORETYPE. A set this machine cannot run (ddtrain --blas-check fails) is skipped.
# Smaller datasets than run.sh (bench-data/k-*.h5) keep the SSE3 runs short.
# Environment: REPEATS (default 3), EPOCHS (default 2), KERNELS, OUT (default build/bench).
set -euo pipefail
cd "$(dirname "$0")/../.."
REPEATS=${REPEATS:-3}
EPOCHS=${EPOCHS:-2}
OUT=${OUT:-build/bench}
KERNELS=${KERNELS:-auto Prescott Haswell SkylakeX Cooperlake}
# shellcheck source=jobs/bench/lib.sh
. jobs/bench/lib.sh
bench_setup
unset OPENBLAS_CORETYPE DD_BLAS_AUTO

models=("$@")
[ ${#models[@]} -eq 0 ] && models=(mlp cnn lstm)

make_data() {
    local f=bench-data/k-$1.h5
    [ -f "$f" ] && return 0
    case $1 in
        mlp) "$ddtrain" data synth --out "$f" --samples 20000 --features 784 --classes 10 --seed 7 ;;
        cnn) "$ddtrain" data synth --out "$f" --samples 10000 --image 1x28x28 --classes 10 --seed 7 ;;
        lstm) $PY - "$f" "$ddtrain" <<'PY' ;;
import random, subprocess, sys, tempfile
alphabet = [chr(c) for c in range(48, 48 + 65)]   # the 65 symbols of make-lstm-data.sh
r = random.Random(1234)
text = "".join(alphabet) + "".join(r.choice(alphabet) for _ in range(1024 * 64 + 1 - 65))
with tempfile.NamedTemporaryFile("w", suffix=".txt") as t:
    t.write(text); t.flush()
    subprocess.run([sys.argv[2], "data", "text", t.name, "--out", sys.argv[1], "--seq-len", "64"], check=True)
PY
    esac >/dev/null
}

# samples/s of the last epoch: run MODEL KERNELS
run() {
    local log=$OUT/k-$1-$2.jsonl env=()
    [ "$2" != auto ] && env=(env "OPENBLAS_CORETYPE=$2")
    rm -f "$log"
    "${env[@]}" "$ddtrain" train "jobs/bench/$1.yaml" "data.train=bench-data/k-$1.h5" "train.epochs=$EPOCHS" \
        "train.metrics=$log" checkpoint.dir= train.threads=1 --quiet
    $PY -c "import json; e=[x for x in map(json.loads, open('$log')) if x['event']=='epoch']; print(e[-1]['samples_per_s'])"
}

sets=()
for k in $KERNELS; do
    if [ "$k" = auto ] || OPENBLAS_CORETYPE=$k "$ddtrain" --blas-check >/dev/null 2>"$OUT/k-check.err"; then
        sets+=("$k")
    else
        echo "kernels.sh: skipping $k: $(cat "$OUT/k-check.err")" >&2
    fi
done
{
echo "# ddtrain per kernel set ($(date -u +%Y-%m-%dT%H:%MZ), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(lscpu | sed -n 's/^CPU family: *//p')/$(lscpu | sed -n 's/^Model: *//p'))"
echo "# $("$ddtrain" --version | head -1)"
echo "# auto = $("$ddtrain" --version | sed -n 's/^BLAS kernels: //p')"
echo "# 1 rank x 1 thread, samples/s, median of $REPEATS; ratio to auto"
} | tee "$OUT/kernels.txt"
for m in "${models[@]}"; do
    make_data "$m"
    declare -A got=()
    for r in $(seq 1 "$REPEATS"); do
        for k in "${sets[@]}"; do got[$k]+="$(run "$m" "$k") "; done
        echo "  $m run $r done" >&2
    done
    line=$(printf '%-5s' "$m")
    a=$(median ${got[auto]})
    for k in "${sets[@]}"; do
        v=$(median ${got[$k]})
        line+=$(printf '  %s %8.0f (%4.2fx)' "$k" "$v" "$($PY -c "print($v / $a)")")
    done
    echo "$line" | tee -a "$OUT/kernels.txt"
    unset got
done
