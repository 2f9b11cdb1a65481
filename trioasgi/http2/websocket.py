"""WebSocket over an HTTP/2 stream (RFC 8441): placeholder until the session runs over streams."""

from __future__ import annotations

from ..asgi.request import RequestHead
from .stream import H2Stream


async def run_websocket(conn: object, stream: H2Stream, request: RequestHead) -> None:
    await stream.send_error(501, "WebSocket over HTTP/2 is not served yet")
