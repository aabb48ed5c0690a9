"""Run ONE workload on ONE event loop, then exit.

run.py starts a fresh interpreter for every (loop, workload, round) so that no
measurement inherits heap state, JIT-ish specialisation or threads from
another. Prints a single JSON object on stdout; any failure exits non-zero
with the reason on stderr.

    python benchmarks/worker.py LOOP WORKLOAD [--scale S] [--n N] [--repeat K]
    python benchmarks/worker.py --probe LOOP
"""

import argparse
import asyncio
import faulthandler
import json
import sys

import loops
import micro

WARMUP_FRACTION = 0.1


def probe(loop_name):
    """Check that the loop imports and can run a coroutine; report its version."""
    loop = loops.new_loop(loop_name)
    try:
        async def answer():
            await asyncio.sleep(0)
            return 42

        if loop.run_until_complete(answer()) != 42:
            raise RuntimeError("run_until_complete returned the wrong value")
    finally:
        loop.close()
    return {"loop": loop_name, "version": loops.version(loop_name),
            "type": f"{type(loop).__module__}.{type(loop).__qualname__}"}


def measure(loop_name, workload_name, n, warmup, repeat=1):
    """Time the workload; with repeat > 1 keep the fastest of that many runs."""
    workload = micro.WORKLOADS[workload_name]
    loop = loops.new_loop(loop_name)
    asyncio.set_event_loop(loop)
    timings = []
    try:
        with micro.trap_loop_errors(loop):
            if warmup:
                workload.run(loop, max(1, int(n * WARMUP_FRACTION)))
            for _ in range(repeat):
                ops, seconds = workload.run(loop, n)
                if not seconds > 0:
                    raise micro.BenchmarkError(f"non-positive duration {seconds!r}")
                timings.append(seconds)
    finally:
        asyncio.set_event_loop(None)
        loop.close()
    seconds = min(timings)
    return {"loop": loop_name, "workload": workload_name, "n": n, "ops": ops,
            "seconds": seconds, "ops_per_sec": ops / seconds, "repeats": timings}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probe", metavar="LOOP", help="only check that LOOP works")
    parser.add_argument("loop", nargs="?", choices=loops.LOOP_NAMES)
    parser.add_argument("workload", nargs="?", choices=list(micro.WORKLOADS))
    parser.add_argument("--n", type=int, help="problem size (default: the workload's)")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiply the default problem size (ignored with --n)")
    parser.add_argument("--no-warmup", dest="warmup", action="store_false",
                        help="skip the untimed 10%%-size warm-up pass")
    parser.add_argument("--repeat", type=int, default=1,
                        help="timed runs in this process; report the fastest")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="abort with a traceback after this many seconds")
    args = parser.parse_args(argv)

    faulthandler.enable()  # a segfaulting loop still leaves a Python traceback
    faulthandler.dump_traceback_later(args.timeout, exit=True)
    if args.probe:
        result = probe(args.probe)
    else:
        if not (args.loop and args.workload):
            parser.error("LOOP and WORKLOAD are required (or use --probe LOOP)")
        default_n = micro.WORKLOADS[args.workload].DEFAULT_N
        n = args.n if args.n else max(1, int(default_n * args.scale))
        result = measure(args.loop, args.workload, n, args.warmup, max(1, args.repeat))
    faulthandler.cancel_dump_traceback_later()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
