"""A request's header block (h2's ``RequestReceived``): checked, and made the request head.

h2 is configured not to validate or normalize inbound headers: its
checks run six generators over every field, and most of them are done
here anyway, in one pass. This module holds every rule of RFC 9113 for a
request header block (8.2, 8.3; RFC 8441 for ``:protocol``): names are
lower-case tokens; values have no NUL, CR or LF and no surrounding
whitespace; the pseudo-headers come first, once each, only the request's
(``:method``, ``:scheme``, ``:path``, ``:authority``, ``:protocol``), with
``:scheme`` and a non-empty ``:path`` unless CONNECT, ``:protocol`` only
with CONNECT; no connection-specific field; ``te`` only ``trailers``; an
``:authority`` or a ``host``, which agree when both are there. A block that
breaks one is malformed (8.1.1): the stream is reset with
``PROTOCOL_ERROR``, the connection carries on.

What is left makes the ASGI scope: the pseudo-headers removed,
``:authority`` given to the app as the ``host`` header at the start of the
list (ASGI HTTP spec), and the ``cookie`` crumbs HTTP/2 splits a cookie
into joined again (8.2.3), so an app reading one ``cookie`` header sees
every cookie.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from ..asgi.request import RequestHead

#: What ``:path`` may hold for the scope: visible ASCII (RFC 3986 with escapes).
_PATH = re.compile(rb"[\x21-\x7e]+")
#: An RFC 9110 token in lower case, for field names (HTTP/2's, both ways); any
#: case for ``:method``.
FIELD_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9a-z]+")
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: A field value: no NUL, CR or LF, and no space or tab at either end.
_VALUE = re.compile(rb"(?:[^\x00\r\n \t](?:[^\x00\r\n]*[^\x00\r\n \t])?)?")
#: Fields that mean something only to one HTTP/1.1 connection (RFC 9113, 8.2.2):
#: malformed in a request, dropped from an app's response.
CONNECTION_FIELDS = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"}
)
_PSEUDO = frozenset({b":method", b":scheme", b":path", b":authority", b":protocol"})


class H2Request(NamedTuple):
    """What a stream asks for: the head, and ``:protocol`` for an extended CONNECT."""

    head: RequestHead
    #: RFC 8441's ``:protocol`` (``b"websocket"``), or None.
    protocol: bytes | None
    #: ``content-length`` as declared, or None.
    content_length: int | None
    #: Whether a proxy header is there (``forwarded``, ``x-forwarded-*``): as
    #: HTTP/1.1's ``FieldFacts.proxied``, a request without one skips their parse.
    proxied: bool = False


# What a field is, once its name and value are checked: the kinds the loop
# below tells apart (a str is the reason the field is refused).
_PSEUDO_FIELD, _FIELD, _PROXY_FIELD, _COOKIE, _HOST, _CONTENT_LENGTH = range(6)

#: Fields already checked -> their kind. A client sends the same fields again
#: and again (and hpack hands back the same objects for the ones in its
#: table, their hashes known): a lookup instead of two regular expressions
#: and a dozen comparisons. Bounded in entries and in their size (only
#: short fields are kept: a client sending new long ones must not fill it).
_kinds: dict[tuple[bytes, bytes], int | str] = {}
_KINDS_MAX = 4096
_KIND_VALUE_MAX = 256


def _kind(name: bytes, value: bytes) -> int | str:
    """What a field is, or why it is refused (independent of the other fields)."""
    if not _VALUE.fullmatch(value):
        return f"the value of {name!r} is not a valid field value"
    if name[:1] == b":":
        if name not in _PSEUDO:
            return f"pseudo-header {name!r} is unknown"
        return _PSEUDO_FIELD
    if not FIELD_NAME.fullmatch(name):
        return f"{name!r} is not a valid lower-case field name"
    if name == b"cookie":
        return _COOKIE
    if name == b"host":
        return _HOST
    if name in CONNECTION_FIELDS:
        return f"connection-specific field {name!r}"
    if name == b"te" and value.lower() != b"trailers":
        return "te other than trailers"
    if name[:2] == b"x-" or name == b"forwarded":
        return _PROXY_FIELD
    if name == b"content-length":
        return _CONTENT_LENGTH if value.isdigit() else "the content-length is not a number"
    return _FIELD


def parse_request(headers: list[tuple[bytes, bytes]]) -> H2Request | str:
    """The request a header block makes, or why it is malformed."""
    pseudo: dict[bytes, bytes] = {}
    fields: list[tuple[bytes, bytes]] = []
    cookies: list[bytes] = []
    host = content_length = None
    proxied = False
    kinds = _kinds
    for pair in headers:
        kind = kinds.get(pair)
        if kind is None:
            kind = _kind(*pair)
            if len(pair[1]) <= _KIND_VALUE_MAX:
                if len(kinds) >= _KINDS_MAX:
                    kinds.clear()
                kinds[pair] = kind
        name, value = pair
        if kind == _FIELD:
            fields.append((name, value))
        elif kind == _PSEUDO_FIELD:
            if fields or cookies or host is not None:
                return f"pseudo-header {name!r} after a regular field"
            if name in pseudo:
                return f"pseudo-header {name!r} is repeated"
            pseudo[name] = value
        elif kind == _PROXY_FIELD:
            proxied = True
            fields.append((name, value))
        elif kind == _COOKIE:
            cookies.append(value)
        elif kind == _HOST:
            if host is not None:
                return "more than one host field"
            host = value
        elif kind == _CONTENT_LENGTH:
            if content_length is not None and int(value) != content_length:
                return "the content-length is not one number"
            content_length = int(value)
            fields.append((name, value))
        else:
            return kind  # type: ignore[return-value]
    return _request(pseudo, fields, cookies, host, content_length, proxied)


def _request(
    pseudo: dict[bytes, bytes],
    fields: list[tuple[bytes, bytes]],
    cookies: list[bytes],
    host: bytes | None,
    content_length: int | None,
    proxied: bool,
) -> H2Request | str:
    method = pseudo.get(b":method")
    path = pseudo.get(b":path")
    protocol = pseudo.get(b":protocol")
    authority = pseudo.get(b":authority")
    if method is None or not _TOKEN.fullmatch(method):
        return "no valid :method"
    if method == b"CONNECT":
        if protocol is None:
            return "CONNECT is only served with :protocol (RFC 8441)"
    elif protocol is not None:
        return ":protocol without CONNECT"
    if b":scheme" not in pseudo or path is None:
        return "no :scheme or no :path"
    if not _PATH.fullmatch(path) or (path[:1] != b"/" and path != b"*"):
        return "the :path is not a valid path"
    if path == b"*" and method != b"OPTIONS":
        # Only OPTIONS asks about the server as a whole (RFC 9113, 8.3.1), as over HTTP/1.1.
        return "a :path of * is only for OPTIONS"
    if authority is None:
        if host is None:
            return "neither :authority nor host"
        authority = host
    elif host is not None and host != authority:
        return "host and :authority disagree"
    fields.insert(0, (b"host", authority))
    if cookies:
        fields.append((b"cookie", b"; ".join(cookies)))
    return H2Request(RequestHead(method, path, b"2", fields), protocol, content_length, proxied)


def trailers_are_valid(headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether a trailer block is well formed: regular fields only (RFC 9113, 8.1)."""
    return all(
        FIELD_NAME.fullmatch(name) and _VALUE.fullmatch(value) and name not in CONNECTION_FIELDS
        for name, value in headers
    )
