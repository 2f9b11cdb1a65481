"""What every connection of one server shares: the app, the settings, the lifespan state."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ._config import Config
from ._date import http_date
from ._proxy import TrustedProxies

SERVER_HEADER = b"trio-asgi"


@dataclass
class ServerContext:
    app: Callable[..., Any]
    config: Config
    #: The lifespan ``state``; each request's scope gets a shallow copy.
    lifespan_state: dict[str, Any] = field(default_factory=dict)
    #: Whose proxy headers to believe; None with ``proxy_headers`` off.
    trusted_proxies: TrustedProxies | None = field(init=False)

    def __post_init__(self) -> None:
        config = self.config
        self.trusted_proxies = (
            TrustedProxies(config.forwarded_allow_ips) if config.proxy_headers else None
        )

    def date_header_value(self) -> bytes | None:
        return http_date() if self.config.date_header else None

    def default_headers(self) -> list[tuple[bytes, bytes]]:
        """The headers the server adds to a response that does not set them itself."""
        headers = []
        if self.config.server_header:
            headers.append((b"server", SERVER_HEADER))
        if self.config.date_header:
            headers.append((b"date", http_date()))
        return headers
