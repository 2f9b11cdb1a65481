"""One HTTP/2 stream's share of its connection: its body in, its data out, its end.

:class:`H2Stream` is what the stream's task (the app's request cycle, or a
WebSocket session) talks to. Its request body arrives from the connection's
reader as DATA and waits here, at most one receive window of it: the window
is widened (``acknowledge_received_data``) only as the app takes the bytes,
so a client can never send more than the app has asked for plus one window.
Its response goes to h2 as the peer's flow-control windows allow, and
:meth:`send_data` returns once every byte is handed to the connection's
writer; a peer that keeps a window shut holds back this stream's task and
nothing else. A reset (the client's ``RST_STREAM``, or the connection
ending) wakes every wait on the stream and makes the next send raise
:class:`ClientDisconnected`.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Protocol

import h2.connection
import h2.exceptions
import trio
from h2.errors import ErrorCodes

from ..asgi.context import Connection
from ..asgi.error_responses import error_content
from ..core.errors import ClientDisconnected
from .writer import FrameWriter

#: A piece of request body smaller than this takes the next one joined to it.
JOIN_BELOW = 16384

#: The largest DATA frame we send, whatever larger size the client allows (up to 16 MiB):
#: a stream adds a frame to the writer's buffer only while it is under its cap, so the
#: buffer's overshoot is one frame; and larger frames save nothing worth having.
MAX_DATA_FRAME = 16384


class StreamOwner(Connection, Protocol):
    """What a stream needs of its connection (``http2.connection.HTTP2Connection``):
    the scope's facts, which its streams share, h2 and the writer."""

    h2: h2.connection.H2Connection
    writer: FrameWriter

    def wait_for_window(self, stream: H2Stream) -> None: ...


class H2Stream:
    """One request's stream: the state its task and the connection's reader share."""

    __slots__ = (
        "_changed",
        "_inbox",
        "body_done",
        "client",
        "conn",
        "ctx",
        "cycle",
        "proxy_trusted",
        "reset",
        "response_done",
        "scheme",
        "scope",
        "server",
        "stream_id",
        "tls",
        "unacknowledged",
    )

    def __init__(self, conn: StreamOwner, stream_id: int, body_done: bool) -> None:
        self.conn = conn
        self.stream_id = stream_id
        # The facts the scope is made of, the connection's.
        self.ctx = conn.ctx
        self.client = conn.client
        self.server = conn.server
        self.scheme = conn.scheme
        self.tls = conn.tls
        self.proxy_trusted = conn.proxy_trusted
        #: The request's END_STREAM has arrived.
        self.body_done = body_done
        #: The client reset the stream, or the connection is gone.
        self.reset = False
        #: Our side has sent END_STREAM (or a reset).
        self.response_done = False
        #: Body bytes received and not yet taken by the app, as (data, flow-controlled size).
        self._inbox: deque[tuple[bytes | bytearray, int]] = deque()
        #: Flow-controlled bytes received that the window has not been widened for.
        self.unacknowledged = 0
        # One event for every change a task may wait for (data, end, reset, window).
        self._changed: trio.Event | None = None
        #: The request cycle running on the stream (``http2.cycle.H2Cycle``), once there is one.
        self.cycle: Any = None
        #: The cancel scope of the stream's task.
        self.scope: trio.CancelScope | None = None

    # -- what the reader hands over ------------------------------------------

    def data_received(self, data: bytes, flow_size: int, ended: bool) -> None:
        if data:
            inbox = self._inbox
            if inbox and len(inbox[-1][0]) < JOIN_BELOW:
                # Joined to the last piece: the window bounds the bytes held,
                # not the frames, and a body sent a byte a frame held an
                # object per byte (some 100 bytes each, 100 MB for a 1 MiB
                # connection window).
                last, last_size = inbox[-1]
                if type(last) is not bytearray:
                    last = bytearray(last)
                last += data
                inbox[-1] = (last, last_size + flow_size)
            else:
                inbox.append((data, flow_size))
            self.unacknowledged += flow_size
        elif flow_size:
            # Padding only: nothing for the app, but the window is ours to widen.
            self.conn.h2.acknowledge_received_data(flow_size, self.stream_id)
        if ended:
            self.body_done = True
        self.notify()

    def ended(self) -> None:
        self.body_done = True
        self.notify()

    def was_reset(self) -> None:
        """The client reset the stream, or the connection is gone: the app hears of it."""
        self.reset = True
        if self.cycle is not None:
            self.cycle.client_left()  # cancels the app with ``cancel_on_disconnect``
        self.notify()

    def notify(self) -> None:
        """Wake whoever waits on this stream: something changed."""
        changed = self._changed
        if changed is not None:
            self._changed = None
            changed.set()

    async def wait_for_change(self) -> None:
        if self._changed is None:
            self._changed = trio.Event()
        await self._changed.wait()

    # -- the request body --------------------------------------------------------

    async def read_body(self) -> tuple[bytes, bool] | None:
        """The next piece of the body and whether more follows; None once reset.

        Taking a piece widens the windows by its size: the client may send
        that much more.
        """
        inbox = self._inbox
        # A reset stream's body is not the app's any more, even the bytes
        # already here: the disconnect comes at once, and abandon() gives
        # their window back to the connection. (Handed to the app, they
        # were never given back: h2 ignores a closed stream's window, and
        # the connection's was not widened either.)
        while not inbox or self.reset:
            if self.reset:
                return None
            if self.body_done:
                return b"", False
            await self.wait_for_change()
        data, flow_size = inbox.popleft()
        if len(inbox) > 1:
            # Several pieces waiting: hand them over in one message.
            pieces = [data]
            while inbox:
                more, more_size = inbox.popleft()
                pieces.append(more)
                flow_size += more_size
            data = b"".join(pieces)
        elif type(data) is bytearray:
            data = bytes(data)  # small pieces joined (data_received)
        self.unacknowledged -= flow_size
        self.conn.h2.acknowledge_received_data(flow_size, self.stream_id)
        self.conn.writer.queued()
        return data, bool(inbox) or not self.body_done

    def has_body_waiting(self) -> bool:
        return bool(self._inbox)

    # -- the response ------------------------------------------------------------

    def send_headers(self, headers: list[tuple[bytes, bytes]], end_stream: bool) -> None:
        """Hand a header block to h2 (informational, final or trailers); raise if reset."""
        if self.reset:
            raise ClientDisconnected("the client has reset the stream")
        try:
            self.conn.h2.send_headers(self.stream_id, headers, end_stream=end_stream)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            self.was_reset()
            raise ClientDisconnected("the stream is closed") from None
        if end_stream:
            self.response_done = True
        self.conn.writer.kick()

    async def send_data(self, data: bytes, end_stream: bool) -> None:
        """Hand ``data`` to h2 as the windows allow; returns once all of it is handed over."""
        conn = self.conn
        h2conn = conn.h2
        stream_id = self.stream_id
        total = len(data)
        sent = 0
        try:
            while True:
                if self.reset:
                    raise ClientDisconnected("the client has reset the stream")
                if conn.writer.over_buffer():
                    await conn.writer.wait_for_room()
                    continue
                if total == 0:
                    if end_stream:
                        h2conn.end_stream(stream_id)
                    break
                window = min(
                    h2conn.local_flow_control_window(stream_id),
                    h2conn.max_outbound_frame_size,
                    MAX_DATA_FRAME,
                )
                if window <= 0:
                    conn.wait_for_window(self)
                    await self.wait_for_change()
                    continue
                piece = data[sent : sent + window] if sent or window < total else data
                sent += len(piece)
                last = sent >= total
                h2conn.send_data(stream_id, piece, end_stream=end_stream and last)
                conn.writer.kick(len(piece))
                if last:
                    break
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            self.was_reset()
            raise ClientDisconnected("the stream is closed") from None
        if end_stream:
            self.response_done = True
        conn.writer.kick()

    async def send_error(self, status: int, detail: str) -> int:
        """A server-made plain-text response (nothing else has been sent on the stream).

        The body bytes sent: 0 if the stream was gone.
        """
        body, fields = error_content(status)
        headers = [(b":status", str(status).encode()), *fields]
        date = self.ctx.date_header_value()
        if date is not None:
            headers.append((b"date", date))
        try:
            self.send_headers(headers, end_stream=False)
            await self.send_data(body, end_stream=True)
        except ClientDisconnected:
            return 0
        return len(body)

    def abandon(self) -> None:
        """The task is over: end the stream if the response did not, and give back its window."""
        h2conn = self.conn.h2
        try:
            if not self.response_done and not self.reset:
                # Cut short: the client must not take it for a complete response.
                h2conn.reset_stream(self.stream_id, ErrorCodes.INTERNAL_ERROR)
            elif self.response_done and not self.body_done and not self.reset:
                # A complete response to a request whose body we will not read
                # (RFC 9113, 8.1): the client may stop sending.
                h2conn.reset_stream(self.stream_id, ErrorCodes.NO_ERROR)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            pass
        self.reset = True
        unread = self.unacknowledged
        self._inbox.clear()
        self.unacknowledged = 0
        if unread:
            # The connection's window, which the stream's unread body held.
            h2conn.acknowledge_received_data(unread, self.stream_id)
        self.conn.writer.queued()
