"""Fault injection for the syscalls Python makes for the loop.

Only a build with the cargo feature ``faults`` (``make build-faults``) has
``_ferroloop._fault_check``; in every other build this module does nothing
and the loop's code is left untouched (no wrapper, no check on any path).

The engine fails recv/send/epoll_ctl/connect itself; two calls are made by
Python code and are failed here, by the same seeded injector:

* ``accept``: the listening socket a server's accept loop reads is wrapped
  in a proxy whose ``accept()`` may raise first;
* ``pidfd``: ``os.pidfd_open`` may raise (EMFILE, ENFILE, ENOMEM) before
  opening anything.

Configuration: FERROLOOP_FAULTS_RATE, FERROLOOP_FAULTS_SEED and
FERROLOOP_FAULTS_CALLS (see crates/engine/src/faults.rs), or ``configure()``.
"""

import os

from . import _ferroloop

_check = getattr(_ferroloop, '_fault_check', None)

#: True in a build that can inject faults.
ENABLED = _check is not None


def configure(rate, seed=1, calls=None):
    """Set the fault rate (0 turns injection off), seed and calls
    (comma-separated: recv,send,accept,connect,epoll_ctl,pidfd)."""
    _ferroloop._faults_configure(rate, seed, calls)


def stats():
    """{call: (calls seen, faults injected)} since the last configure()."""
    return {name: (seen, hit)
            for name, seen, hit in _ferroloop._faults_stats()}


class _FaultySocket:
    """A listening socket whose accept() can fail as the kernel's would."""

    __slots__ = ('_sock',)

    def __init__(self, sock):
        self._sock = sock

    def accept(self):
        _check('accept')
        return self._sock.accept()

    def __getattr__(self, name):
        return getattr(self._sock, name)

    def __repr__(self):
        return repr(self._sock)


def install():
    if not ENABLED:
        return
    from . import _servers

    accept_connection = _servers.ServersMixin._accept_connection

    def _accept_connection(self, protocol_factory, sock, *args, **kwargs):
        if not isinstance(sock, _FaultySocket):
            sock = _FaultySocket(sock)
        return accept_connection(self, protocol_factory, sock,
                                 *args, **kwargs)

    _servers.ServersMixin._accept_connection = _accept_connection

    pidfd_open = getattr(os, 'pidfd_open', None)
    if pidfd_open is not None:
        def faulty_pidfd_open(pid, flags=0):
            _check('pidfd')
            return pidfd_open(pid, flags)
        os.pidfd_open = faulty_pidfd_open
