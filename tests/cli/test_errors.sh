#!/usr/bin/env bash
# Bad input of every kind: one-line error naming the problem and the fix, the
# same non-zero exit code on every rank, no hang, no crash, no half-written file.
# The messages are checked in-process (NP in); one real launch on 2 ranks (4 for
# the batch check) per way the ranks reach a failure together: a config every rank
# loads (missing config), a usage error (no communication), a file rank 0 reads
# (missing data file), a setup check (global batch), a failure mid-training
# (diverging), a checkpoint rank 0 reads (another model), eval, a data command on
# rank 0 (inspect).
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"

ddt in data synth --out good.h5 --samples 200 --features 20 --classes 4 || exit 1
ddt in data synth --out reg.h5 --samples 100 --features 20 --regression --outputs 2 || exit 1
ddt in data synth --out other.h5 --samples 50 --features 7 --classes 4 || exit 1
cat > base.yaml <<'YAML'
model:
  layers:
    - {type: dense, units: 16}
    - relu
    - {type: dense, units: 4}
data:
  train: good.h5
train: {batch_size: 16, epochs: 1}
checkpoint: {dir: ck}
YAML

# config problems
expect_error "missing config" 2 1 "cannot open config 'nope.yaml': No such file" train nope.yaml
printf 'model:\n  layers: [relu\n' > syntax.yaml
expect_error "YAML syntax error with line" in 1 "syntax.yaml:3: YAML syntax error" train syntax.yaml
sed 's/train: {batch_size: 16, epochs: 1}/train: {batch_size: 16, epochs: 1}\noptim: {lerning_rate: 0.1}/' base.yaml > key.yaml
expect_error "unknown key names key and line" in 1 "key.yaml:9: unknown key 'optim.lerning_rate'" train key.yaml
sed 's/batch_size: 16/batch_size: sixteen/' base.yaml > val.yaml
expect_error "bad value names key and line" in 1 "val.yaml:8: train.batch_size: expected an integer" train val.yaml
sed 's/type: dense, units: 4/type: dnse, units: 4/' base.yaml > layer.yaml
expect_error "unknown layer type" in 1 "unknown layer type 'dnse' (did you mean 'dense'?)" train layer.yaml
expect_error "bad override" in 1 "command line 'optim.lrr=1': unknown key 'optim.lrr' (did you mean 'lr'?)" train base.yaml optim.lrr=1
expect_error "bad override value" in 1 "command line 'optim.lr=-1'" train base.yaml optim.lr=-1
expect_error "unknown option is a usage error" 2 2 "unknown option '--frobnicate'" train base.yaml --frobnicate
expect_error "missing config argument" in 2 "train needs a CONFIG file" train

# a 324-byte YAML alias bomb (9^9 nodes if expanded) fails at once
printf 'a: &a [x,x,x,x,x,x,x,x,x]\n' > bomb.yaml
for l in b c d e f g h i; do p=$(tail -n 1 bomb.yaml | sed -n 's/^\(.\): &.*/\1/p'); printf '%s: &%s [%s]\n' "$l" "$l" "$(printf '*%s,' "$p" "$p" "$p" "$p" "$p" "$p" "$p" "$p" "$p" | sed 's/,$//')" >> bomb.yaml; done
expect_error "a YAML alias bomb" in 1 "the config expands to more than 100000 nodes" train bomb.yaml

# data problems
expect_error "missing data file" 2 1 "cannot open 'missing.h5' (data.train): No such file or directory" train base.yaml data.train=missing.h5
echo "x,y" > notes.txt
mkfifo fifo.h5
expect_error "metrics log on a full disk" in 1 "cannot write the metrics log '/dev/full': No space left on device" train base.yaml train.metrics=/dev/full
expect_error "metrics log on a full disk, 2 ranks" 2 1 "cannot write the metrics log '/dev/full'" train base.yaml train.metrics=/dev/full checkpoint.dir=ckfull
# a model larger than this rank's memory fails before allocating, with the numbers (here the limit is
# ulimit -v; MemAvailable and the memory cgroup are read alike); not under ASan, whose shadow memory
# needs the address space
if ! $sanitized; then
    OPENBLAS_NUM_THREADS=1 timeout -s KILL 60 prlimit --as=$((1 << 30)) "$DDTRAIN" train base.yaml model.layers.0.units=5000000 \
        checkpoint.dir=ckmem >"$out" 2>"$err"
    rc=$?
    [ $rc = 1 ] && grep -q "^ddtrain: error: the model needs about [0-9]* MiB per rank (parameters and gradients [0-9]* MiB, optimizer state 0 MiB, activations and workspaces for 16 sample(s) per micro-batch [0-9]* MiB) but this rank has about [0-9]* MiB (the address-space limit (ulimit -v) of 1024 MiB" "$err" &&
        echo "ok   a model larger than the memory limit" || fail "model larger than the memory limit: rc $rc, $(cat "$err")"
    DD_MEM_CHECK=0 OPENBLAS_NUM_THREADS=1 timeout -s KILL 60 prlimit --as=$((1 << 30)) "$DDTRAIN" train base.yaml \
        model.layers.0.units=5000000 checkpoint.dir=ckmem2 >"$out" 2>"$err"
    rc=$?
    [ $rc = 1 ] && grep -q "^ddtrain: error: out of memory allocating" "$err" &&
        echo "ok   DD_MEM_CHECK=0: the allocation itself fails cleanly" || fail "DD_MEM_CHECK=0: rc $rc, $(cat "$err")"
fi
$PY -c "
import h5py, numpy as np
with h5py.File('biglabel.h5', 'w') as f:
    f['x'] = np.zeros((10, 20), np.float32); y = np.zeros(10, np.int64); y[3] = 2**40 + 5; f['y'] = y"
expect_error "an int64 label past 2^31, named unclamped" in 1 "'biglabel.h5':/y[3] = 1099511627781 is larger than any class id ddtrain takes (2^31 - 1)" train base.yaml data.train=biglabel.h5
expect_error "a FIFO as data" in 1 "'fifo.h5' (data.train) is not a regular file" train base.yaml data.train=fifo.h5
head -c 3000 good.h5 > trunc.h5
expect_error "a truncated HDF5 file: HDF5's reason on the line, no build paths" in 1 "trunc.h5: H5Fopen failed: truncated file: eof = 3000" train base.yaml data.train=trunc.h5
grep -q "$DD_SRC\|/src/" "$err" && fail "the HDF5 error names a build path: $(cat "$err")"
expect_error "not an HDF5 file" in 1 "'notes.txt' (data.train) is not an HDF5 file" train base.yaml data.train=notes.txt
expect_error "wrong dataset name" in 1 "'good.h5' has no dataset '/features' (features); it has: /x, /y; set data.x" train base.yaml data.x=/features
$PY - <<'PY'
import h5py, numpy as np
with h5py.File("strings.h5", "w") as f:
    f["x"] = np.array([b"a", b"b", b"c"])
    f["y"] = np.array([0, 1, 0], dtype=np.int32)
with h5py.File("f64.h5", "w") as f:   # float64 features + int64 labels: converted, fine
    rng = np.random.default_rng(0)
    f["x"] = rng.normal(size=(64, 20))
    f["y"] = rng.integers(0, 4, size=64).astype(np.int64)
with h5py.File("bigl.h5", "w") as f:
    f["x"] = np.zeros((40, 20), dtype=np.float32)
    y = np.zeros(40, dtype=np.int32); y[17] = 12
    f["y"] = y
with h5py.File("shape3.h5", "w") as f:
    f["x"] = np.zeros((40, 20), dtype=np.float32)
    f["y"] = np.zeros((40, 2, 2), dtype=np.int32)
PY
expect_error "string features" in 1 "'strings.h5':x (features) has string elements; it must be numeric" train base.yaml data.train=strings.h5 data.x=x data.y=y
expect_ok "float64 features and int64 labels are converted" in train base.yaml data.train=f64.h5 data.x=x data.y=y checkpoint.dir=
expect_error "label out of range" in 1 "'bigl.h5':/y[17] = 12 is out of range for the model's 4 output classes; set the last layer's units to at least 13 (model.layers.2.units)" train base.yaml data.train=bigl.h5
expect_error "labels with too many dimensions" in 1 "/y has 3 dimensions; labels must be [N] or [N, T]" train base.yaml data.train=shape3.h5
expect_error "mse on class labels" in 1 "model.loss mse needs float targets" train base.yaml model.loss=mse
expect_error "cross entropy on float targets" in 1 "model.loss cross_entropy needs integer class ids" train base.yaml data.train=reg.h5
expect_error "declared input shape does not fit" in 1 "model.input 1x5x5 has 25 values per sample but 'good.h5':/x has 20" train base.yaml "model.input=[1,5,5]"
expect_error "validation file with other features" in 1 "data.val 'other.h5':/x has 7 = 7 features per sample, the model expects 20" train base.yaml data.val=other.h5
expect_error "val and val_fraction both" in 1 "set either data.val or data.val_fraction, not both" train base.yaml data.val=good.h5 data.val_fraction=0.1
expect_error "global batch smaller than ranks" 4 1 "train.batch_size = 2 is smaller than the number of ranks (4)" train base.yaml train.batch_size=2
expect_error "diverging training stops cleanly" 2 1 "the training loss became" train base.yaml optim.lr=1e5 checkpoint.dir=div
no_temp_files div

# checkpoints
expect_ok "a first run" 2 train base.yaml
expect_error "fresh run refuses old checkpoints" in 1 "checkpoint.dir 'ck' already holds checkpoints of an earlier run" train base.yaml
expect_error "resume from a missing file" in 1 "cannot open 'ck/none.h5' (checkpoint): No such file" train base.yaml --resume ck/none.h5
expect_error "resume with another model" 2 1 "has shape 16x20 but the model expects 32x20" train base.yaml model.layers.0.units=32 --resume auto
expect_error "eval of a non-checkpoint" in 1 "'good.h5' is not a ddtrain checkpoint" eval good.h5 good.h5
expect_error "eval on data with other features" 2 1 "has 7 = 7 features per sample, the model expects 20" eval "$(ls ck/ckpt-*.h5 | tail -1)" other.h5
cp good.h5 keep.h5
expect_error "predict --out onto its dataset" 2 1 "--out 'good.h5' is the dataset itself; writing predictions there would replace it" predict "$(ls ck/ckpt-*.h5 | tail -1)" good.h5 --out good.h5
cmp -s good.h5 keep.h5 || fail "predict --out onto its dataset left the dataset intact"
expect_error "predict --out onto its checkpoint" in 1 "is the checkpoint itself" predict "$(ls ck/ckpt-*.h5 | tail -1)" good.h5 --out "$(ls ck/ckpt-*.h5 | tail -1)"
no_temp_files ck

# data commands
expect_error "synth without --out" in 2 "data synth needs --out" data synth
expect_error "synth bad classes" in 1 "--classes must be at least 2" data synth --out x.h5 --classes 1
expect_error "inspect missing file" 2 1 "cannot open 'nothere.h5'" data inspect nothere.h5
printf 'a,b,label\n1,2,cat\n3,x,dog\n' > bad.csv
expect_error "csv non-numeric feature" in 1 "bad.csv:3: column 1 ('b'): 'x' is not a number" data import csv bad.csv --out bad.h5
printf '1,2,3\n4,5\n' > ragged.csv
expect_error "csv ragged rows" in 1 "has 2 fields but the first row has 3" data import csv ragged.csv --out r.h5
expect_error "unknown command" in 2 "unknown command 'trian'" trian
finish
