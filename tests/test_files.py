"""Files as response bodies (``http.response.pathsend``, ``http.response.zerocopysend``).

End to end over loopback sockets (``os.sendfile``), over TLS (chunks read
in a worker thread) and over memory streams (the same chunked path), with
Starlette's ``FileResponse`` and ``StaticFiles`` (ranges included) and with
raw apps: offsets, counts, chunked framing, a file that is missing or ends
early, and a client that leaves in the middle of a file.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import FileResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from tests.conftest import exchange, read_until_closed, running_server

pytestmark = pytest.mark.usefixtures("http_parser")

CONTENT = bytes(range(256)) * 4096 + b"tail"  # 1 MiB and a bit: more than one socket buffer


@pytest.fixture
def data_file(tmp_path: Path) -> Path:
    path = tmp_path / "data.bin"
    path.write_bytes(CONTENT)
    return path


class Recorder:
    """Wraps an app, keeping the type of every message it sends."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.sent: list[str] = []
        self.raised: BaseException | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        async def recording_send(message: dict[str, Any]) -> None:
            self.sent.append(message["type"])
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        except BaseException as exc:
            self.raised = exc
            raise


def split_response(data: bytes) -> tuple[bytes, bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    return head, body


async def raw_request(server: Any, request: bytes) -> bytes:
    stream = await server.connect()
    await stream.send_all(request)
    return await read_until_closed(stream, limit=len(CONTENT) * 4)


# -- Starlette ------------------------------------------------------------------


async def test_starlette_file_response_goes_out_by_pathsend(data_file: Path) -> None:
    app = Recorder(Starlette(routes=[Route("/f", lambda request: FileResponse(data_file))]))
    async with running_server(app) as server, httpx.AsyncClient(base_url=server.url) as client:
        response = await client.get("/f")
        head = await client.head("/f")
    assert response.status_code == 200
    assert response.content == CONTENT
    assert response.headers["content-length"] == str(len(CONTENT))
    assert "http.response.pathsend" in app.sent
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(CONTENT))


async def test_static_files_with_ranges(data_file: Path) -> None:
    app = Starlette(routes=[Mount("/static", StaticFiles(directory=data_file.parent))])
    async with running_server(app) as server, httpx.AsyncClient(base_url=server.url) as client:
        whole = await client.get("/static/data.bin")
        one = await client.get("/static/data.bin", headers={"range": "bytes=1000-200999"})
        suffix = await client.get("/static/data.bin", headers={"range": "bytes=-4"})
        several = await client.get("/static/data.bin", headers={"range": "bytes=0-9,100-109"})
        beyond = await client.get("/static/data.bin", headers={"range": "bytes=99999999-"})
        missing = await client.get("/static/nothing.bin")
    assert whole.status_code == 200 and whole.content == CONTENT
    assert one.status_code == 206 and one.content == CONTENT[1000:201000]
    assert one.headers["content-range"] == f"bytes 1000-200999/{len(CONTENT)}"
    assert suffix.status_code == 206 and suffix.content == b"tail"
    assert several.status_code == 206
    assert CONTENT[0:10] in several.content and CONTENT[100:110] in several.content
    assert several.headers["content-type"].startswith("multipart/byteranges")
    assert beyond.status_code == 416
    assert missing.status_code == 404


async def test_file_response_over_tls(data_file: Path, tmp_path: Path) -> None:
    trustme = pytest.importorskip("trustme")
    import ssl

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_and_cert_chain_pem.write_to_path(tmp_path / "server.pem")
    context = ssl.create_default_context()
    ca.configure_trust(context)
    app = Recorder(Starlette(routes=[Route("/f", lambda request: FileResponse(data_file))]))
    settings = {"ssl_certfile": str(tmp_path / "server.pem")}
    async with (
        running_server(app, **settings) as server,
        httpx.AsyncClient(verify=context) as client,
    ):
        response = await client.get(f"https://127.0.0.1:{server.port}/f")
    assert response.content == CONTENT
    assert "http.response.pathsend" in app.sent


# -- raw apps -------------------------------------------------------------------


def zerocopy_app(path: Path, pieces: list[dict[str, Any]], headers: list[Any]) -> Any:
    """Sends ``pieces`` (zerocopysend messages, less type and file) of the file at ``path``."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert "http.response.zerocopysend" in scope["extensions"]
        with open(path, "rb") as file:
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            for piece in pieces:
                await send({"type": "http.response.zerocopysend", "file": file, **piece})

    return app


async def test_zerocopysend_offsets_counts_and_the_file_position(data_file: Path) -> None:
    pieces = [
        {"offset": 10, "count": 5, "more_body": True},
        {"count": 3, "more_body": True},  # from the position: the start
        {"count": 2, "more_body": True},  # the position moved past those 3
        {"offset": len(CONTENT) - 4, "more_body": False},  # to the end
    ]
    app = zerocopy_app(data_file, pieces, [(b"content-length", b"14")])
    async with running_server(app) as server:
        data = await raw_request(server, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, body = split_response(data)
    assert head.startswith(b"HTTP/1.1 200 ")
    assert body == CONTENT[10:15] + CONTENT[0:3] + CONTENT[3:5] + b"tail"


async def test_zerocopysend_chunked_and_the_whole_file(data_file: Path) -> None:
    app = zerocopy_app(data_file, [{"offset": 0}], [])
    async with running_server(app) as server, httpx.AsyncClient(base_url=server.url) as client:
        response = await client.get("/")
    assert response.headers["transfer-encoding"] == "chunked"
    assert response.content == CONTENT


async def test_zerocopysend_over_a_memory_stream_reads_chunks(data_file: Path) -> None:
    """A stream that is not a plain socket (as TLS) gets the bytes read in a worker thread."""
    app = zerocopy_app(data_file, [{"offset": 1}], [])
    data = await exchange(app, b"GET / HTTP/1.0\r\n\r\n")
    head, body = split_response(data)
    assert head.startswith(b"HTTP/1.1 200 ")
    assert body == CONTENT[1:]  # HTTP/1.0: the close ends the body


async def test_missing_file_is_a_500_before_the_head(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.ERROR, logger="trioasgi")

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.pathsend", "path": str(tmp_path / "gone.bin")})

    async with running_server(app) as server:
        data = await raw_request(server, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 500 ")
    assert "gone.bin" in caplog.text
    assert "Traceback" not in caplog.text


@pytest.mark.parametrize(
    "message",
    [
        {"path": "relative/file.txt"},
        {"path": b"/bytes/path"},
    ],
)
async def test_bad_pathsend_message_is_a_500(message: dict[str, Any]) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.pathsend", **message})

    data = await exchange(app, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 500 ")


async def test_directory_is_not_a_file(tmp_path: Path) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.pathsend", "path": str(tmp_path)})

    async with running_server(app) as server:
        data = await raw_request(server, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 500 ")


async def test_file_that_ends_early_closes_the_connection_after_the_head(data_file: Path) -> None:
    declared = len(CONTENT) + 100
    app = zerocopy_app(data_file, [{"offset": 0, "count": declared}], [])
    request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n"
    async with running_server(app) as server:
        data = await raw_request(server, request)
    head, _ = split_response(data)
    assert head.startswith(b"HTTP/1.1 200 ")
    assert f"{declared:x}\r\n".encode() in data
    assert not data.endswith(b"0\r\n\r\n")  # no last chunk: the client sees it cut short
    assert data.count(b"HTTP/1.1 200 ") == 1  # and the connection closed


async def test_file_closed_between_pieces_closes_the_connection(data_file: Path) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        headers = [(b"content-length", str(len(CONTENT)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        file = open(data_file, "rb")  # noqa: SIM115 (closed halfway on purpose)
        fd = file.fileno()
        piece = {"type": "http.response.zerocopysend", "file": fd}
        await send({**piece, "count": 10, "more_body": True})
        file.close()
        await send({**piece, "more_body": False})

    async with running_server(app) as server:
        data = await raw_request(server, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    head, body = split_response(data)
    assert head.startswith(b"HTTP/1.1 200 ")
    assert body == CONTENT[:10]


async def test_client_leaving_mid_file_ends_the_send(tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    with open(path, "wb") as file:
        file.truncate(256 * 1024 * 1024)  # sparse: no disk, but far more than any buffer
    app = Recorder(Starlette(routes=[Route("/big", lambda request: FileResponse(path))]))
    async with running_server(app) as server:
        stream = await server.connect()
        await stream.send_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        got = await stream.receive_some(65536)
        assert got.startswith(b"HTTP/1.1 200 ")
        await stream.aclose()
        # The server closes its side once the send fails: the test's idle
        # check (no task left but the accept loop) waits for that.
    assert isinstance(app.raised, OSError)


# -- early hints ------------------------------------------------------------------


async def early_hints_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert "http.response.early_hint" in scope["extensions"]
    await send(
        {
            "type": "http.response.early_hint",
            "links": [b"</style.css>; rel=preload; as=style", b"</app.js>; rel=preload; as=script"],
        }
    )
    headers = [(b"content-length", b"2")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"ok"})


async def test_early_hints_seen_by_a_raw_client() -> None:
    async with running_server(early_hints_app) as server:
        stream = await server.connect()
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while not data.endswith(b"ok"):
            chunk = await stream.receive_some(65536)
            assert chunk
            data += chunk
        # Still keep-alive after the interim response.
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data += await read_until_closed(stream)
    hint, _, rest = data.partition(b"\r\n\r\n")
    assert hint.split(b"\r\n") == [
        b"HTTP/1.1 103 Early Hints",
        b"link: </style.css>; rel=preload; as=style",
        b"link: </app.js>; rel=preload; as=script",
    ]
    assert rest.startswith(b"HTTP/1.1 200 ")
    assert data.count(b"HTTP/1.1 103 ") == 2


async def test_early_hints_are_not_sent_to_http_10_clients() -> None:
    data = await exchange(early_hints_app, b"GET / HTTP/1.0\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 200 ")
    assert b"103" not in data


async def test_malformed_early_hint_is_a_500() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.early_hint", "links": [b"</a>\r\nx: y"]})

    data = await exchange(app, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 500 ")


async def test_websocket_scope_offers_no_http_response_extensions() -> None:
    from trioasgi.websocket.handshake import websocket_scope

    class Conn:
        client = ("127.0.0.1", 1)
        server = ("127.0.0.1", 2)
        scheme = "http"
        tls = None
        proxy_trusted = False

        class ctx:
            class config:
                root_path = ""

            lifespan_state: dict[str, Any] = {}

    from trioasgi.asgi.request import RequestHead

    request = RequestHead(b"GET", b"/ws", b"1.1", [(b"host", b"x")])
    scope = websocket_scope(Conn(), request)  # type: ignore[arg-type]
    assert scope["extensions"] == {"websocket.http.response": {}}


def test_file_body_restores_nothing_for_pathsend(data_file: Path) -> None:
    from trioasgi.asgi.files import path_body

    body = path_body({"path": str(data_file)})
    assert (body.offset, body.count) == (0, len(CONTENT))
    body.close(0)
    with pytest.raises(OSError):
        os.fstat(body.fd)


async def test_early_hint_after_the_start_is_an_error() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.early_hint", "links": [b"</a>"]})

    data = await exchange(app, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 500 ")
