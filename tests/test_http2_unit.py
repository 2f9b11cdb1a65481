"""HTTP2Connection over in-memory streams, with h2 as the client and a mock clock.

Each test runs one server-side connection (tests/h2client.py) and checks
what docs/http2.md promises: the scope, concurrent streams, resets, app
errors, refused streams, flow control both ways, keep-alive, the two-step
GOAWAY, the HTTP/1.1 limits, and the ways a connection becomes HTTP/2.
"""

from __future__ import annotations

import json

import h2.events
import h2.settings
import pytest
import trio
import trio.testing
from h2.errors import ErrorCodes
from hyperframe.frame import DataFrame, RstStreamFrame, SettingsFrame

import trioasgi
from tests import apps
from tests.h2client import CLIENT, SERVER, H2Client, H2Server, RawClient, get, start_pair
from trioasgi.http2.connection import MAX_STREAM_ID, HTTP2Connection
from trioasgi.serving.context import ServerContext


async def test_get_and_the_scope_the_app_sees(autojump_clock) -> None:
    """http_version "2", :authority as the first header (host), no pseudo-headers,
    cookie crumbs joined with "; ", the connection's scheme."""
    async with trio.open_nursery() as nursery:
        _, client = await start_pair(apps.show_scope, nursery)
        status, body = await get(
            client,
            "/p?q=1",
            headers=[(b"cookie", b"a=1"), (b"x-one", b"1"), (b"cookie", b"b=2")],
            authority=b"h.example:8080",
        )
        assert status == 200
        scope = json.loads(body)
        assert scope["http_version"] == "2"
        assert scope["method"] == "GET"
        assert scope["path"] == "/p"
        assert scope["query_string"] == "q=1"
        assert scope["scheme"] == "http"
        headers = scope["headers"]
        assert headers[0] == ["host", "h.example:8080"]
        assert not [name for name, _ in headers if name.startswith(":")]
        assert [v for n, v in headers if n == "cookie"] == ["a=1; b=2"]
        assert ["x-one", "1"] in headers
        nursery.cancel_scope.cancel()


async def test_post_body_is_echoed(autojump_clock) -> None:
    """A request body sent in several DATA frames reaches the app whole."""
    async with trio.open_nursery() as nursery:
        _, client = await start_pair(apps.echo, nursery)
        stream_id = await client.request("/e", method="POST", body=b"x" * 40_000, end=False)
        client.h2.send_data(stream_id, b"tail", end_stream=True)
        await client.flush()
        assert await client.response(stream_id) == (200, b"x" * 40_000 + b"tail")
        nursery.cancel_scope.cancel()


async def test_streams_are_served_concurrently(autojump_clock) -> None:
    """Two apps that each wait for the other's event both finish: one task per stream."""
    events = {"/a": trio.Event(), "/b": trio.Event()}

    async def app(scope, receive, send):
        path = scope["path"]
        events[path].set()
        await events["/b" if path == "/a" else "/a"].wait()
        await apps.start(send)
        await send({"type": "http.response.body", "body": path.encode()})

    async with trio.open_nursery() as nursery:
        _, client = await start_pair(app, nursery)
        a = await client.request("/a")
        b = await client.request("/b")
        assert await client.response(a) == (200, b"/a")
        assert await client.response(b) == (200, b"/b")
        nursery.cancel_scope.cancel()


async def test_a_reset_stream_disconnects_its_app_only(autojump_clock) -> None:
    """After RST_STREAM, the app's receive() gives http.disconnect (even while waiting for
    body bytes) and send() raises ClientDisconnected; another stream completes."""
    waiting = trio.Event()
    seen: list = []

    async def app(scope, receive, send):
        if scope["path"] == "/other":
            await apps.hello(scope, receive, send)
            return
        seen.append(await receive())
        waiting.set()
        seen.append(await receive())  # waits for more body: the reset ends the wait
        try:
            await apps.start(send)
        except trioasgi.ClientDisconnected:
            seen.append("ClientDisconnected")

    async with trio.open_nursery() as nursery:
        server, client = await start_pair(app, nursery)
        reset = await client.request("/upload", method="POST", body=b"part", end=False)
        await waiting.wait()
        client.h2.reset_stream(reset, ErrorCodes.CANCEL)
        await client.flush()
        assert await get(client, "/other") == (200, b"hello")
        await trio.testing.wait_all_tasks_blocked()
        assert seen == [
            {"type": "http.request", "body": b"part", "more_body": True},
            {"type": "http.disconnect"},
            "ClientDisconnected",
        ]
        assert server.conn is not None and not server.conn.streams
        nursery.cancel_scope.cancel()


async def test_app_errors(autojump_clock) -> None:
    """Raising before the response: 500; raising after its start: RST_STREAM INTERNAL_ERROR;
    returning without a response: 500; returning halfway: INTERNAL_ERROR. The connection
    carries on."""

    async def app(scope, receive, send):
        path = scope["path"]
        if path == "/raise-before":
            raise RuntimeError("boom")
        if path == "/return-before":
            return
        await apps.start(send)
        await send({"type": "http.response.body", "body": b"half", "more_body": True})
        if path == "/raise-after":
            raise RuntimeError("boom")

    async with trio.open_nursery() as nursery:
        _, client = await start_pair(app, nursery)
        assert (await get(client, "/raise-before"))[0] == 500
        assert (await get(client, "/return-before"))[0] == 500
        for path in ("/raise-after", "/return-after"):
            stream_id = await client.request(path)
            await client.until(lambda s=stream_id: s in client.resets)
            assert client.resets[stream_id] == ErrorCodes.INTERNAL_ERROR
            assert client.status(stream_id) == 200
        assert (await get(client, "/raise-before"))[0] == 500
        nursery.cancel_scope.cancel()


async def test_streams_over_the_limit_are_refused_and_the_others_complete(autojump_clock) -> None:
    """With h2_max_concurrent_streams=2, a third open stream gets RST_STREAM REFUSED_STREAM;
    the first two complete and a new stream afterwards is served."""
    release = trio.Event()

    async def app(scope, receive, send):
        await release.wait()
        await apps.hello(scope, receive, send)

    async with trio.open_nursery() as nursery:
        server = H2Server(app, nursery, h2_max_concurrent_streams=2)
        client = H2Client(server.client_stream)
        await client.start()
        # Before the server's SETTINGS are read, h2 does not know the limit.
        ids = [await client.request(f"/{i}") for i in range(3)]
        await client.until(lambda: ids[2] in client.resets)
        assert client.resets[ids[2]] == ErrorCodes.REFUSED_STREAM
        assert server.conn is not None and len(server.conn.streams) == 2
        release.set()
        assert await client.response(ids[0]) == (200, b"hello")
        assert await client.response(ids[1]) == (200, b"hello")
        assert await get(client, "/again") == (200, b"hello")
        nursery.cancel_scope.cancel()


async def test_request_body_is_held_back_by_the_receive_window(autojump_clock) -> None:
    """An app that does not read: the client's window on its stream closes after
    h2_initial_window_size bytes, which is all the server holds; reading opens it again."""
    window = 65_536
    reading = trio.Event()
    done: list[int] = []

    async def app(scope, receive, send):
        await reading.wait()
        body, _ = await apps.read_body(receive)
        done.append(len(body))
        await apps.hello(scope, receive, send)

    async with trio.open_nursery() as nursery:
        server, client = await start_pair(app, nursery, h2_initial_window_size=window)
        await client.until(
            lambda: any(isinstance(e, h2.events.RemoteSettingsChanged) for e in client.events)
        )
        total = 3 * window
        stream_id = await client.request("/up", method="POST", end=False)
        sent = 0
        for _ in range(100):
            room = client.h2.local_flow_control_window(stream_id)
            if room == 0:
                # The window is shut: whatever the server sends now must not widen it
                # (checked below) while its app does not read.
                await trio.testing.wait_all_tasks_blocked()
                await _has_more(client)
                break
            piece = min(room, total - sent, 16_384)
            client.h2.send_data(stream_id, b"u" * piece)
            sent += piece
            await client.flush()
        assert sent == window
        assert client.h2.local_flow_control_window(stream_id) == 0
        assert server.conn is not None
        stream = server.conn.streams[stream_id]
        assert stream.unacknowledged == window
        reading.set()
        for _ in range(100):
            if sent == total:
                break
            await client.receive()
            for _ in range(100):  # as much as the window allows, then read again
                room = min(client.h2.local_flow_control_window(stream_id), total - sent, 16_384)
                if not room:
                    break
                client.h2.send_data(stream_id, b"u" * room)
                sent += room
            await client.flush()
            assert stream.unacknowledged <= window
        client.h2.end_stream(stream_id)
        await client.flush()
        assert await client.response(stream_id) == (200, b"hello")
        assert done == [total]
        nursery.cancel_scope.cancel()


async def _has_more(client: H2Client) -> bool:
    """Read what the server has sent (if anything) without waiting for more."""
    with trio.move_on_after(0.1):
        await client.receive()
        return True
    return False


async def test_a_zero_send_window_stalls_only_its_stream(autojump_clock) -> None:
    """The client's initial window is 0: a stream whose window stays shut waits in
    send() while another (given a window) completes; its send() returns once the window
    opens."""
    returned: list[str] = []

    async def app(scope, receive, send):
        await apps.start(send)
        await send({"type": "http.response.body", "body": b"data of " + scope["path"].encode()})
        returned.append(scope["path"])

    async with trio.open_nursery() as nursery:
        server = H2Server(app, nursery)
        client = H2Client(server.client_stream, {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
        await client.start()
        stalled = await client.request("/stalled")
        served = await client.request("/served")
        await client.until(lambda: stalled in client.headers and served in client.headers)
        client.h2.increment_flow_control_window(100, stream_id=served)
        await client.flush()
        assert await client.response(served) == (200, b"data of /served")
        await trio.testing.wait_all_tasks_blocked()
        assert returned == ["/served"]
        assert stalled not in client.ended
        client.h2.increment_flow_control_window(100, stream_id=stalled)
        await client.flush()
        assert await client.response(stalled) == (200, b"data of /stalled")
        await trio.testing.wait_all_tasks_blocked()
        assert returned == ["/served", "/stalled"]
        nursery.cancel_scope.cancel()


async def test_idle_connection_gets_goaway_after_the_keep_alive_timeout(autojump_clock) -> None:
    """No open stream for timeout_keep_alive: GOAWAY NO_ERROR, then the connection closes."""
    async with trio.open_nursery() as nursery:
        server = H2Server(apps.hello, nursery, timeout_keep_alive=7)
        client = RawClient(server.client_stream)
        await client.start()
        stream_id, frame = client.request()
        await client.send(frame)
        assert await client.response(stream_id) == (200, b"hello")
        answered_at = trio.current_time()
        await client.read_to_close()
        assert trio.current_time() - answered_at == 7
        assert [(g.error_code, g.last_stream_id) for g in client.goaways] == [(0, 1)]
        with trio.fail_after(1):
            await server.finished.wait()


async def test_graceful_shutdown_is_a_two_step_goaway(autojump_clock) -> None:
    """begin_shutdown(): a GOAWAY with 2^31-1 and a PING; once the PING is answered the final
    GOAWAY names the last stream started; that stream finishes, one opened after is refused,
    then the connection closes."""
    release = trio.Event()

    async def app(scope, receive, send):
        await release.wait()
        await apps.hello(scope, receive, send)

    async with trio.open_nursery() as nursery:
        server = H2Server(app, nursery)
        client = RawClient(server.client_stream)
        await client.start()
        in_flight, frame = client.request()
        await client.send(frame)
        await client.until(lambda: server.conn is not None and bool(server.conn.streams))
        assert server.conn is not None
        server.conn.begin_shutdown()
        await client.until(lambda: len(client.goaways) == 2)
        assert [g.last_stream_id for g in client.goaways] == [MAX_STREAM_ID, in_flight]
        assert all(g.error_code == 0 for g in client.goaways)
        late, frame = client.request()
        await client.send(frame)
        await client.until(lambda: late in client.resets)
        assert client.resets[late] == ErrorCodes.REFUSED_STREAM
        release.set()
        assert await client.response(in_flight) == (200, b"hello")
        await client.read_to_close()
        with trio.fail_after(1):
            await server.finished.wait()


async def test_data_after_the_response_or_a_reset_costs_nothing(autojump_clock) -> None:
    """DATA on a stream whose response is complete, or that was reset, does not crash
    anything: the connection keeps serving."""

    async def app(scope, receive, send):
        # Answers without reading the body.
        await apps.hello(scope, receive, send)

    async with trio.open_nursery() as nursery:
        server = H2Server(app, nursery)
        client = RawClient(server.client_stream)
        await client.start()
        answered, frame = client.request("/a", method="POST", end=False)
        await client.send(frame)
        await client.until(lambda: answered in client.ended)
        reset, frame = client.request("/b", method="POST", end=False)
        await client.send(frame, RstStreamFrame(reset, error_code=ErrorCodes.CANCEL))
        for stream_id in (answered, reset):
            await client.send(DataFrame(stream_id, b"late" * 100), DataFrame(stream_id, b"x"))
        ok, frame = client.request("/c")
        await client.send(frame)
        assert await client.response(ok) == (200, b"hello")
        assert not client.goaways
        assert server.conn is not None and not server.conn.streams
        nursery.cancel_scope.cancel()


async def test_client_goaway_ends_the_connection(autojump_clock) -> None:
    """The client's GOAWAY: a waiting stream hears http.disconnect and the connection ends."""
    heard: list = []
    waiting = trio.Event()

    async def app(scope, receive, send):
        heard.append(await receive())
        waiting.set()
        heard.append(await receive())

    async with trio.open_nursery() as nursery:
        server, client = await start_pair(app, nursery)
        await client.request("/", method="POST", body=b"b", end=False)
        await waiting.wait()
        client.h2.close_connection()
        await client.flush()
        with trio.fail_after(10):
            await server.finished.wait()
        assert heard[-1] == {"type": "http.disconnect"}


async def test_limit_request_body_declared_and_streamed(autojump_clock) -> None:
    """A declared content-length over limit_request_body gets 413 before the app runs;
    a body that grows past it gets 413."""
    calls: list[str] = []

    async def app(scope, receive, send):
        calls.append(scope["path"])
        await apps.echo(scope, receive, send)

    async with trio.open_nursery() as nursery:
        _, client = await start_pair(app, nursery, limit_request_body=10)
        declared = await client.request(
            "/declared",
            method="POST",
            body=b"x" * 11,
            headers=[(b"content-length", b"11")],
        )
        assert (await client.response(declared))[0] == 413
        assert calls == []
        streamed = await client.request("/streamed", method="POST", body=b"x" * 8, end=False)
        client.h2.send_data(streamed, b"y" * 8, end_stream=True)
        await client.flush()
        assert (await client.response(streamed))[0] == 413
        assert await get(client, "/ok", method="POST", body=b"small") == (200, b"small")
        nursery.cancel_scope.cancel()


async def test_timeout_request_body_408(autojump_clock) -> None:
    """A body that stalls for timeout_request_body gets 408."""
    async with trio.open_nursery() as nursery:
        _, client = await start_pair(apps.echo, nursery, timeout_request_body=3)
        stream_id = await client.request("/", method="POST", body=b"start", end=False)
        began = trio.current_time()
        assert (await client.response(stream_id))[0] == 408
        assert trio.current_time() - began == 3
        nursery.cancel_scope.cancel()


@pytest.mark.usefixtures("http_parser")
async def test_prior_knowledge_through_the_http11_connection(autojump_clock) -> None:
    """The preface on a cleartext HTTP/1.1 connection: the connection becomes HTTP/2."""
    async with trio.open_nursery() as nursery:
        server = H2Server(apps.show_scope, nursery, via_http11=True)
        client = H2Client(server.client_stream)
        await client.start()
        status, body = await get(client, "/pk")
        assert status == 200
        assert json.loads(body)["http_version"] == "2"
        assert server.http11 is not None and server.http11.handover is not None
        nursery.cancel_scope.cancel()


@pytest.mark.usefixtures("http_parser")
async def test_h2c_upgrade(autojump_clock) -> None:
    """Upgrade: h2c gets 101, then the request is answered as stream 1 over HTTP/2 (its scope
    an HTTP/2 one), and the connection serves more streams."""
    async with trio.open_nursery() as nursery:
        server = H2Server(apps.show_scope, nursery, via_http11=True)
        client = H2Client(server.client_stream)
        # h2 queues the preface too: it is sent once the 101 is in.
        settings = client.h2.initiate_upgrade_connection()
        await client.send_raw(
            b"GET /up HTTP/1.1\r\nHost: example.com\r\nConnection: Upgrade, HTTP2-Settings\r\n"
            b"Upgrade: h2c\r\nHTTP2-Settings: " + settings + b"\r\n\r\n"
        )
        head = b""
        for _ in range(100):
            head += await client.stream.receive_some(1)
            if head.endswith(b"\r\n\r\n"):
                break
        assert head.startswith(b"HTTP/1.1 101 ")
        await client.flush()
        status, body = await client.response(1)
        assert status == 200
        scope = json.loads(body)
        assert (scope["http_version"], scope["path"]) == ("2", "/up")
        # What asked the HTTP/1.1 connection to switch is not part of the HTTP/2 request.
        names = [name for name, _ in scope["headers"]]
        assert names == ["host"]
        status, body = await get(client, "/next")
        assert (status, json.loads(body)["path"]) == (200, "/next")
        nursery.cancel_scope.cancel()


@pytest.mark.usefixtures("http_parser")
async def test_http2_off_keeps_http11(autojump_clock) -> None:
    """http2=False: the preface is refused as an HTTP/1.1 request (505, HTTP/2.0 is not a
    version HTTP/1.1 serves) and the connection closes; Upgrade: h2c is ignored."""
    async with trio.open_nursery() as nursery:
        server = H2Server(apps.hello, nursery, via_http11=True, http2=False)
        await server.client_stream.send_all(RawClient.PREFACE + SettingsFrame(0).serialize())
        data = b""
        for _ in range(100):
            chunk = await server.client_stream.receive_some(65536)
            if not chunk:
                break
            data += chunk
        assert data.startswith(b"HTTP/1.1 505 ")
        await server.finished.wait()
        assert server.conn is None

        server = H2Server(apps.hello, nursery, via_http11=True, http2=False)
        await server.client_stream.send_all(
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
            b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n"
        )
        data = b""
        for _ in range(100):
            data += await server.client_stream.receive_some(65536)
            if data.endswith(b"hello"):
                break
        assert data.startswith(b"HTTP/1.1 200 ")
        nursery.cancel_scope.cancel()


async def test_body_of_a_reset_stream_gives_its_connection_window_back(autojump_clock) -> None:
    """Bytes that arrived before the client reset their stream are given back to the
    connection's window however the app reads afterwards: with a connection window of
    65,535 bytes, three reset uploads of 30,000 are followed by a fourth that completes,
    and the app's receive() after the reset is http.disconnect at once."""
    arrived = trio.Event()
    reset_seen = trio.Event()
    after_reset: list[dict] = []

    async def app(scope, receive, send):
        if scope["path"] == "/ok":
            await apps.echo(scope, receive, send)
            return
        arrived.set()
        await reset_seen.wait()
        after_reset.append(await receive())

    async with trio.open_nursery() as nursery:
        server, client = await start_pair(
            app, nursery, h2_connection_window_size=65_535, h2_initial_window_size=65_535
        )
        assert server.conn is not None
        for _ in range(3):
            # Whatever WINDOW_UPDATEs the server sent: the window is given back.
            for _ in range(10):
                if not await _has_more(client):
                    break
            assert client.h2.outbound_flow_control_window >= 30_000
            arrived = trio.Event()
            reset_seen = trio.Event()
            stream_id = await client.request("/up", method="POST", body=b"r" * 30_000, end=False)
            await arrived.wait()
            await trio.testing.wait_all_tasks_blocked()  # the body is in
            client.h2.reset_stream(stream_id, ErrorCodes.CANCEL)
            await client.flush()
            await trio.testing.wait_all_tasks_blocked()
            reset_seen.set()
            await trio.testing.wait_all_tasks_blocked()
            assert not server.conn.streams
        assert after_reset == [{"type": "http.disconnect"}] * 3
        stream_id = await client.request("/ok", method="POST", end=False)
        left = 40_000
        for _ in range(100):  # as the windows allow
            room = min(client.h2.local_flow_control_window(stream_id), left, 16_384)
            if room:
                client.h2.send_data(stream_id, b"o" * room)
                left -= room
                await client.flush()
            elif left:
                await client.receive()
            else:
                break
        client.h2.end_stream(stream_id)
        await client.flush()
        assert await client.response(stream_id) == (200, b"o" * 40_000)
        nursery.cancel_scope.cancel()


async def test_shutdown_before_the_connection_runs_still_answers_what_arrived(
    autojump_clock,
) -> None:
    """A shutdown that comes while an HTTP/1.1 connection hands over to HTTP/2 (the server
    calls begin_shutdown() before run()): the request that came with the preface is
    answered, the client gets a GOAWAY naming it, then the connection closes."""
    client_stream, server_stream = trio.testing.memory_stream_pair()
    client = RawClient(client_stream)
    stream_id, head = client.request("/early")
    received = RawClient.PREFACE + SettingsFrame(0).serialize() + head.serialize()
    ctx = ServerContext(app=apps.hello, config=trioasgi.Config())
    conn = HTTP2Connection(server_stream, ctx, client=CLIENT, server=SERVER, received=received)
    conn.begin_shutdown()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(conn.run)
        assert await client.response(stream_id) == (200, b"hello")
        with trio.fail_after(10):
            await client.read_to_close()
        assert client.goaways and client.goaways[-1].last_stream_id == stream_id


async def test_h2c_upgrade_with_a_body_stays_http11(autojump_clock, http_parser) -> None:
    """An Upgrade: h2c request with a body is not upgraded: it is answered over HTTP/1.1,
    served by h11; httptools refuses every Upgrade request with a body (400), as it does
    for WebSocket, since llhttp would hand the body over as the new protocol's bytes."""
    async with trio.open_nursery() as nursery:
        server = H2Server(apps.echo, nursery, via_http11=True)
        await server.client_stream.send_all(
            b"POST / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
            b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\nContent-Length: 4\r\n\r\nbody"
        )
        data = b""
        for _ in range(100):
            chunk = await server.client_stream.receive_some(65536)
            data += chunk
            if not chunk or data.endswith(b"body"):
                break
        expected = b"HTTP/1.1 200 " if http_parser == "h11" else b"HTTP/1.1 400 "
        assert data.startswith(expected), data
        assert server.conn is None
        nursery.cancel_scope.cancel()


async def test_prior_knowledge_preface_a_byte_at_a_time(
    autojump_clock, http_parser, request: pytest.FixtureRequest
) -> None:
    """The preface and the first request dribbled a byte at a time into the HTTP/1.1
    connection: it still becomes HTTP/2 and answers."""
    if http_parser == "httptools":
        # http11/httptools_parser.py tells the preface from llhttp's error by the
        # bytes of the feed that failed: a preface split across reads is a 505.
        request.applymarker(
            pytest.mark.xfail(
                strict=True,
                reason="the httptools parser finds the preface only when it comes in one read",
            )
        )
    async with trio.open_nursery() as nursery:
        server = H2Server(apps.hello, nursery, via_http11=True)
        client = H2Client(server.client_stream)
        client.h2.initiate_connection()
        stream_id = client.next_id()
        client.h2.send_headers(
            stream_id,
            [(b":method", b"GET"), (b":path", b"/"), (b":scheme", b"http"), (b":authority", b"x")],
            end_stream=True,
        )
        data = client.h2.data_to_send()
        for i in range(len(data)):
            await client.send_raw(data[i : i + 1])
            await trio.testing.wait_all_tasks_blocked()
        assert await client.response(stream_id) == (200, b"hello")
        nursery.cancel_scope.cancel()


async def test_a_protocol_error_ends_the_connection_with_one_goaway(autojump_clock) -> None:
    """A connection error (DATA on stream 0): one GOAWAY PROTOCOL_ERROR, then the close;
    a body longer than its content-length is one too (h2 makes it a connection error)."""
    data_on_stream_0 = b"\x00\x00\x01\x00\x00\x00\x00\x00\x00x"  # (hyperframe refuses it)
    for frames in (
        [data_on_stream_0],
        [
            RawClient(trio.testing.memory_stream_pair()[0]).request(
                "/", method="POST", end=False, extra=[(b"content-length", b"5")]
            )[1],
            DataFrame(1, b"0123456789", flags=["END_STREAM"]),
        ],
    ):
        async with trio.open_nursery() as nursery:
            server = H2Server(apps.echo, nursery)
            client = RawClient(server.client_stream)
            await client.start()
            await client.send(*frames)
            with trio.fail_after(10):
                await client.read_to_close()
                await server.finished.wait()
            assert [g.error_code for g in client.goaways] == [ErrorCodes.PROTOCOL_ERROR]
