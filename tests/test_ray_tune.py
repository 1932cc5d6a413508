"""examples/ray_tune_watch.py on a local Ray: two trials, each recording into its
own trial folder beside its params.json, each recording what watch() records for
the same config (model, seed, batches) trained in a plain loop outside Tune.
Ray's start makes this the slow one (~25 s alone on 2 cores, ~55 s on a busy machine)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from helpers import ROOT, skip_unless_installed

skip_unless_installed("ray", reason="ray[tune] is not installed (pip install 'traintop[ray]')")

from traintop.engine.feed.messages import Status, Steps  # noqa: E402
from traintop.engine.recording.opener import load  # noqa: E402

SCRIPT = ROOT / "examples" / "ray_tune_watch.py"


def example():
    spec = importlib.util.spec_from_file_location("ray_tune_watch", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def results(path):
    return [r for m in load(path).messages if isinstance(m, Steps) for r in m.results]


def test_two_trials_record_into_their_folders(tmp_path):
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--name", "exp", "--storage",
                           str(tmp_path), "--trials", "2", "--steps", "40", "--every", "10",
                           "--cpus", "2"], capture_output=True, text=True, timeout=240,
                          cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"2 trials in {tmp_path / 'exp'}" in proc.stdout
    recordings = sorted((tmp_path / "exp").glob("*/traintop.jsonl"))
    assert len(recordings) == 2
    configs = [json.loads((p.parent / "params.json").read_text()) for p in recordings]
    assert configs[0]["lr"] != configs[1]["lr"] and configs[0]["gain"] != configs[1]["gain"]

    ex = example()
    for path, config in zip(recordings, configs):
        plain = tmp_path / f"plain-{path.parent.name}.jsonl"
        losses = ex.train(config, str(plain))            # the same trial, no Tune
        got, want = results(path), results(plain)
        assert [r.step for r in got] == list(range(1, 41))
        assert [r.loss for r in got] == pytest.approx(losses, rel=1e-6)
        assert [r.loss for r in got] == pytest.approx([r.loss for r in want], rel=1e-6)
        assert [r.lr for r in got] == pytest.approx([config["lr"]] * 40)
        assert [r.step for r in got if r.stats] == [1, 10, 20, 30, 40]
        for g, w in zip(got, want):
            if g.stats:
                assert g.update_ratio_log10 == pytest.approx(w.update_ratio_log10, abs=1e-6)
                assert [l.std for l in g.stats.layers] == pytest.approx(
                    [l.std for l in w.stats.layers], rel=1e-6)
        assert isinstance(load(path).messages[-1], Status) and load(path).messages[-1].finished

    # the experiment's folder opens as one view, each trial labelled by its config
    replay = subprocess.run([sys.executable, "-m", "traintop", "replay", str(tmp_path / "exp"),
                             "--json"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert replay.returncode == 0, replay.stderr
    runs = json.loads(replay.stdout)["runs"]
    assert sorted(r["path"] for r in runs) == [str(p) for p in recordings]
    assert all("gain=" in r["label"] and "lr=" in r["label"] for r in runs)
    assert [r["steps"] for r in runs] == [40, 40]


def test_trial_path_outside_a_trial_says_so():
    from traintop.ray import trial_path
    with pytest.raises(RuntimeError, match="not inside a Ray Tune trial"):
        trial_path("x.jsonl")
