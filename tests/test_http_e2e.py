"""HTTP/1.1 end to end: the real server on a loopback port, real clients."""

from __future__ import annotations

import json
import logging

import httpx
import pytest
import trio

from tests import apps
from tests.conftest import read_until_closed, running_server
from trioasgi.core.socket_io import RECEIVE_SIZE

# Every test here runs once with h11 and once with httptools.
pytestmark = pytest.mark.usefixtures("http_parser")


async def test_scope_is_complete() -> None:
    async with (
        running_server(apps.show_scope, root_path="/mount") as server,
        httpx.AsyncClient() as client,
    ):
        response = await client.get(
            f"{server.url}/caf%C3%A9/a%2Fb?x=1&y=%20",
            headers=[("X-Twice", "1"), ("x-twice", "2"), ("X-Upper", "V")],
        )
    scope = response.json()
    assert scope["type"] == "http"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.5"}
    assert scope["http_version"] == "1.1"
    assert scope["method"] == "GET"
    assert scope["scheme"] == "http"
    assert scope["path"] == "/mount/café/a/b"
    assert scope["raw_path"] == "/mount/caf%C3%A9/a%2Fb"
    assert scope["query_string"] == "x=1&y=%20"
    assert scope["root_path"] == "/mount"
    assert scope["server"] == ["127.0.0.1", server.port]
    assert scope["client"][0] == "127.0.0.1"
    assert isinstance(scope["client"][1], int)
    assert scope["state"] == {}
    headers = scope["headers"]
    assert ["x-twice", "1"] in headers and ["x-twice", "2"] in headers
    assert headers.index(["x-twice", "1"]) < headers.index(["x-twice", "2"])
    assert ["x-upper", "V"] in headers


async def test_scope_types_are_bytes_where_the_spec_says() -> None:
    seen = {}

    async def app(scope, receive, send):
        if scope["type"] == "http":
            seen.update(scope)
            await apps.hello(scope, receive, send)

    async with running_server(app) as server, httpx.AsyncClient() as client:
        await client.get(server.url + "/p?q")
    assert isinstance(seen["raw_path"], bytes)
    assert isinstance(seen["query_string"], bytes)
    assert all(isinstance(n, bytes) and isinstance(v, bytes) for n, v in seen["headers"])
    assert isinstance(seen["client"], tuple)


async def test_keep_alive_and_pipelining_answer_in_order() -> None:
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        if scope["path"] == "/slow":
            await trio.sleep(0.05)  # the second response must still come second
        body = scope["path"].encode()
        await apps.start(send, 200, [(b"content-length", str(len(body)).encode())])
        await send({"type": "http.response.body", "body": body})

    async with running_server(app) as server:
        stream = await server.connect()
        await stream.send_all(
            b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /fast HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        data = await read_until_closed(stream)
    assert data.count(b"HTTP/1.1 200 OK") == 3
    assert data.index(b"/slow") < data.index(b"/fast") < data.index(b"/last")


async def test_chunked_request_and_response_bodies() -> None:
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        body, _ = await apps.read_body(receive)
        await apps.start(send, 200)  # no content-length: the response is chunked
        for piece in (body[:3], body[3:]):
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    async with running_server(app) as server:
        stream = await server.connect()
        await stream.send_all(
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            b"Connection: close\r\n\r\n3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n"
        )
        data = await read_until_closed(stream)
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head.lower()
    assert body == b"3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n"


async def test_large_upload_arrives_in_chunks_with_more_body() -> None:
    seen = []

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        body, messages = await apps.read_body(receive)
        seen.extend(messages)
        await apps.start(send, 200, [(b"content-length", str(len(body)).encode())])
        await send({"type": "http.response.body", "body": body})

    payload = bytes(range(256)) * 4096  # 1 MiB
    async with running_server(app) as server, httpx.AsyncClient() as client:
        response = await client.post(server.url, content=payload)
    assert response.content == payload
    assert len(seen) > 1
    assert all(m["more_body"] for m in seen[:-1])
    assert seen[-1]["more_body"] is False
    assert all(len(m["body"]) <= RECEIVE_SIZE for m in seen)


@pytest.mark.parametrize("status", [204, 304])
async def test_no_body_statuses_send_no_body_and_no_framing(status: int) -> None:
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await apps.start(send, status)
        await send({"type": "http.response.body", "body": b"ignored"})

    async with running_server(app) as server:
        stream = await server.connect()
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = await read_until_closed(stream)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {status} ".encode())
    assert b"transfer-encoding" not in head.lower()
    assert body == b""


async def test_head_sends_headers_but_no_body() -> None:
    async with running_server(apps.hello) as server:
        stream = await server.connect()
        await stream.send_all(
            b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        data = await read_until_closed(stream)
    first, _, rest = data.partition(b"\r\n\r\n")
    assert b"content-length: 5" in first
    assert rest.startswith(b"HTTP/1.1 200 OK")  # no body between the two responses
    assert rest.endswith(b"\r\n\r\nhello")


async def test_http_1_0_closes_after_the_response() -> None:
    async with running_server(apps.hello) as server:
        stream = await server.connect()
        await stream.send_all(b"GET / HTTP/1.0\r\n\r\n")
        with trio.fail_after(5):
            data = await read_until_closed(stream)
    assert data.startswith(b"HTTP/1.1 200 OK")
    assert b"connection: close" in data.lower()
    assert data.endswith(b"hello")


async def test_date_and_server_headers() -> None:
    async with running_server(apps.hello) as server, httpx.AsyncClient() as client:
        response = await client.get(server.url)
    assert response.headers["server"] == "trio-asgi"
    assert response.headers["date"].endswith(" GMT")


async def test_app_headers_replace_the_defaults() -> None:
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await apps.start(send, 200, [(b"server", b"mine"), (b"content-length", b"0")])
        await send({"type": "http.response.body"})

    async with running_server(app) as server, httpx.AsyncClient() as client:
        response = await client.get(server.url)
    assert response.headers.get_list("server") == ["mine"]


async def test_100_continue_only_once_the_app_reads() -> None:
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        if scope["path"] == "/refuse":
            await apps.start(send, 401, [(b"content-length", b"0")])
            await send({"type": "http.response.body"})
            return
        await apps.echo(scope, receive, send)

    async with running_server(app) as server:
        stream = await server.connect()
        await stream.send_all(
            b"POST /refuse HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n"
        )
        refused = await read_until_closed(stream)
        assert refused.startswith(b"HTTP/1.1 401 ")
        assert b"100 Continue" not in refused

        stream = await server.connect()
        await stream.send_all(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
            b"Expect: 100-continue\r\nConnection: close\r\n\r\n"
        )
        interim = await stream.receive_some(1000)
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n")
        await stream.send_all(b"abc")
        final = await read_until_closed(stream)
    assert final.startswith(b"HTTP/1.1 200 OK")
    assert final.endswith(b"abc")


async def test_disconnect_reaches_a_waiting_app_and_send_raises_oserror() -> None:
    results = []
    done = trio.Event()

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        try:
            await apps.read_body(receive)
            results.append(await receive())  # blocks until the client goes away
            await apps.start(send, 200)
            await send({"type": "http.response.body", "body": b"late"})
        except OSError as exc:
            results.append(exc)
        finally:
            done.set()

    async with running_server(app) as server:
        stream = await server.connect()
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await stream.aclose()
        with trio.fail_after(5):
            await done.wait()
    assert results[0] == {"type": "http.disconnect"}
    assert isinstance(results[1], OSError)


async def test_disconnect_while_streaming_a_response() -> None:
    disconnected = trio.Event()

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await apps.read_body(receive)

        async def watch():
            if (await receive())["type"] == "http.disconnect":
                disconnected.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch)
            await apps.start(send, 200)
            with trio.move_on_after(10):
                while not disconnected.is_set():
                    await send({"type": "http.response.body", "body": b"x", "more_body": True})
                    await trio.sleep(0.001)
            nursery.cancel_scope.cancel()

    async with running_server(app) as server:
        stream = await server.connect()
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await stream.receive_some(100)
        await stream.aclose()
        with trio.fail_after(5):
            await disconnected.wait()


async def test_exception_before_response_gives_generic_500_and_server_survives(caplog) -> None:
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        if scope["path"] == "/boom":
            raise ValueError("secret detail")
        await apps.hello(scope, receive, send)

    caplog.set_level(logging.ERROR, logger="trioasgi.error")
    async with running_server(app) as server, httpx.AsyncClient() as client:
        response = await client.get(server.url + "/boom")
        assert response.status_code == 500
        assert b"secret" not in response.content
        assert b"Traceback" not in response.content
        assert (await client.get(server.url)).text == "hello"
    assert "secret detail" in caplog.text  # the traceback is logged instead


async def test_exception_after_start_closes_the_connection_mid_response() -> None:
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await apps.start(send, 200, [(b"content-length", b"10")])
        await send({"type": "http.response.body", "body": b"12345", "more_body": True})
        raise RuntimeError("half way")

    async with running_server(app) as server:
        stream = await server.connect()
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        with trio.fail_after(5):
            data = await read_until_closed(stream)
    assert data.startswith(b"HTTP/1.1 200 OK")
    assert data.endswith(b"\r\n\r\n12345")  # cut short: the client can tell


async def test_returning_without_a_response_gives_500() -> None:
    async def app(scope, receive, send):
        return None

    async with running_server(app) as server, httpx.AsyncClient() as client:
        response = await client.get(server.url)
    assert response.status_code == 500


@pytest.mark.parametrize(
    "messages",
    [
        [{"type": "http.response.body", "body": b"no start"}],
        [
            {"type": "http.response.start", "status": 200, "headers": []},
            {"type": "http.response.start", "status": 200, "headers": []},
        ],
        [{"type": "http.response.start", "status": 200, "headers": [(b"x", b"a\r\nb")]}],
        [{"type": "http.response.start", "status": 99, "headers": []}],
        [{"type": "http.nonsense"}],
    ],
    ids=["body-before-start", "start-twice", "crlf-in-header", "bad-status", "unknown-type"],
)
async def test_out_of_sequence_or_invalid_messages_give_500(messages, caplog) -> None:
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        for message in messages:
            await send(message)

    async with running_server(app) as server, httpx.AsyncClient() as client:
        response = await client.get(server.url)
        assert response.status_code == 500
        assert "\r\n" not in "".join(response.headers.values())
    assert "Exception in ASGI application" in caplog.text


async def test_sending_after_the_response_is_complete_is_an_error(caplog) -> None:
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await apps.hello(scope, receive, send)
        await send({"type": "http.response.body", "body": b"more"})

    async with running_server(app) as server, httpx.AsyncClient() as client:
        response = await client.get(server.url)
        assert response.text == "hello"
    assert "unexpected ASGI message 'http.response.body'" in caplog.text


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Big: " + b"a" * 20000 + b"\r\n\r\n", 431),
        (b"GET / HTTP/9.9\r\nHost: x\r\n\r\n", 505),
    ],
    ids=["garbage", "bad-header", "header-too-large", "http-9.9"],
)
async def test_malformed_requests_get_4xx_and_close(request_bytes: bytes, status: int) -> None:
    # HTTP/1.1's answers: with HTTP/2 on, garbage on a new connection is closed unanswered.
    async with running_server(apps.hello, http2=False) as server:
        stream = await server.connect()
        # a valid request after the bad one must never be answered
        await stream.send_all(request_bytes + b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        with trio.fail_after(5):
            data = await read_until_closed(stream)
        assert data.startswith(f"HTTP/1.1 {status} ".encode())
        assert data.count(b"HTTP/1.1") == 1
        assert b"connection: close" in data.lower()
        # and the server keeps serving
        async with httpx.AsyncClient() as client:
            assert (await client.get(server.url)).status_code == 200


@pytest.mark.parametrize("first_bytes", [b"GARBAGE\r\n\r\n", b"INVALID CONNECTION PREFACE\r\n\r\n"])
async def test_garbage_on_a_new_connection_is_closed_unanswered_with_http2_on(
    first_bytes: bytes, http_parser: str
) -> None:
    """Neither an HTTP/1.x request line nor HTTP/2's preface: closed as HTTP/2 closes a bad preface.

    With HTTP/2 off (the test above) the same bytes get a 400.
    """
    async with running_server(apps.hello) as server:
        stream = await server.connect()
        await stream.send_all(first_bytes)
        with trio.fail_after(10):
            assert await read_until_closed(stream) == b""
        await stream.aclose()


async def test_access_log_line(caplog) -> None:
    caplog.set_level(logging.INFO, logger="trioasgi.access")
    async with running_server(apps.hello) as server, httpx.AsyncClient() as client:
        await client.get(server.url + "/logged?x=1")
    assert '"GET /logged?x=1 HTTP/1.1" 200' in caplog.text


async def test_json_body_round_trip_with_httpx() -> None:
    async with running_server(apps.echo) as server, httpx.AsyncClient() as client:
        response = await client.post(server.url, json={"a": [1, 2, 3]})
    assert json.loads(response.content) == {"a": [1, 2, 3]}


async def test_two_tasks_sending_at_once_cannot_interleave_their_bytes(caplog) -> None:
    # The body is larger than the socket buffers and the client reads only
    # once the second task has tried to send: the first task is still
    # waiting for the socket when the second one calls send().
    size = 8 * 1024 * 1024
    errors = []
    second_tried = trio.Event()

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})

        async def send_body(fill: bytes) -> None:
            try:
                await send({"type": "http.response.body", "body": fill * size, "more_body": True})
            except trio.BusyResourceError as exc:
                errors.append(exc)
                raise
            finally:
                if fill == b"b":
                    second_tried.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send_body, b"a")
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(send_body, b"b")

    caplog.set_level(logging.ERROR, logger="trioasgi.error")
    async with running_server(app) as server:
        stream = await server.connect()
        async with stream:
            await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            await second_tried.wait()
            data = await read_until_closed(stream, limit=4 * size)
    assert len(errors) == 1
    body = data.partition(b"\r\n\r\n")[2]
    # What arrived before the connection was cut is the first task's alone.
    size_line, _, chunk = body.partition(b"\r\n")
    assert int(size_line, 16) == size
    assert chunk and chunk.strip(b"a") == b""
    assert "Exception in ASGI application" in caplog.text
