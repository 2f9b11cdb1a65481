"""The floor under trio-asgi: a bare trio loop with one ASGI call per request.

Not a server anyone should run: no validation, no limits, no timeouts, no
error handling, GET only, responses that fit the socket's buffer. It
answers the hello-world benchmark the way the thinnest trio server built
like trio-asgi would: the socket read and written directly (``os.read`` /
``os.write``, ``wait_readable`` only when nothing has arrived), one
scheduler step per response, the request parsed by httptools or h11, a
minimal scope, the app's two ``send`` calls joined into one write. What a
full server costs above it is the server's own work per request, not
trio's::

    taskset -c 0 python -m benchmarks.trio_floor --port 8000 --parser httptools
    taskset -c 1 wrk -t1 -c50 -d5s http://127.0.0.1:8000/

docs/performance-notes.md compares it with trio-asgi and uvicorn.
"""

from __future__ import annotations

import argparse
import os
import signal
from typing import Any

import trio

from .apps import app

_RECEIVE_SIZE = 65536


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


def _sender(fd: int):
    head: list[bytes] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            head.append(b"HTTP/1.1 %d OK\r\n" % message["status"])
            head.extend(b"%s: %s\r\n" % pair for pair in message["headers"])
            head.append(b"\r\n")
        else:
            head.append(message.get("body", b""))
            data = b"".join(head)
            head.clear()
            os.write(fd, data)

    return send


class _HttptoolsRequests:
    """httptools callbacks collecting the request being parsed."""

    def __init__(self) -> None:
        import httptools

        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.complete = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_message_complete(self) -> None:
        self.complete = True

    def requests(self, data: bytes):
        self.parser.feed_data(data)
        if self.complete:
            yield self.parser.get_method(), self.url, self.headers
            self.url, self.headers, self.complete = b"", [], False


class _H11Requests:
    """h11 parsing the requests; the responses never go through it."""

    def __init__(self) -> None:
        import h11

        self.h11 = h11
        self.conn = h11.Connection(h11.SERVER)

    def requests(self, data: bytes):
        h11 = self.h11
        self.conn.receive_data(data)
        while True:
            event = self.conn.next_event()
            if type(event) is h11.Request:
                request = event
            elif type(event) is h11.EndOfMessage:
                yield request.method, request.target, list(request.headers)
                self.conn = h11.Connection(h11.SERVER)
            else:
                return


async def _handle(stream: trio.SocketStream, parser: str) -> None:
    requests = _HttptoolsRequests() if parser == "httptools" else _H11Requests()
    sock = stream.socket
    send = _sender(sock.fileno())
    with sock:
        while True:
            try:
                data = os.read(sock.fileno(), _RECEIVE_SIZE)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(sock)
                continue
            except OSError:
                return
            if not data:
                return
            for method, target, headers in requests.requests(data):
                path, _, query = target.partition(b"?")
                scope = {
                    "type": "http",
                    "method": method.decode(),
                    "path": path.decode(),
                    "raw_path": path,
                    "query_string": query,
                    "headers": headers,
                }
                await app(scope, _receive, send)
            # The one scheduler step per response that trio-asgi takes too: it
            # lets the other connections run, and the client send its next request.
            await trio.lowlevel.cancel_shielded_checkpoint()


async def _serve(port: int, parser: str) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_tcp, lambda s: _handle(s, parser), port)
            async for _ in signals:
                nursery.cancel_scope.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--parser", choices=["httptools", "h11"], default="httptools")
    args = parser.parse_args()
    trio.run(_serve, args.port, args.parser)


if __name__ == "__main__":
    main()
