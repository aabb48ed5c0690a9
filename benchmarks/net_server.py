"""One benchmark server on one event loop, in its own process (driven by net.py).

    python benchmarks/net_server.py LOOP STYLE [--port 0] [--lifetime 300]

STYLE is one of
  sock      echo with loop.sock_accept / loop.sock_recv / loop.sock_sendall
  streams   echo with asyncio.start_server (StreamReader.read / StreamWriter.write + drain)
  protocol  echo with a Protocol: data_received -> transport.write
  http      HTTP/1.1 keep-alive server: httptools request parser in a Protocol,
            fixed small response (200 for GET /, 404 otherwise, 400 on parse errors)

It listens on 127.0.0.1 (an ephemeral port unless --port), prints one JSON line
{"port": ..., "loop": ..., "style": ...} on stdout once it accepts connections,
then serves until it is killed (net.py sends SIGTERM) or --lifetime seconds
pass. If the loop does not implement what the style needs yet
(NotImplementedError), it prints {"skip": reason} and exits with status 3.
Anything the loop's exception handler receives, and any exception in a
connection handler, is printed to stderr as a line starting with
"server-error:"; net.py fails the cell when it sees one.
"""

import argparse
import asyncio
import json
import socket
import sys

import loops

READ_SIZE = 65536  # the same read size for every style
SKIP_EXIT = 3
STYLES = ("sock", "streams", "protocol", "http")

HTTP_BODY = b"Hello, World!\n"
HTTP_OK = (b"HTTP/1.1 200 OK\r\n"
           b"Content-Type: text/plain\r\n"
           b"Content-Length: " + str(len(HTTP_BODY)).encode() + b"\r\n"
           b"\r\n" + HTTP_BODY)


def _http_error(status, close=True):
    body = status.encode() + b"\n"
    return (b"HTTP/1.1 " + status.encode() + b"\r\n"
            b"Content-Type: text/plain\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n"
            + (b"Connection: close\r\n" if close else b"") + b"\r\n" + body)


HTTP_NOT_FOUND = _http_error("404 Not Found", close=False)
HTTP_BAD_REQUEST = _http_error("400 Bad Request")


def server_error(what):
    print(f"server-error: {what}", file=sys.stderr, flush=True)


# -- echo: raw socket operations ---------------------------------------------

async def sock_echo(loop, client):
    try:
        with client:
            while True:
                data = await loop.sock_recv(client, READ_SIZE)
                if not data:
                    break
                await loop.sock_sendall(client, data)
    except Exception as exc:  # noqa: BLE001 -- reported, then the cell fails
        server_error(f"sock handler: {exc!r}")


async def sock_accept_loop(loop, listener):
    while True:
        client, _ = await loop.sock_accept(listener)
        client.setblocking(False)
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        loop.create_task(sock_echo(loop, client))


async def start_sock(loop, port):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(128)
    listener.setblocking(False)
    # Fail (or skip) here, before announcing readiness, if sock_accept is missing.
    accept = loop.create_task(sock_accept_loop(loop, listener))
    await asyncio.sleep(0)
    if accept.done():
        accept.result()
    return listener.getsockname()[1], (listener, accept)


# -- echo: streams -------------------------------------------------------------

async def streams_echo(reader, writer):
    try:
        while True:
            data = await reader.read(READ_SIZE)
            if not data:
                break
            writer.write(data)
            await writer.drain()
        writer.close()
    except Exception as exc:  # noqa: BLE001
        server_error(f"streams handler: {exc!r}")


async def start_streams(loop, port):
    server = await asyncio.start_server(streams_echo, "127.0.0.1", port)
    return server.sockets[0].getsockname()[1], server


# -- echo: Protocol ------------------------------------------------------------

class EchoProtocol(asyncio.Protocol):
    __slots__ = ("transport",)

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)

    def connection_lost(self, exc):
        self.transport = None


async def start_protocol(loop, port):
    server = await loop.create_server(EchoProtocol, "127.0.0.1", port)
    return server.sockets[0].getsockname()[1], server


# -- HTTP/1.1 with httptools ---------------------------------------------------

class HttpProtocol(asyncio.Protocol):
    def __init__(self):
        import httptools
        self._parser_error = httptools.HttpParserError
        self.parser = httptools.HttpRequestParser(self)
        self.transport = None
        self.url = b""

    def connection_made(self, transport):
        self.transport = transport

    def connection_lost(self, exc):
        self.transport = None

    def data_received(self, data):
        try:
            self.parser.feed_data(data)
        except self._parser_error:
            if self.transport is not None:
                self.transport.write(HTTP_BAD_REQUEST)
                self.transport.close()

    # httptools callbacks
    def on_message_begin(self):
        self.url = b""

    def on_url(self, url):
        self.url += url

    def on_message_complete(self):
        if self.transport is None:
            return
        ok = self.parser.get_method() == b"GET" and self.url == b"/"
        self.transport.write(HTTP_OK if ok else HTTP_NOT_FOUND)
        if not self.parser.should_keep_alive():
            self.transport.close()


async def start_http(loop, port):
    server = await loop.create_server(HttpProtocol, "127.0.0.1", port)
    return server.sockets[0].getsockname()[1], server


STARTERS = {"sock": start_sock, "streams": start_streams,
            "protocol": start_protocol, "http": start_http}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("loop", choices=loops.LOOP_NAMES)
    parser.add_argument("style", choices=STYLES)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--lifetime", type=float, default=300.0,
                        help="exit on its own after this many seconds (default 300)")
    args = parser.parse_args(argv)

    loop = loops.new_loop(args.loop)
    asyncio.set_event_loop(loop)

    def on_loop_error(_loop, context):
        exc = context.get("exception")
        server_error(f"{context.get('message')}: {exc!r}")

    loop.set_exception_handler(on_loop_error)
    try:
        port, keep = loop.run_until_complete(STARTERS[args.style](loop, args.port))
    except NotImplementedError as exc:
        why = f"NotImplementedError: {exc}" if str(exc) else "NotImplementedError"
        print(json.dumps({"skip": f"{args.loop} {args.style}: {why}"}), flush=True)
        return SKIP_EXIT
    loop.call_later(args.lifetime, loop.stop)
    print(json.dumps({"port": port, "loop": args.loop, "style": args.style,
                      "type": f"{type(loop).__module__}.{type(loop).__qualname__}",
                      "http_body": HTTP_BODY.decode() if args.style == "http" else None}),
          flush=True)
    loop.run_forever()
    del keep
    return 0


if __name__ == "__main__":
    sys.exit(main())
