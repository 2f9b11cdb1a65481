"""Every timeout, on a virtual clock: each fires exactly when it should, and not before."""

from __future__ import annotations

import logging

import pytest
import trio

from tests import apps
from tests.conftest import MemoryConnection
from trioasgi import Config
from trioasgi.asgi.lifespan import Lifespan, LifespanFailure
from trioasgi.http11.connection import FIRST_REQUEST_GRACE

GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


async def test_the_clock_fixture_is_the_runs_clock(autojump_clock) -> None:
    assert trio.lowlevel.current_clock() is autojump_clock
    before = trio.current_time()
    await trio.sleep(3600)  # instant on the virtual clock
    assert trio.current_time() - before == pytest.approx(3600)


async def _serve_and_read(conn: MemoryConnection) -> tuple[bytes, float]:
    """Everything the server sends until it closes its side, and the virtual time it took."""
    start = trio.current_time()
    with trio.fail_after(1000):
        data = await conn.read_all()
        elapsed = trio.current_time() - start
        await conn.client.aclose()  # ends the server's linger at once
        await conn.finished.wait()
    return data, elapsed


async def test_silent_new_connection_gets_408_after_the_header_timeout(autojump_clock) -> None:
    async with trio.open_nursery() as nursery:
        conn = MemoryConnection(apps.hello, nursery, timeout_request_header=7)
        data, elapsed = await _serve_and_read(conn)
    assert data.startswith(b"HTTP/1.1 408 ")
    assert elapsed == pytest.approx(7)


async def test_slowloris_gets_408_counted_from_the_accept(autojump_clock) -> None:
    # On a new connection the header timeout runs from the accept: bytes
    # trickling in (or a late first byte) do not extend it.
    async with trio.open_nursery() as nursery:
        conn = MemoryConnection(apps.hello, nursery)  # header timeout 10 s

        async def dribble() -> None:
            await trio.sleep(3)
            await conn.send(b"GET / HTTP/1.1\r\n")
            for _ in range(60):  # one header byte a second, never ending the head
                await trio.sleep(1)
                if conn.finished.is_set():
                    return
                await conn.send(b"X")

        nursery.start_soon(dribble)
        data, elapsed = await _serve_and_read(conn)
    assert data.startswith(b"HTTP/1.1 408 ")
    assert elapsed == pytest.approx(10)


async def test_idle_keep_alive_connection_closes_quietly(autojump_clock) -> None:
    async with trio.open_nursery() as nursery:
        conn = MemoryConnection(apps.hello, nursery, timeout_keep_alive=4)
        await conn.send(GET)
        first = await conn.read_response()
        data, elapsed = await _serve_and_read(conn)
    assert first.startswith(b"HTTP/1.1 200 ")
    assert data == b""  # no 408 that could cross a request the client just sent
    assert elapsed == pytest.approx(4)


async def test_keep_alive_holds_until_its_deadline(autojump_clock) -> None:
    async with trio.open_nursery() as nursery:
        conn = MemoryConnection(apps.hello, nursery, timeout_keep_alive=4)
        await conn.send(GET)
        await conn.read_response()
        await trio.sleep(3.9)
        await conn.send(GET)
        second = await conn.read_response()
        nursery.cancel_scope.cancel()
    assert second.startswith(b"HTTP/1.1 200 ")


async def test_header_timeout_of_a_second_request_starts_at_its_first_byte(autojump_clock) -> None:
    async with trio.open_nursery() as nursery:
        conn = MemoryConnection(apps.hello, nursery, timeout_keep_alive=5, timeout_request_header=2)
        await conn.send(GET)
        await conn.read_response()
        await trio.sleep(4)
        await conn.send(b"GET / HTTP/1.1\r\nHo")
        data, elapsed = await _serve_and_read(conn)
    assert data.startswith(b"HTTP/1.1 408 ")
    assert elapsed == pytest.approx(2)


async def test_shutdown_gives_a_silent_new_connection_a_short_grace(autojump_clock) -> None:
    async with trio.open_nursery() as nursery:
        conn = MemoryConnection(apps.hello, nursery, timeout_request_header=60)
        await trio.testing.wait_all_tasks_blocked()
        conn.connection.begin_shutdown()
        data, elapsed = await _serve_and_read(conn)
    assert data == b""  # closed quietly: no 408 for a client that never asked
    assert elapsed == FIRST_REQUEST_GRACE


async def test_shutdown_still_answers_a_new_connections_first_request(autojump_clock) -> None:
    """Accepted just before the shutdown, its request arriving just after: it is answered."""
    async with trio.open_nursery() as nursery:
        conn = MemoryConnection(apps.hello, nursery)
        await trio.testing.wait_all_tasks_blocked()
        conn.connection.begin_shutdown()
        await trio.sleep(FIRST_REQUEST_GRACE / 2)
        await conn.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        data, _ = await _serve_and_read(conn)
    assert data.startswith(b"HTTP/1.1 200 ")
    assert b"connection: close" in data


async def test_shutdown_closes_an_idle_keep_alive_connection_at_once(autojump_clock) -> None:
    async with trio.open_nursery() as nursery:
        conn = MemoryConnection(apps.hello, nursery, timeout_keep_alive=60)
        await conn.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await conn.read_response()).endswith(b"hello")
        await trio.testing.wait_all_tasks_blocked()
        conn.connection.begin_shutdown()
        data, elapsed = await _serve_and_read(conn)
    assert data == b""
    assert elapsed == 0


async def _never_answers(scope, receive, send) -> None:
    await receive()
    await trio.sleep_forever()


async def test_lifespan_startup_timeout_is_a_clear_failure(autojump_clock) -> None:
    lifespan = Lifespan(_never_answers, Config(timeout_lifespan=12))
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        with pytest.raises(LifespanFailure, match="startup did not complete within 12 seconds"):
            await lifespan.startup(nursery)
    assert trio.current_time() - start == pytest.approx(12)


async def test_lifespan_shutdown_timeout_is_logged(autojump_clock, caplog) -> None:
    caplog.set_level(logging.ERROR, logger="trioasgi")

    async def app(scope, receive, send):
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await trio.sleep_forever()

    lifespan = Lifespan(app, Config(timeout_lifespan=8))
    async with trio.open_nursery() as nursery:
        await lifespan.startup(nursery)
        start = trio.current_time()
        await lifespan.shutdown()
        elapsed = trio.current_time() - start
    assert elapsed == pytest.approx(8)
    assert "shutdown did not complete within 8 seconds" in caplog.text


class _BodyReader:
    def __init__(self) -> None:
        self.messages: list[dict] = []

    async def __call__(self, scope, receive, send) -> None:
        while True:
            message = await receive()
            self.messages.append(message)
            if message["type"] != "http.request" or not message["more_body"]:
                break
        if message["type"] == "http.request":
            await apps.start(send, 200, [(b"content-length", b"2")])
            await send({"type": "http.response.body", "body": b"ok"})


async def test_stalled_request_body_gets_408(autojump_clock) -> None:
    app = _BodyReader()
    async with trio.open_nursery() as nursery:
        conn = MemoryConnection(app, nursery, timeout_request_body=20)
        await conn.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhello")
        data, elapsed = await _serve_and_read(conn)
    assert data.startswith(b"HTTP/1.1 408 ")
    assert elapsed == pytest.approx(20)
    assert app.messages[-1] == {"type": "http.disconnect"}


async def test_slow_but_steady_request_body_is_not_cut(autojump_clock) -> None:
    app = _BodyReader()
    async with trio.open_nursery() as nursery:
        conn = MemoryConnection(app, nursery, timeout_request_body=20)
        await conn.send(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(5):  # 95 s in all, never 20 s without a byte
            await trio.sleep(19)
            await conn.send(b"1\r\nx\r\n")
        await conn.send(b"0\r\n\r\n")
        response = await conn.read_response()
        nursery.cancel_scope.cancel()
    assert response.startswith(b"HTTP/1.1 200 ")
    assert b"".join(m.get("body", b"") for m in app.messages) == b"xxxxx"


def test_timeout_flags_map_to_config() -> None:
    from trioasgi.cli.flags import build_parser, config_from_args

    parser = build_parser()
    config = config_from_args(
        parser.parse_args(
            [
                "m:app",
                "--timeout-request-header=3",
                "--timeout-keep-alive=2",
                "--timeout-request-body=none",
                "--timeout-lifespan=9",
            ]
        )
    )
    assert config.timeout_request_header == 3
    assert config.timeout_keep_alive == 2
    assert config.timeout_request_body is None
    assert config.timeout_lifespan == 9
    assert config_from_args(parser.parse_args(["m:app"])).timeout_request_body == 60
    with pytest.raises(ValueError, match="request body timeout"):
        Config(timeout_request_body=0)


async def test_tls_handshake_timeout_on_the_virtual_clock(autojump_clock, tmp_path) -> None:
    trustme = pytest.importorskip("trustme")
    from trioasgi.serving.server import Server

    ca = trustme.CA()
    cert = ca.issue_cert("localhost")
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(certfile)
    cert.private_key_pem.write_to_path(keyfile)
    server = Server(
        apps.hello,
        Config(ssl_certfile=str(certfile), ssl_keyfile=str(keyfile), timeout_tls_handshake=6),
    )
    client, server_side = trio.testing.memory_stream_pair()
    start = trio.current_time()
    # The client says nothing: the handshake gives up at exactly its deadline.
    assert await server._tls_handshake(server_side, None) is None
    assert trio.current_time() - start == pytest.approx(6)
    await client.aclose()


async def _sleeps_then_answers(scope, receive, send) -> None:
    await trio.sleep(5)  # a cancellation left over from the wait would end the app here
    await apps.hello(scope, receive, send)


async def test_a_request_arriving_as_the_wait_is_cancelled_is_still_served(
    autojump_clock,
) -> None:
    """The wait's scope is cancelled after the request woke the server: the app must not be.

    The connection keeps one timeout scope for all its waits; a request read
    from a scope cancelled in the same instant is served in a fresh scope.
    """
    async with trio.open_nursery() as nursery:
        conn = MemoryConnection(_sleeps_then_answers, nursery, timeout_keep_alive=60)
        await conn.send(GET)
        assert (await conn.read_response()).endswith(b"hello")
        await trio.testing.wait_all_tasks_blocked()
        await conn.send(GET)  # wakes the idle server; it has not run yet
        conn.connection.begin_shutdown()  # cancels the idle wait, in the same instant
        data, elapsed = await _serve_and_read(conn)
    assert data.startswith(b"HTTP/1.1 200 ")
    assert b"connection: close" in data
    assert data.endswith(b"hello")
    assert elapsed == pytest.approx(5)
