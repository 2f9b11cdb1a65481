"""The lifespan protocol: startup before serving, shutdown after draining, state, failures."""

from __future__ import annotations

import logging

import httpx
import pytest
import trio

import trioasgi
from tests.conftest import running_server
from trioasgi.asgi.lifespan import LifespanFailure


def lifespan_app(events: list, *, startup: str = "complete", shutdown: str = "complete"):
    """An app whose lifespan records what happened and puts a value in the state."""

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            message = await receive()
            assert message["type"] == "lifespan.startup"
            events.append("startup")
            scope["state"]["db"] = "connected"
            await send({"type": f"lifespan.startup.{startup}", "message": "no database"})
            message = await receive()
            assert message["type"] == "lifespan.shutdown"
            events.append("shutdown")
            await send({"type": f"lifespan.shutdown.{shutdown}", "message": "flush failed"})
            return
        events.append(("request", scope["state"].get("db")))
        scope["state"]["per-request"] = True  # must not leak into the next request
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


async def test_startup_then_requests_with_state_then_shutdown() -> None:
    events: list = []
    app = lifespan_app(events)
    async with running_server(app) as server, httpx.AsyncClient() as client:
        assert events == ["startup"]
        await client.get(server.url)
        await client.get(server.url)
        server.stop()
        await server.stopped.wait()
    assert events == ["startup", ("request", "connected"), ("request", "connected"), "shutdown"]


async def test_each_request_gets_a_shallow_copy_of_the_state() -> None:
    states = []

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            await receive()
            scope["state"]["shared"] = []
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.complete"})
            return
        states.append(scope["state"])
        scope["state"]["mine"] = len(states)
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body"})

    async with running_server(app) as server, httpx.AsyncClient() as client:
        await client.get(server.url)
        await client.get(server.url)
    assert states[0] is not states[1]
    assert states[0]["shared"] is states[1]["shared"]
    assert states[1]["mine"] == 2 and states[0]["mine"] == 1


@pytest.mark.parametrize("behaviour", ["raise", "return"])
async def test_auto_mode_runs_without_lifespan_when_unsupported(behaviour, caplog) -> None:
    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            if behaviour == "raise":
                raise ValueError("no lifespan here")
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"served"})

    caplog.set_level(logging.INFO, logger="trioasgi.error")
    async with running_server(app) as server, httpx.AsyncClient() as client:
        assert (await client.get(server.url)).text == "served"
    assert "lifespan" in caplog.text and "unsupported" in caplog.text


async def test_on_mode_makes_an_exception_fatal() -> None:
    async def app(scope, receive, send):
        raise ValueError("broken startup")

    with pytest.raises(LifespanFailure, match="broken startup"):
        async with running_server(app, lifespan="on"):
            pytest.fail("the server must not start")


async def test_on_mode_makes_returning_without_startup_fatal() -> None:
    async def app(scope, receive, send):
        return None

    with pytest.raises(LifespanFailure, match="returned without completing startup"):
        async with running_server(app, lifespan="on"):
            pytest.fail("the server must not start")


@pytest.mark.parametrize("mode", ["auto", "on"])
async def test_startup_failed_is_fatal_with_its_message(mode: str) -> None:
    events: list = []
    with pytest.raises(LifespanFailure, match="no database"):
        async with running_server(lifespan_app(events, startup="failed"), lifespan=mode):
            pytest.fail("the server must not start")


async def test_off_mode_never_calls_the_app_with_lifespan() -> None:
    events: list = []
    async with (
        running_server(lifespan_app(events), lifespan="off") as server,
        httpx.AsyncClient() as client,
    ):
        await client.get(server.url)
    assert events == [("request", None)]


async def test_shutdown_failure_is_logged_and_the_server_still_stops(caplog) -> None:
    events: list = []
    async with running_server(lifespan_app(events, shutdown="failed")) as server:
        server.stop()
        await server.stopped.wait()
    assert "application shutdown failed: flush failed" in caplog.text


async def test_lifespan_shutdown_runs_after_connections_drained() -> None:
    order = []
    request_started = trio.Event()
    release = trio.Event()

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            await receive()
            await send({"type": "lifespan.startup.complete"})
            await receive()
            order.append("lifespan shutdown")
            await send({"type": "lifespan.shutdown.complete"})
            return
        request_started.set()
        await release.wait()
        order.append("request finished")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"done"})

    async with running_server(app) as server, httpx.AsyncClient() as client:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.get, server.url)
            await request_started.wait()
            server.stop()
            await trio.sleep(0.05)  # give a wrong implementation the chance to go first
            release.set()
        await server.stopped.wait()
    assert order == ["request finished", "lifespan shutdown"]


async def test_startup_timeout_is_a_clear_failure(autojump_clock) -> None:
    async def app(scope, receive, send):
        await trio.sleep_forever()

    config = trioasgi.Config(port=0, timeout_lifespan=3)
    with pytest.raises(LifespanFailure, match="did not complete within 3 seconds"):
        await trioasgi.serve(app, config)
