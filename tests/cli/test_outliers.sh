#!/usr/bin/env bash
# train.skip_zscore (issue 12, numerical guards): a step whose loss or gradient norm is an outlier
# against the window of the last steps is skipped on every rank alike (no update, the optimizer's
# step count not advanced), counted in the metrics; the window is in the checkpoint, so a resume
# across a skip is bitwise exact; train.skip_max consecutive skips stop the run with a checkpoint.
# The outliers are made by the test-only fault DD_FAULT=spike@RANK:STEP (that rank's loss and
# gradient 10^4 times the usual).
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"

ddt in data synth --out d.h5 --samples 2000 --features 16 --classes 4 || exit 1
cat >run.yaml <<'YAML'
model:
  layers: [{type: dense, units: 32}, relu, {type: dense, units: 4}]
data: {train: d.h5}
optim: {name: adam, lr: 0.001}
train: {batch_size: 32, epochs: 2, skip_zscore: 50, skip_window: 16, log_every: 0}
checkpoint: {dir: ck, keep: 0, every_epochs: 0, every_steps: 20}
YAML
# 63 steps per epoch; the spike on rank 1 at step 40 of 126
DD_FAULT=spike@1:40 expect_ok "a spike on rank 1 at step 40, 2 ranks" 2 train run.yaml
grep -q "^step 40 skipped as an outlier: loss .* (z-score [0-9.]*), gradient norm" "$out" || fail "the skip is announced"
$PY - <<'PY' || fail "skip record, skipped_steps, optimizer steps"
import json, h5py
recs = [json.loads(l) for l in open("ck/metrics.jsonl")]
skips = [r for r in recs if r["event"] == "skip"]
assert [r["step"] for r in skips] == [40], skips
assert skips[0]["z_loss"] > 50 or skips[0]["z_grad_norm"] > 50, skips
ep = [r for r in recs if r["event"] == "epoch"]
assert [r["skipped_steps"] for r in ep] == [1, 0], ep
with h5py.File("ck/ckpt-0000000126.h5") as f:
    assert f.attrs["step"] == 126 and f.attrs["optimizer_steps"] == 125, dict(f.attrs)
    assert f.attrs["skipped_steps"] == 1 and f.attrs["outlier_n"] == 16, dict(f.attrs)
PY
# without the option the same spike is trained on: the parameters differ
DD_FAULT=spike@1:40 expect_ok "the same spike, skipping off" 2 train run.yaml train.skip_zscore=0 checkpoint.dir=ck-off
$PY - <<'PY' || fail "skipping changed the result"
import h5py, numpy as np
with h5py.File("ck/ckpt-0000000126.h5") as a, h5py.File("ck-off/ckpt-0000000126.h5") as b:
    w, v = a["params/layer0/weight"][()], b["params/layer0/weight"][()]
    assert np.isfinite(w).all() and np.abs(w - v).max() > 1e-3, np.abs(w - v).max()
PY
# resume across the skip: stop at step 60 (the window holds the skip's aftermath), resume: bitwise
DD_FAULT=spike@1:40 expect_ok "to step 60" 2 train run.yaml train.max_steps=60 checkpoint.dir=ck-r
expect_ok "resumed from step 60 to the end" 2 train run.yaml checkpoint.dir=ck-r --resume auto
$PY - <<'PY' || fail "resume across a skip is not bitwise"
import h5py, numpy as np
with h5py.File("ck/ckpt-0000000126.h5") as a, h5py.File("ck-r/ckpt-0000000126.h5") as b:
    for n in a["params"]:
        for t in a["params"][n]:
            x, y = a["params"][n][t][()], b["params"][n][t][()]
            assert x.tobytes() == y.tobytes(), (n, t)
    assert b.attrs["skipped_steps"] == 1
PY
# train.skip_max consecutive skips: stop with a checkpoint, one message, exit 1 on every rank
DD_FAULT=spike@0:40,spike@0:41,spike@0:42 expect_error "three consecutive outliers" 2 1 \
    "3 consecutive steps (40-42) skipped as outliers (train.skip_zscore = 50 over the last 16 steps)" \
    train run.yaml train.skip_max=3 checkpoint.dir=ck-k
grep -q "checkpoint saved: ck-k/ckpt-0000000043.h5" "$err" || fail "the stop names its checkpoint ($(cat "$err"))"
[ -f ck-k/ckpt-0000000043.h5 ] || fail "checkpoint at step 43 written"
finish
