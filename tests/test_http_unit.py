"""HTTPConnection over in-memory streams, with a mock clock for the timeouts."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from tests import apps
from tests.conftest import DEFAULT_SETTINGS, MemoryConnection
from trioasgi.core.socket_io import RECEIVE_SIZE

# Every test runs once with h11 and once with httptools.
pytestmark = pytest.mark.usefixtures("http_parser")

GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


async def test_keep_alive_timeout_closes_an_idle_connection(autojump_clock) -> None:
    async with trio.open_nursery() as nursery:
        conn = MemoryConnection(apps.hello, nursery, timeout_keep_alive=7)
        await conn.send(GET)
        assert (await conn.read_response()).endswith(b"hello")
        answered_at = trio.current_time()
        assert await conn.read_all() == b""
        await conn.finished.wait()
        assert trio.current_time() - answered_at == 7


async def test_a_connection_that_says_nothing_gets_408_after_the_header_timeout(
    autojump_clock,
) -> None:
    # A new connection waits for its first request under the request header
    # timeout (not the keep-alive one), and a silent one is told why it closes.
    async with trio.open_nursery() as nursery:
        conn = MemoryConnection(apps.hello, nursery, timeout_keep_alive=5, timeout_request_header=8)
        assert (await conn.read_all()).startswith(b"HTTP/1.1 408 ")
        assert trio.current_time() == 8


async def test_slow_header_block_gets_408(autojump_clock) -> None:
    async with trio.open_nursery() as nursery:
        conn = MemoryConnection(
            apps.hello, nursery, timeout_keep_alive=5, timeout_request_header=10
        )
        await conn.send(b"GET / HTTP/1.1\r\n")
        for _ in range(3):
            await trio.sleep(2)
            await conn.send(b"X-Drip: 1\r\n")
        data = await conn.read_all()
        assert data.startswith(b"HTTP/1.1 408 ")
        assert trio.current_time() == 10


async def test_request_body_is_read_only_as_fast_as_the_app_asks() -> None:
    """A fast uploader to a slow app is held back by TCP, not buffered by us."""
    received_by_server = 0
    app_reads = trio.Event()
    first_chunk = trio.Event()

    async def app(scope, receive, send):
        message = await receive()
        assert message["more_body"]
        first_chunk.set()
        await app_reads.wait()
        while message.get("more_body"):
            message = await receive()
        await apps.start(send, 204)
        await send({"type": "http.response.body"})

    async with trio.open_nursery() as nursery:
        conn = MemoryConnection(app, nursery)
        real_receive = conn.connection.stream.receive_some

        async def counting_receive(max_bytes=None):
            nonlocal received_by_server
            data = await real_receive(max_bytes)
            received_by_server += len(data)
            return data

        conn.connection.stream.receive_some = counting_receive
        body = b"x" * (4 * 1024 * 1024)
        head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
        nursery.start_soon(conn.send, head + body)
        await first_chunk.wait()
        await trio.testing.wait_all_tasks_blocked()
        assert received_by_server <= len(head) + RECEIVE_SIZE
        app_reads.set()
        assert (await conn.read_response()).startswith(b"HTTP/1.1 204 ")
        assert received_by_server == len(head) + len(body)
        nursery.cancel_scope.cancel()


async def test_send_returns_only_when_the_client_reads() -> None:
    """With a lock-step stream, a body send() cannot complete before the client reads it."""
    sent = []

    async def app(scope, receive, send):
        await apps.start(send, 200)
        for i in range(3):
            await send({"type": "http.response.body", "body": b"chunk", "more_body": True})
            sent.append(i)
        await send({"type": "http.response.body"})

    client, server_stream = trio.testing.lockstep_stream_pair()
    from trioasgi import Config
    from trioasgi.http11.connection import HTTPConnection
    from trioasgi.serving.context import ServerContext

    connection = HTTPConnection(
        server_stream,
        ServerContext(app=app, config=Config(**DEFAULT_SETTINGS)),
        client=None,
        server=None,
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(connection.run)
        await client.send_all(GET)
        await trio.testing.wait_all_tasks_blocked()
        assert sent == []  # the first chunk is still waiting for the client
        await client.receive_some(65536)
        await trio.testing.wait_all_tasks_blocked()
        assert sent == [0]
        nursery.cancel_scope.cancel()


async def test_pipelined_request_waits_while_a_response_is_pending() -> None:
    reads = 0
    release = trio.Event()
    served = []

    async def app(scope, receive, send):
        served.append(scope["path"])
        if scope["path"] == "/first":
            await release.wait()
        await apps.hello(scope, receive, send)

    async with trio.open_nursery() as nursery:
        conn = MemoryConnection(app, nursery)
        real_receive = conn.connection.stream.receive_some

        async def counting_receive(max_bytes=None):
            nonlocal reads
            reads += 1
            return await real_receive(max_bytes)

        conn.connection.stream.receive_some = counting_receive
        await conn.send(
            b"GET /first HTTP/1.1\r\nHost: x\r\n\r\nGET /second HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        await trio.testing.wait_all_tasks_blocked()
        assert served == ["/first"]
        reads_while_pending = reads
        await trio.testing.wait_all_tasks_blocked()
        assert reads == reads_while_pending == 1
        release.set()
        await trio.testing.wait_all_tasks_blocked()
        assert served == ["/first", "/second"]
        nursery.cancel_scope.cancel()


async def test_graceful_shutdown_closes_idle_and_marks_in_flight_close() -> None:
    release = trio.Event()

    async def app(scope, receive, send):
        await release.wait()
        await apps.hello(scope, receive, send)

    async with trio.open_nursery() as nursery:
        idle = MemoryConnection(apps.hello, nursery, timeout_keep_alive=3600)
        busy = MemoryConnection(app, nursery, timeout_keep_alive=3600)
        await busy.send(GET)
        await trio.testing.wait_all_tasks_blocked()
        idle.connection.begin_shutdown()
        busy.connection.begin_shutdown()
        await idle.finished.wait()
        assert await idle.read_all() == b""
        release.set()
        data = await busy.read_all()
        assert b"connection: close" in data
        assert data.endswith(b"hello")
        await busy.finished.wait()


async def test_malformed_chunked_body_gets_400_and_the_app_sees_disconnect() -> None:
    seen = []

    async def app(scope, receive, send):
        while True:
            message = await receive()
            seen.append(message["type"])
            if message["type"] == "http.disconnect" or not message.get("more_body"):
                break

    async with trio.open_nursery() as nursery:
        conn = MemoryConnection(app, nursery)
        await conn.send(
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZZ\r\nabc\r\n"
        )
        data = await conn.read_all()
        await conn.client.aclose()
    assert data.startswith(b"HTTP/1.1 400 ")
    assert seen[-1] == "http.disconnect"


async def test_reading_a_plain_socket_directly() -> None:
    """The direct read: data, then waiting, then EOF; a closed socket reads as EOF."""
    from trioasgi.core.socket_io import read_socket as _read_socket

    left, right = trio.socket.socketpair()
    with left, right:
        await right.send(b"abc")
        assert await _read_socket(left) == b"abc"
        async with trio.open_nursery() as nursery:
            got = []

            async def reader() -> None:
                got.append(await _read_socket(left))

            nursery.start_soon(reader)
            await trio.testing.wait_all_tasks_blocked()
            assert got == []  # nothing to read: it waits
            await right.send(b"later")
        assert got == [b"later"]
        right.shutdown(trio.socket.SHUT_WR)
        assert await _read_socket(left) == b""
    assert await _read_socket(left) == b""  # closed: fileno() is -1, never a reused fd
