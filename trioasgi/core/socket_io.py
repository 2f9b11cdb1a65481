"""Reading and writing a plain socket directly, below ``trio.SocketStream``'s layers.

The connection and the WebSocket session read through :func:`read_socket`
when their stream is a plain ``trio.SocketStream`` (TLS streams keep their
own ``receive_some``): fewer coroutine layers for every idle connection to
hold, and no scheduler step to read bytes that have already arrived.
Responses are written with :func:`write_socket`, ``send_all`` without its
context managers and memoryview slicing: one write and one checkpoint for
a response that fits the socket's buffer.
"""

from __future__ import annotations

import os

import trio

from .errors import FileUnavailable

#: How much one read may return: the most the server reads ahead of what an
#: app has asked for. uvloop's read size: a 64 KiB upload comes with its
#: head in one read rather than two (the POST echo serves 15-18 % more
#: requests per second than with 64 KiB reads); a small request costs the
#: same, since the bytes object is cut to what arrived.
RECEIVE_SIZE = 256 * 1024


def plain_socket(stream: trio.abc.Stream) -> trio.socket.SocketType | None:
    """The socket under ``stream`` if it is a plain ``SocketStream``, else None."""
    return stream.socket if type(stream) is trio.SocketStream else None


async def close_stream(stream: trio.abc.Stream) -> None:
    """Close ``stream`` at once, with no goodbye (a TLS close_notify is not waited for).

    A plain socket is closed without a checkpoint: ``trio.aclose_forcefully``
    would turn ``SocketStream.aclose``'s checkpoint into a raised and caught
    ``Cancelled``, two scheduler steps and an exception for each connection,
    at the end of a task that is about to end anyway.
    """
    sock = plain_socket(stream)
    if sock is not None:
        sock.close()
    else:
        await trio.aclose_forcefully(stream)


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


async def read_socket(
    sock: trio.socket.SocketType, max_bytes: int = RECEIVE_SIZE, *, wait_first: bool = False
) -> bytes:
    """One read from a plain socket: what ``SocketStream.receive_some`` does, less its layers.

    ``os.read`` on the non-blocking socket, and ``wait_readable`` only when
    nothing has arrived. Two things come of it. An idle connection waits here
    with a stack of two coroutines instead of five (its frames are most of
    what an idle keep-alive connection costs), and a request that has already
    arrived is read without a scheduler step; the response's write (or the
    connection, after its last one) remains the cycle's checkpoint. EOF and
    errors both end as ``b""``; the fd is looked up each time, so a socket
    closed meanwhile reads as EOF (``fileno()`` is -1) rather than reading a
    reused descriptor, and trio wakes a waiter on a socket it closes with
    ``ClosedResourceError``.
    ``wait_first`` skips the first read, for a caller that has just found
    nothing there (:func:`read_ready`).
    """
    if wait_first and sock.fileno() != -1:
        await trio.lowlevel.wait_readable(sock)
    # The wait is outside any ``except`` block: a coroutine suspended in one
    # holds the exception, its traceback and its message for as long as it
    # waits, some 500 bytes per idle connection.
    while (data := read_ready(sock, max_bytes)) is None:
        await trio.lowlevel.wait_readable(sock)
    return data


async def write_socket(sock: trio.socket.SocketType, data: bytes, *, schedule: bool = True) -> None:
    """``SocketStream.send_all(data)`` on a plain socket, with one checkpoint when it fits.

    Like trio's own sends: the write is tried at once, then the task yields
    (cancellation is honoured before the write, not after it), and only a
    write the socket's buffer cannot take waits for the socket to drain.
    ``schedule=False`` keeps the cancellation point but not the yield, for
    a caller whose task has yielded since its last write (a WebSocket echo
    answering the read that woke it) or will yield once it is back on a
    shorter stack (an HTTP response's last write). Raises
    ``trio.BrokenResourceError`` if the peer is gone and
    ``trio.ClosedResourceError`` if the socket was closed. The caller makes
    sure only one task writes at a time.
    """
    await trio.lowlevel.checkpoint_if_cancelled()
    sent = _write_some(sock, data)
    if schedule:
        await trio.lowlevel.cancel_shielded_checkpoint()
    if sent == len(data):
        return
    view = memoryview(data)
    while sent < len(data):
        await trio.lowlevel.wait_writable(sock)
        sent += _write_some(sock, view[sent:])


async def write_socket_pair(
    sock: trio.socket.SocketType, head: bytes, body: bytes, *, schedule: bool = True
) -> None:
    """:func:`write_socket` of ``head + body`` without joining them: one ``writev``.

    For a large body after a small head (a response's first body message):
    joining them would copy the body once more. If the socket takes only
    part, the rest is written as :func:`write_socket` would.
    """
    await trio.lowlevel.checkpoint_if_cancelled()
    fd = sock.fileno()
    if fd == -1:
        raise trio.ClosedResourceError("the socket was closed")
    try:
        sent = os.writev(fd, (head, body))
    except BlockingIOError:
        sent = 0
    except OSError as exc:
        raise trio.BrokenResourceError(f"socket connection broken: {exc}") from exc
    if schedule:
        await trio.lowlevel.cancel_shielded_checkpoint()
    if sent == len(head) + len(body):
        return
    # Rarely: the socket's buffer is full. Write the rest in order.
    rest = memoryview(body)[sent - len(head) :] if sent >= len(head) else head[sent:] + body
    sent = 0
    while sent < len(rest):
        await trio.lowlevel.wait_writable(sock)
        sent += _write_some(sock, rest[sent:])


def _write_some(sock: trio.socket.SocketType, data: bytes | memoryview) -> int:
    """One non-blocking write: how much the socket took (0 if none)."""
    fd = sock.fileno()
    if fd == -1:
        raise trio.ClosedResourceError("the socket was closed")
    try:
        return os.write(fd, data)
    except BlockingIOError:
        return 0
    except OSError as exc:
        raise trio.BrokenResourceError(f"socket connection broken: {exc}") from exc


async def send_file(sock: trio.socket.SocketType, fd: int, offset: int, count: int) -> int:
    """Send ``count`` bytes of file ``fd`` from ``offset`` with ``os.sendfile``; the bytes sent.

    Straight from the page cache to the socket: no copy through Python and
    no thread. Each call sends what the socket's buffer takes, then the task
    yields (a big file must not hold the other connections back) or, when
    the buffer is full, waits for it to drain; a client that leaves makes
    the next call fail at once. Raises ``trio.BrokenResourceError`` if the
    peer is gone and ``trio.ClosedResourceError`` if the socket was closed;
    a file that ends early returns fewer than ``count`` bytes, one that
    cannot be read raises ``FileUnavailable``.
    """
    await trio.lowlevel.checkpoint_if_cancelled()
    sent = 0
    while sent < count:
        out = sock.fileno()
        if out == -1:
            raise trio.ClosedResourceError("the socket was closed")
        try:
            n = os.sendfile(out, fd, offset + sent, count - sent)
        except BlockingIOError:
            await trio.lowlevel.wait_writable(sock)
            continue
        except (BrokenPipeError, ConnectionError) as exc:
            raise trio.BrokenResourceError(f"socket connection broken: {exc}") from exc
        except OSError as exc:  # the file's side: a read error
            raise FileUnavailable(f"reading the file failed: {exc.strerror}") from exc
        if n == 0:  # the file is shorter than it was
            break
        sent += n
        await trio.lowlevel.cancel_shielded_checkpoint()
    return sent
