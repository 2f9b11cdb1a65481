"""The command line's flags: one argument group per area, and their mapping to Config.

Each flag's destination is the name of the :class:`Config` field it sets
(``--timeout-keep-alive`` sets ``timeout_keep_alive``); names and meanings
follow uvicorn's wherever they are the same. Defaults come from ``Config()``,
so help texts and behaviour cannot drift apart.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import MISSING, fields
from typing import Any, NoReturn

from ..core.config import HTTP_PARSERS, INTERFACES, LOG_LEVELS, Config
from ..core.errors import ConfigError
from ..core.version import __version__
from .runner import EXIT_USAGE
from .settings import ENV_PREFIX, parse_header

_DEFAULTS = Config()


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _header(text: str) -> tuple[str, str]:
    try:
        return parse_header(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _seconds_or_none(text: str) -> float | None:
    if text.lower() in ("none", "inf", "infinity"):
        return None
    return float(text)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="trio-asgi",
        description="Serve an ASGI application with trio.",
        epilog="Example: trio-asgi myproject.main:app --host 0.0.0.0 --port 8000",
    )
    parser.add_argument("app", metavar="MODULE:ATTR", help="the ASGI application, e.g. main:app")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    _add_application_flags(parser.add_argument_group("application"))
    _add_binding_flags(parser.add_argument_group("binding"))
    _add_tls_flags(parser.add_argument_group("TLS"))
    _add_proxy_flags(parser.add_argument_group("behind a proxy"))
    _add_http_flags(parser.add_argument_group("HTTP"))
    _add_http2_flags(parser.add_argument_group("HTTP/2"))
    _add_websocket_flags(parser.add_argument_group("WebSocket"))
    _add_limit_flags(parser.add_argument_group("limits"))
    _add_timeout_flags(parser.add_argument_group("timeouts"))
    _add_logging_flags(parser.add_argument_group("logging"))
    _add_worker_flags(parser.add_argument_group("workers"))
    _add_reload_flags(parser.add_argument_group("reload"))
    _add_config_flags(parser.add_argument_group("configuration"))
    parser.add_argument(
        "--loop",
        action=_NotApplicable,
        metavar="IMPLEMENTATION",
        help="uvicorn's event loop choice; refused: trio-asgi runs on trio's own loop, "
        "so there is no asyncio loop (or uvloop) to choose",
    )
    return parser


class _NotApplicable(argparse.Action):
    """A uvicorn flag that means nothing here: one sentence saying why, exit status 2."""

    def __call__(self, parser, namespace, values, option_string=None) -> NoReturn:  # type: ignore[override]
        parser.error(
            f"{option_string} does not apply: trio-asgi runs on trio's own event loop, "
            "not on asyncio, so there is no loop (or uvloop) to choose"
        )


def _add_application_flags(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--factory",
        action="store_true",
        help="MODULE:ATTR names a function that returns the app; call it",
    )
    group.add_argument(
        "--interface",
        choices=INTERFACES,
        default=_DEFAULTS.interface,
        help="the app's ASGI version: auto tells an ASGI 2 app (app(scope) returning a "
        "coroutine function) from an ASGI 3 one (default: %(default)s)",
    )
    group.add_argument(
        "--app-dir",
        default=_DEFAULTS.app_dir,
        metavar="DIR",
        help="directory put first on sys.path before importing the app (default: .)",
    )
    group.add_argument(
        "--lifespan",
        choices=("auto", "on", "off"),
        default=_DEFAULTS.lifespan,
        help="ASGI lifespan protocol: auto runs without it if the app does not support it, "
        "on makes a startup failure fatal, off never sends it (default: %(default)s)",
    )
    group.add_argument(
        "--root-path",
        default=_DEFAULTS.root_path,
        metavar="PATH",
        help="the path the app is mounted at behind a proxy, e.g. /api (default: none)",
    )


def _add_binding_flags(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--host", default=_DEFAULTS.host, help="address to bind (default: %(default)s)"
    )
    group.add_argument(
        "--port",
        type=int,
        default=_DEFAULTS.port,
        help="port to bind; 0 picks a free one (default: %(default)s)",
    )
    group.add_argument(
        "--bind",
        "-b",
        action="append",
        default=[],
        metavar="ADDRESS",
        help="listen on HOST:PORT, [IPv6]:PORT, unix:PATH or fd://N instead of --host/--port; "
        "repeat to listen on several. Without any, sockets passed by systemd socket "
        "activation (LISTEN_FDS) are used if there are some",
    )
    group.add_argument(
        "--uds", metavar="PATH", help="listen on this unix domain socket (as --bind unix:PATH)"
    )
    group.add_argument(
        "--fd",
        type=int,
        metavar="N",
        help="serve the listening socket inherited as file descriptor N (as --bind fd://N)",
    )
    group.add_argument(
        "--backlog",
        type=int,
        default=_DEFAULTS.backlog,
        metavar="N",
        help="most connections waiting to be accepted, per socket (default: %(default)s)",
    )


def _add_tls_flags(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--ssl-certfile",
        metavar="FILE",
        help="serve HTTPS with this PEM certificate (chain); turns TLS on",
    )
    group.add_argument(
        "--ssl-keyfile",
        metavar="FILE",
        help="the certificate's private key, if not in --ssl-certfile",
    )
    group.add_argument(
        "--ssl-keyfile-password", metavar="PASSWORD", help="password of an encrypted key file"
    )
    group.add_argument(
        "--ssl-ca-certs",
        metavar="FILE",
        help="CA certificates (PEM) that client certificates are verified against",
    )
    group.add_argument(
        "--ssl-cert-reqs",
        type=int,
        choices=(0, 1, 2),
        default=_DEFAULTS.ssl_cert_reqs,
        help="client certificates: 0 not asked for, 1 optional, 2 required (default: %(default)s)",
    )
    group.add_argument(
        "--ssl-ciphers",
        metavar="LIST",
        help="OpenSSL cipher list for TLS 1.2 and older (default: Python's secure defaults)",
    )
    group.add_argument(
        "--timeout-tls-handshake",
        type=float,
        default=_DEFAULTS.timeout_tls_handshake,
        metavar="SECONDS",
        help="close a connection whose TLS handshake takes longer (default: %(default)s)",
    )


def _add_proxy_flags(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--proxy-headers",
        action=argparse.BooleanOptionalAction,
        default=_DEFAULTS.proxy_headers,
        help="take the client address and scheme from Forwarded, X-Forwarded-For and "
        "X-Forwarded-Proto sent by a trusted proxy (default: on)",
    )
    group.add_argument(
        "--forwarded-allow-ips",
        default=os.environ.get("FORWARDED_ALLOW_IPS", _DEFAULTS.forwarded_allow_ips),
        metavar="LIST",
        help="comma-separated proxies to trust: IP addresses, networks (10.0.0.0/8), "
        "unix socket paths, or '*' for all (default: $FORWARDED_ALLOW_IPS or "
        f"{_DEFAULTS.forwarded_allow_ips})",
    )


def _add_http_flags(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--http",
        choices=HTTP_PARSERS,
        default=_DEFAULTS.http,
        help="HTTP/1.1 parser: httptools is faster (pip install 'trio-asgi[fast]'), "
        "auto uses it when installed and h11 otherwise (default: %(default)s)",
    )
    group.add_argument(
        "--h11-max-incomplete-event-size",
        type=int,
        default=_DEFAULTS.h11_max_incomplete_event_size,
        metavar="BYTES",
        help="largest request header block accepted; more gets 431 (default: %(default)s)",
    )
    group.add_argument(
        "--server-header",
        action=argparse.BooleanOptionalAction,
        default=_DEFAULTS.server_header,
        help="add 'server: trio-asgi' to responses that have no server header (default: on)",
    )
    group.add_argument(
        "--date-header",
        action=argparse.BooleanOptionalAction,
        default=_DEFAULTS.date_header,
        help="add a date header to responses that have none (default: on)",
    )
    group.add_argument(
        "--cancel-on-disconnect",
        action=argparse.BooleanOptionalAction,
        default=_DEFAULTS.cancel_on_disconnect,
        help="cancel the app's call for a request whose client leaves before the response "
        "is complete: trio.Cancelled at its next checkpoint (default: off)",
    )
    group.add_argument(
        "--header",
        dest="headers",
        action="append",
        type=_header,
        metavar="NAME:VALUE",
        help="a default header added to every response that does not set it; repeatable",
    )


def _add_http2_flags(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--http2",
        action=argparse.BooleanOptionalAction,
        default=_DEFAULTS.http2,
        help="speak HTTP/2: ALPN h2 over TLS, prior knowledge and Upgrade: h2c in cleartext "
        "(default: on)",
    )
    for flag, field, help_text in (
        (
            "--h2-max-concurrent-streams",
            "h2_max_concurrent_streams",
            "streams one connection may have open; more are refused with RST_STREAM",
        ),
        (
            "--h2-max-header-list-size",
            "h2_max_header_list_size",
            "largest request header list, decoded; more is refused",
        ),
        (
            "--h2-max-inbound-frame-size",
            "h2_max_inbound_frame_size",
            "largest frame the client may send (16384 to 16777215)",
        ),
        (
            "--h2-initial-window-size",
            "h2_initial_window_size",
            "request body bytes one stream may send ahead of its app",
        ),
        (
            "--h2-connection-window-size",
            "h2_connection_window_size",
            "request body bytes one connection may send ahead of its apps",
        ),
        (
            "--h2-max-connection-buffer",
            "h2_max_connection_buffer",
            "response bytes one connection may hold unwritten before senders wait",
        ),
    ):
        group.add_argument(
            flag,
            type=int,
            default=getattr(_DEFAULTS, field),
            metavar="N" if field == "h2_max_concurrent_streams" else "BYTES",
            help=f"{help_text} (default: %(default)s)",
        )


def _add_websocket_flags(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--ws",
        choices=("auto", "wsproto", "none"),
        default=_DEFAULTS.ws,
        help="WebSocket implementation; none serves upgrade requests as plain HTTP "
        "(default: %(default)s)",
    )
    group.add_argument(
        "--ws-max-size",
        type=int,
        default=_DEFAULTS.ws_max_size,
        metavar="BYTES",
        help="largest incoming WebSocket message; a larger one closes with 1009 "
        "(default: %(default)s)",
    )
    group.add_argument(
        "--ws-per-message-deflate",
        action=argparse.BooleanOptionalAction,
        default=_DEFAULTS.ws_per_message_deflate,
        help="accept the permessage-deflate compression a client offers (default: on)",
    )
    group.add_argument(
        "--ws-ping-interval",
        type=_seconds_or_none,
        default=_DEFAULTS.ws_ping_interval,
        metavar="SECONDS",
        help="send a WebSocket ping after this long; 'none' never pings (default: %(default)s)",
    )
    group.add_argument(
        "--ws-ping-timeout",
        type=_seconds_or_none,
        default=_DEFAULTS.ws_ping_timeout,
        metavar="SECONDS",
        help="close with 1011 if a ping is not answered within this time; 'none' waits for "
        "ever (default: %(default)s)",
    )
    group.add_argument(
        "--ws-max-queue",
        type=int,
        default=_DEFAULTS.ws_max_queue,
        metavar="N",
        help="most incoming messages waiting for the app; then the server stops reading "
        "and TCP holds the client back (default: %(default)s)",
    )


def _bytes_or_none(text: str) -> int | None:
    if text.lower() in ("none", "off"):
        return None
    return int(text)


def _add_limit_flags(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--limit-request-fields",
        type=int,
        default=_DEFAULTS.limit_request_fields,
        metavar="N",
        help="most header fields in a request; more gets 431 (default: %(default)s)",
    )
    group.add_argument(
        "--limit-request-body",
        type=_bytes_or_none,
        default=_DEFAULTS.limit_request_body,
        metavar="BYTES",
        help="largest request body; a larger one gets 413 and the connection closes "
        "(default: no limit)",
    )
    group.add_argument(
        "--limit-concurrency",
        type=int,
        default=_DEFAULTS.limit_concurrency,
        metavar="N",
        help="answer 503 to requests that arrive while more than N connections are open "
        "(default: no limit)",
    )


def _add_timeout_flags(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--timeout-keep-alive",
        type=float,
        default=_DEFAULTS.timeout_keep_alive,
        metavar="SECONDS",
        help="close a keep-alive connection idle this long (default: %(default)s)",
    )
    group.add_argument(
        "--timeout-request-header",
        type=float,
        default=_DEFAULTS.timeout_request_header,
        metavar="SECONDS",
        help="answer 408 and close if a request's header block takes longer than this "
        "from its first byte (default: %(default)s)",
    )
    group.add_argument(
        "--timeout-request-body",
        type=_seconds_or_none,
        default=_DEFAULTS.timeout_request_body,
        metavar="SECONDS",
        help="answer 408 and close if the app waits this long for more of a request body "
        "that does not come; 'none' waits for ever (default: %(default)s)",
    )
    group.add_argument(
        "--timeout-graceful-shutdown",
        type=_seconds_or_none,
        default=_DEFAULTS.timeout_graceful_shutdown,
        metavar="SECONDS",
        help="on shutdown, wait this long for requests in flight before cancelling them; "
        "'none' waits for ever (default: %(default)s)",
    )
    group.add_argument(
        "--timeout-lifespan",
        type=float,
        default=_DEFAULTS.timeout_lifespan,
        metavar="SECONDS",
        help="how long the app may take to answer lifespan startup or shutdown "
        "(default: %(default)s)",
    )


def _add_logging_flags(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        default=_DEFAULTS.log_level,
        help="server log level (default: %(default)s)",
    )
    group.add_argument(
        "--access-log",
        action=argparse.BooleanOptionalAction,
        default=_DEFAULTS.access_log,
        help="log one line per response (default: on)",
    )
    group.add_argument(
        "--access-log-format",
        default=_DEFAULTS.access_log_format,
        metavar="FORMAT",
        help="the access log line, with {field} placeholders: client, client_addr, method, "
        "target, path, query, http_version, scheme, status, bytes, duration (seconds), "
        "duration_ms, host, user_agent, referer, pid; format specs work, e.g. "
        "{duration:.3f} (default: %(default)s)",
    )
    group.add_argument(
        "--log-config",
        metavar="FILE",
        help="configure logging from a logging.config.dictConfig file: JSON, or YAML "
        "(.yaml/.yml) if PyYAML is installed",
    )
    group.add_argument(
        "--use-colors",
        action=argparse.BooleanOptionalAction,
        default=_DEFAULTS.use_colors,
        help="colour the level names (default: only on a terminal, and not with NO_COLOR set)",
    )


def _add_worker_flags(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--workers",
        type=int,
        default=_DEFAULTS.workers,
        metavar="N",
        help="run N worker processes under a supervisor that restarts any that die; "
        "SIGHUP restarts them one by one (default: %(default)s, no supervisor)",
    )
    group.add_argument(
        "--limit-max-requests",
        type=int,
        metavar="N",
        help="after N requests, drain and exit; under --workers the worker is replaced "
        "(default: no limit)",
    )
    group.add_argument(
        "--limit-max-requests-jitter",
        type=int,
        default=_DEFAULTS.limit_max_requests_jitter,
        metavar="N",
        help="add a random 0 to N to the request limit, so workers do not all recycle at "
        "once (default: %(default)s)",
    )
    group.add_argument(
        "--timeout-worker-healthcheck",
        type=_seconds_or_none,
        default=_DEFAULTS.timeout_worker_healthcheck,
        metavar="SECONDS",
        help="kill and replace a worker that does not answer the supervisor's ping within "
        "this time; 'none' never checks (default: %(default)s)",
    )


def _add_reload_flags(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--reload",
        action="store_true",
        help="restart the server when a source file changes (needs the reload extra: "
        "pip install 'trio-asgi[reload]'); not with --workers",
    )
    group.add_argument(
        "--reload-dir",
        dest="reload_dirs",
        action="append",
        metavar="DIR",
        help="a directory to watch; repeatable (default: the --app-dir directory)",
    )
    group.add_argument(
        "--reload-include",
        dest="reload_includes",
        action="append",
        metavar="GLOB",
        help="watch file names matching GLOB; repeatable (default: *.py)",
    )
    group.add_argument(
        "--reload-exclude",
        dest="reload_excludes",
        action="append",
        metavar="GLOB",
        help="ignore file names or paths matching GLOB; repeatable (default: .* *.py[cod] *~)",
    )
    group.add_argument(
        "--reload-delay",
        type=float,
        default=_DEFAULTS.reload_delay,
        metavar="SECONDS",
        help="after a change, wait this long for more before restarting, so a burst of "
        "changes restarts once (default: %(default)s)",
    )


def _add_config_flags(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--config",
        metavar="FILE.toml",
        help="read settings from a TOML file whose keys are the flag names with "
        f"underscores; precedence: flag > {ENV_PREFIX}<NAME> variable > file > default",
    )
    group.add_argument(
        "--env-file",
        metavar="FILE",
        help="load KEY=VALUE lines into the environment (of the server and the app) "
        "first; variables already set win",
    )


def _version() -> str:
    return __version__


def config_from_args(args: argparse.Namespace) -> Config:
    """A Config from every parsed flag that names a Config field (dest == field name)."""
    values = vars(args)
    return Config(
        **{
            field.name: values[field.name]
            for field in fields(Config)
            if field.name in values
            # A repeatable flag never given is None: keep the field's list default.
            and not (values[field.name] is None and field.default is MISSING)
        }
    )


def explicit_flags(argv: Sequence[str] | None) -> dict[str, Any]:
    """The Config fields given on the command line, without the defaults of the others."""
    parser = build_parser()
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    names = {field.name for field in fields(Config)}
    return {name: value for name, value in vars(parser.parse_args(argv)).items() if name in names}
