"""Small ASGI WebSocket apps the tests serve, and a recorder of what the app saw."""

from __future__ import annotations

from typing import Any


class Recorder:
    """Keeps every message an app received, and its scope."""

    def __init__(self) -> None:
        self.scope: dict[str, Any] | None = None
        self.received: list[dict[str, Any]] = []

    @property
    def disconnect(self) -> dict[str, Any] | None:
        for message in self.received:
            if message["type"] == "websocket.disconnect":
                return message
        return None


def echo_app(recorder: Recorder | None = None, **accept: Any) -> Any:
    """Accepts (with ``accept``'s fields) and sends every message back until disconnect."""

    async def app(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        if recorder is not None:
            recorder.scope = scope
        message = await receive()
        assert message["type"] == "websocket.connect"
        await send({"type": "websocket.accept", **accept})
        while True:
            message = await receive()
            if recorder is not None:
                recorder.received.append(message)
            if message["type"] == "websocket.disconnect":
                return
            await send(
                {
                    "type": "websocket.send",
                    "text": message.get("text"),
                    "bytes": message.get("bytes"),
                }
            )

    return app
