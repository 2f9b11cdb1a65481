"""Graceful shutdown and the serve() API: triggers, draining, the timeout, no task left behind.

The real clock is used here (real sockets); the timeouts that must *not*
be waited for are set to an hour, and ``trio.fail_after`` guards against a
hang rather than measuring speed.
"""

from __future__ import annotations

import errno
import sys

import httpx
import pytest
import trio

import trioasgi

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup
from tests import apps
from tests.conftest import read_until_closed, running_server

HOUR = 3600.0
HANG_GUARD = 10


class TaskTracker(trio.abc.Instrument):
    """Records every task spawned while installed, and which of them have exited."""

    def __init__(self) -> None:
        self.alive: set[trio.lowlevel.Task] = set()
        self.spawned = 0

    def task_spawned(self, task: trio.lowlevel.Task) -> None:
        self.alive.add(task)
        self.spawned += 1

    def task_exited(self, task: trio.lowlevel.Task) -> None:
        self.alive.discard(task)


async def test_port_zero_reports_the_bound_address() -> None:
    async with trio.open_nursery() as nursery:
        addresses = await nursery.start(trioasgi.serve, apps.hello, trioasgi.Config(port=0))
        host, port = addresses[0]
        assert host == "127.0.0.1" and port > 0
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"http://{host}:{port}/")).text == "hello"
        nursery.cancel_scope.cancel()


async def test_shutdown_trigger_returning_stops_the_server() -> None:
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        config = trioasgi.Config(port=0)
        await nursery.start(
            lambda task_status: trioasgi.serve(
                apps.hello, config, shutdown_trigger=stop.wait, task_status=task_status
            )
        )
        stop.set()
    # reaching this line means serve() returned by itself


async def test_idle_keep_alive_connections_close_at_once() -> None:
    async with running_server(apps.hello, timeout_keep_alive=HOUR) as server:
        stream = await server.connect()
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        response = await stream.receive_some(1000)
        assert response.endswith(b"hello")
        with trio.fail_after(HANG_GUARD):
            server.stop()
            await server.stopped.wait()
            assert await read_until_closed(stream) == b""


async def test_in_flight_request_finishes_with_connection_close() -> None:
    app = apps.HeldHello()
    started, release = app.started, app.release

    async with running_server(app, timeout_graceful_shutdown=HOUR) as server:
        stream = await server.connect()
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await started.wait()
        server.stop()
        # new connections are refused once shutdown has begun
        with trio.fail_after(HANG_GUARD):
            while True:
                try:
                    late = await server.connect()
                except OSError as exc:
                    assert exc.errno in (errno.ECONNREFUSED, None)
                    break
                await late.aclose()
                await trio.sleep(0.01)
        release.set()
        with trio.fail_after(HANG_GUARD):
            data = await read_until_closed(stream)
            await server.stopped.wait()
    assert data.startswith(b"HTTP/1.1 200 OK")
    assert b"connection: close" in data.lower()
    assert data.endswith(b"hello")


async def test_graceful_timeout_cancels_a_client_that_never_reads() -> None:
    cancelled = trio.Event()

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await apps.start(send, 200)
        try:
            while True:  # the client never reads: send() soon blocks for good
                await send({"type": "http.response.body", "body": b"x" * 65536, "more_body": True})
        except trio.Cancelled:
            cancelled.set()
            raise

    async with running_server(app, timeout_graceful_shutdown=0.2) as server:
        stream = await server.connect()
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await trio.sleep(0.1)  # let the socket buffers fill up
        with trio.fail_after(HANG_GUARD):
            server.stop()
            await server.stopped.wait()
    assert cancelled.is_set()
    await stream.aclose()


async def test_app_ignoring_disconnect_is_cancelled_after_the_timeout() -> None:
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await trio.sleep_forever()

    async with running_server(app, timeout_graceful_shutdown=0.1) as server:
        stream = await server.connect()
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await trio.sleep(0.05)
        with trio.fail_after(HANG_GUARD):
            server.stop()
            await server.stopped.wait()
            assert await read_until_closed(stream) == b""


async def test_cancelling_the_caller_still_drains_then_raises_cancelled() -> None:
    started = trio.Event()
    finished = []

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        started.set()
        await trio.sleep(0.05)
        await apps.hello(scope, receive, send)
        finished.append(True)

    async with trio.open_nursery() as nursery:
        addresses = await nursery.start(trioasgi.serve, app, trioasgi.Config(port=0))
        host, port = addresses[0]
        nursery.start_soon(httpx.AsyncClient().get, f"http://{host}:{port}/")
        await started.wait()
        nursery.cancel_scope.cancel()
    assert finished == [True]


async def test_no_task_outlives_the_server() -> None:
    tracker = TaskTracker()

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            await receive()
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["path"] == "/hang":
            await trio.sleep_forever()
        await apps.hello(scope, receive, send)

    trio.lowlevel.add_instrument(tracker)
    try:
        async with running_server(app, timeout_graceful_shutdown=0.1) as server:
            idle = await server.connect()
            await idle.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            await idle.receive_some(1000)
            hanging = await server.connect()
            await hanging.send_all(b"GET /hang HTTP/1.1\r\nHost: x\r\n\r\n")
            half = await server.connect()
            await half.send_all(b"GET / HTTP/1.1\r\nHo")
            await trio.sleep(0.05)
            server.stop()
            with trio.fail_after(HANG_GUARD):
                await server.stopped.wait()
    finally:
        trio.lowlevel.remove_instrument(tracker)
    assert tracker.spawned >= 5  # serve, lifespan, accept loop, 3 connections
    leftover = {task.name for task in tracker.alive}
    assert not leftover, leftover


@pytest.mark.parametrize("trigger_error", [ValueError("trigger broke")])
async def test_a_failing_trigger_still_shuts_down_gracefully(trigger_error) -> None:
    async def trigger():
        await trio.sleep(0.01)
        raise trigger_error

    with pytest.raises(BaseExceptionGroup) as info:
        await trioasgi.serve(apps.hello, trioasgi.Config(port=0), shutdown_trigger=trigger)
    assert info.group_contains(ValueError, match="trigger broke")
