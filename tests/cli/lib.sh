# shellcheck shell=bash
# Helpers for command-line tests: run the real ddtrain under mpiexec with a
# timeout, or a command line in-process at one rank, and check exit codes and
# the one-line error messages.
# Environment (set by CTest): DDTRAIN, DD_INPROC, DD_SRC, DD_SCRATCH, MPIEXEC.
set -uo pipefail
: "${DDTRAIN:?set DDTRAIN to the ddtrain binary}" "${DD_SCRATCH:?set DD_SCRATCH to a scratch directory}"
MPIEXEC=${MPIEXEC:-mpiexec}
# shellcheck disable=SC2034 # used by the scripts that source this file
PY=/usr/bin/python3
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
export OMPI_MCA_rmaps_base_oversubscribe=1
# sanitized: true in the AddressSanitizer + UBSan build (DD_SANITIZED=1, set by CTest there). What that
# build adds is memory and UB checking of code paths the release build already checks for results, at
# 2-5x the time; so a script there runs each path once (one rank count, one of several equivalent
# storage forms or modes) instead of its whole matrix, and the suite keeps its time.
sanitized=false
# shellcheck disable=SC2034 # used by the scripts that source this file
[ "${DD_SANITIZED:-0}" = 1 ] && sanitized=true
rm -rf "$DD_SCRATCH" && mkdir -p "$DD_SCRATCH" && cd "$DD_SCRATCH" || exit 1
fails=0
out=$DD_SCRATCH/out.txt
err=$DD_SCRATCH/err.txt

# ddt NP ARGS...: run ddtrain on NP ranks (NP=0: directly, no launcher; NP=in: in-process, see
# below), stdout/stderr to files. 124 = timed out.
ddt() {
    local np=$1; shift
    if [ "$np" = in ]; then
        inproc "$@"
    elif [ "$np" = 0 ]; then
        timeout -k 5 120 "$DDTRAIN" "$@" >"$out" 2>"$err"
    else
        timeout -k 5 120 "$MPIEXEC" -n "$np" --oversubscribe "$DDTRAIN" "$@" >"$out" 2>"$err"
    fi
}

# NP=in: the command line runs in this script's cli_inproc (tests/cli/inproc.c), one process that
# started MPI once and runs every such command with the program's own dispatcher (dd_cli_run) at one
# rank, in the current directory, stdout/stderr to the same files. A launch under AddressSanitizer
# costs seconds (MPI start, the leak check at exit); this costs what the command does. The leak
# check runs once, when finish ends cli_inproc. Checks that need a second rank (every rank exits with
# the same code, a rank count in a message) stay real launches. cli_inproc starts at the first such
# command, with the script's environment at that point.
inproc_pid=
inproc() {
    local a rc
    for a in "$@"; do
        case $a in *$'\t'* | *$'\n'*)
            echo "NP=in: an argument holds a tab or a newline: run it with NP=0" >"$err"; return 125 ;;
        esac
    done
    if [ -z "$inproc_pid" ]; then
        : >"$out"; : >"$err"
        coproc INPROC { exec "${DD_INPROC:?set DD_INPROC to the cli_inproc program}" 2>>"$DD_SCRATCH/inproc.err"; }
        inproc_pid=$INPROC_PID
    fi
    local IFS=$'\t'
    printf '%s\n' "$PWD$IFS$out$IFS$err${*:+$IFS$*}" >&"${INPROC[1]}"
    read -r -t 120 -u "${INPROC[0]}" rc && return "$rc"
    rc=$?
    if [ $rc -gt 128 ]; then         # no reply in time: a hang
        kill -KILL "$inproc_pid" 2>/dev/null; wait "$inproc_pid" 2>/dev/null
        inproc_pid=
        return 124
    fi
    wait "$inproc_pid"; rc=$?        # it died in the command (its report is in $err)
    echo "cli_inproc died running this command (exit status $rc)" >>"$err"
    inproc_pid=
    return 125
}

# end cli_inproc (MPI_Finalize, and the leak check under AddressSanitizer)
inproc_stop() {
    [ -n "$inproc_pid" ] || return 0
    local rc=0
    eval "exec ${INPROC[1]}>&-"
    wait "$inproc_pid" || rc=$?
    inproc_pid=
    if [ $rc -ne 0 ]; then
        echo "FAIL: cli_inproc exited with status $rc (leaks, or an error at exit)"
        echo "--- its stderr"; tail -n 40 "$DD_SCRATCH/inproc.err"
        fails=$((fails + 1))
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
    inproc_stop
    if [ $fails -ne 0 ]; then echo "$fails check(s) failed"; exit 1; fi
    echo "all checks passed"
    exit 0
}
