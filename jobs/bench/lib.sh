# lib.sh - what the benchmark scripts share; sourced (from the repository's top) by run.sh, data.sh,
# gpt.sh, micro.sh and kernels.sh.
#
#   bench_setup      the packages (jobs/install-deps.sh bench), the release build, $ddtrain, $OUT and
#                    bench-data/, OPENBLAS_NUM_THREADS=1 and mpirun's permission to run as root
#   bench_kernels    the BLAS kernel set ddtrain runs with here (its own choice, or the user's
#                    OPENBLAS_CORETYPE); arguments go before the command, e.g. env -u OPENBLAS_CORETYPE
#   median X...      the median of the numbers
# shellcheck shell=bash
PY=${PY:-/usr/bin/python3}
OUT=${OUT:-build/bench}

bench_setup() {
    bash jobs/install-deps.sh bench
    cmake --preset release >/dev/null && cmake --build --preset release -j"$(nproc)" >/dev/null
    ddtrain=$PWD/build/release/ddtrain
    mkdir -p "$OUT" bench-data
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
}

bench_kernels() {
    "$@" "$ddtrain" --version | sed -n 's/^BLAS kernels: \([A-Za-z0-9_]*\),.*/\1/p'
}

median() { $PY -c "import statistics,sys; print(statistics.median(float(x) for x in sys.argv[1:]))" "$@"; }
