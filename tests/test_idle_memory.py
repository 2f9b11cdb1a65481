"""An idle keep-alive connection holds little: no parser, a short stack, shared addresses.

Unit tests over a real socket pair (the idle wait hands the parser in only
on a plain socket) on a virtual clock, the parser pool on its own, and a
machine-independent guard: the bytes a server allocates per idle keep-alive
connection, counted with ``tracemalloc`` rather than read from the RSS.
``python -m benchmarks.profile_idle_memory`` shows where those bytes go.
"""

from __future__ import annotations

import gc
import sys
import tracemalloc

import pytest
import trio
import trio.testing

from tests import apps
from tests.conftest import (
    MemoryConnection,
    accept_next_request,
    running_server,
    socket_stream_pair,
)
from trioasgi import Config
from trioasgi.http11.connection import HTTPConnection
from trioasgi.http11.parser_pool import MAX_IDLE_PARSERS, ParserPool
from trioasgi.http11.parsers import new_parser
from trioasgi.serving.context import ServerContext

pytestmark = pytest.mark.usefixtures("http_parser")

GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


async def path_app(scope, receive, send) -> None:
    """Answers with the request's path: shows which request a parser handed over."""
    body = scope["path"].encode()
    await apps.start(send, 200, [(b"content-length", str(len(body)).encode())])
    await send({"type": "http.response.body", "body": body})


# -- the connection hands its parser in while it waits --------------------------


async def test_an_idle_connection_holds_no_parser(autojump_clock) -> None:
    async with trio.open_nursery() as nursery:
        conn = MemoryConnection(apps.hello, nursery, socket_stream_pair, timeout_keep_alive=60)
        pool = conn.connection.ctx.parsers
        for _ in range(3):
            await conn.send(GET)
            assert (await conn.read_response()).endswith(b"hello")
            await trio.testing.wait_all_tasks_blocked()
            assert conn.connection.h11 is None
            assert len(pool) == 1
        nursery.cancel_scope.cancel()


async def test_a_parser_holding_part_of_a_request_stays_with_its_connection(
    autojump_clock,
) -> None:
    async with trio.open_nursery() as nursery:
        conn = MemoryConnection(path_app, nursery, socket_stream_pair, timeout_keep_alive=60)
        await conn.send(GET.replace(b"/", b"/first", 1) + b"GET /sec")
        assert (await conn.read_response()).endswith(b"/first")
        await trio.testing.wait_all_tasks_blocked()
        assert conn.connection.h11 is not None
        assert len(conn.connection.ctx.parsers) == 0
        await conn.send(b"ond HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await conn.read_response()).endswith(b"/second")
        nursery.cancel_scope.cancel()


async def test_a_parser_serves_the_next_connection_with_nothing_of_the_last(
    autojump_clock, http_parser: str
) -> None:
    ctx = ServerContext(app=path_app, config=Config(http=http_parser, timeout_keep_alive=60))
    (first, first_server), (second, second_server) = socket_stream_pair(), socket_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(HTTPConnection(first_server, ctx, client=None, server=None).run)
        await first.send_all(b"GET /first HTTP/1.1\r\nHost: x\r\nX-Private: 1\r\n\r\n")
        assert (await first.receive_some()).endswith(b"/first")
        await trio.testing.wait_all_tasks_blocked()
        (parser,) = ctx.parsers._idle
        second_connection = HTTPConnection(second_server, ctx, client=None, server=None)
        assert second_connection.h11 is parser  # the first connection's
        nursery.start_soon(second_connection.run)
        await second.send_all(b"GET /second HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await second.receive_some()).endswith(b"/second")
        await first.send_all(GET.replace(b"/", b"/third", 1))
        assert (await first.receive_some()).endswith(b"/third")
        nursery.cancel_scope.cancel()


async def parked_connection(
    nursery: trio.Nursery, *, timeout_keep_alive: float = 60
) -> MemoryConnection:
    """A connection over real sockets that has answered one request and waits for the next."""
    conn = MemoryConnection(
        apps.hello, nursery, socket_stream_pair, timeout_keep_alive=timeout_keep_alive
    )
    await conn.send(GET)
    await conn.read_response()
    return conn


async def test_a_parked_connection_times_out_quietly(autojump_clock) -> None:
    async with trio.open_nursery() as nursery:
        conn = await parked_connection(nursery, timeout_keep_alive=4)
        start = trio.current_time()
        assert await conn.read_all() == b""
    assert trio.current_time() - start == pytest.approx(4)
    assert conn.finished.is_set()


async def test_a_parked_connection_closes_at_once_on_shutdown(autojump_clock) -> None:
    async with trio.open_nursery() as nursery:
        conn = await parked_connection(nursery)
        await trio.testing.wait_all_tasks_blocked()
        start = trio.current_time()
        conn.connection.begin_shutdown()
        assert await conn.read_all() == b""
    assert trio.current_time() == start


async def test_a_parked_connection_ends_when_the_client_leaves(autojump_clock) -> None:
    async with trio.open_nursery() as nursery:
        conn = await parked_connection(nursery)
        await trio.testing.wait_all_tasks_blocked()
        await conn.client.send_eof()
        start = trio.current_time()
        assert await conn.read_all() == b""
        await conn.finished.wait()
    assert trio.current_time() == start


# -- the pool -------------------------------------------------------------------


def _pool(http_parser: str) -> ParserPool:
    return ParserPool(Config(http=http_parser), http_parser)


def test_the_pool_takes_only_a_parser_that_holds_nothing(http_parser: str) -> None:
    pool = _pool(http_parser)
    parser = pool.take()
    parser.receive_data(b"GET / HT")
    assert not pool.hand_in(parser)
    closed = pool.take()
    closed.receive_data(b"")
    assert not pool.hand_in(closed)
    assert len(pool) == 0
    fresh = pool.take()
    assert pool.hand_in(fresh)
    assert pool.take() is fresh
    assert pool.take() is not fresh


def test_a_parser_back_from_a_request_parses_the_next_as_new(http_parser: str) -> None:
    pool = _pool(http_parser)
    parser = pool.take()
    parser.receive_data(b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n")
    assert accept_next_request(parser).target == b"/a"
    assert type(parser.next_event()).__name__ == "EndOfMessage"
    assert not pool.hand_in(parser)  # its response is still to come
    parser.send_response(200, [(b"content-length", b"0")], b"")
    parser.send_body(b"", True)
    parser.start_next_cycle()
    assert pool.hand_in(parser)
    again = pool.take()
    assert again is parser
    again.receive_data(b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n")
    request = again.next_event()
    assert request.target == b"/b"
    assert (b"connection", b"keep-alive") not in list(request.headers)


def test_the_pool_keeps_a_bounded_number(http_parser: str) -> None:
    pool = _pool(http_parser)
    config = Config(http=http_parser)
    parsers = [new_parser(config, http_parser) for _ in range(MAX_IDLE_PARSERS + 5)]
    assert all(pool.hand_in(parser) for parser in parsers)
    assert len(pool) == MAX_IDLE_PARSERS


# -- the guard --------------------------------------------------------------------

CONNECTIONS = 200
#: Bytes allocated per idle keep-alive connection (tracemalloc), h11 / httptools.
#: CPython 3.11 to 3.13: 7,650 / 7,860 before the idle-memory work, ~4,950 /
#: 5,000 after. CPython 3.10 allocates each coroutine's frame on its own:
#: 11,750 / 11,950 before, 8,000 / 8,100 after. See docs/performance-notes.md.
MAX_BYTES_PER_IDLE_CONNECTION = 6_400 if sys.version_info >= (3, 11) else 9_600


async def test_an_idle_keep_alive_connection_allocates_little(http_parser: str) -> None:
    async with running_server(apps.hello, access_log=False, timeout_keep_alive=600) as server:
        # Client sockets exist before the count starts; what they allocate
        # later (connect, send, receive) is temporary.
        clients = [trio.socket.socket() for _ in range(CONNECTIONS + 1)]
        warm_up = clients.pop()
        await _request(warm_up, server.port)  # code paths, pools: not per connection
        warm_up.close()
        await trio.testing.wait_all_tasks_blocked()
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.take_snapshot()
            for client in clients:
                await _request(client, server.port)
            await trio.testing.wait_all_tasks_blocked()
            gc.collect()
            after = tracemalloc.take_snapshot()
        finally:
            tracemalloc.stop()
        idle = sum("handle_connection" in name for name in server.tasks.shape())
        allocated = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
        for client in clients:
            client.close()
    per_connection = allocated / CONNECTIONS
    print(f"\n[idle memory] {http_parser}: {per_connection:.0f} B per idle connection")
    assert idle == CONNECTIONS
    assert 0 < per_connection <= MAX_BYTES_PER_IDLE_CONNECTION


async def _request(client: trio.socket.SocketType, port: int) -> None:
    await client.connect(("127.0.0.1", port))
    await client.send(GET)
    response = b""
    with trio.fail_after(10):
        while not response.endswith(b"hello"):
            chunk = await client.recv(4096)
            assert chunk
            response += chunk
