#!/usr/bin/env bash
# Containers across "nodes": 3 containers of the ddtrain image (system.container.image) on a private
# podman network, sshd in each, ddtrain-node train in the first runs jobs/mpirun.sh across them, one
# rank per container. A shared directory at /work plays the cluster's shared file system.
# Checks: 3 ranks on 3 nodes, MPI traffic between the containers, the checkpoint, and final
# parameters bitwise equal to the same job with 3 ranks in one container.
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"
podman_conf
podman image exists "$DD_IMAGE" || { fail "no image $DD_IMAGE: ctest runs system.container.image first"; finish; }

NODES=3
NET=ddtrain-test-net
SUBNET=10.213.62
cname() { echo "ddt-c$1"; }
ip_of() { echo "$SUBNET.$((10 + $1))"; }
cleanup() {
    local i
    for i in $(seq 1 $NODES); do podman rm -f -t 0 "$(cname "$i")" >/dev/null 2>&1; done
    podman network rm -f "$NET" >/dev/null 2>&1
    return 0
}
cleanup   # leftovers of an earlier, killed run
trap cleanup EXIT

work=$DD_SCRATCH/work
mkdir -p "$work" "$DD_SCRATCH/ssh"
step "network $NET ($SUBNET.0/24, internal) and an ssh key"
podman network create --internal --disable-dns --subnet "$SUBNET.0/24" "$NET" >/dev/null || { fail "podman network create"; finish; }
podman run --rm --network none -v "$DD_SCRATCH/ssh:/ssh" "$DD_IMAGE" ddtrain-node keygen /ssh || { fail "keygen"; finish; }
podman run --rm --network none -v "$work:/work" "$DD_IMAGE" \
    ddtrain data synth --out /work/train.h5 --samples 2000 --features 32 --classes 4 --seed 11 >/dev/null || fail "synth"
cat >"$work/quick.yaml" <<'EOF'
model:
  layers: [{type: dense, units: 64}, relu, {type: dense, units: 4}]
data: {train: /work/train.h5, val_fraction: 0.1}
optim: {name: sgd, lr: 0.05, momentum: 0.9}
train: {batch_size: 64, epochs: 2, seed: 7}
checkpoint: {every_epochs: 1, keep: 2}
EOF

step "start $NODES containers"
hosts=()
for i in $(seq 1 $NODES); do hosts+=(--add-host "$(cname "$i"):$(ip_of "$i")"); done
for i in $(seq 1 $NODES); do
    podman run -d --name "$(cname "$i")" --hostname "$(cname "$i")" --network "$NET" --ip "$(ip_of "$i")" \
        "${hosts[@]}" -v "$DD_SCRATCH/ssh:/ssh:ro" -v "$work:/work" "$DD_IMAGE" >/dev/null ||
        { fail "podman run $(cname "$i")"; finish; }
done

step "training across the containers (ddtrain-node train in $(cname 1))"
rx0=$(podman exec "$(cname 2)" cat /sys/class/net/eth0/statistics/rx_bytes)
timeout -k 10 300 podman exec "$(cname 1)" ddtrain-node train "$(cname 1),$(cname 2),$(cname 3)" \
    --threads 1 --bind none --iface eth0 --name across /work/quick.yaml >across.out 2>&1 </dev/null ||
    fail "training across containers: exit code $? ($(tail -n 5 across.out))"
rx=$(( $(podman exec "$(cname 2)" cat /sys/class/net/eth0/statistics/rx_bytes) - rx0 ))
grep -q '^ddtrain .*: 3 rank(s) on 3 node(s)' across.out || fail "across.out: header does not say 3 rank(s) on 3 node(s)"
expect_kernels across.out clean
m=$work/runs/across/metrics.jsonl
[ "$(jfield "$m" start ranks)/$(jfield "$m" start nodes)" = 3/3 ] || fail "metrics: ranks/nodes != 3/3"
np=$(jfield "$m" start parameters)
steps=$(jfield "$m" "done" step)
if [ "${steps:-0}" -gt 0 ] && [ "$rx" -gt $(( ${np:-0} * 4 * steps )) ]; then
    echo "ok   $steps steps across 3 containers; $(cname 2) received $rx bytes"
else
    fail "training across containers: '$steps' steps, $(cname 2) received only $rx bytes"
fi
last=ckpt-$(printf %010d "${steps:-0}").h5
[ -f "$work/runs/across/$last" ] || fail "no checkpoint $last in runs/across/"

step "the same job with 3 ranks in one container"
podman run --rm --network none -v "$work:/work" "$DD_IMAGE" \
    bash /opt/ddtrain/jobs/mpirun.sh -N 3 -t 1 --name one /work/quick.yaml >one.out 2>&1 ||
    fail "3 ranks in one container: exit code $? ($(tail -n 5 one.out))"
params_equal "$work/runs/one/$last" "$work/runs/across/$last" ||
    fail "3 containers and one container end with different parameters"
step "done"
finish
