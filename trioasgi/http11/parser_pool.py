"""Parsers lent to connections while they read, so that an idle connection holds none.

A keep-alive connection spends most of its life waiting for its next
request with nothing received, its parser in the state of a new one: a
server holding thousands of idle connections would hold thousands of
identical parsers (about 1.5 KiB each). Instead the connection hands its
parser in for the wait and takes one back when bytes arrive, so the server
holds about as many parsers as connections read at the same moment. Taking
and handing in are a list pop and append, cheaper than building a parser
for each request.

Only a parser holding nothing of any request is taken in: both sides
between requests, nothing buffered, the peer not gone. It is renewed on the
way in (see the parsers' ``renew``), so nothing one connection sent can
reach another.
"""

from __future__ import annotations

from typing import Any

from ..core.config import Config
from .parsers import new_parser
from .writer import NO_DEFAULT_HEADERS, DefaultHeaders

#: The most parsers kept for later; more than this many connections going
#: idle at once drop theirs, and new ones are built when they are needed.
MAX_IDLE_PARSERS = 256


class ParserPool:
    """The idle parsers of one server's connections."""

    __slots__ = ("_config", "_defaults", "_idle", "_kind")

    def __init__(
        self, config: Config, kind: str, defaults: DefaultHeaders = NO_DEFAULT_HEADERS
    ) -> None:
        self._config = config
        self._kind = kind
        self._defaults = defaults
        self._idle: list[Any] = []

    def take(self) -> Any:
        """A parser in the state of a new one."""
        idle = self._idle
        return idle.pop() if idle else new_parser(self._config, self._kind, self._defaults)

    def hand_in(self, parser: Any) -> bool:
        """Whether the connection may let go of ``parser`` while it waits (then it is kept here).

        False if the parser holds part of a request or the peer's EOF: the
        connection keeps it.
        """
        if not parser.holds_nothing():
            return False
        if len(self._idle) < MAX_IDLE_PARSERS:
            parser.renew()
            self._idle.append(parser)
        return True

    def __len__(self) -> int:
        return len(self._idle)
