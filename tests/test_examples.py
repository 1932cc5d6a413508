"""Every script in examples/ runs as a user would run it, and its recording
opens: `replay --json` reads it whole."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
# A Ray Tune experiment takes other options and needs ray: tests/test_ray_tune.py runs it.
OWN_TEST = {"ray_tune_watch.py"}


def test_there_are_examples():
    assert [p.name for p in EXAMPLES] == ["ray_tune_watch.py", "watch_mlp.py"]


@pytest.mark.parametrize("script", [p for p in EXAMPLES if p.name not in OWN_TEST],
                         ids=lambda p: p.name)
def test_example_runs_and_its_recording_replays(script, tmp_path):
    out = tmp_path / "run.jsonl"
    proc = subprocess.run([sys.executable, str(script), "--out", str(out), "--steps", "60",
                           "--every", "20"], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "60 steps in" in proc.stdout and "Traceback" not in proc.stderr
    replay = subprocess.run([sys.executable, "-m", "traintop", "replay", str(out), "--json"],
                            capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert replay.returncode == 0, replay.stderr
    doc = json.loads(replay.stdout)
    assert doc["steps"] == 60 and doc["stats_step"] == 60
    assert [(l["name"], l["family"]) for l in doc["layers"]] == [
        ("1", "tanh"), ("3", "gelu"), ("5", "relu")]
    assert "health" in doc
