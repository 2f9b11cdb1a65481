"""A server worker as the parent process sees it: spawn, readiness, signals, exit.

A worker is a fresh Python process (``python -m trioasgi.cli.worker``) that
serves the app on listening sockets its parent bound and passed down as
inherited file descriptors. A socketpair links the two: the worker writes
``R`` once it listens; the parent writes ``S`` to ask for a graceful
shutdown and ``F`` to force one, and ``P`` to check that the worker's event
loop still runs (it answers ``A``), and the worker also shuts down gracefully
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


def worker_config(config: Config, fds: Sequence[int]) -> Config:
    """The worker's settings: the parent's, serving the inherited sockets (``fd://N``)."""
    return config.replace(
        bind=[f"fd://{fd}" for fd in fds], uds=None, fd=None, workers=1, reload=False
    )


def worker_spec(app: str, config: Config, channel_fd: int) -> str:
    """What the worker needs, as one command-line argument."""
    return json.dumps({"app": app, "config": dataclasses.asdict(config), "channel": channel_fd})


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
    spec = worker_spec(app, worker_config(config, fds), theirs.fileno())
    try:
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "trioasgi.cli.worker", spec],
            pass_fds=[*fds, theirs.fileno()],
        )
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    return WorkerProcess(process, trio.socket.from_stdlib_socket(ours))
