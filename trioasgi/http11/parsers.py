"""Chooses the HTTP/1.1 parser of a connection: h11, or httptools when asked for and installed.

Both are used through the same interface, the part of ``h11.Connection``'s
the connection code needs (see ``httptools_parser``), with two differences:
a request head comes as an ``asgi.request.RequestHead`` rather than an
``h11.Request``, and the connection calls ``begin_response`` once it has
accepted a head (``strict.check_request``'s facts of its fields say
whether the client asked to close). Both write responses through
``writer.WriterSide``; ``send_response`` serializes a response head
without building an ``h11.Response`` first.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import h11

from ..asgi.request import RequestHead
from ..core.config import Config
from .handover import NotHTTP1
from .strict import FieldFacts
from .writer import NO_DEFAULT_HEADERS, DefaultHeaders, WriterSide


class H11Connection(WriterSide):
    """h11 parses the requests; the writer (:class:`WriterSide`) writes the responses.

    h11's own ``send`` validates and rebuilds every response event twice and
    walks its state machine for each; the writer applies the same rules in
    a fraction of the time (it is most of the difference between h11's
    throughput and a bare h11 loop). h11 never sees our responses, so
    :meth:`start_next_cycle` tells its state machine that the response is
    done before asking it to start the next cycle.
    """

    def __init__(
        self, max_incomplete_event_size: int, defaults: DefaultHeaders = NO_DEFAULT_HEADERS
    ) -> None:
        super().__init__(defaults)
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=max_incomplete_event_size)

    @property
    def their_state(self) -> Any:
        return self._their_state_after_ours(self._h11.their_state)

    @property
    def they_are_waiting_for_100_continue(self) -> bool:
        return self._h11.they_are_waiting_for_100_continue and not self._writer.responded

    @property
    def trailing_data(self) -> tuple[bytes, bool]:
        return self._h11.trailing_data

    def receive_data(self, data: bytes) -> None:
        """Bytes read from the peer (``b""`` at EOF); ignored once the peer has closed."""
        conn = self._h11
        if conn.their_state is not h11.CLOSED:
            conn.receive_data(data)

    def needs_data(self) -> bool:
        """Whether ``next_event`` would surely say NEED_DATA: nothing unparsed, peer open.

        Cheaper than asking h11 to look, which is most of the time what
        happens between two keep-alive requests.
        """
        conn = self._h11
        return (
            not conn._receive_buffer  # h11 internals: see from_h11
            and not conn._receive_buffer_closed
            and conn.their_state is h11.IDLE
        )

    def next_event(self) -> Any:
        """h11's next event, a request as a :class:`RequestHead`."""
        try:
            event = self._h11.next_event()
        except h11.RemoteProtocolError as exc:
            line = bytes(self._h11._receive_buffer).partition(b"\n")[0]
            if str(exc).startswith("illegal request line") and b"HTTP/1." not in line:
                raise NotHTTP1(str(exc), 400) from exc
            raise
        if type(event) is h11.Request:
            return from_h11(event)
        return event

    def begin_response(self, head: RequestHead, fields: FieldFacts) -> None:
        """The connection accepted ``head``: our side now owes it a response."""
        self._writer.begin(head, fields.close)

    def holds_nothing(self) -> bool:
        """Whether both sides are between requests, nothing buffered, the peer still there."""
        return self._writer.our_state is h11.IDLE and self.needs_data()

    def renew(self) -> None:
        """Forget the requests parsed so far (between requests, nothing buffered).

        Nothing to do: after ``start_next_cycle`` with nothing buffered,
        h11 takes the next request as it would on a new connection.
        """

    def try_start_next_cycle(self) -> bool:
        """Start the next cycle if nothing is left of this one to read; whether it did.

        Unlike the httptools parser's, true only once h11 has delivered the
        request's end: h11 cannot look at its next event without taking it.
        """
        if self._writer.our_state is not h11.DONE or self._h11.their_state is not h11.DONE:
            return False
        self.start_next_cycle()
        return True

    def start_next_cycle(self) -> None:
        writer = self._writer
        if writer.our_state is not h11.DONE or not writer.keep_alive:
            raise h11.LocalProtocolError("not in a reusable state")
        conn = self._h11
        # h11 never saw our response: its server side is told it is done
        # (h11 internals, pinned like those in from_h11), then h11 checks
        # the client side and keeps any pipelined bytes where they are.
        conn._cstate.states[h11.SERVER] = h11.DONE
        conn.start_next_cycle()
        writer.reset()


def httptools_available() -> bool:
    return importlib.util.find_spec("httptools") is not None


def resolve_parser(choice: str) -> str:
    """The parser ``Config.http`` means on this installation ("auto" resolved)."""
    if choice == "auto":
        return "httptools" if httptools_available() else "h11"
    return choice


def new_parser(config: Config, parser: str, defaults: DefaultHeaders = NO_DEFAULT_HEADERS) -> Any:
    """A fresh server-side connection state for the resolved ``parser`` name.

    ``defaults`` are the headers its responses get unless they set them.
    """
    if parser == "httptools":
        from .httptools_parser import HttptoolsConnection

        return HttptoolsConnection(
            max_incomplete_event_size=config.h11_max_incomplete_event_size,
            max_fields=config.limit_request_fields,
            defaults=defaults,
        )
    return H11Connection(config.h11_max_incomplete_event_size, defaults)


def from_h11(request: h11.Request) -> RequestHead:
    """The head of an ``h11.Request``.

    Reads h11's three-tuples directly (``Headers._full_items``, a private
    attribute pinned by the h11 version range in pyproject.toml): iterating
    the public ``Sequence`` costs a generator step and an index per field.
    """
    headers = [(name, value) for _, name, value in request.headers._full_items]
    return RequestHead(request.method, request.target, request.http_version, headers)
