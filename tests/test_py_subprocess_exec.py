"""loop.subprocess_exec / subprocess_shell and asyncio.create_subprocess_*:
stdio options, communicate, signals, Popen options, argument errors and the
protocol's callback order, on stock asyncio and ferroloop alike."""

import asyncio
import contextvars
import hashlib
import os
import signal
import subprocess
import sys

import pytest

from _procutil import (  # noqa: F401  (loop: pytest fixture)
    LOOP_FACTORIES, RecordingSubprocessProtocol, assert_reaped, child_pids,
    close_loop, loop, open_fds, python_child, run)


PIPE = subprocess.PIPE
TEN_MB = 10 * 1024 * 1024

# Writes TEN_MB of a non-periodic pattern, then exits at once: the exit is
# seen long before the parent has read it all.
WRITE_10MB_AND_EXIT = f'''
import hashlib, os, sys
block = b''.join(hashlib.sha256(bytes([i])).digest() for i in range(256))
data = (block * ({TEN_MB} // len(block) + 1))[:{TEN_MB}]
sys.stdout.buffer.write(data)
sys.stdout.buffer.flush()
os._exit(0)
'''


def ten_mb_digest():
    block = b''.join(hashlib.sha256(bytes([i])).digest() for i in range(256))
    data = (block * (TEN_MB // len(block) + 1))[:TEN_MB]
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------
# Context


CALLER_VAR = contextvars.ContextVar('caller_var', default='unset')


class ContextRecordingProtocol(RecordingSubprocessProtocol):
    """Records the caller's context variable as each callback sees it."""

    def connection_made(self, transport):
        super().connection_made(transport)
        self.events.append(('var', CALLER_VAR.get()))

    def pipe_data_received(self, fd, data):
        super().pipe_data_received(fd, data)
        self.events.append(('var', CALLER_VAR.get()))

def test_protocol_callbacks_run_in_the_callers_context(loop):
    # The stock loop makes the transport (and its pipe-connecting task) in
    # the caller's coroutine: the protocol sees the caller's variables.
    async def main():
        CALLER_VAR.set('caller')
        transport, proto = await loop.subprocess_exec(
            lambda: ContextRecordingProtocol(loop),
            *python_child('print("x")'), stdin=None, stderr=None)
        await transport._wait()
        await proto.done
        transport.close()
        return proto

    proto = run(loop, main())
    seen = [event[1] for event in proto.events
            if isinstance(event, tuple) and event[0] == 'var']
    # (process_exited's context is the child watcher's: on 3.11 the stock
    # one calls it from a thread's call_soon_threadsafe, without the caller's)
    assert seen == ['caller', 'caller']  # connection_made, data


# --------------------------------------------------------------------------
# Output and input


def test_10mb_output_then_exit_is_read_in_full(loop):
    async def main():
        proc = await asyncio.create_subprocess_exec(
            *python_child(WRITE_10MB_AND_EXIT), stdout=PIPE)
        out, err = await proc.communicate()
        return proc, out, err

    proc, out, err = run(loop, main())
    assert err is None
    assert len(out) == TEN_MB
    assert hashlib.sha256(out).hexdigest() == ten_mb_digest()
    assert proc.returncode == 0
    assert_reaped([proc.pid])


def test_10mb_output_through_the_protocol_api(loop):
    # The exit is noticed while most of the output is still in the pipe:
    # connection_lost (and wait()) must wait for both.
    async def main():
        transport, proto = await loop.subprocess_exec(
            lambda: RecordingSubprocessProtocol(loop),
            *python_child(WRITE_10MB_AND_EXIT), stdin=None, stderr=None)
        returncode = await transport._wait()
        await proto.done
        transport.close()
        return transport, proto, returncode

    transport, proto, returncode = run(loop, main())
    assert returncode == 0 == transport.get_returncode()
    assert len(proto.data[1]) == TEN_MB
    assert hashlib.sha256(proto.data[1]).hexdigest() == ten_mb_digest()
    events = proto.events
    assert events[0] == 'connection_made'
    assert events[-1] == ('connection_lost', None)
    assert ('pipe_lost', 1, None) in events and 'process_exited' in events
    # Data stops before the pipe's close.
    assert events.index(('data', 1)) < events.index(('pipe_lost', 1, None))


def test_communicate_with_input(loop):
    payload = os.urandom(1024 * 1024)  # more than a pipe holds

    async def main():
        proc = await asyncio.create_subprocess_exec(
            *python_child(
                'import sys; data = sys.stdin.buffer.read(); '
                'sys.stdout.buffer.write(data[::-1]); '
                'sys.stderr.buffer.write(str(len(data)).encode())'),
            stdin=PIPE, stdout=PIPE, stderr=PIPE)
        out, err = await proc.communicate(payload)
        return proc.returncode, out, err

    returncode, out, err = run(loop, main())
    assert returncode == 0
    assert out == payload[::-1]
    assert err == str(len(payload)).encode()


def test_stdin_write_drain_and_readline(loop):
    async def main():
        proc = await asyncio.create_subprocess_exec(
            *python_child(
                'import sys\n'
                'for line in sys.stdin:\n'
                '    print(line.strip().upper(), flush=True)\n'),
            stdin=PIPE, stdout=PIPE)
        answers = []
        for word in (b'one', b'two'):
            proc.stdin.write(word + b'\n')
            await proc.stdin.drain()
            answers.append(await proc.stdout.readline())
        proc.stdin.close()
        await proc.stdin.wait_closed()
        rest = await proc.stdout.read()
        return answers, rest, await proc.wait()

    assert run(loop, main()) == ([b'ONE\n', b'TWO\n'], b'', 0)


def test_stderr_redirected_to_stdout(loop):
    async def main():
        proc = await asyncio.create_subprocess_exec(
            *python_child(
                'import sys; sys.stdout.write("out "); sys.stdout.flush(); '
                'sys.stderr.write("err")'),
            stdout=PIPE, stderr=subprocess.STDOUT)
        assert proc.stderr is None
        out, err = await proc.communicate()
        return out, err

    assert run(loop, main()) == (b'out err', None)


def test_devnull_and_inherited_stdio(loop):
    async def main():
        proc = await asyncio.create_subprocess_exec(
            *python_child(
                'import sys; data = sys.stdin.read(); '
                'print(repr(data)); print("lost", file=sys.stderr)'),
            stdin=subprocess.DEVNULL, stdout=PIPE,
            stderr=subprocess.DEVNULL)
        assert proc.stdin is None and proc.stderr is None
        out, _ = await proc.communicate()
        return out, proc.returncode

    assert run(loop, main()) == (b"''\n", 0)


def test_stdout_to_a_file_object_and_an_fd(loop, tmp_path):
    out_path = tmp_path / 'out'
    err_path = tmp_path / 'err'

    async def main():
        with open(out_path, 'wb') as out_file:
            err_fd = os.open(err_path, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                proc = await asyncio.create_subprocess_exec(
                    *python_child(
                        'import sys; print("to file"); '
                        'print("to fd", file=sys.stderr)'),
                    stdin=None, stdout=out_file, stderr=err_fd)
            finally:
                os.close(err_fd)
            assert proc.stdout is None and proc.stderr is None
            return await proc.wait()

    assert run(loop, main()) == 0
    assert out_path.read_bytes() == b'to file\n'
    assert err_path.read_bytes() == b'to fd\n'


def test_read_stdout_after_the_process_exited(loop):
    async def main():
        proc = await asyncio.create_subprocess_exec(
            *python_child('print("early bird")'), stdout=PIPE)
        # Wait for the exit first; the output is still there afterwards.
        returncode = await proc.wait()
        return returncode, await proc.stdout.read()

    assert run(loop, main()) == (0, b'early bird\n')


# --------------------------------------------------------------------------
# Exit codes and signals


def test_exit_code_and_returncode_attribute(loop):
    async def main():
        proc = await asyncio.create_subprocess_exec(
            *python_child('import sys; sys.stdin.read(); sys.exit(42)'),
            stdin=PIPE)
        before = proc.returncode
        proc.stdin.close()
        # Several waiters all get the code.
        codes = await asyncio.gather(proc.wait(), proc.wait())
        return before, codes, proc.returncode

    assert run(loop, main()) == (None, [42, 42], 42)


def test_kill_gives_minus_sigkill(loop):
    async def main():
        proc = await asyncio.create_subprocess_exec(
            *python_child('import time; time.sleep(60)'))
        proc.kill()
        return proc.pid, await proc.wait()

    pid, returncode = run(loop, main())
    assert returncode == -signal.SIGKILL
    assert_reaped([pid])


def test_child_killed_by_a_signal_from_elsewhere(loop):
    async def main():
        proc = await asyncio.create_subprocess_exec(
            *python_child('import os, signal; '
                          'os.kill(os.getpid(), signal.SIGKILL)'))
        return await proc.wait()

    assert run(loop, main()) == -signal.SIGKILL


def test_terminate_gives_minus_sigterm(loop):
    async def main():
        proc = await asyncio.create_subprocess_exec(
            *python_child('import time; time.sleep(60)'))
        proc.terminate()
        return await proc.wait()

    assert run(loop, main()) == -signal.SIGTERM


def test_send_signal_reaches_the_child_handler(loop):
    async def main():
        proc = await asyncio.create_subprocess_exec(
            *python_child(
                'import signal, sys, time\n'
                'signal.signal(signal.SIGUSR1, lambda *a: sys.exit(7))\n'
                'print("ready", flush=True)\n'
                'time.sleep(60)\n'),
            stdout=PIPE)
        assert await proc.stdout.readline() == b'ready\n'
        proc.send_signal(signal.SIGUSR1)
        return await proc.wait()

    assert run(loop, main()) == 7


def test_signals_after_exit_raise_process_lookup_error(loop):
    async def main():
        proc = await asyncio.create_subprocess_exec(*python_child('pass'))
        await proc.wait()
        # The transport has let go of the child: no signal can reach a
        # recycled pid.
        for send in (lambda: proc.send_signal(signal.SIGTERM),
                     proc.terminate, proc.kill):
            with pytest.raises(ProcessLookupError):
                send()
        return proc.returncode

    assert run(loop, main()) == 0


def test_closing_the_transport_kills_a_running_child(loop):
    async def main():
        transport, proto = await loop.subprocess_exec(
            lambda: RecordingSubprocessProtocol(loop),
            *python_child('import time; time.sleep(60)'))
        transport.close()
        assert transport.is_closing()
        return await transport._wait()

    assert run(loop, main()) == -signal.SIGKILL


# --------------------------------------------------------------------------
# Popen options


def test_cwd_and_env(loop, tmp_path):
    async def main():
        proc = await asyncio.create_subprocess_exec(
            *python_child('import os; print(os.getcwd()); '
                          'print(sorted(os.environ.items()))'),
            stdout=PIPE, cwd=tmp_path, env={'ONLY': 'this'})
        out, _ = await proc.communicate()
        return out.decode().splitlines()

    cwd, env = run(loop, main())
    assert cwd == str(tmp_path)
    # LC_CTYPE may be added by Python's locale coercion.
    assert ('ONLY', 'this') in eval(env)
    assert {k for k, _ in eval(env)} <= {'ONLY', 'LC_CTYPE'}


def test_start_new_session(loop):
    async def main():
        proc = await asyncio.create_subprocess_exec(
            *python_child('import os; print(os.getsid(0), os.getpid())'),
            stdout=PIPE, start_new_session=True)
        out, _ = await proc.communicate()
        return [int(n) for n in out.split()]

    sid, pid = run(loop, main())
    assert sid == pid
    assert sid != os.getsid(0)


@pytest.mark.parametrize('how', ['preexec_fn', 'process_group'])
def test_own_process_group(loop, how):
    # preexec_fn runs in the child before exec (ferroloop calls Popen in a
    # thread: the child is forked from that thread).
    options = ({'preexec_fn': lambda: os.setpgid(0, 0)} if how == 'preexec_fn'
               else {'process_group': 0})

    async def main():
        proc = await asyncio.create_subprocess_exec(
            *python_child('import os; print(os.getpgid(0), os.getpid())'),
            stdout=PIPE, **options)
        out, _ = await proc.communicate()
        return [int(n) for n in out.split()]

    pgid, pid = run(loop, main())
    assert pgid == pid
    assert pgid != os.getpgid(0)


def test_pass_fds(loop):
    r, w = os.pipe()
    code = ('import os, sys; fd = int(sys.argv[1]); '
            'print(sorted(map(int, os.listdir("/proc/self/fd")))); '
            'os.write(fd, b"via fd %d" % fd)')

    async def main():
        proc = await asyncio.create_subprocess_exec(
            *python_child(code), str(w), stdout=PIPE, pass_fds=(w,))
        out, _ = await proc.communicate()
        return eval(out)

    try:
        child_fds = run(loop, main())
        os.close(w)
        # The child wrote through the same fd number, and it was the only
        # writer left: read() sees its bytes, then EOF.
        assert os.read(r, 100) == b'via fd %d' % w
        assert os.read(r, 100) == b''
    finally:
        os.close(r)
    # stdio, the passed fd, and the one listdir itself opened: no other.
    assert w in child_fds
    assert len(set(child_fds) - {0, 1, 2, w}) == 1


def inheritable_fds():
    fds = set()
    for fd in open_fds() - {0, 1, 2}:
        try:
            if os.get_inheritable(fd):
                fds.add(fd)
        except OSError:
            pass  # the fd listdir used, closed by now
    return fds


@pytest.mark.parametrize('factory', sorted(LOOP_FACTORIES))
def test_no_loop_fd_leaks_into_children(factory):
    # close_fds=True (Popen's default) closes everything else; and even
    # with close_fds=False, the loop's own fds (poller, waker, pidfds, other
    # children's pipes) are close-on-exec.  Inheritable fds this process
    # had before the loop existed (e.g. from whoever started pytest) are
    # the only ones a close_fds=False child may get.
    before = inheritable_fds()
    loop = LOOP_FACTORIES[factory]()
    asyncio.set_event_loop(loop)
    lister = python_child(
        'import os; print(sorted(map(int, os.listdir("/proc/self/fd"))))')

    async def main():
        # Another child running meanwhile: its pipes (and on ferroloop its
        # pidfd) are open in this process.
        sleeper = await asyncio.create_subprocess_exec(
            *python_child('import sys; sys.stdin.read()'),
            stdin=PIPE, stdout=PIPE)
        during = inheritable_fds()
        listings = {}
        for close_fds in (True, False):
            proc = await asyncio.create_subprocess_exec(
                *lister, stdin=subprocess.DEVNULL, stdout=PIPE,
                close_fds=close_fds)
            out, _ = await proc.communicate()
            listings[close_fds] = set(eval(out))
        sleeper.stdin.close()
        await sleeper.wait()
        return during, listings

    try:
        during, listings = run(loop, main())
    finally:
        asyncio.set_event_loop(None)
        close_loop(loop)
    assert during == before
    # stdio, plus the one fd listdir itself opened
    assert listings[True] == {0, 1, 2, 3}
    extra = listings[False] - {0, 1, 2} - before
    assert len(extra) == 1


# --------------------------------------------------------------------------
# Shell


def test_subprocess_shell(loop):
    async def main():
        proc = await asyncio.create_subprocess_shell(
            'echo "$GREETING" world; echo oops >&2; exit 3',
            stdout=PIPE, stderr=PIPE, env={'GREETING': 'hello'})
        out, err = await proc.communicate()
        return out, err, proc.returncode

    assert run(loop, main()) == (b'hello world\n', b'oops\n', 3)


def test_subprocess_shell_bytes_command(loop):
    async def main():
        transport, proto = await loop.subprocess_shell(
            lambda: RecordingSubprocessProtocol(loop), b'printf abc',
            stdin=None, stderr=None)
        await proto.done
        transport.close()
        return bytes(proto.data[1]), transport.get_returncode()

    assert run(loop, main()) == (b'abc', 0)


# --------------------------------------------------------------------------
# Argument errors: same exception type and message as the stock loop


EXEC_ARG_ERRORS = [
    ({'universal_newlines': True}, ValueError,
     'universal_newlines must be False'),
    ({'shell': True}, ValueError, 'shell must be False'),
    ({'bufsize': 4096}, ValueError, 'bufsize must be 0'),
    ({'text': True}, ValueError, 'text must be False'),
    ({'encoding': 'utf-8'}, ValueError, 'encoding must be None'),
    ({'errors': 'strict'}, ValueError, 'errors must be None'),
]

SHELL_ARG_ERRORS = [
    ({'universal_newlines': True}, ValueError,
     'universal_newlines must be False'),
    ({'shell': False}, ValueError, 'shell must be True'),
    ({'bufsize': 4096}, ValueError, 'bufsize must be 0'),
    ({'text': True}, ValueError, 'text must be False'),
    ({'encoding': 'utf-8'}, ValueError, 'encoding must be None'),
    ({'errors': 'strict'}, ValueError, 'errors must be None'),
]


@pytest.mark.parametrize('kwargs,exc_type,message', EXEC_ARG_ERRORS,
                         ids=[next(iter(k)) for k, _, _ in EXEC_ARG_ERRORS])
def test_subprocess_exec_argument_errors(loop, kwargs, exc_type, message):
    async def main():
        with pytest.raises(exc_type) as info:
            await loop.subprocess_exec(asyncio.SubprocessProtocol,
                                       sys.executable, '-c', 'pass', **kwargs)
        return str(info.value)

    assert run(loop, main()) == message


@pytest.mark.parametrize('kwargs,exc_type,message', SHELL_ARG_ERRORS,
                         ids=[next(iter(k)) for k, _, _ in SHELL_ARG_ERRORS])
def test_subprocess_shell_argument_errors(loop, kwargs, exc_type, message):
    async def main():
        with pytest.raises(exc_type) as info:
            await loop.subprocess_shell(asyncio.SubprocessProtocol, 'exit 0',
                                        **kwargs)
        return str(info.value)

    assert run(loop, main()) == message


@pytest.mark.parametrize('cmd', [['ls', '-l'], 123, None])
def test_subprocess_shell_needs_a_string(loop, cmd):
    async def main():
        with pytest.raises(ValueError) as info:
            await loop.subprocess_shell(asyncio.SubprocessProtocol, cmd)
        return str(info.value)

    assert run(loop, main()) == 'cmd must be a string'


def test_wrong_argument_types_raise_popens_type_errors(loop):
    async def main():
        messages = []
        with pytest.raises(TypeError) as info:
            await loop.subprocess_exec(asyncio.SubprocessProtocol,
                                       sys.executable, 123)
        messages.append(str(info.value))
        with pytest.raises(TypeError) as info:
            # A list where separate arguments are expected.
            await loop.subprocess_exec(asyncio.SubprocessProtocol,
                                       [sys.executable, '-c', 'pass'])
        messages.append(str(info.value))
        with pytest.raises(TypeError):
            await loop.subprocess_exec(asyncio.SubprocessProtocol)
        with pytest.raises(TypeError) as info:
            await asyncio.create_subprocess_exec(sys.executable, 'x',
                                                 no_such_option=1)
        messages.append(str(info.value))
        return messages

    assert run(loop, main()) == [
        'expected str, bytes or os.PathLike object, not int',
        'expected str, bytes or os.PathLike object, not list',
        "Popen.__init__() got an unexpected keyword argument "
        "'no_such_option'",
    ]


def test_missing_program_raises_file_not_found(loop, tmp_path):
    missing = str(tmp_path / 'no-such-program')

    async def main():
        with pytest.raises(FileNotFoundError) as info:
            await asyncio.create_subprocess_exec(missing)
        return info.value

    exc = run(loop, main())
    assert exc.filename == missing


def test_path_like_program_and_arguments(loop, tmp_path):
    async def main():
        proc = await asyncio.create_subprocess_exec(
            type(tmp_path)(sys.executable), '-I', '-S', '-c',
            'import sys; print(sys.argv[1])', tmp_path, stdout=PIPE)
        out, _ = await proc.communicate()
        return out

    assert run(loop, main()) == str(tmp_path).encode() + b'\n'


# --------------------------------------------------------------------------
# The transport


def test_transport_api_and_repr(loop):
    async def main():
        transport, proto = await loop.subprocess_exec(
            lambda: RecordingSubprocessProtocol(loop),
            *python_child('import sys; sys.stdin.read()'),
            stderr=subprocess.STDOUT)
        pid = transport.get_pid()
        running_repr = repr(transport)
        popen = transport.get_extra_info('subprocess')
        stdin = transport.get_pipe_transport(0)
        stdout = transport.get_pipe_transport(1)
        assert transport.get_pipe_transport(2) is None
        assert isinstance(stdin, asyncio.WriteTransport)
        assert isinstance(stdout, asyncio.ReadTransport)
        stdin.close()
        await proto.done
        transport.close()
        return pid, popen, running_repr, repr(transport), proto.events

    pid, popen, running_repr, final_repr, events = run(loop, main())
    assert isinstance(popen, subprocess.Popen) and popen.pid == pid
    assert running_repr.startswith(
        f'<_UnixSubprocessTransport pid={pid} running stdin=<')
    assert final_repr.startswith(
        f'<_UnixSubprocessTransport closed pid={pid} returncode=0 ')
    assert events[0] == 'connection_made'
    assert events[-1] == ('connection_lost', None)
    assert sorted(e for e in events[1:-1] if e != 'process_exited') == [
        ('pipe_lost', 0, None), ('pipe_lost', 1, None)]


@pytest.mark.parametrize('when', ['while_starting', 'while_connecting'])
def test_cancelled_creation_kills_and_reaps_the_child(loop, when):
    # ferroloop starts the child in a thread: a cancellation can arrive
    # before the child exists ('while_starting'; the stock loop's Popen
    # call is over by then), or after, while its pipes connect.
    async def main():
        task = asyncio.ensure_future(asyncio.create_subprocess_exec(
            *python_child('import time; time.sleep(60)'),
            stdin=PIPE, stdout=PIPE))
        await asyncio.sleep(0)
        if when == 'while_connecting':
            # Iterations until the child exists (one on the stock loop).
            for _ in range(100_000):
                if child_pids():
                    break
                await asyncio.sleep(0)
            assert len(child_pids()) == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(loop, main())
    # Killed and reaped before the cancellation propagated.
    assert child_pids() == []
