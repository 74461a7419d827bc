#!/usr/bin/env bash
# data.sh - the streaming reader, measured: reader alone, training streaming vs the in-memory reader
# of ddtrain <= stop 8, and resident memory per rank. All in one run.
#
#   bash jobs/bench/data.sh
#
# 1. bench_reader: random rows/s per rank from the page cache, 784 features as float32 and uint8,
#    contiguous and gzip-chunked (global and chunk order).
# 2. samples/s of the reference MLP and CNN (jobs/bench/*.yaml) at 1 and 2 ranks, this build (also with
#    train.timeout=0: no watchdog thread, which came after INMEM_REF)
#    (streaming, prefetched) vs the in-memory reader built from INMEM_REF (default d0dc58e, the
#    last commit before streaming), interleaved, median of REPEATS; the streaming runs' share of
#    step time spent waiting for data. Both get the same BLAS kernels (OPENBLAS_CORETYPE = the set
#    this build chooses), so only the reader (and, unless train.timeout=0, the watchdog) differs.
# 3. peak resident memory of each rank (/usr/bin/time -f %M) of a 2-rank, 20-step MLP run on a
#    200,000 x 784 float32 file (628 MB) and on a 3 MB file, both builds.
# Environment: REPEATS (default 3), INMEM_REF, OUT (default build/bench).
set -euo pipefail
cd "$(dirname "$0")/../.."
REPEATS=${REPEATS:-3}
INMEM_REF=${INMEM_REF:-d0dc58e}
OUT=${OUT:-build/bench}
# shellcheck source=jobs/bench/lib.sh
. jobs/bench/lib.sh
bench_setup
kern=$(bench_kernels env -u OPENBLAS_CORETYPE)
export OPENBLAS_CORETYPE=$kern

# the in-memory reader, built once from its commit
old=$PWD/build/bench-inmem/ddtrain
if [ ! -x "$old" ]; then
    src=$PWD/build/bench-inmem-src
    rm -rf "$src" && git worktree prune
    git worktree add -f -q "$src" "$INMEM_REF"
    cmake -S "$src" -B build/bench-inmem -DCMAKE_BUILD_TYPE=Release -DDDTRAIN_BUILD_TESTS=OFF >/dev/null
    cmake --build build/bench-inmem -j"$(nproc)" --target ddtrain >/dev/null
    git worktree remove --force "$src"
fi

# data: the bench files of run.sh, and 200,000 x 784 rows in four layouts for the reader
[ -f bench-data/mlp.h5 ] || "$ddtrain" data synth --out bench-data/mlp.h5 --samples 60000 --features 784 --classes 10 --seed 7 >/dev/null
[ -f bench-data/cnn.h5 ] || "$ddtrain" data synth --out bench-data/cnn.h5 --samples 60000 --image 1x28x28 --classes 10 --seed 7 >/dev/null
[ -f bench-data/small.h5 ] || "$ddtrain" data synth --out bench-data/small.h5 --samples 1000 --features 784 --classes 10 --seed 7 >/dev/null
$PY - <<'PY'
import os, h5py, numpy as np
N, D = 200000, 784
if all(os.path.exists(f"bench-data/r-{k}.h5") for k in ("f32", "u8", "f32-gz", "u8-gz")):
    raise SystemExit
r = np.random.default_rng(7)
u8 = r.integers(0, 256, size=(N, D), dtype=np.uint8)          # image-like bytes
f32 = (u8 * (1 / 255)).astype(np.float32)
y = r.integers(0, 10, size=N).astype(np.int32)
for name, x, kw in (("f32", f32, {}), ("u8", u8, {}),
                    ("f32-gz", f32, dict(chunks=(1000, D), compression="gzip", shuffle=True)),
                    ("u8-gz", u8, dict(chunks=(1000, D), compression="gzip", shuffle=True))):
    with h5py.File(f"bench-data/r-{name}.h5", "w") as f:
        d = f.create_dataset("x", data=x, **kw)
        if x.dtype == np.uint8:
            d.attrs["scale"] = 1 / 255
        f["y"] = y
PY
cat bench-data/r-*.h5 >/dev/null   # from the page cache, as the targets say

jlast() { $PY -c "import json,sys; e=[x for x in map(json.loads, open(sys.argv[1])) if x['event']=='epoch']; print(e[-1][sys.argv[2]])" "$@"; }

{
echo "# streaming reader ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), family/model $(lscpu | sed -n 's/^CPU family: *//p')/$(lscpu | sed -n 's/^Model: *//p'))"
echo "# $("$ddtrain" --version | head -1); OPENBLAS_CORETYPE=$kern for both builds; in-memory reader: $INMEM_REF"
echo "## reader alone (1 rank, 128 random rows per call, page cache)"
} | tee "$OUT/data.txt"
for f in f32 u8 f32-gz u8-gz; do
    for o in global chunks; do
        case $f in *-gz) ;; *) [ $o = chunks ] && continue ;; esac
        r=$(build/release/bench_reader "bench-data/r-$f.h5" $o 128 3)
        $PY -c "import json,sys; r=json.loads(sys.argv[1]); print(f\"{r['type']:8s} {'gzip chunks' if r['compressed'] else 'contiguous':12s} order {r['order']:7s} {r['rows_per_s']:12.0f} rows/s\")" "$r" | tee -a "$OUT/data.txt"
    done
done

echo "## training: streaming (this build) vs in-memory ($INMEM_REF), samples/s, median of $REPEATS" | tee -a "$OUT/data.txt"
train() { # BIN MODEL NP LOG [OVERRIDE...]
    local cmd=("$1" train "jobs/bench/$2.yaml" "train.epochs=2" "train.metrics=$4" checkpoint.dir= train.threads=1 --quiet "${@:5}")
    rm -f "$4"
    if [ "$3" = 1 ]; then "${cmd[@]}"; else mpirun -np "$3" --bind-to core "${cmd[@]}"; fi
}
for m in mlp cnn; do
    for np in 1 2; do
        s=() o=() w=() q=()
        for _ in $(seq 1 "$REPEATS"); do
            train "$ddtrain" "$m" "$np" "$OUT/d-new.jsonl"
            s+=("$(jlast "$OUT/d-new.jsonl" samples_per_s)")
            # the same without the watchdog (its thread, and MPI_THREAD_MULTIPLE's locking, came after INMEM_REF)
            train "$ddtrain" "$m" "$np" "$OUT/d-new.jsonl" train.timeout=0
            q+=("$(jlast "$OUT/d-new.jsonl" samples_per_s)")
            w+=("$($PY -c "import json,sys; e=[x for x in map(json.loads, open(sys.argv[1])) if x['event']=='epoch'][-1]; print(100 * e['data_wait_s'] / e['epoch_s'])" "$OUT/d-new.jsonl")")
            train "$old" "$m" "$np" "$OUT/d-old.jsonl"
            o+=("$(jlast "$OUT/d-old.jsonl" samples_per_s)")
        done
        S=$(median "${s[@]}"); O=$(median "${o[@]}"); W=$(median "${w[@]}"); Q=$(median "${q[@]}")
        $PY -c "import sys; m,np,s,o,w,q=sys.argv[1:]; print(f'{m:4s} {np} rank(s): streaming {float(s):9.0f}  in-memory {float(o):9.0f}  ratio {float(s)/float(o):5.3f}  data wait {float(w):4.1f}% of the epoch  (watchdog off: {float(q):9.0f}, ratio {float(q)/float(o):5.3f})')" "$m" "$np" "$S" "$O" "$W" "$Q" | tee -a "$OUT/data.txt"
    done
done

echo "## peak resident memory per rank, 2 ranks, 20 steps of the MLP (MB)" | tee -a "$OUT/data.txt"
for f in r-f32 small; do
    for b in "$ddtrain" "$old"; do
        rm -f "$OUT/rss.txt"
        mpirun -np 2 /usr/bin/time -a -o "$OUT/rss.txt" -f "%M" "$b" train jobs/bench/mlp.yaml "data.train=bench-data/$f.h5" \
            train.max_steps=20 checkpoint.dir= train.threads=1 --quiet
        $PY -c "import sys; v=[int(l)/1024 for l in open(sys.argv[1]) if l.strip().isdigit()]; print(f'{sys.argv[2]:10s} {sys.argv[3]:9s} ' + '  '.join(f'{x:6.1f}' for x in v))" \
            "$OUT/rss.txt" "$f" "$([ "$b" = "$ddtrain" ] && echo streaming || echo in-memory)" | tee -a "$OUT/data.txt"
    done
done
ls -l bench-data/r-f32.h5 bench-data/small.h5 | awk '{printf "# %s: %.1f MB\n", $NF, $5/1e6}' | tee -a "$OUT/data.txt"
