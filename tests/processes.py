"""Running the ``trio-asgi`` command as a real process, for the supervisor and reload tests."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import trio

REPO = Path(__file__).resolve().parent.parent
POLL_SECONDS = 0.02


class ServerProcess:
    """``python -m trioasgi ARGS`` with its stderr in a file the test can poll."""

    def __init__(self, process: trio.Process, log_path: Path) -> None:
        self.process = process
        self.log_path = log_path

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def wait_for_log(self, pattern: str, count: int = 1, timeout: float = 15.0) -> list[str]:
        """The first ``count`` matches of ``pattern`` in the log, once there are that many."""
        with trio.move_on_after(timeout):
            while True:
                matches = re.findall(pattern, self.log)
                if len(matches) >= count:
                    return matches[:count]
                if self.process.returncode is not None:
                    break
                await trio.sleep(POLL_SECONDS)
        raise AssertionError(f"{pattern!r} x{count} not in the log:\n{self.log}")

    async def port(self) -> int:
        return int(
            (await self.wait_for_log(r"(?:Listening|Serving) on http://127\.0\.0\.1:(\d+)"))[0]
        )

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    async def wait(self, timeout: float = 15.0) -> int:
        with trio.fail_after(timeout):
            return await self.process.wait()

    def kill_all(self) -> None:
        """Clean-up: the whole process group, whatever state the test left it in."""
        if self.process.returncode is None:
            os.killpg(self.process.pid, signal.SIGKILL)


async def start_server(tmp_path: Path, *args: str, env: dict | None = None) -> ServerProcess:
    log_path = tmp_path / "server.log"
    log = log_path.open("wb")
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "trioasgi", *args, "--host", "127.0.0.1", "--port", "0"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=log,
        start_new_session=True,
        env={**os.environ, **(env or {})},
    )
    log.close()
    return ServerProcess(process, log_path)


@contextlib.asynccontextmanager
async def server_process(tmp_path: Path, *args: str, env: dict | None = None):
    server = await start_server(tmp_path, *args, env=env)
    try:
        yield server
    finally:
        server.kill_all()
        with trio.move_on_after(5):
            await server.process.wait()
