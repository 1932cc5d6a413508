"""`traintop run` reports how it ran: wall time, steps/s, the path and
threads, the history's memory and the peak RSS; a replay reports the same."""

from __future__ import annotations

import json

import traintop.commands.cli as cli
from traintop.engine.report import timing_text

RUN = ["run", "--steps", "120", "--n-hidden", "16", "--depth", "2"]


def test_run_json_reports_its_timing_and_replay_repeats_it(tmp_path, capsys):
    path = tmp_path / "run.jsonl"
    assert cli.main([*RUN, "--json", "--record", str(path)]) == 0
    ran = json.loads(capsys.readouterr().out)
    t = ran["timing"]
    # the default engine; a run of 120 steps is too short to compile for
    assert t["engine"] == "auto" and t["engine_at_end"] == "fast"
    assert t["threads"] >= 1 and t["steps"] == 120
    # wall_s is rounded to 1 ms, steps_per_sec to 0.1
    assert t["wall_s"] > 0
    assert abs(t["steps_per_sec"] * t["wall_s"] - 120) <= t["steps_per_sec"] * 5e-4 + 0.05
    assert 0 < t["history_mb"] < 1 and t["peak_rss_mb"] > 10  # 120 one-step buckets
    assert cli.main(["replay", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["timing"] == t


def test_resumed_run_counts_only_the_steps_it_ran(tmp_path, capsys):
    ckpt = tmp_path / "ck.pt"
    assert cli.main([*RUN, "--checkpoint", str(ckpt)]) == 0
    capsys.readouterr()
    assert cli.main(["run", "--steps", "150", "--resume", str(ckpt), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["timing"]["steps"] == 30


def test_timing_line_of_the_text_report(capsys):
    assert cli.main(RUN) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("ran 120 steps in ") and "engine auto: fast at the end"
               in line for line in lines)
    line = timing_text({"steps": 200000, "wall_s": 179.25, "steps_per_sec": 1115.8,
                        "engine": "fast", "threads": 1, "history_mb": 1.05,
                        "peak_rss_mb": 254.8})
    assert line == ("ran 200,000 steps in 2 min 59.2 s (1,116 steps/s), engine fast, "
                    "1 thread(s); history 1.05 MB, peak RSS 255 MB")
