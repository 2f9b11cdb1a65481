"""trio-asgi: a trio-native, structured-concurrency ASGI server.

The public API is what this module exports: :func:`run`, :func:`serve`,
:class:`Config`, :class:`ConfigError` and :class:`ClientDisconnected`. Every subpackage
(``core``, ``asgi``, ``http11``, ``websocket``, ``serving``, ``cli``) is
private: its modules may change from one release to the next.
"""

from .cli.script import run
from .core.config import Config
from .core.errors import ClientDisconnected, ConfigError
from .core.version import __version__
from .serving.server import serve

__all__ = ["ClientDisconnected", "Config", "ConfigError", "__version__", "run", "serve"]
