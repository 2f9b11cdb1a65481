"""h11's request events without the generic costs: header lists, and heads already validated.

``h11.Request.headers`` is a ``Sequence`` whose iteration runs a Python
generator calling ``__getitem__`` per field; on the hot path a request's
headers are walked several times (the writer's keep-alive check, the
WebSocket check, the strict checks, the scope), so :func:`header_list`
makes the plain ``(name, value)`` list once from the three-tuples h11
stores. :func:`unchecked_request` builds the event for a head that the
strict checks will judge before anything else sees it, skipping h11's own
pass over it.
"""

from __future__ import annotations

import h11
from h11._headers import Headers


def header_list(request: h11.Request) -> list[tuple[bytes, bytes]]:
    """The request's headers as ``(lower-case name, value)`` pairs, in order."""
    return [(name, value) for _, name, value in request.headers._full_items]


def unchecked_request(
    method: bytes, target: bytes, http_version: bytes, fields: list[tuple[bytes, bytes, bytes]]
) -> h11.Request:
    """An ``h11.Request`` from ``(raw name, lower-case name, value)`` fields, not validated.

    The checks ``h11.Request`` would make (token names, field values,
    method, target, Host) are the caller's: the connection runs
    ``_strict.check_request``, a superset of them, on every request head
    before anything else sees it.
    """
    request = object.__new__(h11.Request)
    setattr_ = object.__setattr__
    setattr_(request, "method", method)
    setattr_(request, "target", target)
    setattr_(request, "http_version", http_version)
    setattr_(request, "headers", Headers(fields))
    return request
