"""A server worker as the parent process sees it: spawn, readiness, signals, exit.

A worker is a fresh Python process (``python -m trioasgi.cli.worker FD``) that
serves the app on listening sockets its parent bound and passed down as
inherited file descriptors. A socketpair links the two (``FD`` is the
worker's end). The parent first writes the worker's settings into it, so
that no secret (``ssl_keyfile_password``) is ever on a command line, which
any local user can read with ``ps``, or in the worker's environment. Then
the worker writes ``R`` once it listens; the parent writes ``S`` to ask for
a graceful shutdown and ``F`` to force one, and ``P`` to check that the
worker's event loop still runs (it answers ``A``), and the worker also shuts
down gracefully
when it reads EOF, so it never outlives a parent that was killed.

Asking over the socketpair rather than with SIGTERM matters under systemd,
which by default signals every process of the service: a worker that got
SIGTERM from systemd and then again from its supervisor would take the
second one as "exit now" and drop its requests in flight.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import socket
import struct
import sys
import time
from collections.abc import Sequence

import trio

from ..core.config import Config

READY = b"R"
STOP = b"S"
FORCE = b"F"
#: The supervisor's health check, and the worker's answer (from its event loop).
PING = b"P"
PONG = b"A"

#: A worker's exit status when it cannot serve whatever we try: its app
#: could not be loaded, or its settings were refused (gunicorn's boot error).
#: Every worker would fail the same way, so the supervisor stops rather than
#: restarting it; it exits with the single-process status (1) itself.
EXIT_WORKER_BOOT_ERROR = 4


def worker_config(config: Config, fds: Sequence[int]) -> Config:
    """The worker's settings: the parent's, serving the inherited sockets (``fd://N``)."""
    return config.replace(
        bind=[f"fd://{fd}" for fd in fds], uds=None, fd=None, workers=1, reload=False
    )


#: Environment variables a worker does not get: its settings come over the
#: socketpair, and a secret in its environment would be readable in
#: ``/proc/PID/environ`` by the same user (and in crash reports).
SECRET_VARIABLES = frozenset({"TRIO_ASGI_SSL_KEYFILE_PASSWORD"})

#: The settings' length prefix on the socketpair: 4 bytes, big-endian.
_LENGTH = struct.Struct("!I")
#: Far above any real settings (a few KiB): a bigger length is not ours.
MAX_SPEC_BYTES = 16 * 1024 * 1024


def worker_spec(app: str, config: Config) -> bytes:
    """What the worker needs, as the length-prefixed JSON written into its socketpair."""
    data = json.dumps({"app": app, "config": dataclasses.asdict(config)}).encode()
    return _LENGTH.pack(len(data)) + data


def read_spec(channel: socket.socket) -> dict:
    """The worker's side of :func:`worker_spec`: read it from the (blocking) socketpair.

    Raises ``ValueError`` if what arrives is not a spec (the parent died, or
    the process was started by hand).
    """
    (size,) = _LENGTH.unpack(_read_exactly(channel, _LENGTH.size))
    if size > MAX_SPEC_BYTES:
        raise ValueError(f"a settings message of {size} bytes is not ours")
    spec = json.loads(_read_exactly(channel, size))
    if not isinstance(spec, dict) or "app" not in spec or "config" not in spec:
        raise ValueError("the settings message lacks the app or its config")
    return spec


def _read_exactly(channel: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:  # each turn reads at least a byte, or ends
        chunk = channel.recv(size - len(data))
        if not chunk:
            raise ValueError("the supervisor closed the channel before sending the settings")
        data += chunk
    return data


def worker_environment() -> dict[str, str]:
    """The worker's environment: ours, without the secrets (see :data:`SECRET_VARIABLES`)."""
    return {name: value for name, value in os.environ.items() if name not in SECRET_VARIABLES}


def config_from_spec(data: dict) -> Config:
    settings = dict(data)
    settings["headers"] = [tuple(header) for header in settings["headers"]]
    return Config(**settings)


class WorkerProcess:
    """One running worker. ``run()`` is its watching task; it returns at the exit."""

    def __init__(self, process: trio.Process, channel: trio.socket.SocketType) -> None:
        self.process = process
        self.pid = process.pid
        self.channel = channel
        self.ready_at: float | None = None
        self.returncode: int | None = None
        #: Set when we asked it to stop (rolling restart, shutdown): no replacement.
        self.retiring = False
        self.ready = trio.Event()
        self.exited = trio.Event()
        self._settled = trio.Event()
        self._pong: trio.Event | None = None

    @property
    def running(self) -> bool:
        return not self.exited.is_set()

    async def run(self) -> None:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._read_channel)
                self.returncode = await self.process.wait()
                nursery.cancel_scope.cancel()
        finally:
            self.channel.close()
            self.exited.set()
            self._settled.set()

    async def _read_channel(self) -> None:
        while True:
            try:
                data = await self.channel.recv(64)
            except OSError:  # reset: the worker exited with our stop request unread
                return
            if not data:
                return
            if PONG in data and self._pong is not None:
                self._pong.set()
            if READY in data and not self.ready.is_set():
                self.ready_at = time.monotonic()
                self.ready.set()
                self._settled.set()

    async def wait_ready(self) -> bool:
        """Wait until it listens (True) or has exited without ever listening (False)."""
        await self._settled.wait()
        return self.ready.is_set()

    async def answers_ping(self, timeout: float) -> bool:
        """Whether the worker's event loop answers a ping within ``timeout`` seconds."""
        self._pong = trio.Event()
        self._tell(PING)
        with trio.move_on_after(timeout):
            await self._pong.wait()
        return self._pong.is_set() or not self.running

    def terminate(self) -> None:
        """Ask for a graceful shutdown."""
        self._tell(STOP)

    def force(self) -> None:
        """Ask to stop at once."""
        self._tell(FORCE)

    def _tell(self, message: bytes) -> None:
        if not self.running:
            return
        try:
            # One byte into an empty socket buffer: never blocks.
            os.write(self.channel.fileno(), message)
        except OSError:
            self.send_signal(signal.SIGTERM if message == STOP else signal.SIGKILL)

    def send_signal(self, signum: int) -> None:
        if self.running and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signum)

    def describe_exit(self) -> str:
        code = self.returncode
        if code is None:
            return "is running"
        if code < 0:
            try:
                return f"was killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"was killed by signal {-code}"
        return f"exited with status {code}"


async def spawn_worker(app: str, config: Config, fds: Sequence[int]) -> WorkerProcess:
    """Start a worker serving ``app`` on the listening sockets ``fds``; it is not ready yet."""
    ours, theirs = socket.socketpair()
    try:
        # Into the socket's buffer before the worker even runs: a few KiB
        # that the worker reads first; never blocks.
        ours.sendall(worker_spec(app, worker_config(config, fds)))
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "trioasgi.cli.worker", str(theirs.fileno())],
            pass_fds=[*fds, theirs.fileno()],
            env=worker_environment(),
        )
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    return WorkerProcess(process, trio.socket.from_stdlib_socket(ours))
