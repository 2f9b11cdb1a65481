"""--workers: the supervisor keeps N workers serving through crashes, restarts and shutdown."""

from __future__ import annotations

import os
import re
import signal
import ssl

import httpx
import trio
import trustme

from tests.processes import server_process

PID_APP = "tests.apps:pid"


async def get_pid(client: httpx.AsyncClient, url: str) -> int:
    response = await client.get(url, headers={"connection": "close"})
    assert response.status_code == 200
    return int(response.text)


async def test_a_killed_worker_is_replaced_and_the_service_stays_up(tmp_path) -> None:
    async with server_process(tmp_path, PID_APP, "--workers", "2") as server:
        url = f"http://127.0.0.1:{await server.port()}/"
        await server.wait_for_log("Started 2 workers")
        first = {int(p) for p in await server.wait_for_log(r"Started worker \[(\d+)\]", 2)}
        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        async with httpx.AsyncClient() as client:
            # Requests keep succeeding while the supervisor notices and replaces it.
            pids = await server.wait_for_log(r"Started worker \[(\d+)\]", 3)
            replacement = int(pids[2])
            assert replacement not in first
            # Which worker accepts a connection is the kernel's choice; freeze
            # the other survivor so that only the replacement can answer.
            (survivor,) = first - {victim}
            os.kill(survivor, signal.SIGSTOP)
            try:
                seen = {await get_pid(client, url) for _ in range(3)}
            finally:
                os.kill(survivor, signal.SIGCONT)
            assert seen == {replacement}
        assert "was killed by SIGKILL" in server.log
        server.signal(signal.SIGTERM)
        assert await server.wait() == 0


async def test_sigterm_drains_the_request_in_flight_and_exits_0(tmp_path) -> None:
    async with server_process(tmp_path, PID_APP, "--workers", "2") as server:
        port = await server.port()
        await server.wait_for_log("Started 2 workers")
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        head = await stream.receive_some(65536)
        assert head.startswith(b"HTTP/1.1 200 ")  # the response is under way
        server.signal(signal.SIGTERM)
        data = head
        with trio.fail_after(10):
            while not data.endswith(b"!"):
                chunk = await stream.receive_some(65536)
                assert chunk, data
                data += chunk
        assert await server.wait() == 0
        assert "All workers stopped" in server.log
        assert "exiting now" not in server.log


async def test_sighup_restarts_every_worker_while_serving(tmp_path) -> None:
    async with server_process(tmp_path, PID_APP, "--workers", "2") as server:
        url = f"http://127.0.0.1:{await server.port()}/"
        await server.wait_for_log("Started 2 workers")
        old = {int(p) for p in await server.wait_for_log(r"Started worker \[(\d+)\]", 2)}
        answered: list[int] = []
        async with httpx.AsyncClient() as client:
            async with trio.open_nursery() as nursery:

                async def load() -> None:
                    while True:  # every request must succeed; cancelled below
                        answered.append(await get_pid(client, url))

                nursery.start_soon(load)
                server.signal(signal.SIGHUP)
                await server.wait_for_log("Rolling restart done")
                await server.wait_for_log(r"Worker \[\d+\] stopped", 2)
                nursery.cancel_scope.cancel()
            new = {int(p) for p in re.findall(r"Started worker \[(\d+)\]", server.log)} - old
            assert len(new) == 2
            for _ in range(100):
                if await get_pid(client, url) in new:
                    break
            else:
                raise AssertionError("no new worker answered")
        assert answered
        assert "died" not in server.log and "killed" not in server.log
        server.signal(signal.SIGTERM)
        assert await server.wait() == 0


async def test_limit_max_requests_recycles_workers_without_failing_requests(tmp_path) -> None:
    async with server_process(
        tmp_path, PID_APP, "--workers", "2", "--limit-max-requests", "3"
    ) as server:
        url = f"http://127.0.0.1:{await server.port()}/"
        async with httpx.AsyncClient() as client:  # keep-alive: it must be told to reconnect
            pids = []
            for _ in range(10):
                response = await client.get(url)
                assert response.status_code == 200
                pids.append(int(response.text))
        # 10 requests, 3 per worker: at least two workers were recycled.
        assert len(set(pids)) >= 4
        assert all(pids.count(pid) <= 3 for pid in pids)
        assert server.log.count("finished (request limit)") >= 2
        server.signal(signal.SIGTERM)
        assert await server.wait() == 0


async def test_workers_that_cannot_start_end_the_supervisor(tmp_path) -> None:
    async with server_process(tmp_path, "tests.apps:missing", "--workers", "2") as server:
        assert await server.wait() == 1
        assert 'attribute "missing" not found' in server.log


async def test_workers_share_a_unix_socket_and_the_supervisor_removes_it(tmp_path) -> None:
    path = tmp_path / "app.sock"
    async with server_process(tmp_path, PID_APP, "--workers", "2", "--uds", str(path)) as server:
        await server.wait_for_log("Started 2 workers")
        assert f"Listening on unix:{path}" in server.log
        transport = httpx.AsyncHTTPTransport(uds=str(path))
        async with httpx.AsyncClient(transport=transport) as client:
            workers = {int(p) for p in re.findall(r"Started worker \[(\d+)\]", server.log)}
            assert await get_pid(client, "http://localhost/") in workers
        server.signal(signal.SIGTERM)
        assert await server.wait() == 0
    assert not path.exists()


async def test_workers_serve_tls(tmp_path) -> None:
    """Each worker gets the TLS settings: https from every worker, one certificate."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    tls = ["--ssl-certfile", str(tmp_path / "cert.pem"), "--ssl-keyfile", str(tmp_path / "key.pem")]
    async with server_process(tmp_path, PID_APP, "--workers", "2", *tls) as server:
        port = int((await server.wait_for_log(r"Listening on https://127\.0\.0\.1:(\d+)"))[0])
        workers = {int(p) for p in await server.wait_for_log(r"Started worker \[(\d+)\]", 2)}
        context = ssl.create_default_context()
        ca.configure_trust(context)
        async with httpx.AsyncClient(verify=context) as client:
            # Which worker accepts is the kernel's choice: freeze one, then the other.
            for frozen in workers:
                os.kill(frozen, signal.SIGSTOP)
                try:
                    assert await get_pid(client, f"https://127.0.0.1:{port}/") == (
                        (workers - {frozen}).pop()
                    )
                finally:
                    os.kill(frozen, signal.SIGCONT)
