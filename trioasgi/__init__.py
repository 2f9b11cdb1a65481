"""trio-asgi: a trio-native, structured-concurrency ASGI server."""

from ._config import Config, ConfigError
from ._http_cycle import ClientDisconnected
from ._server import serve

__version__ = "0.1.0"

__all__ = ["ClientDisconnected", "Config", "ConfigError", "__version__", "serve"]
