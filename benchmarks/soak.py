"""Soak test: mixed traffic against one server process for N minutes; nothing may leak.

    python -m benchmarks.soak --minutes 30
    python -m benchmarks.soak --minutes 2 --clients 8 --hostile 4 --server-args=--http=h11

One ``trio-asgi`` process serves ``benchmarks.soak_app:app`` on loopback.
Well-behaved clients (keep-alive and new connections, uploads, streamed
downloads, WebSocket echo: ``soak_clients.WELL_BEHAVED``) check every
answer; hostile ones (slowloris, garbage, half-closed, clients that stop
reading, resets: ``soak_clients.HOSTILE``) run beside them. Every loop is
bounded by the run's end and by a count; every exchange by a timeout.

It reports the exchanges served, the errors the well-behaved clients saw
(must be 0), and the server's RSS and open file descriptors at start (after
a warm-up), during (sampled) and after (once the clients have left and the
server has closed their connections), which must come back to the start's
within the margins (``--rss-margin-mib``, ``--fd-margin``). Exit status 0 if
all holds, 1 if not. Not part of ``make test``: it takes minutes.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shlex
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import trio

from .servers import REPO_ROOT, _env, _free_port, wait_until_answering
from .soak_clients import EXCHANGE_TIMEOUT, HOSTILE, HOSTILE_TIMEOUT, WELL_BEHAVED, pick

START_TIMEOUT = 30.0
#: Exchanges per client before the measured run: the server's caches and
#: lazily imported code paths are then part of the baseline.
WARM_UP_ROUNDS = 20
#: The most exchanges one client makes (the run's end usually comes first).
MAX_EXCHANGES_PER_CLIENT = 10_000_000
#: After the clients stop: how long the server may take to close everything.
SETTLE_TIMEOUT = 30.0
#: Error messages kept for the report (all are counted).
KEPT_ERRORS = 20


@dataclass
class Sample:
    at: float
    rss: int
    fds: int


@dataclass
class Tally:
    served: Counter[str] = field(default_factory=Counter)
    hostile: Counter[str] = field(default_factory=Counter)
    errors: int = 0
    messages: list[str] = field(default_factory=list)

    def error(self, name: str, exc: BaseException) -> None:
        self.errors += 1
        if len(self.messages) < KEPT_ERRORS:
            self.messages.append(f"{name}: {type(exc).__name__}: {exc}")


# -- the server process -----------------------------------------------------------------


def start_server(extra: list[str]) -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    argv = [sys.executable, "-m", "trioasgi", "benchmarks.soak_app:app"]
    argv += ["--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
    argv += ["--log-level", "warning", *extra]
    proc = subprocess.Popen(
        argv, cwd=REPO_ROOT, env=_env(), stdin=subprocess.DEVNULL, start_new_session=True
    )
    if not wait_until_answering(proc, port, START_TIMEOUT):
        stop_server(proc)
        sys.exit(f"the server did not start: {shlex.join(argv)}")
    return proc, port


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=40)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def measure(pid: int, started: float) -> Sample:
    rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
    return Sample(time.monotonic() - started, rss, len(os.listdir(f"/proc/{pid}/fd")))


# -- the clients -------------------------------------------------------------------------


async def well_behaved(port: int, seed: int, until: float, tally: Tally, pause: float) -> None:
    rng = random.Random(seed)
    for _ in range(MAX_EXCHANGES_PER_CLIENT):
        if trio.current_time() >= until:
            return
        name, client = pick(WELL_BEHAVED, rng)
        try:
            with trio.fail_after(EXCHANGE_TIMEOUT):
                await client(port, rng)
        except Exception as exc:  # every failure is the server's to answer for
            tally.error(name, exc)
        else:
            tally.served[name] += 1
        await trio.sleep(pause)


async def hostile(port: int, seed: int, until: float, tally: Tally, pause: float) -> None:
    rng = random.Random(seed)
    for _ in range(MAX_EXCHANGES_PER_CLIENT):
        if trio.current_time() >= until:
            return
        name, client = pick(HOSTILE, rng)
        # Whatever the server answers a hostile client is fine; surviving is the test.
        with (
            trio.move_on_after(HOSTILE_TIMEOUT + 5),
            contextlib.suppress(OSError, trio.BrokenResourceError, trio.ClosedResourceError),
        ):
            await client(port, rng)
        tally.hostile[name] += 1
        await trio.sleep(pause)


async def sampler(
    pid: int, started: float, until: float, every: float, samples: list[Sample]
) -> None:
    while trio.current_time() < until:
        await trio.sleep(min(every, max(until - trio.current_time(), 0)))
        samples.append(measure(pid, started))


async def run_clients(
    args: argparse.Namespace, port: int, pid: int, started: float
) -> tuple[Tally, list[Sample]]:
    tally = Tally()
    samples: list[Sample] = []
    until = trio.current_time() + args.minutes * 60
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sampler, pid, started, until, args.sample_seconds, samples)
        for i in range(args.clients):
            nursery.start_soon(well_behaved, port, args.seed + i, until, tally, args.pause)
        for i in range(args.hostile):
            nursery.start_soon(hostile, port, args.seed + 1000 + i, until, tally, args.pause)
    return tally, samples


async def warm_up(port: int, clients: int, seed: int) -> None:
    tally = Tally()
    async with trio.open_nursery() as nursery:
        for i in range(clients):
            nursery.start_soon(_warm_up_one, port, seed + 5000 + i, tally)
    if tally.errors:
        sys.exit(f"the warm-up failed: {tally.messages[0]}")


async def _warm_up_one(port: int, seed: int, tally: Tally) -> None:
    rng = random.Random(seed)
    for name, (_, client) in list(WELL_BEHAVED.items()) * (WARM_UP_ROUNDS // len(WELL_BEHAVED) + 1):
        try:
            with trio.fail_after(EXCHANGE_TIMEOUT):
                await client(port, rng)
        except Exception as exc:
            tally.error(name, exc)


def settle(pid: int, started: float, baseline: Sample) -> Sample:
    """Wait (bounded) until the server holds no more descriptors than at the start."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    after = measure(pid, started)
    while after.fds > baseline.fds and time.monotonic() < deadline:
        time.sleep(0.5)
        after = measure(pid, started)
    return after


# -- the report --------------------------------------------------------------------------


def report(
    args: argparse.Namespace,
    tally: Tally,
    first: Sample,
    baseline: Sample,
    samples: list[Sample],
    after: Sample,
    seconds: float,
) -> bool:
    mib = 1024 * 1024
    served = sum(tally.served.values())
    clients = f"{args.clients} well-behaved and {args.hostile} hostile clients"
    print(f"\nsoak: {seconds / 60:.1f} minutes, {clients}")
    print(f"exchanges served: {served} ({served / seconds:.0f}/s)")
    for name, count in sorted(tally.served.items()):
        print(f"  {name}: {count}")
    print(f"hostile visits: {sum(tally.hostile.values())}")
    for name, count in sorted(tally.hostile.items()):
        print(f"  {name}: {count}")
    print(f"errors seen by well-behaved clients: {tally.errors}")
    for message in tally.messages:
        print(f"  {message}")
    peak = max(samples, key=lambda s: s.rss, default=baseline)
    peak_fds = max((s.fds for s in samples), default=baseline.fds)
    print("\n| | RSS (MiB) | open fds |\n|---|---:|---:|")
    print(f"| at start (before warm-up) | {first.rss / mib:.1f} | {first.fds} |")
    print(f"| baseline (after warm-up) | {baseline.rss / mib:.1f} | {baseline.fds} |")
    print(f"| during (peak of {len(samples)} samples) | {peak.rss / mib:.1f} | {peak_fds} |")
    if samples:
        print(f"| during (last sample) | {samples[-1].rss / mib:.1f} | {samples[-1].fds} |")
    print(f"| after | {after.rss / mib:.1f} | {after.fds} |")
    rss_ok = after.rss <= baseline.rss + args.rss_margin_mib * mib
    fds_ok = after.fds <= baseline.fds + args.fd_margin
    print(
        f"\nRSS back within {args.rss_margin_mib} MiB of the baseline: {'yes' if rss_ok else 'NO'}"
    )
    print(f"fds back within {args.fd_margin} of the baseline: {'yes' if fds_ok else 'NO'}")
    return tally.errors == 0 and rss_ok and fds_ok and served > 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--minutes", type=float, default=2.0, help="how long the mixed traffic runs"
    )
    parser.add_argument("--clients", type=int, default=8, help="well-behaved clients at once")
    parser.add_argument("--hostile", type=int, default=4, help="hostile clients at once")
    parser.add_argument(
        "--pause", type=float, default=0.005, help="seconds each client rests between exchanges"
    )
    parser.add_argument(
        "--sample-seconds", type=float, default=10.0, help="how often RSS and fds are sampled"
    )
    parser.add_argument(
        "--rss-margin-mib", type=float, default=16.0, help="allowed RSS growth after the run"
    )
    parser.add_argument(
        "--fd-margin", type=int, default=0, help="allowed extra open fds after the run"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--server-args",
        default="",
        metavar="FLAGS",
        help="flags added to the server's command line",
    )
    args = parser.parse_args()
    if args.minutes <= 0 or args.clients < 1 or args.hostile < 0 or args.pause < 0:
        parser.error("--minutes and --clients must be positive, --hostile and --pause at least 0")
    proc, port = start_server(shlex.split(args.server_args))
    started = time.monotonic()
    try:
        first = measure(proc.pid, started)
        trio.run(warm_up, port, args.clients, args.seed)
        baseline = settle(proc.pid, started, first)
        began = time.monotonic()
        tally, samples = trio.run(run_clients, args, port, proc.pid, started)
        seconds = time.monotonic() - began
        after = settle(proc.pid, started, baseline)
        alive = proc.poll() is None
    finally:
        stop_server(proc)
    ok = report(args, tally, first, baseline, samples, after, seconds) and alive
    if not alive:
        print("the server process died during the run")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
