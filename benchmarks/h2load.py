"""HTTP/2 load: ``h2load`` (Debian package nghttp2-client) over cleartext with prior knowledge.

Closed loop, like wrk for HTTP/1.1: each connection keeps ``streams``
requests in flight (``-m``), sending the next as soon as one is answered,
for ``duration`` seconds (``-D``). The client's flow-control windows are
h2load's defaults (2^30 - 1 bytes), so the client never holds a server back.
The download is one ``GET /stream`` on a fresh connection, timed by h2load
from its request to the end of its stream.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from .download import DownloadResult
from .loadgen import LoadResult
from .system import cpu_list, load_cores

DOWNLOAD_TIMEOUT = 120.0
_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0}


@functools.cache
def h2load_path() -> str | None:
    return shutil.which("h2load")


def _h2load(args: list[str], url: str, timeout: float) -> str:
    tool = h2load_path()
    if not tool:
        raise RuntimeError("h2load not found: `apt-get install nghttp2-client`")
    argv = ["taskset", "-c", cpu_list(load_cores()), tool, *args, url]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0 or "finished in" not in done.stdout:
        raise RuntimeError(f"h2load failed: {(done.stderr or done.stdout).strip()[-200:]}")
    protocol = re.search(r"Application protocol: (\S+)", done.stdout)
    if not protocol or protocol.group(1) != "h2c":
        raise RuntimeError("h2load did not get HTTP/2: the server answered another protocol")
    return done.stdout


def _errors(out: str) -> tuple[int, int]:
    """(requests that succeeded, requests that failed or got no 2xx)."""
    counts = re.search(r"(\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout", out)
    statuses = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    if not counts or not statuses:
        raise RuntimeError(f"h2load printed no request counts: {out.strip()[-200:]}")
    succeeded, failed, errored, timeout = (int(n) for n in counts.groups())
    non2xx = sum(int(n) for n in statuses.groups()[1:])
    return succeeded, failed + errored + timeout + non2xx


def http2_load(
    port: int,
    *,
    path: str,
    connections: int,
    streams: int,
    duration: float,
    body_size: int = 0,
) -> LoadResult:
    """Closed-loop HTTP/2 load on GET `path` (or POST with a body of `body_size` bytes)."""
    threads = max(1, min(len(load_cores()), connections))
    args = [
        *("-c", str(connections), "-m", str(streams), "-t", str(threads)),
        *("-D", str(max(1, round(duration)))),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        if body_size:
            body = Path(tmp, "body")
            body.write_bytes(b"x" * body_size)
            args += ["-d", str(body), "-H", "content-type: application/octet-stream"]
        out = _h2load(args, f"http://127.0.0.1:{port}{path}", duration + 30)
    rate = re.search(r"finished in [\d.]+\w*, ([\d.]+) req/s", out)
    if not rate:
        raise RuntimeError(f"h2load printed no rate: {out.strip()[-200:]}")
    succeeded, errors = _errors(out)
    if not succeeded:
        summary = re.search(r"requests: (.*)", out)
        raise RuntimeError(f"h2load: no request succeeded ({summary.group(1) if summary else ''})")
    return LoadResult(float(rate.group(1)), succeeded, errors, "h2load")


def http2_download(port: int, path: str = "/stream") -> DownloadResult:
    """One GET of `path` over a new HTTP/2 connection, timed from request to end of stream."""
    url = f"http://127.0.0.1:{port}{path}"
    out = _h2load(["-n", "1", "-c", "1", "-m", "1"], url, DOWNLOAD_TIMEOUT)
    succeeded, errors = _errors(out)
    if succeeded != 1 or errors:
        raise RuntimeError(f"GET {path} over HTTP/2 failed: {out.strip()[-200:]}")
    size = re.search(r"\((\d+)\) data", out)
    took = re.search(r"time for request:\s+([\d.]+)(us|ms|s)\b", out)
    if not size or not took:
        raise RuntimeError(f"h2load printed no size or time: {out.strip()[-200:]}")
    seconds = float(took.group(1)) * _UNITS[took.group(2)]
    nbytes = int(size.group(1))
    return DownloadResult(seconds, nbytes / (1024 * 1024) / seconds, nbytes)
