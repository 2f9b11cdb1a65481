"""--reload: a change to a watched source file is served without restarting by hand."""

from __future__ import annotations

import signal

import httpx
import pytest
import trio

from tests.processes import server_process
from trioasgi.cli.reload import make_filter

pytest.importorskip("watchfiles")

APP_SOURCE = """
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = b"{version}"
    await send({{"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())]}})
    await send({{"type": "http.response.body", "body": body}})
"""


async def test_a_changed_source_file_is_served(tmp_path) -> None:
    source_dir = tmp_path / "src"
    source_dir.mkdir()
    module = source_dir / "reloadable_app.py"
    module.write_text(APP_SOURCE.format(version="v1"))
    async with server_process(
        tmp_path,
        "reloadable_app:app",
        "--reload",
        "--reload-dir",
        str(source_dir),
        "--app-dir",
        str(source_dir),
        # v1 and v2 have the same size: a .pyc written in the same second would look fresh.
        env={"PYTHONDONTWRITEBYTECODE": "1"},
    ) as server:
        url = f"http://127.0.0.1:{await server.port()}/"
        await server.wait_for_log("Watching for changes")
        async with httpx.AsyncClient() as client:
            await server.wait_for_log("Serving on")
            # Every request on a new connection: a pooled keep-alive connection
            # would be closed by the old server as it stops, perhaps just as the
            # client sends on it (a race any HTTP/1.1 client must retry).
            close = {"connection": "close"}
            assert (await client.get(url, headers=close)).text == "v1"
            (source_dir / "notes.txt").write_text("not a source file")
            # The watcher may still be setting up while the first server
            # starts: write again (a bounded number of times) until it notices.
            for _ in range(10):
                module.write_text(APP_SOURCE.format(version="v2"))
                with trio.move_on_after(1):
                    await server.wait_for_log("Detected changes in reloadable_app.py")
                    break
            body = ""
            with trio.fail_after(10):
                while body != "v2":
                    body = (await client.get(url, headers=close)).text
        assert "notes.txt" not in server.log
        server.signal(signal.SIGTERM)
        assert await server.wait() == 0


def test_reload_filter_includes_and_excludes(tmp_path) -> None:
    from watchfiles import Change

    watch = make_filter(["*.py", "*.html"], [".*", "*_test.py"])
    assert watch(Change.modified, str(tmp_path / "app.py"))
    assert watch(Change.modified, str(tmp_path / "page.html"))
    assert not watch(Change.modified, str(tmp_path / "notes.txt"))
    assert not watch(Change.modified, str(tmp_path / "app_test.py"))
    assert not watch(Change.modified, str(tmp_path / ".hidden.py"))
