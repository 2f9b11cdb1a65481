"""How the command line ends: a failed startup, a forced shutdown, each in a few plain lines."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

HANG_GUARD = 20

STARLETTE_APP = """
import contextlib

import trio
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route


@contextlib.asynccontextmanager
async def failing(app):
    raise RuntimeError("database is down")
    yield


async def slow(request):
    print("in the handler", flush=True)
    await trio.sleep_forever()
    return PlainTextResponse("never")


bad = Starlette(lifespan=failing)
good = Starlette(routes=[Route("/slow", slow)])
"""


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "starlette_app.py").write_text(textwrap.dedent(STARLETTE_APP))
    return tmp_path


def trio_asgi(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "trioasgi", *args, "--port", "0"],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def read_until(stream, words: str) -> list[str]:
    """Lines up to the first one containing ``words`` (which must come)."""
    lines = []
    for line in stream:
        lines.append(line)
        if words in line:
            return lines
    raise AssertionError(f"{words!r} never came: {''.join(lines)}")


def test_a_starlette_startup_failure_prints_its_traceback_once(app_dir: Path) -> None:
    process = trio_asgi("starlette_app:bad", cwd=app_dir)
    _, stderr = process.communicate(timeout=HANG_GUARD)
    assert process.returncode == 3
    assert stderr.count("Traceback") == 1
    assert stderr.count('raise RuntimeError("database is down")') == 1
    lines = stderr.splitlines()
    assert lines[-1] == (
        "trio-asgi: error: application startup failed: RuntimeError: database is down."
    )
    assert "." not in [line.strip() for line in lines]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_second_signal_forces_the_stop_and_says_so(app_dir: Path, signum: int) -> None:
    process = trio_asgi("starlette_app:good", "--timeout-graceful-shutdown", "none", cwd=app_dir)
    try:
        url = read_until(process.stderr, "Serving on")[-1].split("Serving on ")[1].split()[0]
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))) as client:
            client.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
            assert process.stdout.readline() == "in the handler\n"
            process.send_signal(signum)
            read_until(process.stderr, "shutting down gracefully")
            process.send_signal(signum)
            _, stderr = process.communicate(timeout=HANG_GUARD)
    finally:
        process.kill()
    assert process.returncode == 128 + signum
    assert "Exception" not in stderr and "Traceback" not in stderr
    name = signal.Signals(signum).name
    [forced] = [line for line in stderr.splitlines() if "shutdown forced" in line]
    assert forced == (
        f"WARNING: Received {name} again: shutdown forced, exiting now; cut short: "
        "1 open connection(s) and the application's lifespan shutdown"
    )
    assert '"GET /slow HTTP/1.1" 444 No Response 0B' in stderr
    assert "(cut short: cancelled)" in stderr
