"""--workers: a worker killed while the service starts is replaced; only a boot error stops it.

Workers are SIGKILLed at several points of their start-up (just spawned,
inside the app's lifespan startup, while the other worker is still starting);
the supervisor replaces each and ends with N workers answering. A worker
whose app cannot be loaded, or whose lifespan startup fails, stops the
service with its own exit status.
"""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import httpx
import pytest
import trio

from tests.processes import POLL_SECONDS, ServerProcess, server_process

APP = "tests.startup_apps:app"
WORKERS = 2
BOUND_SECONDS = 20


def _started(server: ServerProcess) -> list[int]:
    return [int(pid) for pid in re.findall(r"Started worker \[(\d+)\]", server.log)]


def _children(pid: int) -> set[int]:
    """The live (not zombie) child processes of ``pid``, from Linux's /proc."""
    children = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # "PID (COMMAND) STATE PPID ...": the command may hold spaces.
            state, ppid = stat.read_text().rsplit(")", 1)[1].split()[:2]
        except (OSError, IndexError):
            continue  # gone meanwhile
        if int(ppid) == pid and state != "Z":
            children.add(int(stat.parent.name))
    return children


async def _wait_for_file(path: Path) -> None:
    with trio.fail_after(BOUND_SECONDS):
        while not path.exists():
            await trio.sleep(POLL_SECONDS)


async def _answer(url: str) -> int:
    async with httpx.AsyncClient() as client:
        response = await client.get(url, headers={"connection": "close"})
    assert response.status_code == 200
    return int(response.text)


async def _serving_pid(url: str) -> int:
    """The pid of a worker that answers, once one does."""
    with trio.fail_after(BOUND_SECONDS):
        while True:
            try:
                return await _answer(url)
            except httpx.TransportError:
                await trio.sleep(POLL_SECONDS)


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"TEST_GATE_DIR": str(tmp_path), **extra}


@pytest.mark.parametrize("point", ["spawned", "in-lifespan-startup", "while-the-other-starts"])
async def test_a_worker_killed_during_start_up_is_replaced(tmp_path: Path, point: str) -> None:
    args = (APP, "--workers", str(WORKERS), "--lifespan", "on")
    async with server_process(tmp_path, *args, env=_env(tmp_path)) as server:
        url = f"http://127.0.0.1:{await server.port()}/"
        first, second = (int(p) for p in await server.wait_for_log(r"Started worker \[(\d+)\]", 2))
        if point == "spawned":
            victim = first
        elif point == "in-lifespan-startup":
            await _wait_for_file(tmp_path / f"starting-{first}")
            victim = first
        else:
            # The first worker listens while the second is still in its startup.
            await _wait_for_file(tmp_path / f"starting-{second}")
            (tmp_path / f"open-{first}").touch()
            assert await _serving_pid(url) == first
            victim = first
        os.kill(victim, signal.SIGKILL)
        await server.wait_for_log(rf"Worker \[{victim}\] was killed by SIGKILL; restarting")
        (tmp_path / "open").touch()
        await server.wait_for_log(f"Started {WORKERS} workers", timeout=BOUND_SECONDS)
        workers = _children(server.process.pid)
        assert len(workers) == WORKERS
        assert victim not in workers and workers <= set(_started(server))
        assert await _serving_pid(url) in workers
        server.signal(signal.SIGTERM)
        assert await server.wait() == 0


async def test_a_failed_lifespan_startup_stops_the_service_with_status_3(tmp_path: Path) -> None:
    env = _env(tmp_path, TEST_FAIL_LIFESPAN="1")
    args = (APP, "--workers", str(WORKERS), "--lifespan", "on")
    async with server_process(tmp_path, *args, env=env) as server:
        assert await server.wait() == 3
        assert "the database is down" in server.log
        assert "restarting" not in server.log


async def test_an_app_that_cannot_be_loaded_stops_the_service_with_status_1(
    tmp_path: Path,
) -> None:
    async with server_process(tmp_path, "tests.startup_apps:nothing", "--workers", "2") as server:
        assert await server.wait() == 1
        assert 'attribute "nothing" not found' in server.log
        assert "restarting" not in server.log
