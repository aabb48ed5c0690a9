"""add_reader / add_writer / remove_reader / remove_writer given file objects:
the stock loop's results and exceptions, case by case.

The stock selector loop keys each fd's registration by the file object it
was first registered with, and when an object names no fd any more (a
socket closed since: ``fileno()`` is -1) it finds the registration by the
object itself.  Each scenario below runs on asyncio's SelectorEventLoop and
on ferroloop, each time with a fresh loop and fresh sockets, and the two
outcomes (value returned, or exception type and message) must be equal.
"""

import asyncio
import os
import re
import socket

import pytest

import ferroloop


class FilenoRaises:
    def __init__(self, exc):
        self.exc = exc

    def fileno(self):
        raise self.exc


class FilenoReturns:
    def __init__(self, value):
        self.value = value

    def fileno(self):
        return self.value


def noop():
    pass


def outcome(call):
    """What call() came to, comparable across loops."""
    try:
        result = call()
    except Exception as exc:
        # Object addresses differ from run to run.
        return ('raises', type(exc).__name__,
                re.sub(r' at 0x[0-9a-f]+', '', str(exc)))
    return ('returns', result)


class Env:
    """A scenario's loop and the sockets it made (closed afterwards)."""

    def __init__(self, loop):
        self.loop = loop
        self.socks = []

    def pair(self):
        a, b = socket.socketpair()
        self.socks += [a, b]
        return a, b

    def steps(self, *calls):
        return [outcome(c) for c in calls]

    def close(self):
        for s in self.socks:
            s.close()
        self.loop.close()


def closed_reader_by_object(env):
    loop, (a, _) = env.loop, env.pair()
    loop.add_reader(a, noop)
    a.close()
    return env.steps(lambda: loop.remove_reader(a),
                     lambda: loop.remove_reader(a))


def closed_writer_by_object(env):
    loop, (a, _) = env.loop, env.pair()
    loop.add_writer(a, noop)
    a.close()
    return env.steps(lambda: loop.remove_writer(a),
                     lambda: loop.remove_writer(a))


def closed_by_object_removed_by_int(env):
    loop, (a, _) = env.loop, env.pair()
    fd = a.fileno()
    loop.add_reader(a, noop)
    a.close()
    return env.steps(lambda: loop.remove_reader(fd),
                     lambda: loop.remove_reader(a))


def closed_never_registered(env):
    loop, (a, _) = env.loop, env.pair()
    a.close()
    return env.steps(lambda: loop.remove_reader(a),
                     lambda: loop.remove_writer(a),
                     lambda: loop._remove_reader(a))


def closed_before_registration(env):
    loop, (a, _) = env.loop, env.pair()
    a.close()
    return env.steps(lambda: loop.add_reader(a, noop),
                     lambda: loop.add_writer(a, noop))


def registered_by_int_removed_by_closed_object(env):
    loop, (a, _) = env.loop, env.pair()
    loop.add_reader(a.fileno(), noop)
    fd = a.fileno()
    a.close()
    return env.steps(lambda: loop.remove_reader(a),
                     lambda: loop.remove_reader(fd))


def registered_by_other_object(env):
    # The registration keeps the object it was first made with.
    loop, (a, _) = env.loop, env.pair()
    other = FilenoReturns(a.fileno())
    loop.add_reader(other, noop)
    loop.add_writer(a, noop)
    loop.remove_reader(other)
    a.close()
    return env.steps(lambda: loop.remove_writer(a),
                     lambda: loop.remove_writer(other))


def reader_and_writer_then_closed(env):
    # Removing one side changes the kernel registration of a closed fd:
    # the change fails and the whole registration is dropped.
    loop, (a, _) = env.loop, env.pair()
    loop.add_reader(a, noop)
    loop.add_writer(a, noop)
    a.close()
    return env.steps(lambda: loop.remove_reader(a),
                     lambda: loop.remove_writer(a))


def other_side_added_after_close(env):
    loop, (a, _) = env.loop, env.pair()
    loop.add_reader(a, noop)
    a.close()
    return env.steps(lambda: loop.add_writer(a, noop),
                     lambda: loop.remove_reader(a))


def same_side_added_again_after_close(env):
    loop, (a, _) = env.loop, env.pair()
    loop.add_reader(a, noop)
    a.close()
    return env.steps(lambda: loop.add_reader(a, noop),
                     lambda: loop.remove_reader(a),
                     lambda: loop.remove_reader(a))


def other_side_removed_after_close(env):
    loop, (a, _) = env.loop, env.pair()
    loop.add_reader(a, noop)
    a.close()
    return env.steps(lambda: loop.remove_writer(a),
                     lambda: loop.remove_reader(a))


def fd_number_reused(env):
    loop, (a, _) = env.loop, env.pair()
    loop.add_reader(a, noop)
    fd = a.fileno()
    a.close()
    c, d = env.pair()
    return [c.fileno() == fd] + env.steps(lambda: loop.remove_reader(a),
                                          lambda: loop.remove_reader(c))


def object_stops_naming_its_fd(env):
    loop, (a, _) = env.loop, env.pair()
    neg = FilenoReturns(a.fileno())
    loop.add_reader(neg, noop)
    neg.value = -7
    none = FilenoReturns(a.fileno())
    loop.add_writer(none, noop)
    none.value = None
    return env.steps(lambda: loop.remove_reader(neg),
                     lambda: loop.remove_reader(neg),
                     # public: refused before the lookup
                     lambda: loop.remove_writer(none),
                     # private: found by identity
                     lambda: loop._remove_writer(none),
                     lambda: loop._remove_writer(none))


def fileno_raises_after_registration(env):
    loop, (a, _) = env.loop, env.pair()
    obj = FilenoReturns(a.fileno())
    loop.add_reader(obj, noop)
    obj.value = None
    obj.__class__ = FilenoRaises
    obj.exc = ValueError('I/O operation on closed file')
    return env.steps(lambda: loop.remove_reader(obj),
                     lambda: loop._remove_reader(obj),
                     lambda: loop._remove_reader(obj))


def closed_file_object(env):
    # A file object's fileno() raises ValueError once closed.
    loop = env.loop
    r, w = os.pipe()
    f = open(r, 'rb', buffering=0)
    loop.add_reader(f, noop)
    f.close()
    os.close(w)
    return env.steps(lambda: loop.remove_reader(f),
                     lambda: loop._remove_reader(f),
                     lambda: loop._remove_reader(f))


def closed_loop(env):
    loop, (a, _) = env.loop, env.pair()
    loop.add_reader(a, noop)
    a.close()
    loop.close()
    return env.steps(lambda: loop.remove_reader(a),
                     lambda: loop.remove_reader(10**6),
                     lambda: loop.add_reader(a, noop),
                     lambda: loop.add_reader(10**6, noop))


ODD_FDS = {
    'unregistered_int': lambda: 10**6,
    'negative_int': lambda: -1,
    'huge_negative_int': lambda: -2**70,
    'int_over_c_int': lambda: 2**31,
    'huge_int': lambda: 2**70,
    'bool': lambda: True,
    'str': lambda: '5',
    'float': lambda: 5.0,
    'no_fileno': lambda: object(),
    'fileno_value_error': lambda: FilenoRaises(ValueError('x')),
    'fileno_attribute_error': lambda: FilenoRaises(AttributeError('x')),
    'fileno_type_error': lambda: FilenoRaises(TypeError('x')),
    'fileno_runtime_error': lambda: FilenoRaises(RuntimeError('x')),
    'fileno_str': lambda: FilenoReturns(str(10**6)),
    'fileno_float': lambda: FilenoReturns(float(10**6)),
    'fileno_negative': lambda: FilenoReturns(-5),
    'fileno_none': lambda: FilenoReturns(None),
    'fileno_huge': lambda: FilenoReturns(2**70),
}


def odd_fd(make):
    def scenario(env):
        loop = env.loop
        steps = [lambda: loop.remove_reader(make()),
                 lambda: loop.remove_writer(make()),
                 lambda: loop._remove_reader(make())]
        if not isinstance(make(), bool):  # True is fd 1: stdout
            steps += [lambda: loop.add_reader(make(), noop),
                      lambda: loop.add_writer(make(), noop)]
        return env.steps(*steps)
    return scenario


SCENARIOS = {f.__name__: f for f in [
    closed_reader_by_object, closed_writer_by_object,
    closed_by_object_removed_by_int, closed_never_registered,
    closed_before_registration, registered_by_int_removed_by_closed_object,
    registered_by_other_object, reader_and_writer_then_closed,
    other_side_added_after_close, same_side_added_again_after_close,
    other_side_removed_after_close, fd_number_reused,
    object_stops_naming_its_fd, fileno_raises_after_registration,
    closed_file_object, closed_loop]}
SCENARIOS.update({f'odd_fd_{k}': odd_fd(v) for k, v in ODD_FDS.items()})


def run(scenario, loop):
    env = Env(loop)
    try:
        return scenario(env)
    finally:
        env.close()


@pytest.mark.parametrize('name', SCENARIOS)
def test_same_as_stock_loop(name):
    scenario = SCENARIOS[name]
    expected = run(scenario, asyncio.SelectorEventLoop())
    assert run(scenario, ferroloop.new_event_loop()) == expected


def test_closed_socket_removed_by_object():
    # The case that motivated it, spelled out: the registration is found by
    # the socket object after close(), once; the callbacks are cancelled.
    loop = ferroloop.new_event_loop()
    a, b = socket.socketpair()
    try:
        loop.add_reader(a, noop)
        loop.add_writer(b, noop)
        a.close()
        b.close()
        assert loop.remove_reader(a) is True
        assert loop.remove_writer(b) is True
        with pytest.raises(ValueError, match='Invalid file descriptor: -1'):
            loop.remove_reader(a)
        assert not loop._is_watching(a.fileno(), True)
    finally:
        loop.close()


def test_registration_does_not_keep_file_object_after_removal():
    import gc
    import weakref
    loop = ferroloop.new_event_loop()
    try:
        obj = FilenoReturns(os.open(os.devnull, os.O_RDONLY))
        fd = obj.value
        ref = weakref.ref(obj)
        r, w = os.pipe()
        obj.value = r
        loop.add_reader(obj, noop)
        assert loop.remove_reader(r) is True
        del obj
        gc.collect()
        assert ref() is None
        os.close(fd)
        os.close(r)
        os.close(w)
    finally:
        loop.close()


# -- socket operations given a closed socket ---------------------------------

async def _sock_op(loop, name):
    a, b = socket.socketpair()
    a.setblocking(False)
    listener = socket.socket()
    listener.setblocking(False)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.setblocking(False)
    try:
        a.close()
        listener.close()
        udp.close()
        buf = bytearray(10)
        calls = {
            'sock_recv': lambda: loop.sock_recv(a, 10),
            'sock_recv_into': lambda: loop.sock_recv_into(a, buf),
            'sock_recvfrom': lambda: loop.sock_recvfrom(udp, 10),
            'sock_recvfrom_into': lambda: loop.sock_recvfrom_into(udp, buf),
            'sock_sendall': lambda: loop.sock_sendall(a, b'data'),
            'sock_sendall_empty': lambda: loop.sock_sendall(a, b''),
            'sock_sendto': lambda: loop.sock_sendto(udp, b'x',
                                                    ('127.0.0.1', 9)),
            'sock_accept': lambda: loop.sock_accept(listener),
            'sock_connect': lambda: loop.sock_connect(listener,
                                                      ('127.0.0.1', 9)),
        }
        try:
            result = await calls[name]()
        except Exception as exc:
            return ('raises', type(exc).__name__, getattr(exc, 'errno', None))
        return ('returns', result)
    finally:
        b.close()


SOCK_OPS = ['sock_recv', 'sock_recv_into', 'sock_recvfrom',
            'sock_recvfrom_into', 'sock_sendall', 'sock_sendall_empty',
            'sock_sendto', 'sock_accept', 'sock_connect']


@pytest.mark.parametrize('name', SOCK_OPS)
def test_sock_op_on_closed_socket_same_as_stock_loop(name):
    def run_on(loop):
        try:
            return loop.run_until_complete(_sock_op(loop, name))
        finally:
            loop.close()
    expected = run_on(asyncio.SelectorEventLoop())
    assert run_on(ferroloop.new_event_loop()) == expected


@pytest.mark.parametrize('op', ['sock_recv', 'sock_accept'])
def test_sock_wait_cancelled_after_close(op):
    # A socket closed while an operation waits on it: cancelling the wait
    # cleans up (nothing stays registered), on both loops alike.
    def run_on(loop):
        async def main():
            a, b = socket.socketpair()
            a.setblocking(False)
            if op == 'sock_accept':
                a.close()
                a = socket.create_server(('127.0.0.1', 0))
                a.setblocking(False)
            fd = a.fileno()
            task = asyncio.ensure_future(getattr(loop, op)(
                *((a, 10) if op == 'sock_recv' else (a,))))
            await asyncio.sleep(0)
            a.close()
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                cancelled = True
            else:
                cancelled = False
            b.close()
            return cancelled, outcome(lambda: loop.remove_reader(fd))
        try:
            return loop.run_until_complete(main())
        finally:
            loop.close()
    expected = run_on(asyncio.SelectorEventLoop())
    assert run_on(ferroloop.new_event_loop()) == expected
