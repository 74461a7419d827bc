"""Helpers of tests/cli/test_stream.sh: dataset files in every storage form the streaming
reader takes (made with h5py), damage to them, and comparisons of checkpoints and of the
epoch records of metrics.jsonl. Usage: stream.py COMMAND ARGS (see the functions below)."""
import glob
import json
import os
import sys

import h5py
import numpy as np

N, D, K = 1500, 784, 10  # samples, features, classes of the equivalence data


def base():
    """uint8 pixels, the float32 the reader must produce from them, and labels."""
    rng = np.random.default_rng(11)
    u8 = rng.integers(0, 256, size=(N, D), dtype=np.uint8)
    f32 = (u8 * (1 / 255)).astype(np.float32)  # what numpy makes of a 1/255 scale
    w = rng.normal(size=(D, K))
    y = np.argmax(f32 @ w, axis=1).astype(np.int32)  # learnable labels
    return u8, f32, y


def write(path, x, y, attrs=None, **kw):
    with h5py.File(path, "w") as f:
        d = f.create_dataset("x", data=x, **kw)
        for k, v in (attrs or {}).items():
            d.attrs[k] = v
        f["y"] = y


def make(out):
    """The same samples stored in every form, shards of them, and files that must fail."""
    os.makedirs(out, exist_ok=True)
    u8, f32, y = base()
    gz = dict(compression="gzip", compression_opts=4, shuffle=True)
    scale = {"scale": 1 / 255}
    write(f"{out}/f32.h5", f32, y)
    write(f"{out}/gz.h5", f32, y, chunks=(64, D), fletcher32=True, **gz)
    write(f"{out}/split.h5", f32, y, chunks=(100, 7), **gz)  # chunks split the features
    write(f"{out}/f64.h5", f32.astype(np.float64), y.astype(np.int64))
    write(f"{out}/be.h5", f32.astype(">f4"), y)
    write(f"{out}/begz.h5", f32.astype(">f4"), y.astype(">i4"), chunks=(50, 392), **gz)
    write(f"{out}/u8.h5", u8, y.astype(np.uint8), scale)
    write(f"{out}/u8gz.h5", u8, y, scale, chunks=(128, D), **gz)
    write(f"{out}/i16be.h5", u8.astype(">i2"), y.astype(np.int16), scale)
    # three shards of the same samples, in order; the middle one chunked
    write(f"{out}/shard-0.h5", f32[:600], y[:600])
    write(f"{out}/shard-1.h5", f32[600:1100], y[600:1100], chunks=(64, D), **gz)
    write(f"{out}/shard-2.h5", f32[1100:], y[1100:])
    # shards that do not fit the others
    write(f"{out}/odd-shape.h5", f32[:100, :783], y[:100])
    write(f"{out}/odd-type.h5", f32[:100].astype(np.float64), y[:100])
    write(f"{out}/odd-labels.h5", f32[:100], y[:100].astype(np.float32))
    # filters ddtrain does not decode
    write(f"{out}/lzf.h5", f32, y, chunks=(64, D), compression="lzf")
    write(f"{out}/scaleoffset.h5", f32, y, chunks=(64, D), scaleoffset=3)
    # gzip chunks to damage: with and without a checksum
    write(f"{out}/dmg-gz.h5", f32, y, chunks=(64, D), **gz)
    write(f"{out}/dmg-fl.h5", f32, y, chunks=(64, D), fletcher32=True, **gz)


def damage(path, index):
    """Flip bytes in the middle of chunk `index` of /x, where zlib or Fletcher-32 notices."""
    with h5py.File(path, "r") as f:
        info = f["x"].id.get_chunk_info(int(index))
    off = info.byte_offset + info.size // 2
    with open(path, "r+b") as f:
        f.seek(off)
        b = bytearray(f.read(16))
        f.seek(off)
        f.write(bytes(v ^ 0x5A for v in b))
    print(f"{path}: chunk {index} at {info.chunk_offset} damaged at byte {off}")


def rewrite(path):
    """Overwrite the features of the middle rows in place: same size, new content and mtime."""
    with h5py.File(path, "r+") as f:
        x = f["x"]
        m = x.shape[0] // 2
        x[m : m + 10] = 0.5


def twins(dir_a, dir_b):
    """d.h5 in two directories: the same size and layout, another first row."""
    _, f32, y = base()
    for d, v in ((dir_a, 0.25), (dir_b, 0.75)):
        os.makedirs(d, exist_ok=True)
        x = f32[:300].copy()
        x[0] = v
        write(f"{d}/d.h5", x, y[:300])


def big(path, n):
    """n x 784 float32, contiguous, written a slab at a time; then out of the page cache."""
    n = int(n)
    rng = np.random.default_rng(5)
    with h5py.File(path, "w") as f:
        x = f.create_dataset("x", shape=(n, D), dtype=np.float32)
        f["y"] = rng.integers(0, K, size=n, dtype=np.int32)
        step = 8192
        for i in range(0, n, step):
            m = min(step, n - i)
            x[i : i + m] = rng.random((m, D), dtype=np.float32)
    fd = os.open(path, os.O_RDONLY)
    os.fsync(fd)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # the ranks' reads are charged to them
    os.close(fd)


def load(path):
    """What loading the dataset into memory would take (the control of the memory limit)."""
    with h5py.File(path, "r") as f:
        x = f["x"][...]
    print(f"loaded {x.nbytes >> 20} MiB")


def newest(ckdir):
    c = sorted(glob.glob(f"{ckdir}/ckpt-*.h5"))
    if not c:
        sys.exit(f"no checkpoint in {ckdir}")
    return c[-1]


def params(path):
    with h5py.File(newest(path) if os.path.isdir(path) else path, "r") as f:
        out = {}
        f["params"].visititems(lambda n, o: out.__setitem__(n, o[...]) if isinstance(o, h5py.Dataset) else None)
    return out


def cmp(a, b, tol="0"):
    """Exit 0 if the parameters of checkpoints (or the newest of directories) a and b are bitwise
    equal (tol 0), or within tol as max |a - b| / max |b| (the measure of tests/mpi)."""
    pa, pb = params(a), params(b)
    if sorted(pa) != sorted(pb):
        sys.exit(f"different tensors: {sorted(pa)} vs {sorted(pb)}")
    d = s = 0.0
    bitwise = True
    for k in pa:
        x, y = pa[k].astype(np.float64), pb[k].astype(np.float64)
        if x.shape != y.shape or not (np.isfinite(x).all() and np.isfinite(y).all()):
            sys.exit(f"{k}: shape {x.shape} vs {y.shape}, or not finite")
        bitwise &= pa[k].tobytes() == pb[k].tobytes()
        d, s = max(d, float(np.abs(x - y).max())), max(s, float(np.abs(y).max()))
    rel = d / s if s > 0 else d
    print(f"{'bitwise equal' if bitwise else 'differ'}: max rel diff {rel:.3g}")
    if float(tol) == 0:
        sys.exit(0 if bitwise else 1)
    sys.exit(0 if rel <= float(tol) else 1)


def cmpstep(a, b, init, tol):
    """Exit 0 if the steps a - init and b - init agree within tol as max |da - db| / max |db|."""
    pa, pb, p0 = params(a), params(b), params(init)
    d = s = 0.0
    for k in p0:
        da = pa[k].astype(np.float64) - p0[k]
        db = pb[k].astype(np.float64) - p0[k]
        d, s = max(d, float(np.abs(da - db).max())), max(s, float(np.abs(db).max()))
    rel = d / s if s > 0 else float("inf")
    print(f"steps differ by {rel:.3g} relative")
    sys.exit(0 if rel <= float(tol) else 1)


def epochs(path):
    """'epoch samples digest' of each epoch of a run (the last record of each epoch number: a
    resumed run appends to the log of the run it continues)."""
    path = f"{path}/metrics.jsonl" if os.path.isdir(path) else path
    last = {}
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            if r.get("event") == "epoch":
                last[r["epoch"]] = f"{r['epoch']} {r['samples']} {r['samples_digest']}"
    for e in sorted(last):
        print(last[e])


def val(path):
    """The validation loss and accuracy of each epoch."""
    with open(f"{path}/metrics.jsonl") as f:
        for line in f:
            r = json.loads(line)
            if r.get("event") == "epoch":
                print(r["epoch"], r["val_loss"], r["val_acc"])


if __name__ == "__main__":
    cmds = dict(make=make, damage=damage, rewrite=rewrite, twins=twins, big=big, load=load, cmp=cmp, cmpstep=cmpstep,
                epochs=epochs, val=val)
    cmds[sys.argv[1]](*sys.argv[2:])
