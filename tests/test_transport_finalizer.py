"""An unclosed transport collected at interpreter exit closes its socket quietly.

At exit the garbage collector clears the members of a dead cycle before the
native transport is deallocated; the transport's socket.socket has then lost
its `_io_refs` slot, so its `close()` would raise.  The stock transport's
`__del__` runs before that clearing and never shows the error.
"""

import subprocess
import sys

import pytest

SCRIPT = r'''
import asyncio, sys
import ferroloop

async def handler(reader, writer):
    started.set()
    await reader.read()          # never answers; cancelled by the Runner

async def main():
    global started
    started = asyncio.Event()
    srv = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await started.wait()
    writer.close()
    # The server and its accepted transport are left open on purpose.

factory = ferroloop.new_event_loop if sys.argv[1] == "ferroloop" else asyncio.new_event_loop
with asyncio.Runner(loop_factory=factory) as runner:
    runner.run(main())
print("exited")
'''


@pytest.mark.parametrize("loop_name", ["asyncio", "ferroloop"])
def test_unclosed_server_transport_at_exit(loop_name):
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, loop_name],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "exited"
    assert "AttributeError" not in proc.stderr
    assert "_io_refs" not in proc.stderr
