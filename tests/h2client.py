"""An HTTP/2 client (h2's state machine) talking to an HTTP2Connection over memory streams.

``H2Server`` runs one server-side connection (either :class:`HTTP2Connection`
directly, or an HTTP/1.1 :class:`HTTPConnection` handed over to HTTP/2 as
the server does) in a test's nursery; ``H2Client`` is the other end: it
sends h2's frames, or raw bytes for the attacks, and records every event
the server's bytes make. Every wait is bounded by a count of reads and by
``trio.fail_after`` in virtual seconds (the tests run on a MockClock).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import hpack
import trio
import trio.testing
from hyperframe.frame import (
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

import trioasgi
from tests.conftest import DEFAULT_SETTINGS
from trioasgi.http2.connection import HTTP2Connection
from trioasgi.http11.connection import HTTPConnection
from trioasgi.serving.context import ServerContext

_HEADER_EVENTS = (h2.events.ResponseReceived, h2.events.InformationalResponseReceived)
CLIENT = ("127.0.0.1", 50000)
SERVER = ("127.0.0.1", 8000)


class H2Server:
    """One server-side connection over a memory stream pair, run in ``nursery``.

    With ``via_http11`` the bytes first reach an HTTP/1.1 connection, which
    hands over to HTTP/2 (prior knowledge, ``Upgrade: h2c``) as
    ``Server._handle_connection`` does.
    """

    def __init__(
        self,
        app: Callable[..., Any],
        nursery: trio.Nursery,
        *,
        via_http11: bool = False,
        pair: Callable[[], tuple[Any, Any]] = trio.testing.memory_stream_pair,
        ctx: ServerContext | None = None,
        **settings: Any,
    ) -> None:
        self.client_stream, self.server_stream = pair()
        for name, value in DEFAULT_SETTINGS.items():
            settings.setdefault(name, value)
        self.ctx = ctx or ServerContext(app=app, config=trioasgi.Config(**settings))
        self.http11: HTTPConnection | None = None
        self.conn: HTTP2Connection | None = None
        if not via_http11:
            self.conn = HTTP2Connection(self.server_stream, self.ctx, client=CLIENT, server=SERVER)
        self.started = trio.Event()
        self.finished = trio.Event()
        nursery.start_soon(self._run)

    async def _run(self) -> None:
        try:
            if self.conn is None:
                self.http11 = HTTPConnection(
                    self.server_stream, self.ctx, client=CLIENT, server=SERVER
                )
                await self.http11.run()
                handover = self.http11.handover
                if handover is None:
                    return
                self.conn = HTTP2Connection(
                    self.http11.stream,
                    self.ctx,
                    client=CLIENT,
                    server=SERVER,
                    received=handover.received,
                    upgrade=handover.upgrade,
                )
            self.started.set()
            await self.conn.run()
        finally:
            self.finished.set()

    def buffered(self) -> int:
        """The bytes the connection holds for its writer (queued plus being written)."""
        assert self.conn is not None
        return self.conn.writer.unwritten()


class _Reads:
    """Reading a client's stream: one read, and bounded loops over its ``receive()``."""

    stream: trio.abc.Stream
    #: The server has closed the connection (or it broke).
    closed: bool

    async def receive(self) -> bool:
        """Read once and handle what arrived; False once the server has closed."""
        raise NotImplementedError

    async def _read_once(self) -> bytes:
        """One read; ``b""`` (and ``closed`` set) at EOF or once the stream broke."""
        try:
            data = await self.stream.receive_some(65536)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            data = b""
        if not data:
            self.closed = True
        return data

    async def until(self, done: Callable[[], bool], *, reads: int = 1000) -> None:
        """Read until ``done()`` (checked before each read); fail if the server closes first."""
        for _ in range(reads):
            if done():
                return
            if not await self.receive():
                assert done(), "the server closed the connection first"
                return
        raise AssertionError(f"not done after {reads} reads")

    async def read_to_close(self, *, reads: int = 10_000) -> None:
        """Read until the server closes the connection."""
        for _ in range(reads):
            if not await self.receive():
                return
        raise AssertionError(f"still open after {reads} reads")


class H2Client(_Reads):
    """The client end: h2 in client mode, and the events the server's bytes made."""

    def __init__(self, stream: trio.abc.Stream, h2_settings: dict[int, int] | None = None) -> None:
        self.stream = stream
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        self.events: list[h2.events.Event] = []
        self.closed = False
        # Answers by stream id: status, headers, body, and how the stream ended.
        self.headers: dict[int, list[tuple[bytes, bytes]]] = {}
        self.bodies: dict[int, bytearray] = {}
        self.ended: set[int] = set()
        self.resets: dict[int, int] = {}
        self.goaways: list[h2.events.ConnectionTerminated] = []
        self._settings = h2_settings or {}

    # -- sending ------------------------------------------------------------

    async def start(self, *, preface: bool = True) -> None:
        """Send the preface and our SETTINGS (or only take h2's state, for an h2c upgrade)."""
        if self._settings:
            self.h2.local_settings = h2.settings.Settings(
                client=True, initial_values=self._settings
            )
        if preface:
            self.h2.initiate_connection()
        await self.flush()

    async def flush(self) -> None:
        data = self.h2.data_to_send()
        if data:
            await self.send_raw(data)

    async def send_raw(self, data: bytes) -> None:
        try:
            await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.closed = True

    def next_id(self) -> int:
        return self.h2.get_next_available_stream_id()

    async def request(
        self,
        path: str = "/",
        *,
        method: str = "GET",
        body: bytes | None = None,
        end: bool = True,
        headers: list[tuple[bytes, bytes]] | None = None,
        authority: bytes = b"example.com",
    ) -> int:
        """Open a stream with ``body`` (within the window), ended unless ``end`` is off."""
        stream_id = self.next_id()
        head = [
            (b":method", method.encode()),
            (b":path", path.encode()),
            (b":scheme", b"http"),
            (b":authority", authority),
            *(headers or []),
        ]
        self.h2.send_headers(stream_id, head, end_stream=end and body is None)
        if body is not None:
            self.send_body(stream_id, body, end=end)
        await self.flush()
        return stream_id

    def send_body(self, stream_id: int, body: bytes, *, end: bool = True) -> None:
        """Queue ``body`` in frames of the largest size allowed (it must fit the window)."""
        size = self.h2.max_outbound_frame_size
        pieces = [body[i : i + size] for i in range(0, len(body), size)] or [b""]
        for i, piece in enumerate(pieces):
            self.h2.send_data(stream_id, piece, end_stream=end and i == len(pieces) - 1)

    # -- receiving ----------------------------------------------------------

    async def receive(self) -> bool:
        """Read once and feed h2; False at EOF."""
        data = await self._read_once()
        if not data:
            return False
        self.feed(data)
        await self.flush()  # acknowledgements, WINDOW_UPDATEs
        return True

    def feed(self, data: bytes) -> list[h2.events.Event]:
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:  # pragma: no cover (the server's bug)
            raise AssertionError(f"the server sent invalid HTTP/2: {exc}") from exc
        for event in events:
            self.events.append(event)
            if isinstance(
                event, h2.events.ResponseReceived | h2.events.InformationalResponseReceived
            ):
                self.headers.setdefault(event.stream_id, []).extend(event.headers)
            elif isinstance(event, h2.events.DataReceived):
                self.bodies.setdefault(event.stream_id, bytearray()).extend(event.data)
                # Read at once: the window opens as the body arrives.
                if event.flow_controlled_length:
                    self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                self.ended.add(event.stream_id)
            elif isinstance(event, h2.events.StreamReset):
                self.resets[event.stream_id] = event.error_code
            elif isinstance(event, h2.events.ConnectionTerminated):
                self.goaways.append(event)
        return events

    async def response(self, stream_id: int) -> tuple[int, bytes]:
        """The stream's complete response: status and body."""
        # A complete response may be followed by RST_STREAM NO_ERROR (the body unread).
        await self.until(lambda: stream_id in self.ended or stream_id in self.resets)
        assert stream_id in self.ended, f"stream {stream_id} reset: {self.resets[stream_id]}"
        return self.status(stream_id), bytes(self.bodies.get(stream_id, b""))

    def status(self, stream_id: int) -> int:
        finals = [v for n, v in self.headers.get(stream_id, []) if n == b":status"]
        return int(finals[-1])

    def header(self, stream_id: int, name: bytes) -> bytes | None:
        for n, v in self.headers.get(stream_id, []):
            if n == name:
                return v
        return None

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self.stream)


async def get(client: H2Client, path: str = "/", **kwargs: Any) -> tuple[int, bytes]:
    """One request on ``client``'s connection, and its response."""
    stream_id = await client.request(path, **kwargs)
    return await client.response(stream_id)


async def start_pair(
    app: Callable[..., Any], nursery: trio.Nursery, **settings: Any
) -> tuple[H2Server, H2Client]:
    """A server-side connection and a started client to it."""
    server = H2Server(app, nursery, **settings)
    client = H2Client(server.client_stream)
    await client.start()
    return server, client


class RawClient(_Reads):
    """A client of raw frames (hyperframe, hpack): it may break every rule h2 would keep.

    It answers the server's SETTINGS (so they take effect) and, unless
    ``answer_pings`` is off, its PINGs; what it reads is parsed into frames and
    kept, with the headers decoded and the responses' bodies assembled.
    """

    PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

    def __init__(self, stream: trio.abc.Stream, *, answer_pings: bool = True) -> None:
        self.stream = stream
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder()
        self.answer_pings = answer_pings
        self._buffer = bytearray()
        self.frames: list[Frame] = []
        self.headers: dict[int, list[tuple[bytes, bytes]]] = {}
        self.bodies: dict[int, bytearray] = {}
        self.ended: set[int] = set()
        self.resets: dict[int, int] = {}
        self.goaways: list[GoAwayFrame] = []
        self.closed = False
        self.next_stream_id = 1

    async def start(self, settings: dict[int, int] | None = None) -> None:
        frame = SettingsFrame(0, settings=settings or {})
        await self.send(self.PREFACE + frame.serialize())

    async def send(self, *frames: Frame | bytes) -> None:
        data = b"".join(f if isinstance(f, bytes) else f.serialize() for f in frames)
        try:
            await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.closed = True

    def block(self, path: str = "/", method: str = "GET", extra: Any = ()) -> bytes:
        """An encoded request header block."""
        return self.encoder.encode(
            [
                (b":method", method.encode()),
                (b":path", path.encode()),
                (b":scheme", b"http"),
                (b":authority", b"example.com"),
                *extra,
            ]
        )

    def request(
        self, path: str = "/", *, method: str = "GET", end: bool = True, extra: Any = ()
    ) -> tuple[int, HeadersFrame]:
        """A new stream's HEADERS frame (not sent)."""
        stream_id = self.next_stream_id
        self.next_stream_id += 2
        frame = HeadersFrame(stream_id, self.block(path, method, extra))
        frame.flags.add("END_HEADERS")
        if end:
            frame.flags.add("END_STREAM")
        return stream_id, frame

    async def receive(self) -> bool:
        """Read once; parse and answer what arrived. False at EOF."""
        data = await self._read_once()
        if not data:
            return False
        self._buffer += data
        answers = []
        while len(self._buffer) >= 9:
            frame, length = Frame.parse_frame_header(memoryview(self._buffer[:9]))
            if len(self._buffer) < 9 + length:
                break
            frame.parse_body(memoryview(bytes(self._buffer[9 : 9 + length])))
            del self._buffer[: 9 + length]
            self.frames.append(frame)
            answers += self._on_frame(frame)
        if answers and not self.closed:
            await self.send(*answers)
        return True

    def _on_frame(self, frame: Frame) -> list[Frame]:
        sid = frame.stream_id
        if isinstance(frame, HeadersFrame | DataFrame) and "END_STREAM" in frame.flags:
            self.ended.add(sid)
        if isinstance(frame, HeadersFrame):
            # The server's blocks are small: never split into CONTINUATIONs.
            assert "END_HEADERS" in frame.flags
            self.headers.setdefault(sid, []).extend(self.decoder.decode(frame.data, raw=True))
        elif isinstance(frame, DataFrame):
            self.bodies.setdefault(sid, bytearray()).extend(frame.data)
            if frame.flow_controlled_length:
                # Read at once: give the window back on the stream and the connection.
                return [
                    WindowUpdateFrame(0, window_increment=frame.flow_controlled_length),
                    WindowUpdateFrame(sid, window_increment=frame.flow_controlled_length),
                ]
        elif isinstance(frame, RstStreamFrame):
            self.resets[sid] = frame.error_code
        elif isinstance(frame, GoAwayFrame):
            self.goaways.append(frame)
        elif isinstance(frame, SettingsFrame) and "ACK" not in frame.flags:
            return [SettingsFrame(0, flags=["ACK"])]
        elif isinstance(frame, PingFrame) and "ACK" not in frame.flags and self.answer_pings:
            return [PingFrame(0, opaque_data=frame.opaque_data, flags=["ACK"])]
        return []

    def status(self, stream_id: int) -> int:
        return int(dict(self.headers[stream_id])[b":status"])

    async def response(self, stream_id: int) -> tuple[int, bytes]:
        # A complete response may be followed by RST_STREAM NO_ERROR (the body unread).
        await self.until(lambda: stream_id in self.ended or stream_id in self.resets)
        assert stream_id in self.ended, f"stream {stream_id} reset: {self.resets[stream_id]}"
        return self.status(stream_id), bytes(self.bodies.get(stream_id, b""))
