#!/usr/bin/env bash
# long.sh - a longer fuzz run than CI's bounded one: each target for SECONDS (default 600), going on
# after a crash (each crashing input is saved) and keeping the inputs that showed new behaviour, to
# seed later runs or to add to the corpus.
#   bash tests/fuzz/long.sh [SECONDS] [OUT]          (OUT default /tmp/ddtrain-fuzz-long)
# Environment:
#   DD_FUZZ_ENGINE   driver (default): the in-tree driver of the ASan+UBSan build (preset asan);
#                    libfuzzer: libFuzzer, coverage-guided (preset fuzz: clang, from
#                    'bash jobs/install-deps.sh fuzz'), one job per target
#   DD_FUZZ_SEED     default: the time, a new sequence each run (CI uses 1)
#   DD_FUZZ_TARGETS  default "config data checkpoint"
# A crash found: copy its input to tests/fuzz/regressions/TARGET/, fix it, and the CTest run replays
# it from then on (docs/reliability.md, "Fuzzing").
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-600}
out=${2:-/tmp/ddtrain-fuzz-long}
engine=${DD_FUZZ_ENGINE:-driver}
seed=${DD_FUZZ_SEED:-$(date +%s)}
case $engine in
    driver) preset=asan ;;
    libfuzzer) preset=fuzz ;;
    *) echo "long.sh: DD_FUZZ_ENGINE is driver or libfuzzer, not '$engine'" >&2; exit 2 ;;
esac
build=build/$preset
if [ ! -x "$build/tests/fuzz/fuzz_data" ] || [ "$engine" = libfuzzer ]; then
    cmake --preset "$preset" >/dev/null
    cmake --build --preset "$preset" -j"$(nproc)" --target fuzz_config fuzz_data fuzz_checkpoint >/dev/null
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
    dict=tests/fuzz/dict/hdf5.dict seeds=("tests/fuzz/corpus/$t")
    [ "$t" = config ] && dict=tests/fuzz/dict/config.dict seeds+=(jobs/configs)
    echo "== fuzz_$t ($engine): $seconds s, seed $seed, output in $dir"
    if [ "$engine" = driver ]; then
        corpus=()
        for s in "${seeds[@]}"; do corpus+=(--corpus "$s"); done
        TMPDIR=$dir "$build/tests/fuzz/fuzz_$t" --regressions "tests/fuzz/regressions/$t" \
            --known-hdf5 tests/fuzz/known-hdf5.txt --known "tests/fuzz/known-hdf5/$t" "${corpus[@]}" \
            --dict "$dict" --runs 1e12 --seconds "$seconds" --seed "$seed" --keep-going --crash-dir "$dir" \
            --save-corpus "$dir/kept" || rc=1
    else
        # libFuzzer stops at a crash; -fork keeps going (each crash's input is written to the
        # artifact prefix). Known crashes of HDF5 itself (tests/fuzz/known-hdf5.txt) are found
        # too: tell them from ours by their report.
        TMPDIR=$dir "$build/tests/fuzz/fuzz_$t" -dict="$dict" -seed="$seed" -max_total_time="$seconds" \
            -timeout=20 -fork=1 -ignore_crashes=1 -artifact_prefix="$dir/" "$dir/kept" "${seeds[@]}" \
            >"$dir/libfuzzer.log" 2>&1 || rc=1
        tail -n 3 "$dir/libfuzzer.log"
    fi
done
exit $rc
