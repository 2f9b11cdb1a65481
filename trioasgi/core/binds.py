"""Bind specs: the addresses ``--bind`` names, parsed and checked, nothing opened.

``HOST:PORT``, ``[IPv6]:PORT``, ``unix:/path`` or ``fd://N``, each one
:class:`BindSpec`. Opening them is ``serving.listeners``' job; parsing sits
down here so that the settings can be checked before anything listens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .errors import ConfigError


@dataclass(frozen=True)
class BindSpec:
    """One address to listen on, as parsed from ``--bind``."""

    kind: Literal["tcp", "unix", "fd"]
    host: str | None = None
    port: int = 0
    path: str = ""
    fd: int = -1

    def __str__(self) -> str:
        if self.kind == "unix":
            return f"unix:{self.path}"
        if self.kind == "fd":
            return f"fd://{self.fd}"
        host = self.host or ""
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"


def parse_bind(text: str) -> BindSpec:
    """``HOST:PORT``, ``[::1]:PORT``, ``unix:/path`` or ``fd://N``; :class:`ConfigError` if not."""
    if text.startswith("unix:"):
        path = text[len("unix:") :]
        if not path:
            raise ConfigError(f"bind address {text!r} has no socket path after 'unix:'")
        return BindSpec("unix", path=path)
    if text.startswith("fd://"):
        number = text[len("fd://") :]
        if not number.isdigit():
            raise ConfigError(f"bind address {text!r} needs a file descriptor number after fd://")
        return BindSpec("fd", fd=int(number))
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep or not host:
            raise ConfigError(f"bind address {text!r} must look like [::1]:8000")
    else:
        host, sep, port = text.rpartition(":")
        if not sep or ":" in host:
            raise ConfigError(
                f"bind address {text!r} must be HOST:PORT, [IPv6]:PORT, unix:PATH or fd://N"
            )
    if not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"bind address {text!r} has no valid port number")
    return BindSpec("tcp", host=host or None, port=int(port))
