"""``http.response.trailers`` (ASGI extension): over HTTP/2 as the stream's last HEADERS
frame, over HTTP/1.1 as the chunked body's trailer section when the request said
``TE: trailers`` (and dropped, the body ending as usual, when it did not)."""

from __future__ import annotations

from typing import Any

import h2.events
import pytest
import trio

from tests.conftest import MemoryConnection
from tests.h2client import get, start_pair


def trailers_app(trailers: list[list[tuple[bytes, bytes]]]) -> Any:
    """A chunked body in two parts, then ``trailers`` in as many messages."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert "http.response.trailers" in scope["extensions"]
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/plain")],
                "trailers": True,
            }
        )
        await send({"type": "http.response.body", "body": b"part1 ", "more_body": True})
        await send({"type": "http.response.body", "body": b"part2"})
        for index, fields in enumerate(trailers):
            await send(
                {
                    "type": "http.response.trailers",
                    "headers": fields,
                    "more_trailers": index < len(trailers) - 1,
                }
            )

    return app


TRAILERS = [[(b"x-checksum", b"abc")], [(b"X-More", b"1")]]


async def test_http2_trailers_end_the_stream(autojump_clock) -> None:
    async with trio.open_nursery() as nursery:
        _, client = await start_pair(trailers_app(TRAILERS), nursery)
        status, body = await get(client)
        nursery.cancel_scope.cancel()
    assert (status, body) == (200, b"part1 part2")
    (event,) = [e for e in client.events if isinstance(e, h2.events.TrailersReceived)]
    assert event.headers == [(b"x-checksum", b"abc"), (b"x-more", b"1")]
    assert event.stream_ended is not None


async def test_http2_a_pseudo_header_in_the_trailers_is_the_apps_error(autojump_clock) -> None:
    """The head is out, so the stream is reset rather than answered with a 500."""
    async with trio.open_nursery() as nursery:
        _, client = await start_pair(trailers_app([[(b":status", b"200")]]), nursery)
        stream_id = await client.request("/")
        await client.until(lambda: stream_id in client.resets or stream_id in client.ended)
        nursery.cancel_scope.cancel()
    assert stream_id in client.resets
    assert not [e for e in client.events if isinstance(e, h2.events.TrailersReceived)]


@pytest.mark.usefixtures("http_parser")
@pytest.mark.parametrize("te", [True, False])
async def test_http11_trailers_only_to_a_client_that_asked(te: bool, autojump_clock) -> None:
    te_field = b"TE: trailers\r\n" if te else b""
    request = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + te_field + b"\r\n"
    async with trio.open_nursery() as nursery:
        conn = MemoryConnection(trailers_app(TRAILERS), nursery)
        await conn.send(request)
        data = await conn.read_all()
        nursery.cancel_scope.cancel()
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head.lower()
    # (HTTP/1.1 writes field names as the app gave them.)
    expected_end = b"0\r\nx-checksum: abc\r\nX-More: 1\r\n\r\n" if te else b"0\r\n\r\n"
    assert body == b"6\r\npart1 \r\n5\r\npart2\r\n" + expected_end
