"""A read that brings whole messages and then a bad frame: the app gets the messages first.

The valid messages before a protocol error are delivered (an echo app
answers each) and only then is the connection failed, with the close code
of the error: 1002 for a reserved opcode or a continuation with no message
to continue, 1007 for invalid UTF-8. Every order arrives in one write, so
one read of the server's brings it all.
"""

from __future__ import annotations

import pytest
import trio
from wsproto.events import BytesMessage, CloseConnection, TextMessage

from tests.test_websocket_frames import BINARY, TEXT, WSMemoryPeer, frame
from tests.ws_apps import Recorder, echo_app

CONTINUATION = 0x0

CASES = {
    "text then a reserved opcode": (frame(TEXT, b"hi") + frame(0x3, b"??"), ["hi"], 1002),
    "a fragmented message then a bad continuation": (
        frame(TEXT, b"hel", fin=False) + frame(CONTINUATION, b"lo") + frame(CONTINUATION, b"stray"),
        ["hello"],
        1002,
    ),
    "two messages then invalid UTF-8": (
        frame(TEXT, b"one") + frame(BINARY, b"\x00two") + frame(TEXT, b"ok \xff\xfe"),
        ["one", b"\x00two"],
        1007,
    ),
    "a new message inside a fragmented one": (
        frame(BINARY, b"whole") + frame(TEXT, b"par", fin=False) + frame(TEXT, b"oops"),
        [b"whole"],
        1002,
    ),
}

pytestmark = pytest.mark.usefixtures("http_parser")


@pytest.mark.parametrize("case", list(CASES))
async def test_messages_before_a_protocol_error_are_answered_first(
    case: str, nursery, autojump_clock
) -> None:
    data, expected, code = CASES[case]
    recorder = Recorder()
    peer = WSMemoryPeer(echo_app(recorder), nursery)
    await peer.handshake()
    await peer.send(data)
    echoed: list[str | bytes] = []
    with trio.fail_after(10):
        event = await peer.next_event()
        while isinstance(event, TextMessage | BytesMessage):
            echoed.append(event.data)
            event = await peer.next_event()
    assert echoed == expected
    assert isinstance(event, CloseConnection) and event.code == code
    with trio.fail_after(10):
        await peer.finished.wait()
    received = [m.get("text", m.get("bytes")) for m in recorder.received[:-1]]
    assert received == expected
    assert recorder.disconnect is not None and recorder.disconnect["code"] == code


async def test_an_app_that_returns_first_still_fails_with_the_errors_code(
    nursery, autojump_clock
) -> None:
    """The app takes one message of two and returns: the close says why, not 1000."""

    async def app(scope, receive, send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await receive()

    peer = WSMemoryPeer(app, nursery)
    await peer.handshake()
    await peer.send(frame(TEXT, b"a") + frame(TEXT, b"b") + frame(0x3, b"??"))
    with trio.fail_after(10):
        assert (await peer.expect_close()).code == 1002
