"""A request's header block as the request head the app's scope is made of (http2/request.py)."""

from __future__ import annotations

import pytest

from trioasgi.http2.request import H2Request, parse_request

BASE = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/p?q=1")]
WITH_AUTHORITY = [*BASE, (b":authority", b"a.example")]


def test_authority_is_the_first_header_as_host_and_pseudo_headers_are_gone() -> None:
    """:authority becomes the first field, host; a host field that agrees is not repeated."""
    request = parse_request(
        [*BASE, (b":authority", b"a.example"), (b"x-a", b"1"), (b"host", b"a.example")]
    )
    assert type(request) is H2Request
    assert request.head.headers == [(b"host", b"a.example"), (b"x-a", b"1")]
    assert (request.head.method, request.head.target, request.head.http_version) == (
        b"GET",
        b"/p?q=1",
        b"2",
    )


def test_host_without_authority_is_kept_first() -> None:
    request = parse_request([*BASE, (b"x-a", b"1"), (b"host", b"h.example")])
    assert type(request) is H2Request
    assert request.head.headers == [(b"host", b"h.example"), (b"x-a", b"1")]


def test_cookie_crumbs_are_joined() -> None:
    """RFC 9113, 8.2.3: the crumbs become one cookie field, joined with "; "."""
    request = parse_request(
        [*WITH_AUTHORITY, (b"cookie", b"a=1"), (b"x", b"y"), (b"cookie", b"b=2")]
    )
    assert type(request) is H2Request
    assert (b"cookie", b"a=1; b=2") in request.head.headers
    assert [name for name, _ in request.head.headers].count(b"cookie") == 1


def test_content_length_is_read() -> None:
    request = parse_request([*WITH_AUTHORITY, (b"content-length", b"12")])
    assert type(request) is H2Request and request.content_length == 12


def test_extended_connect_keeps_its_protocol() -> None:
    request = parse_request(
        [
            (b":method", b"CONNECT"),
            (b":protocol", b"websocket"),
            (b":scheme", b"http"),
            (b":path", b"/ws"),
            (b":authority", b"a.example"),
        ]
    )
    assert type(request) is H2Request and request.protocol == b"websocket"


def test_options_asterisk_is_served() -> None:
    request = parse_request(
        [(b":method", b"OPTIONS"), (b":scheme", b"http"), (b":path", b"*"), (b"host", b"a")]
    )
    assert type(request) is H2Request and request.head.target == b"*"


def _block(method: bytes, path: bytes, *extra: tuple[bytes, bytes]) -> list:
    """A block that is valid but for what ``method``, ``path`` or ``extra`` break."""
    return [
        (b":method", method),
        (b":scheme", b"http"),
        (b":path", path),
        (b":authority", b"a.example"),
        *extra,
    ]


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param(_block(b"GET", b"/")[1:], id="no-method"),
        pytest.param(_block(b"G T", b"/"), id="method-not-a-token"),
        pytest.param([h for h in _block(b"GET", b"/") if h[0] != b":path"], id="no-path"),
        pytest.param(_block(b"GET", b"p"), id="path-without-slash"),
        pytest.param(_block(b"GET", b"/a b"), id="space-in-path"),
        pytest.param(_block(b"GET", b"*"), id="asterisk-not-options"),
        pytest.param(_block(b"CONNECT", b"/"), id="plain-connect"),
        pytest.param(_block(b"GET", b"/", (b"content-length", b"1x")), id="content-length-text"),
        pytest.param(_block(b"GET", b"/", (b"content-length", b"")), id="content-length-empty"),
        pytest.param(_block(b"GET", b"/", (b"host", b"other")), id="host-disagrees"),
    ],
)
def test_refused(headers: list[tuple[bytes, bytes]]) -> None:
    """Each is malformed: a reason (a string) instead of a request."""
    assert type(parse_request(headers)) is str


def test_a_request_says_whether_it_carries_proxy_headers() -> None:
    plain = parse_request(_block(b"GET", b"/"))
    forwarded = parse_request(_block(b"GET", b"/", (b"x-forwarded-for", b"203.0.113.9")))
    assert isinstance(plain, H2Request) and not plain.proxied
    assert isinstance(forwarded, H2Request) and forwarded.proxied


def test_the_field_cache_keeps_short_fields_only_and_stays_bounded() -> None:
    """Checked fields are remembered to skip the checks next time, but a client sending
    new long fields cannot make the cache hold them, and new short ones only so many."""
    from trioasgi.http2 import request as module

    module._kinds.clear()
    for i in range(50):
        parse_request(_block(b"GET", b"/", (b"x-long", b"v" * 1000 + str(i).encode())))
    assert not any(len(value) > module._KIND_VALUE_MAX for _, value in module._kinds)
    for i in range(module._KINDS_MAX + 10):
        parse_request(_block(b"GET", b"/", (b"x-short", str(i).encode())))
    assert len(module._kinds) <= module._KINDS_MAX
    bad = parse_request(_block(b"GET", b"/", (b"x-bad", b" padded")))
    again = parse_request(_block(b"GET", b"/", (b"x-bad", b" padded")))
    assert isinstance(bad, str) and bad == again  # a refusal is remembered as one
