#!/usr/bin/env bash
# long.sh - a longer fuzz run than CI's bounded one: each target for SECONDS (default 600) with the
# in-tree driver of the ASan+UBSan build, going on after a crash (each crashing input is saved);
# the inputs kept for new behaviour are saved too, to seed later runs or to add to the corpus.
#   bash tests/fuzz/long.sh [SECONDS] [OUT]          (OUT default /tmp/ddtrain-fuzz-long)
# Environment: DD_FUZZ_SEED (default: the time, a new sequence each run; CI uses 1),
# DD_FUZZ_TARGETS (default "config data checkpoint"), BUILD (default build/asan: cmake --preset asan).
# A crash found: copy its input to tests/fuzz/regressions/TARGET/, fix it, and the CTest run replays
# it from then on (docs/reliability.md, "Fuzzing").
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-600}
out=${2:-/tmp/ddtrain-fuzz-long}
build=${BUILD:-build/asan}
seed=${DD_FUZZ_SEED:-$(date +%s)}
if [ ! -x "$build/tests/fuzz/fuzz_data" ]; then
    cmake --preset asan >/dev/null
    cmake --build --preset asan -j"$(nproc)" --target fuzz_config fuzz_data fuzz_checkpoint >/dev/null
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
export OMPI_MCA_mca_base_component_disable_dlclose=1
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:detect_odr_violation=0:fast_unwind_on_malloc=0}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/tests/lsan.supp:print_suppressions=0:use_tls=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
rc=0
for t in ${DD_FUZZ_TARGETS:-config data checkpoint}; do
    dir=$out/$t
    mkdir -p "$dir/kept"
    extra=()
    [ "$t" = config ] && extra=(--corpus jobs/configs --dict tests/fuzz/dict/config.dict)
    [ "$t" != config ] && extra=(--dict tests/fuzz/dict/hdf5.dict)
    echo "== fuzz_$t: $seconds s, seed $seed, output in $dir"
    TMPDIR=$dir "$build/tests/fuzz/fuzz_$t" --regressions "tests/fuzz/regressions/$t" --corpus "tests/fuzz/corpus/$t" \
        "${extra[@]}" --runs 1e12 --seconds "$seconds" --seed "$seed" --keep-going --crash-dir "$dir" \
        --save-corpus "$dir/kept" || rc=1
done
exit $rc
