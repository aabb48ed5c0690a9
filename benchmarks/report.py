"""Summaries and the plain-text table printed by run.py."""

import statistics

BASELINES = ("asyncio", "uvloop", "rloop")
SUBJECT = "ferroloop"


def median(samples):
    return statistics.median(samples) if samples else None


def spread(samples):
    """(max - min) / median: a crude but honest noise indicator."""
    if len(samples) < 2:
        return None
    return (max(samples) - min(samples)) / statistics.median(samples)


def ratio(results, workload, numerator, denominator):
    per_loop = results.get(workload) or {}
    a = (per_loop.get(numerator) or {}).get("median")
    b = (per_loop.get(denominator) or {}).get("median")
    if a is None or b is None or b == 0:
        return None
    return a / b


def fmt_rate(value):
    if value is None:
        return "-"
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.3g}"


def fmt_ratio(value):
    return "-" if value is None else f"{value:.2f}x"


def fmt_pct(value):
    return "-" if value is None else f"{value * 100:.0f}%"


def _cell(entry, formatter, key):
    if entry is None:
        return "-"
    if entry.get("na"):
        return "n/a"
    if entry.get("error"):
        return "FAIL"
    if entry.get("skip"):
        return "skip"
    return formatter(entry.get(key))


def table(header, rows):
    """Plain-text table: first column left-aligned, the others right-aligned."""
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    lines = []
    for k, row in enumerate([header] + rows):
        cells = [str(row[0]).ljust(widths[0])]
        cells += [str(c).rjust(w) for c, w in zip(row[1:], widths[1:])]
        lines.append("  ".join(cells).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def render(results, workloads, loop_names, rounds, repeat=1, unit="ops/s",
           label="workload"):
    """results[workload][loop] = {"samples", "median", "spread", "error"}.

    An entry may also carry "skip" (the loop lacks a feature the workload
    needs): shown as "skip", no ratio.
    """
    baselines = [b for b in BASELINES if b in loop_names and b != SUBJECT]
    show_ratios = SUBJECT in loop_names and bool(baselines)

    header = [label] + list(loop_names)
    if show_ratios:
        header += [f"vs {b}" for b in baselines]
    rows = []
    for w in workloads:
        row = [w] + [_cell(results[w].get(l), fmt_rate, "median") for l in loop_names]
        if show_ratios:
            row += [fmt_ratio(ratio(results, w, SUBJECT, b)) for b in baselines]
        rows.append(row)

    plural = "s" if rounds != 1 else ""
    best_of = f", each the best of {repeat} in-process runs" if repeat > 1 else ""
    out = [
        f"Median {unit} over {rounds} interleaved fresh-process round{plural}"
        f"{best_of} (higher is better)",
    ]
    if show_ratios:
        out.append(f"'vs X' = {SUBJECT} median / X median (>1.00x: {SUBJECT} is faster)")
    out += ["", table(header, rows)]

    if rounds > 1:
        spread_rows = [[w] + [_cell(results[w].get(l), fmt_pct, "spread")
                              for l in loop_names] for w in workloads]
        out += ["", "Run-to-run spread, (max - min) / median:", "",
                table([label] + list(loop_names), spread_rows)]
    failed = any((e or {}).get("error") for w in workloads for e in results[w].values())
    skipped = any((e or {}).get("skip") for w in workloads for e in results[w].values())
    missing = any(results[w].get(l) is None for w in workloads for l in loop_names)
    not_applicable = [e["na"] for w in workloads for e in results[w].values()
                      if e and e.get("na")]
    if failed:
        out += ["", "FAIL = failed its own result check, crashed or timed out "
                    "(details in the log above)."]
    if skipped:
        out += ["", "skip = the loop does not implement what this workload needs yet "
                    "(see the notes below)."]
    if missing:
        out += ["", "'-' = loop not available (see the note below)."]
    if not_applicable:
        out += ["", f"n/a = {not_applicable[0]}."]
    return "\n".join(out)
