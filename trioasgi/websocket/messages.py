"""WebSocket messages, sans I/O: between wsproto's message events and ASGI's dicts.

:class:`MessageAssembler` joins a fragmented message and enforces the size
limit (``ws_max_size``) across its fragments; :func:`payload_size` is what
the session counts against its read-ahead queue's byte bound;
:func:`outgoing_message` turns a ``websocket.send`` into the event wsproto frames.
"""

from __future__ import annotations

from typing import Any

from wsproto.events import BytesMessage, Message, TextMessage


def outgoing_message(message: dict[str, Any]) -> Message[Any]:
    """The wsproto event for a ``websocket.send``; ``RuntimeError`` unless it has
    exactly one of ``text`` and ``bytes``."""
    text = message.get("text")
    if text is not None:
        if message.get("bytes") is None:
            return TextMessage(data=text)
    else:
        data = message.get("bytes")
        if data is not None:
            return BytesMessage(data=data if type(data) is bytes else bytes(data))
    raise RuntimeError("websocket.send needs exactly one of 'bytes' and 'text'")


def payload_size(message: dict[str, Any]) -> int:
    """Roughly the bytes a queued ``websocket.receive`` holds (characters for text)."""
    return len(message.get("bytes") or message.get("text") or "")


class MessageAssembler:
    """Assembles wsproto's message pieces into ASGI messages, within the size limit."""

    TOO_BIG: dict[str, Any] = {"too": "big"}

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._parts: list[Any] = []
        self._size = 0

    def add(self, event: Message[Any]) -> dict[str, Any] | None:
        """The whole message once ``event`` finishes it, None before, ``TOO_BIG`` past the limit."""
        data = event.data
        if isinstance(data, str):
            self._size += len(data) if data.isascii() else len(data.encode("utf-8"))
        else:
            self._size += len(data)
        if self._size > self.max_size:
            return self.TOO_BIG
        if not event.message_finished:
            self._parts.append(data)
            return None
        if self._parts:
            self._parts.append(data)
            data = ("" if isinstance(data, str) else b"").join(self._parts)
            self._parts = []
        self._size = 0
        if isinstance(event, TextMessage):
            return {"type": "websocket.receive", "text": data}
        return {"type": "websocket.receive", "bytes": bytes(data)}
