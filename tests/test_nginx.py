"""Behind a real nginx: what the app sees when a reverse proxy terminates TLS in front of us.

nginx (Debian package ``nginx``, installed by ``.ci/run``) runs in the
foreground from a configuration written to a temporary directory, listening
with TLS on a free loopback port, and proxies ``/api/`` to trio-asgi over TCP
and over a unix socket. The client connects from 127.0.0.2, so the address
the app sees can only have come from ``X-Forwarded-For``.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import trio
import trustme
from trio_websocket import open_websocket_url

from tests import apps
from tests.conftest import running_server

NGINX = shutil.which("nginx") or next(
    (path for path in ("/usr/sbin/nginx",) if Path(path).exists()), None
)
CLIENT_ADDRESS = "127.0.0.2"

pytestmark = pytest.mark.skipif(
    NGINX is None, reason="nginx is not installed (.ci/run installs it)"
)

NGINX_CONF = """
daemon off;
master_process off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    map $http_upgrade $connection_upgrade {{
        default upgrade;
        ''      close;
    }}
    {servers}
}}
"""

NGINX_SERVER = """
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {tmp}/server.pem;
        ssl_certificate_key {tmp}/server.key;
        location /api/ {{
            proxy_pass http://{upstream}/;
            proxy_http_version 1.1;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
        }}
    }}
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _can_bind(address: str) -> bool:
    try:
        with socket.socket() as sock:
            sock.bind((address, 0))
    except OSError:
        return False
    return True


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@contextlib.asynccontextmanager
async def nginx(tmp: Path, ca: trustme.CA, upstreams: list[str]) -> AsyncIterator[list[int]]:
    """nginx in the foreground, one TLS port per upstream; yields the ports."""
    cert = ca.issue_cert("127.0.0.1")
    cert.cert_chain_pems[0].write_to_path(str(tmp / "server.pem"))
    cert.private_key_pem.write_to_path(str(tmp / "server.key"))
    ports = [_free_port() for _ in upstreams]
    servers = "".join(
        NGINX_SERVER.format(port=port, upstream=upstream, tmp=tmp)
        for port, upstream in zip(ports, upstreams, strict=True)
    )
    (tmp / "nginx.conf").write_text(NGINX_CONF.format(tmp=tmp, servers=servers))
    assert NGINX is not None
    process = subprocess.Popen(
        [NGINX, "-p", str(tmp), "-c", str(tmp / "nginx.conf"), "-e", str(tmp / "error.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        await _wait_until_listening(ports, process, tmp)
        yield ports
    finally:
        process.terminate()
        process.wait(timeout=10)


async def _wait_until_listening(ports: list[int], process: subprocess.Popen, tmp: Path) -> None:
    """nginx has no readiness signal: poll its ports, a bounded number of times."""
    for _ in range(400):
        if process.poll() is not None:
            pytest.fail(f"nginx exited: {(tmp / 'error.log').read_text()}")
        try:
            for port in ports:
                stream = await trio.open_tcp_stream("127.0.0.1", port)
                await stream.aclose()
            return
        except OSError:
            await trio.sleep(0.025)
    pytest.fail("nginx did not start listening")


@contextlib.asynccontextmanager
async def client_via_nginx(
    ca: trustme.CA, source: str | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    transport = httpx.AsyncHTTPTransport(verify=context, local_address=source)
    async with httpx.AsyncClient(transport=transport) as client:
        yield client


@pytest.mark.skipif(not _can_bind(CLIENT_ADDRESS), reason=f"cannot bind {CLIENT_ADDRESS}")
async def test_app_behind_nginx_sees_the_real_client_scheme_and_root_path(
    tmp_path: Path, ca: trustme.CA
) -> None:
    uds = str(tmp_path / "app.sock")
    settings = {
        "bind": ["127.0.0.1:0", f"unix:{uds}"],
        "root_path": "/api",
        "forwarded_allow_ips": f"127.0.0.1,{uds}",
    }
    async with running_server(apps.show_scope, **settings) as server:
        upstreams = [f"127.0.0.1:{server.port}", f"unix:{uds}:"]
        async with (
            nginx(tmp_path, ca, upstreams) as (tcp_port, unix_port),
            client_via_nginx(ca, CLIENT_ADDRESS) as client,
        ):
            tcp_scope, unix_scope = [
                await _get_scope(client, f"https://127.0.0.1:{port}/api/items?x=1")
                for port in (tcp_port, unix_port)
            ]
    assert tcp_scope["server"] == ["127.0.0.1", server.port]
    assert unix_scope["server"] == [uds, None]
    for scope in (tcp_scope, unix_scope):
        assert scope["client"] == [CLIENT_ADDRESS, 0]
        assert scope["scheme"] == "https"
        assert scope["root_path"] == "/api"
        assert scope["path"] == "/api/items"
        assert scope["query_string"] == "x=1"


async def _get_scope(client: httpx.AsyncClient, url: str) -> dict:
    # Made up by the client: nginx appends the real address after it.
    response = await client.get(url, headers={"X-Forwarded-For": "6.6.6.6"})
    assert response.status_code == 200, response.text
    return response.json()


async def test_untrusted_proxy_headers_through_nginx_are_ignored(
    tmp_path: Path, ca: trustme.CA
) -> None:
    """The same set-up, but nginx is not a trusted proxy: the app sees nginx's address."""
    async with (
        running_server(apps.show_scope, forwarded_allow_ips="192.0.2.1") as server,
        nginx(tmp_path, ca, [f"127.0.0.1:{server.port}"]) as (port,),
        client_via_nginx(ca) as client,
    ):
        scope = (await client.get(f"https://127.0.0.1:{port}/api/")).json()
    assert scope["client"][0] == "127.0.0.1"
    assert scope["client"][1] != 0
    assert scope["scheme"] == "http"


async def test_request_body_and_streamed_response_pass_through_nginx(
    tmp_path: Path, ca: trustme.CA
) -> None:
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        body, _ = await apps.read_body(receive)
        await apps.start(send, 200)
        for part in body.split(b" "):
            await send({"type": "http.response.body", "body": part + b"|", "more_body": True})
            await trio.sleep(0)
        await send({"type": "http.response.body", "body": b""})

    async with (
        running_server(app) as server,
        nginx(tmp_path, ca, [f"127.0.0.1:{server.port}"]) as (port,),
        client_via_nginx(ca) as client,
    ):
        response = await client.post(
            f"https://127.0.0.1:{port}/api/", content=b"one two three " * 1000
        )
    assert response.status_code == 200
    assert response.content == b"one|two|three|" * 1000 + b"|"


async def test_websocket_through_nginx_sees_wss_and_the_real_client(
    tmp_path: Path, ca: trustme.CA
) -> None:
    """nginx upgrades the connection; the app sees wss and the client nginx reports."""

    async def app(scope, receive, send):
        if scope["type"] != "websocket":
            return
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": json.dumps(scope_summary(scope))})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            await send({"type": "websocket.send", "text": message["text"].upper()})

    def scope_summary(scope: dict) -> dict:
        return {"scheme": scope["scheme"], "client": scope["client"], "path": scope["path"]}

    context = ssl.create_default_context()
    ca.configure_trust(context)
    async with (
        running_server(app, root_path="/api") as server,
        nginx(tmp_path, ca, [f"127.0.0.1:{server.port}"]) as (port,),
        open_websocket_url(f"wss://127.0.0.1:{port}/api/chat", ssl_context=context) as ws,
    ):
        seen = json.loads(await ws.get_message())
        await ws.send_message("through the proxy")
        assert await ws.get_message() == "THROUGH THE PROXY"
    assert seen["scheme"] == "wss"
    assert seen["client"][0] == "127.0.0.1" and seen["client"][1] == 0
    assert seen["path"] == "/api/chat"
