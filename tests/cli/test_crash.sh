#!/usr/bin/env bash
# Hard crashes: every rank and the launcher killed with SIGKILL (a node failure, the OOM killer) in the
# middle of a run that writes an 8 MB checkpoint at every step, so most kills land inside a write.
# After each crash every file under a checkpoint's name must be a complete, readable checkpoint, and
# --resume auto must continue; temporary files of interrupted writes are removed by the next commit.
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"

expect_ok "synth" 0 data synth --out train.h5 --samples 2000 --features 64 --classes 4 --seed 5
cat > crash.yaml <<'YAML'
model:
  layers: [{type: dense, units: 1024}, relu, {type: dense, units: 1024}, relu, {type: dense, units: 4}]
data: {train: train.h5}
optim: {name: sgd, lr: 0.01, momentum: 0.9}
train: {batch_size: 32, epochs: 1000, seed: 3}
checkpoint: {dir: run, every_epochs: 0, every_steps: 1, keep: 3}
YAML

ranks_alive() { pgrep -f "$DDTRAIN train crash.yaml" >/dev/null; }

# every ckpt-*.h5 opens and holds the whole model and optimizer state for its step
check_all_valid() {
    $PY - <<'PY'
import glob, h5py, numpy as np, sys
files = sorted(glob.glob("run/ckpt-*.h5"))
assert files, "no checkpoint"
for f in files:
    with h5py.File(f, "r") as h:
        assert int(f[-13:-3]) == h.attrs["step"], f
        n = 0
        for g in ("params", "optim/momentum_buffer"):
            for layer in (0, 2, 4):
                for t in ("weight", "bias"):
                    a = h[f"{g}/layer{layer}/{t}"][()]
                    assert np.isfinite(a).all(), (f, g, layer, t)
                    n += a.size
        assert n == 2 * (64 * 1024 + 1024 + 1024 * 1024 + 1024 + 1024 * 4 + 4), (f, n)
print(len(files), "checkpoint(s) valid")
PY
}

resume=()
temps=0
for round in 1 2 3 4; do
    before=$(ls run/ckpt-*.h5 2>/dev/null | tail -1)
    setsid timeout -k 5 120 "$MPIEXEC" -n 2 --oversubscribe "$DDTRAIN" train crash.yaml "${resume[@]}" >"$out" 2>"$err" &
    pid=$!
    # wait for a checkpoint newer than the last round's, then a little longer, then kill
    for _ in $(seq 1 300); do
        now=$(ls run/ckpt-*.h5 2>/dev/null | tail -1)
        [ -n "$now" ] && [ "$now" != "$before" ] && break
        sleep 0.1
    done
    sleep "0.$((RANDOM % 5 + 1))"
    pkill -KILL -f "$DDTRAIN train crash.yaml"     # the ranks first, as a node failure would
    kill -KILL -- -$pid 2>/dev/null                # then the launcher and its process group
    wait $pid 2>/dev/null
    for _ in $(seq 1 50); do ranks_alive || break; sleep 0.1; done
    ranks_alive && fail "round $round: ranks still running after SIGKILL"
    n=$(find run -name '.ckpt-*.tmp.*' | wc -l)
    temps=$((temps + n))
    if check_all_valid >"$out" 2>"$err"; then
        echo "ok   round $round: killed mid-run, $(cat "$out") ($n temporary file(s) of an interrupted write)"
    else
        fail "round $round: a file under a checkpoint's name is incomplete or unreadable"
    fi
    resume=(--resume auto)
done
echo "     $temps interrupted write(s) over 4 crashes"

# a stale temporary file from an earlier crash, whatever happened above
touch run/.ckpt-0000000001.h5.tmp.99999
last=$(ls run/ckpt-*.h5 | tail -1)
step=$((10#$(basename "$last" .h5 | cut -d- -f2)))
expect_ok "resume auto after the crashes" 2 train crash.yaml --resume auto train.max_steps=$((step + 3))
grep -q "^resume: $last" "$out" || fail "resumed from the newest checkpoint $last"
grep -q "reached train.max_steps = $((step + 3))" "$out" || fail "trained 3 more steps"
no_temp_files run && echo "ok   temporary files of interrupted writes removed"
finish
