"""One server process: run the server under trio with signal handling, map failures to exits.

Used by the single-process command line and by each worker of a supervisor
or reloader. First SIGINT/SIGTERM: graceful shutdown; second: stop at once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import trio

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

from ..asgi.importer import AppImportError, import_app
from ..asgi.lifespan import LifespanFailure
from ..core.config import Config
from ..core.errors import ConfigError
from ..core.logs import logger
from ..serving.server import Server
from .process import FORCE, PING, PONG, READY, STOP

#: Exit statuses: 1 for "could not start" (bad app, bad address), 2 for a bad
#: command line (argparse's convention), 3 for a failed lifespan startup
#: (uvicorn's).
EXIT_STARTUP_ERROR = 1
EXIT_USAGE = 2
EXIT_LIFESPAN_FAILED = 3
#: A forced shutdown (a second SIGINT or SIGTERM) exits with 128 + that
#: signal's number, as a shell reports a process the signal killed: 130 or 143.
EXIT_FORCED_BASE = 128


def fail(status: int, sentence: str) -> int:
    """Print one error sentence on stderr; return ``status`` for the caller to exit with."""
    if sentence.endswith(("?.", "!.")):  # a question asked, then the callers' full stop
        sentence = sentence[:-1]
    sys.stderr.write(f"trio-asgi: error: {sentence[0].lower()}{sentence[1:]}\n")
    return status


def load_app(target: str, config: Config) -> Callable[..., Any] | None:
    """The app ``MODULE:ATTR`` names, or None once the reason it cannot be loaded is printed."""
    try:
        return import_app(target, factory=config.factory, app_dir=config.app_dir)
    except AppImportError as exc:
        fail(EXIT_STARTUP_ERROR, f"{exc}.")
    except Exception:
        logger.exception("Error while importing %s", target)
        fail(EXIT_STARTUP_ERROR, f'could not load the application "{target}".')
    return None


def run_server(
    app: Callable[..., Any],
    config: Config,
    *,
    parent: socket.socket | None = None,
    signals: Sequence[int] = (signal.SIGINT, signal.SIGTERM),
) -> int:
    """Serve until a signal (or the request limit) stops us; the process exit status.

    ``parent``: the worker's link to its supervisor: ``R`` is written to it
    once listening, and its EOF (the supervisor died) starts a graceful shutdown.
    """
    try:
        server = Server(app, config)
    except ConfigError as exc:
        return fail(EXIT_STARTUP_ERROR, f"{exc}.")
    if parent is not None:
        server.worker_pid = os.getpid()
    try:
        forced_by = trio.run(_serve_with_signals, server, parent, signals)
    except BaseException as exc:
        # Nurseries wrap what they raise in exception groups; the user wants
        # the one thing that went wrong.
        return exit_status_for(exc)
    if server.forced:
        return EXIT_FORCED_BASE + (forced_by or signal.SIGTERM)
    return 0


def exit_status_for(exc: BaseException) -> int:
    """The exit status for what stopped ``trio.run``, its one sentence printed; else re-raise."""
    exc = _sole_exception(exc)
    if isinstance(exc, KeyboardInterrupt):
        return 130
    if isinstance(exc, OSError):
        return fail(EXIT_STARTUP_ERROR, f"{exc.strerror or exc}.")
    if isinstance(exc, ConfigError):
        return fail(EXIT_USAGE, f"{exc}.")
    if isinstance(exc, LifespanFailure):
        return fail(EXIT_LIFESPAN_FAILED, f"{exc}.")
    raise exc


def _sole_exception(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


async def _serve_with_signals(
    server: Server, parent: socket.socket | None, signals: Sequence[int]
) -> int | None:
    """Serve until stopped; the signal that forced the stop, if one did."""
    forced_by: list[int] = []
    with trio.open_signal_receiver(*signals) as received:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_watch_signals, received, server, forced_by)
            async with trio.open_nursery() as serving:
                await serving.start(server.serve, server.wait_for_shutdown_request)
                if parent is not None:
                    link = trio.socket.from_stdlib_socket(parent)
                    await link.send(READY)
                    nursery.start_soon(_watch_parent, link, server)
            nursery.cancel_scope.cancel()
    logger.info("Stopped (forced)" if server.forced else "Stopped")
    return forced_by[0] if forced_by else None


async def _watch_signals(signals: AsyncIterator[int], server: Server, forced_by: list[int]) -> None:
    """First SIGINT/SIGTERM: graceful shutdown. Second: stop at once."""
    signalled = False
    async for signum in signals:
        name = signal.Signals(signum).name
        # Only our own earlier signal counts: a worker that the supervisor
        # asked to stop may still get the same SIGTERM from systemd.
        if signalled:
            forced_by.append(signum)
            server.force_exit(f"Received {name} again")
            return
        signalled = True
        logger.info("Received %s: shutting down gracefully (again to force)", name)
        server.request_shutdown()


async def _watch_parent(link: trio.socket.SocketType, server: Server) -> None:
    """Obey the supervisor's stop requests; its disappearance is one too."""
    while True:
        try:
            data = await link.recv(64)
        except OSError:
            data = b""
        if FORCE in data:
            server.force_exit("The supervisor asked to stop at once")
            return
        if PING in data:
            with contextlib.suppress(OSError):
                await link.send(PONG)
        if STOP in data:
            server.request_shutdown()
        if not data:
            if not server.shutdown_requested:
                logger.warning("The supervisor has gone: shutting down gracefully")
            server.request_shutdown()
            return
