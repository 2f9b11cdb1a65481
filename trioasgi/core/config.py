"""Server settings: one dataclass, the single source of defaults.

The command line builds a :class:`Config`; ``serve()`` takes one. Every field
has the name of its command-line flag (``--timeout-keep-alive`` is
``timeout_keep_alive``), so the two cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import re
from dataclasses import dataclass, field
from typing import Literal

from .access_log import check_format
from .binds import parse_bind
from .errors import ConfigError
from .proxy import TrustedProxies

LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
DEFAULT_ACCESS_LOG_FORMAT = (
    '{client} - "{method} {target} HTTP/{http_version}" {status} {reason} '
    "{bytes}B {duration_ms:.1f}ms{cut_short}"
)
INTERFACES = ("auto", "asgi3", "asgi2")
HTTP_PARSERS = ("auto", "h11", "httptools")

#: RFC 9110 token: what a header name may be made of.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


@dataclass
class Config:
    """Everything the server can be told.

    Times are in seconds, sizes in bytes. ``None`` for a timeout means "wait
    for ever", which only makes sense where a client cannot be the one who
    decides how long that is.
    """

    # -- the application (used where the app is loaded by name) --
    factory: bool = False
    interface: Literal["auto", "asgi3", "asgi2"] = "auto"
    app_dir: str = "."
    lifespan: Literal["auto", "on", "off"] = "auto"
    root_path: str = ""

    # -- binding --
    host: str = "127.0.0.1"
    port: int = 8000
    #: Addresses to listen on instead of host:port: ``HOST:PORT``, ``[::1]:PORT``,
    #: ``unix:/path`` or ``fd://N`` (see ``_listeners``).
    bind: list[str] = field(default_factory=list)
    uds: str | None = None
    fd: int | None = None
    backlog: int = 2048

    # -- TLS --
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    #: Kept out of ``repr()`` (and so out of any log line that shows a Config).
    ssl_keyfile_password: str | None = field(default=None, repr=False)
    ssl_ca_certs: str | None = None
    #: 0: no client certificate, 1: optional, 2: required (``ssl.CERT_*``).
    ssl_cert_reqs: int = 0
    #: An OpenSSL cipher list; None keeps Python's secure defaults.
    ssl_ciphers: str | None = None
    timeout_tls_handshake: float = 10.0

    # -- proxy --
    proxy_headers: bool = True
    #: Comma-separated IPs, networks (CIDR), unix socket paths, or ``*``.
    forwarded_allow_ips: str = "127.0.0.1"

    # -- HTTP --
    http: Literal["auto", "h11", "httptools"] = "auto"
    h11_max_incomplete_event_size: int = 16 * 1024
    server_header: bool = True
    date_header: bool = True
    #: Extra default headers, ``(name, value)``: added to every response that
    #: does not set them itself (a ``server`` or ``date`` here replaces ours).
    headers: list[tuple[str, str]] = field(default_factory=list)
    #: Cancel the app's call for a request whose client leaves before its
    #: response is complete (HTTP/1.1: EOF or reset; HTTP/2: RST_STREAM).
    #: Off by default: ASGI lets an app run to its end.
    cancel_on_disconnect: bool = False

    # -- HTTP/2 (docs/http2.md) --
    #: Offer HTTP/2: ALPN ``h2`` over TLS, prior knowledge and ``Upgrade: h2c`` in cleartext.
    http2: bool = True
    #: Streams one connection may have open at once; more are refused (RST_STREAM).
    h2_max_concurrent_streams: int = 100
    #: Largest header list (HPACK-decoded, RFC 9113 6.5.2 counting) a request may have.
    h2_max_header_list_size: int = 64 * 1024
    #: Largest frame payload the client may send (16 KiB to 16 MiB).
    h2_max_inbound_frame_size: int = 16 * 1024
    #: How much of a request body one stream may send ahead of its app.
    h2_initial_window_size: int = 256 * 1024
    #: How much of all request bodies one connection may send ahead of its apps.
    h2_connection_window_size: int = 1024 * 1024
    #: How much response data one connection may hold unwritten; past it senders wait.
    h2_max_connection_buffer: int = 1024 * 1024

    # -- WebSocket --
    ws: Literal["auto", "wsproto", "none"] = "auto"
    ws_max_size: int = 16 * 1024 * 1024
    ws_per_message_deflate: bool = True
    ws_ping_interval: float | None = 20.0
    ws_ping_timeout: float | None = 20.0
    #: Most incoming messages waiting for the app's receive(); then reading pauses.
    ws_max_queue: int = 4

    # -- limits --
    limit_request_fields: int = 100
    limit_request_body: int | None = None
    limit_concurrency: int | None = None

    # -- timeouts --
    timeout_keep_alive: float = 5.0
    timeout_request_header: float = 10.0
    timeout_request_body: float | None = 60.0
    timeout_graceful_shutdown: float | None = 30.0
    timeout_lifespan: float = 60.0

    # -- logging --
    log_level: str = "info"
    access_log: bool = True
    access_log_format: str = DEFAULT_ACCESS_LOG_FORMAT
    #: A ``logging.config.dictConfig`` file (JSON, or YAML with PyYAML installed).
    log_config: str | None = None
    #: Colour the level names: None colours only a terminal without ``NO_COLOR``.
    use_colors: bool | None = None

    # -- workers --
    workers: int = 1
    #: Recycle a worker (or exit, in a single process) after this many requests.
    limit_max_requests: int | None = None
    #: Add a random 0..jitter to ``limit_max_requests`` so workers do not recycle together.
    limit_max_requests_jitter: int = 0
    #: A worker that does not answer its supervisor's ping within this long is
    #: killed and replaced; None never checks.
    timeout_worker_healthcheck: float | None = 5.0

    # -- reload --
    reload: bool = False
    reload_dirs: list[str] = field(default_factory=list)
    reload_includes: list[str] = field(default_factory=lambda: ["*.py"])
    reload_excludes: list[str] = field(default_factory=lambda: [".*", "*.py[cod]", "*~"])
    #: After a change, how long to wait for more before restarting (a burst reloads once).
    reload_delay: float = 0.05

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` for the first setting that makes no sense."""
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be between 0 and 65535, not {self.port}")
        if self.log_level not in LOG_LEVELS:
            raise ConfigError(
                f"log level must be one of {', '.join(LOG_LEVELS)}, not {self.log_level!r}"
            )
        if self.http not in HTTP_PARSERS:
            raise ConfigError(f"http must be auto, h11 or httptools, not {self.http!r}")
        if self.http == "httptools" and importlib.util.find_spec("httptools") is None:
            raise ConfigError(
                "http httptools needs the httptools package (pip install 'trio-asgi[fast]')"
            )
        if self.lifespan not in ("auto", "on", "off"):
            raise ConfigError(f"lifespan must be auto, on or off, not {self.lifespan!r}")
        if self.root_path and (not self.root_path.startswith("/") or self.root_path.endswith("/")):
            raise ConfigError(
                f"root path must start with '/' and not end with one, not {self.root_path!r}"
            )
        if self.interface not in INTERFACES:
            raise ConfigError(f"interface must be auto, asgi3 or asgi2, not {self.interface!r}")
        self._validate_headers()

        check_format(self.access_log_format)
        self._validate_processes()
        self._validate_limits()
        _check_positive("keep-alive timeout", self.timeout_keep_alive)
        _check_positive("request header timeout", self.timeout_request_header)
        _check_positive("lifespan timeout", self.timeout_lifespan)
        if self.timeout_request_body is not None:
            _check_positive("request body timeout", self.timeout_request_body)
        _check_positive("TLS handshake timeout", self.timeout_tls_handshake)
        self._validate_binding()
        self._validate_tls()
        self._validate_proxy()
        if self.timeout_graceful_shutdown is not None:
            _check_positive("graceful shutdown timeout", self.timeout_graceful_shutdown, zero=True)
        if self.h11_max_incomplete_event_size < 1024:
            raise ConfigError("h11 max incomplete event size must be at least 1024 bytes")
        self._validate_http2()
        self._validate_websocket()

    def _validate_binding(self) -> None:

        for text in self.bind:
            parse_bind(text)
        if self.fd is not None and self.fd < 0:
            raise ConfigError(f"fd must be a file descriptor number, not {self.fd}")
        if self.backlog < 1:
            raise ConfigError(f"backlog must be at least 1, not {self.backlog}")

    def _validate_tls(self) -> None:
        if self.ssl_cert_reqs not in (0, 1, 2):
            raise ConfigError(
                "ssl cert reqs must be 0 (none), 1 (optional) or 2 (required), "
                f"not {self.ssl_cert_reqs}"
            )
        needs_certfile = [
            name
            for name in ("ssl_keyfile", "ssl_keyfile_password", "ssl_ca_certs", "ssl_ciphers")
            if getattr(self, name)
        ]
        if self.ssl_cert_reqs:
            needs_certfile.append("ssl_cert_reqs")
        if needs_certfile and not self.ssl_certfile:
            flag = "--" + needs_certfile[0].replace("_", "-")
            raise ConfigError(f"{flag} needs --ssl-certfile too")
        if self.ssl_cert_reqs and not self.ssl_ca_certs:
            raise ConfigError(
                "--ssl-cert-reqs needs --ssl-ca-certs to verify client certificates against"
            )

    def _validate_proxy(self) -> None:

        TrustedProxies(self.forwarded_allow_ips)

    def _validate_http2(self) -> None:
        if self.h2_max_concurrent_streams < 1:
            raise ConfigError(
                "h2 max concurrent streams must be at least 1, "
                f"not {self.h2_max_concurrent_streams}"
            )
        if self.h2_max_header_list_size < 1024:
            raise ConfigError(
                "h2 max header list size must be at least 1024 bytes, "
                f"not {self.h2_max_header_list_size}"
            )
        if not 2**14 <= self.h2_max_inbound_frame_size <= 2**24 - 1:
            raise ConfigError(
                "h2 max inbound frame size must be between 16384 and 16777215 bytes "
                f"(RFC 9113), not {self.h2_max_inbound_frame_size}"
            )
        for what, value in (
            ("h2 initial window size", self.h2_initial_window_size),
            ("h2 connection window size", self.h2_connection_window_size),
        ):
            if not 65535 <= value <= 2**31 - 1:
                raise ConfigError(f"{what} must be between 65535 and 2147483647 bytes, not {value}")
        if self.h2_max_connection_buffer < 16 * 1024:
            raise ConfigError(
                "h2 max connection buffer must be at least 16384 bytes, "
                f"not {self.h2_max_connection_buffer}"
            )

    def _validate_websocket(self) -> None:
        if self.ws not in ("auto", "wsproto", "none"):
            raise ConfigError(f"ws must be auto, wsproto or none, not {self.ws!r}")
        if self.ws_max_size < 1:
            raise ConfigError(f"ws max size must be at least 1 byte, not {self.ws_max_size}")
        if self.ws_max_queue < 1:
            raise ConfigError(f"ws max queue must be at least 1 message, not {self.ws_max_queue}")
        if self.ws_ping_interval is not None:
            _check_positive("WebSocket ping interval", self.ws_ping_interval)
        if self.ws_ping_timeout is not None:
            _check_positive("WebSocket ping timeout", self.ws_ping_timeout)

    def _validate_limits(self) -> None:
        if self.limit_request_fields < 1:
            raise ConfigError(
                f"request field limit must be at least 1, not {self.limit_request_fields}"
            )
        if self.limit_request_body is not None and self.limit_request_body < 0:
            raise ConfigError(
                f"request body limit must be 0 or more bytes, not {self.limit_request_body}"
            )
        if self.limit_concurrency is not None and self.limit_concurrency < 1:
            raise ConfigError(f"concurrency limit must be at least 1, not {self.limit_concurrency}")

    def _validate_headers(self) -> None:
        for header in self.headers:
            name, value = header
            if not _TOKEN.fullmatch(name):
                raise ConfigError(f"{name!r} is not a valid header name")
            if any(c in value for c in "\r\n\0"):
                raise ConfigError(f"the value of header {name!r} contains a line break or NUL")

    def _validate_processes(self) -> None:
        if self.workers < 1:
            raise ConfigError(f"workers must be at least 1, not {self.workers}")
        if self.limit_max_requests is not None and self.limit_max_requests < 1:
            raise ConfigError(
                f"limit max requests must be at least 1, not {self.limit_max_requests}"
            )
        if self.limit_max_requests_jitter < 0:
            raise ConfigError("limit max requests jitter cannot be negative")
        if self.timeout_worker_healthcheck is not None:
            _check_positive("worker health check timeout", self.timeout_worker_healthcheck)
        _check_positive("reload delay", self.reload_delay, zero=True)
        if self.reload and self.workers > 1:
            raise ConfigError("--reload cannot be combined with --workers: use one or the other")

    def replace(self, **changes: object) -> Config:
        """A copy with some fields changed (and validated)."""
        return dataclasses.replace(self, **changes)


def _check_positive(what: str, value: float, *, zero: bool = False) -> None:
    if math.isnan(value) or value < 0 or (value == 0 and not zero):
        raise ConfigError(f"{what} must be a positive number of seconds, not {value}")
