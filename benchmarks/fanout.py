"""Run a built-in client in several processes on the load cores and collect their JSON lines.

One Python process saturates one core long before a fast server does, so the
built-in generators split their connections across processes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from .servers import REPO_ROOT
from .system import cpu_list, load_cores


def process_count(connections: int) -> int:
    """How many client processes: one per load core.

    A trio client does not block on I/O, so two processes sharing a core only
    add switches between them (measured: one WebSocket client process echoes
    5-15 % more messages than two on the same core, against either server).
    """
    return max(1, min(connections, len(load_cores())))


def split(total: int, parts: int) -> list[int]:
    """`total` connections spread over `parts` processes, the first ones taking the rest."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def _reason(stderr: str, code: int) -> str:
    """The last line of a traceback that names an exception, not its box drawing."""
    for line in reversed(stderr.strip().splitlines()):
        text = line.strip(" |+-")
        if text and ("Error" in text or "Exception" in text or ":" in text):
            return text[:200]
    return f"exit {code}"


def run(module: str, per_process: list[list[str]], timeout: float) -> list[dict[str, Any]]:
    """Start `python -m module ARGS` once per argument list; return each one's JSON result."""
    return run_commands(
        module, [[sys.executable, "-m", module, *args] for args in per_process], timeout
    )


def run_commands(name: str, argvs: list[list[str]], timeout: float) -> list[dict[str, Any]]:
    """Start each command on the load cores; return the JSON line each one prints last."""
    procs = [
        subprocess.Popen(
            ["taskset", "-c", cpu_list(load_cores()), *argv],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for argv in argvs
    ]
    results, problems = [], []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            problems.append(f"{name} worker overran {timeout:.0f} s")
            continue
        lines = out.strip().splitlines()
        if proc.returncode != 0 or not lines:
            problems.append(f"{name} worker failed: {_reason(err, proc.returncode)}")
            continue
        results.append(json.loads(lines[-1]))
    # A worker short means a rate short: better no number than a wrong one.
    if problems:
        raise RuntimeError(problems[0])
    return results
