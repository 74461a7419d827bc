#!/usr/bin/env bash
# docker/compose.yaml as shipped, with docker-compose (Debian's, v1) against podman's Docker API on a
# private socket (no Docker engine here): `up --exit-code-from node1` trains the quickstart model
# on the built-in synthetic data across 3 containers (40 steps); a second `up` continues from the
# checkpoint (to step 80).
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"
podman_conf
podman image exists "$DD_IMAGE" || { fail "no image $DD_IMAGE: ctest runs system.container.image first"; finish; }
command -v docker-compose >/dev/null || { fail "docker-compose not found: bash jobs/install-deps.sh test"; finish; }

PROJECT=ddtrain-test
work=$DD_SCRATCH/work
mkdir -p "$work"
sock=$DD_SCRATCH/podman.sock
for pid in $(pgrep -f "podman system service --time=0 unix://$sock"); do kill "$pid"; done   # a killed run's
podman system service --time=0 "unix://$sock" >service.log 2>&1 &
svc=$!
# the image of system.container.image, no build; COMPOSE_DOCKER_CLI_BUILD=0: no docker CLI needed
export DOCKER_HOST=unix://$sock DDTRAIN_IMAGE=$DD_IMAGE BASE=$DD_BASE_IMAGE DDTRAIN_WORK=$work COMPOSE_DOCKER_CLI_BUILD=0
compose() { timeout -k 10 "$1" docker-compose -p "$PROJECT" -f "$DD_SRC/docker/compose.yaml" "${@:2}"; }
cleanup() {
    compose 60 down -v -t 0 >/dev/null 2>&1
    # a compose that was killed half-way may leave containers the API no longer reports
    podman ps -aq --filter "label=com.docker.compose.project=$PROJECT" | xargs -r podman rm -f -t 0 >/dev/null 2>&1
    kill "$svc" 2>/dev/null
    wait "$svc" 2>/dev/null
    return 0
}
trap cleanup EXIT
poll 20 test -S "$sock" || { fail "podman system service did not start ($(tail -n 3 service.log))"; finish; }
compose 60 down -v -t 0 >/dev/null 2>&1   # leftovers of an earlier, killed run

step "docker-compose up --exit-code-from node1 (train.max_steps=40)"
DDTRAIN_ARGS=train.max_steps=40 compose 600 up --no-build --exit-code-from node1 >up1.out 2>&1 </dev/null
rc=$?
[ $rc = 0 ] || fail "compose up: exit code $rc ($(grep -v '^node[23]' up1.out | tail -n 8))"
m=$work/runs/compose/metrics.jsonl
grep -q 'node1.*ddtrain .*: 3 rank(s) on 3 node(s)' up1.out || fail "up1.out: header does not say 3 rank(s) on 3 node(s)"
expect_kernels up1.out clean
[ "$(jfield "$m" start ranks)/$(jfield "$m" start nodes)" = 3/3 ] || fail "metrics: ranks/nodes != 3/3"
[ -f "$work/data/synth.h5" ] || fail "the synthetic dataset was not written to data/synth.h5"
[ "$(jfield "$m" "done" step)" = 40 ] && [ -f "$work/runs/compose/ckpt-0000000040.h5" ] || fail "no checkpoint at step 40 after the first up"

step "docker-compose up again (train.max_steps=80): continues from the checkpoint"
DDTRAIN_ARGS=train.max_steps=80 compose 600 up --no-build --exit-code-from node1 >up2.out 2>&1 </dev/null
rc=$?
[ $rc = 0 ] || fail "second compose up: exit code $rc ($(grep -v '^node[23]' up2.out | tail -n 8))"
grep -q 'node1.*resume: runs/compose/ckpt-0000000040.h5' up2.out || fail "up2.out: no 'resume:' from the step-40 checkpoint"
[ "$(jfield "$m" start resumed_at_step)" = 40 ] || fail "second run did not resume at step 40"
[ "$(jfield "$m" "done" step)" = 80 ] || fail "second run did not reach step 80"
step "done"
finish
