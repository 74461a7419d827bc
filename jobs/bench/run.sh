#!/usr/bin/env bash
# run.sh - ddtrain vs PyTorch, side by side in the same run, as ratios.
#
#   bash jobs/bench/run.sh [mlp] [cnn] [lstm]      (default: every model with a jobs/bench/<model>.yaml)
#
# For each model: ddtrain at 1 rank x 1 thread and 2 ranks x 1 thread, PyTorch
# (Debian's python3-torch) at 1 thread and DDP over gloo with 2 processes.
# Runs are interleaved (ddtrain, torch, ddtrain, torch, ...) so noise on a shared
# machine hits both sides alike; each figure is the median of REPEATS runs.
# Environment: REPEATS (default 5), EPOCHS (ddtrain epochs per run, the last one
# is timed; default 2), OUT (results directory, default build/bench).
set -euo pipefail
cd "$(dirname "$0")/../.."
REPEATS=${REPEATS:-5}
EPOCHS=${EPOCHS:-2}
OUT=${OUT:-build/bench}
# shellcheck source=jobs/bench/lib.sh
. jobs/bench/lib.sh
bench_setup

models=("$@")
[ ${#models[@]} -eq 0 ] && for m in mlp cnn lstm; do [ -f "jobs/bench/$m.yaml" ] && models+=("$m"); done

# the dataset each bench config reads (data.train: bench-data/<model>.h5)
make_data() {
    local m=$1 f=bench-data/$1.h5
    [ -f "$f" ] && return 0
    case $m in
        mlp) "$ddtrain" data synth --out "$f" --samples 60000 --features 784 --classes 10 --seed 7 ;;
        cnn) "$ddtrain" data synth --out "$f" --samples 60000 --image 1x28x28 --classes 10 --seed 7 ;;
        lstm) [ -x jobs/bench/make-lstm-data.sh ] && jobs/bench/make-lstm-data.sh "$ddtrain" "$f" ;;
    esac >/dev/null
    [ -f "$f" ] || { echo "run.sh: no dataset recipe for $m" >&2; return 1; }
}

# ddtrain samples/s of the last epoch of one run: ddt MODEL NP
ddt() {
    local m=$1 np=$2 log=$OUT/$1-np$2.jsonl
    rm -f "$log"
    local cmd=("$ddtrain" train "jobs/bench/$m.yaml" "train.epochs=$EPOCHS" "train.metrics=$log"
               checkpoint.dir= train.threads=1 --quiet)
    if [ "$np" = 1 ]; then "${cmd[@]}"; else mpirun -np "$np" --bind-to core "${cmd[@]}"; fi
    $PY -c "import json,sys; e=[x for x in map(json.loads, open('$log')) if x['event']=='epoch']; print(e[-1]['samples_per_s'])"
}

# The BLAS kernel set ddtrain runs here (its automatic choice, or the user's OPENBLAS_CORETYPE);
# PyTorch's dense and recurrent layers call the same OpenBLAS, so it gets the same set
kern=$(bench_kernels)
torch_env=()
[ -n "$kern" ] && torch_env=(env "OPENBLAS_CORETYPE=$kern")

# PyTorch samples/s of one run: tor MODEL MODE
tor() {
    "${torch_env[@]}" $PY jobs/bench/torch_ref.py --model "$1" --mode "$2" --repeats 1 2>/dev/null |
        $PY -c "import json,sys; print(json.loads(sys.stdin.read())['samples_per_s_median'])"
}
tkern=$("${torch_env[@]}" $PY -c "import sys; sys.argv=['x']; sys.path.insert(0, 'jobs/bench'); import torch_ref; print(torch_ref.blas_kernels())")


{
echo "# ddtrain vs PyTorch ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs))"
echo "# $("$ddtrain" --version | head -1); torch $($PY -c 'import torch; print(torch.__version__)'); median of $REPEATS runs each"
echo "# BLAS kernels: ddtrain $("$ddtrain" --version | sed -n 's/^BLAS kernels: //p'); PyTorch $tkern"
} | tee "$OUT/summary.txt"
for m in "${models[@]}"; do
    make_data "$m"
    d1=() d2=() t1=() t2=()
    for r in $(seq 1 "$REPEATS"); do
        d1+=("$(ddt "$m" 1)");  t1+=("$(tor "$m" single)")
        d2+=("$(ddt "$m" 2)");  t2+=("$(tor "$m" ddp)")
        echo "  $m run $r: ddtrain 1x1 ${d1[-1]}  torch 1 thread ${t1[-1]}  ddtrain 2x1 ${d2[-1]}  torch DDP 2 ${t2[-1]}" >&2
    done
    D1=$(median "${d1[@]}"); D2=$(median "${d2[@]}"); T1=$(median "${t1[@]}"); T2=$(median "${t2[@]}")
    $PY - "$m" "$D1" "$T1" "$D2" "$T2" <<'PY' | tee -a "$OUT/summary.txt"
import sys
m, d1, t1, d2, t2 = sys.argv[1], *map(float, sys.argv[2:])
print(f"{m:5s} 1 rank x 1 thread : ddtrain {d1:9.0f} samples/s  PyTorch 1 thread   {t1:9.0f}  ratio {d1/t1:5.2f}x")
print(f"{m:5s} 2 ranks x 1 thread: ddtrain {d2:9.0f} samples/s  PyTorch DDP (gloo) {t2:9.0f}  ratio {d2/t2:5.2f}x")
PY
done
