"""The access log line: a ``str.format`` template over the fields of one response.

The template uses ``{name}`` fields with optional format specs, e.g.
``{client} "{method} {target}" {status} {bytes} {duration:.3f}``. Fields are
computed only when the template names them, and a line is formatted only
when the access log is enabled. A template is checked at startup by
formatting it once with sample values, so one that cannot format a real line
(``{status:>5s}``: the status is a number) never reaches a request.

A response cut short says so in ``{cut_short}``. When no status was sent the
line has nginx's: 499 if the client left first, 444 if the server closed the
connection (a forced shutdown).
"""

from __future__ import annotations

import os
import string
import time
from collections.abc import Callable
from http import HTTPStatus
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


#: nginx's status for "the client closed the connection before a response was sent".
CLIENT_CLOSED_REQUEST = 499
#: nginx's status for "the server closed the connection without a response"
#: (here: a shutdown cancelled the request before the app answered).
NO_RESPONSE = 444

_PHRASES = {status.value: status.phrase for status in HTTPStatus}
_PHRASES[CLIENT_CLOSED_REQUEST] = "Client Closed Request"
_PHRASES[NO_RESPONSE] = "No Response"


def reason_phrase(status: int) -> str:
    return _PHRASES.get(status, "")


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
    "reason": lambda c: reason_phrase(c.status),
    "bytes": lambda c: c.body_bytes,
    "duration": lambda c: time.perf_counter() - c.started,
    "duration_ms": lambda c: (time.perf_counter() - c.started) * 1000,
    "host": lambda c: _header(c, b"host"),
    "user_agent": lambda c: _header(c, b"user-agent"),
    "referer": lambda c: _header(c, b"referer"),
    "pid": lambda c: os.getpid(),
    # Set by format_access_line: "" for a whole response, else " (cut short: why)".
    "cut_short": lambda c: "",
}


def check_format(template: str) -> None:
    """Raise :class:`ConfigError` unless ``template`` formats a line with the known fields."""
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
    try:
        format_access_line(template, _SAMPLE, "client left")
        format_access_line(template, _SAMPLE)
    except (ValueError, TypeError, IndexError, KeyError, AttributeError) as exc:
        raise ConfigError(f"access log format {template!r} cannot format a line: {exc}") from None


class _SampleHead:
    method = b"GET"
    target = b"/path?q=1"
    http_version = b"1.1"
    headers = [(b"host", b"example.com"), (b"user-agent", b"curl/8")]


class _SampleExchange:
    """A response with a value of the right type in every field, to try a template on."""

    request = _SampleHead()
    scope = {
        "client": ("127.0.0.1", 50000),
        "path": "/path",
        "query_string": b"q=1",
        "scheme": "http",
    }
    status = 200
    body_bytes = 5
    started = 0.0


_SAMPLE = _SampleExchange()


class _LazyFields(dict):
    """A mapping that computes a field the first time the template asks for it."""

    def __init__(self, cycle: Exchange) -> None:
        super().__init__()
        self.cycle = cycle

    def __missing__(self, name: str) -> Any:
        value = self[name] = FIELDS[name](self.cycle)
        return value


def format_access_line(template: str, cycle: Exchange, cut_short: str | None = None) -> str:
    """The line for ``cycle``; ``cut_short`` says why the response did not complete."""
    fields = _LazyFields(cycle)
    if cut_short is not None:
        fields["cut_short"] = f" (cut short: {cut_short})"
    return template.format_map(fields)
