"""``make run`` serves where ``HOST=`` and ``PORT=`` say."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.processes import REPO


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_run_takes_host_and_port() -> None:
    def command(*assignments: str) -> str:
        result = subprocess.run(
            ["make", "-n", "run", *assignments],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        )
        return result.stdout.strip().splitlines()[-1]

    assert command().endswith("--host 127.0.0.1 --port 8000")
    assert command("PORT=9123", "HOST=0.0.0.0").endswith("--host 0.0.0.0 --port 9123")
