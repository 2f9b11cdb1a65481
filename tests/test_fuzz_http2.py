"""Fuzzing the HTTP/2 connection: valid client byte streams, mutated and split, on a mock clock.

Each input starts as what a real client sends (the preface, SETTINGS, a few
requests with bodies, PING, WINDOW_UPDATE, RST_STREAM, GOAWAY), made by h2
in client mode; it is then mutated (frames dropped, repeated, swapped, their
type, flags, length or stream id changed, bytes inserted, deleted or
replaced) and delivered in pieces with (virtual) pauses. Whatever the input,
the server must write only well-formed frames, hold its buffers within
their bounds, log no failure (an exception that escaped a stream or the
connection), and end: by itself, or at once when the client goes.

``make test`` runs a fixed, derandomized set of examples; for a longer,
random run: ``pytest tests/test_fuzz_http2.py --fuzz-examples 60000``.
"""

from __future__ import annotations

import logging

import h2.config
import h2.connection
import h2.settings
import hpack
import pytest
import trio
import trio.testing
from h2.errors import ErrorCodes
from hyperframe.frame import DataFrame, Frame, HeadersFrame
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import socket_stream_pair
from tests.fuzzing import deliveries as split_deliveries
from tests.fuzzing import fuzz_settings
from tests.h2client import H2Server
from trioasgi.core.socket_io import RECEIVE_SIZE
from trioasgi.http2.connection import CLOSE_WRITE_SECONDS

#: The server's limits in the fuzzed connections (small, so that they are reached).
MAX_STREAMS = 4
CAP = 16 * 1024
WINDOW = 65_535


def _client(local: dict[int, int] | None = None) -> h2.connection.H2Connection:
    conn = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding=None)
    )
    if local:
        conn.local_settings = h2.settings.Settings(client=True, initial_values=local)
    conn.initiate_connection()
    return conn


def _head(path: bytes, method: bytes = b"GET", extra=()) -> list:
    return [
        (b":method", method),
        (b":path", path),
        (b":scheme", b"http"),
        (b":authority", b"example.com"),
        *extra,
    ]


def _seeds() -> list[bytes]:
    """What well-behaved clients send: each is a valid HTTP/2 client byte stream."""
    seeds = []

    conn = _client()
    conn.send_headers(1, _head(b"/"), end_stream=True)
    conn.send_headers(3, _head(b"/p", b"POST", [(b"content-length", b"10")]))
    conn.send_data(3, b"hello")
    conn.send_data(3, b"world", end_stream=True)
    conn.send_headers(5, _head(b"/c", extra=[(b"cookie", b"a=1"), (b"cookie", b"b=2")]))
    conn.end_stream(5)
    seeds.append(conn.data_to_send())

    conn = _client({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 10})
    conn.send_headers(1, _head(b"/up", b"PUT"))
    for _ in range(3):
        conn.send_data(1, b"x" * 5000)
    conn.end_stream(1)
    conn.ping(b"12345678")
    conn.increment_flow_control_window(1000)
    conn.increment_flow_control_window(1000, stream_id=1)
    seeds.append(conn.data_to_send())

    conn = _client()
    conn.send_headers(1, _head(b"/r", b"POST"))
    conn.send_data(1, b"abc")
    conn.reset_stream(1, ErrorCodes.CANCEL)
    conn.send_headers(3, _head(b"/after"), end_stream=True)
    conn.prioritize(3, weight=200)
    conn.update_settings({h2.settings.SettingCodes.MAX_FRAME_SIZE: 20000})
    seeds.append(conn.data_to_send())

    conn = _client()
    for stream_id in range(1, 13, 2):  # more than MAX_STREAMS
        conn.send_headers(stream_id, _head(b"/many"), end_stream=True)
    seeds.append(conn.data_to_send())

    conn = _client()
    conn.send_headers(1, _head(b"/t", b"POST", [(b"te", b"trailers")]))
    conn.send_data(1, b"body")
    conn.send_headers(1, [(b"x-checksum", b"abc")], end_stream=True)
    seeds.append(conn.data_to_send())

    # A WebSocket (RFC 8441): an extended CONNECT, a masked text frame, a close frame.
    encoder = hpack.Encoder()
    block = encoder.encode(
        [
            (b":method", b"CONNECT"),
            (b":protocol", b"websocket"),
            (b":scheme", b"http"),
            (b":path", b"/ws"),
            (b":authority", b"example.com"),
            (b"sec-websocket-version", b"13"),
        ]
    )
    mask = b"\x01\x02\x03\x04"
    text = bytes(b ^ mask[i % 4] for i, b in enumerate(b"hi"))
    close = bytes(b ^ mask[i % 4] for i, b in enumerate(b"\x03\xe8"))
    seeds.append(
        _client().data_to_send()
        + HeadersFrame(1, block, flags=["END_HEADERS"]).serialize()
        + DataFrame(1, b"\x81\x82" + mask + text).serialize()
        + DataFrame(1, b"\x88\x82" + mask + close).serialize()
    )

    # The client's GOAWAY ends the connection (docs/http2.md): the last seed, not answered.
    conn = _client()
    conn.send_headers(1, _head(b"/bye"), end_stream=True)
    conn.close_connection()
    seeds.append(conn.data_to_send())
    return seeds


SEEDS = _seeds()
PREFACE_LENGTH = 24


def _frames(data: bytes) -> list[bytes]:
    """``data`` (a seed, the preface first) cut into the preface and its frames."""
    pieces = [data[:PREFACE_LENGTH]]
    pos = PREFACE_LENGTH
    while pos < len(data):
        length = int.from_bytes(data[pos : pos + 3], "big")
        pieces.append(data[pos : pos + 9 + length])
        pos += 9 + length
    return pieces


def _mutate_frame(frame: bytes, draw) -> bytes:
    if len(frame) < 9:
        return frame
    kind = draw(st.sampled_from(["type", "flags", "length", "stream", "truncate"]))
    header = bytearray(frame[:9])
    if kind == "type":
        header[3] = draw(st.integers(0, 12))
    elif kind == "flags":
        header[4] = draw(st.integers(0, 255))
    elif kind == "length":
        header[0:3] = draw(st.integers(0, 70_000)).to_bytes(3, "big")
    elif kind == "stream":
        stream_id = draw(st.sampled_from([0, 1, 2, 3, 7, 2**31 - 1, 2**32 - 1]))
        header[5:9] = stream_id.to_bytes(4, "big")
    else:
        return frame[: draw(st.integers(0, len(frame)))]
    return bytes(header) + frame[9:]


@st.composite
def client_streams(draw) -> bytes:
    frames = _frames(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["drop", "dup", "swap", "frame", "insert", "delete", "byte"]))
        i = draw(st.integers(1, len(frames) - 1))
        if kind == "drop":
            del frames[i]
        elif kind == "dup":
            frames.insert(i, frames[i] * draw(st.integers(1, 3)))
        elif kind == "swap":
            j = draw(st.integers(1, len(frames) - 1))
            frames[i], frames[j] = frames[j], frames[i]
        elif kind == "frame":
            frames[i] = _mutate_frame(frames[i], draw)
        else:
            data = frames[i]
            pos = draw(st.integers(0, len(data)))
            if kind == "insert":
                frames[i] = data[:pos] + draw(st.binary(min_size=1, max_size=12)) + data[pos:]
            elif kind == "delete":
                frames[i] = data[:pos] + data[pos + draw(st.integers(1, 16)) :]
            else:
                frames[i] = data[:pos] + bytes([draw(st.integers(0, 255))]) + data[pos + 1 :]
        if len(frames) < 2:
            break
    return b"".join(frames)


def deliveries() -> st.SearchStrategy[tuple[list[bytes], list[float], bool]]:
    return split_deliveries(client_streams(), [0, 0, 0, 0.5, 3, 6, 12])


async def fuzz_app(scope, receive, send) -> None:
    """Reads the whole body, answers 200 with a small body; a WebSocket is accepted and
    echoed."""
    if scope["type"] == "websocket":
        await websocket_echo(receive, send)
        return
    if scope["type"] != "http":
        return
    for _ in range(10_000):
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body"):
            break
    try:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
    except OSError:
        pass  # the stream was reset, or refused mid-body: the server answered for us


async def websocket_echo(receive, send) -> None:
    try:
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        await send({"type": "websocket.accept"})
        for _ in range(100):
            message = await receive()
            if message["type"] != "websocket.receive":
                return
            await send({"type": "websocket.send", "text": message.get("text") or "bytes"})
    except OSError:
        pass  # the client went away: the session has closed


class Failures(logging.Handler):
    """The server's reports of an exception that escaped a stream or the connection ("HTTP/2
    connection ... failed", "HTTP/2 stream ... failed", or any record with a traceback)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "failed" in record.getMessage() or record.exc_info is not None:
            self.records.append(record)


def check_frames(data: bytes) -> None:
    """What the server wrote: its SETTINGS first, then whole, well-formed frames whose header
    blocks decode."""
    decoder = hpack.Decoder()
    # The (mutated) client may have allowed the server any table size.
    decoder.max_allowed_table_size = 2**32
    pos = 0
    first = True
    while pos < len(data):
        assert len(data) - pos >= 9, "a truncated frame header"
        frame, length = Frame.parse_frame_header(memoryview(data[pos : pos + 9]))
        assert len(data) - pos - 9 >= length, "a truncated frame"
        frame.parse_body(memoryview(data[pos + 9 : pos + 9 + length]))
        if first:
            assert frame.type == 0x4 and "ACK" not in frame.flags, "SETTINGS must come first"
            first = False
        if isinstance(frame, HeadersFrame):
            decoder.decode(frame.data, raw=True)
        pos += 9 + length


async def _run_one(
    pieces: list[bytes], pauses: list[float], fin: bool, body_limit, over_socket: bool
) -> None:
    # A real socket pair takes the plain-socket paths (read_socket, write_socket);
    # memory streams the others.
    pair = socket_stream_pair if over_socket else trio.testing.memory_stream_pair
    async with trio.open_nursery() as nursery:
        server = H2Server(
            fuzz_app,
            nursery,
            pair=pair,
            h2_max_concurrent_streams=MAX_STREAMS,
            h2_max_connection_buffer=CAP,
            h2_initial_window_size=WINDOW,
            h2_connection_window_size=WINDOW,
            limit_request_body=body_limit,
        )
        client = server.client_stream
        received = bytearray()

        def check_bounds() -> None:
            conn = server.conn
            assert conn is not None
            assert server.buffered() <= CAP + RECEIVE_SIZE + 16_384 + 9
            assert len(conn.streams) <= MAX_STREAMS
            held = sum(s.unacknowledged for s in conn.streams.values())
            assert held <= WINDOW

        async def deliver() -> None:
            try:
                for piece, pause in zip(pieces, pauses, strict=True):
                    await trio.sleep(pause)
                    await client.send_all(piece)
                    await trio.testing.wait_all_tasks_blocked()
                    check_bounds()
                if fin:
                    await client.send_eof()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass

        nursery.start_soon(deliver)
        # Far past every pause and timeout: only a hang, or a stream stalled by the
        # client's own windows, is still open then.
        with trio.move_on_after(10_000):
            for _ in range(100_000):
                try:
                    chunk = await client.receive_some(65536)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    break
                if not chunk:
                    break
                received += chunk
        check_bounds()
        # The client goes: whatever the state, the connection ends promptly.
        await trio.aclose_forcefully(client)
        with trio.fail_after(CLOSE_WRITE_SECONDS + 1):
            await server.finished.wait()
        nursery.cancel_scope.cancel()
    check_frames(bytes(received))


def test_fuzz_http2_connection(request: pytest.FixtureRequest) -> None:
    """Mutated client byte streams: valid frames out, bounded buffers, no failure, an end."""
    examples = request.config.getoption("--fuzz-examples")
    failures = Failures()
    server_logger = logging.getLogger("trioasgi")
    server_logger.addHandler(failures)

    @fuzz_settings(examples, 150)
    @given(deliveries(), st.sampled_from([None, None, 4, 100]), st.booleans())
    def check(delivery, body_limit, over_socket) -> None:
        pieces, pauses, fin = delivery
        failures.records.clear()
        trio.run(
            _run_one,
            pieces,
            pauses,
            fin,
            body_limit,
            over_socket,
            clock=trio.testing.MockClock(autojump_threshold=0),
        )
        assert not failures.records, [r.getMessage() for r in failures.records]

    try:
        check()
    finally:
        server_logger.removeHandler(failures)


@pytest.mark.parametrize("seed", range(len(SEEDS)))
def test_fuzz_seeds_are_served(seed: int) -> None:
    """The seeds are valid: the server answers their requests (the WebSocket's close with
    its own; the last seed ends with the client's GOAWAY, unanswered), so the fuzzer starts
    there."""

    async def main() -> bytes:
        async with trio.open_nursery() as nursery:
            server = H2Server(fuzz_app, nursery)
            await server.client_stream.send_all(SEEDS[seed])
            data = b""
            with trio.move_on_after(1):
                for _ in range(1000):
                    data += await server.client_stream.receive_some(65536)
            nursery.cancel_scope.cancel()
        return data

    data = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    check_frames(data)
    # The WebSocket is accepted and its close answered (its text and close may come in one
    # read: a message after a close would not be sent).
    answered = b"\x88\x02\x03\xe8" in data if seed == len(SEEDS) - 2 else b"ok" in data
    assert answered is (seed != len(SEEDS) - 1)
