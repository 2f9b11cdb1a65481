"""WebSocket over an HTTP/2 stream (RFC 8441): the same session, another handshake and transport.

An extended CONNECT (``:method CONNECT``, ``:protocol websocket``) asks for
a WebSocket on its stream. The session the app talks to is HTTP/1.1's
(``websocket.session``), unchanged: what differs is underneath it.

- :class:`StreamIO` is the stream's DATA as a byte stream, which the session
  reads and writes as it would a socket; the stream's flow control is the
  backpressure, as for any response.
- :class:`H2Handshake` is the handshake: HTTP/2 has no ``Sec-WebSocket-Key``
  and no ``101``; the server accepts with ``:status 200`` (HEADERS, the
  stream left open) and refuses, or sends the app's denial response, as an
  ordinary HTTP/2 response. Its methods send the HEADERS themselves and hand
  the session only body bytes to write.
- Closing the WebSocket ends the stream (``END_STREAM``).
"""

from __future__ import annotations

import contextlib
from typing import Any

import trio
from wsproto import ConnectionType
from wsproto.connection import Connection as Frames

from ..asgi.error_responses import error_content
from ..asgi.request import RequestHead
from ..core.errors import ClientDisconnected
from ..websocket.handshake import BoundedDeflate, HandshakeError
from ..websocket.session import WebSocketSession
from .cycle import response_head
from .stream import H2Stream

#: How long ending the stream may take once the session is over.
END_TIMEOUT = 5.0


class StreamIO(trio.abc.HalfCloseableStream):
    """An HTTP/2 stream's request and response DATA, as the byte stream a session expects."""

    def __init__(self, stream: H2Stream) -> None:
        self._stream = stream
        #: The next write ends the stream (a denial response's last bytes).
        self.end_after_next_write = False

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        end, self.end_after_next_write = self.end_after_next_write, False
        if not data and not end:
            await trio.lowlevel.checkpoint()
            return
        try:
            await self._stream.send_data(bytes(data), end_stream=end)
        except ClientDisconnected:
            raise trio.BrokenResourceError("the stream was reset") from None

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def send_eof(self) -> None:
        if self._stream.response_done or self._stream.reset:
            await trio.lowlevel.checkpoint()
            return
        with contextlib.suppress(ClientDisconnected):
            await self._stream.send_data(b"", end_stream=True)

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        piece = await self._stream.read_body()
        if piece is None:
            raise trio.BrokenResourceError("the stream was reset")
        return piece[0]

    async def aclose(self) -> None:
        # The session closes its "socket" to give up on the peer: end the stream.
        self._stream.was_reset()
        await trio.lowlevel.checkpoint()


class _Transport:
    """What the session needs of its connection: the scope's facts and a byte stream."""

    def __init__(self, stream: H2Stream, io: StreamIO) -> None:
        self.ctx = stream.ctx
        self.client = stream.client
        self.server = stream.server
        self.scheme = stream.scheme
        self.tls = stream.tls
        self.proxy_trusted = stream.proxy_trusted
        self.stream = io


class H2Handshake:
    """The server's side of an RFC 8441 handshake on one stream."""

    def __init__(self, request: RequestHead, stream: H2Stream, io: StreamIO) -> None:
        self.request = request
        self._stream = stream
        self._io = io
        self._defaults = stream.ctx.response_defaults
        self._frames: Frames | None = None

    def _header(self, name: bytes) -> bytes | None:
        for field, value in self.request.headers:
            if field == name:
                return value
        return None

    def start(self) -> HandshakeError | None:
        if self._header(b"sec-websocket-version") != b"13":
            extra = [(b"sec-websocket-version", b"13")]
            return HandshakeError(400, "unsupported WebSocket version", self._refusal(400, extra))
        return None

    def accept(
        self,
        subprotocol: str | None,
        headers: list[tuple[bytes, bytes]],
        *,
        deflate: bool,
        max_size: int,
    ) -> bytes:
        offered = self._header(b"sec-websocket-protocol") or b""
        if subprotocol is not None and subprotocol.encode() not in [
            token.strip() for token in offered.split(b",")
        ]:
            raise ValueError(f"cannot accept the WebSocket: {subprotocol!r} was not offered")
        fields = list(headers)
        if subprotocol is not None:
            fields.append((b"sec-websocket-protocol", subprotocol.encode()))
        extensions = []
        if deflate:
            extension = BoundedDeflate(max_size)
            for offer in (self._header(b"sec-websocket-extensions") or b"").split(b","):
                offer_text = offer.decode("latin-1").strip()
                if offer_text.split(";")[0].strip() != extension.name:
                    continue
                accepted = extension.accept(offer_text)
                if accepted is not None and accepted is not False:
                    value = extension.name + (f"; {accepted}" if accepted else "")
                    fields.append((b"sec-websocket-extensions", value.encode()))
                    extensions.append(extension)
                    break
        head = response_head(200, fields, self._defaults)
        self._frames = Frames(ConnectionType.SERVER, extensions)
        self._stream.send_headers(head, end_stream=False)
        return b""

    def frames(self) -> Frames:
        assert self._frames is not None
        return self._frames

    def reject(self, status: int, headers: list[tuple[bytes, bytes]]) -> bytes:
        self._stream.send_headers(response_head(status, headers, self._defaults), end_stream=False)
        return b""

    def reject_body(self, body: bytes, *, finished: bool) -> bytes:
        if finished:
            self._io.end_after_next_write = True
        return body

    def refuse(self, status: int) -> bytes:
        return self._refusal(status)

    def _refusal(self, status: int, extra: list[tuple[bytes, bytes]] | None = None) -> bytes:
        """A server-made plain-text response; its body is what the session writes."""
        body, fields = error_content(status)
        fields += extra or []
        try:
            self._stream.send_headers(
                response_head(status, fields, self._defaults), end_stream=False
            )
        except ClientDisconnected:
            return b""
        self._io.end_after_next_write = True
        return body


async def run_websocket(owner: Any, stream: H2Stream, request: RequestHead) -> None:
    """Run the app's WebSocket session on ``stream``; end the stream when it is over."""
    io = StreamIO(stream)
    session = WebSocketSession(
        _Transport(stream, io), request, b"", handshake=H2Handshake(request, stream, io)
    )
    owner.websockets.add(session)
    try:
        if owner.shutting_down:
            session.begin_shutdown()
        await session.run()
        with trio.move_on_after(END_TIMEOUT):
            await io.send_eof()
    finally:
        owner.websockets.discard(session)
