"""What a run sees of an fd made ready by a callback of the iteration that
woke from a blocking poll.

The stock loop polls in every iteration. A callback that runs right after a
blocking poll woke (a timer's, an fd's, a protocol's) and makes a watched fd
of the same loop ready (a send to a socket pair, an echo to a client of the
same process) has that fd's callback run in the very next iteration: within
the current `run_until_complete`, and before the second hop of a `call_soon`
chain the callback started. A loop that leaves out the next iteration's
zero-timeout poll (the bounded poll skip tried twice, see
docs/design-notes.md) runs it one iteration later, which these programs can
see. Each case runs on the stock loop and on ferroloop and must agree.
"""
import asyncio
import socket

import pytest

import ferroloop

# Long enough that the first iteration's poll blocks (the wake-up is what
# matters), short for the suite.
DELAY = 0.005


def timer_sends_then_resolves(loop):
    """The timer's callback sends to a watched socket pair and resolves the
    future the run waits for: the reader runs within that run."""
    r, w = socket.socketpair()
    r.setblocking(False)
    seen = []
    loop.add_reader(r, lambda: seen.append(r.recv(100)))
    fut = loop.create_future()

    def on_timer():
        w.send(b"x")
        fut.set_result(None)

    loop.call_later(DELAY, on_timer)
    loop.run_until_complete(fut)
    loop.remove_reader(r)
    r.close()
    w.close()
    return seen


def timer_sends_then_chains(loop):
    """The same wake-up; the reader runs between the first and the second
    hop of a call_soon chain the timer started."""
    r, w = socket.socketpair()
    r.setblocking(False)
    order = []

    def on_readable():
        r.recv(100)
        order.append("reader")

    loop.add_reader(r, on_readable)
    fut = loop.create_future()

    def hop2():
        order.append("hop2")
        fut.set_result(None)

    def hop1():
        order.append("hop1")
        loop.call_soon(hop2)

    def on_timer():
        w.send(b"x")
        loop.call_soon(hop1)

    loop.call_later(DELAY, on_timer)
    loop.run_until_complete(fut)
    loop.remove_reader(r)
    r.close()
    w.close()
    return order


def protocol_echo_in_process(loop):
    """A server protocol woken by a client's data echoes it (to the client,
    a transport of the same loop) and resolves the run's future: the
    client's data_received runs within that run."""
    got = []
    done = loop.create_future()

    class Server(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport

        def data_received(self, data):
            self.transport.write(data)
            if not done.done():
                done.set_result(None)

    class Client(asyncio.Protocol):
        def data_received(self, data):
            got.append(data)

    a, b = socket.socketpair()
    server_t, _ = loop.run_until_complete(loop.connect_accepted_socket(Server, a))
    client_t, _ = loop.run_until_complete(loop.create_connection(Client, sock=b))
    # The client writes from a timer, so the server's read follows a wake-up.
    loop.call_later(DELAY, client_t.write, b"ping")
    loop.run_until_complete(done)
    seen = list(got)
    client_t.close()
    server_t.close()
    loop.run_until_complete(asyncio.sleep(0))
    return seen


CASES = [timer_sends_then_resolves, timer_sends_then_chains, protocol_echo_in_process]


def run_on(make_loop, case):
    loop = make_loop()
    try:
        return case(loop)
    finally:
        loop.close()


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.__name__)
def test_fd_made_ready_after_wakeup_is_seen_as_by_stock_loop(case):
    expected = run_on(asyncio.new_event_loop, case)
    assert run_on(ferroloop.new_event_loop, case) == expected
