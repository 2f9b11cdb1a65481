"""The soak test's app: the benchmark app, with downloads of a size the client picks.

``GET /stream?kib=N`` streams N KiB in 16 KiB messages (with a
content-length), so a soak can mix many small downloads with the occasional
large one a hostile client stops reading; every other route is
``benchmarks.apps.app``'s (``/``, ``POST /echo``, websocket ``/ws``, lifespan).
"""

from __future__ import annotations

from urllib.parse import parse_qs

from .apps import Receive, Scope, Send
from .apps import app as benchmark_app

CHUNK = b"s" * (16 * 1024)
#: The largest download a request may ask for (1 GiB): bad input is refused, not obeyed.
MAX_KIB = 1024 * 1024


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "http" and scope["path"] == "/stream":
        await _stream(scope, send)
    else:
        await benchmark_app(scope, receive, send)


async def _stream(scope: Scope, send: Send) -> None:
    query = parse_qs(scope["query_string"].decode("latin-1"))
    try:
        kib = int(query.get("kib", ["64"])[0])
    except ValueError:
        kib = -1
    if not 0 <= kib <= MAX_KIB:
        body = b"kib must be a number from 0 to 1048576\n"
        headers = [(b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 400, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return
    total = kib * 1024
    headers = [
        (b"content-type", b"application/octet-stream"),
        (b"content-length", str(total).encode()),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    sent = 0
    while sent < total:
        piece = CHUNK[: total - sent]
        sent += len(piece)
        await send({"type": "http.response.body", "body": piece, "more_body": sent < total})
    if total == 0:
        await send({"type": "http.response.body", "body": b""})
