"""getaddrinfo/getnameinfo through the default executor, and the inline
resolution of numeric addresses used by sock_connect."""

import logging
import socket

import pytest

import ferroloop


@pytest.fixture
def loop():
    loop = ferroloop.new_event_loop()
    yield loop
    loop.close()


def test_getaddrinfo_matches_socket_module(loop):
    expected = socket.getaddrinfo('localhost', 80, type=socket.SOCK_STREAM)
    result = loop.run_until_complete(
        loop.getaddrinfo('localhost', 80, type=socket.SOCK_STREAM))
    assert result == expected
    # Names are resolved in the default executor.
    assert loop._default_executor is not None


def test_getaddrinfo_error(loop):
    with pytest.raises(socket.gaierror):
        loop.run_until_complete(
            loop.getaddrinfo('invalid host name', 80,
                             flags=socket.AI_NUMERICHOST))


def test_getnameinfo(loop):
    result = loop.run_until_complete(
        loop.getnameinfo(('127.0.0.1', 80),
                         socket.NI_NUMERICHOST | socket.NI_NUMERICSERV))
    assert result == ('127.0.0.1', '80')


def test_getaddrinfo_debug_logging(loop, caplog):
    loop.set_debug(True)
    with caplog.at_level(logging.DEBUG, logger='asyncio'):
        loop.run_until_complete(
            loop.getaddrinfo('127.0.0.1', 80, family=socket.AF_INET,
                             type=socket.SOCK_STREAM))
    messages = [r.getMessage() for r in caplog.records]
    assert ('Get address info 127.0.0.1:80, family=<AddressFamily.AF_INET: 2>, '
            'type=<SocketKind.SOCK_STREAM: 1>') in messages
    assert any(m.startswith('Getting address info 127.0.0.1:80, family=')
               and ' took ' in m for m in messages)


def test_ensure_resolved_numeric_is_inline(loop):
    info = loop.run_until_complete(loop._ensure_resolved(
        ('127.0.0.1', 8080), family=socket.AF_INET, type=socket.SOCK_STREAM,
        loop=loop))
    assert info == [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP,
                     '', ('127.0.0.1', 8080))]
    # No thread hop for a numeric address.
    assert loop._default_executor is None


def test_ensure_resolved_ipv6_numeric(loop):
    info = loop.run_until_complete(loop._ensure_resolved(
        ('::1', '443'), family=socket.AF_INET6, type=socket.SOCK_STREAM))
    assert info == [(socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP,
                     '', ('::1', 443, 0, 0))]
    assert loop._default_executor is None


def test_ensure_resolved_name_goes_through_getaddrinfo(loop):
    info = loop.run_until_complete(loop._ensure_resolved(
        ('localhost', 80), family=socket.AF_INET, type=socket.SOCK_STREAM))
    assert info == socket.getaddrinfo('localhost', 80, socket.AF_INET,
                                      socket.SOCK_STREAM)
    assert loop._default_executor is not None
