"""HTTP load: `wrk` when it is installed, else a built-in trio generator in several processes.

Both are closed-loop generators: each connection sends its next request as
soon as the previous response is read, which measures throughput. (Latency at
a fixed rate is `latency.py`'s job.)

Run as `python -m benchmarks.loadgen ...` it is one worker of the built-in
generator and prints one JSON line.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import trio

from . import fanout
from .h1 import Connection, ProtocolError, request
from .system import cpu_list, load_cores

CONNECT_CONCURRENCY = 100
CONNECT_TIMEOUT = 10.0


@dataclass
class LoadResult:
    requests_per_s: float
    requests: int
    errors: int
    tool: str
    # wrk's latency distribution (NaN from the built-in generator) and its
    # timeouts: requests not answered within the run's timeout.
    p50_ms: float = math.nan
    p99_ms: float = math.nan
    timeouts: int = 0


# Set by `--generator builtin`, to compare the two or to test the fallback.
_force_builtin = False


def force_builtin(on: bool = True) -> None:
    global _force_builtin
    _force_builtin = on


def wrk_path() -> str | None:
    return None if _force_builtin else _which_wrk()


@functools.cache
def _which_wrk() -> str | None:
    return shutil.which("wrk")


def generator_name() -> str:
    return "wrk" if wrk_path() else "built-in trio generator"


def http_load(
    port: int,
    *,
    path: str,
    connections: int,
    duration: float,
    body_size: int = 0,
    timeout: float = 10.0,
) -> LoadResult:
    """Closed-loop load on GET `path` (or POST with a body of `body_size` bytes).

    A request unanswered after `timeout` seconds is a timeout (wrk only).
    """
    if wrk_path():
        return _wrk(port, path, connections, duration, body_size, timeout)
    return _builtin(port, path, connections, duration, body_size)


_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _wrk_percentile(out: str, percent: int) -> float:
    """A percentile of wrk's `--latency` distribution, in ms (NaN if absent)."""
    found = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.MULTILINE)
    return float(found.group(1)) * _UNIT_MS[found.group(2)] if found else math.nan


def _wrk(
    port: int, path: str, connections: int, duration: float, body_size: int, timeout: float
) -> LoadResult:
    threads = max(1, min(len(load_cores()), connections))
    argv = [
        *("taskset", "-c", cpu_list(load_cores()), wrk_path() or "wrk"),
        *("-t", str(threads), "-c", str(connections), "-d", f"{max(1, round(duration))}s"),
        *("--timeout", f"{timeout:g}s", "--latency"),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        if body_size:
            script = Path(tmp, "post.lua")
            script.write_text(
                'wrk.method = "POST"\n'
                f'wrk.body = string.rep("x", {body_size})\n'
                'wrk.headers["Content-Type"] = "application/octet-stream"\n'
            )
            argv += ["-s", str(script)]
        argv.append(f"http://127.0.0.1:{port}{path}")
        done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 30)
    out = done.stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    if done.returncode != 0 or not rate or not total:
        raise RuntimeError(f"wrk failed: {(done.stderr or out).strip()[-200:]}")
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors += int(non2xx.group(1)) if non2xx else 0
    timeouts = re.search(r"timeout (\d+)", out)
    return LoadResult(
        float(rate.group(1)),
        int(total.group(1)),
        errors,
        "wrk",
        _wrk_percentile(out, 50),
        _wrk_percentile(out, 99),
        int(timeouts.group(1)) if timeouts else 0,
    )


def _builtin(port: int, path: str, connections: int, duration: float, body_size: int) -> LoadResult:
    procs = fanout.process_count(connections)
    args = [
        [
            *("--port", str(port), "--path", path, "--connections", str(n)),
            *("--duration", str(duration), "--body-size", str(body_size)),
        ]
        for n in fanout.split(connections, procs)
    ]
    results = fanout.run("benchmarks.loadgen", args, timeout=duration + CONNECT_TIMEOUT + 30)
    rate = sum(r["requests"] / r["elapsed"] for r in results if r["elapsed"] > 0)
    requests = int(sum(r["requests"] for r in results))
    errors = int(sum(r["errors"] for r in results))
    return LoadResult(rate, requests, errors, f"built-in ({procs} processes)")


async def closed_loop(
    port: int, path: str, connections: int, duration: float, body_size: int
) -> dict[str, float]:
    """One worker: open `connections`, then drive them for `duration` seconds."""
    raw = request("POST", path, b"x" * body_size) if body_size else request("GET", path)
    conns: list[Connection] = []
    errors = 0
    limiter = trio.CapacityLimiter(CONNECT_CONCURRENCY)

    async def open_one() -> None:
        nonlocal errors
        async with limiter:
            try:
                conns.append(await Connection.open(port))
            except OSError:
                errors += 1

    with trio.move_on_after(CONNECT_TIMEOUT):
        async with trio.open_nursery() as nursery:
            for _ in range(connections):
                nursery.start_soon(open_one)

    done = 0
    start = trio.current_time()
    deadline = start + duration

    async def drive(conn: Connection) -> None:
        nonlocal done, errors
        with trio.move_on_at(deadline):
            while True:
                try:
                    status, _ = await conn.roundtrip(raw)
                except (OSError, trio.BrokenResourceError, ProtocolError):
                    errors += 1
                    await trio.sleep(0.01)  # a refused reconnect must not spin the loop
                    conn = await _reopen(port, conn)
                    continue
                if status == 200:
                    done += 1
                else:
                    errors += 1

    async with trio.open_nursery() as nursery:
        for conn in conns:
            nursery.start_soon(drive, conn)
    elapsed = trio.current_time() - start
    for conn in conns:
        conn.stream.socket.close()
    return {"requests": done, "errors": errors, "elapsed": elapsed}


async def _reopen(port: int, old: Connection) -> Connection:
    old.stream.socket.close()
    try:
        return await Connection.open(port)
    except OSError:
        return old  # the next roundtrip fails again and is counted as an error


def _main() -> None:
    parser = argparse.ArgumentParser(description="one worker of the built-in HTTP generator")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--body-size", type=int, default=0)
    a = parser.parse_args()
    result = trio.run(closed_loop, a.port, a.path, a.connections, a.duration, a.body_size)
    print(json.dumps(result))


if __name__ == "__main__":
    _main()
