"""Where settings come from: flags, ``TRIO_ASGI_*`` variables, a TOML file, the defaults.

Precedence, highest first: a flag on the command line, an environment
variable ``TRIO_ASGI_<FIELD>`` (``TRIO_ASGI_TIMEOUT_KEEP_ALIVE=10``), a key of
the ``--config`` TOML file (``timeout_keep_alive = 10``), the
:class:`Config` default. Every layer uses the Config field names, and values
from text (the environment) are converted to the field's type here, so a
bad value is one clear sentence whichever layer it came from.
"""

from __future__ import annotations

import os
import sys
import types
import typing
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any, Literal

from ..core.config import Config
from ..core.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

ENV_PREFIX = "TRIO_ASGI_"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def field_types() -> dict[str, Any]:
    return typing.get_type_hints(Config)


def parse_header(text: str) -> tuple[str, str]:
    """``"Name: value"`` to ``("Name", "value")``."""
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise ConfigError(f"a header must be given as NAME:VALUE, not {text!r}")
    return name.strip(), value.strip()


def read_config_file(path: str) -> dict[str, Any]:
    """The settings of a TOML file, checked and converted; ConfigError if unusable."""
    try:
        with Path(path).open("rb") as file:
            data = tomllib.load(file)
    except OSError as exc:
        raise ConfigError(f"cannot read the config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"the config file {path} is not valid TOML: {exc}") from None
    types_ = field_types()
    settings = {}
    for key, value in data.items():
        name = key.replace("-", "_")
        if name not in types_:
            raise ConfigError(f"unknown setting {key!r} in {path}")
        settings[name] = _from_toml(name, value, types_[name], path)
    return settings


def read_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    """The settings of the ``TRIO_ASGI_*`` variables; ConfigError for unknown or bad ones."""
    types_ = field_types()
    settings = {}
    for variable, text in environ.items():
        if not variable.startswith(ENV_PREFIX):
            continue
        name = variable[len(ENV_PREFIX) :].lower()
        if name not in types_:
            raise ConfigError(f"unknown setting in the environment variable {variable}")
        settings[name] = _from_text(name, text, types_[name], variable)
    return settings


def load_env_file(path: str, environ: typing.MutableMapping[str, str] | None = None) -> None:
    """Put the ``KEY=VALUE`` lines of a dotenv file into the environment.

    As python-dotenv does by default: a variable already set is not
    overridden; blank lines and ``#`` comments are skipped; ``export`` before a
    key and single or double quotes around a value are allowed.
    """
    environ = os.environ if environ is None else environ
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read the env file {path}: {exc.strerror}") from None
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"line {number} of the env file {path} is not KEY=VALUE")
        environ.setdefault(key, _unquote(value.strip()))


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        inner = value[1:-1]
        return inner.replace("\\n", "\n").replace('\\"', '"') if value[0] == '"' else inner
    # An unquoted value ends at an inline comment.
    return value.split(" #", 1)[0].rstrip()


# -- conversion -------------------------------------------------------------


def _bad(source: str, name: str, value: object, expected: str) -> ConfigError:
    return ConfigError(f"{source}: {name} must be {expected}, not {value!r}")


def _from_toml(name: str, value: Any, annotation: Any, source: str) -> Any:
    """Check a TOML value against the field type (TOML values are typed already)."""
    if isinstance(value, str) and not _accepts(annotation, str):
        return _from_text(name, value, annotation, source)
    if name == "headers" and isinstance(value, list):
        return [parse_header(item) if isinstance(item, str) else item for item in value]
    if _is_list(annotation):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise _bad(source, name, value, "a list of strings")
        return value
    if _accepts(annotation, bool) and isinstance(value, bool):
        return value
    if isinstance(value, bool):
        raise _bad(source, name, value, _describe(annotation))
    if _accepts(annotation, int) and isinstance(value, int):
        return value
    if _accepts(annotation, float) and isinstance(value, (int, float)):
        return float(value)
    if _accepts(annotation, str) and isinstance(value, str):
        return _from_text(name, value, annotation, source)
    raise _bad(source, name, value, _describe(annotation))


def _from_text(name: str, text: str, annotation: Any, source: str) -> Any:
    """Convert the text of an environment variable (or a TOML string) to the field type."""
    stripped = text.strip()
    if _accepts(annotation, type(None)) and stripped.lower() in ("", "none"):
        return None
    if name == "headers":
        return [parse_header(item) for item in stripped.split(",") if item.strip()]
    if _is_list(annotation):
        return [item.strip() for item in stripped.split(",") if item.strip()]
    choices = _literal_choices(annotation)
    if choices:
        if stripped not in choices:
            raise _bad(source, name, text, "one of " + ", ".join(choices))
        return stripped
    if _accepts(annotation, bool):
        if stripped.lower() in _TRUE:
            return True
        if stripped.lower() in _FALSE:
            return False
        raise _bad(source, name, text, "true or false")
    try:
        if _accepts(annotation, int):
            return int(stripped)
        if _accepts(annotation, float):
            if stripped.lower() in ("inf", "infinity") and _accepts(annotation, type(None)):
                return None
            return float(stripped)
    except ValueError:
        raise _bad(source, name, text, _describe(annotation)) from None
    return text


def _members(annotation: Any) -> tuple[Any, ...]:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return typing.get_args(annotation)
    return (annotation,)


def _accepts(annotation: Any, kind: type) -> bool:
    return any(
        member is kind or (typing.get_origin(member) is Literal and kind is str)
        for member in _members(annotation)
    )


def _is_list(annotation: Any) -> bool:
    return any(typing.get_origin(member) is list for member in _members(annotation))


def _literal_choices(annotation: Any) -> tuple[str, ...]:
    for member in _members(annotation):
        if typing.get_origin(member) is Literal:
            return typing.get_args(member)
    return ()


def _describe(annotation: Any) -> str:
    if _accepts(annotation, bool):
        return "true or false"
    if _accepts(annotation, int):
        return "a whole number"
    if _accepts(annotation, float):
        return "a number" + (" or none" if _accepts(annotation, type(None)) else "")
    return "a string"


def resolve(
    flags: Mapping[str, Any], *, config_file: str | None, environ: Mapping[str, str]
) -> Config:
    """The Config from every layer: flags > environment > config file > defaults."""
    settings: dict[str, Any] = {}
    if config_file is not None:
        settings.update(read_config_file(config_file))
    settings.update(read_environment(environ))
    settings.update(flags)
    names = {field.name for field in fields(Config)}
    return Config(**{name: value for name, value in settings.items() if name in names})
