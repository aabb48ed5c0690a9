"""Result verification shared by the workloads.

A benchmark that silently measures nothing is worse than none, so every
workload checks its own result and raises BenchmarkError when it is wrong.
"""

import contextlib


class BenchmarkError(AssertionError):
    """A workload produced a wrong result (lost, duplicated or reordered work)."""


def check(condition, message):
    if not condition:
        raise BenchmarkError(message)


@contextlib.contextmanager
def trap_loop_errors(loop):
    """Turn exceptions swallowed by the loop's exception handler into failures.

    Exceptions raised inside callbacks never propagate out of run_forever();
    the loop only logs them. Record them instead, and raise afterwards.
    """
    errors = []

    def handler(_loop, context):
        errors.append(context)

    previous = loop.get_exception_handler()
    loop.set_exception_handler(handler)
    try:
        yield
    finally:
        loop.set_exception_handler(previous)
    if errors:
        first = errors[0]
        exc = first.get("exception")
        detail = repr(exc) if exc is not None else first.get("message", first)
        raise BenchmarkError(
            f"{len(errors)} error(s) reported to the loop's exception handler; "
            f"first: {detail}"
        )
