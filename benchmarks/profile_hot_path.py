"""CPU per keep-alive request of the server's own Python, and where it goes.

Drives :class:`trioasgi.http11.connection.HTTPConnection` in-process over a stream
that hands it one hello-world request per read and swallows the responses
(no sockets, no kernel, one checkpoint per call like a socket), or with
``--socket`` over a real socket pair with a minimal client task in the same
process (the server's own socket path, kernel included), then prints µs
and Python function calls per request for each parser and, with
``--profile``, the top functions of a cProfile run::

    python -m benchmarks.profile_hot_path              # µs/request, h11 and httptools
    python -m benchmarks.profile_hot_path --socket     # the same over a socket pair
    python -m benchmarks.profile_hot_path --profile 25 # plus the 25 costliest functions

Function calls per request are a steady figure on a busy machine, where
µs are not: they count every Python-level call, the client's included.

The numbers are ``process_time`` medians of interleaved runs: steadier than
a load generator on a busy machine, and they isolate the server's Python.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import socket
import statistics
import time

import trio

import trioasgi
from trioasgi.http11.connection import HTTPConnection
from trioasgi.http11.parsers import httptools_available
from trioasgi.serving.context import ServerContext

REQUEST = b"GET / HTTP/1.1\r\nHost: localhost:8000\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n"
BODY = b"Hello, world!\n"
HEADERS = [
    (b"content-type", b"text/plain; charset=utf-8"),
    (b"content-length", str(len(BODY)).encode()),
]


async def hello(scope, receive, send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})


class ReplayStream(trio.abc.Stream):
    """Hands out ``requests`` copies of one request, one per read, then end of stream."""

    def __init__(self, requests: int) -> None:
        self.left = requests
        self.sent = 0

    async def receive_some(self, max_bytes=None) -> bytes:
        await trio.lowlevel.checkpoint()
        if self.left == 0:
            return b""
        self.left -= 1
        return REQUEST

    async def send_all(self, data) -> None:
        self.sent += 1
        await trio.lowlevel.checkpoint()

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


def in_process_connection(stream: trio.abc.Stream, app, **config) -> HTTPConnection:
    """A server connection over ``stream`` with access logging off, for the in-process drivers."""
    return HTTPConnection(
        stream,
        ServerContext(app=app, config=trioasgi.Config(access_log=False, **config)),
        client=("127.0.0.1", 50000),
        server=("127.0.0.1", 8000),
    )


async def serve(parser: str, requests: int, over_socket: bool = False) -> None:
    if over_socket:
        await _serve_socket_pair(parser, requests)
        return
    stream = ReplayStream(requests)
    await in_process_connection(stream, hello, http=parser).run()
    assert stream.sent == requests, (parser, stream.sent)


async def _serve_socket_pair(parser: str, requests: int) -> None:
    """The server on one end of a socket pair; a client sending one request at a time."""
    ours, theirs = socket.socketpair()
    stream = trio.SocketStream(trio.socket.from_stdlib_socket(ours))
    client = trio.socket.from_stdlib_socket(theirs)
    answered = 0

    async def client_loop() -> None:
        nonlocal answered
        fd = client.fileno()
        for _ in range(requests):
            os.write(fd, REQUEST)
            # Each hello-world response arrives in one piece: one send_all.
            await trio.lowlevel.wait_readable(client)
            if os.read(fd, 65536):
                answered += 1
        client.close()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(client_loop)
        await in_process_connection(stream, hello, http=parser).run()
    assert answered == requests, (parser, answered)


def us_per_request(parser: str, requests: int, over_socket: bool = False) -> float:
    start = time.process_time()
    trio.run(serve, parser, requests, over_socket)
    return (time.process_time() - start) / requests * 1e6


def calls_per_request(parser: str, requests: int, over_socket: bool = False) -> float:
    """Python function calls per request (cProfile's count): machine-independent."""
    profiler = cProfile.Profile()
    profiler.runcall(trio.run, serve, parser, requests, over_socket)
    return pstats.Stats(profiler).total_calls / requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="print the top N")
    parser.add_argument("--socket", action="store_true", help="serve over a real socket pair")
    args = parser.parse_args()
    parsers = ["h11"] + (["httptools"] if httptools_available() else [])
    results: dict[str, list[float]] = {name: [] for name in parsers}
    for name in parsers:  # warm-up: imports and caches
        us_per_request(name, 500, args.socket)
    for _ in range(args.runs):
        for name in parsers:
            results[name].append(us_per_request(name, args.requests, args.socket))
    for name in parsers:
        runs = results[name]
        calls = calls_per_request(name, 2000, args.socket)
        print(
            f"{name:>10}: {statistics.median(runs):6.1f} µs/request "
            f"(min {min(runs):.1f}, max {max(runs):.1f}, {args.runs} runs of {args.requests}), "
            f"{calls:.0f} Python calls/request"
        )
    if args.profile:
        for name in parsers:
            profiler = cProfile.Profile()
            profiler.runcall(trio.run, serve, name, args.requests, args.socket)
            print(f"\n--- {name}: top {args.profile} by own time ---")
            pstats.Stats(profiler).sort_stats("tottime").print_stats(args.profile)


if __name__ == "__main__":
    main()
