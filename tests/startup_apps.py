"""An app whose lifespan startup waits at a gate, so a test can act while a worker starts.

The gate is a directory named by ``TEST_GATE_DIR``. A worker's lifespan
startup touches ``starting-PID`` there, then waits until ``open`` or
``open-PID`` exists (30 s at most, then it starts anyway). With
``TEST_FAIL_LIFESPAN`` set, the startup fails instead. HTTP requests get the
serving process's id.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import trio

POLL_SECONDS = 0.01
MAX_POLLS = 3000


async def _wait_at_the_gate() -> None:
    gate = Path(os.environ["TEST_GATE_DIR"])
    pid = os.getpid()
    (gate / f"starting-{pid}").touch()
    for _ in range(MAX_POLLS):  # a file across processes: nothing to wait on but the file
        if (gate / "open").exists() or (gate / f"open-{pid}").exists():
            return
        await trio.sleep(POLL_SECONDS)


async def app(scope: dict, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await receive()  # lifespan.startup
        if os.environ.get("TEST_FAIL_LIFESPAN"):
            await send({"type": "lifespan.startup.failed", "message": "the database is down"})
            return
        await _wait_at_the_gate()
        await send({"type": "lifespan.startup.complete"})
        await receive()  # lifespan.shutdown
        await send({"type": "lifespan.shutdown.complete"})
        return
    body = str(os.getpid()).encode()
    headers = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
