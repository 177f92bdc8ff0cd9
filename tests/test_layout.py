"""The package's layout: what lives where, and the import rules that keep it readable."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from refine._moved import MOVED

PACKAGE = Path(__file__).resolve().parents[1] / "refine"


@pytest.mark.parametrize("old", sorted(MOVED))
def test_a_module_imported_by_its_old_path_is_the_module_at_its_new_place(old: str) -> None:
    assert importlib.import_module(f"refine.{old}") is importlib.import_module(f"refine.{MOVED[old]}")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _top_level_imports(path: Path) -> set[str]:
    """The refine modules `path` imports when it is imported (imports inside functions run
    later, on demand, and are how a module reaches one above it without a cycle)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    found = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("refine"):
                found.add(target)
                found.update(f"{target}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("refine"))
    return found


def test_no_module_imports_itself_back_through_others() -> None:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {m: {t for t in _top_level_imports(p) if t in modules and t != m} for m, p in modules.items()}
    # A package's __init__ importing its own submodules is how a package is made, not a cycle.
    graph = {m: {t for t in ts if not t.startswith(m + ".")} for m, ts in graph.items()}
    seen: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        seen[m] = 1
        stack.append(m)
        for t in sorted(graph[m]):
            if seen.get(t) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(t):] + [t]))
            if t not in seen:
                visit(t)
        stack.pop()
        seen[m] = 2

    for m in sorted(graph):
        if m not in seen:
            visit(m)
