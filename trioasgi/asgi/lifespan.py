"""The ASGI lifespan protocol: startup before the first connection, shutdown after the last.

The app's lifespan call runs as one task for the whole life of the server.
:class:`Lifespan` feeds it ``lifespan.startup`` and, much later,
``lifespan.shutdown``, and waits for the answers with a timeout. Its phases
form a small explicit state machine (:class:`_Phase`).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

import trio

from ..core.config import Config
from ..core.logs import logger

SPEC = {"version": "3.0", "spec_version": "2.0"}


class LifespanFailure(Exception):
    """Startup failed in a way that must stop the server; the message says why."""


class _Phase(enum.Enum):
    NOT_STARTED = "not started"
    STARTING = "starting"
    RUNNING = "running"
    SHUTTING_DOWN = "shutting down"
    DONE = "done"
    UNSUPPORTED = "unsupported"


class Lifespan:
    """Runs one app's lifespan protocol."""

    def __init__(self, app: Callable[..., Any], config: Config) -> None:
        self._app = app
        self._mode = config.lifespan
        self._timeout = config.timeout_lifespan
        self.state: dict[str, Any] = {}
        self._phase = _Phase.NOT_STARTED
        self._cancel_scope = trio.CancelScope()
        self._shutdown_requested = trio.Event()
        self._answered = trio.Event()
        self._failure: str | None = None
        # A traceback the app sent as its startup failure message, until it is logged.
        self._failure_text: str | None = None
        self._startup_failed = False

    async def startup(self, nursery: trio.Nursery) -> None:
        """Start the app's lifespan task in ``nursery`` and wait for its startup answer."""
        if self._mode == "off":
            self._phase = _Phase.UNSUPPORTED
            return
        self._phase = _Phase.STARTING
        nursery.start_soon(self._run_app)
        with trio.move_on_after(self._timeout) as scope:
            await self._answered.wait()
        if scope.cancelled_caught:
            self._cancel_scope.cancel()
            raise LifespanFailure(
                f"application startup did not complete within {self._timeout:g} seconds"
            )
        if self._failure is not None:
            self._cancel_scope.cancel()
            if self._failure_text is not None:
                logger.error("Application startup failed:\n%s", self._failure_text)
            raise LifespanFailure(f"application startup failed: {self._failure}")

    async def shutdown(self) -> None:
        """Ask the app to shut down and wait (within the timeout) for its answer."""
        if self._phase is not _Phase.RUNNING:
            self._cancel_scope.cancel()
            return
        self._phase = _Phase.SHUTTING_DOWN
        self._answered = trio.Event()
        self._shutdown_requested.set()
        with trio.move_on_after(self._timeout) as scope:
            await self._answered.wait()
        if scope.cancelled_caught:
            logger.error("application shutdown did not complete within %g seconds", self._timeout)
        elif self._failure is not None:
            logger.error("application shutdown failed: %s", self._failure)
        self._cancel_scope.cancel()

    # -- the app's side ---------------------------------------------------

    async def _run_app(self) -> None:
        scope = {"type": "lifespan", "asgi": SPEC, "state": self.state}
        with self._cancel_scope:
            try:
                await self._app(scope, self._receive, self._send)
            except Exception as exc:
                self._app_failed(exc)
            else:
                self._app_returned()
            finally:
                self._answered.set()

    def _app_failed(self, exc: Exception) -> None:
        if self._startup_failed and self._phase is _Phase.RUNNING:
            # Raised after sending lifespan.startup.failed (Starlette does):
            # its traceback, once; the failure message holds the same one.
            logger.error("Application startup failed", exc_info=exc)
            self._failure_text = None
        elif self._phase is _Phase.STARTING and self._mode == "auto":
            logger.info(
                "ASGI 'lifespan' protocol appears unsupported (%s: %s); running without it",
                type(exc).__name__,
                exc,
            )
            self._phase = _Phase.UNSUPPORTED
        elif self._phase in (_Phase.STARTING, _Phase.SHUTTING_DOWN):
            logger.error("Exception in 'lifespan' protocol", exc_info=exc)
            self._failure = f"{type(exc).__name__}: {exc}"
        else:
            logger.error("Exception in 'lifespan' protocol while running", exc_info=exc)

    def _app_returned(self) -> None:
        if self._phase is _Phase.STARTING:
            if self._mode == "auto":
                logger.info("ASGI 'lifespan' protocol unsupported by the app; running without it")
                self._phase = _Phase.UNSUPPORTED
            else:
                self._failure = "the application returned without completing startup"

    async def _receive(self) -> dict[str, Any]:
        if self._phase is _Phase.STARTING:
            return {"type": "lifespan.startup"}
        await self._shutdown_requested.wait()
        return {"type": "lifespan.shutdown"}

    async def _send(self, message: dict[str, Any]) -> None:
        message_type = message["type"]
        if self._phase is _Phase.STARTING and message_type in (
            "lifespan.startup.complete",
            "lifespan.startup.failed",
        ):
            if message_type == "lifespan.startup.failed":
                self._startup_failed = True
                self._failure, self._failure_text = _failure_sentence(message.get("message"))
            self._phase = _Phase.RUNNING
        elif self._phase is _Phase.SHUTTING_DOWN and message_type in (
            "lifespan.shutdown.complete",
            "lifespan.shutdown.failed",
        ):
            if message_type == "lifespan.shutdown.failed":
                self._failure = message.get("message") or "no reason given"
            self._phase = _Phase.DONE
        else:
            # A forced stop cancels the app wherever it waits, and an app
            # may answer that with any message (Starlette's shutdown.failed
            # while running): the cancellation, not the message, is the news.
            await trio.lowlevel.checkpoint_if_cancelled()
            raise RuntimeError(
                f"unexpected ASGI message {message_type!r} in lifespan phase {self._phase.value!r}"
            )
        self._answered.set()


def _failure_sentence(message: str | None) -> tuple[str, str | None]:
    """The failure to put in one sentence, and the whole text if it is a traceback."""
    text = (message or "").strip()
    if not text:
        return "no reason given", None
    lines = text.splitlines()
    if len(lines) == 1:
        return text, None
    # A traceback (Starlette sends one): its last line names the exception.
    return lines[-1].strip(), text
