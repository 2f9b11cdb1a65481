"""The httptools (llhttp) request parser behind the subset of ``h11.Connection`` we use.

:class:`HttptoolsConnection` offers ``receive_data``, ``next_event``,
``send``, ``our_state``/``their_state``, ``they_are_waiting_for_100_continue``,
``trailing_data`` and ``start_next_cycle`` with h11's meaning, and produces
h11's own event classes but for the request head (a ``RequestHead``, as
the h11 parser's wrapper in ``_parsers`` also gives), so ``_http11`` and
``_http_cycle`` have one code path for both parsers. It is sans-I/O like h11.

Strictness is not llhttp's alone: every request head goes through
``strict.check_request`` before anything else looks at it, as it does with
h11 (token names, field values without control characters, method and
target characters, one Host on HTTP/1.1, one Content-Length, ``chunked`` as
the only transfer coding), and the head size and field count are limited
while llhttp parses, before a big head is buffered (llhttp itself has no
such limits; httptools even gathers a field's name and value in memory
until the field ends).

Like h11, bytes are parsed only when ``next_event`` is called and nothing is
parsed past the end of a request until ``start_next_cycle``: while a
response is pending, ``next_event`` returns ``h11.PAUSED``.
"""

from __future__ import annotations

from typing import Any

import h11
import httptools

from ..asgi.request import RequestHead
from .handover import PREFACE_HEAD, NotHTTP1
from .strict import FieldFacts
from .writer import NO_DEFAULT_HEADERS, DefaultHeaders, WriterSide

#: The most header fields llhttp may hand us before we refuse with 431
#: (the server passes its ``limit_request_fields``).
DEFAULT_MAX_FIELDS = 100

_VERSIONS = {"1.1": b"1.1", "1.0": b"1.0"}

#: Every request's end is this one event: h11's events are immutable, and
#: making one per request costs more than the rest of the callback.
_END_OF_MESSAGE = h11.EndOfMessage()


def _status_for(error: Exception) -> int:
    """The status h11 and the strict checks give the request llhttp refused."""
    reason = str(error)
    if "HTTP version" in reason or "PRI" in reason:  # HTTP/9.9, or the HTTP/2 preface
        return 505
    if "`Transfer-Encoding`" in reason:  # a coding other than a final "chunked"
        return 501
    return 400


class _Refused(Exception):
    """Raised from a parser callback to stop llhttp at the first byte we refuse."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class HttptoolsConnection(WriterSide):
    """A server-side HTTP/1.1 connection parsed by httptools, speaking h11's interface."""

    def __init__(
        self,
        *,
        max_incomplete_event_size: int = 16 * 1024,
        max_fields: int = DEFAULT_MAX_FIELDS,
        defaults: DefaultHeaders = NO_DEFAULT_HEADERS,
    ) -> None:
        self._max_head = max_incomplete_event_size
        self._max_fields = max_fields
        self._parser = httptools.HttpRequestParser(self)
        # Bytes received but not fed to llhttp yet: usually none, or one
        # read's worth (joining to an empty bytes object does not copy).
        self._unparsed = b""
        self._closed = False
        # A list, not a deque: a deque preallocates ~600 bytes, and an idle
        # connection holds its parser for as long as it stays open.
        self._events: list[Any] = []
        super().__init__(defaults)
        self._their_state: Any = h11.IDLE
        self._expects_continue = False
        # The head being parsed.
        self._in_head = False
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        # Whether the head being parsed began in the current feed, and the
        # bytes of it fed since (see _feed).
        self._head_began = False
        self._head_bytes = 0

    # -- h11.Connection's interface -----------------------------------------

    @property
    def their_state(self) -> Any:
        return self._their_state_after_ours(self._their_state)

    @property
    def they_are_waiting_for_100_continue(self) -> bool:
        return self._expects_continue and not self._writer.responded

    @property
    def trailing_data(self) -> tuple[bytes, bool]:
        """Received bytes not yet delivered as events, and whether the peer closed.

        A request head llhttp has begun but not finished counts as one byte:
        the caller only asks whether a request has started.
        """
        pending = self._unparsed
        if not pending and self._in_head:
            pending = b"\0"
        return pending, self._closed

    def receive_data(self, data: bytes) -> None:
        if data:
            self._unparsed += data
        else:
            self._closed = True

    def needs_data(self) -> bool:
        """Whether ``next_event`` would surely say NEED_DATA: nothing unparsed, peer open."""
        return (
            not self._unparsed
            and not self._events
            and not self._closed
            and self._their_state is h11.IDLE
        )

    def next_event(self) -> Any:
        state = self._their_state
        if state is h11.DONE or state is h11.MUST_CLOSE:
            return h11.PAUSED
        if state is h11.ERROR:
            raise h11.RemoteProtocolError("Can't receive data when peer state is ERROR")
        if not self._events and self._unparsed:
            data = self._unparsed
            self._unparsed = b""
            self._feed(data)
        if self._events:
            return self._deliver(self._events.pop(0))
        if self._closed:
            if state is h11.IDLE and not self._in_head:
                self._their_state = h11.CLOSED
                return h11.ConnectionClosed()
            self._their_state = h11.ERROR
            raise h11.RemoteProtocolError("peer unexpectedly closed connection mid-request")
        return h11.NEED_DATA

    def start_next_cycle(self) -> None:
        if self.our_state is not h11.DONE or self.their_state is not h11.DONE:
            raise h11.LocalProtocolError("not in a reusable state")
        self._writer.reset()
        self._their_state = h11.IDLE

    def try_start_next_cycle(self) -> bool:
        """Start the next cycle if nothing is left of this one to read; whether it did.

        The usual end of a keep-alive request: the response is done, and
        the request's end (all there is of a GET) is parsed already. With
        a body still to skip, or a connection that must close, the caller
        takes its general path.
        """
        writer = self._writer
        if writer.our_state is not h11.DONE:  # (so the connection may stay open)
            return False
        state = self._their_state
        if state is h11.SEND_BODY:
            events = self._events
            if not events or events[0] is not _END_OF_MESSAGE:
                return False
            del events[0]
            self._expects_continue = False
        elif state is not h11.DONE:
            return False
        writer.reset()
        self._their_state = h11.IDLE
        return True

    def holds_nothing(self) -> bool:
        """Whether both sides are between requests, nothing buffered, the peer still there."""
        return self._writer.our_state is h11.IDLE and not self._in_head and self.needs_data()

    def renew(self) -> None:
        """Forget the requests parsed so far (between requests, nothing buffered).

        llhttp keeps a little state from one message to the next: a fresh
        parser (a quarter of a microsecond) guarantees none of it remains.
        """
        self._parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._headers = []

    # -- delivering parsed events -------------------------------------------

    def begin_response(self, head: RequestHead, fields: FieldFacts) -> None:
        """The connection accepted ``head``: our side now owes it a response."""
        self._writer.begin(head, fields.close)
        self._expects_continue = fields.expects_continue and head.http_version == b"1.1"

    def _deliver(self, event: Any) -> Any:
        kind = type(event)
        if kind is RequestHead:
            self._their_state = h11.SEND_BODY
            self._expects_continue = False
        elif kind is h11.Data:
            self._expects_continue = False
        elif kind is h11.EndOfMessage:
            self._expects_continue = False
            self._their_state = h11.DONE if self._writer.client_keep_alive else h11.MUST_CLOSE
        elif kind is h11.RemoteProtocolError:
            self._their_state = h11.ERROR
            raise event
        return event

    def _feed(self, data: bytes) -> None:
        self._head_began = False
        try:
            self._parser.feed_data(data)
            if self._in_head:
                self._limit_partial_head(len(data))
        except httptools.HttpParserUpgrade as upgrade:
            # An Upgrade request: llhttp stops after its head and leaves the
            # rest unparsed, as h11 does: ``trailing_data`` for a WebSocket
            # session, or the next request's bytes for a fresh parser if
            # the request is served as plain HTTP.
            self._unparsed = data[upgrade.args[0] :] + self._unparsed
            self._parser = httptools.HttpRequestParser(self)
            events = self._events
            ended = bool(events) and type(events[-1]) is h11.EndOfMessage
            if ended:  # llhttp reports the end of the head as the end of the message
                events.pop()
            if events and type(events[-1]) is RequestHead:
                if _declares_body(events[-1]):
                    # llhttp would hand the body over as the new protocol's
                    # bytes, h11 would read it as a body: refuse either way.
                    events.append(
                        h11.RemoteProtocolError("an upgrade request cannot have a body", 400)
                    )
                else:
                    events.append(_END_OF_MESSAGE)
            elif ended:
                events.append(_END_OF_MESSAGE)
        except _Refused as refused:
            self._events.append(h11.RemoteProtocolError(str(refused), refused.status))
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, _Refused):
                self._events.append(h11.RemoteProtocolError(str(cause), cause.status))
            elif isinstance(cause, h11.LocalProtocolError):
                self._events.append(h11.RemoteProtocolError(str(cause), cause.error_status_hint))
            else:
                self._events.append(h11.RemoteProtocolError(f"bad request: {exc}", 400))
        except httptools.HttpParserInvalidMethodError as exc:
            self._events.append(NotHTTP1(f"bad request: {exc}", 400))  # see NotHTTP1
        except httptools.HttpParserError as exc:
            if not self._events and data.startswith(PREFACE_HEAD):
                # llhttp stops at HTTP/2's preface; h11 reads its first line as a
                # head: the connection tells it from a request the same way.
                self._parser = httptools.HttpRequestParser(self)
                self._in_head = False
                self._unparsed = data[len(PREFACE_HEAD) :] + self._unparsed
                self._events.append(RequestHead(b"PRI", b"*", b"2.0", []))
                return
            self._events.append(h11.RemoteProtocolError(f"bad request: {exc}", _status_for(exc)))

    def _limit_partial_head(self, size: int) -> None:
        """After a feed that ends inside a head: refuse it once it is surely too large.

        Only feeds that began inside the head count, all of whose bytes are
        the head's: never more than its true size, and at most one read
        (the one it began in) less. The exact limit is applied to a complete
        head, by ``strict.check_request``; this one bounds what llhttp and
        httptools hold of a head that never ends (a field with no end of line).
        """
        if self._head_began:
            return
        self._head_bytes += size
        if self._head_bytes > self._max_head:
            raise _Refused("request header block too large", 431)

    # -- llhttp callbacks -----------------------------------------------------

    def on_message_begin(self) -> None:
        self._in_head = self._head_began = True
        self._url = b""
        self._headers = []
        self._head_bytes = 0

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        headers = self._headers
        if len(headers) >= self._max_fields:
            raise _Refused(f"more than {self._max_fields} header fields", 431)
        # llhttp strips the whitespace before a value, not after it. The
        # characters are checked with the whole head, by strict.check_request.
        headers.append((name.lower(), value.rstrip(b" \t")))

    def on_headers_complete(self) -> None:
        parser = self._parser
        version = _VERSIONS.get(parser.get_http_version())
        if version is None:
            if parser.get_http_version() == "0.9":  # "GET /": no version at all
                raise _Refused("invalid request line", 400)
            raise _Refused(f"unsupported HTTP version {parser.get_http_version()!r}", 505)
        self._in_head = False
        self._events.append(RequestHead(parser.get_method(), self._url, version, self._headers))

    def on_body(self, body: bytes) -> None:
        self._events.append(h11.Data(data=body))

    def on_message_complete(self) -> None:
        self._events.append(_END_OF_MESSAGE)


def _declares_body(request: RequestHead) -> bool:
    for name, value in request.headers:
        if name == b"transfer-encoding" or (name == b"content-length" and value != b"0"):
            return True
    return False
