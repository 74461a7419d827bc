#!/usr/bin/env bash
# The streaming reader end to end (issue 11), on real ranks and real files made by h5py
# (tests/cli/stream.py): every storage form trains to the same bits; N ranks match one rank;
# mid-epoch resume on other rank counts; sharded datasets; data.shuffle: chunks; files that
# change, differ between ranks, use filters ddtrain does not decode or are damaged; and a file 4x
# larger than each rank's memory limit (release build only).
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"
st() { "$PY" "$here/stream.py" "$@"; }
t0=$SECONDS
section() { echo "== $* ($((SECONDS - t0)) s)"; }

# Every rank's exit code, not just the launcher's: rankrc.sh runs a rank and writes its code.
cat >rankrc.sh <<'SH'
#!/bin/sh
"$@"
rc=$?
echo "$rc" >"$DD_RCDIR/rank.${OMPI_COMM_WORLD_RANK:-0}"
exit "$rc"
SH
chmod +x rankrc.sh
nrc=0
# new_rcdir: a fresh directory for the ranks' codes (a rank left over from a hung launch must not
# write into the next one's)
new_rcdir() {
    nrc=$((nrc + 1))
    export DD_RCDIR=$DD_SCRATCH/rc.$nrc
    mkdir -p "$DD_RCDIR"
}
# The launcher must not end the other ranks when one exits with an error (Open MPI's default):
# every rank has to get there by itself, or the launch times out as a hang. The launcher's own
# exit code is then 0 (so only these launches set it); each rank's is checked.
noabort=OMPI_MCA_orte_abort_on_non_zero_status=0
# launch NP ARGS...: ddtrain on NP ranks through rankrc.sh, output to $out/$err; 124 = hang
# (after $wait_s seconds, default 120).
launch() {
    local np=$1; shift
    new_rcdir
    env "$noabort" timeout -k 5 "${wait_s:-120}" "$MPIEXEC" -n "$np" --oversubscribe -x DD_RCDIR "$DD_SCRATCH/rankrc.sh" \
        "$DDTRAIN" "$@" >"$out" 2>"$err"
}

# judge DESC RC NP CODE NEEDLE...: the launch (exit code RC) did not hang, each of its NP ranks
# exited with CODE, stderr has exactly one 'ddtrain: error:' line and it holds every NEEDLE; no crash.
judge() {
    local desc=$1 rc=$2 np=$3 code=$4 r line; shift 4
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then fail "$desc: timed out (hang)"; return 1; fi
    for ((r = 0; r < np; r++)); do
        if [ "$(cat "$DD_RCDIR/rank.$r" 2>/dev/null)" != "$code" ]; then
            fail "$desc: rank $r exited with '$(cat "$DD_RCDIR/rank.$r" 2>/dev/null)', expected $code"; return 1
        fi
    done
    if [ "$(grep -c '^ddtrain: error:' "$err")" != 1 ]; then
        fail "$desc: expected exactly one 'ddtrain: error:' line"; return 1
    fi
    line=$(grep '^ddtrain: error:' "$err")
    for n in "$@"; do
        case $line in *"$n"*) ;; *) fail "$desc: the error line lacks '$n'"; return 1 ;; esac
    done
    if grep -qiE 'segmentation|core dumped|signal [0-9]|bus error|MPI_ABORT|backtrace' "$err" "$out"; then
        fail "$desc: crashed or aborted"; return 1
    fi
    echo "ok   $desc"
}

# expect_fail DESC NP CODE NEEDLE... -- ARGS...
expect_fail() {
    local desc=$1 np=$2 code=$3; shift 3
    local needles=()
    while [ "$1" != -- ]; do needles+=("$1"); shift; done
    shift
    launch "$np" "$@"
    judge "$desc" $? "$np" "$code" "${needles[@]}"
}

# same_epochs DESC DIR REF: every epoch record of run DIR has the samples and digest of run REF
same_epochs() {
    if ! diff <(st epochs "$2") <(st epochs "$3") >/dev/null; then
        fail "$1: epoch records differ from $3: $(st epochs "$2" | tr '\n' ' ') vs $(st epochs "$3" | tr '\n' ' ')"
        return 1
    fi
    echo "ok   $1: same samples and samples_digest per epoch"
}

# same_params DESC DIR REF [TOL]: the newest checkpoints' /params bitwise equal (or within TOL)
same_params() {
    local r
    if ! r=$(st cmp "$2" "$3" "${4:-0}"); then fail "$1: parameters differ from $3 ($r, tol ${4:-0})"; return 1; fi
    echo "ok   $1: parameters $r"
}

section "data files"
st make data || exit 1
N=1500
cat >base.yaml <<'YAML'
model:
  layers:
    - {type: dense, units: 64}
    - relu
    - {type: dense, units: 10}
optim: {name: sgd, lr: 0.05, momentum: 0.9}
data:
  train: data/f32.h5
train: {batch_size: 64, epochs: 2, seed: 7}
checkpoint: {dir: ck}
YAML

# ---------------------------------------------------------------------------------------------
section "1. equivalence of storage forms, and of rank counts"
expect_ok "float32 contiguous, 2 ranks (the reference)" 2 train base.yaml checkpoint.dir=ref --quiet
ref_epochs=$(st epochs ref)
# the digest must carry information: N samples, non-zero, another value each epoch
$PY - "$N" "$ref_epochs" <<'PY' || fail "reference epochs: $ref_epochs"
import sys
n, recs = int(sys.argv[1]), [l.split() for l in sys.argv[2].splitlines()]
assert [r[0] for r in recs] == ["1", "2"], recs
assert all(int(r[1]) == n for r in recs), recs
d = [r[2] for r in recs]
assert all(len(x) == 16 and int(x, 16) != 0 for x in d), f"digests {d} must be 64-bit hex, not zero"
assert d[0] != d[1], f"epochs 1 and 2 have the same digest {d}"
PY
expect_ok "another seed" 2 train base.yaml checkpoint.dir=seed8 train.seed=8 --quiet
[ "$(st epochs seed8)" != "$ref_epochs" ] || fail "another seed gives another samples_digest"
# every form of the same samples gives the same floats, hence the same steps, hence the same bits
# (under the sanitizers one form per reading path, lib.sh: chunked+gzip, a converted integer type,
# a big-endian one; u8gz on 4 ranks below)
forms="gz split f64 be begz u8 u8gz i16be"
$sanitized && forms="gz u8 i16be"
for f in $forms; do
    expect_ok "$f trains" 2 train base.yaml "data.train=data/$f.h5" "checkpoint.dir=ck-$f" --quiet || continue
    same_params "$f vs float32" "ck-$f" ref
    same_epochs "$f vs float32" "ck-$f" ref
done
# Ranks: the global batch is split across ranks and the gradient sums combined by an allreduce,
# so N ranks add the same float32 terms in another order: each step's gradient differs by a few
# ulps (relative 1e-7), and 48 SGD steps with momentum accumulate that to about 1e-6 (measured:
# 4e-7 at 1 and 3 ranks, 7e-7 at 4). tests/mpi/test_equivalence.c allows 1e-5 of
# max|a - b| / max|b| for the same comparison; so do we (a wrong or a missing sample moves the
# parameters by far more: the seed-8 run differs by ~1e-1).
tol=1e-5
nps="1 4" # (4 only under the sanitizers)
$sanitized && nps=4
for np in $nps; do
    expect_ok "float32 on $np rank(s)" "$np" train base.yaml "checkpoint.dir=np$np" --quiet || continue
    same_epochs "$np rank(s) vs 2" "np$np" ref
    same_params "$np rank(s) vs 2" "np$np" ref $tol
done
expect_ok "uint8 + scale on 4 ranks" 4 train base.yaml data.train=data/u8gz.h5 checkpoint.dir=u8np4 --quiet &&
    same_params "uint8 chunked on 4 ranks vs float32 on 4 ranks" u8np4 np4
st cmp seed8 ref $tol >/dev/null && fail "the tolerance $tol tells another seed's parameters apart"

# ---------------------------------------------------------------------------------------------
section "2. mid-epoch resume on other rank counts"
# 24 steps per epoch: stop at step 10 (epoch 1) on 2 ranks, resume on 4 to step 35 (epoch 2),
# finish on 1: the three runs together must see the epochs of the uninterrupted run.
mid=(train base.yaml checkpoint.dir=mid checkpoint.every_steps=5 --quiet)
expect_ok "stop at step 10 on 2 ranks" 2 "${mid[@]}" train.max_steps=10
$PY - <<'PY' || fail "the step-10 checkpoint is mid-epoch and carries the partial digest"
import h5py
f = h5py.File("mid/ckpt-0000000010.h5", "r")
assert f.attrs["batch_in_epoch"] == 10 and f.attrs["epoch"] == 0, dict(f.attrs)
assert f.attrs["epoch_samples"] == 640, f.attrs["epoch_samples"]
assert f.attrs["epoch_digest"] != 0, "epoch_digest is 0 mid-epoch"
PY
expect_ok "resume on 4 ranks, stop at step 35" 4 "${mid[@]}" train.max_steps=35 --resume auto
expect_ok "resume on 1 rank to the end" 1 "${mid[@]}" --resume auto
same_epochs "2 -> 4 -> 1 ranks" mid ref
same_params "2 -> 4 -> 1 ranks" mid ref $tol
expect_ok "stop at step 13 on 2 ranks" 2 train base.yaml checkpoint.dir=mid2 train.max_steps=13 --quiet
expect_ok "resume on 2 ranks" 2 train base.yaml checkpoint.dir=mid2 --resume auto --quiet
same_epochs "2 -> 2 ranks" mid2 ref
same_params "2 -> 2 ranks" mid2 ref

# ---------------------------------------------------------------------------------------------
section "3. sharded datasets"
sed 's|train: data/f32.h5|train: [data/shard-0.h5, data/shard-1.h5, data/shard-2.h5]|' base.yaml >shards.yaml
expect_ok "three shards listed in the YAML" 2 train shards.yaml checkpoint.dir=sh-list --quiet
same_params "shards (list) vs one file" sh-list ref
same_epochs "shards (list) vs one file" sh-list ref
expect_ok "three shards by a glob on the command line" 2 train base.yaml 'data.train=data/shard-*.h5' checkpoint.dir=sh-glob
grep -q 'shard' "$out" || fail "the header names the shards"
same_params "shards (glob) vs one file" sh-glob ref
same_epochs "shards (glob) vs one file" sh-glob ref
# the same shards as validation data give the one file's validation figures
expect_ok "validation on one file" 2 train base.yaml data.val=data/f32.h5 train.epochs=1 checkpoint.dir=val1 --quiet
expect_ok "validation on shards" 2 train base.yaml 'data.val=data/shard-[0-2].h5' train.epochs=1 checkpoint.dir=val3 --quiet
[ "$(st val val1)" = "$(st val val3)" ] || fail "validation on shards: $(st val val3) vs one file: $(st val val1)"
for odd in shape type labels; do
    printf 'data: {train: [data/shard-0.h5, data/odd-%s.h5]}\n' $odd >odd.yaml
    sed '/^data:/,/train: data/d' base.yaml >>odd.yaml
    case $odd in
    shape) what="holds 783 per sample but 'data/shard-0.h5' holds 784" ;;
    type) what="is float64 but 'data/shard-0.h5' holds float32" ;;
    labels) what="differ from 'data/shard-0.h5'" ;;
    esac
    expect_fail "a shard of another $odd" 2 1 "data.train:" "data/odd-$odd.h5" "$what" -- \
        train odd.yaml checkpoint.dir=odd
done
expect_fail "a glob that matches nothing" 2 1 "data.train: no file matches 'data/nomatch-*.h5'" -- \
    train base.yaml 'data.train=data/nomatch-*.h5' checkpoint.dir=nomatch

# ---------------------------------------------------------------------------------------------
section "4. data.shuffle: chunks"
chunks=(train base.yaml data.shuffle=chunks data.shuffle_window=4 --quiet)
expect_ok "chunks order on gzip chunks, 2 ranks" 2 "${chunks[@]}" data.train=data/gz.h5 checkpoint.dir=chk2
$PY - "$N" "$(st epochs chk2)" "$ref_epochs" <<'PY' || fail "chunk order epochs: $(st epochs chk2)"
import sys
n, recs, ref = int(sys.argv[1]), [l.split() for l in sys.argv[2].splitlines()], sys.argv[3].split()
assert len(recs) == 2 and all(int(r[1]) == n for r in recs), recs
assert all(int(r[2], 16) != 0 and r[2] not in ref for r in recs), (recs, ref)   # another order than global
PY
grep -o '"train_loss": [0-9.]*' chk2/metrics.jsonl | awk '{print $2}' | {
    read -r l1 && read -r l2 && awk -v a="$l1" -v b="$l2" 'BEGIN { exit !(b < a) }'
} || fail "training with the chunk order lowers the loss: $(grep -o '"train_loss": [0-9.]*' chk2/metrics.jsonl | tr '\n' ' ')"
for np in $nps; do
    expect_ok "chunks order on $np rank(s)" "$np" "${chunks[@]}" data.train=data/gz.h5 "checkpoint.dir=chk$np"
    same_epochs "chunks order, $np vs 2 ranks" "chk$np" chk2
    same_params "chunks order, $np vs 2 ranks" "chk$np" chk2 $tol
done
expect_ok "chunks order, stop mid-epoch on 4 ranks" 4 "${chunks[@]}" data.train=data/gz.h5 checkpoint.dir=chkr train.max_steps=30
expect_ok "chunks order, resume on 2 ranks" 2 "${chunks[@]}" data.train=data/gz.h5 checkpoint.dir=chkr --resume auto
same_epochs "chunks order resumed 4 -> 2 ranks" chkr chk2
same_params "chunks order resumed 4 -> 2 ranks" chkr chk2 $tol
expect_ok "chunks order on chunks that split the features" 2 "${chunks[@]}" data.train=data/split.h5 checkpoint.dir=chks
[ "$(st epochs chks | awk '{print $2}' | sort -u)" = "$N" ] || fail "split chunks: $N samples per epoch: $(st epochs chks)"
# Every sample exactly once: one global batch of all N samples is the full-batch gradient whatever
# the order, so its first step from the same initial parameters (lr 0 keeps them) must match the
# global order's, up to the order of the float sums. A repeated or a missing sample changes the
# step by about 1/N = 7e-4 relative: the file with sample 5 replaced by sample 6 must fail the check.
one=(train base.yaml "train.batch_size=$N" train.epochs=1 optim.momentum=0 optim.lr=0.5 --quiet)
expect_ok "initial parameters" 2 "${one[@]}" optim.lr=0 checkpoint.dir=init
expect_ok "one full batch, global order" 2 "${one[@]}" checkpoint.dir=full-g
expect_ok "one full batch, chunks order" 2 "${one[@]}" data.train=data/gz.h5 data.shuffle=chunks data.shuffle_window=2 checkpoint.dir=full-c
$PY - <<'PY'
import h5py, numpy as np
src = h5py.File("data/f32.h5", "r")
x, y = src["x"][...], src["y"][...]
x[5], y[5] = x[6], y[6]
with h5py.File("data/dup.h5", "w") as f:
    f.create_dataset("x", data=x, chunks=(64, x.shape[1]), compression="gzip")
    f["y"] = y
PY
expect_ok "one full batch, a sample repeated" 2 "${one[@]}" data.train=data/dup.h5 data.shuffle=chunks checkpoint.dir=full-d
if r=$(st cmpstep full-c full-g init 1e-5); then echo "ok   chunks order: every sample once per epoch ($r)"; else fail "chunks order full-batch step: $r"; fi
if r=$(st cmpstep full-d full-g init 1e-5); then fail "the full-batch check misses a repeated sample ($r)"; else echo "ok   the check sees a repeated sample ($r)"; fi

# ---------------------------------------------------------------------------------------------
section "5. errors"
# run_and NP MUTATION ARGS...: train in the background; after its first checkpoint, MUTATION.
run_and() {
    local np=$1 mutate=$2 i; shift 2
    launch "$np" "$@" &
    local pid=$!
    for ((i = 0; i < 300; i++)); do
        compgen -G 'live-ck/ckpt-*.h5' >/dev/null && break
        sleep 0.1
    done
    $mutate
    wait $pid
}
live=(train base.yaml data.train=live.h5 checkpoint.dir=live-ck checkpoint.every_steps=1 train.epochs=100000 --quiet)
# intact DESC: the newest checkpoint left by a failed run loads and evaluates, nothing half-written
intact() {
    local ck
    ck=$(compgen -G 'live-ck/ckpt-*.h5' | sort | tail -n 1)
    if [ -z "$ck" ]; then fail "$1: no checkpoint left"; return 1; fi
    no_temp_files live-ck
    expect_ok "$1: the last checkpoint ($ck) is intact" in eval "$ck" data/f32.h5
}
# shellcheck disable=SC2317 # the mutations run through run_and's $mutate
cut_live() { truncate -s $(($(stat -c %s live.h5) / 2)) live.h5; }
# shellcheck disable=SC2317
rewrite_live() { st rewrite live.h5; }
for form in f32 gz mmap; do # mmap: the contiguous file read through a mapping (DD_READ_MMAP=1): a SIGBUS
    rm -rf live-ck && cp "data/${form/mmap/f32}.h5" live.h5
    if [ $form = mmap ]; then export DD_READ_MMAP=1; fi
    run_and 2 cut_live "${live[@]}"
    judge "$form file truncated while training reads it" $? 2 1 "'live.h5'" "while training read it"
    unset DD_READ_MMAP
    intact "$form truncated"
done
rm -rf live-ck && cp data/f32.h5 live.h5
run_and 2 rewrite_live "${live[@]}"
judge "file rewritten in place while training reads it" $? 2 1 "'live.h5' (data.train) changed while training read it"
intact "rewritten"
# several files: the message names the one that changed, not the first
sed 's|train: data/f32.h5|train: [data/shard-0.h5, data/shard-1.h5, live.h5]|' base.yaml >live.yaml
rm -rf live-ck && cp data/shard-2.h5 live.h5
run_and 2 cut_live train live.yaml checkpoint.dir=live-ck checkpoint.every_steps=1 train.epochs=100000 --quiet
judge "the third of three files truncated" $? 2 1 "'live.h5'" "while training read it"

# ranks that see different files under the same relative path (MPMD: one working directory each)
st twins "$DD_SCRATCH/dirA" "$DD_SCRATCH/dirB"
new_rcdir
rank=(-x DD_RCDIR "$DD_SCRATCH/rankrc.sh" "$DDTRAIN" train "$DD_SCRATCH/base.yaml" data.train=d.h5 "checkpoint.dir=$DD_SCRATCH/mpmd")
env "$noabort" timeout -k 5 120 "$MPIEXEC" -n 1 -wdir "$DD_SCRATCH/dirA" "${rank[@]}" : -n 1 -wdir "$DD_SCRATCH/dirB" "${rank[@]}" >"$out" 2>"$err"
judge "ranks that see different d.h5" $? 2 1 "data.train: 'd.h5' is not the same file on every rank"
[ -e mpmd ] && [ -n "$(ls mpmd)" ] && fail "nothing is written when the ranks disagree"

# filters ddtrain does not decode: the filter by name, and the h5repack command that fixes it
expect_fail "lzf filter" 2 1 "'data/lzf.h5':/x is stored with the HDF5 filter 'lzf' (id 32000)" \
    "h5repack -f /x:GZIP=4 data/lzf.h5 OUT.h5" -- train base.yaml data.train=data/lzf.h5 checkpoint.dir=e1
expect_fail "scaleoffset filter" 2 1 "the HDF5 filter 'scaleoffset' (id 6)" "h5repack" -- \
    train base.yaml data.train=data/scaleoffset.h5 checkpoint.dir=e2

# a damaged chunk in the middle of the file (rows 704..767): found by the rank that reads it,
# while training; every rank stops with its message
st damage data/dmg-gz.h5 11 >/dev/null && st damage data/dmg-fl.h5 11 >/dev/null
expect_fail "damaged gzip chunk" 2 1 "'data/dmg-gz.h5':/x: chunk 11 does not inflate" "the file is damaged" -- \
    train base.yaml data.train=data/dmg-gz.h5 checkpoint.dir=e3
expect_fail "damaged chunk with a Fletcher-32 checksum" 2 1 "'data/dmg-fl.h5':/x: chunk 11 fails its Fletcher-32 checksum" -- \
    train base.yaml data.train=data/dmg-fl.h5 checkpoint.dir=e4
expect_fail "damaged chunk in eval" 2 1 "chunk 11 fails its Fletcher-32 checksum" -- eval "$(compgen -G 'ref/ckpt-*.h5' | sort | tail -n 1)" data/dmg-fl.h5

# not regular files: a FIFO (opening it for reading waits for a writer: it must not be opened)
# and a directory. A hung reader of the FIFO is let go by opening it for writing.
mkfifo data/fifo.h5 && mkdir -p data/dir.h5
wait_s=20 expect_fail "a FIFO as data.train" 2 1 "'data/fifo.h5' (data.train)" -- train base.yaml data.train=data/fifo.h5 checkpoint.dir=e5
wait_s=20 expect_fail "a FIFO in a glob" 2 1 "'data/fifo.h5' (data.train)" -- train base.yaml 'data.train=data/fi*.h5' checkpoint.dir=e6
for _ in 1 2 3; do timeout 1 sh -c ': >data/fifo.h5' 2>/dev/null; done
expect_fail "a directory as data.train" 2 1 "'data/dir.h5' (data.train) is a directory" -- train base.yaml data.train=data/dir.h5 checkpoint.dir=e7

# ---------------------------------------------------------------------------------------------
section "6. a dataset 4x larger than each rank's memory"
# A cgroup (v1 memory.limit_in_bytes, else v2 memory.max) below the one this script runs in holds
# the launcher and its ranks. Loading the 600 MB file into memory is killed there (the control);
# streaming it trains one epoch, and each rank's peak resident set stays far below the file.
cg=
# shellcheck disable=SC2317 # runs from the EXIT trap
cleanup() {
    if [ -n "$cg" ] && [ -d "$cg" ]; then
        local p
        while read -r p; do echo "$p" >"$cg_parent/cgroup.procs"; done <"$cg/cgroup.procs" 2>/dev/null
        rmdir "$cg" 2>/dev/null
    fi
    rm -f "$DD_SCRATCH/big.h5"
}
trap cleanup EXIT
make_cgroup() {   # sets cg, cg_parent, cg_limit_file; fails if no memory controller is writable
    local rel
    if [ -w /sys/fs/cgroup/memory/cgroup.procs ]; then
        rel=$(sed -n 's/^[0-9]*:memory:\(.*\)$/\1/p' /proc/self/cgroup)
        cg_parent=/sys/fs/cgroup/memory$rel
        cg_limit_file=memory.limit_in_bytes
    elif [ "$(stat -fc %T /sys/fs/cgroup 2>/dev/null)" = cgroup2fs ] && grep -qw memory /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then
        rel=$(sed -n 's/^0::\(.*\)$/\1/p' /proc/self/cgroup)
        cg_parent=/sys/fs/cgroup$rel
        cg_limit_file=memory.max
        grep -qw memory "$cg_parent/cgroup.subtree_control" 2>/dev/null ||
            echo +memory >"$cg_parent/cgroup.subtree_control" 2>/dev/null || return 1
    else
        return 1
    fi
    cg=$cg_parent/ddtrain-stream-$$
    mkdir "$cg" 2>/dev/null || { cg=; return 1; }
    echo $((150 << 20)) >"$cg/$cg_limit_file" || return 1
    [ -e "$cg/memory.swap.max" ] && echo 0 >"$cg/memory.swap.max"
    [ -e "$cg/memory.memsw.limit_in_bytes" ] && echo $((150 << 20)) >"$cg/memory.memsw.limit_in_bytes"
    return 0
}
# in_cgroup CMD...: CMD (and everything it starts) in the cgroup, from its first instruction
# shellcheck disable=SC2016 # expanded by that sh
in_cgroup() { sh -c 'echo $$ >"$0/cgroup.procs" && exec "$@"' "$cg" "$@"; }
if $sanitized; then
    echo "skip 6: AddressSanitizer's shadow memory and speed make a memory limit meaningless (release build only)"
elif ! make_cgroup; then
    echo "skip 6: no writable cgroup memory controller (v1 /sys/fs/cgroup/memory or v2 memory.max)"
    [ -n "$cg" ] && rmdir "$cg" 2>/dev/null; cg=
    [ $fails = 0 ] && { inproc_stop; echo "all other checks passed"; exit 77; }
else
    nbig=192000   # x 784 float32 = 602 MB, 4x the limit of 150 MiB
    st big big.h5 $nbig || fail "writing big.h5"
    echo "big.h5: $(($(stat -c %s big.h5) >> 20)) MiB, limit $(($(cat "$cg/$cg_limit_file") >> 20)) MiB ($cg_limit_file)"
    in_cgroup timeout -k 5 120 "$PY" "$here/stream.py" load big.h5 >"$out" 2>"$err"
    rc=$?
    if [ $rc = 137 ]; then
        echo "ok   loading big.h5 into memory is killed under the limit"
    else
        fail "the control: loading big.h5 under the limit should be killed (137), got $rc"
    fi
    cat >big.yaml <<'YAML'
model:
  layers:
    - {type: dense, units: 256}
    - relu
    - {type: dense, units: 10}
data: {train: big.h5}
optim: {name: sgd, lr: 0.01}
train: {batch_size: 256, epochs: 1}
checkpoint: {dir: big-ck}
YAML
    rm -f rss.*
    tb=$SECONDS
    # shellcheck disable=SC2016 # expanded by each rank's sh
    in_cgroup timeout -k 5 300 "$MPIEXEC" -n 2 --oversubscribe sh -c \
        'exec /usr/bin/time -f %M -o "rss.$OMPI_COMM_WORLD_RANK" "$@"' sh "$DDTRAIN" train big.yaml >"$out" 2>"$err"
    rc=$?
    if [ $rc = 0 ]; then
        echo "ok   one epoch of big.h5 on 2 ranks under the limit ($((SECONDS - tb)) s)"
    else
        fail "training on big.h5 under the limit: exit code $rc (137: killed by the limit)"
    fi
    [ "$(st epochs big-ck | awk '{print $2}')" = $nbig ] || fail "big.h5: the epoch saw $(st epochs big-ck) samples, expected $nbig"
    echo "peak memory: $(cat "$cg/memory.max_usage_in_bytes" 2>/dev/null || cat "$cg/memory.peak" 2>/dev/null) bytes in the cgroup"
    for r in 0 1; do
        kb=$(tail -n 1 "rss.$r" 2>/dev/null)
        if [ -n "$kb" ] && [ "$kb" -lt 120000 ]; then
            echo "ok   rank $r peak RSS $((kb >> 10)) MiB < 117 MiB (the file: $(($(stat -c %s big.h5) >> 20)) MiB)"
        else
            fail "rank $r peak RSS '${kb}' KiB, expected < 120000"
        fi
    done
fi
section "done"
finish
