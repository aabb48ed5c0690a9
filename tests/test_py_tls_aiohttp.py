"""aiohttp over TLS: its HTTPS client against its HTTPS server, on each loop.

aiohttp drives the loop through create_connection(ssl=...) and
create_server(ssl=...) with its own protocols, a realistic TLS user.
Certificates are made at test time (see _tlsutil).
"""

import asyncio
import gc
import ssl

import pytest

from _tlsutil import HOSTNAME, certs  # noqa: F401  (certs is a fixture)

import ferroloop

aiohttp = pytest.importorskip('aiohttp')
from aiohttp import web  # noqa: E402


@pytest.fixture(autouse=True)
def collect_garbage():
    """Close what the test left in reference cycles before the next one.

    A failed handshake's exception references SSLProtocol and its socket
    transport (on the stock loop as well); left to a later gc run, the
    socket would close in the middle of another test that counts fds.
    """
    yield
    gc.collect()


LOOP_FACTORIES = {
    'asyncio': asyncio.new_event_loop,
    'ferroloop': ferroloop.new_event_loop,
}


async def _serve_and_fetch(certs, client_ssl, paths):
    async def hello(request):
        peercert = request.transport.get_extra_info('peercert')
        cipher = request.transport.get_extra_info('cipher')
        return web.json_response({
            'path': request.path,
            'secure': request.secure,
            'client_cert': peercert,
            'cipher': bool(cipher),
        })

    async def big(request):
        return web.Response(body=b'z' * 1_000_000)

    app = web.Application()
    app.router.add_get('/hello', hello)
    app.router.add_get('/big', big)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, '127.0.0.1', 0,
                       ssl_context=certs.server_context())
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    results = []
    try:
        async with aiohttp.ClientSession() as session:
            for path in paths:
                url = f'https://{HOSTNAME}:{port}{path}'
                async with session.get(url, ssl=client_ssl) as resp:
                    if path == '/big':
                        results.append((resp.status,
                                        len(await resp.read())))
                    else:
                        results.append((resp.status, await resp.json()))
    finally:
        await runner.cleanup()
    return results


@pytest.mark.parametrize('loop_name', sorted(LOOP_FACTORIES))
def test_https_client_against_https_server(loop_name, certs):
    with asyncio.Runner(loop_factory=LOOP_FACTORIES[loop_name]) as runner:
        results = runner.run(asyncio.wait_for(_serve_and_fetch(
            certs, certs.client_context(), ['/hello', '/big', '/hello']),
            30))
    hello = {'path': '/hello', 'secure': True, 'client_cert': None,
             'cipher': True}
    assert results == [(200, hello), (200, 1_000_000), (200, hello)]


@pytest.mark.parametrize('loop_name', sorted(LOOP_FACTORIES))
def test_https_client_rejects_untrusted_server(loop_name, certs):
    async def main():
        with pytest.raises(aiohttp.ClientConnectorCertificateError) as info:
            await _serve_and_fetch(certs, None, ['/hello'])
        return type(info.value.certificate_error)

    with asyncio.Runner(loop_factory=LOOP_FACTORIES[loop_name]) as runner:
        kind = runner.run(asyncio.wait_for(main(), 30))
    assert kind is ssl.SSLCertVerificationError
