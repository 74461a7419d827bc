#!/usr/bin/env bash
# The metrics log and the report (issue 14): every record of real 2-rank runs (a finished one with
# a skipped step, one stopped by a signal and resumed) validates against docs/metrics.schema.json
# with python3-jsonschema, and broken records are rejected; `ddtrain report` draws every plot from
# them (a finished run, one in progress, one with a damaged line, two runs overlaid), its errors are
# one line; headless Chromium opens the page, the DOM it built has the plots and their series, and
# its screenshot is kept in the scratch directory.
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"
: "${DD_SRC:?set DD_SRC to the source tree}"
schema=$DD_SRC/docs/metrics.schema.json
check=$here/report_check.py

# what this test needs: a missing one is a failure that says how to get it, never a skip
$PY -c 'import jsonschema' 2>/dev/null ||
    fail "python3-jsonschema is not installed: run 'bash jobs/install-deps.sh test'"
chromium=$(command -v chromium || true)
[ -n "$chromium" ] || fail "chromium is not installed: run 'bash jobs/install-deps.sh test'"

ddt in data synth --out d.h5 --samples 2000 --features 16 --classes 4 --seed 5 || { fail "synth"; finish; }
cat >run.yaml <<'YAML'
model:
  layers: [{type: dense, units: 32}, relu, {type: dense, units: 4}]
data: {train: d.h5, val_fraction: 0.1}
optim: {name: sgd, lr: 0.05, momentum: 0.9}
train: {batch_size: 32, epochs: 3, log_every: 5, skip_zscore: 50, skip_window: 16}
checkpoint: {dir: run, keep: 2, every_epochs: 1}
YAML
# 57 steps per epoch; a 10^4 spike on rank 1 at step 40 is skipped (a skip record)
DD_FAULT=spike@1:40 expect_ok "train 3 epochs on 2 ranks" 2 train run.yaml

# a second run, stopped by SIGUSR1 after its first epoch and resumed: stopped and a second start
timeout -k 5 120 "$MPIEXEC" -n 2 --oversubscribe "$DDTRAIN" train run.yaml checkpoint.dir=runB optim.lr=0.02 \
    train.epochs=100000 train.skip_zscore=0 >"$out" 2>"$err" &
pid=$!
for _ in $(seq 1 200); do grep -q '"event": "epoch"' runB/metrics.jsonl 2>/dev/null && break; sleep 0.05; done
# the report of the run while it trains (its log growing as it is read)
timeout -k 5 60 "$DDTRAIN" report runB >live-out.txt 2>live-err.txt || fail "report of runB while it trains: $(cat live-err.txt)"
grep -q '^wrote runB/report.html' live-out.txt && [ ! -s live-err.txt ] && grep -q 'in progress' runB/report.html &&
    echo "ok   report of runB while it trains" || fail "report of runB while it trains: $(cat live-out.txt live-err.txt)"
pkill -USR1 -P $pid -x "$(basename "$MPIEXEC")"
wait $pid
rc=$?
[ $rc = 138 ] || fail "runB stops on SIGUSR1 with exit code 138, got $rc"
stop=$($PY -c "import json; print([r for r in map(json.loads, open('runB/metrics.jsonl')) if r['event'] == 'stopped'][-1]['step'])")
expect_ok "runB resumed for 40 steps" 2 train run.yaml checkpoint.dir=runB optim.lr=0.02 train.skip_zscore=0 \
    train.epochs=100000 train.max_steps=$((stop + 40)) --resume auto

# --- the schema: a real validator, every line of both logs; broken records rejected
if ! $PY - "$schema" run/metrics.jsonl runB/metrics.jsonl <<'PY'; then
import json, sys
import jsonschema
schema = json.load(open(sys.argv[1]))
jsonschema.Draft202012Validator.check_schema(schema)
v = jsonschema.Draft202012Validator(schema)
seen = set()
bad = 0
for path in sys.argv[2:]:
    for i, line in enumerate(open(path), 1):
        rec = json.loads(line)
        seen.add(rec["event"])
        for e in v.iter_errors(rec):
            print("%s:%d: %s (at %s)" % (path, i, e.message, "/".join(map(str, e.absolute_path))))
            bad += 1
need = {"start", "step", "epoch", "checkpoint", "skip", "stopped", "done"}
assert need <= seen, "events not exercised: %s" % sorted(need - seen)
# records the logs lack, as train.c writes them: a stall, and the phase timers' fields
good = [
    {"event": "stall", "step": 12, "message": "rank 1 on h (pid 7) did not arrive in allreduce of step 12 for 5 s", "elapsed_s": 9.5},
    {"event": "epoch", "epoch": 1, "step": 57, "train_loss": 0.5, "train_acc": 0.8, "val_loss": None, "lr": 0.05,
     "samples": 1800, "samples_digest": "00112233445566ff", "samples_per_s": 1e4, "epoch_s": 0.2, "allreduce_s": 0.05,
     "data_wait_s": 0.01, "elapsed_s": 0.3, "wall_s": 0.3, "flops_per_sample": 3000, "mfu": None, "peak_flops": 1e11,
     "phases": dict({k: {"mean_s": 0.0, "max_s": 0.0, "max_rank": 0} for k in
                     ("data", "forward", "backward", "sync", "optimizer", "checkpoint", "evaluation", "other")},
                    data={"mean_s": 0.01, "max_s": 0.02, "max_rank": 1}, forward={"mean_s": 0.05, "max_s": 0.06, "max_rank": 0}),
     "sync": {"span_per_step": {"mean_s": 0.001, "max_s": 0.002, "max_rank": 1},
              "busy_per_step": {"mean_s": 0.001, "max_s": 0.001, "max_rank": 0},
              "buckets": 3, "overlap": "thread", "dtype": "f32", "bytes": 4096}},
]
for rec in good:
    for e in v.iter_errors(rec):
        print("a valid %s record rejected: %s" % (rec["event"], e.message))
        bad += 1
epoch = json.loads([l for l in open(sys.argv[2]) if '"epoch"' in l and '"event": "epoch"' in l][0])
def broken(**change):
    r = dict(epoch)
    for k, val in change.items():
        if val is KeyError:
            del r[k]
        else:
            r[k] = val
    return r
wrong = {
    "train_loss a string": broken(train_loss="0.5"),
    "no elapsed_s": broken(elapsed_s=KeyError),
    "a negative epoch": broken(epoch=-1),
    "an unknown field": broken(val_acuracy=0.9),
    "a bad digest": broken(samples_digest="xyz"),
    "a phase without max_rank": broken(phases=dict(epoch["phases"], sync={"mean_s": 0.1, "max_s": 0.2})),
    "a phase missing": broken(phases={k: p for k, p in epoch["phases"].items() if k != "sync"}),
    "no phases": broken(phases=KeyError),
    "an unknown event": {"event": "restart", "step": 1},
    "no event": {"step": 1, "elapsed_s": 0.1},
    "val_acc above 1": broken(val_acc=1.5),
}
for what, rec in wrong.items():
    if v.is_valid(rec):
        print("a broken record passed the schema:", what)
        bad += 1
sys.exit(1 if bad else 0)
PY
    fail "metrics.jsonl against docs/metrics.schema.json"
else
    echo "ok   schema: every record valid, broken ones rejected"
fi

# --- the report of the finished run
expect_ok "report of a finished run" 0 report run
grep -q '^wrote run/report.html (.* records) and 7 plots beside it: report-loss.svg' "$out" || fail "report says what it wrote"
[ -s "$err" ] && fail "report of an intact log printed: $(head -3 "$err")"
for p in loss accuracy lr throughput phases ranks timeline; do
    $PY -c "
import sys, xml.etree.ElementTree as ET
r = ET.parse('run/report-$p.svg').getroot()
assert r.tag == '{http://www.w3.org/2000/svg}svg' and r.get('id') == 'plot-$p', (r.tag, r.get('id'))" ||
        fail "run/report-$p.svg is a standalone SVG document with id plot-$p"
done
$PY "$check" run/report.html run=run/metrics.jsonl || fail "report.html has the plots and series of run/metrics.jsonl"
grep -q '<pre class="config-text">' run/report.html && grep -q 'skip_zscore: 50' run/report.html ||
    fail "report embeds the config file's text"
grep -q '<th>blas.kernels</th>' run/report.html || fail "report shows the start record (blas.kernels)"
no_temp_files run

# --- a run in progress: the log cut in the middle of a record
mkdir -p live
n=$(($(wc -l <run/metrics.jsonl) * 2 / 3))
head -n $n run/metrics.jsonl >live/metrics.jsonl
sed -n "$((n + 1))p" run/metrics.jsonl | head -c 40 >>live/metrics.jsonl
expect_ok "report of a run in progress" 0 report live
[ -s "$err" ] && fail "an incomplete last line is not a warning: $(head -3 "$err")"
grep -q 'last line still being written' live/report.html || fail "report says the last line is being written"
$PY "$check" live/report.html live=live/metrics.jsonl || fail "report of the run in progress"

# --- a damaged line in the middle: skipped with a warning naming file:line
mkdir -p damaged
{ head -n 4 run/metrics.jsonl; printf '{"event": "step", "step": 1\x00\x00garbage\n'; echo '{"event": "step", "step": '; tail -n +5 run/metrics.jsonl; } >damaged/metrics.jsonl
expect_ok "report of a log with damaged lines" 0 report damaged
grep -q '^ddtrain: warning: damaged/metrics.jsonl:5: .*line skipped' "$err" || fail "warning names damaged/metrics.jsonl:5"
grep -q '^ddtrain: warning: damaged/metrics.jsonl:6: .*line skipped' "$err" || fail "warning names damaged/metrics.jsonl:6"
grep -q '2 damaged line(s) skipped' "$out" || fail "report counts the damaged lines"
$PY "$check" damaged/report.html damaged=run/metrics.jsonl || fail "report of the damaged log has every intact record"

# --- phase timings with known values (in the format the phase timers write, replacing the measured
# ones), so the slowest rank and its ratio to the mean are known exactly
mkdir -p phases
$PY - "$schema" <<'PY' || fail "a log with phase records (test setup)"
import json, sys
import jsonschema
v = jsonschema.Draft202012Validator(json.load(open(sys.argv[1])))
with open("phases/metrics.jsonl", "w") as out:
    for line in open("run/metrics.jsonl"):
        r = json.loads(line)
        if r["event"] in ("epoch", "step"):
            e = r.get("epoch", 1)
            r["phases"] = {"data": {"mean_s": 0.01, "max_s": 0.02, "max_rank": 1},
                           "forward": {"mean_s": 0.05 * e, "max_s": 0.06 * e, "max_rank": 0},
                           "backward": {"mean_s": 0.1, "max_s": 0.3, "max_rank": 1 if e < 3 else 0},
                           "sync": {"mean_s": 0.03, "max_s": 0.031, "max_rank": 0},
                           "optimizer": {"mean_s": 0.0, "max_s": 0.0, "max_rank": 0},
                           "checkpoint": {"mean_s": 0.0, "max_s": 0.0, "max_rank": 0},
                           "evaluation": {"mean_s": 0.0, "max_s": 0.0, "max_rank": 0},
                           "other": {"mean_s": 0.0, "max_s": 0.0, "max_rank": 0}}
            r.update(sync_bytes=2704, flops_per_sample=4000, mfu=0.012, peak_flops=1e11)
        v.validate(r)
        out.write(json.dumps(r) + "\n")
PY
expect_ok "report of a log with phase timings" 0 report phases
$PY "$check" phases/report.html phases=phases/metrics.jsonl || fail "report draws the logged phases and the slowest ranks"
grep -q 'class="straggler"[^>]*>rank 1 ×3.00<' phases/report.html || fail "backward's slowest rank (1, 3x the mean) is named"

# --- two runs overlaid
expect_ok "report of two runs" 0 report run runB --out cmp.html
[ -s cmp.html ] && [ -s cmp-loss.svg ] && [ -s cmp-timeline.svg ] || fail "--out cmp.html writes cmp.html and cmp-*.svg"
$PY "$check" cmp.html run=run/metrics.jsonl runB=runB/metrics.jsonl || fail "report of two runs overlaid"

# --- errors: one line, non-zero exit, nothing written
expect_error "report of a missing directory" 0 1 "run directory 'nope' does not exist" report nope
mkdir -p empty nolog
: >empty/metrics.jsonl
expect_error "report of an empty log" 0 1 "empty/metrics.jsonl is empty" report empty
expect_error "report of a directory without a log" 0 1 "'nolog' has no metrics.jsonl" report nolog
expect_error "report of a missing directory among several" 0 1 "'nope' does not exist" report run nope --out x.html
expect_error "report into a missing directory" 0 1 "cannot write 'no/such/dir/r.html'" report run --out no/such/dir/r.html
expect_error "report --out a directory" 0 1 "--out nolog is a directory" report run --out nolog
expect_error "report without a run" 0 2 "report needs a RUN_DIR" report
expect_error "report with an unknown option" 0 2 "unknown option '--bogus' for report" report run --bogus
[ -e empty/report.html ] || [ -e nolog/report.html ] || [ -e x.html ] && fail "a failed report wrote a page"
no_temp_files .
expect_ok "report --help" in report --help
grep -q 'usage: ddtrain report RUN_DIR' "$out" || fail "report --help prints its usage"

# --- Chromium renders the page: its DOM has the plots and series, no errors, a screenshot (in the
# release build: the sanitizers check ddtrain's memory, not the browser's, and the page is the same)
if $sanitized; then
    echo "skip chromium under the sanitizers (the release build's run opens the page)"
elif [ -n "$chromium" ]; then
    page="file://$DD_SCRATCH/run/report.html"
    shot=$DD_SCRATCH/report-screenshot.png
    flags=(--headless --no-sandbox --disable-gpu --disable-dev-shm-usage --no-first-run --disable-extensions
           --user-data-dir="$DD_SCRATCH/chromium-profile" --enable-logging=stderr --v=0)
    timeout -s KILL 90 "$chromium" "${flags[@]}" --dump-dom "$page" >dom.html 2>chromium-dom.err ||
        fail "chromium --dump-dom exited with $? ($(tail -2 chromium-dom.err))"
    timeout -s KILL 90 "$chromium" "${flags[@]}" --screenshot="$shot" --window-size=1200,2000 "$page" \
        >/dev/null 2>chromium-shot.err || fail "chromium --screenshot exited with $? ($(tail -2 chromium-shot.err))"
    grep -q '<h1>ddtrain report</h1>' dom.html || fail "chromium loaded the page (its DOM: $(head -c 200 dom.html))"
    $PY "$check" dom.html run=run/metrics.jsonl || fail "the DOM chromium built has the plots and series"
    # the page's own errors (a console message, a failed load); the browser's start-up noise
    # about D-Bus, GPU or the sandbox is not about the page
    if grep -hE 'CONSOLE|Uncaught|net::ERR|Failed to load|Not allowed to load|report\.html.*(error|Error)' \
        chromium-dom.err chromium-shot.err; then
        fail "chromium reported errors about the page (above)"
    fi
    $PY - "$shot" <<'PY' || fail "screenshot $shot is a 1200x2000 PNG with content"
import os, struct, sys
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
w, h = struct.unpack(">II", data[16:24])
assert (w, h) == (1200, 2000), (w, h)
# a blank page compresses to a few KiB; text and plots to far more
assert len(data) > 40000, "only %d bytes: a blank page?" % len(data)
PY
    echo "screenshot: $shot"
fi
finish
