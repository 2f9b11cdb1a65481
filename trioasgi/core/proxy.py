"""Proxy headers: who the client really is, and which scheme it used, when a trusted proxy says.

Sans-I/O: :class:`TrustedProxies` parses ``--forwarded-allow-ips`` and
:func:`forwarded_client_and_scheme` reads one request's headers. The server
asks :func:`peer_is_trusted` once per connection, so a request from
an untrusted peer (or with ``--no-proxy-headers``) costs nothing.

The client is the rightmost address in the chain that is not a trusted proxy
(as uvicorn does since 0.30): every hop to its right was added by a proxy we
trust, anything to its left may have been made up by the client. An RFC 7239
``Forwarded`` header, where present, is used instead of the ``X-Forwarded-*`` ones.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
from collections.abc import Iterable

from .errors import ConfigError

# By name, not from .logs: that module imports the config, which imports this one.
logger = logging.getLogger("trioasgi.error")

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_Address = ipaddress.IPv4Address | ipaddress.IPv6Address

_CACHE_SIZE = 1024

#: The scheme to report, by the scheme the proxy says and the kind of connection (http, ws).
_SCHEMES = {
    ("http", False): "http",
    ("https", False): "https",
    ("ws", False): "http",
    ("wss", False): "https",
    ("http", True): "ws",
    ("https", True): "wss",
    ("ws", True): "ws",
    ("wss", True): "wss",
}


class TrustedProxies:
    """The peers whose proxy headers we believe: IPs, networks, unix socket paths or ``*``."""

    def __init__(self, spec: str) -> None:
        self.everyone = False
        self.networks: list[_Network] = []
        self.socket_paths: set[str] = set()
        # Parsing an address costs microseconds; the same few proxies come back every time.
        self._verdicts: dict[str, bool] = {}
        for entry in (part.strip() for part in spec.split(",")):
            if not entry:
                continue
            if entry == "*":
                self.everyone = True
            elif entry.startswith("/"):
                self.socket_paths.add(entry)
            else:
                try:
                    self.networks.append(ipaddress.ip_network(entry, strict=False))
                except ValueError:
                    raise ConfigError(
                        f"forwarded-allow-ips entry {entry!r} is not an IP address, "
                        "a network, a socket path or '*'"
                    ) from None

    def trusts_peer(
        self, client: tuple[str, int] | None, server: tuple[str, int | None] | None
    ) -> bool:
        """Whether to believe the proxy headers on a connection (a scope's client and server).

        A unix socket connection (server ``(path, None)``) is trusted by its socket's path.
        """
        if self.everyone:
            return True
        if server is not None and server[1] is None:
            return server[0] in self.socket_paths
        return client is not None and self.trusts(client[0])

    def trusts(self, host: str) -> bool:
        if self.everyone:
            return True
        verdict = self._verdicts.get(host)
        if verdict is None:
            address = _ip_address(host)
            verdict = address is not None and any(
                address.version == network.version and address in network
                for network in self.networks
            )
            if len(self._verdicts) >= _CACHE_SIZE:
                self._verdicts.clear()
            self._verdicts[host] = verdict
        return verdict


def peer_is_trusted(
    proxies: TrustedProxies | None,
    client: tuple[str, int] | None,
    server: tuple[str, int | None] | None,
) -> bool:
    """Whether a new connection's proxy headers are believed (``proxies`` None: they are off)."""
    return proxies is not None and proxies.trusts_peer(client, server)


def forwarded_client_and_scheme(
    headers: Iterable[tuple[bytes, bytes]],
    client: tuple[str, int] | None,
    scheme: str,
    trusted: TrustedProxies,
) -> tuple[tuple[str, int] | None, str]:
    """``(client, scheme)`` as a trusted proxy reports them in these request headers."""
    forwarded: list[bytes] = []
    forwarded_for: list[bytes] = []
    forwarded_proto: list[bytes] = []
    for name, value in headers:
        if name == b"forwarded":
            forwarded.append(value)
        elif name == b"x-forwarded-for":
            forwarded_for.append(value)
        elif name == b"x-forwarded-proto":
            forwarded_proto.append(value)
    if forwarded:
        hops = parse_forwarded(b",".join(forwarded).decode("latin-1"))
        # A hop that does not say who its client was is "unknown" (RFC 7239, 6.2),
        # unless no hop says it: then the header only carries the proto.
        nodes = [hop.get("for", "unknown") for hop in hops] if any("for" in h for h in hops) else []
        protos = [hop.get("proto", "") for hop in hops]
    else:
        nodes = _split(forwarded_for)
        protos = _split(forwarded_proto)
    if nodes:
        index = _client_index(nodes, trusted)
        address = _node_address(nodes[index])
        if address is None and not forwarded:
            # X-Forwarded-For has no "unknown" hop (Forwarded has, RFC 7239
            # 6.2): a hop that is not an address is a broken header, and an
            # app would rather see the proxy than no client at all.
            logger.debug("ignoring X-Forwarded-For hop %r: not an IP address", nodes[index])
        else:
            client = address
        # The proto that goes with the chosen hop, when the proxies kept the lists aligned;
        # otherwise the one the nearest proxy set.
        proto = protos[index] if len(protos) == len(nodes) else (protos[-1] if protos else None)
    else:
        proto = protos[-1] if protos else None
    if proto:
        websocket = scheme in ("ws", "wss")
        scheme = _SCHEMES.get((proto.strip().lower(), websocket), scheme)
    return client, scheme


def _split(values: list[bytes]) -> list[str]:
    if not values:
        return []
    parts = (part.strip() for part in b",".join(values).decode("latin-1").split(","))
    return [part for part in parts if part]


def _client_index(nodes: list[str], trusted: TrustedProxies) -> int:
    """The rightmost hop that is not a trusted proxy; the leftmost if all are."""
    for index in range(len(nodes) - 1, -1, -1):
        if not trusted.trusts(_node_host(nodes[index])):
            return index
    return 0


def _node_host(node: str) -> str:
    if node.startswith("["):
        return node[1 : node.find("]")] if "]" in node else node
    host, _, port = node.partition(":")
    return host if port.isdigit() else node


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _ip_address(host: str) -> _Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _node_address(node: str) -> tuple[str, int] | None:
    """A hop as an ASGI ``client``; None for ``unknown`` and obfuscated identifiers."""
    host = _node_host(node)
    if _ip_address(host) is None:
        return None
    rest = node[node.find("]") + 1 :] if node.startswith("[") else node[len(host) :]
    port = rest[1:] if rest.startswith(":") else ""
    return (host, int(port) if port.isdigit() else 0)


def parse_forwarded(value: str) -> list[dict[str, str]]:
    """The elements of an RFC 7239 ``Forwarded`` value, each a dict of lower-case parameter names.

    Quoted strings are unquoted; a malformed pair is skipped rather than failing the request.
    """
    elements: list[dict[str, str]] = [{}]
    i, n = 0, len(value)
    while i < n:
        ch = value[i]
        if ch in " \t;":
            i += 1
            continue
        if ch == ",":
            elements.append({})
            i += 1
            continue
        eq = value.find("=", i)
        if eq == -1:
            break
        name = value[i:eq].strip().lower()
        i = eq + 1
        if i < n and value[i] == '"':
            text, i = _quoted_string(value, i + 1)
        else:
            end = i
            while end < n and value[end] not in ";,":
                end += 1
            text, i = value[i:end].strip(), end
        if name and name not in elements[-1]:
            elements[-1][name] = text
    return [element for element in elements if element]


def _quoted_string(value: str, i: int) -> tuple[str, int]:
    """The content of a quoted-string starting after its opening quote, and where it ends."""
    out = []
    n = len(value)
    while i < n:
        ch = value[i]
        if ch == "\\" and i + 1 < n:
            out.append(value[i + 1])
            i += 2
            continue
        if ch == '"':
            return "".join(out), i + 1
        out.append(ch)
        i += 1
    return "".join(out), i
