"""The short differential run of `make test`: generated sequences of loop
operations on ferroloop and on the stock loop must leave the same trace
(tests/_difffuzz.py says what is compared). Derandomized, so every run
executes the same sequences; `make fuzz-diff` is the long, random run."""
import pytest

pytest.importorskip("hypothesis", reason="hypothesis is a dev dependency (requirements-dev.txt)")

from hypothesis import HealthCheck, settings  # noqa: E402

from _difffuzz import OPS, LoopDiff  # noqa: E402

SHORT = settings(
    max_examples=120,
    stateful_step_count=40,
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=list(HealthCheck),
)


def test_ferroloop_matches_stock_loop_on_generated_sequences():
    before = next(OPS)
    LoopDiff.TestCase.settings = SHORT
    LoopDiff.TestCase("runTest").runTest()
    # Each sequence applies about stateful_step_count operations.
    assert next(OPS) - before > 1000
