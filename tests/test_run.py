"""``trioasgi.run()``: the command line's behaviour from a script's ``__main__``."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest

import trioasgi
from tests.processes import REPO

HANG_GUARD = 20

SCRIPT = """
import trioasgi


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"from a script"})


if __name__ == "__main__":
    trioasgi.run(app, host="127.0.0.1", port=0)
    print("run() returned", flush=True)
"""


# run() sets up logging as the command line does; the other tests need theirs back.
pytestmark = pytest.mark.usefixtures("restore_logging")


def start_script(tmp_path: Path, source: str) -> subprocess.Popen:
    script = tmp_path / "serve_me.py"
    script.write_text(textwrap.dedent(source))
    return subprocess.Popen(
        [sys.executable, str(script)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def serving_url(process: subprocess.Popen) -> str:
    assert process.stderr is not None
    for line in process.stderr:
        match = re.search(r"Serving on (http://\S+)", line)
        if match:
            return match.group(1)
    raise AssertionError(f"no 'Serving on' line (exit {process.wait()})")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_run_logs_serves_and_stops_cleanly_on_a_signal(tmp_path: Path, signum: int) -> None:
    process = start_script(tmp_path, SCRIPT)
    try:
        url = serving_url(process)
        assert httpx.get(url + "/hi").text == "from a script"
        process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=HANG_GUARD)
    finally:
        process.kill()
    assert process.returncode == 0
    assert stdout == "run() returned\n"
    assert '"GET /hi HTTP/1.1" 200 OK' in stderr  # the access log is on
    assert "shutting down gracefully" in stderr
    assert "Traceback" not in stderr


def test_run_with_a_bad_setting_is_one_sentence_and_exit_2(capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        trioasgi.run(lambda *args: None, port=-1)
    assert exited.value.code == 2
    assert capsys.readouterr().err == (
        "trio-asgi: error: port must be between 0 and 65535, not -1.\n"
    )
    with pytest.raises(SystemExit) as exited:
        trioasgi.run(lambda *args: None, prot=8000)
    assert exited.value.code == 2
    assert "unknown setting 'prot'" in capsys.readouterr().err


def test_workers_need_an_import_string(capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        trioasgi.run(lambda *args: None, trioasgi.Config(workers=2))
    assert exited.value.code == 2
    assert "import string" in capsys.readouterr().err


def test_run_by_import_string_that_cannot_be_found(capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        trioasgi.run("tests.apps:missing")
    assert exited.value.code == 1
    assert capsys.readouterr().err == (
        'trio-asgi: error: attribute "missing" not found in module "tests.apps".\n'
    )
