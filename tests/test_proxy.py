"""Proxy headers: the sans-I/O parsing, then what the app sees from trusted and untrusted peers."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import httpx
import pytest
import trio

import trioasgi
from tests import apps
from tests.conftest import MemoryConnection, read_until_closed, running_server
from trioasgi.cli.flags import build_parser, config_from_args
from trioasgi.core.proxy import TrustedProxies, forwarded_client_and_scheme, parse_forwarded

LOCAL = ("127.0.0.1", 5000)


def resolve(
    headers: dict[str, str] | list[tuple[str, str]],
    *,
    trusted: str = "127.0.0.1",
    client: tuple[str, int] | None = LOCAL,
    scheme: str = "http",
) -> tuple[tuple[str, int] | None, str]:
    items = headers.items() if isinstance(headers, dict) else headers
    raw = [(name.lower().encode(), value.encode()) for name, value in items]
    return forwarded_client_and_scheme(raw, client, scheme, TrustedProxies(trusted))


# -- trusted proxies --------------------------------------------------------------------


def test_trusted_proxies_ips_networks_paths_and_star() -> None:
    proxies = TrustedProxies("127.0.0.1, 10.0.0.0/8,::1 , fd00::/8,/run/app.sock")
    assert proxies.trusts("127.0.0.1") and proxies.trusts("10.1.2.3")
    assert proxies.trusts("::1") and proxies.trusts("fd00::5")
    assert not proxies.trusts("11.0.0.1") and not proxies.trusts("unknown")
    assert proxies.trusts_peer(("10.9.9.9", 1), ("10.0.0.1", 80))
    assert not proxies.trusts_peer(("192.0.2.1", 1), ("10.0.0.1", 80))
    assert proxies.trusts_peer(None, ("/run/app.sock", None))
    assert not proxies.trusts_peer(None, ("/run/other.sock", None))
    everyone = TrustedProxies("*")
    assert everyone.trusts("192.0.2.1") and everyone.trusts_peer(None, ("/x", None))


def test_trusted_proxies_typo_is_a_config_error() -> None:
    with pytest.raises(trioasgi.ConfigError, match=r"'10\.0\.0\.300' is not an IP address"):
        trioasgi.Config(forwarded_allow_ips="127.0.0.1,10.0.0.300")


# -- X-Forwarded-For / X-Forwarded-Proto ----------------------------------------------------


def test_x_forwarded_for_single_hop() -> None:
    assert resolve({"X-Forwarded-For": "203.0.113.7"}) == (("203.0.113.7", 0), "http")


def test_x_forwarded_for_takes_the_rightmost_untrusted_hop() -> None:
    # The client made up 6.6.6.6; 203.0.113.7 is who talked to our trusted proxy 10.0.0.2.
    headers = {"X-Forwarded-For": "6.6.6.6, 203.0.113.7, 10.0.0.2"}
    assert resolve(headers, trusted="127.0.0.1,10.0.0.0/8")[0] == ("203.0.113.7", 0)


def test_x_forwarded_for_all_trusted_gives_the_leftmost() -> None:
    headers = [("X-Forwarded-For", "10.0.0.5, 10.0.0.6"), ("X-Forwarded-For", "10.0.0.7")]
    assert resolve(headers, trusted="127.0.0.1,10.0.0.0/8")[0] == ("10.0.0.5", 0)


def test_x_forwarded_for_ipv6_and_ports() -> None:
    assert resolve({"X-Forwarded-For": "2001:db8::1"})[0] == ("2001:db8::1", 0)
    assert resolve({"X-Forwarded-For": "[2001:db8::1]:4711"})[0] == ("2001:db8::1", 4711)
    assert resolve({"X-Forwarded-For": "192.0.2.1:81"})[0] == ("192.0.2.1", 81)


def test_x_forwarded_proto() -> None:
    assert resolve({"X-Forwarded-Proto": "https"}) == (LOCAL, "https")
    assert resolve({"X-Forwarded-Proto": "HTTPS"}) == (LOCAL, "https")
    assert resolve({"X-Forwarded-Proto": "gopher"}) == (LOCAL, "http")
    # A WebSocket connection gets ws/wss whatever the proxy calls it.
    assert resolve({"X-Forwarded-Proto": "https"}, scheme="ws")[1] == "wss"
    assert resolve({"X-Forwarded-Proto": "wss"}, scheme="ws")[1] == "wss"
    assert resolve({"X-Forwarded-Proto": "http"}, scheme="wss")[1] == "ws"
    assert resolve({"X-Forwarded-Proto": "wss"})[1] == "https"


def test_x_forwarded_proto_follows_the_chosen_hop() -> None:
    headers = {"X-Forwarded-For": "203.0.113.7, 10.0.0.2", "X-Forwarded-Proto": "https, http"}
    assert resolve(headers, trusted="127.0.0.1,10.0.0.0/8") == (("203.0.113.7", 0), "https")
    # Lists that do not line up: the nearest proxy's word.
    headers = {"X-Forwarded-For": "203.0.113.7, 10.0.0.2", "X-Forwarded-Proto": "https"}
    assert resolve(headers, trusted="127.0.0.1,10.0.0.0/8")[1] == "https"


def test_nothing_forwarded_changes_nothing() -> None:
    assert resolve({"Host": "x"}) == (LOCAL, "http")
    assert resolve({"X-Forwarded-For": ""}) == (LOCAL, "http")


# -- RFC 7239 Forwarded -------------------------------------------------------------------


def test_parse_forwarded_examples_from_the_rfc() -> None:
    assert parse_forwarded('for="_gazonk"') == [{"for": "_gazonk"}]
    assert parse_forwarded('For="[2001:db8:cafe::17]:4711"') == [
        {"for": "[2001:db8:cafe::17]:4711"}
    ]
    assert parse_forwarded("for=192.0.2.60;proto=http;by=203.0.113.43") == [
        {"for": "192.0.2.60", "proto": "http", "by": "203.0.113.43"}
    ]
    assert parse_forwarded("for=192.0.2.43, for=198.51.100.17") == [
        {"for": "192.0.2.43"},
        {"for": "198.51.100.17"},
    ]
    assert parse_forwarded('for="a\\"b";proto=https') == [{"for": 'a"b', "proto": "https"}]
    assert parse_forwarded("garbage") == []


def test_forwarded_header_sets_client_and_scheme() -> None:
    headers = {"Forwarded": 'for="[2001:db8:cafe::17]:4711";proto=https'}
    assert resolve(headers) == (("2001:db8:cafe::17", 4711), "https")


def test_forwarded_takes_the_rightmost_untrusted_hop_and_its_proto() -> None:
    headers = {"Forwarded": "for=6.6.6.6;proto=http, for=192.0.2.60;proto=https, for=10.0.0.2"}
    assert resolve(headers, trusted="127.0.0.1,10.0.0.0/8") == (("192.0.2.60", 0), "https")


def test_forwarded_wins_over_x_forwarded() -> None:
    headers = {"Forwarded": "for=192.0.2.60", "X-Forwarded-For": "198.51.100.1"}
    assert resolve(headers)[0] == ("192.0.2.60", 0)


def test_forwarded_unknown_or_obfuscated_client_is_none() -> None:
    assert resolve({"Forwarded": "for=unknown"})[0] is None
    assert resolve({"Forwarded": "for=_hidden;proto=https"}) == (None, "https")


def test_forwarded_with_proto_only_keeps_the_client() -> None:
    assert resolve({"Forwarded": "proto=https"}) == (LOCAL, "https")


# -- where the scope is built ----------------------------------------------------------------

SPOOF = b"GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 203.0.113.7\r\nX-Forwarded-Proto: https\r\n"


async def _scope_over_memory(nursery: trio.Nursery, **settings: object) -> dict:
    conn = MemoryConnection(apps.show_scope, nursery, **settings)
    await conn.send(SPOOF + b"Connection: close\r\n\r\n")
    data = await conn.read_all()
    body = data.partition(b"\r\n\r\n")[2]
    # show_scope answers chunked: one chunk, then the terminator.
    size, _, rest = body.partition(b"\r\n")
    return json.loads(rest[: int(size, 16)])


async def test_trusted_peer_headers_reach_the_scope(nursery: trio.Nursery) -> None:
    scope = await _scope_over_memory(nursery)
    assert scope["client"] == ["203.0.113.7", 0]
    assert scope["scheme"] == "https"


async def test_untrusted_peer_headers_are_ignored(nursery: trio.Nursery) -> None:
    scope = await _scope_over_memory(nursery, forwarded_allow_ips="10.0.0.1")
    assert scope["client"] == ["127.0.0.1", 50000]
    assert scope["scheme"] == "http"


async def test_proxy_headers_off(nursery: trio.Nursery) -> None:
    scope = await _scope_over_memory(nursery, proxy_headers=False)
    assert scope["client"] == ["127.0.0.1", 50000]
    assert scope["scheme"] == "http"


async def test_over_tcp_loopback_is_trusted_by_default() -> None:
    async with running_server(apps.show_scope) as server:
        stream = await server.connect()
        await stream.send_all(SPOOF.replace(b"HTTP/1.1", b"HTTP/1.0") + b"\r\n")
        data = await read_until_closed(stream)
    scope = json.loads(data.partition(b"\r\n\r\n")[2])
    assert (scope["client"], scope["scheme"]) == (["203.0.113.7", 0], "https")


async def test_unix_socket_peer_trusted_by_path(tmp_path: Path) -> None:
    path = str(tmp_path / "p.sock")
    headers = {"X-Forwarded-For": "203.0.113.7"}
    for allow, expected in ((path, ["203.0.113.7", 0]), ("127.0.0.1", None)):
        async with (
            running_server(apps.show_scope, uds=path, forwarded_allow_ips=allow),
            httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(uds=path)) as client,
        ):
            scope = (await client.get("http://localhost/", headers=headers)).json()
        assert scope["client"] == expected


def test_proxy_flags_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "10.0.0.0/8")
    config = config_from_args(build_parser().parse_args(["a:b", "--no-proxy-headers"]))
    assert config.forwarded_allow_ips == "10.0.0.0/8"
    assert config.proxy_headers is False
    config = config_from_args(build_parser().parse_args(["a:b", "--forwarded-allow-ips", "*"]))
    assert config.forwarded_allow_ips == "*"
    assert config.proxy_headers is True
    monkeypatch.delenv("FORWARDED_ALLOW_IPS")
    config = config_from_args(build_parser().parse_args(["a:b"]))
    assert config.forwarded_allow_ips == "127.0.0.1"


async def test_access_log_shows_the_forwarded_client(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="trioasgi.access")
    async with running_server(apps.hello) as server, httpx.AsyncClient() as client:
        await client.get(server.url + "/logged", headers={"X-Forwarded-For": "203.0.113.7"})
    assert '203.0.113.7:0 - "GET /logged HTTP/1.1" 200' in caplog.text


def test_x_forwarded_for_that_is_not_an_address_keeps_the_peer(caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="trioasgi.error")
    assert resolve({"X-Forwarded-For": "not-an-ip"}) == (LOCAL, "http")
    assert resolve({"X-Forwarded-For": "not-an-ip", "X-Forwarded-Proto": "https"}) == (
        LOCAL,
        "https",
    )
    assert "not-an-ip" in caplog.text
