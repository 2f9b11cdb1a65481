"""User-space instructions per keep-alive request, counted by valgrind: a figure noise cannot move.

Requests/s on a shared machine move by ±20 % from one minute to the next;
the instructions a server executes per request do not (the same count to
within a fraction of a percent, whatever else the machine is doing). This
runs each server under ``valgrind --tool=callgrind`` with counting off,
warms it up, counts only while ``h2load`` sends exactly ``--requests``
hello-world requests over 50 keep-alive connections, and prints
instructions per request::

    python -m benchmarks.instructions                       # trio-asgi, both parsers
    python -m benchmarks.instructions --servers trio-asgi-httptools,uvicorn-httptools

The server is some 50 times slower under valgrind, so every connection
always has its next request waiting: the count is that of a server at full
load. A few thousand instructions per request are the counting's own fixed
cost spread over the requests: compare figures made with the same
``--requests``. Kernel work (the syscalls themselves) is not counted, and an
instruction of one server is not a nanosecond of another; the figure is for
comparing one server's code before and after a change. Needs valgrind and
h2load (``apt-get install valgrind nghttp2-client``).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .servers import REPO_ROOT, SERVERS, _answers, _env, _free_port

#: Under valgrind a Python server takes a while to import and start.
START_TIMEOUT = 180.0
WARM_UP_REQUESTS = 300
CONNECTIONS = 50


def instructions_per_request(server: str, requests: int) -> float:
    """Run ``server`` under callgrind and count its instructions for ``requests`` requests."""
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="instructions-") as tmp:
        out = Path(tmp) / "callgrind.out"
        argv = [
            *("valgrind", "--tool=callgrind", "--instr-atstart=no"),
            f"--callgrind-out-file={out}",
            *SERVERS[server].command(port),
        ]
        log = open(Path(tmp) / "server.log", "wb")  # noqa: SIM115 - closed below
        proc = subprocess.Popen(
            argv, cwd=REPO_ROOT, env=_env(), stdout=log, stderr=subprocess.STDOUT
        )
        try:
            _wait_until_answering(proc, port)
            url = f"http://127.0.0.1:{port}/"
            _h2load(url, WARM_UP_REQUESTS)
            _callgrind_control("--instr=on", proc.pid)
            _h2load(url, requests)
            _callgrind_control("--instr=off", proc.pid)
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()
        return _total_instructions(out) / requests


def _wait_until_answering(proc: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited ({proc.returncode}) before answering")
        if _answers(port):
            return
        time.sleep(0.2)
    raise RuntimeError(f"the server did not answer within {START_TIMEOUT:.0f} s")


def _h2load(url: str, requests: int) -> None:
    result = subprocess.run(
        ["h2load", "--h1", "-n", str(requests), "-c", str(CONNECTIONS), url],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if f"{requests} succeeded" not in result.stdout:
        raise RuntimeError(f"h2load: not every request succeeded\n{result.stdout[-500:]}")


def _callgrind_control(switch: str, pid: int) -> None:
    subprocess.run(["callgrind_control", switch, str(pid)], capture_output=True, check=True)


def _total_instructions(out: Path) -> int:
    # With --instr-atstart=no the totals are those of the counted part only
    # (the "summary:" line near the top stays 0).
    totals = re.findall(r"^totals: (\d+)", out.read_text(), re.MULTILINE)
    if not totals:
        raise RuntimeError("callgrind wrote no totals")
    return sum(int(total) for total in totals)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--servers",
        default="trio-asgi-h11,trio-asgi-httptools",
        help="comma-separated names from benchmarks/servers.py",
    )
    parser.add_argument("--requests", type=int, default=3000)
    args = parser.parse_args()
    tools = ("valgrind", "callgrind_control", "h2load")
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        sys.exit(f"needs {', '.join(missing)}: apt-get install valgrind nghttp2-client")
    names = [name.strip() for name in args.servers.split(",") if name.strip()]
    unknown = [name for name in names if name not in SERVERS]
    if unknown:
        sys.exit(f"unknown server {unknown[0]!r}; known: {', '.join(SERVERS)}")
    print("| server | instructions per request |\n|---|---:|")
    for name in names:
        unavailable = SERVERS[name].unavailable()
        if unavailable:
            print(f"| {name} | {unavailable} |")
            continue
        count = instructions_per_request(name, args.requests)
        print(f"| {name} | {count / 1000:,.1f}k |", flush=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
