"""No starvation: I/O is polled every iteration, even under a callback storm."""
import socket
import threading


def test_readable_socket_is_serviced_within_1ms_while_callbacks_keep_coming(loop):
    r, w = socket.socketpair()
    r.setblocking(False)
    state = {'spins': 0, 'sent_at': None, 'latency': None}

    def storm():
        # A callback that always re-schedules itself: the ready queue is never empty.
        state['spins'] += 1
        if state['latency'] is None:
            loop.call_soon(storm)

    def on_readable():
        r.recv(1)
        state['latency'] = loop.time() - state['sent_at']
        loop.remove_reader(r)
        loop.stop()

    def send():
        state['sent_at'] = loop.time()
        w.send(b'x')

    loop.add_reader(r, on_readable)
    loop.call_soon(storm)
    # Send from the loop itself once the storm is going, so the clock is the loop's.
    loop.call_later(0.01, send)
    loop.run_forever()
    r.close()
    w.close()
    assert state['latency'] is not None
    assert state['latency'] < 0.001, state
    assert state['spins'] > 10
