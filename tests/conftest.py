"""Shared fixtures: a real server on 127.0.0.1 port 0, and a connection over memory streams."""

from __future__ import annotations

import contextlib
import logging
import socket
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import trio
import trio.testing

import trioasgi

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup
from trioasgi.asgi.request import RequestHead
from trioasgi.http11.connection import HTTPConnection
from trioasgi.http11.parsers import httptools_available
from trioasgi.http11.strict import FieldFacts, check_request
from trioasgi.serving.context import ServerContext

#: The ``http`` setting of servers the tests start without naming one; the
#: ``http_parser`` fixture switches it so a test module runs under each parser.
DEFAULT_SETTINGS: dict[str, Any] = {"http": "auto"}

PARSERS = [
    pytest.param("h11", id="h11"),
    pytest.param(
        "httptools",
        id="httptools",
        marks=pytest.mark.skipif(
            not httptools_available(), reason="httptools is not installed (pip install httptools)"
        ),
    ),
]


@pytest.fixture(params=PARSERS)
def http_parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test once per HTTP parser (``pytestmark = usefixtures("http_parser")``)."""
    monkeypatch.setitem(DEFAULT_SETTINGS, "http", request.param)
    return request.param


class RunningServer:
    """A server started with ``serve()`` in a test's nursery."""

    def __init__(self, host: str, port: int, cancel_scope: trio.CancelScope) -> None:
        self.host = host
        self.port = port
        self.url = f"http://{host}:{port}"
        self.cancel_scope = cancel_scope
        self.stopped = trio.Event()
        self.tasks: TaskWatch | None = None
        self.client_streams: list[trio.SocketStream] = []

    async def connect(self) -> trio.SocketStream:
        """A raw client connection; any the test leaves open are closed when the server stops."""
        stream = await trio.open_tcp_stream(self.host, self.port)
        self.client_streams.append(stream)
        return stream

    async def close_client_streams(self) -> None:
        for stream in self.client_streams:
            await trio.aclose_forcefully(stream)

    def stop(self) -> None:
        """Start the graceful shutdown, as cancelling serve()'s caller does."""
        self.cancel_scope.cancel()


class TaskWatch(trio.abc.Instrument):
    """Tracks the tasks spawned under one task (the server's), and system tasks.

    Structured concurrency means ``serve()`` cannot return while a task in
    its tree is alive; what could leak is a task spawned somewhere else (a
    system task), or a connection task that never ends while the server idles.
    """

    def __init__(self) -> None:
        self.root: trio.lowlevel.Task | None = None
        self.live: set[trio.lowlevel.Task] = set()
        self.spawned = 0

    def task_spawned(self, task: trio.lowlevel.Task) -> None:
        if self.root is not None and self._belongs(task):
            self.live.add(task)
            self.spawned += 1

    def task_exited(self, task: trio.lowlevel.Task) -> None:
        self.live.discard(task)

    def _belongs(self, task: trio.lowlevel.Task) -> bool:
        nursery = task.parent_nursery
        if nursery is None or nursery.parent_task is trio.lowlevel.current_root_task():
            return True  # a system task
        parent: trio.lowlevel.Task | None = nursery.parent_task
        while parent is not None:
            if parent is self.root:
                return True
            parent = parent.parent_nursery.parent_task if parent.parent_nursery else None
        return False

    def shape(self) -> list[str]:
        """The names of the live tasks, sorted: the server's task tree, as a multiset."""
        return sorted(task.name for task in self.live)


async def wait_for_shape(watch: TaskWatch, expected: list[str], timeout: float = 5) -> None:
    """Wait until the server's task tree has ``expected`` shape (connections close on their own
    schedule after the client leaves: there is no event to wait for)."""
    with trio.move_on_after(timeout):
        while watch.shape() != expected:
            await trio.sleep(0.005)
    assert watch.shape() == expected, "the server did not return to its idle task tree"


@contextlib.asynccontextmanager
async def running_server(
    app: Callable[..., Any], *, expect_idle: bool = True, **settings: Any
) -> AsyncIterator[RunningServer]:
    """Serve ``app`` on a free loopback port for the body of the ``async with``.

    With ``expect_idle`` (the default) the server must be back to the task
    tree it had when it started listening once the body is done (every
    connection closed), and every task it spawned must have exited once
    ``serve()`` returns.
    """
    settings.setdefault("port", 0)
    for name, value in DEFAULT_SETTINGS.items():
        settings.setdefault(name, value)
    config = trioasgi.Config(**settings)
    with collapse_single_exception_groups():
        async with _serve_in_nursery(app, config, expect_idle=expect_idle) as server:
            yield server


@contextlib.contextmanager
def collapse_single_exception_groups():
    """Raise the one exception a nursery wrapped, so tests can match it with pytest.raises."""
    try:
        yield
    except BaseExceptionGroup as group:
        inner: BaseException = group
        while isinstance(inner, BaseExceptionGroup) and len(inner.exceptions) == 1:
            inner = inner.exceptions[0]
        if inner is group:
            raise
        raise inner from None


@contextlib.asynccontextmanager
async def _serve_in_nursery(app: Callable[..., Any], config: trioasgi.Config, *, expect_idle: bool):
    watch = TaskWatch()
    trio.lowlevel.add_instrument(watch)
    try:
        async with trio.open_nursery() as nursery:
            server_scope = trio.CancelScope()
            server: RunningServer | None = None

            async def run(task_status: trio.TaskStatus[list[tuple[str, int]]]) -> None:
                watch.root = trio.lowlevel.current_task()
                with server_scope:
                    await trioasgi.serve(app, config, task_status=task_status)
                assert server is not None
                server.stopped.set()

            addresses = await nursery.start(run)
            host, port = addresses[0]
            server = RunningServer(host, port, server_scope)
            server.tasks = watch
            # Let the lifespan task reach its wait before taking the idle shape.
            await trio.testing.wait_all_tasks_blocked()
            idle_shape = watch.shape()
            yield server
            await server.close_client_streams()
            if expect_idle and not server_scope.cancel_called:  # (not stopped by the test)
                await wait_for_shape(watch, idle_shape)
            server.stop()
        assert not watch.live, f"tasks left after serve() returned: {watch.shape()}"
    finally:
        trio.lowlevel.remove_instrument(watch)


@pytest.fixture
def server_factory() -> Callable[..., contextlib.AbstractAsyncContextManager[RunningServer]]:
    return running_server


async def read_until_closed(stream: trio.abc.ReceiveStream, limit: int = 10_000_000) -> bytes:
    """Everything the peer sends until it closes (or resets) the connection."""
    chunks = []
    size = 0
    while size < limit:
        try:
            chunk = await stream.receive_some(65536)
        except trio.BrokenResourceError:
            break
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def accepted_fields(head: RequestHead) -> FieldFacts:
    """The facts of a request head that a server with the default settings accepts."""
    # The limits such a server checks, made as it makes them.
    limits = ServerContext(app=lambda *_: None, config=trioasgi.Config()).request_limits
    fields = check_request(head.method, head.target, head.http_version, head.headers, limits)
    assert type(fields) is FieldFacts
    return fields


def accept_next_request(parser: Any) -> RequestHead:
    """The parser's next event, a request head, accepted as the connection would accept it."""
    head = parser.next_event()
    assert type(head) is RequestHead
    parser.begin_response(head, accepted_fields(head))
    return head


def socket_stream_pair() -> tuple[trio.SocketStream, trio.SocketStream]:
    """A connected pair of real sockets: the server side takes the plain-socket paths."""
    client, server = socket.socketpair()
    return (
        trio.SocketStream(trio.socket.from_stdlib_socket(client)),
        trio.SocketStream(trio.socket.from_stdlib_socket(server)),
    )


async def exchange(app: Callable[..., Any], request: bytes, **settings: Any) -> bytes:
    """Send ``request`` to a fresh :class:`MemoryConnection`; all it answers until it closes.

    Bounded in virtual seconds; the connection task must have ended too.
    """
    async with trio.open_nursery() as nursery:
        conn = MemoryConnection(app, nursery, **settings)
        await conn.send(request)
        return await conn.read_to_the_end(within=100)


class MemoryConnection:
    """An :class:`HTTPConnection` served over an in-memory stream pair, for unit tests."""

    def __init__(
        self,
        app: Callable[..., Any],
        nursery: trio.Nursery,
        pair: Callable[[], tuple[Any, Any]] = trio.testing.memory_stream_pair,
        **settings: Any,
    ) -> None:
        self.client, server_stream = pair()
        for name, value in DEFAULT_SETTINGS.items():
            settings.setdefault(name, value)
        ctx = ServerContext(app=app, config=trioasgi.Config(**settings))
        self.connection = HTTPConnection(
            server_stream, ctx, client=("127.0.0.1", 50000), server=("127.0.0.1", 8000)
        )
        self.finished = trio.Event()
        nursery.start_soon(self._run)

    async def _run(self) -> None:
        try:
            await self.connection.run()
            if self.connection.handover is not None:
                # HTTP/2 (a prior-knowledge preface): the server would take the
                # stream over; here nobody does, so it closes as the test expects.
                await trio.aclose_forcefully(self.connection.stream)
        finally:
            self.finished.set()

    async def send(self, data: bytes) -> None:
        await self.client.send_all(data)

    async def deliver(self, pieces: list[bytes], pauses: list[float], fin: bool) -> None:
        """Send ``pieces`` after their ``pauses``, then EOF if ``fin``; a closed server is fine."""
        try:
            for piece, pause in zip(pieces, pauses, strict=True):
                await trio.sleep(pause)
                await self.send(piece)
            if fin:
                await self.client.send_eof()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    async def exchange(
        self, nursery: trio.Nursery, pieces: list[bytes], pauses: list[float], fin: bool
    ) -> bytes:
        """:meth:`deliver` in ``nursery`` while reading all the server sends until it closes.

        Bounded in virtual seconds far past every timeout and pause: only a
        hang reaches the bound.
        """
        nursery.start_soon(self.deliver, pieces, pauses, fin)
        return await self.read_to_the_end(within=10_000)

    async def read_to_the_end(self, *, within: float) -> bytes:
        """All the server sends until it closes; then the connection task must end too.

        ``within`` virtual seconds, or the test fails (a hang, not a result).
        """
        with trio.fail_after(within):
            data = await self.read_all()
            await self.client.aclose()
            await self.finished.wait()
        return data

    async def read_response(self) -> bytes:
        """Bytes up to the end of one response's head plus whatever body came with it."""
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = await self.client.receive_some(65536)
            if not chunk:
                break
            data += chunk
        return data

    async def read_all(self) -> bytes:
        return await read_until_closed(self.client)


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--fuzz-examples",
        type=int,
        default=None,
        metavar="N",
        help="run the connection fuzzer with N random examples instead of the fixed default set",
    )


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """The server's loggers as they were: for a test that configures logging as the CLI does."""
    names = ("trioasgi", "trioasgi.error", "trioasgi.access")
    loggers = [logging.getLogger(name) for name in names]
    saved = [(lg.handlers[:], lg.level, lg.propagate, lg.disabled) for lg in loggers]
    yield
    for lg, (handlers, level, propagate, disabled) in zip(loggers, saved, strict=True):
        lg.handlers[:], lg.level, lg.propagate, lg.disabled = handlers, level, propagate, disabled
