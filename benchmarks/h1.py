"""A minimal HTTP/1.1 client over a trio stream, for the built-in load generators.

It only has to understand the responses of `benchmarks.apps`: a status line,
headers with a content-length, and a body. Parsing stays this small so that the
client costs less than any server it measures.
"""

from __future__ import annotations

import trio

RECV_SIZE = 256 * 1024


class ProtocolError(Exception):
    """The server sent something this client does not understand, or closed early."""


def request(method: str, path: str, body: bytes = b"") -> bytes:
    """The bytes of one keep-alive request, built once and sent many times."""
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    if body or method == "POST":
        head += f"Content-Type: application/octet-stream\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


class Connection:
    """One keep-alive connection: send a request, read its response."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self._buf = bytearray()

    @classmethod
    async def open(cls, port: int) -> Connection:
        return cls(await trio.open_tcp_stream("127.0.0.1", port))

    async def roundtrip(self, raw_request: bytes) -> tuple[int, int]:
        await self.stream.send_all(raw_request)
        return await self.read_response()

    async def read_response(self) -> tuple[int, int]:
        """Read one response; return (status, body length). The body is discarded."""
        buf = self._buf
        while (end := buf.find(b"\r\n\r\n")) < 0:
            await self._fill()
        head = bytes(buf[:end]).lower()
        del buf[: end + 4]
        try:
            status = int(head[9:12])
            at = head.index(b"content-length:") + len(b"content-length:")
            stop = head.find(b"\r\n", at)
            length = int(head[at : stop if stop >= 0 else len(head)])
        except ValueError as exc:
            raise ProtocolError(f"unexpected response head: {head[:200]!r}") from exc
        remaining = length
        # Counting instead of collecting: the 100 MiB download must not be
        # limited by the client copying bytes around.
        while remaining > len(buf):
            remaining -= len(buf)
            buf.clear()
            await self._fill()
        del buf[:remaining]
        return status, length

    async def _fill(self) -> None:
        data = await self.stream.receive_some(RECV_SIZE)
        if not data:
            raise ProtocolError("server closed the connection")
        self._buf += data

    async def aclose(self) -> None:
        await self.stream.aclose()
