"""Reading a plain socket directly, below ``trio.SocketStream``'s layers.

The connection and the WebSocket session read through :func:`read_socket`
when their stream is a plain ``trio.SocketStream`` (TLS streams keep their
own ``receive_some``): fewer coroutine layers for every idle connection to
hold, and no scheduler step to read bytes that have already arrived.
"""

from __future__ import annotations

import os

import trio

#: How much one read may return: the most the server reads ahead of what an
#: app has asked for.
RECEIVE_SIZE = 64 * 1024


def plain_socket(stream: trio.abc.Stream) -> trio.socket.SocketType | None:
    """The socket under ``stream`` if it is a plain ``SocketStream``, else None."""
    return stream.socket if type(stream) is trio.SocketStream else None


def read_ready(sock: trio.socket.SocketType, max_bytes: int = RECEIVE_SIZE) -> bytes | None:
    """What has already arrived on a plain socket, without waiting: None if nothing has.

    EOF and errors are ``b""``, as in :func:`read_socket`.
    """
    try:
        return os.read(sock.fileno(), max_bytes)
    except BlockingIOError:
        return None
    except OSError:
        return b""


async def read_socket(sock: trio.socket.SocketType, max_bytes: int = RECEIVE_SIZE) -> bytes:
    """One read from a plain socket: what ``SocketStream.receive_some`` does, less its layers.

    ``os.read`` on the non-blocking socket, and ``wait_readable`` only when
    nothing has arrived. Two things come of it. An idle connection waits here
    with a stack of two coroutines instead of five (its frames are most of
    what an idle keep-alive connection costs), and a request that has already
    arrived is read without a scheduler step; the response's ``send_all``
    remains the cycle's checkpoint. EOF and errors both end as ``b""``; the
    fd is looked up each time, so a socket closed meanwhile reads as EOF
    (``fileno()`` is -1) rather than reading a reused descriptor, and trio
    wakes a waiter on a socket it closes with ``ClosedResourceError``.
    """
    while True:
        try:
            return os.read(sock.fileno(), max_bytes)
        except BlockingIOError:
            await trio.lowlevel.wait_readable(sock)
        except OSError:
            return b""
