"""uvicorn's flags that mean something here: --ws-max-queue, --use-colors, --reload-delay,
--timeout-worker-healthcheck; and --loop, which cannot, refused in one sentence."""

from __future__ import annotations

import io
import os
import re
import signal

import pytest
import trio
import trio.testing

import trioasgi
from tests.processes import server_process
from tests.test_websocket_frames import BINARY, WSMemoryPeer, frame, start_sending
from trioasgi.cli.flags import build_parser, config_from_args
from trioasgi.cli.main import main
from trioasgi.core.logs import configure_logging, logger


def flags(*argv: str) -> trioasgi.Config:
    return config_from_args(build_parser().parse_args(["a:b", *argv]))


def test_the_flags_set_their_config_fields() -> None:
    config = flags(
        "--ws-max-queue",
        "2",
        "--use-colors",
        "--reload-delay",
        "0.5",
        "--timeout-worker-healthcheck",
        "3",
    )
    assert (config.ws_max_queue, config.use_colors) == (2, True)
    assert (config.reload_delay, config.timeout_worker_healthcheck) == (0.5, 3.0)
    assert flags("--no-use-colors").use_colors is False
    assert flags().use_colors is None
    assert flags("--timeout-worker-healthcheck", "none").timeout_worker_healthcheck is None
    with pytest.raises(trioasgi.ConfigError, match="ws max queue must be at least 1"):
        trioasgi.Config(ws_max_queue=0)


def test_loop_is_refused_in_one_sentence(capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["a:b", "--loop", "uvloop"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "--loop does not apply: trio-asgi runs on trio's own event loop" in err


@pytest.mark.usefixtures("restore_logging")
def test_use_colors_overrides_the_terminal_check(monkeypatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    stream = io.StringIO()  # not a terminal, and NO_COLOR set: colour only when asked
    configure_logging(trioasgi.Config(use_colors=True), stream)
    logger.info("coloured")
    configure_logging(trioasgi.Config(), stream)
    logger.info("plain")
    assert stream.getvalue() == "\033[32mINFO\033[0m: coloured\nINFO: plain\n"


async def test_ws_max_queue_bounds_the_messages_read_ahead(nursery, autojump_clock) -> None:
    release = trio.Event()
    got: list[int] = []

    async def slow_app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        await release.wait()
        while len(got) < 5:
            got.append(len((await receive())["bytes"]))

    peer = WSMemoryPeer(
        slow_app,
        nursery,
        pair=trio.testing.lockstep_stream_pair,
        ws_ping_interval=5,
        ws_ping_timeout=5,
        ws_max_queue=2,
    )
    await peer.handshake()
    sent = start_sending(nursery, peer, [frame(BINARY, b"x")] * 5)
    nursery.start_soon(peer.next_event)  # the ping; its pong never comes
    await trio.sleep(60)
    # The keepalive reads ahead for the app that does not, two messages deep.
    assert 2 <= sent[0] <= 3
    release.set()
    with trio.fail_after(10):
        while len(got) < 5:
            await trio.sleep(0.1)
    assert got == [1] * 5


async def test_a_worker_that_stops_answering_is_replaced(tmp_path) -> None:
    args = ("tests.apps:hello", "--workers", "2", "--timeout-worker-healthcheck", "0.5")
    async with server_process(tmp_path, *args) as server:
        first = [int(pid) for pid in await server.wait_for_log(r"Started worker \[(\d+)\]", 2)]
        await server.wait_for_log("Started 2 workers")
        os.kill(first[0], signal.SIGSTOP)  # alive, but its event loop no longer runs
        await server.wait_for_log(
            rf"Worker \[{first[0]}\] did not answer the health check within 0.5 s: killing it"
        )
        pids = await server.wait_for_log(r"Started worker \[(\d+)\]", 3)
        assert int(pids[2]) not in first
        server.signal(signal.SIGTERM)
        assert await server.wait() == 0
    assert re.search(rf"Worker \[{first[0]}\] was killed by SIGKILL", server.log)
