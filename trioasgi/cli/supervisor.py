"""``--workers N``: one supervisor process, N worker processes sharing its listening sockets.

The supervisor binds once and never accepts; the kernel hands each new
connection to whichever worker accepts it first, and connections that arrive
while no worker is accepting wait in the listen backlog rather than being
refused. The supervisor

- restarts a worker that exits on its own (crashed, killed, or recycled by
  ``--limit-max-requests``), after a delay that doubles while workers keep
  dying young, so a crashing app does not spin; during start-up as after it;
- stops the service only when a worker that never listened says every
  worker would fail alike: its app could not be loaded (exit status 4,
  ``EXIT_WORKER_BOOT_ERROR``; the supervisor exits 1) or the app's lifespan
  startup failed (3; the supervisor exits 3), as gunicorn does with its
  boot error;
- on SIGINT/SIGTERM asks every worker to drain gracefully, waits for them
  and exits 0; a second signal makes the workers stop at once;
- kills (and so replaces) a worker whose event loop stops answering its
  pings within ``--timeout-worker-healthcheck``;
- on SIGHUP replaces the workers one at a time, starting the new one and
  waiting until it listens before stopping an old one, so there are never
  fewer than N workers serving.
"""

from __future__ import annotations

import signal
import time
from collections.abc import AsyncIterator, Sequence

import trio

from ..core.config import Config
from ..core.logs import logger
from .process import EXIT_WORKER_BOOT_ERROR, WorkerProcess, spawn_worker
from .runner import EXIT_LIFESPAN_FAILED, EXIT_STARTUP_ERROR

#: A worker that dies within this many seconds of listening (or before) "died young".
YOUNG_SECONDS = 1.0
FIRST_BACKOFF_SECONDS = 0.1
MAX_BACKOFF_SECONDS = 5.0
#: How often each worker is pinged (``--timeout-worker-healthcheck`` bounds the answer).
HEALTHCHECK_INTERVAL_SECONDS = 1.0

#: A worker's exit status before it listened → the supervisor's, for the
#: failures that no restart can mend. Any other exit is replaced.
FATAL_STARTUP_STATUSES = {
    EXIT_WORKER_BOOT_ERROR: EXIT_STARTUP_ERROR,
    EXIT_LIFESPAN_FAILED: EXIT_LIFESPAN_FAILED,
}


class Supervisor:
    def __init__(self, app: str, config: Config, fds: Sequence[int]) -> None:
        self.app = app
        self.config = config
        self.fds = fds
        self.workers: set[WorkerProcess] = set()
        self.stopping = False
        self._young_deaths = 0
        self._restarting = False
        #: The second signal that forced the workers to stop, if one did.
        self._forced_by: int | None = None
        self._nursery: trio.Nursery | None = None
        # Until all N workers first listen: a fatal status stops the service.
        self._starting = True
        self._fatal_status: int | None = None
        # Set (and replaced) whenever a worker becomes ready or exits.
        self._changed = trio.Event()

    async def run(self) -> int:
        """Supervise until told to stop; the exit status (non-zero if startup failed)."""
        signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        with trio.open_signal_receiver(*signals) as received:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                status = await self._start_all()
                if status != 0:
                    await self._stop_all()
                    nursery.cancel_scope.cancel()
                    return status
                logger.info("Started %d workers", self.config.workers)
                await self._handle_signals(received)
                nursery.cancel_scope.cancel()
        logger.info("All workers stopped")
        # 128 + the signal, as runner.EXIT_FORCED_BASE: the stop was forced.
        return 128 + self._forced_by if self._forced_by is not None else 0

    async def _start_all(self) -> int:
        """Start the workers; 0 once N listen, else the status for a failure no restart mends.

        A worker that dies otherwise meanwhile (a signal, the OOM killer, a
        crash) is replaced by its watcher, and its replacement counts.
        """
        for _ in range(self.config.workers):
            await self._start_worker()
        # Each turn waits for a worker to become ready or to exit.
        while self._fatal_status is None and self._ready_count() < self.config.workers:
            await self._changed.wait()
        self._starting = False
        return self._fatal_status or 0

    def _ready_count(self) -> int:
        return sum(1 for worker in self.workers if worker.ready.is_set() and worker.running)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def _start_worker(self) -> WorkerProcess:
        assert self._nursery is not None
        worker = await spawn_worker(self.app, self.config, self.fds)
        self.workers.add(worker)
        logger.info("Started worker [%d]", worker.pid)
        self._nursery.start_soon(self._watch, worker)
        if self.config.timeout_worker_healthcheck is not None:
            self._nursery.start_soon(self._check_health, worker)
        if self.stopping:
            worker.retiring = True
            worker.terminate()
        return worker

    async def _watch(self, worker: WorkerProcess) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._notice_ready, worker)
            await worker.run()
            nursery.cancel_scope.cancel()
        self.workers.discard(worker)
        self._notify()
        if worker.retiring or self.stopping:
            logger.info("Worker [%d] stopped", worker.pid)
            return
        fatal = FATAL_STARTUP_STATUSES.get(worker.returncode)  # type: ignore[arg-type]
        if self._starting and fatal is not None and not worker.ready.is_set():
            logger.error(
                "Worker [%d] %s while starting: stopping", worker.pid, worker.describe_exit()
            )
            self._fatal_status = fatal
            self._notify()
            return
        delay = self._restart_delay(worker)
        if worker.returncode == 0:
            logger.info("Worker [%d] finished (request limit); replacing it", worker.pid)
        else:
            logger.warning(
                "Worker [%d] %s; restarting it in %.1f s", worker.pid, worker.describe_exit(), delay
            )
        await trio.sleep(delay)
        if not self.stopping:
            await self._start_worker()

    async def _notice_ready(self, worker: WorkerProcess) -> None:
        await worker.ready.wait()
        self._notify()

    async def _check_health(self, worker: WorkerProcess) -> None:
        """Kill a worker whose event loop stops answering; ``_watch`` then replaces it."""
        timeout = self.config.timeout_worker_healthcheck
        assert timeout is not None
        if not await worker.wait_ready():
            return
        while worker.running and not worker.retiring:
            await trio.sleep(HEALTHCHECK_INTERVAL_SECONDS)
            if not worker.running or worker.retiring:
                return
            if not await worker.answers_ping(timeout):
                logger.warning(
                    "Worker [%d] did not answer the health check within %g s: killing it",
                    worker.pid,
                    timeout,
                )
                worker.send_signal(signal.SIGKILL)
                return

    def _restart_delay(self, worker: WorkerProcess) -> float:
        if worker.returncode == 0:  # recycled on purpose
            return 0.0
        died_young = worker.ready_at is None or time.monotonic() - worker.ready_at < YOUNG_SECONDS
        self._young_deaths = self._young_deaths + 1 if died_young else 0
        if not self._young_deaths:
            return 0.0
        return min(FIRST_BACKOFF_SECONDS * 2 ** (self._young_deaths - 1), MAX_BACKOFF_SECONDS)

    async def _handle_signals(self, received: AsyncIterator[int]) -> None:
        assert self._nursery is not None
        async for signum in received:
            if signum == signal.SIGHUP:
                if self.stopping or self._restarting:
                    continue
                logger.info("Received SIGHUP: restarting the workers one by one")
                self._nursery.start_soon(self._rolling_restart)
                continue
            name = signal.Signals(signum).name
            logger.info("Received %s: stopping the workers gracefully (again to force)", name)
            self._nursery.start_soon(self._stop_all)
            break
        # Keep passing a second signal on while the workers drain.
        async with trio.open_nursery() as waiting:
            waiting.start_soon(self._forward_again, received)
            await self._all_stopped()
            waiting.cancel_scope.cancel()

    async def _forward_again(self, received: AsyncIterator[int]) -> None:
        async for signum in received:
            if signum != signal.SIGHUP:
                self._forced_by = signum
                logger.warning(
                    "Received %s again: telling the workers to exit now",
                    signal.Signals(signum).name,
                )
                for worker in list(self.workers):
                    worker.force()

    async def _stop_all(self) -> None:
        self.stopping = True
        for worker in list(self.workers):
            worker.retiring = True
            worker.terminate()
        await self._all_stopped()

    async def _all_stopped(self) -> None:
        while self.workers:
            await next(iter(self.workers)).exited.wait()
            await trio.lowlevel.checkpoint()

    async def _rolling_restart(self) -> None:
        self._restarting = True
        try:
            for old in list(self.workers):
                if self.stopping:
                    return
                if old.retiring or not old.running:
                    continue
                new = await self._start_worker()
                if not await new.wait_ready():
                    logger.error("A new worker failed to start: keeping the old workers")
                    return
                old.retiring = True
                old.terminate()
            logger.info("Rolling restart done")
        finally:
            self._restarting = False
