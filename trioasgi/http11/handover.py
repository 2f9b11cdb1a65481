"""What an HTTP/1.1 connection hands over when it turns out to be HTTP/2.

RFC 9113, 3.3 (prior knowledge) and RFC 7540, 3.2 (``Upgrade: h2c``).

Two ways lead from HTTP/1.1 to HTTP/2 on a cleartext connection, and both are
found by the HTTP/1.1 connection at no cost to its own requests:

- prior knowledge: the client's first bytes are the connection preface,
  whose first line (``PRI * HTTP/2.0``) both parsers read as a request head
  that the strict checks refuse; on the refusal path, and only there, the
  connection looks whether it was the preface;
- ``Upgrade: h2c`` with one ``HTTP2-Settings`` field on a request without a
  body: the connection answers ``101 Switching Protocols`` and the request
  becomes stream 1 of the HTTP/2 connection.

Either way the connection returns an :class:`HTTP2Handover` instead of
closing, and the server runs the HTTP/2 connection on the same socket.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

import h11

from ..asgi.request import RequestHead

#: The preface's first line and blank line, as a parser reads it (RFC 9113, 3.4).
PREFACE_HEAD = b"PRI * HTTP/2.0\r\n\r\n"

#: The answer to an accepted ``Upgrade: h2c``.
SWITCHING_TO_H2C = (
    b"HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: h2c\r\n\r\n"
)


class NotHTTP1(h11.RemoteProtocolError):
    """The bytes are no HTTP/1.x request line: no method llhttp knows, or no ``HTTP/1.`` in it.

    On a connection's first bytes, with HTTP/2 on in cleartext, such a
    client speaks neither HTTP/1.1 nor HTTP/2 (whose preface the connection
    knows): it is closed without an HTTP/1.1 answer it could not read, as
    an HTTP/2 server closes on a bad preface (RFC 9113, 3.4). Later on a
    connection, or with HTTP/2 off, it is the usual ``400``.
    """


@dataclass
class HTTP2Handover:
    """What the HTTP/2 connection takes over: the bytes read for it, and an upgraded request."""

    #: Bytes already read that are HTTP/2's (from the preface on).
    received: bytes
    #: The request that asked for ``Upgrade: h2c`` and its ``HTTP2-Settings`` (base64).
    upgrade: tuple[RequestHead, bytes] | None = None


def is_preface(request: RequestHead) -> bool:
    """Whether a parsed head is the HTTP/2 preface's first line."""
    return (
        request.method == b"PRI"
        and request.target == b"*"
        and request.http_version == b"2.0"
        and not request.headers
    )


def h2c_settings(request: RequestHead) -> bytes | None:
    """The ``HTTP2-Settings`` of a request that asks for ``Upgrade: h2c``, or None.

    None also for a request that cannot be upgraded: one with a body (the
    client would have to send all of it first), a second ``HTTP2-Settings``,
    or one ``Connection`` does not name (RFC 7540, 3.2.1).
    """
    upgrade = settings = None
    connection: list[bytes] = []
    count = 0
    for name, value in request.headers:
        if name == b"upgrade":
            upgrade = value
        elif name == b"http2-settings":
            settings = value
            count += 1
        elif name == b"connection":
            connection += [token.strip().lower() for token in value.split(b",")]
        elif (name == b"content-length" and value.strip() != b"0") or name == b"transfer-encoding":
            return None
    if upgrade is None or b"h2c" not in [t.strip().lower() for t in upgrade.split(b",")]:
        return None
    if count != 1 or settings is None or b"http2-settings" not in connection:
        return None
    try:
        # h2 decodes it again: this only finds out whether it can.
        base64.urlsafe_b64decode(settings + b"=" * (-len(settings) % 4))
    except (binascii.Error, ValueError):
        return None
    return settings
