"""Binding: bind specs, unix sockets, inherited sockets, IPv6, systemd socket activation."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import trio

import trioasgi
from tests import apps
from tests.conftest import running_server
from trioasgi.cli.flags import build_parser, config_from_args
from trioasgi.cli.main import main
from trioasgi.serving.listeners import BindSpec, bind_specs, open_listeners, parse_bind, systemd_fds

# -- parsing ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("127.0.0.1:8000", BindSpec("tcp", host="127.0.0.1", port=8000)),
        ("0.0.0.0:0", BindSpec("tcp", host="0.0.0.0", port=0)),
        (":8080", BindSpec("tcp", host=None, port=8080)),
        ("localhost:1", BindSpec("tcp", host="localhost", port=1)),
        ("[::1]:8000", BindSpec("tcp", host="::1", port=8000)),
        ("[::]:443", BindSpec("tcp", host="::", port=443)),
        ("unix:/run/app.sock", BindSpec("unix", path="/run/app.sock")),
        ("unix:relative.sock", BindSpec("unix", path="relative.sock")),
        ("fd://3", BindSpec("fd", fd=3)),
    ],
)
def test_parse_bind(text: str, spec: BindSpec) -> None:
    assert parse_bind(text) == spec


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("8000", "must be HOST:PORT"),
        ("::1:8000", "must be HOST:PORT"),
        ("[::1]8000", "must look like [::1]:8000"),
        ("[]:80", "must look like"),
        ("host:http", "no valid port"),
        ("host:70000", "no valid port"),
        ("unix:", "no socket path"),
        ("fd://three", "file descriptor number"),
        ("fd://", "file descriptor number"),
    ],
)
def test_parse_bind_rejects_with_a_sentence(text: str, words: str) -> None:
    with pytest.raises(trioasgi.ConfigError, match=words.replace("[", r"\[").replace("]", r"\]")):
        parse_bind(text)


def test_bind_spec_prints_as_it_is_written() -> None:
    for text in ("127.0.0.1:80", "[::1]:80", "unix:/a/b", "fd://4"):
        assert str(parse_bind(text)) == text


def test_bad_bind_on_the_command_line_is_a_usage_error(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["tests.apps:hello", "--bind", "nonsense"])
    assert exit_info.value.code == 2
    assert "bind address 'nonsense' must be HOST:PORT" in capsys.readouterr().err


def test_binding_flags_reach_the_config() -> None:
    args = build_parser().parse_args(
        ["a:b", "--bind", "unix:/x", "-b", "[::1]:1", "--uds", "/y", "--fd", "5", "--backlog", "7"]
    )
    config = config_from_args(args)
    assert config.bind == ["unix:/x", "[::1]:1"]
    assert (config.uds, config.fd, config.backlog) == ("/y", 5, 7)
    assert [str(spec) for spec in bind_specs(config, environ={})] == [
        "unix:/x",
        "[::1]:1",
        "unix:/y",
        "fd://5",
    ]


def test_backlog_must_be_positive() -> None:
    with pytest.raises(trioasgi.ConfigError, match="backlog must be at least 1"):
        trioasgi.Config(backlog=0)


# -- systemd socket activation -------------------------------------------------------


def test_systemd_fds_only_for_this_process() -> None:
    assert systemd_fds({"LISTEN_PID": "42", "LISTEN_FDS": "2"}, 42) == [3, 4]
    assert systemd_fds({"LISTEN_PID": "41", "LISTEN_FDS": "2"}, 42) == []
    assert systemd_fds({"LISTEN_FDS": "2"}, 42) == []
    assert systemd_fds({"LISTEN_PID": "42", "LISTEN_FDS": "x"}, 42) == []
    assert systemd_fds({}, 42) == []


def test_systemd_sockets_replace_host_and_port_but_not_explicit_binds() -> None:
    environ = {"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "1"}
    assert bind_specs(trioasgi.Config(), environ) == [BindSpec("fd", fd=3)]
    explicit = trioasgi.Config(bind=["127.0.0.1:1"])
    assert bind_specs(explicit, environ) == [BindSpec("tcp", host="127.0.0.1", port=1)]
    assert bind_specs(trioasgi.Config(port=9), {}) == [BindSpec("tcp", host="127.0.0.1", port=9)]


def test_systemd_socket_activation_end_to_end(tmp_path: Path) -> None:
    """The real command, started the way systemd starts it: socket at fd 3, LISTEN_* set."""
    listening = socket.create_server(("127.0.0.1", 0))
    port = listening.getsockname()[1]
    launcher = (
        "import os, sys\n"
        "os.dup2(int(sys.argv[1]), 3)\n"
        "os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS='1')\n"
        "os.execv(sys.executable, [sys.executable, '-m', 'trioasgi', 'tests.apps:show_scope'])\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", launcher, str(listening.fileno())],
        pass_fds=[listening.fileno()],
        stderr=subprocess.PIPE,
        text=True,
    )
    listening.close()  # the server's copy is the only one left
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/activated", timeout=10)
        assert response.json()["path"] == "/activated"
        assert response.json()["server"] == ["127.0.0.1", port]
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=10)
    assert process.returncode == 0, stderr
    assert f"Serving on http://127.0.0.1:{port}" in stderr


# -- unix domain sockets -----------------------------------------------------------------


async def test_unix_socket_scope_url_and_cleanup(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = str(tmp_path / "app.sock")
    caplog.set_level(logging.INFO, logger="trioasgi")
    transport = httpx.AsyncHTTPTransport(uds=path)
    async with (
        running_server(apps.show_scope, bind=[f"unix:{path}"]) as server,
        httpx.AsyncClient(transport=transport) as client,
    ):
        assert (server.host, server.port) == (path, None)
        scope = (await client.get("http://localhost/x")).json()
        assert os.path.exists(path)
    await server.stopped.wait()
    assert scope["server"] == [path, None]
    assert scope["client"] is None
    assert f"Serving on unix:{path}" in caplog.text
    assert not os.path.exists(path), "the socket file is removed at shutdown"


async def test_uds_flag_is_a_unix_bind(tmp_path: Path) -> None:
    path = str(tmp_path / "uds.sock")
    async with running_server(apps.hello, uds=path) as server:
        assert server.host == path
        async with httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(uds=path)) as client:
            assert (await client.get("http://localhost/")).text == "hello"


async def test_stale_unix_socket_is_replaced(tmp_path: Path) -> None:
    path = str(tmp_path / "stale.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()  # the file stays, nobody listens: what a crashed server leaves
    async with (
        running_server(apps.hello, uds=path),
        httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(uds=path)) as client,
    ):
        assert (await client.get("http://localhost/")).text == "hello"


async def test_unix_socket_in_use_or_not_a_socket_is_refused(tmp_path: Path) -> None:
    live_path = str(tmp_path / "live.sock")
    live = socket.socket(socket.AF_UNIX)
    live.bind(live_path)
    live.listen()
    file_path = tmp_path / "file.sock"
    file_path.write_text("precious")
    try:
        with pytest.raises(OSError, match=f"could not listen on unix:{live_path}: another"):
            await open_listeners(trioasgi.Config(uds=live_path))
        with pytest.raises(OSError, match="exists and is not a socket"):
            await open_listeners(trioasgi.Config(uds=str(file_path)))
    finally:
        live.close()
    assert file_path.read_text() == "precious"


async def test_unix_socket_replaced_by_another_server_is_not_removed(tmp_path: Path) -> None:
    path = str(tmp_path / "app.sock")
    async with running_server(apps.hello, uds=path) as server:
        os.unlink(path)
        newcomer = socket.socket(socket.AF_UNIX)
        newcomer.bind(path)
    await server.stopped.wait()
    assert os.path.exists(path)
    newcomer.close()


# -- inherited sockets, IPv6, several listeners ------------------------------------------


async def test_inherited_fd_is_served() -> None:
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    async with (
        running_server(apps.show_scope, fd=sock.detach()) as server,
        httpx.AsyncClient() as client,
    ):
        assert server.port == port
        scope = (await client.get(f"http://127.0.0.1:{port}/fd")).json()
    assert scope["server"] == ["127.0.0.1", port]


async def test_fd_that_is_not_a_listening_socket_is_refused(tmp_path: Path) -> None:
    file = open(tmp_path / "f", "w")  # noqa: SIM115 -- its number is needed in the match
    try:
        with pytest.raises(OSError, match=f"fd://{file.fileno()}: the file descriptor is not"):
            await open_listeners(trioasgi.Config(fd=file.fileno()))
    finally:
        file.close()
    unconnected = socket.socket()
    try:
        with pytest.raises(OSError, match="not a listening stream socket"):
            await open_listeners(trioasgi.Config(fd=unconnected.fileno()))
        assert unconnected.fileno() != -1, "a socket we refused is left open for its owner"
    finally:
        unconnected.close()


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback on this machine")
async def test_ipv6_and_ipv4_together(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="trioasgi")
    config = trioasgi.Config(bind=["[::1]:0", "127.0.0.1:0"])
    async with trio.open_nursery() as nursery:
        addresses = await nursery.start(trioasgi.serve, apps.show_scope, config)
        (host6, port6), (host4, port4) = addresses
        assert (host6, host4) == ("::1", "127.0.0.1")
        async with httpx.AsyncClient() as client:
            scope6 = (await client.get(f"http://[::1]:{port6}/")).json()
            scope4 = (await client.get(f"http://127.0.0.1:{port4}/")).json()
        nursery.cancel_scope.cancel()
    assert scope6["server"] == ["::1", port6]
    assert scope6["client"][0] == "::1"
    assert scope4["server"] == ["127.0.0.1", port4]
    assert f"Serving on http://[::1]:{port6}" in caplog.text


async def test_second_address_failing_closes_the_first(tmp_path: Path) -> None:
    taken = socket.create_server(("127.0.0.1", 0))
    port = taken.getsockname()[1]
    path = str(tmp_path / "first.sock")
    try:
        with pytest.raises(OSError, match=f"could not listen on 127.0.0.1:{port}: "):
            await open_listeners(trioasgi.Config(bind=[f"unix:{path}", f"127.0.0.1:{port}"]))
    finally:
        taken.close()
    assert not os.path.exists(path)


def test_port_in_use_is_one_sentence(capsys: pytest.CaptureFixture) -> None:
    taken = socket.create_server(("127.0.0.1", 0))
    port = taken.getsockname()[1]
    try:
        status = main(["tests.apps:hello", "--bind", f"127.0.0.1:{port}", "--lifespan", "off"])
    finally:
        taken.close()
    assert status == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"trio-asgi: error: could not listen on 127.0.0.1:{port}: ")


async def test_backlog_is_passed_to_listen(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []
    real = trio.open_tcp_listeners

    async def spy(port, *, host=None, backlog=None):
        seen.append(backlog)
        return await real(port, host=host, backlog=backlog)

    monkeypatch.setattr(trio, "open_tcp_listeners", spy)
    listeners = await open_listeners(trioasgi.Config(port=0, backlog=17))
    for listener in listeners:
        await listener.aclose()
    assert seen == [17]


def test_every_network_flag_is_in_help_and_in_the_deployment_docs() -> None:
    help_text = build_parser().format_help()
    docs = (Path(__file__).parent.parent / "docs" / "deployment.md").read_text()
    flags = [
        "--bind",
        "--uds",
        "--fd",
        "--backlog",
        "--ssl-certfile",
        "--ssl-keyfile",
        "--ssl-keyfile-password",
        "--ssl-ca-certs",
        "--ssl-cert-reqs",
        "--ssl-ciphers",
        "--timeout-tls-handshake",
        "--proxy-headers",
        "--no-proxy-headers",
        "--forwarded-allow-ips",
    ]
    for flag in flags:
        assert flag in help_text, flag
        assert f"`{flag}" in docs, flag
