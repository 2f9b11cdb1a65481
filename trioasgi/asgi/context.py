"""What the ASGI layer needs of a server and of a connection, whatever the protocol.

These are protocols (structural types), not classes to inherit from:
``serving.context.ServerContext`` is the server's side and each protocol's
connection class the connection's. Declaring them here lets the request
cycle, the scope and the WebSocket session name what they use without
importing the layers above them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from ..core.config import Config
from ..core.proxy import TrustedProxies


class ServerState(Protocol):
    """What every connection of one server shares (``serving.context.ServerContext``)."""

    app: Callable[..., Any]
    config: Config
    #: The lifespan ``state``; each request's scope gets a shallow copy.
    lifespan_state: dict[str, Any]
    #: Connections open right now, for ``limit_concurrency``.
    open_connections: int
    #: Whose proxy headers to believe; None with ``proxy_headers`` off.
    trusted_proxies: TrustedProxies | None

    def date_header_value(self) -> bytes | None: ...


class Connection(Protocol):
    """One client connection as the scope sees it, whatever carries it."""

    ctx: ServerState
    #: The peer's address, or None (a unix socket).
    client: tuple[str, int] | None
    #: Our address, or (path, None) for a unix socket.
    server: tuple[str, int | None] | None
    #: "http" or "https".
    scheme: str
    #: The ASGI ``tls`` scope extension, on a TLS connection.
    tls: dict[str, Any] | None
    #: Whether the peer is a trusted proxy whose headers we believe.
    proxy_trusted: bool
