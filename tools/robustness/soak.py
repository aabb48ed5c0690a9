"""Soak: the mixed workload (workload.py) at a steady rate on one ferroloop
loop for --seconds, sampling the process every --every seconds:

    rss_kib          resident set size (/proc/self/statm)
    fds              open fds (/proc/self/fd)
    blocks           sys.getallocatedblocks()
    ready            callbacks in the loop's ready queue
    timers           timers in the loop's heap (cancelled ones included)

Samples are taken between rounds, when no client is in flight, so fds and
the queues compare like with like.  Writes soak.csv and soak.png (when
matplotlib is importable) into --out.

Trend test: after warm-up (the first half of the run), a least-squares line
through each series; the series fails when the line's rise over that half
exceeds its tolerance (TOLERANCE below: RSS 2 MiB or 2 %, allocated blocks
2,000 or 1 %, whichever larger; fds, ready and timers 1).  A leak of one
object per round, a few thousand rounds, fails it; allocator noise does not.
"""

import argparse
import array
import asyncio
import csv
import gc
import json
import os
import pathlib
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent.parent / 'tests'))

import ferroloop  # noqa: E402

import workload  # noqa: E402

SERIES = ('rss_kib', 'fds', 'blocks', 'ready', 'timers')
PAGE_KIB = os.sysconf('SC_PAGE_SIZE') // 1024


def tolerance(name, mean):
    if name == 'rss_kib':
        return max(2048.0, 0.02 * mean)
    if name == 'blocks':
        return max(2000.0, 0.01 * mean)
    return 1.0


def rss_kib():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * PAGE_KIB


def slope(xs, ys):
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return 0.0
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx


def trends(rows):
    """{series: (rise over the second half, tolerance, ok)}."""
    half = rows[len(rows) // 2:]
    xs = [r['t'] for r in half]
    span = xs[-1] - xs[0] if len(xs) > 1 else 0.0
    out = {}
    for name in SERIES:
        ys = [r[name] for r in half]
        rise = slope(xs, ys) * span if len(xs) > 2 else 0.0
        tol = tolerance(name, sum(ys) / len(ys))
        out[name] = (rise, tol, rise <= tol)
    return out


def chart(rows, verdict, path, seconds, rounds, loop_name):
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:
        print('matplotlib not importable: no chart')
        return
    titles = {'rss_kib': 'RSS (MiB)', 'fds': 'open fds',
              'blocks': 'allocated blocks (k)', 'ready': 'ready callbacks',
              'timers': 'timers in heap'}
    scale = {'rss_kib': 1 / 1024, 'blocks': 1 / 1000}
    fig, axes = plt.subplots(len(SERIES), 1, sharex=True,
                             figsize=(8, 9), constrained_layout=True)
    ts = [r['t'] / 60 for r in rows]
    half = len(rows) // 2
    for ax, name in zip(axes, SERIES):
        k = scale.get(name, 1)
        ax.plot(ts, [r[name] * k for r in rows], lw=1)
        ax.axvspan(ts[0], ts[half], color='0.9', lw=0)
        rise, tol, ok = verdict[name]
        ax.set_ylabel(titles[name], fontsize=8)
        ax.set_title(f'rise over 2nd half {rise * k:+.3g} '
                     f'(tolerance {tol * k:.3g}) '
                     f'{"ok" if ok else "FAIL"}', fontsize=8, loc='right')
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel('minutes (grey: warm-up)')
    fig.suptitle(f'{loop_name} soak: mixed TCP/TLS/UDP/subprocess/timer '
                 f'workload, {seconds / 60:.0f} min, {rounds} rounds, '
                 f'Python {sys.version.split()[0]}', fontsize=9)
    fig.savefig(path, dpi=90)


FIELDS = ('t', 'rounds', 'rss_kib', 'fds', 'blocks', 'ready', 'timers')


class Samples:
    """The samples, kept in one array sized for the whole run before the
    first one is taken: a list of dicts would allocate six blocks per
    sample, which the blocks series would then report as growth (over an
    hour, more than the tolerance)."""

    def __init__(self, capacity):
        self.values = array.array('d', bytes(8 * len(FIELDS) * capacity))
        self.capacity = capacity
        self.n = 0

    def add(self, *values):
        if self.n == self.capacity:
            raise RuntimeError('more samples than the run was sized for')
        base = self.n * len(FIELDS)
        for i, v in enumerate(values):
            self.values[base + i] = v
        self.n += 1

    def rows(self):
        out = []
        for k in range(self.n):
            vals = self.values[k * len(FIELDS):(k + 1) * len(FIELDS)]
            row = {f: int(v) for f, v in zip(FIELDS, vals)}
            row['t'] = round(vals[0], 2)
            out.append(row)
        return out


async def soak(loop, wl, seconds, every, period, samples):
    start = time.monotonic()
    next_sample = 0.0
    rounds = 0
    while True:
        t = time.monotonic() - start
        if t >= next_sample:
            gc.collect()
            samples.add(t, rounds, rss_kib(), workload.count_fds(),
                        sys.getallocatedblocks(), loop._ready_count(),
                        loop._timer_count())
            next_sample += every
        if t >= seconds:
            return rounds
        began = time.monotonic()
        await wl.run_round()
        rounds += 1
        # A steady rate: one round per period, whatever a round took.
        await asyncio.sleep(max(0.0, period - (time.monotonic() - began)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--seconds', type=float, default=600)
    ap.add_argument('--every', type=float, default=5.0)
    ap.add_argument('--period', type=float, default=0.5,
                    help='seconds per workload round')
    ap.add_argument('--out', default='build/soak')
    ap.add_argument('--loop', choices=('ferroloop', 'asyncio'),
                    default='ferroloop',
                    help='asyncio: the stock loop, for comparison (no queue '
                         'counts)')
    args = ap.parse_args()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from _tlsutil import make_certs
    certs = make_certs(pathlib.Path(tempfile.mkdtemp()))

    if args.loop == 'asyncio':
        loop = asyncio.new_event_loop()
        loop._ready_count = lambda: len(loop._ready)
        loop._timer_count = lambda: len(loop._scheduled)
    else:
        loop = ferroloop.new_event_loop()
    rec = workload.Record()
    loop.set_exception_handler(rec.handler)
    wl = workload.Workload(loop, rec, tls=certs)
    loop.run_until_complete(wl.start())
    samples = Samples(int(args.seconds / args.every) + 2)
    rounds = loop.run_until_complete(
        soak(loop, wl, args.seconds, args.every, args.period, samples))
    rows = samples.rows()
    loop.run_until_complete(wl.stop())
    loop.close()

    with open(out / 'soak.csv', 'w', newline='') as f:
        w = csv.DictWriter(f, fieldnames=['t', 'rounds', *SERIES])
        w.writeheader()
        w.writerows(rows)
    verdict = trends(rows)
    chart(rows, verdict, out / 'soak.png', args.seconds, rounds, args.loop)
    failed = [k for k, (_, _, ok) in verdict.items() if not ok]
    if rec.violations:
        failed.append('violations')
    print(json.dumps({
        'seconds': args.seconds, 'rounds': rounds, 'samples': len(rows),
        'operations': rec.ok, 'failed_ops': rec.hit,
        'violations': rec.violations[:10],
        'trend': {k: {'rise': round(r, 1), 'tolerance': round(t, 1)}
                  for k, (r, t, _) in verdict.items()},
        'first': rows[0], 'last': rows[-1], 'failed': failed}, indent=1))
    print(f'wrote {out / "soak.csv"} and {out / "soak.png"}')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
