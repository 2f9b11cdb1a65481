"""One HTTP request and its response, as the ASGI application sees them.

:class:`RequestCycle` builds the scope, runs the app, and implements its
``receive`` and ``send``. The response is an explicit state machine
(``_ResponseState``) so an app that sends messages out of order is caught at
the message that breaks the order.

``send`` writes as little and as late as it can: the response head waits
for the first body message so that a simple response leaves in one
``send_all``, and a body message returns only once its bytes are handed to
the socket, so a slow reader holds the app back rather than filling memory.

Every write is a cancellation point and every write but a plain socket's
last one a scheduling point. That last yield is left to the connection,
which takes it once the app has returned (``yield_owed``): a task yields
and resumes through every coroutine frame it is suspended in, and inside
the app's ``send`` those are all the app's own (a Starlette app's
middleware, routing and endpoint: 7.5k instructions per request, 2.4 %).
"""

from __future__ import annotations

import enum
import logging
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import h11
import trio

from ._access_log import format_access_line
from ._logging import access_logger, logger
from ._proxy import forwarded_client_and_scheme
from ._request_head import RequestHead
from ._socket_io import write_socket

if TYPE_CHECKING:
    from ._http11 import HTTPConnection

ASGI_VERSION = {"version": "3.0", "spec_version": "2.5"}

#: Bytes of a pipelined next request we accept while watching for a
#: disconnect during the current one; past this the socket is left unread.
PIPELINE_READ_LIMIT = 64 * 1024

_NO_BODY_STATUSES = frozenset({204, 304})

# The scope's strings for the usual methods and versions, decoded once.
_METHODS = {
    method.encode(): method
    for method in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")
}
_HTTP_VERSIONS = {b"1.1": "1.1", b"1.0": "1.0"}


class ClientDisconnected(OSError):
    """Raised by ``send()`` once the client has gone (ASGI HTTP spec 2.4)."""


class _ResponseState(enum.Enum):
    START = "waiting for http.response.start"
    BODY = "waiting for http.response.body"
    COMPLETE = "complete"


# The states as globals for the per-request code: on Python 3.11 ``EnumType``
# has a ``__getattr__``, which makes each ``_ResponseState.START`` lookup some
# ten times the cost of reading a global.
_START, _BODY, _COMPLETE = _ResponseState.START, _ResponseState.BODY, _ResponseState.COMPLETE


class RequestCycle:
    """Runs the app for one request on an :class:`HTTPConnection`."""

    # One is made per request: slots make it cheaper to build and to use.
    __slots__ = (
        "_body_complete",
        "_body_limit",
        "_body_received",
        "_discard_body",
        "_head_written",
        "_measure",
        "_pending_head",
        "_pipelined_bytes",
        "_response",
        "_response_complete",
        "_stashed_event",
        "_writing",
        "body_bytes",
        "conn",
        "disconnected",
        "keep_alive",
        "request",
        "scope",
        "started",
        "status",
        "yield_owed",
    )

    def __init__(
        self,
        conn: HTTPConnection,
        request: RequestHead,
        proxied: bool = True,
    ) -> None:
        self.conn = conn
        self.request = request
        self.scope = build_scope(conn, request, proxied)
        self.keep_alive = True
        self.status: int | None = None
        self.disconnected = False
        self._response = _START
        # Created only if a task waits for it (``_wait_for_disconnect``).
        self._response_complete: trio.Event | None = None
        self._pending_head = b""
        self._head_written = False
        self._writing = False
        self._discard_body = request.method == b"HEAD"
        # Request body bookkeeping.
        self._body_complete = False
        self._stashed_event: h11.Data | h11.EndOfMessage | None = None
        self._pipelined_bytes = 0
        # Access log measurements, taken only when there is an access log.
        self._measure = conn.ctx.config.access_log
        self.started = time.perf_counter() if self._measure else 0.0
        self.body_bytes = 0
        self._body_limit = conn.ctx.config.limit_request_body
        self._body_received = 0
        # Set by the response's last write on a plain socket, which does not yield.
        self.yield_owed = False

    # -- running the app --------------------------------------------------

    async def run(self) -> None:
        try:
            await self.conn.ctx.app(self.scope, self.receive, self.send)
        except Exception as exc:
            if self.disconnected:
                # What an app raises once its client is gone (our
                # ClientDisconnected, or its framework's translation of it)
                # is the disconnect's doing, not a bug worth a traceback.
                logger.debug("client %s went away: %r", self.conn.client, exc)
                self.keep_alive = False
                return
            logger.exception("Exception in ASGI application")
            await self._fail()
        else:
            if self._response is _START:
                logger.error("ASGI application returned without starting a response")
                await self._fail()
            elif self._response is _BODY:
                logger.error("ASGI application returned without completing the response")
                self.keep_alive = False

    async def _fail(self) -> None:
        """Answer 500 if nothing was sent yet; otherwise the response is cut short."""
        self.keep_alive = False
        if not self._head_written and not self.disconnected:
            self._response = _COMPLETE
            self.status = 500
            await self.conn.send_error(500, "application error")
            self._log_access()
        self._set_response_complete()

    # -- receive ------------------------------------------------------------

    async def receive(self) -> dict[str, Any]:
        if self._body_complete or self.disconnected:
            if not self.disconnected and self._response is not _COMPLETE:
                await self._wait_for_disconnect()
            else:
                # Always a checkpoint: an app that calls receive() in a loop
                # and ignores the disconnect stays cancellable, so a graceful
                # shutdown's deadline can still stop it.
                await trio.lowlevel.checkpoint()
            return {"type": "http.disconnect"}

        h11conn = self.conn.h11
        if h11conn.they_are_waiting_for_100_continue and self._response is _START:
            continue_ = h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue")
            if not await self._write(h11conn.send(continue_)):
                return {"type": "http.disconnect"}

        event = await self._next_body_event()
        if event is None:
            return {"type": "http.disconnect"}
        if type(event) is h11.EndOfMessage:
            self._body_complete = True
            return {"type": "http.request", "body": b"", "more_body": False}
        body = bytes(event.data)
        if self._body_limit is not None:
            self._body_received += len(body)
            if self._body_received > self._body_limit:
                # Only a chunked body can get here: a declared length over
                # the limit was refused before the app was called.
                await self._refuse(413, "request body too large")
                return {"type": "http.disconnect"}
        # Say "no more body" in this same message when h11 already has the
        # end of the message, so a small POST is one receive() for the app.
        try:
            following = h11conn.next_event()
        except h11.RemoteProtocolError:
            following = h11.NEED_DATA  # the next receive() meets the error again
        if type(following) is h11.EndOfMessage:
            self._body_complete = True
            return {"type": "http.request", "body": body, "more_body": False}
        if following is not h11.NEED_DATA:
            self._stashed_event = following
        return {"type": "http.request", "body": body, "more_body": True}

    async def _next_body_event(self) -> h11.Data | h11.EndOfMessage | None:
        """The next piece of the request body, or None if the request is over for us."""
        if self._stashed_event is not None:
            event, self._stashed_event = self._stashed_event, None
            return event
        h11conn = self.conn.h11
        try:
            while True:
                event = h11conn.next_event()
                if event is h11.NEED_DATA:
                    if not await self._receive_body_bytes():
                        return None
                    continue
                if type(event) in (h11.Data, h11.EndOfMessage):
                    return event
                # ConnectionClosed: the client left in the middle of the body.
                self._mark_disconnected()
                return None
        except h11.RemoteProtocolError as exc:
            if h11conn.their_state is h11.ERROR and self._peer_closed():
                self._mark_disconnected()
                return None
            # A malformed body: refuse it if the app has not answered yet.
            await self._refuse(exc.error_status_hint, str(exc))
            return None

    async def _refuse(self, status: int, reason: str) -> None:
        """End a request whose body we will not read: answer ``status`` if we still can, close.

        The app sees ``http.disconnect`` from here on and its ``send()`` raises.
        """
        if not self._head_written and not self.disconnected:
            self._response = _COMPLETE
            self.status = status
            await self.conn.send_error(status, reason)
            self._log_access()
            self._set_response_complete()
        self._mark_disconnected()

    async def _receive_body_bytes(self) -> bool:
        """Read more of the body for a waiting app; False (after a 408) if it stalls."""
        timeout = self.conn.ctx.config.timeout_request_body
        if timeout is None:
            await self.conn.receive_into_h11()
            return True
        with trio.move_on_after(timeout) as scope:
            await self.conn.receive_into_h11()
        if scope.cancelled_caught:
            await self._refuse(408, "request body stalled")
            return False
        return True

    def _peer_closed(self) -> bool:
        return self.conn.h11.trailing_data[1]

    async def _wait_for_disconnect(self) -> None:
        """Block until the client goes away or our response is complete.

        Bytes that arrive meanwhile belong to a pipelined next request: h11
        keeps them for later. Past a small limit we stop reading, so a
        pipelining client is held back by TCP instead of our memory.
        """
        conn = self.conn
        while self._response is not _COMPLETE and not self.disconnected:
            if self._pipelined_bytes >= PIPELINE_READ_LIMIT or conn.h11.their_state is h11.CLOSED:
                if self._response_complete is None:
                    self._response_complete = trio.Event()
                await self._response_complete.wait()
                return
            before = len(conn.h11.trailing_data[0])
            if not await conn.receive_into_h11():
                self._mark_disconnected()
                return
            self._pipelined_bytes += len(conn.h11.trailing_data[0]) - before

    def _set_response_complete(self) -> None:
        if self._response_complete is not None:
            self._response_complete.set()

    def _mark_disconnected(self) -> None:
        self.disconnected = True
        self.keep_alive = False

    # -- send -----------------------------------------------------------------

    async def send(self, message: dict[str, Any]) -> None:
        message_type = message["type"]
        if self.disconnected:
            raise ClientDisconnected("the client has disconnected")
        if message_type == "http.response.body" and self._response is _BODY:
            await self._send_body(message)
        elif message_type == "http.response.start" and self._response is _START:
            conn = self.conn
            h11conn = conn.h11
            if h11conn.they_are_waiting_for_100_continue:
                # The client may never send the body it was not invited to
                # send: we cannot know where the next request would start.
                self.keep_alive = False
            status = message["status"]
            # The writer validates the status and every header (no CR, LF or
            # NUL can split the response), adds the server's default headers
            # and chooses the framing; an error here is the app's, raised from
            # its send() before anything was written.
            self._pending_head = h11conn.send_response(
                status, message.get("headers", ()), close=conn.shutting_down
            )
            self.status = status
            self._response = _BODY
            if status in _NO_BODY_STATUSES:
                self._discard_body = True
        else:
            raise RuntimeError(
                f"unexpected ASGI message {message_type!r} while the response is "
                f"{self._response.value}"
            )

    async def _send_body(self, message: dict[str, Any]) -> None:
        body = message.get("body", b"")
        more_body = message.get("more_body", False)
        h11conn = self.conn.h11
        if self._discard_body:
            body = b""
        data = self._pending_head
        self._pending_head = b""
        if body or not more_body:
            data += h11conn.send_body(body, not more_body)
            if body and self._measure:
                self.body_bytes += len(body)
        if not more_body:
            self._response = _COMPLETE
        if data:
            # From the first byte written the head may be on the wire, even
            # if this write is cancelled: no 500 may follow it.
            self._head_written = True
            if not await self._write(data):
                raise ClientDisconnected("the client has disconnected")
        if not more_body:
            if h11conn.our_state is h11.MUST_CLOSE:
                self.keep_alive = False
            if self._response_complete is not None:
                self._response_complete.set()
            if self._measure:
                self._log_access()

    async def _write(self, data: bytes) -> bool:
        """Hand bytes to the socket; False if the client is gone."""
        if self._writing:
            # Two tasks of the app sending at once: their bytes would interleave.
            raise trio.BusyResourceError("another task is sending on this response")
        self._writing = True
        conn = self.conn
        try:
            sock = conn.plain_socket
            if sock is not None:
                # The last write keeps its cancellation point but leaves the
                # yield to the connection (see the module docstring).
                last = self._response is _COMPLETE
                self.yield_owed = last
                await write_socket(sock, data, schedule=not last)
            else:
                await conn.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._mark_disconnected()
            return False
        finally:
            self._writing = False
        return True

    def _log_access(self) -> None:
        if (
            not self._measure
            or access_logger.disabled
            or not access_logger.isEnabledFor(logging.INFO)
        ):
            return
        line = format_access_line(self.conn.ctx.config.access_log_format, self)
        access_logger.info("%s", line, extra={"status_code": self.status})


def build_scope(conn: HTTPConnection, request: RequestHead, proxied: bool = True) -> dict[str, Any]:
    """The HTTP scope of a request (a WebSocket scope starts from it).

    ``proxied=False`` says it has no proxy header (``FieldFacts.proxied``).
    """
    headers = request.headers
    target = request.target
    if target[:1] != b"/" and target.startswith((b"http://", b"https://")):
        # absolute-form (RFC 9112, 3.2.2): the path starts after the authority.
        slash = target.find(b"/", target.index(b"//") + 2)
        target = target[slash:] if slash != -1 else b"/"
    raw_path, _, query_string = target.partition(b"?")
    root_path = conn.ctx.config.root_path
    path = raw_path.decode("ascii")
    if "%" in path:
        path = unquote(path)
    if root_path:
        path = root_path + path
        raw_path = root_path.encode() + raw_path
    client, scheme = conn.client, conn.scheme
    if proxied and conn.proxy_trusted:
        client, scheme = forwarded_client_and_scheme(
            headers, client, scheme, conn.ctx.trusted_proxies
        )
    scope = {
        "type": "http",
        "asgi": ASGI_VERSION,
        "http_version": _HTTP_VERSIONS.get(request.http_version)
        or request.http_version.decode("ascii"),
        "server": conn.server,
        "client": client,
        "scheme": scheme,
        "method": _METHODS.get(request.method) or request.method.decode("ascii"),
        "root_path": root_path,
        "path": path,
        "raw_path": raw_path,
        "query_string": query_string,
        "headers": headers,
        "state": conn.ctx.lifespan_state.copy(),
    }
    if conn.tls is not None:
        scope["extensions"] = {"tls": conn.tls}
    return scope
