"""Server settings: one dataclass, the single source of defaults.

The command line builds a :class:`Config`; ``serve()`` takes one. Every field
has the name of its command-line flag (``--timeout-keep-alive`` is
``timeout_keep_alive``), so the two cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal

LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


class ConfigError(ValueError):
    """A setting has a value the server cannot use; the message is one sentence."""


@dataclass
class Config:
    """Everything the server can be told.

    Times are in seconds, sizes in bytes. ``None`` for a timeout means "wait
    for ever", which only makes sense where a client cannot be the one who
    decides how long that is.
    """

    # -- the application (used where the app is loaded by name) --
    factory: bool = False
    app_dir: str = "."
    lifespan: Literal["auto", "on", "off"] = "auto"
    root_path: str = ""

    # -- binding --
    host: str = "127.0.0.1"
    port: int = 8000

    # -- HTTP --
    h11_max_incomplete_event_size: int = 16 * 1024
    server_header: bool = True
    date_header: bool = True

    # -- timeouts --
    timeout_keep_alive: float = 5.0
    timeout_request_header: float = 10.0
    timeout_graceful_shutdown: float | None = 30.0
    timeout_lifespan: float = 60.0

    # -- logging --
    log_level: str = "info"
    access_log: bool = True

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
        if self.lifespan not in ("auto", "on", "off"):
            raise ConfigError(f"lifespan must be auto, on or off, not {self.lifespan!r}")
        if self.root_path and (not self.root_path.startswith("/") or self.root_path.endswith("/")):
            raise ConfigError(
                f"root path must start with '/' and not end with one, not {self.root_path!r}"
            )
        _check_positive("keep-alive timeout", self.timeout_keep_alive)
        _check_positive("request header timeout", self.timeout_request_header)
        _check_positive("lifespan timeout", self.timeout_lifespan)
        if self.timeout_graceful_shutdown is not None:
            _check_positive("graceful shutdown timeout", self.timeout_graceful_shutdown, zero=True)
        if self.h11_max_incomplete_event_size < 1024:
            raise ConfigError("h11 max incomplete event size must be at least 1024 bytes")

    def replace(self, **changes: object) -> Config:
        """A copy with some fields changed (and validated)."""
        return dataclasses.replace(self, **changes)


def _check_positive(what: str, value: float, *, zero: bool = False) -> None:
    if math.isnan(value) or value < 0 or (value == 0 and not zero):
        raise ConfigError(f"{what} must be a positive number of seconds, not {value}")
