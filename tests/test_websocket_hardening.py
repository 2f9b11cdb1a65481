"""WebSocket handshakes are bounded in time, and upgrade requests get the strict checks.

The opening handshake's client part is the upgrade request head, bounded by
``timeout_request_header``; the closing handshake waits at most
``_websocket.CLOSE_TIMEOUT`` for the peer's answer. Both on a virtual clock.
"""

from __future__ import annotations

import pytest
import trio
import trio.testing

from tests.conftest import read_until_closed
from tests.test_websocket_frames import UPGRADE, WSMemoryPeer
from tests.ws_apps import Recorder, echo_app
from trioasgi.websocket.session import CLOSE_TIMEOUT


async def test_dribbled_upgrade_request_gets_408_at_the_header_timeout(
    nursery, autojump_clock
) -> None:
    recorder = Recorder()
    peer = WSMemoryPeer(echo_app(recorder), nursery, timeout_request_header=4)
    start = trio.current_time()
    for byte in UPGRADE[:-2]:  # byte by byte (1.5 s in all), never the final CRLF
        await peer.send(bytes([byte]))
        await trio.sleep(0.01)
    data = await read_until_closed(peer.client)
    assert data.startswith(b"HTTP/1.1 408 ")
    assert trio.current_time() - start == pytest.approx(4)
    assert recorder.scope is None  # the app never saw it


@pytest.mark.parametrize(
    ("extra", "status"),
    [
        (b"X-Ctl: a\x01b\r\n", 400),
        (b"Host: twice\r\n", 400),
        (b"".join(b"X-%d: v\r\n" % i for i in range(100)), 431),
    ],
    ids=["ctl-in-value", "two-hosts", "too-many-fields"],
)
async def test_upgrade_requests_get_the_strict_checks(
    extra: bytes, status: int, nursery, autojump_clock
) -> None:
    recorder = Recorder()
    peer = WSMemoryPeer(echo_app(recorder), nursery)
    await peer.send(UPGRADE[:-2] + extra + b"\r\n")
    data = await read_until_closed(peer.client)
    assert data.startswith(b"HTTP/1.1 %d " % status)
    assert recorder.scope is None


async def test_closing_handshake_gives_up_on_a_silent_peer(nursery, autojump_clock) -> None:
    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 1000})

    peer = WSMemoryPeer(app, nursery)
    await peer.handshake()
    close = await peer.expect_close()
    closed_at = trio.current_time()
    await peer.finished.wait()  # the peer never answers the close frame
    assert close.code == 1000
    assert trio.current_time() - closed_at == pytest.approx(CLOSE_TIMEOUT)
