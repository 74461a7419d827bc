#!/usr/bin/env bash
# Fault injection (issue 12): a rank fails in each way DD_FAULT=KIND@RANK:STEP makes it fail
# (src/core/fault.c, a test-only switch), at 2 and 4 ranks, and a kill loop SIGKILLs a random rank at a
# random step. What must happen (docs/reliability.md):
#  - exit (the rank exits with 3), segv (SIGSEGV): the launcher ends the job with that rank's code (3,
#    139) and names the rank; the other ranks are ended by the launcher;
#  - stop (SIGSTOP), hang (a busy loop in forward), slowio (a read that never returns), and a rank that
#    exits when the launcher lets the others run on: the watchdog (train.timeout = 5 s here) ends the
#    job with exit code 75 naming the rank that holds the others up (and its pid where it has one), on
#    stderr and in the metrics log's stall record; a stopped rank 0 is named by the others;
#  - nan (one rank's gradient), read (an I/O error on one rank), enospc (rank 0's checkpoint write
#    fails): every rank stops by itself with exit code 1 and one error line (naming the step, the
#    rank, or the checkpoint); the previous checkpoint is kept.
# After each failure: the job ended within timeout + 30 s (the wall time is printed; no tighter bound
# is asserted), the launcher's and each rank's exit codes, nothing left running, the checkpoints of
# the steps before the failure all there and all verify (ddtrain eval), no temporary file. Then
# --resume auto trains to the end and the final parameters equal an uninterrupted run's bitwise at the
# same rank count, or within 1e-5 relative at another (failed at 4 ranks, resumed at 2).
# Kill loop: 20 trials (2 under ASan) (seed printed; DD_FAULTS_SEED=N repeats a sequence) at 2 and 4 ranks: SIGKILL
# to one random rank once the metrics log shows a random step; the job must end with nothing left
# running and every checkpoint verifying; --resume auto then ends bitwise equal to the reference.
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"
t0=$SECONDS
section() { echo "== $* ($((SECONDS - t0)) s)"; }
# The release build runs everything; under AddressSanitizer (what it adds here is memory checking of
# the same paths, at 2-3x the time) the matrix runs at 2 ranks and the kill loop 2 trials (one at 2
# ranks, one at 4: a killed rank's memory is not checked, the resume's is), to keep the
# suite's time (DD_FAULTS_NPS, DD_FAULTS_TRIALS override; CTest runs the script in parts side by side,
# cli.faults.np2 / .np4 / .kill: the matrix at one rank count without the kill loop, or the kill loop
# alone, DD_FAULTS_NPS empty)
nps=${DD_FAULTS_NPS-2 4} trials=${DD_FAULTS_TRIALS:-20}
$sanitized && nps=${DD_FAULTS_NPS-2} trials=${DD_FAULTS_TRIALS:-2}
timeout_s=5
steps=48 # 2 epochs of 24 steps, a checkpoint every 4 steps
at=10    # faults fire at step 10: the checkpoints of steps 4 and 8 exist
final=ckpt-$(printf %010d $steps).h5

ddt in data synth --out d.h5 --samples 768 --features 16 --classes 4 --seed 7 || exit 1
cat >f.yaml <<YAML
model:
  layers: [{type: dense, units: 32}, relu, {type: dense, units: 4}]
data: {train: d.h5}
optim: {name: sgd, lr: 0.05, momentum: 0.9}
train: {batch_size: 32, epochs: 2, seed: 11, log_every: 1, timeout: $timeout_s}
checkpoint: {dir: ck, every_epochs: 1, every_steps: 4, keep: 0}
YAML
# the kill loop's run: 24 longer steps (a 512-wide MLP), so that a kill lands near the step chosen
ddt in data synth --out k.h5 --samples 1536 --features 32 --classes 4 --seed 9 || exit 1
cat >k.yaml <<YAML
model:
  layers: [{type: dense, units: 512}, relu, {type: dense, units: 512}, relu, {type: dense, units: 4}]
data: {train: k.h5}
optim: {name: sgd, lr: 0.02, momentum: 0.9}
train: {batch_size: 64, epochs: 1, seed: 5, log_every: 1, timeout: 30}
checkpoint: {dir: ck, every_epochs: 1, every_steps: 4, keep: 2}
YAML

# Each rank runs through rank.sh, which records its pid (ddtrain's own: exec) and its exit code by
# rank. The launcher ends a job with SIGTERM to each rank's process group, then SIGKILL: the wrapper
# outlives the SIGTERM to record the code of a rank that exits on it; a rank killed records none (-).
cat >rank.sh <<'SH'
#!/bin/sh
r=${OMPI_COMM_WORLD_RANK:-0}
trap : TERM
sh -c 'echo $$ >"$0"; exec "$@"' "$DD_RCDIR/pid.$r" "$@"
rc=$?
echo "$rc" >"$DD_RCDIR/rank.$r"
exit "$rc"
SH
chmod +x rank.sh
nrc=0
# start CONFIG NP ARGS...: ddtrain train CONFIG ARGS on NP ranks through rank.sh in the background
# ($job: the launcher's pid), DD_FAULT and OMPI_MCA_orte_abort_on_non_zero_status as the caller set
# them; output to $out/$err.
start() {
    local cfg=$1 np=$2; shift 2
    nrc=$((nrc + 1))
    export DD_RCDIR=$DD_SCRATCH/rc.$nrc
    mkdir -p "$DD_RCDIR"
    started=$EPOCHREALTIME
    timeout -k 5 120 "$MPIEXEC" -n "$np" --oversubscribe -x DD_RCDIR -x DD_FAULT -x ASAN_OPTIONS \
        "$DD_SCRATCH/rank.sh" "$DDTRAIN" train "$cfg" "$@" >"$out" 2>"$err" &
    job=$!
}
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
# launch NP ARGS...: the same with f.yaml in the foreground; the exit code, the wall time in $wall
launch() {
    start f.yaml "$@"
    wait "$job"
    local rc=$?
    wall=$(since "$started")
    return $rc
}
rank_code() { # (a rank killed while its wrapper wrote its code may leave the file empty)
    local c
    c=$(cat "$DD_RCDIR/rank.$1" 2>/dev/null)
    echo "${c:--}"
}
rank_codes() { # NP: "0:C 1:C ..."
    local r s=
    for ((r = 0; r < $1; r++)); do s+="$r:$(rank_code $r) "; done
    echo "${s% }"
}
alive() { pgrep -f -- "$DDTRAIN train $1" >/dev/null; }
# gone CONFIG DESC: no process of the job is left (the launcher has returned; give its ranks 5 s)
gone() {
    for _ in $(seq 1 50); do alive "$1" || return 0; sleep 0.1; done
    fail "$2: processes left running: $(pgrep -af -- "$DDTRAIN train $1" | cut -c1-200)"
    pkill -KILL -f -- "$DDTRAIN train $1"
    return 1
}

# params_equal A B TOL: every /params tensor of checkpoint A equals B's, bitwise (TOL 0) or within TOL
# relative to the tensor's largest magnitude, every value finite; prints the result.
cat >cmp.py <<'PY'
import sys, h5py, numpy as np
a, b, tol = sys.argv[1], sys.argv[2], float(sys.argv[3])
def params(path):
    out = {}
    with h5py.File(path, "r") as f:
        f["params"].visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
        return out, int(f.attrs["step"])
(A, sa), (B, sb) = params(a), params(b)
if sa != sb or sorted(A) != sorted(B) or not A:
    sys.exit(f"{a} (step {sa}, {sorted(A)}) and {b} (step {sb}, {sorted(B)}) hold different tensors")
worst = 0.0
for k in sorted(A):
    x, y = A[k], B[k]
    if x.shape != y.shape or x.dtype != y.dtype:
        sys.exit(f"{k}: {x.shape} {x.dtype} vs {y.shape} {y.dtype}")
    bad = np.count_nonzero(~np.isfinite(x)), np.count_nonzero(~np.isfinite(y))
    if bad != (0, 0):
        sys.exit(f"{k}: non-finite values ({bad[0]} in {a}, {bad[1]} in {b})")
    if tol == 0:
        if x.tobytes() != y.tobytes():
            sys.exit(f"{k}: {np.count_nonzero(x != y)} of {x.size} values differ (largest by {np.max(np.abs(x - y)):.3g})")
    else:
        rel = float(np.max(np.abs(x.astype(np.float64) - y))) / max(float(np.max(np.abs(y))), 1e-30)
        if not rel <= tol:
            sys.exit(f"{k}: relative difference {rel:.3g} > {tol}")
        worst = max(worst, rel)
print("bitwise equal" if tol == 0 else f"equal within {tol} (largest relative difference {worst:.2g})")
PY
params_equal() { "$PY" cmp.py "$@"; }

# ckpts_verify DIR DATA: every ckpt-*.h5 of DIR loads in eval (format, training state, each tensor's
# checksum and finite values); prints their steps
ckpts_verify() {
    local f steps=
    for f in "$1"/ckpt-*.h5; do
        [ -e "$f" ] || continue
        ddt in eval "$f" "$2" || { echo "$f does not verify: $(tail -n 1 "$err")"; return 1; }
        f=${f##*/ckpt-}
        steps+="$((10#${f%.h5})) "
    done
    echo "${steps% }"
}

section "uninterrupted reference runs"
export DD_FAULT='' ASAN_OPTIONS=${ASAN_OPTIONS:-}
for np in 2 4; do
    launch $np checkpoint.dir=ref$np
    rc=$?
    [ $rc = 0 ] && [ -f "ref$np/$final" ] || { fail "reference run at $np ranks: exit code $rc"; finish; }
    echo "ok   reference run at $np ranks: $steps steps, $wall s"
done
if r=$(params_equal ref4/$final ref2/$final 1e-5); then echo "ok   4 ranks vs 2: $r"; else fail "4 ranks vs 2: $r"; fi

# fault SPEC NP CODE SELF OTHERS NEEDLE RESUME_NP [ARGS...]: DD_FAULT=SPEC (KIND@RANK:STEP) at NP
# ranks (ARGS: more overrides). The launcher exits with CODE within timeout + 30 s, the failing rank
# with SELF, every other rank with OTHERS (|-separated alternatives; -: ended by the launcher);
# stderr holds NEEDLE (@PID@: the failing rank's pid) and matches the regular expression $also if
# set; exactly one 'ddtrain: error:' line for nan, read and enospc, and with the watchdog's code each of its
# lines and each stall record of the metrics log names the failing rank (one line when rank 0
# detects). Nothing is left running, the checkpoints of the steps before STEP are all there and verify,
# no temporary file. Then --resume auto at RESUME_NP ranks (none: no resume) trains to the end, equal
# to the reference run at RESUME_NP ranks: bitwise at NP, within 1e-5 at another count.
# noabort=1: the launcher lets the other ranks run on when one exits (Open MPI's
# orte_abort_on_non_zero_status=0), so each rank must end by itself (the launcher then exits with 0
# when they exit with 1).
fault() {
    local spec=$1 np=$2 code=$3 self=$4 others=$5 needle=$6 rnp=$7
    shift 7
    local kind=${spec%%@*} rank=${spec#*@} step=${spec#*:} rc r c n want='' s
    rank=${rank%%:*}
    local desc="$spec at $np ranks${noabort:+ (launcher does not abort)}" dir=ck-${spec//[@:]/-}-np$np${noabort:+-na}
    export DD_FAULT=$spec
    local asan_opt=$ASAN_OPTIONS
    # under ASan a SIGSEGV is reported and the rank exits with 1: the default action here, as in release
    $sanitized && [ "$kind" = segv ] && export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}handle_segv=0
    if [ -n "${noabort:-}" ]; then
        OMPI_MCA_orte_abort_on_non_zero_status=0 launch "$np" checkpoint.dir="$dir" "$@"
    else
        launch "$np" checkpoint.dir="$dir" "$@"
    fi
    rc=$?
    export ASAN_OPTIONS=$asan_opt DD_FAULT=''
    needle=${needle//@PID@/$(cat "$DD_RCDIR/pid.$rank" 2>/dev/null)}
    if [ $rc = 124 ] || [ "${wall%.*}" -ge $((timeout_s + 30)) ]; then
        fail "$desc: not detected in time ($wall s, exit code $rc)"; gone f.yaml "$desc"; return 1
    fi
    gone f.yaml "$desc" || return 1
    if [ $rc != "$code" ]; then fail "$desc: exit code $rc, expected $code (ranks $(rank_codes "$np"))"; return 1; fi
    for ((r = 0; r < np; r++)); do
        c=$(rank_code $r)
        if [ $r = "$rank" ]; then
            [[ "|$self|" == *"|$c|"* ]] || { fail "$desc: rank $r exited with $c, expected $self"; return 1; }
        elif [[ ! "|$others|" == *"|$c|"* ]]; then
            fail "$desc: rank $r exited with $c, expected $others"; return 1
        fi
    done
    if ! grep -qF -- "$needle" "$err"; then fail "$desc: stderr lacks '$needle'"; return 1; fi
    if [ -n "${also:-}" ] && ! grep -qE -- "$also" "$err"; then fail "$desc: stderr lacks /$also/"; return 1; fi
    n=$(grep -c '^ddtrain: error:' "$err")
    if [ "$code" = 75 ]; then
        if grep '^ddtrain: error:' "$err" | grep -qv "watchdog: rank $rank "; then
            fail "$desc: a watchdog line names another rank: $(grep '^ddtrain: error:' "$err" | grep -v "watchdog: rank $rank " | head -n 1)"
            return 1
        fi
        if grep '"event": "stall"' "$dir/metrics.jsonl" | grep -qv "watchdog: rank $rank "; then
            fail "$desc: a stall record of the metrics log names another rank: $(grep '"event": "stall"' "$dir/metrics.jsonl")"
            return 1
        fi
        if [ "$rank" != 0 ] && ! grep -q "\"event\": \"stall\".*watchdog: rank $rank " "$dir/metrics.jsonl"; then
            fail "$desc: no stall record in the metrics log"; return 1
        fi
        if [ "$rank" != 0 ] && [ "$n" != 1 ]; then fail "$desc: $n error lines, expected one"; return 1; fi
    elif [[ $kind =~ ^(nan|read|enospc)$ ]] && [ "$n" != 1 ]; then
        fail "$desc: $n error lines, expected one"; return 1
    fi
    # the checkpoints of the steps before the failure, all valid
    for ((s = 4; s <= step; s += 4)); do
        [ "$kind" = enospc ] && [ $s = "$step" ] && break
        want+="$s "
    done
    want=${want% }
    if ! c=$(ckpts_verify "$dir" d.h5); then fail "$desc: $c"; return 1; fi
    # A stopped rank can run again before the job ends: the watchdog's MPI_Abort has Open MPI send
    # SIGCONT, then SIGTERM, then SIGKILL to every rank, and while the other ranks' main threads still
    # wait in the step's allreduce the continued rank completes it with them, and SIGTERM's orderly
    # stop may save one more checkpoint (seen under load: 'stop@0:10' at 4 ranks left '4 8 12'), or a
    # temporary file when SIGKILL lands during the write. Such a checkpoint must be the uninterrupted
    # run's of its step, bitwise; a temporary file is never taken for a checkpoint (the next run removes it).
    local extra='' f
    if [ "$kind" = stop ] && [[ "$c" == "$want "* ]]; then
        extra=${c#"$want "}
        for s in $extra; do
            f=ckpt-$(printf %010d "$s").h5
            if ! r=$(params_equal "$dir/$f" "ref$np/$f" 0); then
                fail "$desc: the checkpoint of step $s, saved after the stop, is not the uninterrupted run's: $r"
                return 1
            fi
        done
        echo "note $desc: the stopped rank was continued by the launcher before the end: checkpoint(s) of step(s) $extra too, bitwise the uninterrupted run's"
    elif [ "$c" != "$want" ]; then
        fail "$desc: checkpoints of steps '$c' left, expected '$want'"; return 1
    fi
    if [ "$kind" != stop ]; then
        no_temp_files "$dir" || return 1
    elif find "$dir" -name '*.tmp*' | grep -q .; then
        echo "note $desc: a temporary checkpoint file left by the SIGKILL: $(find "$dir" -name '*.tmp*' | head -n 1)"
    fi
    echo "ok   $desc: exit code $rc after $wall s (ranks $(rank_codes "$np")), $n error line(s), checkpoints $c verify"
    [ "$rnp" = none ] && return 0
    launch "$rnp" checkpoint.dir="$dir" --resume auto
    rc=$?
    if [ $rc != 0 ]; then fail "$desc: --resume auto at $rnp ranks: exit code $rc"; return 1; fi
    grep -q "^resume: $dir/ckpt-$(printf %010d "${c##* }").h5" "$out" ||
        { fail "$desc: resumed $(grep '^resume' "$out"), expected from step ${c##* }"; return 1; }
    if ! r=$(params_equal "$dir/$final" "ref$rnp/$final" "$([ "$rnp" = "$np" ] && echo 0 || echo 1e-5)"); then
        fail "$desc: resumed at $rnp ranks: $r"; return 1
    fi
    no_temp_files "$dir" || return 1
    echo "ok   $desc: --resume auto at $rnp ranks from step ${c##* }, $r to the run at $rnp ranks"
}

wd="watchdog: rank"
pname='Process name: \[\[[0-9]+,[0-9]+\],'
for np in $nps; do
    section "faults at $np ranks"
    R=$((np - 1)) S=$((np / 2)) # the last rank, and one in the middle (at 2 ranks both are 1)
    o=$np                       # some failures at 4 ranks resume at 2
    [ $np = 4 ] && o=2
    # a rank dies: the launcher ends the job with its code and names it
    also="${pname}$R\]" fault exit@$R:$at $np 3 3 - "fault injection: rank $R exits at step $at" $o
    also="${pname}0\]" fault exit@0:$at $np 3 3 - "fault injection: rank 0 exits at step $at" $np
    also="${pname}$S\]" fault segv@$S:$at $np 139 139 - "Exit code:    139" $np
    # the watchdog: a rank stopped, busy elsewhere, waiting for its data, or gone
    fault stop@$S:$at $np 75 - "75|-" "$wd $S " $o
    fault stop@0:$at $np 75 - "75|-" "$wd 0 stopped responding" $np
    fault hang@$R:$at $np 75 - "75|-" "$wd $R on $(hostname) (pid @PID@) is in forward of step $at" $np
    fault slowio@$S:$at $np 75 - "75|-" "$wd $S on $(hostname) (pid @PID@) is in data wait of step $at" $o
    # (at 4 ranks only: the same at 2)
    [ $np = 4 ] && noabort=1 fault exit@$R:$at $np 75 3 "75|-" "$wd $R " none
    # every rank stops by itself with one message; the launcher exits with 1 (it ends the others when
    # the first exits), or, when it lets every rank end by itself, each rank's code is 1
    fault nan@$R:$at $np 1 "1|-" "1|-" "the gradient norm became NaN at step $at (epoch 1)" $np
    fault read@$S:$at $np 1 "1|-" "1|-" "reading the samples of step $at on rank $S failed" $o
    fault enospc@0:12 $np 1 "1|-" "1|-" "writing checkpoint 'ck-enospc-0-12-np$np/ckpt-0000000012.h5' failed: No space left on device (injected); free space in checkpoint.dir, the previous checkpoint is kept" $np
    # (no step record due: the norm is not computed, the optimizer's update loops see the NaN)
    noabort=1 fault nan@$S:$((at + 1)) $np 0 1 1 "the gradient became NaN or infinite at step $((at + 1)) (epoch 1)" $np \
        train.log_every=0
    noabort=1 fault read@$S:$at $np 0 1 1 "reading the samples of step $at on rank $S failed" none
    noabort=1 fault enospc@0:12 $np 0 1 1 "writing checkpoint 'ck-enospc-0-12-np$np-na/ckpt-0000000012.h5' failed" none
    fault read@0:$at $np 1 "1|-" "1|-" "reading the samples of step $at on rank 0 failed" none
done

if [ "$trials" = 0 ]; then section "done (no kill loop: DD_FAULTS_TRIALS=0)"; finish; fi
section "kill loop"
seed=${DD_FAULTS_SEED:-1212}
RANDOM=$seed
echo "     seed $seed (DD_FAULTS_SEED=$seed repeats these trials)"
kfinal=ckpt-0000000024.h5
for np in 2 4; do
    start k.yaml $np checkpoint.dir=kref$np
    wait "$job" && [ -f "kref$np/$kfinal" ] || { fail "kill loop: reference run at $np ranks: exit code $?"; finish; }
    echo "ok   kill loop: reference run at $np ranks, $(since "$started") s"
done
# last_step DIR: the newest step record of DIR's metrics log
last_step() {
    local l
    l=$(grep -o '"event": "step", "step": [0-9]*' "$1/metrics.jsonl" 2>/dev/null | tail -n 1)
    echo "${l##* }"
}
for trial in $(seq 1 "$trials"); do
    np=$((trial % 2 ? 2 : 4)) dir=kill$trial
    rank=$((RANDOM % np)) at=$((2 + RANDOM % 15)) # steps 2-16 of 24
    start k.yaml $np checkpoint.dir=$dir
    while kill -0 "$job" 2>/dev/null; do
        seen=$(last_step $dir)
        [ -n "$seen" ] && [ "$seen" -ge $at ] && break
        sleep 0.01
    done
    pid=$(cat "$DD_RCDIR/pid.$rank" 2>/dev/null)
    if ! kill -0 "$job" 2>/dev/null || [ -z "$pid" ] || ! kill -KILL "$pid" 2>/dev/null; then
        wait "$job"
        fail "kill loop trial $trial: the run ended before rank $rank was killed at step $at (exit code $?)"
        continue
    fi
    killed=$EPOCHREALTIME
    wait "$job"
    rc=$?
    took=$(since "$killed")
    gone k.yaml "kill loop trial $trial" || continue
    if [ $rc = 124 ]; then fail "kill loop trial $trial: the job did not end after rank $rank was killed"; continue; fi
    # rank.sh reports the SIGKILL as exit code 137 (without it Open MPI says 'exited on signal 9')
    if [ $rc != 137 ] || ! grep -qE "${pname}$rank\]" "$err" || ! grep -qE "Exit code: +137$" "$err"; then
        fail "kill loop trial $trial: exit code $rc, expected 137 naming rank $rank"; continue
    fi
    temps=$(find $dir -name '.ckpt-*.tmp.*' | wc -l)
    if ! c=$(ckpts_verify $dir k.h5); then fail "kill loop trial $trial: $c"; continue; fi
    start k.yaml $np checkpoint.dir=$dir --resume auto
    wait "$job"
    rc=$?
    from=$(grep -o '^resume: [^ ]*' "$out" || echo 'resume: none (from the start)')
    if [ $rc != 0 ]; then fail "kill loop trial $trial: --resume auto: exit code $rc"; continue; fi
    if ! r=$(params_equal $dir/$kfinal kref$np/$kfinal 0); then fail "kill loop trial $trial: $r"; continue; fi
    no_temp_files $dir || continue
    echo "ok   trial $trial: $np ranks, rank $rank SIGKILLed at step $seen (>= $at), job ended in $took s;" \
        "checkpoints ${c:-none} verify ($temps temporary file(s)); ${from#resume: }: $r"
done
section "done"
finish
