"""call_soon_threadsafe wakes a sleeping loop at once."""
import threading
import time


def test_threadsafe_call_wakes_a_loop_sleeping_in_poll(loop):
    woke = []
    # Without a wake-up the loop would sleep for an hour on this timer.
    far = loop.call_later(3600, loop.stop)
    started = threading.Event()

    def poster():
        started.wait()
        time.sleep(0.05)  # let the loop enter its long poll
        loop.call_soon_threadsafe(lambda: (woke.append(loop.time()), loop.stop()))

    loop.call_soon(started.set)
    t = threading.Thread(target=poster)
    t.start()
    t0 = loop.time()
    loop.run_forever()
    t.join()
    far.cancel()
    assert woke, 'the threadsafe callback did not run'
    assert woke[0] - t0 < 5, 'the loop was not woken'


def test_many_threadsafe_calls_from_several_threads_all_run(loop):
    n_threads, per_thread = 4, 5000
    count = [0]
    done = threading.Barrier(n_threads + 1)

    def bump():
        count[0] += 1
        if count[0] == n_threads * per_thread:
            loop.stop()

    def producer():
        for _ in range(per_thread):
            loop.call_soon_threadsafe(bump)
        done.wait()

    threads = [threading.Thread(target=producer) for _ in range(n_threads)]
    for t in threads:
        t.start()
    loop.run_forever()
    done.wait()
    for t in threads:
        t.join()
    assert count[0] == n_threads * per_thread


def test_threadsafe_call_on_closed_loop_raises(loop):
    loop.close()
    try:
        loop.call_soon_threadsafe(print)
    except RuntimeError as e:
        assert 'Event loop is closed' in str(e)
    else:
        raise AssertionError('expected RuntimeError')
