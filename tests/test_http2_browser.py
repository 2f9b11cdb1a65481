"""A real browser over HTTP/2: headless Chromium loads a page over TLS and opens a WebSocket.

ALPN gives Chromium h2 for the page; the page reports the protocol the
navigation used (``nextHopProtocol``), echoes a message over a ``wss://``
WebSocket to the same host, and POSTs what it saw back to the server. With
the server's HTTP/2 connection open and its SETTINGS allowing extended
CONNECT, Chromium opens that WebSocket as a stream of the same connection
(RFC 8441): the app sees a websocket scope with ``http_version`` "2".
The certificate is a throwaway one that Chromium is told to accept.
"""

from __future__ import annotations

import json
from pathlib import Path

import trio
import trustme

from tests.browser import browse_until, needs_chromium
from tests.conftest import running_server
from tests.http2_gate import needs_http2

pytestmark = [
    needs_http2,
    needs_chromium,
]

PAGE = b"""<!doctype html>
<html><body><script>
const result = {};
let reported = false;
function report() {
  if (reported) return;
  reported = true;
  fetch("/result", {method: "POST", body: JSON.stringify(result)});
}
window.addEventListener("load", () => {
  const navigation = performance.getEntriesByType("navigation")[0];
  result.navigation = navigation ? navigation.nextHopProtocol : null;
  const ws = new WebSocket(`wss://${location.host}/ws`);
  ws.onopen = () => ws.send("hello over h2");
  ws.onmessage = (event) => {
    result.echo = event.data;
    ws.close(1000, "done");
  };
  ws.onclose = (event) => {
    result.code = event.code;
    report();
  };
  ws.onerror = () => {
    result.error = true;
  };
});
</script></body></html>
"""


async def test_chromium_loads_over_h2_and_its_websocket_goes_over_h2(tmp_path: Path) -> None:
    result: dict = {}
    reported = trio.Event()
    websocket_scopes: list[dict] = []
    http_versions: dict[str, str] = {}

    async def app(scope, receive, send):
        if scope["type"] == "websocket":
            websocket_scopes.append(scope)
            await receive()
            await send({"type": "websocket.accept"})
            while True:
                message = await receive()
                if message["type"] == "websocket.disconnect":
                    return
                await send({**message, "type": "websocket.send"})
        if scope["type"] != "http":
            return
        http_versions[scope["path"]] = scope["http_version"]
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if scope["path"] == "/result":
            result.update(json.loads(body))
            reported.set()
            page, content_type = b"ok", b"text/plain"
        elif scope["path"] == "/":
            page, content_type = PAGE, b"text/html"
        else:  # /favicon.ico
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", content_type)],
            }
        )
        await send({"type": "http.response.body", "body": page})

    cert = trustme.CA().issue_cert("127.0.0.1")
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "server.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "server.key"))
    tls = {
        "ssl_certfile": str(tmp_path / "server.pem"),
        "ssl_keyfile": str(tmp_path / "server.key"),
    }
    async with running_server(app, **tls) as server:
        url = f"https://127.0.0.1:{server.port}/"
        await browse_until(url, tmp_path / "profile", reported, "--ignore-certificate-errors")
    assert result["navigation"] == "h2"
    assert result.get("error") is None
    assert result["echo"] == "hello over h2"
    assert result["code"] == 1000
    assert http_versions["/"] == "2"
    assert http_versions["/result"] == "2"
    assert len(websocket_scopes) == 1
    scope = websocket_scopes[0]
    assert scope["scheme"] == "wss"
    assert scope["path"] == "/ws"
    assert scope["http_version"] == "2"
