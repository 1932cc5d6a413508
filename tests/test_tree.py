"""The tree's shape: its import graph has no circle (deferred imports inside
functions count: they hid the last two), and no relative import reaches
outside its own folder's subtree. Read from the source, nothing is run."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from setup import packages  # noqa: E402 - the wheel's own mapping of names to folders

PACKAGES = packages(ROOT)   # import name -> folder


def modules() -> dict[str, Path]:
    found = {}
    for name, folder in PACKAGES.items():
        for path in (ROOT / folder).glob("*.py"):
            found[name if path.stem == "__init__" else f"{name}.{path.stem}"] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules this module imports, anywhere in it."""
    package = name if path.stem == "__init__" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        out.update(t for t in targets if t in known and t != name)
    return out


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_import_graph_has_no_circle():
    known = modules()
    graph = {name: imports(name, path, known) for name, path in known.items()}
    assert sum(len(v) for v in graph.values()) > 200   # the graph is really read
    assert graph["traintop.commands.run"] >= {"traintop.commands.run_end",
                                               "traintop.commands.run_sweep"}
    assert circles(graph) == []


def test_a_circle_is_found():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert circles(graph) == [["a", "b", "c"]]


def test_no_relative_import_leaves_its_folder():
    outside = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level > 1:
                outside.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert outside == []


def test_every_folder_with_python_is_a_package():
    """A folder of modules without __init__.py would be missing from the wheel."""
    missing = []
    for folder in set(PACKAGES.values()):
        for sub in (ROOT / folder).iterdir():
            if sub.is_dir() and not sub.name.startswith(("_", ".")) and any(sub.glob("*.py")):
                if not (sub / "__init__.py").exists():
                    missing.append(str(sub.relative_to(ROOT)))
    assert missing == []
