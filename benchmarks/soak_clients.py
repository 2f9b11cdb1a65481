"""The soak test's clients: well-behaved ones that check every answer, and hostile ones.

Each client is one coroutine doing one exchange, ``async (port, rng) -> None``;
a well-behaved one raises :class:`Mismatch` (or any error) when the server's
answer is wrong or missing, and every such error counts against the server.
A hostile one does its worst and is never counted as an error, whatever the
server answers: the server must simply survive it and keep answering the
others. Both kinds are tables of name to (weight, coroutine): HTTP/2 is a
row in each (httpx over h2c for the well-behaved, a raw h2 client for the
rapid resets and the streams that are never read).
"""

from __future__ import annotations

import random
import socket
import struct
from collections.abc import Awaitable, Callable

import h2.config
import h2.connection
import h2.errors
import h11
import httpx
import trio
from trio_websocket import open_websocket

#: Bound on a single well-behaved exchange: a hang is an error, not a wait.
EXCHANGE_TIMEOUT = 30.0
#: Bound on a hostile client's whole visit.
HOSTILE_TIMEOUT = 20.0
HOST = "127.0.0.1"
RECEIVE_SIZE = 64 * 1024

Client = Callable[[int, random.Random], Awaitable[None]]


class Mismatch(Exception):
    """The server answered a well-behaved client wrongly."""


class H1:
    """A minimal HTTP/1.1 client over one connection, with h11 checking the server's bytes."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.conn = h11.Connection(h11.CLIENT)

    async def request(
        self, method: str, target: str, body: bytes = b"", *, close: bool = False
    ) -> tuple[int, int, bytes]:
        """Send one request; (status, body length, the first 64 bytes of the body)."""
        headers = [("host", HOST)]
        if body or method == "POST":
            headers.append(("content-length", str(len(body))))
        if close:
            headers.append(("connection", "close"))
        data = self.conn.send(h11.Request(method=method, target=target, headers=headers))
        if body:
            data += self.conn.send(h11.Data(data=body))
        data += self.conn.send(h11.EndOfMessage())
        await self.stream.send_all(data)
        return await self._response()

    async def _response(self) -> tuple[int, int, bytes]:
        status, length, start = 0, 0, b""
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                self.conn.receive_data(await self.stream.receive_some(RECEIVE_SIZE))
            elif type(event) is h11.Response:
                status = event.status_code
            elif type(event) is h11.Data:
                if len(start) < 64:
                    start += bytes(event.data[: 64 - len(start)])
                length += len(event.data)
            elif type(event) is h11.EndOfMessage:
                if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
                    self.conn.start_next_cycle()
                return status, length, start
            else:
                raise Mismatch(f"unexpected {event!r} while reading a response")


def _expect(what: str, got: object, wanted: object) -> None:
    if got != wanted:
        raise Mismatch(f"{what}: got {got!r}, wanted {wanted!r}")


async def _connect(port: int) -> trio.SocketStream:
    return await trio.open_tcp_stream(HOST, port)


# -- well-behaved -------------------------------------------------------------------


async def keep_alive(port: int, rng: random.Random) -> None:
    """A few hello-world requests on one kept-alive connection."""
    async with await _connect(port) as stream:
        client = H1(stream)
        for _ in range(rng.randint(2, 20)):
            status, _, start = await client.request("GET", "/")
            _expect("GET / status", status, 200)
            _expect("GET / body", start, b"Hello, world!")


async def new_connection(port: int, rng: random.Random) -> None:
    """One request on a connection of its own (``connection: close``)."""
    async with await _connect(port) as stream:
        status, _, start = await H1(stream).request("GET", "/", close=True)
        _expect("GET / status", status, 200)
        _expect("GET / body", start, b"Hello, world!")


async def upload(port: int, rng: random.Random) -> None:
    """POST a body of up to 1 MiB and check that it comes back whole."""
    body = rng.randbytes(rng.choice([0, 100, 64 * 1024, 300 * 1024, 1024 * 1024]))
    async with await _connect(port) as stream:
        status, length, start = await H1(stream).request("POST", "/echo", body)
        _expect("POST /echo status", status, 200)
        _expect("POST /echo length", length, len(body))
        _expect("POST /echo start", start, body[:64])


async def download(port: int, rng: random.Random) -> None:
    """Stream up to 8 MiB and check its length."""
    kib = rng.choice([1, 64, 1024, 8 * 1024])
    async with await _connect(port) as stream:
        status, length, _ = await H1(stream).request("GET", f"/stream?kib={kib}")
        _expect("GET /stream status", status, 200)
        _expect("GET /stream length", length, kib * 1024)


async def websocket_echo(port: int, rng: random.Random) -> None:
    """A WebSocket session: text and binary messages echoed, then a normal close."""
    async with open_websocket(HOST, port, "/ws", use_ssl=False) as ws:
        for i in range(rng.randint(1, 50)):
            message: str | bytes = f"message {i}" if i % 2 else rng.randbytes(rng.randint(0, 4096))
            await ws.send_message(message)
            _expect("WebSocket echo", await ws.get_message(), message)


async def http2_streams(port: int, rng: random.Random) -> None:
    """Concurrent HTTP/2 streams on one h2c connection (hello worlds, downloads), and an upload.

    The upload goes on a connection of its own: httpx's HTTP/2 client
    (httpcore) can stall a request body waiting for a window update another
    of its streams has already read (httpcore's issue, also seen against
    other servers), which would count here as the server's error.
    """

    async def one(client: httpx.AsyncClient) -> None:
        if rng.random() < 0.5:
            response = await client.get("/")
            _expect("h2 GET / body", response.content, b"Hello, world!")
        else:
            kib = rng.choice([1, 64, 1024])
            response = await client.get(f"/stream?kib={kib}")
            _expect("h2 GET /stream length", len(response.content), kib * 1024)
        _expect("h2 status", response.status_code, 200)
        _expect("h2 version", response.http_version, "HTTP/2")

    base_url = f"http://{HOST}:{port}"
    async with (
        httpx.AsyncClient(
            http1=False, http2=True, base_url=base_url, timeout=EXCHANGE_TIMEOUT
        ) as client,
        trio.open_nursery() as nursery,
    ):
        for _ in range(rng.randint(2, 10)):
            nursery.start_soon(one, client)
    body = rng.randbytes(rng.choice([0, 100, 64 * 1024, 300 * 1024, 1024 * 1024]))
    async with httpx.AsyncClient(
        http1=False, http2=True, base_url=base_url, timeout=EXCHANGE_TIMEOUT
    ) as client:
        response = await client.post("/echo", content=body)
    _expect("h2 POST /echo status", response.status_code, 200)
    _expect("h2 POST /echo body", response.content, body)


#: name: (weight, client).
WELL_BEHAVED: dict[str, tuple[int, Client]] = {
    "keep-alive": (30, keep_alive),
    "new connection": (20, new_connection),
    "upload": (15, upload),
    "download": (15, download),
    "websocket": (20, websocket_echo),
    "http2": (20, http2_streams),
}


# -- hostile ------------------------------------------------------------------------------


async def _read_until_closed(stream: trio.SocketStream, limit: int = 16 * 1024 * 1024) -> None:
    read = 0
    while read < limit:
        try:
            data = await stream.receive_some(RECEIVE_SIZE)
        except trio.BrokenResourceError:
            return
        if not data:
            return
        read += len(data)


def _reset_on_close(stream: trio.SocketStream) -> None:
    """SO_LINGER with a zero timeout: closing sends a reset, not a FIN."""
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


async def slowloris(port: int, rng: random.Random) -> None:
    """Half a request head, then a byte now and then, until the server gives up (408)."""
    async with await _connect(port) as stream:
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        with trio.move_on_after(HOSTILE_TIMEOUT):
            for _ in range(int(HOSTILE_TIMEOUT)):
                await trio.sleep(1.0)
                await stream.send_all(b"X")
        await _read_until_closed(stream)


async def garbage(port: int, rng: random.Random) -> None:
    """Random bytes where a request should be."""
    async with await _connect(port) as stream:
        await stream.send_all(rng.randbytes(rng.randint(1, 4096)) + b"\r\n\r\n")
        await _read_until_closed(stream)


async def half_closed(port: int, rng: random.Random) -> None:
    """A request, then our end shut for writing before the answer."""
    async with await _connect(port) as stream:
        await stream.send_all(b"GET /stream?kib=64 HTTP/1.1\r\nHost: x\r\n\r\n")
        await stream.send_eof()
        await _read_until_closed(stream)


async def stops_reading(port: int, rng: random.Random) -> None:
    """Asks for 64 MiB and reads none of it for a few seconds, then leaves."""
    async with await _connect(port) as stream:
        await stream.send_all(b"GET /stream?kib=65536 HTTP/1.1\r\nHost: x\r\n\r\n")
        await trio.sleep(rng.uniform(1.0, 5.0))
        _reset_on_close(stream)


async def resets(port: int, rng: random.Random) -> None:
    """Resets the connection in the middle of an upload or of a download."""
    async with await _connect(port) as stream:
        if rng.random() < 0.5:
            await stream.send_all(
                b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n"
                + bytes(rng.randint(0, 64 * 1024))
            )
        else:
            await stream.send_all(b"GET /stream?kib=8192 HTTP/1.1\r\nHost: x\r\n\r\n")
            await stream.receive_some(RECEIVE_SIZE)
        _reset_on_close(stream)


async def http2_abuse(port: int, rng: random.Random) -> None:
    """HTTP/2 prior knowledge, then a rapid reset or streams asking for data it never reads."""
    connection = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    connection.initiate_connection()
    async with await _connect(port) as stream:
        rapid = rng.random() < 0.5
        with trio.move_on_after(HOSTILE_TIMEOUT):
            for i in range(500 if rapid else 20):
                stream_id = 1 + 2 * i
                headers = [
                    (":method", "GET"),
                    (":scheme", "http"),
                    (":authority", HOST),
                    (":path", "/stream?kib=8192"),
                ]
                connection.send_headers(stream_id, headers, end_stream=True)
                if rapid:
                    connection.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
                await stream.send_all(connection.data_to_send())
            if not rapid:
                await trio.sleep(rng.uniform(1.0, 5.0))  # and never read
        _reset_on_close(stream)


HOSTILE: dict[str, tuple[int, Client]] = {
    "slowloris": (10, slowloris),
    "garbage": (25, garbage),
    "half-closed": (20, half_closed),
    "stops reading": (15, stops_reading),
    "resets": (30, resets),
    "http2 abuse": (15, http2_abuse),
}


def pick(table: dict[str, tuple[int, Client]], rng: random.Random) -> tuple[str, Client]:
    names = list(table)
    name = rng.choices(names, weights=[table[n][0] for n in names])[0]
    return name, table[name][1]
