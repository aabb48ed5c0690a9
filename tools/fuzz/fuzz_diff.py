"""The long differential fuzz run (`make fuzz-diff`): random sequences of loop
operations on ferroloop and on the stock loop until OPS operations have run
(tests/_difffuzz.py is the state machine and says what is compared).

Runs hypothesis in batches with fresh random seeds; a failing batch is
shrunk by hypothesis, its minimal sequence printed, and the run goes on. At
the end: operations executed, sequences, failures (distinct by their first
differing line). Exit status 1 if any failure was found.

    python tools/fuzz/fuzz_diff.py [--ops N] [--batch EXAMPLES] [--steps N]
"""
import argparse
import os
import resource
import sys
import time
import traceback

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tests"))

from hypothesis import HealthCheck, settings  # noqa: E402
from hypothesis.stateful import run_state_machine_as_test  # noqa: E402

import _difffuzz  # noqa: E402


def counter_value(counter):
    # itertools.count has no peek: read its repr.
    return int(repr(counter)[6:-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ops", type=int, default=1_000_000, help="operations to run (default 1,000,000)")
    ap.add_argument("--batch", type=int, default=200, help="sequences per hypothesis run")
    ap.add_argument("--steps", type=int, default=50, help="operations per sequence at most")
    args = ap.parse_args()
    cfg = settings(
        max_examples=args.batch,
        stateful_step_count=args.steps,
        database=None,
        deadline=None,
        print_blob=True,
        suppress_health_check=list(HealthCheck),
    )
    failures = {}
    start = time.monotonic()
    last = 0.0
    while counter_value(_difffuzz.OPS) < args.ops:
        try:
            run_state_machine_as_test(_difffuzz.LoopDiff, settings=cfg)
        except BaseException as exc:  # noqa: B036 - a KeyboardInterrupt subclass is part of the fuzz
            if type(exc) is KeyboardInterrupt:
                raise
            text = "".join(traceback.format_exception(exc))
            key = next((line.strip() for line in text.splitlines() if "traces differ" in line or "Error:" in line), repr(exc))
            failures.setdefault(key, text)
            print(f"\n=== failure #{len(failures)}: {key}\n{text}", flush=True)
        now = time.monotonic()
        if now - last > 30:
            last = now
            print(
                f"[{now - start:7.0f}s] operations {counter_value(_difffuzz.OPS):,}  "
                f"sequences {counter_value(_difffuzz.SEQUENCES):,}  failures {len(failures)}  "
                f"max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MiB",
                flush=True,
            )
    ops, seqs = counter_value(_difffuzz.OPS), counter_value(_difffuzz.SEQUENCES)
    print(
        f"\nfuzz-diff: operations executed {ops:,}; sequences {seqs:,}; "
        f"distinct failures {len(failures)}; {time.monotonic() - start:.0f} s"
    )
    for key in failures:
        print(f"  - {key}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
