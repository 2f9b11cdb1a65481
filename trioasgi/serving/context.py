"""What every connection of one server shares: the app, the settings, the lifespan state."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..core.config import Config
from ..core.date import http_date
from ..core.proxy import TrustedProxies
from ..http11.parser_pool import ParserPool
from ..http11.parsers import resolve_parser
from ..http11.strict import RequestLimits
from ..http11.writer import DefaultHeaders

SERVER_HEADER = b"trio-asgi"


@dataclass
class ServerContext:
    app: Callable[..., Any]
    config: Config
    #: The lifespan ``state``; each request's scope gets a shallow copy.
    lifespan_state: dict[str, Any] = field(default_factory=dict)
    #: Connections open right now, kept by the server for ``limit_concurrency``.
    open_connections: int = 0
    #: Whose proxy headers to believe; None with ``proxy_headers`` off.
    trusted_proxies: TrustedProxies | None = field(init=False)
    #: The HTTP/1.1 parser every connection uses: "h11" or "httptools".
    parser: str = field(init=False)
    #: Parsers of that kind, lent to the connections while they read.
    parsers: ParserPool = field(init=False)
    #: The request limits every connection checks, built once.
    request_limits: RequestLimits = field(init=False)
    #: The headers the server adds to a response that does not set them itself.
    response_defaults: DefaultHeaders = field(init=False)

    def __post_init__(self) -> None:
        config = self.config
        self.trusted_proxies = (
            TrustedProxies(config.forwarded_allow_ips) if config.proxy_headers else None
        )
        # Encoded once: the default headers go out with every response.
        extra = [
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in config.headers
        ]
        extra_names = {name for name, _ in extra}
        defaults: list[tuple[bytes, bytes | None]] = []
        if config.server_header and b"server" not in extra_names:
            defaults.append((b"server", SERVER_HEADER))
        if config.date_header and b"date" not in extra_names:
            defaults.append((b"date", None))  # None: the current date
        self.response_defaults = DefaultHeaders(defaults + extra)
        self.parser = resolve_parser(config.http)
        self.request_limits = RequestLimits(
            max_head_size=config.h11_max_incomplete_event_size,
            max_fields=config.limit_request_fields,
            max_body=config.limit_request_body,
        )
        self.parsers = ParserPool(config, self.parser, self.response_defaults)

    def date_header_value(self) -> bytes | None:
        return http_date() if self.config.date_header else None
