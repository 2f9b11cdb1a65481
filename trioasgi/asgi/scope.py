"""The ASGI ``http`` scope of a request, the same for every HTTP version.

A WebSocket scope starts from it (``websocket.handshake``).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from ..core.proxy import forwarded_client_and_scheme
from .context import Connection
from .request import RequestHead

ASGI_VERSION = {"version": "3.0", "spec_version": "2.5"}

# The scope's strings for the usual methods and versions, decoded once.
_METHODS = {
    method.encode(): method
    for method in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")
}
#: The extensions every HTTP request is offered, over HTTP/1.1 and HTTP/2.
#: Each scope gets a shallow copy (a middleware may add to its own), which
#: is cheaper than building the dict anew.
HTTP_EXTENSIONS: dict[str, Any] = {
    "http.response.pathsend": {},
    "http.response.zerocopysend": {},
    "http.response.early_hint": {},
    "http.response.trailers": {},
}
_HTTP_VERSIONS = {b"1.1": "1.1", b"1.0": "1.0", b"2": "2"}


def build_scope(conn: Connection, request: RequestHead, proxied: bool = True) -> dict[str, Any]:
    """The HTTP scope of a request (a WebSocket scope starts from it).

    ``proxied=False`` says it has no proxy header (``FieldFacts.proxied``).
    """
    headers = request.headers
    target = request.target
    if target[:1] != b"/" and target.startswith((b"http://", b"https://")):
        # absolute-form (RFC 9112, 3.2.2): the path starts after the authority.
        slash = target.find(b"/", target.index(b"//") + 2)
        target = target[slash:] if slash != -1 else b"/"
    raw_path, _, query_string = target.partition(b"?")
    root_path = conn.ctx.config.root_path
    path = raw_path.decode("ascii")
    if "%" in path:
        path = unquote(path)
    if root_path:
        path = root_path + path
        raw_path = root_path.encode() + raw_path
    client, scheme = conn.client, conn.scheme
    if proxied and conn.proxy_trusted:
        client, scheme = forwarded_client_and_scheme(
            headers, client, scheme, conn.ctx.trusted_proxies
        )
    scope = {
        "type": "http",
        "asgi": ASGI_VERSION,
        "http_version": _HTTP_VERSIONS.get(request.http_version)
        or request.http_version.decode("ascii"),
        "server": conn.server,
        "client": client,
        "scheme": scheme,
        "method": _METHODS.get(request.method) or request.method.decode("ascii"),
        "root_path": root_path,
        "path": path,
        "raw_path": raw_path,
        "query_string": query_string,
        "headers": headers,
        "state": conn.ctx.lifespan_state.copy(),
        # What the extensions do: asgi.files and the protocols' cycles.
        "extensions": HTTP_EXTENSIONS.copy(),
    }
    if conn.tls is not None:
        scope["extensions"] = {**HTTP_EXTENSIONS, "tls": conn.tls}
    return scope
