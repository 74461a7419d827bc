#!/usr/bin/env bash
# mpirun.sh - train with ddtrain under Open MPI's mpirun, on this host or on the hosts of a hostfile.
# Output and checkpoints go to runs/NAME/ and the run continues from its newest checkpoint
# (--resume auto): running the same command again continues it. Ctrl-C (or SIGTERM/SIGUSR1 to this
# script) checkpoints and stops every rank; Ctrl-C twice kills at once.
#
#   bash jobs/mpirun.sh [options] CONFIG.yaml [section.key=value ...]
#
#   -H, --hostfile FILE      hosts to run on, one per line: "node01 slots=8" (default: this host only)
#   -N, --ranks-per-node N   ranks per host (default: the cores of this host; the slots of the hostfile)
#   -n, --np N               ranks in all (default: ranks per host x hosts)
#   -t, --threads T          BLAS threads per rank (default: ddtrain's choice, cores / ranks per host)
#   --bind auto|none|core|socket|numa
#                            auto (default): bind each rank to T cores when -t is given (and, on
#                            this host alone, ranks x T cores are there), else none
#   --iface IFACE            network for MPI traffic, e.g. eth0, ib0 or 10.1.0.0/16 (sets Open MPI's
#                            btl_tcp_if_include and oob_tcp_if_include); needed when hosts have
#                            several networks (docker0, virbr0, ...) and only one connects them
#   --name NAME              run directory runs/NAME (default: the config's file name without .yaml)
#   --runs DIR               where run directories go (default: ./runs)
#   --mca KEY VALUE          any Open MPI parameter (repeatable), e.g. --mca pml ob1 --mca btl tcp,self,vader
#   --dry-run                print the mpirun command and exit
#
# Environment: DDTRAIN (the binary; default build/release/ddtrain of this checkout, else PATH),
# DD_MPIRUN_ARGS (more mpirun options, word-split), DD_EXEC (a command every rank runs ddtrain
# under, e.g. "apptainer exec ddtrain.sif"; DDTRAIN then names the binary inside, default ddtrain). Every host needs ddtrain, the config and the
# data at the same paths (a shared file system); rank 0 reads the data and writes checkpoints.
# More: docs/launch.md.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DD_WHAT=mpirun.sh
# shellcheck source=lib/launch.sh
source "$here/lib/launch.sh"

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }
hostfile='' per_node='' np='' threads='' bind=auto iface='' name='' runs=runs dry=0 mca=()
need() { [ $# -ge 2 ] && [ -n "$2" ] || dd_die "$1 needs a value (see --help)"; }
while [ $# -gt 0 ]; do
    case $1 in
        -H|--hostfile) need "$@"; hostfile=$2; shift 2 ;;
        -N|--ranks-per-node) need "$@"; per_node=$2; shift 2 ;;
        -n|--np) need "$@"; np=$2; shift 2 ;;
        -t|--threads) need "$@"; threads=$2; shift 2 ;;
        --bind) need "$@"; bind=$2; shift 2 ;;
        --iface) need "$@"; iface=$2; shift 2 ;;
        --name) need "$@"; name=$2; shift 2 ;;
        --runs) need "$@"; runs=$2; shift 2 ;;
        --mca) [ $# -ge 3 ] || dd_die "--mca needs KEY VALUE"; mca+=(--mca "$2" "$3"); shift 3 ;;
        --dry-run) dry=1; shift ;;
        -h|--help) usage; exit 0 ;;
        --) shift; break ;;
        -*) dd_die "unknown option '$1' (see --help)" ;;
        *) break ;;
    esac
done
for v in per_node np threads; do
    [ -z "${!v}" ] || [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || dd_die "--${v/per_node/ranks-per-node} '${!v}' is not a positive number"
done
[ $# -ge 1 ] || { usage >&2; dd_die "no config file given"; }
config=$1; shift
dd_check_config "$config"
dd_find_ddtrain "$(cd "$here/.." && pwd)"
command -v mpirun >/dev/null || dd_die "mpirun not found; install Open MPI (bash jobs/install-deps.sh)"

hosts=1
if [ -n "$hostfile" ]; then
    [ -r "$hostfile" ] || dd_die "hostfile '$hostfile' not found or not readable"
    hosts=$(grep -cvE '^[[:space:]]*(#|$)' "$hostfile" || true)
    [ "$hosts" -gt 0 ] || dd_die "hostfile '$hostfile' lists no hosts"
    if [ -z "$per_node" ]; then   # the first host's slots (default 1, like Open MPI)
        per_node=$(grep -vE '^[[:space:]]*(#|$)' "$hostfile" | head -n 1 | grep -oP 'slots=\K[0-9]+' || echo 1)
    fi
fi
per_node=${per_node:-$(nproc)}
np=${np:-$((per_node * hosts))}

cmd=(mpirun -np "$np")
[ -n "$hostfile" ] && cmd+=(--hostfile "$hostfile")
# more ranks than cores on one host is allowed (slower, but it runs: useful on laptops and in CI)
[ -z "$hostfile" ] && cmd+=(--oversubscribe)
# auto on this host alone: no binding when the ranks' threads need more cores than there are
if [ "$bind" = auto ] && [ -z "$hostfile" ] && [ -n "$threads" ] && [ $((per_node * threads)) -gt "$(nproc)" ]; then
    bind=none
fi
case $bind in
    auto) if [ -n "$threads" ]; then cmd+=(--map-by "ppr:$per_node:node:PE=$threads" --bind-to core)
          else cmd+=(--map-by "ppr:$per_node:node" --bind-to none); fi ;;
    none|core|socket|numa) cmd+=(--map-by "ppr:$per_node:node" --bind-to "$bind") ;;
    *) dd_die "--bind '$bind' is not auto, none, core, socket or numa" ;;
esac
if [ -n "$threads" ]; then
    cmd+=(-x "OPENBLAS_NUM_THREADS=$threads" -x "OMP_NUM_THREADS=$threads")
fi
dd_blas_env
cmd+=("${dd_blas_x[@]}")
[ -n "$iface" ] && cmd+=(--mca btl_tcp_if_include "$iface" --mca oob_tcp_if_include "$iface")
[ "$(id -u)" = 0 ] && cmd+=(--allow-run-as-root)
read -r -a extra <<<"${DD_MPIRUN_ARGS:-}"
cmd+=("${mca[@]}" "${extra[@]}")

name=${name:-$(basename "$config" .yaml)}
if [ $dry = 1 ]; then
    run_dir=$runs/$name
else
    dd_run_dir "$runs" "$name"
fi
# our checkpoint.dir first: a checkpoint.dir among the user's overrides wins
cmd+=("${dd_exec[@]}" "$ddtrain" train "$config" "checkpoint.dir=$run_dir" "$@" --resume auto)

if [ $dry = 1 ]; then
    printf '%q ' "${cmd[@]}"; echo
    exit 0
fi
dd_launch "$run_dir/train.log" \
    "== run '$name' started $(date -u +%FT%TZ) on $(hostname): $np rank(s), $per_node per host on $hosts host(s)" \
    "${cmd[@]}"
echo "== run '$name' ended $(date -u +%FT%TZ) with exit code $rc" | tee -a "$run_dir/train.log"
exit "$rc"
