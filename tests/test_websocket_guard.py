"""Regression guard for WebSocket echo: work per message counted, never timed.

Per small echoed message the server may take, all its tasks together, one
scheduler step on a plain socket (the app's ``receive()`` wakes with the
frame; the echo's write, which follows that yield, only checks for
cancellation) and two on any other stream (whose ``send_all`` yields too).
It spawns no task, writes once and reads once, and, on a plain socket,
enters no cancel scope. A change that brings back a reader task, a queue
hand-off, a per-message timer or scope, or a write split in two fails here
on any machine. An app that only sends still yields on every write but the
first after a read, so it cannot starve the other connections.
"""

from __future__ import annotations

import socket

import pytest
import trio
import trio.testing

import trioasgi
from tests.conftest import running_server
from tests.test_hot_path_guard import (
    ScopeCounter,
    StepCounter,
    SyscallCounter,
    channel_stream_pair,
    counting,
)
from tests.ws_apps import echo_app
from trioasgi.core.socket_io import RECEIVE_SIZE
from trioasgi.http11.connection import HTTPConnection
from trioasgi.serving.context import ServerContext
from trioasgi.websocket.io import SocketReader

#: Measured after the WebSocket work (see docs/performance-notes.md); it was 3,
#: then 2 on a plain socket too until its writes stopped yielding after a read.
MAX_TASK_STEPS_SOCKET = 1
MAX_TASK_STEPS_STREAM = 2
MESSAGES = 50

UPGRADE = (
    b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
PAYLOAD = b"hello, websocket"
MASK = b"\x11\x22\x33\x44"
#: A masked client text frame, and the server's unmasked echo of it.
FRAME = (
    bytes([0x81, 0x80 | len(PAYLOAD)])
    + MASK
    + bytes(b ^ MASK[i % 4] for i, b in enumerate(PAYLOAD))
)
ECHO = bytes([0x81, len(PAYLOAD)]) + PAYLOAD


async def _upgrade(client: trio.abc.Stream) -> None:
    await client.send_all(UPGRADE)
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = await client.receive_some(65536)
        assert chunk, head
        head += chunk
    assert head.startswith(b"HTTP/1.1 101 "), head


async def _echo(client: trio.abc.Stream) -> None:
    await client.send_all(FRAME)
    echo = b""
    while len(echo) < len(ECHO):
        chunk = await client.receive_some(65536)
        assert chunk, echo
        echo += chunk
    assert echo == ECHO


def _not(task: trio.lowlevel.Task):
    return lambda other: other is not task


async def test_echo_over_memory_streams() -> None:
    client, stream = channel_stream_pair()
    config = trioasgi.Config(access_log=False, ws_per_message_deflate=False)
    connection = HTTPConnection(
        stream, ServerContext(app=echo_app(), config=config), client=None, server=None
    )
    counter = StepCounter(_not(trio.lowlevel.current_task()))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(connection.run)
        await _upgrade(client)
        await _echo(client)  # warm-up
        await trio.testing.wait_all_tasks_blocked()
        sends, receives = stream.sends, stream.receives
        async with counting(counter):
            for _ in range(MESSAGES):
                await _echo(client)
        nursery.cancel_scope.cancel()
    assert counter.steps <= MAX_TASK_STEPS_STREAM * MESSAGES
    assert counter.spawns == 0
    assert stream.sends - sends == MESSAGES
    assert stream.receives - receives == MESSAGES


async def test_echo_over_a_loopback_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    scopes = ScopeCounter(monkeypatch)
    syscalls = SyscallCounter(monkeypatch)
    counter = StepCounter(_not(trio.lowlevel.current_task()))
    async with running_server(echo_app(), access_log=False) as server:
        client = await server.connect()
        async with client:
            await _upgrade(client)
            await _echo(client)
            async with counting(counter, scopes, syscalls):
                for _ in range(MESSAGES):
                    await _echo(client)
    assert counter.steps <= MAX_TASK_STEPS_SOCKET * MESSAGES
    assert counter.spawns == 0
    assert scopes.entered == 0
    # One write per echo, one read: the client sends only once answered, so
    # the server waits for its frame before reading instead of finding nothing.
    assert syscalls.writes == MESSAGES
    assert syscalls.reads == syscalls.reads_with_data == MESSAGES


async def test_an_app_that_only_sends_yields_on_every_write_but_the_first() -> None:
    """Writes skip their yield only right after a read: a sending loop cannot hog the server."""
    counter = StepCounter(_not(trio.lowlevel.current_task()))
    # The client has every message before the app resumes from its last
    # yields: it waits for the app to stop counting, not for the bytes.
    counted = trio.Event()

    async def sender(scope, receive, send) -> None:
        if scope["type"] != "websocket":
            return
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        await receive()  # one message: the next write follows a read
        counter.active = True
        for _ in range(MESSAGES):
            await send({"type": "websocket.send", "bytes": PAYLOAD})
        counter.active = False
        counted.set()
        await send({"type": "websocket.close"})

    async with running_server(sender, access_log=False) as server:
        client = await server.connect()
        async with client:
            await _upgrade(client)
            trio.lowlevel.add_instrument(counter)
            await client.send_all(FRAME)
            received = b""
            while received.count(PAYLOAD) < MESSAGES:
                chunk = await client.receive_some(65536)
                assert chunk, received
                received += chunk
            await counted.wait()
            trio.lowlevel.remove_instrument(counter)
    # The first write follows the read without a yield; the others yield once each.
    assert counter.steps >= MESSAGES - 1


async def test_the_reader_waits_before_reading_once_it_found_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A failed read is a syscall and an exception: after one, wait first; bulk reads first."""
    syscalls = SyscallCounter(monkeypatch)
    waits = 0
    wait_readable = trio.lowlevel.wait_readable

    async def counting_wait(sock) -> None:
        nonlocal waits
        waits += 1
        await wait_readable(sock)

    monkeypatch.setattr(trio.lowlevel, "wait_readable", counting_wait)
    server_sock, client_sock = socket.socketpair()  # the client's end stays blocking
    # Room for a whole read and more, so the bulk send below need not wait for a reader.
    client_sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * RECEIVE_SIZE)
    with server_sock, client_sock:
        reader = SocketReader(trio.SocketStream(trio.socket.from_stdlib_socket(server_sock)), b"")
        syscalls.active = True

        async def read_after_send(data: bytes) -> bytes | None:
            """A read that starts before ``data`` is sent."""
            got: list[bytes | None] = []
            async with trio.open_nursery() as nursery:
                nursery.start_soon(lambda: _append(got, reader.read()))
                await trio.testing.wait_all_tasks_blocked()
                client_sock.sendall(data)
            return got[0]

        assert await read_after_send(b"one") == b"one"
        assert (syscalls.reads, syscalls.reads_with_data, waits) == (2, 1, 1)  # nothing; wait
        assert await read_after_send(b"two") == b"two"
        assert (syscalls.reads, syscalls.reads_with_data, waits) == (3, 2, 2)  # waited first
        client_sock.sendall(bytes(RECEIVE_SIZE + 10))  # all there before we read: bulk
        assert len(await reader.read() or b"") == RECEIVE_SIZE  # waited first, a full buffer
        assert (syscalls.reads, waits) == (4, 3)
        assert await reader.read() == bytes(10)  # so this one reads first, and finds it
        assert (syscalls.reads, syscalls.reads_with_data, waits) == (5, 4, 3)


async def _append(into: list, awaitable) -> None:
    into.append(await awaitable)
