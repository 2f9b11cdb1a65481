"""Our side of an HTTP/1.1 connection: h11's rules for responses, fewer Python calls.

:class:`ResponseWriter` turns h11 ``InformationalResponse``/``Response``/
``Data``/``EndOfMessage`` events into bytes exactly as ``h11.Connection.send``
would for a server, whichever parser (h11 or httptools) read the request:
the same validation (status range, token header names, no CR, LF or NUL and
no surrounding whitespace in values, one Content-Length, only ``chunked`` as
a transfer coding), the same framing choice (Content-Length,
chunked for HTTP/1.1 clients, close-delimited for HTTP/1.0 ones, no body for
HEAD, 204 and 304) and the same ``Connection: close`` rewriting. Errors are
``h11.LocalProtocolError``, so the connection code handles both parsers alike.

Header pairs an app sends again and again (content-type, a fixed
content-length) are validated once and remembered in a small cache. The
headers the server adds itself (``server``, ``date``, ``--header``) are
:class:`DefaultHeaders`: rendered once (the date once a second) and added in
the same pass that writes the app's headers.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from http import HTTPStatus
from typing import Any, NamedTuple

import h11

from ..asgi.request import RequestHead
from ..core.date import http_date

_token = re.compile(rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]+").fullmatch
_field_value = re.compile(rb"(?:[^\x00\s]+(?:[ \t]+[^\x00\s]+)*)?").fullmatch
_reason = re.compile(rb"(?:[ \t]|[^\x00\s])*").fullmatch
_content_length = re.compile(rb"[0-9]{1,20}").fullmatch

#: (name, value) pairs already validated: their lower-cased name and their header line.
_validated: dict[tuple[bytes, bytes], tuple[bytes, bytes]] = {}
_VALIDATED_MAX = 512

#: Status lines already made, by (status, reason).
_status_lines: dict[tuple[int, bytes], bytes] = {}

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"

#: The reason phrase written when the app gives none (ASGI never does).
_REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}

#: Lower-case names the writer must look at rather than copy: they decide the framing.
_FRAMING_NAMES = frozenset({b"content-length", b"transfer-encoding", b"connection"})


def validated_header(name: bytes, value: bytes) -> tuple[bytes, bytes]:
    """A valid header's lower-cased name and its ``name: value`` line (h11's rules).

    Raises ``h11.LocalProtocolError`` if it is invalid.
    """
    key = (name, value)
    try:
        known = _validated.get(key)
    except TypeError:  # a bytearray (unhashable): valid too, as bytes
        return validated_header(bytes(name), bytes(value))
    if known is not None:
        return known
    if type(name) is not bytes or type(value) is not bytes:
        raise h11.LocalProtocolError("header names and values must be bytes")
    if _token(name) is None:
        raise h11.LocalProtocolError(f"Illegal header name {name!r}")
    if _field_value(value) is None:
        raise h11.LocalProtocolError(f"Illegal header value {value!r}")
    if len(_validated) >= _VALIDATED_MAX:
        _validated.clear()
    known = _validated[key] = (name.lower(), b"%s: %s\r\n" % key)
    return known


#: How many response heads each server remembers, and the largest it remembers.
_KNOWN_HEADS_MAX = 256
_KNOWN_HEAD_BYTES = 2048


class _Head(NamedTuple):
    """A validated response head, less the server's default headers, and its framing."""

    start: bytes  # the status line and the app's own header lines
    default_names_set: set[bytes] | None  # default headers the app set itself (rarely any)
    end: bytes  # the framing header, "connection: close" if so, the blank line
    framing: str
    remaining: int
    keep_alive: bool


class DefaultHeaders:
    """The headers the server adds to every response that does not set them itself.

    ``headers`` are (lower-case name, value) pairs in the order they are
    written; a value of None stands for the current date (it changes once
    a second).
    """

    __slots__ = (
        "_block",
        "_block_second",
        "_dated",
        "_headers",
        "_lines",
        "known_heads",
        "names",
        "special",
    )

    def __init__(self, headers: list[tuple[bytes, bytes | None]]) -> None:
        self._headers = headers
        # (name, line); the date's line is None: it is made when written.
        self._lines = [
            (name, None if value is None else validated_header(name, value)[1])
            for name, value in headers
        ]
        self._dated = any(value is None for _, value in headers)
        #: The names the server may add: a response that sets one keeps its own.
        self.names = frozenset(name for name, _ in headers)
        #: The names the writer must look at in a response's headers.
        self.special = _FRAMING_NAMES | self.names
        self._block_second = -1
        self._block = b"".join(self._rendered(b"", ()))
        #: The response heads made with these defaults, by everything they
        #: depend on but the date (see ``ResponseWriter.send_response``).
        self.known_heads: dict[tuple[Any, ...], _Head] = {}

    def remember(self, key: tuple[Any, ...], head: _Head) -> None:
        """Keep ``head`` for the next response made from ``key``; bounded in count and size."""
        if len(head.start) + len(head.end) > _KNOWN_HEAD_BYTES:
            return
        if len(self.known_heads) >= _KNOWN_HEADS_MAX:
            self.known_heads.clear()
        self.known_heads[key] = head

    def block(self) -> bytes:
        """All the lines, for a response that sets none of them (the usual case)."""
        if self._dated:
            second = int(time.time())
            if second != self._block_second:
                self._block_second = second
                self._block = b"".join(self._rendered(http_date(), ()))
        return self._block

    def pairs(self, without: Iterable[bytes] = ()) -> list[tuple[bytes, bytes]]:
        """The headers as (name, value) pairs, the date current; names in ``without`` left out."""
        date = http_date() if self._dated else b""
        return [
            (name, date if value is None else value)
            for name, value in self._headers
            if name not in without
        ]

    def lines_without(self, seen: set[bytes]) -> list[bytes]:
        """The lines whose names the response did not set itself."""
        return self._rendered(http_date() if self._dated else b"", seen)

    def _rendered(self, date: bytes, seen: Any) -> list[bytes]:
        return [
            line if line is not None else b"%s: %s\r\n" % (name, date)
            for name, line in self._lines
            if name not in seen
        ]


#: No headers added: the writer on its own, as in the tests.
NO_DEFAULT_HEADERS = DefaultHeaders([])


class ResponseWriter:
    """Our half of a server connection: its h11 state, and the bytes of each response.

    ``our_state`` moves like h11's server state: IDLE, SEND_RESPONSE once a
    request arrived (:meth:`begin`), SEND_BODY after the head, then DONE, or
    MUST_CLOSE when the connection cannot be kept alive; ERROR after a refused
    event.
    """

    # One per connection, kept while it is idle.
    __slots__ = (
        "client_http_11",
        "client_keep_alive",
        "defaults",
        "framing",
        "keep_alive",
        "our_state",
        "remaining",
        "request_method",
        "responded",
    )

    def __init__(self, defaults: DefaultHeaders = NO_DEFAULT_HEADERS) -> None:
        #: What the server adds to every response.
        self.defaults = defaults
        self.our_state: Any = h11.IDLE
        self.request_method = b"GET"
        self.client_http_11 = True
        #: Whether the request allows the connection to be kept alive.
        self.client_keep_alive = True
        #: Whether it still may be, after our response head.
        self.keep_alive = True
        #: "length", "chunked" or "close" once the response head is out.
        self.framing: str | None = None
        self.remaining = 0
        #: Whether a 100-continue or final response has been sent this cycle.
        self.responded = False

    def begin(self, head: RequestHead, close_requested: bool) -> None:
        """A new request arrived; ``close_requested``: its Connection field says "close"."""
        self.our_state = h11.SEND_RESPONSE
        self.request_method = head.method
        self.client_http_11 = http_11 = head.http_version == b"1.1"
        self.client_keep_alive = self.keep_alive = http_11 and not close_requested
        self.framing = None
        self.responded = False

    def reset(self) -> None:
        """Between requests (``start_next_cycle``)."""
        self.our_state = h11.IDLE

    def send(self, event: Any) -> bytes:
        """What ``h11.Connection.send`` returns for ``event``, with the same checks."""
        try:
            return self._send(event)
        except h11.LocalProtocolError:
            self.our_state = h11.ERROR
            raise

    def _send(self, event: Any) -> bytes:
        kind = type(event)
        if kind is h11.Data:
            return self.send_body(event.data, False)
        if kind is h11.EndOfMessage:
            if self.our_state is not h11.SEND_BODY:
                raise h11.LocalProtocolError("can't end a response not started")
            return self.send_body(b"", True)
        if kind is h11.Response:
            return self.send_response(event.status_code, event.headers.raw_items(), event.reason)
        if kind is h11.InformationalResponse:
            if self.our_state is not h11.SEND_RESPONSE:
                raise h11.LocalProtocolError("can't send an informational response now")
            self.responded = True
            return self.informational(event)
        raise h11.LocalProtocolError(f"can't send {kind.__name__}")

    def send_response(
        self,
        status: int,
        headers: Iterable[tuple[bytes, bytes]],
        reason: bytes | None = None,
        *,
        close: bool = False,
    ) -> bytes:
        """``send(h11.Response(...))`` without building and validating the event first.

        The response head, with the server's default headers unless
        ``headers`` set them; decides the framing of the body that follows.
        ``close`` ends the connection after this response.
        """
        if self.our_state is not h11.SEND_RESPONSE:
            self.our_state = h11.ERROR
            raise h11.LocalProtocolError("can't send a response now")
        if type(status) is not int or not 200 <= status <= 999:
            self.our_state = h11.ERROR
            raise h11.LocalProtocolError(f"response status must be in [200, 1000), not {status!r}")
        fields = headers if type(headers) is tuple else tuple(headers)
        # Everything the head depends on but the date; an app answers with the
        # same few heads again and again.
        key = (
            status,
            reason,
            fields,
            close,
            self.request_method,
            self.client_http_11,
            self.keep_alive,
        )
        defaults = self.defaults
        try:
            head = defaults.known_heads.get(key)
        except TypeError:  # a list or bytearray among the fields: valid, not remembered
            head = key = None
        if head is None:
            try:
                head = self._new_head(status, fields, reason, close)
            except h11.LocalProtocolError:
                self.our_state = h11.ERROR
                raise
            if key is not None:
                defaults.remember(key, head)
        start, default_names_set, end, self.framing, self.remaining, self.keep_alive = head
        self.our_state = h11.SEND_BODY
        self.responded = True
        if default_names_set is None:
            return start + defaults.block() + end
        return b"".join((start, *defaults.lines_without(default_names_set), end))

    def send_body(self, body: bytes, end: bool) -> bytes:
        """``send(Data(data=body))`` (if ``body``), then ``send(EndOfMessage())`` if ``end``.

        The same checks and state changes, without building the two events.
        """
        if self.our_state is not h11.SEND_BODY:
            self.our_state = h11.ERROR
            raise h11.LocalProtocolError("can't send data before the response head")
        framing = self.framing
        if framing == "length":
            remaining = self.remaining - len(body)
            if remaining < 0 or (end and remaining):
                self.our_state = h11.ERROR
                too = "much" if remaining < 0 else "little"
                raise h11.LocalProtocolError(f"Too {too} data for declared Content-Length")
            self.remaining = remaining
            data = bytes(body)
        elif framing == "chunked":
            data = b"%x\r\n%s\r\n" % (len(body), body) if body else b""
            if end:
                data += b"0\r\n\r\n"
        else:  # "close": the body ends when the connection does
            data = bytes(body)
        if end:
            self.our_state = h11.DONE if self.keep_alive else h11.MUST_CLOSE
        return data

    def end_with_trailers(self, fields: Iterable[tuple[bytes, bytes]]) -> bytes:
        """The end of a chunked body with a trailer section (RFC 9112, 7.1.2).

        The caller sends trailers only to a client that said ``TE: trailers``
        and on a chunked response; with any other framing they are dropped
        and the body simply ends.
        """
        if self.framing != "chunked":
            return self.send_body(b"", True)
        lines = [validated_header(bytes(name), bytes(value))[1] for name, value in fields]
        data = self.send_body(b"", True)  # the same checks and state change
        return data[: -len(b"\r\n")] + b"".join(lines) + b"\r\n"

    def frame_file(self, count: int, end: bool) -> tuple[bytes, bytes]:
        """What goes before and after ``count`` body bytes sent from a file.

        The same checks and state changes as ``send_body`` with a body of that
        length, for bytes that never pass through here (``os.sendfile``).
        """
        if self.our_state is not h11.SEND_BODY:
            self.our_state = h11.ERROR
            raise h11.LocalProtocolError("can't send data before the response head")
        before = after = b""
        if self.framing == "length":
            remaining = self.remaining - count
            if remaining < 0 or (end and remaining):
                self.our_state = h11.ERROR
                too = "much" if remaining < 0 else "little"
                raise h11.LocalProtocolError(f"Too {too} data for declared Content-Length")
            self.remaining = remaining
        elif self.framing == "chunked":
            if count:
                before, after = b"%x\r\n" % count, b"\r\n"
            if end:
                after += b"0\r\n\r\n"
        if end:
            self.our_state = h11.DONE if self.keep_alive else h11.MUST_CLOSE
        return before, after

    def informational(self, event: h11.InformationalResponse) -> bytes:
        if event.status_code == 100 and not event.headers:
            return _CONTINUE
        lines = [validated_header(name, value)[1] for name, value in event.headers.raw_items()]
        return _head(event.status_code, event.reason, lines)

    def _new_head(
        self, status: int, headers: Iterable[tuple[bytes, bytes]], reason: bytes | None, close: bool
    ) -> _Head:
        """Validate a response head not seen before, and choose its framing."""
        lines, seen, lengths, chunked, asks_close = self._header_lines(headers)
        start = _status_line(status, reason) + b"".join(lines)
        end: list[bytes] = []
        framing, remaining, close_delimited = self._framing(status, end, lengths, chunked)
        keep_alive = self.keep_alive and not (close_delimited or close or asks_close)
        if not keep_alive:
            end.append(b"connection: close\r\n")
        end.append(b"\r\n")
        return _Head(start, seen, b"".join(end), framing, remaining, keep_alive)

    def _header_lines(
        self, headers: Iterable[tuple[bytes, bytes]]
    ) -> tuple[list[bytes], set[bytes] | None, set[bytes], bool, bool]:
        """The lines to write for the app's ``headers``, in order, and what the rest depends on.

        That is: the default header names the app set itself (None if none,
        the usual case), the Content-Length values, whether the app asked
        for chunked, and whether it asked to close.
        """
        special = self.defaults.special
        kept: list[bytes] = []
        seen: set[bytes] | None = None
        lengths: set[bytes] = set()
        chunked = close = False
        for name, value in headers:
            lowered, line = validated_header(name, value)
            if lowered not in special:
                kept.append(line)
            elif lowered == b"content-length":
                if value.isdigit() and len(value) <= 20:  # the usual single length
                    lengths.add(bytes(value))  # (a bytearray is valid, but unhashable)
                else:
                    for part in value.split(b","):
                        part = part.strip()
                        if _content_length(part) is None:
                            raise h11.LocalProtocolError("bad Content-Length")
                        lengths.add(part)
                if len(lengths) != 1:
                    raise h11.LocalProtocolError("conflicting Content-Length headers")
            elif lowered == b"transfer-encoding":
                if chunked or value.lower() != b"chunked":
                    raise h11.LocalProtocolError(
                        "Only Transfer-Encoding: chunked is supported", error_status_hint=501
                    )
                chunked = True
            elif lowered == b"connection":
                tokens = {token.strip().lower() for token in value.split(b",")}
                close = close or b"close" in tokens
                tokens.discard(b"keep-alive")
                tokens.discard(b"close")
                if tokens:
                    kept.append(b"%s: %s\r\n" % (name, b", ".join(sorted(tokens))))
            else:  # a default header the app sets itself
                kept.append(line)
                if seen is None:
                    seen = set()
                seen.add(lowered)
        return kept, seen, lengths, chunked, close

    def _framing(
        self, status: int, lines: list[bytes], lengths: set[bytes], chunked: bool
    ) -> tuple[str, int, bool]:
        """How the body is delimited (h11's rules): framing, length, whether only a close ends it.

        Adds the framing header to ``lines``.
        """
        method = self.request_method
        close = False
        remaining = 0
        # Like h11: the headers of a response to HEAD say what GET would
        # have had; 204, 304 and 2xx to CONNECT have no body whatever they say.
        no_body = status in (204, 304) or (method == b"CONNECT" and status < 300)
        if no_body:
            framing = "length"
            if lengths:
                lines.append(b"content-length: %s\r\n" % next(iter(lengths)))
            if chunked:
                lines.append(b"transfer-encoding: chunked\r\n")
        elif chunked or not lengths:
            if self.client_http_11:
                framing = "chunked"
                lines.append(b"transfer-encoding: chunked\r\n")
            else:
                # An HTTP/1.0 client: the body ends when the connection does.
                framing = "close"
                close = method != b"HEAD"
        else:
            framing = "length"
            length = next(iter(lengths))
            remaining = int(length)
            lines.append(b"content-length: %s\r\n" % length)
        if method == b"HEAD":
            framing = "length"
            remaining = 0
        return framing, remaining, close


def _status_line(status: int, reason: bytes | None) -> bytes:
    key = (status, reason)
    status_line = _status_lines.get(key)
    if status_line is None:
        if reason is None:  # the usual phrase
            reason = _REASONS.get(status, b"")
        elif _reason(reason) is None:
            raise h11.LocalProtocolError(f"Illegal reason phrase {reason!r}")
        status_line = b"HTTP/1.1 %d %s\r\n" % (status, reason)
        if len(_status_lines) < _VALIDATED_MAX:
            _status_lines[key] = status_line
    return status_line


def _head(status: int, reason: bytes | None, lines: list[bytes]) -> bytes:
    """Status line and header block; the header lines are validated already."""
    return _status_line(status, reason) + b"".join(lines) + b"\r\n"


class WriterSide:
    """The response half of ``h11.Connection``'s interface, over a :class:`ResponseWriter`.

    Both parsers' connection states (``parsers.H11Connection``,
    ``httptools_parser.HttptoolsConnection``) are built on it: they differ in
    how they read requests, not in how responses are written.
    """

    def __init__(self, defaults: DefaultHeaders = NO_DEFAULT_HEADERS) -> None:
        self._writer = writer = ResponseWriter(defaults)
        # Bound once: the request cycle calls them for every response.
        self.send = writer.send
        self.send_response = writer.send_response
        self.send_body = writer.send_body
        self.frame_file = writer.frame_file

    def end_with_trailers(self, fields: Any) -> bytes:
        return self._writer.end_with_trailers(fields)

    @property
    def our_state(self) -> Any:
        return self._writer.our_state

    def _their_state_after_ours(self, state: Any) -> Any:
        """The client's state as h11 reports it: DONE is MUST_CLOSE once our response
        has given up keep-alive."""
        if state is h11.DONE and not self._writer.keep_alive:
            return h11.MUST_CLOSE
        return state
