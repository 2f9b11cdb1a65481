"""ASGI 2 or ASGI 3: telling the two application styles apart, and adapting ASGI 2 apps.

An ASGI 3 app is ``await app(scope, receive, send)``. An ASGI 2 app is a
two-step "double callable": ``instance = app(scope)``, then
``await instance(receive, send)`` (typically a class whose ``__init__``
takes the scope and whose ``async __call__`` takes the channels).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any


def looks_like_asgi3(app: Any) -> bool:
    """Guess the style the way uvicorn does: ASGI 3 apps are coroutine functions.

    A class is ASGI 3 only if its instances are awaitable (calling it *is*
    the coroutine); a function or a callable object is ASGI 3 if calling it
    returns a coroutine.
    """
    if inspect.isclass(app):
        return hasattr(app, "__await__")
    if inspect.isfunction(app) or inspect.ismethod(app):
        return inspect.iscoroutinefunction(app)
    call = getattr(app, "__call__", None)  # noqa: B004 -- we want the method itself
    return inspect.iscoroutinefunction(call)


class ASGI2Adapter:
    """Presents an ASGI 2 application as an ASGI 3 one."""

    def __init__(self, app: Callable[[dict[str, Any]], Any]) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        instance = self.app(scope)
        await instance(receive, send)


def adapt_interface(app: Callable[..., Any], interface: str) -> Callable[..., Any]:
    """The app as an ASGI 3 callable, for ``interface`` ``auto``, ``asgi3`` or ``asgi2``."""
    if interface == "asgi2" or (interface == "auto" and not looks_like_asgi3(app)):
        return ASGI2Adapter(app)
    return app
