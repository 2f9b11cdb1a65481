"""One WebSocket connection, as the ASGI application sees it: the trio side of wsproto.

:class:`WebSocketSession` takes over an HTTP connection whose request asked
for an upgrade. The app runs in the connection's own task, as an HTTP
request does. Once it accepts, the session's nursery also runs

* the reader, which feeds wsproto and puts whole messages into a small
  bounded channel: when the app stops receiving, the channel fills, the
  reader stops reading and TCP holds the peer back;
* the keepalive task, which pings the peer every ``ws_ping_interval`` and
  fails the connection (1011) if no pong comes within ``ws_ping_timeout``,
  and which sends the 1012 close frame when the server shuts down.

Every write goes through one lock, with wsproto's ``send`` inside it, so
frames leave in the order their (possibly compressed) bytes were made. The
app's ``websocket.send`` returns once its frame is handed to the socket.

The ASGI side is an explicit state machine (:class:`_State`). Once the
connection is over, for whatever reason, the send side of the message
channel is closed: the app receives what is left and then one
``websocket.disconnect`` with the close code.
"""

from __future__ import annotations

import enum
import logging
import math
from typing import TYPE_CHECKING, Any

import trio
from wsproto.connection import ConnectionState
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Event,
    Message,
    Ping,
    Pong,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError

from ._http_cycle import ClientDisconnected
from ._logging import TRACE, access_logger, logger
from ._socket_io import RECEIVE_SIZE, plain_socket, read_socket
from ._ws_handshake import ServerHandshake, websocket_scope

if TYPE_CHECKING:
    import h11

    from ._http11 import HTTPConnection


#: Whole messages waiting for the app's ``receive()``; past this the reader stops.
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


class WebSocketSession:
    """Runs the app for one upgrade request on an :class:`HTTPConnection`."""

    def __init__(self, conn: HTTPConnection, request: h11.Request, trailing: bytes) -> None:
        self.conn = conn
        self.config = conn.ctx.config
        self.stream = conn.stream
        self.handshake = ServerHandshake(request, conn.ctx)
        self.ws = self.handshake.ws
        self.scope = websocket_scope(conn, request)
        self._trailing = trailing
        self._state = _State.HANDSHAKE
        self._connect_delivered = False
        self._accepted = False
        self._protocol_error = False
        self._send_lock = _WriteLock()
        self._to_app, self._from_peer = trio.open_memory_channel[dict[str, Any]](MESSAGE_QUEUE_SIZE)
        # Payload bytes waiting in that queue, and the event the reader waits
        # on when they are too many: set when the app takes a message.
        self._queued_bytes = 0
        self._message_taken: trio.Event | None = None
        self._close_code: int | None = None
        self._close_reason = ""
        self._nursery: trio.Nursery | None = None
        self._reader_done = trio.Event()
        self._reader_scope = trio.CancelScope()
        # Keepalive bookkeeping: the pong we wait for, and whether the reader
        # had to wait for the app meanwhile (then silence is not the peer's fault).
        self._pong = trio.Event()
        self._reader_paused = False
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
            if self._state is _State.HANDSHAKE:
                await self._refuse(500)
            elif self._state is _State.CONNECTED:
                await self._close(INTERNAL_ERROR, "internal server error")
        else:
            if self._state is _State.HANDSHAKE:
                logger.error("ASGI application returned without accepting or closing the WebSocket")
                await self._refuse(500)
            elif self._state is _State.CONNECTED:
                await self._close(NORMAL, "")

    async def _finish_after_app(self) -> None:
        """Give the peer a while to answer our close frame before the socket closes."""
        if self._accepted:
            with trio.move_on_after(CLOSE_TIMEOUT):
                await self._reader_done.wait()

    # -- ASGI receive -------------------------------------------------------

    async def receive(self) -> dict[str, Any]:
        if not self._connect_delivered:
            self._connect_delivered = True
            return {"type": "websocket.connect"}
        if self._state is _State.HANDSHAKE:
            raise RuntimeError("receive() before websocket.accept: accept or close first")
        try:
            message = await self._from_peer.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            return {
                "type": "websocket.disconnect",
                "code": self._close_code if self._close_code is not None else ABNORMAL,
                "reason": self._close_reason,
            }
        self._queued_bytes -= _payload_size(message)
        if self._message_taken is not None:
            self._message_taken.set()
        return message

    # -- ASGI send ------------------------------------------------------------

    async def send(self, message: dict[str, Any]) -> None:
        message_type = message["type"]
        state = self._state
        if state is _State.CONNECTED and message_type == "websocket.send":
            await self._send_message(message)
        elif state is _State.CONNECTED and message_type == "websocket.close":
            await self._close(message.get("code") or NORMAL, message.get("reason") or "")
        elif state is _State.HANDSHAKE and message_type == "websocket.accept":
            await self._accept(message)
        elif state is _State.HANDSHAKE and message_type == "websocket.close":
            await self._refuse(403)
        elif state is _State.HANDSHAKE and message_type == "websocket.http.response.start":
            headers = [(bytes(n), bytes(v)) for n, v in message.get("headers", ())]
            head = self.handshake.reject(message["status"], headers)  # h11 validates
            self._state = _State.RESPONDING
            self._log_access(message["status"])
            await self._write_or_disconnect(head)
        elif state is _State.RESPONDING and message_type == "websocket.http.response.body":
            more = message.get("more_body", False)
            if not more:
                self._state = _State.CLOSED
                self._end_for_app(ABNORMAL, "")
            body = self.handshake.reject_body(message.get("body", b""), finished=not more)
            await self._write_or_disconnect(body)
        elif state is _State.CLOSED:
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
        self._state = _State.CONNECTED
        self._accepted = True
        self._log_access(101)
        await self._write_or_disconnect(data)
        assert self._nursery is not None
        self._nursery.start_soon(self._read_loop)
        self._nursery.start_soon(self._keepalive)

    async def _send_message(self, message: dict[str, Any]) -> None:
        text, data = message.get("text"), message.get("bytes")
        if (text is None) == (data is None):
            raise RuntimeError("websocket.send needs exactly one of 'bytes' and 'text'")
        event = TextMessage(data=text) if text is not None else BytesMessage(data=bytes(data))
        if not await self._send_event(event):
            raise ClientDisconnected("the WebSocket is closed")

    async def _refuse(self, status: int) -> None:
        """A server-made HTTP response instead of the upgrade (403 or 500)."""
        self._state = _State.CLOSED
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
        """Send our close frame (if the connection is still open), then end it for the app.

        In that order: the app, told first, could return and have the session
        cancel the frame half-written.
        """
        self._state = _State.CLOSED
        with trio.move_on_after(CLOSE_TIMEOUT):
            await self._send_event(CloseConnection(code=code, reason=reason))
        self._end_for_app(code, reason)

    def _end_for_app(self, code: int, reason: str) -> None:
        """The connection is over: remember why, and let the app's receive() say so."""
        if self._close_code is None:
            self._close_code = code
            self._close_reason = reason
        if self._state is _State.CONNECTED:
            self._state = _State.CLOSED
        self._to_app.close()
        if self._message_taken is not None:
            self._message_taken.set()  # a reader waiting for room: there will be none

    # -- writing --------------------------------------------------------------

    async def _send_event(self, event: Event) -> bool:
        """Frame ``event`` and write it; False if the connection cannot carry it any more."""
        async with self._send_lock:
            try:
                data = self.ws.send(event)
            except LocalProtocolError:
                return False  # a close frame went (or came) first
            try:
                await self.stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._end_for_app(ABNORMAL, "")
                self._reader_scope.cancel()
                return False
        return True

    async def _write_or_disconnect(self, data: bytes) -> None:
        async with self._send_lock:
            try:
                await self.stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._state = _State.CLOSED
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

    async def _read_loop(self) -> None:
        reader = _MessageReader(self.config.ws_max_size)
        try:
            with self._reader_scope:
                data, eof = self._trailing, False
                sock = plain_socket(self.stream)
                while await self._process(data, eof, reader):
                    if sock is not None:
                        data = await read_socket(sock, RECEIVE_SIZE)
                    else:
                        data = await self.stream.receive_some(RECEIVE_SIZE)
                    eof = not data
                await self._drain_after_close()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._end_for_app(ABNORMAL, "")
        except Exception:
            # A bug here must cost this connection, never the server.
            logger.exception("WebSocket reader failed for %s", self.conn.client)
            self._end_for_app(INTERNAL_ERROR, "")
            await trio.aclose_forcefully(self.stream)
        finally:
            self._reader_done.set()

    async def _process(self, data: bytes, eof: bool, reader: _MessageReader) -> bool:
        """Feed bytes read to wsproto; False once the connection is closing."""
        if eof:
            self.ws.receive_data(None)  # wsproto reports 1006
        elif data:
            self.ws.receive_data(data)
        for event in self.ws.events():
            if not await self._handle(event, reader):
                return False
        return True

    async def _handle(self, event: Event, reader: _MessageReader) -> bool:
        """Act on one wsproto event; False once we are done reading messages."""
        if isinstance(event, Message):
            message = reader.add(event)
            if message is reader.TOO_BIG:
                await self._close(MESSAGE_TOO_BIG, "message too big")
                return False
            if message is not None and self._close_code is None:
                await self._pass_to_app(message)
            return True
        if isinstance(event, Ping):
            await self._send_event(event.response())
            return True
        if isinstance(event, Pong):
            self._pong.set()
            return True
        assert isinstance(event, CloseConnection)
        if self.ws.state is ConnectionState.REMOTE_CLOSING:
            # The peer closes: answer in kind (wsproto echoes the code).
            self._end_for_app(int(event.code), event.reason or "")
            await self._send_event(event.response())
        elif self.ws.state is ConnectionState.OPEN:
            # wsproto could not parse the peer's frames: 1002, or 1007 for bad UTF-8.
            logger.debug("WebSocket protocol error from %s: %s", self.conn.client, event.reason)
            self._protocol_error = True
            await self._close(int(event.code), event.reason or "protocol error")
        else:
            # CLOSED: the answer to our close frame, or the socket's EOF (1006).
            self._end_for_app(int(event.code), event.reason or "")
            return False
        return False

    async def _pass_to_app(self, message: dict[str, Any]) -> None:
        size = _payload_size(message)
        try:
            if self._queued_bytes and self._queued_bytes + size > MESSAGE_QUEUE_BYTES:
                raise trio.WouldBlock
            self._to_app.send_nowait(message)
            self._queued_bytes += size
            return
        except trio.WouldBlock:
            pass
        except trio.ClosedResourceError:
            return
        self._reader_paused = self._paused_during_ping = True
        try:
            # Wait for room in bytes, then in messages: the app takes its time.
            while self._queued_bytes and self._queued_bytes + size > MESSAGE_QUEUE_BYTES:
                if self._close_code is not None:
                    return
                self._message_taken = trio.Event()
                await self._message_taken.wait()
            await self._to_app.send(message)
            self._queued_bytes += size
        except trio.ClosedResourceError:
            pass  # the connection ended while the message waited: it is dropped
        finally:
            self._message_taken = None
            self._reader_paused = False

    async def _drain_after_close(self) -> None:
        """After a close frame, read (and drop) until the peer's close answer or EOF."""
        if self.ws.state is ConnectionState.CLOSED:
            return
        drained = 0
        with trio.move_on_after(CLOSE_TIMEOUT):
            while drained < CLOSE_DRAIN_BYTES:
                data = await self.stream.receive_some(RECEIVE_SIZE)
                if not data:
                    return
                drained += len(data)
                if self.ws.state is ConnectionState.LOCAL_CLOSING and not self._protocol_error:
                    try:
                        self.ws.receive_data(data)
                        for event in self.ws.events():
                            if isinstance(event, CloseConnection):
                                return
                    except LocalProtocolError:
                        return

    # -- keepalive and shutdown ---------------------------------------------------

    async def _keepalive(self) -> None:
        interval = self.config.ws_ping_interval
        while await self._wait_unless_shutdown(interval) is None:
            self._pong = trio.Event()
            self._paused_during_ping = self._reader_paused
            # A peer that does not read holds the write lock (and the app)
            # back: the ping must get out within the timeout too.
            sent = None
            with trio.move_on_after(_or_inf(self.config.ws_ping_timeout)):
                sent = await self._send_event(Ping(payload=b"trio-asgi"))
            if sent is False:
                return
            answered = False if sent is None else await self._wait_for_pong()
            if answered is False:
                logger.info("WebSocket peer %s did not answer a ping", self.conn.client)
                await self._fail(INTERNAL_ERROR, "keepalive ping timeout")
                return
            if answered is None:
                break
        if self._state is _State.CONNECTED:
            await self._close(SERVICE_RESTART, "server shutting down")

    async def _wait_for_pong(self) -> bool | None:
        """True for a pong, False for silence, None if the server began shutting down.

        Silence while the reader waited on the app does not count against the peer.
        """
        while True:
            result = await self._wait_unless_shutdown(self.config.ws_ping_timeout, self._pong)
            if result is not None:
                return True if result else None
            if not (self._reader_paused or self._paused_during_ping):
                return False
            self._paused_during_ping = self._reader_paused

    async def _wait_unless_shutdown(
        self, seconds: float | None, event: trio.Event | None = None
    ) -> bool | None:
        """Wait ``seconds`` (or for ``event``): None when time is up, True for the
        event, False once the server shuts down. Only this wait is cancellable
        by :meth:`begin_shutdown`, never a write."""
        with trio.CancelScope() as self._wake_keepalive:
            if self._shutting_down:
                return False
            with trio.move_on_after(_or_inf(seconds)):
                if event is None:
                    await trio.sleep_forever()
                await event.wait()
                return True
        self._wake_keepalive = None
        return False if self._shutting_down else None

    async def _fail(self, code: int, reason: str) -> None:
        """Give up on a peer that stopped answering: close frame if we can, then the socket."""
        self._reader_scope.cancel()
        self._state = _State.CLOSED
        with trio.move_on_after(FAIL_WRITE_TIMEOUT):
            await self._send_event(CloseConnection(code=code, reason=reason))
        self._end_for_app(code, reason)
        await trio.aclose_forcefully(self.stream)


def _or_inf(seconds: float | None) -> float:
    return math.inf if seconds is None else seconds


class _WriteLock:
    """A FIFO lock for the socket's writers whose uncontended acquire takes no scheduler step.

    trio's locks yield on every acquire; the session writes once per message
    and the lock is almost never contended (only pings and closes compete),
    so that yield was a task switch per message for nothing. The write under
    the lock (``send_all``) is still a checkpoint.
    """

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock = trio.StrictFIFOLock()

    async def __aenter__(self) -> None:
        try:
            self._lock.acquire_nowait()
        except trio.WouldBlock:
            await self._lock.acquire()

    async def __aexit__(self, *exc_info: object) -> None:
        self._lock.release()


def _payload_size(message: dict[str, Any]) -> int:
    """Roughly the bytes a queued ``websocket.receive`` holds (characters for text)."""
    return len(message.get("bytes") or message.get("text") or "")


class _MessageReader:
    """Assembles wsproto's message pieces into ASGI messages, within the size limit."""

    TOO_BIG: dict[str, Any] = {"too": "big"}

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._parts: list[Any] = []
        self._size = 0

    def add(self, event: Message[Any]) -> dict[str, Any] | None:
        data = event.data
        if isinstance(data, str):
            self._size += len(data) if data.isascii() else len(data.encode("utf-8"))
        else:
            self._size += len(data)
        if self._size > self.max_size:
            return self.TOO_BIG
        if not event.message_finished:
            self._parts.append(data)
            return None
        if self._parts:
            self._parts.append(data)
            data = ("" if isinstance(data, str) else b"").join(self._parts)
            self._parts = []
        self._size = 0
        if isinstance(event, TextMessage):
            return {"type": "websocket.receive", "text": data}
        return {"type": "websocket.receive", "bytes": bytes(data)}
