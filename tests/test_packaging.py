"""One import package: the wheel installs `traintop` and nothing else at the
top of site-packages, and a user's own data.py, engine.py and tui.py (as many
ML projects have) shadow nothing."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from helpers import ROOT

sys.path.insert(0, str(ROOT))
from setup import packages  # noqa: E402 - the wheel's own mapping of names to folders

USER_FILES = {"data.py": "raise SystemExit('the user data.py was imported')\n",
              "engine.py": "raise SystemExit('the user engine.py was imported')\n",
              "tui.py": "raise SystemExit('the user tui.py was imported')\n"}

PROBE = """
import traintop
from traintop import watch, Trainer, TrainConfig, StepResult
from traintop.commands.cli import main
import traintop.engine.watch as module
assert callable(watch) and watch is module.watch and module.__name__ == "traintop.engine.watch"
print(traintop.__file__)
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    try:
        import setuptools
        isolated = int(setuptools.__version__.split(".")[0]) < 68   # pyproject's build requirement
    except ImportError:
        isolated = True
    cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(ROOT)]
    if not isolated:
        cmd.insert(5, "--no-build-isolation")
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    (path,) = out.glob("traintop-*.whl")
    return path


def test_the_wheel_holds_one_top_level_package(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names}
    assert top == {"traintop", f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info"}
    # The embedded data and the app's stylesheet travel with it.
    assert "traintop/data/names.txt" in names and "traintop/tui/app.tcss" in names
    # Every package of the tree, derived from its folders (setup.py's mapping),
    # is in the wheel: a new subfolder cannot go missing.
    expected = {name.replace(".", "/") + "/__init__.py" for name in packages(ROOT)}
    assert len(expected) >= 15 and "traintop/engine/live/__init__.py" in expected
    assert expected <= set(names), sorted(expected - set(names))


def _user_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "my_project"
    folder.mkdir()
    for name, text in USER_FILES.items():
        (folder / name).write_text(text)
    return folder


def test_import_beside_a_users_data_engine_and_tui(tmp_path):
    """The installed (editable) package, from a folder of the user's own modules."""
    folder = _user_folder(tmp_path)
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=folder, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr + done.stdout
    # and the user's modules are still theirs
    mine = subprocess.run([sys.executable, "-c", "import data"], cwd=folder,
                          capture_output=True, text=True, timeout=60)
    assert "the user data.py was imported" in mine.stderr


def test_the_built_wheel_imports_beside_a_users_modules(wheel, tmp_path):
    target = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                           "--target", str(target), str(wheel)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    folder = _user_folder(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(target)}
    run = subprocess.run([sys.executable, "-c", PROBE], cwd=folder, env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr + run.stdout
    assert run.stdout.strip().startswith(str(target))   # the wheel's copy, not the checkout's


def test_python_dash_m_traintop(tmp_path):
    done = subprocess.run([sys.executable, "-m", "traintop", "--help"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: traintop")


def test_no_engine_data_or_tui_top_level_import(tmp_path):
    for name in ("engine", "data", "tui"):
        done = subprocess.run([sys.executable, "-c", f"import {name}"], cwd=tmp_path,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode != 0 and "ModuleNotFoundError" in done.stderr, name
