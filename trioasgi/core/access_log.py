"""The access log line: a ``str.format`` template over the fields of one response.

The template uses ``{name}`` fields with optional format specs, e.g.
``{client} "{method} {target}" {status} {bytes} {duration:.3f}``. Fields are
computed only when the template names them, and a line is formatted only
when the access log is enabled.
"""

from __future__ import annotations

import os
import string
import time
from collections.abc import Callable
from typing import Any, Protocol

from .errors import ConfigError


class _Head(Protocol):
    method: bytes
    target: bytes
    http_version: bytes
    headers: list[tuple[bytes, bytes]]


class Exchange(Protocol):
    """What a line is made of: a request and its response (``asgi.cycle.Exchange``)."""

    request: _Head
    scope: dict[str, Any]
    status: int | None
    body_bytes: int
    started: float


def _header(cycle: Exchange, wanted: bytes) -> str:
    for name, value in cycle.request.headers:
        if name == wanted:
            return value.decode("latin-1")
    return "-"


def _client(cycle: Exchange) -> str:
    client = cycle.scope["client"]  # as a trusted proxy reported it
    return f"{client[0]}:{client[1]}" if client else "-"


#: Every field a template may use, and how to compute it from a finished cycle.
FIELDS: dict[str, Callable[[Exchange], Any]] = {
    "client": _client,
    "client_addr": lambda c: c.scope["client"][0] if c.scope["client"] else "-",
    "method": lambda c: c.request.method.decode("ascii"),
    "target": lambda c: c.request.target.decode("ascii", "replace"),
    "path": lambda c: c.scope["path"],
    "query": lambda c: c.scope["query_string"].decode("ascii", "replace"),
    "http_version": lambda c: c.request.http_version.decode("ascii"),
    "scheme": lambda c: c.scope["scheme"],
    "status": lambda c: c.status,
    "bytes": lambda c: c.body_bytes,
    "duration": lambda c: time.perf_counter() - c.started,
    "duration_ms": lambda c: (time.perf_counter() - c.started) * 1000,
    "host": lambda c: _header(c, b"host"),
    "user_agent": lambda c: _header(c, b"user-agent"),
    "referer": lambda c: _header(c, b"referer"),
    "pid": lambda c: os.getpid(),
}


def check_format(template: str) -> None:
    """Raise :class:`ConfigError` unless ``template`` formats with the known fields."""
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        raise ConfigError(f"access log format {template!r} is not valid: {exc}") from None
    for name in names:
        if name not in FIELDS:
            known = ", ".join(FIELDS)
            raise ConfigError(
                f"access log format field {{{name}}} is unknown (known fields: {known})"
            )


class _LazyFields(dict):
    """A mapping that computes a field the first time the template asks for it."""

    def __init__(self, cycle: Exchange) -> None:
        super().__init__()
        self.cycle = cycle

    def __missing__(self, name: str) -> Any:
        value = self[name] = FIELDS[name](self.cycle)
        return value


def format_access_line(template: str, cycle: Exchange) -> str:
    return template.format_map(_LazyFields(cycle))
