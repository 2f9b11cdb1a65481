"""HTTP/2 against the real server on a loopback port, beside tests/test_http2_e2e.py: what an
HTTP/1.1 app sends that HTTP/2 forbids, and the graceful shutdown of a connection."""

from __future__ import annotations

import json

import httpx
import trio

from tests import apps
from tests.conftest import running_server
from tests.h2client import RawClient


async def test_response_connection_fields_are_dropped() -> None:
    """Fields an HTTP/1.1 app may set that are forbidden in HTTP/2 are not sent."""

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        headers = [
            (b"connection", b"keep-alive"),
            (b"keep-alive", b"timeout=5"),
            (b"x-kept", b"1"),
        ]
        await apps.start(send, 200, headers)
        await send({"type": "http.response.body", "body": json.dumps("ok").encode()})

    async with (
        running_server(app) as server,
        httpx.AsyncClient(http1=False, http2=True) as client,
    ):
        response = await client.get(server.url)
    assert response.http_version == "HTTP/2"
    assert response.headers["x-kept"] == "1"
    assert "connection" not in response.headers
    assert "keep-alive" not in response.headers


async def test_graceful_shutdown_finishes_the_stream_in_flight() -> None:
    """The real server stopped while a stream runs: GOAWAY with 2^31-1, then (the PING
    answered) the final GOAWAY naming that stream, whose response still arrives; then the
    connection closes and serve() returns."""
    app = apps.HeldHello()
    started, release = app.started, app.release

    async with running_server(app, expect_idle=False) as server:
        client = RawClient(await server.connect())
        await client.start()
        stream_id, head = client.request()
        await client.send(head)
        with trio.fail_after(5):
            await started.wait()
            server.stop()
            await client.until(lambda: len(client.goaways) == 2)
            assert [g.last_stream_id for g in client.goaways] == [2**31 - 1, stream_id]
            release.set()
            assert await client.response(stream_id) == (200, b"hello")
            await client.read_to_close()
            await server.stopped.wait()
