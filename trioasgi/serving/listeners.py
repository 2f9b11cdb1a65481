"""Where the server listens: bind specs parsed, sockets opened, unix socket files tidied up.

Four kinds of address, one :class:`BindSpec` each:

- ``HOST:PORT`` and ``[IPv6]:PORT``: a TCP socket (``:PORT`` alone binds every interface);
- ``unix:/path``: a unix domain socket; a stale socket file is replaced, and the
  file is removed again when the server stops;
- ``fd://N``: a socket inherited already listening (from a supervisor or systemd);
- systemd socket activation: with ``LISTEN_PID`` naming this process, the
  ``LISTEN_FDS`` sockets from fd 3 on are served when no address was given.

Every failure is an ``OSError`` whose ``strerror`` is one sentence naming the
address, which the command line prints as it is.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
from collections.abc import Mapping

import trio

from ..core.binds import BindSpec, parse_bind
from ..core.config import Config

#: The first file descriptor systemd passes (``SD_LISTEN_FDS_START``).
SYSTEMD_FIRST_FD = 3


def systemd_fds(environ: Mapping[str, str], pid: int) -> list[int]:
    """The sockets systemd passed this process (``sd_listen_fds``), or ``[]``."""
    if environ.get("LISTEN_PID", "") != str(pid):
        return []
    count = environ.get("LISTEN_FDS", "")
    if not count.isdigit():
        return []
    return list(range(SYSTEMD_FIRST_FD, SYSTEMD_FIRST_FD + int(count)))


def bind_specs(config: Config, environ: Mapping[str, str] | None = None) -> list[BindSpec]:
    """What to listen on: explicit addresses, else systemd's sockets, else ``host:port``."""
    specs = [parse_bind(text) for text in config.bind]
    if config.uds:
        specs.append(BindSpec("unix", path=config.uds))
    if config.fd is not None:
        specs.append(BindSpec("fd", fd=config.fd))
    if specs:
        return specs
    inherited = systemd_fds(os.environ if environ is None else environ, os.getpid())
    if inherited:
        return [BindSpec("fd", fd=fd) for fd in inherited]
    return [BindSpec("tcp", host=config.host, port=config.port)]


class Listener:
    """An open listening socket and what the server needs to know about it."""

    def __init__(self, listener: trio.SocketListener, spec: BindSpec) -> None:
        self.listener = listener
        self.spec = spec
        sock = listener.socket
        self.is_unix = sock.family == socket.AF_UNIX
        address = sock.getsockname()
        if self.is_unix:
            path = address if isinstance(address, str) else address.decode(errors="replace")
            self.address: tuple[str, int | None] = (path, None)
        else:
            self.address = (address[0], address[1])
        # The file we created, to remove at shutdown unless something replaced it.
        self._owned_file: tuple[int, int] | None = None
        if spec.kind == "unix":
            info = os.stat(spec.path)
            self._owned_file = (info.st_dev, info.st_ino)

    def url(self, scheme: str) -> str:
        host, port = self.address
        if self.is_unix:
            return f"unix:{host}"
        if ":" in host:
            host = f"[{host}]"
        return f"{scheme}://{host}:{port}"

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self.listener)
        if self._owned_file is not None:
            with contextlib.suppress(OSError):
                info = os.stat(self.spec.path)
                if (info.st_dev, info.st_ino) == self._owned_file:
                    os.unlink(self.spec.path)
            self._owned_file = None


async def open_listeners(
    config: Config, environ: Mapping[str, str] | None = None
) -> list[Listener]:
    """Open every configured address; on failure close what was opened and raise ``OSError``."""
    opened: list[Listener] = []
    try:
        for spec in bind_specs(config, environ):
            try:
                opened.extend(await _open(spec, config.backlog))
            except OSError as exc:
                reason = (exc.strerror or str(exc)).rstrip(".")
                raise OSError(
                    exc.errno, f"could not listen on {spec}: {reason[0].lower()}{reason[1:]}"
                ) from None
    except BaseException:
        for listener in opened:
            await listener.aclose()
        raise
    return opened


async def _open(spec: BindSpec, backlog: int) -> list[Listener]:
    if spec.kind == "tcp":
        listeners = await trio.open_tcp_listeners(spec.port, host=spec.host, backlog=backlog)
        return [Listener(listener, spec) for listener in listeners]
    if spec.kind == "unix":
        return [Listener(await _open_unix(spec.path, backlog), spec)]
    return [Listener(_adopt_fd(spec.fd), spec)]


async def _open_unix(path: str, backlog: int) -> trio.SocketListener:
    await _remove_stale_socket(path)
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        await sock.bind(path)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return trio.SocketListener(sock)


async def _remove_stale_socket(path: str) -> None:
    """Remove a socket file left by a server that is gone; refuse one still in use."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise OSError(errno.EEXIST, "the path exists and is not a socket")
    probe = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        await probe.connect(path)
    except OSError:
        os.unlink(path)  # nobody answers: stale
    else:
        raise OSError(errno.EADDRINUSE, "another server is listening on that socket")
    finally:
        probe.close()


def _adopt_fd(fd: int) -> trio.SocketListener:
    """A listening socket from an inherited file descriptor."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        if exc.errno in (errno.EBADF, errno.ENOTSOCK):
            raise OSError(exc.errno, "the file descriptor is not an open socket") from None
        raise
    if sock.type != socket.SOCK_STREAM or not sock.getsockopt(
        socket.SOL_SOCKET, socket.SO_ACCEPTCONN
    ):
        sock.detach()  # not ours to close
        raise OSError(errno.EINVAL, "the file descriptor is not a listening stream socket")
    return trio.SocketListener(trio.socket.from_stdlib_socket(sock))
