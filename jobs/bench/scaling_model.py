#!/usr/bin/env python3
"""scaling_model.py - the tables of jobs/bench/net.sh and the alpha-beta model of docs/scaling.md.

    python3 jobs/bench/scaling_model.py --summary [DIR]   # net.sh's tables from DIR/net-*.txt (build/bench)
    python3 jobs/bench/scaling_model.py --model [DIR]     # docs/scaling.md's predictions from the same files

Reads what net.sh wrote: DIR/net-runs.txt (one JSON line per training run), DIR/net-collectives.txt
(allreduce_bench lines: raw MPI_Allreduce and ping-pong, per layout and link) and DIR/net-env.txt.
Every figure is the median over the repeats of the run.

The model (docs/scaling.md explains it): a step of one rank computes for t_c (forward t_f + backward
t_b, measured at 1 rank: batch / samples_per_s) and then reduces n gradient bytes with a ring allreduce,
    T_sync(P) = 2 (P-1) alpha + 2 (P-1)/P * n / bw,
so a step takes t_c + T_sync without overlap and t_c + T_sync - min(t_b, T_sync) with it (backprop of
the later layers runs while the first buckets travel); bf16 gradients halve n. Weak scaling (the
per-node batch of the 1-rank run on every node): efficiency = t_c / step time.
"""
import json
import math
import os
import re
import statistics
import sys

# share of backward in a step's FLOPs (docs/benchmarks.md: MLP forward 1.34 / backward 1.87 MFLOP per
# sample, CNN 2.1 / 3.8, LSTM 2.79 / 5.57 GFLOP per step); used when the runs carry no phase timers
BWD_SHARE = {"mlp": 1.87 / 3.21, "cnn": 3.8 / 5.9, "lstm": 5.57 / 8.36}
MODELS = ["mlp", "cnn", "lstm"]
# Whole-layer buckets of comm.bucket_mb = 1 MiB (docs/communication.md: layers from the last one are added
# to a bucket until it holds 1 MiB; a bucket starts once its first layer's backward is done): (share of the
# gradient bytes in the buckets that start before backward ends, share of backward still to run then); the
# rest goes when backward ends.
#  mlp: dense 512x10 + dense 512x512 (267,786 of 669,706 parameters, 1.07 MB: the first bucket) are ready
#       when only the first dense layer's weight gradient is left: 2 x 784 x 512 of 1.87 MFLOP per sample
#  cnn: all 18,378 parameters (74 KB) are one bucket: nothing starts before backward ends
#  lstm: the dense head + the LSTM (346,433 of 350,593, 1.39 MB) are one bucket, ready when the recurrence
#       is done, with only the embedding's scatter (about 1% of backward) left
LAYER_BUCKETS = {
    "mlp": (267786 / 669706, 0.80 / 1.87),
    "cnn": (0.0, 0.0),
    "lstm": (346433 / 350593, 0.01),
}
# net.sh's default variants (the rows left TODO when the build has no comm.* keys)
DEFAULT_VARIANTS = ["comm.overlap=off", "comm.overlap=thread", "comm.overlap=poll", "comm.overlap=thread comm.grad_dtype=bf16"]


def load(path):
    try:
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]
    except OSError:
        return []


def med(xs):
    xs = [x for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]
    return statistics.median(xs) if xs else None


def batch_size(model):
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        with open(os.path.join(here, model + ".yaml")) as f:
            return int(re.search(r"batch_size:\s*(\d+)", f.read()).group(1))
    except (OSError, AttributeError):
        return None


def is_bf16(variant):
    return "grad_dtype=bf16" in (variant or "")


def overlapping(variant):
    return "overlap=" in (variant or "") and "overlap=off" not in variant


def phase_s(run, *names):
    """the per-step mean over ranks of the first phase of NAMES that the epoch record has"""
    ph = run.get("phases") or {}
    for n in names:
        p = ph.get(n)
        if isinstance(p, dict) and p.get("mean_s") is not None and run.get("steps"):
            return p["mean_s"] / run["steps"]
    return None


def sync_s(run, key):
    """a per-step figure of the epoch record's "sync" block (mean over ranks), None when absent"""
    v = (run.get("sync") or {}).get(key)
    return v.get("mean_s") if isinstance(v, dict) else None


def step_figures(run):
    """per step (s): forward, backward, compute (their sum), sync (time in the gradient reduction's MPI
    calls: the communication thread's, or the main thread's), exposed sync (what the step waited for the
    sync beyond its compute: the "sync" phase) and the sync's span (first bucket started to last done);
    None where the metrics do not have them (builds before the phase timers)"""
    fwd, bwd = phase_s(run, "forward"), phase_s(run, "backward")
    comp = fwd + bwd if fwd is not None and bwd is not None else None
    exposed = phase_s(run, "sync")
    sync = sync_s(run, "busy_per_step")
    span = sync_s(run, "span_per_step")
    if sync is None and exposed is not None and not overlapping(run.get("variant")) and run.get("sync") is None:
        sync = None  # the phase timers without the sync block: leave it unknown
    return fwd, bwd, comp, sync, exposed, span


def hidden_share(bwd, span, exposed):
    """the share of the hideable time (min of backward and the sync's span per step) that the overlap hid;
    hidden = span - exposed, as docs/communication.md defines it"""
    if bwd is None or span is None or exposed is None:
        return None
    hideable = min(bwd, span)
    return max(0.0, span - exposed) / hideable if hideable > 0 else None


class Data:
    def __init__(self, d):
        self.dir = d
        self.runs = [r for r in load(os.path.join(d, "net-runs.txt")) if r.get("rc") == 0]
        self.coll = load(os.path.join(d, "net-collectives.txt"))
        self.env = {}
        try:
            with open(os.path.join(d, "net-env.txt")) as f:
                for line in f:
                    k, _, v = line.rstrip("\n").partition(" ")
                    self.env.setdefault(k, v)
        except OSError:
            pass
        self.models = [m for m in MODELS if any(r["model"] == m for r in self.runs)]
        self.variants = []
        for r in self.runs:
            if r["layout"] == "2x1" and r["variant"] not in self.variants:
                self.variants.append(r["variant"])
        self.links = []
        for r in self.runs + self.coll:
            if r["link"] not in ("-", "shm", "lo") and r["link"] not in self.links:
                self.links.append(r["link"])

    def sel(self, **kw):
        return [r for r in self.runs if all(r.get(k) == v for k, v in kw.items())]

    def sps(self, **kw):
        return med(r.get("samples_per_s") for r in self.sel(**kw))

    def params(self, m):
        return next((r["parameters"] for r in self.runs if r["model"] == m and r.get("parameters")), None)

    def raw(self, op, layout, link, nbytes=None, label=None, coll="tuned"):
        """median over repeats of allreduce_bench's median (s)"""
        xs = [
            c["median_s"]
            for c in self.coll
            if c["op"] == op
            and "median_s" in c
            and c["layout"] == layout
            and c["link"] == link
            and c.get("coll", "tuned") == coll
            and (nbytes is None or abs(c["bytes"] - nbytes) <= 4)
            and (label is None or c.get("label") == label)
        ]
        return med(xs)

    def link_ab(self, link, layout=None):
        """per-message latency alpha (s) and bandwidth (bytes/s) of a link from the ping-pong: alpha = the
        8-byte half round trip, bandwidth = 4 MiB over (its half round trip - alpha)"""
        layout = layout or ("2x1" if link not in ("shm", "lo") else link)
        a = self.raw("pingpong", layout, link, 8)
        big = self.raw("pingpong", layout, link, 4194304)
        if a is None or big is None or big <= a:
            return a, None
        return a, 4194304 / (big - a)

    def link_fit(self, link, layout=None):
        """alpha and bandwidth as a 2-rank MPI_Allreduce sees the link (both directions busy, the reduction
        and the TCP stack on the same cores): for P = 2 the ring costs T(n) = 2 alpha + n / bw, so alpha =
        T(8 B) / 2 and 1 / bw = the least-squares slope of T over the messages of 256 KiB and more"""
        layout = layout or ("2x1" if link not in ("shm", "lo") else link)
        t8 = self.raw("allreduce", layout, link, 8, label="lat")
        pts = [(b, self.raw("allreduce", layout, link, b, label="lat")) for b in (262144, 1048576, 4194304)]
        pts = [(b, t) for b, t in pts if t is not None]
        if t8 is None or len(pts) < 2:
            return None, None
        mb, mt = statistics.mean(b for b, _ in pts), statistics.mean(t for _, t in pts)
        slope = sum((b - mb) * (t - mt) for b, t in pts) / sum((b - mb) ** 2 for b, _ in pts)
        return t8 / 2, (1 / slope if slope > 0 else None)

    def t1(self, m):
        """1-rank compute per step (s): batch / samples_per_s; backward share from phases or FLOPs"""
        s = self.sps(model=m, layout="1")
        if not s:
            return None, None
        tc = batch_size(m) / s
        runs = self.sel(model=m, layout="1")
        fb = [step_figures(r) for r in runs]
        f, b = med(x[0] for x in fb), med(x[1] for x in fb)
        share = b / (f + b) if f and b else BWD_SHARE[m]
        return tc, share


def fmt(x, scale=1.0, nd=1, dash="-"):
    if x is None:
        return dash
    return f"{x * scale:,.{nd}f}"


def ratio(a, b):
    return f"{a / b:.2f}x" if a and b else "-"


def summary(D):
    e = D.env
    print(f"# Across emulated nodes ({e.get('date', '?')}, {e.get('cpu', '?')})")
    print(f"# {e.get('ddtrain', '?')}; Open MPI {e.get('mpi', '?')}; load at start {e.get('load', '?')}")
    print(f"# {e.get('command', '')}; variants: {e.get('variants', '') or 'baseline only'}")
    if e.get("have_comm") == "0":
        print("# this ddtrain has no comm.* keys: the 2-host runs are the baseline only (today's blocking allreduce)")
    print()
    print("## Training: samples/s (median); per step (mean over ranks, from the epoch record): compute =")
    print("## forward + backward (backward), sync = time the reductions ran (busy_per_step; span_per_step: first")
    print("## bucket started to last done), exposed = the step's wait beyond compute (the sync phase), hidden /")
    print("## hideable = (span - exposed) / min(backward, span);")
    print("## '-': not in the metrics; the raw MPI_Allreduce of the same bytes on the same link (allreduce_bench)")
    print("## and the machine's CPU use during the run ('defaults': no comm.* override)")
    print()
    print(
        "| model | ranks | link | config | samples/s | vs 1 rank | vs overlap off (1 rank, one host: vs before) "
        "| compute ms (bwd) | sync ms (span) | exposed ms | hidden / hideable | raw allreduce ms | sync / raw | CPU busy (softirq) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for m in D.models:
        one = D.sps(model=m, layout="1")
        np_ = D.params(m)
        rows = []
        for layout in ("1", "shm"):
            vs = sorted({r["variant"] for r in D.sel(model=m, layout=layout)}, key=lambda v: (v == "before", v))
            rows += [(layout, "-", v) for v in vs]
        for layout in ("2x1", "3x1", "2x2"):
            for link in D.links:
                for v in D.variants + [v for v in {r["variant"] for r in D.sel(model=m, layout=layout)} if v not in D.variants]:
                    if D.sel(model=m, layout=layout, link=link, variant=v):
                        rows.append((layout, link, v))
        for layout, link, v in rows:
            runs = D.sel(model=m, layout=layout, link=link, variant=v)
            if not runs:
                continue
            s = med(r.get("samples_per_s") for r in runs)
            if layout in ("1", "shm"):  # against the build before the overlap, when it ran
                base = D.sps(model=m, layout=layout, link=link, variant="before")
            else:
                base = D.sps(model=m, layout=layout, link=link, variant=D.variants[0]) if D.variants else None
            figs = [step_figures(r) for r in runs]
            bwd, comp, sync, exp, span = (med(f[i] for f in figs) for i in (1, 2, 3, 4, 5))
            hid = med(hidden_share(f[1], f[5], f[4]) for f in figs)
            ar = med(r["allreduce_s"] / r["steps"] for r in runs if r.get("allreduce_s") is not None and r.get("steps"))
            raw = None
            if layout in ("2x1", "3x1", "2x2") and np_:
                raw = D.raw("allreduce", layout, link, np_ * (2 if is_bf16(v) else 4), label=m)
            busy = med(1 - r["cpu"]["idle"] for r in runs)
            sirq = med(r["cpu"]["softirq"] for r in runs)
            who = {"1": "1", "shm": "2, one host", "2x1": "2 hosts", "3x1": "3 hosts", "2x2": "2 hosts x 2"}[layout]
            print(
                f"| {m} | {who} | {link} | {v or ('defaults' if D.env.get('have_comm') == '1' else 'today')} | {fmt(s, nd=0)} | {ratio(s, one)} "
                f"| {ratio(s, base) + (' (vs before)' if layout in ('1', 'shm') and base else '')} "
                f"| {fmt(comp, 1e3, 2)} ({fmt(bwd, 1e3, 2)}) | {fmt(sync, 1e3, 2)} ({fmt(span, 1e3, 2)}) "
                f"| {fmt(exp if exp is not None else (ar if not overlapping(v) else None), 1e3, 2)} "
                f"| {fmt(hid, 100, 0) + '%' if hid is not None and layout not in ('1', 'shm') else '-'} | {fmt(raw, 1e3, 2)} | "
                f"{ratio(sync, raw) if sync and raw else (ratio(ar, raw) + ' (allreduce_s)' if ar and raw and not overlapping(v) else '-')} "
                f"| {fmt(busy, 100, 0)}% ({fmt(sirq, 100, 0)}%) |"
            )
    print()
    print("## Links: ping-pong (half round trip) and MPI_Allreduce of 2 ranks, median (microseconds)")
    print()
    sizes = sorted({c["bytes"] for c in D.coll if c.get("label") in ("", "lat") and c["op"] == "pingpong"})
    print("| link | op | " + " | ".join(f"{b:,} B" for b in sizes) + " | alpha us | bandwidth Gbit/s |")
    print("|---|---|" + "---|" * len(sizes) + "---|---|")
    for link in ["shm", "lo"] + D.links:
        lay = link if link in ("shm", "lo") else "2x1"
        for op in ("pingpong", "allreduce"):
            ts = [D.raw(op, lay, link, b, label=None if op == "pingpong" else "lat") for b in sizes]
            if all(t is None for t in ts):
                continue
            a, bw = D.link_ab(link, lay) if op == "pingpong" else (None, None)
            if op == "allreduce" and ts[0] is not None and ts[-1] is not None and ts[-1] > ts[0]:
                a, bw = ts[0], sizes[-1] / (ts[-1] - ts[0])
            print(
                f"| {link} | {op} | "
                + " | ".join(fmt(t, 1e6, 1) for t in ts)
                + f" | {fmt(a, 1e6, 1)} | {fmt(bw, 8e-9, 2)} |"
            )
    print()
    print("## Raw MPI_Allreduce of each model's gradient bytes (parameters x 4; x 2 for bf16), ms, median")
    print()
    print("2 hosts x 2 ranks: the default (tuned) in place as ddtrain calls it, and tuned and han from a send")
    print("buffer (han crashes on MPI_IN_PLACE in Open MPI 4.1.4); failed = runs that crashed or hung")
    print()
    print(
        "| model | bytes | link | 2 hosts | 3 hosts | 2 x 2 tuned | 2 x 2 tuned, send buffer | 2 x 2 han, send buffer "
        "| han / tuned | han failed |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for m in D.models:
        np_ = D.params(m)
        if not np_:
            continue
        for nb in (np_ * 4, np_ * 2):
            for link in D.links:
                t2, t3 = D.raw("allreduce", "2x1", link, nb, m), D.raw("allreduce", "3x1", link, nb, m)
                tu = D.raw("allreduce", "2x2", link, nb)
                to = D.raw("allreduce", "2x2", link, nb, coll="tuned-oop")
                th = D.raw("allreduce", "2x2", link, nb, coll="han-oop")
                hruns = [c for c in D.coll if c.get("coll") == "han-oop" and c["link"] == link
                         and (c.get("bytes") == nb or "failed" in c)]
                nfail = sum(1 for c in hruns if "failed" in c)
                if t2 is None and t3 is None and tu is None and th is None:
                    continue
                print(
                    f"| {m} | {nb:,} | {link} | {fmt(t2, 1e3, 2)} | {fmt(t3, 1e3, 2)} | {fmt(tu, 1e3, 2)} | {fmt(to, 1e3, 2)} "
                    f"| {fmt(th, 1e3, 2)} | {ratio(th, to)} | {nfail} of {len(hruns) if nb == np_ * 4 else '-'} |"
                    if nb == np_ * 4 else
                    f"| {m} | {nb:,} | {link} | {fmt(t2, 1e3, 2)} | {fmt(t3, 1e3, 2)} | - | - | - | - | - |"
                )
    fails = [c for c in D.coll if "failed" in c]
    if fails:
        print()
        print("allreduce_bench runs that failed:")
        for c in fails:
            print(f"- repeat {c['repeat']}, {c['coll']} {c['layout']} {c['link']} {' '.join(c.get('args') or [])}: {c['failed']}")
    print()
    print("## CPU time per thread of the 2-host runs (s, median over repeats; sampled every 0.2 s) against the")
    print("## timed epoch's wall time")
    print()
    print("| model | link | config | epoch s | rank 0: CPU s per thread | rank 1: CPU s per thread |")
    print("|---|---|---|---|---|---|")
    for m in D.models:
        for link in D.links:
            for v in D.variants:
                runs = D.sel(model=m, layout="2x1", link=link, variant=v)
                if not runs or not any(r.get("threads") for r in runs):
                    continue
                cells = []
                for rk in (0, 1):
                    groups = {}  # "main" and the other threads by name: CPU s summed per run
                    for r in runs:
                        per = {}
                        for t in r.get("threads") or []:
                            if t["rank"] == rk:
                                k = "main" if t.get("main") else t["thread"]
                                per.setdefault(k, [0.0, 0])
                                per[k][0] += t["user_s"] + t["sys_s"]
                                per[k][1] += 1
                        for k, (cpu, count) in per.items():
                            groups.setdefault(k, []).append((cpu, count))
                    parts = []
                    for k in sorted(groups, key=lambda k: (k != "main", k)):
                        cpu = med(c for c, _ in groups[k])
                        count = max(n for _, n in groups[k])
                        if cpu is not None and cpu >= 0.05:
                            parts.append(f"{k}{'' if k == 'main' else f' ({count} threads)'} {cpu:.2f}")
                    cells.append(", ".join(parts) or "-")
                ep = med(r.get("epoch_s") for r in runs)
                print(f"| {m} | {link} | {v or 'baseline'} | {fmt(ep, 1, 2)} | {cells[0]} | {cells[1]} |")


# ------------------------------------------------------------------------------------------- the model
def t_sync(P, nbytes, alpha, bw):
    if P < 2:
        return 0.0
    return 2 * (P - 1) * alpha + 2 * (P - 1) / P * nbytes / bw


def step(tc, tb, P, nbytes, alpha, bw, overlap):
    """step time and sync time: overlap hides min(backward, sync)"""
    s = t_sync(P, nbytes, alpha, bw)
    return tc + s - (min(tb, s) if overlap else 0.0), s


def step_layers(model, tc, tb, P, nbytes, alpha, bw):
    """step time with whole-layer buckets: the early groups of LAYER_BUCKETS start when their layers'
    backward is done, reductions run one after another, the rest starts when backward ends"""
    groups = [g for g in [LAYER_BUCKETS[model]] if g[0] > 0]
    t0 = tc - tb  # backward starts
    t_comm = t0
    sent = 0.0
    for share, left in groups:
        ready = t0 + (1 - left) * tb
        t_comm = max(t_comm, ready) + t_sync(P, share * nbytes, alpha, bw)
        sent += share
    rest = max(0.0, 1 - sent)
    t_comm = max(t_comm, tc) + (t_sync(P, rest * nbytes, alpha, bw) if rest > 1e-9 else 0.0)
    return max(tc, t_comm)


def model(D):
    e = D.env
    print(f"# alpha-beta model from {D.dir}/net-*.txt ({e.get('date', '?')}, {e.get('cpu', '?')})")
    print()
    a_veth, bw_veth = D.link_ab("veth")
    rate_links = [l for l in D.links if l.startswith("tbf")]
    a_tbf, bw_tbf = D.link_ab(rate_links[0]) if rate_links else (None, None)
    a_shm, bw_shm = D.link_ab("shm", "shm")
    a_lo, bw_lo = D.link_ab("lo", "lo")
    print("## Measured inputs")
    print()
    print("ping-pong: alpha = half the round trip of 8 bytes, bandwidth = 4 MiB over its half round trip less")
    print("alpha (one message, one direction); allreduce fit: 2 ranks, T(n) = 2 alpha + n / bandwidth")
    print()
    print("| link | ping-pong alpha (us) | ping-pong bandwidth (Gbit/s) | allreduce alpha (us) | allreduce bandwidth (Gbit/s) |")
    print("|---|---|---|---|---|")
    for n, l, a, b in (("shared memory", "shm", a_shm, bw_shm), ("TCP loopback", "lo", a_lo, bw_lo),
                       ("veth (TCP)", "veth", a_veth, bw_veth)):
        fa, fb = D.link_fit(l)
        print(f"| {n} | {fmt(a, 1e6, 1)} | {fmt(b, 8e-9, 2)} | {fmt(fa, 1e6, 1)} | {fmt(fb, 8e-9, 2)} |")
    for l in rate_links:
        a, b = D.link_ab(l)
        fa, fb = D.link_fit(l)
        print(f"| veth + {l[3:]} tbf (TCP) | {fmt(a, 1e6, 1)} | {fmt(b, 8e-9, 2)} | {fmt(fa, 1e6, 1)} | {fmt(fb, 8e-9, 2)} |")
    print()
    print("| model | parameters | gradient MB (fp32) | batch | 1-rank samples/s | compute per step ms | backward share |")
    print("|---|---|---|---|---|---|---|")
    inputs = {}
    for m in D.models:
        np_ = D.params(m)
        tc, share = D.t1(m)
        if not np_ or not tc:
            continue
        inputs[m] = (np_ * 4, tc, share)
        print(
            f"| {m} | {np_:,} | {np_ * 4 / 1e6:.2f} | {batch_size(m)} | {fmt(D.sps(model=m, layout='1'), nd=0)} "
            f"| {tc * 1e3:.2f} | {share:.2f} |"
        )
    print()
    # efficiency of a link of nominal RATE Gbit/s: the tbf link's measured bandwidth over its rate
    eff = None
    if rate_links and bw_tbf:
        m_ = re.match(r"tbf(\d+(?:\.\d+)?)([gm])bit", rate_links[0])
        if m_:
            nominal = float(m_.group(1)) * (1e9 if m_.group(2) == "g" else 1e6) / 8
            eff = bw_tbf / nominal
    eff = min(eff or 0.94, 1.0)
    alpha = a_veth or 30e-6
    print(
        f"## Weak-scaling efficiency (per-node batch of the 1-rank run; alpha {alpha * 1e6:.1f} us, the veth "
        f"TCP ping-pong; bandwidth = rate x {eff:.2f}, the share of its rate the 1 Gbit/s tbf link's ping-pong "
        f"reached: a network that runs at its rate, not this machine's CPU-bound TCP)"
    )
    print()
    print("overlap: hides min(backward, sync); layer buckets: what whole-layer buckets can hide (LAYER_BUCKETS)")
    print()
    print("| model | link | nodes | sync ms | no overlap | overlap | overlap + bf16 | layer buckets | layer buckets + bf16 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for m, (nb, tc, share) in inputs.items():
        tb = tc * share
        for gbit in (10, 25, 100):
            bw = gbit * 1e9 / 8 * eff
            for P in (8, 64, 256):
                s0, ts = step(tc, tb, P, nb, alpha, bw, False)
                s1, _ = step(tc, tb, P, nb, alpha, bw, True)
                s2, _ = step(tc, tb, P, nb / 2, alpha, bw, True)
                l1 = step_layers(m, tc, tb, P, nb, alpha, bw)
                l2 = step_layers(m, tc, tb, P, nb / 2, alpha, bw)
                print(
                    f"| {m} | {gbit} Gbit/s | {P} | {ts * 1e3:.2f} | {tc / s0:.0%} | {tc / s1:.0%} | {tc / s2:.0%} "
                    f"| {tc / l1:.0%} | {tc / l2:.0%} |"
                )
    print()
    print("## Predicted vs measured on this machine (strong scaling: the 1-rank batch split over P ranks)")
    print()
    print(
        "compute per rank = t_c / P x max(1, P / cores): the emulated hosts share the machine's cores; the "
        "sync uses the link's alpha and bandwidth of the allreduce fit (2 ranks) above"
    )
    print()
    print(
        "| model | hosts | link | config | sync ms: model | raw allreduce ms | samples/s: model (layer buckets) "
        "| measured | measured / model |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    cores = 2
    try:
        cores = int(re.search(r"\((\d+) cores\)", e.get("cpu", "")).group(1))
    except (AttributeError, ValueError):
        pass
    for m, (nb, tc, share) in inputs.items():
        for layout, P in (("2x1", 2), ("3x1", 3)):
            for link in D.links:
                a, bw = D.link_fit(link)
                if a is None or bw is None:
                    continue
                todo = [] if D.env.get("have_comm") != "0" else [v for v in DEFAULT_VARIANTS if overlapping(v)]
                for v in D.variants + todo:
                    if not D.sel(model=m, layout=layout, link=link, variant=v) and layout == "3x1":
                        continue
                    n = nb / 2 if is_bf16(v) else nb
                    comp = tc / P * max(1.0, P / cores)
                    overlap = overlapping(v)
                    st, ts = step(comp, comp * share, P, n, a, bw, overlap)
                    pred = batch_size(m) / st
                    pred_l = batch_size(m) / step_layers(m, comp, comp * share, P, n, a, bw) if overlap else None
                    meas = D.sps(model=m, layout=layout, link=link, variant=v)
                    raw = D.raw("allreduce", layout, link, n, label=m)
                    if meas is None and overlap:
                        meas_s = "TODO (overlap not landed)"
                    else:
                        meas_s = fmt(meas, nd=0)
                    print(
                        f"| {m} | {P} | {link} | {v or 'baseline'} | {ts * 1e3:.2f} | {fmt(raw, 1e3, 2)} | {pred:,.0f}"
                        f"{' (' + format(pred_l, ',.0f') + ')' if pred_l else ''} "
                        f"| {meas_s} | {ratio(meas, pred)}{' (' + ratio(meas, pred_l) + ')' if pred_l else ''} |"
                    )


def main():
    args = sys.argv[1:]
    mode = "--summary"
    if args and args[0] in ("--summary", "--model"):
        mode = args.pop(0)
    d = args[0] if args else "build/bench"
    D = Data(d)
    if not D.runs and not D.coll:
        sys.exit(f"scaling_model.py: no figures in {d}/net-runs.txt or {d}/net-collectives.txt: run jobs/bench/net.sh")
    summary(D) if mode == "--summary" else model(D)


if __name__ == "__main__":
    main()
