"""One HTTP request and its response as the ASGI application sees them, for every HTTP version.

:class:`RequestCycle` runs the app and holds what does not depend on how
the bytes travel: the scope, the response as an explicit state machine
(``START -> BODY -> COMPLETE``, checked at every ``send()`` so an app that
sends messages out of order is caught at the message that breaks the order),
what happens when the app raises or returns early, and the access log line.
Each protocol subclasses it with ``receive()`` and the two halves of
sending: :meth:`RequestCycle._start_response` (validate and keep the head)
and :meth:`RequestCycle._send_body` (frame and write).
"""

from __future__ import annotations

import enum
import logging
import time
from typing import Any, Protocol

import trio

from ..core.access_log import CLIENT_CLOSED_REQUEST, NO_RESPONSE, format_access_line
from ..core.errors import ClientDisconnected, FileUnavailable
from ..core.logs import access_logger, logger
from .context import Connection
from .files import FileBody, path_body, zerocopy_body
from .request import RequestHead
from .scope import build_scope

#: The messages whose body is a file (``asgi.files``).
_FILE_MESSAGES = frozenset({"http.response.pathsend", "http.response.zerocopysend"})

#: Responses that never carry a body, whatever the app sends.
NO_BODY_STATUSES = frozenset({204, 304})


class CycleConnection(Connection, Protocol):
    """What a request cycle needs of its connection beyond the scope's facts."""

    async def send_error(self, status: int, detail: str) -> int:
        """Answer with a server-made error response (nothing else has been sent); its body bytes."""


class ResponseState(enum.Enum):
    START = "waiting for http.response.start"
    BODY = "waiting for http.response.body"
    TRAILERS = "waiting for http.response.trailers"
    COMPLETE = "complete"


# The states as globals for the per-request code: on Python 3.11 ``EnumType``
# has a ``__getattr__``, which makes each ``ResponseState.START`` lookup some
# ten times the cost of reading a global.
START, BODY, COMPLETE = ResponseState.START, ResponseState.BODY, ResponseState.COMPLETE
TRAILERS = ResponseState.TRAILERS


class RequestCycle:
    """Runs the app for one request; a protocol's subclass moves the bytes."""

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
        "_trailer_fields",
        "_trailers",
        "_writing",
        "app_scope",
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

    def __init__(self, conn: CycleConnection, request: RequestHead, proxied: bool = True) -> None:
        self.conn = conn
        self.request = request
        self.scope = build_scope(conn, request, proxied)
        self.keep_alive = True
        self.status: int | None = None
        self.disconnected = False
        #: With ``cancel_on_disconnect``: the scope the app's call runs in,
        #: which :meth:`client_left` cancels. None otherwise (no scope entered).
        self.app_scope: trio.CancelScope | None = None
        self._response = START
        # Created only if a task waits for it.
        self._response_complete: Any = None
        self._head_written = False
        self._discard_body = request.method == b"HEAD"
        # Access log measurements, taken only when there is an access log.
        self._measure = conn.ctx.config.access_log
        self.started = time.perf_counter() if self._measure else 0.0
        self.body_bytes = 0
        # The bookkeeping of the protocols' receive() and send(), set here
        # once rather than in a second __init__ per protocol (a call per request).
        self._pending_head = b""  # the validated response head, until the first body
        self._trailers = False  # the app said it will send http.response.trailers
        self._trailer_fields: Any = None  # those received while ``more_trailers``
        self._writing = False  # a write is in progress (a second sender is a bug)
        self._body_complete = False  # the request body has been read to its end
        self._stashed_event: Any = None  # a body event read ahead of the app
        self._pipelined_bytes = 0  # read past this request while watching for a disconnect
        self._body_limit = conn.ctx.config.limit_request_body
        self._body_received = 0
        # Set by the response's last write when it did not yield: the
        # connection owes the yield, on its shorter stack.
        self.yield_owed = False

    # -- running the app --------------------------------------------------

    async def run(self) -> None:
        # What cut the response short if it ends incomplete: unless the app
        # raised or returned early, the task was cancelled (shutdown).
        cut_short = "cancelled"
        try:
            app_scope = self.app_scope
            if app_scope is None:
                await self.conn.ctx.app(self.scope, self.receive, self.send)
            else:
                with app_scope:
                    await self.conn.ctx.app(self.scope, self.receive, self.send)
                if app_scope.cancel_called:
                    # Handled below as any error an app raises once its
                    # client is gone: logged at debug level, no 500, and
                    # the access line shows the request cut short.
                    raise ClientDisconnected("the client left: the app's call was cancelled")
        except FileUnavailable as exc:
            # The app asked for a file that is gone or unreadable: an error
            # of the moment (or of a deployment), not a bug with a traceback.
            cut_short = "application error"
            logger.error("Cannot send the file of a response: %s", exc)
            await self._fail()
        except Exception as exc:
            cut_short = "application error"
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
            cut_short = "application error"
            if self.disconnected and self._response is not COMPLETE:
                # The client left first (an app that stops at http.disconnect):
                # nobody is waiting for the response, and nothing is wrong.
                logger.debug("client %s went away before the response", self.conn.client)
                self.keep_alive = False
                self._set_response_complete()
            elif self._response is START:
                logger.error("ASGI application returned without starting a response")
                await self._fail()
            elif self._response is BODY or self._response is TRAILERS:
                logger.error("ASGI application returned without completing the response")
                self.keep_alive = False
        finally:
            # A complete response was logged as it ended (and _measure
            # cleared): only one cut short is left to log, once.
            if self._measure:
                self._log_access("client left" if self.disconnected else cut_short)

    async def _fail(self) -> None:
        """Answer 500 if nothing was sent yet; otherwise the response is cut short."""
        self.keep_alive = False
        await self._answer_error(500, "application error")
        self._set_response_complete()

    async def _refuse(self, status: int, reason: str) -> None:
        """End a request whose body we will not read: answer ``status`` if we still can.

        The app sees ``http.disconnect`` from here on and its ``send()`` raises.
        """
        if await self._answer_error(status, reason):
            self._set_response_complete()
        self._mark_disconnected()

    async def _answer_error(self, status: int, reason: str) -> bool:
        """A server-made error response instead of the app's, if nothing of that was sent.

        Whether it was answered: not once the response's head may be on the
        wire, nor to a client that has left.
        """
        if self._head_written or self.disconnected:
            return False
        self._response = COMPLETE
        self.status = status
        self._head_written = True
        self.body_bytes = await self.conn.send_error(status, reason)
        self._log_access()
        return True

    # -- receive (the protocol's) -------------------------------------------

    async def receive(self) -> dict[str, Any]:
        raise NotImplementedError

    # -- send -----------------------------------------------------------------

    async def send(self, message: dict[str, Any]) -> None:
        message_type = message["type"]
        if self.disconnected:
            raise ClientDisconnected("the client has disconnected")
        if message_type == "http.response.body" and self._response is BODY:
            await self._send_body(message)
        elif message_type == "http.response.start" and self._response is START:
            status = message["status"]
            # The protocol validates the status and every header before
            # anything is written; an error here is the app's, raised from
            # its send().
            self._start_response(status, message.get("headers", ()))
            self.status = status
            self._response = BODY
            if status in NO_BODY_STATUSES:
                self._discard_body = True
            if message.get("trailers"):
                self._trailers = True
        elif message_type == "http.response.trailers" and self._response is TRAILERS:
            await self._send_trailers(message)
        elif message_type in _FILE_MESSAGES and self._response is BODY:
            await self._send_file_message(message_type, message)
        elif message_type == "http.response.early_hint" and self._response is START:
            links = message.get("links", ())
            if isinstance(links, (str, bytes)) or not all(type(link) is bytes for link in links):
                raise TypeError("http.response.early_hint needs 'links': a list of bytes")
            await self._send_early_hint(list(links))
        else:
            raise RuntimeError(
                f"unexpected ASGI message {message_type!r} while the response is "
                f"{self._response.value}"
            )

    async def _send_file_message(self, message_type: str, message: dict[str, Any]) -> None:
        """``http.response.pathsend`` or ``http.response.zerocopysend``: a body from a file.

        The file is opened (pathsend) and checked before anything is written,
        so a file that is missing or unreadable is still a 500.
        """
        if message_type == "http.response.pathsend":
            body, more_body = path_body(message), False
        else:
            body, more_body = zerocopy_body(message), bool(message.get("more_body", False))
        sent = 0
        try:
            sent = await self._send_file(body, more_body)
        finally:
            body.close(sent)

    def _start_response(self, status: int, headers: Any) -> None:
        """Validate the response head and keep it for the first body message."""
        raise NotImplementedError

    async def _send_body(self, message: dict[str, Any]) -> None:
        """Write a body message (with the head, the first time); raise if the client is gone.

        The last one (``more_body`` false) leaves the response ``COMPLETE``, or
        waiting for ``TRAILERS`` if the app said it would send them.
        """
        raise NotImplementedError

    async def _send_trailers(self, message: dict[str, Any]) -> None:
        """Write (or, where the protocol cannot carry them, drop) a trailers message."""
        raise NotImplementedError

    async def _send_file(self, body: FileBody, more_body: bool) -> int:
        """Write a body from a file (with the head, if not written yet); the bytes sent.

        Raises ``FileUnavailable`` if the file ends early or cannot be read.
        """
        raise NotImplementedError

    async def _send_early_hint(self, links: list[bytes]) -> None:
        """Send a 103 Early Hints response with these ``link`` values now, if the protocol can."""
        await trio.lowlevel.checkpoint()

    # -- the end of the exchange ----------------------------------------------

    def _set_response_complete(self) -> None:
        if self._response_complete is not None:
            self._response_complete.set()

    def _mark_disconnected(self) -> None:
        self.disconnected = True
        self.keep_alive = False

    def response_complete(self) -> bool:
        """Whether the app has sent the whole response."""
        return self._response is COMPLETE

    def client_left(self) -> None:
        """The client went away (EOF, a reset, a failed write; HTTP/2: the stream's reset).

        The app's ``receive()`` returns ``http.disconnect`` from now on and its
        ``send()`` raises. With ``cancel_on_disconnect`` and the response not
        yet complete, the app's call is cancelled too: ``trio.Cancelled`` at
        its next checkpoint, so its ``finally`` blocks and context managers run.
        """
        self._mark_disconnected()
        if self.app_scope is not None and self._response is not COMPLETE:
            self.app_scope.cancel()

    def _log_access(self, cut_short: str | None = None) -> None:
        """Write the response's access line (once: a second call does nothing).

        ``cut_short``: why the response did not complete. A client that left
        before any status was sent gets nginx's 499.
        """
        if not self._measure:
            return
        self._measure = False
        if access_logger.disabled or not access_logger.isEnabledFor(logging.INFO):
            return
        if self.status is None:
            # Nothing was sent: the client left first (nginx's 499), or the
            # task was cancelled before the app started a response (444).
            self.status = CLIENT_CLOSED_REQUEST if self.disconnected else NO_RESPONSE
        _write_access_line(self.conn.ctx.config.access_log_format, self, cut_short)


class ServerResponse:
    """A response the server made itself (400, 408, 413, 431, 503), as an access line sees it."""

    __slots__ = ("body_bytes", "request", "scope", "started", "status")

    def __init__(
        self,
        conn: Connection,
        request: RequestHead | None,
        status: int,
        body_bytes: int,
        started: float,
    ) -> None:
        # No request head (a malformed or missing one) is logged as "-".
        self.request = request if request is not None else _NO_REQUEST
        target = self.request.target
        path, _, query = target.partition(b"?")
        self.scope = {
            # The peer: a head the server refused is not trusted for proxy headers.
            "client": conn.client,
            "path": path.decode("latin-1"),
            "query_string": query,
            "scheme": conn.scheme,
        }
        self.status = status
        self.body_bytes = body_bytes
        self.started = started


_NO_REQUEST = RequestHead(b"-", b"-", b"-", [])


def log_server_response(response: ServerResponse, template: str) -> None:
    """The access line of a response the server made itself."""
    if access_logger.disabled or not access_logger.isEnabledFor(logging.INFO):
        return
    _write_access_line(template, response, None)


def _write_access_line(template: str, exchange: Any, cut_short: str | None) -> None:
    try:
        line = format_access_line(template, exchange, cut_short)
    except Exception:
        # The template was tried at startup; should a value still not fit
        # it, that is the server's configuration, never the app's error.
        logger.exception("Could not format the access log line")
        return
    access_logger.info("%s", line, extra={"status_code": exchange.status})
