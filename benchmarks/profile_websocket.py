"""CPU, scheduler steps and I/O calls per echoed WebSocket message, and where the CPU goes.

Drives one :class:`trioasgi.http11.connection.HTTPConnection` in-process: an upgrade
request, then a closed loop of small masked text frames, each sent only
once the echo of the previous one was written (like one client connection
of ``benchmarks.wsload``). No client task: the client's side runs inside
the server's write, so the process's CPU is the server's Python plus trio.
Two kinds of stream, interleaved:

* ``socket``: a ``trio.SocketStream`` over a socketpair, the production
  path for plain TCP (the client answers each echo as soon as the app's
  ``send`` returns, so the next read finds its frame waiting);
* ``stream``: a fake stream that is not a plain socket (the path TLS
  takes); a read waits, one scheduler wake-up, until the client's frame.

It prints, medians of interleaved runs::

    python -m benchmarks.profile_websocket              # µs/message, steps, calls
    python -m benchmarks.profile_websocket --profile 25 # plus a cProfile top 25

* µs per message: ``process_time``;
* task steps per message, all tasks (a ``trio.abc.Instrument``);
* ``send_all`` and ``receive_some`` calls per message.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import socket
import statistics
import time
from dataclasses import dataclass

import trio
from wsproto.frame_protocol import Opcode

from trioasgi.http11.connection import HTTPConnection

from .apps import app as benchmark_app
from .profile_hot_path import in_process_connection

UPGRADE = (
    b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
#: The message of ``benchmarks.wsload``.
MESSAGE = b"hello, websocket"
CLOSE_PAYLOAD = (1000).to_bytes(2, "big")


def client_frame(opcode: Opcode, payload: bytes) -> bytes:
    """A masked client frame (payload under 126 bytes), as a browser would send it."""
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked


#: What the server sends back for MESSAGE: an unmasked text frame.
ECHO = bytes([0x80 | Opcode.TEXT, len(MESSAGE)]) + MESSAGE


class EchoClientStream(trio.abc.Stream):
    """The server's end of a fake connection whose client echoes ``messages`` times, then closes.

    ``receive_some`` waits for the client's next bytes like a socket: one
    scheduler step to wake up. The client answers each echo it receives in
    ``send_all`` (one checkpoint, like a socket write) with its next frame.
    """

    def __init__(self, messages: int) -> None:
        self.left = messages
        self.echoes = 0
        self.sends = 0
        self.receives = 0
        self._pending = [UPGRADE]
        self._wake: trio.Event | None = None
        self._frame = client_frame(Opcode.TEXT, MESSAGE)
        self._closed = False

    def _client_writes(self, data: bytes) -> None:
        self._pending.append(data)
        if self._wake is not None:
            self._wake.set()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        self.receives += 1
        if not self._pending:
            if self._closed:
                await trio.lowlevel.checkpoint()
                return b""
            self._wake = trio.Event()
            await self._wake.wait()
            self._wake = None
        else:
            await trio.lowlevel.checkpoint()
        if not self._pending:
            return b""
        return b"".join(self._pending.pop(0) for _ in range(len(self._pending)))

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self.sends += 1
        data = bytes(data)
        if data.startswith(b"HTTP/1.1 101 "):
            self._client_writes(self._frame)
        elif data == ECHO:
            self.echoes += 1
            self.left -= 1
            if self.left > 0:
                self._client_writes(self._frame)
            else:
                self._client_writes(client_frame(Opcode.CLOSE, CLOSE_PAYLOAD))
        elif data[:1] == bytes([0x80 | Opcode.CLOSE]):
            self._closed = True
            if self._wake is not None:
                self._wake.set()
        await trio.lowlevel.checkpoint()

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def send_eof(self) -> None:
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        self._closed = True
        await trio.lowlevel.checkpoint()


class StepCounter(trio.abc.Instrument):
    """Counts every task's scheduler steps."""

    def __init__(self) -> None:
        self.steps = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.steps += 1


@dataclass
class Run:
    us_per_message: float
    steps_per_message: float
    sends_per_message: float
    receives_per_message: float


class SocketClient:
    """The client end of a socketpair, answering each echo from inside the app's ``send``."""

    def __init__(self, sock: socket.socket, messages: int) -> None:
        self.sock = sock
        self.left = messages
        self.echoes = 0
        self.sends = 0  # the server's writes seen: one per accept, echo and close
        self._frame = client_frame(Opcode.TEXT, MESSAGE)

    def answer(self, message_type: str) -> None:
        data = self.sock.recv(65536)
        self.sends += 1
        if message_type == "websocket.accept":
            assert data.startswith(b"HTTP/1.1 101 "), data
            self.sock.sendall(self._frame)
            return
        assert data == ECHO, data
        self.echoes += 1
        self.left -= 1
        self.sock.sendall(self._frame if self.left else client_frame(Opcode.CLOSE, CLOSE_PAYLOAD))

    def app(self, scope, receive, send):
        async def send_and_answer(message) -> None:
            await send(message)
            if message["type"] in ("websocket.accept", "websocket.send"):
                self.answer(message["type"])

        return benchmark_app(scope, receive, send_and_answer)


def _connection(stream: trio.abc.Stream, app) -> HTTPConnection:
    return in_process_connection(stream, app, ws_per_message_deflate=False)


async def echo_session(
    kind: str, messages: int, counter: StepCounter | None = None
) -> tuple[int, int]:
    """One WebSocket session of ``messages`` echoes through the benchmark app: (sends, receives)."""
    if kind == "stream":
        stream = EchoClientStream(messages)
        connection = _connection(stream, benchmark_app)
        if counter is not None:
            trio.lowlevel.add_instrument(counter)
        await connection.run()
        assert stream.echoes == messages, (stream.echoes, messages)
        return stream.sends, stream.receives
    server_sock, client_sock = socket.socketpair()
    client = SocketClient(client_sock, messages)
    client_sock.sendall(UPGRADE)
    with client_sock:
        connection = _connection(
            trio.SocketStream(trio.socket.from_stdlib_socket(server_sock)), client.app
        )
        if counter is not None:
            trio.lowlevel.add_instrument(counter)
        await connection.run()
    assert client.echoes == messages, (client.echoes, messages)
    return client.sends, -1  # reads are os.read calls on this path, not counted


def measure(kind: str, messages: int) -> Run:
    counter = StepCounter()
    start = time.process_time()
    sends, receives = trio.run(echo_session, kind, messages, counter)
    elapsed = time.process_time() - start
    return Run(
        elapsed / messages * 1e6,
        counter.steps / messages,
        sends / messages,
        receives / messages,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="print the top N")
    args = parser.parse_args()
    kinds = ["socket", "stream"]
    runs: dict[str, list[Run]] = {kind: [] for kind in kinds}
    for kind in kinds:  # warm-up: imports and caches
        measure(kind, 500)
    for _ in range(args.runs):
        for kind in kinds:
            runs[kind].append(measure(kind, args.messages))
    for kind in kinds:
        us = [r.us_per_message for r in runs[kind]]
        last = runs[kind][-1]
        reads = f", {last.receives_per_message:.2f} receive_some" if kind == "stream" else ""
        print(
            f"{kind:>7}: {statistics.median(us):6.1f} µs/message (min {min(us):.1f}, "
            f"max {max(us):.1f}, {args.runs} runs of {args.messages}); per message "
            f"{last.steps_per_message:.2f} task steps (all tasks), "
            f"{last.sends_per_message:.2f} writes{reads}"
        )
    if args.profile:
        profiler = cProfile.Profile()
        profiler.runcall(trio.run, echo_session, "socket", args.messages)
        print(f"\n--- socket: top {args.profile} by own time ---")
        pstats.Stats(profiler).sort_stats("tottime").print_stats(args.profile)


if __name__ == "__main__":
    main()
