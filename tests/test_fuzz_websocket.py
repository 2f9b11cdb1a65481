"""Fuzzing the WebSocket session: random and mutated client frames after a valid handshake.

Whatever the client sends, the server's side of the wire must be a 101
followed by well-formed, unmasked server frames, the last of them a close
frame with a code the server documents; the session must end (the mock
clock runs far past every timeout) and never raise.

``make test`` runs a fixed, derandomized set; a longer random run:
``pytest tests/test_fuzz_websocket.py --fuzz-examples 5000``.
"""

from __future__ import annotations

import struct

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import MemoryConnection
from tests.fuzzing import deliveries, fuzz_settings
from tests.test_websocket_frames import BINARY, CLOSE, PING, PONG, TEXT, UPGRADE, frame
from tests.ws_apps import echo_app

CONTINUATION = 0x0
#: What the server may close with here: normal, protocol error, bad UTF-8,
#: too big, ping timeout (1011), and 1000 echoed from the client's own close.
SERVER_CLOSE_CODES = {1000, 1002, 1007, 1009, 1011}
#: A client close frame echoed back carries the client's code: any valid one.
_VALID_PEER_CODES = set(range(1000, 1012)) - {1004, 1005, 1006} | set(range(3000, 5000))

SEEDS = [
    frame(TEXT, b"hello"),
    frame(BINARY, bytes(range(200))),
    frame(TEXT, b"frag", fin=False) + frame(CONTINUATION, b"mented"),
    frame(PING, b"ping?"),
    frame(TEXT, "héllo wörld".encode()),
    frame(BINARY, bytes(70_000)),
    frame(CLOSE, struct.pack("!H", 1000) + b"bye"),
    frame(TEXT, b"\xff\xfe"),  # invalid UTF-8
    frame(TEXT, b"unmasked", mask=False),
    frame(0x3, b"reserved opcode"),
    frame(PING, b"x" * 126),  # control frame too long
]


@st.composite
def mutated_seeds(draw: st.DrawFn) -> bytes:
    """Seeds joined and mutated."""
    data = bytearray(b"".join(draw(st.lists(st.sampled_from(SEEDS), min_size=1, max_size=5))))
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "random"]))
        at = draw(st.integers(0, len(data)))
        if kind == "flip" and at < len(data):
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 8))]
        elif kind == "random":
            data += draw(st.binary(max_size=64))
    return bytes(data)


def client_bytes() -> st.SearchStrategy[tuple[list[bytes], list[float], bool]]:
    """Mutated seeds, cut into pieces delivered with virtual pauses."""
    return deliveries(mutated_seeds(), [0, 0, 1, 30], max_cuts=4)


def server_frames(data: bytes) -> list[tuple[int, bytes]]:
    """The server's frames, asserting each is well formed: unmasked, valid opcode, sane size."""
    frames = []
    pos = 0
    while pos < len(data):
        assert pos + 2 <= len(data), "truncated frame head"
        first, second = data[pos], data[pos + 1]
        opcode = first & 0x0F
        assert first & 0x70 == 0, "RSV bits set without an extension"
        assert opcode in (CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG), opcode
        assert second & 0x80 == 0, "a server frame must not be masked"
        length, pos = second & 0x7F, pos + 2
        if length == 126:
            (length,), pos = struct.unpack("!H", data[pos : pos + 2]), pos + 2
        elif length == 127:
            (length,), pos = struct.unpack("!Q", data[pos : pos + 8]), pos + 8
        if opcode >= CLOSE:
            assert length <= 125 and first & 0x80, "control frames are short and unfragmented"
        assert pos + length <= len(data), "truncated frame payload"
        frames.append((opcode, data[pos : pos + length]))
        pos += length
    return frames


async def _run_one(pieces: list[bytes], pauses: list[float], fin: bool) -> None:
    async with trio.open_nursery() as nursery:
        conn = MemoryConnection(echo_app(), nursery, ws_per_message_deflate=False)
        await conn.send(UPGRADE)

        data = await conn.exchange(nursery, pieces, pauses, fin)
        nursery.cancel_scope.cancel()

    head, sep, rest = data.partition(b"\r\n\r\n")
    assert sep and head.startswith(b"HTTP/1.1 101 "), data[:80]
    frames = server_frames(rest)
    closes = [payload for opcode, payload in frames if opcode == CLOSE]
    if not fin and not closes:
        return  # the client went silent with the connection open: it was dropped after timeouts
    if closes:
        assert frames[-1][0] == CLOSE, "nothing may follow the server's close frame"
        payload = closes[0]
        if payload:
            (code,) = struct.unpack("!H", payload[:2])
            assert code in SERVER_CLOSE_CODES | _VALID_PEER_CODES, code


def test_fuzz_websocket_session(request: pytest.FixtureRequest) -> None:
    examples = request.config.getoption("--fuzz-examples")

    @fuzz_settings(examples, 200)
    @given(client_bytes())
    def check(delivery) -> None:
        pieces, pauses, fin = delivery
        trio.run(_run_one, pieces, pauses, fin, clock=trio.testing.MockClock(autojump_threshold=0))

    check()


@pytest.mark.parametrize("seed", SEEDS)
def test_every_seed_ends_cleanly(seed: bytes) -> None:
    trio.run(_run_one, [seed], [0], True, clock=trio.testing.MockClock(autojump_threshold=0))
