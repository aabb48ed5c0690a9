"""loop._transports: fd -> live transport, weakly, with the mapping
behaviour of the stock loop's WeakValueDictionary."""

import gc

import pytest

from ferroloop import _ferroloop


class Transport:
    """Any object that takes weak references stands for a transport."""


def test_live_entries_are_reported_and_dead_ones_are_not():
    m = _ferroloop.TransportMap()
    a, b = Transport(), Transport()
    m[5] = a
    m[7] = b
    assert m[5] is a and m.get(7) is b
    assert 5 in m and 6 not in m and "x" not in m
    assert len(m) == 2 and sorted(m) == [5, 7]
    assert m.items() == [(5, a), (7, b)]
    del b
    gc.collect()
    assert 7 not in m and m.get(7) is None and m.get(7, 1) == 1
    with pytest.raises(KeyError):
        m[7]
    assert len(m) == 1 and list(m) == [5]


def test_replace_pop_and_delete():
    m = _ferroloop.TransportMap()
    a, b = Transport(), Transport()
    m[3] = a
    m[3] = b
    assert m[3] is b and len(m) == 1
    assert m.pop(3) is b
    assert m.pop(3, None) is None
    with pytest.raises(KeyError):
        m.pop(3)
    m[4] = a
    del m[4]
    with pytest.raises(KeyError):
        del m[4]
    assert len(m) == 0


def test_objects_without_weak_references_are_refused():
    m = _ferroloop.TransportMap()
    with pytest.raises(TypeError):
        m[1] = 42
