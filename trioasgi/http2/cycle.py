"""One HTTP/2 request and its response: the ASGI request cycle of ``asgi.cycle`` over a stream.

``receive()`` takes the body from the stream (which widens the client's
windows as it goes); ``send()`` validates the response head at
``http.response.start`` and sends it with the first body message, as
HTTP/1.1 does, so a simple response leaves as one HEADERS frame and one
DATA frame in the connection's next write. HTTP/2 has no framing to choose
and no keep-alive to decide: the stream ends with the response.
"""

from __future__ import annotations

import re
from typing import Any

import trio

from ..asgi.cycle import BODY, COMPLETE, START, TRAILERS, RequestCycle
from ..asgi.files import FileBody, read_chunks
from ..asgi.request import RequestHead
from ..core.errors import ClientDisconnected
from .request import CONNECTION_FIELDS, FIELD_NAME
from .stream import H2Stream

# The module-level names the per-request code reads (globals are cheap).
_START, _BODY, _COMPLETE, _TRAILERS = START, BODY, COMPLETE, TRAILERS

#: What a field value may not contain (RFC 9113, 8.2.1).
_FORBIDDEN_IN_VALUE = re.compile(rb"[\r\n\0]")

_STATUS_BYTES = {status: str(status).encode() for status in range(100, 600)}


#: Fields already checked, as the app gave them -> as sent (None: dropped).
#: Apps send the same few again and again; bounded in entries and in their
#: size (only short fields are kept), cleared when full.
_checked_fields: dict[tuple[bytes, bytes], tuple[bytes, bytes] | None] = {}
_CHECKED_FIELDS_MAX = 1024
_CHECKED_VALUE_MAX = 256


def _checked_field(name: bytes, value: bytes) -> tuple[bytes, bytes] | None:
    """A response field as HTTP/2 sends it, or None for a connection field; else ValueError."""
    name = bytes(name).lower()
    value = bytes(value)
    if not FIELD_NAME.fullmatch(name) or _FORBIDDEN_IN_VALUE.search(value):
        raise ValueError(f"invalid response header {name!r}: {value!r}")
    if name in CONNECTION_FIELDS:
        return None
    return name, value.strip(b" \t")


def response_head(status: int, headers: Any, defaults: Any) -> list[tuple[bytes, bytes]]:
    """The header block of a response: ``:status``, the app's fields checked, the defaults.

    ``ValueError`` for a status or field HTTP/2 cannot carry; the fields of
    an HTTP/1.1 connection are dropped (RFC 9113, 8.2.2).
    """
    if type(status) is not int or not 200 <= status <= 599:
        raise ValueError(f"invalid response status {status!r}")
    block = [(b":status", _STATUS_BYTES[status])]
    present = set()
    checked = _checked_fields
    for pair in headers:
        try:
            field = checked[pair]
        except KeyError:
            field = _checked_field(*pair)
            if len(pair[1]) <= _CHECKED_VALUE_MAX:
                if len(checked) >= _CHECKED_FIELDS_MAX:
                    checked.clear()
                checked[pair] = field
        except TypeError:  # unhashable (a list, a bytearray): checked every time
            field = _checked_field(*pair)
        if field is not None:
            present.add(field[0])
            block.append(field)
    block += defaults.pairs(without=present)
    return block


class H2Cycle(RequestCycle):
    """Runs the app for one request on an HTTP/2 stream."""

    __slots__ = ()

    conn: H2Stream

    def __init__(self, stream: H2Stream, request: RequestHead, proxied: bool = True) -> None:
        super().__init__(stream, request, proxied)

    # -- receive ------------------------------------------------------------

    async def receive(self) -> dict[str, Any]:
        stream = self.conn
        if self._body_complete or self.disconnected:
            if not self.disconnected:
                # Nothing more to read: wait until the client resets the stream
                # (or the connection goes) or our response is complete.
                while not stream.reset and self._response is not _COMPLETE:
                    await stream.wait_for_change()
            else:
                await trio.lowlevel.checkpoint()
            return {"type": "http.disconnect"}
        timeout = stream.ctx.config.timeout_request_body
        if timeout is None or stream.has_body_waiting() or stream.body_done:
            piece = await stream.read_body()
        else:
            piece = None
            with trio.move_on_after(timeout) as waited:
                piece = await stream.read_body()
            if waited.cancelled_caught:
                await self._refuse(408, "request body stalled")
                return {"type": "http.disconnect"}
        if piece is None:
            self._mark_disconnected()
            return {"type": "http.disconnect"}
        body, more = piece
        if self._body_limit is not None:
            self._body_received += len(body)
            if self._body_received > self._body_limit:
                await self._refuse(413, "request body too large")
                return {"type": "http.disconnect"}
        if not more:
            self._body_complete = True
        return {"type": "http.request", "body": body, "more_body": more}

    # -- send -----------------------------------------------------------------

    def _start_response(self, status: int, headers: Any) -> None:
        self._pending_head = response_head(status, headers, self.conn.ctx.response_defaults)

    async def _send_body(self, message: dict[str, Any]) -> None:
        body = message.get("body", b"")
        more_body = message.get("more_body", False)
        stream = self.conn
        if self._discard_body:
            body = b""
        # The last body message ends the stream, unless trailers follow.
        end = not more_body and not self._trailers
        head = self._pending_head
        if not more_body:
            self._response = _TRAILERS if self._trailers else _COMPLETE
        try:
            if head:
                self._pending_head = b""
                self._head_written = True
                stream.send_headers(head, end_stream=end and not body)
                if body:
                    await stream.send_data(body, end_stream=end)
            elif body or end:
                await stream.send_data(body, end_stream=end)
        except ClientDisconnected:
            self._mark_disconnected()
            raise
        if body and self._measure:
            self.body_bytes += len(body)
        if end:
            self._response_sent()

    async def _send_file(self, body: FileBody, more_body: bool) -> int:
        """A body from a file: read in chunks in a worker thread, sent as the windows allow.

        One chunk (``asgi.files.READ_CHUNK``) is in memory at a time, and the
        next is read only once the stream's flow control took the last.
        """
        stream = self.conn
        count = 0 if self._discard_body else body.count
        end = not more_body and not self._trailers
        head = self._pending_head
        if not more_body:
            self._response = _TRAILERS if self._trailers else _COMPLETE
        sent = 0
        try:
            if head:
                self._pending_head = b""
                self._head_written = True
                stream.send_headers(head, end_stream=end and not count)
            if count:
                async for chunk in read_chunks(body):
                    sent += len(chunk)
                    await stream.send_data(chunk, end_stream=end and sent == count)
            elif end and not head:
                await stream.send_data(b"", end_stream=True)
        except ClientDisconnected:
            self._mark_disconnected()
            raise
        finally:
            if self._measure:
                self.body_bytes += sent
        if end:
            self._response_sent()
        return sent

    async def _send_early_hint(self, links: list[bytes]) -> None:
        """103 Early Hints: an informational HEADERS frame on the stream, sent at once."""
        if links:
            for link in links:
                if _FORBIDDEN_IN_VALUE.search(link):
                    raise ValueError(f"invalid early hint link {link!r}")
            try:
                self.conn.send_headers(
                    [(b":status", b"103"), *((b"link", link) for link in links)], end_stream=False
                )
            except ClientDisconnected:
                self._mark_disconnected()
                raise
        await trio.lowlevel.checkpoint()

    async def _send_trailers(self, message: dict[str, Any]) -> None:
        """Trailers go out as the stream's last HEADERS frame (RFC 9113, 8.1)."""
        if self._trailer_fields is None:
            self._trailer_fields = []
        for name, value in message.get("headers", ()):
            # The checks of the response's own fields (a pseudo-header is no token).
            field = _checked_field(name, value)
            if field is not None:
                self._trailer_fields.append(field)
        if message.get("more_trailers", False):
            return
        self._response = _COMPLETE
        try:
            self.conn.send_headers(self._trailer_fields, end_stream=True)
        except ClientDisconnected:
            self._mark_disconnected()
            raise
        self._response_sent()

    def _response_sent(self) -> None:
        self.conn.notify()  # a receive() waiting for the end of the response
        if self._response_complete is not None:
            self._response_complete.set()
        if self._measure:
            self._log_access()
