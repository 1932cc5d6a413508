"""`traintop bench` runs and reports what it documents (it asserts no timings).

One bench in its own process (`traintop bench --json`, every row, the scaling
table and the sweep rows), read by the tests of its document and of its text;
the --threads override runs in this process without the scaling table and
the sweep rows (each bench compiles its graphs: tens of seconds)."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch

from helpers import ROOT, traintop_here
from traintop.commands.bench import format_text, main

# The main rows and the sweep on the stack every compile test uses (n_hidden 40,
# depth 5; the sweep of bench_sweep.GAINS is test_sweep_batched's auto sweep):
# conftest runs those tests first, so inductor's and traintop's caches hold
# the graphs and packages this bench would compile (~65 s more on a cold
# cache; a smaller stack compiles no faster: the cost is per graph, not size).
TINY = ["--steps", "4", "--rounds", "2", "--warmup", "1", "--scaling-steps", "1",
        "--n-hidden", "40", "--depth", "5"]


def bench(*args: str, one_core: bool = False) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "traintop", "bench", *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          preexec_fn=_one_core if one_core else None)


def _one_core() -> None:
    """The bench on one core: the threads it chooses (a thread per idle core)
    are then 1 whatever the machine's load, as under xdist in the tests that
    compiled its graphs and packages (keyed by the thread count)."""
    import os
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


@pytest.fixture(scope="module")
def bench_doc() -> dict:
    proc = bench("--json", *TINY, one_core=True)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_bench_json_has_every_row_and_the_scaling_table(bench_doc):
    doc = bench_doc
    assert doc["device"] == "cpu" and doc["threads"] >= 1 and doc["threads_chosen"] is True
    assert (doc["config"]["n_hidden"], doc["config"]["depth"]) == (40, 5)   # the stack asked for
    rows = {r["key"]: r for r in doc["rows"]}
    assert list(rows) == ["auto_stats100", "auto_stats1", "fast_stats100", "fast_stats1", "compiled_stats100",
                          "compiled_stats1", "exact_stats100", "exact_stats1", "plain", "lecture"]
    assert [rows[k]["path"] for k in rows] == ["auto", "auto", "fast", "fast", "compiled", "compiled", "exact",
                                               "exact", "baseline", "baseline"]
    assert set(doc["first_step_s"]) == {"auto_stats100", "auto_stats1", "compiled_stats100",
                                         "compiled_stats1"}
    assert all(s > 0 for s in doc["first_step_s"].values())
    assert rows["fast_stats1"]["stats_every"] == 1 and rows["exact_stats100"]["stats_every"] == 100
    plain = rows["plain"]["steps_per_sec"]
    for r in rows.values():
        assert r["steps"] == 4  # 2 rounds of 2
        assert r["cpu_ms_per_step"] > 0 and r["cpu_ratio_to_plain"] > 0
        assert r["steps_per_sec"] > 0
        assert math.isclose(r["ms_per_step"], 1000 / r["steps_per_sec"])
        assert math.isclose(r["ratio_to_plain"], r["steps_per_sec"] / plain)
        lo, hi = r["spread"]
        assert lo <= r["steps_per_sec"] <= hi
    assert rows["plain"]["ratio_to_plain"] == 1.0
    assert [(s["n_hidden"], s["depth"]) for s in doc["scaling"]] == [
        (100, 5), (200, 5), (400, 5), (800, 5), (100, 10), (100, 20)]
    for s in doc["scaling"]:
        assert s["threads"] >= 1 and s["peak_mb"] > 0
        for key in ("fast_stats100", "exact_stats100", "plain"):
            assert s[key]["steps_per_sec"] > 0
    assert doc["peak_mb"] > 0
    sweep = doc["sweep"]["rows"]
    assert [r["label"] for r in sweep] == ["engine fast", "engine auto (default)"]
    for r in sweep:
        assert r["sweep_threads"] >= 1 and r["solo_threads"] == 1   # the lecture's size
        assert math.isclose(r["speedup"], r["sweep_run_steps_per_sec"]
                            / r["solos_run_steps_per_sec"])


def test_bench_text_has_the_scaling_table_and_the_sweep_rows(bench_doc):
    out = format_text(bench_doc)      # what `traintop bench` without --json prints
    assert "(chosen by model size)" in out
    assert "engine fast, full stats every step" in out
    assert "compiled_stats100: first 2 steps (torch.compile, untimed)" in out
    assert "auto_stats100: background compile ready, waited" in out
    assert "scaling (full stats every 100 steps)" in out
    assert [line.split()[:2] for line in out.splitlines()
            if line.split()[:1] in (["100"], ["200"], ["400"], ["800"])] == [
        ["100", "5"], ["200", "5"], ["400", "5"], ["800", "5"], ["100", "10"], ["100", "20"]]
    assert "sweep (" in out and "engine auto (default)" in out
    assert out.rstrip().splitlines()[-1].startswith("peak memory: ")


def test_bench_text_with_threads_override(capsys):
    before = torch.get_num_threads()
    try:
        assert main(["--threads", "1", "--no-scaling", "--no-sweep", *TINY]) == 0
    finally:
        torch.set_num_threads(before)
    out = capsys.readouterr().out
    assert "1 intra-op thread(s) (--threads)" in out
    assert "plain torch.nn loop, no stats" in out and "1.00x" in out
    assert "engine fast, full stats every step" in out
    assert "engine compiled, full stats every 100  compiled" in out
    assert "compiled_stats100: first 2 steps (torch.compile, untimed)" in out
    assert "auto_stats100: background compile ready, waited" in out
    assert "scaling" not in out and "sweep (" not in out


def test_bench_bad_options_are_one_line_errors(capsys):
    # through the CLI's own entry, in this process (two processes more proved
    # nothing the last one here does not: the exit code and stderr of a spawn)
    for option in ("--steps", "--depth"):
        done = traintop_here(capsys, "bench", option, "0")
        assert done.returncode == 2
        assert done.stdout == "" and done.stderr == f"traintop: error: {option}: must be >= 1, got 0\n"
    proc = bench("--device", "tpu", "--no-scaling", *TINY)
    assert proc.returncode == 2
    assert "--device" in proc.stderr and "Traceback" not in proc.stderr
