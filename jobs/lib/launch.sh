# launch.sh - what jobs/mpirun.sh and jobs/slurm/run.sh share (sourced, not run): find the ddtrain
# binary, check the config, and run the launcher with its output in the run's log and on stdout,
# turning stop signals into a checkpoint-and-stop.
# shellcheck shell=bash

dd_die() { echo "ddtrain ${DD_WHAT:-launch}: error: $*" >&2; exit 2; }

# dd_find_ddtrain CHECKOUT: set $ddtrain to $DDTRAIN, else CHECKOUT/build/release/ddtrain, else PATH's;
# and $dd_exec to the words of $DD_EXEC, a command each rank runs ddtrain under (e.g. "apptainer exec
# ddtrain.sif"): then ddtrain is $DDTRAIN or "ddtrain" as the container sees it, not checked here
dd_find_ddtrain() {
    read -r -a dd_exec <<<"${DD_EXEC:-}"
    if [ ${#dd_exec[@]} -gt 0 ]; then
        ddtrain=${DDTRAIN:-ddtrain}
        command -v "${dd_exec[0]}" >/dev/null || dd_die "DD_EXEC='$DD_EXEC': '${dd_exec[0]}' is not on PATH"
        return 0
    fi
    ddtrain=${DDTRAIN:-}
    if [ -z "$ddtrain" ]; then
        if [ -x "$1/build/release/ddtrain" ]; then ddtrain=$1/build/release/ddtrain
        else ddtrain=$(command -v ddtrain || true); fi
        [ -n "$ddtrain" ] || dd_die "no ddtrain binary: build it (cmake --preset release && cmake --build --preset release) or set DDTRAIN=/path/to/ddtrain"
    fi
    [ -x "$ddtrain" ] || dd_die "DDTRAIN='$ddtrain' is not an executable file; build ddtrain or fix DDTRAIN"
}

# dd_blas_env: mpirun -x options that carry the user's BLAS kernel settings (OPENBLAS_CORETYPE,
# DD_BLAS_AUTO) to the ranks on other hosts; mpirun passes only what it is told to. Without them
# every rank chooses the kernels that match its own CPU (docs/blas-kernels.md).
dd_blas_env() {
    dd_blas_x=()
    local v
    for v in OPENBLAS_CORETYPE DD_BLAS_AUTO; do
        [ -n "${!v+x}" ] && dd_blas_x+=(-x "$v")
    done
    return 0
}

# dd_check_config FILE: the config exists and is readable (every rank reads it: use a shared path)
dd_check_config() {
    [ -n "$1" ] || dd_die "no config file given (see --help)"
    [ -f "$1" ] || dd_die "config file '$1' not found (relative paths start at $PWD)"
    [ -r "$1" ] || dd_die "config file '$1' is not readable"
}

# dd_run_dir PARENT NAME: create PARENT/NAME and set $run_dir
dd_run_dir() {
    case $2 in */*|.|..|'') dd_die "run name '$2' cannot be a directory name; pick another" ;; esac
    run_dir=$1/$2
    mkdir -p "$run_dir" || dd_die "cannot create the run directory '$run_dir'; pick a writable place"
}

# dd_launch LOG HEADER CMD...: run CMD with stdout+stderr appended to LOG and copied to our stdout;
# sets $rc (CMD's exit code). SIGUSR1/USR2/TERM/INT to this shell become one SIGUSR1 to CMD (the
# launcher hands it to every rank: ddtrain checkpoints at the next step and exits 128+10); a second
# SIGINT (Ctrl-C twice) kills CMD. SIGTERM is not passed on as such: mpirun would kill the ranks.
dd_launch() {
    local log=$1 header=$2 start s s2 child tailer quiet=0 a
    shift 2
    start=$(stat -c %s "$log" 2>/dev/null || echo 0)
    printf '%s\n== %s\n' "$header" "$*" >>"$log"
    set -m   # CMD gets its own process group: Ctrl-C reaches only us, and we ask for a clean stop
    "$@" >>"$log" 2>&1 </dev/null &
    child=$!
    set +m
    tail -c "+$((start + 1))" -f --pid="$child" -s 0.5 "$log" &
    tailer=$!
    dd_signalled=
    dd__forward() {
        if [ "$1" = INT ] && [ "$dd_signalled" = INT ]; then
            echo "== second SIGINT: killing the launcher" >>"$log"
            kill -TERM "$child" 2>/dev/null || true
            return
        fi
        dd_signalled=$1
        echo "== $(date -u +%T) got SIG$1: asking ddtrain to checkpoint and stop" >>"$log"
        kill -USR1 "$child" 2>/dev/null || true
    }
    trap 'dd__forward USR1' USR1
    trap 'dd__forward USR2' USR2
    trap 'dd__forward TERM' TERM
    trap 'dd__forward INT' INT
    rc=
    while [ -z "$rc" ]; do
        s=0
        wait "$child" || s=$?
        if [ "$s" -gt 128 ] && kill -0 "$child" 2>/dev/null; then continue; fi   # a trap interrupted wait
        if [ "$s" -gt 128 ] && [ -n "$dd_signalled" ]; then
            s2=0; wait "$child" 2>/dev/null || s2=$?                            # the launcher's own status
            [ "$s2" != 127 ] && s=$s2
        fi
        rc=$s
    done
    trap - USR1 USR2 TERM INT
    wait "$tailer" 2>/dev/null || true
    # srun can exit 0 although the step never started (e.g. a failed PMIx setup): rank 0's
    # "done:" line is the proof that training finished (with --quiet there is none to look for)
    for a in "$@"; do case $a in --quiet|-q) quiet=1 ;; esac; done
    if [ "$rc" = 0 ] && [ $quiet = 0 ] && ! grep -q '^done: ' <(tail -c "+$((start + 1))" "$log"); then
        echo "ddtrain ${DD_WHAT:-launch}: error: $1 exited with 0 but ddtrain did not report 'done:'; did the launch fail? see $log" |
            tee -a "$log" >&2
        rc=1
    fi
    return 0
}
