"""CPU, scheduler steps and I/O calls per echoed WebSocket message, and where the CPU goes.

Drives one :class:`trioasgi._http11.HTTPConnection` in-process: an upgrade
request, then a closed loop of small masked text frames, each sent only
once the echo of the previous one was written (like one client connection
of ``benchmarks.wsload``). The stream is a fake: a read waits (a real
scheduler wake-up, like a socket's) until the "client" has a frame, and
the client's side runs inside ``send_all``, so the process's CPU is the
server's own Python plus trio. It prints, medians of interleaved runs::

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
import statistics
import time
from dataclasses import dataclass

import trio
from wsproto.frame_protocol import Opcode

import trioasgi
from trioasgi._context import ServerContext
from trioasgi._http11 import HTTPConnection

from .apps import app as benchmark_app

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


async def echo_session(messages: int, counter: StepCounter | None = None) -> EchoClientStream:
    """One WebSocket session of ``messages`` echoes, through the benchmark app."""
    stream = EchoClientStream(messages)
    config = trioasgi.Config(access_log=False, ws_per_message_deflate=False)
    connection = HTTPConnection(
        stream,
        ServerContext(app=benchmark_app, config=config),
        client=("127.0.0.1", 50000),
        server=("127.0.0.1", 8000),
    )
    if counter is not None:
        trio.lowlevel.add_instrument(counter)
    await connection.run()
    assert stream.echoes == messages, (stream.echoes, messages)
    return stream


def measure(messages: int) -> Run:
    counter = StepCounter()
    start = time.process_time()
    stream = trio.run(echo_session, messages, counter)
    elapsed = time.process_time() - start
    return Run(
        elapsed / messages * 1e6,
        counter.steps / messages,
        stream.sends / messages,
        stream.receives / messages,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="print the top N")
    args = parser.parse_args()
    measure(500)  # warm-up: imports and caches
    runs = [measure(args.messages) for _ in range(args.runs)]
    us = [r.us_per_message for r in runs]
    print(
        f"{statistics.median(us):6.1f} µs/message (min {min(us):.1f}, max {max(us):.1f}, "
        f"{args.runs} runs of {args.messages})"
    )
    last = runs[-1]
    print(
        f"{last.steps_per_message:.2f} task steps, {last.sends_per_message:.2f} send_all, "
        f"{last.receives_per_message:.2f} receive_some per message (all tasks)"
    )
    if args.profile:
        profiler = cProfile.Profile()
        profiler.runcall(trio.run, echo_session, args.messages)
        print(f"\n--- top {args.profile} by own time ---")
        pstats.Stats(profiler).sort_stats("tottime").print_stats(args.profile)


if __name__ == "__main__":
    main()
