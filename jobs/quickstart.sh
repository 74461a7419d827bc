#!/usr/bin/env bash
# quickstart.sh - install, build, make the built-in synthetic dataset and train
# an MLP on it with 2 MPI ranks. Run from anywhere: bash jobs/quickstart.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash jobs/install-deps.sh
echo "== building (release)"
cmake --preset release >/dev/null
cmake --build --preset release -j"$(nproc)" >/dev/null
ddtrain=build/release/ddtrain
if [ ! -f data/synth.h5 ]; then
    echo "== making the synthetic dataset"
    "$ddtrain" data synth --out data/synth.h5 --samples 20000
fi
rm -rf runs/quickstart   # a fresh run each time (use --resume auto to continue one instead)
launcher=(mpirun -np 2 -x OPENBLAS_NUM_THREADS=1)
[ "$(id -u)" = 0 ] && launcher+=(--allow-run-as-root)
[ "$(nproc)" -lt 2 ] && launcher+=(--oversubscribe)
echo "== training: ${launcher[*]} $ddtrain train jobs/configs/quickstart.yaml"
"${launcher[@]}" "$ddtrain" train jobs/configs/quickstart.yaml
