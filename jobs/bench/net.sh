#!/usr/bin/env bash
# net.sh - gradient sync across emulated nodes (issue 13): the reference MLP, CNN and LSTM of jobs/bench
# on 1 rank, 2 ranks on one host (shared memory) and 2 (and 3) hosts joined by veth links, unshaped and
# shaped with `tc tbf` to RATE, with the config variants of VARIANTS; the raw MPI_Allreduce of the same
# bytes on the same link (jobs/bench/allreduce_bench.c); the latency and bandwidth of every link; Open
# MPI's coll han against the default (tuned) for 2 hosts x 2 ranks. All in one run, interleaved: each
# repeat runs every configuration of a model once, and the figures are medians over REPEATS.
#
#   sudo bash jobs/bench/net.sh [mlp] [cnn] [lstm]       (default: all three; root for the namespaces)
#
# The hosts are network namespaces ddb-h1..3 on a bridge in a fourth one (ddb-sw), as in
# tests/system/test_netns.sh: own interface (mpi0, 10.213.83.11-13), hostname (/etc/netns/<host>/hosts,
# a UTS namespace per process) and Open MPI session directory; mpirun runs in ddb-h1 and starts its
# daemons on the others through tests/system/netns-rsh.sh; MPI over TCP only (btl tcp,self, with vader
# for several ranks per host) on mpi0. The 1-rank and one-host runs run in ddb-h1 too, so no traffic
# (not even Open MPI's own) touches the host's network namespace. Shaping: a tbf qdisc on both ends of
# every host's link (its mpi0 and the bridge port), so each host sends and receives at most RATE.
# Each rank is pinned to core (rank mod cores) with taskset (BIND=none: not pinned).
#
# While it measures, /tmp/bench.quiet exists (other work on the machine pauses while it does); if it
# exists at start, another benchmark runs and this one waits until it is gone. Everything it made goes on
# exit (namespaces, /etc/netns entries, the quiet file).
#
# Environment: REPEATS (3), EPOCHS (ddtrain epochs per run, the last one is timed; 1), RATE (1gbit),
# VARIANTS (';'-separated list of override sets for the 2-host runs, see below), VARIANTS3 (the same for
# the 3-host runs; default the first and the last of VARIANTS), HOSTS3 (models also run on 3 hosts; mlp),
# HAN_MODELS (models also trained on 2 hosts x 2 ranks; none; the raw allreduce of tuned and han is
# always compared), BIND (core|none), RUN_TIMEOUT (s per run, 300), OUT (build/bench), QUIET (1: wait for and
# hold /tmp/bench.quiet; 0: do not), LAT_SECONDS and AR_SECONDS (allreduce_bench's time per message
# size for the link tables and for the models' gradient sizes; 0.25 and 0.6), COLL_TIMEOUT (s per
# allreduce_bench run, 30: coll han crashes or hangs now and then), BEFORE_REF (the build the 1-rank and
# one-host runs are compared with, default 1b49e87, the last commit before the overlapped sync; empty:
# none). Output: the markdown tables on stdout and in OUT/net-summary.txt, raw
# figures as JSON lines in OUT/net-runs.txt (one per training run), OUT/net-collectives.txt (raw
# allreduce and ping-pong), OUT/net-env.txt (machine, build, date). jobs/bench/scaling_model.py reads
# them (docs/scaling.md). OMPI_MCA_* variables in the environment reach every rank (e.g.
# OMPI_MCA_coll_libnbc_iallreduce_algorithm=1: the ring for MPI_Iallreduce, docs/benchmarks.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD

# the configurations of the 2-host runs: ddtrain section.key=value overrides, space-separated within one
# configuration; the first one is the baseline (ratios "vs overlap off" are against it)
DEFAULT_VARIANTS="comm.overlap=off;comm.overlap=thread;comm.overlap=poll;comm.overlap=thread comm.grad_dtype=bf16"
IFS=';' read -r -a VARIANTS <<<"${VARIANTS:-$DEFAULT_VARIANTS}"
REPEATS=${REPEATS:-3}
EPOCHS=${EPOCHS:-1}
RATE=${RATE:-1gbit}
HOSTS3=${HOSTS3:-mlp}
HAN_MODELS=${HAN_MODELS:-}
BIND=${BIND:-core}
RUN_TIMEOUT=${RUN_TIMEOUT:-300}
COLL_TIMEOUT=${COLL_TIMEOUT:-30}
OUT=${OUT:-build/bench}
QUIET=${QUIET:-1}
BEFORE_REF=${BEFORE_REF-1b49e87}   # the last commit before the bucketed, overlapped sync
LAT_SECONDS=${LAT_SECONDS:-0.25}   # allreduce_bench's time per message size: latency tables
AR_SECONDS=${AR_SECONDS:-0.6}     # and the models' gradient sizes
PY=/usr/bin/python3

PREFIX=ddb
SUBNET=10.213.83
NODES=3
SW=$PREFIX-sw
node() { echo "$PREFIX-h$1"; }
ip_of() { echo "$SUBNET.$((10 + $1))"; }

[ "$(id -u)" = 0 ] || { echo "net.sh: needs root (network namespaces, tc)" >&2; exit 1; }
for c in ip tc unshare taskset mpicc mpirun; do
    command -v "$c" >/dev/null || { echo "net.sh: '$c' missing: bash jobs/install-deps.sh test" >&2; exit 1; }
done
models=("$@")
[ ${#models[@]} -eq 0 ] && models=(mlp cnn lstm)
for m in "${models[@]}"; do [ -f "jobs/bench/$m.yaml" ] || { echo "net.sh: no jobs/bench/$m.yaml" >&2; exit 1; }; done

work=$(mktemp -d /tmp/ddtrain-net.XXXXXX)
have_quiet=0
down() {
    local i n
    for i in $(seq 1 $NODES); do
        n=$(node "$i")
        # what we started inside (orted, ranks) goes with the namespace
        rm -rf "/etc/netns/$n"
        [ -e "/run/netns/$n" ] || continue
        ip netns pids "$n" 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true
        ip netns del "$n" 2>/dev/null || true
    done
    [ -e "/run/netns/$SW" ] && ip netns del "$SW" 2>/dev/null
    rmdir /etc/netns 2>/dev/null || true
    return 0
}
cleanup() {
    [ -n "${sampler:-}" ] && kill "$sampler" 2>/dev/null
    down
    rm -rf "$work"
    [ $have_quiet = 1 ] && rm -f /tmp/bench.quiet
    return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

up() {
    local i n hosts="127.0.0.1 localhost"$'\n'
    ip netns add "$SW" && ip -n "$SW" link set lo up && ip -n "$SW" link add br0 type bridge &&
        ip -n "$SW" link set br0 up || return 1
    for i in $(seq 1 $NODES); do hosts+="$(ip_of "$i") $(node "$i")"$'\n'; done
    for i in $(seq 1 $NODES); do
        n=$(node "$i")
        ip netns add "$n" &&
            ip -n "$SW" link add "p$i" type veth peer name mpi0 netns "$n" &&
            ip -n "$SW" link set "p$i" master br0 up &&
            ip -n "$n" link set lo up &&
            ip -n "$n" addr add "$(ip_of "$i")/24" dev mpi0 &&
            ip -n "$n" link set mpi0 up || return 1
        mkdir -p "/etc/netns/$n" && printf '%s' "$hosts" >"/etc/netns/$n/hosts"
    done
    for _ in $(seq 1 100); do
        [ "$(bridge -n "$SW" link show | grep -c 'state forwarding')" -ge $NODES ] && return 0
        sleep 0.1
    done
    return 1
}

# shape off|RATE: a tbf qdisc on each end of every host's link (or none). burst 256 KB (2 ms at 1 Gbit/s:
# little beyond the rate after an idle compute phase), latency 50 ms (a queue deep enough that TCP sees
# no drops: with 10 ms it lost packets)
shape() {
    local i
    for i in $(seq 1 $NODES); do
        tc -n "$(node "$i")" qdisc del dev mpi0 root 2>/dev/null || true
        tc -n "$SW" qdisc del dev "p$i" root 2>/dev/null || true
        if [ "$1" != off ]; then
            tc -n "$(node "$i")" qdisc add dev mpi0 root tbf rate "$1" burst 256kb latency 50ms
            tc -n "$SW" qdisc add dev "p$i" root tbf rate "$1" burst 256kb latency 50ms
        fi
    done
}

# ---------------------------------------------------------------------------------------------- set-up
if [ "$QUIET" = 1 ]; then
    until (set -C; : >/tmp/bench.quiet) 2>/dev/null; do
        echo "net.sh: /tmp/bench.quiet exists (another benchmark is running); waiting" >&2
        sleep 30
    done
    have_quiet=1
fi
cmake --preset release >/dev/null && cmake --build --preset release -j"$(nproc)" >/dev/null
ddtrain=$root/build/release/ddtrain
mkdir -p "$OUT" bench-data "$work/ompi"
ab=$work/allreduce_bench
mpicc -O2 -o "$ab" jobs/bench/allreduce_bench.c
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
ncores=$(nproc)

# The datasets: run.sh's recipes (same generator, seed and shapes), fewer samples, so that a run's one
# epoch takes seconds on the slowest link: MLP 12,800 samples (100 steps), CNN 19,200 (300 steps), LSTM
# 3,072 sequences (48 steps)
make_data() {
    local m=$1 f=bench-data/net-$1.h5
    [ -f "$f" ] && return 0
    case $m in
        mlp) "$ddtrain" data synth --out "$f" --samples 12800 --features 784 --classes 10 --seed 7 ;;
        cnn) "$ddtrain" data synth --out "$f" --samples 19200 --image 1x28x28 --classes 10 --seed 7 ;;
        lstm) # make-lstm-data.sh's text (a seeded uniform draw from 65 symbols), 3072 x 64 + 1 characters
            $PY - "$work/lstm.txt" <<'PY'
import random, sys
alphabet = [chr(c) for c in range(48, 48 + 65)]
r = random.Random(1234)
n = 3072 * 64 + 1 - len(alphabet)
open(sys.argv[1], "w").write("".join(alphabet) + "".join(r.choice(alphabet) for _ in range(n)))
PY
            "$ddtrain" data text "$work/lstm.txt" --out "$f" --seq-len 64 ;;
    esac >/dev/null
}
for m in "${models[@]}"; do make_data "$m"; done

# The build before the overlap (BEFORE_REF; "" for none), for "1 rank and one host no slower than
# before": built once into build/bench-before
before=
if [ -n "$BEFORE_REF" ]; then
    before=$root/build/bench-before/ddtrain
    if [ ! -x "$before" ]; then
        src=$root/build/bench-before-src
        rm -rf "$src" && git worktree prune
        git worktree add -f -q "$src" "$BEFORE_REF"
        cmake -S "$src" -B build/bench-before -DCMAKE_BUILD_TYPE=Release -DDDTRAIN_BUILD_TESTS=OFF >/dev/null
        cmake --build build/bench-before -j"$(nproc)" --target ddtrain >/dev/null
        git worktree remove --force "$src"
    fi
fi

# The comm.* keys of issue 13: without them ddtrain refuses the variants, so only the baseline runs
if "$ddtrain" train --help 2>&1 | grep -q 'grad_dtype'; then
    have_comm=1
else
    have_comm=0
    VARIANTS=("")
    echo "net.sh: this ddtrain has no comm.overlap / comm.grad_dtype keys: running only the baseline (today's blocking allreduce)" >&2
fi
if [ -n "${VARIANTS3+x}" ]; then IFS=';' read -r -a V3 <<<"$VARIANTS3"
elif [ ${#VARIANTS[@]} -gt 1 ]; then V3=("${VARIANTS[0]}" "${VARIANTS[-1]}")
else V3=("${VARIANTS[0]}"); fi

down   # leftovers of an earlier, killed run
up || { echo "net.sh: could not create the network namespaces" >&2; exit 1; }
for i in $(seq 1 $NODES); do echo "$(node "$i") slots=4"; done >"$work/hosts-all"

# on_h1 CMD...: run CMD in host 1 (its network namespace and hostname)
on_h1() { ip netns exec "$(node 1)" unshare --uts /bin/sh -c 'hostname "$1"; shift; exec "$@"' sh "$(node 1)" "$@"; }
# each rank pinned to core (its rank mod the cores), as mpirun --bind-to core does on one host
pin=()
[ "$BIND" = core ] && pin=(/bin/sh -c 'exec taskset -c "$((${OMPI_COMM_WORLD_RANK:-0} % $0))" "$@"' "$ncores")
blas_x=()
[ -n "${OPENBLAS_CORETYPE+x}" ] && blas_x=(-x OPENBLAS_CORETYPE)

# mpi LAYOUT CMD...: run CMD under mpirun in host 1; LAYOUT is hosts x ranks per host ("2x1"),
# "shm" (2 ranks in host 1, shared memory) or "lo" (2 ranks in host 1, TCP over its loopback)
mpi() {
    local layout=$1 nh rph btl iface
    shift
    case $layout in
        shm) nh=1 rph=2 btl=vader,self iface=lo ;;
        lo) nh=1 rph=2 btl=tcp,self iface=lo ;;
        *x*) nh=${layout%x*} rph=${layout#*x} iface=mpi0 btl=tcp,self
             [ "$rph" -gt 1 ] && btl=tcp,vader,self ;;
    esac
    head -n "$nh" "$work/hosts-all" >"$work/hostfile"
    # more ranks than cores (3 hosts, 2 x 2): ranks waiting in MPI yield the core instead of spinning on
    # it (the hostfile's slots hide the oversubscription from Open MPI, which would set this itself)
    local yield=()
    [ $((nh * rph)) -gt "$ncores" ] && yield=(--mca mpi_yield_when_idle 1)
    # --oversubscribe: 2 ranks per host and 3 hosts share the 2 cores (pinned by $pin, not by mpirun)
    timeout -s KILL "$RUN_TIMEOUT" "$(command -v ip)" netns exec "$(node 1)" unshare --uts /bin/sh -c \
        'hostname "$1"; shift; exec "$@"' sh "$(node 1)" \
        mpirun -np $((nh * rph)) --hostfile "$work/hostfile" --map-by "ppr:$rph:node" --bind-to none --oversubscribe \
        --mca plm_rsh_agent "$root/tests/system/netns-rsh.sh" --mca orte_tmpdir_base "$work/ompi" \
        --mca btl "$btl" --mca btl_tcp_if_include "$iface" --mca oob_tcp_if_include "$iface" \
        "${yield[@]}" -x OPENBLAS_NUM_THREADS "${blas_x[@]}" "$@"
    local rc=$?
    if [ $rc -ne 0 ]; then   # a killed mpirun leaves its daemons behind
        local i
        for i in $(seq 1 $NODES); do ip netns pids "$(node "$i")" | xargs -r kill -KILL 2>/dev/null || true; done
    fi
    return $rc
}

# /proc/stat cpu totals: user nice system idle iowait irq softirq steal
cpustat() { sed -n 's/^cpu  //p' /proc/stat; }

# per-thread CPU time of our ddtrain ranks (this binary), sampled every 0.2 s while a run lasts (the last sample wins:
# up to 0.2 s of a thread's end is missed); written as JSON when killed
cat >"$work/threads.py" <<'PY'
import json, os, signal, sys, time
out, exe, seen = sys.argv[1], os.path.realpath(sys.argv[2]), {}
def dump(*_):
    json.dump(seen, open(out, "w")); sys.exit(0)
signal.signal(signal.SIGTERM, dump)
hz = os.sysconf("SC_CLK_TCK")
while True:
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if os.path.realpath(f"/proc/{pid}/exe") != exe:  # ours only, not other ddtrain runs
                continue
            env = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
            rank = next((e.split(b"=")[1].decode() for e in env if e.startswith(b"OMPI_COMM_WORLD_RANK=")), "0")
            for tid in os.listdir(f"/proc/{pid}/task"):
                s = open(f"/proc/{pid}/task/{tid}/stat").read()
                name = s[s.index("(") + 1:s.rindex(")")]
                f = s[s.rindex(")") + 2:].split()
                seen[f"{rank}/{tid}"] = {"rank": int(rank), "thread": name, "main": tid == pid, "user_s": int(f[11]) / hz,
                                         "sys_s": int(f[12]) / hz}
        except (OSError, ValueError, IndexError):
            pass
    time.sleep(0.2)
PY

# the figures of one run's metrics log, as one JSON line, with the CPU use around it
cat >"$work/extract.py" <<'PY'
import json, sys
log, tag, c0, c1, wall, rc, threads = sys.argv[1:8]
rec = dict(json.loads(tag))
rec.update(rc=int(rc), wall_s=float(wall))
a, b = [list(map(int, c.split())) for c in (c0, c1)]
d = [y - x for x, y in zip(a, b)]
tot = sum(d[:8]) or 1
rec["cpu"] = {k: d[i] / tot for i, k in enumerate(["user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"])}
try:
    rec["threads"] = sorted(json.load(open(threads)).values(), key=lambda t: (t["rank"], t["thread"]))
except (OSError, ValueError):
    pass
try:
    ev = [json.loads(l) for l in open(log)]
except OSError:
    ev = []
start = [e for e in ev if e.get("event") == "start"]
ep = [e for e in ev if e.get("event") == "epoch"]
if start:
    rec["parameters"] = start[0].get("parameters")
    rec["ranks"] = start[0].get("ranks")
    rec["nodes"] = start[0].get("nodes")
    rec["kernels"] = (start[0].get("blas") or {}).get("kernels")
if ep:
    e = ep[-1]
    rec["steps"] = e["step"] - (ep[-2]["step"] if len(ep) > 1 else 0)
    for k in ("samples_per_s", "epoch_s", "allreduce_s", "data_wait_s", "wall_s", "phases", "sync", "train_loss"):
        if k in e:
            rec[k] = e[k]
print(json.dumps(rec))
PY

runs=$OUT/net-runs.txt coll=$OUT/net-collectives.txt
: >"$runs"
: >"$coll"

# train MODEL LAYOUT LINK VARIANT REPEAT [MPIRUN-ENV...]: one training run, its figures appended to $runs
train() {
    local m=$1 layout=$2 link=$3 variant=$4 rep=$5 log c0 c1 t0 rc=0 words=()
    shift 5
    log=$work/m.jsonl
    rm -f "$log" "$work/threads.json"
    read -r -a words <<<"$variant"
    local bin=${DDT:-$ddtrain}
    [ "$variant" = before ] && words=()
    local cmd=("${pin[@]}" "$bin" train "jobs/bench/$m.yaml" "data.train=bench-data/net-$m.h5" "train.epochs=$EPOCHS"
               "train.metrics=$log" checkpoint.dir= train.threads=1 --quiet "${words[@]}")
    $PY "$work/threads.py" "$work/threads.json" "$bin" &
    sampler=$!
    c0=$(cpustat); t0=$EPOCHREALTIME
    if [ "$layout" = 1 ]; then
        OMPI_COMM_WORLD_RANK=0 timeout -s KILL "$RUN_TIMEOUT" "$(command -v ip)" netns exec "$(node 1)" "${cmd[@]}" \
            >"$work/run.out" 2>&1 || rc=$?
    else
        mpi "$layout" "$@" "${cmd[@]}" >"$work/run.out" 2>&1 || rc=$?
    fi
    t1=$EPOCHREALTIME; c1=$(cpustat)
    kill "$sampler"; wait "$sampler" 2>/dev/null || true
    sampler=
    [ $rc = 0 ] || echo "net.sh: $m $layout $link '$variant': exit code $rc: $(tail -n 3 "$work/run.out")" >&2
    $PY "$work/extract.py" "$log" \
        "$($PY -c 'import json,sys; print(json.dumps(dict(zip(["model","layout","link","variant","repeat","han"], sys.argv[1:]))))' \
           "$m" "$layout" "$link" "$variant" "$rep" "${HAN_TAG:-}")" \
        "$c0" "$c1" "$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')" "$rc" "$work/threads.json" | tee -a "$runs" |
        $PY -c 'import json,sys; r=json.loads(sys.stdin.read()); print("  %-4s %-4s %-5s %-40s rep %s: %8.0f samples/s  busy %3.0f%% (softirq %2.0f%%)" % (r["model"], r["layout"], r["link"], r["variant"] or "defaults", r["repeat"], r.get("samples_per_s") or 0, 100*(1-r["cpu"]["idle"]), 100*r["cpu"]["softirq"]))' >&2
}

# coll LAYOUT LINK REPEAT ARGS...: allreduce_bench on LAYOUT, its lines (tagged) appended to $coll
coll() {
    local layout=$1 link=$2 rep=$3
    shift 3
    local rc=0
    RUN_TIMEOUT=$COLL_TIMEOUT mpi "$layout" "${HAN_ENV[@]}" "$ab" "$@" >"$work/coll.out" 2>"$work/coll.err" || rc=$?
    # its lines, tagged; a failure (crash, hang) is a line too: {"failed": ...}
    $PY -c 'import json,sys
lines = [json.loads(l) for l in open(sys.argv[5]) if l.startswith("{")]
if int(sys.argv[6]) != 0:
    err = [l.strip() for l in open(sys.argv[7]) if l.strip() and not l.startswith("---")]
    lines.append({"op": "pingpong" if "--pingpong" in sys.argv[8:] else "allreduce", "failed": "exit code %s: %s" % (sys.argv[6], err[-1] if err else "killed after the timeout"), "args": sys.argv[8:]})
for r in lines:
    r.update(layout=sys.argv[1], link=sys.argv[2], repeat=int(sys.argv[3]), coll=sys.argv[4]); print(json.dumps(r))' \
        "$layout" "$link" "$rep" "${HAN_TAG:-tuned}" "$work/coll.out" "$rc" "$work/coll.err" "$@" >>"$coll"
    [ $rc = 0 ] || echo "net.sh: allreduce_bench ${HAN_TAG:-tuned} $layout $link $*: exit code $rc: $(grep -v '^---' "$work/coll.err" | tail -n 1)" >&2
    return 0
}
HAN_ENV=()
han_on() { HAN_TAG=han; HAN_ENV=(--mca coll_han_priority 100); }
han_off() { HAN_TAG=tuned; HAN_ENV=(); }

links=(veth "tbf$RATE")
link_rate() { if [ "$1" = veth ]; then echo off; else echo "$RATE"; fi; }

{
    echo "date $(date -u +%Y-%m-%dT%H:%MZ)"
    echo "cpu $(lscpu | sed -n 's/^Model name: *//p') ($(nproc) cores)"
    "$ddtrain" --version | sed 's/^/ddtrain /'
    echo "mpi $(ompi_info | sed -n 's/^ *Open MPI: //p')"
    echo "command REPEATS=$REPEATS EPOCHS=$EPOCHS RATE=$RATE BIND=$BIND bash jobs/bench/net.sh ${models[*]}"
    echo "variants $(IFS=';'; echo "${VARIANTS[*]}")"
    echo "have_comm $have_comm"
    echo "load $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$OUT/net-env.txt"
cat "$OUT/net-env.txt" >&2

small="8 1024"
large="262144 1048576 4194304"
declare -A nparams=()
t_start=$EPOCHREALTIME
for rep in $(seq 1 "$REPEATS"); do
    echo "== repeat $rep/$REPEATS ($(awk -v a="$t_start" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.0f", b-a}') s)" >&2
    han_off
    # latency and bandwidth of each link: ping-pong and allreduce, small and large messages
    shape off
    for l in shm lo; do
        coll "$l" "$l" "$rep" --seconds "$LAT_SECONDS" --pingpong $small $large
        coll "$l" "$l" "$rep" --seconds "$LAT_SECONDS" --label lat $small $large
    done
    for link in "${links[@]}"; do
        shape "$(link_rate "$link")"
        coll 2x1 "$link" "$rep" --seconds "$LAT_SECONDS" --pingpong $small $large
        coll 2x1 "$link" "$rep" --seconds "$LAT_SECONDS" --label lat $small $large
    done
    for m in "${models[@]}"; do
        shape off
        # one host: this build as a user runs it (the defaults), with the communication thread, and the build
        # before the overlap (BEFORE_REF), interleaved
        train "$m" 1 - "" "$rep"
        [ -n "$before" ] && DDT=$before train "$m" 1 - before "$rep"
        train "$m" shm - "" "$rep"
        [ "$have_comm" = 1 ] && train "$m" shm - comm.overlap=thread "$rep"
        [ -n "$before" ] && DDT=$before train "$m" shm - before "$rep"
        np=$($PY -c 'import json,sys; print([r for r in map(json.loads, open(sys.argv[1])) if r["model"]==sys.argv[2] and r.get("parameters")][-1]["parameters"])' "$runs" "$m")
        nparams[$m]=$np
        for link in "${links[@]}"; do
            shape "$(link_rate "$link")"
            for v in "${VARIANTS[@]}"; do train "$m" 2x1 "$link" "$v" "$rep"; done
            coll 2x1 "$link" "$rep" --seconds "$AR_SECONDS" --label "$m" $((np * 4)) $((np * 2))
            if [[ " $HOSTS3 " == *" $m "* ]]; then
                for v in "${V3[@]}"; do train "$m" 3x1 "$link" "$v" "$rep"; done
                coll 3x1 "$link" "$rep" --seconds "$AR_SECONDS" --label "$m" $((np * 4)) $((np * 2))
            fi
            if [[ " $HAN_MODELS " == *" $m "* ]]; then
                # 2 hosts x 2 ranks; ddtrain reduces in place, which han would crash on: the default only
                train "$m" 2x2 "$link" "${VARIANTS[0]}" "$rep"
            fi
        done
    done
    # many ranks per host: 2 hosts x 2 ranks, the raw allreduce of every model's gradients, tuned (the
    # default) against han; han crashes on MPI_IN_PLACE in this Open MPI (4.1.4, open-mpi/ompi#11488),
    # so both also from a send buffer
    sizes=()
    for m in "${models[@]}"; do sizes+=($((nparams[$m] * 4))); done
    for link in "${links[@]}"; do
        shape "$(link_rate "$link")"
        coll 2x2 "$link" "$rep" --seconds "$AR_SECONDS" --label 2x2 "${sizes[@]}"
        HAN_TAG=tuned-oop coll 2x2 "$link" "$rep" --out-of-place --seconds "$AR_SECONDS" --label 2x2 "${sizes[@]}"
        han_on
        HAN_TAG=han-oop coll 2x2 "$link" "$rep" --out-of-place --seconds "$AR_SECONDS" --label 2x2 "${sizes[@]}"
        han_off
    done
done
shape off
echo "== measured in $(awk -v a="$t_start" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.0f", b-a}') s" >&2
$PY jobs/bench/scaling_model.py --summary "$OUT" | tee "$OUT/net-summary.txt"
