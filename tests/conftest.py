import pytest

import ferroloop


@pytest.fixture
def loop():
    """A fresh ferroloop loop, closed after the test."""
    lp = ferroloop.new_event_loop()
    yield lp
    if not lp.is_closed():
        lp.close()
