"""``--reload``: serve from a worker process and replace it when a source file changes.

The reloader binds the sockets once (so the address stays the same and
clients queue in the backlog during a restart), starts one worker, and
watches the ``--reload-dir`` directories with watchfiles. On a change that
matches ``--reload-include`` and no ``--reload-exclude`` pattern it stops
the worker gracefully and starts a fresh one, which imports the new code. A
worker that fails to start is reported and replaced at the next change.
"""

from __future__ import annotations

import fnmatch
import signal
import threading
from collections.abc import Sequence
from pathlib import Path

import trio

from ..core.config import Config
from ..core.errors import ConfigError
from ..core.logs import logger
from .process import WorkerProcess, spawn_worker


def import_watchfiles():
    try:
        import watchfiles
    except ImportError:
        raise ConfigError(
            "--reload needs the watchfiles package: pip install 'trio-asgi[reload]'"
        ) from None
    return watchfiles


def make_filter(includes: Sequence[str], excludes: Sequence[str]):
    """A watchfiles filter: a path counts if its name matches an include and no exclude."""
    watchfiles = import_watchfiles()

    class _Filter(watchfiles.DefaultFilter):
        def __call__(self, change: object, path: str) -> bool:
            if not super().__call__(change, path):
                return False
            name = Path(path).name
            if not any(fnmatch.fnmatch(name, pattern) for pattern in includes):
                return False
            return not any(
                fnmatch.fnmatch(name, pattern) or fnmatch.fnmatch(path, pattern)
                for pattern in excludes
            )

    return _Filter()


class Reloader:
    def __init__(self, app: str, config: Config, fds: Sequence[int]) -> None:
        self.app = app
        self.config = config
        self.fds = fds
        # By default the app's own directory: with --app-dir elsewhere, the
        # current directory may hold none of its code.
        self.directories = [
            str(Path(d).resolve()) for d in (config.reload_dirs or [config.app_dir])
        ]
        self.watch_filter = make_filter(config.reload_includes, config.reload_excludes)
        self._stop_watching = threading.Event()
        self.worker: WorkerProcess | None = None
        self._restarting = trio.Lock()

    async def run(self) -> int:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as received:
            async with trio.open_nursery() as nursery:
                # The watcher first: a change made while the server starts counts.
                nursery.start_soon(self._watch, nursery)
                await trio.lowlevel.checkpoint()
                async with self._restarting:
                    await self._start(nursery)
                async for signum in received:
                    logger.info("Received %s: stopping", signal.Signals(signum).name)
                    break
                self._stop_watching.set()
                if self.worker is not None:
                    self.worker.terminate()
                    with trio.CancelScope(shield=True):
                        await self.worker.exited.wait()
                nursery.cancel_scope.cancel()
        return 0

    async def _start(self, nursery: trio.Nursery) -> None:
        self.worker = await spawn_worker(self.app, self.config, self.fds)
        nursery.start_soon(self.worker.run)
        if not await self.worker.wait_ready():
            logger.error(
                "The server %s: waiting for a change to try again", self.worker.describe_exit()
            )

    async def _watch(self, nursery: trio.Nursery) -> None:
        watchfiles = import_watchfiles()
        source = "--reload-dir" if self.config.reload_dirs else "the app directory"
        logger.info("Watching for changes in %s (%s)", ", ".join(self.directories), source)
        async for changes in watchfiles.awatch(
            *self.directories,
            watch_filter=self.watch_filter,
            stop_event=self._stop_watching,
            step=max(1, round(self.config.reload_delay * 1000)),
        ):
            names = sorted({Path(path).name for _, path in changes})
            logger.info("Detected changes in %s: reloading", ", ".join(names))
            async with self._restarting:
                if self.worker is not None and self.worker.running:
                    self.worker.terminate()
                    await self.worker.exited.wait()
                await self._start(nursery)
