"""The graceful shutdown never hangs, whatever the clients and the app do; no task leaks.

Complements ``test_shutdown.py`` (a client that never reads, an app that
sleeps through the disconnect, a half-sent head): silent and half-closed
connections, an app that spins on ``receive()``, and the task watch that
``running_server`` applies to every end-to-end test.
"""

from __future__ import annotations

import pytest
import trio
import trio.testing

from tests import apps
from tests.conftest import running_server, wait_for_shape

# Far below every other timeout involved (keep-alive, request header, linger,
# the test's own fail_after): a shutdown that ends in time ended because of it.
GRACE = 0.3


async def _stop_and_wait(server) -> None:
    server.stop()
    with trio.fail_after(5):
        await server.stopped.wait()


async def test_silent_half_sent_and_half_closed_connections() -> None:
    async with running_server(
        apps.hello, expect_idle=False, timeout_graceful_shutdown=GRACE
    ) as server:
        silent = await server.connect()
        half = await server.connect()
        await half.send_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Half")
        shut_write = await server.connect()
        await shut_write.send_all(b"GET / HTTP/1.1\r\nHo")
        await shut_write.send_eof()
        await trio.testing.wait_all_tasks_blocked(0.05)
        await _stop_and_wait(server)  # header timeout is 10 s: it did not wait for it
        assert await silent.receive_some(100) == b""


@pytest.mark.parametrize("spin", [False, True], ids=["sleeps", "spins-on-receive"])
async def test_app_that_ignores_http_disconnect(spin: bool) -> None:
    disconnected = trio.Event()
    cancelled = []

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        try:
            for _ in range(10_000_000):
                message = await receive()
                if message["type"] == "http.disconnect":
                    disconnected.set()
                    if not spin:
                        await trio.sleep(3600)
        except trio.Cancelled:
            cancelled.append(True)
            raise

    async with running_server(app, expect_idle=False, timeout_graceful_shutdown=GRACE) as server:
        stream = await server.connect()
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await stream.aclose()
        with trio.fail_after(5):
            await disconnected.wait()
        await _stop_and_wait(server)
    assert cancelled == [True]


async def test_idle_task_tree_is_restored_after_connections_close() -> None:
    async with running_server(apps.hello) as server:
        idle = server.tasks.shape()
        streams = [await server.connect() for _ in range(5)]
        for stream in streams:
            await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            await stream.receive_some(4096)
        assert len(server.tasks.shape()) == len(idle) + 5
        for stream in streams:
            await stream.aclose()
        await wait_for_shape(server.tasks, idle)
    assert not any("handle_connection" in name for name in idle)
    assert server.tasks.spawned >= len(idle) + 5


async def test_task_watch_sees_a_connection_that_stays_open() -> None:
    async with running_server(apps.hello) as server:
        idle = server.tasks.shape()
        stream = await server.connect()
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await stream.receive_some(4096)
        with pytest.raises(AssertionError, match="idle task tree"):
            await wait_for_shape(server.tasks, idle, timeout=0.2)


async def test_task_watch_sees_a_leaked_system_task() -> None:
    release = trio.Event()

    async def app(scope, receive, send):
        if scope["type"] == "http":
            trio.lowlevel.spawn_system_task(release.wait)
            await apps.hello(scope, receive, send)

    with pytest.raises(AssertionError, match="tasks left after serve"):
        async with running_server(app, expect_idle=False) as server:
            stream = await server.connect()
            await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            await stream.receive_some(4096)
    release.set()
