"""HTTP/2 end to end: the real server on a loopback port, real HTTP/2 clients.

httpx (with its ``http2`` extra) over TLS, where ALPN picks h2, and over
cleartext with prior knowledge (h2c); curl over TLS, with prior knowledge
and through an ``Upgrade: h2c``; a raw client built on the h2 library for
the SETTINGS the command-line limits advertise and for a WebSocket over an
HTTP/2 stream (RFC 8441 extended CONNECT); and a bounded h2load run. Each
checks what the app sees too: ``http_version`` "2", the ``:authority`` as
the ``host`` header, and no pseudo-header among the headers. With HTTP/2
switched off everything stays HTTP/1.1.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import shutil
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import httpx
import pytest
import trio
from wsproto.frame_protocol import FrameProtocol, Opcode

from tests import apps, ws_apps
from tests.conftest import running_server
from tests.http2_gate import needs_http2
from tests.processes import server_process
from tests.test_tls import Certs

CURL = shutil.which("curl")
H2LOAD = shutil.which("h2load")
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#: Far past what any exchange here takes on a loaded machine: only a hang reaches it.
BOUND = 60

pytestmark = needs_http2

needs_curl = pytest.mark.skipif(CURL is None, reason="curl is not installed (.ci/run installs it)")
needs_h2load = pytest.mark.skipif(
    H2LOAD is None, reason="h2load is not installed (Debian package 'nghttp2-client')"
)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Certs]:
    yield Certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(params=["tls", "h2c"])
def transport(request: pytest.FixtureRequest) -> str:
    """HTTP/2 over TLS (ALPN h2), or over cleartext with prior knowledge."""
    return request.param


class Target:
    """Where a running server answers HTTP/2, and an httpx client that speaks only that."""

    def __init__(self, base_url: str, port: int, client: httpx.AsyncClient) -> None:
        self.base_url = base_url
        self.port = port
        self.client = client


@contextlib.asynccontextmanager
async def serving(app: Any, transport: str, certs: Certs, **settings: Any) -> AsyncIterator[Target]:
    """``app`` on a fresh server, and an HTTP/2 client for ``transport``."""
    if transport == "tls":
        settings = certs.settings(**settings)
        client = httpx.AsyncClient(http2=True, verify=certs.client_context())
    else:
        client = httpx.AsyncClient(http1=False, http2=True)
    scheme = "https" if transport == "tls" else "http"
    async with running_server(app, **settings) as server, client:
        yield Target(f"{scheme}://127.0.0.1:{server.port}", server.port, client)


def assert_http2_scope(scope: dict, port: int) -> None:
    """What every HTTP/2 request's scope must say (``scope`` as apps.show_scope sends it)."""
    assert scope["http_version"] == "2"
    names = [name for name, _ in scope["headers"]]
    assert not [name for name in names if name.startswith(":")], names
    assert names.count("host") == 1, names
    assert ["host", f"127.0.0.1:{port}"] in scope["headers"]
    assert scope["server"] == ["127.0.0.1", port]


async def test_scope_of_an_http2_request(transport: str, certs: Certs) -> None:
    async with serving(apps.show_scope, transport, certs) as target:
        response = await target.client.get(
            f"{target.base_url}/caf%C3%A9/a?x=1", headers={"X-Custom": "Value"}
        )
    assert response.http_version == "HTTP/2"
    assert response.status_code == 200
    scope = response.json()
    assert_http2_scope(scope, target.port)
    assert scope["type"] == "http"
    assert scope["method"] == "GET"
    assert scope["scheme"] == ("https" if transport == "tls" else "http")
    assert scope["path"] == "/café/a"
    assert scope["raw_path"] == "/caf%C3%A9/a"
    assert scope["query_string"] == "x=1"
    assert ["x-custom", "Value"] in scope["headers"]


async def test_concurrent_requests_share_one_connection(transport: str, certs: Certs) -> None:
    """Ten requests are in the app at once, and all came over the same connection."""
    count = 10
    arrived: list[list] = []
    all_in = trio.Event()

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        if scope["path"] == "/together":
            arrived.append(scope["client"])
            if len(arrived) == count:
                all_in.set()
            # A server that handled one stream at a time would never get here for the rest.
            await all_in.wait()
        await apps.hello(scope, receive, send)

    async with serving(app, transport, certs) as target:
        # One request first, so the client has its connection before the others start.
        assert (await target.client.get(f"{target.base_url}/")).http_version == "HTTP/2"
        responses: list[httpx.Response] = []

        async def get() -> None:
            responses.append(await target.client.get(f"{target.base_url}/together"))

        with trio.fail_after(BOUND):
            async with trio.open_nursery() as nursery:
                for _ in range(count):
                    nursery.start_soon(get)
    assert [r.status_code for r in responses] == [200] * count
    assert {r.http_version for r in responses} == {"HTTP/2"}
    assert [r.text for r in responses] == ["hello"] * count
    assert len({tuple(client) for client in arrived}) == 1, arrived


async def test_a_large_request_body_is_echoed(transport: str, certs: Certs) -> None:
    body = random.Random(8441).randbytes(5 * 1024 * 1024)
    async with serving(apps.echo, transport, certs) as target:
        with trio.fail_after(BOUND):
            response = await target.client.post(f"{target.base_url}/echo", content=body)
    assert response.http_version == "HTTP/2"
    assert response.status_code == 200
    assert len(response.content) == len(body)
    assert response.content == body


async def test_a_streamed_response_arrives_piece_by_piece(transport: str, certs: Certs) -> None:
    """The app sends the rest only once the client has read the first piece."""
    app = apps.PieceByPiece()
    async with serving(app, transport, certs) as target:
        with trio.fail_after(BOUND):
            async with target.client.stream("GET", f"{target.base_url}/stream") as response:
                received = await app.read(response)
    assert response.http_version == "HTTP/2"
    # HTTP/2 frames the body itself: no chunked coding, no connection-specific header.
    assert "transfer-encoding" not in response.headers
    assert "connection" not in response.headers
    assert received == app.whole


async def _curl(*args: str) -> str:
    """The ``%{http_version}`` curl reports for the transfer it made with ``args``."""
    assert CURL is not None
    with trio.fail_after(BOUND):
        done = await trio.run_process(
            [CURL, "--silent", "--show-error", "--max-time", "30", "-w", "%{http_version}", *args],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout.decode()


@needs_curl
@pytest.mark.parametrize(
    ("transport", "flag"),
    [("tls", "--http2"), ("h2c", "--http2-prior-knowledge"), ("h2c", "--http2")],
    ids=["tls-alpn", "prior-knowledge", "upgrade"],
)
async def test_curl_speaks_http2(transport: str, flag: str, certs: Certs, tmp_path: Path) -> None:
    body_path = tmp_path / "body.json"
    async with serving(apps.show_scope, transport, certs) as target:
        tls = ["--cacert", certs.cafile] if transport == "tls" else []
        version = await _curl(flag, *tls, "-o", str(body_path), f"{target.base_url}/curl?q=2")
    assert version == "2"
    scope = json.loads(body_path.read_text())
    assert scope["path"] == "/curl"
    assert scope["query_string"] == "q=2"
    names = [name for name, _ in scope["headers"]]
    assert not [name for name in names if name.startswith(":")], names
    assert ["host", f"127.0.0.1:{target.port}"] in scope["headers"]
    if flag != "--http2" or transport == "tls":
        # (The request that carries an Upgrade: h2c was sent as HTTP/1.1.)
        assert_http2_scope(scope, target.port)


async def test_with_http2_off_tls_and_cleartext_stay_http11(certs: Certs) -> None:
    async with running_server(apps.show_scope, http2=False, **certs.settings()) as server:
        async with httpx.AsyncClient(http2=True, verify=certs.client_context()) as client:
            response = await client.get(f"https://127.0.0.1:{server.port}/")
        assert response.http_version == "HTTP/1.1"
        assert response.json()["http_version"] == "1.1"
        context = certs.client_context()
        context.set_alpn_protocols(["h2", "http/1.1"])
        stream = trio.SSLStream(await server.connect(), context, server_hostname="127.0.0.1")
        with trio.fail_after(BOUND):
            await stream.do_handshake()
        assert stream.selected_alpn_protocol() == "http/1.1"
        await stream.aclose()
    async with running_server(apps.show_scope, http2=False) as server:
        assert await _refused_preface(await server.connect())
        if CURL is not None:  # the upgrade is declined: the answer comes in HTTP/1.1
            version = await _curl("--http2", "-o", "/dev/null", f"{server.url}/")
            assert version == "1.1"


async def _refused_preface(stream: trio.abc.Stream) -> bool:
    """Whether the connection preface got an HTTP/1.1 error answer rather than SETTINGS."""
    await stream.send_all(PREFACE)
    answer = b""
    with trio.fail_after(BOUND):
        # A status line's first 13 bytes, or the 9-byte head of a SETTINGS frame and more.
        while len(answer) < 13:
            chunk = await stream.receive_some(65536)
            if not chunk:
                break
            answer += chunk
    await trio.aclose_forcefully(stream)
    assert re.match(rb"HTTP/1\.1 [45]\d\d ", answer), answer[:100]
    return True


BODY_EVENTS = (h2.events.DataReceived, h2.events.StreamEnded)


class RawH2:
    """A minimal HTTP/2 client on the h2 library: frames, not requests."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        config = h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        self.conn = h2.connection.H2Connection(config)
        self.events: list[h2.events.Event] = []

    async def start(self) -> dict[int, int]:
        """Send the preface; the settings the server's first SETTINGS frame carried."""
        self.conn.initiate_connection()
        await self.flush()
        changed = await self.next_event(h2.events.RemoteSettingsChanged)
        return {int(code): setting.new_value for code, setting in changed.changed_settings.items()}

    async def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            await self.stream.send_all(data)

    async def next_event(self, kind: type, stream_id: int | None = None) -> Any:
        """The next event of type ``kind`` (on ``stream_id``), reading as much as it takes."""
        with trio.fail_after(BOUND):
            while True:
                for i, event in enumerate(self.events):
                    if isinstance(event, kind) and (
                        stream_id is None or getattr(event, "stream_id", None) == stream_id
                    ):
                        del self.events[i]
                        return event
                data = await self.stream.receive_some(65536)
                assert data, f"the server closed the connection; still waiting for {kind}"
                events = self.conn.receive_data(data)
                for event in events:
                    if isinstance(event, h2.events.DataReceived):
                        # Read as soon as it arrives: the server may send more at once.
                        self.conn.acknowledge_received_data(
                            event.flow_controlled_length, event.stream_id
                        )
                self.events += events
                await self.flush()

    async def send_data(self, stream_id: int, data: bytes) -> None:
        """``data`` on ``stream_id`` in as many DATA frames as flow control allows."""
        while data:
            window = self.conn.local_flow_control_window(stream_id)
            if not window:
                await self.next_event(h2.events.WindowUpdated)
                continue
            size = min(window, self.conn.max_outbound_frame_size, len(data))
            self.conn.send_data(stream_id, data[:size])
            data = data[size:]
            await self.flush()

    async def get(self, authority: str, path: str = "/") -> tuple[dict[str, str], bytes]:
        stream_id = self.conn.get_next_available_stream_id()
        headers = [(":method", "GET"), (":scheme", "http"), (":authority", authority)]
        self.conn.send_headers(stream_id, [*headers, (":path", path)], end_stream=True)
        await self.flush()
        response = await self.next_event(h2.events.ResponseReceived, stream_id)
        body = b""
        while not response.stream_ended:
            event = await self.next_event(
                (h2.events.DataReceived, h2.events.StreamEnded), stream_id
            )
            if isinstance(event, h2.events.StreamEnded):
                break
            body += event.data
        return dict(response.headers), body


async def test_command_line_limits_are_the_advertised_settings(tmp_path: Path) -> None:
    limits = [
        *("--h2-max-concurrent-streams", "7"),
        *("--h2-initial-window-size", "100000"),
        *("--h2-max-inbound-frame-size", "32768"),
        *("--h2-max-header-list-size", "20000"),
    ]
    async with server_process(tmp_path, "tests.apps:hello", "--http2", *limits) as server:
        port = await server.port()
        client = RawH2(await trio.open_tcp_stream("127.0.0.1", port))
        async with client.stream:
            settings = await client.start()
            headers, body = await client.get(f"127.0.0.1:{port}")
    codes = h2.settings.SettingCodes
    assert settings[codes.MAX_CONCURRENT_STREAMS] == 7
    assert settings[codes.INITIAL_WINDOW_SIZE] == 100000
    assert settings[codes.MAX_FRAME_SIZE] == 32768
    assert settings[codes.MAX_HEADER_LIST_SIZE] == 20000
    assert headers[":status"] == "200"
    assert body == b"hello"


async def test_no_http2_flag_refuses_the_preface(tmp_path: Path) -> None:
    async with server_process(tmp_path, "tests.apps:hello", "--no-http2") as server:
        port = await server.port()
        assert await _refused_preface(await trio.open_tcp_stream("127.0.0.1", port))


async def test_websocket_over_an_http2_stream(transport: str, certs: Certs) -> None:
    """RFC 8441: a CONNECT with ``:protocol websocket``, then WebSocket frames in DATA frames."""
    recorder = ws_apps.Recorder()
    app = ws_apps.echo_app(recorder, subprotocol="chat")
    settings = certs.settings() if transport == "tls" else {}
    async with running_server(app, **settings) as server:
        stream: trio.abc.Stream = await server.connect()
        if transport == "tls":
            context = certs.client_context()
            context.set_alpn_protocols(["h2"])
            stream = trio.SSLStream(stream, context, server_hostname="127.0.0.1")
        client = RawH2(stream)
        settings_seen = await client.start()
        assert settings_seen.get(h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL) == 1
        stream_id = client.conn.get_next_available_stream_id()
        authority = f"127.0.0.1:{server.port}"
        client.conn.send_headers(
            stream_id,
            [
                (":method", "CONNECT"),
                (":protocol", "websocket"),
                (":scheme", "https" if transport == "tls" else "http"),
                (":path", "/chat?room=1"),
                (":authority", authority),
                ("sec-websocket-version", "13"),
                ("sec-websocket-protocol", "chat"),
            ],
        )
        await client.flush()
        response = await client.next_event(h2.events.ResponseReceived, stream_id)
        assert dict(response.headers)[":status"] == "200"
        assert dict(response.headers).get("sec-websocket-protocol") == "chat"
        frames = FrameProtocol(client=True, extensions=[])
        echoed = []
        for message in ("hello", "x" * 70000):
            await client.send_data(stream_id, bytes(frames.send_data(message)))
            text = ""
            while True:
                event = await client.next_event(h2.events.DataReceived, stream_id)
                frames.receive_bytes(event.data)
                done = False
                for frame in frames.received_frames():
                    assert frame.opcode in (Opcode.TEXT, Opcode.CONTINUATION)
                    text += frame.payload
                    done = frame.frame_finished and frame.message_finished
                if done:
                    break
            echoed.append(text)
        await client.send_data(stream_id, bytes(frames.close(1000, "done")))
        closing = await client.next_event(h2.events.DataReceived, stream_id)
        frames.receive_bytes(closing.data)
        assert [frame.opcode for frame in frames.received_frames()] == [Opcode.CLOSE]
        # The server ends its half with END_STREAM, an orderly close (RFC 8441 section 5)...
        await client.next_event(h2.events.StreamEnded, stream_id)
        try:
            client.conn.end_stream(stream_id)
        except h2.exceptions.StreamClosedError:
            # ...and may then tell us, with RST_STREAM NO_ERROR, that it needs nothing
            # more from ours (RFC 9113 section 8.1).
            reset = await client.next_event(h2.events.StreamReset, stream_id)
            assert reset.error_code == h2.errors.ErrorCodes.NO_ERROR
        else:
            await client.flush()
        await trio.aclose_forcefully(stream)
    assert echoed == ["hello", "x" * 70000]
    scope = recorder.scope
    assert scope is not None
    assert scope["type"] == "websocket"
    assert scope["http_version"] == "2"
    assert scope["scheme"] == ("wss" if transport == "tls" else "ws")
    assert scope["path"] == "/chat"
    assert scope["query_string"] == b"room=1"
    assert scope["subprotocols"] == ["chat"]
    names = [name for name, _ in scope["headers"]]
    assert not [name for name in names if name.startswith(b":")], names
    assert (b"host", authority.encode()) in [tuple(pair) for pair in scope["headers"]]
    assert recorder.disconnect is not None and recorder.disconnect["code"] == 1000


@needs_h2load
async def test_h2load_smoke(transport: str, certs: Certs) -> None:
    """2,000 requests over 4 connections, 10 streams in flight on each: every one answered."""
    assert H2LOAD is not None
    requests = 2000
    settings = certs.settings() if transport == "tls" else {}
    scheme = "https" if transport == "tls" else "http"
    async with running_server(apps.hello, **settings) as server:
        address = f"127.0.0.1:{server.port}"
        with trio.fail_after(120):
            done = await trio.run_process(
                [H2LOAD, "-n", str(requests), "-c", "4", "-m", "10", f"{scheme}://{address}/"],
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
    out = done.stdout.decode(errors="replace")
    assert done.returncode == 0, out + done.stderr.decode(errors="replace")
    protocol = re.search(r"Application protocol: (\S+)", out)
    assert protocol is not None and protocol.group(1) == ("h2" if transport == "tls" else "h2c"), (
        out
    )
    summary = re.search(r"requests: .*", out)
    assert summary is not None, out
    assert (
        f"{requests} done, {requests} succeeded, 0 failed, 0 errored, 0 timeout" in summary.group()
    ), out
    assert f"status codes: {requests} 2xx" in out, out


def _ssl_context_with_alpn(certs: Certs, protocols: list[str]) -> ssl.SSLContext:
    context = certs.client_context()
    context.set_alpn_protocols(protocols)
    return context


async def test_alpn_offers_h2_first_then_http11(certs: Certs) -> None:
    async with running_server(apps.hello, **certs.settings()) as server:
        for offered, chosen in (
            (["h2", "http/1.1"], "h2"),
            (["http/1.1", "h2"], "h2"),
            (["http/1.1"], "http/1.1"),
        ):
            stream = trio.SSLStream(
                await server.connect(),
                _ssl_context_with_alpn(certs, offered),
                server_hostname="127.0.0.1",
            )
            with trio.fail_after(BOUND):
                await stream.do_handshake()
            assert stream.selected_alpn_protocol() == chosen, offered
            await trio.aclose_forcefully(stream)


async def test_a_trusted_proxys_headers_over_http2(transport: str, certs: Certs) -> None:
    """A trusted proxy's X-Forwarded-For/-Proto are believed over HTTP/2 as over HTTP/1.1;
    a request without them keeps the peer's address."""
    async with serving(apps.show_scope, transport, certs) as target:
        proxied = await target.client.get(
            target.base_url,
            headers={"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"},
        )
        direct = await target.client.get(target.base_url)
    assert proxied.json()["client"][0] == "203.0.113.9"
    assert proxied.json()["scheme"] == "https"
    assert direct.json()["client"][0] == "127.0.0.1"
