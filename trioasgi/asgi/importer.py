"""Turning ``MODULE:ATTR`` into the ASGI application it names."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from typing import Any


class AppImportError(Exception):
    """The application could not be found; the message is one sentence, no traceback needed."""


def import_app(target: str, *, factory: bool = False, app_dir: str | None = ".") -> Callable:
    """Import ``module.path:attribute.path`` and return it (called first if ``factory``).

    An error in naming the app raises :class:`AppImportError`. An exception
    raised while the app's own module runs propagates unchanged, because its
    traceback is what the user needs to see.
    """
    module_name, sep, attrs = target.partition(":")
    if not sep or not module_name or not attrs:
        raise AppImportError(f'application must be given as "MODULE:ATTRIBUTE", not "{target}"')
    if app_dir is not None:
        sys.path.insert(0, app_dir)

    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # Only "the module you named does not exist" is a naming error; a
        # missing import *inside* the app is the app's bug and keeps its traceback.
        if exc.name is None or not _is_prefix(exc.name, module_name):
            raise
        raise AppImportError(f'could not import module "{module_name}"') from None

    app: Any = module
    try:
        for attr in attrs.split("."):
            app = getattr(app, attr)
    except AttributeError:
        raise AppImportError(f'attribute "{attrs}" not found in module "{module_name}"') from None

    if factory:
        if not callable(app):
            raise AppImportError(f'the factory "{target}" is not callable')
        app = app()
    if not callable(app):
        raise AppImportError(f'"{target}" is not an ASGI application: it is not callable')
    return app


def check_app_name(target: str, *, app_dir: str | None = ".") -> None:
    """Raise :class:`AppImportError` unless ``target`` names a module that can be found.

    For a process that starts workers and must not import the app itself
    (a reloader would keep the old code): the module is looked up, not run.
    """
    module_name, sep, attrs = target.partition(":")
    if not sep or not module_name or not attrs:
        raise AppImportError(f'application must be given as "MODULE:ATTRIBUTE", not "{target}"')
    if app_dir is not None and app_dir not in sys.path:
        sys.path.insert(0, app_dir)
    try:
        # Finding a submodule imports its parent packages, as the worker will.
        found = importlib.util.find_spec(module_name) is not None
    except ModuleNotFoundError as exc:
        if exc.name is None or not _is_prefix(exc.name, module_name):
            raise
        found = False
    if not found:
        raise AppImportError(f'could not import module "{module_name}"')


def _is_prefix(missing: str, wanted: str) -> bool:
    """Whether the module that was not found is ``wanted`` or one of its parent packages."""
    return wanted == missing or wanted.startswith(missing + ".")
