"""What the machine gives the harness: which cores serve and which load, and enough fds."""

from __future__ import annotations

import contextlib
import os
import resource
import time

# The server under test always runs alone on this core.
SERVER_CORE = 0


def load_cores() -> list[int]:
    """Every core but the server's; on a one-core machine, that core too (and say so)."""
    cores = sorted(os.sched_getaffinity(0) | set(range(os.cpu_count() or 1)))
    others = [c for c in cores if c != SERVER_CORE]
    return others or [SERVER_CORE]


def cpu_list(cores: list[int]) -> str:
    """The form `taskset -c` takes."""
    return ",".join(str(c) for c in cores)


def pin_self_to_load_cores() -> None:
    """Keep the harness (and the in-process clients it runs) off the server's core."""
    # A restricted cpuset refuses: measure anyway, the report shows the cores.
    with contextlib.suppress(OSError):
        os.sched_setaffinity(0, load_cores())


def raise_nofile(wanted: int) -> int:
    """Raise RLIMIT_NOFILE towards `wanted` (children inherit it); return what we got.

    The memory scenario holds 5,000 sockets in the client and 5,000 in the
    server, plus the listening socket and whatever the runtime opens.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return soft
    if hard != resource.RLIM_INFINITY and hard < wanted:
        # Only root may raise the hard limit; try, and fall back to what is allowed.
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return wanted
        except (ValueError, OSError):
            wanted = hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return wanted


def busy_seconds(core: int | None = None) -> float:
    """CPU seconds processes spent running so far (user, system, steal): on `core`, or on all.

    From /proc/stat. Interrupt and softirq time is left out: it is the
    kernel's work for whatever the core's own process sends and receives
    (loopback TCP delivers in softirq), not another process's. 0.0 where
    there is no /proc/stat (the harness then cannot tell whether other
    processes competed, and says nothing).
    """
    name = "cpu" if core is None else f"cpu{core}"
    try:
        with open("/proc/stat") as stat:
            for line in stat:
                fields = line.split()
                if fields and fields[0] == name:
                    # user nice system idle iowait irq softirq steal (guest is in user)
                    ticks = [int(n) for n in fields[1:9]] + [0] * 8
                    busy = ticks[0] + ticks[1] + ticks[2] + ticks[7]
                    return busy / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        pass
    return 0.0


def others_busy_share(seconds: float = 1.0) -> float:
    """Over `seconds` of the harness sleeping, how busy the machine's cores were (0..cores)."""
    before = busy_seconds()
    time.sleep(seconds)
    return (busy_seconds() - before) / seconds
