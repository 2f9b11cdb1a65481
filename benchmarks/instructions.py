"""User-space instructions per keep-alive request, counted by valgrind: a figure noise cannot move.

Requests/s on a shared machine move by ±20 % from one minute to the next;
the instructions a server executes per request do not (the same count to
within a fraction of a percent, whatever else the machine is doing). This
runs each server under ``valgrind --tool=callgrind`` with counting off,
warms it up, counts only while ``h2load`` sends exactly ``--requests``
hello-world requests over 50 keep-alive connections, and prints
instructions per request::

    python -m benchmarks.instructions                       # trio-asgi, both parsers
    python -m benchmarks.instructions --servers trio-asgi-httptools,uvicorn-httptools
    python -m benchmarks.instructions --ws 3000 --servers trio-asgi-h11,uvicorn-h11
    python -m benchmarks.instructions --servers trio-asgi-h11 --server-args=--cancel-on-disconnect
    python -m benchmarks.instructions --servers trio-asgi-h2,hypercorn-trio-h2,h2-floor

``--server-args`` appends flags to every server's command line (split as a
shell would), to count what an option costs. An HTTP/2 server (``-h2``, and
the h2 floor) gets the same requests over HTTP/2 with prior knowledge, 10
streams in flight on each connection, as in the ``h2-hello`` scenario.

``--cache`` has callgrind simulate the caches as well (fixed sizes: a
32 KiB first level, a 1 MiB last level) and adds the data misses per
request in each: what makes the same instructions slower when a thousand
connections' state no longer fits the cache::

    python -m benchmarks.instructions --cache --connections 1000 --requests 20000

``--ws N`` counts N WebSocket echoes of the echo scenario's small message
instead, over its 20 connections (trio-websocket clients in this process,
each connection opened and warmed up before counting starts).

The server is some 50 times slower under valgrind, so every connection
always has its next request waiting: the count is that of a server at full
load. A few thousand instructions per request are the counting's own fixed
cost spread over the requests: compare figures made with the same
``--requests``. Kernel work (the syscalls themselves) is not counted, and an
instruction of one server is not a nanosecond of another; the figure is for
comparing one server's code before and after a change. Needs valgrind and
h2load (``apt-get install valgrind nghttp2-client``; ``--ws`` needs no h2load).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from .fanout import split
from .scenarios import Settings
from .servers import H2C, REPO_ROOT, SERVERS, _env, _free_port, wait_until_answering
from .wsload import MESSAGE

#: Under valgrind a Python server takes a while to import and start.
START_TIMEOUT = 180.0
WARM_UP_REQUESTS = 300
CONNECTIONS = 50
#: Requests in flight on each HTTP/2 connection (the h2-hello scenario's).
H2_STREAMS = Settings().h2_streams
#: The WebSocket count: as many connections as the echo scenario, each warmed up first.
WS_CONNECTIONS = Settings().ws_connections
WARM_UP_MESSAGES = 10


def instructions_per_request(
    server: str,
    requests: int,
    extra: Sequence[str] = (),
    connections: int = CONNECTIONS,
    cache: bool = False,
) -> dict[str, float]:
    """Run ``server`` under callgrind: its events per request (``Ir``, the instructions;
    with ``cache``, the simulated cache misses too) over ``requests`` requests."""
    h2 = SERVERS[server].protocol == H2C
    with _under_callgrind(server, extra, cache) as run:
        url = f"http://127.0.0.1:{run.port}/"
        _h2load(url, max(WARM_UP_REQUESTS, connections), h2=h2, connections=connections)
        _callgrind_control("--instr=on", run.pid)
        _h2load(url, requests, h2=h2, connections=connections)
        _callgrind_control("--instr=off", run.pid)
    return {event: count / requests for event, count in run.totals.items()}


def instructions_per_message(
    server: str, messages: int, extra: Sequence[str] = (), cache: bool = False
) -> dict[str, float]:
    """Run ``server`` under callgrind: its events per echo, over ``messages`` echoes."""
    with _under_callgrind(server, extra, cache) as run:
        trio.run(_echo_counted, run.port, messages, run.pid)
    return {event: count / messages for event, count in run.totals.items()}


@dataclass
class _CallgrindRun:
    port: int
    pid: int
    #: The events counted (``Ir``: instructions), known once the server has exited.
    totals: dict[str, int] = field(default_factory=dict)


#: The cache callgrind simulates with ``--cache``: a 32 KiB first-level data
#: cache and, as its last level, a 1 MiB one (this machine's per-core L2; the
#: L3 it would detect by itself is shared and 32 MiB). Fixed sizes, so the
#: misses counted are the same on any machine.
CACHE_SIM = ("--cache-sim=yes", "--D1=32768,8,64", "--I1=32768,8,64", "--LL=1048576,16,64")


@contextlib.contextmanager
def _under_callgrind(
    server: str, extra: Sequence[str], cache: bool = False
) -> Iterator[_CallgrindRun]:
    """Run ``server`` under callgrind with counting off for the body of the ``with``."""
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="instructions-") as tmp:
        out = Path(tmp) / "callgrind.out"
        argv = [
            *("valgrind", "--tool=callgrind", "--instr-atstart=no"),
            *(CACHE_SIM if cache else ()),
            f"--callgrind-out-file={out}",
            *SERVERS[server].command(port),
            *extra,
        ]
        log = open(Path(tmp) / "server.log", "wb")  # noqa: SIM115 - closed below
        proc = subprocess.Popen(
            argv, cwd=REPO_ROOT, env=_env(), stdout=log, stderr=subprocess.STDOUT
        )
        run = _CallgrindRun(port, proc.pid)
        try:
            protocol = SERVERS[server].protocol
            if not wait_until_answering(proc, port, START_TIMEOUT, protocol=protocol):
                if proc.poll() is not None:
                    raise RuntimeError(f"the server exited ({proc.returncode}) before answering")
                raise RuntimeError(f"the server did not answer within {START_TIMEOUT:.0f} s")
            yield run
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()
        run.totals = _totals(out)


async def _echo_counted(port: int, messages: int, pid: int) -> None:
    """Open the websockets, warm up, then count exactly ``messages`` echoes over them.

    Counting is switched on only once every connection is open and idle, so
    the handshakes are not in the figure (the blocking switch is harmless:
    nothing is in flight).
    """
    # Imported here so that the HTTP count works without trio-websocket.
    from trio_websocket import open_websocket_url

    url = f"ws://127.0.0.1:{port}/ws"
    async with contextlib.AsyncExitStack() as stack:
        sockets = [
            await stack.enter_async_context(open_websocket_url(url)) for _ in range(WS_CONNECTIONS)
        ]
        await _echo_all(sockets, [WARM_UP_MESSAGES] * WS_CONNECTIONS)
        _callgrind_control("--instr=on", pid)
        await _echo_all(sockets, split(messages, WS_CONNECTIONS))
        _callgrind_control("--instr=off", pid)


async def _echo_all(sockets: list[Any], counts: list[int]) -> None:
    async def echo(ws: Any, count: int) -> None:
        for _ in range(count):
            await ws.send_message(MESSAGE)
            if await ws.get_message() != MESSAGE:
                raise RuntimeError("the server echoed something else")

    async with trio.open_nursery() as nursery:
        for ws, count in zip(sockets, counts, strict=True):
            nursery.start_soon(echo, ws, count)


def _h2load(url: str, requests: int, *, h2: bool = False, connections: int = CONNECTIONS) -> None:
    protocol = ["-m", str(H2_STREAMS)] if h2 else ["--h1"]
    result = subprocess.run(
        ["h2load", *protocol, "-n", str(requests), "-c", str(connections), url],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if f"{requests} succeeded" not in result.stdout:
        raise RuntimeError(f"h2load: not every request succeeded\n{result.stdout[-500:]}")


def _callgrind_control(switch: str, pid: int) -> None:
    subprocess.run(["callgrind_control", switch, str(pid)], capture_output=True, check=True)


def _totals(out: Path) -> dict[str, int]:
    """Each event's count (``Ir``, and the cache misses when simulated), summed over the
    output's parts.

    With --instr-atstart=no the totals are those of the counted part only
    (the "summary:" line near the top stays 0).
    """
    text = out.read_text()
    events = re.search(r"^events: (.+)$", text, re.MULTILINE)
    totals = re.findall(r"^totals: ([\d ]+)$", text, re.MULTILINE)
    if not events or not totals:
        raise RuntimeError("callgrind wrote no totals")
    names = events.group(1).split()
    summed = dict.fromkeys(names, 0)
    for line in totals:
        for name, count in zip(names, line.split(), strict=False):
            summed[name] += int(count)
    return summed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--servers",
        default="trio-asgi-h11,trio-asgi-httptools",
        help="comma-separated names from benchmarks/servers.py",
    )
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument(
        "--connections",
        type=int,
        default=CONNECTIONS,
        help=f"keep-alive connections h2load spreads the requests over (default {CONNECTIONS})",
    )
    parser.add_argument(
        "--ws",
        type=int,
        metavar="MESSAGES",
        help="count this many WebSocket echoes (trio-websocket clients) instead of requests",
    )
    parser.add_argument(
        "--cache",
        action="store_true",
        help="simulate the caches too: data misses per request in the first level "
        "(32 KiB) and the last (1 MiB)",
    )
    parser.add_argument(
        "--server-args",
        default="",
        metavar="FLAGS",
        help="flags added to each server's command line, e.g. --server-args=--cancel-on-disconnect",
    )
    args = parser.parse_args()
    extra = shlex.split(args.server_args)
    tools = ("valgrind", "callgrind_control") + (() if args.ws else ("h2load",))
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        sys.exit(f"needs {', '.join(missing)}: apt-get install valgrind nghttp2-client")
    names = [name.strip() for name in args.servers.split(",") if name.strip()]
    unknown = [name for name in names if name not in SERVERS]
    if unknown:
        sys.exit(f"unknown server {unknown[0]!r}; known: {', '.join(SERVERS)}")
    unit = "echoed message" if args.ws else "request"
    columns = [f"instructions per {unit}"]
    if args.cache:
        columns += [f"D1 data misses per {unit}", f"last-level data misses per {unit}"]
    print(f"| server | {' | '.join(columns)} |\n|---|{'---:|' * len(columns)}")
    for name in names:
        unavailable = SERVERS[name].unavailable()
        if unavailable:
            print(f"| {name} | {unavailable} |")
            continue
        if args.ws:
            per = instructions_per_message(name, args.ws, extra, args.cache)
        else:
            per = instructions_per_request(name, args.requests, extra, args.connections, args.cache)
        cells = [f"{per['Ir'] / 1000:,.1f}k"]
        if args.cache:
            cells += [f"{per['D1mr'] + per['D1mw']:,.0f}", f"{per['DLmr'] + per['DLmw']:,.0f}"]
        print(f"| {name} | {' | '.join(cells)} |", flush=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
