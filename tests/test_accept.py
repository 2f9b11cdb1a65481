"""The accept loop takes every connection waiting in the backlog in one wake-up.

``accept()`` yields after each connection; a loop of them took one
connection per turn of the scheduler, and with a thousand clients
connecting at once the last ones waited seconds (docs/performance-notes.md,
round 8). Counted, not timed: the accept loop's scheduler steps.
"""

from __future__ import annotations

import socket

import trio
import trio.testing

from tests import apps
from tests.conftest import running_server

CLIENTS = 40


class AcceptSteps(trio.abc.Instrument):
    """Counts the scheduler steps of the accept loop tasks."""

    def __init__(self) -> None:
        self.steps = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if task.name.endswith("_accept_loop"):
            self.steps += 1


async def test_a_backlog_of_connections_is_taken_in_one_step() -> None:
    async with running_server(apps.hello) as server:
        counter = AcceptSteps()
        # Blocking connects complete in the kernel before the server runs:
        # all of them wait in the backlog when the accept loop wakes.
        clients = [socket.create_connection((server.host, server.port)) for _ in range(CLIENTS)]
        try:
            trio.lowlevel.add_instrument(counter)
            try:
                await trio.testing.wait_all_tasks_blocked()
            finally:
                trio.lowlevel.remove_instrument(counter)
            assert counter.steps <= 2  # the wake-up, and the yield of its accept()
            for client in clients:
                client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            for client in clients:
                client.setblocking(False)
            answered = 0
            for client in clients:
                with trio.fail_after(10):
                    await trio.lowlevel.wait_readable(client)
                answered += client.recv(65536).startswith(b"HTTP/1.1 200 ")
            assert answered == CLIENTS
        finally:
            for client in clients:
                client.close()


async def test_every_connection_of_a_burst_is_served_and_closed() -> None:
    async with running_server(apps.hello) as server:
        clients = [socket.create_connection((server.host, server.port)) for _ in range(CLIENTS)]
        for client in clients:
            client.close()
        # The running_server check: back to the idle task tree, nothing leaked.
