"""TLS end to end: trustme certificates, httpx and raw ``ssl`` clients, client certificates."""

from __future__ import annotations

import json
import logging
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trio
import trustme
from cryptography.hazmat.primitives import serialization

import trioasgi
from tests import apps
from tests.conftest import read_until_closed, running_server
from trioasgi.cli.main import main
from trioasgi.serving.tls import load_tls, rfc4514_name


class Certs:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, as files."""

    def __init__(self, directory: Path) -> None:
        self.ca = trustme.CA()
        self.server = self.ca.issue_cert("127.0.0.1", "localhost")
        self.client = self.ca.issue_cert("client@example.test", common_name="Client, Inc.")
        self.certfile = str(directory / "server.pem")
        self.keyfile = str(directory / "server.key")
        self.cafile = str(directory / "ca.pem")
        self.client_certfile = str(directory / "client.pem")
        self.client_keyfile = str(directory / "client.key")
        self.server.cert_chain_pems[0].write_to_path(self.certfile)
        self.server.private_key_pem.write_to_path(self.keyfile)
        self.ca.cert_pem.write_to_path(self.cafile)
        self.client.cert_chain_pems[0].write_to_path(self.client_certfile)
        self.client.private_key_pem.write_to_path(self.client_keyfile)

    def settings(self, **more: object) -> dict[str, object]:
        return {"ssl_certfile": self.certfile, "ssl_keyfile": self.keyfile, **more}

    def client_context(self, *, with_cert: bool = False) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.cafile)
        if with_cert:
            context.load_cert_chain(self.client_certfile, self.client_keyfile)
        return context


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Certs]:
    yield Certs(tmp_path_factory.mktemp("certs"))


async def test_https_request_sees_https_scheme_and_tls_extension(
    certs: Certs, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="trioasgi")
    async with (
        running_server(apps.show_scope, **certs.settings()) as server,
        httpx.AsyncClient(verify=certs.client_context()) as client,
    ):
        response = await client.get(f"https://127.0.0.1:{server.port}/secure")
    scope = response.json()
    assert scope["scheme"] == "https"
    assert scope["path"] == "/secure"
    tls = scope["extensions"]["tls"]
    assert tls["server_cert"] == certs.server.cert_chain_pems[0].bytes().decode()
    assert tls["client_cert_chain"] == []
    assert tls["client_cert_name"] is None
    assert tls["client_cert_error"] is None
    assert tls["tls_version"] in (0x0303, 0x0304)
    assert isinstance(tls["cipher_suite"], int) and 0 < tls["cipher_suite"] <= 0xFFFF
    assert f"Serving on https://127.0.0.1:{server.port}" in caplog.text


async def test_plain_http_has_no_tls_extension() -> None:
    async with running_server(apps.show_scope) as server, httpx.AsyncClient() as client:
        scope = (await client.get(server.url)).json()
    assert "tls" not in scope.get("extensions", {})
    assert scope["scheme"] == "http"


async def test_raw_ssl_client_alpn_version_and_cipher_number(certs: Certs) -> None:
    """A raw TLS 1.2 client offering http/1.1: ALPN picks it, and the scope names the TLS facts."""
    context = certs.client_context()
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers("ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES128-GCM-SHA256")
    context.set_alpn_protocols(["http/1.1"])
    async with running_server(apps.show_scope, **certs.settings()) as server:
        tcp = await server.connect()
        stream = trio.SSLStream(tcp, context, server_hostname="127.0.0.1")
        await stream.do_handshake()
        assert stream.selected_alpn_protocol() == "http/1.1"
        await stream.send_all(b"GET /raw HTTP/1.0\r\nHost: x\r\n\r\n")
        data = await read_until_closed(stream)
    tls = apps_json(data)["extensions"]["tls"]
    assert tls["tls_version"] == 0x0303
    # ECDHE-RSA-AES128-GCM-SHA256 is 0xC02F, ECDHE-ECDSA-AES128-GCM-SHA256 0xC02B (IANA).
    assert tls["cipher_suite"] in (0xC02F, 0xC02B)


def apps_json(data: bytes) -> dict:
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    return json.loads(body)


async def test_client_certificate_is_in_the_scope(certs: Certs) -> None:
    settings = certs.settings(ssl_ca_certs=certs.cafile, ssl_cert_reqs=2)
    async with (
        running_server(apps.show_scope, **settings) as server,
        httpx.AsyncClient(verify=certs.client_context(with_cert=True)) as client,
    ):
        scope = (await client.get(f"https://127.0.0.1:{server.port}/")).json()
    tls = scope["extensions"]["tls"]
    client_pem = certs.client.cert_chain_pems[0].bytes().decode()
    assert [ssl.PEM_cert_to_DER_cert(pem) for pem in tls["client_cert_chain"]] == [
        ssl.PEM_cert_to_DER_cert(client_pem)
    ]
    assert "CN=Client\\, Inc." in tls["client_cert_name"]
    assert tls["client_cert_error"] is None


async def test_required_client_certificate_missing_fails_the_handshake(certs: Certs) -> None:
    settings = certs.settings(ssl_ca_certs=certs.cafile, ssl_cert_reqs=2)
    async with running_server(apps.hello, **settings) as server:
        async with httpx.AsyncClient(verify=certs.client_context()) as client:
            with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
                await client.get(f"https://127.0.0.1:{server.port}/")
        # ...and the server keeps serving those who have one.
        async with httpx.AsyncClient(verify=certs.client_context(with_cert=True)) as client:
            assert (await client.get(f"https://127.0.0.1:{server.port}/")).text == "hello"


async def test_optional_client_certificate(certs: Certs) -> None:
    settings = certs.settings(ssl_ca_certs=certs.cafile, ssl_cert_reqs=1)
    async with (
        running_server(apps.show_scope, **settings) as server,
        httpx.AsyncClient(verify=certs.client_context()) as client,
    ):
        scope = (await client.get(f"https://127.0.0.1:{server.port}/")).json()
    assert scope["extensions"]["tls"]["client_cert_chain"] == []


async def test_silent_client_does_not_block_accept(certs: Certs) -> None:
    settings = certs.settings(timeout_tls_handshake=1000)
    async with running_server(apps.hello, **settings) as server:
        silent = await server.connect()  # connects, never says hello
        async with httpx.AsyncClient(verify=certs.client_context()) as client:
            # A handshake on the accept path would hang here until the bound fails.
            with trio.fail_after(10):
                response = await client.get(f"https://127.0.0.1:{server.port}/")
        assert response.text == "hello"
        await silent.aclose()


async def test_handshake_timeout_closes_a_silent_client(certs: Certs) -> None:
    async with running_server(apps.hello, **certs.settings(timeout_tls_handshake=0.1)) as server:
        silent = await server.connect()
        with trio.fail_after(10):
            assert await read_until_closed(silent) == b""


async def test_plain_http_to_a_tls_port_is_closed(certs: Certs) -> None:
    async with running_server(apps.hello, **certs.settings()) as server:
        stream = await server.connect()
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        with trio.fail_after(5):
            data = await read_until_closed(stream)
    assert b"HTTP/1.1 200" not in data


def test_missing_certificate_is_one_sentence(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    missing = str(tmp_path / "nope.pem")
    status = main(["tests.apps:hello", "--ssl-certfile", missing, "--port", "0"])
    assert status == 1
    err = capsys.readouterr().err.strip()
    assert err == (
        f"trio-asgi: error: could not load the TLS certificate {missing}: "
        "no such file or directory."
    )


def test_key_that_does_not_match_is_one_sentence(
    certs: Certs, capsys: pytest.CaptureFixture
) -> None:
    status = main(
        [
            "tests.apps:hello",
            "--ssl-certfile",
            certs.certfile,
            "--ssl-keyfile",
            certs.client_keyfile,
        ]
    )
    assert status == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"trio-asgi: error: could not load the TLS certificate {certs.certfile}")
    assert "\n" not in err


def test_encrypted_key(certs: Certs, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    key = serialization.load_pem_private_key(certs.server.private_key_pem.bytes(), None)
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"s3cret"),
        )
    )
    argv = ["tests.apps:hello", "--ssl-certfile", certs.certfile, "--ssl-keyfile", str(encrypted)]
    assert main(argv) == 1
    assert "is encrypted: give its password with --ssl-keyfile-password" in capsys.readouterr().err
    settings = trioasgi.Config(
        ssl_certfile=certs.certfile, ssl_keyfile=str(encrypted), ssl_keyfile_password="s3cret"
    )
    assert load_tls(settings) is not None
    assert main([*argv, "--ssl-keyfile-password", "wrong"]) == 1
    assert capsys.readouterr().err == (
        f"trio-asgi: error: could not decrypt the key file {encrypted}: wrong password?\n"
    )


@pytest.mark.parametrize(
    ("settings", "words"),
    [
        ({"ssl_keyfile": "k.pem"}, "--ssl-keyfile needs --ssl-certfile too"),
        ({"ssl_certfile": "c.pem", "ssl_cert_reqs": 2}, "--ssl-cert-reqs needs --ssl-ca-certs"),
        ({"ssl_certfile": "c.pem", "ssl_cert_reqs": 3}, "must be 0 .none., 1 .optional."),
        ({"timeout_tls_handshake": 0}, "TLS handshake timeout must be a positive"),
    ],
)
def test_tls_settings_that_make_no_sense(settings: dict, words: str) -> None:
    with pytest.raises(trioasgi.ConfigError, match=words):
        trioasgi.Config(**settings)


async def test_ciphers_flag_limits_the_choice(certs: Certs) -> None:
    settings = certs.settings(
        ssl_ciphers="ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES256-GCM-SHA384"
    )
    context = certs.client_context()
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    async with running_server(apps.show_scope, **settings) as server:
        async with httpx.AsyncClient(verify=context) as client:
            scope = (await client.get(f"https://127.0.0.1:{server.port}/")).json()
        assert scope["extensions"]["tls"]["cipher_suite"] in (0xC030, 0xC02C)
        only_aes128 = certs.client_context()
        only_aes128.maximum_version = ssl.TLSVersion.TLSv1_2
        only_aes128.set_ciphers("ECDHE-RSA-AES128-GCM-SHA256")
        async with httpx.AsyncClient(verify=only_aes128) as client:
            with pytest.raises(httpx.ConnectError):
                await client.get(f"https://127.0.0.1:{server.port}/")


def test_unknown_cipher_list_is_one_sentence(certs: Certs, capsys: pytest.CaptureFixture) -> None:
    argv = ["tests.apps:hello", *_tls_argv(certs), "--ssl-ciphers", "NO-SUCH-CIPHER"]
    assert main(argv) == 1
    assert "no usable cipher in the TLS cipher list 'NO-SUCH-CIPHER'" in capsys.readouterr().err


def _tls_argv(certs: Certs) -> list[str]:
    return ["--ssl-certfile", certs.certfile, "--ssl-keyfile", certs.keyfile]


def test_rfc4514_name_order_and_escaping() -> None:
    subject = (
        (("countryName", "DE"),),
        (("organizationName", 'A+B, "C"'),),
        (("commonName", " lead#"), ("userId", "x=1")),
    )
    assert rfc4514_name(subject) == 'CN=\\ lead#+UID=x\\=1,O=A\\+B\\, \\"C\\",C=DE'
