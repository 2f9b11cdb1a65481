"""WebSocket settings: flags, defaults and validation."""

from __future__ import annotations

import pytest

from trioasgi import Config, ConfigError
from trioasgi.cli.flags import build_parser, config_from_args


def test_defaults() -> None:
    config = Config()
    assert config.ws == "auto"
    assert config.ws_max_size == 16 * 1024 * 1024
    assert config.ws_per_message_deflate is True
    assert config.ws_ping_interval == 20.0
    assert config.ws_ping_timeout == 20.0


def test_flags_map_to_config() -> None:
    args = build_parser().parse_args(
        [
            "app:app",
            "--ws",
            "none",
            "--ws-max-size",
            "1024",
            "--no-ws-per-message-deflate",
            "--ws-ping-interval",
            "5",
            "--ws-ping-timeout",
            "none",
        ]
    )
    config = config_from_args(args)
    assert config.ws == "none"
    assert config.ws_max_size == 1024
    assert config.ws_per_message_deflate is False
    assert config.ws_ping_interval == 5.0
    assert config.ws_ping_timeout is None


def test_flags_are_in_help(capsys) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    help_text = capsys.readouterr().out
    for flag in (
        "--ws {auto,wsproto,none}",
        "--ws-max-size",
        "--ws-per-message-deflate",
        "--ws-ping-interval",
        "--ws-ping-timeout",
    ):
        assert flag in help_text


def test_bad_ws_value_is_a_usage_error(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["app:app", "--ws", "websockets"])
    assert info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.parametrize(
    "changes",
    [
        {"ws": "websockets"},
        {"ws_max_size": 0},
        {"ws_ping_interval": 0},
        {"ws_ping_timeout": -1},
    ],
)
def test_bad_values_are_refused(changes) -> None:
    with pytest.raises(ConfigError):
        Config(**changes)
