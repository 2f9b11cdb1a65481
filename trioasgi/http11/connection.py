"""One HTTP/1.1 connection: h11 parses, this module moves bytes and runs a cycle per request.

The connection's own task runs the whole exchange, application included:
read a request head, run the app for it (``http11.cycle.H11Cycle``), then
either start the next cycle or close. There is no reader task beside the
app: the app's ``receive()`` reads the socket itself, on demand, so the
server never reads further ahead than the app has asked for, pipelined
requests wait their turn in h11's buffer, and a keep-alive request costs no
task switch beyond the socket's own two checkpoints.

Timeouts are cancel scopes around the reads, never tasks: ``timeout_keep_alive``
while waiting for the first byte of a request, ``timeout_request_header`` from
that byte to the end of the header block (on a new connection: from the
accept), both as the deadline of one scope per connection, moved rather than
re-entered for every request. Every request head then goes through
``strict.check_request``.
"""

from __future__ import annotations

import math
import time
from http import HTTPStatus
from typing import Any, Protocol

import h11
import trio

from ..asgi.context import ServerState
from ..asgi.cycle import ServerResponse, log_server_response
from ..asgi.error_responses import error_content
from ..asgi.request import RequestHead
from ..core.logs import TRACE, logger
from ..core.proxy import peer_is_trusted
from ..core.socket_io import RECEIVE_SIZE, close_stream, plain_socket, read_ready, read_socket
from ..websocket.handshake import is_websocket_upgrade
from ..websocket.session import WebSocketSession
from .cycle import H11Cycle
from .disconnect import run_watched
from .handover import (
    PREFACE_HEAD,
    SWITCHING_TO_H2C,
    HTTP2Handover,
    NotHTTP1,
    h2c_settings,
    is_preface,
)
from .parser_pool import ParserPool
from .strict import FieldFacts, Rejection, RequestLimits, check_request
from .writer import DefaultHeaders

#: After a response that leaves unread request bytes behind, how long we keep
#: reading (and discarding) after our FIN so the client sees the response
#: rather than a reset (RFC 9112, section 9.6), and how much we read at most.
LINGER_SECONDS = 2.0
LINGER_BYTES = 1024 * 1024

#: At shutdown, how long a connection that has not sent its first request
#: yet may still take to send it (see ``_end_idle_wait``).
FIRST_REQUEST_GRACE = 1.0

#: What the wait for a request yields: a request head, the end of the
#: connection, or the parser's refusal of what it read.
_HeadEvent = RequestHead | h11.ConnectionClosed | h11.RemoteProtocolError

#: The most of an unread request body we read and drop to keep the connection.
DISCARD_LIMIT = 64 * 1024


class HTTP11Context(ServerState, Protocol):
    """What an HTTP/1.1 connection needs of its server (``serving.context.ServerContext``)."""

    #: Parsers lent to the connections while they read.
    parsers: ParserPool
    #: The request limits every connection checks.
    request_limits: RequestLimits
    #: The headers the server adds to a response that does not set them itself.
    response_defaults: DefaultHeaders


class HTTPConnection:
    """Serves the requests of one client connection, one after the other."""

    # Slots: an idle keep-alive connection is mostly this object, its task
    # and its parser, and a server may hold many thousands of them.
    __slots__ = (
        "_cancel_on_disconnect",
        "_fresh",
        "_idle_scope",
        "_last_read",
        "_linger",
        "_read_done",
        "_reading",
        "_timeouts",
        "_websocket",
        "_websocket_enabled",
        "client",
        "close_reason",
        "ctx",
        "h11",
        "handover",
        "plain_socket",
        "proxy_trusted",
        "scheme",
        "server",
        "shutting_down",
        "stream",
        "tls",
        "unyielded",
    )

    def __init__(
        self,
        stream: trio.abc.Stream,
        ctx: HTTP11Context,
        *,
        client: tuple[str, int] | None,
        server: tuple[str, int | None] | None,
        scheme: str = "http",
        tls: dict[str, Any] | None = None,
    ) -> None:
        self.stream = stream
        self.ctx = ctx
        self.client = client
        self.server = server
        #: "http" or "https"; a WebSocket scope makes it "ws" or "wss".
        self.scheme = scheme
        #: The ASGI ``tls`` scope extension, on a TLS connection.
        self.tls = tls
        # Decided once per connection, so a request from an untrusted peer
        # (or with proxy headers off) pays nothing for the feature.
        self.proxy_trusted = peer_is_trusted(ctx.trusted_proxies, client, server)
        # h11.Connection, or the httptools parser behind the same interface.
        self.h11 = ctx.parsers.take()
        self.shutting_down = False
        # No request has been served on this connection yet.
        self._fresh = True
        # The cancel scope of the wait for a new request while nothing of it
        # has arrived yet: a graceful shutdown cancels it to close idle connections.
        self._idle_scope: trio.CancelScope | None = None
        # The connection's timeout scope (see run).
        self._timeouts: trio.CancelScope | None = None
        # Only one task reads the socket at a time; the app may call
        # ``receive()`` from two tasks (a body reader and a disconnect watcher).
        self._reading = False
        self._read_done: trio.Event | None = None
        # Whether the last read brought bytes (False: EOF), for a task that
        # waited for another's read rather than reading itself.
        self._last_read = True
        # Decided once per connection: without the option no request pays
        # for the watcher (see http11.disconnect).
        self._cancel_on_disconnect = ctx.config.cancel_on_disconnect
        # Whether closing must wait for the client to stop sending (see _close).
        self._linger = False
        # A plain (not TLS) socket is read and written directly (see _socket_io).
        self.plain_socket = plain_socket(stream)
        self._websocket_enabled = ctx.config.ws != "none"
        self._websocket: WebSocketSession | None = None
        #: Set when the connection turns out to be HTTP/2's: the server runs that on it.
        self.handover: HTTP2Handover | None = None
        #: Why the connection ended, for the debug log; set on the way out.
        self.close_reason = "the client closed it"
        # Response bytes written since the task last yielded (see H11Cycle._write).
        self.unyielded = 0

    # -- life cycle -------------------------------------------------------

    async def run(self) -> None:
        """Serve requests until the client leaves, a timeout expires or we shut down."""
        try:
            # What the last wait read as its deadline passed, to serve in a fresh scope.
            pending: _HeadEvent | None = None
            while True:
                # One cancel scope for all the waits of the connection, not
                # one per request: its deadline is set while a request head
                # is awaited and is infinite while the app runs (and only
                # the wait itself can be cancelled at shutdown).
                with trio.CancelScope() as scope:
                    self._timeouts = scope
                    pending = await self._serve_requests(scope, pending)
                if scope.cancelled_caught:
                    await self._request_head_timed_out()
                    break
                if pending is None:
                    break
        finally:
            if self.handover is None:
                await self._close()

    async def _serve_requests(
        self, scope: trio.CancelScope, pending: _HeadEvent | None
    ) -> _HeadEvent | None:
        """Serve requests within ``scope``; what was read as its deadline passed, or None.

        A deadline that passes, or a shutdown that cancels the wait, just as
        a request arrives leaves ``scope`` cancelled with the request read:
        it is returned, to be served in a fresh scope rather than cancelled.
        """
        while True:
            if pending is None:
                # No shutting_down check here: a connection shut down before
                # its first request still answers one already in the parser's
                # buffer (see Server._handle_connection); the wait does not
                # wait for more, and _respond ends the loop after it.
                # The wait is awaited from here, not through a helper: each
                # coroutine frame between the task and the wait is memory
                # that every idle connection holds.
                try:
                    pending = self._arrived_head()
                    if pending is h11.NEED_DATA:
                        pending = await self._wait_for_request_head()
                        # Only a wait can be cancelled (no deadline is set
                        # otherwise, and shutdown cancels only a waiting scope).
                        if pending is not None and scope.cancel_called:
                            return pending
                except h11.RemoteProtocolError as exc:
                    pending = exc
                if pending is None:
                    return None
            if type(pending) is not RequestHead:
                if type(pending) is NotHTTP1 and self._fresh and self._may_switch_to_http2():
                    logger.log(TRACE, "%s: neither HTTP/1.1 nor HTTP/2: closing", self.client)
                    return None
                if isinstance(pending, h11.RemoteProtocolError):
                    await self._answer_error(pending.error_status_hint, str(pending))
                # ConnectionClosed: close_reason stands; nothing else can come before a request.
                return None
            request = pending
            # Nothing of the last request may stay reachable while the
            # connection waits, perhaps for long, for the next one.
            pending = None
            checked = self._check(request)
            if type(checked) is Rejection:
                if self._fresh and is_preface(request) and self._may_switch_to_http2():
                    # HTTP/2 with prior knowledge: the rest of the preface is in the parser.
                    self.handover = HTTP2Handover(PREFACE_HEAD + bytes(self.h11.trailing_data[0]))
                    return None
                await self._answer_error(checked.status, checked.reason, request)
                return None
            keep_going = await self._respond(request, checked)
            request = None
            if not keep_going:
                return None

    async def _respond(self, request: RequestHead, fields: FieldFacts) -> bool:
        """Serve one request; whether the connection can carry another."""
        self.h11.begin_response(request, fields)
        if fields.upgrade:
            if self._websocket_enabled and is_websocket_upgrade(request.headers):
                self.close_reason = "the WebSocket ended"
                await self._run_websocket(request)
                return False
            if self._may_switch_to_http2():
                settings = h2c_settings(request)
                if settings is not None:
                    return await self._upgrade_to_http2(request, settings)
        cycle = H11Cycle(self, request, fields.proxied)
        if self._cancel_on_disconnect:
            await run_watched(self, cycle)
        else:
            await cycle.run()
        if cycle.yield_owed:
            # The response's last write did not yield; yielding here, on a
            # short stack, still lets the client send its next request before
            # the connection looks for it (docs/performance-notes.md, round 4).
            await trio.lowlevel.cancel_shielded_checkpoint()
        self._fresh = False
        if not cycle.keep_alive or self.shutting_down:
            self.close_reason = _end_of_cycle(cycle.disconnected, self.shutting_down)
            return False
        # Usually the request was read to its end already: no coroutine for that.
        return self.h11.try_start_next_cycle() or await self._finish_request()

    def begin_shutdown(self) -> None:
        """Stop after the current response; close at once if we are between requests."""
        self.shutting_down = True
        if self._idle_scope is not None:
            self._end_idle_wait(self._idle_scope)
        if self._websocket is not None:
            self._websocket.begin_shutdown()

    def _may_switch_to_http2(self) -> bool:
        """HTTP/2 on this connection: in cleartext only (TLS chose with ALPN), when it is on."""
        return self.tls is None and self.ctx.config.http2 and not self.shutting_down

    async def _upgrade_to_http2(self, request: RequestHead, settings: bytes) -> bool:
        """Answer ``Upgrade: h2c`` with 101 and hand the request over as HTTP/2's stream 1."""
        if not await self._upgrade_has_no_body(request, "an h2c upgrade request"):
            return False
        try:
            await self.stream.send_all(SWITCHING_TO_H2C)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return False
        self.handover = HTTP2Handover(bytes(self.h11.trailing_data[0]), (request, settings))
        return False

    async def _run_websocket(self, request: RequestHead) -> None:
        """Hand the connection over to a WebSocket session; it never comes back to HTTP."""
        if not await self._upgrade_has_no_body(request, "a WebSocket upgrade request"):
            return
        self._websocket = WebSocketSession(self, request, bytes(self.h11.trailing_data[0]))
        if self.shutting_down:
            self._websocket.begin_shutdown()
        await self._websocket.run()

    async def _upgrade_has_no_body(self, request: RequestHead, what: str) -> bool:
        """Whether an upgrade request ends with its head; if not, it was answered 400.

        The new protocol's bytes start where the request ends: after a body
        they would start mid-body.
        """
        try:
            end = self.h11.next_event()
        except h11.RemoteProtocolError:
            end = None
        if type(end) is not h11.EndOfMessage:
            await self._answer_error(400, f"{what} cannot have a body", request)
            return False
        return True

    async def _finish_request(self) -> bool:
        """After a response that may keep the connection: read what is left of the request.

        Whether the connection can carry another request; if so, h11 is ready for it.
        """
        if self.h11.our_state is not h11.DONE:
            return False
        if self.h11.their_state is h11.SEND_BODY:
            # Usually the end of a body the app did not read (a GET's, empty)
            # is here already: skipped without starting the wait for the rest.
            try:
                event, discarded = self._skip_buffered_body(0)
            except h11.RemoteProtocolError:
                return False
            if event is h11.NEED_DATA and not await self._discard_request_body(discarded):
                return False
        if self.h11.their_state is not h11.DONE:
            return False
        self.h11.start_next_cycle()
        return True

    async def _discard_request_body(self, discarded: int) -> bool:
        """Read and skip the rest of a request body the app did not read, if it is small.

        ``discarded``: the bytes of it skipped so far. Cheaper for the client
        than a new connection; anything larger than :data:`DISCARD_LIMIT`,
        or slower than the keep-alive timeout, closes instead.
        """
        event = h11.NEED_DATA
        try:
            with trio.move_on_after(self.ctx.config.timeout_keep_alive):
                while event is h11.NEED_DATA and discarded <= DISCARD_LIMIT:
                    if not await self.receive_into_h11():
                        return False
                    event, discarded = self._skip_buffered_body(discarded)
        except h11.RemoteProtocolError:
            return False
        return type(event) is h11.EndOfMessage

    def _skip_buffered_body(self, discarded: int) -> tuple[Any, int]:
        """Drop the body bytes h11 already holds: the next other event, and the running count."""
        event = self.h11.next_event()
        while type(event) is h11.Data and discarded <= DISCARD_LIMIT:
            discarded += len(event.data)
            event = self.h11.next_event()
        return event, discarded

    async def _close(self) -> None:
        """Close the socket; linger if the client may still be sending to us."""
        stream = self.stream
        try:
            if (self._linger or self.h11.their_state is h11.SEND_BODY) and hasattr(
                stream, "send_eof"
            ):
                # Unread bytes in our receive buffer would make the kernel
                # answer with a reset, which can destroy the response we just
                # sent: send FIN first, then drain for a little while.
                with trio.move_on_after(LINGER_SECONDS) as self._idle_scope:
                    if self.shutting_down:
                        self._idle_scope.cancel()
                    await stream.send_eof()
                    drained = 0
                    while drained < LINGER_BYTES:
                        data = await stream.receive_some(RECEIVE_SIZE)
                        if not data:
                            break
                        drained += len(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.BusyResourceError):
            pass
        finally:
            await close_stream(stream)

    # -- reading ----------------------------------------------------------

    def _receive_ready(self) -> bool | None:
        """Read what has already arrived into h11, without waiting.

        True if bytes were read, False at EOF, None if nothing is there yet
        (or the stream is not a plain socket, or another task is reading).
        """
        sock = self.plain_socket
        if sock is None or self._reading:
            return None
        data = read_ready(sock)
        if data is None:
            return None
        return self._to_parser(data)

    def read_arrived(self, max_bytes: int) -> bool | None:
        """:meth:`_receive_ready` reading at most ``max_bytes``, for the request cycle."""
        sock = self.plain_socket
        if sock is None or self._reading:
            return None
        data = read_ready(sock, max_bytes)
        if data is None:
            return None
        return self._to_parser(data)

    async def receive_into_h11(self, *, nothing_there: bool = False) -> bool:
        """Read once from the socket into h11; False once the peer has closed.

        Concurrent callers are serialized: the second waits for the first's
        read rather than reading the socket at the same time, and takes that
        read as its own (what it brought is in h11 already; reading again
        could wait for bytes the client will never send).
        ``nothing_there``: a read just found nothing, wait before reading.
        """
        if self._reading:
            await self.wait_for_read()
            return self._last_read
        self._reading = True
        try:
            sock = self.plain_socket
            if sock is not None:
                data = await read_socket(sock, wait_first=nothing_there)
            else:
                data = await self.stream.receive_some(RECEIVE_SIZE)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            data = b""
        finally:
            self._reading = False
            if self._read_done is not None:
                self._read_done.set()
                self._read_done = None
        # Set before any waiter runs: it is woken above but runs only once we yield.
        self._last_read = got_data = self._to_parser(data)
        return got_data

    async def wait_for_read(self) -> None:
        """Wait until the next read of the socket, by any task, is done."""
        if self._read_done is None:
            self._read_done = trio.Event()
        await self._read_done.wait()

    def _to_parser(self, data: bytes) -> bool:
        """Hand what a read returned (``b""`` at EOF) to the parser; whether it was bytes."""
        self.h11.receive_data(data)
        return bool(data)

    def _check(self, request: RequestHead) -> Rejection | FieldFacts:
        """Why the app may not see this request (answered, then closed), or its fields' facts."""
        checked = check_request(
            request.method,
            request.target,
            request.http_version,
            request.headers,
            self.ctx.request_limits,
        )
        if type(checked) is not Rejection and self._over_capacity():
            return Rejection(503, "too many connections")
        return checked

    def _over_capacity(self) -> bool:
        limit = self.ctx.config.limit_concurrency
        return limit is not None and self.ctx.open_connections > limit

    def _end_idle_wait(self, scope: trio.CancelScope) -> None:
        """Shutdown: stop waiting for a request, at once if the connection has served one.

        A connection that has not served a request yet was accepted moments
        ago and its client has almost certainly sent a request already, or is
        about to: closing on it would reset it. It gets a short grace instead.
        """
        if self._fresh:
            scope.deadline = min(scope.deadline, trio.current_time() + FIRST_REQUEST_GRACE)
        else:
            scope.cancel()

    def _arrived_head(self) -> _HeadEvent | Any | None:
        """The next request head if it is here already, read without waiting.

        NEED_DATA if it is not (or only part of it is), None at EOF. A
        keep-alive client under load has usually sent its next request by
        the time we look: it is read without arming a deadline (moving a
        trio deadline costs more than the read) and without a scheduler step.
        """
        h11conn = self.h11
        if not h11conn.needs_data():
            event = h11conn.next_event()
            if event is not h11.NEED_DATA:
                return event
        got_data = self._receive_ready()
        if got_data is None:
            return h11.NEED_DATA
        event = h11conn.next_event()
        if event is h11.NEED_DATA and not got_data:  # EOF after a partial request head
            return None
        return event

    async def _wait_for_request_head(self) -> RequestHead | h11.ConnectionClosed | None:
        """Wait until a request head is complete, within the connection's timeout scope.

        Called when :meth:`_arrived_head` found no whole head. On timeout (or
        shutdown) the scope's ``Cancelled`` leaves ``run``'s loop, which then
        calls :meth:`_request_head_timed_out`.
        """
        # Part of a head is here already: the connection is no longer idle.
        fresh = self._fresh or bool(self.h11.trailing_data[0])
        scope = self._timeouts
        assert scope is not None
        event = h11.NEED_DATA
        config = self.ctx.config
        # A new connection has sent nothing yet: it gets the header timeout
        # from the start and a 408 if it stays silent. Between requests the
        # connection is idle and closes quietly after the keep-alive timeout
        # (a 408 there could cross a request the client just sent).
        timeout = config.timeout_request_header if fresh else config.timeout_keep_alive
        scope.deadline = trio.current_time() + timeout
        try:
            self._idle_scope = scope
            if self.shutting_down:
                self._end_idle_wait(scope)
            sock = self.plain_socket
            got_data = None
            if sock is not None and not self._reading:
                # Idle, perhaps for long: wait right here, with only trio's
                # frames below this one, and without a parser if ours holds
                # nothing (see _parser_pool).
                handed_in = self.ctx.parsers.hand_in(self.h11)
                if handed_in:
                    self.h11 = None
                try:
                    await trio.lowlevel.wait_readable(sock)
                except trio.ClosedResourceError:
                    pass  # closed meanwhile: read as EOF below
                finally:
                    if handed_in:
                        self.h11 = self.ctx.parsers.take()
                got_data = self._receive_ready()
            if got_data is None:  # not a plain socket, or woken with nothing to read
                got_data = await self.receive_into_h11(nothing_there=True)
            self._idle_scope = None
            event = self.h11.next_event()
            if event is h11.NEED_DATA and got_data:
                event = await self._read_rest_of_head(scope, fresh)
        finally:
            self._idle_scope = None
            # The app runs in this scope too: no deadline while it does.
            scope.deadline = math.inf
        if event is h11.NEED_DATA:  # EOF after a partial request head
            return None
        return event

    async def _read_rest_of_head(self, scope: trio.CancelScope, fresh: bool) -> Any:
        """Read until the head that has begun is complete: the parser's event, or NEED_DATA at EOF.

        Most heads come whole in one read, and never get here.
        """
        if not fresh:
            # Part of a request is here: the connection is no longer idle,
            # and the client has a while to finish the head.
            scope.deadline = trio.current_time() + self.ctx.config.timeout_request_header
        while True:
            got_data = await self.receive_into_h11()
            event = self.h11.next_event()
            if event is not h11.NEED_DATA or not got_data:
                return event

    async def _request_head_timed_out(self) -> None:
        """After the wait for a request head was cancelled: a 408, or a quiet close if idle."""
        h11conn = self.h11
        silent = h11conn.their_state is h11.IDLE and not h11conn.trailing_data[0]
        if silent and (not self._fresh or self.shutting_down):
            self.close_reason = "server shutdown" if self.shutting_down else "idle timeout"
            logger.log(TRACE, "closing idle connection from %s", self.client)
        else:
            await self._answer_error(408, "request head not received in time")

    # -- writing ----------------------------------------------------------

    async def _answer_error(
        self, status: int, detail: str, request: RequestHead | None = None
    ) -> None:
        """A response the server makes itself, outside any request cycle, and its access line."""
        config = self.ctx.config
        self.close_reason = f"answered {status} ({detail})"
        started = time.perf_counter() if config.access_log else 0.0
        sent = await self.send_error(status, detail)
        if config.access_log:
            response = ServerResponse(self, request, status, sent, started)
            log_server_response(response, config.access_log_format)

    async def send_error(self, status: int, detail: str) -> int:
        """Answer with a short plain-text error response, after which we close.

        The caller makes sure no other response has begun on the wire.
        The body bytes sent: 0 if the client was gone.
        """
        logger.log(TRACE, "%s: %d (%s)", self.client, status, detail)
        self._linger = True  # the client may still be sending what we refused
        data, body_size = error_response(status, date=self.ctx.date_header_value())
        try:
            with trio.move_on_after(LINGER_SECONDS) as scope:
                await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return 0
        return 0 if scope.cancelled_caught else body_size


def _end_of_cycle(disconnected: bool, shutting_down: bool) -> str:
    if disconnected:
        return "the client left during a response"
    if shutting_down:
        return "server shutdown"
    return "the response closes it"


def error_response(status: int, *, date: bytes | None) -> tuple[bytes, int]:
    """The raw bytes of a server-generated error response, which always closes, and its
    body's size."""
    body, fields = error_content(status)
    head = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}".encode()]
    head += [name + b": " + value for name, value in fields]
    head.append(b"connection: close")
    if date is not None:
        head.append(b"date: " + date)
    return b"\r\n".join(head) + b"\r\n\r\n" + body, len(body)
