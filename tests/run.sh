#!/usr/bin/env bash
# run.sh - install what the tests need, build, and run the whole suite:
# release build (unit, mpi, cli, system tests), then the ASan+UBSan build
# (unit, mpi, cli). Run from anywhere: bash tests/run.sh
# Environment: DD_TEST_LABELS (ctest -L regex, default all), DD_SKIP_SYSTEM=1 (no Slurm, namespace
# and container tests: ctest -LE system), DD_SKIP_ASAN=1.
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$SECONDS
bash jobs/install-deps.sh test
jobs=$(nproc)
echo "== release build"
cmake --preset release >/dev/null
cmake --build --preset release -j"$jobs" >/dev/null
label=()
[ -n "${DD_TEST_LABELS:-}" ] && label=(-L "$DD_TEST_LABELS")
[ "${DD_SKIP_SYSTEM:-0}" = 1 ] && label+=(-LE system)
echo "== tests (release)"
ctest --preset release -j"$jobs" "${label[@]}"
if [ "${DD_SKIP_ASAN:-0}" != 1 ]; then
    echo "== AddressSanitizer + UndefinedBehaviorSanitizer build"
    cmake --preset asan >/dev/null
    cmake --build --preset asan -j"$jobs" >/dev/null
    echo "== tests (asan; system tests excluded)"
    ctest --preset asan -j"$jobs" "${label[@]}"
fi
echo "== all tests passed in $((SECONDS - t0)) s"
