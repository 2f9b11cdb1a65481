"""A request's header block (h2's ``RequestReceived``) as the request head the ASGI layer reads.

h2 has already checked the block against RFC 9113 (the pseudo-headers
present, once, and first; no connection-specific fields; lower-case names;
no CR, LF or NUL). What is left is what the ASGI scope needs: the
pseudo-headers removed, ``:authority`` given to the app as the ``host``
header at the start of the list (ASGI HTTP spec), the ``cookie`` fields
HTTP/2 splits into crumbs joined again (RFC 9113, 8.2.3) so that an app
reading one ``cookie`` header sees them all, and the few checks the scope
itself relies on (a path the scope can decode).
"""

from __future__ import annotations

import re
from typing import NamedTuple

from ..asgi.request import RequestHead

#: What ``:path`` may hold for the scope: visible ASCII (RFC 3986 with escapes).
_PATH = re.compile(rb"[\x21-\x7e]+")
#: An RFC 9110 token, for ``:method``.
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


class H2Request(NamedTuple):
    """What a stream asks for: the head, and ``:protocol`` for an extended CONNECT."""

    head: RequestHead
    #: RFC 8441's ``:protocol`` (``b"websocket"``), or None.
    protocol: bytes | None
    #: ``content-length`` as declared, or None.
    content_length: int | None


def parse_request(headers: list[tuple[bytes, bytes]]) -> H2Request | str:
    """The request a header block makes, or why it cannot be served (a reason for a 400)."""
    method = path = authority = protocol = None
    fields: list[tuple[bytes, bytes]] = []
    cookies: list[bytes] = []
    content_length = None
    for name, value in headers:
        if name[:1] == b":":
            if name == b":method":
                method = value
            elif name == b":path":
                path = value
            elif name == b":authority":
                authority = value
            elif name == b":protocol":
                protocol = value
            # :scheme is the connection's own (http or https), not the client's word.
        elif name == b"cookie":
            cookies.append(value)
        elif name == b"host":
            if authority is None:
                authority = value
        else:
            if name == b"content-length":
                if not value.isdigit():
                    return "the content-length is not a number"
                content_length = int(value)
            fields.append((name, value))
    if method is None or not _TOKEN.fullmatch(method):
        return "the request has no valid :method"
    if method == b"CONNECT":
        if protocol is None:
            return "CONNECT is only served with :protocol (RFC 8441)"
        if path is None:
            return "an extended CONNECT needs a :path"
    if path is None or not _PATH.fullmatch(path) or (path[:1] != b"/" and path != b"*"):
        return "the request's :path is missing or not a valid path"
    if authority is not None:
        fields.insert(0, (b"host", authority))
    if cookies:
        fields.append((b"cookie", b"; ".join(cookies)))
    return H2Request(RequestHead(method, path, b"2", fields), protocol, content_length)
