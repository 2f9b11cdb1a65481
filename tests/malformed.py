"""Malformed and hostile request heads, with the status the server must answer.

One table for every test that needs it (and every HTTP parser the server can
run behind): each entry is ``(id, request bytes, expected status)``. After
the answer the connection must close, with the bytes that follow never
parsed as a request.
"""

from __future__ import annotations

_HOST = b"Host: x\r\n"


def _get(headers: bytes = _HOST, line: bytes = b"GET / HTTP/1.1") -> bytes:
    return line + b"\r\n" + headers + b"\r\n"


def _post(headers: bytes, body: bytes = b"") -> bytes:
    return b"POST / HTTP/1.1\r\n" + _HOST + headers + b"\r\n" + body


MALFORMED_REQUESTS: list[tuple[str, bytes, int]] = [
    # -- request line --
    ("garbage", b"GARBAGE\r\n\r\n", 400),
    ("http-0.9", b"GET /\r\n\r\n", 400),
    ("method-not-token", _get(line=b"G(T / HTTP/1.1"), 400),
    ("empty-target", _get(line=b"GET  HTTP/1.1"), 400),
    ("space-in-target", _get(line=b"GET /a b HTTP/1.1"), 400),
    ("ctl-in-target", _get(line=b"GET /a\x01b HTTP/1.1"), 400),
    ("nul-in-target", _get(line=b"GET /a\x00b HTTP/1.1"), 400),
    ("non-ascii-in-target", _get(line=b"GET /caf\xc3\xa9 HTTP/1.1"), 400),
    ("fragment-in-target", _get(line=b"GET /a#b HTTP/1.1"), 400),
    ("quote-in-target", _get(line=b'GET /a"b HTTP/1.1'), 400),
    ("angle-in-target", _get(line=b"GET /<script> HTTP/1.1"), 400),
    ("relative-target", _get(line=b"GET a/b HTTP/1.1"), 400),
    ("authority-form", _get(line=b"CONNECT example.com:443 HTTP/1.1"), 400),
    ("asterisk-not-options", _get(line=b"GET * HTTP/1.1"), 400),
    ("other-scheme", _get(line=b"GET ftp://x/ HTTP/1.1"), 400),
    ("http-2.0-as-text", _get(line=b"GET / HTTP/2.0"), 505),
    ("http-9.9", _get(line=b"GET / HTTP/9.9"), 505),
    ("http-1.2", _get(line=b"GET / HTTP/1.2"), 505),
    ("h2-preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),
    # -- header fields --
    ("bad-header-line", _get(_HOST + b"Bad Header\r\n"), 400),
    ("space-in-name", _get(_HOST + b"X Y: a\r\n"), 400),
    ("space-before-colon", _get(_HOST + b"X : a\r\n"), 400),
    ("non-token-name", _get(_HOST + b"X(y): a\r\n"), 400),
    ("nul-in-value", _get(_HOST + b"X: a\x00b\r\n"), 400),
    ("cr-in-value", _get(_HOST + b"X: a\rb\r\n"), 400),
    ("ctl-in-value", _get(_HOST + b"X: a\x01b\r\n"), 400),
    ("esc-in-value", _get(_HOST + b"X: a\x1bb\r\n"), 400),
    ("del-in-value", _get(_HOST + b"X: a\x7fb\r\n"), 400),
    ("leading-continuation", _get(b" X: a\r\n" + _HOST), 400),
    ("no-host", _get(b""), 400),
    ("two-hosts", _get(_HOST + b"Host: y\r\n"), 400),
    ("header-too-large", _get(_HOST + b"X-Big: " + b"a" * 20000 + b"\r\n"), 431),
    ("too-many-fields", _get(_HOST + b"".join(b"X-%d: v\r\n" % i for i in range(100))), 431),
    # -- framing (request smuggling) --
    ("cl-and-te", _post(b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n"), 400),
    ("te-and-cl", _post(b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", b"0\r\n\r\n"), 400),
    ("conflicting-cl", _post(b"Content-Length: 5\r\nContent-Length: 6\r\n", b"hello!"), 400),
    ("conflicting-cl-list", _post(b"Content-Length: 5, 6\r\n", b"hello!"), 400),
    ("negative-cl", _post(b"Content-Length: -1\r\n"), 400),
    ("plus-cl", _post(b"Content-Length: +5\r\n", b"hello"), 400),
    ("hex-cl", _post(b"Content-Length: 0x5\r\n", b"hello"), 400),
    ("te-gzip", _post(b"Transfer-Encoding: gzip\r\n"), 501),
    ("te-identity", _post(b"Transfer-Encoding: identity\r\n"), 501),
    ("te-chunked-not-last", _post(b"Transfer-Encoding: chunked, gzip\r\n"), 501),
    ("te-gzip-chunked", _post(b"Transfer-Encoding: gzip, chunked\r\n", b"0\r\n\r\n"), 501),
    ("te-twice", _post(b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"), 501),
    ("bad-chunk-size", _post(b"Transfer-Encoding: chunked\r\n", b"zz\r\nhello\r\n0\r\n\r\n"), 400),
    ("negative-chunk-size", _post(b"Transfer-Encoding: chunked\r\n", b"-5\r\nhello\r\n"), 400),
]

#: A valid request sent right after a malformed one: it must never be answered.
FOLLOW_UP = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
