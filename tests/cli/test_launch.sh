#!/usr/bin/env bash
# The launch scripts without a cluster: jobs/mpirun.sh's errors and the mpirun command it builds
# (hostfile, ranks per host, threads, binding, network), a real run on this host that a second run
# continues, a clean stop on SIGTERM; jobs/slurm/run.sh outside an allocation.
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"
unset OPENBLAS_NUM_THREADS
launch=(bash "$DD_SRC/jobs/mpirun.sh")

# lerr DESC CODE SUBSTRING ARGS...: the launcher exits with CODE and says SUBSTRING on stderr
lerr() {
    local desc=$1 code=$2 needle=$3 rc=0; shift 3
    timeout -k 5 60 "$@" >"$out" 2>"$err" || rc=$?
    if [ $rc -ne "$code" ]; then fail "$desc: exit code $rc, expected $code"; return 1; fi
    grep -qF -- "$needle" "$err" || { fail "$desc: stderr lacks '$needle'"; return 1; }
    echo "ok   $desc"
}

"$DDTRAIN" data synth --out train.h5 --samples 1000 --features 16 --classes 3 --seed 5 >/dev/null || fail "synth"
cat > run.yaml <<'YAML'
model:
  layers: [{type: dense, units: 32}, relu, {type: dense, units: 3}]
data: {train: train.h5}
optim: {name: sgd, lr: 0.05}
train: {batch_size: 50, epochs: 2}
checkpoint: {every_epochs: 1}
YAML

lerr "mpirun.sh: missing config" 2 "config file 'nope.yaml' not found" "${launch[@]}" nope.yaml
lerr "mpirun.sh: no config" 2 "no config file given" "${launch[@]}"
lerr "mpirun.sh: unknown option" 2 "unknown option '--frobnicate'" "${launch[@]}" --frobnicate run.yaml
lerr "mpirun.sh: bad rank count" 2 "--ranks-per-node 'two' is not a positive number" "${launch[@]}" -N two run.yaml
lerr "mpirun.sh: missing hostfile" 2 "hostfile 'hosts.txt' not found" "${launch[@]}" -H hosts.txt run.yaml
lerr "mpirun.sh: bad binary" 2 "DDTRAIN='/nonexistent/ddtrain' is not an executable" env DDTRAIN=/nonexistent/ddtrain "${launch[@]}" run.yaml
lerr "mpirun.sh: bad --bind" 2 "--bind 'tight' is not" "${launch[@]}" --bind tight run.yaml
lerr "slurm/run.sh outside an allocation" 2 "not inside a Slurm allocation" env -u SLURM_JOB_ID bash "$DD_SRC/jobs/slurm/run.sh" run.yaml

printf '# two hosts\nnode01 slots=4\n\nnode02 slots=4\n' > hosts.txt
"${launch[@]}" --dry-run -H hosts.txt -t 2 --iface ib0 --mca pml ob1 --name exp run.yaml optim.lr=0.1 >"$out" 2>"$err" ||
    fail "dry run: exit code $?"
for want in "mpirun -np 8 --hostfile hosts.txt " "--map-by ppr:4:node:PE=2 --bind-to core" "-x OPENBLAS_NUM_THREADS=2" \
            "--mca btl_tcp_if_include ib0 --mca oob_tcp_if_include ib0" "--mca pml ob1" \
            " train run.yaml checkpoint.dir=runs/exp optim.lr=0.1 --resume auto"; do
    grep -qF -- "$want" "$out" || fail "dry run lacks '$want': $(cat "$out")"
done
[ -d runs/exp ] && fail "dry run created runs/exp"
"${launch[@]}" --dry-run -N 3 -t 64 run.yaml >"$out" 2>&1
grep -qF -- "--map-by ppr:3:node --bind-to none" "$out" || fail "more threads than cores here: no binding ($(cat "$out"))"
env -u OPENBLAS_CORETYPE -u DD_BLAS_AUTO "${launch[@]}" --dry-run -H hosts.txt run.yaml >"$out" 2>&1
grep -qF -- "-x OPENBLAS_CORETYPE" "$out" && fail "no OPENBLAS_CORETYPE set: none passed on ($(cat "$out"))"
OPENBLAS_CORETYPE=Haswell DD_BLAS_AUTO=0 "${launch[@]}" --dry-run -H hosts.txt run.yaml >"$out" 2>&1
grep -qF -- "-x OPENBLAS_CORETYPE -x DD_BLAS_AUTO" "$out" || fail "the user's BLAS kernel settings reach every host ($(cat "$out"))"
echo "ok   mpirun.sh --dry-run builds the documented command"

# a real run on this host, then the same command again with one more epoch: it continues
timeout -k 5 120 "${launch[@]}" -N 2 -t 1 run.yaml >"$out" 2>"$err" || fail "mpirun.sh -N 2: exit code $?"
grep -q '^ddtrain .*: 2 rank(s) on 1 node(s), 1 BLAS thread(s) per rank' "$out" || fail "header: 2 ranks, 1 thread"
[ -f runs/run/ckpt-0000000040.h5 ] && [ -f runs/run/train.log ] || fail "runs/run/ lacks the checkpoint or the log"
timeout -k 5 120 "${launch[@]}" -N 2 -t 1 run.yaml train.epochs=3 >"$out" 2>"$err" || fail "second run: exit code $?"
grep -q '^resume: runs/run/ckpt-0000000040.h5' "$out" || fail "second run did not resume: $(grep resume "$out")"
[ "$(grep -c '^== run .run. started' runs/run/train.log)" = 2 ] || fail "runs/run/train.log does not hold both runs"
echo "ok   a second run continues the first"

# SIGTERM to the script: every rank checkpoints and stops (exit 138), nothing half-written
"${launch[@]}" -N 2 -t 1 --name long run.yaml train.epochs=100000 train.batch_size=5 checkpoint.every_steps=20 \
    >"$out" 2>"$err" &
pid=$!
for _ in $(seq 1 300); do grep -qs '"event": "checkpoint"' runs/long/metrics.jsonl && break; sleep 0.2; done
kill -TERM $pid
wait $pid
rc=$?
[ $rc = 138 ] || fail "SIGTERM to mpirun.sh: exit code $rc, expected 138"
grep -q 'stopping at step' "$out" || fail "ddtrain did not say it stopped"
grep -q '"event": "stopped"' runs/long/metrics.jsonl || fail "no 'stopped' record"
no_temp_files runs/long && echo "ok   SIGTERM to mpirun.sh: every rank checkpointed and stopped (exit code 138)"
finish
