#!/usr/bin/env bash
# The user's path end to end on real ranks: make data, train, checkpoint,
# metrics, eval, predict, inspect, import CSV/IDX, resume, stop on a signal.
# Commands whose rank count does not matter run in-process (NP in, one rank).
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"

expect_ok "version without MPI" 0 --version
grep -q '^ddtrain 0\.' "$out" || fail "--version prints the version"
expect_ok "help" 0 --help
expect_ok "train --help lists config keys" in train --help
grep -q 'batch_size' "$out" || fail "train --help lists batch_size"
for cmd in eval predict data generate; do
    expect_ok "$cmd --help" in $cmd --help && grep -q "usage: ddtrain $cmd" "$out" || fail "$cmd --help prints its usage"
done

expect_ok "synth" 2 data synth --out train.h5 --samples 3000 --features 32 --classes 5 --seed 3
expect_ok "synth validation set" in data synth --out val.h5 --samples 500 --features 32 --classes 5 --seed 3
expect_ok "inspect" in data inspect train.h5
grep -q '/x .*3000 x 32 .*float32' "$out" || fail "inspect shows /x shape and type"
grep -q 'label counts: 0:' "$out" || fail "inspect shows label counts"

cat > run.yaml <<'YAML'
model:
  layers:
    - {type: dense, units: 64}
    - relu
    - {type: dense, units: 5}
data: {train: train.h5, val: val.h5}
optim: {name: sgd, lr: 0.05, momentum: 0.9}
train: {batch_size: 64, epochs: 3, log_every: 10}
checkpoint: {dir: run, keep: 2}
YAML
expect_ok "train on 2 ranks" 2 train run.yaml
grep -q '2 rank(s) on 1 node(s)' "$out" || fail "header names the ranks"
[ "$(grep -c '^epoch ' "$out")" = 3 ] || fail "one line per epoch"
acc=$(sed -n 's/^final validation accuracy: \([0-9.]*\)%.*/\1/p' "$out")
$PY -c "import sys; sys.exit(0 if float('$acc') > 80 else 1)" || fail "learns: final accuracy $acc% > 80%"
[ "$(ls run/ckpt-*.h5 | wc -l)" = 2 ] || fail "keeps the last 2 checkpoints"
no_temp_files run
$PY - <<'PY' || fail "metrics log is valid JSON Lines with the documented events"
import json
ev = [json.loads(l) for l in open("run/metrics.jsonl")]
kinds = [e["event"] for e in ev]
assert kinds[0] == "start" and kinds[-1] == "done", kinds
assert kinds.count("epoch") == 3 and "step" in kinds and "checkpoint" in kinds
ep = [e for e in ev if e["event"] == "epoch"]
for e in ep:
    for k in ("epoch", "step", "train_loss", "val_loss", "val_acc", "samples_per_s", "elapsed_s", "lr"):
        assert k in e, k
assert ep[-1]["val_loss"] < ep[0]["train_loss"]
assert ev[0]["ranks"] == 2
PY
ck=$(ls run/ckpt-*.h5 | tail -1)
cp "$ck" ck-epoch3.h5
grep -q $'\r  epoch' "$out" && fail "no progress bar when stdout is a file"
$PY - "$ck" <<'PY' || fail "checkpoint readable with h5py in its documented layout"
import sys, h5py
f = h5py.File(sys.argv[1], "r")
assert f.attrs["format"] in (b"ddtrain-checkpoint", "ddtrain-checkpoint")
assert f.attrs["format_version"] == 2 and f.attrs["epoch"] == 3
assert f.attrs["sampler"] in (b"global", "global") and f.attrs["epoch_samples"] == 0   # at an epoch boundary
assert f["params/layer0/weight"].shape == (64, 32)      # [out, in] like torch.nn.Linear
assert f["params/layer0/bias"].shape == (64,)
assert f["params/layer2/weight"].shape == (5, 64)
assert f["optim/momentum_buffer/layer0/weight"].shape == (64, 32)
assert "layers" in (f.attrs["config"].decode() if isinstance(f.attrs["config"], bytes) else f.attrs["config"])
PY

expect_ok "eval on 2 ranks" 2 eval "$ck" val.h5
e2=$(cat "$out")
expect_ok "eval on 1 rank" in eval "$ck" val.h5
e1=$(cat "$out")
[ "$e1" = "$e2" ] || fail "eval gives the same result on 1 and 2 ranks ($e1 / $e2)"
grep -q 'accuracy' "$out" || fail "eval prints accuracy"
expect_ok "predict on 2 ranks" 2 predict "$ck" val.h5 --out pred.h5
$PY - "$e1" <<'PY' || fail "predictions match eval's accuracy and shapes"
import sys, h5py, numpy as np
p = h5py.File("pred.h5", "r"); v = h5py.File("val.h5", "r")
pred, probs, y = p["pred"][:], p["probs"][:], v["y"][:]
assert pred.shape == (500,) and probs.shape == (500, 5) and p["output"].shape == (500, 5)
assert np.allclose(probs.sum(1), 1, atol=1e-5)
acc = 100 * (pred == y).mean()
want = float(sys.argv[1].split("accuracy")[1].strip().rstrip("%"))
assert abs(acc - want) < 0.01, (acc, want)
PY

# resume: continue the finished run for two more epochs, at a different rank count
expect_ok "resume auto with more epochs" in train run.yaml train.epochs=5 --resume auto
grep -q "^resume: run/ckpt-" "$out" || fail "says where it resumed from"
grep -q '^epoch   4/5' "$out" || fail "continues with epoch 4"
[ "$(grep -c '^epoch ' "$out")" = 2 ] || fail "runs only the remaining epochs"
expect_ok "resume from a named checkpoint" in train run.yaml train.epochs=5 checkpoint.dir=run-path --resume ck-epoch3.h5
grep -q "^resume: ck-epoch3.h5" "$out" || fail "says it resumed from the named file"
a=$(cd run && ls ckpt-*.h5 | tail -1)
b=$(cd run-path && ls ckpt-*.h5 | tail -1)
$PY - "run/$a" "run-path/$b" <<'PY' || fail "--resume PATH ends bitwise equal to --resume auto from the same checkpoint"
import sys, h5py, numpy as np
a, b = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r")
assert a.attrs["step"] == b.attrs["step"] and a.attrs["epoch"] == b.attrs["epoch"] == 5
names = []
a["params"].visit(lambda n: names.append(n) if isinstance(a["params"][n], h5py.Dataset) else None)
assert names
for n in names:
    assert np.array_equal(a["params"][n][()], b["params"][n][()]), n
PY

# a progress bar during the epoch when stdout is a terminal (script gives a pseudo-terminal)
timeout -k 5 120 script -qec "$DDTRAIN train run.yaml train.epochs=1 checkpoint.dir= train.batch_size=8" /dev/null \
    >"$out" 2>"$err" || fail "train under a terminal"
grep -q $'\r  epoch 1 \[=' "$out" || fail "progress bar drawn on a terminal"
grep -q '^epoch   1/1' <(tr '\r' '\n' <"$out") || fail "epoch line after the progress bar"
# step, loss, speed and ETA; the redrawn line within 79 columns (an 80-column terminal does not wrap it)
grep -qE $'\r  epoch 1 \\[[=> ]+\\] [0-9]+/[0-9]+  loss [0-9.]+  [0-9]+ samples/s  ETA [0-9]+:[0-9][0-9] ' "$out" ||
    fail "progress bar shows step, loss, samples/s and ETA: $(tr '\r' '\n' <"$out" | grep -m1 ETA)"
long=$(tr '\r' '\n' <"$out" | grep '^  epoch [0-9]* \[' | awk 'length($0) > 79' | head -n 1)
[ -z "$long" ] || fail "a progress line longer than 79 columns: '$long'"
# ranks under a wrapper (DD_EXEC: a shell that stays their parent) with mpirun's output in a file:
# the rank's stdout is mpirun's pseudo-terminal, but nobody watches it: no bar in the log
timeout -k 5 120 script -qec "$MPIEXEC -n 1 sh -c '\"\$0\" \"\$@\"; exit \$?' $DDTRAIN train run.yaml train.epochs=1 checkpoint.dir= train.batch_size=8 >wrapped.log" \
    /dev/null >"$out" 2>"$err" || fail "train under a wrapper, output to a file"
grep -q $'\r' wrapped.log && fail "progress bar drawn into a log file under a wrapper"
grep -q '^epoch   1/1' wrapped.log || fail "epoch line in the log under a wrapper"
# and under the same wrapper on a terminal the bar is drawn
timeout -k 5 120 script -qec "$MPIEXEC -n 1 sh -c '\"\$0\" \"\$@\"; exit \$?' $DDTRAIN train run.yaml train.epochs=1 checkpoint.dir= train.batch_size=8" \
    /dev/null >"$out" 2>"$err" || fail "train under a wrapper on a terminal"
grep -q $'\r  epoch 1 \[=' "$out" || fail "progress bar drawn on a terminal under a wrapper"

# stop on a signal: checkpoint at the next step, exit 128+signal, resume finishes
cat > long.yaml <<'YAML'
model:
  layers: [{type: dense, units: 256}, relu, {type: dense, units: 5}]
data: {train: train.h5}
optim: {name: sgd, lr: 0.01}
train: {batch_size: 8, epochs: 100000}   # far longer than the test waits: the signal always comes first
checkpoint: {dir: long, every_epochs: 0}
YAML
timeout -k 5 120 "$MPIEXEC" -n 2 --oversubscribe "$DDTRAIN" train long.yaml >"$out" 2>"$err" &
pid=$!
for _ in $(seq 1 100); do grep -q '^checkpoints:' "$out" 2>/dev/null && break; sleep 0.1; done
sleep 1
pkill -USR1 -P $pid -x "$(basename "$MPIEXEC")"   # the launcher, not the timeout wrapper
wait $pid
rc=$?
[ $rc = 138 ] || fail "SIGUSR1 stops with exit code 138 (128+10), got $rc"
grep -q 'stopping at step' "$out" || fail "says it stopped on the signal"
ls long/ckpt-*.h5 >/dev/null 2>&1 || fail "checkpoint written on the signal"
no_temp_files long
expect_ok "resume after the signal" 2 train long.yaml train.epochs=1 --resume auto
grep -qE '^resume: long/ckpt-' "$out" || fail "resumed from the signal checkpoint"

# a signal to one rank only: every rank stops at the same step with the same
# exit code (128 + that signal), not the signalled one 138 and the others 143
cat > rank.sh <<'SH'
#!/bin/sh
r=${OMPI_COMM_WORLD_RANK:-0}
"$@" & echo $! > "pid.$r"
wait $!
echo $? > "rc.$r"
SH
chmod +x rank.sh
rm -f pid.* rc.*
timeout -k 5 120 "$MPIEXEC" -n 2 --oversubscribe ./rank.sh "$DDTRAIN" train long.yaml checkpoint.dir=long2 >"$out" 2>"$err" &
pid=$!
for _ in $(seq 1 100); do grep -q '^checkpoints:' "$out" 2>/dev/null && [ -s pid.1 ] && break; sleep 0.1; done
sleep 1
kill -USR1 "$(cat pid.1)"
wait $pid
[ "$(cat rc.0 2>/dev/null) $(cat rc.1 2>/dev/null)" = "138 138" ] && echo "ok   one rank signalled: both exit 138" ||
    fail "one rank signalled: exit codes '$(cat rc.0 rc.1 2>/dev/null | tr '\n' ' ')', expected 138 138"
$PY -c "
import json
s = [r for r in map(json.loads, open('long2/metrics.jsonl')) if r['event'] == 'stopped']
assert s and s[-1]['signal'] == 10, s" || fail "the stopped record names signal 10"

# CSV and IDX import
cat > iris.csv <<'CSV'
sepal_length,sepal_width,species
5.1,3.5,setosa
7.0,3.2,versicolor
6.3,3.3,virginica
4.9,3.0,setosa
6.4,3.2,versicolor
5.8,2.7,virginica
CSV
expect_ok "import csv with class names" in data import csv iris.csv --out iris.h5 --label species
grep -q '3 classes' "$out" || fail "csv import counts classes"
$PY -c "
import h5py; f = h5py.File('iris.h5', 'r')
assert f['x'].shape == (6, 2) and list(f['y'][:]) == [0, 1, 2, 0, 1, 2]
n = f.attrs['class_names']; n = n.decode() if isinstance(n, bytes) else n
assert n.split(chr(10)) == ['setosa', 'versicolor', 'virginica'], n
" || fail "csv import layout"
cut -d, -f1,2 iris.csv > twocol.csv
expect_ok "import csv regression" in data import csv twocol.csv --out reg.h5 --label sepal_width --regression
$PY -c "
import h5py; f = h5py.File('reg.h5', 'r')
assert f['x'].shape == (6, 1) and f['y'].dtype.kind == 'f' and abs(f['y'][1] - 3.2) < 1e-6
" || fail "csv regression layout"
$PY - <<'PY' || fail "could not write IDX test files"
import gzip, struct, numpy as np
rng = np.random.default_rng(1)
img = rng.integers(0, 256, size=(60, 28, 28), dtype=np.uint8)
lab = rng.integers(0, 10, size=60, dtype=np.uint8)
with gzip.open("t10k-images-idx3-ubyte.gz", "wb") as f:
    f.write(struct.pack(">IIII", 0x803, 60, 28, 28)); f.write(img.tobytes())
with open("t10k-labels-idx1-ubyte", "wb") as f:
    f.write(struct.pack(">II", 0x801, 60)); f.write(lab.tobytes())
np.save("idx_first.npy", img[0])
PY
expect_ok "import idx (gzip images, plain labels)" in data import idx t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte --out mnist.h5
$PY -c "
import h5py, numpy as np; f = h5py.File('mnist.h5', 'r')
assert f['x'].shape == (60, 1, 28, 28) and f['y'].shape == (60,)
assert f['x'].dtype == np.uint8 and abs(f['x'].attrs['scale'] - 1 / 255) < 1e-12   # bytes, read as pixel / 255
assert (f['x'][0, 0] == np.load('idx_first.npy')).all()
" || fail "idx import layout and scaling"
expect_ok "an MLP trains on imported IDX images" in train run.yaml data.train=mnist.h5 data.val= data.val_fraction=0.2 model.layers.2.units=10 checkpoint.dir= train.epochs=1
finish
