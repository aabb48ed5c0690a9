"""Event-loop micro-benchmarks.

Each workload module exposes:
    DEFAULT_N    -- problem size giving roughly 0.2-1 s per run on asyncio
    DESCRIPTION  -- one line for the report
    run(loop, n=DEFAULT_N) -> (ops, seconds)
and raises BenchmarkError if its result is wrong.
"""

from . import (
    call_later_random,
    call_soon_batch,
    call_soon_chain,
    future_roundtrip,
    gather_tasks,
    sleep0_switch,
    threadsafe_post,
    timer_cancel_churn,
)
from ._check import BenchmarkError, trap_loop_errors

# Report order.
WORKLOADS = {
    "call_soon_chain": call_soon_chain,
    "call_soon_batch": call_soon_batch,
    "call_later_random": call_later_random,
    "timer_cancel_churn": timer_cancel_churn,
    "sleep0_switch": sleep0_switch,
    "gather_tasks": gather_tasks,
    "future_roundtrip": future_roundtrip,
    "threadsafe_post": threadsafe_post,
}

__all__ = ["WORKLOADS", "BenchmarkError", "trap_loop_errors"]
