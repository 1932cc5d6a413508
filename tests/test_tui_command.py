"""`traintop` with bad options fails before the screen opens: one line, exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from traintop.commands.app import build_parser, spec_from_args

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("args, message", [
    (["--data", "/no/such/words.txt"], "traintop: error: /no/such/words.txt: no such file"),
    (["--gain", "abc"], "traintop: error: --gain: 'abc' is not a number or fraction like 5/3"),
])
def test_bad_options_are_one_line(args, message):
    done = subprocess.run([sys.executable, "-m", "traintop", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip() == message
    assert "Traceback" not in done.stderr + done.stdout


def test_options_reach_the_session_spec(tmp_path):
    args = build_parser().parse_args(["--steps", "500", "--gain", "2", "--no-batchnorm",
                                      "--checkpoint-dir", str(tmp_path), "--paused"])
    spec = spec_from_args(args)
    assert (spec.config.steps, spec.config.gain, spec.config.batchnorm) == (500, "2", False)
    assert spec.checkpoint_dir == str(tmp_path) and spec.start_paused
    assert spec.data is None and spec.device == "cpu"
