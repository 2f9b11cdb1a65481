"""A WebSocket's bytes in and out: a reader that closing can wake, and the write lock.

:class:`SocketReader` reads for whichever task holds the session's read
turn, with a checkpoint per read (which spares the next write its yield),
and can be woken by the session when it closes. :class:`WriteLock` keeps
one writer at a time at no cost when free.
"""

from __future__ import annotations

import trio

from ..core.socket_io import RECEIVE_SIZE, plain_socket, read_ready, read_socket


class SocketReader:
    """Reads a WebSocket's stream; :meth:`interrupt` wakes a read that waits for bytes."""

    def __init__(self, stream: trio.abc.Stream, unread: bytes) -> None:
        self.stream = stream
        self.sock = plain_socket(stream)
        self._unread = unread  # what came with the request head
        # Whether to wait before reading: see read().
        self._wait_first = False
        self._waiting = False
        self._interrupted = False
        self._scope: trio.CancelScope | None = None
        # Whether a read yielded since take_yield() last asked.
        self._yielded = False

    async def read(self) -> bytes | None:
        """The next bytes from the peer, ``b""`` at EOF, None if :meth:`interrupt`
        woke us; a checkpoint either way.

        On a plain socket, ``os.read`` first and ``wait_readable`` only when
        nothing has arrived (the wake-up is the checkpoint); bytes that were
        already there cost a scheduler step, so that a peer that floods an
        app that only receives cannot starve the other connections. Once a
        read found nothing, the next ones wait first: a peer that answers
        each message (an echo, a request and its reply) is never there yet
        when we read again, and the failed read was a syscall and an
        exception per message. A read that fills the whole buffer (bulk
        data) switches back to reading first.
        """
        if self._unread:
            data, self._unread = self._unread, b""
            return data
        self._yielded = True  # every way on from here passes a checkpoint
        sock = self.sock
        if sock is None:
            return await self._read_stream()
        if not self._wait_first:
            data = read_ready(sock)
            if data is not None:
                await trio.lowlevel.cancel_shielded_checkpoint()
                return data
            self._wait_first = True
        self._waiting = True
        try:
            data = await read_socket(sock, wait_first=True)
            if len(data) == RECEIVE_SIZE:
                self._wait_first = False
            return data
        except trio.ClosedResourceError:
            if not self._interrupted:
                raise
            self._interrupted = False
            return None
        finally:
            self._waiting = False

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

    def take_yield(self) -> bool:
        """Whether a read has yielded since the last call, which spends it.

        A write that answers a read need not yield again: its task has just
        let the others run. Spending it on one write keeps the bound: a task
        that writes many times per read yields on all but the first.
        """
        yielded, self._yielded = self._yielded, False
        return yielded

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

    def try_acquire(self) -> bool:
        """Take the lock if it is free, without a checkpoint."""
        if self._held:
            return False
        self._held = True
        return True

    async def acquire(self) -> None:
        if not self.try_acquire():
            await self._waiters.park()  # woken as the new holder

    def release(self) -> None:
        if self._waiters:
            self._waiters.unpark()
        else:
            self._held = False

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, *exc_info: object) -> None:
        self.release()
