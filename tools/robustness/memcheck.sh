#!/bin/sh
# The socket, TLS and subprocess tests of the pytest suite under valgrind
# memcheck, against the extension `make build` made.  CPython's own
# allocator is off (PYTHONMALLOC=malloc) so that memcheck sees every Python
# object's block; tools/robustness/cpython.supp silences the interpreter's
# and OpenSSL's known noise.  Leak checking is off (the interpreter's
# interned and static objects would drown it; the soak watches growth).
#
# Fails if any invalid read or write (or use of uninitialised memory in a
# jump) has a ferroloop frame in its stack.  MEMCHECK_TESTS picks the tests.
# Left out: the fd-inheritance test (valgrind's own fds reach the children)
# and the stock loop's TLS echo (its own timeout is too short under valgrind).
set -eu
cd "$(dirname "$0")/../.."
OUT=${MEMCHECK_OUT:-build/memcheck}
TESTS=${MEMCHECK_TESTS:-"tests/test_py_tcp_streams.py tests/test_py_tls_streams.py tests/test_py_sock_ops.py tests/test_py_udp_transport.py tests/test_py_subprocess_exec.py"}
rm -rf "$OUT"
mkdir -p "$OUT"
# pytest-timeout's limit is per test; valgrind makes everything ~30x slower.
# shellcheck disable=SC2086
PYTHONMALLOC=malloc valgrind --tool=memcheck --leak-check=no \
    --suppressions=tools/robustness/cpython.supp --num-callers=30 \
    --error-limit=no --log-file="$OUT/valgrind.%p.log" \
    .venv/bin/python -m pytest -p no:cacheprovider -o timeout=1800 \
    -k "not fd_leaks_into_children and not (streams_echo and asyncio)" \
    $TESTS 2>&1 | tee "$OUT/pytest.log" | tail -5
.venv/bin/python tools/robustness/memcheck_report.py "$OUT"
