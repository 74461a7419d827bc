#!/usr/bin/env bash
# Crafted and damaged files: shapes whose products pass 2^63 (a 2 KB file of never-written chunks
# can claim 1x16x1048577x1099510579201, whose sample size wraps to 16), files that claim far more
# data than they store, IDX headers past 2^63, a checkpoint whose input_shape multiplies past 2^63,
# and byte-flipped datasets and checkpoints under eval, predict, data inspect and train. Each is one
# 'ddtrain: error:' line naming the file, the dataset and the shape (or a clean run), exit 1, no
# crash, no hang, under ASan too.
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"

ddt in data synth --out good.h5 --samples 40 --features 16 --classes 4 || exit 1
cat > base.yaml <<'YAML'
model:
  layers:
    - {type: dense, units: 8}
    - relu
    - {type: dense, units: 4}
data:
  train: good.h5
train: {batch_size: 8, epochs: 1}
checkpoint: {dir: ck}
YAML
expect_ok "a checkpoint to start from" in train base.yaml --quiet || exit 1
ckpt=$(ls ck/ckpt-*.h5 | tail -n 1)

$PY - <<'PY'
import h5py, numpy as np
# chunked, nothing written: a few KB on disk whatever the shape says
def huge(name, shape, chunks, y=True):
    with h5py.File(name, "w") as f:
        f.create_dataset("x", shape=shape, dtype="f4", chunks=chunks, fillvalue=0)
        if y:
            f.create_dataset("y", shape=(shape[0],), dtype="i4", chunks=(min(shape[0], 1024),), fillvalue=0)
huge("wrap.h5", (1, 16, 1048577, 1099510579201), (1, 1, 1, 1))   # 16 x 1048577 x 1099510579201 = 2^64 + 16
huge("rows.h5", (2**62, 4), (4096, 4))                          # 2^62 rows of 16 bytes: 2^66 bytes
huge("claims.h5", (2**40, 4), (4096, 4))                        # 16 TiB that were never written
with h5py.File("rows-y.h5", "w") as f:                          # the labels are the huge ones
    f["x"] = np.zeros((4, 16), dtype="f4")
    f.create_dataset("y", shape=(2**61, 4), dtype="i4", chunks=(1024, 4), fillvalue=0)
with h5py.File("cells.h5", "w") as f:                           # 4 Mi one-byte chunks, none written
    f.create_dataset("x", shape=(4194304, 1), dtype="u1", chunks=(1, 1), fillvalue=0)
    f.create_dataset("y", shape=(4194304,), dtype="u1", chunks=(4096,), fillvalue=0)
with h5py.File("vocab.h5", "w") as f:                           # a vocabulary of 2^40 entries
    f["x"] = np.zeros((4, 16), dtype="f4")
    f["y"] = np.zeros(4, dtype="i4")
    f.create_dataset("vocab", shape=(2**40,), dtype="i4", chunks=(4096,), fillvalue=65)
PY
ls -l wrap.h5 rows.h5 claims.h5 >"$DD_SCRATCH/sizes.txt"
for f in wrap.h5 rows.h5 claims.h5; do
    [ "$(stat -c %s "$f")" -lt 16384 ] || fail "$f should be a small file: $(stat -c %s "$f") bytes"
done

shape_err="'wrap.h5':/x (features) has shape 1x16x1048577x1099510579201, whose size overflows 64 bits"
expect_error "train on a sample shape past 2^63" in 1 "$shape_err" train base.yaml data.train=wrap.h5 checkpoint.dir=
expect_error "train on a sample shape past 2^63, 2 ranks" 2 1 "$shape_err" train base.yaml data.train=wrap.h5 checkpoint.dir=
expect_error "eval on it" in 1 "$shape_err" eval "$ckpt" wrap.h5
expect_error "predict on it" in 1 "$shape_err" predict "$ckpt" wrap.h5 --out p.h5
[ -e p.h5 ] && fail "predict left an output file"
expect_ok "inspect shows it" in data inspect wrap.h5
grep -qF "1 x 16 x 1048577 x 1099510579201" "$out" || fail "inspect does not show the shape"
grep -qF "values not read: 'wrap.h5':x (data inspect) has shape 1x16x1048577x1099510579201, whose size overflows 64 bits" "$out" ||
    fail "inspect does not say why the values are not read"
expect_error "rows past 2^63 bytes" in 1 "'rows.h5':/x (features) has shape 4611686018427387904x4, whose size overflows 64 bits" \
    train base.yaml data.train=rows.h5 checkpoint.dir=
expect_error "16 TiB claimed by a small file" in 1 \
    "'claims.h5':/x (features) has shape 1099511627776x4 (1.76e+13 bytes) but the file stores 0 bytes of it: its chunks were never written" \
    train base.yaml data.train=claims.h5 checkpoint.dir=
expect_error "16 TiB claimed, eval" in 1 "'claims.h5':/x (features) has shape 1099511627776x4" eval "$ckpt" claims.h5
expect_ok "inspect of the claimed 16 TiB returns" in data inspect claims.h5
grep -qF "values not read: 'claims.h5':x (data inspect) has shape 1099511627776x4" "$out" ||
    fail "inspect does not say why the values are not read"
expect_error "4 Mi never-written chunks" in 1 "'cells.h5':/x has 4194304 chunks of which the file stores 0: the rest were never written" \
    train base.yaml data.train=cells.h5 checkpoint.dir=
expect_error "labels past 2^63 bytes" in 1 "'rows-y.h5':/y (labels) has shape 2305843009213693952x4, whose size overflows 64 bits" \
    train base.yaml data.train=rows-y.h5 checkpoint.dir=
expect_error "a vocabulary of 2^40 entries" in 1 "'vocab.h5':/vocab (vocabulary) has shape 1099511627776 (4.4e+12 bytes)" \
    train base.yaml data.train=vocab.h5 checkpoint.dir=

# the model's declared input: its product is checked as the data's is
expect_error "model.input past 2^63" in 1 "model.input: 16x1048577x1099510579201 holds more than 2^63 values per sample" \
    train base.yaml "model.input=[16,1048577,1099510579201]" checkpoint.dir=
expect_error "model.input past the kernels' 2^31" in 1 "model.input: 65536x65536 holds too many values per sample" \
    train base.yaml "model.input=[65536,65536]" checkpoint.dir=

# a checkpoint whose input_shape multiplies past 2^63 (its checksums stay valid: h5py rewrites them)
cp "$ckpt" shape-ckpt.h5
$PY - <<'PY'
import h5py, numpy as np
with h5py.File("shape-ckpt.h5", "r+") as f:
    f.attrs["input_shape"] = np.array([16, 1048577, 1099510579201], dtype=np.int64)
PY
ckpt_err="checkpoint 'shape-ckpt.h5': the input_shape attribute 16x1048577x1099510579201 is not a per-sample shape"
expect_error "predict with a checkpoint's input_shape past 2^63" in 1 "$ckpt_err" predict shape-ckpt.h5 good.h5 --out p.h5
expect_error "eval with it" in 1 "$ckpt_err" eval shape-ckpt.h5 good.h5
expect_error "eval with it, 2 ranks" 2 1 "$ckpt_err" eval shape-ckpt.h5 good.h5

# values where one is expected: an attribute array was read past the variable it went into
cp "$ckpt" arr-ckpt.h5
$PY - <<'PY'
import h5py, numpy as np
with h5py.File("arr-ckpt.h5", "r+") as f:
    f.attrs["step"] = np.arange(1000, dtype=np.int64)
with h5py.File("arr-scale.h5", "w") as f:
    f["x"] = np.zeros((40, 16), dtype="f4")
    f["x"].attrs["scale"] = np.ones(100)
    f["y"] = np.zeros(40, dtype="i4")
# a chunk stored larger than the chunk, through shuffle alone (no inflate to bound it): the
# unshuffled bytes overran the one-chunk spare buffer
with h5py.File("bigchunk.h5", "w") as f:
    d = f.create_dataset("x", shape=(40, 16), dtype="f4", chunks=(8, 16), shuffle=True)
    for r in range(0, 40, 8):
        d.id.write_direct_chunk((r, 0), bytes(600 if r == 0 else 512), filter_mask=0)
    f["y"] = np.zeros(40, dtype="i4")
PY
expect_error "a checkpoint's step attribute is an array" in 1 "checkpoint 'arr-ckpt.h5' lacks training-state attributes" \
    train base.yaml checkpoint.dir=ck-arr --resume arr-ckpt.h5
expect_error "a scale attribute of 100 values" in 1 "'arr-scale.h5':/x has a 'scale' attribute that is not one finite number" \
    train base.yaml data.train=arr-scale.h5 checkpoint.dir=
expect_ok "data.scale overrides it" in train base.yaml data.train=arr-scale.h5 data.scale=1 checkpoint.dir= --quiet
expect_error "a stored chunk larger than the chunk" in 1 "'bigchunk.h5':/x: chunk 0 holds 600 bytes, expected 512; the file is damaged" \
    train base.yaml data.train=bigchunk.h5 checkpoint.dir=

# IDX headers: three 32-bit dimensions pass 2^63; a 16-byte file may claim 784 MB
$PY - <<'PY'
import struct
with open("over.idx", "wb") as f:
    f.write(bytes([0, 0, 8, 3]) + struct.pack(">III", 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF))
with open("claim.idx", "wb") as f:
    f.write(bytes([0, 0, 8, 3]) + struct.pack(">III", 1000000, 28, 28))
with open("labels.idx", "wb") as f:
    f.write(bytes([0, 0, 8, 1]) + struct.pack(">I", 2) + bytes([1, 2]))
PY
expect_error "IDX dimensions past 2^63" in 1 "'over.idx' claims 4294967295x4294967295x4294967295 bytes in its header, whose size overflows 64 bits" \
    data import idx over.idx labels.idx --out i.h5
expect_error "an IDX header claiming more than the file holds" in 1 \
    "'claim.idx' is truncated: its header (1000000x28x28) says 784000000 data bytes, the file holds 0" \
    data import idx claim.idx labels.idx --out i.h5

# damaged bytes: flips across a small dataset and a checkpoint (HDF5 metadata, our attributes,
# the data); every command ends with a clean result or one error line, never a crash or a hang
expect_clean() { # DESC ARGS...: exit 0, or 1 with exactly one error line; no crash, no hang
    local desc=$1; shift
    ddt in "$@"
    local rc=$?
    if [ $rc -ne 0 ] && [ $rc -ne 1 ]; then fail "$desc: exit code $rc"; return 1; fi
    if [ $rc -eq 1 ] && [ "$(grep -c '^ddtrain: error:' "$err")" != 1 ]; then
        fail "$desc: expected exactly one 'ddtrain: error:' line"; return 1
    fi
    if grep -qiE 'segmentation|core dumped|AddressSanitizer|runtime error|HDF5-DIAG' "$err" "$out"; then
        fail "$desc: crashed or printed HDF5's error stack"; return 1
    fi
    return 0
}
flip() { # SRC DST OFFSET: DST is SRC with the byte at OFFSET inverted
    cp "$1" "$2"
    $PY -c "import sys; f=open(sys.argv[1],'r+b'); f.seek(int(sys.argv[2])); b=f.read(1); f.seek(int(sys.argv[2])); f.write(bytes([b[0]^0xff]))" "$2" "$3"
}
n=0
size=$(stat -c %s good.h5)
for ((off = 0; off < size; off += 53)); do
    flip good.h5 flipped.h5 $off
    expect_clean "data inspect, byte $off of the dataset flipped" data inspect flipped.h5 || continue
    expect_clean "eval, byte $off of the dataset flipped" eval "$ckpt" flipped.h5 || continue
    expect_clean "train, byte $off of the dataset flipped" train base.yaml data.train=flipped.h5 checkpoint.dir= --quiet || continue
    n=$((n + 1))
done
echo "ok   $n byte flips of the dataset: inspect, eval and train end cleanly"
n=0
size=$(stat -c %s "$ckpt")
for ((off = 0; off < size; off += 97)); do
    flip "$ckpt" flipped-ckpt.h5 $off
    expect_clean "eval, byte $off of the checkpoint flipped" eval flipped-ckpt.h5 good.h5 || continue
    expect_clean "predict, byte $off of the checkpoint flipped" predict flipped-ckpt.h5 good.h5 --out p.h5 || continue
    expect_clean "data inspect, byte $off of the checkpoint flipped" data inspect flipped-ckpt.h5 || continue
    n=$((n + 1))
done
echo "ok   $n byte flips of the checkpoint: eval, predict and inspect end cleanly"
finish
