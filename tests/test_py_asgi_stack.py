"""A real ASGI stack on the loop: uvicorn serving HTTP/1.1 and WebSockets,
httpx and websockets as clients, all in one loop.

The same program runs on stock asyncio (the authority) and on ferroloop,
with the same assertions: many concurrent requests, bodies large enough to
need flow control both ways, a streamed response, a WebSocket echo with text
and a large binary frame, and a clean shutdown with nothing reported to the
loop's exception handler.
"""

import asyncio
import logging

import pytest

from _netutil import loop  # noqa: F401  (pytest fixture: both loops)

uvicorn = pytest.importorskip('uvicorn')
httpx = pytest.importorskip('httpx')
websockets = pytest.importorskip('websockets')

TIMEOUT = 60
STREAM_CHUNKS = 50


async def app(scope, receive, send):
    if scope['type'] == 'lifespan':
        while True:
            message = await receive()
            if message['type'] == 'lifespan.startup':
                await send({'type': 'lifespan.startup.complete'})
            elif message['type'] == 'lifespan.shutdown':
                await send({'type': 'lifespan.shutdown.complete'})
                return
    if scope['type'] == 'websocket':
        await receive()  # websocket.connect
        await send({'type': 'websocket.accept'})
        while True:
            message = await receive()
            if message['type'] == 'websocket.disconnect':
                return
            if message.get('bytes') is not None:
                await send({'type': 'websocket.send', 'bytes': message['bytes'][::-1]})
            else:
                await send({'type': 'websocket.send', 'text': message['text'].upper()})
    body = bytearray()
    while True:
        message = await receive()
        body += message.get('body', b'')
        if not message.get('more_body'):
            break
    await send({'type': 'http.response.start', 'status': 200,
                'headers': [(b'content-type', b'application/octet-stream')]})
    if scope['path'] == '/stream':
        for i in range(STREAM_CHUNKS):
            await send({'type': 'http.response.body', 'body': b'%04d' % i,
                        'more_body': True})
        await send({'type': 'http.response.body', 'body': b''})
    else:
        await send({'type': 'http.response.body', 'body': b'echo:' + bytes(body)})


async def serve_and_use():
    loop = asyncio.get_running_loop()
    handler_calls = []
    loop.set_exception_handler(lambda lp, ctx: handler_calls.append(ctx))
    config = uvicorn.Config(app, host='127.0.0.1', port=0, loop='none',
                            lifespan='on', ws='websockets-sansio', log_level='warning')
    server = uvicorn.Server(config)
    serving = asyncio.ensure_future(server.serve())
    # uvicorn offers a flag, not an event, for "listening".
    while not server.started:
        if serving.done():
            serving.result()  # startup failed: raise its error
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    results = {}

    async with httpx.AsyncClient(base_url=f'http://127.0.0.1:{port}') as client:
        responses = await asyncio.gather(
            *[client.post('/', content=b'req%d' % i) for i in range(200)])
        results['concurrent'] = all(
            r.status_code == 200 and r.content == b'echo:req%d' % i
            for i, r in enumerate(responses))
        big = bytes(range(256)) * 16_000  # ~4 MB: flow control on both sides
        response = await client.post('/', content=big)
        results['big'] = response.content == b'echo:' + big
        async with client.stream('GET', '/stream') as response:
            chunks = [chunk async for chunk in response.aiter_bytes()]
        results['stream'] = b''.join(chunks) == b''.join(
            b'%04d' % i for i in range(STREAM_CHUNKS))

    async with websockets.connect(f'ws://127.0.0.1:{port}/ws', max_size=None) as ws:
        texts = []
        for i in range(200):
            await ws.send(f'hello {i}')
            texts.append(await ws.recv())
        results['ws_text'] = texts == [f'HELLO {i}' for i in range(200)]
        blob = bytes(range(256)) * 4096  # 1 MiB frame
        await ws.send(blob)
        results['ws_binary'] = await ws.recv() == blob[::-1]

    server.should_exit = True
    await serving
    results['handler_calls'] = handler_calls
    return results


def test_uvicorn_httpx_websockets(loop, caplog):
    with caplog.at_level(logging.ERROR):
        results = loop.run_until_complete(asyncio.wait_for(serve_and_use(), TIMEOUT))
    assert results == {'concurrent': True, 'big': True, 'stream': True,
                       'ws_text': True, 'ws_binary': True, 'handler_calls': []}
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
