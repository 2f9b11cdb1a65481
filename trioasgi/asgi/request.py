"""The request head both parsers hand the connection: what every later step reads of it.

h11's ``Request`` keeps each field three times (raw name, lower-case name,
value) behind a ``Sequence`` whose iteration runs a Python generator; the
connection, the strict checks, the scope and the WebSocket handshake all
want the plain ``(lower-case name, value)`` list the ASGI scope is made of.
:class:`RequestHead` carries that list from the parser to the app, made
once: the httptools parser builds it from its callbacks, the h11 parser
converts h11's event (``http11.parsers.from_h11``). HTTP/2 makes one from
its pseudo-headers.

A head is not validated when it is made: the connection runs
its protocol's checks on every one before anything else looks at it.
"""

from __future__ import annotations


class RequestHead:
    """A parsed request line and header block."""

    # Slots rather than a named tuple: the hot path reads these attributes a
    # dozen times per request, and slot reads are the ones Python speeds up.
    __slots__ = ("headers", "http_version", "method", "target")

    def __init__(
        self,
        method: bytes,
        target: bytes,
        http_version: bytes,
        headers: list[tuple[bytes, bytes]],
    ) -> None:
        self.method = method
        self.target = target
        self.http_version = http_version  # b"1.1", b"1.0" or b"2"
        #: (lower-case name, value), in the order received.
        self.headers = headers

    def __repr__(self) -> str:
        return f"RequestHead({self.method!r}, {self.target!r}, {self.http_version!r}, ...)"
