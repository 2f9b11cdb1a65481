"""The streaming scenario's client: download `GET /stream` (100 MiB) once and time it."""

from __future__ import annotations

from dataclasses import dataclass

import trio

from .h1 import Connection, request

TIMEOUT = 120.0


@dataclass
class DownloadResult:
    seconds: float
    mib_per_s: float
    size: int


def download(port: int, path: str = "/stream") -> DownloadResult:
    return trio.run(_download, port, path)


async def _download(port: int, path: str) -> DownloadResult:
    with trio.fail_after(TIMEOUT):
        conn = await Connection.open(port)
        try:
            start = trio.current_time()
            status, size = await conn.roundtrip(request("GET", path))
            seconds = trio.current_time() - start
        finally:
            conn.stream.socket.close()
    if status != 200:
        raise RuntimeError(f"GET {path} answered {status}")
    return DownloadResult(seconds, size / (1024 * 1024) / seconds, size)
