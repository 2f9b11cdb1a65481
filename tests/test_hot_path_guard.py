"""Regression guard for the keep-alive hello-world path: work counted, never timed.

Per keep-alive request, the connection task may take at most
``MAX_TASK_STEPS`` scheduler steps (one to wake with the request, one at the
checkpoint of the single ``send_all``), spawn no task, enter no cancel scope
(the connection's timeouts move one scope's deadline), write once and read
once. A change that adds a task switch, a per-request task, timer or cancel
scope, or splits a response into several writes fails here on any machine.

Two checks keep the one yield per response where it belongs: pipelined
requests still take a step each (a client that pipelines must not hold the
connection's task), and that step ends on the connection's short stack,
not deep inside the app's middleware.
"""

from __future__ import annotations

import contextlib
import os
import types
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
import trio.testing

import trioasgi
from examples.hello import app as hello
from tests.conftest import running_server
from trioasgi.core import socket_io
from trioasgi.http11.connection import HTTPConnection
from trioasgi.serving.context import ServerContext

#: Measured after the hot-path work (see docs/performance-notes.md).
MAX_TASK_STEPS = 2
REQUESTS = 50

REQUEST = b"GET / HTTP/1.1\r\nHost: localhost\r\nUser-Agent: guard\r\nAccept: */*\r\n\r\n"

pytestmark = pytest.mark.usefixtures("http_parser")


class StepCounter(trio.abc.Instrument):
    """Counts the scheduler steps of the tasks ``watch`` accepts, and all spawns."""

    def __init__(self, watch) -> None:
        self.watch = watch
        self.steps = 0
        self.spawns = 0
        self.active = False

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if self.active and self.watch(task):
            self.steps += 1

    def task_spawned(self, task: trio.lowlevel.Task) -> None:
        if self.active:
            self.spawns += 1


class ChannelStream(trio.abc.Stream):
    """One end of an in-memory byte stream that behaves like a socket, and counts its calls.

    Like ``trio.SocketStream``: ``receive_some`` takes one scheduler step
    (the wake-up, or a checkpoint if data is already there), ``send_all``
    one checkpoint. (``trio.testing.memory_stream_pair`` adds checkpoints
    of its own, which would hide the server's.)
    """

    def __init__(self, outgoing: trio.MemorySendChannel, incoming: trio.MemoryReceiveChannel):
        self.outgoing = outgoing
        self.incoming = incoming
        self.sends = 0
        self.receives = 0

    async def send_all(self, data) -> None:
        self.sends += 1
        self.outgoing.send_nowait(bytes(data))
        await trio.lowlevel.checkpoint()

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def receive_some(self, max_bytes=None) -> bytes:
        self.receives += 1
        try:
            return await self.incoming.receive()
        except trio.EndOfChannel:
            return b""

    async def send_eof(self) -> None:
        await self.outgoing.aclose()

    async def aclose(self) -> None:
        await self.outgoing.aclose()
        await self.incoming.aclose()


def channel_stream_pair() -> tuple[ChannelStream, ChannelStream]:
    to_server, from_client = trio.open_memory_channel[bytes](float("inf"))
    to_client, from_server = trio.open_memory_channel[bytes](float("inf"))
    return ChannelStream(to_server, from_server), ChannelStream(to_client, from_client)


async def _one_request(client: trio.abc.Stream) -> None:
    await client.send_all(REQUEST)
    response = b""
    while not response.endswith(b"Hello, world!\n"):
        chunk = await client.receive_some(65536)
        assert chunk, response
        response += chunk
    assert response.startswith(b"HTTP/1.1 200 OK\r\n")
    assert response.count(b"HTTP/1.1 ") == 1


@contextlib.asynccontextmanager
async def counting(instrument: trio.abc.Instrument, *others: Any) -> AsyncIterator[None]:
    """Count with ``instrument`` and ``others`` (all with an ``active`` flag) over the body.

    Counting starts and stops at moments when every task is blocked, so it
    covers exactly the work the body causes.
    """
    await trio.testing.wait_all_tasks_blocked()
    trio.lowlevel.add_instrument(instrument)
    counters = (instrument, *others)
    for counter in counters:
        counter.active = True
    try:
        yield
        await trio.testing.wait_all_tasks_blocked()
    finally:
        for counter in counters:
            counter.active = False
        trio.lowlevel.remove_instrument(instrument)


@contextlib.asynccontextmanager
async def _keep_alive_client(app=hello) -> AsyncIterator[trio.abc.Stream]:
    """A connection to a fresh server, its first request (not typical) answered."""
    async with running_server(app, access_log=False) as server:
        client = await server.connect()
        async with client:
            await _one_request(client)
            yield client


def _connection_task(task: trio.lowlevel.Task) -> bool:
    return task.name.endswith("_handle_connection")


class ScopeCounter:
    """Counts the cancel scopes entered while it is active."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.entered = 0
        self.active = False
        enter = trio.CancelScope.__enter__

        def counting_enter(scope: trio.CancelScope) -> trio.CancelScope:
            if self.active:
                self.entered += 1
            return enter(scope)

        monkeypatch.setattr(trio.CancelScope, "__enter__", counting_enter)


async def test_keep_alive_request_over_memory_streams(
    http_parser: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    scopes = ScopeCounter(monkeypatch)
    client, stream = channel_stream_pair()
    config = trioasgi.Config(http=http_parser, access_log=False)
    connection = HTTPConnection(
        stream, ServerContext(app=hello, config=config), client=None, server=None
    )
    counter = StepCounter(lambda task: task.name.endswith("HTTPConnection.run"))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(connection.run)
        await _one_request(client)  # warm-up: the first request is not typical
        await trio.testing.wait_all_tasks_blocked()  # the server waits for the next one
        sends, receives = stream.sends, stream.receives
        async with counting(counter, scopes):
            for _ in range(REQUESTS):
                await _one_request(client)
        nursery.cancel_scope.cancel()
    assert counter.steps <= MAX_TASK_STEPS * REQUESTS
    assert counter.spawns == 0
    assert scopes.entered == 0
    assert stream.sends - sends == REQUESTS
    assert stream.receives - receives == REQUESTS


class SyscallCounter:
    """Counts the server's reads and writes of plain sockets (``_socket_io`` makes them all)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.active = False
        self.reads = self.reads_with_data = self.writes = 0

        def read(fd: int, size: int) -> bytes:
            data = os.read(fd, size)  # raises BlockingIOError if nothing is there
            if self.active:
                self.reads += 1
                self.reads_with_data += bool(data)
            return data

        def write(fd: int, data) -> int:
            if self.active:
                self.writes += 1
            return os.write(fd, data)

        def counting(fn):
            def call(*args):
                try:
                    return fn(*args)
                except BlockingIOError:
                    if self.active and fn is read:
                        self.reads += 1
                    raise

            return call

        monkeypatch.setattr(
            socket_io, "os", types.SimpleNamespace(read=counting(read), write=counting(write))
        )


async def test_keep_alive_request_over_a_loopback_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    counter = StepCounter(_connection_task)
    syscalls = SyscallCounter(monkeypatch)
    async with _keep_alive_client() as client, counting(counter, syscalls):
        for _ in range(REQUESTS):
            await _one_request(client)
    assert counter.steps <= MAX_TASK_STEPS * REQUESTS
    assert counter.spawns == 0
    # One write per response; one read that finds the request, after at
    # most one that finds nothing yet (the client sends only once answered).
    assert syscalls.writes == REQUESTS
    assert syscalls.reads_with_data == REQUESTS
    assert syscalls.reads <= 2 * REQUESTS


async def test_pipelined_requests_take_a_step_each() -> None:
    # The response's yield is what stops a client that pipelines from keeping
    # the connection's task running while other connections wait.
    counter = StepCounter(_connection_task)
    async with _keep_alive_client() as client, counting(counter):
        await client.send_all(REQUEST * REQUESTS)
        responses = b""
        while responses.count(b"Hello, world!\n") < REQUESTS:
            chunk = await client.receive_some(65536)
            assert chunk, responses
            responses += chunk
    assert responses.count(b"HTTP/1.1 200 OK\r\n") == REQUESTS
    assert counter.steps >= REQUESTS


#: Coroutine frames of an idle keep-alive connection's task, trio's own
#: included: most of what an idle connection costs in memory is this stack.
MAX_IDLE_STACK_DEPTH = 8


def _coroutine_stack(task: trio.lowlevel.Task) -> list[str]:
    names, coro = [], task.coro
    while coro is not None and hasattr(coro, "cr_code"):
        names.append(coro.cr_code.co_name)
        coro = coro.cr_await
    return names


def _tasks(task: trio.lowlevel.Task):
    yield task
    for nursery in task.child_nurseries:
        for child in nursery.child_tasks:
            yield from _tasks(child)


async def test_an_idle_keep_alive_connection_waits_on_a_short_stack() -> None:
    async with running_server(hello, access_log=False) as server:
        client = await server.connect()
        async with client:
            await _one_request(client)
            await trio.testing.wait_all_tasks_blocked()
            (stack,) = [
                _coroutine_stack(task)
                for task in _tasks(trio.lowlevel.current_root_task())
                if task.name.endswith("_handle_connection")
            ]
    assert stack[-1] == "wait_task_rescheduled"  # really waiting for the socket
    assert len(stack) <= MAX_IDLE_STACK_DEPTH, stack


class StepEndDepths(trio.abc.Instrument):
    """The coroutine stack depth of the tasks ``watch`` accepts, at the end of each step."""

    def __init__(self, watch) -> None:
        self.watch = watch
        self.depths: list[int] = []
        self.active = False

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        if self.active and self.watch(task):
            self.depths.append(len(_coroutine_stack(task)))


def _nested(app, depth: int):
    """``app`` under ``depth`` layers of middleware that only pass the call on."""
    for _ in range(depth):
        app = _passing_on(app)
    return app


def _passing_on(inner):
    async def middleware(scope, receive, send) -> None:
        await inner(scope, receive, send)

    return middleware


async def test_a_response_yields_on_the_connections_stack_not_the_apps() -> None:
    # Every frame a task is suspended in is left and re-entered by its yield:
    # under an app's middleware, that is the middleware's cost per request.
    depths = StepEndDepths(_connection_task)
    async with _keep_alive_client(_nested(hello, 20)) as client, counting(depths):
        for _ in range(REQUESTS):
            await _one_request(client)
    assert len(depths.depths) >= REQUESTS
    assert max(depths.depths) <= MAX_IDLE_STACK_DEPTH, depths.depths


#: A whole connection over a loopback socket, as the test below counts it:
#: its task's steps from its start to its end, 3 when the request is there at
#: its first look, 4 when it is not (6 when closing raised a Cancelled).
MAX_CONNECTION_STEPS = 4


async def test_a_connection_from_accept_to_close_takes_few_steps() -> None:
    """Opening, one request, the client's EOF and the close: a few steps, one task.

    Closing a plain socket takes no step of its own: ``trio.aclose_forcefully``
    turns ``SocketStream.aclose``'s checkpoint into a raised and caught
    ``Cancelled``, two more steps and an exception for every connection.
    """
    counter = StepCounter(_connection_task)
    spawned: list[str] = []
    counter.task_spawned = lambda task: spawned.append(task.name)  # type: ignore[method-assign]
    async with running_server(hello, access_log=False) as server, counting(counter):
        client = await server.connect()
        await _one_request(client)
        await client.aclose()
    assert [name for name in spawned if name.endswith("_handle_connection")] == [
        "trioasgi.serving.server.Server._handle_connection"
    ]
    assert counter.steps <= MAX_CONNECTION_STEPS
