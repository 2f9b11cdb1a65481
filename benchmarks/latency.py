"""Latency percentiles at a fixed request rate, from a built-in trio generator on a schedule.

Open loop: request i is due at t0 + i / rate whether or not earlier responses
have arrived, and its latency is measured from when it was due, not from when
it went out. A server that falls behind shows its queueing delay instead of
hiding it, which a closed-loop tool (plain wrk, or wrk with a Lua delay) would
do: that is why this is not wrk.
"""

from __future__ import annotations

from dataclasses import dataclass

import trio

from .h1 import Connection, ProtocolError, request

CONNECT_TIMEOUT = 10.0


@dataclass
class LatencyResult:
    p50_ms: float
    p99_ms: float
    max_ms: float
    achieved_rate: float
    samples: int
    errors: int


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return float("nan")
    rank = max(1, round(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def fixed_rate(port: int, *, rate: float, connections: int, duration: float) -> LatencyResult:
    return trio.run(_fixed_rate, port, rate, connections, duration)


async def _fixed_rate(port: int, rate: float, connections: int, duration: float) -> LatencyResult:
    raw = request("GET", "/")
    with trio.fail_after(CONNECT_TIMEOUT):
        conns = [await Connection.open(port) for _ in range(connections)]
    latencies: list[float] = []
    errors = 0
    total = int(rate * duration)
    t0 = trio.current_time() + 0.05
    # Connection k sends requests k, k + n, k + 2n, ...: together they keep the
    # schedule, and a late response delays (and is charged to) the next one on it.
    step = connections / rate

    async def one_connection(k: int, conn: Connection) -> None:
        nonlocal errors
        due = t0 + k / rate
        for _ in range(k, total, connections):
            await trio.sleep_until(due)
            try:
                status, _ = await conn.roundtrip(raw)
            except (OSError, trio.BrokenResourceError, ProtocolError):
                errors += 1
                return
            if status == 200:
                latencies.append(trio.current_time() - due)
            else:
                errors += 1
            due += step

    # Bounded even if the server stops answering: requests still unanswered a
    # second after the schedule ends count as errors, not as samples.
    with trio.move_on_after(duration + 1.0):
        async with trio.open_nursery() as nursery:
            for k, conn in enumerate(conns):
                nursery.start_soon(one_connection, k, conn)
    elapsed = trio.current_time() - t0
    errors += max(0, total - len(latencies) - errors)
    for conn in conns:
        conn.stream.socket.close()
    latencies.sort()
    return LatencyResult(
        p50_ms=percentile(latencies, 50) * 1000,
        p99_ms=percentile(latencies, 99) * 1000,
        max_ms=(latencies[-1] * 1000) if latencies else float("nan"),
        achieved_rate=len(latencies) / elapsed if elapsed > 0 else 0.0,
        samples=len(latencies),
        errors=errors,
    )
