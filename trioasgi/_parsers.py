"""Chooses the HTTP/1.1 parser of a connection: h11, or httptools when asked for and installed.

Both parsers are used through the same interface, ``h11.Connection``'s (see
``_httptools_parser``), plus :meth:`send_response`, which lets the httptools
side serialize a response head without building an ``h11.Response`` first.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from typing import Any

import h11

from ._config import Config

PARSERS = ("auto", "h11", "httptools")


class H11Connection(h11.Connection):
    """``h11.Connection`` with the one extra method the connection code uses."""

    def send_response(
        self, status: int, headers: Sequence[tuple[bytes, bytes]], reason: bytes
    ) -> bytes:
        data = self.send(h11.Response(status_code=status, headers=headers, reason=reason))
        assert data is not None
        return data


def httptools_available() -> bool:
    return importlib.util.find_spec("httptools") is not None


def resolve_parser(choice: str) -> str:
    """The parser ``Config.http`` means on this installation ("auto" resolved)."""
    if choice == "auto":
        return "httptools" if httptools_available() else "h11"
    return choice


def new_parser(config: Config, parser: str) -> Any:
    """A fresh server-side connection state for the resolved ``parser`` name."""
    if parser == "httptools":
        from ._httptools_parser import HttptoolsConnection

        return HttptoolsConnection(max_incomplete_event_size=config.h11_max_incomplete_event_size)
    return H11Connection(h11.SERVER, max_incomplete_event_size=config.h11_max_incomplete_event_size)
