"""Strict request parsing: malformed heads get 4xx/5xx and a close; nothing after them is parsed."""

from __future__ import annotations

import logging

import httpx
import pytest
import trio

from tests import apps
from tests.conftest import MemoryConnection, read_until_closed, running_server
from tests.malformed import FOLLOW_UP, MALFORMED_REQUESTS, OVERSIZED_REQUESTS
from trioasgi.http11.strict import (
    _TOKEN_BYTES,
    _TOKEN_METHODS,
    FieldFacts,
    Rejection,
    RequestLimits,
    check_request,
)

# Every strictness rule holds whichever parser reads the request.
pytestmark = pytest.mark.usefixtures("http_parser")

_IDS = [case[0] for case in MALFORMED_REQUESTS + OVERSIZED_REQUESTS]
_CASES = [case[1:] for case in MALFORMED_REQUESTS + OVERSIZED_REQUESTS]
_LIMITS = RequestLimits(max_head_size=16384, max_fields=100)


class RecordingApp:
    """Reads the whole body, then answers 200; remembers every path it was called for."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        self.paths.append(scope["path"])
        await apps.echo(scope, receive, send)


@pytest.mark.parametrize(("request_bytes", "status"), _CASES, ids=_IDS)
async def test_malformed_request_is_refused_and_nothing_after_it_is_parsed(
    request_bytes: bytes, status: int, autojump_clock
) -> None:
    app = RecordingApp()
    async with trio.open_nursery() as nursery:
        # HTTP/1.1's rules: with HTTP/2 off the preface is a malformed request too.
        conn = MemoryConnection(app, nursery, http2=False)
        await conn.send(request_bytes + FOLLOW_UP)
        with trio.fail_after(60):
            data = await conn.read_all()
            await conn.finished.wait()
    assert data.startswith(b"HTTP/1.1 %d " % status), data[:80]
    assert data.count(b"HTTP/1.1 ") == 1
    assert b"\r\nconnection: close\r\n" in data.lower()
    assert "/smuggled" not in app.paths


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [case[1:] for case in MALFORMED_REQUESTS if case[0] in {"cl-and-te", "fragment-in-target"}],
)
async def test_malformed_request_over_a_real_socket(request_bytes: bytes, status: int) -> None:
    app = RecordingApp()
    async with running_server(app) as server:
        stream = await server.connect()
        async with stream:
            await stream.send_all(request_bytes + FOLLOW_UP)
            with trio.fail_after(5):
                data = await read_until_closed(stream)
        assert data.startswith(b"HTTP/1.1 %d " % status)
        assert data.count(b"HTTP/1.1 ") == 1
        async with httpx.AsyncClient() as client:
            assert (await client.get(server.url)).status_code == 200
    assert app.paths == ["/"]


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET / HTTP/1.0\r\n\r\n",
        b"GET /a?x={1}|y^`z`\\ HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET http://example.com/p HTTP/1.1\r\nHost: x\r\n\r\n",
        b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX: tab\there, obs-text \x80\xff\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n"
        + b"".join(b"X-%d: v\r\n" % i for i in range(99))
        + b"\r\n",
    ],
    ids=[
        "http-1.0",
        "query-chars",
        "absolute-form",
        "asterisk",
        "same-cl",
        "te-case",
        "tab",
        "100",
    ],
)
async def test_valid_edge_cases_are_accepted(
    request_bytes: bytes, http_parser: str, autojump_clock
) -> None:
    # The one documented difference between the parsers: llhttp refuses even
    # an identical repeated Content-Length, which RFC 9112 lets a server take
    # as one. It is refused as malformed, never served.
    refused = http_parser == "httptools" and request_bytes.count(b"Content-Length: 5") == 2
    app = RecordingApp()
    async with trio.open_nursery() as nursery:
        conn = MemoryConnection(app, nursery)
        await conn.send(request_bytes)
        data = await conn.read_response()
        nursery.cancel_scope.cancel()
    assert data.startswith(b"HTTP/1.1 400 " if refused else b"HTTP/1.1 200 ")
    assert len(app.paths) == (0 if refused else 1)


def test_the_methods_that_skip_the_token_scan_are_tokens() -> None:
    # The shortcut must never admit what the scan would refuse.
    for method in _TOKEN_METHODS:
        assert method and not method.translate(None, _TOKEN_BYTES)


def test_check_request_is_independent_of_the_parser() -> None:
    def check(headers, method=b"GET", target=b"/", version=b"1.1", limits=_LIMITS):
        return check_request(method, target, version, headers, limits)

    host = [(b"host", b"x")]
    assert accepted(check(host))
    assert check(host, version=b"2.0").status == 505
    assert check([*host, (b"content-length", b"1"), (b"content-length", b"2")]).status == 400
    assert accepted(check([*host, (b"content-length", b"3, 3")]))
    assert check([*host, (b"transfer-encoding", b"gzip")]).status == 501
    assert check([*host, (b"transfer-encoding", b"chunked"), (b"content-length", b"3")]).status == (
        400
    )
    assert check([*host, (b"x y", b"v")]).status == 400
    assert check([*host, (b"x", b"a\nb")]).status == 400
    assert check(host, method=b"G T").status == 400
    limited = RequestLimits(max_head_size=16384, max_fields=2, max_body=10)
    assert check([*host, (b"a", b"1"), (b"b", b"2")], limits=limited).status == 431
    assert check([*host, (b"content-length", b"11")], limits=limited).status == 413
    assert accepted(check([*host, (b"content-length", b"10")], limits=limited))
    assert check([*host, (b"content-length", b"9" * 30)], limits=limited).status == 400


@pytest.mark.parametrize(
    "headers",
    [
        [(b"x-split", b"a\r\nset-cookie: evil=1")],
        [(b"x-nul", b"a\x00b")],
        [(b"x-cr", b"a\rb")],
        [(b"x-lf", b"a\nb")],
        [(b"bad name", b"v")],
        [(b"bad\r\nname", b"v")],
        [(b"x:y", b"v")],
        [(b"content-length", b"5"), (b"content-length", b"6")],
        [(b"transfer-encoding", b"gzip")],
    ],
    ids=[
        "crlf",
        "nul",
        "cr",
        "lf",
        "space-in-name",
        "crlf-in-name",
        "colon-in-name",
        "two-lengths",
        "te-gzip",
    ],
)
async def test_response_header_injection_gives_500_and_a_log_line(
    headers, caplog, autojump_clock
) -> None:
    caplog.set_level(logging.ERROR, logger="trioasgi")

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"never"})

    async with trio.open_nursery() as nursery:
        conn = MemoryConnection(app, nursery)
        await conn.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        data = await conn.read_all()
    assert data.startswith(b"HTTP/1.1 500 ")
    assert b"evil" not in data and b"never" not in data
    assert "Exception in ASGI application" in caplog.text


def accepted(checked: Rejection | FieldFacts) -> bool:
    return type(checked) is FieldFacts


def test_an_accepted_head_answers_the_connections_questions_about_its_fields() -> None:
    def facts(*fields: tuple[bytes, bytes]) -> FieldFacts:
        checked = check_request(b"GET", b"/", b"1.1", [(b"host", b"x"), *fields], _LIMITS)
        assert accepted(checked), checked
        return checked

    plain = facts((b"accept", b"*/*"))
    assert not plain.proxied and not plain.upgrade and not plain.framed
    assert not plain.close and not plain.expects_continue and plain.usual
    assert facts((b"connection", b"keep-alive, Close")).close
    assert not facts((b"connection", b"keep-alive"), (b"x-close", b"close")).close
    assert facts((b"expect", b"100-Continue")).expects_continue
    assert not facts((b"content-length", b"0")).usual
    for name in (b"forwarded", b"x-forwarded-for", b"x-forwarded-proto"):
        assert facts((name, b"for=1.2.3.4")).proxied
        assert facts((name, b"for=1.2.3.4")).proxied  # and again, remembered
    assert facts((b"connection", b"upgrade"), (b"upgrade", b"websocket")).upgrade
    assert not facts((b"connection", b"upgrade")).upgrade


def test_a_remembered_header_block_is_still_judged_with_its_request_line_and_limits() -> None:
    """Header blocks are remembered across requests; nothing else about the request is."""
    fields = [(b"host", b"example.com"), (b"content-length", b"5"), (b"accept", b"*/*")]
    loose = RequestLimits(max_head_size=16384, max_fields=100, max_body=None)
    assert accepted(check_request(b"GET", b"/", b"1.1", list(fields), loose))
    # The same block again, each time with one other thing wrong.
    assert check_request(b"G T", b"/", b"1.1", list(fields), loose).status == 400
    assert check_request(b"GET", b"/<", b"1.1", list(fields), loose).status == 400
    assert check_request(b"GET", b"/", b"2.0", list(fields), loose).status == 505
    assert check_request(b"GET", b"/" * 100, b"1.1", list(fields), _limits(head=100)).status == 431
    assert check_request(b"GET", b"/", b"1.1", list(fields), _limits(fields=2)).status == 431
    assert check_request(b"GET", b"/", b"1.1", list(fields), _limits(body=4)).status == 413
    # A block that differs by one byte is judged afresh.
    bad = [(b"host", b"example.com"), (b"content-length", b"5"), (b"accept", b"*/*\x7f")]
    assert check_request(b"GET", b"/", b"1.1", bad, loose).status == 400
    # No Host: fine for HTTP/1.0, not for HTTP/1.1, whichever comes first.
    no_host = [(b"accept", b"*/*")]
    assert accepted(check_request(b"GET", b"/", b"1.0", list(no_host), loose))
    assert check_request(b"GET", b"/", b"1.1", list(no_host), loose).status == 400


def _limits(*, head: int = 16384, fields: int = 100, body: int | None = None) -> RequestLimits:
    return RequestLimits(max_head_size=head, max_fields=fields, max_body=body)
