#!/usr/bin/env bash
# The trace (issue 14): --trace-steps FIRST:END (train.trace_steps) writes Chrome trace events of those
# steps, a file per rank flushed every step, merged by rank 0 at the window's end into
# <checkpoint.dir>/trace/trace.json; 'ddtrain trace merge DIR' merges after a crash. Checked at 2 real
# ranks: valid JSON, one process per rank and one thread per ddtrain thread (main, gradient sync,
# data reader) with their names, per step the phases, every layer's forward and backward inside its
# phase, each gradient bucket and each read; after a rank exits mid-window the merge of what was
# written is valid JSON with both ranks' events up to the crash, a line cut short left out.
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"

ddt in data synth --out d.h5 --samples 1024 --features 16 --classes 4 --seed 3 || exit 1
cat >t.yaml <<'YAML'
model:
  layers: [{type: dense, units: 64, bias: false}, batchnorm, relu, {type: dense, units: 64}, relu, {type: dense, units: 4}]
data: {train: d.h5, val_fraction: 0.125}
optim: {name: adam, lr: 0.003}
train: {batch_size: 32, epochs: 1, seed: 5, log_every: 0, timeout: 20}
comm: {bucket_mb: 0.0005, overlap: thread}
checkpoint: {dir: ck, every_epochs: 0, keep: 1}
YAML

cat >check.py <<'PY'
# check.py TRACE NRANKS FIRST END [CRASHED_RANK CRASH_STEP]: the merged trace's structure
import json, sys
from collections import defaultdict
path, P, a, b = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
crashed = (int(sys.argv[5]), int(sys.argv[6])) if len(sys.argv) > 6 else None
ev = json.load(open(path))["traceEvents"]
names = {(e["pid"], e["tid"]): e["args"]["name"] for e in ev if e["ph"] == "M" and e["name"] == "thread_name"}
for r in range(P):
    for t, n in ((0, "main"), (1, "gradient sync"), (2, "data reader")):
        assert names.get((r, t)) == n, (r, t, names)
X = [e for e in ev if e["ph"] == "X"]
assert all(e["ts"] >= 0 and e["dur"] >= 0 for e in X), [e for e in X if e["ts"] < 0 or e["dur"] < 0][:3]
assert {e["pid"] for e in X} == set(range(P)), {e["pid"] for e in X}
for r in range(P):
    last = crashed[1] if crashed else b  # the others wait in the crashed rank's step until the launcher ends them
    want = list(range(a, last))
    steps = sorted(e["args"]["step"] for e in X if e["pid"] == r and e["name"] == "step")
    assert steps == want, (r, steps, want)
    for s in want:
        mine = [e for e in X if e["pid"] == r and e["args"]["step"] == s]
        kinds = defaultdict(list)
        for e in mine:
            kinds[e["name"]].append(e)
        for ph in ("data", "forward", "backward", "sync", "optimizer"):
            assert kinds[ph], (r, s, ph, sorted(kinds))
        for layer, kind in enumerate(("dense", "batchnorm", "relu", "dense", "relu", "dense")):
            for what in ("forward", "backward"):
                le = kinds[f"{what} {layer} {kind}"]
                assert len(le) == 1, (r, s, what, layer, le)
                # inside its phase, on the main thread
                ph = [p for p in kinds[what] if p["ts"] - 1 <= le[0]["ts"] and le[0]["ts"] + le[0]["dur"] <= p["ts"] + p["dur"] + 1]
                assert ph and le[0]["tid"] == 0, (r, s, le, kinds[what])
        buckets = sorted(e["name"] for e in mine if e["cat"] == "sync")
        assert buckets == ["bucket 0", "bucket 1", "bucket 2"] and all(e["tid"] == 1 and e["args"]["bytes"] > 0
                                                                       for e in mine if e["cat"] == "sync"), buckets
        reads = [e for e in mine if e["name"] == "read"]
        assert len(reads) == 1 and reads[0]["tid"] == 2 and reads[0]["args"]["samples"] == 16, reads
print(f"{len(ev)} events, {P} ranks, steps {a}-{b - 1}" + (f", up to step {crashed[1] - 1} (rank {crashed[0]} exited)" if crashed else ""))
PY

export OMPI_MCA_orte_abort_on_non_zero_status=1
expect_ok "a trace of steps 3-5 at 2 ranks" 2 train t.yaml --trace-steps 3:6
grep -q "^trace of steps 3-5: ck/trace/trace.json ([0-9]* events of 2 rank(s))" "$out" || fail "the trace is announced: $(grep trace "$out")"
if r=$("$PY" check.py ck/trace/trace.json 2 3 6 2>&1); then echo "ok   trace.json: $r"; else fail "trace.json: $r"; fi

# a rank exits inside the window: the files so far merge into a valid trace
DD_FAULT=exit@1:7 ddt 2 train t.yaml --trace-steps 4:10 checkpoint.dir=crash
[ $? != 0 ] || fail "the run with a rank that exits should fail"
[ ! -e crash/trace/trace.json ] || fail "trace.json written although a rank crashed"
printf '{"name": "cut short", "ph": "X", "pid": 1, "ti' >>crash/trace/trace-rank00001.jsonl
expect_ok "trace merge after the crash" in trace merge crash/trace
grep -q "crash/trace/trace.json: [0-9]* events of 2 rank(s)" "$out" || fail "merge summary: $(cat "$out")"
if r=$("$PY" check.py crash/trace/trace.json 2 4 10 1 7 2>&1); then echo "ok   merged after the crash: $r"; else fail "merged after the crash: $r"; fi
expect_ok "trace merge --out" in trace merge crash/trace --out merged.json
cmp -s merged.json crash/trace/trace.json || fail "--out differs from the default output"

# a window the run never reaches: nothing is traced
expect_ok "a window after the run's end" 2 train t.yaml train.trace_steps=500:510 checkpoint.dir=late
[ ! -e late/trace ] || fail "a trace directory for a window never reached"
expect_error "a reversed window" in 1 "train.trace_steps = '6:3': expected FIRST:END" train t.yaml --trace-steps 6:3 checkpoint.dir=bad
expect_error "merge of a directory without traces" in 1 "holds no per-rank trace files" trace merge late
expect_error "merge of a missing directory" in 1 "cannot open the trace directory 'nowhere'" trace merge nowhere
finish
