"""Operations features seen over HTTP: default headers, ASGI 2 apps, access log, logging set-up."""

from __future__ import annotations

import io
import json
import logging
import re
import sys

import httpx
import pytest
import trio

import trioasgi
from tests import apps
from tests.conftest import running_server
from trioasgi import Config, ConfigError
from trioasgi.asgi import cycle
from trioasgi.asgi.interface import ASGI2Adapter, adapt_interface, looks_like_asgi3
from trioasgi.core.logs import access_logger, configure_logging

# -- default headers --------------------------------------------------------


async def test_extra_default_headers_are_added_unless_the_app_sets_them() -> None:
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await apps.start(send, 200, [(b"x-mine", b"app"), (b"content-length", b"0")])
        await send({"type": "http.response.body"})

    headers = [("X-Frame-Options", "DENY"), ("X-Mine", "server"), ("Server", "edge")]
    async with running_server(app, headers=headers) as server, httpx.AsyncClient() as client:
        response = await client.get(server.url)
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers.get_list("x-mine") == ["app"]
    assert response.headers.get_list("server") == ["edge"]  # replaces ours


async def test_server_and_date_headers_can_be_turned_off() -> None:
    async with running_server(apps.hello) as server, httpx.AsyncClient() as client:
        on = await client.get(server.url)
    async with (
        running_server(apps.hello, server_header=False, date_header=False) as server,
        httpx.AsyncClient() as client,
    ):
        off = await client.get(server.url)
    assert on.headers["server"] == "trio-asgi" and "date" in on.headers
    assert "server" not in off.headers and "date" not in off.headers


# -- ASGI 2 -----------------------------------------------------------------


class ClassicApp:
    """ASGI 2: constructed with the scope, then called with the channels."""

    def __init__(self, scope):
        self.scope = scope

    async def __call__(self, receive, send):
        if self.scope["type"] != "http":
            return
        await apps.start(send, 200, [(b"content-length", b"4")])
        await send({"type": "http.response.body", "body": b"asgi"})


def classic_function(scope):
    async def instance(receive, send):
        await ClassicApp(scope)(receive, send)

    return instance


class AwaitableApp:
    """ASGI 3 as a class: instances are awaitable."""

    def __init__(self, scope, receive, send):
        self.args = (scope, receive, send)

    def __await__(self):
        return apps.hello(*self.args).__await__()


class CallableObject:
    async def __call__(self, scope, receive, send):
        await apps.hello(scope, receive, send)


def test_interface_detection() -> None:
    assert looks_like_asgi3(apps.hello)
    assert looks_like_asgi3(AwaitableApp)
    assert looks_like_asgi3(CallableObject())
    assert not looks_like_asgi3(ClassicApp)
    assert not looks_like_asgi3(classic_function)
    assert isinstance(adapt_interface(ClassicApp, "auto"), ASGI2Adapter)
    assert adapt_interface(apps.hello, "auto") is apps.hello
    assert adapt_interface(CallableObject, "asgi3") is CallableObject
    assert isinstance(adapt_interface(classic_function, "asgi2"), ASGI2Adapter)


@pytest.mark.parametrize("app", [ClassicApp, classic_function])
async def test_asgi2_apps_are_served(app) -> None:
    async with running_server(app) as server, httpx.AsyncClient() as client:
        response = await client.get(server.url)
    assert response.text == "asgi"


async def test_asgi3_class_apps_are_served() -> None:
    async with running_server(AwaitableApp) as server, httpx.AsyncClient() as client:
        response = await client.get(server.url)
    assert response.text == "hello"


# -- access log -------------------------------------------------------------


async def test_access_log_format_fields(caplog) -> None:
    caplog.set_level(logging.INFO, logger="trioasgi.access")
    fmt = (
        "{client_addr} {method} {path} q={query} {http_version} {status} {bytes}B "
        "{duration:.3f}s ua={user_agent} ref={referer} host={host}"
    )
    async with (
        running_server(apps.echo, access_log_format=fmt) as server,
        httpx.AsyncClient() as client,
    ):
        await client.post(
            server.url + "/a%20b?x=1", content=b"12345", headers={"user-agent": "t/1"}
        )
    [line] = [r.getMessage() for r in caplog.records if r.name == "trioasgi.access"]
    prefix, _, rest = line.partition("s ua=")
    assert prefix.startswith("127.0.0.1 POST /a b q=x=1 1.1 200 5B ")
    assert 0 <= float(prefix.rsplit(" ", 1)[1]) < 5
    assert rest == f"t/1 ref=- host=127.0.0.1:{server.port}"


async def test_default_access_log_line(caplog) -> None:
    caplog.set_level(logging.INFO, logger="trioasgi.access")
    async with running_server(apps.hello) as server, httpx.AsyncClient() as client:
        await client.get(server.url + "/p?q=1")
    [line] = [r.getMessage() for r in caplog.records if r.name == "trioasgi.access"]
    assert line.startswith("127.0.0.1:")
    assert re.search(r' - "GET /p\?q=1 HTTP/1\.1" 200 OK 5B \d+\.\dms$', line), line


async def test_no_access_log_skips_the_measurements(caplog) -> None:
    caplog.set_level(logging.INFO, logger="trioasgi.access")
    cycles = []

    original = cycle.RequestCycle.__init__

    def spy(self, *args):
        original(self, *args)
        cycles.append(self)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cycle.RequestCycle, "__init__", spy)
        async with (
            running_server(apps.hello, access_log=False) as server,
            httpx.AsyncClient() as client,
        ):
            await client.get(server.url)
    assert cycles and cycles[0].started == 0.0 and cycles[0].body_bytes == 0


# -- logging set-up ---------------------------------------------------------


def test_log_config_json_is_applied(tmp_path, restore_logging) -> None:
    log_file = tmp_path / "server.log"
    config_path = tmp_path / "logging.json"
    config_path.write_text(
        json.dumps(
            {
                "version": 1,
                "formatters": {"plain": {"format": "custom %(name)s %(message)s"}},
                "handlers": {
                    "file": {
                        "class": "logging.FileHandler",
                        "filename": str(log_file),
                        "formatter": "plain",
                    }
                },
                "loggers": {"trioasgi.error": {"handlers": ["file"], "level": "INFO"}},
            }
        )
    )
    configure_logging(Config(log_config=str(config_path)), stream=io.StringIO())
    logging.getLogger("trioasgi.error").info("hello from the test")
    for handler in logging.getLogger("trioasgi.error").handlers:
        handler.flush()
    assert "custom trioasgi.error hello from the test" in log_file.read_text()


def test_log_config_yaml_is_applied(tmp_path, restore_logging) -> None:
    pytest.importorskip("yaml")
    config_path = tmp_path / "logging.yaml"
    config_path.write_text("version: 1\nloggers:\n  trioasgi.error:\n    level: ERROR\n")
    configure_logging(Config(log_config=str(config_path)), stream=io.StringIO())
    assert logging.getLogger("trioasgi.error").level == logging.ERROR


def test_log_config_errors_are_sentences(tmp_path, monkeypatch, restore_logging) -> None:
    yaml_path = tmp_path / "logging.yaml"
    yaml_path.write_text("version: 1\n")
    monkeypatch.setitem(sys.modules, "yaml", None)
    with pytest.raises(ConfigError, match="needs PyYAML"):
        configure_logging(Config(log_config=str(yaml_path)))
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(ConfigError, match="not valid JSON"):
        configure_logging(Config(log_config=str(bad)))
    wrong = tmp_path / "wrong.json"
    wrong.write_text('{"version": 1, "handlers": {"h": {"class": "no.such.Handler"}}}')
    with pytest.raises(ConfigError, match="cannot be used"):
        configure_logging(Config(log_config=str(wrong)))


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("stream_type", "coloured"), [(FakeTTY, True), (io.StringIO, False)])
def test_colours_only_on_a_terminal(stream_type, coloured, monkeypatch, restore_logging) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    stream = stream_type()
    configure_logging(Config(), stream=stream)
    logging.getLogger("trioasgi.error").warning("careful")
    access_logger.info("line", extra={"status_code": 404})
    output = stream.getvalue()
    assert ("\033[" in output) is coloured
    assert "careful" in output and "line" in output


# -- request limit, single process -----------------------------------------


async def test_request_limit_drains_and_returns_from_serve() -> None:
    config = Config(port=0, limit_max_requests=2)
    async with trio.open_nursery() as nursery:
        [(host, port)] = await nursery.start(trioasgi.serve, apps.hello, config)
        async with httpx.AsyncClient() as client:
            first = await client.get(f"http://{host}:{port}/")
            second = await client.get(f"http://{host}:{port}/")
        # serve() returns by itself: the nursery exits without being cancelled.
    assert first.status_code == second.status_code == 200
    assert "connection" not in first.headers
    assert second.headers["connection"] == "close"


async def test_a_connection_accepted_during_shutdown_gets_its_request_answered() -> None:
    """The race a shared listening socket makes common: accept, then shutdown, then read."""
    import trio.testing

    from tests.conftest import read_until_closed
    from trioasgi.http11.connection import HTTPConnection
    from trioasgi.serving.context import ServerContext

    client, server_stream = trio.testing.memory_stream_pair()
    connection = HTTPConnection(
        server_stream, ServerContext(app=apps.hello, config=Config()), client=None, server=None
    )
    await client.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    # What Server._handle_connection does for a connection accepted late.
    await connection.receive_into_h11()
    connection.begin_shutdown()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(connection.run)
        data = await read_until_closed(client)
    assert data.startswith(b"HTTP/1.1 200 ")
    assert b"connection: close" in data.lower()
