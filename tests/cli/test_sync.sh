#!/usr/bin/env bash
# Gradient sync (issue 13): the gradient arena is reduced in buckets, last layers first, each started
# as soon as backward has finished it (comm.overlap thread: a communication thread; poll: non-blocking
# collectives progressed between layers; off: one reduction after backward; auto, the default: off on
# one node), optionally sent as bf16
# (comm.grad_dtype). Checked at 2 and 4 real ranks (2 under the sanitizers) on a model with batch norm (collectives inside
# forward and backward, beside the buckets):
#  - every mode gives the same parameters bit for bit, at 2 and at 4 ranks (the same buckets and the
#    same collectives: only where they run differs), so auto's choice by the job's layout does not change
#    a run's bits; at 2 ranks bucket sizes and accumulation too (a sum of two values does not depend on
#    the algorithm); bf16 trains close to float32, reproducibly, the same on every rank;
#  - the metrics log's epoch records say what was done (buckets, mode, bytes, phase timings);
#  - the step protocol: a rank that fails before its forward pass, in the last micro-batch of an
#    accumulated step, in evaluation, or with a NaN gradient, still takes part in every collective of
#    the step, so every rank stops by itself with exit code 1 and one error line, well before the
#    watchdog (train.timeout = 20 s here; its exit code 75 would mean a rank was left waiting).
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"

ddt in data synth --out d.h5 --samples 1024 --features 16 --classes 4 --seed 3 || exit 1
cat >s.yaml <<'YAML'
model:
  layers: [{type: dense, units: 64, bias: false}, batchnorm, relu, {type: dense, units: 64}, relu, {type: dense, units: 4}]
data: {train: d.h5, val_fraction: 0.125}
optim: {name: adam, lr: 0.003}
train: {batch_size: 32, epochs: 2, seed: 5, log_every: 10, timeout: 20}
comm: {bucket_mb: 0.0005}
checkpoint: {dir: ck, every_epochs: 0, keep: 1}
YAML
final=ckpt-0000000056.h5 # 2 epochs of 28 steps

cat >cmp.py <<'PY'
# cmp.py A B TOL: the parameters of two checkpoints, bitwise (TOL 0) or within TOL relative to each
# tensor's largest magnitude; every value finite
import sys, h5py, numpy as np
a, b, tol = sys.argv[1], sys.argv[2], float(sys.argv[3])
with h5py.File(a) as fa, h5py.File(b) as fb:
    names = sorted(fa["params"])
    assert names and names == sorted(fb["params"]), (names, sorted(fb["params"]))
    worst = 0.0
    for n in names:
        for t in fa["params"][n]:
            x, y = fa["params"][n][t][()], fb["params"][n][t][()]
            if not (np.isfinite(x).all() and np.isfinite(y).all()):
                sys.exit(f"{n}/{t}: non-finite values")
            if tol == 0 and x.tobytes() != y.tobytes():
                sys.exit(f"{n}/{t}: {np.count_nonzero(x != y)} of {x.size} values differ")
            rel = float(np.max(np.abs(x.astype(np.float64) - y))) / max(float(np.max(np.abs(y))), 1e-30)
            if not rel <= max(tol, 0.0):
                sys.exit(f"{n}/{t}: relative difference {rel:.3g} > {tol}")
            worst = max(worst, rel)
print("bitwise equal" if tol == 0 else f"equal within {tol} (largest {worst:.2g})")
PY
same() { # DESC A B TOL
    local r
    if r=$("$PY" cmp.py "$2/$final" "$3/$final" "$4"); then echo "ok   $1: $r"; else fail "$1: $r"; fi
}
# records DIR BUCKETS MODE DTYPE: what the epoch records say about the sync
records() {
    "$PY" - "$@" <<'PY' || fail "metrics of $1"
import json, sys
d, nb, mode, dtype = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
recs = [json.loads(l) for l in open(f"{d}/metrics.jsonl")]
start = [r for r in recs if r["event"] == "start"][0]
ep = [r for r in recs if r["event"] == "epoch"]
assert len(ep) == 2, ep
for r in ep:
    s = r["sync"]
    assert s["buckets"] == nb and s["overlap"] == mode and s["dtype"] == dtype, s
    want = start["parameters"] * (4 if dtype == "f32" else 2) * 28
    assert (s["bytes"] == want) if dtype == "f32" else (want <= s["bytes"] <= want + 28 * 2 * 4 * nb), (s, want)
    ph = r["phases"]
    for k in ("data", "forward", "backward", "sync", "optimizer", "checkpoint", "evaluation", "other"):
        p = ph[k]
        assert 0 <= p["mean_s"] <= p["max_s"] and 0 <= p["max_rank"] < start["ranks"], (k, p)
    assert ph["forward"]["mean_s"] > 0 and ph["backward"]["mean_s"] > 0 and ph["evaluation"]["mean_s"] > 0, ph
    total = sum(p["mean_s"] for p in ph.values())
    assert abs(total - r["wall_s"]) <= 0.05 * r["wall_s"] + 0.01, (total, r["wall_s"])
steps = [r for r in recs if r["event"] == "step"]
assert steps and all("phases" in r for r in steps), steps[:1]
PY
}

# under the sanitizers (lib.sh: every path once) the matrices run at 2 ranks only
nps="2 4"
$sanitized && nps=2
for np in $nps; do
    for mode in off thread poll; do
        expect_ok "comm.overlap $mode at $np ranks" $np train s.yaml comm.overlap=$mode checkpoint.dir=$mode$np
    done
    records off$np 3 off f32
    records thread$np 3 thread f32
    records poll$np 3 poll f32
    expect_ok "comm.overlap thread at $np ranks again" $np train s.yaml comm.overlap=thread checkpoint.dir=again$np
    same "overlap thread at $np ranks, run twice" thread$np again$np 0
done
same "overlap thread vs off, 2 ranks" thread2 off2 0
same "overlap poll vs off, 2 ranks" poll2 off2 0
if ! $sanitized; then
    same "overlap thread vs off, 4 ranks" thread4 off4 0
    same "overlap poll vs off, 4 ranks" poll4 off4 0
    same "4 ranks vs 2" thread4 thread2 1e-5
fi
expect_ok "one bucket (1 MiB) at 2 ranks" 2 train s.yaml comm.bucket_mb=1 comm.overlap=thread checkpoint.dir=big2
records big2 1 thread f32
expect_ok "comm.overlap auto (the default) on one node" 2 train s.yaml checkpoint.dir=auto2
records auto2 3 off f32
same "bucket size" big2 off2 0
expect_ok "accumulation over 2 micro-batches, overlap thread" 2 train s.yaml train.accum_steps=2 comm.overlap=thread checkpoint.dir=acc2
expect_ok "accumulation over 2 micro-batches, overlap off" 2 train s.yaml train.accum_steps=2 comm.overlap=off checkpoint.dir=acc2off
same "accumulation: thread vs off" acc2 acc2off 0
# train.micro_batch: 8 of each rank's 16 samples at a time is accum_steps 2, bit for bit
expect_ok "micro-batches of 8, 2 ranks" 2 train s.yaml train.micro_batch=8 comm.overlap=off checkpoint.dir=mb8
same "micro_batch 8 == accum_steps 2" mb8 acc2off 0
expect_error "micro_batch and accum_steps together" 2 1 "set one of them" train s.yaml train.micro_batch=8 \
    train.accum_steps=2 checkpoint.dir=mbboth
expect_error "micro_batch making more than 10^6 micro-batches" 1 1 "raise train.micro_batch" train s.yaml \
    train.batch_size=3000000 train.micro_batch=1 checkpoint.dir=mbmany
for mode in thread poll; do
    expect_ok "bf16 gradients, overlap $mode, 2 ranks" 2 train s.yaml comm.grad_dtype=bf16 comm.overlap=$mode checkpoint.dir=bf$mode
done
records bfthread 3 thread bf16
same "bf16: thread vs poll" bfthread bfpoll 0
bf4=bf4 # bf16's slices at 4 ranks (2 ranks under the sanitizers)
$sanitized && bf4=bfthread
$sanitized || expect_ok "bf16 gradients at 4 ranks" 4 train s.yaml comm.grad_dtype=bf16 checkpoint.dir=bf4
BF4=$bf4 "$PY" - <<'PY' || fail "bf16 trains like float32"
import json, os, h5py, numpy as np
def last(d):
    return [r for r in map(json.loads, open(f"{d}/metrics.jsonl")) if r["event"] == "epoch"][-1]
a, b, c = last("thread2"), last("bfthread"), last(os.environ["BF4"])
for r in (b, c):
    assert abs(r["val_loss"] - a["val_loss"]) <= 0.05 * a["val_loss"] + 0.01, (r["val_loss"], a["val_loss"])
with h5py.File("thread2/ckpt-0000000056.h5") as x, h5py.File("bfthread/ckpt-0000000056.h5") as y:
    w, v = x["params/layer0/weight"][()], y["params/layer0/weight"][()]
    assert np.isfinite(v).all() and 0 < np.abs(w - v).max() < 0.1 * np.abs(w).max(), np.abs(w - v).max()
print("bf16: val_loss", b["val_loss"], c["val_loss"], "float32", a["val_loss"])
PY
expect_error "bad comm.overlap" in 1 "comm.overlap" train s.yaml comm.overlap=async
expect_error "bad comm.grad_dtype" in 1 "f32 or bf16" train s.yaml comm.grad_dtype=fp8

# the step protocol: one rank fails, every rank stops by itself
protocol() { # DESC NP NEEDLE FAULT ARGS...
    local desc=$1 np=$2 needle=$3 spec=$4 t=$SECONDS
    shift 4
    DD_FAULT=$spec expect_error "$desc ($spec, $np ranks)" "$np" 1 "$needle" train s.yaml "$@" &&
        echo "     ended after $((SECONDS - t)) s"
}
for np in $nps; do
    for mode in thread poll off; do
        protocol "a read fails before forward, overlap $mode" $np "reading the samples of step 3 on rank 1" read@1:3 \
            comm.overlap=$mode checkpoint.dir=p1
    done
    protocol "a read fails in the last micro-batch" $np "reading the last micro-batch of step 3 on rank 1" \
        readlast@1:3 train.accum_steps=2 comm.overlap=thread checkpoint.dir=p2
    protocol "a validation read fails" $np "reading validation samples on rank 1" evalread@1:0 comm.overlap=thread \
        checkpoint.dir=p3
    protocol "a NaN gradient on one rank" $np "the gradient became NaN" nan@1:3 comm.overlap=thread checkpoint.dir=p4
done
finish
