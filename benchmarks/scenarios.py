"""The scenarios: what each one measures, in which units, and which client drives it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from .download import download
from .latency import fixed_rate
from .loadgen import LoadResult, http_load
from .memory import idle_connections
from .servers import RunningServer
from .wsload import ws_load


@dataclass(frozen=True)
class Settings:
    """Knobs that `--quick` turns down; the defaults are the full suite."""

    duration: float = 3.0
    hello_connections: int = 50
    many_connections: int = 1000
    post_size: int = 64 * 1024
    ws_connections: int = 20
    # Well under the slowest peer's capacity on one core (Hypercorn-trio: about
    # 1,000-2,700 req/s), so this measures latency, not queueing.
    latency_rate: float = 500.0
    latency_connections: int = 20
    idle_connections: int = 5000


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    unit: str
    higher_is_better: bool


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


def _stream(server: RunningServer, s: Settings) -> Sample:
    r = download(server.port)
    return Sample({"mibps": r.mib_per_s, "seconds": r.seconds}, {"bytes": r.size}, 0, r.seconds)


def _many(server: RunningServer, s: Settings) -> Sample:
    r = http_load(server.port, path="/", connections=s.many_connections, duration=s.duration)
    return _throughput(r, s)


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


_RPS = Metric("rps", "requests/s", "req/s", True)
# Work done per second of the server's own CPU time (filled in by run.py from
# /proc): the figure that holds up when other processes steal the server's core.
PER_CPU = Metric("per_cpu", "per server CPU-second", "/CPU-s", True)

# The order they run in on each server: memory first, on a process that has not
# yet been through the 100 MiB download and the 1,000-connection burst.
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
            (_RPS, PER_CPU),
            _hello,
        ),
        Scenario(
            "post",
            "POST echo of a {post_size:,}-byte body, {hello_connections} connections",
            "POST 64 KiB echo",
            (_RPS, PER_CPU),
            _post,
        ),
        Scenario(
            "stream",
            "100 MiB streaming download in 64 KiB chunks",
            "100 MiB download",
            (Metric("mibps", "throughput", "MiB/s", True), Metric("seconds", "time", "s", False)),
            _stream,
        ),
        Scenario(
            "many",
            "hello world, {many_connections:,} concurrent connections",
            "hello world ({many_connections:,} conns)",
            (_RPS, PER_CPU),
            _many,
        ),
        Scenario(
            "ws",
            "WebSocket echo of small messages, {ws_connections} connections",
            "WebSocket echo",
            (Metric("mps", "messages/s", "msg/s", True), PER_CPU),
            _ws,
        ),
        Scenario(
            "latency",
            "latency at a fixed {latency_rate:,.0f} req/s over {latency_connections} connections",
            "latency @ {latency_rate:,.0f} req/s",
            (Metric("p50", "p50", "ms", False), Metric("p99", "p99", "ms", False)),
            _latency,
        ),
    )
}
