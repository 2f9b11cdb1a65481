"""The scenarios: what each one measures, in which units, and which client drives it.

The HTTP/1.1 scenarios are the default suite; the HTTP/2 ones (``h2-*``,
cleartext with prior knowledge, driven by h2load) run on the HTTP/2 servers
when asked for, by name or as the group ``h2`` (``--scenarios h2``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from .download import download, warm_up
from .h2load import http2_download, http2_load
from .latency import fixed_rate
from .loadgen import LoadResult, http_load
from .memory import idle_connections
from .servers import H2C, HTTP1, RunningServer
from .wsload import ws_load


@dataclass(frozen=True)
class Settings:
    """Knobs that `--quick` turns down; the defaults are the full suite."""

    duration: float = 3.0
    hello_connections: int = 50
    many_connections: int = 1000
    # wrk counts a request unanswered this long as a timeout (1,000 connections).
    many_timeout: float = 2.0
    stream_size: int = 1024 * 1024 * 1024
    file_size: int = 1024 * 1024 * 1024
    post_size: int = 64 * 1024
    ws_connections: int = 20
    # Well under the slowest peer's capacity on one core (Hypercorn-trio: about
    # 1,000-2,700 req/s), so this measures latency, not queueing.
    latency_rate: float = 500.0
    latency_connections: int = 20
    idle_connections: int = 5000
    # HTTP/2: requests in flight on each of the hello_connections (h2load -m).
    h2_streams: int = 10


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    unit: str
    higher_is_better: bool
    # Whether a ratio of ours to a peer's means anything (not for a count of
    # timeouts, or the share of its core a server used).
    compare: bool = True


@dataclass
class Sample:
    """One measurement of one server in one round."""

    values: dict[str, float]
    detail: dict[str, float | int | str] = field(default_factory=dict)
    errors: int = 0
    # Seconds the server was under closed-loop load, to turn its CPU time into a
    # utilisation; None where the scenario does not try to saturate it.
    window: float | None = None


@dataclass(frozen=True)
class Scenario:
    name: str
    # Both are str.format templates over the Settings fields.
    title: str
    short: str
    metrics: tuple[Metric, ...]
    run: Callable[[RunningServer, Settings], Sample]
    # What the load speaks: runs only on the servers that speak it too.
    protocol: str = HTTP1

    def describe(self, settings: Settings, *, short: bool = False) -> str:
        return (self.short if short else self.title).format(**asdict(settings))


def _throughput(r: LoadResult, s: Settings) -> Sample:
    detail: dict[str, float | int | str] = {"requests": r.requests, "tool": r.tool}
    return Sample({"rps": r.requests_per_s}, detail, r.errors, s.duration)


def _hello(server: RunningServer, s: Settings) -> Sample:
    r = http_load(server.port, path="/", connections=s.hello_connections, duration=s.duration)
    return _throughput(r, s)


def _post(server: RunningServer, s: Settings) -> Sample:
    r = http_load(
        server.port,
        path="/echo",
        connections=s.hello_connections,
        duration=s.duration,
        body_size=s.post_size,
    )
    return _throughput(r, s)


def _download(server: RunningServer, path: str, size: int) -> Sample:
    r = download(server.port, path, rss=server.rss_bytes)
    if r.size != size:
        raise RuntimeError(f"GET {path} returned {r.size:,} bytes, not {size:,}")
    values = {"mibps": r.mib_per_s, "seconds": r.seconds, "rss": r.peak_rss_growth_mib}
    return Sample(values, {"bytes": r.size, "tool": r.tool}, 0, r.seconds)


def _stream(server: RunningServer, s: Settings) -> Sample:
    return _download(server, f"/stream?bytes={s.stream_size}", s.stream_size)


def _file(server: RunningServer, s: Settings) -> Sample:
    # Starlette's import and anyio's worker threads come with the first
    # FileResponse: a one-byte range request takes them out of the timing.
    warm_up(server.port, "/file")
    return _download(server, "/file", s.file_size)


def _many(server: RunningServer, s: Settings) -> Sample:
    r = http_load(
        server.port,
        path="/",
        connections=s.many_connections,
        duration=s.duration,
        timeout=s.many_timeout,
    )
    sample = _throughput(r, s)
    sample.values.update(p50=r.p50_ms, p99=r.p99_ms, timeouts=r.timeouts)
    return sample


def _ws(server: RunningServer, s: Settings) -> Sample:
    r = ws_load(server.port, connections=s.ws_connections, duration=s.duration)
    detail: dict[str, float | int | str] = {"messages": r.messages, "tool": r.tool}
    return Sample({"mps": r.messages_per_s}, detail, r.errors, s.duration)


def _latency(server: RunningServer, s: Settings) -> Sample:
    r = fixed_rate(
        server.port,
        rate=s.latency_rate,
        connections=s.latency_connections,
        duration=s.duration,
    )
    detail: dict[str, float | int | str] = {
        "max_ms": r.max_ms,
        "achieved_rate": r.achieved_rate,
        "samples": r.samples,
    }
    return Sample({"p50": r.p50_ms, "p99": r.p99_ms}, detail, r.errors)


def _memory(server: RunningServer, s: Settings) -> Sample:
    r = idle_connections(server, s.idle_connections)
    detail: dict[str, float | int | str] = {
        "rss_before_mib": round(r.rss_before_mib, 1),
        "rss_after_mib": round(r.rss_after_mib, 1),
        "opened": r.opened,
        "held_fds": r.held,
    }
    # Connections that failed to open, or that the server dropped before RSS was
    # read, make the per-connection figure meaningless: count them as errors.
    errors = (s.idle_connections - r.opened) + max(0, r.opened - r.held)
    return Sample({"kib": r.per_connection_kib}, detail, errors)


def _h2_hello(server: RunningServer, s: Settings) -> Sample:
    r = http2_load(
        server.port,
        path="/",
        connections=s.hello_connections,
        streams=s.h2_streams,
        duration=s.duration,
    )
    return _throughput(r, s)


def _h2_hello_1(server: RunningServer, s: Settings) -> Sample:
    r = http2_load(
        server.port, path="/", connections=s.hello_connections, streams=1, duration=s.duration
    )
    return _throughput(r, s)


def _h2_post(server: RunningServer, s: Settings) -> Sample:
    r = http2_load(
        server.port,
        path="/echo",
        connections=s.hello_connections,
        streams=s.h2_streams,
        duration=s.duration,
        body_size=s.post_size,
    )
    return _throughput(r, s)


def _h2_stream(server: RunningServer, s: Settings) -> Sample:
    r = http2_download(server.port)
    return Sample({"mibps": r.mib_per_s, "seconds": r.seconds}, {"bytes": r.size}, 0, r.seconds)


_RPS = Metric("rps", "requests/s", "req/s", True)
# The share of its core the server used while under load (filled in by run.py):
# 95 % or more says the server, not the load generator, set the figure.
CPU = Metric("cpu", "server CPU", "%", True, compare=False)
_MIBPS = Metric("mibps", "throughput", "MiB/s", True)
_SECONDS = Metric("seconds", "time", "s", False)
_RSS = Metric("rss", "server peak RSS growth", "MiB", False, compare=False)
# Work done per second of the server's own CPU time (filled in by run.py from
# /proc): the figure that holds up when other processes steal the server's core.
PER_CPU = Metric("per_cpu", "per server CPU-second", "/CPU-s", True)
# Where the server's CPU time per request (or message) went, from /proc (filled
# in by run.py): in its own code and the interpreter (user), or in the kernel
# (system: the socket calls and what they wake). The profile's first split.
USER_US = Metric("user_us", "server user CPU / request", "µs", False, compare=False)
KERNEL_US = Metric("kernel_us", "server kernel CPU / request", "µs", False, compare=False)

# The order they run in on each server: memory first, on a process that has not
# yet been through the 1 GiB downloads and the 1,000-connection burst.
SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "memory",
            "memory per idle keep-alive connection ({idle_connections:,} connections, RSS delta)",
            "idle memory ({idle_connections:,} conns)",
            (Metric("kib", "RSS / connection", "KiB", False),),
            _memory,
        ),
        Scenario(
            "hello",
            "hello world, {hello_connections} keep-alive connections",
            "hello world ({hello_connections} conns)",
            (_RPS, PER_CPU, CPU, USER_US, KERNEL_US),
            _hello,
        ),
        Scenario(
            "post",
            "POST echo of a {post_size:,}-byte body, {hello_connections} connections",
            "POST 64 KiB echo",
            (_RPS, PER_CPU, CPU, USER_US, KERNEL_US),
            _post,
        ),
        Scenario(
            "stream",
            "app-streamed download of {stream_size:,} bytes in 64 KiB chunks, one curl",
            "streamed download ({stream_size:,} B)",
            (_MIBPS, _SECONDS, _RSS),
            _stream,
        ),
        Scenario(
            "file",
            "Starlette FileResponse of a {file_size:,}-byte file, one curl",
            "FileResponse ({file_size:,} B)",
            (_MIBPS, _SECONDS, _RSS),
            _file,
        ),
        Scenario(
            "many",
            "hello world, {many_connections:,} concurrent connections "
            "(timeouts: no response within {many_timeout:g} s)",
            "hello world ({many_connections:,} conns)",
            (
                _RPS,
                Metric("p50", "p50 latency", "ms", False),
                Metric("p99", "p99 latency", "ms", False),
                Metric("timeouts", "timeouts", "requests", False, compare=False),
                PER_CPU,
                CPU,
                USER_US,
                KERNEL_US,
            ),
            _many,
        ),
        Scenario(
            "ws",
            "WebSocket echo of small messages, {ws_connections} connections",
            "WebSocket echo",
            (
                Metric("mps", "messages/s", "msg/s", True),
                PER_CPU,
                CPU,
                Metric(USER_US.key, "server user CPU / message", "µs", False, compare=False),
                Metric(KERNEL_US.key, "server kernel CPU / message", "µs", False, compare=False),
            ),
            _ws,
        ),
        Scenario(
            "latency",
            "latency at a fixed {latency_rate:,.0f} req/s over {latency_connections} connections",
            "latency @ {latency_rate:,.0f} req/s",
            (Metric("p50", "p50", "ms", False), Metric("p99", "p99", "ms", False)),
            _latency,
        ),
        Scenario(
            "h2-hello",
            "HTTP/2 hello world, {hello_connections} connections x {h2_streams} streams (h2load)",
            "h2 hello ({hello_connections} x {h2_streams} streams)",
            (_RPS, PER_CPU),
            _h2_hello,
            H2C,
        ),
        Scenario(
            "h2-hello-1",
            "HTTP/2 hello world, {hello_connections} connections x 1 stream (h2load)",
            "h2 hello ({hello_connections} x 1 stream)",
            (_RPS, PER_CPU),
            _h2_hello_1,
            H2C,
        ),
        Scenario(
            "h2-post",
            "HTTP/2 POST echo of a {post_size:,}-byte body, "
            "{hello_connections} connections x {h2_streams} streams (h2load)",
            "h2 POST 64 KiB echo",
            (_RPS, PER_CPU),
            _h2_post,
            H2C,
        ),
        Scenario(
            "h2-stream",
            "HTTP/2 100 MiB streaming download in 64 KiB chunks, one stream (h2load)",
            "h2 100 MiB download",
            (Metric("mibps", "throughput", "MiB/s", True), Metric("seconds", "time", "s", False)),
            _h2_stream,
            H2C,
        ),
    )
}

#: Names that stand for several scenarios in --scenarios.
GROUPS: dict[str, tuple[str, ...]] = {
    "http1": tuple(name for name, sc in SCENARIOS.items() if sc.protocol == HTTP1),
    "h2": tuple(name for name, sc in SCENARIOS.items() if sc.protocol == H2C),
}
