"""Whether this trio-asgi serves HTTP/2: the HTTP/2 tests skip until it does.

HTTP/2 arrives with ``Config(http2=...)`` (and its ``--http2/--no-http2``
flag); before that, every HTTP/2 test would fail for that one reason.
"""

from __future__ import annotations

from dataclasses import fields

import pytest

import trioasgi

SERVES_HTTP2 = any(field.name == "http2" for field in fields(trioasgi.Config))

needs_http2 = pytest.mark.skipif(
    not SERVES_HTTP2, reason="this trio-asgi has no HTTP/2 yet (Config has no http2 field)"
)
