"""PNG charts of the latest benchmark results (`make bench-report`).

Reads the JSON that the suites write with --json (the make targets put it in
benchmarks/results/: micro.json from run.py, net.json, tls.json, proc.json)
and draws one chart per family into docs/bench/ (micro.png, net.png, tls.png,
proc.png), plus headline.png: ferroloop's throughput over uvloop's and rloop's
in every cell of every family. A family whose JSON is missing is left out.

    .venv/bin/python benchmarks/charts.py [--results benchmarks/results]
        [--out docs/bench] [--note "machine busy with other work"]

Each family chart has a throughput panel (median requests/s or ops/s of
every loop relative to asyncio's, the ratio written on each bar, and
ferroloop's ratio to uvloop and rloop beside each group) and, where the JSON
has the user/kernel split (net, tls, proc), a CPU panel: CPU per request of
every loop relative to asyncio's total, user space solid and kernel hatched,
with ferroloop's user-space ratio to uvloop. matplotlib is a dev-only
dependency (requirements-dev.txt).
"""

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import cpu_split  # noqa: E402

FAMILIES = {
    # family: (results file, top-level key, title, what the rate counts)
    "micro": ("micro.json", "workloads", "Event-loop micro-benchmarks", "ops/s"),
    "net": ("net.json", "cells", "Network: loopback TCP echo and HTTP/1.1", "requests/s"),
    "tls": ("tls.json", "cells", "TLS echo and handshakes", "round trips or handshakes/s"),
    "proc": ("proc.json", "cells", "UDP echo and subprocess spawn + wait",
             "round trips or children/s"),
}
LOOPS = ("asyncio", "uvloop", "rloop", "ferroloop", "ceiling")
COLORS = {"asyncio": "#8c96a8", "uvloop": "#e69f3c", "rloop": "#5aa469",
          "ferroloop": "#c0392b", "ceiling": "#b3b9c2"}
PEERS = ("uvloop", "rloop")


def load(results_dir):
    """{family: parsed JSON} for every family whose file exists."""
    docs = {}
    for family, (name, _, _, _) in FAMILIES.items():
        path = Path(results_dir) / name
        if path.is_file():
            docs[family] = json.loads(path.read_text())
    return docs


def _entry(cell, loop):
    e = (cell.get("results") or {}).get(loop)
    if not e or e.get("error") or e.get("skip") or e.get("na"):
        return None
    return e


def rows(doc, family):
    """[(cell name, {loop: entry})] in the file's order, usable entries only."""
    key = FAMILIES[family][1]
    out = []
    for name, cell in doc.get(key, {}).items():
        entries = {l: _entry(cell, l) for l in LOOPS}
        out.append((name, {l: e for l, e in entries.items() if e}))
    return out


def status(doc, family, cell_name, loop):
    """Why a loop has no usable result in a cell: 'skipped', 'failed' or 'not run'."""
    e = (doc.get(FAMILIES[family][1], {}).get(cell_name, {}).get("results") or {}).get(loop)
    if e and e.get("skip"):
        return "skipped"
    if e and e.get("error"):
        return "failed"
    return "not run"


def loops_present(table):
    return [l for l in LOOPS if any(l in entries for _, entries in table)]


def _reference(entries, key):
    """asyncio's value, or the first loop that has one (the chart says which)."""
    for l in LOOPS:
        value = (entries.get(l) or {}).get(key)
        if value:
            return l, value
    return None, None


def subtitle(doc, note):
    meta = doc.get("meta", {})
    parts = [meta.get("date", "")[:16].replace("T", " ") + " UTC",
             f"Python {meta.get('python', '?')}", f"{meta.get('cpu_count', '?')} CPUs",
             f"median of {meta.get('rounds', '?')} interleaved fresh-process "
             f"round{'' if meta.get('rounds') == 1 else 's'}"]
    load_avg = meta.get("load")
    if load_avg:
        parts.append(f"load average {load_avg[0]:.1f} at the end")
    text = " · ".join(parts)
    return text + ("\n" + note if note else "")


LOG_SCALE_ABOVE = 6.0  # ratios spanning more than this get a log2 axis


def ratio_axis(ax, values):
    """Linear axis from 0, or log2 when the ratios span a lot; returns the bars' base."""
    import math
    from matplotlib.ticker import FuncFormatter
    lo, hi = min(values + [1.0]), max(values + [1.0])
    if hi / lo <= LOG_SCALE_ABOVE:
        ax.set_xlim(0, hi * 1.18)
        return 0.0
    base = 2.0 ** math.floor(math.log2(lo / 1.2))
    ax.set_xscale("log", base=2)
    ax.set_xlim(base, hi * 1.6)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
    return base


def _throughput_panel(ax, table, loops, unit):
    import numpy as np
    n, k = len(table), len(loops)
    height = 0.8 / k
    ys = np.arange(n)
    labels, bars = [], []
    for i, (name, entries) in enumerate(table):
        ref_loop, ref = _reference(entries, "median")
        labels.append(name if ref_loop in (None, "asyncio") else f"{name}\n(vs {ref_loop})")
        for j, l in enumerate(loops):
            e = entries.get(l)
            if e and ref:
                bars.append((ys[i] - 0.4 + height * (j + 0.5), e["median"] / ref, l))
    base = ratio_axis(ax, [rel for _, rel, _ in bars])
    for y, rel, l in bars:
        ax.barh(y, rel - base, left=base, height=height * 0.92, color=COLORS[l],
                edgecolor="#333333" if l == "ferroloop" else "none", linewidth=0.6)
        ax.text(rel, y, f" {rel:.2f}x", va="center", fontsize=7,
                fontweight="bold" if l == "ferroloop" else "normal")
    for i, (name, entries) in enumerate(table):
        mine = (entries.get("ferroloop") or {}).get("median")
        vs = [f"vs {p} {mine / entries[p]['median']:.2f}x" for p in PEERS
              if mine and entries.get(p)]
        if vs:
            ax.text(1.01, ys[i], "ferroloop\n" + "\n".join(vs), transform=ax.get_yaxis_transform(),
                    va="center", fontsize=7.5, color=COLORS["ferroloop"])
    ax.set_yticks(ys, labels, fontsize=8)
    ax.axvline(1.0, color="#555555", linewidth=0.8, linestyle=":")
    ax.set_title(f"Throughput: median {unit}", fontsize=9.5)
    ax.set_xlabel("relative to asyncio (higher is better)", fontsize=8)
    ax.tick_params(axis="x", labelsize=8)


def _fmt_us(value):
    return f"{value:.0f}" if value >= 100 else f"{value:.3g}"


def _cpu_panel(ax, table, loops, what, per):
    import numpy as np
    k = len(loops)
    height = 0.8 / k
    ys = np.arange(len(table))
    top = 1.0
    for i, (name, entries) in enumerate(table):
        ref_loop, ref = _reference(entries, "median_cpu_total_us")
        for j, l in enumerate(loops):
            e = entries.get(l)
            if not e or not ref or e.get("median_cpu_user_us") is None:
                continue
            u, s = e["median_cpu_user_us"] / ref, e["median_cpu_sys_us"] / ref
            top = max(top, u + s)
            y = ys[i] - 0.4 + height * (j + 0.5)
            ax.barh(y, u, height=height * 0.92, color=COLORS[l])
            ax.barh(y, s, left=u, height=height * 0.92, color=COLORS[l], alpha=0.45,
                    hatch="////", edgecolor="white", linewidth=0)
            ax.text(u + s, y, f" {u + s:.2f}", va="center", fontsize=7)
        targets = cpu_split.ratios({name: entries}, name)
        notes = [f"{ref_loop} total {_fmt_us(ref)} µs" if ref else "no CPU data"]
        if targets.get("user_vs_uvloop") is not None:
            notes.append(f"user vs uvloop {targets['user_vs_uvloop']:.2f}x")
        if targets.get("kernel_share") is not None:
            notes.append(f"kernel {targets['kernel_share']:.0%}"
                         + (" (kernel-bound)" if targets["kernel_bound"] else ""))
        ax.text(1.01, ys[i], notes[0] + ("\nferroloop:\n" + "\n".join(notes[1:])
                                          if notes[1:] else ""),
                transform=ax.get_yaxis_transform(), va="center", fontsize=7.5,
                color=COLORS["ferroloop"])
    ax.set_xlim(0, top * 1.15)
    ax.axvline(1.0, color="#555555", linewidth=0.8, linestyle=":")
    ax.set_title(f"{what} CPU per {per}: solid = user space, hatched = kernel",
                 fontsize=9.5)
    ax.set_xlabel("relative to asyncio's total (lower is better)", fontsize=8)
    ax.tick_params(axis="x", labelsize=8)


def _legend(fig, loops, doc, absent=()):
    from matplotlib.patches import Patch
    info = doc.get("loops", {})
    handles = []
    for l in loops:
        version = (info.get(l) or {}).get("version", "")
        label = l if not version else f"{l} {version.removeprefix('CPython ')}"
        if l == "ceiling":
            label = "ceiling (minimal Rust epoll echo server)"
        handles.append(Patch(color=COLORS[l], label=label))
    handles += [Patch(color="none", label=text) for text in absent]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8,
               frameon=False)


def family_chart(family, doc, out_path, note=""):
    """Draw one family's chart; returns the path written."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = rows(doc, family)
    if not table:
        raise ValueError(f"{family}: no cells in the results")
    loops = loops_present(table)
    with_cpu = any(e.get("median_cpu_user_us") is not None
                   for _, entries in table for e in entries.values())
    panels = 2 if with_cpu else 1
    per_row = 0.17 * len(loops) + 0.2
    fig_h = 2.3 + per_row * len(table)
    fig_w = 16 if with_cpu else 10
    fig, axes = plt.subplots(1, panels, figsize=(fig_w, fig_h), squeeze=False, sharey=True)
    _, _, title, unit = FAMILIES[family]
    fig.suptitle(title, fontsize=13, fontweight="bold", y=1 - 0.12 / fig_h)
    fig.text(0.5, 1 - 0.5 / fig_h, subtitle(doc, note), ha="center", va="top", fontsize=8,
             color="#444444")
    axes[0][0].invert_yaxis()
    _throughput_panel(axes[0][0], table, loops, unit)
    if with_cpu:
        if family == "net":
            _cpu_panel(axes[0][1], table, loops, "Server", "request")
        else:
            _cpu_panel(axes[0][1], table, loops, "Process (server + client)", "op")
    absent = [f"{l}: {status(doc, family, table[0][0], l)} in every cell"
              for l in LOOPS if l not in loops and l != "ceiling"]
    _legend(fig, loops, doc, absent)
    left_in, right_in = 1.6, 1.5
    fig.subplots_adjust(left=left_in / fig_w, right=1 - right_in / fig_w,
                        wspace=(right_in + 0.2) / ((fig_w - left_in - right_in) / panels),
                        top=1 - 1.35 / fig_h, bottom=0.9 / fig_h)
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return Path(out_path)


def headline_chart(docs, out_path, note=""):
    """ferroloop's median throughput over uvloop's and rloop's, every cell of every family."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    items = []  # (label, {peer: ratio}, {peer: why there is no ratio})
    for family in FAMILIES:
        if family not in docs:
            continue
        for name, entries in rows(docs[family], family):
            mine = (entries.get("ferroloop") or {}).get("median")
            ratios = {p: mine / entries[p]["median"] for p in PEERS if mine and entries.get(p)}
            if ratios:
                why = {p: status(docs[family], family, name, p) for p in PEERS
                       if p not in ratios}
                items.append((f"{family}: {name}", ratios, why))
    if not items:
        raise ValueError("no cell has ferroloop and a peer")
    fig_h = 1.9 + 0.3 * len(items)
    fig, ax = plt.subplots(figsize=(10, fig_h))
    ys = np.arange(len(items))
    ax.invert_yaxis()
    base = ratio_axis(ax, [r for _, ratios, _ in items for r in ratios.values()])
    for i, (_, ratios, why) in enumerate(items):
        for j, p in enumerate(PEERS):
            y = ys[i] - 0.2 + 0.4 * j
            if p not in ratios:
                ax.text(base, y, f" {p}: {why[p]}", va="center", fontsize=7, color="#888888")
                continue
            r = ratios[p]
            ax.barh(y, r - base, left=base, height=0.38, color=COLORS[p])
            ax.text(r, y, f" {r:.2f}x", va="center", fontsize=7)
    ax.set_yticks(ys, [label for label, _, _ in items], fontsize=8)
    ax.axvline(1.0, color="#333333", linewidth=1.0)
    ax.set_xlabel("ferroloop's median throughput ÷ the peer's (> 1: ferroloop is faster)",
                  fontsize=8.5)
    ax.tick_params(axis="x", labelsize=8)
    from matplotlib.patches import Patch
    ax.legend(handles=[Patch(color=COLORS[p], label=f"vs {p}") for p in PEERS],
              loc="lower right", fontsize=8)
    any_doc = next(iter(docs.values()))
    fig.suptitle("ferroloop vs uvloop and rloop", fontsize=13, fontweight="bold", y=0.995)
    fig.text(0.5, 1 - 0.4 / fig_h, subtitle(any_doc, note).split(" · median")[0]
             + " · medians of interleaved fresh-process rounds"
             + ("\n" + note if note else ""), ha="center", va="top", fontsize=8,
             color="#444444")
    fig.subplots_adjust(left=0.26, right=0.97, top=1 - 1.0 / fig_h, bottom=0.5 / fig_h)
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return Path(out_path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default=str(HERE / "results"),
                        help="folder with micro.json, net.json, tls.json, proc.json "
                             "(default: benchmarks/results)")
    parser.add_argument("--out", default=str(HERE.parent / "docs" / "bench"),
                        help="where the PNG files go (default: docs/bench)")
    parser.add_argument("--note", default="", help="extra subtitle line on every chart")
    args = parser.parse_args(argv)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        sys.exit("matplotlib is needed for the charts: .venv/bin/pip install -r "
                 "requirements-dev.txt (or `make build`)")
    docs = load(args.results)
    if not docs:
        sys.exit(f"no results in {args.results}: run make bench / bench-net / bench-tls / "
                 "bench-proc first (they write their JSON there)")
    written = []
    for family, doc in docs.items():
        written.append(family_chart(family, doc, Path(args.out) / f"{family}.png", args.note))
    written.append(headline_chart(docs, Path(args.out) / "headline.png", args.note))
    for path in written:
        print(f"wrote {path}")
    missing = [f for f in FAMILIES if f not in docs]
    if missing:
        print(f"note: no results for {', '.join(missing)} in {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
