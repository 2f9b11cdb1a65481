"""HTTP/2 against the real server on a loopback port, beside tests/test_http2_e2e.py: what an
HTTP/1.1 app sends that HTTP/2 forbids, and the graceful shutdown of a connection."""

from __future__ import annotations

import json

import httpx

from tests import apps
from tests.conftest import running_server


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
