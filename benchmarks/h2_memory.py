"""Memory one HTTP/2 connection can make the server hold, whatever its client does.

Starts the server (``python -m trioasgi``) with this module's app and opens
``--connections`` hostile HTTP/2 connections, each doing at once everything
that makes a server hold memory for a client:

- it advertises a receive window of 0, so no response byte may be sent;
- it opens the concurrency limit's worth of streams: half ask for a 64 MiB
  download (their apps wait for the window), half upload a body to an app
  that never reads it (the server holds what the windows let through);
- it sends PINGs (fewer than would get it closed) and never reads a byte
  of what the server answers.

Once every connection is set up and the server has had time to take in what
it will, the server's RSS growth divided by the connections is the figure,
beside the bound the settings give (``docs/http2.md``, "Flow control and
memory")::

    python -m benchmarks.h2_memory                  # 20 connections, default limits
    python -m benchmarks.h2_memory --connections 50
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.settings
import trio

from .servers import REPO_ROOT, _free_port, wait_until_answering

SETTLE_SECONDS = 3.0
UPLOAD_BYTES = 4 * 1024 * 1024
DOWNLOAD_BYTES = 64 * 1024 * 1024
CHUNK = b"x" * 65536


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """``GET /big``: 64 MiB streamed; ``POST /hold``: never reads, waits for the disconnect."""
    if scope["type"] != "http":
        return
    if scope["path"] == "/hold":
        await trio.sleep_forever()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    if scope["path"] != "/big":  # the readiness check's GET /
        await send({"type": "http.response.body", "body": b"ok"})
        return
    for _ in range(DOWNLOAD_BYTES // len(CHUNK)):
        await send({"type": "http.response.body", "body": CHUNK, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def _hostile(port: int, streams: int, done: trio.Event) -> trio.SocketStream:
    """One connection doing its worst; returned open (never read) for the caller to close."""
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.local_settings = h2.settings.Settings(
        client=True, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0}
    )
    client.initiate_connection()
    sock = await trio.open_tcp_stream("127.0.0.1", port)
    await sock.send_all(client.data_to_send())
    # The server's SETTINGS and window update are read, once, so the uploads
    # may fill the windows it grants; from then on nothing is ever read.
    with trio.move_on_after(2.0):
        client.receive_data(await sock.receive_some(65536))
    for i in range(streams):
        stream_id = 1 + 2 * i
        upload = i % 2 == 1
        client.send_headers(
            stream_id,
            [
                (":method", "POST" if upload else "GET"),
                (":scheme", "http"),
                (":authority", "127.0.0.1"),
                (":path", "/hold" if upload else "/big"),
            ],
            end_stream=not upload,
        )
        if upload:
            window = min(client.local_flow_control_window(stream_id), UPLOAD_BYTES)
            while window > 0:
                piece = min(window, client.max_outbound_frame_size)
                client.send_data(stream_id, b"u" * piece)
                window -= piece
        if i % 2:  # 50 pings in all: under the ping budget, whose end would close us
            client.ping(os.urandom(8))
        with trio.move_on_after(1.0):
            await sock.send_all(client.data_to_send())
    done.set()
    return sock


async def _measure(args: argparse.Namespace, pid: int, port: int) -> tuple[int, int]:
    before = _rss_kib(pid)
    sockets: list[trio.SocketStream] = []

    async def one() -> None:
        done = trio.Event()
        sockets.append(await _hostile(port, args.streams, done))

    async with trio.open_nursery() as nursery:
        for _ in range(args.connections):
            nursery.start_soon(one)
    await trio.sleep(SETTLE_SECONDS)
    after = _rss_kib(pid)
    for sock in sockets:
        await trio.aclose_forcefully(sock)
    return before, after


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--streams", type=int, default=100, help="per connection")
    args = parser.parse_args()
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "trioasgi", "benchmarks.h2_memory:app", "--port", str(port),
         "--lifespan", "off", "--no-access-log", "--log-level", "warning",
         "--h2-max-concurrent-streams", str(args.streams)],
        cwd=REPO_ROOT,
    )  # fmt: skip
    try:
        if not wait_until_answering(server, port, 20.0):
            raise SystemExit("the server did not start")
        before, after = trio.run(_measure, args, server.pid, port)
        time.sleep(0.5)
    finally:
        server.terminate()
        server.wait(timeout=10)
    per_connection = (after - before) / args.connections
    print(f"server RSS: {before:,} KiB before, {after:,} KiB with {args.connections} hostile")
    print(f"connections of {args.streams} streams each: {per_connection:,.0f} KiB per connection")


if __name__ == "__main__":
    main()
