"""The ``trio-asgi`` command: settings from flags, environment and file; then serve.

The flags themselves are defined in ``_flags.py``; signals and exit statuses
of one server process in ``_runner.py``.

Every problem the user can fix (a bad flag, an app that cannot be found, a
port in use, a failed startup) ends in one sentence on stderr and a non-zero
exit status, not a traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from typing import NoReturn

import trio

from ..asgi.importer import AppImportError, check_app_name
from ..core.config import Config
from ..core.errors import ConfigError
from ..core.logs import configure_logging, logger
from ..serving.listeners import open_listeners
from ..serving.tls import load_tls
from .flags import build_parser, explicit_flags
from .runner import (
    EXIT_LIFESPAN_FAILED,
    EXIT_STARTUP_ERROR,
    exit_status_for,
    fail,
    load_app,
    run_server,
)
from .settings import load_env_file, resolve


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    environ = os.environ if environ is None else environ
    try:
        if args.env_file is not None:
            load_env_file(args.env_file, environ)  # type: ignore[arg-type]
        config = resolve(explicit_flags(argv), config_file=args.config, environ=environ)
        configure_logging(config)
    except ConfigError as exc:
        parser.error(str(exc))
    if config.reload or config.workers > 1:
        return serve_processes(args.app, config)
    app = load_app(args.app, config)
    if app is None:
        return EXIT_STARTUP_ERROR
    return run_server(app, config)


def serve_processes(target: str, config: Config) -> int:
    """Bind once here, then serve from worker processes (``--workers`` or ``--reload``)."""
    failure = _check_before_listening(target, config)
    if failure is not None:
        return fail(EXIT_STARTUP_ERROR, f"{failure}.")
    try:
        status = trio.run(_supervise, target, config)
    except BaseException as exc:
        return exit_status_for(exc)
    if status == EXIT_LIFESPAN_FAILED:
        return fail(status, "a worker's application startup failed (see above): stopped.")
    if status != 0 and status < 128:
        return fail(status, "the workers could not start (see above): stopped.")
    return status


def _check_before_listening(target: str, config: Config) -> Exception | None:
    """What would make every worker fail, found before anything listens; None if nothing.

    The workers read the certificates and import the app again themselves;
    this process only checks that they can (it never runs the app's code,
    which a reloader must not keep).
    """
    try:
        if config.reload:
            from .reload import import_watchfiles

            import_watchfiles()
        load_tls(config)
        check_app_name(target, app_dir=config.app_dir)
    except (ConfigError, AppImportError) as exc:
        return exc
    return None


async def _supervise(target: str, config: Config) -> int:
    listeners = await open_listeners(config)
    try:
        scheme = "https" if config.ssl_certfile else "http"
        for listener in listeners:
            logger.info("Listening on %s", listener.url(scheme))
        fds = [listener.listener.socket.fileno() for listener in listeners]
        if config.reload:
            from .reload import Reloader

            return await Reloader(target, config, fds).run()
        from .supervisor import Supervisor

        return await Supervisor(target, config, fds).run()
    finally:
        for listener in listeners:
            await listener.aclose()


def run() -> NoReturn:
    """Console-script entry point."""
    sys.exit(main())
