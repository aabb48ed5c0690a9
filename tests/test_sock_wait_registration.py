"""ferroloop's kernel registrations behind sock_* waits, read from the epoll
instance's /proc/self/fdinfo: a finished wait leaves its fd registered but
disarmed (it can report nothing, not even a hang-up), a cancelled one leaves
nothing, and add_reader turns the registration back into asyncio's
level-triggered one."""

import asyncio
import os
import socket
import sys

import pytest

import ferroloop

pytestmark = pytest.mark.skipif(sys.platform != 'linux', reason='epoll fdinfo')

EPOLLIN = 0x1
EPOLLOUT = 0x4
EPOLLONESHOT = 1 << 30


def epoll_fds():
    found = set()
    for name in os.listdir('/proc/self/fd'):
        try:
            if os.readlink(f'/proc/self/fd/{name}') == 'anon_inode:[eventpoll]':
                found.add(int(name))
        except OSError:
            pass
    return found


@pytest.fixture
def loop_and_epfd():
    before = epoll_fds()
    loop = ferroloop.new_event_loop()
    (epfd,) = epoll_fds() - before
    yield loop, epfd
    loop.close()


def registrations(epfd):
    """{fd: events mask} of everything registered with epfd."""
    regs = {}
    with open(f'/proc/self/fdinfo/{epfd}') as f:
        for line in f:
            if line.startswith('tfd:'):
                fields = line.split()
                regs[int(fields[1])] = int(fields[3], 16)
    return regs


def pair():
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    return a, b


def test_finished_wait_leaves_a_disarmed_registration(loop_and_epfd):
    loop, epfd = loop_and_epfd
    a, b = pair()
    with a, b:
        async def main():
            task = loop.create_task(loop.sock_recv(a, 10))
            await asyncio.sleep(0)
            assert registrations(epfd)[a.fileno()] & (EPOLLIN | EPOLLONESHOT) \
                == EPOLLIN | EPOLLONESHOT
            b.send(b'one')
            assert await task == b'one'
            # Kept for the next wait, but disarmed: no event bit at all.
            assert registrations(epfd)[a.fileno()] == EPOLLONESHOT
            # More data and a hang-up with nobody waiting wake nothing.
            b.send(b'two')
            b.shutdown(socket.SHUT_WR)
            for _ in range(3):
                await asyncio.sleep(0)
            assert registrations(epfd)[a.fileno()] == EPOLLONESHOT
            # The next wait re-arms it; the data is still there.
            assert await loop.sock_recv(a, 10) == b'two'
            assert await loop.sock_recv(a, 10) == b''

        loop.run_until_complete(main())
        assert loop.remove_reader(a) is False


def test_cancelled_wait_leaves_no_registration(loop_and_epfd):
    loop, epfd = loop_and_epfd
    a, b = pair()
    with a, b:
        async def main():
            task = loop.create_task(loop.sock_recv(a, 10))
            await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        loop.run_until_complete(main())
        assert a.fileno() not in registrations(epfd)


def test_add_reader_makes_the_registration_level_triggered(loop_and_epfd):
    loop, epfd = loop_and_epfd
    a, b = pair()
    with a, b:
        async def main():
            task = loop.create_task(loop.sock_recv(a, 10))
            await asyncio.sleep(0)
            b.send(b'one')
            await task
            calls = []
            loop.add_reader(a, lambda: calls.append(a.recv(10)))
            assert registrations(epfd)[a.fileno()] & (EPOLLIN | EPOLLONESHOT) == EPOLLIN
            b.send(b'two')
            while not calls:
                await asyncio.sleep(0)
            assert calls == [b'two']
            assert loop.remove_reader(a) is True
            assert a.fileno() not in registrations(epfd)

        loop.run_until_complete(main())


def test_reader_and_writer_waits_share_a_one_shot_registration(loop_and_epfd):
    loop, epfd = loop_and_epfd
    a, b = pair()
    with a, b:
        async def main():
            receive = loop.create_task(loop.sock_recv(a, 10))
            await asyncio.sleep(0)
            send = loop.create_task(loop.sock_sendall(a, b'x' * (16 << 20)))
            await asyncio.sleep(0)
            mask = registrations(epfd)[a.fileno()]
            assert mask & (EPOLLIN | EPOLLOUT | EPOLLONESHOT) \
                == EPOLLIN | EPOLLOUT | EPOLLONESHOT
            # The reader's report disarms both; the writer is re-armed.
            b.send(b'ping')
            assert await receive == b'ping'
            assert registrations(epfd)[a.fileno()] & (EPOLLIN | EPOLLOUT) == EPOLLOUT
            got = 0
            while got < 16 << 20:
                got += len(await loop.sock_recv(b, 1 << 20))
            await send

        loop.run_until_complete(main())
