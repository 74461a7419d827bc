#!/usr/bin/env bash
# BLAS kernels that match the CPU, for real: where OpenBLAS picks a weaker kernel set than this
# CPU runs (a CPU newer than the library), every command re-executes once with the best set,
# verified; a user's OPENBLAS_CORETYPE and DD_BLAS_AUTO=0 are respected; a set that fails the
# self-check is replaced by the next one. Skipped (exit 77) where OpenBLAS already picks the
# CPU's own set: there is nothing to choose.
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"
unset OPENBLAS_CORETYPE DD_BLAS_AUTO DD_BLAS_FAULT
# LeakSanitizer cannot run under ptrace: the strace'd runs check execs, not leaks
noleak="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"

"$DDTRAIN" --version >/dev/null || exit 1
DD_BLAS_AUTO=0 "$DDTRAIN" --version >"$out"
own=$(sed -n 's/^BLAS kernels: \([A-Za-z0-9_]*\), .*/\1/p' "$out")
if ! grep -q "this CPU supports" "$out"; then
    echo "skip: OpenBLAS already runs the kernels that match this CPU ($own): $(grep '^BLAS kernels' "$out")"
    exit 77
fi
"$DDTRAIN" --version >"$out"
want=$(sed -n 's/^BLAS kernels: \([A-Za-z0-9_]*\), chosen by ddtrain (OpenBLAS picked .*self-check passed)$/\1/p' "$out")
[ -n "$want" ] || fail "--version names the kernel set ddtrain chose over OpenBLAS's $own"
grep -q "^ddtrain .*OpenBLAS.* $want " "$out" || fail "--version: OpenBLAS itself reports running $want"
echo "ok   OpenBLAS picks $own on this CPU; ddtrain chooses $want"

# a tiny run for every command: a text model (generate needs one) and its checkpoint
printf 'the cat sat on the mat. the dog sat on the log. ' >corpus.txt
for _ in 1 2 3 4 5; do cat corpus.txt corpus.txt >c2.txt && mv c2.txt corpus.txt; done
"$DDTRAIN" data text corpus.txt --out text.h5 --seq-len 16 >/dev/null || exit 1
cat >char.yaml <<'YAML'
model:
  layers:
    - {type: embedding, vocab: 20, dim: 8}
    - {type: lstm, hidden: 16, sequences: true}
    - {type: dense, units: 20}
data: {train: text.h5, val_fraction: 0.2}
train: {batch_size: 16, epochs: 1}
checkpoint: {dir: ck}
YAML

# traced NAME CMD...: run CMD under strace; the ddtrain process must re-execute exactly once,
# with OPENBLAS_CORETYPE=$want, and the command must succeed
traced() {
    local name=$1; shift
    ASAN_OPTIONS=$noleak timeout -k 5 120 strace -f -qq -v -s 65536 -e trace=execve -o trace.txt "$@" >"$out" 2>"$err"
    local rc=$?
    if [ $rc -ne 0 ]; then fail "$name: exit code $rc"; return; fi
    local n c
    n=$(grep -cE 'execve\("[^"]*/ddtrain", .* = 0$' trace.txt)
    c=$(grep -E 'execve\("[^"]*/ddtrain", .* = 0$' trace.txt | grep -c "\"OPENBLAS_CORETYPE=$want\"")
    if [ "$n" != 2 ] || [ "$c" != 1 ]; then
        fail "$name: expected 2 execs of ddtrain, the second with OPENBLAS_CORETYPE=$want; saw $n, $c with it"
        return
    fi
    echo "ok   $name re-executes once with OPENBLAS_CORETYPE=$want"
}
traced "train" "$DDTRAIN" train char.yaml --quiet
ckpt=$(ls ck/ckpt-*.h5 | tail -1)
traced "eval" "$DDTRAIN" eval "$ckpt" text.h5
traced "predict" "$DDTRAIN" predict "$ckpt" text.h5 --out pred.h5
traced "generate" "$DDTRAIN" generate "$ckpt" --prompt "the " --length 20
traced "data inspect" "$DDTRAIN" data inspect text.h5

# on every rank under mpirun: the header, the start record, and each rank's exec
expect_ok "train on 2 ranks" 2 train char.yaml checkpoint.dir=ck2
grep -q "^BLAS kernels: $want, chosen by ddtrain (OpenBLAS picked $own" "$out" || fail "2-rank header names $want chosen over $own"
$PY - "$want" "$own" <<PY || fail "start record: blas.kernels $want, origin auto, verified, the same on all ranks"
import json, sys
want, own = sys.argv[1:]
b = [r for r in map(json.loads, open("ck2/metrics.jsonl")) if r["event"] == "start"][-1]["blas"]
assert b["kernels"] == want and b["origin"] == "auto" and b["openblas_choice"] == own, b
assert b["verified"] is True and b["same_on_all_ranks"] is True and b["rejected"] == "", b
assert want in b["library"], b
PY
ASAN_OPTIONS=$noleak timeout -k 5 120 strace -f -qq -v -s 65536 -e trace=execve -o trace.txt "$MPIEXEC" -n 2 --oversubscribe \
    "$DDTRAIN" eval "$ckpt" text.h5 >"$out" 2>"$err" || fail "eval on 2 ranks under strace"
n=$(grep -E 'execve\("[^"]*/ddtrain", .* = 0$' trace.txt | grep -c "\"OPENBLAS_CORETYPE=$want\"")
[ "$n" = 2 ] && echo "ok   both ranks of mpirun re-execute with $want" || fail "mpirun: $n of 2 ranks re-executed with $want"

# a user's choice is kept, and nothing re-executes
OPENBLAS_CORETYPE=Haswell expect_ok "OPENBLAS_CORETYPE=Haswell" 2 train char.yaml checkpoint.dir=ck3
grep -q "^BLAS kernels: Haswell, from OPENBLAS_CORETYPE (set by the user)" "$out" || fail "user's Haswell kept"
OPENBLAS_CORETYPE=Haswell ASAN_OPTIONS=$noleak timeout 60 strace -f -qq -e trace=execve -o trace.txt "$DDTRAIN" --version >"$out" 2>&1
[ "$(grep -cE 'execve\("[^"]*/ddtrain", .* = 0$' trace.txt)" = 1 ] || fail "a user's OPENBLAS_CORETYPE: no re-execution"
# turned off
DD_BLAS_AUTO=0 expect_ok "DD_BLAS_AUTO=0" 2 train char.yaml checkpoint.dir=ck4
grep -q "^BLAS kernels: $own, OpenBLAS's choice (automatic choice off: DD_BLAS_AUTO=0" "$out" ||
    fail "DD_BLAS_AUTO=0 keeps $own"
$PY -c "
import json
b = [r for r in map(json.loads, open('ck4/metrics.jsonl')) if r['event'] == 'start'][-1]['blas']
assert b['origin'] == 'off' and b['kernels'] == '$own', b" || fail "DD_BLAS_AUTO=0: start record origin off"

# a chosen set that fails the self-check (test hook DD_BLAS_FAULT) is replaced by the next one
DD_BLAS_FAULT=$want expect_ok "self-check rejects $want" 2 train char.yaml checkpoint.dir=ck5
grep -q "rejected by the self-check: $want (first: sgemm .* exact value" "$out" || fail "header says $want was rejected and why"
# the next set: the strongest below $want that is still stronger than OpenBLAS's $own, verified in turn;
# where none lies between (OpenBLAS picks SkylakeX on an AVX-512 BF16 CPU), OpenBLAS's own choice
ladder="Cooperlake SkylakeX Haswell Sandybridge"
grep -q AuthenticAMD /proc/cpuinfo && ladder="Cooperlake SkylakeX Zen Bulldozer"
between=$(echo "$ladder" | tr ' ' '\n' | sed -n "/^$want\$/,/^$own\$/p" | sed '1d;$d' | head -n 1)
if [ -n "$between" ]; then
    next=$(sed -n 's/^BLAS kernels: \([A-Za-z0-9_]*\), chosen by ddtrain.*/\1/p' "$out")
    verified=True
else
    next=$(sed -n "s/^BLAS kernels: \([A-Za-z0-9_]*\), OpenBLAS's choice (.*rejected by the self-check: $want .*/\1/p" "$out")
    between=$own verified=False
fi
[ "$next" = "$between" ] && echo "ok   next choice: $next" || fail "a next kernel set after $want: want $between (got '$next')"
$PY -c "
import json
b = [r for r in map(json.loads, open('ck5/metrics.jsonl')) if r['event'] == 'start'][-1]['blas']
assert b['rejected'] == '$want' and b['kernels'] == '$next' and b['verified'] is $verified, b
assert 'exact value' in b['reason'], b" || fail "start record: rejected $want, runs $next"
# every better set rejected: OpenBLAS's own choice, and training still works
all=Cooperlake,SkylakeX,Haswell,Zen,Sandybridge,Bulldozer
DD_BLAS_FAULT=$all expect_ok "every better set rejected" 2 train char.yaml checkpoint.dir=ck6
grep -q "^BLAS kernels: $own, OpenBLAS's choice (this CPU supports .*; rejected by the self-check: ${want}[, ]" "$out" ||
    fail "all rejected: back to $own, saying which were rejected"

# --blas-check: the CI's gate for a kernel set
expect_ok "--blas-check" 0 --blas-check
grep -q "^BLAS self-check passed: $want" "$out" || fail "--blas-check reports $want"
OPENBLAS_CORETYPE=$want DD_BLAS_FAULT=$want expect_error "--blas-check fails a wrong kernel set" 0 1 \
    "BLAS self-check failed with the $want kernels: sgemm" --blas-check

# OpenBLAS retries forever when it cannot map its work buffers (128 MiB per
# thread): under an address-space limit no BLAS call starts; --version says so
# and training stops at once with the numbers (not under ASan: its shadow
# memory needs the address space itself)
if ! $sanitized; then
    lim=$((300 << 20))
    OPENBLAS_NUM_THREADS=2 timeout -s KILL 60 prlimit --as=$lim "$DDTRAIN" --version >"$out" 2>"$err"
    rc=$?
    [ $rc = 0 ] && grep -q "not self-checked: OpenBLAS needs 272 MiB of address space" "$out" &&
        echo "ok   --version under ulimit -v" || fail "--version under ulimit -v: rc $rc, $(cat "$out" "$err")"
    # 4 threads under 450 MiB: room for MPI_Init, not for the buffers
    OPENBLAS_NUM_THREADS=4 timeout -s KILL 60 prlimit --as=$((450 << 20)) "$DDTRAIN" train char.yaml checkpoint.dir=ck7 >"$out" 2>"$err"
    rc=$?
    [ $rc = 1 ] && grep -q "^ddtrain: error: OpenBLAS needs 544 MiB of address space for the work buffers of 4 BLAS thread(s)" "$err" &&
        echo "ok   train under ulimit -v: one error" || fail "train under ulimit -v: rc $rc, $(cat "$err")"
fi
finish
