"""Memory per idle keep-alive connection, and where it goes.

Starts the server in a child process (one per parser), opens N connections
that each send one GET and read the response, leaves them idle, and asks the
child to report:

- the RSS delta of the server process per connection (a run without
  ``tracemalloc``, whose own bookkeeping would inflate RSS);
- a ``tracemalloc`` breakdown of the bytes allocated per connection, grouped
  by allocation site (file:line), the top entries (a second run, with it on);
- a ``sys.getsizeof`` account of the objects one idle connection owns alone:
  everything reachable from its task that is not reachable from another
  connection's task, by type::

    python -m benchmarks.profile_idle_memory                    # 2,000 connections, both parsers
    python -m benchmarks.profile_idle_memory -n 500 --http h11 --top 10

Both processes run wherever the scheduler puts them; RSS deltas are
steady to a few percent from run to run.
"""

from __future__ import annotations

import argparse
import collections
import gc
import json
import os
import subprocess
import sys
import threading
import tracemalloc
import types
from pathlib import Path
from typing import Any

import trio

from trioasgi import Config
from trioasgi.serving.context import ServerContext
from trioasgi.serving.server import Server

from .apps import app
from .h1 import request
from .memory import _open_many
from .servers import REPO_ROOT

WARMUP_CONNECTIONS = 20


# -- the child: the server, measuring itself ------------------------------------


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS line")


def _connection_tasks() -> list[trio.lowlevel.Task]:
    found, todo = [], [trio.lowlevel.current_root_task()]
    while todo:
        task = todo.pop()
        if task.name.endswith("_handle_connection"):
            found.append(task)
        for nursery in task.child_nurseries:
            todo.extend(nursery.child_tasks)
    return found


#: Where the walk from a connection's task stops: objects every connection
#: shares by construction (code, classes, modules, the server's own tasks).
_SHARED_TYPES = (
    type,
    types.ModuleType,
    types.FunctionType,
    types.BuiltinFunctionType,
    types.CodeType,
    trio.Nursery,
    trio.lowlevel.Task,
    Server,
    ServerContext,
    Config,
)
_WALK_LIMIT = 50_000


def _reachable(task: trio.lowlevel.Task) -> dict[int, Any]:
    """Objects reachable from ``task`` without passing through a shared kind of object."""
    seen: dict[int, Any] = {id(task): task}
    todo = [task]
    while todo and len(seen) < _WALK_LIMIT:
        for ref in gc.get_referents(todo.pop()):
            if id(ref) in seen or isinstance(ref, _SHARED_TYPES):
                continue
            seen[id(ref)] = ref
            todo.append(ref)
    return seen


def _owned_objects(tasks: list[trio.lowlevel.Task]) -> dict[str, Any]:
    """What the first connection owns alone: reachable from it, from no other connection."""
    mine = _reachable(tasks[0])
    others: set[int] = set()
    for task in tasks[1:3]:
        others.update(_reachable(task))
    by_type: collections.Counter[str] = collections.Counter()
    count: collections.Counter[str] = collections.Counter()
    for key, obj in mine.items():
        if key in others:
            continue
        kind = type(obj)
        name = f"{kind.__module__}.{kind.__qualname__}"
        if kind is types.CoroutineType:
            name += f" ({obj.cr_code.co_qualname})"
        elif kind is types.GeneratorType:
            name += f" ({obj.gi_code.co_qualname})"
        by_type[name] += sys.getsizeof(obj)
        count[name] += 1
    stack, coro = [], tasks[0].coro
    while coro is not None and hasattr(coro, "cr_code"):
        stack.append(coro.cr_code.co_qualname)
        coro = coro.cr_await
    return {
        "total": sum(by_type.values()),
        "by_type": [(name, size, count[name]) for name, size in by_type.most_common()],
        "stack": stack,
    }


def _allocation_sites(
    before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, connections: int, top: int
) -> dict[str, Any]:
    ignore = [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, __file__)]
    stats = after.filter_traces(ignore).compare_to(before.filter_traces(ignore), "lineno")
    total = sum(stat.size_diff for stat in stats)
    rows = []
    for stat in stats[:top]:
        frame = stat.traceback[0]
        where = f"{_short(frame.filename)}:{frame.lineno}"
        rows.append((where, stat.size_diff / connections, stat.count_diff / connections))
    return {"total": total / connections, "sites": rows}


def _short(filename: str) -> str:
    for marker in ("site-packages/", "lib/python3"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    try:
        return str(Path(filename).relative_to(REPO_ROOT))
    except ValueError:
        return filename


async def _serve(parser: str, trace: bool, top: int) -> None:
    import trioasgi

    config = trioasgi.Config(
        port=0,
        http=parser,  # type: ignore[arg-type]
        access_log=False,
        log_level="warning",
        lifespan="off",
        timeout_keep_alive=600,
    )
    commands: trio.MemoryReceiveChannel[str]
    send_command, commands = trio.open_memory_channel[str](1)
    token = trio.lowlevel.current_trio_token()

    def read_commands() -> None:
        for line in sys.stdin:
            trio.from_thread.run(send_command.send, line.strip(), trio_token=token)

    async with trio.open_nursery() as nursery:
        (address,) = await nursery.start(trioasgi.serve, app, config)
        threading.Thread(target=read_commands, daemon=True).start()
        _reply({"port": address[1]})
        before: tuple[int, tracemalloc.Snapshot | None] | None = None
        async for command in commands:
            gc.collect()
            snapshot = tracemalloc.take_snapshot() if trace else None
            if command == "mark":
                before = (_rss(), snapshot)
                _reply({})
            elif command == "measure":
                assert before is not None
                tasks = _connection_tasks()
                report: dict[str, Any] = {"connections": len(tasks)}
                report["rss_per_connection"] = (_rss() - before[0]) / len(tasks)
                if snapshot is not None and before[1] is not None:
                    report["tracemalloc"] = _allocation_sites(before[1], snapshot, len(tasks), top)
                report["owned"] = _owned_objects(tasks)
                _reply(report)
            else:
                nursery.cancel_scope.cancel()


def _reply(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


# -- the parent: clients, and the report ---------------------------------------


class _Child:
    def __init__(self, parser: str, trace: bool, top: int) -> None:
        argv = [sys.executable, "-m", "benchmarks.profile_idle_memory", "--child", parser]
        argv += ["--top", str(top)] + (["--trace"] if trace else [])
        self.proc = subprocess.Popen(
            argv, cwd=REPO_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.port = self.ask(None)["port"]

    def ask(self, command: str | None) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if command is not None:
            self.proc.stdin.write(command + "\n")
            self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the server child exited ({self.proc.wait()})")
        return json.loads(line)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.ask_quit()
        self.proc.wait(timeout=10)

    def ask_quit(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("quit\n")
        self.proc.stdin.close()


async def _idle(child: _Child, connections: int) -> dict[str, Any]:
    raw = request("GET", "/")
    await _open_many(child.port, raw, WARMUP_CONNECTIONS, close=True)
    await trio.sleep(0.2)
    await trio.to_thread.run_sync(child.ask, "mark")
    conns = await _open_many(child.port, raw, connections, close=False)
    try:
        await trio.sleep(0.2)
        return await trio.to_thread.run_sync(child.ask, "measure")
    finally:
        for conn in conns:
            conn.stream.socket.close()


def measure(parser: str, connections: int, *, trace: bool, top: int) -> dict[str, Any]:
    child = _Child(parser, trace, top)
    try:
        return trio.run(_idle, child, connections)
    finally:
        child.close()


def _print_report(parser: str, plain: dict[str, Any], traced: dict[str, Any]) -> None:
    print(f"\n## --http {parser}: {plain['connections']} idle keep-alive connections\n")
    print(f"RSS delta per connection: {plain['rss_per_connection'] / 1024:.2f} KiB")
    sites = traced["tracemalloc"]
    print(f"tracemalloc, bytes allocated per connection: {sites['total']:.0f} B\n")
    print("| allocation site | B/connection | blocks/connection |\n|---|---:|---:|")
    for where, size, count in sites["sites"]:
        print(f"| {where} | {size:.0f} | {count:.2f} |")
    owned = plain["owned"]
    print(f"\nObjects one idle connection owns alone (sys.getsizeof): {owned['total']} B\n")
    print("| type | B | objects |\n|---|---:|---:|")
    for name, size, count in owned["by_type"]:
        print(f"| {name} | {size} | {count} |")
    print(f"\nIdle task stack ({len(owned['stack'])} coroutines): " + " → ".join(owned["stack"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--connections", type=int, default=2000)
    parser.add_argument("--http", default="h11,httptools", help="parsers, comma-separated")
    parser.add_argument("--top", type=int, default=25, help="allocation sites to list")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        if args.trace:
            tracemalloc.start(1)
        trio.run(_serve, args.child, args.trace, args.top)
        return
    for name in args.http.split(","):
        plain = measure(name, args.connections, trace=False, top=args.top)
        traced = measure(name, args.connections, trace=True, top=args.top)
        _print_report(name, plain, traced)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
