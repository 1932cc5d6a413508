"""`traintop replay FOLDER --json` and `traintop attach FOLDER --json` on a
folder of mixed recordings: `{"runs": [...]}`, each run's path, label and
the very document `replay --json` prints for that recording alone."""

from __future__ import annotations

import json

import pytest

from traintop.commands import cli
from folder_runs import mixed_folder, watched


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    root = tmp_path_factory.mktemp("mixed")
    return root, mixed_folder(root)


def printed(capsys, *argv) -> dict:
    capsys.readouterr()
    assert cli.main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def test_replay_json_of_a_folder(mixed, capsys):
    root, losses = mixed
    doc = printed(capsys, "replay", str(root), "--json")
    runs = doc["runs"]
    assert [r["path"] for r in runs] == [str(root / "a" / "small.jsonl"),
                                         str(root / "b" / "deep.jsonl"),
                                         str(root / "lecture.jsonl")]
    assert [r["label"] for r in runs] == ["a/small", "b/deep", "lecture"]
    for run in runs:        # each: the document replay --json prints for it alone
        alone = printed(capsys, "replay", run["path"], "--json")
        assert {k: v for k, v in run.items() if k not in ("path", "label")} == alone
    # the figures are the runs' own: watch()'s losses, the lecture run's 30 steps
    assert [r["steps"] for r in runs] == [20, 20, 30]
    for run in runs[:2]:
        assert run["last_loss"] == pytest.approx(losses[run["label"]][-1], rel=1e-6)
        assert run["first_loss"] == pytest.approx(losses[run["label"]][0], rel=1e-6)
    # different models in one folder: each run's own layers and weights
    assert [len(r["layers"]) for r in runs[:2]] == [1, 3]
    assert [r["weights"][0]["shape"] for r in runs[:2]] == [[8, 6], [12, 6]]

    # several PATHs: the same documents, the labels of what differs among them
    two = printed(capsys, "replay", str(root / "a" / "small.jsonl"),
                  str(root / "lecture.jsonl"), "--json")["runs"]
    assert [r["label"] for r in two] == ["a/small", "lecture"]
    assert two[1] == {**runs[2], "label": "lecture"}

    # attach --json on the finished folder folds the same documents
    followed = printed(capsys, "attach", str(root), "--json", "--quiet", "1")["runs"]
    assert followed == runs


def test_tune_trials_and_ranks_in_json(tmp_path, capsys):
    from folder_runs import tune_trial
    tune_trial(tmp_path / "exp", "train_00000_0", {"lr": 0.1}, steps=4)
    tune_trial(tmp_path / "exp", "train_00001_1", {"lr": 0.3}, steps=4)
    runs = printed(capsys, "replay", str(tmp_path / "exp"), "--json")["runs"]
    assert [(r["label"], r["trial"], r["trial_config"]) for r in runs] == [
        ("lr=0.1", "train_00000_0", {"lr": 0.1}), ("lr=0.3", "train_00001_1", {"lr": 0.3})]
    # torchrun's per-rank files ("{rank}" in the path; the rank in the header's
    # meta, here written as watch() writes it under torch.distributed)
    for rank in (0, 1):
        watched(tmp_path / "job" / f"rank{rank}.jsonl", steps=4, seed=rank, meta={"rank": rank})
    runs = printed(capsys, "replay", str(tmp_path / "job"), "--json")["runs"]
    assert [r["label"] for r in runs] == ["rank=0", "rank=1"]


def test_a_folder_with_no_recording_is_one_line(tmp_path, capsys):
    (tmp_path / "notes.jsonl").write_text("{}\n")
    assert cli.main(["replay", str(tmp_path), "--json"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"traintop: error: {tmp_path}: no traintop recordings found"
    assert cli.main(["replay", str(tmp_path / "nope"), str(tmp_path)]) == 2
    assert "nope: no such file or folder" in capsys.readouterr().err


def test_the_overview_folds_what_json_prints(mixed):
    """The app's runs (FolderSource, each recording read whole) hold the
    figures and findings `replay --json` prints for each recording."""
    from traintop.commands.replay import summary
    from traintop.engine.recording.folder_source import FolderSource
    from traintop.engine.viewer.sweep_state import SweepState

    root, _ = mixed
    source = FolderSource([str(root)])
    source.start()
    state = SweepState()
    while not source.loaded:
        for message in source.poll(limit=7):     # small polls: blocks cut anywhere
            state.apply(message)
    assert state.labels == ("a/small", "b/deep", "lecture") and not source.catching_up
    for run, path in zip(state.runs, source.run_paths()):
        run.meta = source.files[source.run_paths().index(path)].found.meta
        assert run.report() == summary(path)
    assert [f.message for f in state.runs[1].findings()] == \
        [h["message"] for h in summary(root / "b" / "deep.jsonl")["health"]]
    source.close()


@pytest.mark.parametrize("follow", [False, True])
def test_old_and_new_versions_fold_as_json_prints(tmp_path, follow):
    """A version 1 and a version 2 recording in one folder, read whole
    (replay) or followed (attach), snapshots decoded only where handed on:
    each run ends with what `replay --json` prints for its file."""
    import shutil
    import time
    from helpers import ROOT
    from traintop.commands.replay import summary
    from traintop.engine.recording.folder_source import FolderSource
    from traintop.engine.viewer.sweep_state import SweepState

    for name in ("v1_small.jsonl", "v2_small.jsonl"):
        shutil.copy(ROOT / "tests" / "fixtures" / name, tmp_path / name)
    source = FolderSource([str(tmp_path)], follow=follow, quiet_after=30)
    source.start()
    state = SweepState()
    deadline = time.monotonic() + 20
    while source.catching_up or not all(s.last is not None for s in state.runs):
        assert time.monotonic() < deadline
        for message in source.poll(limit=5):
            state.apply(message)
    assert state.labels == ("v1_small", "v2_small")
    for run, f in zip(state.runs, source.files):
        run.meta = f.found.meta
        assert run.stats is not None and run.stats.step == 120
        assert run.report() == summary(f.found.path)
    source.close()


def test_a_sweep_recording_in_a_folder(tmp_path, capsys):
    """A `--sweep` recording beside a watch() one: one run per run of the
    sweep in the view (its file's label, then its own), its own `runs` in --json."""
    from traintop.commands.replay import summary
    from traintop.engine.recording.folder_source import FolderSource
    from traintop.engine.viewer.sweep_state import SweepState

    assert cli.main(["run", "--engine", "fast", "--sweep", "gain=1,5/3", "--steps", "20",
                     "--n-hidden", "16", "--stats-every", "10", "--json",
                     "--record", str(tmp_path / "sweep.jsonl")]) == 0
    watched(tmp_path / "small.jsonl", steps=5)
    runs = printed(capsys, "replay", str(tmp_path), "--json")["runs"]
    assert [r["label"] for r in runs] == ["small", "sweep"]
    assert runs[1]["runs"] == summary(tmp_path / "sweep.jsonl")["runs"]
    assert [r["label"] for r in runs[1]["runs"]] == ["gain=1", "gain=5/3"]
    for follow in (False, True):
        source = FolderSource([str(tmp_path)], follow=follow, quiet_after=30)
        source.start()
        state = SweepState()
        while source.catching_up or len(state.runs) < 3 or any(
                s.last is None for s in state.runs):
            for message in source.poll():
                state.apply(message)
        assert state.labels == ("small", "sweep gain=1", "sweep gain=5/3")
        assert [s.step for s in state.runs] == [5, 20, 20]
        source.close()
    assert printed(capsys, "attach", str(tmp_path), "--json", "--quiet", "1")["runs"] == runs
