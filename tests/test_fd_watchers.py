"""add_reader / add_writer: level-triggered callbacks on fds."""
import os
import socket

import pytest


def test_reader_fires_while_data_is_pending(loop):
    r, w = socket.socketpair()
    r.setblocking(False)
    calls = []

    def on_readable():
        calls.append(r.recv(1))
        if len(calls) == 3:
            loop.remove_reader(r)
            loop.stop()

    loop.add_reader(r, on_readable)
    w.send(b'abc')
    loop.run_forever()
    assert calls == [b'a', b'b', b'c']
    r.close()
    w.close()


def test_writer_fires_and_remove_returns_bool(loop):
    a, b = socket.socketpair()
    fired = []

    def on_writable(tag):
        fired.append(tag)
        assert loop.remove_writer(a.fileno()) is True
        loop.stop()

    loop.add_writer(a.fileno(), on_writable, 'w')
    loop.run_forever()
    assert fired == ['w']
    assert loop.remove_writer(a.fileno()) is False
    assert loop.remove_reader(a.fileno()) is False
    a.close()
    b.close()


def test_replacing_a_reader_cancels_the_old_one(loop):
    a, b = socket.socketpair()
    seen = []

    def old():
        seen.append('old')

    def new():
        seen.append('new')
        loop.remove_reader(a)
        loop.stop()

    loop.add_reader(a, old)
    loop.add_reader(a, new)
    b.send(b'x')
    loop.run_forever()
    assert seen == ['new']
    a.close()
    b.close()


def test_invalid_file_objects_are_refused(loop):
    with pytest.raises(ValueError, match='Invalid file descriptor: -1'):
        loop.add_reader(-1, print)
    with pytest.raises(ValueError, match='Invalid file object'):
        loop.add_reader(object(), print)


def test_closed_fd_number_is_refused_with_oserror(loop):
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    with pytest.raises(OSError):
        loop.add_reader(r, print)


def test_fd_closed_while_watched_then_reused(loop):
    a, b = socket.socketpair()
    fd = a.fileno()
    loop.add_reader(fd, print)
    a.close()
    b.close()
    c, d = socket.socketpair()
    seen = []

    def on_readable():
        seen.append(c.recv(10))
        loop.remove_reader(c)
        loop.stop()

    # Same fd number may be reused: re-registering must work either way.
    loop.remove_reader(fd)
    loop.add_reader(c, on_readable)
    d.send(b'hi')
    loop.run_forever()
    assert seen == [b'hi']
    c.close()
    d.close()
