"""The floor under trio-asgi's HTTP/2: a bare trio + h2 loop with a canned hello-world answer.

Not a server anyone should run: cleartext prior knowledge only, no ASGI
app, no limits, no timeouts, no flow-control waits (its 13-byte bodies
always fit the client's window), every request answered with the same
response once its stream ends. It is what trio and the h2 library alone
cost per request, the ceiling any trio server built on h2 can reach: the
socket read and written directly (``os.read`` / ``os.write``,
``wait_readable`` only when nothing has arrived), h2 with its default
configuration (its own header checks on), every stream that ended in one read
answered with one write, and one scheduler step per read::

    taskset -c 0 python -m benchmarks.h2_floor --port 8000
    taskset -c 1 h2load -c50 -m10 -D5 http://127.0.0.1:8000/

``python -m benchmarks --scenarios h2`` runs it beside the HTTP/2 servers
(``h2-floor``, hello-world scenarios only).
"""

from __future__ import annotations

import argparse
import functools
import os
import signal

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import trio

from .apps import HELLO

_RECEIVE_SIZE = 65536
# h2 as it comes (its header checks on), as the floor was first measured:
# the server's gain from doing those checks in one pass of its own instead
# (http2/request.py) is its to show against this floor, not the floor's.
_CONFIG = h2.config.H2Configuration(client_side=False, header_encoding=None)
_HEADERS = [
    (b":status", b"200"),
    (b"content-type", b"text/plain"),
    (b"content-length", str(len(HELLO)).encode()),
]


async def _write(sock: trio.socket.SocketType, data: bytes) -> None:
    """All of ``data``: at once when the socket's buffer takes it, as it does for small answers."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(sock.fileno(), view) :]
        except BlockingIOError:
            await trio.lowlevel.wait_writable(sock)


async def _handle(stream: trio.SocketStream) -> None:
    sock = stream.socket
    fd = sock.fileno()
    conn = h2.connection.H2Connection(_CONFIG)
    conn.initiate_connection()
    StreamEnded, DataReceived = h2.events.StreamEnded, h2.events.DataReceived
    with sock:
        try:
            await _write(sock, conn.data_to_send())
            while True:
                try:
                    data = os.read(fd, _RECEIVE_SIZE)
                except BlockingIOError:
                    await trio.lowlevel.wait_readable(sock)
                    continue
                if not data:
                    return
                try:
                    for event in conn.receive_data(data):
                        kind = type(event)
                        if kind is StreamEnded:
                            conn.send_headers(event.stream_id, _HEADERS)
                            conn.send_data(event.stream_id, HELLO, end_stream=True)
                        elif kind is DataReceived:
                            # A request body is read and dropped: give its window back.
                            conn.acknowledge_received_data(
                                event.flow_controlled_length, event.stream_id
                            )
                except h2.exceptions.ProtocolError:
                    # A broken client, or a GOAWAY in the same read as the last requests
                    # (h2load's at the end of a timed run): h2's GOAWAY, if any, and done.
                    await _write(sock, conn.data_to_send())
                    return
                out = conn.data_to_send()
                if out:
                    await _write(sock, out)
                # One scheduler step per read: the other connections run, the client sends more.
                await trio.lowlevel.cancel_shielded_checkpoint()
        except OSError:  # the client reset the connection
            return


async def _serve(host: str, port: int) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(functools.partial(trio.serve_tcp, _handle, port, host=host))
            async for _ in signals:
                nursery.cancel_scope.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    trio.run(_serve, args.host, args.port)


if __name__ == "__main__":
    main()
