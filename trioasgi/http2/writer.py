"""The HTTP/2 connection's one writer: every frame h2 makes, in as few writes as it can, bounded.

h2 is sans-I/O: whoever calls it (the reader answering pings and widening
windows, a stream's task sending its response) leaves frames in its
buffer. :class:`FrameWriter` is the only task that writes them to the
socket: when woken, it takes everything h2 holds (and frames the
connection made itself, such as a GOAWAY h2 must not know of) and writes
it in one write, so ten streams answered in one turn of the scheduler
leave in one system call.

It also holds the connection's bound on unwritten bytes
(``h2_max_connection_buffer``): past it, streams wait (:meth:`wait_for_room`)
before they hand h2 more, each overshooting by one DATA frame at most. The
reader has a higher bound of its own (:meth:`reader_over_buffer`), which only
its own answers to a flood can reach.
"""

from __future__ import annotations

import trio

from ..core.socket_io import write_socket


class FrameWriter:
    """Moves h2's bytes to the socket; counts them for the connection's bounds."""

    def __init__(
        self,
        h2conn: object,
        stream: trio.abc.Stream,
        sock: trio.socket.SocketType | None,
        *,
        cap: int,
        reader_cap: int,
    ) -> None:
        self._h2 = h2conn
        self._stream = stream
        self._sock = sock
        self._cap = cap
        self._reader_cap = reader_cap
        # What is to be written, what is being written, and the DATA bytes
        # streams handed to h2 that the writer has not taken yet.
        self._outbox = bytearray()
        self._in_flight = 0
        self._unmoved = 0
        self._wakeup: trio.Event | None = None
        self._room: trio.Event | None = None
        self._finishing = False
        self._done = False

    # -- what the connection and the streams call ---------------------------

    def queued(self) -> None:
        """h2 has (perhaps) more to send: move it to the outbox now, and wake the writer.

        For the reader and the connection's own frames, whose size the
        bounds must see at once (a flood's answers).
        """
        data = self._h2.data_to_send()  # type: ignore[attr-defined]
        self._unmoved = 0
        if data:
            self._outbox += data
            self.wake()

    def kick(self, data_bytes: int = 0) -> None:
        """A stream handed h2 frames (``data_bytes`` of DATA): wake the writer, which takes them.

        Cheaper than :meth:`queued` on the path every response takes: h2's
        bytes are moved once, by the writer, however many frames were made.
        """
        self._unmoved += data_bytes
        self.wake()

    def append(self, frame: bytes) -> None:
        """A frame the connection made itself, after every frame h2 has made so far."""
        self.queued()
        self._outbox += frame
        self.wake()

    def over_buffer(self) -> bool:
        """Whether streams must wait before handing h2 more."""
        return len(self._outbox) + self._in_flight + self._unmoved > self._cap

    def reader_over_buffer(self) -> bool:
        """Whether the reader's own answers (pings', settings', resets') overflow the buffer.

        The reader must not stop at the streams' cap: a client that writes
        a request body before it reads the responses already on their way
        (as HTTP/2 clients do, with several streams at once) would wait for
        us to read while we wait for it to read, for ever.
        """
        return len(self._outbox) + self._in_flight + self._unmoved > self._reader_cap

    async def wait_for_room(self) -> None:
        """Until the writer has written enough for the buffer to be under its cap again."""
        if self._done:
            await trio.lowlevel.checkpoint()
            return
        if self._room is None:
            self._room = trio.Event()
        await self._room.wait()

    def wake(self) -> None:
        wakeup = self._wakeup
        if wakeup is not None:
            self._wakeup = None
            wakeup.set()

    def finish(self) -> None:
        """Write what is left, then return."""
        self._finishing = True
        self.wake()

    # -- the task ------------------------------------------------------------

    async def run(self) -> None:
        """Write until :meth:`finish`; ``BrokenResourceError`` once the peer is gone."""
        sock = self._sock
        try:
            while True:
                data = self._outbox
                fresh = self._h2.data_to_send()  # type: ignore[attr-defined]
                self._unmoved = 0
                if fresh:
                    if data:
                        data += fresh
                    else:
                        data = fresh
                if not data:
                    if self._finishing:
                        return
                    self._wakeup = trio.Event()
                    await self._wakeup.wait()
                    continue
                self._outbox = bytearray()
                self._in_flight = len(data)
                if sock is not None:
                    await write_socket(sock, data)
                else:
                    await self._stream.send_all(data)
                self._in_flight = 0
                room = self._room
                if room is not None and not self.over_buffer():
                    self._room = None
                    room.set()
        finally:
            self._done = True
            room = self._room
            if room is not None:
                self._room = None
                room.set()

    def unwritten(self) -> int:
        """The bytes waiting to be written or being written (for the tests' bounds)."""
        return len(self._outbox) + self._in_flight + self._unmoved
