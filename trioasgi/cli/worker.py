"""The worker process's entry point: ``python -m trioasgi.cli.worker SPEC``.

Started by the supervisor (``--workers``) or the reloader (``--reload``)
with the listening sockets as inherited file descriptors; see ``_process``.
"""

from __future__ import annotations

import json
import signal
import socket
import sys

from ..core.errors import ConfigError
from ..core.logs import configure_logging
from .process import config_from_spec
from .runner import EXIT_STARTUP_ERROR, fail, load_app, run_server


def main(argv: list[str]) -> int:
    spec = json.loads(argv[0])
    # A terminal's CTRL+C reaches the whole process group; the parent turns
    # it into one stop request for each worker, so a SIGINT here would count
    # twice and force the exit.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A hangup of the terminal is the supervisor's (a rolling restart).
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    parent = socket.socket(fileno=spec["channel"])
    try:
        config = config_from_spec(spec["config"])
        configure_logging(config)
    except ConfigError as exc:
        return fail(EXIT_STARTUP_ERROR, f"{exc}.")
    app = load_app(spec["app"], config)
    if app is None:
        return EXIT_STARTUP_ERROR
    return run_server(app, config, parent=parent, signals=(signal.SIGTERM,))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
