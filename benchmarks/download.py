"""The download scenarios' client: one GET of a large body, timed; the server's memory meanwhile.

``curl`` when installed (``-o /dev/null``: a C client that reads at several
GB/s, so a 1 GiB body measures the server, not us), else the harness's own
trio client. While it runs, a thread samples the server's RSS every 20 ms:
the peak above the RSS before the request is the response's memory, which
must stay bounded (a server that read the whole file or the whole stream
into memory would show it here).
"""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass

import trio

from .h1 import Connection, request
from .system import cpu_list, load_cores

TIMEOUT = 120.0
RSS_SAMPLE_SECONDS = 0.02


@dataclass
class DownloadResult:
    seconds: float
    mib_per_s: float
    size: int
    # The server's peak RSS during the download above its RSS before it, MiB.
    peak_rss_growth_mib: float = float("nan")
    tool: str = "curl"


def download(
    port: int, path: str = "/stream", rss: Callable[[], int] | None = None
) -> DownloadResult:
    """GET `path` once; `rss()` (the server's RSS in bytes) is sampled meanwhile if given."""
    sampler = _RssSampler(rss) if rss is not None else None
    try:
        result = _curl(port, path) if shutil.which("curl") else trio.run(_download, port, path)
    finally:
        if sampler is not None:
            sampler.stop()
    if sampler is not None:
        result.peak_rss_growth_mib = sampler.growth / (1024 * 1024)
    return result


class _RssSampler:
    def __init__(self, rss: Callable[[], int]) -> None:
        self._rss = rss
        self._before = rss()
        self._peak = self._before
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.wait(RSS_SAMPLE_SECONDS):
            self._peak = max(self._peak, self._rss())

    def stop(self) -> None:
        self._done.set()
        self._thread.join()
        self._peak = max(self._peak, self._rss())

    @property
    def growth(self) -> int:
        return max(0, self._peak - self._before)


def warm_up(port: int, path: str) -> None:
    """Ask for the first byte of `path` once, untimed (with curl; a no-op without).

    The app's imports, its thread pools and the server's first-request work
    are then not part of the timed download.
    """
    if not shutil.which("curl"):
        return
    argv = [
        *("taskset", "-c", cpu_list(load_cores()), "curl", "--silent", "--output", "/dev/null"),
        *("--range", "0-0", "--max-time", "30", f"http://127.0.0.1:{port}{path}"),
    ]
    subprocess.run(argv, capture_output=True, timeout=40)


def _curl(port: int, path: str) -> DownloadResult:
    argv = [
        *("taskset", "-c", cpu_list(load_cores()), "curl", "--silent", "--show-error"),
        *("--output", "/dev/null", "--max-time", str(int(TIMEOUT))),
        *("--write-out", "%{http_code} %{size_download} %{time_total} %{time_starttransfer}"),
        f"http://127.0.0.1:{port}{path}",
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT + 10)
    fields = done.stdout.split()
    if done.returncode != 0 or len(fields) != 4:
        raise RuntimeError(f"curl failed: {(done.stderr or done.stdout).strip()[-200:]}")
    status, size, seconds = int(fields[0]), int(fields[1]), float(fields[2])
    if status != 200:
        raise RuntimeError(f"GET {path} answered {status}")
    return DownloadResult(seconds, size / (1024 * 1024) / seconds, size)


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
    return DownloadResult(seconds, size / (1024 * 1024) / seconds, size, tool="built-in")
