#!/usr/bin/env bash
# run.sh - start ddtrain on every task of the current Slurm allocation (what the .sbatch scripts run;
# also works from salloc). Output and checkpoints go to runs/<job name>/, and the run continues from
# its newest checkpoint (--resume auto), so resubmitting the same job continues it.
#
#   bash jobs/slurm/run.sh [--launcher srun|mpirun] CONFIG.yaml [section.key=value ...]
#
# Environment (all optional; sbatch passes the submitting shell's environment to the job):
#   DD_LAUNCHER   srun (default: srun --mpi=pmix) or mpirun (Open MPI's, inside the allocation)
#   DDTRAIN       the ddtrain binary (default: build/release/ddtrain of this checkout, else ddtrain on PATH)
#   DD_RUN_NAME   name of the run directory (default: the job name, sbatch -J NAME)
#   DD_RUNS       where run directories go (default: runs/ in the submit directory)
#   DD_BIND       auto (default: each rank bound to its --cpus-per-task cores), none, or launcher options
#                 used verbatim (e.g. "--cpu-bind=sockets" for srun, "--bind-to socket" for mpirun)
#   DD_REQUEUE    1: after a stop on a signal (time limit warning, preemption notice), or a stall the
#                 watchdog ended (exit code 75: a rank hung, stopped or lost its node), requeue the job
#                 so it continues by itself (needs a requeueable job: #SBATCH --requeue)
#   DD_REQUEUE_MAX  requeues after a stall at most (default 3: a stall that repeats is not the node's)
#   DD_LAUNCHER_ARGS  more options for srun/mpirun (word-split), e.g. "--mca btl_tcp_if_include ib0"
#   DD_EXEC       a command every rank runs ddtrain under, e.g. "apptainer exec ddtrain.sif" (the image's
#                 ddtrain; DDTRAIN then names the binary inside it, default ddtrain)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DD_WHAT=job
# shellcheck source=../lib/launch.sh
source "$here/../lib/launch.sh"

launcher=${DD_LAUNCHER:-srun}
while [ $# -gt 0 ]; do
    case $1 in
        --launcher) [ $# -ge 2 ] || dd_die "--launcher needs a value: srun or mpirun"; launcher=$2; shift 2 ;;
        --launcher=*) launcher=${1#*=}; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) break ;;
    esac
done
case $launcher in srun|mpirun) ;; *) dd_die "launcher '$launcher' is not srun or mpirun (--launcher / DD_LAUNCHER)" ;; esac

[ -n "${SLURM_JOB_ID:-}" ] || dd_die "not inside a Slurm allocation; submit with: sbatch jobs/slurm/single-node.sbatch CONFIG.yaml"
[ $# -ge 1 ] || dd_die "no config file given; usage: sbatch jobs/slurm/single-node.sbatch CONFIG.yaml [section.key=value ...]"
config=$1; shift
dd_check_config "$config"
dd_find_ddtrain "$(cd "$here/../.." && pwd)"
command -v "$launcher" >/dev/null || dd_die "'$launcher' is not on PATH on $(hostname); load the MPI/Slurm module or pick the other launcher"

name=${DD_RUN_NAME:-${SLURM_JOB_NAME:-ddtrain}}
dd_run_dir "${DD_RUNS:-${SLURM_SUBMIT_DIR:-$PWD}/runs}" "$name"

# BLAS threads per rank = CPUs per task (ddtrain also reads SLURM_CPUS_PER_TASK itself)
cpus=${SLURM_CPUS_PER_TASK:-1}
export OPENBLAS_NUM_THREADS=$cpus OMP_NUM_THREADS=$cpus
# srun steps inside the job inherit sbatch's --export list (SLURM_EXPORT_ENV) and would drop what this
# script and mpirun set for the ranks and for Open MPI's daemons (which mpirun starts with srun): after
# sbatch --export=NONE or --export=A,B, mpirun's PE=N binding put every rank on one core. The job's
# environment is already what the submitter chose; pass all of it on.
export SLURM_EXPORT_ENV=ALL

bind_opts=()
case ${DD_BIND:-auto} in
    auto) if [ "$launcher" = srun ]; then bind_opts=(--cpu-bind=cores)
          else bind_opts=(--map-by "slot:PE=$cpus" --bind-to core); fi ;;
    none) if [ "$launcher" = srun ]; then bind_opts=(--cpu-bind=none); else bind_opts=(--bind-to none); fi ;;
    *) read -r -a bind_opts <<<"$DD_BIND" ;;
esac
read -r -a extra <<<"${DD_LAUNCHER_ARGS:-}"

if [ "$launcher" = srun ]; then
    # srun does not inherit --cpus-per-task from sbatch (Slurm 22.05+): pass it on
    cmd=(srun --mpi=pmix --cpus-per-task="$cpus" --kill-on-bad-exit=1 "${bind_opts[@]}" "${extra[@]}")
else
    cmd=(mpirun -np "${SLURM_NTASKS:?SLURM_NTASKS is not set: request tasks with --ntasks or --ntasks-per-node}"
         "${bind_opts[@]}" -x OPENBLAS_NUM_THREADS -x OMP_NUM_THREADS)
    dd_blas_env
    cmd+=("${dd_blas_x[@]}")
    [ "$(id -u)" = 0 ] && cmd+=(--allow-run-as-root)
    cmd+=("${extra[@]}")
fi
# our checkpoint.dir first: a checkpoint.dir among the user's overrides wins
cmd+=("${dd_exec[@]}" "$ddtrain" train "$config" "checkpoint.dir=$run_dir" "$@" --resume auto)

dd_launch "$run_dir/train.log" \
    "== job $SLURM_JOB_ID (restart ${SLURM_RESTART_COUNT:-0}) of run '$name' started $(date -u +%FT%TZ): ${SLURM_NTASKS:-?} task(s) on ${SLURM_JOB_NUM_NODES:-?} node(s) [${SLURM_JOB_NODELIST:-?}], $cpus CPU(s) per task" \
    "${cmd[@]}"

echo "== job $SLURM_JOB_ID ended $(date -u +%FT%TZ) with exit code $rc" | tee -a "$run_dir/train.log"
requeue=
if [ -n "$dd_signalled" ] && [ "$rc" -gt 128 ]; then
    requeue="it continues from the checkpoint when it starts again"
elif [ "$rc" = 75 ]; then # DD_EXIT_STALL: the watchdog named the rank that held the others up
    if [ "${SLURM_RESTART_COUNT:-0}" -lt "${DD_REQUEUE_MAX:-3}" ]; then
        requeue="a stall (exit code 75, see the watchdog's line above); it continues from the newest checkpoint"
    else
        echo "== not requeueing job $SLURM_JOB_ID after a stall: restarted ${SLURM_RESTART_COUNT:-0} times already (DD_REQUEUE_MAX=${DD_REQUEUE_MAX:-3})" | tee -a "$run_dir/train.log"
    fi
fi
if [ -n "$requeue" ] && [ "${DD_REQUEUE:-0}" = 1 ]; then
    echo "== requeueing job $SLURM_JOB_ID: $requeue" | tee -a "$run_dir/train.log"
    scontrol requeue "$SLURM_JOB_ID" || echo "ddtrain job: scontrol requeue $SLURM_JOB_ID failed; resubmit the job to continue" >&2
fi
exit "$rc"
