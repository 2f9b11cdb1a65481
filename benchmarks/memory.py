"""Memory per idle keep-alive connection: RSS delta of the server for N idle connections / N.

Each connection sends one request and reads the response, so what is measured
is a keep-alive connection between requests, the common idle state. RSS is the
summed VmRSS of the server's process tree from /proc/PID/status; the server's
open file descriptors are counted too, to show the connections were still held
when RSS was read.
"""

from __future__ import annotations

from dataclasses import dataclass

import trio

from .h1 import Connection, ProtocolError, request
from .servers import RunningServer

# Below the smallest default listen backlog of the peers (Hypercorn: 100), so that
# the ramp-up does not overflow it and lose connections to SYN retries.
CONNECT_CONCURRENCY = 64
OPEN_TIMEOUT = 30.0
SETTLE_SECONDS = 0.5
WARMUP_CONNECTIONS = 20


@dataclass
class MemoryResult:
    per_connection_kib: float
    rss_before_mib: float
    rss_after_mib: float
    opened: int
    held: int


def idle_connections(server: RunningServer, connections: int) -> MemoryResult:
    return trio.run(_idle_connections, server, connections)


async def _idle_connections(server: RunningServer, connections: int) -> MemoryResult:
    raw = request("GET", "/")
    # Warm up first, so code paths loaded on the first requests are not charged
    # to the idle connections.
    await _open_many(server.port, raw, WARMUP_CONNECTIONS, close=True)
    await trio.sleep(SETTLE_SECONDS)
    rss_before, fds_before = server.rss_bytes(), server.fd_count()
    conns = await _open_many(server.port, raw, connections, close=False)
    try:
        await trio.sleep(SETTLE_SECONDS)
        rss_after, fds_after = server.rss_bytes(), server.fd_count()
    finally:
        for conn in conns:
            conn.stream.socket.close()
    if not conns:
        raise RuntimeError("no connection could be opened")
    mib = 1024 * 1024
    return MemoryResult(
        per_connection_kib=(rss_after - rss_before) / len(conns) / 1024,
        rss_before_mib=rss_before / mib,
        rss_after_mib=rss_after / mib,
        opened=len(conns),
        held=fds_after - fds_before,
    )


async def _open_many(port: int, raw: bytes, count: int, *, close: bool) -> list[Connection]:
    conns: list[Connection] = []
    limiter = trio.CapacityLimiter(CONNECT_CONCURRENCY)

    async def one() -> None:
        async with limiter:
            try:
                conn = await Connection.open(port)
            except OSError:
                return
            try:
                await conn.roundtrip(raw)
            except (OSError, trio.BrokenResourceError, ProtocolError):
                conn.stream.socket.close()
                return
            if close:
                conn.stream.socket.close()
            else:
                conns.append(conn)

    with trio.move_on_after(OPEN_TIMEOUT):
        async with trio.open_nursery() as nursery:
            for _ in range(count):
                nursery.start_soon(one)
    return conns
