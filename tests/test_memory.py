"""Hostile clients cannot make the server buffer without bound (RSS measured in-process).

The server runs in the test's own process, so the growth of this process's
resident set while a hostile client does its worst is an upper bound on
what the server kept. The bounds are generous (a leak or an unbounded
buffer would be gigabytes); the figures measured are in docs/reliability.md.
"""

from __future__ import annotations

import gc
import resource
import sys

import pytest
import trio
import trio.testing

from tests import apps
from tests.conftest import running_server
from trioasgi.core.socket_io import RECEIVE_SIZE

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads the RSS from /proc/self/status"
)

MiB = 1024 * 1024
GiB = 1024 * MiB
CHUNK = 64 * 1024
#: Socket buffers on loopback (auto-tuned, a few MiB each way) plus slack.
IN_FLIGHT_BOUND = 64 * MiB
RSS_GROWTH_BOUND = 64 * MiB


def rss() -> int:
    gc.collect()
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS line")  # pragma: no cover


def report(what: str, **figures: float) -> None:
    shown = ", ".join(f"{name}={value / 1024:.0f} KiB" for name, value in figures.items())
    print(f"\n[memory] {what}: {shown}")


async def test_client_that_never_reads_a_gigabyte_response() -> None:
    sent = 0
    blocked_at_end = trio.Event()

    async def app(scope, receive, send):
        nonlocal sent
        if scope["type"] != "http":
            return
        await apps.start(send, 200, [(b"content-length", str(GiB).encode())])
        chunk = b"x" * CHUNK  # generated lazily: one chunk is all the app holds
        try:
            while sent < GiB:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                sent += CHUNK
        except OSError:
            blocked_at_end.set()

    async with running_server(app) as server:
        before = rss()
        stream = await server.connect()
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        # The app's send() blocks once the socket buffers are full; nothing else runs.
        await trio.testing.wait_all_tasks_blocked(0.2)
        growth = rss() - before
        in_flight = sent
        await stream.aclose()
        with trio.fail_after(5):
            await blocked_at_end.wait()
    report("client never reads a 1 GiB response", rss_growth=growth, app_sent=in_flight)
    assert 0 < in_flight < IN_FLIGHT_BOUND
    assert growth < RSS_GROWTH_BOUND


async def test_fast_uploader_to_a_slow_reader() -> None:
    uploaded = 0
    reads = 20
    measured: dict[str, int] = {}

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        received = 0
        before = rss()
        for _ in range(reads):
            message = await receive()
            received += len(message.get("body", b""))
            # A slow reader: the next chunk only once the uploader is stuck.
            await trio.testing.wait_all_tasks_blocked(0.02)
        measured.update(growth=rss() - before, received=received, uploaded=uploaded)
        await apps.start(send, 200, [(b"content-length", b"2")])
        await send({"type": "http.response.body", "body": b"ok"})

    async def upload(stream: trio.SocketStream) -> None:
        nonlocal uploaded
        chunk = b"y" * CHUNK
        await stream.send_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % GiB)
        try:
            while uploaded < GiB:
                await stream.send_all(chunk)
                uploaded += CHUNK
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    async with running_server(app) as server:
        stream = await server.connect()
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(upload, stream)
                response = await stream.receive_some(4096)
                await stream.aclose()
    report(
        "fast uploader, app reads 20 chunks slowly",
        rss_growth=measured["growth"],
        client_sent=measured["uploaded"],
        app_received=measured["received"],
    )
    assert response.startswith(b"HTTP/1.1 200 ")
    # No message is more than one read of the socket.
    assert measured["received"] <= reads * RECEIVE_SIZE
    assert measured["uploaded"] < IN_FLIGHT_BOUND
    assert measured["growth"] < RSS_GROWTH_BOUND


CONNECTIONS = 1000


def _raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"needs {needed} file descriptors, the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


async def test_a_thousand_half_sent_headers() -> None:
    _raise_fd_limit(2 * CONNECTIONS + 256)
    # A header timeout far longer than the test: all of them stay open while
    # we measure (the 408 itself is tested on a virtual clock).
    async with running_server(apps.hello, timeout_request_header=60) as server:
        before = rss()
        streams: list[trio.SocketStream] = []

        async def half_header() -> None:
            stream = await server.connect()
            await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Half: ")
            streams.append(stream)

        async with trio.open_nursery() as nursery:
            for _ in range(CONNECTIONS):
                nursery.start_soon(half_header)
        await trio.testing.wait_all_tasks_blocked(0.2)
        growth = rss() - before
        open_connections = sum("handle_connection" in name for name in server.tasks.shape())
        for stream in streams:
            await stream.aclose()
        # On leaving, running_server checks that all 1000 connection tasks ended.
    report(
        f"{CONNECTIONS} connections with half a header",
        rss_growth=growth,
        per_connection=growth / CONNECTIONS,
    )
    assert open_connections == CONNECTIONS
    assert growth < 2 * RSS_GROWTH_BOUND
