#!/usr/bin/env bash
# gpt.sh - tokens/s of the GPT example (jobs/configs/gpt-char.yaml), ddtrain vs PyTorch, in one run.
#
#   bash jobs/bench/gpt.sh            (REPEATS=3 interleaved runs per side; OUT=build/bench)
#
# ddtrain at 1 rank x 1 thread and 2 ranks x 1 thread (one epoch of the license texts, 198 steps of 32
# sequences of 64 characters: the epoch record's samples/s x 64), PyTorch (Debian's python3-torch, the
# same model and optimizer: jobs/bench/torch_gpt.py) at 1 thread and DDP over gloo with 2 processes, each
# both on whole batches (as PyTorch is usually run) and in the example's micro-batches of 4 sequences per
# process (train.micro_batch; torch_gpt.py --micro 4, gradients accumulated, DDP's no_sync), so the ratio
# against PyTorch given the same split is there too.
# Runs are interleaved so noise on a shared machine hits both sides alike; each figure is the median.
# MFU: ddtrain's own (the epoch record: the model's matrix-product FLOPs over the sgemm peak it measured
# at start on every rank); PyTorch's is the same FLOPs per token times its tokens/s over that peak.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPEATS=${REPEATS:-3}
OUT=${OUT:-build/bench}
# shellcheck source=jobs/bench/lib.sh
. jobs/bench/lib.sh
bench_setup
export OMP_NUM_THREADS=1
d=bench-data
if [ ! -f $d/licenses64.h5 ]; then
    find /usr/share/common-licenses -type f ! -name GPL-3 | sort | xargs cat >$d/licenses.txt
    "$ddtrain" data text $d/licenses.txt --out $d/licenses64.h5 --seq-len 64 --stride 32 >/dev/null
    "$ddtrain" data text /usr/share/common-licenses/GPL-3 --out $d/gpl3-64.h5 --seq-len 64 --vocab $d/licenses64.h5 >/dev/null
fi
kern=$(bench_kernels)
torch_env=()
[ -n "$kern" ] && torch_env=(env "OPENBLAS_CORETYPE=$kern")

# ddt NP: "tokens/s mfu peak_flops flops_per_sample" of one epoch
ddt() {
    local log=$OUT/gpt-np$1.jsonl
    rm -f "$log"
    local cmd=("$ddtrain" train jobs/configs/gpt-char.yaml "data.train=$d/licenses64.h5" data.val= train.epochs=1
               "train.metrics=$log" checkpoint.dir= train.threads=1 --quiet)
    if [ "$1" = 1 ]; then "${cmd[@]}"; else mpirun -np "$1" --bind-to core "${cmd[@]}"; fi
    $PY -c "
import json
e = [x for x in map(json.loads, open('$log')) if x['event'] == 'epoch'][-1]
print(e['samples_per_s'] * 64, e['mfu'], e['peak_flops'], e['flops_per_sample'])"
}
micro=$(sed -n 's/^ *micro_batch: *\([0-9]*\).*/\1/p' jobs/configs/gpt-char.yaml)
micro=${micro:-0}
# tor MODE MICRO: PyTorch's tokens/s
tor() { "${torch_env[@]}" $PY jobs/bench/torch_gpt.py --data $d/licenses64.h5 --mode "$1" --micro "$2" --steps 60 |
        $PY -c "import json,sys; print(json.loads(sys.stdin.read())['tokens_per_s'])"; }

{
echo "# GPT (gpt-char.yaml) tokens/s, ddtrain vs PyTorch ($(date -u +%Y-%m-%dT%H:%MZ), $(getconf _NPROCESSORS_ONLN) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), family $(grep -m1 'cpu family' /proc/cpuinfo | cut -d: -f2 | xargs) model $(grep -m1 '^model' /proc/cpuinfo | cut -d: -f2 | xargs))"
echo "# $("$ddtrain" --version | head -1); torch $($PY -c 'import torch; print(torch.__version__)'); median of $REPEATS runs each"
echo "# BLAS kernels: ddtrain $("$ddtrain" --version | sed -n 's/^BLAS kernels: //p'); PyTorch OPENBLAS_CORETYPE=${kern:-its own}"
} | tee "$OUT/gpt.txt"
d1=() d2=() t1=() t2=() u1=() u2=() m1=() m2=()
for r in $(seq 1 "$REPEATS"); do
    read -r tok mfu peak fps < <(ddt 1); d1+=("$tok"); m1+=("$mfu"); p1=$peak; f=$fps
    t1+=("$(tor single 0)")
    u1+=("$(tor single "$micro")")
    read -r tok mfu peak fps < <(ddt 2); d2+=("$tok"); m2+=("$mfu"); p2=$peak
    t2+=("$(tor ddp 0)")
    u2+=("$(tor ddp "$micro")")
    echo "  run $r: ddtrain 1x1 ${d1[-1]}  torch 1 thread ${t1[-1]} (micro $micro: ${u1[-1]})  ddtrain 2x1 ${d2[-1]}  torch DDP 2 ${t2[-1]} (micro $micro: ${u2[-1]}) tokens/s" >&2
done
$PY - "$(median "${d1[@]}")" "$(median "${t1[@]}")" "$(median "${d2[@]}")" "$(median "${t2[@]}")" \
    "$(median "${m1[@]}")" "$(median "${m2[@]}")" "$p1" "$p2" "$f" "$(median "${u1[@]}")" "$(median "${u2[@]}")" \
    "$micro" <<'PY' | tee -a "$OUT/gpt.txt"
import sys
d1, t1, d2, t2, m1, m2, p1, p2, fps, u1, u2, micro = map(float, sys.argv[1:])
fpt = fps / 64  # training FLOPs per token (3x the forward's matrix products)
print(f"1 rank x 1 thread : ddtrain {d1:8.0f} tokens/s (MFU {m1:.2f})  PyTorch 1 thread   {t1:8.0f} "
      f"(MFU {t1 * fpt / p1:.2f})  ratio {d1 / t1:4.2f}x;  PyTorch in micro-batches of {micro:.0f} {u1:8.0f}  "
      f"ratio {d1 / u1:4.2f}x")
print(f"2 ranks x 1 thread: ddtrain {d2:8.0f} tokens/s (MFU {m2:.2f})  PyTorch DDP (gloo) {t2:8.0f} "
      f"(MFU {t2 * fpt / p2:.2f})  ratio {d2 / t2:4.2f}x;  PyTorch DDP in micro-batches of {micro:.0f} {u2:8.0f}  "
      f"ratio {d2 / u2:4.2f}x")
print(f"(peak: the sgemm peak ddtrain measured at start, {p1 / 1e9:.1f} GFLOP/s at 1 rank, {p2 / 1e9:.1f} at 2; "
      f"{fpt / 1e6:.2f} MFLOP per token)")
PY
