"""The WebSocket opening handshake, sans I/O: is this an upgrade, is it valid, what to answer.

h11 has already parsed the request head on the HTTP connection; this module
hands that head to wsproto (``initiate_upgrade_connection``), which checks
it against RFC 6455 and, once the app has decided, produces the bytes of the
``101 Switching Protocols`` answer, or of the HTTP response that refuses it.
It also builds the ASGI ``websocket`` scope. Nothing here touches a socket.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Protocol

import h11
import trio
from wsproto import ConnectionType, WSConnection
from wsproto.connection import Connection as Frames
from wsproto.events import AcceptConnection, RejectConnection, RejectData
from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import CloseReason, FrameDecoder, FrameProtocol
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from ..asgi.context import Connection, ServerState
from ..asgi.error_responses import error_content
from ..asgi.request import RequestHead
from ..asgi.scope import ASGI_VERSION, build_scope


class ResponseDefaults(Protocol):
    """The server's default response headers (``http11.writer.DefaultHeaders``)."""

    def pairs(self, without: Iterable[bytes] = ()) -> list[tuple[bytes, bytes]]: ...


class UpgradeContext(ServerState, Protocol):
    """What a WebSocket needs of its server."""

    response_defaults: ResponseDefaults


class UpgradeConnection(Connection, Protocol):
    """The connection a WebSocket takes over: the scope's facts and a byte stream."""

    ctx: UpgradeContext  # type: ignore[assignment]
    stream: trio.abc.Stream


def is_websocket_upgrade(headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether a request with these headers asks to become a WebSocket (``Upgrade: websocket``)."""
    for name, value in headers:
        if name == b"upgrade":
            return any(token.strip().lower() == b"websocket" for token in value.split(b","))
    return False


def websocket_scope(conn: UpgradeConnection, request: RequestHead) -> dict[str, Any]:
    """The ASGI ``websocket`` scope for an upgrade request."""
    scope = build_scope(conn, request)
    del scope["method"]
    scope["type"] = "websocket"
    scope["asgi"] = ASGI_VERSION
    # After any trusted proxy's X-Forwarded-Proto: "https" (or "wss") means wss.
    scope["scheme"] = "wss" if scope["scheme"] in ("https", "wss") else "ws"
    scope["subprotocols"] = _offered_subprotocols(request)
    # The HTTP response extensions are not the WebSocket's: only TLS stays.
    extensions: dict[str, Any] = {"websocket.http.response": {}}
    if conn.tls is not None:
        extensions["tls"] = conn.tls
    scope["extensions"] = extensions
    return scope


def _offered_subprotocols(request: RequestHead) -> list[str]:
    offered = []
    for name, value in request.headers:
        if name == b"sec-websocket-protocol":
            offered += [p.strip() for p in value.decode("latin-1").split(",") if p.strip()]
    return offered


class Handshake(Protocol):
    """One opening handshake as the session drives it, whatever carries the WebSocket.

    Each method returns the bytes the session writes next on its stream:
    HTTP/1.1's handshake makes the whole response; HTTP/2's sends its
    HEADERS itself and returns only body bytes (``http2.websocket``).
    """

    request: RequestHead

    def start(self) -> HandshakeError | None: ...

    def accept(
        self,
        subprotocol: str | None,
        headers: list[tuple[bytes, bytes]],
        *,
        deflate: bool,
        max_size: int,
    ) -> bytes: ...

    def frames(self) -> Frames: ...

    def reject(self, status: int, headers: list[tuple[bytes, bytes]]) -> bytes: ...

    def reject_body(self, body: bytes, *, finished: bool) -> bytes: ...

    def refuse(self, status: int) -> bytes: ...


@dataclass
class HandshakeError:
    """Why an upgrade request cannot become a WebSocket, and the bytes that say so."""

    status: int
    detail: str
    response: bytes


class ServerHandshake:
    """The server's side of one opening handshake, on top of a wsproto connection."""

    def __init__(self, request: RequestHead, ctx: UpgradeContext) -> None:
        self.request = request
        self.ctx = ctx
        self.ws = WSConnection(ConnectionType.SERVER)

    def start(self) -> HandshakeError | None:
        """Validate the request; a :class:`HandshakeError` if it must be refused."""
        if self.request.method != b"GET":
            # wsproto assumes GET for a request parsed elsewhere: check it here.
            return HandshakeError(405, "a WebSocket upgrade must be a GET", self._refusal(405))
        try:
            self.ws.initiate_upgrade_connection(self.request.headers, self.request.target)
        except RemoteProtocolError as exc:
            hint = exc.event_hint
            status = hint.status_code if isinstance(hint, RejectConnection) else 400
            extra = list(hint.headers) if isinstance(hint, RejectConnection) else []
            return HandshakeError(status, str(exc), self._refusal(status, extra))
        # The wsproto Request event: nothing in it the scope does not have.
        list(self.ws.events())
        return None

    def accept(
        self,
        subprotocol: str | None,
        headers: list[tuple[bytes, bytes]],
        *,
        deflate: bool,
        max_size: int,
    ) -> bytes:
        """The ``101`` response; ``ValueError`` for a subprotocol the client did not offer."""
        extensions = [BoundedDeflate(max_size)] if deflate else []
        present = {name.lower() for name, _ in headers}
        headers = headers + self.ctx.response_defaults.pairs(without=present)
        try:
            return self.ws.send(
                AcceptConnection(
                    subprotocol=subprotocol, extensions=extensions, extra_headers=headers
                )
            )
        except LocalProtocolError as exc:
            raise ValueError(f"cannot accept the WebSocket: {exc}") from None

    def frames(self) -> Frames:
        """The frames layer, once accepted."""
        connection = self.ws.connection
        assert connection is not None
        return connection

    def reject(self, status: int, headers: list[tuple[bytes, bytes]]) -> bytes:
        """The head of the app's own HTTP response (denial extension); a body follows."""
        present = {name.lower() for name, _ in headers}
        headers = headers + self.ctx.response_defaults.pairs(without=present)
        if b"connection" not in present:
            headers.append((b"connection", b"close"))
        return self.ws.send(RejectConnection(status_code=status, headers=headers, has_body=True))

    def reject_body(self, body: bytes, *, finished: bool) -> bytes:
        return self.ws.send(RejectData(data=body, body_finished=finished))

    def _refusal(self, status: int, extra: list[tuple[bytes, bytes]] | None = None) -> bytes:
        """A complete plain-text error response from the server itself."""
        body, headers = error_content(status)
        headers += extra or []
        try:
            return self.reject(status, headers) + self.reject_body(body, finished=True)
        except (LocalProtocolError, h11.LocalProtocolError):
            # wsproto's own HTTP state could not take the response (the request
            # never reached it): write the same response by hand.
            return _raw_response(status, headers + self.ctx.response_defaults.pairs(), body)

    def refuse(self, status: int) -> bytes:
        """A server-made response that refuses the upgrade (403, 500) and closes."""
        return self._refusal(status)


def _raw_response(status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> bytes:
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}".encode()]
    lines += [name + b": " + value for name, value in headers]
    lines.append(b"connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


class BoundedDeflate(PerMessageDeflate):
    """permessage-deflate (RFC 7692) that will not inflate a message past ``max_size``.

    wsproto inflates each frame's payload in full before anyone can count it,
    so a few kilobytes of compressed zeros could become tens of megabytes in
    memory before the message size limit is checked. Here zlib is asked for
    at most one byte more than the message may still grow, and a message
    that wants more ends the connection with 1009 (message too big).
    It overrides wsproto's inbound path using that class's own state.
    """

    def __init__(self, max_size: int) -> None:
        super().__init__()
        self._max_size = max_size
        self._inflated = 0

    def frame_inbound_payload_data(
        self, proto: FrameDecoder | FrameProtocol, data: bytes
    ) -> bytes | CloseReason:
        if not self._inbound_compressed or not self._inbound_is_compressible:
            return super().frame_inbound_payload_data(proto, data)
        assert self._decompressor is not None
        room = self._max_size - self._inflated
        try:
            inflated = self._decompressor.decompress(bytes(data), room + 1)
        except zlib.error:
            return CloseReason.INVALID_FRAME_PAYLOAD_DATA
        self._inflated += len(inflated)
        if self._inflated > self._max_size or self._decompressor.unconsumed_tail:
            return CloseReason.MESSAGE_TOO_BIG
        return inflated

    def frame_inbound_complete(
        self, proto: FrameDecoder | FrameProtocol, fin: bool
    ) -> bytes | CloseReason | None:
        if fin:
            self._inflated = 0
        return super().frame_inbound_complete(proto, fin)
