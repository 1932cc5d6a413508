"""`traintop run --sweep`: per run the document of `traintop run` with that
value, a readable text report, and one line for bad input (`traintop` too)."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from traintop.commands.cli import main
from helpers import ROOT

SMALL = ["--steps", "30", "--n-hidden", "40", "--depth", "3", "--stats-every", "10"]


pytestmark = pytest.mark.usefixtures("one_thread")


def run_main(argv, capsys):
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def close(a, b, rel):
    return math.isclose(a, b, rel_tol=rel, abs_tol=1e-9)


@pytest.mark.parametrize("engine, rel", [("fast", 1e-4), ("exact", 0.0)])
def test_json_runs_are_solo_documents(capsys, engine, rel):
    common = ["run", "--json", "--eval", "val", "--threads", "1", "--engine", engine] + SMALL
    code, out, err = run_main(common + ["--sweep", "gain=1,5/3", "--sweep", "batchnorm=on,off"],
                              capsys)
    assert code == 0, err
    doc = json.loads(out)
    assert [r["label"] for r in doc["runs"]] == ["gain=1 batchnorm=on", "gain=1 batchnorm=off",
                                                 "gain=5/3 batchnorm=on",
                                                 "gain=5/3 batchnorm=off"]
    assert doc["timing"]["run_steps"] == 4 * 30
    for run, (gain, bn) in zip(doc["runs"], [("1", "--batchnorm"), ("1", "--no-batchnorm"),
                                             ("5/3", "--batchnorm"), ("5/3", "--no-batchnorm")]):
        code, out, err = run_main(common + ["--gain", gain, bn], capsys)
        assert code == 0, err
        solo = json.loads(out)
        assert run["config"] == solo["config"]
        assert run["config"]["gain"] == gain and run["config"]["batchnorm"] == (bn == "--batchnorm")
        assert set(run) == set(solo) | {"label"}
        assert run["steps"] == solo["steps"] == 30 and run["stats_step"] == solo["stats_step"]
        for key in ("first_loss", "last_loss"):
            assert close(run[key], solo[key], rel), key
        assert close(run["eval"]["val"], solo["eval"]["val"], rel)
        for a, b in zip(run["layers"], solo["layers"]):
            assert close(a["std"], b["std"], rel) and close(a["grad_std"], b["grad_std"], rel)
        assert run["update_ratio_log10"].keys() == solo["update_ratio_log10"].keys()
        for k, v in run["update_ratio_log10"].items():
            assert abs(v - solo["update_ratio_log10"][k]) <= max(rel, 1e-12), k
        assert [f["rule"] for f in run["health"]] == [f["rule"] for f in solo["health"]]


def test_text_report_names_each_run(capsys):
    code, out, err = run_main(["run", "--threads", "1", "--engine", "fast", "--eval", "val",
                               "--sweep", "gain=0.5,3"] + SMALL, capsys)
    assert code == 0, err
    assert "=== gain=0.5 ===" in out and "=== gain=3 ===" in out
    assert out.count("first loss") == 2
    table = out[out.index("sweep of 2 runs"):].splitlines()
    assert "1 batched group(s)" in table[0] and "run-steps/s" in table[0]
    assert table[1].split()[:3] == ["run", "last", "loss"] and "val loss" in table[1]
    assert [row.split()[0] for row in table[2:]] == ["gain=0.5", "gain=3"]


@pytest.mark.parametrize("option, fragment", [
    ("--checkpoint", "--checkpoint: not with --sweep yet"),
])
def test_options_a_sweep_refuses(tmp_path, capsys, option, fragment):
    code, out, err = run_main(["run", "--sweep", "gain=1,3", option, str(tmp_path / "x")] + SMALL,
                              capsys)
    assert code == 2 and out == ""
    assert err.startswith(f"traintop: error: {fragment}") and err.count("\n") == 1


def test_recorded_sweep_replays_to_the_runs_documents(tmp_path, capsys):
    """run --sweep --record: replay --json prints each run's document as the
    run printed it (its timing aside: the replay has the recorded one)."""
    path = tmp_path / "sweep.jsonl"
    argv = ["run", "--json", "--eval", "val", "--samples", "2", "--threads", "1",
            "--engine", "fast", "--sweep", "gain=1,5/3", "--sweep", "batchnorm=on,off"] + SMALL
    code, out, err = run_main(argv + ["--record", str(path)], capsys)
    assert code == 0, err
    ran = json.loads(out)
    code, out, err = run_main(["replay", str(path), "--json"], capsys)
    assert code == 0, err
    replayed = json.loads(out)
    assert [r["label"] for r in replayed["runs"]] == [r["label"] for r in ran["runs"]] == [
        "gain=1 batchnorm=on", "gain=1 batchnorm=off", "gain=5/3 batchnorm=on",
        "gain=5/3 batchnorm=off"]
    for a, b in zip(ran["runs"], replayed["runs"]):
        a.pop("timing"), b.pop("timing")
        assert a == b
    assert {r["config"]["batchnorm"] for r in replayed["runs"]} == {True, False}


def test_sweep_record_to_an_unwritable_path_is_one_line(tmp_path, capsys):
    code, out, err = run_main(["run", "--sweep", "gain=1,3", "--record",
                               str(tmp_path / "missing" / "x.jsonl")] + SMALL, capsys)
    assert code == 2 and out == ""
    assert err.startswith("traintop: error: --record") and err.count("\n") == 1


BAD = [
    (["--sweep", "depth=1,2"], "unknown key 'depth'"),
    (["--sweep", "gain="], "empty value"),
    (["--sweep", "gain=1,,3"], "empty value"),
    (["--sweep", "gain=1,3,1"], "1 is given twice"),
    (["--sweep", "batchnorm=on,off,on"], "on is given twice"),
    (["--sweep", "gain"], "expected KEY=V1,V2"),
    (["--sweep", "gain=1,zero"], "--gain"),
    (["--sweep", "batchnorm=on,maybe"], "batchnorm takes on or off"),
    (["--sweep", "lr=0.1,-1"], "--lr: must be finite and > 0"),
    (["--sweep", "gain=1,2,3,4,5", "--sweep", "lr=0.1,0.2,0.3,0.4"], "20 runs; at most 16"),
]


@pytest.mark.parametrize("argv, fragment", BAD)
def test_bad_sweep_run(capsys, argv, fragment):
    code, out, err = run_main(["run"] + SMALL + argv, capsys)
    assert code == 2 and out == ""
    assert err.startswith("traintop: error: --sweep") and err.count("\n") == 1
    assert fragment in err


@pytest.mark.parametrize("argv, fragment", [BAD[0], BAD[4], BAD[-1]])
def test_bad_sweep_app(argv, fragment):
    """`traintop` (the app) refuses before its screen opens."""
    proc = subprocess.run([sys.executable, "-m", "traintop"] + argv, cwd=ROOT,
                          capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("traintop: error: --sweep") and proc.stderr.count("\n") == 1
    assert fragment in proc.stderr


def test_resume_is_refused_with_a_sweep_before_its_file_is_read(tmp_path, capsys):
    junk = tmp_path / "not-a-checkpoint"
    junk.write_text("x\n")
    code, out, err = run_main(["run", "--sweep", "gain=1,2", "--resume", str(junk)] + SMALL,
                              capsys)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert err.startswith("traintop: error: --resume: not with --sweep")
