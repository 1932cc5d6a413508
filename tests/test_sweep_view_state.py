"""A sweep's messages through the stream, the state and `replay --json`,
headless: run tags survive, each run's report is what a run of its own gives."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout

import pytest

from traintop.commands import replay
from traintop.data.errors import InputError
from traintop.engine.recording import format as stream_format, opener
from traintop.engine.export.tables import write_csv
from traintop.engine.feed.messages import RunStarted, Status, Steps, Sweep
from traintop.engine.recording.replay_source import ReplaySource
from traintop.engine.viewer.run_state import RunState
from traintop.engine.viewer.sweep_state import SweepState
from tui_recordings import record
from tui_sweep_runs import formula_sweep, trained_sweep


@pytest.fixture(scope="module")
def trained():
    return trained_sweep()


def test_sweep_recording_round_trips_every_run(tmp_path, trained):
    _, messages = trained
    path = record(messages, tmp_path / "sweep.jsonl")
    first = json.loads(path.read_text().splitlines()[0])
    assert first["version"] == stream_format.SWEEP_VERSION == 3
    assert first["sweep"] == {"labels": ["gain=1", "gain=5/3"], "keys": ["gain"]}
    back = opener.load(path).messages
    assert back[0] == messages[0]                        # the Sweep, from the header
    assert isinstance(back[1], RunStarted) and back[1].run == 0
    # Every run's steps come back whole, tagged, bit for bit.
    for run in (0, 1):
        wrote = [r for m in messages if isinstance(m, Steps) and m.run == run for r in m.results]
        read = [r for m in back if isinstance(m, Steps) and m.run == run for r in m.results]
        assert [r.step for r in read] == list(range(1, 121))
        assert [(r.loss, r.update_ratio_log10) for r in read] == \
            [(r.loss, r.update_ratio_log10) for r in wrote]
        assert [r.stats for r in read if r.stats] == [r.stats for r in wrote if r.stats]
    assert {m.run for m in back if isinstance(m, Status)} == {0, 1}


def test_an_older_reader_refuses_a_sweep(tmp_path, trained, monkeypatch):
    path = record(trained[1], tmp_path / "sweep.jsonl")
    monkeypatch.setattr(stream_format, "READS", (1, 2))   # what traintop before sweeps reads
    with pytest.raises(InputError, match=r"sweep.jsonl:1: stream format version 3 is newer"):
        opener.load(path)


def test_one_run_is_still_version_2(tmp_path, trained):
    _, messages = trained
    solo = [m for m in messages[1:] if getattr(m, "run", 0) == 0]
    path = record(solo, tmp_path / "solo.jsonl")
    first = json.loads(path.read_text().splitlines()[0])
    assert first["version"] == 2 and "sweep" not in first
    assert '"r":' not in path.read_text()


def test_state_dispatches_by_run_and_reports_each_as_a_solo_run(trained):
    sweep, messages = trained
    state = SweepState()
    for m in messages:
        state.apply(m)
    assert state.is_sweep and state.labels == ("gain=1", "gain=5/3")
    doc = state.report()
    assert list(doc) == ["runs"] and len(doc["runs"]) == 2
    for k, trainer in enumerate(sweep.trainers):
        solo = RunState()
        for m in messages[1:]:
            if getattr(m, "run", 0) == k:
                solo.apply(m if k == 0 else _as_run0(m))
        assert doc["runs"][k] == {"label": state.labels[k], **solo.report()}
        assert doc["runs"][k]["config"]["gain"] == ("1", "5/3")[k]
        assert doc["runs"][k]["steps"] == trainer.steps_done == 120
        # The state's figures are the trainer's own.
        assert state.runs[k].last.loss == trainer.last.loss
        assert doc["runs"][k]["last_loss"] == trainer.last.loss
    # The runs differ: gain 5/3 is not gain 1.
    assert state.runs[0].last.loss != state.runs[1].last.loss


def _as_run0(message):
    import dataclasses
    return dataclasses.replace(message, run=0)


def test_replay_json_prints_runs(tmp_path, trained):
    _, messages = trained
    path = record(messages, tmp_path / "sweep.jsonl.gz")
    live = SweepState()
    for m in messages:
        live.apply(m)
    live.meta = {"data": "small", "writer": "tests"}   # the recording's header meta
    out = io.StringIO()
    with redirect_stdout(out):
        assert replay.main([str(path), "--json"]) == 0
    printed = json.loads(out.getvalue())
    assert printed == json.loads(json.dumps(live.report()))
    assert [r["config"]["gain"] for r in printed["runs"]] == ["1", "5/3"]


def test_replay_source_moves_every_run_along_one_timeline(tmp_path):
    path = record(formula_sweep(steps=300), tmp_path / "f.jsonl")
    source = ReplaySource(path, at_end=False)
    assert source.wait_loaded(10)
    # One mark per snapshot step (1, 100, 200, 300), not one per run.
    assert source.snapshot_steps == [1, 100, 200, 300]
    state = SweepState()
    source.seek(2)
    for m in source.poll():
        state.apply(m)
    assert [s.stats.step for s in state.runs] == [200] * 4
    assert [s.step for s in state.runs] == [200] * 4
    source.close()


def test_export_csv_has_a_sweep_column(tmp_path, trained):
    path = record(trained[1], tmp_path / "sweep.jsonl")
    write_csv(opener.load(path), tmp_path / "csv")
    lines = (tmp_path / "csv" / "steps.csv").read_text().splitlines()
    assert lines[0] == "sweep,run,step,loss,log10_loss,lr,grad_norm"
    rows = [line.split(",") for line in lines[1:]]
    assert len(rows) == 240
    assert {r[0] for r in rows} == {"gain=1", "gain=5/3"}
    assert [int(r[2]) for r in rows if r[0] == "gain=5/3"] == list(range(1, 121))


def test_a_message_for_an_unknown_run_is_refused():
    state = SweepState()
    state.apply(Sweep(("gain=1", "gain=3"), ("gain",)))
    with pytest.raises(ValueError, match="run 2"):
        state.apply(Steps((), run=2))


def test_attach_json_folds_every_run(tmp_path, trained):
    from traintop.commands.attach import follow_to_end
    from traintop.engine.recording.follow_source import FollowSource

    path = record(trained[1], tmp_path / "sweep.jsonl")
    source = FollowSource(path, quiet_after=1.0, jump=False)
    source.start()
    try:
        state = follow_to_end(source, sleep=lambda s: None)
    finally:
        source.close()
    assert source.finished                      # every run's last Status said finished
    assert state.report() == replay.summary(str(path))
    assert [r["steps"] for r in state.report()["runs"]] == [120, 120]


def test_export_tensorboard_one_log_per_run(tmp_path, trained):
    from traintop.commands import cli
    from traintop.engine.export.tensorboard import tensorboard_available

    if not tensorboard_available():
        pytest.skip("tensorboard is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, messages = trained
    path = record(messages, tmp_path / "sweep.jsonl")
    out = tmp_path / "tb"
    assert cli.main(["export", str(path), "--tensorboard", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["0-gain=1", "1-gain=5_3"]
    for k, name in enumerate(("0-gain=1", "1-gain=5_3")):
        acc = EventAccumulator(str(out / name), size_guidance={"scalars": 0})
        acc.Reload()
        wrote = [r for m in messages if isinstance(m, Steps) and m.run == k for r in m.results]
        loss = acc.Scalars("loss")
        assert [e.step for e in loss] == list(range(1, 121))
        assert [e.value for e in loss] == pytest.approx([r.loss for r in wrote], rel=1e-6)


@pytest.mark.parametrize("block", [1, 7, 10_000])
def test_replay_json_of_a_sweep_whatever_the_block(tmp_path, trained, monkeypatch, block):
    path = record(trained[1], tmp_path / "sweep.jsonl")
    whole = replay.summary(str(path))
    monkeypatch.setattr(replay, "COALESCE_STEPS", block)
    assert replay.summary(str(path)) == whole
    blocks = list(replay._coalesced(opener.read(path)))
    # Each block holds one run's steps, in order, never two runs mixed.
    for run in (0, 1):
        steps = [r.step for m in blocks if isinstance(m, Steps) and m.run == run
                 for r in m.results]
        assert steps == list(range(1, 121))
    per_run = [sum(isinstance(m, Steps) and m.run == run for m in blocks) for run in (0, 1)]
    if block == 10_000:
        assert per_run == [1, 1]        # a run's 120 steps fold as one block
    else:
        assert min(per_run) > 1


def test_a_small_plots_title_fits_it():
    """plotext draws no title wider than its plot: a long label gives way to
    its values, then is cut, so every small multiple says which run it is."""
    from traintop.tui.sweep_plots import subplot_title
    assert subplot_title("gain=1 batchnorm=on", 3000, 40) == "gain=1 batchnorm=on · step 3,000"
    assert subplot_title("gain=1 batchnorm=on", 3000, 26) == "1 on · step 3,000"
    assert subplot_title("gain=5/3 batchnorm=off", None, 14) == "5/3 off · wai…"
