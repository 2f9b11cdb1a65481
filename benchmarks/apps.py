"""The one raw ASGI application that every server under test runs.

No framework: the point is to measure the server, so the app does as little as
an ASGI app can. Routes:

- ``GET /``: "Hello, world!" as text/plain with a content-length.
- ``POST /echo``: reads the whole body and sends it back.
- ``GET /stream``: 100 MiB in 64 KiB chunks, one ``http.response.body``
  each; ``GET /stream?bytes=N``: N bytes (at most 4 GiB).
- ``GET /file``: Starlette's ``FileResponse`` of the file ``BENCH_FILE``
  names (the harness makes a 1 GiB one): the server sends it itself if it
  offers ``http.response.pathsend``, otherwise Starlette reads it in 64 KiB
  chunks in worker threads.
- websocket ``/ws``: accepts, echoes text and bytes until the client leaves.
- lifespan: answers startup and shutdown with ``.complete``.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

HELLO = b"Hello, world!"
STREAM_CHUNK = 64 * 1024
STREAM_TOTAL = 100 * 1024 * 1024
STREAM_MAX = 4 * 1024 * 1024 * 1024
# One chunk object reused for every send: the app must not be what the
# streaming scenario measures.
_CHUNK = b"x" * STREAM_CHUNK

_HELLO_HEADERS = [
    (b"content-type", b"text/plain"),
    (b"content-length", str(len(HELLO)).encode()),
]


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """Dispatch on the scope type; anything unknown is ignored, as ASGI allows."""
    kind = scope["type"]
    if kind == "http":
        await _http(scope, receive, send)
    elif kind == "websocket":
        await _websocket(receive, send)
    elif kind == "lifespan":
        await _lifespan(receive, send)


async def _http(scope: Scope, receive: Receive, send: Send) -> None:
    method, path = scope["method"], scope["path"]
    if path == "/" and method == "GET":
        await send({"type": "http.response.start", "status": 200, "headers": _HELLO_HEADERS})
        await send({"type": "http.response.body", "body": HELLO})
    elif path == "/echo" and method == "POST":
        await _echo(receive, send)
    elif path == "/stream" and method == "GET":
        await _stream(send, _stream_size(scope["query_string"]))
    elif path == "/file" and method == "GET" and os.environ.get("BENCH_FILE"):
        # Imported here: every other route runs without Starlette installed.
        from starlette.responses import FileResponse

        await FileResponse(os.environ["BENCH_FILE"])(scope, receive, send)
    else:
        await _plain(send, 404, b"Not Found")


async def _echo(receive: Receive, send: Send) -> None:
    parts: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(parts)
    headers = [
        (b"content-type", b"application/octet-stream"),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _stream_size(query: bytes) -> int:
    """``bytes=N`` from the query string, else :data:`STREAM_TOTAL`."""
    name, _, value = query.partition(b"=")
    if name == b"bytes" and value.isdigit() and int(value) <= STREAM_MAX:
        return int(value)
    return STREAM_TOTAL


async def _stream(send: Send, total: int) -> None:
    # A content-length keeps chunked framing out of the comparison: every server
    # then writes the same bytes, and the client knows where the body ends.
    headers = [
        (b"content-type", b"application/octet-stream"),
        (b"content-length", str(total).encode()),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    chunks, rest = divmod(total, STREAM_CHUNK)
    for i in range(chunks):
        more = i < chunks - 1 or rest > 0
        await send({"type": "http.response.body", "body": _CHUNK, "more_body": more})
    if rest or not chunks:
        await send({"type": "http.response.body", "body": _CHUNK[:rest]})


async def _plain(send: Send, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _websocket(receive: Receive, send: Send) -> None:
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message.get("bytes") or b""})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
