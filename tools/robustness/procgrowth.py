"""Allocated blocks across rounds of subprocesses, as the soak's workload
starts them (workload._process: create_subprocess_exec of /bin/cat with
stdin and stdout pipes, communicate, check the echo).

    procgrowth.py [--loop stock|ferroloop] [--rounds 50,100,200,400]
                  [--per-round 2] [--trace]

After a warm-up, prints sys.getallocatedblocks() minus the warm baseline
after each checkpoint (gc.collect() first, once the loop went idle for a
moment, so the spawner's and any watcher's threads have ended), then the
same after sys._clear_type_cache().  --clear-type-cache clears it before
every count.  --trace compares tracemalloc snapshots
taken at the first and last checkpoints by traceback.

Why the type cache: on 3.11, _asyncio's Task wakes up on a future that is
not exactly asyncio.Future (gather's _GatheringFuture, which communicate()
awaits) with PyObject_CallMethod(fut, "result"), which makes a new "result"
string each time; the type attribute cache keeps a reference to the name of
each entry it fills, and the entry's slot depends on the string's address.
So a few hundred of those 6-letter strings stay alive, on any loop, until
their slots are reused: bounded, and gone after sys._clear_type_cache().
"""

import argparse
import asyncio
import gc
import os
import sys
import tracemalloc


def make_loop(kind):
    if kind == 'ferroloop':
        import ferroloop
        return ferroloop.new_event_loop()
    return asyncio.new_event_loop()


async def one(size):
    data = os.urandom(size)
    proc = await asyncio.create_subprocess_exec(
        '/bin/cat', stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate(data)
    if out != data or proc.returncode != 0:
        raise SystemExit(f'{len(out)} of {size} bytes, rc {proc.returncode}')


async def one_round(per_round):
    await asyncio.gather(*(one(1000 + 997 * i) for i in range(per_round)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--loop', choices=('stock', 'ferroloop'), default='ferroloop')
    ap.add_argument('--rounds', default='50,100,200,400')
    ap.add_argument('--per-round', type=int, default=2)
    ap.add_argument('--trace', action='store_true')
    ap.add_argument('--clear-type-cache', action='store_true',
                    help='clear it before every count (what is left is '
                    'not the type cache\'s)')
    args = ap.parse_args()
    checkpoints = sorted(int(x) for x in args.rounds.split(','))
    loop = make_loop(args.loop)
    asyncio.set_event_loop(loop)

    # 3.13 renamed it (the old name warns from 3.14 on).
    clear_type_cache = (getattr(sys, '_clear_internal_caches', None)
                        or sys._clear_type_cache)

    def settle(clear=args.clear_type_cache):
        # Long enough for the idle spawner thread (0.1 s) to end.
        loop.run_until_complete(asyncio.sleep(0.3))
        if clear:
            clear_type_cache()
        gc.collect()
        gc.collect()
        return sys.getallocatedblocks()

    for _ in range(5):
        loop.run_until_complete(one_round(args.per_round))
    base = settle()
    if args.trace:
        tracemalloc.start(25)
    snaps, results, done = {}, [], 0
    for cp in checkpoints:
        while done < cp:
            loop.run_until_complete(one_round(args.per_round))
            done += 1
        results.append((cp, settle() - base))
        if args.trace:
            snaps[cp] = tracemalloc.take_snapshot()
    cleared = settle(clear=True) - base
    print(f'{args.loop} {sys.version.split()[0]} per_round={args.per_round}'
          + (' (type cache cleared before each count)'
             if args.clear_type_cache else '') + ' '
          + ' '.join(f'{cp}:{d:+d}' for cp, d in results)
          + f' | after clearing the type cache: {cleared:+d}', flush=True)
    if args.trace and len(snaps) > 1:
        ignore = [tracemalloc.Filter(False, tracemalloc.__file__)]
        first = snaps[checkpoints[0]].filter_traces(ignore)
        last = snaps[checkpoints[-1]].filter_traces(ignore)
        for stat in last.compare_to(first, 'traceback')[:5]:
            print(f'{stat.count_diff:+d} blocks, {stat.size_diff:+d} B, '
                  f'allocated at (innermost last):')
            for line in stat.traceback.format()[-6:]:
                print('   ', line)
    loop.close()


if __name__ == '__main__':
    main()
