"""The plain-text responses the server makes itself (400, 413, 500, ...), for every protocol.

Each protocol frames them its own way (an HTTP/1.1 head, HTTP/2 HEADERS, a
refused WebSocket upgrade); what they say is made here once.
"""

from __future__ import annotations

from http import HTTPStatus


def error_content(status: int) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """The body of a server-made response with ``status``, and the fields that describe it."""
    body = f"{status} {HTTPStatus(status).phrase}\n".encode()
    fields = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
    ]
    return body, fields
