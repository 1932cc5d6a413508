"""Ctrl-C stops `traintop run` after the step in flight and still reports."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

from helpers import ROOT
from traintop.engine.feed.messages import Steps
from traintop.engine.recording.opener import load


def has_steps(path) -> bool:
    """The recording holds a Steps message (read as replay reads it: the
    format's own words, not a spelling of them)."""
    try:
        return any(isinstance(m, Steps) for m in load(path).messages)
    except Exception:  # noqa: BLE001 - not written yet, or its head only
        return False


def test_sigint_prints_the_report_of_the_last_step(tmp_path):
    ckpt = tmp_path / "stop.ckpt"
    rec = tmp_path / "run.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "traintop", "run", "--steps", "10000000", "--n-hidden", "16",
         "--engine", "fast", "--json", "--checkpoint", str(ckpt), "--record", str(rec)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # Interrupt once training has begun: the recording holds steps (on a
        # loaded machine importing torch alone may take seconds).
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not has_steps(rec):
            time.sleep(0.2)
        assert has_steps(rec), "no steps recorded in 120 s"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    doc = json.loads(out)
    assert doc["interrupted"] is True
    assert 0 < doc["steps"] < 10_000_000
    assert doc["last_loss"] is not None and doc["layers"]
    assert ckpt.exists()  # the checkpoint is written after Ctrl-C too
