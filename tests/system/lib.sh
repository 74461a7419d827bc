# Helpers for the system tests (real Slurm, network namespaces, containers). Builds on the CLI test
# helpers (fail/finish, a fresh $DD_SCRATCH as the working directory) and adds timing, polling and
# the small datasets/configs the launch tests train on.
# Environment (set by CTest): DDTRAIN, DD_SRC, DD_SCRATCH, MPIEXEC.
# shellcheck shell=bash
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../cli/lib.sh
source "$here/../cli/lib.sh"
: "${DD_SRC:?set DD_SRC to the source tree}"
export SLURM_CONF=${DD_SLURM_DIR:-/tmp/ddtrain-slurm}/slurm.conf

# Skip (CTest SKIP_RETURN_CODE 77) where the tests cannot work at all: they start daemons and
# create namespaces and containers, so they need root.
[ "$(id -u)" = 0 ] || { echo "SKIP: system tests need root"; exit 77; }

T_START=$EPOCHREALTIME
T_LAST=$EPOCHREALTIME
# step MESSAGE: print the time the previous step took and announce the next one
step() {
    local now=$EPOCHREALTIME
    awk -v a="$T_LAST" -v b="$now" -v t="$T_START" -v m="$1" \
        'BEGIN{printf "== [%6.1fs, +%5.1fs] %s\n", b-t, b-a, m}'
    T_LAST=$now
}

# poll SECONDS CMD...: run CMD every 0.2 s until it succeeds; fail after SECONDS
poll() {
    local n=$(( $1 * 5 )); shift
    while [ $n -gt 0 ]; do "$@" && return 0; sleep 0.2; n=$((n - 1)); done
    return 1
}

# jfield FILE EVENT KEY: KEY of the last EVENT record of a metrics log ('' if none)
jfield() {
    $PY - "$@" <<'PY'
import json, sys
path, event, key = sys.argv[1:4]
val = ""
try:
    for line in open(path):
        rec = json.loads(line)
        if rec.get("event") == event:
            val = rec.get(key, "")
except FileNotFoundError:
    pass
print(val)
PY
}

# expect_kernels FILE [clean]: the training header in FILE names the BLAS kernels that ddtrain
# --version names here (with 'clean': as in an environment without OPENBLAS_CORETYPE, as a Slurm
# job with --export=LIST or a container sees it): the automatic choice where OpenBLAS does not
# know this CPU, on every launcher
expect_kernels() {
    local want
    if [ "${2:-}" = clean ]; then want=$(env -u OPENBLAS_CORETYPE "$DDTRAIN" --version); else want=$("$DDTRAIN" --version); fi
    want=$(sed -n 's/^BLAS kernels: \([A-Za-z0-9_]*\), .*/\1/p' <<<"$want")
    if grep -q "BLAS kernels: $want, " "$1"; then
        echo "ok   $1: BLAS kernels $want, as ddtrain --version says here"
    else
        fail "$1: the header does not name the BLAS kernels $want ($(grep -m1 'BLAS kernels' "$1"))"
    fi
}

# count_events FILE EVENT: how many EVENT records a metrics log holds
count_events() {
    [ -f "$1" ] || { echo 0; return; }
    grep -c "\"event\": \"$2\"" "$1" || true
}

# make_data DIR: a small learnable dataset and two configs in DIR
#   quick.yaml: 2 epochs of a small MLP (about a second)
#   long.yaml:  train.max_steps=2000 of a wider MLP (several seconds), a checkpoint every 10 steps,
#               so that a signal sent after the first checkpoint arrives mid-run
make_data() {
    local d=$1
    mkdir -p "$d"
    "$DDTRAIN" data synth --out "$d/train.h5" --samples 2000 --features 32 --classes 4 --seed 11 >/dev/null ||
        { fail "ddtrain data synth"; return 1; }
    cat >"$d/quick.yaml" <<EOF
model:
  layers: [{type: dense, units: 64}, relu, {type: dense, units: 4}]
data: {train: $d/train.h5, val_fraction: 0.1}
optim: {name: sgd, lr: 0.05, momentum: 0.9}
train: {batch_size: 64, epochs: 2, seed: 7}
checkpoint: {dir: ckpt, every_epochs: 1, keep: 2}
EOF
    cat >"$d/long.yaml" <<EOF
model:
  layers: [{type: dense, units: 256}, relu, {type: dense, units: 256}, relu, {type: dense, units: 4}]
data: {train: $d/train.h5}
optim: {name: sgd, lr: 0.01, momentum: 0.9}
train: {batch_size: 64, epochs: 100000, max_steps: 2000, seed: 3}
checkpoint: {dir: ckpt, every_epochs: 0, every_steps: 10, keep: 2}
EOF
}

# params_equal A.h5 B.h5 [RTOL]: the /params of two checkpoints are equal (bitwise without RTOL)
params_equal() {
    $PY - "$@" <<'PY'
import sys, h5py, numpy as np
a, b = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r")
rtol = float(sys.argv[3]) if len(sys.argv) > 3 else None
names = []
a["params"].visit(lambda n: names.append(n) if isinstance(a["params"][n], h5py.Dataset) else None)
assert names, "no parameters in " + sys.argv[1]
worst = 0.0
for n in names:
    x, y = a["params"][n][...], b["params"][n][...]
    assert x.shape == y.shape, (n, x.shape, y.shape)
    if rtol is None:
        if not np.array_equal(x, y):
            sys.exit("params/%s differ: max |a-b| = %g" % (n, np.abs(x - y).max()))
    else:
        worst = max(worst, float(np.abs(x - y).max() / (np.abs(y).max() + 1e-30)))
        if not np.allclose(x, y, rtol=rtol, atol=rtol * np.abs(y).max()):
            sys.exit("params/%s differ beyond rtol %g: max |a-b| = %g" % (n, rtol, np.abs(x - y).max()))
print("%d parameter tensors equal%s" % (len(names), "" if rtol is None else " within rtol %g (max rel %.2g)" % (rtol, worst)))
PY
}

# ---- containers (podman, rootful) -----------------------------------------------------------
DD_BASE_IMAGE=${DD_BASE_IMAGE:-localhost/ddtrain-base:bookworm}   # debootstrapped, kept between runs
DD_IMAGE=${DD_IMAGE:-localhost/ddtrain-test:latest}                # built by system.container.image

# podman_conf: a private engine configuration (the host's /etc/containers stays untouched):
#  - runc: crun 1.8 fails on hosts with hybrid cgroup v1+v2 ("cgroups in hybrid mode not supported")
#  - explicit ulimits within our own hard limit: podman's rootful defaults (nofile=1048576) exceed
#    what a sandbox may allow ("setrlimit RLIMIT_NOFILE: Operation not permitted")
podman_conf() {
    command -v podman >/dev/null || { fail "podman not found: bash jobs/install-deps.sh test"; finish; }
    local nofile
    nofile=$(ulimit -Hn); { [ "$nofile" = unlimited ] || [ "$nofile" -gt 65536 ]; } && nofile=65536
    cat >"$DD_SCRATCH/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=16384:16384"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
[network]
network_backend = "netavark"
CONF
    export CONTAINERS_CONF=$DD_SCRATCH/containers.conf
}
