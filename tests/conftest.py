import signal

import pytest

import ferroloop


@pytest.fixture
def loop():
    """A fresh ferroloop loop, closed after the test."""
    lp = ferroloop.new_event_loop()
    yield lp
    if not lp.is_closed():
        lp.close()


@pytest.fixture(autouse=True, scope="session")
def default_sigint_handler():
    """Ctrl-C tests need Python's default SIGINT handler; a test run started
    in the background of a non-interactive shell inherits SIGINT ignored."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)
