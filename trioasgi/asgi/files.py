"""The file bodies of ``http.response.pathsend`` and ``http.response.zerocopysend``.

Both ASGI extensions hand the server a file instead of bytes: a path
(pathsend, the whole file) or an open file with an optional offset and
count (zerocopysend). This module is the part that does not depend on the
protocol: turning the message into a :class:`FileBody` (the file opened,
checked to be a regular file, its range worked out) and, where the bytes
cannot go straight from the page cache to the socket (TLS, HTTP/2 frames),
reading them in large chunks in a worker thread, one chunk at a time, so
memory stays bounded whatever the file's size. A plain socket sends the
file with ``os.sendfile`` instead (``core.socket_io.send_file``).

Every failure to open or read the file is a :class:`FileUnavailable`:
before the response head is written the cycle answers it with a 500,
after it the connection is closed.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import AsyncIterator
from typing import Any

import trio

from ..core.errors import FileUnavailable

#: The most read into memory at once where the file cannot be sent with
#: ``os.sendfile``: large enough that the thread round trip per chunk is
#: small beside the copy, small enough to bound a response's memory.
READ_CHUNK = 256 * 1024


class FileBody:
    """Bytes ``offset`` to ``offset + count`` of an open regular file, to send as a body.

    ``close()`` when done: it closes a file the server opened itself
    (pathsend) and, for a zerocopysend without an offset, leaves the
    file's position after the bytes sent, as a read would have.
    """

    __slots__ = ("_owned", "_update_position", "count", "fd", "offset")

    def __init__(
        self, fd: int, offset: int, count: int, *, owned: bool, update_position: bool = False
    ) -> None:
        self.fd = fd
        self.offset = offset
        self.count = count
        self._owned = owned
        self._update_position = update_position

    def close(self, sent: int) -> None:
        """Release the file once ``sent`` bytes of it have gone out (or failed to)."""
        if self._owned:
            os.close(self.fd)
        elif self._update_position:
            with contextlib.suppress(OSError):
                os.lseek(self.fd, self.offset + sent, os.SEEK_SET)


def path_body(message: dict[str, Any]) -> FileBody:
    """The whole file an ``http.response.pathsend`` message names.

    Raises ``TypeError``/``ValueError`` for a malformed message (the app's
    bug) and :class:`FileUnavailable` if the file cannot be opened.
    """
    path = message.get("path")
    if not isinstance(path, str):
        raise TypeError(f"http.response.pathsend needs a str 'path', not {type(path).__name__}")
    if not os.path.isabs(path):
        raise ValueError(f"http.response.pathsend needs an absolute path, not {path!r}")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise FileUnavailable(f"cannot open {path}: {exc.strerror}") from exc
    try:
        size = _regular_file_size(fd, path)
    except BaseException:
        os.close(fd)
        raise
    return FileBody(fd, 0, size, owned=True)


def zerocopy_body(message: dict[str, Any]) -> FileBody:
    """The range of the open file an ``http.response.zerocopysend`` message gives.

    Without ``offset`` the bytes start at the file's position (which then
    moves past them); without ``count`` they run to the end of the file.
    """
    file = message.get("file")
    try:
        fd = file if type(file) is int else file.fileno()  # type: ignore[union-attr]
    except (AttributeError, OSError, ValueError) as exc:
        raise TypeError("http.response.zerocopysend needs a 'file' with a fileno()") from exc
    if type(fd) is not int or fd < 0:
        raise TypeError("http.response.zerocopysend needs a 'file' with a fileno()")
    name = getattr(file, "name", fd)
    size = _regular_file_size(fd, name)
    offset = message.get("offset")
    update_position = offset is None
    if offset is None:
        try:
            offset = os.lseek(fd, 0, os.SEEK_CUR)
        except OSError as exc:
            raise FileUnavailable(f"cannot read {name}: {exc.strerror}") from exc
    count = message.get("count")
    if count is None:
        count = max(0, size - offset)
    for key, value in (("offset", offset), ("count", count)):
        if type(value) is not int or value < 0:
            raise ValueError(f"http.response.zerocopysend: bad {key} {value!r}")
    return FileBody(fd, offset, count, owned=False, update_position=update_position)


def _regular_file_size(fd: int, name: object) -> int:
    try:
        info = os.fstat(fd)
    except OSError as exc:
        raise FileUnavailable(f"cannot read {name}: {exc.strerror}") from exc
    if not stat.S_ISREG(info.st_mode):
        raise FileUnavailable(f"cannot send {name}: not a regular file")
    return info.st_size


async def read_chunks(body: FileBody, chunk_size: int = READ_CHUNK) -> AsyncIterator[bytes]:
    """The body's bytes in chunks of at most ``chunk_size``, each read in a worker thread.

    For a transport that must see the bytes (TLS, HTTP/2): one chunk is
    in memory at a time, and the event loop never waits on the disk. Raises
    :class:`FileUnavailable` if the file ends early or a read fails.
    """
    position = body.offset
    end = body.offset + body.count
    while position < end:
        want = min(chunk_size, end - position)
        try:
            chunk = await trio.to_thread.run_sync(os.pread, body.fd, want, position)
        except OSError as exc:
            raise FileUnavailable(f"reading the file failed: {exc.strerror}") from exc
        if not chunk:
            raise FileUnavailable("the file ended before the bytes the response declared")
        position += len(chunk)
        yield chunk
