"""One access line per response: whole, cut short, or made by the server itself."""

from __future__ import annotations

import logging
import re
from http import HTTPStatus

import pytest
import trio
import trio.testing

import trioasgi
from tests import apps
from tests.conftest import MemoryConnection, exchange, running_server
from trioasgi.core.errors import ClientDisconnected

pytestmark = pytest.mark.usefixtures("http_parser")

FORMAT = "{status} {reason} {bytes}{cut_short} {method} {target}"


def access_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "trioasgi.access"]


@pytest.fixture(autouse=True)
def _capture_access(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="trioasgi.access")


async def test_default_line_has_reason_bytes_and_duration(caplog) -> None:
    await exchange(apps.hello, b"GET /p?q=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    [line] = access_lines(caplog)
    assert re.fullmatch(r'127\.0\.0\.1:50000 - "GET /p\?q=1 HTTP/1\.1" 200 OK 5B \d+\.\dms', line)


async def test_client_that_leaves_in_the_middle_of_a_stream(caplog) -> None:
    """What every server-sent-events stream ends with when its browser tab closes."""
    first_chunk_sent = trio.Event()

    async def stream(scope, receive, send):
        await apps.start(send, 200, [(b"content-type", b"text/event-stream")])
        await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})
        first_chunk_sent.set()
        for _ in range(10_000):  # until the write fails; bounded
            await send({"type": "http.response.body", "body": b"data: x\n\n", "more_body": True})
            await trio.sleep(0)

    async with running_server(stream, access_log_format=FORMAT) as server:
        client = await server.connect()
        await client.send_all(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        await first_chunk_sent.wait()
        await trio.aclose_forcefully(client)
    [line] = access_lines(caplog)
    status, reason, sent, rest = line.split(" ", 3)
    assert (status, reason) == ("200", "OK")
    assert int(sent) >= len(b"data: 1\n\n")
    assert rest == "(cut short: client left) GET /stream"


async def test_client_that_leaves_before_the_response_gets_499(caplog, autojump_clock) -> None:
    async def slow(scope, receive, send):
        assert (await receive())["type"] == "http.request"
        assert (await receive())["type"] == "http.disconnect"
        with pytest.raises(ClientDisconnected):
            await apps.start(send)

    async with trio.open_nursery() as nursery:
        conn = MemoryConnection(slow, nursery, access_log_format=FORMAT)
        await conn.send(b"GET /gone HTTP/1.1\r\nHost: x\r\n\r\n")
        await trio.testing.wait_all_tasks_blocked()
        await conn.client.aclose()
    assert access_lines(caplog) == [
        "499 Client Closed Request 0 (cut short: client left) GET /gone"
    ]


async def test_app_that_raises_after_the_first_chunk(caplog, autojump_clock) -> None:
    async def broken(scope, receive, send):
        await apps.start(send)
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        raise RuntimeError("boom")

    await exchange(broken, b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n", access_log_format=FORMAT)
    assert access_lines(caplog) == ["200 OK 5 (cut short: application error) GET /b"]


async def test_app_that_raises_before_starting_gets_one_500_line(caplog, autojump_clock) -> None:
    async def broken(scope, receive, send):
        raise RuntimeError("boom")

    await exchange(broken, b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n", access_log_format=FORMAT)
    assert access_lines(caplog) == ["500 Internal Server Error 26 GET /b"]


@pytest.mark.parametrize(
    ("request_bytes", "settings", "line"),
    [
        (b"GET / HTTP/1.1\r\nHost x\r\n\r\n", {}, "400 {phrase} {size} - -"),
        (b"GET / HTTP/1.1\r\nHost: x\r\n", {}, "408 {phrase} {size} - -"),
        (
            b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n",
            {"limit_request_body": 10},
            "413 {phrase} {size} POST /up",
        ),
        (
            b"GET /f HTTP/1.1\r\nHost: x\r\n" + b"X: y\r\n" * 5 + b"\r\n",
            {"limit_request_fields": 3},
            "431 {phrase} {size} GET /f",
        ),
    ],
    ids=["400", "408", "413", "431"],
)
async def test_responses_the_server_makes(
    caplog, autojump_clock, request_bytes: bytes, settings: dict, line: str
) -> None:
    status = HTTPStatus(int(line[:3]))
    expected = line.format(phrase=status.phrase, size=len(f"{status.value} {status.phrase}\n"))
    data = await exchange(apps.hello, request_bytes, access_log_format=FORMAT, **settings)
    assert data.startswith(b"HTTP/1.1 %d " % status)
    [logged] = access_lines(caplog)
    # httptools refuses a head with too many fields before it has a request line.
    assert logged in (expected, expected.replace("GET /f", "- -"))


async def test_503_over_the_concurrency_limit(caplog, autojump_clock) -> None:
    async with trio.open_nursery() as nursery:
        conn = MemoryConnection(apps.hello, nursery, limit_concurrency=1, access_log_format=FORMAT)
        conn.connection.ctx.open_connections = 2
        await conn.send(b"GET /busy HTTP/1.1\r\nHost: x\r\n\r\n")
        await conn.read_to_the_end(within=100)
    assert access_lines(caplog) == ["503 Service Unavailable 24 GET /busy"]


async def test_no_line_and_no_measurement_without_the_access_log(caplog, autojump_clock) -> None:
    await exchange(apps.hello, b"GET / HTTP/1.1\r\nHost x\r\n\r\n", access_log=False)
    await exchange(apps.hello, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert len(access_lines(caplog)) == 1


def test_a_format_that_cannot_format_a_line_is_refused_at_startup() -> None:
    with pytest.raises(trioasgi.ConfigError, match=r"cannot format a line: Unknown format code"):
        trioasgi.Config(access_log_format="{client} {status:>5s}")
    trioasgi.Config(access_log_format="{client} {status:>5d} {reason:>20}{cut_short}")


def test_the_command_line_refuses_such_a_format_in_one_sentence(capsys) -> None:
    from trioasgi.cli.main import main

    with pytest.raises(SystemExit) as exited:
        main(["tests.apps:hello", "--access-log-format", "{client} {status:>5s}"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "cannot format a line: Unknown format code 's'" in err


async def test_a_line_that_fails_to_format_is_not_the_apps_error(
    caplog, autojump_clock, monkeypatch
) -> None:
    caplog.set_level(logging.ERROR, logger="trioasgi.error")
    from trioasgi.core import access_log

    # A field that formats the startup sample but fails on a real response.
    sample = access_log._SAMPLE
    monkeypatch.setitem(access_log.FIELDS, "status", lambda c: 200 if c is sample else 1 / 0)
    data = await exchange(
        apps.hello, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", access_log=True
    )
    assert data.startswith(b"HTTP/1.1 200 ")
    assert "Exception in ASGI application" not in caplog.text
    assert "Could not format the access log line" in caplog.text


async def test_http2_responses_the_server_makes_get_a_line_too(caplog) -> None:
    """A 413 for a declared length over the limit, on an HTTP/2 stream (h2c prior knowledge)."""
    h2_connection = pytest.importorskip("h2.connection")
    h2_config = pytest.importorskip("h2.config")
    h2_events = pytest.importorskip("h2.events")

    client = h2_connection.H2Connection(h2_config.H2Configuration(client_side=True))
    client.initiate_connection()
    headers = [
        (":method", "POST"),
        (":path", "/up"),
        (":scheme", "http"),
        (":authority", "x"),
        ("content-length", "100"),
    ]
    client.send_headers(1, headers)
    async with running_server(apps.echo, limit_request_body=10, access_log_format=FORMAT) as s:
        stream = await s.connect()
        await stream.send_all(client.data_to_send())
        ended = False
        with trio.fail_after(10):
            while not ended:
                data = await stream.receive_some(65536)
                assert data, "the server closed before answering"
                for event in client.receive_data(data):
                    ended = ended or isinstance(event, h2_events.StreamEnded)
                await stream.send_all(client.data_to_send())
    status = HTTPStatus(413)
    size = len(f"{status.value} {status.phrase}\n")
    assert access_lines(caplog) == [f"413 {status.phrase} {size} POST /up"]
