"""Both HTTP/1.1 parsers (h11, httptools) refuse the same requests and frame responses alike.

Over memory streams with a mock clock: each test runs once per parser (the
``http_parser`` fixture); the ``--http`` setting itself is tested at the end.
"""

from __future__ import annotations

import types

import h11
import pytest
import trio

import trioasgi
from tests import apps
from tests.conftest import MemoryConnection, accept_next_request, accepted_fields, exchange
from tests.malformed import HOST as _HOST
from tests.malformed import get_request as _get
from tests.malformed import post_request as _post
from trioasgi.asgi.request import RequestHead
from trioasgi.http11.parsers import from_h11, new_parser
from trioasgi.http11.writer import NO_DEFAULT_HEADERS, DefaultHeaders, ResponseWriter

pytestmark = pytest.mark.usefixtures("http_parser")


class RecordingApp:
    """Reads the whole body and answers 200; remembers the paths it was called for."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    async def __call__(self, scope, receive, send) -> None:
        self.paths.append(scope["path"])
        await apps.echo(scope, receive, send)


async def test_head_split_across_reads_still_hits_the_size_limit(autojump_clock) -> None:
    app = RecordingApp()
    async with trio.open_nursery() as nursery:
        conn = MemoryConnection(app, nursery)
        await conn.send(b"GET / HTTP/1.1\r\nHost: x\r\n")
        for _ in range(40):
            if conn.finished.is_set():
                break
            await conn.send(b"X-Filler: " + b"a" * 1000 + b"\r\n")
            await trio.testing.wait_all_tasks_blocked()
        with trio.fail_after(60):
            data = await conn.read_all()
    assert data.startswith(b"HTTP/1.1 431 ")
    assert app.paths == []


async def test_a_field_that_never_ends_is_refused_before_much_of_it_is_held(
    autojump_clock,
) -> None:
    """A field with no end of line: httptools gathers it in memory until the line ends."""
    app = RecordingApp()
    answer = b""
    answered = trio.Event()

    async def read_answer() -> None:
        nonlocal answer
        answer = await conn.client.receive_some()
        answered.set()

    sent = 0
    async with trio.open_nursery() as nursery:
        conn = MemoryConnection(app, nursery)
        nursery.start_soon(read_answer)
        await conn.send(b"GET / HTTP/1.1\r\nHost: x\r\nX-Endless: ")
        while not answered.is_set() and sent < 1024 * 1024:
            await conn.send(b"a" * 4096)
            sent += 4096
            await trio.testing.wait_all_tasks_blocked()
        await conn.read_to_the_end(within=60)
    assert answer.startswith(b"HTTP/1.1 431 ")
    assert sent <= trioasgi.Config().h11_max_incomplete_event_size + 2 * 4096
    assert app.paths == []


async def test_pipelined_requests_are_answered_in_order(autojump_clock) -> None:
    app = RecordingApp()
    requests = b"".join(
        b"POST /%d HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n%d" % (i, i) for i in range(5)
    )
    data = await exchange(app, requests + _get(_HOST + b"Connection: close\r\n"))
    assert app.paths == ["/0", "/1", "/2", "/3", "/4", "/"]
    assert data.count(b"HTTP/1.1 200 ") == 6
    bodies = [part.split(b"\r\n\r\n", 1)[1] for part in data.split(b"HTTP/1.1 ")[1:]]
    assert bodies == [b"0", b"1", b"2", b"3", b"4", b""]


async def test_chunked_request_body_is_decoded(autojump_clock) -> None:
    app = RecordingApp()
    body = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    data = await exchange(app, _post(b"Transfer-Encoding: chunked\r\nConnection: close\r\n", body))
    assert data.startswith(b"HTTP/1.1 200 ")
    assert data.endswith(b"\r\n\r\nhello world")


async def test_http_1_0_response_without_length_is_close_delimited(autojump_clock) -> None:
    async def app(scope, receive, send):
        await apps.start(send, 200)
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        await send({"type": "http.response.body", "body": b"s"})

    data = await exchange(app, b"GET / HTTP/1.0\r\n\r\n")
    head, body = data.split(b"\r\n\r\n", 1)
    assert body == b"parts"
    assert b"transfer-encoding" not in head.lower()
    assert b"connection: close" in head.lower()


async def test_http_1_1_response_without_length_is_chunked(autojump_clock) -> None:
    async def app(scope, receive, send):
        await apps.start(send, 200)
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        await send({"type": "http.response.body", "body": b"s"})

    data = await exchange(app, _get(_HOST + b"Connection: close\r\n"))
    head, body = data.split(b"\r\n\r\n", 1)
    assert b"transfer-encoding: chunked" in head.lower()
    assert body == b"4\r\npart\r\n1\r\ns\r\n0\r\n\r\n"


async def test_body_longer_than_content_length_is_an_app_error(autojump_clock, caplog) -> None:
    async def app(scope, receive, send):
        await apps.start(send, 200, [(b"content-length", b"2")])
        await send({"type": "http.response.body", "body": b"hello"})

    data = await exchange(app, _get())
    assert data.startswith(b"HTTP/1.1 500 ")
    assert "Exception in ASGI application" in caplog.text


async def test_upgrade_request_without_a_websocket_is_plain_http(autojump_clock) -> None:
    app = RecordingApp()
    upgrade = _get(_HOST + b"Upgrade: h2c\r\nConnection: Upgrade\r\n")
    data = await exchange(app, upgrade + _get(_HOST + b"Connection: close\r\n"))
    assert data.startswith(b"HTTP/1.1 200 ")
    # h11 closes after a refused protocol switch; httptools may carry on.
    assert app.paths[0] == "/"


# -- the writer on its own (sans-I/O) -------------------------------------


def _writer_for(request: bytes, defaults: DefaultHeaders = NO_DEFAULT_HEADERS) -> ResponseWriter:
    parser = h11.Connection(h11.SERVER)
    parser.receive_data(request)
    writer = ResponseWriter(defaults)
    head = from_h11(parser.next_event())
    writer.begin(head, accepted_fields(head).close)
    return writer


def test_a_remembered_response_head_is_remade_for_each_request_and_date(monkeypatch) -> None:
    """The same app response to requests that frame it differently, through one server's memory.

    Each head must be what a writer that remembers nothing makes, with the date of the moment.
    """
    shared = DefaultHeaders([(b"server", b"test"), (b"date", None)])
    requests = [
        _get(),
        _get(line=b"HEAD / HTTP/1.1"),
        _get(b"", line=b"GET / HTTP/1.0"),
        _get(_HOST + b"Connection: close\r\n"),
        _get(),
    ]
    responses = [
        (200, [(b"content-type", b"text/plain"), (b"content-length", b"5")], False),
        (200, [(b"content-type", b"text/plain")], False),  # no length: chunked or close-delimited
        (204, [(b"content-type", b"text/plain")], False),
        (200, [(b"content-type", b"text/plain"), (b"content-length", b"5")], True),
        (200, [(b"date", b"app's own"), (b"content-length", b"5")], False),
    ]
    for second, date in enumerate(
        (b"Sat, 21 Nov 2026 10:00:00 GMT", b"Sat, 21 Nov 2026 10:00:01 GMT"), 1795255200
    ):
        clock = types.SimpleNamespace(time=lambda second=second: second + 0.5)
        monkeypatch.setattr("trioasgi.http11.writer.time", clock)
        monkeypatch.setattr("trioasgi.http11.writer.http_date", lambda date=date: date)
        for request in requests:
            for status, headers, close in responses:
                fresh = DefaultHeaders([(b"server", b"test"), (b"date", None)])
                expected_writer = _writer_for(request, fresh)
                expected = expected_writer.send_response(status, headers, close=close)
                for _ in range(2):  # made, then remembered
                    writer = _writer_for(request, shared)
                    assert writer.send_response(status, headers, close=close) == expected
                    assert (writer.framing, writer.remaining, writer.keep_alive) == (
                        expected_writer.framing,
                        expected_writer.remaining,
                        expected_writer.keep_alive,
                    )
                if (b"date", b"app's own") not in headers:
                    assert b"date: " + date in expected
    assert shared.known_heads  # the memory was used


def test_response_headers_the_memory_cannot_keep_are_written_all_the_same() -> None:
    """Lists and bytearrays are valid ASGI header items; they are not remembered."""
    defaults = DefaultHeaders([(b"server", b"test")])
    for _ in range(2):
        writer = _writer_for(_get(), defaults)
        head = writer.send_response(200, [[b"content-length", bytearray(b"5")]])
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"content-length: 5\r\n" in head
    assert not defaults.known_heads


def test_writer_matches_h11_for_a_content_length_response() -> None:
    request = _get()
    reference = h11.Connection(h11.SERVER)
    reference.receive_data(request)
    reference.next_event()
    headers = [(b"Content-Type", b"text/plain"), (b"content-length", b"5")]
    expected = reference.send(h11.Response(status_code=200, headers=headers, reason=b"OK"))
    expected += reference.send(h11.Data(data=b"hello")) + reference.send(h11.EndOfMessage())

    writer = _writer_for(request)
    ours = writer.send_response(200, headers, b"OK")
    ours += writer.send(h11.Data(data=b"hello")) + writer.send(h11.EndOfMessage())
    assert ours == expected
    assert writer.our_state is h11.DONE


def test_writer_head_response_keeps_length_but_sends_no_body() -> None:
    writer = _writer_for(_get(line=b"HEAD / HTTP/1.1"))
    head = writer.send_response(200, [(b"content-length", b"5")], b"OK")
    assert b"content-length: 5\r\n" in head
    assert writer.send(h11.Data(data=b"")) == b""
    assert writer.send(h11.EndOfMessage()) == b""


def test_writer_refuses_sending_out_of_order() -> None:
    writer = _writer_for(_get())
    with pytest.raises(h11.LocalProtocolError):
        writer.send(h11.Data(data=b"x"))
    assert writer.our_state is h11.ERROR


def test_needs_data_is_true_only_when_next_event_would_need_data(http_parser: str) -> None:
    parser = new_parser(trioasgi.Config(), http_parser)
    assert parser.needs_data()
    assert parser.next_event() is h11.NEED_DATA
    parser.receive_data(b"GET / HTTP/1.1\r\n")  # half a head
    assert not parser.needs_data()
    assert parser.next_event() is h11.NEED_DATA  # asked, it still needs more
    parser.receive_data(b"Host: x\r\n\r\nGET /second HTTP/1.1\r\n")
    assert not parser.needs_data()
    accept_next_request(parser)
    assert type(parser.next_event()) is h11.EndOfMessage
    parser.send_response(200, [(b"content-length", b"0")])
    parser.send_body(b"", True)
    parser.start_next_cycle()
    # The pipelined request's first line: h11 holds it unparsed, llhttp has
    # parsed it already; either way "needs data" never hides an event.
    if parser.needs_data():
        assert parser.next_event() is h11.NEED_DATA
    parser.receive_data(b"Host: x\r\n\r\n")
    assert not parser.needs_data()
    assert type(parser.next_event()) is RequestHead

    closed = new_parser(trioasgi.Config(), http_parser)
    closed.receive_data(b"")
    assert not closed.needs_data()
    assert type(closed.next_event()) is h11.ConnectionClosed
