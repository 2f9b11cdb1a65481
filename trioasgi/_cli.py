"""The ``trio-asgi`` command: flags to a :class:`Config`, signals to a graceful shutdown.

Every problem the user can fix (a bad flag, an app that cannot be found, a
port in use, a failed startup) ends in one sentence on stderr and a non-zero
exit status, not a traceback.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import fields
from typing import NoReturn

import trio

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

from ._config import LOG_LEVELS, Config, ConfigError
from ._importer import AppImportError, import_app
from ._lifespan import LifespanFailure
from ._logging import configure_logging, logger
from ._server import Server

#: Exit statuses: 1 for "could not start" (bad app, bad address), 2 for a bad
#: command line (argparse's convention), 3 for a failed lifespan startup
#: (uvicorn's).
EXIT_STARTUP_ERROR = 1
EXIT_USAGE = 2
EXIT_LIFESPAN_FAILED = 3

_DEFAULTS = Config()


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


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
    _add_websocket_flags(parser.add_argument_group("WebSocket"))
    _add_timeout_flags(parser.add_argument_group("timeouts"))
    _add_logging_flags(parser.add_argument_group("logging"))
    return parser


def _add_application_flags(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--factory",
        action="store_true",
        help="MODULE:ATTR names a function that returns the app; call it",
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
        "--h11-max-incomplete-event-size",
        type=int,
        default=_DEFAULTS.h11_max_incomplete_event_size,
        metavar="BYTES",
        help="largest request header block accepted; more gets 431 (default: %(default)s)",
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


def _version() -> str:
    from . import __version__

    return __version__


def config_from_args(args: argparse.Namespace) -> Config:
    """A Config from every parsed flag that names a Config field (dest == field name)."""
    values = vars(args)
    return Config(
        **{field.name: values[field.name] for field in fields(Config) if field.name in values}
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except ConfigError as exc:
        parser.error(str(exc))
    configure_logging(config.log_level, access_log=config.access_log)
    try:
        app = import_app(args.app, factory=config.factory, app_dir=config.app_dir)
    except AppImportError as exc:
        return _fail(EXIT_STARTUP_ERROR, f"{exc}.")
    except Exception:
        logger.exception("Error while importing %s", args.app)
        return _fail(EXIT_STARTUP_ERROR, f'could not load the application "{args.app}".')

    try:
        server = Server(app, config)
    except ConfigError as exc:
        return _fail(EXIT_STARTUP_ERROR, f"{exc}.")
    try:
        trio.run(_serve_with_signals, server)
    except BaseException as exc:
        # Nurseries wrap what they raise in exception groups; the user wants
        # the one thing that went wrong.
        return _exit_status_for(_sole_exception(exc))
    return 0


def _exit_status_for(exc: BaseException) -> int:
    if isinstance(exc, KeyboardInterrupt):
        return 130
    if isinstance(exc, OSError):
        return _fail(EXIT_STARTUP_ERROR, f"{exc.strerror or exc}.")
    if isinstance(exc, LifespanFailure):
        return _fail(EXIT_LIFESPAN_FAILED, f"{exc}.")
    raise exc


def _sole_exception(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


async def _serve_with_signals(server: Server) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_watch_signals, signals, server)
            await server.serve(server.wait_for_shutdown_request, trio.TASK_STATUS_IGNORED)
            nursery.cancel_scope.cancel()
    logger.info("Stopped")


async def _watch_signals(signals: AsyncIterator[int], server: Server) -> None:
    """First SIGINT/SIGTERM: graceful shutdown. Second: stop at once."""
    async for signum in signals:
        name = signal.Signals(signum).name
        if server.shutdown_requested:
            logger.warning("Received %s again: exiting now", name)
            server.force_exit()
            return
        logger.info("Received %s: shutting down gracefully (again to force)", name)
        server.request_shutdown()


def _fail(status: int, sentence: str) -> int:
    sys.stderr.write(f"trio-asgi: error: {sentence[0].lower()}{sentence[1:]}\n")
    return status


def run() -> NoReturn:
    """Console-script entry point."""
    sys.exit(main())
