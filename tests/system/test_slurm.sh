#!/usr/bin/env bash
# The shipped Slurm batch scripts (jobs/slurm/*.sbatch) on the real test cluster of
# slurm-cluster.sh (2 emulated nodes): submit, check that training ran to the end on the requested
# ranks and nodes, that the job is COMPLETED and the checkpoint exists; resubmit and check that it
# continued from the checkpoint. Preemption: a signal to the batch shell (what #SBATCH --signal=B:USR1@T
# sends before the time limit) stops training with a checkpoint; a resubmission, or the job's own
# requeue (DD_REQUEUE=1), continues from it.
#
#   test_slurm.sh srun-1node | mpirun-1node | srun-2nodes | mpirun-2nodes | preempt-resubmit | preempt-requeue | stall-requeue | errors
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"
case=${1:?usage: test_slurm.sh CASE}

command -v sbatch >/dev/null || { fail "sbatch not found: bash jobs/install-deps.sh test"; finish; }
scontrol ping 2>/dev/null | grep -q 'is UP' ||
    { fail "the test cluster is not up (SLURM_CONF=$SLURM_CONF): ctest runs system.slurm.up first"; finish; }

# The job sees what a user's job would: no test-harness MPI/BLAS settings, only these variables.
unset OPENBLAS_NUM_THREADS OMP_NUM_THREADS ${!OMPI_MCA_*} OMPI_ALLOW_RUN_AS_ROOT OMPI_ALLOW_RUN_AS_ROOT_CONFIRM
export DDTRAIN_HOME=$DD_SRC
exports=PATH,HOME,SLURM_CONF,DDTRAIN_HOME
# One exception: the emulated nodes are one host, where the container tests add and remove podman's
# bridge (10.88.0.1) while these run; Open MPI's TCP transport, having seen it at start, failed to bind
# to it mid-run. Keep MPI's TCP on loopback, which is what connects the emulated nodes anyway.
export OMPI_MCA_btl_tcp_if_include=lo OMPI_MCA_oob_tcp_if_include=lo
exports+=,OMPI_MCA_btl_tcp_if_include,OMPI_MCA_oob_tcp_if_include
# the scripts find build/release/ddtrain of the checkout themselves; say so only for another build
[ "$(readlink -f "$DDTRAIN")" = "$(readlink -f "$DD_SRC/build/release/ddtrain")" ] || exports+=,DDTRAIN
make_data "$DD_SCRATCH/data" || finish

jobs_started=()
cleanup() { [ ${#jobs_started[@]} -eq 0 ] || scancel "${jobs_started[@]}" 2>/dev/null; }
trap cleanup EXIT

# submit NAME SCRIPT [sbatch options...] -- [script args...]: prints the job id
submit() {
    local name=$1 script=$2 opts=() id; shift 2
    while [ $# -gt 0 ] && [ "$1" != -- ]; do opts+=("$1"); shift; done
    shift
    id=$(sbatch --parsable -J "$name" --export="$exports${SUBMIT_EXPORTS:+,$SUBMIT_EXPORTS}" \
         "${opts[@]}" "$DD_SRC/jobs/slurm/$script" "$@") || return 1
    jobs_started+=("$id")
    echo "$id"
}

# field ID KEY: a field of scontrol show job
field() { scontrol -o show job "$1" 2>/dev/null | grep -oP "(^| )$2=\K\S+"; }

# wait_done ID [LIMIT]: wait until the job has left the queue for good; prints its state
wait_done() {
    local id=$1 limit=${2:-180} t0=$SECONDS st
    while :; do
        st=$(field "$id" JobState)
        case $st in
            PENDING|CONFIGURING|RUNNING|COMPLETING|REQUEUED|REQUEUE_HOLD|REQUEUE_FED|RESIZING|SUSPENDED) ;;
            *) break ;;
        esac
        if (( SECONDS - t0 > limit )); then scancel "$id"; echo "TIMEOUT(test)"; return 1; fi
        sleep 0.5
    done
    echo "$st"
}

# check_job ID STATE EXIT: the job ended in STATE with exit code EXIT (scontrol ExitCode=EXIT:0)
check_job() {
    local id=$1 want=$2 code=$3 st ec
    st=$(wait_done "$id")
    ec=$(field "$id" ExitCode)
    if [ "$st" != "$want" ] || [ "$ec" != "$code:0" ]; then
        fail "job $id: JobState=$st ExitCode=$ec, expected $want with $code:0"
        echo "--- job output"; tail -n 30 "$(field "$id" StdOut)"
        return 1
    fi
    echo "ok   job $id: JobState=$st ExitCode=$ec"
}

# check_start RUN IDX RANKS NODES THREADS RESUMED: the IDX-th (1-based) start record of the run
check_start() {
    local m=runs/$1/metrics.jsonl
    $PY - "$m" "$2" "$3" "$4" "$5" "$6" <<'PY' || { fail "$1: start record $2 of $m"; return 1; }
import json, sys
m, idx, ranks, nodes, threads, resumed = sys.argv[1], *map(int, sys.argv[2:])
starts = [r for r in map(json.loads, open(m)) if r["event"] == "start"]
s = starts[idx - 1]
got = (s["ranks"], s["nodes"], s["threads_per_rank"], s["resumed_at_step"])
assert got == (ranks, nodes, threads, resumed), "ranks/nodes/threads/resumed_at_step %s, want %s" % (got, (ranks, nodes, threads, resumed))
PY
    echo "ok   $1 start $2: $3 ranks on $4 nodes, $5 thread(s) per rank, resumed_at_step $6"
}

# run_case NAME SCRIPT NODES TASKS_PER_NODE CPUS LAUNCHER: fresh run, then a resubmission one epoch longer
run_case() {
    local name=$1 script=$2 nodes=$3 tpn=$4 cpus=$5 launcher=$6 ranks=$(($3 * $4)) id out=$out spe
    step "submit $script ($launcher, $nodes node(s) x $tpn task(s) x $cpus CPU(s))"
    id=$(submit "$name" "$script" --nodes="$nodes" --ntasks-per-node="$tpn" --cpus-per-task="$cpus" \
         -- --launcher "$launcher" "$DD_SCRATCH/data/quick.yaml") || { fail "sbatch $script"; return 1; }
    check_job "$id" COMPLETED 0 || return 1
    [ "$(field "$id" NumNodes)" = "$nodes" ] || fail "job $id ran on $(field "$id" NumNodes) node(s), expected $nodes"
    out=$name-$id.out
    grep -q "^ddtrain .*: $ranks rank(s) on $nodes node(s), $cpus BLAS thread(s) per rank" "$out" ||
        fail "$out: header does not say $ranks rank(s) on $nodes node(s), $cpus BLAS thread(s)"
    expect_kernels "$out" clean
    [ "$launcher" = srun ] && ! grep -q "^== srun --mpi=pmix --cpus-per-task=$cpus .*--cpu-bind=cores" "$out" &&
        fail "$out: not launched with srun --mpi=pmix --cpus-per-task=$cpus --cpu-bind=cores"
    [ "$launcher" = mpirun ] && ! grep -q "^== mpirun -np $ranks --map-by slot:PE=$cpus --bind-to core -x OPENBLAS_NUM_THREADS" "$out" &&
        fail "$out: not launched with mpirun -np $ranks --map-by slot:PE=$cpus --bind-to core -x OPENBLAS_NUM_THREADS"
    # where Open MPI bound the ranks (DD_LAUNCHER_ARGS=--report-bindings): each to its $cpus core(s)
    if [[ ${DD_LAUNCHER_ARGS:-} == *--report-bindings* ]]; then
        $PY - "$out" "$ranks" "$cpus" <<'PY' || fail "$out: ranks not bound to $cpus core(s) each"
import os, re, sys
text, ranks, cpus = open(sys.argv[1]).read(), int(sys.argv[2]), int(sys.argv[3])
def cores(where):   # Open MPI 4.1: "SK0:L30:L20:L10:CR0-1:HT0-1:NM0" (or "socket 0[core 0[hwt 0]], ...")
    if "bound to all available processors" in where:
        return os.cpu_count()
    m = re.search(r"CR([0-9,-]+)", where)
    if not m:
        return len(re.findall(r"core \d+\[", where))
    return sum(int(b) - int(a) + 1 for a, _, b in (x.partition("-") if "-" in x else (x, "", x) for x in m.group(1).split(",")))
b = dict(re.findall(r"MCW rank (\d+) (?:is )?((?:not )?bound .*)", text))
assert sorted(map(int, b)) == list(range(ranks)), b
for r, where in b.items():
    assert cores(where) == min(cpus, os.cpu_count()), (r, where, cores(where))
PY
    fi
    [ -n "${DD_EXEC:-}" ] && ! grep -q "^== .* $DD_EXEC $DDTRAIN train " "$out" && fail "$out: ddtrain not run under DD_EXEC='$DD_EXEC'"
    check_start "$name" 1 "$ranks" "$nodes" "$cpus" 0
    spe=$(jfield "runs/$name/metrics.jsonl" start steps_per_epoch)
    [ "$(jfield "runs/$name/metrics.jsonl" "done" step)" = $((2 * spe)) ] || fail "$name: did not finish 2 epochs"
    ls "runs/$name/ckpt-$(printf %010d $((2 * spe))).h5" >/dev/null || fail "$name: no final checkpoint in runs/$name/"
    grep -q "^== job $id " "runs/$name/train.log" || fail "runs/$name/train.log lacks job $id"

    step "resubmit the same script with train.epochs=3"
    id=$(submit "$name" "$script" --nodes="$nodes" --ntasks-per-node="$tpn" --cpus-per-task="$cpus" \
         -- --launcher "$launcher" "$DD_SCRATCH/data/quick.yaml" train.epochs=3) || { fail "sbatch again"; return 1; }
    check_job "$id" COMPLETED 0 || return 1
    grep -q "^resume: $DD_SCRATCH/runs/$name/ckpt-$(printf %010d $((2 * spe))).h5" "$name-$id.out" ||
        fail "$name-$id.out: no 'resume:' from the final checkpoint of the first job"
    check_start "$name" 2 "$ranks" "$nodes" "$cpus" $((2 * spe))
    [ "$(grep -c '^epoch ' "$name-$id.out")" = 1 ] || fail "$name-$id.out: expected exactly one more epoch"
    [ "$(jfield "runs/$name/metrics.jsonl" "done" step)" = $((3 * spe)) ] || fail "$name: did not finish epoch 3"
    [ "$(grep -c '^== job ' "runs/$name/train.log")" = 4 ] || fail "runs/$name/train.log: expected start+end lines of 2 jobs"
}

# signal_mid_run ID NAME: wait for the first checkpoint of the run, then signal the batch shell
# the way #SBATCH --signal=B:USR1@T does before the time limit
signal_mid_run() {
    local m=runs/$2/metrics.jsonl
    poll 120 grep -qs '"event": "checkpoint"' "$m" || { fail "$2: no checkpoint within 120 s"; return 1; }
    scancel --batch --signal=USR1 "$1" || { fail "scancel --batch --signal=USR1 $1"; return 1; }
    echo "ok   signalled job $1 after its first checkpoint"
}

# check_stopped NAME: the run stopped on the signal with a checkpoint at that step; sets $stop
check_stopped() {
    local m=runs/$1/metrics.jsonl
    stop=$(jfield "$m" stopped step)
    if ! [ "${stop:-0}" -gt 0 ] || ! [ "$stop" -lt 2000 ]; then
        fail "$1: no 'stopped' record before step 2000 in $m"; stop=0; return 1
    fi
    ls "runs/$1/ckpt-$(printf %010d "$stop").h5" >/dev/null || { fail "$1: no checkpoint at the stop step $stop"; return 1; }
    grep -q 'got SIGUSR1: asking ddtrain to checkpoint and stop' "runs/$1/train.log" ||
        { fail "runs/$1/train.log: the batch script did not forward the signal"; return 1; }
    echo "ok   $1 stopped at step $stop with a checkpoint"
}

preempt_resubmit() {
    local id
    step "submit the long run (srun, 1 node x 2 tasks) and signal it mid-run"
    id=$(submit pr single-node.sbatch --ntasks-per-node=2 -- "$DD_SCRATCH/data/long.yaml") || { fail "sbatch"; return 1; }
    signal_mid_run "$id" pr || return 1
    check_job "$id" FAILED 138 || return 1     # stopped, not finished: ddtrain's 128 + SIGUSR1
    check_stopped pr || return 1
    step "resubmit the same command: it continues from the checkpoint to the end"
    id=$(submit pr single-node.sbatch --ntasks-per-node=2 -- "$DD_SCRATCH/data/long.yaml") || { fail "sbatch"; return 1; }
    check_job "$id" COMPLETED 0 || return 1
    grep -q "^resume: $DD_SCRATCH/runs/pr/ckpt-$(printf %010d "$stop").h5" "pr-$id.out" ||
        fail "pr-$id.out: no 'resume:' from the checkpoint of the stop"
    check_start pr 2 2 1 1 "$stop"
    [ "$(jfield runs/pr/metrics.jsonl "done" step)" = 2000 ] || fail "pr: did not reach train.max_steps 2000"
}

preempt_requeue() {
    local id
    # DD_BIND=none: the emulated nodes share the cores, and mpirun would bind the rank of each of
    # them to core 0; two MPI ranks polling on one core make every step slow
    step "submit the long run (mpirun, 2 nodes x 1 task, DD_REQUEUE=1, DD_BIND=none) and signal it mid-run"
    id=$(DD_REQUEUE=1 DD_BIND=none SUBMIT_EXPORTS=DD_REQUEUE,DD_BIND submit pq multi-node.sbatch --ntasks-per-node=1 \
         -- --launcher mpirun "$DD_SCRATCH/data/long.yaml") || { fail "sbatch"; return 1; }
    signal_mid_run "$id" pq || return 1
    step "the job requeues itself and continues"
    check_job "$id" COMPLETED 0 || return 1
    [ "$(field "$id" Restarts)" = 1 ] || fail "job $id: Restarts=$(field "$id" Restarts), expected 1"
    grep -q '^== requeueing job' "pq-$id.out" || fail "pq-$id.out: no requeue message"
    stop=$(jfield runs/pq/metrics.jsonl stopped step)
    [ "${stop:-0}" -gt 0 ] || { fail "pq: no 'stopped' record"; return 1; }
    grep -q 'got SIGUSR1: asking ddtrain to checkpoint and stop' runs/pq/train.log ||
        fail "runs/pq/train.log: the batch script did not forward the signal"
    check_start pq 2 2 2 1 "$stop"
    grep -q '^== mpirun -np 2 --bind-to none ' runs/pq/train.log || fail "runs/pq/train.log: DD_BIND=none not applied"
    [ "$(jfield runs/pq/metrics.jsonl "done" step)" = 2000 ] || fail "pq: did not reach train.max_steps 2000"
}

# stall-requeue: a rank that stops (SIGSTOP at step 20, every time the job runs) is named by the
# watchdog, the job ends with 75 and requeues itself (DD_REQUEUE=1) at most DD_REQUEUE_MAX=1 times
stall_requeue() {
    local id out=$out
    step "submit the long run (srun, 1 node x 2 tasks) with rank 1 stopping at step 20, train.timeout=5"
    id=$(DD_REQUEUE=1 DD_REQUEUE_MAX=1 DD_FAULT=stop@1:20 SUBMIT_EXPORTS=DD_REQUEUE,DD_REQUEUE_MAX,DD_FAULT \
         submit sq single-node.sbatch --ntasks-per-node=2 -- "$DD_SCRATCH/data/long.yaml" train.timeout=5) ||
        { fail "sbatch"; return 1; }
    step "the stall ends the job with 75, it requeues once, stalls again and stays FAILED"
    check_job "$id" FAILED 75 || return 1
    out=sq-$id.out
    [ "$(field "$id" Restarts)" = 1 ] || fail "job $id: Restarts=$(field "$id" Restarts), expected 1"
    [ "$(grep -c '^== requeueing job .*: a stall (exit code 75' "$out")" = 1 ] || fail "$out: expected one requeue after the stall"
    grep -q '^== not requeueing job .* after a stall: restarted 1 times already (DD_REQUEUE_MAX=1)' "$out" ||
        fail "$out: the second stall was requeued"
    [ "$(grep -c 'ddtrain: error: watchdog: rank 1 ' "$out")" -ge 2 ] || fail "$out: the watchdog did not name rank 1 both times"
}

# errors: a job with a missing config or binary fails at once, with the reason in its output
slurm_errors() {
    local id
    step "a missing config file and a missing binary"
    id=$(submit e1 single-node.sbatch -- "$DD_SCRATCH/data/nope.yaml") || { fail "sbatch"; return 1; }
    check_job "$id" FAILED 2 &&
        { grep -q "^ddtrain job: error: config file '$DD_SCRATCH/data/nope.yaml' not found" "e1-$id.out" ||
              fail "e1-$id.out: no one-line error naming the config"; }
    id=$(DDTRAIN=/nonexistent/ddtrain SUBMIT_EXPORTS=DDTRAIN submit e2 single-node.sbatch -- "$DD_SCRATCH/data/quick.yaml") ||
        { fail "sbatch"; return 1; }
    check_job "$id" FAILED 2 &&
        { grep -q "^ddtrain job: error: DDTRAIN='/nonexistent/ddtrain' is not an executable" "e2-$id.out" ||
              fail "e2-$id.out: no one-line error naming the binary"; }
    id=$(DDTRAIN_HOME=/nonexistent SUBMIT_EXPORTS=DDTRAIN_HOME submit e3 single-node.sbatch -- "$DD_SCRATCH/data/quick.yaml") ||
        { fail "sbatch"; return 1; }
    check_job "$id" FAILED 2 &&
        { grep -q "^ddtrain job: error: /nonexistent/jobs/slurm/run.sh not found" "e3-$id.out" ||
              fail "e3-$id.out: no error naming run.sh"; }
}

case $case in
    errors) slurm_errors ;;
    srun-1node) run_case s1 single-node.sbatch 1 2 2 srun ;;
    # also: ddtrain under a wrapper command, the way DD_EXEC="apptainer exec ddtrain.sif" runs an image
    mpirun-1node) DD_EXEC="env DD_VIA_EXEC=1" SUBMIT_EXPORTS=DD_EXEC,DDTRAIN run_case m1 single-node.sbatch 1 2 1 mpirun ;;
    srun-2nodes) run_case s2 multi-node.sbatch 2 2 1 srun ;;
    # 2 CPUs per task: BLAS threads and Open MPI's binding (--map-by slot:PE=2) follow the allocation
    mpirun-2nodes) DD_LAUNCHER_ARGS=--report-bindings SUBMIT_EXPORTS=DD_LAUNCHER_ARGS run_case m2 multi-node.sbatch 2 1 2 mpirun ;;
    preempt-resubmit) preempt_resubmit ;;
    preempt-requeue) preempt_requeue ;;
    stall-requeue) stall_requeue ;;
    *) fail "unknown case '$case'" ;;
esac
step "done"
finish
