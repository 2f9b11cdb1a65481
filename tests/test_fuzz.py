"""Fuzzing the connection: random bytes and mutated requests, on a virtual clock.

Every input must end in responses that parse, the last of which may be an
error, followed by a close: never an unhandled exception, never a hang, and
never a request parsed out of the bytes after a rejected one.

``make test`` runs a fixed, derandomized set of examples; for a longer,
random run: ``pytest tests/test_fuzz.py --fuzz-examples 20000``.
"""

from __future__ import annotations

import re

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import MemoryConnection, socket_stream_pair
from tests.fuzzing import deliveries as split_deliveries
from tests.fuzzing import fuzz_settings
from tests.malformed import MALFORMED_REQUESTS

VALID_REQUESTS = [
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /p?q=1 HTTP/1.1\r\nHost: x\r\nUser-Agent: fuzz\r\nAccept: */*\r\n\r\n",
    b"POST /form HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer: t\r\n\r\n",
    b"HEAD /h HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /old HTTP/1.0\r\n\r\n",
    b"PUT /c HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\nabc",
    b"GET /close HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
]
SEEDS = VALID_REQUESTS + [case[1] for case in MALFORMED_REQUESTS]

#: Statuses the server may send with this app: the app's, 100, and its own errors.
ALLOWED_STATUSES = {100, 200, 400, 408, 413, 431, 501, 505}
_STATUS_LINE = re.compile(rb"HTTP/1\.1 (\d{3}) [^\r\n]*\r\n")


def _mutate(data: bytes, draw) -> bytes:
    kind = draw(st.sampled_from(["dup-line", "digits", "hex", "insert", "delete", "byte"]))
    if not data:
        return draw(st.binary(max_size=16))
    if kind in ("dup-line", "digits", "hex"):
        parts = data.split(b"\r\n")
        i = draw(st.integers(0, len(parts) - 1))
        if kind == "dup-line":
            parts.insert(i, parts[i])
        elif kind == "digits":
            parts[i] = re.sub(rb"\d+", str(draw(st.integers(0, 10**6))).encode(), parts[i], count=1)
        else:
            parts[i] = draw(st.sampled_from([b"ffffffffffffffffff", b"-1", b"5 ", b"0x5", b"g"]))
        return b"\r\n".join(parts)
    pos = draw(st.integers(0, len(data)))
    if kind == "insert":
        return data[:pos] + draw(st.binary(min_size=1, max_size=8)) + data[pos:]
    if kind == "delete":
        return data[:pos] + data[pos + draw(st.integers(1, 16)) :]
    byte = draw(st.sampled_from([b"\x00", b"\r", b"\n", b" ", b":", b",", b"\xff", b"\t"]))
    return data[:pos] + byte + data[pos + 1 :]


@st.composite
def hostile_inputs(draw) -> bytes:
    if draw(st.integers(0, 4)) == 0:
        return draw(st.binary(max_size=600))
    data = b"".join(draw(st.lists(st.sampled_from(SEEDS), min_size=1, max_size=3)))
    for _ in range(draw(st.integers(0, 4))):
        data = _mutate(data, draw)
    return data


def deliveries() -> st.SearchStrategy[tuple[list[bytes], list[float], bool]]:
    return split_deliveries(hostile_inputs(), [0, 0, 0.5, 3, 6, 12])


class FuzzApp:
    """Reads every body, answers 200; remembers its calls."""

    def __init__(self) -> None:
        self.methods: list[str] = []

    async def __call__(self, scope, receive, send) -> None:
        self.methods.append(scope["method"])
        while True:
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body"):
                break
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-length", b"2")],
                }
            )
            await send({"type": "http.response.body", "body": b"ok"})
        except OSError:
            pass  # refused mid-body: the server answered for us


def parse_responses(data: bytes, methods: list[str]) -> list[int]:
    """The statuses of the responses in ``data``; asserts that it is exactly that."""
    statuses = []
    pos = 0
    app_responses = 0
    while pos < len(data):
        match = _STATUS_LINE.match(data, pos)
        assert match, f"not a response at {pos}: {data[pos : pos + 60]!r}"
        end = data.find(b"\r\n\r\n", pos)
        assert end != -1, "truncated response head"
        head = data[match.end() : end].lower()
        status = int(match.group(1))
        statuses.append(status)
        pos = end + 4
        if status < 200:
            continue
        length = re.search(rb"(?:^|\r\n)content-length: (\d+)", head)
        assert length, f"response without content-length: {head!r}"
        if status == 200:
            is_head = methods[app_responses] == "HEAD"
            app_responses += 1
            if is_head:
                continue
        pos += int(length.group(1))
    assert pos == len(data), "bytes after the last response"
    return statuses


async def _run_one(
    pieces: list[bytes], pauses: list[float], fin: bool, body_limit, over_socket: bool
) -> None:
    app = FuzzApp()
    # A real socket pair takes the plain-socket paths (reads without waiting,
    # direct writes, the parser lent while idle); memory streams the others.
    pair = socket_stream_pair if over_socket else trio.testing.memory_stream_pair
    async with trio.open_nursery() as nursery:
        # HTTP/1.1 only: an upgrade or the preface would hand the bytes to
        # the WebSocket or HTTP/2 code (each has its own fuzz target).
        conn = MemoryConnection(
            app, nursery, pair, limit_request_body=body_limit, ws="none", http2=False
        )

        data = await conn.exchange(nursery, pieces, pauses, fin)
        nursery.cancel_scope.cancel()

    statuses = parse_responses(data, app.methods)
    assert set(statuses) <= ALLOWED_STATUSES, statuses
    final = [s for s in statuses if s >= 200]
    errors = [i for i, s in enumerate(final) if s >= 400]
    assert errors in ([], [len(final) - 1]), f"a response after an error: {statuses}"
    ok = final.count(200)
    # The app is called once per 200, plus at most once for a last request
    # whose body was refused or cut short by the client; never for bytes
    # after a rejected request.
    assert ok <= len(app.methods) <= ok + 1, (statuses, app.methods)


def test_fuzz_connection(request: pytest.FixtureRequest) -> None:
    examples = request.config.getoption("--fuzz-examples")

    @fuzz_settings(examples, 300)
    @given(deliveries(), st.sampled_from([None, None, 4, 100]), st.booleans())
    def check(delivery, body_limit, over_socket) -> None:
        pieces, pauses, fin = delivery
        trio.run(
            _run_one,
            pieces,
            pauses,
            fin,
            body_limit,
            over_socket,
            clock=trio.testing.MockClock(autojump_threshold=0),
        )

    check()


@pytest.mark.parametrize("seed", VALID_REQUESTS)
def test_fuzz_oracle_accepts_the_valid_seeds(seed: bytes) -> None:
    """The seeds are valid: each gets a 200, so the fuzzer starts from the right place."""
    app = FuzzApp()

    async def main() -> bytes:
        async with trio.open_nursery() as nursery:
            conn = MemoryConnection(app, nursery, http2=False)
            await conn.send(seed)
            await conn.client.send_eof()
            data = await conn.read_all()
            nursery.cancel_scope.cancel()
        return data

    data = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert [s for s in parse_responses(data, app.methods) if s >= 200] == [200]
