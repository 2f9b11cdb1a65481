"""Logger names, the ``trace`` level, and the command line's logging set-up.

Two loggers, named like uvicorn's so existing habits carry over:
``trioasgi.error`` for everything the server has to say, and
``trioasgi.access`` for one line per response.
"""

from __future__ import annotations

import logging
import sys

TRACE = 5
logging.addLevelName(TRACE, "TRACE")

logger = logging.getLogger("trioasgi.error")
access_logger = logging.getLogger("trioasgi.access")

_LEVELS = {
    "critical": logging.CRITICAL,
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
    "trace": TRACE,
}


def level_number(name: str) -> int:
    return _LEVELS[name]


def configure_logging(level: str, *, access_log: bool) -> None:
    """Plain ``LEVEL: message`` lines on stderr, as the command line prints them."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    root = logging.getLogger("trioasgi")
    root.handlers[:] = [handler]
    root.setLevel(level_number(level))
    root.propagate = False
    access_logger.disabled = not access_log
