"""``--cancel-on-disconnect`` on HTTP/1.1: a watcher beside the app notices the client leaving.

By default the connection task runs the app inline and nobody reads the
socket unless the app calls ``receive()``: an app awaiting a slow upstream
cannot learn that its client hung up. With the option on, the app's call
runs in a nursery of the connection's own task next to a watcher task that
reads the socket; at EOF or a reset it tells the cycle, which cancels the
app's scope (``RequestCycle.client_left``): ``trio.Cancelled`` at the app's
next checkpoint, so its ``finally`` blocks and context managers run.

The watcher is only ever started with the option on, so the default path
keeps its one task and its two scheduler steps per keep-alive request.

It reads as the app's ``receive()`` does, through the connection's
serialised ``receive_into_h11``, so what it reads (the request body, a
pipelined next request) goes to the parser and is not lost. It reads ahead
of the app at most :data:`READ_AHEAD_LIMIT` bytes; past that it waits for the
app to read, so an uploader is still held back by TCP rather than our memory.
While the app leaves that much unread and does not read, a disconnect is not
noticed (the bytes in the kernel's buffer come before the EOF); the app's
next ``receive()`` or ``send()`` notices it as without the option.
"""

from __future__ import annotations

from typing import Protocol

import trio

from ..asgi.cycle import RequestCycle

#: The most the watcher reads ahead of the app: the request body it has not
#: read yet and any pipelined next request.
READ_AHEAD_LIMIT = 64 * 1024


class WatchedConnection(Protocol):
    """What the watcher needs of ``http11.connection.HTTPConnection``."""

    h11: object

    async def receive_into_h11(self, *, nothing_there: bool = False) -> bool: ...

    async def wait_for_read(self) -> None: ...


async def run_watched(conn: WatchedConnection, cycle: RequestCycle) -> None:
    """Run the app for ``cycle`` with a disconnect watcher beside it; return when the app does.

    The watcher is cancelled once the app has returned (or been cancelled):
    a request's watcher never outlives its request.
    """
    cycle.app_scope = trio.CancelScope()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_watch_client, conn, cycle)
        await cycle.run()
        nursery.cancel_scope.cancel()


async def _watch_client(conn: WatchedConnection, cycle: RequestCycle) -> None:
    """Read until the client leaves (then tell the cycle) or the response is complete.

    Each turn is a read that returns bytes, or a wait for the app's read:
    bounded by what the client sends, and cancelled when the app returns.
    """
    while not cycle.disconnected and not cycle.response_complete():
        if len(conn.h11.trailing_data[0]) >= READ_AHEAD_LIMIT:  # type: ignore[attr-defined]
            # The app has not read this far yet: let it, then look again.
            await conn.wait_for_read()
            continue
        if not await conn.receive_into_h11():
            cycle.client_left()
            return
