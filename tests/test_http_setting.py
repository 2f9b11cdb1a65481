"""The ``--http`` setting: which HTTP/1.1 parser the server runs behind."""

from __future__ import annotations

import importlib.util

import pytest

import trioasgi
from tests import apps
from trioasgi.cli.flags import build_parser, config_from_args
from trioasgi.http11.parsers import httptools_available
from trioasgi.serving.context import ServerContext


def test_http_flag_reaches_config_and_help() -> None:
    parser = build_parser()
    assert "--http {auto,h11,httptools}" in parser.format_help()
    config = config_from_args(parser.parse_args(["app:app", "--http", "h11"]))
    assert config.http == "h11"
    assert config_from_args(parser.parse_args(["app:app"])).http == "auto"


def test_http_flag_rejects_unknown_parsers(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["app:app", "--http", "picohttp"])
    assert exc.value.code == 2
    assert "invalid choice: 'picohttp'" in capsys.readouterr().err


@pytest.mark.skipif(not httptools_available(), reason="httptools is not installed")
def test_auto_picks_httptools_when_installed() -> None:
    ctx = ServerContext(app=apps.hello, config=trioasgi.Config(http="auto"))
    assert ctx.parser == "httptools"
    assert ServerContext(app=apps.hello, config=trioasgi.Config(http="h11")).parser == "h11"


def test_httptools_missing_is_a_plain_config_error(monkeypatch) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "httptools" else real_find_spec(name, *a),
    )
    with pytest.raises(trioasgi.ConfigError, match="needs the httptools package"):
        trioasgi.Config(http="httptools")
    ctx = ServerContext(app=apps.hello, config=trioasgi.Config(http="auto"))
    assert ctx.parser == "h11"
