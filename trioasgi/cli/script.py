"""``trioasgi.run()``: what the ``trio-asgi`` command does, called from a Python script.

The same logging set-up, signal handling (SIGINT/SIGTERM: graceful, again:
forced), banner and exit statuses as the command line, for
``if __name__ == "__main__": trioasgi.run(app, port=8000)``. ``serve()``
stays the embeddable building block, with no signals and no logging set-up.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from ..core.config import Config
from ..core.errors import ConfigError
from ..core.logs import configure_logging
from .main import serve_processes
from .runner import EXIT_STARTUP_ERROR, EXIT_USAGE, fail, load_app, run_server


def run(app: Callable[..., Any] | str, config: Config | None = None, **settings: Any) -> None:
    """Serve ``app`` until SIGINT or SIGTERM, as ``trio-asgi`` does; return after a clean stop.

    ``app`` is the application, or its ``"module:attribute"`` name (which
    ``workers`` and ``reload`` need: each worker imports it). Settings are
    :class:`Config` fields, given as a ``config``, as keywords, or both (the
    keywords win). Every other ending prints its one sentence on stderr and
    raises ``SystemExit`` with the command line's exit status.
    """
    status = _run(app, config, settings)
    if status != 0:
        raise SystemExit(status)


def _run(app: Callable[..., Any] | str, config: Config | None, settings: dict[str, Any]) -> int:
    try:
        config = _config(config, settings)
        configure_logging(config)
    except ConfigError as exc:
        return fail(EXIT_USAGE, f"{exc}.")
    if isinstance(app, str):
        if config.reload or config.workers > 1:
            return serve_processes(app, config)
        loaded = load_app(app, config)
        if loaded is None:
            return EXIT_STARTUP_ERROR
        app = loaded
    elif config.reload or config.workers > 1:
        return fail(
            EXIT_USAGE,
            "workers and reload need the application as an import string, "
            'such as run("main:app", workers=2): each worker process imports it.',
        )
    return run_server(app, config)


def _config(config: Config | None, settings: dict[str, Any]) -> Config:
    names = {field.name for field in dataclasses.fields(Config)}
    unknown = sorted(set(settings) - names)
    if unknown:
        raise ConfigError(f"unknown setting {unknown[0]!r} (settings are Config fields)")
    if config is None:
        return Config(**settings)
    return config.replace(**settings) if settings else config
