# Helpers for command-line tests: run the real ddtrain under mpiexec with a
# timeout and check exit codes and the one-line error messages.
# Environment (set by CTest): DDTRAIN, DD_SRC, DD_SCRATCH, MPIEXEC.
set -uo pipefail
: "${DDTRAIN:?set DDTRAIN to the ddtrain binary}" "${DD_SCRATCH:?set DD_SCRATCH to a scratch directory}"
MPIEXEC=${MPIEXEC:-mpiexec}
PY=/usr/bin/python3
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
export OMPI_MCA_rmaps_base_oversubscribe=1
rm -rf "$DD_SCRATCH" && mkdir -p "$DD_SCRATCH" && cd "$DD_SCRATCH" || exit 1
fails=0
out=$DD_SCRATCH/out.txt
err=$DD_SCRATCH/err.txt

# ddt NP ARGS...: run ddtrain on NP ranks (NP=0: directly, no launcher), stdout/stderr to files.
ddt() {
    local np=$1; shift
    if [ "$np" = 0 ]; then
        timeout -k 5 120 "$DDTRAIN" "$@" >"$out" 2>"$err"
    else
        timeout -k 5 120 "$MPIEXEC" -n "$np" --oversubscribe "$DDTRAIN" "$@" >"$out" 2>"$err"
    fi
}

fail() {
    echo "FAIL: $*"
    echo "--- stdout"; tail -n 15 "$out" 2>/dev/null
    echo "--- stderr"; tail -n 15 "$err" 2>/dev/null
    fails=$((fails + 1))
}

# expect_ok DESC NP ARGS...
expect_ok() {
    local desc=$1; shift
    ddt "$@"
    local rc=$?
    if [ $rc -ne 0 ]; then fail "$desc: exit code $rc, expected 0"; return 1; fi
    echo "ok   $desc"
}

# expect_error DESC NP CODE SUBSTRING ARGS...: the command must exit with CODE on every
# rank, print exactly one 'ddtrain: error:' line containing SUBSTRING, not hang, not crash.
expect_error() {
    local desc=$1 np=$2 code=$3 needle=$4; shift 4
    ddt "$np" "$@"
    local rc=$?
    if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then fail "$desc: timed out (hang)"; return 1; fi
    if [ $rc -ne "$code" ]; then fail "$desc: exit code $rc, expected $code"; return 1; fi
    if ! grep -qF -- "$needle" "$err"; then fail "$desc: stderr lacks '$needle'"; return 1; fi
    if [ "$code" = 1 ] && [ "$(grep -c '^ddtrain: error:' "$err")" != 1 ]; then
        fail "$desc: expected exactly one 'ddtrain: error:' line"; return 1
    fi
    if grep -qiE 'segmentation|core dumped|signal [0-9]|MPI_ABORT|backtrace' "$err" "$out"; then
        fail "$desc: crashed or aborted"; return 1
    fi
    echo "ok   $desc"
}

# no_temp_files DIR: nothing half-written left behind
no_temp_files() {
    if find "$1" -name '*.tmp*' 2>/dev/null | grep -q .; then fail "temporary files left in $1"; return 1; fi
}

finish() {
    if [ $fails -ne 0 ]; then echo "$fails check(s) failed"; exit 1; fi
    echo "all checks passed"
    exit 0
}
