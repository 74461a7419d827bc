#!/usr/bin/env bash
# install-deps.sh - install what ddtrain needs from Debian 12 packages (idempotent, quiet when done).
#
#   bash jobs/install-deps.sh            build + run: compiler, CMake, Open MPI, parallel HDF5, OpenBLAS, libyaml
#   bash jobs/install-deps.sh test       + what the test suite needs (h5py, PyTorch, h5diff, iproute2, Slurm, podman,
#                                          jsonschema and headless Chromium for the report, ...)
#   bash jobs/install-deps.sh bench      + PyTorch for the side-by-side benchmarks
#   bash jobs/install-deps.sh fuzz       + clang and libFuzzer, for the coverage-guided fuzz build (preset fuzz)
#
# Runs apt-get only for packages that are missing, so a second run is silent and fast.
set -euo pipefail

build=(build-essential cmake pkg-config openmpi-bin libopenmpi-dev libhdf5-openmpi-dev hdf5-tools
       libopenblas-dev libyaml-dev zlib1g-dev libxxhash-dev)
test=(python3 python3-numpy python3-h5py python3-xxhash python3-torch python3-yaml iproute2 procps util-linux
      munge slurmctld slurmd slurm-client
      podman runc netavark aardvark-dns iptables debootstrap docker-compose openssh-client strace
      clang-format cppcheck shellcheck
      python3-jsonschema chromium fonts-dejavu-core)
bench=(python3 python3-torch python3-numpy)
fuzz=(clang libclang-rt-14-dev)

want=("${build[@]}")
for group in "$@"; do
    case $group in
        build) ;;
        test) want+=("${test[@]}") ;;
        bench) want+=("${bench[@]}") ;;
        fuzz) want+=("${fuzz[@]}") ;;
        *) echo "install-deps.sh: unknown group '$group' (build, test, bench, fuzz)" >&2; exit 2 ;;
    esac
done

missing=()
for p in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null; then SUDO=sudo; else
        echo "install-deps.sh: missing packages (${missing[*]}); run as root or install them" >&2; exit 1
    fi
else
    SUDO=
fi
echo "install-deps.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# keep package scripts from starting daemons (munge, slurm) on machines with an init system;
# the Slurm test brings up its own throw-away cluster
own_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod 755 /usr/sbin/policy-rc.d
    own_policy=1
fi
log=$(mktemp /tmp/ddtrain-apt.XXXXXX)
rc=0
{ $SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq &&
  $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1 || rc=$?
[ "$own_policy" = 1 ] && $SUDO rm -f /usr/sbin/policy-rc.d
if [ "$rc" != 0 ]; then
    tail -n 30 "$log" >&2
    echo "install-deps.sh: apt-get failed (full log: $log)" >&2
    exit 1
fi
rm -f "$log"
