"""A WebSocket's bytes in and out: a reader that closing can wake, the write lock, ``send_all``.

:class:`SocketReader` reads for whichever task holds the session's read
turn, with a checkpoint per read, and can be woken by the session when it
closes. A session writes once per message. ``trio.SocketStream.send_all`` takes a
conflict detector, a generator-based error-translating context manager, a
memoryview and the socket wrapper's helper for each write; :func:`write_plain`
makes the same ``send`` with the same outcome (the same exceptions, one
checkpoint) straight on the socket, as :func:`._socket_io.read_socket`
does for reads. TLS streams keep their own ``send_all``.
"""

from __future__ import annotations

import os

import trio

from ._socket_io import RECEIVE_SIZE, plain_socket


class SocketReader:
    """Reads a WebSocket's stream; :meth:`interrupt` wakes a read that waits for bytes."""

    def __init__(self, stream: trio.abc.Stream, unread: bytes) -> None:
        self.stream = stream
        self.sock = plain_socket(stream)
        self._unread = unread  # what came with the request head
        self._waiting = False
        self._interrupted = False
        self._scope: trio.CancelScope | None = None

    async def read(self) -> bytes | None:
        """The next bytes from the peer, ``b""`` at EOF, None if :meth:`interrupt`
        woke us; a checkpoint either way.

        On a plain socket, ``os.read`` first and ``wait_readable`` only when
        nothing has arrived (the wake-up is the checkpoint); bytes that were
        already there cost a scheduler step, so that a peer that floods an
        app that only receives cannot starve the other connections.
        """
        if self._unread:
            data, self._unread = self._unread, b""
            return data
        sock = self.sock
        if sock is None:
            return await self._read_stream()
        waited = False
        while True:
            try:
                data = os.read(sock.fileno(), RECEIVE_SIZE)
            except BlockingIOError:
                self._waiting = True
                try:
                    await trio.lowlevel.wait_readable(sock)
                except trio.ClosedResourceError:
                    if not self._interrupted:
                        raise
                    self._interrupted = False
                    return None
                finally:
                    self._waiting = False
                waited = True
                continue
            except OSError:
                data = b""
            if not waited:
                await trio.lowlevel.cancel_shielded_checkpoint()
            return data

    async def _read_stream(self) -> bytes | None:
        """:meth:`read` for a stream that is not a plain socket (TLS): in a cancel scope."""
        self._waiting = True
        try:
            with trio.CancelScope() as self._scope:
                return await self.stream.receive_some(RECEIVE_SIZE)
        finally:
            self._waiting = False
            self._scope = None
        self._interrupted = False
        return None

    def interrupt(self) -> None:
        """Wake a read that waits for bytes; it returns None.

        On a plain socket ``notify_closing`` wakes it with ``ClosedResourceError``
        without closing anything. The session calls this only once its close
        frame is out, when wsproto refuses every other frame, so no writer
        can be waiting on the socket to be woken by mistake.
        """
        if not self._waiting:
            return
        self._interrupted = True
        if self.sock is not None:
            trio.lowlevel.notify_closing(self.sock)
        elif self._scope is not None:
            self._scope.cancel()


async def write_plain(sock: trio.socket.SocketType, data: bytes) -> None:
    """Write all of ``data`` to a plain non-blocking socket; one checkpoint.

    Like ``SocketStream.send_all``: a cancelled caller writes nothing, a
    socket closed here or meanwhile raises ``ClosedResourceError``, a peer
    gone ``BrokenResourceError``. ``wait_writable`` only when the kernel's
    buffer is full (the wake-up is then the checkpoint).
    """
    await trio.lowlevel.checkpoint_if_cancelled()
    waited = False
    view: memoryview | None = None
    while True:
        try:
            sent = os.write(sock.fileno(), data if view is None else view)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            if sock.fileno() == -1:
                raise trio.ClosedResourceError("the socket was closed") from None
            raise trio.BrokenResourceError(f"socket connection broken: {exc}") from exc
        if view is None:
            if sent == len(data):
                break
            view = memoryview(data)
        view = view[sent:]
        if not view:
            break
        await trio.lowlevel.wait_writable(sock)
        waited = True
    if not waited:
        await trio.lowlevel.cancel_shielded_checkpoint()


class WriteLock:
    """A FIFO lock for the socket's writers whose uncontended acquire takes no scheduler step.

    trio's locks yield on every acquire; the session writes once per message
    and the lock is almost never contended (only pings and closes compete),
    so that yield was a task switch per message for nothing. A flag, and a
    parking lot for the rare waiter: a release hands the lock to the first
    one. The write under the lock (``send_all``) is still a checkpoint.
    """

    __slots__ = ("_held", "_waiters")

    def __init__(self) -> None:
        self._held = False
        self._waiters = trio.lowlevel.ParkingLot()

    async def __aenter__(self) -> None:
        if self._held:
            await self._waiters.park()  # woken as the new holder
        else:
            self._held = True

    async def __aexit__(self, *exc_info: object) -> None:
        if self._waiters:
            self._waiters.unpark()
        else:
            self._held = False
