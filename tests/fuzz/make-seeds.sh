#!/usr/bin/env bash
# make-seeds.sh - (re)write the seed inputs of the fuzz targets under tests/fuzz/corpus/: small valid
# datasets of every storage form the reader takes (ddtrain data synth / data text, and h5py for
# chunks, filters, byte orders, integer types, compact layout and the newest file format) and real
# checkpoints of three small models (MLP, CNN, character LSTM), each also in HDF5's earliest file
# format (no metadata checksums, so mutations reach the parsers behind them). The seeds are
# committed: the bounded CTest run mutates the same bytes everywhere. Run it after a change of
# what ddtrain writes:
#   bash tests/fuzz/make-seeds.sh [path/to/ddtrain]      (default build/release/ddtrain)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
ddtrain=$(realpath "${1:-$here/../../build/release/ddtrain}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
cd "$work"
data=$here/corpus/data ckpt=$here/corpus/checkpoint
rm -rf "$data" "$ckpt"
mkdir -p "$data" "$ckpt"

"$ddtrain" data synth --out "$data/synth.h5" --samples 8 --features 4 --classes 3 >/dev/null
"$ddtrain" data synth --out "$data/regression.h5" --samples 6 --features 3 --regression --outputs 2 >/dev/null
"$ddtrain" data synth --out "$data/image-u8.h5" --samples 6 --image 1x4x4 --uint8 --classes 2 >/dev/null
"$ddtrain" data synth --out "$data/seq.h5" --seq-len 6 --vocab 10 --samples 6 >/dev/null
"$ddtrain" data synth --out "$data/seq-perstep.h5" --seq-len 5 --vocab 8 --samples 5 --per-step >/dev/null
printf 'the cat sat on the mat; the dog sat on the log.\n' > text.txt
"$ddtrain" data text text.txt --out "$data/text.h5" --seq-len 6 --stride 6 >/dev/null

/usr/bin/python3 - "$data" <<'PY'
import sys
import h5py, numpy as np
out = sys.argv[1]
rng = np.random.default_rng(1)
x = rng.normal(size=(8, 4)).astype(np.float32)
y = rng.integers(0, 3, size=8).astype(np.int32)
def write(name, xs, ys, libver=None, **kw):
    with h5py.File(f"{out}/{name}", "w", libver=libver) as f:
        f.create_dataset("x", data=xs, **kw)
        if ys is not None:
            f.create_dataset("y", data=ys)
        return f
write("gzip-shuffle-fletcher.h5", x, y, chunks=(4, 4), compression="gzip", shuffle=True, fletcher32=True)
write("chunks-split.h5", x, y, chunks=(3, 2))
write("big-endian.h5", x.astype(">f4"), y.astype(">i4"))
write("float64-int64.h5", x.astype(np.float64), y.astype(np.int64))
write("latest-format.h5", x, y, libver="latest", chunks=(4, 4), compression="gzip")
with h5py.File(f"{out}/int16-scale.h5", "w") as f:
    d = f.create_dataset("x", data=(x * 100).astype(np.int16))
    d.attrs["scale"] = 0.01
    d.attrs["shift"] = 0.0
    f["y"] = y
with h5py.File(f"{out}/lengths.h5", "w") as f:
    f["x"] = rng.integers(1, 9, size=(4, 5)).astype(np.int32)
    f["y"] = rng.integers(0, 2, size=4).astype(np.int32)
    f["lengths"] = np.array([5, 3, 1, 4], dtype=np.int32)
with h5py.File(f"{out}/labels-2d.h5", "w") as f:
    f["x"] = x[:, :3].reshape(8, 3)
    f["y"] = rng.integers(0, 3, size=(8, 3)).astype(np.int32)
# compact layout (the data in the object header)
with h5py.File(f"{out}/compact.h5", "w") as f:
    for name, arr in (("x", x), ("y", y)):
        space = h5py.h5s.create_simple(arr.shape)
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_layout(h5py.h5d.COMPACT)
        tid = h5py.h5t.py_create(arr.dtype)
        d = h5py.h5d.create(f.id, name.encode(), tid, space, dcpl=dcpl)
        d.write(h5py.h5s.ALL, h5py.h5s.ALL, np.ascontiguousarray(arr))
PY

cat > mlp.yaml <<'YAML'
model:
  layers: [{type: dense, units: 5}, relu, {type: dense, units: 3}]
data: {train: DATA/synth.h5}
optim: {name: adam, lr: 0.01}
train: {batch_size: 4, epochs: 1, seed: 1}
checkpoint: {dir: ck-mlp}
YAML
cat > cnn.yaml <<'YAML'
model:
  layers:
    - {type: conv2d, filters: 2, kernel: 3, padding: 1}
    - batchnorm
    - relu
    - {type: maxpool2d, kernel: 2}
    - flatten
    - {type: dense, units: 2}
data: {train: DATA/image-u8.h5}
optim: {name: sgd, lr: 0.1, momentum: 0.9}
train: {batch_size: 3, epochs: 1, seed: 1}
checkpoint: {dir: ck-cnn}
YAML
cat > lstm.yaml <<'YAML'
model:
  layers:
    - {type: embedding, vocab: 24, dim: 3}
    - {type: lstm, hidden: 4, sequences: true}
    - {type: dense, units: 24}
data: {train: DATA/text.h5}
optim: {name: adam, lr: 0.01}
train: {batch_size: 4, epochs: 1, seed: 1}
checkpoint: {dir: ck-lstm}
YAML
cp "$data/synth.h5" "$data/image-u8.h5" "$data/text.h5" .
sed -i "s|DATA/||" mlp.yaml cnn.yaml lstm.yaml
for m in mlp cnn lstm; do
    "$ddtrain" train "$m.yaml" --quiet >/dev/null
    cp "$(ls ck-$m/ckpt-*.h5 | tail -n 1)" "$ckpt/$m.h5"
    /usr/bin/python3 - "$ckpt/$m.h5" "$ckpt/$m-earliest.h5" <<'PY'
import sys
import h5py
# the same objects and attributes in HDF5's earliest format (h5repack cannot lower the bounds here)
with h5py.File(sys.argv[1], "r") as src, h5py.File(sys.argv[2], "w", libver="earliest") as dst:
    def attrs(a, b):
        for k in a.attrs:
            b.attrs.create(k, a.attrs[k], dtype=a.attrs.get_id(k).dtype)
    attrs(src, dst)
    def copy(name, obj):
        if isinstance(obj, h5py.Dataset):
            attrs(obj, dst.create_dataset(name, data=obj[()], dtype=obj.dtype))
        else:
            attrs(obj, dst.require_group(name))
    src.visititems(copy)
PY
done
ls -l "$data" "$ckpt"
