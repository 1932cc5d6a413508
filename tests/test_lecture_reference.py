"""`traintop run` reproduces the lecture's published figures (../shared/reference),
on every engine to the lecture's printed precision, on exact to the bit where
the lecture's own op order gives the same bits (the loss; tests/test_stats_vs_torch.py
checks every figure of exact against the lecture's loop bit for bit).

The compiled engine runs in a process of its own, as a user's does, and
compiles one graph for both tests (test_compiled_step compiled it before, at
the same shapes: the processes find it in inductor's disk cache); the other
engines run through the CLI's entry in this process (a process more each
proved nothing test_cli_errors and test_tmux do not). Auto runs its single
step on the fast engine: a one-step run never compiles."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from helpers import ROOT, traintop_here

REL = 1e-4
ENGINES = ("exact", "fast", "compiled", "auto")
# the worker's torch thread count back after a run in this process chose its own
pytestmark = pytest.mark.usefixtures("one_thread")


def traintop_run(args: list[str], engine: str, capsys) -> subprocess.CompletedProcess:
    """`traintop run ARGS --engine ENGINE`: the compiled engine in a process
    of its own, the others in this one."""
    argv = ["run", *args, "--engine", engine]
    if engine == "compiled":
        return subprocess.run([sys.executable, "-m", "traintop", *argv], cwd=ROOT,
                              capture_output=True, text=True, timeout=300)
    return traintop_here(capsys, *argv)


def agree(mine: float, theirs: float, scale: float) -> bool:
    """Relative agreement; a mean near zero is judged against its spread (std),
    since float32 summation order alone moves it by ~1e-7 of that spread."""
    return math.isclose(mine, theirs, rel_tol=REL, abs_tol=REL * scale)


@pytest.mark.parametrize("engine", ENGINES)
def test_gain_5_3_step_1_matches_reference(reference_dir, engine, capsys):
    ref = json.loads((reference_dir / "lecture-gain-5-3-step1.json").read_text())
    done = traintop_run(["--data", str(reference_dir / "names.txt"), "--no-batchnorm",
                         "--gain", "5/3", "--bias", "--steps", "1", "--json"], engine, capsys)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)  # stdout is exactly one JSON document

    assert doc["steps"] == ref["steps"] == 1
    assert doc["timing"]["engine"] == engine
    assert agree(doc["first_loss"], ref["first_loss"], 0)
    if engine == "exact":
        assert doc["first_loss"] == ref["first_loss"]
    assert [l["index"] for l in doc["layers"]] == [l["index"] for l in ref["layers"]]
    for mine, theirs in zip(doc["layers"], ref["layers"]):
        assert mine["kind"] == "Tanh"
        assert agree(mine["std"], theirs["std"], 0)
        assert agree(mine["mean"], theirs["mean"], theirs["std"])
        assert agree(mine["saturation_pct"], theirs["saturation_pct"], 0)
        assert agree(mine["grad_std"], theirs["grad_std"], 0)
        assert agree(mine["grad_mean"], theirs["grad_mean"], theirs["grad_std"])
    assert [w["shape"] for w in doc["weights"]] == [w["shape"] for w in ref["weights"]]
    for mine, theirs in zip(doc["weights"], ref["weights"]):
        assert agree(mine["grad_std"], theirs["grad_std"], 0)
        assert agree(mine["grad_data_ratio"], theirs["grad_data_ratio"], 0)
        assert agree(mine["grad_mean"], theirs["grad_mean"], theirs["grad_std"])


@pytest.mark.parametrize("engine", ENGINES)
def test_lecture_printout_lines(reference_dir, engine, capsys):
    """The text report prints the lecture's own lines."""
    done = traintop_run(["--data", str(reference_dir / "names.txt"), "--no-batchnorm",
                         "--gain", "5/3", "--bias", "--steps", "1"], engine, capsys)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "layer 1 (      Tanh): mean -0.02, std 0.75, saturated: 20.25%" in out
    assert "layer 9 (      Tanh): mean -0.02, std 0.66, saturated: 6.12%" in out
    assert "first loss 3.2962" in out
