"""One HTTP/1.1 request and its response over h11's interface (h11 or httptools).

:class:`H11Cycle` is the request cycle of ``asgi.cycle`` with HTTP/1.1's
bytes under it. ``receive()`` reads the body from the parser, pulling from
the socket only when the parser's buffer is empty; ``send()`` writes as
little and as late as it can: the response head waits for the first body
message so that a simple response leaves in one write, and a body message
returns only once its bytes are handed to the socket, so a slow reader
holds the app back rather than filling memory.

Every write is a cancellation point and every write but a plain socket's
last one a scheduling point. That last yield is left to the connection,
which takes it once the app has returned (``yield_owed``): a task yields
and resumes through every coroutine frame it is suspended in, and inside
the app's ``send`` those are all the app's own (a Starlette app's
middleware, routing and endpoint: 7.5k instructions per request, 2.4 %).
"""

from __future__ import annotations

from typing import Any, Protocol

import h11
import trio

from ..asgi.cycle import BODY, COMPLETE, START, TRAILERS, CycleConnection, RequestCycle
from ..asgi.files import FileBody, read_chunks
from ..core.errors import ClientDisconnected, FileUnavailable
from ..core.socket_io import RECEIVE_SIZE, send_file, write_socket, write_socket_pair

#: How many bytes of a response a plain socket takes between two yields of
#: the connection's task (a body sent faster than the socket fills): few
#: enough that a long download holds the other connections back by well
#: under a millisecond, many enough that the yields cost little per byte.
STREAM_YIELD_BYTES = 512 * 1024

#: A response's first body message at least this large is written beside its
#: head (one writev) rather than copied onto it.
JOIN_LIMIT = 16 * 1024

#: Bytes of a pipelined next request we accept while watching for a
#: disconnect during the current one; past this the socket is left unread.
PIPELINE_READ_LIMIT = 64 * 1024

# The module-level names the per-request code reads (globals are cheap).
_START, _BODY, _COMPLETE, _TRAILERS = START, BODY, COMPLETE, TRAILERS


def _asks_for_trailers(headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether the request said ``TE: trailers`` (RFC 9110, 10.1.4)."""
    return any(
        name == b"te" and b"trailers" in [t.strip().lower() for t in value.split(b",")]
        for name, value in headers
    )


class H11Connection(CycleConnection, Protocol):
    """What the cycle needs of ``http11.connection.HTTPConnection``."""

    h11: Any
    stream: trio.abc.Stream
    plain_socket: trio.socket.SocketType | None
    shutting_down: bool
    #: Response bytes written since the connection's task last yielded.
    unyielded: int

    async def receive_into_h11(self, *, nothing_there: bool = False) -> bool: ...

    def read_arrived(self, max_bytes: int) -> bool | None: ...


class H11Cycle(RequestCycle):
    """Runs the app for one request on an HTTP/1.1 connection."""

    # Its state is all declared and set by RequestCycle: a second __init__
    # would cost every request a call.
    __slots__ = ()

    conn: H11Connection

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
        following = self._peek()
        if (
            following is h11.NEED_DATA
            and len(body) < RECEIVE_SIZE
            and self.conn.read_arrived(RECEIVE_SIZE - len(body))
        ):
            following = self._with_arrived_tail(body)
            if type(following) is bytes:  # the whole body
                self._body_complete = True
                return {"type": "http.request", "body": following, "more_body": False}
        if type(following) is h11.EndOfMessage:
            self._body_complete = True
            return {"type": "http.request", "body": body, "more_body": False}
        if following is not h11.NEED_DATA:
            self._stashed_event = following
        return {"type": "http.request", "body": body, "more_body": True}

    def _peek(self) -> Any:
        """The parser's next event, or NEED_DATA if it is an error (met again on the next read)."""
        try:
            return self.conn.h11.next_event()
        except h11.RemoteProtocolError:
            return h11.NEED_DATA

    def _with_arrived_tail(self, body: bytes) -> Any:
        """After bytes that had already arrived were read: the whole body if they end it.

        A body that a read of its head cut short (an upload of a read's size after its
        head) takes a second read; when that has arrived by the time the
        first part is handed over, it is read at once (no more than one
        message's worth, ``RECEIVE_SIZE``) and the app gets the body in one
        message rather than a second ``receive()`` for its tail. Otherwise
        the next event, or the next two, are kept for the following
        ``receive()`` calls.
        """
        following = self._peek()
        if type(following) is not h11.Data:
            return following
        after = self._peek()
        tail = bytes(following.data)
        if type(after) is not h11.EndOfMessage:
            return (following, after) if after is not h11.NEED_DATA else following
        if self._body_limit is not None:
            self._body_received += len(tail)
            if self._body_received > self._body_limit:
                self._body_received -= len(tail)
                return (following, after)
        return body + tail

    async def _next_body_event(self) -> h11.Data | h11.EndOfMessage | None:
        """The next piece of the request body, or None if the request is over for us."""
        if self._stashed_event is not None:
            event, self._stashed_event = self._stashed_event, None
            if type(event) is tuple:  # two events read ahead (_with_arrived_tail)
                event, self._stashed_event = event
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
                self.client_left()
                return None
        except h11.RemoteProtocolError as exc:
            if h11conn.their_state is h11.ERROR and self._peer_closed():
                self.client_left()
                return None
            # A malformed body: refuse it if the app has not answered yet.
            await self._refuse(exc.error_status_hint, str(exc))
            return None

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
                self.client_left()
                return
            self._pipelined_bytes += len(conn.h11.trailing_data[0]) - before

    # -- send -----------------------------------------------------------------

    def _start_response(self, status: int, headers: Any) -> None:
        conn = self.conn
        h11conn = conn.h11
        if h11conn.they_are_waiting_for_100_continue:
            # The client may never send the body it was not invited to
            # send: we cannot know where the next request would start.
            self.keep_alive = False
        # The writer validates the status and every header (no CR, LF or
        # NUL can split the response), adds the server's default headers
        # and chooses the framing.
        self._pending_head = h11conn.send_response(status, headers, close=conn.shutting_down)

    async def _send_body(self, message: dict[str, Any]) -> None:
        if self._trailers:
            await self._send_body_before_trailers(message)
            return
        body = message.get("body", b"")
        more_body = message.get("more_body", False)
        h11conn = self.conn.h11
        if self._discard_body:
            body = b""
        data = self._pending_head
        self._pending_head = b""
        tail = b""
        if body or not more_body:
            framed = h11conn.send_body(body, not more_body)
            if len(framed) < JOIN_LIMIT or not data:
                data += framed
            else:
                # A large body after the head: written with it, not copied onto it.
                tail = framed
            if body and self._measure:
                self.body_bytes += len(body)
        if not more_body:
            self._response = _COMPLETE
        if data:
            # From the first byte written the head may be on the wire, even
            # if this write is cancelled: no 500 may follow it.
            self._head_written = True
            if not await self._write(data, tail):
                raise ClientDisconnected("the client has disconnected")
        if not more_body:
            # _end_response, written out: this is every response's path, and
            # the call would be one more per request.
            if h11conn.our_state is h11.MUST_CLOSE:
                self.keep_alive = False
            if self._response_complete is not None:
                self._response_complete.set()
            if self._measure:
                self._log_access()

    async def _send_body_before_trailers(self, message: dict[str, Any]) -> None:
        """A body message of a response whose app will send trailers: the body never ends here."""
        body = b"" if self._discard_body else message.get("body", b"")
        data = self._pending_head
        self._pending_head = b""
        if body:
            data += self.conn.h11.send_body(body, False)
            if self._measure:
                self.body_bytes += len(body)
        if not message.get("more_body", False):
            self._response = _TRAILERS
        if data:
            self._head_written = True
            if not await self._write(data):
                raise ClientDisconnected("the client has disconnected")

    async def _send_trailers(self, message: dict[str, Any]) -> None:
        """The trailer section if the client asked for one (``TE: trailers``), else the end."""
        if self._trailer_fields is None:
            self._trailer_fields = []
        self._trailer_fields += [(bytes(n), bytes(v)) for n, v in message.get("headers", ())]
        if message.get("more_trailers", False):
            return
        h11conn = self.conn.h11
        if _asks_for_trailers(self.request.headers):
            data = h11conn.end_with_trailers(self._trailer_fields)
        else:
            data = h11conn.send_body(b"", True)
        self._response = _COMPLETE
        if not await self._write(data):
            raise ClientDisconnected("the client has disconnected")
        self._end_response()

    def _end_response(self) -> None:
        """The response's last bytes are out: keep-alive, waiters, access log."""
        if self.conn.h11.our_state is h11.MUST_CLOSE:
            self.keep_alive = False
        self._set_response_complete()
        if self._measure:
            self._log_access()

    async def _send_file(self, body: FileBody, more_body: bool) -> int:
        """A body from a file: ``os.sendfile`` on a plain socket, chunks read in a thread on TLS."""
        count = 0 if self._discard_body else body.count
        # A response with trailers to come does not end with its body.
        end = not more_body and not self._trailers
        before, after = self.conn.h11.frame_file(count, end)
        head = self._pending_head + before
        self._pending_head = b""
        if head:
            self._head_written = True
            if not await self._write(head):
                raise ClientDisconnected("the client has disconnected")
        sent = 0
        if count:
            self._head_written = True
            sent = await self._write_file(body, count)
            if self._measure:
                self.body_bytes += sent
            if sent < count:
                raise FileUnavailable("the file ended before the bytes the response declared")
        if not more_body:
            self._response = _COMPLETE if end else _TRAILERS
        if after and not await self._write(after):
            raise ClientDisconnected("the client has disconnected")
        if end:
            self._end_response()
        return sent

    async def _write_file(self, body: FileBody, count: int) -> int:
        """Hand ``count`` bytes of the file to the socket; how many went (fewer if it shrank)."""
        if self._writing:
            raise trio.BusyResourceError("another task is sending on this response")
        self._writing = True
        conn = self.conn
        sent = 0
        try:
            sock = conn.plain_socket
            if sock is not None:
                sent = await send_file(sock, body.fd, body.offset, count)
            else:
                async for chunk in read_chunks(body):
                    await conn.stream.send_all(chunk)
                    sent += len(chunk)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.client_left()
            raise ClientDisconnected("the client has disconnected") from None
        finally:
            self._writing = False
        return sent

    async def _send_early_hint(self, links: list[bytes]) -> None:
        """103 Early Hints, a ``link`` field per link, written at once; not to HTTP/1.0 clients."""
        if self.request.http_version != b"1.1" or not links:
            # An HTTP/1.0 client may not understand an interim response.
            await trio.lowlevel.checkpoint()
            return
        hint = h11.InformationalResponse(
            status_code=103, headers=[(b"link", link) for link in links], reason=b"Early Hints"
        )
        if not await self._write(self.conn.h11.send(hint)):
            raise ClientDisconnected("the client has disconnected")

    async def _write(self, data: bytes, tail: bytes = b"") -> bool:
        """Hand ``data`` (and ``tail`` after it) to the socket; False if the client is gone."""
        if self._writing:
            # Two tasks of the app sending at once: their bytes would interleave.
            raise trio.BusyResourceError("another task is sending on this response")
        self._writing = True
        conn = self.conn
        try:
            sock = conn.plain_socket
            if sock is not None:
                # The last write keeps its cancellation point but leaves the
                # yield to the connection (see the module docstring). The
                # others of a long body yield once per STREAM_YIELD_BYTES,
                # not once per write: a yield is a turn of trio's loop and an
                # epoll_wait, which cost more than a 64 KiB write.
                last = self._response is _COMPLETE
                self.yield_owed = last
                if last:
                    schedule = False
                else:
                    unyielded = conn.unyielded + len(data) + len(tail)
                    schedule = unyielded >= STREAM_YIELD_BYTES
                    conn.unyielded = 0 if schedule else unyielded
                if tail:
                    await write_socket_pair(sock, data, tail, schedule=schedule)
                else:
                    await write_socket(sock, data, schedule=schedule)
            else:
                await conn.stream.send_all(data + tail if tail else data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.client_left()
            return False
        finally:
            self._writing = False
        return True
