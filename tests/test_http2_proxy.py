"""Behind a real Caddy speaking HTTP/2 over cleartext (h2c) to trio-asgi.

Caddy (Debian package ``caddy``, installed by ``.ci/run``) runs in the
foreground from a Caddyfile written to a temporary directory, listening on a
free loopback port with ``reverse_proxy h2c://`` to the server. A request, a
streamed response and an upload of a few MiB pass through it, and the app
sees ``http_version`` "2" for each: Caddy's leg to the app was HTTP/2 (with
the ``h2c://`` upstream it cannot fall back to HTTP/1.1).
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import trio

from tests import apps
from tests.conftest import running_server
from tests.http2_gate import needs_http2

CADDY = shutil.which("caddy")

pytestmark = [
    needs_http2,
    pytest.mark.skipif(CADDY is None, reason="caddy is not installed (.ci/run installs it)"),
]

#: Caddy 2.6's syntax. No admin endpoint and no automatic HTTPS: nothing but
#: the one proxy listens. ``flush_interval -1`` passes each piece of a
#: response on as it comes (Caddy already does for one without a length).
CADDYFILE = """\
{{
\tadmin off
\tauto_https off
}}

http://127.0.0.1:{port} {{
\treverse_proxy h2c://127.0.0.1:{upstream} {{
\t\tflush_interval -1
\t}}
}}
"""
#: Far past what any exchange here takes on a loaded machine: only a hang reaches it.
BOUND = 60


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.asynccontextmanager
async def caddy(tmp: Path, upstream: int) -> AsyncIterator[str]:
    """Caddy in the foreground proxying to ``upstream`` over h2c; yields its base URL."""
    port = _free_port()
    caddyfile = tmp / "Caddyfile"
    caddyfile.write_text(CADDYFILE.format(port=port, upstream=upstream))
    # Caddy keeps state (an autosaved config, certificates) under these: not in the real home.
    env = {
        **os.environ,
        "HOME": str(tmp),
        "XDG_CONFIG_HOME": str(tmp / "config"),
        "XDG_DATA_HOME": str(tmp / "data"),
    }
    log_path = tmp / "caddy.log"
    assert CADDY is not None
    with log_path.open("wb") as log:
        process = await trio.lowlevel.open_process(
            [CADDY, "run", "--config", str(caddyfile), "--adapter", "caddyfile"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=env,
        )
    try:
        await _wait_until_listening(port, process, log_path)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        with trio.move_on_after(10):
            await process.wait()
        if process.returncode is None:
            process.kill()
            await process.wait()


async def _wait_until_listening(port: int, process: trio.Process, log: Path) -> None:
    """Caddy has no readiness signal but its log: poll its port, a bounded number of times."""
    for _ in range(400):
        if process.poll() is not None:
            pytest.fail(f"caddy exited: {log.read_text(errors='replace')[-2000:]}")
        try:
            stream = await trio.open_tcp_stream("127.0.0.1", port)
        except OSError:
            await trio.sleep(0.025)
            continue
        await stream.aclose()
        return
    pytest.fail(f"caddy did not start listening: {log.read_text(errors='replace')[-2000:]}")


def recording(app, seen: list[dict]):
    """``app``, keeping every http scope it is called with."""

    async def recorded(scope, receive, send):
        if scope["type"] == "http":
            seen.append(scope)
        await app(scope, receive, send)

    return recorded


async def test_request_through_caddy_reaches_the_app_over_h2c(tmp_path: Path) -> None:
    async with (
        running_server(apps.show_scope) as server,
        caddy(tmp_path, server.port) as url,
        httpx.AsyncClient() as client,
    ):
        with trio.fail_after(BOUND):
            response = await client.get(f"{url}/through?x=1", headers={"X-Custom": "Value"})
    assert response.status_code == 200, response.text
    scope = response.json()
    assert scope["http_version"] == "2"
    assert scope["path"] == "/through"
    assert scope["query_string"] == "x=1"
    names = [name for name, _ in scope["headers"]]
    assert not [name for name in names if name.startswith(":")], names
    # Caddy sends the client's Host on as the :authority, and the app sees it as host.
    assert names.count("host") == 1, names
    assert ["host", url.removeprefix("http://")] in scope["headers"]
    assert ["x-custom", "Value"] in scope["headers"]
    assert "x-forwarded-for" in names


async def test_a_streamed_response_passes_through_caddy(tmp_path: Path) -> None:
    """The app sends the rest only once the client, behind Caddy, has read the first piece."""
    app = apps.PieceByPiece()
    seen: list[dict] = []
    async with (
        running_server(recording(app, seen)) as server,
        caddy(tmp_path, server.port) as url,
        httpx.AsyncClient() as client,
    ):
        with trio.fail_after(BOUND):
            async with client.stream("GET", f"{url}/stream") as response:
                received = await app.read(response)
    assert response.status_code == 200
    assert received == app.whole
    assert [scope["http_version"] for scope in seen] == ["2"]


async def test_an_upload_passes_through_caddy(tmp_path: Path) -> None:
    body = random.Random(2).randbytes(4 * 1024 * 1024)
    seen: list[dict] = []
    async with (
        running_server(recording(apps.echo, seen)) as server,
        caddy(tmp_path, server.port) as url,
        httpx.AsyncClient() as client,
    ):
        with trio.fail_after(BOUND):
            response = await client.post(f"{url}/upload", content=body)
    assert response.status_code == 200
    assert response.content == body
    assert [scope["http_version"] for scope in seen] == ["2"]
    assert [scope["method"] for scope in seen] == ["POST"]
