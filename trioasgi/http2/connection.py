"""One HTTP/2 connection: a nursery with a reader, a writer and a task per stream.

The connection's own task is the reader: it reads the socket, feeds h2 and
routes h2's events to the streams, starting a task for each new request
(at most ``h2_max_concurrent_streams`` at once; a stream over the limit is
refused with ``RST_STREAM REFUSED_STREAM``, the connection carries on). The
writer task is the only one that writes to the socket: whatever h2 has
produced since its last write (every stream's frames, the reader's
acknowledgements) leaves in one write. Each stream's task runs in its own
cancel scope; a stream's end (its app returning or raising, a reset)
touches nothing else, and the connection's end cancels every stream.

Memory per connection is bounded whatever the client does: the request
bodies waiting for their apps by the connection's receive window
(``h2_connection_window_size``), since windows are widened only as the apps
read; the bytes waiting for the writer by ``h2_max_connection_buffer``: past
it, streams wait to hand over more and the reader stops reading, so a
client that never reads the answers to its pings or its requests is held
back by TCP. :mod:`.flood` counts the frames the known attacks repeat.

Shutdown (RFC 9113, 6.8) is the two-step GOAWAY: a first one with the
largest stream id, a PING to time the round trip, then the final one with
the last stream actually started; streams opened after it are refused,
those before it finish within the server's graceful deadline. An idle
connection is closed after ``timeout_keep_alive`` with a GOAWAY too.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from typing import Any, Protocol

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.frame_buffer
import h2.settings
import trio
from h2.errors import ErrorCodes
from hyperframe.frame import GoAwayFrame

from ..asgi.context import ServerState
from ..asgi.cycle import ServerResponse, log_server_response
from ..asgi.request import RequestHead
from ..core.logs import TRACE, logger
from ..core.proxy import peer_is_trusted
from ..core.socket_io import RECEIVE_SIZE, close_stream, plain_socket, read_socket
from .cycle import H2Cycle
from .flood import Flood, FloodMeter
from .machine import bound_encoder_table, server_connection
from .request import H2Request, parse_request, trailers_are_valid
from .stream import MAX_DATA_FRAME, H2Stream
from .websocket import run_websocket
from .writer import FrameWriter

#: The largest stream id (RFC 9113, 5.1.1): the first GOAWAY of a shutdown names it.
MAX_STREAM_ID = 2**31 - 1
#: How long the first GOAWAY of a shutdown waits for its PING's answer.
GOAWAY_ROUND_TRIP = 1.0
#: How long a closing connection's writer may take to write its last frames.
CLOSE_WRITE_SECONDS = 2.0
#: The opaque data of that PING.
_SHUTDOWN_PING = b"trioasgi"


class H2Context(ServerState, Protocol):
    """What an HTTP/2 connection needs of its server (``serving.context.ServerContext``)."""

    response_defaults: Any


class HTTP2Connection:
    """Serves the streams of one client connection, concurrently."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        ctx: H2Context,
        *,
        client: tuple[str, int] | None,
        server: tuple[str, int | None] | None,
        scheme: str = "http",
        tls: dict[str, Any] | None = None,
        received: bytes = b"",
        upgrade: tuple[RequestHead, bytes] | None = None,
    ) -> None:
        self.stream = stream
        self.ctx = ctx
        self.client = client
        self.server = server
        self.scheme = scheme
        self.tls = tls
        self.proxy_trusted = peer_is_trusted(ctx.trusted_proxies, client, server)
        config = ctx.config
        self.config = config
        self.h2 = server_connection(config)
        # Bytes read before we knew it was HTTP/2 (the preface, perhaps more).
        self._received = received
        self._upgrade = upgrade
        self._sock = plain_socket(stream)
        #: The running streams, by id.
        self.streams: dict[int, H2Stream] = {}
        #: The WebSocket sessions among them (``websocket.session.WebSocketSession``).
        self.websockets: set[Any] = set()
        self._nursery: trio.Nursery | None = None
        # What the writer has to write, and what it is writing now.
        streams_share = config.h2_max_concurrent_streams * MAX_DATA_FRAME
        #: The only writer of the socket (see ``writer``).
        self.writer = FrameWriter(
            self.h2,
            stream,
            self._sock,
            cap=config.h2_max_connection_buffer,
            # Only the reader's own answers to a flood can reach this.
            reader_cap=2 * config.h2_max_connection_buffer + streams_share,
        )
        self._window_waiters: set[H2Stream] = set()
        self._flood = FloodMeter(trio.current_time())
        # Shutdown: the id of the last stream we will serve once the final GOAWAY is out.
        self.shutting_down = False
        self._last_stream_id = 0
        self._final_goaway_sent = False
        self._shutdown_ping = trio.Event()
        self._closing = False
        # The reader's wait for the next bytes: its deadline is the keep-alive timeout.
        self._idle_scope = trio.CancelScope()

    # -- life cycle -------------------------------------------------------

    async def run(self) -> None:
        """Serve streams until the client leaves, an error, an idle timeout or shutdown."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self._start()
                if self.shutting_down and not self._closing:
                    self._start_goaway()
                nursery.start_soon(self._write_loop)
                try:
                    await self._read_loop()
                finally:
                    self._end_streams()
                    self._closing = True
                    self.writer.finish()
                    # The writer has a little while for the last frames (the
                    # GOAWAY): a client that does not read them must not hold
                    # the connection, its task and its buffers, for ever.
                    scope = nursery.cancel_scope
                    scope.deadline = min(scope.deadline, trio.current_time() + CLOSE_WRITE_SECONDS)
        except Exception:
            # A bug here must cost this connection, never the server.
            logger.exception("HTTP/2 connection from %s failed", self.client)
        finally:
            await close_stream(self.stream)

    def _start(self) -> None:
        h2conn = self.h2
        if self._upgrade is not None:
            request, settings = self._upgrade
            try:
                h2conn.initiate_upgrade_connection(settings)
            except (h2.exceptions.ProtocolError, ValueError) as exc:
                logger.log(TRACE, "%s: bad HTTP2-Settings: %s", self.client, exc)
                self._close_with(ErrorCodes.PROTOCOL_ERROR)
                return
            else:
                # (h2 applies HTTP2-Settings without an event for _on_settings.)
                bound_encoder_table(self.h2)
                request_1 = H2Request(_upgraded_head(request), None, None, proxied=True)
                self._start_task(self._start_stream(1, request_1, ended=True), request_1)
        else:
            h2conn.initiate_connection()
        extra = self.config.h2_connection_window_size - 65535
        if extra > 0:
            h2conn.increment_flow_control_window(extra)
        self.writer.queued()
        if not self.streams:
            self._idle_scope.deadline = trio.current_time() + self.config.timeout_keep_alive

    def begin_shutdown(self) -> None:
        """Start the two-step GOAWAY; the connection closes once its streams are done."""
        if self.shutting_down:
            return
        self.shutting_down = True
        for session in list(self.websockets):
            session.begin_shutdown()  # 1012, as over HTTP/1.1
        if self._closing:
            self._idle_scope.cancel()
        elif self._nursery is not None:
            self._start_goaway()
        # Else run() has not started (a shutdown while an HTTP/1.1 connection
        # hands over): it starts the GOAWAY once the connection is set up, so
        # the requests that came with the preface are still answered. (This
        # cancelled the reader's first wait instead: no GOAWAY, and the
        # streams already read were cancelled, or not, as the tasks ran.)

    def _start_goaway(self) -> None:
        assert self._nursery is not None
        self._send_goaway(MAX_STREAM_ID)
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self.h2.ping(_SHUTDOWN_PING)
        self.writer.queued()
        self._nursery.start_soon(self._finish_shutdown)

    async def _finish_shutdown(self) -> None:
        with trio.move_on_after(GOAWAY_ROUND_TRIP):
            await self._shutdown_ping.wait()
        self._final_goaway_sent = True
        self._send_goaway(self._last_stream_id)
        self.writer.queued()
        if not self.streams:
            self._idle_scope.cancel()

    def _send_goaway(self, last_stream_id: int, error: ErrorCodes = ErrorCodes.NO_ERROR) -> None:
        """A GOAWAY that leaves the connection open for the streams before it.

        h2's ``close_connection`` would stop h2 from sending anything more,
        the responses still in flight included: the frame is made here.
        """
        frame = GoAwayFrame(stream_id=0)
        frame.last_stream_id = last_stream_id
        frame.error_code = error
        self.writer.append(frame.serialize())

    def _calm_down(self, flood: Flood) -> None:
        """End a connection that repeats what an attack repeats (``ENHANCE_YOUR_CALM``)."""
        logger.info(
            "HTTP/2 client %s sent too many %s frames: closing", self.client, flood.name.lower()
        )
        self._close_with(ErrorCodes.ENHANCE_YOUR_CALM)

    def _close_with(self, error: ErrorCodes | None) -> None:
        """End the connection with a GOAWAY of ``error`` (None: h2 has queued its own)."""
        if error is not None:
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self.h2.close_connection(error)
        self.writer.queued()
        self._closing = True
        self._idle_scope.cancel()

    def _end_streams(self) -> None:
        """The connection is over: every stream's task hears it and is cancelled."""
        for stream in list(self.streams.values()):
            stream.was_reset()
            if stream.scope is not None:
                stream.scope.cancel()

    # -- reading ----------------------------------------------------------

    async def _read_loop(self) -> None:
        """Read until EOF, an error or the idle scope's end (keep-alive timeout, shutdown)."""
        with self._idle_scope:
            data = self._received
            self._received = b""
            while not self._closing:
                if data:
                    self._receive(data)
                    if self._closing:
                        return
                # Answers the client does not read: stop reading until they are written.
                while self.writer.reader_over_buffer() and not self._closing:
                    await self.writer.wait_for_room()
                data = await self._read()
                if not data:
                    return
        if not self._closing and not self.shutting_down:
            logger.log(TRACE, "closing idle HTTP/2 connection from %s", self.client)
            self._send_goaway(self._last_stream_id)

    async def _read(self) -> bytes:
        if self._sock is not None:
            return await read_socket(self._sock)
        try:
            return await self.stream.receive_some(RECEIVE_SIZE)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return b""

    def _receive(self, data: bytes) -> None:
        """Feed h2 and act on its events; a protocol error ends the connection with GOAWAY."""
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            logger.log(TRACE, "HTTP/2 protocol error from %s: %s", self.client, exc)
            # h2 queued the GOAWAY as it raised: a second one repeated it.
            self._close_with(None)
            return
        starting: list[tuple[H2Stream, H2Request]] = []
        for event in events:
            handler = _HANDLERS.get(type(event))
            if handler is not None:
                handler(self, event, starting)
                if self._closing:
                    return
        # Tasks start after the whole batch: a stream reset in the same read
        # (rapid reset) never costs one.
        for stream, request in starting:
            if stream.reset:
                self._stream_done(stream)
            else:
                self._start_task(stream, request)
        self.writer.queued()

    def _may_start(self, stream_id: int) -> bool:
        if self._final_goaway_sent and stream_id > self._last_stream_id:
            self._refuse_stream(stream_id, ErrorCodes.REFUSED_STREAM, "after GOAWAY")
            return False
        if len(self.streams) >= self.config.h2_max_concurrent_streams:
            # A refused stream is spent from the reset budget too: otherwise a
            # rapid reset that fills the limit (in one read, or with apps that
            # do not return once reset) goes on uncounted, since the client's
            # RST_STREAM for a stream we refused makes no event.
            if self._spend(Flood.RESET):
                self._refuse_stream(stream_id, ErrorCodes.REFUSED_STREAM, "too many streams")
            return False
        return True

    def _refuse_stream(self, stream_id: int, error: ErrorCodes, reason: str) -> None:
        logger.log(TRACE, "%s: refusing stream %d: %s", self.client, stream_id, reason)
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self.h2.reset_stream(stream_id, error)

    def _start_stream(self, stream_id: int, request: H2Request, ended: bool) -> H2Stream:
        stream = H2Stream(self, stream_id, ended)
        self.streams[stream_id] = stream
        self._last_stream_id = max(self._last_stream_id, stream_id)
        if len(self.streams) == 1:
            self._idle_scope.deadline = math.inf
        return stream

    def _start_task(self, stream: H2Stream, request: H2Request) -> None:
        assert self._nursery is not None
        self._nursery.start_soon(self._run_stream, stream, request, name=_STREAM_TASK_NAME)

    async def _run_stream(self, stream: H2Stream, request: H2Request) -> None:
        try:
            with trio.CancelScope() as stream.scope:
                if stream.reset:
                    return
                if request.protocol is not None:
                    await self._run_extended_connect(stream, request)
                else:
                    await self._run_request(stream, request)
        except Exception:
            logger.exception("HTTP/2 stream %d from %s failed", stream.stream_id, self.client)
        finally:
            self._stream_done(stream)

    async def _run_request(self, stream: H2Stream, request: H2Request) -> None:
        limit = self.config.limit_request_body
        if (
            limit is not None
            and request.content_length is not None
            and (request.content_length > limit)
        ):
            await self._answer_error(stream, request.head, 413, "request body too large")
            return
        cycle = H2Cycle(stream, request.head, request.proxied)
        if self.config.cancel_on_disconnect:
            # A reset, or the connection's end, cancels the app's call.
            cycle.app_scope = trio.CancelScope()
        stream.cycle = cycle
        await cycle.run()
        if stream.response_done:
            self._flood.reward()

    async def _answer_error(
        self, stream: H2Stream, head: RequestHead, status: int, detail: str
    ) -> None:
        """A response the server makes itself on a stream, and its access line."""
        config = self.config
        started = time.perf_counter() if config.access_log else 0.0
        sent = await stream.send_error(status, detail)
        if config.access_log:
            response = ServerResponse(stream, head, status, sent, started)
            log_server_response(response, config.access_log_format)

    async def _run_extended_connect(self, stream: H2Stream, request: H2Request) -> None:
        """RFC 8441: a WebSocket over this stream, or a refusal of another protocol."""
        if request.protocol != b"websocket" or self.config.ws == "none":
            await self._answer_error(stream, request.head, 501, "unsupported :protocol")
            return

        await run_websocket(self, stream, request.head)

    def _stream_done(self, stream: H2Stream) -> None:
        self.streams.pop(stream.stream_id, None)
        self._window_waiters.discard(stream)
        stream.abandon()
        if not self.streams:
            if self._final_goaway_sent:
                self._idle_scope.cancel()
            elif not self._closing:
                self._idle_scope.deadline = trio.current_time() + self.config.timeout_keep_alive

    # -- h2's events --------------------------------------------------------

    def _on_request(self, event: h2.events.RequestReceived, starting: list) -> None:
        stream_id = event.stream_id
        request = parse_request(event.headers)
        if type(request) is str:
            # Each costs us a RST_STREAM to write: a flood of them (CVE-2019-9514)
            # is spent from the reset budget.
            if self._spend(Flood.RESET):
                self._refuse_stream(stream_id, ErrorCodes.PROTOCOL_ERROR, request)
        elif self._may_start(stream_id):
            stream = self._start_stream(stream_id, request, bool(event.stream_ended))
            starting.append((stream, request))

    def _on_data(self, event: h2.events.DataReceived, starting: list) -> None:
        if not event.data and not event.stream_ended and not self._spend(Flood.EMPTY):
            return
        stream = self.streams.get(event.stream_id)
        size = event.flow_controlled_length
        if stream is None or stream.reset:
            # A stream that is over for us: its bytes only free the window.
            if size:
                self.h2.acknowledge_received_data(size, event.stream_id)
            return
        stream.data_received(event.data, size, bool(event.stream_ended))

    def _on_trailers(self, event: h2.events.TrailersReceived, starting: list) -> None:
        """Request trailers: checked, then dropped (ASGI has no request trailers)."""
        if not trailers_are_valid(event.headers):
            self._refuse_stream(event.stream_id, ErrorCodes.PROTOCOL_ERROR, "malformed trailers")
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                stream.was_reset()

    def _on_stream_ended(self, event: h2.events.StreamEnded, starting: list) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is not None:
            stream.ended()

    def _on_reset(self, event: h2.events.StreamReset, starting: list) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is None or not event.remote_reset:
            return
        if not stream.response_done and not self._spend(Flood.RESET):
            return
        stream.was_reset()

    def _on_window(self, event: Any, starting: list) -> None:
        stream_id = getattr(event, "stream_id", 0)
        if stream_id:
            stream = self.streams.get(stream_id)
            if stream is not None and stream in self._window_waiters:
                self._window_waiters.discard(stream)
                stream.notify()
            return
        waiters, self._window_waiters = self._window_waiters, set()
        for stream in waiters:
            stream.notify()

    def _on_settings(self, event: h2.events.RemoteSettingsChanged, starting: list) -> None:
        if self._spend(Flood.SETTINGS):
            bound_encoder_table(self.h2)
            self._on_window(event, starting)

    def _on_ping(self, event: Any, starting: list) -> None:
        self._spend(Flood.PING)

    def _on_ping_ack(self, event: h2.events.PingAckReceived, starting: list) -> None:
        if event.ping_data == _SHUTDOWN_PING:
            self._shutdown_ping.set()

    def _on_priority(self, event: h2.events.PriorityUpdated, starting: list) -> None:
        self._spend(Flood.PRIORITY)

    def _on_terminated(self, event: h2.events.ConnectionTerminated, starting: list) -> None:
        logger.log(TRACE, "%s sent GOAWAY (%s)", self.client, event.error_code)
        self._closing = True

    def _spend(self, flood: Flood) -> bool:
        if self._flood.spend(flood, trio.current_time()):
            return True
        self._calm_down(flood)
        return False

    # -- writing ----------------------------------------------------------

    def wait_for_window(self, stream: H2Stream) -> None:
        """The stream waits for a window: wake it on the next WINDOW_UPDATE or SETTINGS."""
        self._window_waiters.add(stream)

    async def _write_loop(self) -> None:
        try:
            await self.writer.run()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            # The client is gone: nothing more can be written or read.
            self._closing = True
            self._idle_scope.cancel()
            self._end_streams()


_HANDLERS: dict[type, Callable[[HTTP2Connection, Any, list], None]] = {
    h2.events.RequestReceived: HTTP2Connection._on_request,
    h2.events.DataReceived: HTTP2Connection._on_data,
    h2.events.TrailersReceived: HTTP2Connection._on_trailers,
    h2.events.StreamEnded: HTTP2Connection._on_stream_ended,
    h2.events.StreamReset: HTTP2Connection._on_reset,
    h2.events.WindowUpdated: HTTP2Connection._on_window,
    h2.events.RemoteSettingsChanged: HTTP2Connection._on_settings,
    h2.events.PingReceived: HTTP2Connection._on_ping,
    h2.events.PingAckReceived: HTTP2Connection._on_ping_ack,
    h2.events.PriorityUpdated: HTTP2Connection._on_priority,
    h2.events.ConnectionTerminated: HTTP2Connection._on_terminated,
}

#: The fields of an ``Upgrade: h2c`` request that were for the HTTP/1.1 connection only.
_UPGRADE_FIELDS = frozenset({b"connection", b"upgrade", b"http2-settings", b"keep-alive"})


def _upgraded_head(request: RequestHead) -> RequestHead:
    """The request that asked for ``Upgrade: h2c``, as served on stream 1: an HTTP/2 request.

    Its response goes out over HTTP/2, so the app sees ``http_version`` "2"
    (not the "1.1" it was read as), without the fields that only asked the
    HTTP/1.1 connection to switch (they are forbidden in HTTP/2, RFC 9113, 8.2.2).
    """
    headers = [(name, value) for name, value in request.headers if name not in _UPGRADE_FIELDS]
    return RequestHead(request.method, request.target, b"2", headers)


#: The name of every stream task (trio's default name, spelled out once).
_STREAM_TASK_NAME = f"{__name__}.{HTTP2Connection._run_stream.__qualname__}"
