"""Request limits: header size and fields, body size, concurrency; their flags."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from tests import apps
from tests.conftest import MemoryConnection, exchange, read_until_closed, running_server
from trioasgi import Config
from trioasgi.cli.flags import build_parser, config_from_args
from trioasgi.cli.main import main


class BodyApp:
    """Reads the request body message by message, then answers with what it got."""

    def __init__(self, *, start_first: bool = False) -> None:
        self.called = False
        self.messages: list[dict] = []
        self.start_first = start_first
        self.send_error: Exception | None = None

    async def __call__(self, scope, receive, send) -> None:
        self.called = True
        if self.start_first:
            await apps.start(send, 200)
            await send({"type": "http.response.body", "body": b"started", "more_body": True})
        body = b""
        while True:
            message = await receive()
            self.messages.append(message)
            if message["type"] != "http.request":
                break
            body += message["body"]
            if not message["more_body"]:
                break
        try:
            if not self.start_first:
                await apps.start(send, 200, [(b"content-length", str(len(body)).encode())])
            await send({"type": "http.response.body", "body": body})
        except OSError as exc:
            self.send_error = exc


def _post_chunked(chunks: list[bytes]) -> bytes:
    body = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
    return b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + body


async def test_declared_body_over_the_limit_gets_413_before_the_app(autojump_clock) -> None:
    app = BodyApp()
    request = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world"
    data = await exchange(app, request, limit_request_body=10)
    assert data.startswith(b"HTTP/1.1 413 ")
    assert not app.called


async def test_declared_body_at_the_limit_is_served(autojump_clock) -> None:
    app = BodyApp()
    request = (
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nConnection: close\r\n\r\nhelloworld"
    )
    data = await exchange(app, request, limit_request_body=10)
    assert data.startswith(b"HTTP/1.1 200 ")
    assert data.endswith(b"helloworld")


async def test_expect_100_continue_over_the_limit_gets_413_without_continue(
    autojump_clock,
) -> None:
    app = BodyApp()
    request = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\nExpect: 100-continue\r\n\r\n"
    data = await exchange(app, request, limit_request_body=999)
    assert data.startswith(b"HTTP/1.1 413 ")
    assert b"100 Continue" not in data
    assert not app.called


async def test_chunked_body_growing_past_the_limit_gets_413(autojump_clock) -> None:
    app = BodyApp()
    data = await exchange(app, _post_chunked([b"a" * 6, b"b" * 6]), limit_request_body=10)
    assert data.startswith(b"HTTP/1.1 413 ")
    assert data.count(b"HTTP/1.1 ") == 1
    assert app.messages[-1] == {"type": "http.disconnect"}
    assert sum(len(m.get("body", b"")) for m in app.messages) <= 10
    assert isinstance(app.send_error, OSError)


async def test_chunked_body_past_the_limit_after_the_response_began_closes(
    autojump_clock,
) -> None:
    app = BodyApp(start_first=True)
    data = await exchange(app, _post_chunked([b"a" * 6, b"b" * 6]), limit_request_body=10)
    assert data.startswith(b"HTTP/1.1 200 ")
    assert b"started" in data
    assert not data.endswith(b"0\r\n\r\n")  # the chunked response is cut short, not completed
    assert app.messages[-1] == {"type": "http.disconnect"}
    assert isinstance(app.send_error, OSError)


async def test_chunked_body_within_the_limit_is_served(autojump_clock) -> None:
    app = BodyApp()
    data = await exchange(app, _post_chunked([b"a" * 5, b"b" * 5]), limit_request_body=10)
    assert data.startswith(b"HTTP/1.1 200 ")
    assert b"aaaaabbbbb" in data


@pytest.mark.parametrize(("fields", "status"), [(3, 200), (4, 431)])
async def test_request_field_limit(fields: int, status: int, autojump_clock) -> None:
    headers = b"Host: x\r\nConnection: close\r\n" + b"".join(
        b"X-%d: v\r\n" % i for i in range(fields - 2)
    )
    data = await exchange(
        apps.hello, b"GET / HTTP/1.1\r\n" + headers + b"\r\n", limit_request_fields=3
    )
    assert data.startswith(b"HTTP/1.1 %d " % status)


@pytest.mark.parametrize("piece", [1024, 100_000], ids=["dribbled", "whole"])
async def test_header_block_over_the_size_limit_gets_431(piece: int, autojump_clock) -> None:
    request = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n"
    async with trio.open_nursery() as nursery:
        conn = MemoryConnection(apps.hello, nursery, h11_max_incomplete_event_size=4096)
        for start in range(0, len(request), piece):
            await conn.send(request[start : start + piece])
            await trio.testing.wait_all_tasks_blocked()
        data = await conn.read_all()
    assert data.startswith(b"HTTP/1.1 431 ")


@pytest.mark.parametrize(("open_connections", "status"), [(2, 200), (3, 503)])
async def test_concurrency_limit_is_checked_per_request(
    open_connections: int, status: int, autojump_clock
) -> None:
    called = []

    async def app(scope, receive, send):
        called.append(scope["path"])
        await apps.hello(scope, receive, send)

    async with trio.open_nursery() as nursery:
        conn = MemoryConnection(app, nursery, limit_concurrency=2)
        conn.connection.ctx.open_connections = open_connections
        await conn.send(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = await conn.read_all()
    assert data.startswith(b"HTTP/1.1 %d " % status)
    assert called == ([] if status == 503 else ["/"])


async def test_concurrency_limit_end_to_end() -> None:
    called = []

    async def app(scope, receive, send):
        if scope["type"] == "http":
            called.append(scope["path"])
            await apps.hello(scope, receive, send)

    async with running_server(app, limit_concurrency=1) as server:
        first = await server.connect()
        await first.send_all(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await first.receive_some(4096)).startswith(b"HTTP/1.1 200 ")
        async with await server.connect() as second:
            await second.send_all(b"GET /second HTTP/1.1\r\nHost: x\r\n\r\n")
            with trio.fail_after(5):
                refused = await read_until_closed(second)
        await first.aclose()
    assert refused.startswith(b"HTTP/1.1 503 ")
    assert b"connection: close" in refused
    assert called == ["/first"]


def test_limit_flags_map_to_config() -> None:
    parser = build_parser()
    args = parser.parse_args(
        [
            "m:app",
            "--limit-request-fields=5",
            "--limit-request-body=1000",
            "--limit-concurrency=3",
        ]
    )
    config = config_from_args(args)
    assert (config.limit_request_fields, config.limit_request_body) == (5, 1000)
    assert config.limit_concurrency == 3
    defaults = config_from_args(parser.parse_args(["m:app", "--limit-request-body=none"]))
    assert defaults.limit_request_body is None
    assert defaults.limit_concurrency is None
    assert defaults.limit_request_fields == 100


def test_limit_flags_are_in_help(capsys) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    out = capsys.readouterr().out
    for flag in (
        "--limit-request-fields",
        "--limit-request-body",
        "--limit-concurrency",
        "--timeout-request-body",
    ):
        assert flag in out
    assert "limits:" in out


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("--limit-request-fields=0", "request field limit must be at least 1"),
        ("--limit-request-body=-1", "request body limit must be 0 or more bytes"),
        ("--limit-concurrency=0", "concurrency limit must be at least 1"),
    ],
)
def test_bad_limits_are_one_sentence_errors(flag: str, message: str, capsys) -> None:
    with pytest.raises(SystemExit) as exc_info:
        main(["m:app", flag])
    assert exc_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
    with pytest.raises(ValueError):
        Config(**{flag[2:].split("=")[0].replace("-", "_"): int(flag.split("=")[1])})
