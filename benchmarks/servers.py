"""How to start and stop each server under test: pinned to one core, ready when its port answers.

Every server runs the same app (`benchmarks.apps:app`) with access logging off
and a log level of warning, from the repository root, under `taskset -c 0`.
A server speaks one protocol in a run: HTTP/1.1, or HTTP/2 over cleartext
with prior knowledge (``h2c``, the ``-h2`` servers and the h2 floor), and
only that protocol's scenarios run on it.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import importlib.util
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .system import SERVER_CORE

REPO_ROOT = Path(__file__).resolve().parent.parent
APP = "benchmarks.apps:app"
# Idle keep-alive connections must outlive the memory scenario's ramp-up; the
# servers' 5 s defaults are shorter than opening 5,000 connections to the slow ones.
KEEP_ALIVE_SECONDS = "60"
START_TIMEOUT = 20.0
# Between scenarios: how long a server may take to close the last one's
# connections, and how many descriptors above its idle count mean "done".
CLOSE_TIMEOUT = 3.0
CLOSE_SLACK_FDS = 10
STOP_TIMEOUT = 5.0
HTTP1 = "http/1.1"
H2C = "h2c"


class StartError(Exception):
    """The server did not come up; the message is the reason shown in the table."""


@dataclass(frozen=True)
class ServerSpec:
    """One server configuration: its name in the tables and how to launch it."""

    name: str
    description: str
    ours: bool
    requires: tuple[str, ...]
    command: Callable[[int], list[str]]
    # Why this server cannot run here, checked before starting it (None: it can).
    precheck: Callable[[], str | None] = lambda: None
    # What the load speaks to it: HTTP1 or H2C.
    protocol: str = HTTP1
    # The only scenarios it can answer (empty: every one of its protocol).
    serves: tuple[str, ...] = ()
    # Put before the version, for a program whose version is that of a library it runs on.
    version_prefix: str = ""

    def unavailable(self) -> str | None:
        missing = [m for m in self.requires if importlib.util.find_spec(m) is None]
        if missing:
            return f"not installed ({', '.join(missing)})"
        return self.precheck()

    def version(self) -> str:
        dist = {"trioasgi": "trio-asgi"}.get(self.requires[0], self.requires[0])
        try:
            return self.version_prefix + importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return "source tree" if self.ours else "?"


@functools.cache
def trioasgi_help() -> tuple[str | None, str]:
    """(help text or None, failure reason): the flags trio-asgi's CLI offers today.

    The server is written in parallel with this harness, so its flags are read
    from `--help` instead of assumed.
    """
    try:
        done = subprocess.run(
            [sys.executable, "-m", "trioasgi", "--help"],
            cwd=REPO_ROOT,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"`python -m trioasgi --help`: {exc}"
    if done.returncode != 0:
        return None, _last_line(done.stderr) or f"--help exited {done.returncode}"
    return done.stdout, ""


def _lists_flag(help_text: str, flag: str) -> bool:
    # "--http" must not match "--http2" or "--http-max-...": the flag, then a non-name char.
    return re.search(re.escape(flag) + r"(?![\w-])", help_text) is not None


def _trioasgi_command(http: str | None, *, http2: bool = False) -> Callable[[int], list[str]]:
    def command(port: int) -> list[str]:
        help_text = trioasgi_help()[0] or ""
        argv = [sys.executable, "-m", "trioasgi", APP, "--host", "127.0.0.1", "--port", str(port)]
        argv += ["--no-access-log", "--log-level", "warning"]
        # Flags the CLI does not list yet are left out rather than failing the start;
        # without --help at all, the full command is tried so the real error shows.
        if http and (_lists_flag(help_text, "--http") or not help_text):
            argv += ["--http", http]
        if http2 and (_lists_flag(help_text, "--http2") or not help_text):
            argv += ["--http2"]
        if _lists_flag(help_text, "--timeout-keep-alive"):
            argv += ["--timeout-keep-alive", KEEP_ALIVE_SECONDS]
        return argv

    return command


def _trioasgi_httptools_precheck() -> str | None:
    help_text, reason = trioasgi_help()
    if help_text is None:
        return f"skipped: trio-asgi's --help failed ({reason})"
    if not _lists_flag(help_text, "--http"):
        return "skipped: `python -m trioasgi --help` lists no --http"
    return None


def _trioasgi_h2_precheck() -> str | None:
    help_text, reason = trioasgi_help()
    if help_text is None:
        return f"skipped: trio-asgi's --help failed ({reason})"
    if not _lists_flag(help_text, "--http2"):
        return "skipped: `python -m trioasgi --help` lists no --http2 (no HTTP/2 support yet)"
    return None


def _uvicorn(http: str, loop: str, ws: str) -> Callable[[int], list[str]]:
    def command(port: int) -> list[str]:
        return [
            *(sys.executable, "-m", "uvicorn", APP, "--host", "127.0.0.1", "--port", str(port)),
            *("--http", http, "--loop", loop, "--ws", ws, "--lifespan", "on"),
            *("--no-access-log", "--log-level", "warning"),
            *("--timeout-keep-alive", KEEP_ALIVE_SECONDS),
        ]

    return command


def _hypercorn(worker_class: str) -> Callable[[int], list[str]]:
    # Hypercorn writes no access log unless --access-logfile is given. On a
    # cleartext bind it serves HTTP/1.1 and HTTP/2 with prior knowledge alike.
    def command(port: int) -> list[str]:
        return [
            *(sys.executable, "-m", "hypercorn", APP, "--bind", f"127.0.0.1:{port}"),
            *("--worker-class", worker_class, "--workers", "1", "--log-level", "warning"),
            *("--keep-alive", KEEP_ALIVE_SECONDS),
        ]

    return command


_hypercorn_trio = _hypercorn("trio")


def _granian(port: int, *, http: str = "auto") -> list[str]:
    return [
        *(sys.executable, "-m", "granian", "--interface", "asgi"),
        *("--host", "127.0.0.1", "--port", str(port), "--workers", "1"),
        # Granian stops accepting past --backpressure (default: backlog, 1024) connections
        # in flight; the idle-memory scenario needs 5,000, as the Python servers allow.
        *("--backpressure", "10000", "--backlog", "4096"),
        # --http 2: HTTP/2 only, which is prior knowledge on a cleartext port.
        *(("--http", http) if http != "auto" else ()),
        *("--no-access-log", "--log-level", "warning", APP),
    ]


def _granian_h2(port: int) -> list[str]:
    return _granian(port, http="2")


def _h2_floor(port: int) -> list[str]:
    return [sys.executable, "-m", "benchmarks.h2_floor", "--host", "127.0.0.1", "--port", str(port)]


SERVERS: dict[str, ServerSpec] = {
    s.name: s
    for s in (
        ServerSpec(
            "trio-asgi-h11", "trio-asgi, h11", True, ("trioasgi", "trio"), _trioasgi_command("h11")
        ),
        ServerSpec(
            "trio-asgi-httptools",
            "trio-asgi, httptools",
            True,
            ("trioasgi", "trio", "httptools"),
            _trioasgi_command("httptools"),
            _trioasgi_httptools_precheck,
        ),
        ServerSpec(
            "uvicorn-h11",
            "uvicorn, h11 + asyncio, wsproto",
            False,
            ("uvicorn", "h11", "wsproto"),
            _uvicorn("h11", "asyncio", "wsproto"),
        ),
        ServerSpec(
            "uvicorn-httptools",
            "uvicorn, httptools + uvloop, websockets",
            False,
            ("uvicorn", "httptools", "uvloop", "websockets"),
            _uvicorn("httptools", "uvloop", "websockets"),
        ),
        ServerSpec(
            "hypercorn-trio",
            "Hypercorn, trio worker",
            False,
            ("hypercorn", "trio"),
            _hypercorn_trio,
        ),
        ServerSpec("granian", "Granian, ASGI interface", False, ("granian",), _granian),
        ServerSpec(
            "trio-asgi-h2",
            "trio-asgi, HTTP/2 (h2c)",
            True,
            ("trioasgi", "trio", "h2"),
            _trioasgi_command(None, http2=True),
            _trioasgi_h2_precheck,
            protocol=H2C,
        ),
        ServerSpec(
            "hypercorn-trio-h2",
            "Hypercorn, trio worker, HTTP/2 (h2c)",
            False,
            ("hypercorn", "trio", "h2"),
            _hypercorn("trio"),
            protocol=H2C,
        ),
        ServerSpec(
            "hypercorn-uvloop-h2",
            "Hypercorn, asyncio worker on uvloop, HTTP/2 (h2c)",
            False,
            ("hypercorn", "uvloop", "h2"),
            _hypercorn("uvloop"),
            protocol=H2C,
        ),
        ServerSpec(
            "granian-h2",
            "Granian, ASGI interface, --http 2 (h2c)",
            False,
            ("granian",),
            _granian_h2,
            protocol=H2C,
        ),
        ServerSpec(
            "h2-floor",
            "bare trio + h2 loop, canned hello world (the ceiling; benchmarks/h2_floor.py)",
            False,
            ("h2", "trio"),
            _h2_floor,
            protocol=H2C,
            serves=("h2-hello", "h2-hello-1"),
            version_prefix="h2 ",
        ),
    )
}


class RunningServer:
    """A started server process (and its children, for servers that fork a worker)."""

    def __init__(self, spec: ServerSpec, port: int, proc: subprocess.Popen[bytes], log: Path):
        self.spec, self.port, self.proc, self.log = spec, port, proc, log

    def alive(self) -> bool:
        return self.proc.poll() is None

    def pids(self) -> list[int]:
        """The server process and all its descendants (Hypercorn and Granian fork workers)."""
        children: dict[int, list[int]] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            # The command name may hold spaces; the fields after its ")" do not.
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
        found, todo = [], [self.proc.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            todo.extend(children.get(pid, []))
        return found

    def rss_bytes(self) -> int:
        """Summed VmRSS of the process tree, from /proc/PID/status."""
        total = 0
        for pid in self.pids():
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        return total

    def cpu_seconds(self) -> float:
        """User + system CPU time of the tree so far: shows whether the server was the limit."""
        return sum(self.cpu_split())

    def cpu_split(self) -> tuple[float, float]:
        """User and system (kernel) CPU seconds of the tree so far."""
        ticks = os.sysconf("SC_CLK_TCK")
        user = system = 0
        for pid in self.pids():
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                # utime and stime are fields 14 and 15 of stat(5); 12 and 13 after the ")".
                user += int(fields[11])
                system += int(fields[12])
        return user / ticks, system / ticks

    def fd_count(self) -> int:
        """Open file descriptors of the tree: tells whether idle connections are still held."""
        total = 0
        for pid in self.pids():
            with contextlib.suppress(OSError):
                total += len(os.listdir(f"/proc/{pid}/fd"))
        return total

    def wait_for_closes(self, fds_idle: int, timeout: float = CLOSE_TIMEOUT) -> float:
        """Wait (at most ``timeout``) until the server holds no more descriptors than when idle.

        Closing the thousands of connections a scenario leaves behind costs a
        server a good fraction of a second: the scenario that runs next on it
        must not pay for that. Returns the seconds waited.
        """
        start = time.monotonic()
        while self.fd_count() > fds_idle + CLOSE_SLACK_FDS and time.monotonic() < start + timeout:
            time.sleep(0.05)
        return time.monotonic() - start

    def stop(self) -> None:
        """SIGTERM the process group we created, then SIGKILL it if it lingers."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(STOP_TIMEOUT)
        # Workers of a server whose parent already exited still sit in its group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(STOP_TIMEOUT)
        with contextlib.suppress(OSError):
            self.log.unlink()


def start(spec: ServerSpec) -> RunningServer:
    """Start `spec` on a free port under `taskset`; return once GET / answers 200."""
    port = _free_port()
    argv = ["taskset", "-c", str(SERVER_CORE), *spec.command(port)]
    fd, log_name = tempfile.mkstemp(prefix=f"bench-{spec.name}-", suffix=".log")
    log = Path(log_name)
    with os.fdopen(fd, "wb") as log_file:
        try:
            proc = subprocess.Popen(
                argv,
                cwd=REPO_ROOT,
                env=_env(),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                # Its own process group, so that stop() reaches forked workers too.
                start_new_session=True,
            )
        except OSError as exc:
            log.unlink()
            raise StartError(str(exc)) from exc
    server = RunningServer(spec, port, proc, log)
    if wait_until_answering(proc, port, START_TIMEOUT, protocol=spec.protocol):
        return server
    if proc.poll() is not None:
        reason = _last_line(log.read_text(errors="replace")) or f"exited {proc.returncode}"
    else:
        reason = f"port {port} did not answer within {START_TIMEOUT:.0f} s"
    server.stop()
    raise StartError(reason)


def wait_until_answering(
    proc: subprocess.Popen[bytes], port: int, timeout: float, *, protocol: str = HTTP1
) -> bool:
    """Whether GET / on ``port`` answered 200 before ``proc`` exited or ``timeout`` passed."""
    answers = _answers_h2c if protocol == H2C else _answers
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if answers(port):
            return True
        time.sleep(0.05)
    return False


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            return sock.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def _answers_h2c(port: int) -> bool:
    """GET / over HTTP/2 with prior knowledge: whether its response is a 200."""
    import h2.connection
    import h2.events
    import h2.exceptions

    conn = h2.connection.H2Connection()
    conn.initiate_connection()
    request = [(":method", "GET"), (":scheme", "http"), (":authority", f"127.0.0.1:{port}")]
    conn.send_headers(1, [*request, (":path", "/")], end_stream=True)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            sock.sendall(conn.data_to_send())
            for _ in range(100):  # frames before the response: SETTINGS, WINDOW_UPDATE, ...
                data = sock.recv(65536)
                if not data:
                    return False
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.ResponseReceived):
                        return dict(event.headers).get(b":status") == b"200"
                sock.sendall(conn.data_to_send())
    except (OSError, h2.exceptions.ProtocolError):
        return False
    return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    return env


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:240] if lines else ""
