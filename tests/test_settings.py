"""Configuration layers: flag > TRIO_ASGI_* variable > --config TOML file > default."""

from __future__ import annotations

import pytest

from trioasgi import Config, ConfigError
from trioasgi.cli.flags import explicit_flags
from trioasgi.cli.main import main
from trioasgi.cli.settings import load_env_file, read_config_file, read_environment, resolve


def write(path, text: str):
    path.write_text(text)
    return str(path)


def test_precedence_flag_over_env_over_file_over_default(tmp_path) -> None:
    config_file = write(
        tmp_path / "server.toml",
        'port = 9001\ntimeout_keep_alive = 3\nlog_level = "warning"\n',
    )
    environ = {"TRIO_ASGI_TIMEOUT_KEEP_ALIVE": "7", "TRIO_ASGI_LOG_LEVEL": "error"}
    flags = explicit_flags(["app:app", "--log-level", "debug"])
    assert flags == {"log_level": "debug"}
    config = resolve(flags, config_file=config_file, environ=environ)
    assert config.log_level == "debug"  # flag
    assert config.timeout_keep_alive == 7.0  # environment over file
    assert config.port == 9001  # file over default
    assert config.timeout_request_header == Config().timeout_request_header  # default


def test_a_flag_equal_to_the_default_still_beats_the_file(tmp_path) -> None:
    config_file = write(tmp_path / "s.toml", "port = 9001\n")
    config = resolve(explicit_flags(["a:b", "--port", "8000"]), config_file=config_file, environ={})
    assert config.port == 8000


def test_environment_values_are_converted_to_the_field_types() -> None:
    settings = read_environment(
        {
            "TRIO_ASGI_PORT": "9",
            "TRIO_ASGI_ACCESS_LOG": "off",
            "TRIO_ASGI_SERVER_HEADER": "false",
            "TRIO_ASGI_TIMEOUT_GRACEFUL_SHUTDOWN": "none",
            "TRIO_ASGI_HEADERS": "X-A: 1, X-B:2",
            "TRIO_ASGI_RELOAD_DIRS": "src, lib",
            "TRIO_ASGI_INTERFACE": "asgi2",
            "TRIO_ASGI_LIMIT_MAX_REQUESTS": "100",
            "OTHER": "ignored",
        }
    )
    assert settings == {
        "port": 9,
        "access_log": False,
        "server_header": False,
        "timeout_graceful_shutdown": None,
        "headers": [("X-A", "1"), ("X-B", "2")],
        "reload_dirs": ["src", "lib"],
        "interface": "asgi2",
        "limit_max_requests": 100,
    }


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("TRIO_ASGI_PORT", "eighty", "port must be a whole number"),
        ("TRIO_ASGI_ACCESS_LOG", "maybe", "access_log must be true or false"),
        ("TRIO_ASGI_LIFESPAN", "sometimes", "lifespan must be one of auto, on, off"),
        ("TRIO_ASGI_PROT", "80", "unknown setting in the environment variable TRIO_ASGI_PROT"),
        ("TRIO_ASGI_HEADERS", "no-colon", "NAME:VALUE"),
    ],
)
def test_bad_environment_values_are_one_sentence(variable, value, message) -> None:
    with pytest.raises(ConfigError, match=message):
        read_environment({variable: value})


def test_toml_file_types_are_checked(tmp_path) -> None:
    settings = read_config_file(
        write(
            tmp_path / "s.toml",
            'workers = 4\ntimeout_keep_alive = 2\nheaders = ["X-Frame-Options: DENY"]\n'
            'reload-dirs = ["src"]\naccess_log = false\n',
        )
    )
    assert settings == {
        "workers": 4,
        "timeout_keep_alive": 2.0,
        "headers": [("X-Frame-Options", "DENY")],
        "reload_dirs": ["src"],
        "access_log": False,
    }
    with pytest.raises(ConfigError, match="unknown setting 'prot'"):
        read_config_file(write(tmp_path / "u.toml", "prot = 80\n"))
    with pytest.raises(ConfigError, match="workers must be a whole number"):
        read_config_file(write(tmp_path / "b.toml", "workers = true\n"))
    with pytest.raises(ConfigError, match="not valid TOML"):
        read_config_file(write(tmp_path / "t.toml", "port = \n"))
    with pytest.raises(ConfigError, match="cannot read the config file"):
        read_config_file(str(tmp_path / "missing.toml"))


def test_env_file_follows_dotenv_rules(tmp_path) -> None:
    path = write(
        tmp_path / ".env",
        "# comment\n\nexport DB_URL=postgres://x\nQUOTED=\"a b\"\nSINGLE='c # d'\n"
        "INLINE=value # comment\nSET_ALREADY=from-file\nTRIO_ASGI_PORT=9100\n",
    )
    environ = {"SET_ALREADY": "from-environment"}
    load_env_file(path, environ)
    assert environ == {
        "DB_URL": "postgres://x",
        "QUOTED": "a b",
        "SINGLE": "c # d",
        "INLINE": "value",
        "SET_ALREADY": "from-environment",
        "TRIO_ASGI_PORT": "9100",
    }
    with pytest.raises(ConfigError, match="line 1 of the env file"):
        load_env_file(write(tmp_path / "bad.env", "just words\n"), {})


def test_cli_reports_bad_settings_in_one_sentence(tmp_path, capsys) -> None:
    bad = write(tmp_path / "s.toml", "colour = true\n")
    with pytest.raises(SystemExit) as exit_:
        main(["tests.apps:hello", "--config", bad], environ={})
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "unknown setting 'colour'" in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_cli_reload_with_workers_is_one_sentence(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["tests.apps:hello", "--reload", "--workers", "2"], environ={})
    assert exit_.value.code == 2
    assert "--reload cannot be combined with --workers" in capsys.readouterr().err


def test_cli_env_file_feeds_the_environment_layer(tmp_path, monkeypatch) -> None:
    env_file = write(tmp_path / ".env", "TRIO_ASGI_LIFESPAN=bogus\n")
    environ: dict[str, str] = {}
    with pytest.raises(SystemExit):
        main(["tests.apps:hello", "--env-file", env_file], environ=environ)
    assert environ["TRIO_ASGI_LIFESPAN"] == "bogus"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--no-server-header"], {"server_header": False}),
        (["--no-date-header"], {"date_header": False}),
        (["--header", "X-A: 1", "--header", "x-b:2"], {"headers": [("X-A", "1"), ("x-b", "2")]}),
        (["--interface", "asgi2"], {"interface": "asgi2"}),
        (["--workers", "3"], {"workers": 3}),
        (
            ["--limit-max-requests", "5", "--limit-max-requests-jitter", "2"],
            {"limit_max_requests": 5, "limit_max_requests_jitter": 2},
        ),
        (
            ["--reload", "--reload-dir", "src", "--reload-include", "*.txt"],
            {"reload": True, "reload_dirs": ["src"], "reload_includes": ["*.txt"]},
        ),
        (["--reload-exclude", "tmp*"], {"reload_excludes": ["tmp*"]}),
        (["--access-log-format", "{status}"], {"access_log_format": "{status}"}),
        (["--log-config", "log.json"], {"log_config": "log.json"}),
        (["--factory"], {"factory": True}),
    ],
)
def test_flags_map_to_config_fields(argv, expected) -> None:
    flags = explicit_flags(["a:b", *argv])
    assert flags == expected
    config = resolve(flags, config_file=None, environ={})
    for name, value in expected.items():
        assert getattr(config, name) == value


def test_header_flag_needs_a_colon(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["a:b", "--header", "nocolon"], environ={})
    assert "NAME:VALUE" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"workers": 0}, "workers must be at least 1"),
        ({"limit_max_requests": 0}, "limit max requests must be at least 1"),
        ({"headers": [("bad name", "v")]}, "not a valid header name"),
        ({"headers": [("x-a", "v\r\nx: y")]}, "line break"),
        ({"access_log_format": "{nope}"}, "field {nope} is unknown"),
        ({"interface": "asgi4"}, "interface must be"),
    ],
)
def test_config_rejects_bad_values(settings, message) -> None:
    with pytest.raises(ConfigError, match=message):
        Config(**settings)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("h2_max_concurrent_streams", 0, "at least 1"),
        ("h2_max_header_list_size", 100, "at least 1024"),
        ("h2_max_inbound_frame_size", 1024, "between 16384 and 16777215"),
        ("h2_max_inbound_frame_size", 2**24, "between 16384 and 16777215"),
        ("h2_initial_window_size", 1000, "between 65535 and 2147483647"),
        ("h2_connection_window_size", 2**31, "between 65535 and 2147483647"),
        ("h2_max_connection_buffer", 1000, "at least 16384"),
    ],
)
def test_http2_limits_out_of_range_are_one_sentence(field: str, value: int, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Config(**{field: value})


def test_http2_limits_out_of_range_are_refused_by_the_command_line(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["app:app", "--h2-max-inbound-frame-size", "100"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "16384" in err and "Traceback" not in err
