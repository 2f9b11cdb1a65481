"""The published HTTP/2 denial-of-service patterns (docs/http2.md, "Attacks").

Each test runs an abusive connection and, beside it on the same server
context and nursery, a normal client. It asserts that the abusive connection
is ended (GOAWAY with ENHANCE_YOUR_CALM, or the error RFC 9113 names) or
held back, that the normal client is still served at once (no virtual time
passes), and that what the server holds for the abusive connection stays
within its bounds: the writer's buffer under its cap plus one read's answers,
the streams under the concurrency limit, the request bytes under the window.
Everything runs over memory streams on a mock clock, and every loop is
bounded by a count.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import h2.settings
import trio
import trio.testing
from h2.errors import ErrorCodes
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from tests import apps
from tests.conftest import running_server
from tests.h2client import H2Client, H2Server, RawClient, get
from trioasgi.core.socket_io import RECEIVE_SIZE
from trioasgi.http2.connection import CLOSE_WRITE_SECONDS
from trioasgi.http2.flood import Flood, FloodMeter
from trioasgi.http2.machine import HEADER_BLOCK_FACTOR

#: The writer's cap in these tests (the smallest the config allows).
CAP = 16 * 1024
#: What may sit past the cap: the answers to one read (the reader checks the cap
#: between reads), and one DATA frame from each stream that found room before it filled.
SLACK = RECEIVE_SIZE + 16 * 1024 + 9


def never_reading_pair() -> tuple[trio.StapledStream, trio.StapledStream]:
    """A client whose sends always go through but which never reads: the server's writes
    block as they would against a full TCP window."""
    to_server_send, to_server_receive = trio.testing.memory_stream_one_way_pair()
    to_client_send, to_client_receive = trio.testing.lockstep_stream_one_way_pair()
    client = trio.StapledStream(to_server_send, to_client_receive)
    server = trio.StapledStream(to_client_send, to_server_receive)
    return client, server


def serving(app: Callable[..., Any]) -> Callable[..., Any]:
    """``app``, except that the normal client's ``/normal`` gets ``hello``."""

    async def either(scope, receive, send):
        if scope["path"] == "/normal":
            await apps.hello(scope, receive, send)
        else:
            await app(scope, receive, send)

    return either


async def normal_client_is_served(nursery: trio.Nursery, attacked: H2Server) -> None:
    """A second connection to the same server context gets its answer with no time passing."""
    server = H2Server(apps.hello, nursery, ctx=attacked.ctx)
    client = H2Client(server.client_stream)
    began = trio.current_time()
    await client.start()
    assert await get(client, "/normal") == (200, b"hello")
    assert trio.current_time() == began
    await client.aclose()


async def ended_with(server: H2Server, client: RawClient, *codes: ErrorCodes) -> None:
    """The server sends GOAWAY with one of ``codes`` and closes the connection."""
    with trio.fail_after(5):
        await client.read_to_close()
        await server.finished.wait()
    assert client.goaways, "no GOAWAY"
    assert client.goaways[-1].error_code in codes, client.goaways[-1]


def bounded(server: H2Server) -> None:
    assert server.buffered() <= CAP + SLACK, server.buffered()


async def test_rapid_reset(autojump_clock) -> None:
    """Streams opened and reset at once never start an app; past the reset budget the
    connection gets GOAWAY ENHANCE_YOUR_CALM."""
    calls: list[str] = []

    async def app(scope, receive, send):
        calls.append(scope["path"])
        await apps.hello(scope, receive, send)

    async with trio.open_nursery() as nursery:
        server = H2Server(serving(app), nursery, h2_max_connection_buffer=CAP)
        client = RawClient(server.client_stream)
        await client.start()
        for _ in range(30):  # 30 batches of 10: 300 streams
            frames: list[Any] = []
            for _ in range(10):
                stream_id, head = client.request("/reset")
                frames += [head, RstStreamFrame(stream_id, error_code=ErrorCodes.CANCEL)]
            await client.send(*frames)
            if client.closed:
                break
            await trio.testing.wait_all_tasks_blocked()
            assert server.conn is not None
            assert len(server.conn.streams) <= 10
            bounded(server)
        await ended_with(server, client, ErrorCodes.ENHANCE_YOUR_CALM)
        assert calls == []
        await normal_client_is_served(nursery, server)


async def test_rapid_reset_across_reads(autojump_clock) -> None:
    """Each stream reset in a read of its own (its app has started): the budget still ends
    the connection, and the streams never exceed the concurrency limit."""

    async def app(scope, receive, send):
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        server = H2Server(serving(app), nursery, h2_max_concurrent_streams=10)
        client = RawClient(server.client_stream)
        await client.start()
        for _ in range(400):
            stream_id, head = client.request("/slow")
            await client.send(head)
            await trio.testing.wait_all_tasks_blocked()
            await client.send(RstStreamFrame(stream_id, error_code=ErrorCodes.CANCEL))
            await trio.testing.wait_all_tasks_blocked()
            if server.finished.is_set():
                break
            assert server.conn is not None and len(server.conn.streams) <= 10
        await ended_with(server, client, ErrorCodes.ENHANCE_YOUR_CALM)
        await normal_client_is_served(nursery, server)


async def test_continuation_flood(autojump_clock) -> None:
    """A header block that never ends: GOAWAY ENHANCE_YOUR_CALM once the block held is past
    four times the header list limit (h2 alone would hold 64 frames of it)."""
    async with trio.open_nursery() as nursery:
        server = H2Server(serving(apps.hello), nursery, h2_max_header_list_size=4096)
        client = RawClient(server.client_stream)
        await client.start()
        _, head = client.request()
        head.flags.discard("END_HEADERS")
        head.flags.discard("END_STREAM")
        await client.send(head)
        filler = client.encoder.encode([(b"x-filler", b"f" * 1000)])
        for _ in range(1000):
            await client.send(ContinuationFrame(1, filler))
            if client.closed or server.finished.is_set():
                break
            await trio.testing.wait_all_tasks_blocked()
            assert server.conn is not None
            held = server.conn.h2.incoming_buffer._headers_buffer
            assert sum(len(f.data) for f in held) <= HEADER_BLOCK_FACTOR * 4096
        await ended_with(server, client, ErrorCodes.ENHANCE_YOUR_CALM, ErrorCodes.PROTOCOL_ERROR)
        await normal_client_is_served(nursery, server)


async def test_hpack_bomb(autojump_clock) -> None:
    """A small block that decodes past the header list limit (one large field in the
    dynamic table, then referenced again and again): GOAWAY ENHANCE_YOUR_CALM."""
    async with trio.open_nursery() as nursery:
        server = H2Server(serving(apps.hello), nursery, h2_max_header_list_size=16384)
        client = RawClient(server.client_stream)
        await client.start()
        await client.until(lambda: bool(client.frames))  # SETTINGS in: the limit applies
        # A 4000-byte field, indexed (it enters the dynamic table at index 62) ...
        first = client.block(extra=[(b"x-big", b"b" * 4000)])
        stream_id, head = client.request()
        head.data = first
        await client.send(head)
        await client.response(stream_id)
        # ... then referenced 1000 times in a block of 1000 bytes: 4 MB once decoded.
        bomb = client.block() + b"\xbe" * 1000  # 0x80 | 62
        _, head = client.request()
        head.data = bomb
        await client.send(head)
        await ended_with(server, client, ErrorCodes.ENHANCE_YOUR_CALM)
        await normal_client_is_served(nursery, server)


async def _flood_without_reading(frame_for: Callable[[RawClient, int], Any], count: int) -> None:
    """Send ``count`` frames from a client that never reads; the connection must end and its
    writer's buffer stay under the cap meanwhile."""
    async with trio.open_nursery() as nursery:
        server = H2Server(
            serving(apps.hello), nursery, pair=never_reading_pair, h2_max_connection_buffer=CAP
        )
        client = RawClient(server.client_stream)
        await client.start()
        for i in range(0, count, 50):
            await client.send(*[frame_for(client, j) for j in range(i, i + 50)])
            await trio.testing.wait_all_tasks_blocked()
            if server.finished.is_set():
                break
            bounded(server)
        assert server.conn is not None and server.conn._closing
        await normal_client_is_served(nursery, server)
        # The abusive client still does not read: the connection ends all the same.
        with trio.fail_after(CLOSE_WRITE_SECONDS + 1):
            await server.finished.wait()


async def test_ping_flood_never_reading(autojump_clock) -> None:
    """PINGs whose answers are never read: the answers stay under the writer's cap, the
    connection is ended (ENHANCE_YOUR_CALM) past the ping budget, and its task ends within
    CLOSE_WRITE_SECONDS although its last frames are never read."""
    await _flood_without_reading(
        lambda client, i: PingFrame(0, opaque_data=i.to_bytes(8, "big")), 2000
    )


async def test_settings_flood_never_reading(autojump_clock) -> None:
    """SETTINGS frames whose ACKs are never read: bounded, and the connection ends."""
    setting = {h2.settings.SettingCodes.HEADER_TABLE_SIZE: 4096}
    await _flood_without_reading(lambda client, i: SettingsFrame(0, settings=setting), 2000)


async def test_reset_flood_never_reading(autojump_clock) -> None:
    """Malformed requests, each answered with RST_STREAM, the answers never read: the
    writer's buffer stays under its cap and the connection ends past the reset budget."""
    await _flood_without_reading(lambda client, i: client.request("no-slash")[1], 2000)


async def test_empty_data_flood(autojump_clock) -> None:
    """Empty DATA frames that do not end their stream: GOAWAY ENHANCE_YOUR_CALM."""
    async with trio.open_nursery() as nursery:
        server = H2Server(serving(apps.echo), nursery)
        client = RawClient(server.client_stream)
        await client.start()
        stream_id, head = client.request("/", method="POST", end=False)
        await client.send(head)
        for _ in range(20):
            await client.send(*[DataFrame(stream_id, b"") for _ in range(50)])
            if client.closed or server.finished.is_set():
                break
            await trio.testing.wait_all_tasks_blocked()
        await ended_with(server, client, ErrorCodes.ENHANCE_YOUR_CALM)
        await normal_client_is_served(nursery, server)


async def test_zero_length_header_name(autojump_clock) -> None:
    """A header with an empty name is a malformed request: its stream is refused with
    RST_STREAM PROTOCOL_ERROR and the app never runs; each refusal is spent from the reset
    budget, so the 201st gets GOAWAY ENHANCE_YOUR_CALM; a normal client is served."""
    calls: list[str] = []

    async def app(scope, receive, send):
        calls.append(scope["path"])
        await apps.hello(scope, receive, send)

    async with trio.open_nursery() as nursery:
        server = H2Server(serving(app), nursery)
        client = RawClient(server.client_stream)
        await client.start()
        refused = 0
        for _ in range(300):
            stream_id, head = client.request("/bad", extra=[(b"", b"value")])
            await client.send(head)
            await client.until(
                lambda s=stream_id: s in client.resets or bool(client.goaways) or client.closed
            )
            if client.goaways:
                break
            assert client.resets[stream_id] == ErrorCodes.PROTOCOL_ERROR
            refused += 1
        await ended_with(server, client, ErrorCodes.ENHANCE_YOUR_CALM)
        assert refused == Flood.RESET.limit
        assert calls == []
        await normal_client_is_served(nursery, server)


async def test_priority_churn(autojump_clock) -> None:
    """PRIORITY frames by the thousand: nothing is kept for them, and past the budget the
    connection gets GOAWAY ENHANCE_YOUR_CALM."""
    async with trio.open_nursery() as nursery:
        server = H2Server(serving(apps.hello), nursery)
        client = RawClient(server.client_stream)
        await client.start()
        for i in range(40):
            await client.send(
                *[
                    PriorityFrame(2 * (i * 50 + j) + 1, depends_on=2 * j + 3, stream_weight=j)
                    for j in range(50)
                ]
            )
            if client.closed or server.finished.is_set():
                break
            await trio.testing.wait_all_tasks_blocked()
            assert server.conn is not None and not server.conn.streams
        await ended_with(server, client, ErrorCodes.ENHANCE_YOUR_CALM)
        await normal_client_is_served(nursery, server)


async def test_zero_window_many_streams(autojump_clock) -> None:
    """Many streams asking for large responses with a window of 0 (then 1 byte at a time):
    each app waits for its window, the writer's buffer stays under its cap, the streams
    stay under the concurrency limit, and a normal client is served."""
    big = b"z" * 1_000_000
    waiting: list[str] = []

    async def app(scope, receive, send):
        await apps.start(send)
        waiting.append(scope["path"])
        await send({"type": "http.response.body", "body": big})

    async with trio.open_nursery() as nursery:
        server = H2Server(
            serving(app), nursery, h2_max_concurrent_streams=20, h2_max_connection_buffer=CAP
        )
        client = RawClient(server.client_stream)
        await client.start({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
        ids = []
        for _ in range(30):
            stream_id, head = client.request("/big")
            ids.append(stream_id)
            await client.send(head)
        await trio.testing.wait_all_tasks_blocked()
        assert server.conn is not None
        assert len(server.conn.streams) == 20
        assert len(waiting) == 20
        await client.until(lambda: len(client.resets) == 10)
        assert set(client.resets) == set(ids[20:])
        assert set(client.resets.values()) == {ErrorCodes.REFUSED_STREAM}
        # Dribble: one byte of window at a time on every stream.
        for _ in range(20):
            await client.send(*[WindowUpdateFrame(s, window_increment=1) for s in ids[:20]])
            await trio.testing.wait_all_tasks_blocked()
            bounded(server)
        await normal_client_is_served(nursery, server)
        nursery.cancel_scope.cancel()


async def test_rapid_reset_end_to_end() -> None:
    """Against the real server on a loopback port: the rapid-reset connection is ended with
    ENHANCE_YOUR_CALM while a normal connection is served."""
    async with running_server(apps.hello) as server:
        stream = await server.connect()
        client = RawClient(stream)
        await client.start()
        frames: list[Any] = []
        for _ in range(300):
            stream_id, head = client.request("/reset")
            frames += [head, RstStreamFrame(stream_id, error_code=ErrorCodes.CANCEL)]
        await client.send(*frames)
        with trio.fail_after(10):
            await client.read_to_close()
        assert client.goaways and client.goaways[-1].error_code == ErrorCodes.ENHANCE_YOUR_CALM
        normal = H2Client(await server.connect())
        await normal.start()
        with trio.fail_after(10):
            assert await get(normal, "/") == (200, b"hello")


def test_each_pattern_has_its_own_budget() -> None:
    """The budgets are separate: spending one pattern's to its limit leaves the others full."""
    meter = FloodMeter(0.0)
    for flood in Flood:
        assert all(meter.spend(flood, 0.0) for _ in range(flood.limit)), flood
        assert not meter.spend(flood, 0.0), flood
    assert len(Flood) == 5


async def test_a_busy_client_under_every_budget_is_served(autojump_clock) -> None:
    """90 PINGs, 90 SETTINGS and 90 empty DATA frames in one burst (each under its own
    budget, not under a shared one): the connection carries on and answers."""
    async with trio.open_nursery() as nursery:
        server = H2Server(apps.echo, nursery)
        client = RawClient(server.client_stream)
        await client.start()
        stream_id, head = client.request("/", method="POST", end=False)
        frames: list[Any] = [head]
        for i in range(90):
            frames += [
                PingFrame(0, opaque_data=i.to_bytes(8, "big")),
                SettingsFrame(0, settings={h2.settings.SettingCodes.HEADER_TABLE_SIZE: 4096}),
                DataFrame(stream_id, b""),
            ]
        await client.send(*frames, DataFrame(stream_id, b"body", flags=["END_STREAM"]))
        assert await client.response(stream_id) == (200, b"body")
        assert not client.goaways
        nursery.cancel_scope.cancel()


async def test_hpack_encoder_table_stays_bounded(autojump_clock) -> None:
    """A client that allows the server's HPACK encoder a 4 GiB dynamic table: the server
    keeps its table to 4,096 bytes, while responses with a new header value each would
    otherwise fill it for the connection's life; the responses still decode."""

    async def app(scope, receive, send):
        value = scope["path"].encode() * 20
        await apps.start(send, 200, [(b"x-unique", value)])
        await send({"type": "http.response.body", "body": b"ok"})

    async with trio.open_nursery() as nursery:
        server = H2Server(app, nursery)
        client = H2Client(
            server.client_stream, {h2.settings.SettingCodes.HEADER_TABLE_SIZE: 2**32 - 1}
        )
        # (h2 applies its own setting to its decoder only when it changes.)
        client.h2.decoder.max_allowed_table_size = 2**32 - 1
        await client.start()
        assert server.conn is not None
        for i in range(100):
            stream_id = await client.request(f"/{i:05d}")
            assert await client.response(stream_id) == (200, b"ok")
            assert client.header(stream_id, b"x-unique") == f"/{i:05d}".encode() * 20
            assert server.conn.h2.encoder.header_table._current_size <= 4096
        nursery.cancel_scope.cancel()


async def test_hpack_encoder_table_bounded_after_h2c_upgrade(autojump_clock) -> None:
    """The same through Upgrade: h2c, whose HTTP2-Settings h2 applies without an event."""
    async with trio.open_nursery() as nursery:
        server = H2Server(apps.hello, nursery, via_http11=True)
        client = H2Client(server.client_stream)
        client.h2.local_settings = h2.settings.Settings(
            client=True, initial_values={h2.settings.SettingCodes.HEADER_TABLE_SIZE: 2**32 - 1}
        )
        settings = client.h2.initiate_upgrade_connection()
        await client.send_raw(
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
            b"Upgrade: h2c\r\nHTTP2-Settings: " + settings + b"\r\n\r\n"
        )
        with trio.fail_after(1):
            await server.started.wait()
        assert server.conn is not None
        await trio.testing.wait_all_tasks_blocked()
        assert server.conn.h2.encoder.header_table_size <= 4096
        nursery.cancel_scope.cancel()


async def test_closed_streams_remembered_are_bounded(autojump_clock) -> None:
    """A connection that has served 2,000 streams remembers at most 1,024 closed ones (h2
    alone keeps 65,536, some 8 MB for the connection's life); late DATA on a stream closed
    recently is still ignored."""
    async with trio.open_nursery() as nursery:
        server = H2Server(apps.hello, nursery)
        client = RawClient(server.client_stream)
        await client.start()
        assert server.conn is not None
        last = 0
        for _ in range(40):
            ids = []
            frames = []
            for _ in range(50):
                last, head = client.request("/")
                ids.append(last)
                frames.append(head)
            await client.send(*frames)
            await client.until(lambda ids=ids: all(s in client.ended for s in ids))
        assert len(server.conn.h2._closed_streams) <= 1024
        await client.send(DataFrame(last, b"late"))
        stream_id, head = client.request("/")
        await client.send(head)
        assert await client.response(stream_id) == (200, b"hello")
        assert not client.goaways
        nursery.cancel_scope.cancel()


async def test_large_frames_allowed_by_the_client_keep_the_cap(autojump_clock) -> None:
    """A client that allows 16 MiB frames and a 2 GiB window, then does not read, while the
    app sends an 8 MiB body: what the server holds stays under its cap plus the slack."""
    big = b"b" * (8 * 1024 * 1024)

    async def app(scope, receive, send):
        await apps.start(send)
        await send({"type": "http.response.body", "body": big})

    async with trio.open_nursery() as nursery:
        server = H2Server(
            serving(app), nursery, pair=never_reading_pair, h2_max_connection_buffer=CAP
        )
        client = RawClient(server.client_stream)
        await client.start(
            {
                h2.settings.SettingCodes.MAX_FRAME_SIZE: 2**24 - 1,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 2**31 - 1,
            }
        )
        await client.send(WindowUpdateFrame(0, window_increment=2**31 - 1 - 65535))
        _, head = client.request("/big")
        await client.send(head)
        await trio.testing.wait_all_tasks_blocked()
        bounded(server)
        await normal_client_is_served(nursery, server)
        nursery.cancel_scope.cancel()


async def test_a_body_sent_a_byte_a_frame_is_held_as_bytes_not_frames(autojump_clock) -> None:
    """A body in 1-byte DATA frames to an app that does not read yet: the server holds the
    bytes joined (a few pieces), not an object per frame (the window bounds the bytes, not
    the frames); the app then reads the whole body, intact."""
    reading = trio.Event()
    bodies: list[bytes] = []

    async def app(scope, receive, send):
        await reading.wait()
        body, _ = await apps.read_body(receive)
        bodies.append(body)
        await apps.hello(scope, receive, send)

    async with trio.open_nursery() as nursery:
        server = H2Server(serving(app), nursery)
        client = RawClient(server.client_stream)
        await client.start()
        stream_id, head = client.request("/drip", method="POST", end=False)
        await client.send(head)
        sent = bytes(i % 251 for i in range(16_384))
        for start in range(0, len(sent), 1024):
            frames = [DataFrame(stream_id, bytes([b])) for b in sent[start : start + 1024]]
            await client.send(*frames)
        await trio.testing.wait_all_tasks_blocked()
        assert server.conn is not None
        stream = server.conn.streams[stream_id]
        assert stream.unacknowledged == len(sent)
        assert len(stream._inbox) <= 2
        await client.send(DataFrame(stream_id, b"", flags=["END_STREAM"]))
        reading.set()
        assert await client.response(stream_id) == (200, b"hello")
        assert bodies == [sent]
        nursery.cancel_scope.cancel()
