"""The package's layout: no module imports one that imports it back, and layers import downwards.

Read from the source with ``ast``, so imports under ``TYPE_CHECKING`` and
inside functions count too: they hide a cycle from Python, not from a reader.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "trioasgi"

#: Which subpackages each may import (docs/architecture.md, "Layers").
ALLOWED = {
    "core": set(),
    "asgi": {"core"},
    "websocket": {"core", "asgi"},
    "http11": {"core", "asgi", "websocket"},
    "http2": {"core", "asgi", "websocket", "http11"},
    "serving": {"core", "asgi", "websocket", "http11", "http2"},
    "cli": {"core", "asgi", "serving"},
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The package's modules that the file at ``path`` imports, anywhere in it."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            targets = [prefix] + [f"{prefix}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(target for target in targets if target in modules and target != name)
    return found


def _graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {_module_name(path) for path in paths}
    graph = {_module_name(path): _imports(path, modules) for path in paths}
    # A package's __init__ runs when any of its modules is imported: only the
    # top one imports anything, and only the public names.
    return graph


def _cycle_from(graph: dict[str, set[str]], start: str) -> list[str] | None:
    stack = [(start, [start])]
    seen = set()
    while stack:
        node, path = stack.pop()
        for nxt in graph[node]:
            if nxt == start:
                return [*path, start]
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, [*path, nxt]))
    return None


def test_no_module_imports_one_that_imports_it_back() -> None:
    graph = _graph()
    cycles = [cycle for module in sorted(graph) if (cycle := _cycle_from(graph, module))]
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_layers_import_only_the_layers_below() -> None:
    wrong = []
    for module, imported in _graph().items():
        parts = module.split(".")
        if len(parts) < 3:
            continue  # trioasgi/__init__ and __main__: the public face
        layer = parts[1]
        for target in imported:
            target_layer = target.split(".")[1] if target.count(".") >= 1 else ""
            if target_layer != layer and target_layer not in ALLOWED[layer]:
                wrong.append(f"{module} imports {target}")
    assert not wrong, "\n".join(sorted(wrong))


def test_every_subpackage_has_a_place_in_the_layers() -> None:
    packages = {path.parent.name for path in PACKAGE.glob("*/__init__.py")}
    assert packages <= set(ALLOWED), packages - set(ALLOWED)
