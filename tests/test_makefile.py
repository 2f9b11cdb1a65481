"""``make run`` serves where ``HOST=`` and ``PORT=`` say."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.processes import REPO


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_run_takes_host_and_port() -> None:
    def command(*assignments: str) -> str:
        # Not the settings of a make that runs these tests (make test).
        env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
        result = subprocess.run(
            ["make", "-n", "--no-print-directory", "run", *assignments],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
            env=env,
        )
        [line] = [line for line in result.stdout.splitlines() if "bin/trio-asgi " in line]
        return line

    assert command().endswith("--host 127.0.0.1 --port 8000")
    assert command("PORT=9123", "HOST=0.0.0.0").endswith("--host 0.0.0.0 --port 9123")
