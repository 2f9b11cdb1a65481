"""Malformed and hostile request heads, with the status the server must answer.

One table for every test that needs it (and every HTTP parser the server can
run behind): each entry is ``(id, request bytes, expected status)``. After
the answer the connection must close, with the bytes that follow never
parsed as a request.
"""

from __future__ import annotations

HOST = b"Host: x\r\n"


def get_request(headers: bytes = HOST, line: bytes = b"GET / HTTP/1.1") -> bytes:
    """A request head: ``line``, then ``headers`` (whole lines, CRLF included)."""
    return line + b"\r\n" + headers + b"\r\n"


def post_request(headers: bytes, body: bytes = b"") -> bytes:
    """A POST to / with a Host, ``headers`` and ``body``."""
    return b"POST / HTTP/1.1\r\n" + HOST + headers + b"\r\n" + body


MALFORMED_REQUESTS: list[tuple[str, bytes, int]] = [
    # -- request line --
    ("garbage", b"GARBAGE\r\n\r\n", 400),
    ("http-0.9", b"GET /\r\n\r\n", 400),
    ("method-not-token", get_request(line=b"G(T / HTTP/1.1"), 400),
    ("empty-target", get_request(line=b"GET  HTTP/1.1"), 400),
    ("space-in-target", get_request(line=b"GET /a b HTTP/1.1"), 400),
    ("ctl-in-target", get_request(line=b"GET /a\x01b HTTP/1.1"), 400),
    ("nul-in-target", get_request(line=b"GET /a\x00b HTTP/1.1"), 400),
    ("non-ascii-in-target", get_request(line=b"GET /caf\xc3\xa9 HTTP/1.1"), 400),
    ("fragment-in-target", get_request(line=b"GET /a#b HTTP/1.1"), 400),
    ("quote-in-target", get_request(line=b'GET /a"b HTTP/1.1'), 400),
    ("angle-in-target", get_request(line=b"GET /<script> HTTP/1.1"), 400),
    ("relative-target", get_request(line=b"GET a/b HTTP/1.1"), 400),
    ("authority-form", get_request(line=b"CONNECT example.com:443 HTTP/1.1"), 400),
    ("asterisk-not-options", get_request(line=b"GET * HTTP/1.1"), 400),
    ("other-scheme", get_request(line=b"GET ftp://x/ HTTP/1.1"), 400),
    ("http-2.0-as-text", get_request(line=b"GET / HTTP/2.0"), 505),
    ("http-9.9", get_request(line=b"GET / HTTP/9.9"), 505),
    ("http-1.2", get_request(line=b"GET / HTTP/1.2"), 505),
    ("h2-preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),
    # -- header fields --
    ("bad-header-line", get_request(HOST + b"Bad Header\r\n"), 400),
    ("space-in-name", get_request(HOST + b"X Y: a\r\n"), 400),
    ("space-before-colon", get_request(HOST + b"X : a\r\n"), 400),
    ("non-token-name", get_request(HOST + b"X(y): a\r\n"), 400),
    ("nul-in-value", get_request(HOST + b"X: a\x00b\r\n"), 400),
    ("cr-in-value", get_request(HOST + b"X: a\rb\r\n"), 400),
    ("ctl-in-value", get_request(HOST + b"X: a\x01b\r\n"), 400),
    ("esc-in-value", get_request(HOST + b"X: a\x1bb\r\n"), 400),
    ("del-in-value", get_request(HOST + b"X: a\x7fb\r\n"), 400),
    ("leading-continuation", get_request(b" X: a\r\n" + HOST), 400),
    ("no-host", get_request(b""), 400),
    ("two-hosts", get_request(HOST + b"Host: y\r\n"), 400),
    ("header-too-large", get_request(HOST + b"X-Big: " + b"a" * 20000 + b"\r\n"), 431),
    ("too-many-fields", get_request(HOST + b"".join(b"X-%d: v\r\n" % i for i in range(100))), 431),
    # -- framing (request smuggling) --
    (
        "cl-and-te",
        post_request(b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n"),
        400,
    ),
    (
        "te-and-cl",
        post_request(b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", b"0\r\n\r\n"),
        400,
    ),
    ("conflicting-cl", post_request(b"Content-Length: 5\r\nContent-Length: 6\r\n", b"hello!"), 400),
    ("conflicting-cl-list", post_request(b"Content-Length: 5, 6\r\n", b"hello!"), 400),
    ("negative-cl", post_request(b"Content-Length: -1\r\n"), 400),
    ("plus-cl", post_request(b"Content-Length: +5\r\n", b"hello"), 400),
    ("hex-cl", post_request(b"Content-Length: 0x5\r\n", b"hello"), 400),
    ("te-gzip", post_request(b"Transfer-Encoding: gzip\r\n"), 501),
    ("te-identity", post_request(b"Transfer-Encoding: identity\r\n"), 501),
    ("te-chunked-not-last", post_request(b"Transfer-Encoding: chunked, gzip\r\n"), 501),
    ("te-gzip-chunked", post_request(b"Transfer-Encoding: gzip, chunked\r\n", b"0\r\n\r\n"), 501),
    (
        "te-twice",
        post_request(b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"),
        501,
    ),
    (
        "bad-chunk-size",
        post_request(b"Transfer-Encoding: chunked\r\n", b"zz\r\nhello\r\n0\r\n\r\n"),
        400,
    ),
    (
        "negative-chunk-size",
        post_request(b"Transfer-Encoding: chunked\r\n", b"-5\r\nhello\r\n"),
        400,
    ),
]

#: Heads far over the limits (what uvicorn with httptools accepts): kept out of
#: the table above, which also seeds the fuzzer, because of their size.
OVERSIZED_REQUESTS: list[tuple[str, bytes, int]] = [
    ("header-200kb", get_request(HOST + b"X-Big: " + b"a" * 200_000 + b"\r\n"), 431),
    ("20000-headers", get_request(HOST + b"".join(b"X-%d: v\r\n" % i for i in range(20_000))), 431),
]

#: A valid request sent right after a malformed one: it must never be answered.
FOLLOW_UP = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
