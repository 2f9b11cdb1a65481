"""Long bodies: fewer yields per response byte, fewer receive() calls per upload.

A yield is a turn of trio's loop and an ``epoll_wait``: once per 64 KiB
chunk it cost more than the write itself, and capped an app-streamed
download at a third of uvicorn's speed; a 64 KiB upload cut in two by the
read of its head cost the app a second ``receive()`` (docs/performance-notes.md,
round 8). Counted, not timed: the writes that ask to yield, the messages.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest
import trio

from tests.conftest import MemoryConnection, read_until_closed, socket_stream_pair
from trioasgi.core.socket_io import RECEIVE_SIZE
from trioasgi.http11 import cycle as cycle_module

CHUNK = 64 * 1024
CHUNKS = 64  # 4 MiB


async def streaming_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    headers = [(b"content-length", str(CHUNK * CHUNKS).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    body = b"x" * CHUNK
    for i in range(CHUNKS):
        await send({"type": "http.response.body", "body": body, "more_body": i < CHUNKS - 1})


async def test_streamed_body_yields_per_stream_yield_bytes(
    nursery: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    schedules: list[bool] = []
    real_write = cycle_module.write_socket
    real_write_pair = cycle_module.write_socket_pair

    async def recording_write(sock: Any, data: bytes, *, schedule: bool = True) -> None:
        schedules.append(schedule)
        await real_write(sock, data, schedule=schedule)

    async def recording_write_pair(sock: Any, head: bytes, body: bytes, *, schedule: bool) -> None:
        schedules.append(schedule)
        await real_write_pair(sock, head, body, schedule=schedule)

    monkeypatch.setattr(cycle_module, "write_socket", recording_write)
    monkeypatch.setattr(cycle_module, "write_socket_pair", recording_write_pair)
    conn = MemoryConnection(streaming_app, nursery, socket_stream_pair)
    await conn.send(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data = await read_until_closed(conn.client, limit=CHUNK * CHUNKS * 2)
    assert data.endswith(b"x" * CHUNK) and data.count(b"x") == CHUNK * CHUNKS
    assert len(schedules) == CHUNKS
    assert schedules[-1] is False  # the last write leaves its yield to the connection
    expected = CHUNK * CHUNKS // cycle_module.STREAM_YIELD_BYTES
    assert expected - 1 <= sum(schedules) <= expected


def _roomy_socket_stream_pair() -> tuple[trio.SocketStream, trio.SocketStream]:
    """A socket pair whose buffers hold a whole upload: it is all there before the server reads."""
    client, server = socket_stream_pair()
    for stream in (client, server):
        stream.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * RECEIVE_SIZE)
        stream.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * RECEIVE_SIZE)
    return client, server


async def test_upload_cut_by_the_head_read_is_one_message(nursery: Any) -> None:
    """A body of one read's size after its head takes two reads; its tail, already there,
    joins the first."""
    messages: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            messages.append(message)
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body"})

    body = bytes(range(256)) * (RECEIVE_SIZE // 256)
    head = b"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % len(
        body
    )
    conn = MemoryConnection(app, nursery, _roomy_socket_stream_pair)
    await conn.send(head + body)  # all there before the server's first read
    data = await read_until_closed(conn.client)
    assert data.startswith(b"HTTP/1.1 204 ")
    assert [len(m["body"]) for m in messages] == [len(body)]
    assert messages[0]["body"] == body and messages[0]["more_body"] is False


async def test_write_socket_pair_writes_both_in_order_when_the_socket_fills() -> None:
    """The head and a body far larger than the socket's buffer arrive whole and in order."""
    from trioasgi.core.socket_io import write_socket_pair

    client, server = socket_stream_pair()
    head = b"HEAD" * 10
    body = bytes(range(256)) * 4096  # 1 MiB: the first writev takes only part of it
    received = bytearray()

    async def read_all() -> None:
        while len(received) < len(head) + len(body):
            received.extend(await client.receive_some(65536))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read_all)
        await write_socket_pair(server.socket, head, body)
    assert bytes(received) == head + body
    await client.aclose()
    await server.aclose()
