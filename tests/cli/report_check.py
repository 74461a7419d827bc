"""Check a ddtrain report page (the file, or Chromium's --dump-dom of it) against the runs' metrics logs.

usage: report_check.py PAGE LABEL=METRICS.jsonl [LABEL=METRICS.jsonl ...]

Every plot must be there as <svg id="plot-...">, with one series per run and metric whose points are
the log's records (counted, and the values in the points' tooltips compared), the markers on the
timeline as many as the log's events, the phase bars per epoch, and nothing fetched or scripted.
Prints one line per failed check and exits 1 if any failed.
"""
import collections
import json
import re
import sys
from html.parser import HTMLParser

VOID = {"meta", "br", "hr", "img", "input", "link", "col", "area", "base", "wbr"}


class Node:
    def __init__(self, tag, attrs, parent):
        self.tag, self.attrs, self.parent = tag, dict(attrs), parent
        self.children, self.text = [], ""

    def iter(self):
        yield self
        for c in self.children:
            yield from c.iter()

    def find(self, tag=None, **want):
        for n in self.iter():
            if tag and n.tag != tag:
                continue
            if all(n.attrs.get(k.rstrip("_").replace("_", "-")) == v for k, v in want.items()):
                yield n

    def all_text(self):
        return self.text + "".join(c.all_text() for c in self.children)


class Tree(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = Node("#root", [], None)
        self.cur = self.root

    def handle_starttag(self, tag, attrs):
        n = Node(tag, attrs, self.cur)
        self.cur.children.append(n)
        if tag not in VOID:
            self.cur = n

    def handle_startendtag(self, tag, attrs):
        self.cur.children.append(Node(tag, attrs, self.cur))

    def handle_endtag(self, tag):
        n = self.cur
        while n is not self.root and n.tag != tag:
            n = n.parent
        if n is not self.root:
            self.cur = n.parent

    def handle_data(self, data):
        self.cur.text += data


def load(path):
    """the log as the report reads it: complete lines only, a resume replacing the steps it redid"""
    steps, epochs, events = [], [], collections.Counter()
    text = open(path, encoding="utf-8", errors="replace").read()
    lines = text.split("\n")
    if not text.endswith("\n"):
        lines = lines[:-1]  # being written
    starts = 0
    for line in lines:
        try:
            r = json.loads(line)
        except ValueError:
            continue
        if not isinstance(r, dict) or "event" not in r:
            continue
        ev = r["event"]
        if ev == "start":
            starts += 1
            if starts > 1:
                at = r.get("resumed_at_step", 0)
                steps = [s for s in steps if s["step"] <= at]
                epochs = [e for e in epochs if e["step"] <= at]
        if ev == "step":
            steps.append(r)
        elif ev == "epoch":
            epochs.append(r)
        events[ev] += 1
    return steps, epochs, events


def points(path_node):
    return len(re.findall(r"[ML]", path_node.attrs.get("d", "")))


def g4(v):
    return "%.4g" % v


fails = []


def check(cond, what):
    if not cond:
        fails.append(what)
    return cond


def series(svg, name, label):
    found = [n for n in svg.find("path", class_="series", data_series=name) if n.attrs.get("data-run") == label]
    return found[0] if found else None


def tooltip_values(svg, name, label):
    """the values in the tooltips of a series' points, in order"""
    out = []
    for g in svg.find("g", class_="points", data_series=name):
        for c in g.find("circle"):
            t = c.all_text()
            if t.startswith(label + ":"):
                out.append(t.rsplit(" ", 1)[-1])
    return out


def main():
    page = sys.argv[1]
    runs = [a.split("=", 1) for a in sys.argv[2:]]
    html = open(page, encoding="utf-8").read()
    tree = Tree()
    tree.feed(html)
    root = tree.root

    # self-contained: nothing fetched, nothing run
    check("<script" not in html.lower(), "the page has a <script>")
    for n in root.iter():
        for k in ("src", "href"):
            check(k not in n.attrs, "a %s attribute on <%s>: %s" % (k, n.tag, n.attrs.get(k)))
    check("url(" not in html, "a url(...) in the page")
    urls = set(re.findall(r"https?://[^\"' <>]+", html))
    check(urls <= {"http://www.w3.org/2000/svg"}, "addresses in the page: %s" % sorted(urls))

    plots = {n.attrs["id"]: n for n in root.find("svg") if n.attrs.get("id", "").startswith("plot-")}
    for pid in ("plot-loss", "plot-accuracy", "plot-lr", "plot-throughput", "plot-phases", "plot-ranks", "plot-timeline"):
        check(pid in plots, "no <svg id=%s>" % pid)
    if fails:
        return
    colours = []
    for label, path in runs:
        steps, epochs, events = load(path)
        check(any(n.attrs.get("data-run") == label for n in root.find("tr", class_="run-row")), "%s: no summary row" % label)
        # curves: one point per record
        want = {
            ("plot-loss", "train_loss_step"): [s["train_loss"] for s in steps if s.get("train_loss") is not None],
            ("plot-loss", "train_loss"): [e["train_loss"] for e in epochs if e.get("train_loss") is not None],
            ("plot-loss", "val_loss"): [e["val_loss"] for e in epochs if e.get("val_loss") is not None],
            ("plot-accuracy", "train_acc"): [100 * e["train_acc"] for e in epochs if e.get("train_acc") is not None],
            ("plot-accuracy", "val_acc"): [100 * e["val_acc"] for e in epochs if e.get("val_acc") is not None],
            ("plot-lr", "lr"): [s["lr"] for s in steps if s.get("lr") is not None]
            or [e["lr"] for e in epochs if e.get("lr") is not None],
            ("plot-throughput", "samples_per_s"): [e["samples_per_s"] for e in epochs if e.get("samples_per_s")],
        }
        for (pid, name), vals in want.items():
            p = series(plots[pid], name, label)
            if not check(p is not None or not vals, "%s: %s has no series %s" % (label, pid, name)):
                continue
            if p is None:
                continue
            check(points(p) == min(len(vals), 2001) or len(vals) > 2000,
                  "%s: %s/%s has %d points, the log %d" % (label, pid, name, points(p), len(vals)))
            if name == "train_loss":
                colours.append(p.attrs.get("stroke"))
            tips = tooltip_values(plots[pid], name, label)
            if tips and name != "samples_per_s":
                check(tips == [g4(v) for v in vals],
                      "%s: %s/%s tooltips %s, the log %s" % (label, pid, name, tips, [g4(v) for v in vals]))
        check(len(want[("plot-loss", "val_loss")]) > 0, "%s: the log has no val_loss (test setup)" % label)
        # phases: a stack per epoch, of the phase timers when logged, else of the older fields
        panel = [g for g in plots["plot-phases"].find("g", class_="run") if g.attrs.get("data-run") == label]
        if check(len(panel) == 1, "%s: plot-phases has %d panels" % (label, len(panel))):
            bars = list(panel[0].find("rect", class_="bar"))
            names = {b.attrs["data-series"] for b in bars}
            ep_nums = {b.attrs["data-epoch"] for b in bars}
            check(ep_nums == {str(e["epoch"]) for e in epochs}, "%s: phase bars for epochs %s, log %s"
                  % (label, sorted(ep_nums), [e["epoch"] for e in epochs]))
            logged = {k for e in epochs for k, v in (e.get("phases") or {}).items() if (v.get("mean_s") or 0) > 0}
            if any("phases" in e for e in epochs):
                check(names == logged, "%s: phase bars %s, logged phases %s" % (label, sorted(names), sorted(logged)))
            else:
                check("compute_other" in names and names <= {"data_wait_s", "allreduce_s", "compute_other"},
                      "%s: phase bars without phase timers: %s" % (label, sorted(names)))
        rpanel = [g for g in plots["plot-ranks"].find("g", class_="run") if g.attrs.get("data-run") == label]
        if check(len(rpanel) == 1, "%s: plot-ranks has %d panels" % (label, len(rpanel))):
            maxbars = {b.attrs["data-series"]: b.attrs.get("data-rank") for b in rpanel[0].find("rect", data_stat="max")}
            phased = [e for e in epochs if "phases" in e]
            if phased:
                for ph in phased[0]["phases"]:
                    ranks = collections.Counter(e["phases"][ph]["max_rank"] for e in phased if ph in e["phases"])
                    top = max(ranks.values())
                    check(maxbars.get(ph) in {str(r) for r, c in ranks.items() if c == top},
                          "%s: plot-ranks names rank %s for %s, the log %s" % (label, maxbars.get(ph), ph, dict(ranks)))
            else:
                check(not maxbars and "no phase timings" in rpanel[0].all_text(),
                      "%s: plot-ranks without phase timers should say so" % label)
        # the timeline: every event a marker
        lane = [g for g in plots["plot-timeline"].find("g", class_="run") if g.attrs.get("data-run") == label]
        if check(len(lane) == 1, "%s: plot-timeline has %d lanes" % (label, len(lane))):
            got = collections.Counter(m.attrs["data-kind"] for m in lane[0].find("g", class_="marker"))
            for kind in ("start", "checkpoint", "skip", "stopped", "stall", "done"):
                check(got[kind] == events[kind], "%s: %d %s marker(s), the log has %d" % (label, got[kind], kind, events[kind]))
            ticks = len(list(lane[0].find("line", class_="epoch-tick")))
            check(ticks == len(epochs), "%s: %d epoch ticks, %d epochs" % (label, ticks, len(epochs)))
    check(len(set(colours)) == len(colours), "the runs' curves share colours: %s" % colours)
    if len(runs) > 1:
        legend = " ".join(n.all_text() for n in plots["plot-loss"].find("g", class_="legend"))
        for label, _ in runs:
            check(label in legend, "the loss plot's legend does not name %s" % label)


main()
for f in fails:
    print("report_check:", f)
sys.exit(1 if fails else 0)
