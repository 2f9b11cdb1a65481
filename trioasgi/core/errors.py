"""The exceptions the server raises to its callers and to applications.

They live at the bottom of the package so that every layer can raise them
without importing the layer that defines the thing that went wrong.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A setting has a value the server cannot use; the message is one sentence."""


class ClientDisconnected(OSError):
    """Raised by ``send()`` once the client has gone (ASGI HTTP spec 2.4)."""


class FileUnavailable(OSError):
    """A file an app asked the server to send cannot be opened or read to its end.

    Before the response head is written the client gets a 500; after it,
    the connection is closed mid-body.
    """
