"""Request-head checks stricter than the parser's, and the request limits: sans-I/O.

:func:`check_request` takes a parsed request head as plain values (method,
target, version, headers with lower-case names) and returns a
:class:`Rejection` (the status to answer with, after which the connection
closes) or the :class:`FieldFacts` of an accepted head, which answer the
connection's other questions about its header block. It does not depend
on the parser, so every HTTP/1.1 parser the server may run behind gets the
same rules; it repeats some checks h11 already makes (conflicting lengths,
unsupported transfer codings, Host) for exactly that reason.

Where RFC 9112 lets a server choose, these rules take the side that leaves
no room for request smuggling: a message with both Content-Length and
Transfer-Encoding is refused rather than "Transfer-Encoding wins".
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

_SUPPORTED_VERSIONS = (b"1.1", b"1.0")

#: Control characters other than horizontal tab are invalid in a field value
#: (RFC 9110, section 5.5); h11 refuses NUL, CR and LF but keeps the others.
_VALUE_CTL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]").search

#: The bytes of a token (RFC 9110, section 5.6.2): field names and methods.
#: ``bytes.translate`` deleting them leaves what is not a token, faster than a regex.
_TOKEN_BYTES = b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"

#: Request-target bytes allowed: visible ASCII except the fragment mark
#: (never part of a request target, RFC 9112 section 3.2) and the characters
#: every WHATWG-conforming client percent-encodes (``"<>``). ``{}|\\^``` ```
#: stay allowed: browsers send them unencoded in query strings.
_TARGET_BYTES = bytes(c for c in range(0x21, 0x7F) if c not in b'"#<>')

_DIGITS = re.compile(rb"[0-9]{1,18}").fullmatch

#: Methods known to be tokens: the usual ones skip the character scan, whose
#: deletion table ``bytes.translate`` builds anew on every call.
_TOKEN_METHODS = frozenset(
    (b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"PATCH", b"OPTIONS", b"CONNECT", b"TRACE")
)


class Rejection(NamedTuple):
    """Why a request is refused: the status to answer with, and a reason for the log."""

    status: int
    reason: str


@dataclass(frozen=True)
class RequestLimits:
    """The limits :func:`check_request` enforces (see ``docs/reliability.md``)."""

    max_head_size: int
    max_fields: int
    max_body: int | None = None


class FieldFacts:
    """What the checks and the connection need to know of a valid header block."""

    # Slots rather than a named tuple: the connection reads several of these
    # on every request, and slot reads are the ones Python speeds up.
    __slots__ = (
        "close",
        "expects_continue",
        "framed",
        "hosts",
        "proxied",
        "size",
        "upgrade",
        "usual",
    )

    def __init__(
        self,
        *,
        size: int,
        hosts: int,
        framed: bool,
        proxied: bool,
        upgrade: bool,
        close: bool,
        expects_continue: bool,
    ) -> None:
        self.size = size  # bytes the fields take in the head, as counted for the size limit
        self.hosts = hosts  # Host fields
        self.framed = framed  # whether a Content-Length or Transfer-Encoding field is present
        self.proxied = proxied  # whether a Forwarded or X-Forwarded-For/-Proto field is present
        self.upgrade = upgrade  # whether an Upgrade field is present
        self.close = close  # whether a Connection field lists "close"
        self.expects_continue = expects_continue  # whether an Expect field is "100-continue"
        #: One Host field and no framing field: nothing more to check in any request.
        self.usual = hosts == 1 and not framed


#: Header blocks that passed the character checks, and their facts. A keep-alive
#: client sends the same block again and again: looking it up costs a tenth of
#: checking it. Bounded like the writer's caches; a head with a field in error is
#: never stored, and anything the request line or the limits decide is checked
#: on every request.
_known_fields: dict[tuple[tuple[bytes, bytes], ...], FieldFacts] = {}
_KNOWN_FIELDS_MAX = 256
#: Only blocks of at most this many fields and bytes are remembered (at most
#: 1 MiB in all, whatever clients send).
_KNOWN_FIELDS_COUNT = 32
_KNOWN_FIELDS_SIZE = 4096


def check_request(
    method: bytes,
    target: bytes,
    http_version: bytes,
    headers: Iterable[tuple[bytes, bytes]],
    limits: RequestLimits,
) -> Rejection | FieldFacts:
    """The reason to refuse this request head, or the facts of its fields if the app may see it.

    ``headers`` are ``(name, value)`` pairs with lower-case names, as parsed
    (a list is used as it is; any other iterable is copied into one).
    """
    if http_version not in _SUPPORTED_VERSIONS:
        return Rejection(505, f"unsupported HTTP version {http_version!r}")
    pairs = headers if isinstance(headers, list) else list(headers)
    count = len(pairs)
    key = tuple(pairs) if count <= _KNOWN_FIELDS_COUNT else None
    try:
        facts = _known_fields.get(key)  # (None, for a block too long to remember, is never kept)
    except TypeError:  # a bytearray among them (not from our parsers): not remembered
        key = facts = None
    if facts is None:
        facts = _field_facts(pairs)
        if type(facts) is Rejection:
            return facts
        if key is not None and facts.size <= _KNOWN_FIELDS_SIZE:
            if len(_known_fields) >= _KNOWN_FIELDS_MAX:
                _known_fields.clear()
            _known_fields[key] = facts
    if len(method) + len(target) + 12 + facts.size > limits.max_head_size:
        # The parser may enforce its limit only on a head still incomplete in
        # its buffer; measuring here makes the limit independent of how the
        # bytes were split into reads.
        return Rejection(431, "request header block too large")
    if count > limits.max_fields:
        return Rejection(431, f"more than {limits.max_fields} header fields")
    if method not in _TOKEN_METHODS and (not method or method.translate(None, _TOKEN_BYTES)):
        return Rejection(400, "invalid method")
    if target[:1] != b"/" or target.translate(None, _TARGET_BYTES):
        bad_target = _check_target(method, target)
        if bad_target is not None:
            return bad_target
    if facts.usual:
        return facts
    hosts = facts.hosts
    if hosts > 1 or (hosts == 0 and http_version == b"1.1"):
        return Rejection(400, "a request needs exactly one Host header")
    if not facts.framed:
        return facts
    refused = _check_framing(
        [value for name, value in pairs if name == b"content-length"],
        [value for name, value in pairs if name == b"transfer-encoding"],
        limits.max_body,
    )
    return facts if refused is None else refused


def _field_facts(pairs: list[tuple[bytes, bytes]]) -> FieldFacts | Rejection:
    """The facts of a header block, or why its characters are refused."""
    # Whole-block operations rather than a loop per field: a few C-level
    # scans cost less than one Python iteration each.
    names: tuple[bytes, ...] = ()
    values: tuple[bytes, ...] = ()
    if pairs:
        names, values = zip(*pairs, strict=True)
    all_names = b"".join(names)
    all_values = b"\t".join(values)
    if _VALUE_CTL(all_values) is not None:
        return Rejection(400, "invalid character in a header value")
    if pairs and (all_names.translate(None, _TOKEN_BYTES) or not all(names)):
        return Rejection(400, "invalid character in a header name")
    close = expects_continue = False
    if b"connection" in names or b"expect" in names:
        for name, value in pairs:
            if name == b"connection":
                close = close or b"close" in {token.strip() for token in value.lower().split(b",")}
            elif name == b"expect":
                expects_continue = expects_continue or value.lower() == b"100-continue"
    return FieldFacts(
        size=len(all_names) + len(all_values) + 3 * len(pairs),
        hosts=names.count(b"host"),
        framed=b"content-length" in names or b"transfer-encoding" in names,
        proxied=b"x-forwarded-for" in names
        or b"x-forwarded-proto" in names
        or b"forwarded" in names,
        upgrade=b"upgrade" in names,
        close=close,
        expects_continue=expects_continue,
    )


def _check_target(method: bytes, target: bytes) -> Rejection | None:
    if target.translate(None, _TARGET_BYTES):
        return Rejection(400, "invalid character in the request target")
    if target.startswith(b"/") or target.startswith((b"http://", b"https://")):
        return None
    if target == b"*" and method == b"OPTIONS":
        return None
    # authority-form (CONNECT) and anything else: this is not a proxy.
    return Rejection(400, "unsupported request-target form")


def _check_framing(
    content_lengths: list[bytes], transfer_encodings: list[bytes], max_body: int | None
) -> Rejection | None:
    if transfer_encodings:
        if content_lengths:
            return Rejection(400, "both Content-Length and Transfer-Encoding")
        if len(transfer_encodings) > 1 or transfer_encodings[0].strip().lower() != b"chunked":
            return Rejection(501, "only Transfer-Encoding: chunked is supported")
        return None
    if not content_lengths:
        return None
    # "5, 5" or two identical headers are one length (RFC 9110, section 8.6).
    values = {part.strip() for value in content_lengths for part in value.split(b",")}
    if len(values) != 1:
        return Rejection(400, "conflicting Content-Length values")
    (length,) = values
    if _DIGITS(length) is None:
        return Rejection(400, "invalid Content-Length")
    if max_body is not None and int(length) > max_body:
        return Rejection(413, f"declared body larger than {max_body} bytes")
    return None
