#!/usr/bin/env bash
# Several hosts without containers: 3 network namespaces ("hosts" with their own interface, address
# and hostname) on a bridge in a 4th "switch" namespace, one rank per host, MPI over TCP, started by
# the shipped jobs/mpirun.sh with a hostfile. Nothing is added to the host's own network namespace.
# Checks: 3 ranks on 3 nodes, traffic through the bridge, final parameters bitwise equal to the same
# job with 3 ranks on one host; a stop on SIGTERM to the launcher reaches the ranks on the other
# hosts (checkpoint, exit 138) and the rerun continues to the same parameters as an uninterrupted run.
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"

NODES=3
PREFIX=ddt
SUBNET=10.213.61
SW=$PREFIX-sw
node() { echo "$PREFIX-h$1"; }
ip_of() { echo "$SUBNET.$((10 + $1))"; }

down() {
    local i n
    for i in $(seq 1 $NODES); do
        n=$(node "$i")
        # whatever we started inside the namespace (orted, ranks) goes with it
        ip netns pids "$n" 2>/dev/null | xargs -r kill -KILL 2>/dev/null
        ip netns del "$n" 2>/dev/null
        rm -rf "/etc/netns/$n"
    done
    ip netns del "$SW" 2>/dev/null
    rmdir /etc/netns 2>/dev/null
    return 0
}

up() {
    local i n hosts="127.0.0.1 localhost"$'\n'
    ip netns add "$SW" && ip -n "$SW" link set lo up && ip -n "$SW" link add br0 type bridge &&
        ip -n "$SW" link set br0 up || return 1
    for i in $(seq 1 $NODES); do hosts+="$(ip_of "$i") $(node "$i")"$'\n'; done
    for i in $(seq 1 $NODES); do
        n=$(node "$i")
        ip netns add "$n" &&
        ip -n "$SW" link add "p$i" type veth peer name mpi0 netns "$n" &&
        ip -n "$SW" link set "p$i" master br0 up &&
        ip -n "$n" link set lo up &&
        ip -n "$n" addr add "$(ip_of "$i")/24" dev mpi0 &&
        ip -n "$n" link set mpi0 up || return 1
        # ip netns exec bind-mounts /etc/netns/<ns>/hosts over /etc/hosts: names for the hosts
        mkdir -p "/etc/netns/$n" && printf '%s' "$hosts" >"/etc/netns/$n/hosts"
    done
    poll 10 bash -c "[ \$(bridge -n $SW link show | grep -c 'state forwarding') -ge $NODES ]"
}

# bytes the hosts sent through the bridge
bridge_bytes() {
    local i sum=0
    for i in $(seq 1 $NODES); do
        sum=$((sum + $(ip netns exec "$SW" cat "/sys/class/net/p$i/statistics/rx_bytes")))
    done
    echo $sum
}

# on host 1 (its namespace, its hostname): CMD...
on_host1=(ip netns exec "$(node 1)" unshare --uts /bin/sh -c 'hostname "$1"; shift; exec "$@"' sh "$(node 1)")

launch=(bash "$DD_SRC/jobs/mpirun.sh")
# across the hosts: the hostfile, one rank each, MPI on the test network only, our agent instead of ssh
hostfile=$DD_SCRATCH/hostfile
across=(-H "$hostfile" -N 1 -t 1 --iface mpi0 --mca plm_rsh_agent "$here/netns-rsh.sh"
        --mca orte_tmpdir_base "$DD_SCRATCH/ompi")

command -v ip >/dev/null && command -v unshare >/dev/null || { fail "ip/unshare missing: bash jobs/install-deps.sh test"; finish; }
unset OPENBLAS_NUM_THREADS
down   # leftovers of an earlier, killed run
trap down EXIT
step "network namespaces: $SW + $NODES hosts on $SUBNET.0/24"
up || { fail "could not create the namespaces"; finish; }
for i in $(seq 1 $NODES); do echo "$(node "$i") slots=1"; done >"$hostfile"
mkdir -p "$DD_SCRATCH/ompi"
make_data "$DD_SCRATCH/data" || finish

step "quick.yaml: 3 ranks on one host"
"${launch[@]}" -N 3 -t 1 --name one-host "$DD_SCRATCH/data/quick.yaml" >one-host.out 2>&1 ||
    fail "3 ranks on one host: exit code $? ($(tail -n 3 one-host.out))"

step "quick.yaml: 3 hosts, one rank each"
rx0=$(bridge_bytes)
timeout -k 5 300 "${on_host1[@]}" "${launch[@]}" "${across[@]}" --name hosts "$DD_SCRATCH/data/quick.yaml" >hosts.out 2>&1 ||
    fail "3 hosts: exit code $? ($(tail -n 5 hosts.out))"
rx=$(( $(bridge_bytes) - rx0 ))
grep -q '^ddtrain .*: 3 rank(s) on 3 node(s)' hosts.out || fail "hosts.out: header does not say 3 rank(s) on 3 node(s)"
expect_kernels hosts.out
[ "$(jfield runs/hosts/metrics.jsonl start nodes)" = 3 ] || fail "metrics: nodes != 3"
np=$(jfield runs/hosts/metrics.jsonl start parameters)
steps=$(jfield runs/hosts/metrics.jsonl "done" step)
# every step allreduces all gradients: at least one copy of them crosses the bridge per step
if [ "$rx" -gt $(( ${np:-0} * 4 * ${steps:-0} )) ] && [ "${steps:-0}" -gt 0 ]; then
    echo "ok   $steps steps across 3 hosts, $rx bytes through the bridge"
else
    fail "only $rx bytes crossed the bridge for '$steps' steps of '$np' parameters"
fi
last=ckpt-$(printf %010d "${steps:-0}").h5
params_equal "runs/one-host/$last" "runs/hosts/$last" || fail "3 hosts and one host end with different parameters"

step "long.yaml (400 steps): SIGTERM to the launcher on host 1 after the first checkpoint"
"${on_host1[@]}" "${launch[@]}" "${across[@]}" --name hosts-long "$DD_SCRATCH/data/long.yaml" train.max_steps=400 \
    >hosts-long.out 2>&1 &
pid=$!
poll 120 grep -qs '"event": "checkpoint"' runs/hosts-long/metrics.jsonl || fail "no checkpoint within 120 s"
kill -TERM $pid
wait $pid
rc=$?
[ $rc = 138 ] || fail "stopped run: exit code $rc, expected 138 (128 + SIGUSR1)"
stop=$(jfield runs/hosts-long/metrics.jsonl stopped step)
if [ "${stop:-0}" -gt 0 ] && [ "$stop" -lt 400 ] && grep -q "^stopping at step $stop on request" hosts-long.out; then
    echo "ok   stopped at step $stop on all hosts (exit code $rc)"
else
    fail "hosts-long.out: no stop before step 400 reported ('stopped' step '$stop')"
fi

step "rerun the same command: continues from the checkpoint"
timeout -k 5 300 "${on_host1[@]}" "${launch[@]}" "${across[@]}" --name hosts-long "$DD_SCRATCH/data/long.yaml" train.max_steps=400 \
    >hosts-long2.out 2>&1 || fail "rerun: exit code $? ($(tail -n 5 hosts-long2.out))"
grep -q "^resume: runs/hosts-long/ckpt-$(printf %010d "${stop:-0}").h5" hosts-long2.out || fail "rerun did not resume from step $stop"
[ "$(jfield runs/hosts-long/metrics.jsonl "done" step)" = 400 ] || fail "rerun did not reach step 400"

step "long.yaml (400 steps) uninterrupted, 3 ranks on one host"
"${launch[@]}" -N 3 -t 1 --name one-host-long "$DD_SCRATCH/data/long.yaml" train.max_steps=400 >one-host-long.out 2>&1 ||
    fail "one host: exit code $?"
params_equal runs/one-host-long/ckpt-0000000400.h5 runs/hosts-long/ckpt-0000000400.h5 ||
    fail "stopped+resumed on 3 hosts and uninterrupted on one host end with different parameters"
step "done"
finish
