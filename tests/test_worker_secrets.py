"""No secret on a worker's command line, in its environment or in any log line.

``ps`` shows every process's command line to every local user, and
``/proc/PID/environ`` shows a process's environment to its user: the
workers get their settings over their socketpair instead, and their
environment without ``TRIO_ASGI_SSL_KEYFILE_PASSWORD``.
"""

from __future__ import annotations

import signal
import ssl
from pathlib import Path

import httpx
import trustme
from cryptography.hazmat.primitives import serialization

import trioasgi
from tests.processes import server_process
from tests.test_worker_startup import _children

PASSWORD = "pw-0f6c2b91-never-shown"


def _encrypted_tls(tmp_path: Path) -> tuple[trustme.CA, list[str]]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    key = serialization.load_pem_private_key(cert.private_key_pem.bytes(), None)
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(PASSWORD.encode()),
        )
    )
    return ca, [
        "--ssl-certfile",
        str(tmp_path / "cert.pem"),
        "--ssl-keyfile",
        str(tmp_path / "key.pem"),
    ]


async def test_workers_get_the_key_password_but_show_it_nowhere(tmp_path: Path) -> None:
    ca, tls = _encrypted_tls(tmp_path)
    env = {"TRIO_ASGI_SSL_KEYFILE_PASSWORD": PASSWORD}
    args = ("tests.apps:pid", "--workers", "2", "--log-level", "trace", *tls)
    async with server_process(tmp_path, *args, env=env) as server:
        port = int((await server.wait_for_log(r"Listening on https://127\.0\.0\.1:(\d+)"))[0])
        await server.wait_for_log("Started 2 workers")
        workers = _children(server.process.pid)
        assert len(workers) == 2
        for pid in workers:
            for name in ("cmdline", "environ"):
                assert PASSWORD.encode() not in Path(f"/proc/{pid}/{name}").read_bytes(), name
        # The workers did decrypt the key: they answer over TLS.
        context = ssl.create_default_context()
        ca.configure_trust(context)
        async with httpx.AsyncClient(verify=context) as client:
            response = await client.get(f"https://127.0.0.1:{port}/")
        assert response.status_code == 200
        assert int(response.text) in workers
        server.signal(signal.SIGTERM)
        assert await server.wait() == 0
    assert "Started 2 workers" in server.log
    assert PASSWORD not in server.log


def test_the_password_is_not_in_a_configs_repr() -> None:
    config = trioasgi.Config(ssl_certfile="c.pem", ssl_keyfile_password=PASSWORD)
    assert PASSWORD not in repr(config)
