"""WebSocket: the opening handshake (sans I/O), the session the app talks to, the
bytes in and out, and message assembly. The session runs over any ``trio.abc.Stream``.
"""
