"""Apps whose handler sleeps for a minute and records how it ends: raw ASGI, Starlette, FastAPI.

Each factory returns ``(app, probe)``; the probe says when the handler
started, whether it was cancelled or ran to its end, and when its clean-up
(a ``finally`` block; with FastAPI, a ``yield`` dependency's) ran.
"""

from __future__ import annotations

from typing import Any

import trio
from fastapi import Depends, FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

#: How long the slow handler works for nobody if it is not cancelled.
HANDLER_SECONDS = 60.0


class Probe:
    """What became of the slow handler's call."""

    def __init__(self) -> None:
        self.started = trio.Event()
        self.cleaned = trio.Event()
        self.cancelled = False
        self.finished = False
        self.cleaned_at: float | None = None

    async def work(self) -> None:
        """The handler's slow part: a minute's sleep, standing for an upstream call."""
        self.started.set()
        try:
            await trio.sleep(HANDLER_SECONDS)
            self.finished = True
        except trio.Cancelled:
            self.cancelled = True
            raise

    def clean_up(self) -> None:
        self.cleaned_at = trio.current_time()
        self.cleaned.set()


def raw_app() -> tuple[Any, Probe]:
    probe = Probe()

    async def app(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/slow":
            try:
                await probe.work()
            finally:
                probe.clean_up()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    return app, probe


def starlette_app() -> tuple[Any, Probe]:
    probe = Probe()

    async def slow(request: Request) -> PlainTextResponse:
        try:
            await probe.work()
        finally:
            probe.clean_up()
        return PlainTextResponse("done")

    async def fast(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    return Starlette(routes=[Route("/slow", slow), Route("/fast", fast)]), probe


def fastapi_app() -> tuple[Any, Probe]:
    probe = Probe()
    app = FastAPI()

    async def connection():  # a yield dependency: its clean-up is the part after the yield
        try:
            yield "a database connection"
        finally:
            probe.clean_up()

    @app.get("/slow")
    async def slow(db: str = Depends(connection)) -> dict:
        await probe.work()
        return {"db": db}

    @app.get("/fast")
    async def fast() -> str:
        return "ok"

    return app, probe


APPS = {"raw": raw_app, "starlette": starlette_app, "fastapi": fastapi_app}
