"""``--log-level debug`` says when connections open and close, and why; workers name themselves."""

from __future__ import annotations

import logging
import re
import signal

import httpx

from tests import apps
from tests.conftest import read_until_closed, running_server
from tests.processes import server_process


async def test_connections_open_and_close_at_debug_with_the_reason(caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="trioasgi.error")
    async with running_server(apps.hello) as server:
        async with httpx.AsyncClient() as client:
            await client.get(server.url, headers={"connection": "close"})
        stream = await server.connect()
        await stream.send_all(b"GET / HTTP/1.1\r\nHost x\r\n\r\n")
        await read_until_closed(stream)
    lines = [r.getMessage() for r in caplog.records if r.name == "trioasgi.error"]
    opened = [line for line in lines if "connection open" in line]
    assert len(opened) == 2
    assert all(line.endswith("connection open (HTTP/1.1, http)") for line in opened)
    closed = sorted(line.split(": connection closed: ")[1] for line in lines if "closed" in line)
    assert len(closed) == 2 and closed[0].startswith("answered 400 ("), closed
    assert closed[1] == "the response closes it"
    assert all(re.match(r"127\.0\.0\.1:\d+: ", line) for line in opened)


async def test_worker_serving_lines_carry_the_pid(tmp_path) -> None:
    async with server_process(tmp_path, "tests.apps:hello", "--workers", "2") as server:
        started = await server.wait_for_log(r"Started worker \[(\d+)\]", 2)
        serving = await server.wait_for_log(r"Serving on http://\S+ in worker \[(\d+)\]", 2)
        assert sorted(serving) == sorted(started)
        server.signal(signal.SIGTERM)
        assert await server.wait() == 0
    assert not re.search(r"Serving on http://\S+ \(press", server.log)
