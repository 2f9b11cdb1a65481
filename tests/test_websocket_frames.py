"""WebSocket unit tests: raw frames over in-memory streams, timeouts on a MockClock."""

from __future__ import annotations

import struct
import tracemalloc
from collections.abc import Callable
from typing import Any

import pytest
import trio
import trio.testing
from wsproto import ConnectionType, WSConnection
from wsproto.connection import Connection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    Request,
    TextMessage,
)
from wsproto.extensions import PerMessageDeflate

import trioasgi
from tests.conftest import DEFAULT_SETTINGS, MemoryConnection, read_until_closed
from tests.ws_apps import Recorder, echo_app
from trioasgi.http11.connection import HTTPConnection
from trioasgi.serving.context import ServerContext
from trioasgi.websocket.session import MESSAGE_QUEUE_SIZE

# The upgrade is parsed by h11 or httptools: every test runs under each.
pytestmark = pytest.mark.usefixtures("http_parser")

UPGRADE = (
    b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)

TEXT, BINARY, CLOSE, PING, PONG = 0x1, 0x2, 0x8, 0x9, 0xA


def frame(opcode: int, payload: bytes, *, fin: bool = True, mask: bool = True) -> bytes:
    """One client frame, built by hand so that it can be wrong on purpose."""
    head = bytearray([(0x80 if fin else 0) | opcode])
    mask_bit = 0x80 if mask else 0
    if len(payload) < 126:
        head.append(mask_bit | len(payload))
    elif len(payload) < 65536:
        head.append(mask_bit | 126)
        head += struct.pack("!H", len(payload))
    else:
        head.append(mask_bit | 127)
        head += struct.pack("!Q", len(payload))
    if not mask:
        return bytes(head) + payload
    key = b"\x11\x22\x33\x44"
    return bytes(head) + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


async def test_queued_messages_are_bounded_in_bytes_too(nursery, autojump_clock) -> None:
    """Large messages: one waits for the app, one is being read, and then the socket waits."""
    release = trio.Event()
    sizes: list[int] = []
    message = 600 * 1024

    async def slow_app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        await release.wait()
        while len(sizes) < 5:
            sizes.append(len((await receive())["bytes"]))

    peer = WSMemoryPeer(slow_app, nursery, pair=trio.testing.lockstep_stream_pair)
    await peer.handshake()
    sent = 0

    async def sender() -> None:
        nonlocal sent
        for _ in range(5):
            await peer.send(frame(BINARY, bytes(message)))
            sent += 1

    nursery.start_soon(sender)
    await trio.testing.wait_all_tasks_blocked()
    # A 4-message queue alone would have let all five in.
    assert sent <= 2
    release.set()
    with trio.fail_after(10):
        while len(sizes) < 5:
            await trio.sleep(0.1)
    assert sizes == [message] * 5


class WSMemoryPeer(MemoryConnection):
    """A raw WebSocket client on one end of an in-memory stream pair, the server on the other."""

    def __init__(
        self,
        app: Callable[..., Any],
        nursery: trio.Nursery,
        pair: Callable[[], tuple[Any, Any]] = trio.testing.memory_stream_pair,
        **settings: Any,
    ) -> None:
        super().__init__(app, nursery, pair, **settings)
        self.parser = Connection(ConnectionType.CLIENT)
        self._events: list[Any] = []

    async def handshake(self) -> bytes:
        await self.client.send_all(UPGRADE)
        head = b""
        while b"\r\n\r\n" not in head:
            head += await self.client.receive_some(65536)
        head, _, rest = head.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 "), head
        self.parser.receive_data(rest)
        return head

    async def next_event(self) -> Any:
        """The next frame event from the server; None at EOF."""
        while not self._events:
            self._events.extend(self.parser.events())
            if self._events:
                break
            data = await self.client.receive_some(65536)
            if not data:
                return None
            self.parser.receive_data(data)
        return self._events.pop(0)

    async def expect_close(self) -> CloseConnection:
        event = await self.next_event()
        assert isinstance(event, CloseConnection), event
        return event


async def test_unmasked_client_frame_is_a_protocol_error(nursery, autojump_clock) -> None:
    recorder = Recorder()
    peer = WSMemoryPeer(echo_app(recorder), nursery)
    await peer.handshake()
    await peer.send(frame(TEXT, b"hi", mask=False))
    close = await peer.expect_close()
    assert close.code == 1002
    await peer.finished.wait()
    assert recorder.disconnect["code"] == 1002


async def test_reserved_opcode_is_a_protocol_error(nursery, autojump_clock) -> None:
    peer = WSMemoryPeer(echo_app(), nursery)
    await peer.handshake()
    await peer.send(frame(0x3, b"??"))
    assert (await peer.expect_close()).code == 1002


async def test_invalid_utf8_closes_with_1007(nursery, autojump_clock) -> None:
    recorder = Recorder()
    peer = WSMemoryPeer(echo_app(recorder), nursery)
    await peer.handshake()
    await peer.send(frame(TEXT, b"ok \xff\xfe"))
    assert (await peer.expect_close()).code == 1007
    await peer.finished.wait()
    assert recorder.disconnect["code"] == 1007


async def test_message_at_the_limit_passes(nursery, autojump_clock) -> None:
    peer = WSMemoryPeer(echo_app(), nursery, ws_max_size=1024)
    await peer.handshake()
    await peer.send(frame(BINARY, b"x" * 1024))
    event = await peer.next_event()
    assert isinstance(event, BytesMessage) and len(event.data) == 1024


@pytest.mark.parametrize("fragmented", [False, True])
async def test_oversize_message_closes_with_1009(nursery, autojump_clock, fragmented) -> None:
    recorder = Recorder()
    peer = WSMemoryPeer(echo_app(recorder), nursery, ws_max_size=1024)
    await peer.handshake()
    if fragmented:
        # The limit is on the message, not the frame: 3 x 400 bytes is too much.
        await peer.send(
            frame(BINARY, b"a" * 400, fin=False)
            + frame(0x0, b"b" * 400, fin=False)
            + frame(0x0, b"c" * 400)
        )
    else:
        await peer.send(frame(BINARY, b"x" * 1025))
    assert (await peer.expect_close()).code == 1009
    await peer.send(frame(CLOSE, struct.pack("!H", 1009)))
    await peer.finished.wait()
    assert recorder.disconnect["code"] == 1009
    assert not [m for m in recorder.received if m["type"] == "websocket.receive"]


async def test_fragmented_text_is_one_message(nursery, autojump_clock) -> None:
    recorder = Recorder()
    peer = WSMemoryPeer(echo_app(recorder), nursery)
    await peer.handshake()
    euro = "€".encode()  # split inside a UTF-8 sequence on purpose
    await peer.send(frame(TEXT, b"a" + euro[:1], fin=False) + frame(0x0, euro[1:] + b"b"))
    event = await peer.next_event()
    assert isinstance(event, TextMessage) and event.data == "a€b"


async def test_peer_ping_gets_a_pong_with_its_payload(nursery, autojump_clock) -> None:
    peer = WSMemoryPeer(echo_app(), nursery)
    await peer.handshake()
    await peer.send(frame(PING, b"hello?"))
    event = await peer.next_event()
    assert isinstance(event, Pong) and event.payload == b"hello?"


async def test_unanswered_ping_closes_with_1011(nursery, autojump_clock) -> None:
    recorder = Recorder()
    peer = WSMemoryPeer(echo_app(recorder), nursery, ws_ping_interval=20, ws_ping_timeout=10)
    await peer.handshake()
    start = trio.current_time()
    assert isinstance(await peer.next_event(), Ping)
    assert trio.current_time() - start == pytest.approx(20)
    close = await peer.expect_close()  # we never answer
    assert close.code == 1011
    assert trio.current_time() - start == pytest.approx(30)
    assert await peer.next_event() is None  # and the socket is closed
    await peer.finished.wait()
    assert recorder.disconnect["code"] == 1011


async def test_answered_pings_keep_the_connection(nursery, autojump_clock) -> None:
    peer = WSMemoryPeer(echo_app(), nursery, ws_ping_interval=20, ws_ping_timeout=10)
    await peer.handshake()
    for _ in range(3):
        ping = await peer.next_event()
        assert isinstance(ping, Ping)
        await peer.send(frame(PONG, ping.payload))
    await peer.send(frame(TEXT, b"still here"))
    event = await peer.next_event()
    assert isinstance(event, TextMessage) and event.data == "still here"
    assert trio.current_time() >= 60


async def test_no_ping_when_disabled(nursery, autojump_clock) -> None:
    peer = WSMemoryPeer(echo_app(), nursery, ws_ping_interval=None)
    await peer.handshake()
    with trio.move_on_after(3600):
        event = await peer.next_event()
        pytest.fail(f"unexpected {event}")


async def test_shutdown_sends_1012_and_gives_up_on_a_silent_peer(nursery, autojump_clock) -> None:
    recorder = Recorder()
    peer = WSMemoryPeer(echo_app(recorder), nursery)
    await peer.handshake()
    await trio.testing.wait_all_tasks_blocked()
    start = trio.current_time()
    peer.connection.begin_shutdown()
    close = await peer.expect_close()
    assert close.code == 1012
    assert trio.current_time() == start  # at once
    await peer.finished.wait()  # the peer never answers the close frame
    assert trio.current_time() - start <= 5
    assert recorder.disconnect["code"] == 1012


async def test_shutdown_close_handshake_completes(nursery, autojump_clock) -> None:
    peer = WSMemoryPeer(echo_app(), nursery)
    await peer.handshake()
    await trio.testing.wait_all_tasks_blocked()
    start = trio.current_time()
    peer.connection.begin_shutdown()
    assert (await peer.expect_close()).code == 1012
    await peer.send(frame(CLOSE, struct.pack("!H", 1012)))
    await peer.finished.wait()
    assert trio.current_time() == start


async def test_server_stops_reading_while_the_app_does_not_receive(nursery, autojump_clock) -> None:
    release = trio.Event()
    got: list[str] = []

    async def slow_app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        await release.wait()
        while len(got) < 20:
            got.append((await receive())["text"])

    peer = WSMemoryPeer(slow_app, nursery, pair=trio.testing.lockstep_stream_pair)
    await peer.handshake()
    sent = 0

    async def sender() -> None:
        nonlocal sent
        for i in range(20):
            await peer.send(frame(TEXT, str(i).encode()))
            sent += 1

    nursery.start_soon(sender)
    await trio.testing.wait_all_tasks_blocked()
    assert sent < 10  # held back: a few queued messages, then TCP (here: lockstep) pushes back
    release.set()
    with trio.fail_after(10):
        while len(got) < 20:
            await trio.sleep(0.1)
    assert got == [str(i) for i in range(20)]


async def test_send_returns_once_the_frame_is_handed_to_the_socket(nursery, autojump_clock) -> None:
    sent = trio.Event()

    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "bytes": b"payload"})
        sent.set()
        await receive()

    peer = WSMemoryPeer(app, nursery, pair=trio.testing.lockstep_stream_pair)
    await peer.handshake()
    await trio.testing.wait_all_tasks_blocked()
    assert not sent.is_set()  # nobody read the frame yet
    event = await peer.next_event()
    assert isinstance(event, BytesMessage) and event.data == b"payload"
    await trio.testing.wait_all_tasks_blocked()
    assert sent.is_set()


async def test_send_after_disconnect_raises_client_disconnected(nursery, autojump_clock) -> None:
    outcome: list[BaseException] = []

    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        assert (await receive())["type"] == "websocket.disconnect"
        try:
            await send({"type": "websocket.send", "text": "too late"})
        except OSError as exc:
            outcome.append(exc)

    peer = WSMemoryPeer(app, nursery)
    await peer.handshake()
    await peer.send(frame(CLOSE, struct.pack("!H", 1000)))
    assert (await peer.expect_close()).code == 1000
    await peer.finished.wait()
    assert isinstance(outcome[0], trioasgi.ClientDisconnected)


async def test_abrupt_disconnect_gives_1006(nursery, autojump_clock) -> None:
    recorder = Recorder()
    peer = WSMemoryPeer(echo_app(recorder), nursery)
    await peer.handshake()
    await peer.client.aclose()
    await peer.finished.wait()
    assert recorder.disconnect["code"] == 1006


async def test_bytes_after_the_upgrade_head_are_not_lost(nursery, autojump_clock) -> None:
    peer = WSMemoryPeer(echo_app(), nursery)
    # The first frame travels in the same packet as the request head.
    await peer.client.send_all(UPGRADE + frame(TEXT, b"early"))
    head = b""
    while b"\r\n\r\n" not in head:
        head += await peer.client.receive_some(65536)
    peer.parser.receive_data(head.partition(b"\r\n\r\n")[2])
    event = await peer.next_event()
    assert isinstance(event, TextMessage) and event.data == "early"


async def deflate_exchange(nursery, **settings: Any) -> tuple[AcceptConnection, int, str]:
    """Handshake offering permessage-deflate, one compressible echo: (accept, wire size, text)."""
    client, server_stream = trio.testing.memory_stream_pair()
    ctx = ServerContext(app=echo_app(), config=trioasgi.Config(**settings))
    connection = HTTPConnection(server_stream, ctx, client=None, server=None)
    nursery.start_soon(connection.run)
    ws = WSConnection(ConnectionType.CLIENT)
    await client.send_all(ws.send(Request(host="x", target="/", extensions=[PerMessageDeflate()])))
    text = "compress me " * 1000
    events: list[Any] = []
    wire = 0
    accepted = None
    while True:
        data = await client.receive_some(65536)
        if accepted is not None:
            wire += len(data)
        ws.receive_data(data)
        for event in ws.events():
            if isinstance(event, AcceptConnection):
                accepted = event
                await client.send_all(ws.send(TextMessage(data=text)))
            elif isinstance(event, TextMessage):
                events.append(event.data)
        if events and "".join(events) == text:
            assert accepted is not None
            return accepted, wire, "".join(events)


async def test_per_message_deflate_is_negotiated(nursery, autojump_clock) -> None:
    accepted, wire, text = await deflate_exchange(nursery)
    assert [e.name for e in accepted.extensions if e.enabled()] == ["permessage-deflate"]
    assert text == "compress me " * 1000
    assert wire < len(text) // 10  # the echo came back compressed


async def test_per_message_deflate_can_be_turned_off(nursery, autojump_clock) -> None:
    accepted, wire, text = await deflate_exchange(nursery, ws_per_message_deflate=False)
    assert not [e for e in accepted.extensions if e.enabled()]
    assert wire > len(text)


async def test_upgrade_request_with_a_body_is_refused(nursery, autojump_clock) -> None:
    peer = WSMemoryPeer(echo_app(), nursery)
    await peer.send(UPGRADE.replace(b"\r\n\r\n", b"\r\nContent-Length: 2\r\n\r\nhi"))
    response = await read_until_closed(peer.client)
    assert response.startswith(b"HTTP/1.1 400 ")


async def test_peer_that_stops_reading_is_cut_off(nursery, autojump_clock) -> None:
    outcome: list[BaseException] = []

    async def firehose(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        try:
            while True:
                await send({"type": "websocket.send", "bytes": b"x" * 1000})
        except OSError as exc:
            outcome.append(exc)

    peer = await keepalive_peer(firehose, nursery, interval=20, timeout=10)  # never read again
    await peer.finished.wait()
    assert 30 <= trio.current_time() <= 32
    assert isinstance(outcome[0], trioasgi.ClientDisconnected)


async def test_a_compression_bomb_is_refused_before_it_is_inflated(nursery, autojump_clock) -> None:
    """32 MiB of zeros compress to ~32 KiB; inflating stops at the 1 MiB limit, with 1009."""
    recorder = Recorder()
    client, server_stream = trio.testing.memory_stream_pair()
    ctx = ServerContext(
        app=echo_app(recorder),
        config=trioasgi.Config(**{**DEFAULT_SETTINGS, "ws_max_size": 1024 * 1024}),
    )
    nursery.start_soon(HTTPConnection(server_stream, ctx, client=None, server=None).run)
    ws = WSConnection(ConnectionType.CLIENT)
    await client.send_all(ws.send(Request(host="x", target="/", extensions=[PerMessageDeflate()])))
    closed = None
    tracemalloc.start()
    try:
        while closed is None:
            ws.receive_data(await client.receive_some(65536))
            for event in ws.events():
                if isinstance(event, AcceptConnection):
                    bomb = ws.send(BytesMessage(data=bytes(32 * 1024 * 1024)))
                    assert len(bomb) < 64 * 1024
                    tracemalloc.reset_peak()
                    await client.send_all(bomb)
                elif isinstance(event, CloseConnection):
                    closed = event
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert closed.code == 1009
    assert peak < 8 * 1024 * 1024  # not the 32 MiB the bomb would inflate to
    assert not [m for m in recorder.received if m["type"] == "websocket.receive"]


async def test_write_lock_takes_no_step_when_free_and_keeps_order_when_not() -> None:
    from trioasgi.websocket.io import WriteLock

    lock = WriteLock()
    steps = []

    class Steps(trio.abc.Instrument):
        def before_task_step(self, task: trio.lowlevel.Task) -> None:
            steps.append(task)

    trio.lowlevel.add_instrument(instrument := Steps())
    try:
        async with lock:
            pass
    finally:
        trio.lowlevel.remove_instrument(instrument)
    assert steps == []  # uncontended: no yield to the scheduler

    order = []

    async def writer(name: str) -> None:
        async with lock:
            order.append(name)
            await trio.sleep(0)

    # The lock is released (inner) before the nursery waits for the writers (outer).
    async with trio.open_nursery() as nursery, lock:
        for name in "abc":  # they queue up while we hold it, in this order
            nursery.start_soon(writer, name)
            await trio.testing.wait_all_tasks_blocked()
        assert order == []
    assert order == ["a", "b", "c"]


async def keepalive_peer(
    app: Callable[..., Any], nursery: trio.Nursery, *, interval: float = 5, timeout: float = 5
) -> WSMemoryPeer:
    """A handshaken peer over lockstep streams (each byte waits for its reader), pinged."""
    peer = WSMemoryPeer(
        app,
        nursery,
        pair=trio.testing.lockstep_stream_pair,
        ws_ping_interval=interval,
        ws_ping_timeout=timeout,
    )
    await peer.handshake()
    return peer


def start_sending(nursery: trio.Nursery, peer: WSMemoryPeer, frames: list[bytes]) -> list[int]:
    """Send ``frames`` from a task; the returned one-item list counts those sent so far."""
    sent = [0]

    async def sender() -> None:
        for data in frames:
            await peer.send(data)
            sent[0] += 1

    nursery.start_soon(sender)
    return sent


@pytest.mark.parametrize(("size", "most"), [(1, MESSAGE_QUEUE_SIZE), (600 * 1024, 2)])
async def test_keepalive_reads_ahead_no_further_than_the_queue(
    nursery, autojump_clock, size: int, most: int
) -> None:
    """Waiting for its pong, the keepalive reads for an app that does not: 4 messages, or 1 MiB.

    The peer never answers the ping, but the silence while the queue is full
    is not its fault: the connection stays, and every message arrives.
    """
    release = trio.Event()
    got: list[int] = []

    async def slow_app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        await release.wait()
        while len(got) < 6:
            got.append(len((await receive())["bytes"]))

    peer = await keepalive_peer(slow_app, nursery)
    sent = start_sending(nursery, peer, [frame(BINARY, bytes(size))] * 6)
    pings = 0

    async def read_pings() -> None:
        nonlocal pings
        while isinstance(await peer.next_event(), Ping):
            pings += 1

    nursery.start_soon(read_pings)
    await trio.sleep(60)  # a ping at 5, never answered
    assert pings == 1  # and its pong is still awaited, without blame
    # Read ahead by the keepalive (nobody reads before its ping), then held back.
    assert most <= sent[0] <= most + 1
    release.set()
    with trio.fail_after(10):
        while len(got) < 6:
            await trio.sleep(0.1)
    assert got == [size] * 6


def closing_in_another_task(heard: list[Any], done: trio.Event | None = None) -> Callable[..., Any]:
    """An app whose one task waits in receive() while another closes with 4000."""

    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})

        async def closer() -> None:
            await trio.testing.wait_all_tasks_blocked()  # receive() is waiting for bytes
            await send({"type": "websocket.close", "code": 4000})

        async with trio.open_nursery() as tasks:
            tasks.start_soon(closer)
            heard.append(await receive())
            heard.append(trio.current_time())
            if done is not None:
                done.set()

    return app


async def test_closing_wakes_a_receive_waiting_in_another_task(nursery, autojump_clock) -> None:
    """receive() reads the socket itself; our close must not wait for the peer to wake it."""
    heard: list[Any] = []
    peer = WSMemoryPeer(closing_in_another_task(heard), nursery)
    await peer.handshake()
    start = trio.current_time()
    assert (await peer.expect_close()).code == 4000  # and the peer never answers
    await peer.finished.wait()
    assert heard[0] == {"type": "websocket.disconnect", "code": 4000, "reason": ""}
    assert heard[1] == start  # at once, not after the 5 s close timeout


async def test_an_app_that_only_sends_hears_the_close_by_the_next_ping(
    nursery, autojump_clock
) -> None:
    """Nobody reads while the app does not receive; the keepalive's ping reads the close frame."""
    outcome: list[Any] = []

    async def pusher(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        try:
            while True:
                await send({"type": "websocket.send", "text": "tick"})
                await trio.sleep(1)
        except OSError as exc:
            outcome.append((exc, trio.current_time()))

    peer = WSMemoryPeer(pusher, nursery, ws_ping_interval=5, ws_ping_timeout=5)
    await peer.handshake()
    start = trio.current_time()
    await peer.send(frame(CLOSE, struct.pack("!H", 1001)))
    while not isinstance(event := await peer.next_event(), CloseConnection):
        assert isinstance(event, (TextMessage, Ping))
    assert event.code == 1001  # our answer echoes the peer's code
    assert trio.current_time() - start <= 5  # by the ping
    await peer.finished.wait()
    exc, when = outcome[0]
    assert isinstance(exc, trioasgi.ClientDisconnected)
    assert when - start <= 6  # the next send after the close


async def test_keepalive_reads_on_once_the_app_makes_room(nursery, autojump_clock) -> None:
    """Queue full, pong waiting behind it: one message taken is enough for the pong to be seen."""
    take_one = trio.Event()

    async def slow_app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        await take_one.wait()
        await receive()
        await trio.sleep_forever()

    peer = await keepalive_peer(slow_app, nursery)
    sent = start_sending(nursery, peer, [frame(TEXT, b"x")] * MESSAGE_QUEUE_SIZE)
    ping = await peer.next_event()  # at 5; the keepalive then reads the queue full
    assert isinstance(ping, Ping)
    await trio.testing.wait_all_tasks_blocked()
    assert sent[0] == MESSAGE_QUEUE_SIZE
    take_one.set()  # room for one: the keepalive reads on, and finds the pong
    with trio.fail_after(30):
        await peer.send(frame(PONG, ping.payload))
        second = await peer.next_event()  # the pong was seen: the next ping comes
    assert isinstance(second, Ping)
    assert trio.current_time() == pytest.approx(10)
