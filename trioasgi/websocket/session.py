"""One WebSocket connection, as the ASGI application sees it: the trio side of wsproto.

:class:`WebSocketSession` takes over a connection whose request asked for
an upgrade. The app runs in the connection's own task, as an HTTP
request does, and, as there, the socket is read on demand: the app's
``receive()`` reads and parses the frames itself when no message is waiting
(no reader task, so an echoed message costs one scheduler step on a plain
socket: the wake-up with the frame, which spares the echo's write its own
yield; two on TLS, whose ``send_all`` yields too). While the app is not
receiving nobody reads, and TCP holds the peer back.

Reading is a turn that one task holds at a time (:meth:`_read_turn`): the
app's ``receive()``; the keepalive task while it waits for a pong and the
app is not reading (messages it reads wait in a small queue, bounded in
count and bytes, and it stops reading when that is full); and the closing
handshake once our close frame is out. The keepalive task also pings the
peer every ``ws_ping_interval``, fails the connection (1011) if no pong comes
within ``ws_ping_timeout``, sends the 1012 close frame when the server
shuts down, and closes the socket if the peer does not answer a close frame
within ``CLOSE_TIMEOUT``.

Every write goes through one lock, with wsproto's ``send`` inside it, so
frames leave in the order their (possibly compressed) bytes were made. The
app's ``websocket.send`` returns once its frame is handed to the socket.

The ASGI side is an explicit state machine (:class:`_State`). Once the
connection is over, for whatever reason, the app receives what is left in
the queue and then one ``websocket.disconnect`` with the close code.
"""

from __future__ import annotations

import enum
import logging
import math
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import trio
from wsproto.connection import Connection, ConnectionState
from wsproto.events import (
    CloseConnection,
    Event,
    Message,
    Ping,
    Pong,
)
from wsproto.utilities import LocalProtocolError

from ..asgi.request import RequestHead
from ..core.errors import ClientDisconnected
from ..core.logs import TRACE, access_logger, logger
from ..core.socket_io import plain_socket, write_socket
from .handshake import Handshake, ServerHandshake, UpgradeConnection, websocket_scope
from .io import SocketReader, WriteLock
from .messages import MessageAssembler, outgoing_message, payload_size

#: Whole messages read ahead of the app's ``receive()`` by default; past
#: ``Config.ws_max_queue`` (``--ws-max-queue``) nobody reads.
MESSAGE_QUEUE_SIZE = 4
#: ... and their size: past this, only one message (of any allowed size) may wait.
MESSAGE_QUEUE_BYTES = 1024 * 1024

#: How long we wait for the peer's close frame after sending ours, and how
#: much we read (and drop) meanwhile.
CLOSE_TIMEOUT = 5.0
CLOSE_DRAIN_BYTES = 1024 * 1024

#: How long we try to tell a peer that stopped answering pings why we give up.
FAIL_WRITE_TIMEOUT = 1.0

# Close codes the server sends (RFC 6455, section 7.4.1).
NORMAL = 1000
ABNORMAL = 1006
MESSAGE_TOO_BIG = 1009
INTERNAL_ERROR = 1011
SERVICE_RESTART = 1012


class _State(enum.Enum):
    HANDSHAKE = "waiting for websocket.accept, websocket.close or a denial response"
    RESPONDING = "sending a denial response"
    CONNECTED = "connected"
    CLOSED = "closed"


# As globals for the per-message code: ``_State.CONNECTED`` goes through
# ``EnumType.__getattr__`` on Python 3.11, some ten times a global's cost.
_HANDSHAKE, _RESPONDING = _State.HANDSHAKE, _State.RESPONDING
_CONNECTED, _CLOSED = _State.CONNECTED, _State.CLOSED


class WebSocketSession:
    """Runs the app for one upgrade request on an :class:`HTTPConnection`."""

    def __init__(
        self,
        conn: UpgradeConnection,
        request: RequestHead,
        trailing: bytes,
        handshake: Handshake | None = None,
    ) -> None:
        self.conn = conn
        self.config = conn.ctx.config
        self.stream = conn.stream
        # HTTP/1.1's upgrade unless the transport brings its own (HTTP/2's CONNECT).
        self.handshake = handshake if handshake is not None else ServerHandshake(request, conn.ctx)
        self.scope = websocket_scope(conn, request)
        self._state = _HANDSHAKE
        self._connect_delivered = False
        self._accepted = False
        # The frames layer once accepted (wsproto's ``Connection``, no handshake wrapper).
        self._frames: Connection | None = None
        self._send_lock = WriteLock()
        # Reading: the socket (if plain) and its reader, whether a task holds
        # the read turn (and who waits for it), and the messages read ahead.
        self._sock = plain_socket(self.stream)
        self._socket_reader = SocketReader(self.stream, trailing)
        self._assembler = MessageAssembler(self.config.ws_max_size)
        self._reading = False
        self._read_done: trio.Event | None = None
        self._more_buffered = False  # wsproto holds bytes we stopped parsing: queue full
        self._peer_done = False  # no more frames to read: close frame, EOF or error
        self._protocol_error = False
        # A protocol error met behind messages the app has not received yet:
        # its close code and reason, for once the app has had them (see
        # _handle_control). Nothing more is read meanwhile.
        self._pending_failure: tuple[int, str] | None = None
        self._drained = 0
        self._inbox: deque[dict[str, Any]] = deque()
        self._message_taken: trio.Event | None = None
        self._close_code: int | None = None
        self._close_reason = ""
        self._nursery: trio.Nursery | None = None
        # Keepalive bookkeeping: the pong we wait for, whether reading paused
        # for the app meanwhile (then silence is not the peer's fault), and
        # the wait that shutdown and closing cut short.
        self._pong = trio.Event()
        self._paused_during_ping = False
        self._shutting_down = False
        self._wake_keepalive: trio.CancelScope | None = None

    # -- life cycle -------------------------------------------------------

    async def run(self) -> None:
        error = self.handshake.start()
        if error is not None:
            logger.log(TRACE, "%s: WebSocket handshake refused: %s", self.conn.client, error.detail)
            self._log_access(error.status)
            await self._write_quietly(error.response)
            return
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await self._run_app()
            await self._finish_after_app()
            nursery.cancel_scope.cancel()

    def begin_shutdown(self) -> None:
        """Close with 1012 at once (from the keepalive task); sync, for the server's drain."""
        self._shutting_down = True
        if self._wake_keepalive is not None:
            self._wake_keepalive.cancel()

    async def _run_app(self) -> None:
        try:
            await self.conn.ctx.app(self.scope, self.receive, self.send)
        except ClientDisconnected:
            logger.debug("WebSocket client %s went away", self.conn.client)
        except Exception:
            logger.exception("Exception in ASGI application")
            if self._state is _HANDSHAKE:
                await self._refuse(500)
            elif self._state is _CONNECTED:
                await self._close(INTERNAL_ERROR, "internal server error")
        else:
            if self._state is _HANDSHAKE:
                logger.error("ASGI application returned without accepting or closing the WebSocket")
                await self._refuse(500)
            elif self._state is _CONNECTED:
                await self._close(NORMAL, "")

    async def _finish_after_app(self) -> None:
        """Give the peer a while to answer our close frame, then let a last write finish."""
        if self._accepted:
            with trio.move_on_after(CLOSE_TIMEOUT):
                await self._read_until_peer_closes()
            # Whoever writes (the keepalive's close frame) finishes before the
            # nursery is cancelled: a frame cut in half would break the stream.
            async with self._send_lock:
                pass

    # -- ASGI receive -------------------------------------------------------

    async def receive(self) -> dict[str, Any]:
        inbox = self._inbox
        if not inbox:
            if not self._connect_delivered:
                self._connect_delivered = True
                return {"type": "websocket.connect"}
            if self._state is _HANDSHAKE:
                raise RuntimeError("receive() before websocket.accept: accept or close first")
            while not inbox:
                if self._close_code is not None or self._peer_done:
                    return {
                        "type": "websocket.disconnect",
                        "code": self._close_code if self._close_code is not None else ABNORMAL,
                        "reason": self._close_reason,
                    }
                if self._pending_failure is not None:
                    # The app has received (and answered) every message that
                    # came before the peer's protocol error: fail it now.
                    await self._close(*self._pending_failure)
                    continue
                await self._read_turn()
        message = inbox.popleft()
        if self._message_taken is not None:
            self._message_taken.set()
        return message

    # -- ASGI send ------------------------------------------------------------

    async def send(self, message: dict[str, Any]) -> None:
        message_type = message["type"]
        state = self._state
        if state is _CONNECTED and message_type == "websocket.send":
            if not await self._send_event(outgoing_message(message)):
                raise ClientDisconnected("the WebSocket is closed")
        elif state is _CONNECTED and message_type == "websocket.close":
            await self._close(message.get("code") or NORMAL, message.get("reason") or "")
        elif state is _HANDSHAKE and message_type == "websocket.accept":
            await self._accept(message)
        elif state is _HANDSHAKE and message_type == "websocket.close":
            await self._refuse(403)
        elif state is _HANDSHAKE and message_type == "websocket.http.response.start":
            headers = [(bytes(n), bytes(v)) for n, v in message.get("headers", ())]
            head = self.handshake.reject(message["status"], headers)  # h11 validates
            self._state = _RESPONDING
            self._log_access(message["status"])
            await self._write_or_disconnect(head)
        elif state is _RESPONDING and message_type == "websocket.http.response.body":
            more = message.get("more_body", False)
            if not more:
                self._state = _CLOSED
                self._end_for_app(ABNORMAL, "")
            body = self.handshake.reject_body(message.get("body", b""), finished=not more)
            await self._write_or_disconnect(body)
        elif state is _CLOSED:
            raise ClientDisconnected("the WebSocket is closed")
        else:
            raise RuntimeError(f"unexpected ASGI message {message_type!r} while {state.value}")

    async def _accept(self, message: dict[str, Any]) -> None:
        headers = [(bytes(n), bytes(v)) for n, v in message.get("headers", ())]
        data = self.handshake.accept(
            message.get("subprotocol"),
            headers,
            deflate=self.config.ws_per_message_deflate,
            max_size=self.config.ws_max_size,
        )
        self._frames = self.handshake.frames()
        self._state = _CONNECTED
        self._accepted = True
        self._log_access(101)
        await self._write_or_disconnect(data)
        assert self._nursery is not None
        self._nursery.start_soon(self._keepalive)

    async def _refuse(self, status: int) -> None:
        """A server-made HTTP response instead of the upgrade (403 or 500)."""
        self._state = _CLOSED
        self._end_for_app(ABNORMAL, "")
        self._log_access(status)
        await self._write_quietly(self.handshake.refuse(status))

    def _log_access(self, status: int) -> None:
        if access_logger.disabled or not access_logger.isEnabledFor(logging.INFO):
            return
        client = self.scope["client"]  # as a trusted proxy reports it
        access_logger.info(
            '%s - "WebSocket %s" %d',
            f"{client[0]}:{client[1]}" if client else "-",
            self.handshake.request.target.decode("ascii", "replace"),
            status,
        )

    # -- closing ----------------------------------------------------------------

    async def _close(self, code: int, reason: str) -> None:
        """Send our close frame (if the connection is still open); the app hears ``code``.

        The code is recorded first, so a ``receive()`` that reads meanwhile
        ends with it; the session lets the frame finish before it cancels
        anything (:meth:`_finish_after_app`). The write is shielded: it may
        run inside a read turn that its task's owner cancels.
        """
        if self._pending_failure is not None:
            # The peer broke the protocol: that, not the app's or the
            # server's reason, is why the connection ends.
            code, reason = self._pending_failure
            self._pending_failure = None
        self._state = _CLOSED
        self._end_for_app(code, reason)
        with trio.CancelScope(shield=True, deadline=trio.current_time() + CLOSE_TIMEOUT):
            await self._send_event(CloseConnection(code=code, reason=reason))
        # Wake a receive() (or the keepalive) that waits for bytes: the app
        # must hear the close now, not when the peer answers.
        self._socket_reader.interrupt()

    def _end_for_app(self, code: int, reason: str) -> None:
        """The connection is over: remember why, and wake whoever waits for it."""
        if self._close_code is None:
            self._close_code = code
            self._close_reason = reason
        if self._state is _CONNECTED:
            self._state = _CLOSED
        if self._message_taken is not None:
            self._message_taken.set()  # a reader waiting for room: there will be none
        if self._wake_keepalive is not None:
            self._wake_keepalive.cancel()  # it sees the closing handshake through

    # -- writing --------------------------------------------------------------

    async def _send_event(self, event: Event) -> bool:
        """Frame ``event`` and write it; False if the connection cannot carry it any more."""
        lock = self._send_lock
        if not lock.try_acquire():
            await lock.acquire()
        try:
            assert self._frames is not None
            try:
                data = self._frames.send(event)
            except LocalProtocolError:
                return False  # a close frame went (or came) first
            try:
                if self._sock is not None:
                    # An echo's write follows the read that woke its task:
                    # one scheduler step per message, not two.
                    await write_socket(
                        self._sock, data, schedule=not self._socket_reader.take_yield()
                    )
                else:
                    await self.stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._peer_done = True
                self._end_for_app(ABNORMAL, "")
                return False
        finally:
            lock.release()
        return True

    async def _send_control(self, event: Event) -> None:
        """A pong or a close answer, written from inside a read turn: never cut in half."""
        with trio.CancelScope(shield=True, deadline=trio.current_time() + CLOSE_TIMEOUT):
            await self._send_event(event)

    async def _write_or_disconnect(self, data: bytes) -> None:
        async with self._send_lock:
            try:
                await self.stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._state = _CLOSED
                self._end_for_app(ABNORMAL, "")
                raise ClientDisconnected("the client has disconnected") from None

    async def _write_quietly(self, data: bytes) -> None:
        try:
            with trio.move_on_after(CLOSE_TIMEOUT):
                async with self._send_lock:
                    await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    # -- reading ----------------------------------------------------------------

    async def _read_turn(self) -> None:
        """Read once and act on what came; if another task is reading, wait for its read."""
        if self._reading:
            if self._read_done is None:
                self._read_done = trio.Event()
            await self._read_done.wait()
            return
        self._reading = True
        try:
            if self._more_buffered:
                self._more_buffered = False
                await self._process()
            else:
                data = await self._socket_reader.read()
                if data is not None:
                    await self._process(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._peer_done = True
            self._end_for_app(ABNORMAL, "")
        except Exception:
            # A bug here must cost this connection, never the server.
            logger.exception("WebSocket reader failed for %s", self.conn.client)
            self._peer_done = True
            self._end_for_app(INTERNAL_ERROR, "")
            await trio.aclose_forcefully(self.stream)
        finally:
            self._reading = False
            if self._read_done is not None:
                self._read_done.set()
                self._read_done = None

    async def _process(self, data: bytes | None = None) -> None:
        """Feed ``data`` to wsproto and act on its events, until the queue is full."""
        frames = self._frames
        assert frames is not None
        if data is not None:
            if self._close_code is not None:
                # Closing: what comes now is read only to find the peer's close frame.
                self._drained += len(data)
                if self._protocol_error:
                    # wsproto cannot parse this peer: drop everything until EOF.
                    self._peer_done = not data
                    return
            frames.receive_data(data or None)  # b"" is EOF: wsproto reports 1006
        for event in frames.events():
            if isinstance(event, Message):
                if self._close_code is not None:
                    continue  # nobody will receive it
                message = self._assembler.add(event)
                if message is None:
                    continue
                if message is self._assembler.TOO_BIG:
                    await self._close(MESSAGE_TOO_BIG, "message too big")
                    return
                self._inbox.append(message)
                if not self._queue_has_room():
                    self._more_buffered = True
                    return
            elif not await self._handle_control(event):
                return

    def _queue_has_room(self) -> bool:
        """Whether another message may be read behind those waiting.

        Bytes are counted only once two wait (at most ``ws_max_queue``), so the usual
        single message costs no bookkeeping: one message of any allowed size,
        then more while the waiting ones stay under ``MESSAGE_QUEUE_BYTES``.
        """
        inbox = self._inbox
        if len(inbox) >= self.config.ws_max_queue:
            return False
        if len(inbox) < 2:
            return True
        return sum(payload_size(message) for message in inbox) < MESSAGE_QUEUE_BYTES

    async def _handle_control(self, event: Event) -> bool:
        """Act on a ping, pong or close; False once we are done reading."""
        frames = self._frames
        assert frames is not None
        if isinstance(event, Ping):
            await self._send_control(event.response())
            return True
        if isinstance(event, Pong):
            self._pong.set()
            return True
        assert isinstance(event, CloseConnection)
        self._peer_done = True
        if frames.state is ConnectionState.REMOTE_CLOSING:
            # The peer closes: answer in kind (wsproto echoes the code).
            self._end_for_app(int(event.code), event.reason or "")
            await self._send_control(event.response())
        elif frames.state is ConnectionState.OPEN:
            # wsproto could not parse the peer's frames: 1002, or 1007 for bad UTF-8.
            logger.debug("WebSocket protocol error from %s: %s", self.conn.client, event.reason)
            self._peer_done = False  # we still wait for its close frame, or EOF
            self._protocol_error = True
            failure = (int(event.code), event.reason or "protocol error")
            if self._inbox:
                # Messages that arrived whole before the bad frame are the
                # app's, and it may answer them (an echo): the connection
                # fails once it has received them (receive(), or _close).
                self._pending_failure = failure
                return False
            await self._close(*failure)
        else:
            # CLOSED: the answer to our close frame, or the socket's EOF (1006).
            self._end_for_app(int(event.code), event.reason or "")
        return False

    async def _read_until_peer_closes(self) -> None:
        """After our close frame: read (and drop) until the peer's answer or EOF."""
        # Messages that come now are dropped, so a full queue does not stop this
        # reading; those already queued are still the app's to receive.
        while not self._peer_done and self._drained < CLOSE_DRAIN_BYTES:
            await self._read_turn()

    # -- keepalive and shutdown ---------------------------------------------------

    async def _keepalive(self) -> None:
        interval = self.config.ws_ping_interval
        while await self._wait_unless_shutdown(interval) is None:
            self._pong = trio.Event()
            self._paused_during_ping = False
            # A peer that does not read holds the write lock (and the app)
            # back: the ping must get out within the timeout too.
            sent = None
            with trio.move_on_after(_or_inf(self.config.ws_ping_timeout)):
                sent = await self._send_event(Ping(payload=b"trio-asgi"))
            if sent is False:
                break
            answered = False if sent is None else await self._wait_for_pong()
            if answered is False:
                logger.info("WebSocket peer %s did not answer a ping", self.conn.client)
                await self._fail(INTERNAL_ERROR, "keepalive ping timeout")
                return
            if answered is None:
                break
        if self._state is _CONNECTED:
            await self._close(SERVICE_RESTART, "server shutting down")
        await self._see_closing_through()

    async def _see_closing_through(self) -> None:
        """Our close frame is out: the peer has ``CLOSE_TIMEOUT`` to answer, then the socket closes.

        Reading here too, so that the answer is seen while the app does not
        receive; closing the socket wakes an app that waits in ``receive()``.
        """
        if self._peer_done:
            return
        with trio.move_on_after(CLOSE_TIMEOUT):
            await self._read_until_peer_closes()
            if self._peer_done:
                return
        await trio.aclose_forcefully(self.stream)

    async def _wait_for_pong(self) -> bool | None:
        """True for a pong, False for silence, None if the connection is ending.

        Silence while reading paused for the app does not count against the peer.
        """
        while True:
            self._paused_during_ping = False
            result = await self._wait_unless_shutdown(
                self.config.ws_ping_timeout, self._read_until_pong
            )
            if result is not None:
                return True if result and self._close_code is None else None
            if not self._paused_during_ping:
                return False

    async def _read_until_pong(self) -> None:
        """Read (if the app does not) until the pong, pausing while the queue is full."""
        while not self._pong.is_set() and self._close_code is None:
            # Nothing to read while the queue is full, or while a protocol
            # error waits for the app to take the messages before it.
            if (
                self._more_buffered and not self._queue_has_room()
            ) or self._pending_failure is not None:
                self._paused_during_ping = True
                self._message_taken = trio.Event()
                try:
                    await self._message_taken.wait()
                finally:
                    self._message_taken = None
            else:
                await self._read_turn()

    async def _wait_unless_shutdown(
        self, seconds: float | None, until: Callable[[], Awaitable[None]] | None = None
    ) -> bool | None:
        """Wait ``seconds`` (or until ``until()`` returns): None when time is up, True
        when it returned, False once the server shuts down or the connection closes.
        Only this wait is cut short by :meth:`begin_shutdown` and closing, never a write."""
        with trio.CancelScope() as self._wake_keepalive:
            if self._shutting_down or self._close_code is not None:
                return False
            with trio.move_on_after(_or_inf(seconds)):
                if until is None:
                    await trio.sleep_forever()
                await until()
                return True
        self._wake_keepalive = None
        return False if self._shutting_down or self._close_code is not None else None

    async def _fail(self, code: int, reason: str) -> None:
        """Give up on a peer that stopped answering: close frame if we can, then the socket."""
        self._state = _CLOSED
        self._end_for_app(code, reason)
        with trio.move_on_after(FAIL_WRITE_TIMEOUT):
            await self._send_event(CloseConnection(code=code, reason=reason))
        self._peer_done = True
        await trio.aclose_forcefully(self.stream)


def _or_inf(seconds: float | None) -> float:
    return math.inf if seconds is None else seconds
