"""Every setting is checked before anything listens, with workers and reload too."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.processes import REPO

HANG_GUARD = 20


def trio_asgi(*args: str, env: dict | None = None, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "trioasgi", *args, "--port", "0"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
        env=env,
    )


def test_workers_with_a_missing_certificate_fail_before_listening(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    result = trio_asgi("tests.apps:hello", "--workers", "2", "--ssl-certfile", str(missing))
    assert result.returncode == 1
    assert result.stderr == (
        f"trio-asgi: error: could not load the TLS certificate {missing}: "
        "no such file or directory.\n"
    )


def test_workers_with_an_app_module_that_does_not_exist_fail_before_listening() -> None:
    result = trio_asgi("tests.no_such_module:app", "--workers", "2")
    assert result.returncode == 1
    assert result.stderr == 'trio-asgi: error: could not import module "tests.no_such_module".\n'


def test_workers_that_cannot_start_say_why_the_supervisor_stopped() -> None:
    result = trio_asgi("tests.apps:missing", "--workers", "2")
    assert result.returncode == 1
    assert 'attribute "missing" not found' in result.stderr
    assert result.stderr.endswith(
        "trio-asgi: error: the workers could not start (see above): stopped.\n"
    )


def test_reload_without_watchfiles_fails_before_listening(tmp_path: Path) -> None:
    # A watchfiles that cannot be imported, found before the real one.
    (tmp_path / "watchfiles.py").write_text("raise ImportError('not installed')\n")
    env = {"PYTHONPATH": f"{tmp_path}:{REPO}", "PATH": "/usr/bin:/bin"}
    result = trio_asgi("tests.apps:hello", "--reload", env=env)
    assert result.returncode == 1
    assert "Listening" not in result.stderr
    assert result.stderr == (
        "trio-asgi: error: --reload needs the watchfiles package: "
        "pip install 'trio-asgi[reload]'.\n"
    )


def test_reload_watches_the_app_directory_by_default(tmp_path: Path) -> None:
    pytest.importorskip("watchfiles")
    from trioasgi import Config
    from trioasgi.cli.reload import Reloader

    reloader = Reloader("app:app", Config(reload=True, app_dir=str(tmp_path)), [])
    assert reloader.directories == [str(tmp_path.resolve())]
    explicit = Reloader("app:app", Config(reload=True, reload_dirs=["src"]), [])
    assert explicit.directories == [str(Path("src").resolve())]
