"""Every flag has a help text, sets a Config field, and is documented."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from trioasgi import Config
from trioasgi.cli.flags import build_parser

ROOT = Path(__file__).resolve().parent.parent
#: Flags that steer the command itself rather than setting a server option.
COMMAND_ONLY = {"--help", "-h", "--version", "--config", "--env-file"}


def _documentation() -> str:
    return "\n".join(
        path.read_text() for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    )


def test_every_flag_has_help_and_appears_in_the_documentation() -> None:
    docs = _documentation()
    missing = [
        option
        for action in build_parser()._actions
        for option in action.option_strings
        if option not in COMMAND_ONLY and f"`{option}" not in docs and f"{option} " not in docs
    ]
    assert not missing, f"flags not in README.md or docs/: {missing}"
    for action in build_parser()._actions:
        assert action.help, f"{action.option_strings} has no help text"


def test_every_config_field_can_be_set_from_the_command_line() -> None:
    destinations = {action.dest for action in build_parser()._actions}
    assert not {field.name for field in fields(Config)} - destinations
