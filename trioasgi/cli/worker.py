"""The worker process's entry point: ``python -m trioasgi.cli.worker FD``.

Started by the supervisor (``--workers``) or the reloader (``--reload``)
with the listening sockets as inherited file descriptors and ``FD``, its end
of the socketpair to its parent, which carries its settings first; see
``cli.process``.
"""

from __future__ import annotations

import signal
import socket
import sys

from ..core.errors import ConfigError
from ..core.logs import configure_logging
from .process import EXIT_WORKER_BOOT_ERROR, config_from_spec, read_spec
from .runner import fail, load_app, run_server


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not argv[0].isdigit():
        return fail(
            EXIT_WORKER_BOOT_ERROR, "usage: python -m trioasgi.cli.worker FD (for the supervisor)."
        )
    # A terminal's CTRL+C reaches the whole process group; the parent turns
    # it into one stop request for each worker, so a SIGINT here would count
    # twice and force the exit.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A hangup of the terminal is the supervisor's (a rolling restart).
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        parent = socket.socket(fileno=int(argv[0]))
        spec = read_spec(parent)
    except (OSError, ValueError) as exc:
        return fail(EXIT_WORKER_BOOT_ERROR, f"no settings from the supervisor: {exc}.")
    try:
        config = config_from_spec(spec["config"])
        configure_logging(config)
    except ConfigError as exc:
        return fail(EXIT_WORKER_BOOT_ERROR, f"{exc}.")
    app = load_app(spec["app"], config)
    if app is None:
        # Its own status: the supervisor stops for it, not for a crash.
        return EXIT_WORKER_BOOT_ERROR
    return run_server(app, config, parent=parent, signals=(signal.SIGTERM,))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
