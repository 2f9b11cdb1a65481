"""trio-asgi: a trio-native, structured-concurrency ASGI server."""

from ._config import Config, ConfigError

__version__ = "0.1.0"

__all__ = ["Config", "ConfigError", "__version__"]
