"""The file and early-hint extensions over HTTP/2 (prior knowledge, an h2 client).

The file goes out in chunks read in a worker thread, as the stream's flow
control takes them; a 103 is an informational HEADERS frame on the stream.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import httpx
import trio
from starlette.applications import Starlette
from starlette.responses import FileResponse
from starlette.routing import Route

from tests.conftest import running_server
from tests.test_files import CONTENT, Recorder, data_file, early_hints_app
from trioasgi.asgi.scope import HTTP_EXTENSIONS

__all__ = ["data_file"]


async def h2_get(server: Any, path: str) -> tuple[list[Any], Any, bytes]:
    """GET ``path`` over HTTP/2: the informational header blocks, the final one, the body."""
    stream = await server.connect()
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    stream_id = conn.get_next_available_stream_id()
    request = [(":method", "GET"), (":path", path), (":scheme", "http"), (":authority", "x")]
    conn.send_headers(stream_id, request, end_stream=True)
    await stream.send_all(conn.data_to_send())
    informational: list[Any] = []
    final = None
    body = bytearray()
    ended = False
    with trio.fail_after(30):
        while not ended:
            data = await stream.receive_some(65536)
            assert data, "the server closed before the stream ended"
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.InformationalResponseReceived):
                    informational.append(event.headers)
                elif isinstance(event, h2.events.ResponseReceived):
                    final = event.headers
                elif isinstance(event, h2.events.DataReceived):
                    body += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamEnded):
                    ended = True
                elif isinstance(event, h2.events.StreamReset):
                    raise AssertionError(f"stream reset: {event.error_code!r}")
            await stream.send_all(conn.data_to_send())
    await stream.aclose()
    return informational, final, bytes(body)


async def test_file_response_over_http2(data_file: Path) -> None:
    app = Recorder(Starlette(routes=[Route("/f", lambda request: FileResponse(data_file))]))
    async with running_server(app) as server:
        _, head, body = await h2_get(server, "/f")
    assert dict(head)[b":status"] == b"200"
    assert body == CONTENT
    assert "http.response.pathsend" in app.sent


async def test_zerocopysend_range_over_http2(data_file: Path) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        with open(data_file, "rb") as file:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            message = {"type": "http.response.zerocopysend", "file": file}
            await send({**message, "offset": 100, "count": 300_000, "more_body": True})
            await send({**message, "offset": 0, "count": 10})

    async with running_server(app) as server:
        _, _, body = await h2_get(server, "/")
    assert body == CONTENT[100:300_100] + CONTENT[:10]


async def test_early_hints_over_http2() -> None:
    async with running_server(early_hints_app) as server:
        informational, head, body = await h2_get(server, "/")
    assert [dict(block)[b":status"] for block in informational] == [b"103"]
    assert [value for name, value in informational[0] if name == b"link"] == [
        b"</style.css>; rel=preload; as=style",
        b"</app.js>; rel=preload; as=script",
    ]
    assert dict(head)[b":status"] == b"200"
    assert body == b"ok"


async def test_every_scope_has_its_own_extensions_with_trailers_offered() -> None:
    """Over HTTP/2 and HTTP/1.1 the response extensions are offered, trailers among them,
    in a dict of each scope's own: what one request's middleware adds is not in the next."""
    seen: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(dict(scope["extensions"]))
        scope["extensions"]["x-added-by-middleware"] = {}
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body"})

    async with running_server(app) as server:
        await h2_get(server, "/")
        await h2_get(server, "/")
        async with httpx.AsyncClient() as client:
            await client.get(server.url)
            await client.get(server.url)
    assert len(seen) == 4
    for extensions in seen:
        assert {"http.response.trailers", "http.response.pathsend"} <= set(extensions)
        assert "x-added-by-middleware" not in extensions
    assert "x-added-by-middleware" not in HTTP_EXTENSIONS
