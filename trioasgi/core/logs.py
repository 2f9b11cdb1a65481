"""Logger names, the ``trace`` level, and the command line's logging set-up.

Two loggers, named like uvicorn's so existing habits carry over:
``trioasgi.error`` for everything the server has to say, and
``trioasgi.access`` for one line per response. Level names are coloured
only when stderr is a terminal (and ``NO_COLOR`` is not set).
"""

from __future__ import annotations

import json
import logging
import logging.config
import os
import sys
from pathlib import Path
from typing import IO, Any

from .config import Config
from .errors import ConfigError

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

#: ANSI colours of the level names and of the access log's status classes.
_LEVEL_COLOURS = {
    TRACE: "34",
    logging.DEBUG: "36",
    logging.INFO: "32",
    logging.WARNING: "33",
    logging.ERROR: "31",
    logging.CRITICAL: "1;31",
}
_STATUS_COLOURS = {1: "37", 2: "32", 3: "36", 4: "33", 5: "31"}


def level_number(name: str) -> int:
    return _LEVELS[name]


def use_colours(stream: IO[str]) -> bool:
    return "NO_COLOR" not in os.environ and hasattr(stream, "isatty") and stream.isatty()


class ColourFormatter(logging.Formatter):
    """``LEVEL: message``, with the level (and an access line's status) in colour."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        colour = _LEVEL_COLOURS.get(record.levelno)
        levelname = record.levelname
        if colour:
            levelname = f"\033[{colour}m{levelname}\033[0m"
        message = record.getMessage()
        status = getattr(record, "status_code", None)
        if isinstance(status, int) and status // 100 in _STATUS_COLOURS:
            message = f"\033[{_STATUS_COLOURS[status // 100]}m{message}\033[0m"
        return f"{levelname}: {message}"


def configure_logging(config: Config, stream: IO[str] | None = None) -> None:
    """Plain ``LEVEL: message`` lines on stderr, or the user's ``--log-config``."""
    stream = stream if stream is not None else sys.stderr
    handler = logging.StreamHandler(stream)
    colours = config.use_colors if config.use_colors is not None else use_colours(stream)
    if colours:
        handler.setFormatter(ColourFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    root = logging.getLogger("trioasgi")
    root.handlers[:] = [handler]
    root.setLevel(level_number(config.log_level))
    root.propagate = False
    if config.log_config is not None:
        settings = load_log_config(config.log_config)
        try:
            logging.config.dictConfig(settings)
        except (ValueError, TypeError, AttributeError, ImportError) as exc:
            raise ConfigError(f"the log config {config.log_config} cannot be used: {exc}") from None
    access_logger.disabled = not config.access_log


def load_log_config(path: str) -> dict[str, Any]:
    """A dictConfig dictionary from a JSON or YAML file; ConfigError says what is wrong."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the log config {path}: {exc.strerror}") from None
    if file.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ConfigError(
                f"the log config {path} is YAML, which needs PyYAML: pip install pyyaml"
            ) from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"the log config {path} is not valid YAML: {exc}") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"the log config {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"the log config {path} must hold a dictConfig mapping")
    data.setdefault("version", 1)
    # Our loggers exist already; a config that does not name them must not mute them.
    data.setdefault("disable_existing_loggers", False)
    return data
