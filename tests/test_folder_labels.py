"""Which recordings a folder holds, and labels that say what differs:
the rank (the header's meta), a Ray Tune trial's config (params.json),
else the shortest distinguishing part of the path."""

from __future__ import annotations

from pathlib import Path

import pytest

from traintop.data.errors import InputError
from traintop.engine.recording.folder import (candidates, discover, is_folder_args, labels,
                                              path_parts)
from folder_runs import tune_trial, watched


def test_the_shortest_distinguishing_part_of_the_path():
    assert path_parts([Path("/r/a/seed1/run.jsonl"), Path("/r/a/seed2/run.jsonl")]) == \
        ["seed1", "seed2"]
    assert path_parts([Path("/r/x.jsonl"), Path("/r/y.jsonl.gz")]) == ["x", "y"]
    # different depths: what is left once the shared start is off
    assert path_parts([Path("/r/x/run.jsonl"), Path("/r/x/y/run.jsonl")]) == ["run", "y/run"]
    assert path_parts([Path("/r/only.jsonl")]) == ["only"]


def test_ranks_tune_configs_and_paths(tmp_path):
    job = tmp_path / "job"
    for rank in (0, 1, 10, 2):       # natural order: rank10 after rank2
        watched(job / f"rank{rank}.jsonl", steps=4, meta={"rank": rank})
    found, left = discover([str(job)])
    assert [f.path.name for f in found] == ["rank0.jsonl", "rank1.jsonl", "rank2.jsonl",
                                            "rank10.jsonl"]
    assert labels(found) == ["rank=0", "rank=1", "rank=2", "rank=10"] and not left

    exp = tmp_path / "exp"
    tune_trial(exp, "train_00000_0_lr=0.1", {"lr": 0.1, "gain": 1.0, "seed": 3}, steps=4)
    tune_trial(exp, "train_00001_1_lr=0.05", {"lr": 0.05, "gain": 1.0, "seed": 3}, steps=4)
    found, left = discover([str(exp)])
    assert [f.trial for f in found] == ["train_00000_0_lr=0.1", "train_00001_1_lr=0.05"]
    assert found[0].config == {"lr": 0.1, "gain": 1.0, "seed": 3}
    assert labels(found) == ["lr=0.1", "lr=0.05"]       # only what differs
    assert left == []     # result.json is no .jsonl; nothing else was a candidate

    # Same config in two folders: the path tells them apart.
    watched(tmp_path / "a" / "seed1" / "run.jsonl", steps=3)
    watched(tmp_path / "a" / "seed2" / "run.jsonl", steps=3)
    (tmp_path / "a" / "notes.jsonl").write_text('{"not": "a recording"}\n')
    found, left = discover([str(tmp_path / "a")])
    assert labels(found) == ["seed1", "seed2"]
    assert [p.name for p in left] == ["notes.jsonl"]

    # Two jobs of ranks: rank, then the folder that differs.
    found, _ = discover([str(job / "rank0.jsonl"), str(job / "rank1.jsonl"),
                         str(tmp_path / "a")])
    assert labels(found) == ["rank=0", "rank=1", "seed1", "seed2"]


def test_meta_config_and_what_is_a_folder_view(tmp_path):
    watched(tmp_path / "one.jsonl", steps=3, meta={"config": {"wd": 0.01}})
    watched(tmp_path / "two.jsonl", steps=3, meta={"config": {"wd": 0.1}})
    found, _ = discover([str(tmp_path)])
    assert labels(found) == ["wd=0.01", "wd=0.1"]
    assert is_folder_args([str(tmp_path)])
    assert is_folder_args([str(tmp_path / "one.jsonl"), str(tmp_path / "two.jsonl")])
    assert not is_folder_args([str(tmp_path / "one.jsonl")])
    assert not is_folder_args([str(tmp_path / "later.jsonl")])   # attach: not there yet
    with pytest.raises(InputError, match="nothing.jsonl: no such file or folder"):
        candidates([str(tmp_path / "nothing.jsonl")])
