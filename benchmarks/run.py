"""The command line: choose servers and scenarios, run interleaved rounds, write the report.

    python -m benchmarks [--quick] [--rounds N] [--scenarios a,b] [--servers a,b] [--out DIR]

Round r starts every chosen server in turn (the order rotates by one each
round, so no server always goes first), runs every chosen scenario of its
protocol against it, and stops it. Medians and min-max over the rounds, and
the ratios, all come from the same run.

The default is the HTTP/1.1 suite on the HTTP/1.1 servers; ``--scenarios h2``
runs the HTTP/2 group (h2load, cleartext prior knowledge) on the HTTP/2
servers instead, and ``--scenarios http1,h2`` both. Naming only servers
picks the default scenarios of their protocols.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from . import loadgen, report, servers, wsload
from .h2load import h2load_path
from .scenarios import CPU, GROUPS, KERNEL_US, PER_CPU, SCENARIOS, USER_US, Scenario, Settings
from .system import (
    SERVER_CORE,
    busy_seconds,
    cpu_list,
    load_cores,
    others_busy_share,
    pin_self_to_load_cores,
    raise_nofile,
)

DEFAULT_OUT = Path(__file__).resolve().parent / "results"
DEFAULT_ROUNDS = 3
# --quick: one short round without the 1,000-connection burst and with smaller
# downloads, so the whole run stays around a minute.
QUICK = Settings(
    duration=1.0, idle_connections=1000, stream_size=128 * 1024 * 1024, file_size=128 * 1024 * 1024
)
QUICK_SCENARIOS = ("memory", "hello", "post", "stream", "file", "ws", "latency", *GROUPS["h2"])
# Results go to docs/ only from a quiet machine: before the run, the other
# processes may keep at most this much of a core busy (sampled for 2 s) ...
BUSY_BEFORE_CORES = 0.15
# ... and during each scenario at most this share of the server's own core.
BUSY_DURING_SHARE = 0.05
DOCS = servers.REPO_ROOT / "docs"
# and without Granian, which no target of issue 5 compares against.
QUICK_SERVERS = (
    "trio-asgi-h11",
    "trio-asgi-httptools",
    "uvicorn-h11",
    "uvicorn-httptools",
    "hypercorn-trio",
    # HTTP/2 (with --scenarios h2): ours, the trio peer, and the ceiling.
    "trio-asgi-h2",
    "hypercorn-trio-h2",
    "h2-floor",
)


def _names(
    text: str, known: dict[str, object], what: str, groups: dict[str, tuple[str, ...]] | None = None
) -> list[str]:
    groups = groups or {}
    names: list[str] = []
    for name in (n.strip() for n in text.split(",") if n.strip()):
        names += [n for n in groups.get(name, (name,)) if n not in names]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown {what}: {', '.join(unknown)} (known: {', '.join([*groups, *known])})"
        )
    return names


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description="trio-asgi against its peers, side by side."
    )
    parser.add_argument(
        "--quick", action="store_true", help="one short round, no 1,000-connection scenario"
    )
    parser.add_argument("--rounds", type=int, help=f"interleaved rounds (default {DEFAULT_ROUNDS})")
    parser.add_argument(
        "--duration", type=float, help="seconds per load scenario (default 3, --quick 1)"
    )
    parser.add_argument(
        "--scenarios",
        type=lambda t: _names(t, SCENARIOS, "scenario", GROUPS),
        help=f"comma-separated, from: {', '.join(SCENARIOS)}; or a group: "
        + "; ".join(f"{group} ({', '.join(names)})" for group, names in GROUPS.items()),
    )
    parser.add_argument(
        "--servers",
        type=lambda t: _names(t, servers.SERVERS, "server"),
        help=f"comma-separated, from: {', '.join(servers.SERVERS)}",
    )
    parser.add_argument(
        "--generator",
        choices=("auto", "builtin"),
        default="auto",
        help="load generators: wrk and Node's ws when installed (auto), or the Python ones",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where results go")
    args = parser.parse_args(argv)
    if args.rounds is not None and not 1 <= args.rounds <= 50:
        parser.error("--rounds must be between 1 and 50")
    if args.duration is not None and not 0.5 <= args.duration <= 60:
        parser.error("--duration must be between 0.5 and 60 seconds")
    return args


def _log(text: str) -> None:
    # Progress goes to stderr so that stdout is the markdown table alone.
    print(text, file=sys.stderr, flush=True)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not shutil.which("taskset"):
        _log("taskset not found: it comes with util-linux (`apt-get install util-linux`).")
        return 2
    settings = QUICK if args.quick else Settings()
    if args.duration:
        settings = replace(settings, duration=args.duration)
    rounds = args.rounds or (1 if args.quick else DEFAULT_ROUNDS)
    scenarios, specs = _choose(args)
    notes: list[str] = []

    pin_self_to_load_cores()
    # Client and server each hold every idle connection, plus headroom.
    wanted = settings.idle_connections + 1024
    got = raise_nofile(wanted)
    if got < wanted:
        settings = replace(settings, idle_connections=max(100, got - 1024))
        notes.append(f"RLIMIT_NOFILE is {got}: idle connections cut to {settings.idle_connections}")
    if args.generator == "builtin":
        loadgen.force_builtin()
        wsload.force_python()
    elif not loadgen.wrk_path():
        line = (
            "wrk not found: `apt-get install wrk` would give better numbers; "
            "using the built-in trio generator"
        )
        _log(line)
        notes.append(line)
    speaks_h2 = any(sc.protocol == servers.H2C for sc in scenarios)
    if speaks_h2 and not h2load_path():
        line = "h2load not found: the HTTP/2 scenarios need it (`apt-get install nghttp2-client`)"
        _log(line)
        notes.append(line)
    if len(load_cores()) == 1 and load_cores()[0] == SERVER_CORE:
        notes.append("one core only: server and load generator share it")

    infos = {
        s.name: report.ServerInfo(s.name, s.description, s.ours, s.version(), protocol=s.protocol)
        for s in specs
    }
    for spec in specs:
        reason = spec.unavailable()
        if not _scenarios_for(spec, scenarios):
            reason = f"not run: no chosen scenario speaks {spec.protocol} to it"
        if reason:
            infos[spec.name].status = reason
            _log(f"{spec.name}: {reason}")

    busy = os.getloadavg()[0]
    if busy > 1.0:
        notes.append(
            f"the machine was busy before the run (load average {busy:.1f}): "
            "other processes compete for the cores, expect noisy numbers"
        )
    busy_reasons: list[str] = []
    others = others_busy_share(2.0)
    if others > BUSY_BEFORE_CORES:
        busy_reasons.append(f"{others:.2f} cores were busy before the run")
    if any(sc.name == "file" for sc in scenarios):
        _prepare_downloads(settings)
    started = time.monotonic()
    results = report.Results(
        meta={},
        settings=settings,
        scenarios=scenarios,
        servers=list(infos.values()),
    )
    for rnd in range(1, rounds + 1):
        order = specs[(rnd - 1) % len(specs) :] + specs[: (rnd - 1) % len(specs)]
        for spec in order:
            if infos[spec.name].status != "ok":
                continue
            _run_server(spec, rnd, rounds, scenarios, settings, results, infos[spec.name])

    results.meta = {
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "command": "python -m benchmarks " + shlex.join(argv if argv is not None else sys.argv[1:]),
        "cpu": _cpu_model(),
        "cores": len(load_cores()) + (SERVER_CORE not in load_cores()),
        "python": platform.python_version(),
        "server_core": SERVER_CORE,
        "load_cores": cpu_list(load_cores()),
        "generator": loadgen.generator_name(),
        **({"h2_generator": "h2load"} if speaks_h2 else {}),
        "rounds": rounds,
        "elapsed_s": time.monotonic() - started,
        "load_average_before": round(busy, 2),
        "load_average_after": round(os.getloadavg()[0], 2),
        "notes": notes,
    }
    busy_reasons += _busy_during(results)
    for reason in busy_reasons:
        notes.append(f"not a quiet machine: {reason}")
    out: Path = args.out
    if busy_reasons and _is_within(out, DOCS):
        _log(
            f"refusing to write {out}: the machine was busy ({'; '.join(busy_reasons)}); "
            f"results written to {DEFAULT_OUT} instead"
        )
        out = DEFAULT_OUT
        status = 3
    else:
        status = 0
    out.mkdir(parents=True, exist_ok=True)
    text = report.markdown(results)
    (out / "results.md").write_text(text)
    report.write_json(results, out / "results.json")
    try:
        pngs = report.charts(results, out)
    except ImportError:
        pngs = []
        _log("matplotlib not installed: no charts (`pip install matplotlib`)")
    print(text)
    _log(f"wrote {out / 'results.md'}, {out / 'results.json'} and {len(pngs)} chart(s) in {out}")
    return status


def _is_within(path: Path, directory: Path) -> bool:
    return path.resolve().is_relative_to(directory.resolve())


def _prepare_downloads(settings: Settings) -> None:
    """The file the FileResponse scenario sends, made once and read into the page cache.

    The servers find it in their environment (``BENCH_FILE``, ``benchmarks/apps.py``).
    """
    path = Path(tempfile.gettempdir()) / f"trio-asgi-bench-{settings.file_size}.bin"
    if not path.exists() or path.stat().st_size != settings.file_size:
        _log(f"writing {path} ({settings.file_size:,} bytes) for the file scenario")
        block = os.urandom(1024 * 1024)
        with open(f"{path}.part", "wb") as file:
            whole, rest = divmod(settings.file_size, len(block))
            for _ in range(whole):
                file.write(block)
            file.write(block[:rest])
        os.replace(f"{path}.part", path)
    with open(path, "rb") as file:  # every server then reads it from memory
        while file.read(8 * 1024 * 1024):
            pass
    os.environ["BENCH_FILE"] = str(path)


def _busy_during(results: report.Results) -> list[str]:
    """The scenarios in which other processes took a share of the server's core."""
    worst: dict[str, float] = {}
    for scenario, by_server in results.samples.items():
        for measurements in by_server.values():
            for m in measurements:
                share = m.detail.get("others_on_server_core")
                if isinstance(share, float) and share > worst.get(scenario, 0.0):
                    worst[scenario] = share
    return [
        f"other processes took {share:.0%} of the server's core during {scenario}"
        for scenario, share in worst.items()
        if share > BUSY_DURING_SHARE
    ]


def _choose(args: argparse.Namespace) -> tuple[list[Scenario], list[servers.ServerSpec]]:
    """The scenarios and servers to run: as named, else the defaults of the other's protocols.

    Neither named: the HTTP/1.1 suite (or --quick's part of it) on the HTTP/1.1 servers.
    """
    quick_or_all = QUICK_SCENARIOS if args.quick else tuple(SCENARIOS)
    default_servers = QUICK_SERVERS if args.quick else tuple(servers.SERVERS)
    if args.scenarios:
        scenarios = [SCENARIOS[n] for n in args.scenarios]
    else:
        protocols = (
            {servers.SERVERS[n].protocol for n in args.servers} if args.servers else {servers.HTTP1}
        )
        scenarios = [SCENARIOS[n] for n in quick_or_all if SCENARIOS[n].protocol in protocols]
    if args.servers:
        specs = [servers.SERVERS[n] for n in args.servers]
    else:
        protocols = {sc.protocol for sc in scenarios}
        specs = [servers.SERVERS[n] for n in default_servers]
        specs = [spec for spec in specs if spec.protocol in protocols]
    return scenarios, specs


def _scenarios_for(spec: servers.ServerSpec, scenarios: list[Scenario]) -> list[Scenario]:
    """The chosen scenarios ``spec`` runs: those of its protocol that it can answer."""
    return [
        sc
        for sc in scenarios
        if sc.protocol == spec.protocol and (not spec.serves or sc.name in spec.serves)
    ]


def _repo_relative(argv: list[str]) -> list[str]:
    """``argv`` with paths inside the repository made relative to it, for the results."""
    root = str(servers.REPO_ROOT) + os.sep
    return [arg[len(root) :] if arg.startswith(root) else arg for arg in argv]


def _run_server(
    spec: servers.ServerSpec,
    rnd: int,
    rounds: int,
    scenarios: list[Scenario],
    settings: Settings,
    results: report.Results,
    info: report.ServerInfo,
) -> None:
    """Start one server, run every scenario on it once, stop it; never raise."""
    tag = f"[round {rnd}/{rounds}] {spec.name}"
    try:
        server = servers.start(spec)
    except servers.StartError as exc:
        # A server that cannot start now will not start next round either.
        info.status = f"failed to start: {exc}"
        _log(f"{tag}: {info.status}")
        return
    info.command = _repo_relative(["taskset", "-c", str(SERVER_CORE), *spec.command(server.port)])
    fds_idle = server.fd_count()
    try:
        for sc in _scenarios_for(spec, scenarios):
            if not server.alive():
                results.add(sc.name, spec.name, report.Measurement(rnd, error="server exited"))
                continue
            # Each scenario starts once the server has closed the last one's connections.
            waited = server.wait_for_closes(fds_idle)
            if waited > 1:
                _log(f"{tag}: waited {waited:.1f} s for it to close the last connections")
            (user_before, system_before), t0 = server.cpu_split(), time.monotonic()
            cpu_before = user_before + system_before
            core_before = busy_seconds(SERVER_CORE)
            try:
                sample = sc.run(server, settings)
            except Exception as exc:  # a broken server must not end the run
                # Our own clients raise RuntimeError with a sentence; others get their type named.
                error = str(exc) if type(exc) is RuntimeError else f"{type(exc).__name__}: {exc}"
                error = error[:200]
                results.add(sc.name, spec.name, report.Measurement(rnd, error=error))
                _log(f"{tag} {sc.name}: {error}")
                continue
            if not server.alive():  # its figures, CPU time included, are of a dead process
                error = "server exited during the scenario"
                results.add(sc.name, spec.name, report.Measurement(rnd, error=error))
                _log(f"{tag} {sc.name}: {error}")
                continue
            cpu = None
            if sample.window:
                user_after, system_after = server.cpu_split()
                cpu_used = user_after + system_after - cpu_before
                cpu = min(1.0, cpu_used / sample.window)
                others = busy_seconds(SERVER_CORE) - core_before - cpu_used
                sample.detail["others_on_server_core"] = max(0.0, others / sample.window)
                if any(m.key == CPU.key for m in sc.metrics):
                    sample.values[CPU.key] = cpu * 100
                first = sc.metrics[0].key
                if cpu_used > 0 and any(m.key == PER_CPU.key for m in sc.metrics):
                    sample.values[PER_CPU.key] = sample.values[first] * sample.window / cpu_used
                done = sample.values[first] * sample.window  # requests (or messages) served
                if done > 0 and any(m.key == USER_US.key for m in sc.metrics):
                    sample.values[USER_US.key] = (user_after - user_before) * 1e6 / done
                    sample.values[KERNEL_US.key] = (system_after - system_before) * 1e6 / done
            m = report.Measurement(rnd, sample.values, sample.detail, sample.errors, cpu)
            results.add(sc.name, spec.name, m)
            shown = ", ".join(f"{k} {report._num(v)}" for k, v in sample.values.items())
            extra = f", server cpu {cpu:.0%}" if cpu is not None else ""
            errors = f", {sample.errors} errors" if sample.errors else ""
            _log(f"{tag} {sc.name}: {shown}{extra}{errors} ({time.monotonic() - t0:.1f} s)")
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
