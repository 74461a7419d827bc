#!/usr/bin/env bash
# Checkpoints that prove themselves (issue 12): only the naming scheme's files count, damaged files
# are refused (eval, --resume PATH) or skipped with a warning (--resume auto), one run per
# directory, no branch inside a run's directory, range-checked resume state.
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"

ddt in data synth --out d.h5 --samples 300 --features 12 --classes 3 || exit 1
cat >run.yaml <<'YAML'
model:
  layers: [{type: dense, units: 16}, relu, {type: dense, units: 3}]
data: {train: d.h5}
train: {batch_size: 32, epochs: 3}
checkpoint: {dir: ck, keep: 0}
YAML
expect_ok "three epochs, a checkpoint each" in train run.yaml
mapfile -t cks < <(cd ck && ls ckpt-*.h5)
[ ${#cks[@]} = 3 ] || fail "expected 3 checkpoints, have ${cks[*]}"
newest=ck/${cks[2]} older=ck/${cks[1]}
cp "$older" older.h5   # kept for later: pruning removes it from ck/

# a user's files beside the scheme's: never taken as the newest, never pruned
cp "$older" ck/ckpt-best.h5
cp "$older" ck/ckpt-zzz.h5
expect_ok "--resume auto with ckpt-best.h5 in the directory" in train run.yaml train.epochs=4 checkpoint.keep=1 --resume auto
grep -q "^resume: $newest " "$out" || fail "resumed from $newest, not a user's file ($(grep '^resume' "$out"))"
[ -f ck/ckpt-best.h5 ] && [ -f ck/ckpt-zzz.h5 ] || fail "keep pruning deleted a user's ckpt-best.h5 / ckpt-zzz.h5"
mapfile -t cks < <(cd ck && ls ckpt-0*.h5)
[ ${#cks[@]} = 1 ] || fail "keep 1 left ${cks[*]}"
good=ck/${cks[0]}

# damage: one flipped bit in a tensor (checksum), NaN with a valid checksum, an int8 tensor, a range
damage() { # KIND SRC DST
    $PY - "$@" <<'PY'
import sys, shutil, h5py, numpy as np, xxhash
kind, src, dst = sys.argv[1:]
shutil.copy(src, dst)
with h5py.File(dst, "r+") as f:
    d = f["params/layer0/weight"]
    w = d[...]
    if kind == "bitflip":
        b = w.view(np.uint32); b[0, 0] ^= 1 << 20; d[...] = w
    elif kind == "nan":
        w[2, 3] = np.nan; d[...] = w
        d.attrs["xxh3_64"] = np.int64(np.uint64(xxhash.xxh3_64_intdigest(w.astype("<f4").tobytes())).astype(np.int64))
    elif kind == "int8":
        del f["params/layer0/weight"]; f["params/layer0/weight"] = w.astype(np.int8)
    elif kind == "batch":
        f.attrs["batch_in_epoch"] = np.int64(-1)
    elif kind == "nohash":
        del d.attrs["xxh3_64"]
PY
}
damage bitflip "$good" bit.h5
expect_error "eval refuses a flipped bit" in 1 "bit.h5': /params/layer0/weight fails its checksum (xxh3_64); the file is damaged" eval bit.h5 d.h5
damage nan "$good" nan.h5
expect_error "eval refuses a NaN parameter" in 1 "/params/layer0/weight holds NaN at [27]" eval nan.h5 d.h5
damage int8 "$good" int8.h5
expect_error "eval refuses an int8 tensor" in 1 "/params/layer0/weight is not stored as float32" eval int8.h5 d.h5
damage nohash "$good" nohash.h5
expect_error "a format 2 tensor without its checksum" in 1 "/params/layer0/weight has no checksum" eval nohash.h5 d.h5
damage batch "$good" batch.h5
expect_error "resume state out of range" in 1 "the training-state attribute batch_in_epoch is out of range" train run.yaml checkpoint.dir=ck-b --resume batch.h5
expect_error "--resume PATH refuses a damaged file" 2 1 "fails its checksum" train run.yaml checkpoint.dir=ck-b --resume bit.h5

# --resume auto falls back past a damaged newest one, saying which and why
mkdir -p ck2 && cp older.h5 "ck2/$(basename "$older")" && damage bitflip "$good" "ck2/$(basename "$good")"
expect_ok "--resume auto past a damaged newest" 2 train run.yaml checkpoint.dir=ck2 train.epochs=4 checkpoint.keep=1 --resume auto
grep -q "warning: skipping checkpoint $(basename "$good"): .*fails its checksum.*; renamed to $(basename "$good").skipped" "$err" ||
    fail "a warning names the damaged checkpoint, the reason and where it went ($(cat "$err"))"
grep -q "^resume: ck2/$(basename "$older") " "$out" || fail "resumed from the good $(basename "$older")"
# the damaged file is out of the naming scheme: with keep 1 the run's own newest survives
last=$(sed -n 's/^done: .*; checkpoint \(.*\)$/\1/p' "$out")
[ -n "$last" ] && [ -f "$last" ] && [ "$(ls ck2/ckpt-*.h5)" = "$last" ] && [ -f "ck2/$(basename "$good").skipped" ] &&
    echo "ok   keep 1 keeps the run's newest, the damaged one set aside" ||
    fail "after the fallback: ckpt files '$(ls ck2)', done said '$last'"

# a branch inside the run's own directory is refused; into another directory it is fine
expect_error "--resume PATH to an older checkpoint of the directory" in 1 "is older than the newest checkpoint of checkpoint.dir 'ck'" train run.yaml train.epochs=5 --resume ck/ckpt-best.h5
expect_ok "the same branch into a new directory" in train run.yaml train.epochs=5 checkpoint.dir=branch --resume ck/ckpt-best.h5

# one run per directory: a second one is refused, naming the first
cat >slow.yaml <<'YAML'
model:
  layers: [{type: dense, units: 256}, relu, {type: dense, units: 3}]
data: {train: d.h5}
train: {batch_size: 4, epochs: 100000}
checkpoint: {dir: busy, every_epochs: 0}
YAML
timeout -k 5 120 "$MPIEXEC" -n 2 --oversubscribe "$DDTRAIN" train slow.yaml >slow.out 2>&1 &
slow=$!
for _ in $(seq 1 200); do grep -q '^checkpoints:' slow.out 2>/dev/null && break; sleep 0.1; done
expect_error "a second run on a busy directory" 2 1 "checkpoint.dir 'busy' is in use by another run (host $(hostname), pid" train slow.yaml
pkill -USR1 -P $slow -x "$(basename "$MPIEXEC")"
wait $slow
[ $? = 138 ] || fail "the first run stopped on SIGUSR1 with 138 ($(tail -n 3 slow.out))"
expect_ok "the directory is free again" in train slow.yaml train.epochs=1 --resume auto
no_temp_files ck

# written in HDF5's checksummed format: superblock version 3 (HDF5 1.10), not 0
$PY -c "
import sys
b = open(sys.argv[1], 'rb').read(9)
assert b[:8] == b'\x89HDF\r\n\x1a\n' and b[8] == 3, b" "$(ls ck/ckpt-0*.h5 | tail -n 1)" || fail "checkpoints use the v1.10 superblock"

# a resume takes the checkpoint's seed: a changed train.seed neither redraws the val_fraction
# hold-out (validation samples would be trained on) nor the order; the run ends as one without a stop
cat >hold.yaml <<'YAML'
model:
  layers: [{type: dense, units: 16}, relu, {type: dense, units: 3}]
data: {train: d.h5, val_fraction: 0.2}
train: {batch_size: 32, epochs: 2, seed: 1}
checkpoint: {dir: hold-a, keep: 0}
YAML
expect_ok "hold-out: two epochs" in train hold.yaml
expect_ok "hold-out: one epoch" in train hold.yaml train.epochs=1 checkpoint.dir=hold-b
expect_ok "hold-out: resumed with another train.seed" in train hold.yaml train.seed=2 checkpoint.dir=hold-b --resume auto
# a mid-epoch resume reports the whole epoch: the same train_loss and train_acc as without a stop
expect_ok "mid-epoch: to step 11" in train hold.yaml train.max_steps=11 checkpoint.dir=hold-c
expect_ok "mid-epoch: resumed" in train hold.yaml checkpoint.dir=hold-c --resume auto
$PY - <<'PY' || fail "resume with another seed, or mid-epoch, differs from the run without a stop"
import h5py, json
def last(d):
    return h5py.File(sorted(__import__("glob").glob(d + "/ckpt-*.h5"))[-1])
a, b, c = last("hold-a"), last("hold-b"), last("hold-c")
assert a.attrs["seed"] == b.attrs["seed"] == 1 and a.attrs["step"] == b.attrs["step"] == c.attrs["step"]
for n in a["params"]:
    for t in a["params"][n]:
        x = a["params"][n][t][()].tobytes()
        assert x == b["params"][n][t][()].tobytes() and x == c["params"][n][t][()].tobytes(), (n, t)
ep = lambda d: [r for r in map(json.loads, open(d + "/metrics.jsonl")) if r["event"] == "epoch"][-1]
ea, eb, ec = ep("hold-a"), ep("hold-b"), ep("hold-c")
for k in ("train_loss", "train_acc", "val_loss", "val_acc", "samples", "samples_digest"):
    assert ea[k] == eb[k] == ec[k], (k, ea[k], eb[k], ec[k])
PY
# parameter groups (optim.decay: weights): one AdamW step with weight decay 0, with decay on the weight
# matrices only, and on everything: the matrices take the decay (bit for bit the same step as with
# decay on everything), biases, norms and embeddings do not (bit for bit the step without decay)
ddt in data synth --out seq.h5 --seq-len 10 --samples 200 --vocab 30 --per-step --classes 2 --seed 3 || exit 1
cat >decay.yaml <<'YAML'
model:
  layers: [{type: embedding, vocab: 30, dim: 8}, positional, layernorm, {type: attention, heads: 2},
           {type: dense, units: 16}, gelu, {type: dense, units: 2}]
data: {train: seq.h5, lengths: /lengths}
optim: {name: adamw, lr: 0.05, weight_decay: 0.5}
train: {batch_size: 20, epochs: 1, max_steps: 1}
checkpoint: {dir: dk-all, keep: 0}
YAML
expect_ok "one step, decay all" in train decay.yaml
expect_ok "one step, decay weights" in train decay.yaml optim.decay=weights checkpoint.dir=dk-w
expect_ok "one step, no decay" in train decay.yaml optim.weight_decay=0 checkpoint.dir=dk-0
$PY - <<'PY' || fail "optim.decay weights: matrices decay, biases, norms and embeddings do not"
import glob, h5py
f = {d: h5py.File(glob.glob(d + "/ckpt-*.h5")[0]) for d in ("dk-all", "dk-w", "dk-0")}
assert f["dk-w"].attrs["optimizer_decay"] == b"weights" and f["dk-all"].attrs["optimizer_decay"] == b"all"
matrices = {("dense", "weight"), ("attention", "qkv_weight"), ("attention", "proj_weight")}
seen = set()
for layer in f["dk-w"]["params"]:
    kind = f["dk-w"]["params"][layer].attrs["type"].decode()
    for t in f["dk-w"]["params"][layer]:
        v = {d: f[d]["params"][layer][t][()] for d in f}
        if (kind, t) in matrices:
            assert v["dk-w"].tobytes() == v["dk-all"].tobytes() and (v["dk-w"] != v["dk-0"]).any(), (layer, t)
        else:
            assert v["dk-w"].tobytes() == v["dk-0"].tobytes(), (layer, t)
        seen.add((kind, t))
assert {("embedding", "weight"), ("positional", "weight"), ("layernorm", "weight"), ("attention", "qkv_bias")} <= seen
# the decay reached the non-matrices under decay all (their initial values are not all zero)
assert (f["dk-all"]["params/layer1/weight"][()] != f["dk-0"]["params/layer1/weight"][()]).any()
PY
echo "ok   optim.decay weights decays exactly the weight matrices"
expect_error "resume with another optim.decay" in 1 "was trained with optim.decay weights but the config says all; resume with optim.decay=weights" train decay.yaml train.max_steps=2 checkpoint.dir=dk-w --resume auto
expect_ok "resume with the same optim.decay" in train decay.yaml train.max_steps=2 optim.decay=weights checkpoint.dir=dk-w --resume auto
# a checkpoint from before optim.decay (no optimizer_decay attribute) decayed everything: it resumes as decay all
cp "$(ls dk-all/ckpt-*.h5)" nodecay.h5
$PY -c "
import h5py, sys
with h5py.File(sys.argv[1], 'r+') as f:
    del f.attrs['optimizer_decay']" nodecay.h5 || fail "removing optimizer_decay"
expect_ok "a checkpoint without optimizer_decay resumes with decay all" in train decay.yaml train.max_steps=2 checkpoint.dir=dk-old --resume nodecay.h5
expect_error "... and not with decay weights" in 1 "was trained with optim.decay all but the config says weights" train decay.yaml train.max_steps=2 optim.decay=weights checkpoint.dir=dk-old2 --resume nodecay.h5
finish
