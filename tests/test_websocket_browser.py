"""A real browser: headless Chromium opens a page whose script talks WebSocket to the server.

The page echoes a few messages (text and binary) and reports what it saw
with an HTTP request back to the server; the test waits for that report.
"""

from __future__ import annotations

import json

import trio

from tests.browser import browse_until, needs_chromium
from tests.conftest import running_server

pytestmark = needs_chromium

PAGE = b"""<!doctype html>
<html><body><script>
const ws = new WebSocket(`ws://${location.host}/ws`, ["chat"]);
ws.binaryType = "arraybuffer";
const seen = [];
function report(result) {
  fetch("/result", {method: "POST", body: JSON.stringify(result)});
}
ws.onopen = () => {
  ws.send("hello");
  ws.send(new Uint8Array([1, 2, 3]));
  ws.send("x".repeat(100000));
};
ws.onmessage = (event) => {
  if (typeof event.data === "string") {
    seen.push(event.data.length > 20 ? "long:" + event.data.length : event.data);
  } else {
    seen.push("bytes:" + Array.from(new Uint8Array(event.data)).join(","));
  }
  if (seen.length === 3) ws.close(4000, "bye");
};
ws.onclose = (event) => report({seen, code: event.code, protocol: ws.protocol,
                                extensions: ws.extensions});
ws.onerror = () => report({error: true});
</script></body></html>
"""


async def test_chromium_exchanges_messages(tmp_path) -> None:
    result: dict = {}
    reported = trio.Event()
    app_saw: list[dict] = []

    async def app(scope, receive, send):
        if scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.accept", "subprotocol": "chat"})
            while True:
                message = await receive()
                app_saw.append(message)
                if message["type"] == "websocket.disconnect":
                    return
                await send({**message, "type": "websocket.send"})
        if scope["type"] != "http":
            return
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
        else:
            page, content_type = PAGE, b"text/html"
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", content_type)],
            }
        )
        await send({"type": "http.response.body", "body": page})

    async with running_server(app) as server:
        await browse_until(f"{server.url}/", tmp_path, reported)
    assert result["seen"] == ["hello", "bytes:1,2,3", "long:100000"]
    assert result["code"] == 4000
    assert result["protocol"] == "chat"
    assert result["extensions"].startswith("permessage-deflate")
    assert app_saw[-1] == {"type": "websocket.disconnect", "code": 4000, "reason": "bye"}
