"""WebSocket end to end: the real server on a loopback port, trio-websocket as the client."""

from __future__ import annotations

import pytest
import trio
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    open_websocket_url,
)

from tests.conftest import read_until_closed, running_server
from tests.ws_apps import Recorder, echo_app

KEY_HEADERS = (
    b"Host: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
)


def ws_url(server, path: str = "/ws") -> str:
    return f"ws://{server.host}:{server.port}{path}"


async def test_echo_text_and_binary() -> None:
    recorder = Recorder()
    async with (
        running_server(echo_app(recorder)) as server,
        open_websocket_url(ws_url(server)) as ws,
    ):
        await ws.send_message("héllo")
        assert await ws.get_message() == "héllo"
        await ws.send_message(b"\x00\xffbin")
        assert await ws.get_message() == b"\x00\xffbin"
    assert recorder.received[0] == {"type": "websocket.receive", "text": "héllo"}
    assert recorder.received[1] == {"type": "websocket.receive", "bytes": b"\x00\xffbin"}


async def test_one_mebibyte_message_round_trip() -> None:
    payload = bytes(range(256)) * 4096
    assert len(payload) == 1024 * 1024
    async with (
        running_server(echo_app()) as server,
        open_websocket_url(ws_url(server), max_message_size=2 * len(payload)) as ws,
    ):
        await ws.send_message(payload)
        assert await ws.get_message() == payload


async def test_thousand_messages_arrive_in_order() -> None:
    got = []
    async with (
        running_server(echo_app()) as server,
        open_websocket_url(ws_url(server)) as ws,
        trio.open_nursery() as nursery,
    ):

        async def sender() -> None:
            for i in range(1000):
                await ws.send_message(str(i))

        nursery.start_soon(sender)
        for _ in range(1000):
            got.append(await ws.get_message())
    assert got == [str(i) for i in range(1000)]


async def test_scope_is_complete() -> None:
    recorder = Recorder()
    async with (
        running_server(echo_app(recorder), root_path="/mount") as server,
        open_websocket_url(
            ws_url(server, "/caf%C3%A9/chat?room=1"),
            subprotocols=["one", "two"],
            extra_headers=[(b"x-token", b"abc")],
        ),
    ):
        pass
    scope = recorder.scope
    assert scope is not None
    assert scope["type"] == "websocket"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.5"}
    assert scope["scheme"] == "ws"
    assert scope["path"] == "/mount/café/chat"
    assert scope["raw_path"] == b"/mount/caf%C3%A9/chat"
    assert scope["query_string"] == b"room=1"
    assert scope["root_path"] == "/mount"
    assert scope["subprotocols"] == ["one", "two"]
    assert scope["extensions"] == {"websocket.http.response": {}}
    assert scope["server"] == ("127.0.0.1", server.port)
    assert scope["client"][0] == "127.0.0.1"
    assert scope["state"] == {}
    assert (b"x-token", b"abc") in scope["headers"]
    assert "method" not in scope


async def test_lifespan_state_is_copied_into_the_scope() -> None:
    scopes = []

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            await receive()
            scope["state"]["db"] = "connected"
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.complete"})
            return
        scopes.append(scope)
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close"})

    async with running_server(app) as server, open_websocket_url(ws_url(server)) as ws:
        with pytest.raises(ConnectionClosed):
            await ws.get_message()
    assert scopes[0]["state"] == {"db": "connected"}


async def test_subprotocol_choice_and_accept_headers() -> None:
    app = echo_app(subprotocol="two", headers=[(b"x-chosen", b"yes")])
    async with (
        running_server(app) as server,
        open_websocket_url(ws_url(server), subprotocols=["one", "two"]) as ws,
    ):
        assert ws.subprotocol == "two"
        headers = dict(ws.handshake_headers)
        assert headers[b"x-chosen"] == b"yes"
        assert headers[b"server"] == b"trio-asgi"


async def test_server_close_with_code_and_reason() -> None:
    async def app(scope, receive, send):
        if scope["type"] != "websocket":
            return
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 4001, "reason": "bye now"})

    async with running_server(app) as server, open_websocket_url(ws_url(server)) as ws:
        with pytest.raises(ConnectionClosed) as info:
            await ws.get_message()
    assert info.value.reason.code == 4001
    assert info.value.reason.reason == "bye now"


async def test_client_close_code_reaches_the_app() -> None:
    recorder = Recorder()
    async with running_server(echo_app(recorder)) as server:
        async with open_websocket_url(ws_url(server)) as ws:
            await ws.aclose(code=4002, reason="done here")
        with trio.fail_after(5):
            while recorder.disconnect is None:
                await trio.sleep(0.01)
    assert recorder.disconnect == {
        "type": "websocket.disconnect",
        "code": 4002,
        "reason": "done here",
    }


async def test_ping_is_answered() -> None:
    async with running_server(echo_app()) as server, open_websocket_url(ws_url(server)) as ws:
        with trio.fail_after(5):
            await ws.ping(b"are you there")


async def test_close_before_accept_is_403() -> None:
    async def app(scope, receive, send):
        if scope["type"] == "websocket":
            await send({"type": "websocket.close"})

    async with running_server(app) as server:
        with pytest.raises(ConnectionRejected) as info:
            async with open_websocket_url(ws_url(server)):
                pass
    assert info.value.status_code == 403


async def test_denial_response_extension() -> None:
    async def app(scope, receive, send):
        if scope["type"] != "websocket":
            return
        assert "websocket.http.response" in scope["extensions"]
        await send(
            {
                "type": "websocket.http.response.start",
                "status": 401,
                "headers": [(b"content-type", b"text/plain"), (b"x-why", b"token")],
            }
        )
        await send({"type": "websocket.http.response.body", "body": b"no ", "more_body": True})
        await send({"type": "websocket.http.response.body", "body": b"entry"})

    async with running_server(app) as server:
        with pytest.raises(ConnectionRejected) as info:
            async with open_websocket_url(ws_url(server)):
                pass
    assert info.value.status_code == 401
    assert info.value.body == b"no entry"
    assert (b"x-why", b"token") in info.value.headers


async def test_app_exception_before_accept_is_500() -> None:
    async def app(scope, receive, send):
        if scope["type"] == "websocket":
            raise ValueError("boom")

    async with running_server(app) as server:
        with pytest.raises(ConnectionRejected) as info:
            async with open_websocket_url(ws_url(server)):
                pass
        assert info.value.status_code == 500
        # The server keeps serving.
        with pytest.raises(ConnectionRejected):
            async with open_websocket_url(ws_url(server)):
                pass


async def test_app_exception_after_accept_closes_with_1011() -> None:
    async def app(scope, receive, send):
        if scope["type"] != "websocket":
            return
        await send({"type": "websocket.accept"})
        await receive()
        await receive()
        raise ValueError("boom")

    async with running_server(app) as server, open_websocket_url(ws_url(server)) as ws:
        await ws.send_message("trigger")
        with pytest.raises(ConnectionClosed) as info:
            await ws.get_message()
    assert info.value.reason.code == 1011


async def test_app_returning_after_accept_closes_with_1000() -> None:
    async def app(scope, receive, send):
        if scope["type"] == "websocket":
            await send({"type": "websocket.accept"})

    async with running_server(app) as server, open_websocket_url(ws_url(server)) as ws:
        with pytest.raises(ConnectionClosed) as info:
            await ws.get_message()
    assert info.value.reason.code == 1000


async def test_starlette_websocket_route() -> None:
    async def chat(websocket: WebSocket) -> None:
        await websocket.accept()
        name = await websocket.receive_text()
        await websocket.send_json({"hello": name, "path": websocket.url.path})
        data = await websocket.receive_bytes()
        await websocket.send_bytes(data[::-1])
        await websocket.close(code=4100)

    app = Starlette(routes=[WebSocketRoute("/chat", chat)])
    async with running_server(app) as server, open_websocket_url(ws_url(server, "/chat")) as ws:
        await ws.send_message("ada")
        assert await ws.get_message() == '{"hello":"ada","path":"/chat"}'
        await ws.send_message(b"abc")
        assert await ws.get_message() == b"cba"
        with pytest.raises(ConnectionClosed) as info:
            await ws.get_message()
    assert info.value.reason.code == 4100


async def raw_exchange(server, request: bytes) -> bytes:
    stream = await server.connect()
    await stream.send_all(request)
    with trio.fail_after(5):
        return await read_until_closed(stream)


async def test_handshake_errors_get_clear_4xx() -> None:
    async with running_server(echo_app()) as server:
        wrong_version = await raw_exchange(
            server, b"GET /ws HTTP/1.1\r\n" + KEY_HEADERS + b"Sec-WebSocket-Version: 8\r\n\r\n"
        )
        no_key = await raw_exchange(
            server,
            b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n",
        )
        post = await raw_exchange(
            server,
            b"POST /ws HTTP/1.1\r\n" + KEY_HEADERS + b"Sec-WebSocket-Version: 13\r\n\r\n",
        )
    assert wrong_version.startswith(b"HTTP/1.1 426 ")
    assert b"\r\nSec-WebSocket-Version: 13\r\n" in wrong_version
    assert no_key.startswith(b"HTTP/1.1 400 ")
    assert post.startswith(b"HTTP/1.1 405 ")
    for response in (wrong_version, no_key, post):
        assert b"connection: close" in response.lower()


async def test_ws_none_serves_upgrade_requests_as_http() -> None:
    seen = []

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            return
        seen.append(scope["type"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"plain"})

    async with running_server(app, ws="none") as server:
        response = await raw_exchange(
            server,
            b"GET /ws HTTP/1.1\r\n"
            + KEY_HEADERS
            + b"Sec-WebSocket-Version: 13\r\nConnection: close\r\n\r\n",
        )
    assert seen == ["http"]
    assert response.startswith(b"HTTP/1.1 200 ")
    assert b"\r\n5\r\nplain\r\n" in response


async def test_shutdown_closes_with_1012_and_the_app_hears_it() -> None:
    recorder = Recorder()
    async with running_server(echo_app(recorder), timeout_graceful_shutdown=5) as server:
        async with open_websocket_url(ws_url(server)) as ws:
            await ws.send_message("before")
            assert await ws.get_message() == "before"
            server.stop()
            with pytest.raises(ConnectionClosed) as info:
                await ws.get_message()
        with trio.fail_after(5):
            await server.stopped.wait()
    assert info.value.reason.code == 1012
    assert recorder.disconnect is not None
    assert recorder.disconnect["code"] == 1012


async def test_shutdown_does_not_wait_for_a_silent_peer_beyond_the_graceful_timeout() -> None:
    recorder = Recorder()
    async with running_server(echo_app(recorder), timeout_graceful_shutdown=0.5) as server:
        stream = await server.connect()
        await stream.send_all(
            b"GET /ws HTTP/1.1\r\n" + KEY_HEADERS + b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += await stream.receive_some(65536)
        assert head.startswith(b"HTTP/1.1 101 ")
        server.stop()
        # We read the close frame but never answer it.
        with trio.fail_after(4):  # the close handshake alone would wait 5 s
            rest = await read_until_closed(stream)
            await server.stopped.wait()
    assert rest[:4] == b"\x88\x16\x03\xf4"  # close frame, 22 bytes of payload, code 1012
    assert recorder.disconnect["code"] == 1012


async def test_invalid_denial_status_is_a_500() -> None:
    async def app(scope, receive, send):
        if scope["type"] == "websocket":
            await send({"type": "websocket.http.response.start", "status": 42, "headers": []})

    async with running_server(app) as server:
        with pytest.raises(ConnectionRejected) as info:
            async with open_websocket_url(ws_url(server)):
                pass
    assert info.value.status_code == 500


async def test_unoffered_subprotocol_is_an_app_error() -> None:
    async def app(scope, receive, send):
        if scope["type"] == "websocket":
            await send({"type": "websocket.accept", "subprotocol": "never-offered"})

    async with running_server(app) as server:
        with pytest.raises(ConnectionRejected) as info:
            async with open_websocket_url(ws_url(server), subprotocols=["chat"]):
                pass
    assert info.value.status_code == 500


async def test_access_log_says_accepted_or_refused(caplog) -> None:
    async def app(scope, receive, send):
        if scope["type"] != "websocket":
            return
        if scope["path"] == "/no":
            await send({"type": "websocket.close"})
        else:
            await send({"type": "websocket.accept"})

    caplog.set_level("INFO", logger="trioasgi.access")
    async with running_server(app) as server:
        async with open_websocket_url(ws_url(server, "/yes?a=1")):
            pass
        with pytest.raises(ConnectionRejected):
            async with open_websocket_url(ws_url(server, "/no")):
                pass
    lines = [r.getMessage() for r in caplog.records if r.name == "trioasgi.access"]
    assert any(line.endswith('"WebSocket /yes?a=1" 101') for line in lines), lines
    assert any(line.endswith('"WebSocket /no" 403') for line in lines), lines


async def test_ws_wsproto_is_the_same_as_auto() -> None:
    async with (
        running_server(echo_app(), ws="wsproto") as server,
        open_websocket_url(ws_url(server)) as ws,
    ):
        await ws.send_message("same")
        assert await ws.get_message() == "same"


async def test_wss_over_tls_has_the_tls_extension(tmp_path) -> None:
    import ssl

    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    recorder = Recorder()
    settings = {
        "ssl_certfile": str(tmp_path / "cert.pem"),
        "ssl_keyfile": str(tmp_path / "key.pem"),
    }
    async with (
        running_server(echo_app(recorder), **settings) as server,
        open_websocket_url(f"wss://127.0.0.1:{server.port}/secure", client_context) as ws,
    ):
        await ws.send_message("over tls")
        assert await ws.get_message() == "over tls"
    assert recorder.scope["scheme"] == "wss"
    assert "tls" in recorder.scope["extensions"]
    assert "websocket.http.response" in recorder.scope["extensions"]


async def test_trusted_proxy_forwarded_proto_makes_wss() -> None:
    recorder = Recorder()
    async with (
        running_server(echo_app(recorder)) as server,
        open_websocket_url(ws_url(server), extra_headers=[(b"x-forwarded-proto", b"https")]),
    ):
        pass
    assert recorder.scope["scheme"] == "wss"


async def test_closing_wakes_a_receive_waiting_in_another_task() -> None:
    """On a plain socket too: the app hears its own close before the peer answers it."""
    from tests.test_websocket_frames import closing_in_another_task

    heard: list = []
    done = trio.Event()
    async with running_server(closing_in_another_task(heard, done)) as server:
        stream = await server.connect()
        await stream.send_all(
            b"GET /ws HTTP/1.1\r\n" + KEY_HEADERS + b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        data = b""
        with trio.fail_after(4):  # the close handshake alone would wait 5 s
            while b"\x88\x02\x0f\xa0" not in data:  # our close frame, code 4000
                chunk = await stream.receive_some(65536)
                assert chunk, data
                data += chunk
            await done.wait()  # we never answer the close frame
    assert heard[0] == {"type": "websocket.disconnect", "code": 4000, "reason": ""}
