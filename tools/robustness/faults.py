"""The mixed workload under injected syscall faults (needs the faults build:
``make build-faults``, then ``PYTHONPATH=build/faults``).

    python tools/robustness/faults.py --seed 3 --rate 0.02 [--calls recv,send]

Checks, printing a JSON summary (exit status 1 on any failure):
* no crash (the process reaches the end);
* no leaked fd: /proc/self/fd counted before the loop and after it closed;
* no leaked transport: none left in loop._transports, none alive in gc;
* every failure reported as the stock loop reports its errno (workload.py);
* with faults switched off again, a full round of fresh clients is served
  (servers and their accept loops recovered).
"""

import argparse
import asyncio
import gc
import json
import pathlib
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent.parent / 'tests'))

import ferroloop  # noqa: E402
from ferroloop import _faults  # noqa: E402

import workload  # noqa: E402


def transport_objects():
    return [o for o in gc.get_objects()
            if isinstance(o, asyncio.BaseTransport)
            and type(o).__module__.startswith('ferroloop')]


def run(loop, coro):
    return loop.run_until_complete(coro)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--seed', type=int, default=1)
    ap.add_argument('--rate', type=float, default=0.02)
    ap.add_argument('--calls', default=None)
    ap.add_argument('--rounds', type=int, default=4)
    ap.add_argument('--no-tls', action='store_true')
    ap.add_argument('--op-timeout', type=float, default=4.0,
                    help='bound on one client (stalls only after epoll_ctl '
                         'faults)')
    args = ap.parse_args()
    if not _faults.ENABLED:
        sys.exit('not a faults build (make build-faults; '
                 'PYTHONPATH=build/faults)')
    certs = None
    if not args.no_tls:
        from _tlsutil import make_certs
        certs = make_certs(pathlib.Path(tempfile.mkdtemp()))

    # A warm-up loop first: imports, caches and the certificates' files are
    # opened once, so that the fd count compares like with like.
    _faults.configure(0.0)
    loop = ferroloop.new_event_loop()
    rec = workload.Record()
    wl = workload.Workload(loop, rec, tls=certs, seed=args.seed)
    run(loop, wl.start())
    run(loop, wl.run_round(tcp=2, tls=1, udp=1, procs=1, timers=5))
    run(loop, wl.stop())
    loop.close()
    del wl, loop
    gc.collect()
    fds_before = workload.count_fds()

    loop = ferroloop.new_event_loop()
    rec = workload.Record()
    loop.set_exception_handler(rec.handler)
    sys.unraisablehook = lambda u: rec.violations.append(
        f'unraisable: {u.exc_value!r} in {u.object!r}')
    wl = workload.Workload(loop, rec, tls=certs, seed=args.seed,
                           op_timeout=args.op_timeout)
    run(loop, wl.start())
    _faults.configure(args.rate, args.seed, args.calls)
    for _ in range(args.rounds):
        run(loop, wl.run_round())
    injected = _faults.stats()
    if rec.unfinished and not rec.poller_faults:
        rec.violations.append(f'subprocess transports never finished: '
                              f'{rec.unfinished}')
    if rec.stalled and not rec.poller_faults:
        rec.violations.append(f'{rec.stalled} clients stalled without a '
                              'poller fault')
    _faults.configure(0.0)
    # Faults off: the same servers must serve a full round again.
    clean = workload.Record()
    loop.set_exception_handler(clean.handler)
    wl.record = clean
    run(loop, wl.run_round())
    poller = rec.poller_faults
    for kind in ('tcp', 'udp', 'subprocess', 'timers') + (
            () if certs is None else ('tls',)):
        if not clean.ok.get(kind) and not poller:
            rec.violations.append(f'after the faults, no {kind} served')
    # A registration the poller refused can leave a server or endpoint
    # deaf for good, as in the stock loop: only then may fresh clients
    # fail once the faults stop.
    if (clean.hit or clean.stalled) and not poller or clean.violations:
        rec.violations.append(f'after the faults: {clean.summary()}')
    loop.set_exception_handler(rec.handler)
    run(loop, wl.stop())
    left = workload.live_transports(loop)
    if left:
        rec.violations.append(f'{len(left)} transports left: {left[:3]}')
    loop.close()
    wl.record = None
    del wl, loop, left
    gc.collect()
    alive = transport_objects()
    if alive:
        holders = [type(r).__name__ for r in gc.get_referrers(alive[0])
                   if r is not alive]
        rec.violations.append(f'{len(alive)} transports alive in gc: '
                              f'{alive[:3]}, the first held by {holders}')
    fds_after = workload.count_fds()
    if fds_after != fds_before:
        rec.violations.append(f'fds: {fds_before} before, {fds_after} after')
    out = rec.summary()
    out.update(after=clean.summary(), seed=args.seed, rate=args.rate, calls=args.calls,
               fds=[fds_before, fds_after],
               injected={k: v for k, v in injected.items() if v[0]})
    print(json.dumps(out, sort_keys=True))
    return 1 if rec.violations else 0


if __name__ == '__main__':
    sys.exit(main())
