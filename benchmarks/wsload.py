"""WebSocket load: clients echoing small messages, reported as messages/s.

Each connection sends a message and waits for its echo before sending the
next (closed loop), so messages/s is round trips per second. The clients
are Node's ``ws`` package (``benchmarks/wsnode/``, installed with ``npm ci``
on first use) when ``node`` and ``npm`` are there: a Python client spends
about as much CPU per message as the server, so on one core it, not the
server, set the figure (every server read about 17,000 messages/s). The
fallback is trio-websocket clients in this package; the report's server
CPU column says which one was the limit. Run as
`python -m benchmarks.wsload ...` it is one Python worker and prints one
JSON line.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from . import fanout

CONNECT_TIMEOUT = 10.0
MESSAGE = "hello, websocket"


@dataclass
class WsResult:
    messages_per_s: float
    messages: int
    errors: int
    tool: str


NODE_CLIENT = Path(__file__).resolve().parent / "wsnode"


def node_client() -> Path | None:
    """The Node client's directory, its ``ws`` package installed; None without node or npm."""
    if not shutil.which("node") or not shutil.which("npm"):
        return None
    if not (NODE_CLIENT / "node_modules" / "ws").is_dir():
        done = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--silent"],
            cwd=NODE_CLIENT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode != 0:
            return None
    return NODE_CLIENT


def ws_load(port: int, *, connections: int, duration: float) -> WsResult:
    """Echo `MESSAGE` over `connections` websockets for `duration` seconds."""
    procs = fanout.process_count(connections)
    client = None if _force_python else node_client()
    if client is not None:
        argvs = [
            ["node", str(client / "client.js"), str(port), str(n), str(duration)]
            for n in fanout.split(connections, procs)
        ]
        results = fanout.run_commands("ws client", argvs, timeout=duration + CONNECT_TIMEOUT + 30)
        return _combined(results, f"node ws ({procs} processes)")
    args = [
        ["--port", str(port), "--connections", str(n), "--duration", str(duration)]
        for n in fanout.split(connections, procs)
    ]
    results = fanout.run("benchmarks.wsload", args, timeout=duration + CONNECT_TIMEOUT + 30)
    return _combined(results, f"trio-websocket ({procs} processes)")


def _combined(results: list[dict[str, Any]], tool: str) -> WsResult:
    rate = sum(r["messages"] / r["elapsed"] for r in results if r["elapsed"] > 0)
    if rate == 0:
        reasons = [r["error"] for r in results if r.get("error")]
        raise RuntimeError(reasons[0] if reasons else "no message echoed")
    return WsResult(
        rate,
        int(sum(r["messages"] for r in results)),
        int(sum(r["errors"] for r in results)),
        tool,
    )


# Set by `--generator builtin`: the Python clients, to compare or test the fallback.
_force_python = False


def force_python(on: bool = True) -> None:
    global _force_python
    _force_python = on


async def echo_loop(port: int, connections: int, duration: float) -> dict[str, Any]:
    """One worker: open the websockets, echo for `duration`, then close them cleanly."""
    # Imported here so that `--help` and the HTTP scenarios work without it installed.
    from trio_websocket import ConnectionClosed, HandshakeError, open_websocket_url

    url = f"ws://127.0.0.1:{port}/ws"
    done = errors = opened = 0
    first_error: str | None = None
    deadline = 0.0
    ready = trio.Event()

    def mark_opened() -> None:
        # The clock starts when the last connection is up (or has failed), so the
        # handshakes are not counted; the deadline is set before anyone reads it.
        nonlocal opened, deadline
        opened += 1
        if opened == connections:
            deadline = trio.current_time() + duration
            ready.set()

    async def client() -> None:
        nonlocal done, errors, first_error
        up = False
        try:
            with trio.CancelScope(deadline=trio.current_time() + CONNECT_TIMEOUT) as scope:
                async with open_websocket_url(url) as ws:
                    scope.deadline = math.inf
                    up = True
                    mark_opened()
                    await ready.wait()
                    with trio.move_on_at(deadline):
                        while True:
                            await ws.send_message(MESSAGE)
                            if await ws.get_message() == MESSAGE:
                                done += 1
                            else:
                                errors += 1
                    # A bounded close: a server that never answers the close frame
                    # must not hang the run.
                    scope.deadline = trio.current_time() + 2
            if scope.cancelled_caught and not up:
                raise TimeoutError(f"no websocket handshake within {CONNECT_TIMEOUT:.0f} s")
        except (OSError, HandshakeError, ConnectionClosed) as exc:
            errors += 1
            first_error = first_error or _describe(exc)
        finally:
            if not up:
                mark_opened()

    async with trio.open_nursery() as nursery:
        for _ in range(connections):
            nursery.start_soon(client)
    return {"messages": done, "errors": errors, "elapsed": duration, "error": first_error}


def _describe(exc: BaseException) -> str:
    # trio-websocket puts a rejection's status first in its args; say that, not the repr.
    status = getattr(exc, "status_code", None)
    if status is not None:
        return f"{type(exc).__name__}: handshake answered HTTP {status}"
    return f"{type(exc).__name__}: {exc}"[:200]


def _main() -> None:
    parser = argparse.ArgumentParser(description="one worker of the WebSocket echo load")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--duration", type=float, default=5.0)
    a = parser.parse_args()
    print(json.dumps(trio.run(echo_loop, a.port, a.connections, a.duration)))


if __name__ == "__main__":
    _main()
