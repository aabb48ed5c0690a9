"""Server CPU per request, split into user space and kernel (net.py, tls.py, proc_udp.py).

Requests/s on a shared 2-core machine mostly measures how much CPU the server
got; CPU time per request does not, and its split tells where the time goes:
user space (the loop, the interpreter, the protocol code) is what an event
loop can make cheaper; kernel time (system calls, TCP/IP, copies, wake-ups)
is largely the same for every loop that makes the same system calls. A cell
whose kernel share is high is *kernel-bound*: user-space work cannot move its
total much.

Every sample carries `cpu_user_us` and `cpu_sys_us` (CPU microseconds per
request / op in the measured window). An entry's summary is the split of the
round with the median total (the mean of the two middle rounds for an even
count), so user + sys is exactly the median total.
"""

import resource

from report import BASELINES, SUBJECT, _cell, fmt_pct, fmt_ratio, table

# Loop against which the user-space target is set, and the target.
USER_TARGET_PEER = "uvloop"
USER_TARGET = 0.6
# A cell is called kernel-bound when the kernel takes at least this share of
# ferroloop's server CPU.
KERNEL_BOUND_SHARE = 0.5


def cpu_times():
    """(user, system) CPU seconds of this process, all threads so far."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime, ru.ru_stime


def per_op_us(before, after, ops):
    """CPU microseconds per op between two cpu_times() snapshots: (user, sys)."""
    if not ops:
        return None, None
    return ((after[0] - before[0]) / ops * 1e6, (after[1] - before[1]) / ops * 1e6)


def median_split(users, syss):
    """(user, sys) of the sample(s) with the median total; sums to that median."""
    pairs = sorted(((u, s) for u, s in zip(users, syss) if u is not None and s is not None),
                   key=lambda p: p[0] + p[1])
    if not pairs:
        return None, None
    mid = len(pairs) // 2
    if len(pairs) % 2:
        return pairs[mid]
    (u1, s1), (u2, s2) = pairs[mid - 1], pairs[mid]
    return (u1 + u2) / 2, (s1 + s2) / 2


def add_sample(entry, user_us, sys_us):
    """Record one sample's split in a results entry (lists created on first use)."""
    entry.setdefault("cpu_user_us", [])
    entry.setdefault("cpu_sys_us", [])
    if user_us is not None and sys_us is not None:
        entry["cpu_user_us"].append(user_us)
        entry["cpu_sys_us"].append(sys_us)


def summarize(entry):
    """Set median_cpu_user_us / median_cpu_sys_us / median_cpu_total_us on an entry."""
    ok = not entry.get("error") and not entry.get("skip")
    user, sys_ = median_split(entry.get("cpu_user_us", []), entry.get("cpu_sys_us", [])) \
        if ok else (None, None)
    entry["median_cpu_user_us"] = user
    entry["median_cpu_sys_us"] = sys_
    entry["median_cpu_total_us"] = None if user is None else user + sys_


def _get(results, cell, loop, key):
    entry = results[cell].get(loop)
    if not entry or entry.get("error") or entry.get("skip") or entry.get("na"):
        return None
    return entry.get(key)


def ratios(results, cell):
    """The issue's targets for one cell.

    user_vs_uvloop: ferroloop user CPU / uvloop user CPU (target <= 0.6);
    total_vs_best_peer: ferroloop total / the cheapest peer's total (target <= 1);
    kernel_share: ferroloop's sys / total.
    """
    mine_u = _get(results, cell, SUBJECT, "median_cpu_user_us")
    mine_t = _get(results, cell, SUBJECT, "median_cpu_total_us")
    peer_u = _get(results, cell, USER_TARGET_PEER, "median_cpu_user_us")
    peers = [t for t in (_get(results, cell, b, "median_cpu_total_us") for b in BASELINES)
             if t]
    out = {"user_vs_uvloop": mine_u / peer_u if mine_u is not None and peer_u else None,
           "total_vs_best_peer": mine_t / min(peers) if mine_t is not None and peers else None,
           "kernel_share": None, "kernel_bound": None}
    if mine_t:
        share = _get(results, cell, SUBJECT, "median_cpu_sys_us") / mine_t
        out["kernel_share"] = share
        out["kernel_bound"] = share >= KERNEL_BOUND_SHARE
    return out


def _fmt_us(value):
    if value is None:
        return "-"
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}"


def _fmt_split(entry):
    u, s = entry.get("median_cpu_user_us"), entry.get("median_cpu_sys_us")
    if u is None:
        return "-"
    return f"{_fmt_us(u)}+{_fmt_us(s)}"


def render(results, cells, columns, what="server", per="request"):
    """The split table: per loop 'user+sys' microseconds, then the targets."""
    header = ["cell"] + list(columns)
    with_targets = SUBJECT in columns
    if with_targets:
        header += [f"user vs {USER_TARGET_PEER}", "total vs best peer", "kernel share", "bound"]
    rows = []
    for c in cells:
        row = [c]
        for l in columns:
            entry = results[c].get(l)
            if entry and entry.get("na"):
                row.append("n/a")
            elif entry is None or entry.get("error") or entry.get("skip"):
                row.append(_cell(entry, str, "median"))
            else:
                row.append(_fmt_split(entry))
        if with_targets:
            r = ratios(results, c)
            bound = r["kernel_bound"]
            row += [fmt_ratio(r["user_vs_uvloop"]), fmt_ratio(r["total_vs_best_peer"]),
                    fmt_pct(r["kernel_share"]),
                    "-" if bound is None else ("kernel" if bound else "user")]
        rows.append(row)
    title = (f"Median {what} CPU per {per}, user space + kernel, microseconds "
             f"(lower is better; the round with the median total):")
    notes = []
    if with_targets:
        notes = [
            f"'user vs {USER_TARGET_PEER}' = {SUBJECT} user-space CPU / {USER_TARGET_PEER}'s "
            f"(target <= {USER_TARGET:.2f}x); 'total vs best peer' = {SUBJECT} total / the "
            f"cheapest of {', '.join(BASELINES)} (target <= 1.00x);",
            f"'kernel share' = kernel part of {SUBJECT}'s CPU; 'bound' = kernel when that is "
            f">= {KERNEL_BOUND_SHARE:.0%} (user-space work cannot move such a cell much).",
        ]
    return "\n".join(["", title] + notes + ["", table(header, rows)])
