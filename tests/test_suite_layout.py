"""The test suite's own rules: helpers are imported by name from
tests/helpers (or the tests/ helper modules), never from conftest or from
another test module; no test sets PYTHONPATH (the package is installed)."""

from __future__ import annotations

import ast

from helpers import ROOT

TESTS = ROOT / "tests"
# test_packaging installs the wheel into a folder and imports it from there.
PYTHONPATH_ALLOWED = {"test_packaging.py", "test_suite_layout.py"}


def python_files():
    return sorted(p for p in TESTS.rglob("*.py") if "__snapshots__" not in p.parts)


def imported_modules(path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_no_test_imports_conftest_or_another_test():
    bad = {p.name: sorted(m for m in imported_modules(p)
                          if m == "conftest" or m.startswith("test_"))
           for p in python_files()}
    assert {k: v for k, v in bad.items() if v} == {}


def test_no_test_sets_pythonpath():
    setting = [p.name for p in python_files()
               if p.name not in PYTHONPATH_ALLOWED and "PYTHONPATH" in p.read_text()]
    assert setting == []
