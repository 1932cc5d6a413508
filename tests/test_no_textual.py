"""engine/ and data/ never import Textual: the engine runs headless anywhere."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT

PROBE = """
import importlib, pkgutil, sys
import data, engine
for pkg in (data, engine):
    for mod in pkgutil.iter_modules(pkg.__path__):
        importlib.import_module(f"{pkg.__name__}.{mod.name}")
loaded = sorted(m for m in sys.modules if m == "textual" or m.startswith(("textual.", "textual_plotext", "plotext")))
print(",".join(loaded))
"""


def test_engine_and_data_never_load_textual():
    proc = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""


def test_headless_run_never_loads_textual():
    probe = ("import sys\nfrom engine.cli import main\n"
             "code = main(['run', '--steps', '2', '--n-hidden', '8', '--json'])\n"
             "assert code == 0\n"
             "assert 'textual' not in sys.modules, 'textual was imported'\n")
    proc = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
