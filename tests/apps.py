"""Small ASGI apps the tests serve."""

from __future__ import annotations

import json
import os
from typing import Any

import trio


async def start(send: Any, status: int = 200, headers: list | None = None) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers or []})


async def hello(scope: dict, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return  # no lifespan support: the server runs without it
    await start(send, 200, [(b"content-type", b"text/plain"), (b"content-length", b"5")])
    await send({"type": "http.response.body", "body": b"hello"})


class HeldHello:
    """Hello world, answered only once ``release`` is set; ``started`` says a request is in."""

    def __init__(self) -> None:
        self.started = trio.Event()
        self.release = trio.Event()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        self.started.set()
        await self.release.wait()
        await hello(scope, receive, send)


class PieceByPiece:
    """A streamed response whose rest is sent only once ``client_has_first`` is set.

    ``read`` is the client's side: it reads a streamed httpx response and
    sets the event once the first piece is in.
    """

    first = b"first piece;"
    rest = [b"piece %d;" % i for i in range(20)]

    def __init__(self) -> None:
        self.client_has_first = trio.Event()

    @property
    def whole(self) -> bytes:
        return self.first + b"".join(self.rest)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await start(send, 200, [(b"content-type", b"text/plain")])
        await send({"type": "http.response.body", "body": self.first, "more_body": True})
        await self.client_has_first.wait()
        for piece in self.rest:
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    async def read(self, response: Any) -> bytes:
        received = b""
        async for chunk in response.aiter_bytes():
            received += chunk
            if len(received) >= len(self.first):
                self.client_has_first.set()
        return received


async def read_body(receive: Any) -> tuple[bytes, list[dict]]:
    """The whole request body, and every message it came in."""
    messages = []
    body = b""
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            break
        body += message["body"]
        if not message.get("more_body", False):
            break
    return body, messages


async def hello_after_body(scope: dict, receive: Any, send: Any) -> None:
    """:func:`hello` for every method, once the whole request body is read."""
    if scope["type"] != "http":
        return
    await read_body(receive)
    await hello(scope, receive, send)


async def echo(scope: dict, receive: Any, send: Any) -> None:
    """Answers with the request body, and the scope (minus bytes) as a header."""
    if scope["type"] != "http":
        return
    body, _ = await read_body(receive)
    await start(send, 200, [(b"content-length", str(len(body)).encode())])
    await send({"type": "http.response.body", "body": body})


def scope_as_json(scope: dict) -> bytes:
    def plain(value: Any) -> Any:
        if isinstance(value, bytes):
            return value.decode("latin-1")
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return json.dumps(plain(scope)).encode()


async def show_scope(scope: dict, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await read_body(receive)
    body = scope_as_json(scope)
    await start(send, 200, [(b"content-type", b"application/json")])
    await send({"type": "http.response.body", "body": body})


async def pid(scope: dict, receive: Any, send: Any) -> None:
    """Answers with the serving process's id; ``/slow`` sends its last byte after 0.5 s."""
    if scope["type"] != "http":
        return
    body = str(os.getpid()).encode()
    if scope["path"] == "/slow":
        await start(send, 200, [(b"content-length", str(len(body) + 1).encode())])
        await send({"type": "http.response.body", "body": body, "more_body": True})
        await trio.sleep(0.5)
        await send({"type": "http.response.body", "body": b"!"})
        return
    await start(send, 200, [(b"content-length", str(len(body)).encode())])
    await send({"type": "http.response.body", "body": body})
