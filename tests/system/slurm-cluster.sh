#!/usr/bin/env bash
# slurm-cluster.sh - a throw-away single-host Slurm cluster for the system tests (Debian 12, root,
# no systemd): a private munged, slurmctld and one slurmd per emulated node, all on 127.0.0.1.
#
#   bash tests/system/slurm-cluster.sh up      stop leftovers of an earlier run, start a fresh cluster
#   bash tests/system/slurm-cluster.sh down    cancel jobs, stop the daemons, kill stray job processes
#
# Everything lives in $DD_SLURM_DIR (default /tmp/ddtrain-slurm): slurm.conf, munge key and socket,
# spool, logs, pid files. Clients need SLURM_CONF=$DD_SLURM_DIR/slurm.conf (tests/system/lib.sh sets
# it); the host's /etc/slurm and /etc/munge are not touched. Ports: 16817 (slurmctld), 16818.. (slurmd).
# Knobs: DD_SLURM_NODES (emulated nodes, default 2), DD_SLURM_CPUS (CPUs advertised per node, default 4).
set -uo pipefail

DIR=${DD_SLURM_DIR:-/tmp/ddtrain-slurm}
NODES=${DD_SLURM_NODES:-2}
CPUS=${DD_SLURM_CPUS:-4}
CTLD_PORT=16817
SLURMD_PORT0=16818
CONF=$DIR/slurm.conf
HOST=$(hostname -s)
export SLURM_CONF=$CONF

log() { printf '[slurm-cluster %5.1fs] %s\n' "$(( ${EPOCHREALTIME/./} - T0 ))e-6" "$*"; }
T0=${EPOCHREALTIME/./}
die() { echo "slurm-cluster: error: $*" >&2; exit 1; }

# alive PID COMM: a live (not zombie) process with that command name
alive() {
    local pid=$1 st
    [[ "$pid" =~ ^[0-9]+$ ]] && [ -r "/proc/$pid/stat" ] || return 1
    st=$(sed -E 's/^[0-9]+ \(.*\) ([A-Za-z]).*/\1/' "/proc/$pid/stat" 2>/dev/null) || return 1
    [ "$st" != Z ] && [ "$st" != X ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ]
}
stop_pidfile() {   # stop_pidfile FILE COMM: TERM, wait up to 10 s, KILL
    local f=$1 comm=$2 pid
    [ -s "$f" ] || return 0
    pid=$(cat "$f")
    if alive "$pid" "$comm"; then
        kill -TERM "$pid" 2>/dev/null
        for _ in $(seq 1 50); do alive "$pid" "$comm" || break; sleep 0.2; done
        alive "$pid" "$comm" && { echo "slurm-cluster: $comm ($pid) ignores SIGTERM; SIGKILL" >&2; kill -KILL "$pid"; }
    fi
    rm -f "$f"
}
wait_for() {   # wait_for SECONDS CMD...: poll every 0.1 s
    local n=$(( $1 * 10 )); shift
    while [ $n -gt 0 ]; do "$@" && return 0; sleep 0.1; n=$((n - 1)); done
    return 1
}
ctld_ok() { scontrol ping 2>/dev/null | grep -q 'is UP'; }
munge_ok() { munge -S "$DIR/munge/sock" -n 2>/dev/null | unmunge -S "$DIR/munge/sock" >/dev/null 2>&1; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Processes of jobs of this cluster (batch scripts, srun, mpirun, orted, ddtrain) that outlived their
# daemons, e.g. after a killed run: they carry our SLURM_CONF and a SLURM_JOB_ID in their environment.
kill_job_leftovers() {
    local f pid n=0
    for f in $(grep -lzx "SLURM_CONF=$CONF" /proc/[0-9]*/environ 2>/dev/null); do
        pid=${f#/proc/}; pid=${pid%/environ}
        [ "$pid" = $$ ] && continue
        # slurmstepd has no pid file, daemons whose pid files are gone (state directory removed)
        # still run with our config; the others are processes of a job
        if alive "$pid" slurmstepd || alive "$pid" slurmd || alive "$pid" slurmctld ||
            grep -qz '^SLURM_JOB_ID=' "$f" 2>/dev/null; then
            kill -KILL "$pid" 2>/dev/null && n=$((n + 1))
        fi
    done
    [ $n -eq 0 ] || echo "slurm-cluster: killed $n leftover job process(es)"
    return 0
}

down() {
    if [ -s "$DIR/run/slurmctld.pid" ] && alive "$(cat "$DIR/run/slurmctld.pid")" slurmctld && ctld_ok; then
        local jobs
        jobs=$(squeue -h -o %i 2>/dev/null | tr '\n' ' ')
        if [ -n "${jobs// /}" ]; then
            log "cancelling jobs $jobs"
            scancel $jobs 2>/dev/null
            for _ in $(seq 1 60); do
                [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break
                sleep 0.5
            done
        fi
    fi
    local f
    for f in "$DIR"/run/slurmd-*.pid; do [ -e "$f" ] && stop_pidfile "$f" slurmd; done
    stop_pidfile "$DIR/run/slurmctld.pid" slurmctld
    stop_pidfile "$DIR/munge/pid" munged
    local pid
    for pid in $(pgrep -x munged); do   # ours without its pid file
        grep -qzF -- "--socket=$DIR/munge/sock" "/proc/$pid/cmdline" 2>/dev/null && kill -TERM "$pid"
    done
    kill_job_leftovers
    rm -rf /dev/shm/ddtrain-slurm-*
    log "cluster down (logs kept in $DIR/log)"
}

up() {
    [ "$(id -u)" = 0 ] || { echo "SKIP: the test cluster needs root (starts munged, slurmctld, slurmd)"; exit 77; }
    [[ "$NODES" =~ ^[1-9][0-9]?$ ]] || die "DD_SLURM_NODES='$NODES' is not a node count (1-99)"
    for c in munged slurmctld slurmd sbatch; do
        command -v "$c" >/dev/null || [ -x "/usr/sbin/$c" ] ||
            die "$c not found; install the test dependencies: bash jobs/install-deps.sh test"
    done
    down >/dev/null 2>&1   # leftovers of an earlier (maybe killed) run
    for p in $CTLD_PORT $(seq $SLURMD_PORT0 $((SLURMD_PORT0 + NODES - 1))); do
        port_open "$p" && die "127.0.0.1:$p is in use by another program; stop it or free the port"
    done
    rm -rf "$DIR"
    mkdir -p "$DIR"/{run,log,spool/ctld,tmp} || die "cannot create $DIR"
    chmod 755 "$DIR"

    # private munged: own key, own socket (munge wants the socket directory reachable by all)
    install -d -o munge -g munge -m 0755 "$DIR/munge"
    install -d -o munge -g munge -m 0700 "$DIR/munge/key.d"
    mungekey --create --keyfile="$DIR/munge/key.d/key" >/dev/null 2>&1 || die "mungekey failed"
    chown munge:munge "$DIR/munge/key.d/key" && chmod 0400 "$DIR/munge/key.d/key"
    runuser -u munge -- /usr/sbin/munged --socket="$DIR/munge/sock" --key-file="$DIR/munge/key.d/key" \
        --pid-file="$DIR/munge/pid" --log-file="$DIR/munge/log" --seed-file="$DIR/munge/key.d/seed" ||
        die "munged did not start; see $DIR/munge/log"
    wait_for 5 munge_ok || die "munged does not answer; see $DIR/munge/log"

    cat >"$CONF" <<EOF
# Generated by ddtrain tests/system/slurm-cluster.sh: a single-host test cluster. Do not edit.
ClusterName=ddtrain-test
SlurmctldHost=${HOST}(127.0.0.1)
SlurmctldPort=${CTLD_PORT}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# own munged; requeued jobs may start again after cred_expire seconds (default 120)
AuthInfo=socket=${DIR}/munge/sock,cred_expire=10
StateSaveLocation=${DIR}/spool/ctld
SlurmdSpoolDir=${DIR}/spool/d-%n
SlurmctldPidFile=${DIR}/run/slurmctld.pid
SlurmdPidFile=${DIR}/run/slurmd-%n.pid
SlurmctldLogFile=${DIR}/log/slurmctld.log
SlurmdLogFile=${DIR}/log/slurmd-%n.log
# per node: PMIx keeps its per-node directories there
TmpFS=${DIR}/tmp/%n
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
# look at pending (e.g. requeued) jobs every 2 s, not every 30-60 s
SchedulerParameters=bf_interval=2,sched_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# advertise DD_SLURM_CPUS per node even if the machine has fewer cores
SlurmdParameters=config_overrides
# the job scripts must ask for PMIx themselves (srun --mpi=pmix)
MpiDefault=none
ReturnToService=2
# finished jobs stay visible to scontrol for an hour (no slurmdbd, so no sacct)
MinJobAge=3600
SlurmctldTimeout=30
SlurmdTimeout=60
InactiveLimit=0
KillWait=10
JobRequeue=1
JobCompType=jobcomp/filetxt
JobCompLoc=${DIR}/log/jobcomp.log
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
TaskProlog=${DIR}/task-prolog.sh
NodeName=n[1-${NODES}] NodeHostname=${HOST} NodeAddr=127.0.0.1 Port=[${SLURMD_PORT0}-$((SLURMD_PORT0 + NODES - 1))] CPUs=${CPUS} RealMemory=2048 State=UNKNOWN
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    # Emulated nodes share one kernel. Open MPI names its shared-memory segments after the real
    # hostname and the local rank, so ranks of two emulated nodes would collide in /dev/shm: give
    # each emulated node its own directory (for srun tasks and mpirun's orted; not the batch step,
    # so that mpirun does not forward the first node's value).
    cat >"$DIR/task-prolog.sh" <<'EOF'
#!/bin/sh
[ -n "$SLURM_STEP_ID" ] || exit 0
d=/dev/shm/ddtrain-slurm-$SLURMD_NODENAME
mkdir -p "$d" && echo "export OMPI_MCA_btl_vader_backing_directory=$d"
EOF
    chmod 0755 "$DIR/task-prolog.sh"
    local n
    for n in $(seq 1 "$NODES"); do mkdir -p "$DIR/spool/d-n$n" "$DIR/tmp/n$n"; done

    slurmctld -f "$CONF" -c || die "slurmctld did not start; see $DIR/log/slurmctld.log"
    wait_for 30 ctld_ok || { tail -n 20 "$DIR/log/slurmctld.log" >&2; die "slurmctld does not answer"; }
    for n in $(seq 1 "$NODES"); do
        slurmd -f "$CONF" -N "n$n" || die "slurmd -N n$n did not start; see $DIR/log/slurmd-n$n.log"
    done
    local deadline=$((SECONDS + 60)) ready
    while :; do
        ready=$(sinfo -h -N -r -t idle,mixed,allocated -o '%N' 2>/dev/null | sort -u | wc -l)
        [ "$ready" -ge "$NODES" ] && break
        if [ $SECONDS -ge $deadline ]; then
            sinfo -N -l >&2
            tail -n 20 "$DIR"/log/slurmd-*.log >&2
            die "the nodes are not idle after 60 s"
        fi
        sleep 0.2
    done
    log "cluster up: $NODES emulated node(s) x $CPUS CPUs (SLURM_CONF=$CONF)"
    sinfo -N
}

case ${1:-} in
    up) up ;;
    down) down ;;
    *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
