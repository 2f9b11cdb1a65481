"""The ``trio-asgi`` command, run as a real process."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from trioasgi.cli.flags import build_parser

HANG_GUARD = 20


def trio_asgi(*args: str, cwd: Path, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "trioasgi", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "trioasgi", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
    )


def wait_for_url(process: subprocess.Popen) -> str:
    """Read stderr until the server says where it listens."""
    assert process.stderr is not None
    for line in process.stderr:
        match = re.search(r"Serving on (http://\S+)", line)
        if match:
            return match.group(1)
    raise AssertionError(f"the server never said where it listens (exit {process.wait()})")


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "myapp.py").write_text(
        textwrap.dedent(
            """
            import trio

            async def app(scope, receive, send):
                if scope["type"] == "lifespan":
                    while True:
                        message = await receive()
                        kind = message["type"].split(".")[-1]
                        await send({"type": f"lifespan.{kind}.complete"})
                        if kind == "shutdown":
                            print("lifespan shutdown ran", flush=True)
                            return
                if scope["path"] == "/slow":
                    await trio.sleep(1)
                await send({"type": "http.response.start", "status": 200, "headers": []})
                await send({"type": "http.response.body", "body": scope["path"].encode()})

            def create():
                return app

            async def failing(scope, receive, send):
                await receive()
                await send({"type": "lifespan.startup.failed", "message": "database is down"})
            """
        )
    )
    (tmp_path / "broken.py").write_text("import no_such_dependency_xyz\n")
    return tmp_path


def test_help_documents_every_flag() -> None:
    text = build_parser().format_help()
    for flag in (
        "--host",
        "--port",
        "--log-level",
        "--access-log",
        "--no-access-log",
        "--lifespan",
        "--timeout-keep-alive",
        "--timeout-graceful-shutdown",
        "--root-path",
        "--factory",
        "--app-dir",
        "--h11-max-incomplete-event-size",
    ):
        assert flag in text
    for action in build_parser()._actions:
        assert action.help, f"{action.option_strings} has no help text"


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("myapp", 'application must be given as "MODULE:ATTRIBUTE", not "myapp"'),
        ("nosuchmodule:app", 'could not import module "nosuchmodule"'),
        ("myapp:missing", 'attribute "missing" not found in module "myapp"'),
    ],
)
def test_bad_app_names_give_one_sentence(app_dir: Path, target: str, message: str) -> None:
    result = run(target, cwd=app_dir)
    assert result.returncode == 1
    assert result.stderr == f"trio-asgi: error: {message}.\n"


def test_an_import_error_inside_the_app_shows_its_traceback(app_dir: Path) -> None:
    result = run("broken:app", cwd=app_dir)
    assert result.returncode == 1
    assert "Traceback" in result.stderr
    assert "no_such_dependency_xyz" in result.stderr
    assert result.stderr.rstrip().endswith('could not load the application "broken:app".')


def test_a_bad_flag_value_is_one_line(app_dir: Path) -> None:
    result = run("myapp:app", "--port", "eighty", cwd=app_dir)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "invalid int value: 'eighty'" in result.stderr
    result = run("myapp:app", "--port", "70000", cwd=app_dir)
    assert result.returncode == 2
    assert "port must be between 0 and 65535" in result.stderr


def test_port_in_use_is_one_sentence(app_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run("myapp:app", "--port", str(port), cwd=app_dir)
    assert result.returncode == 1
    assert result.stderr.strip().endswith(
        f"trio-asgi: error: could not listen on 127.0.0.1:{port}: address already in use."
    )
    assert "Traceback" not in result.stderr


def test_lifespan_startup_failure_exits_3_with_the_message(app_dir: Path) -> None:
    result = run("myapp:failing", "--lifespan", "on", "--port", "0", cwd=app_dir)
    assert result.returncode == 3
    assert "application startup failed: database is down" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_drains_the_request_in_flight_and_exits_0(app_dir: Path, signum: int) -> None:
    process = trio_asgi("myapp:app", "--port", "0", cwd=app_dir)
    try:
        url = wait_for_url(process)
        with httpx.Client() as client:
            assert client.get(url + "/ready").text == "/ready"
            # a request that takes a second is in flight when the signal arrives
            sock = socket.create_connection(httpx.URL(url).netloc.decode().split(":"))
            sock.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
            time.sleep(0.2)
            process.send_signal(signum)
            response = sock.recv(1000)
            sock.close()
        stdout, stderr = process.communicate(timeout=HANG_GUARD)
    finally:
        process.kill()
    assert response.startswith(b"HTTP/1.1 200 OK")
    assert response.endswith(b"5\r\n/slow\r\n0\r\n\r\n")
    assert b"connection: close" in response
    assert process.returncode == 0
    assert "lifespan shutdown ran" in stdout
    assert "shutting down gracefully" in stderr


def test_second_signal_forces_exit(app_dir: Path) -> None:
    process = trio_asgi(
        "myapp:app", "--port", "0", "--timeout-graceful-shutdown", "none", cwd=app_dir
    )
    try:
        url = wait_for_url(process)
        sock = socket.create_connection(httpx.URL(url).netloc.decode().split(":"))
        sock.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=HANG_GUARD)
        sock.close()
    finally:
        process.kill()
    assert "exiting now" in stderr
    assert "lifespan shutdown ran" not in stdout


def test_factory_and_python_dash_m(app_dir: Path) -> None:
    process = trio_asgi("myapp:create", "--factory", "--port", "0", cwd=app_dir)
    try:
        url = wait_for_url(process)
        assert httpx.get(url + "/made").text == "/made"
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=HANG_GUARD)
    assert process.returncode == 0


def test_app_dir_and_console_script(app_dir: Path, tmp_path_factory) -> None:
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    script = Path(sys.executable).with_name("trio-asgi")
    if not script.exists():
        pytest.skip("the trio-asgi console script is not installed in this environment")
    process = subprocess.Popen(
        [str(script), "myapp:app", "--app-dir", str(app_dir), "--port", "0", "--no-access-log"],
        cwd=elsewhere,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        url = wait_for_url(process)
        assert httpx.get(url + "/x").text == "/x"
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=HANG_GUARD)
    assert process.returncode == 0
    assert '"GET /x' not in stderr  # --no-access-log
