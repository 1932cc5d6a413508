"""Recordings at scale: block folds equal step-by-step folds, a replay opens
before its file is read, attach joins a long file near its end."""

from __future__ import annotations

import json

import numpy as np

from traintop.engine.recording import opener, replay_index
from traintop.engine.feed.messages import Event, RunStarted, Status, Steps
from traintop.engine.recording.follow_source import FollowSource
from traintop.engine.recording.recorder import Recorder
from traintop.engine.recording.replay_source import ReplaySource
from traintop.engine.viewer.run_state import RunState
from traintop.engine.recording.opener import load
from traintop.engine.results import RunInfo, StepResult
from traintop.engine.training.history import History

INFO = RunInfo({"lr": 0.1, "gain": "5/3", "batchnorm": True}, "ab", ("w", "v"),
               ((2, 2), (2,)), ("Linear",), 1.0)


def test_history_block_adds_equal_step_adds():
    rng = np.random.default_rng(0)
    one, many = History(capacity=64), History(capacity=64)
    for h in (one, many):
        h.start_run({}, 3)
    loss, ratios = rng.normal(size=5000), rng.normal(size=(5000, 3))
    loss[17], ratios[100, 1] = np.nan, np.inf
    lr = np.full(5000, 0.1)
    for i in range(5000):
        one.add(loss[i], lr[i], tuple(ratios[i]))
    i = 0
    while i < 5000:                      # blocks of any length, across bucket edges
        k = int(rng.integers(1, 300))
        many.add_many(loss[i:i + k], lr[i:i + k], ratios[i:i + k])
        i += k
    assert one.tick == many.tick == 5000 and many.log10_loss.stride == 128
    for a, b in zip([one.log10_loss, one.lr, one.loss_windows, *one.ratios],
                    [many.log10_loss, many.lr, many.loss_windows, *many.ratios]):
        (ta, va), (tb, vb) = a.points(), b.points()
        assert ta == tb and np.allclose(va, vb, rtol=1e-12, equal_nan=True)


def _long_recording(path, steps: int, every: int = 50, lr_change: int | None = None):
    """A synthetic run: a snapshot-free StepResult per step, plus an lr event."""
    from traintop.engine.recording.writer import StreamWriter

    writer = StreamWriter(path, INFO)
    lr = 0.1
    for start in range(1, steps + 1, 100):
        block = []
        for step in range(start, min(steps, start + 99) + 1):
            if step == lr_change:
                lr = 0.01
            block.append(StepResult(step, 2.0 + 1 / step, lr, (-3.0 + step * 1e-6, -2.5)))
        writer.write(Steps(tuple(block)))
        if lr_change and start <= lr_change < start + 100:
            writer.write(Event("lr", lr_change, "lr 0.1 -> 0.01", {"old": 0.1, "lr": 0.01}))
    writer.close()
    return path


def test_replay_shows_its_head_before_the_file_is_read(tmp_path, monkeypatch):
    path = _long_recording(tmp_path / "long.jsonl", 20_000, lr_change=12_345)
    monkeypatch.setattr(opener, "HEAD_BYTES", 1)      # the head: the header only
    monkeypatch.setattr(replay_index, "HEAD_MAX", 1)
    monkeypatch.setattr(opener, "CHUNK", 4096)         # the rest in many reads
    gate = __import__("threading").Event()
    read_chunk = replay_index.ReplayIndex.read_chunk

    def held(self):                                           # the worker waits for the test
        if self.decoder.header is not None:
            gate.wait(10)
        read_chunk(self)

    monkeypatch.setattr(replay_index.ReplayIndex, "read_chunk", held)
    source = ReplaySource(path)
    first = source.poll()
    assert isinstance(first[0], RunStarted) and not source.loaded
    head, tail = source.position()
    assert tail.startswith("reading ") and "% of " in tail and "MB" in tail
    gate.set()
    assert source.wait_loaded(30)
    state = RunState()
    for m in first:
        state.apply(m)
    while batch := source.poll(limit=50):
        for m in batch:
            state.apply(m)
            if isinstance(m, Status):
                # consistent at every moment: the status names the last step delivered
                assert m.step == state.last.step and m.lr == state.last.lr
    assert state.step == 20_000 and state.lr == 0.01
    assert source.position()[1].startswith("end of recording")
    assert sum(len(m.results) for m in load(path).messages if isinstance(m, Steps)) == 20_000
    source.close()


def test_replay_head_is_the_run_before_its_steps(tmp_path, monkeypatch):
    """head(): the header and the events before the first step, for a
    viewer's first frame; the worker reads past the head only once the viewer
    polls, and poll() goes on after the head."""
    path = _long_recording(tmp_path / "long.jsonl", 3_000)
    monkeypatch.setattr(opener, "HEAD_BYTES", 1)      # the head: the first snapshot-free
    monkeypatch.setattr(replay_index, "HEAD_MAX", 1)        # chunk only
    monkeypatch.setattr(opener, "CHUNK", 4096)
    source = ReplaySource(path)
    read = source.read_bytes
    head = source.head()
    assert [type(m) for m in head] == [RunStarted] and head[0].info == INFO
    assert source.head() == []                               # given once
    assert source.read_bytes == read and not source.loaded   # the worker waits for a poll
    assert source.wait_loaded(30)
    state = RunState()
    for m in head:
        state.apply(m)
    while batch := source.poll():
        assert not any(isinstance(m, RunStarted) for m in batch)
        for m in batch:
            state.apply(m)
    assert state.step == 3_000 and state.runs == 1
    source.close()


def test_attach_joins_a_long_file_near_its_end(tmp_path, monkeypatch):
    from traintop.engine.results import Histogram, LayerStats, StatsSnapshot

    path = tmp_path / "live.jsonl"
    hist = Histogram(-1.0, 1.0, (0.25, 0.75))
    layer = LayerStats(index=2, kind="Tanh", mean=0.0, std=0.5, saturation_pct=1.0, dead=0,
                       units=4, grad_mean=0.0, grad_std=1e-3, hist=hist, grad_hist=hist)
    snap = lambda step: StatsSnapshot(step, 2.0, 0.1, (layer,), (), (-3.0, -2.5))  # noqa: E731
    with Recorder(path) as rec:
        rec.consume(RunStarted(INFO))
        for step in range(1, 3001):
            rec.step(StepResult(step, 2.0, 0.1, (-3.0, -2.5),
                                snap(step) if step % 1000 == 0 else None))
    size = path.stat().st_size
    monkeypatch.setattr(FollowSource, "JUMP_BYTES", size // 3)
    source = FollowSource(path)
    source.start()
    got = source.poll(limit=100_000)
    assert isinstance(got[0], RunStarted)
    note = next(m for m in got if isinstance(m, Event) and m.kind == "note")
    assert "attached near the end" in note.text and note.data["skipped_bytes"] > size // 2
    steps = [r.step for m in got if isinstance(m, Steps) for r in m.results]
    assert steps[0] <= 3000 and steps[-1] == 3000 and len(steps) < 1000
    assert any(r.stats is not None and r.step == 3000
               for m in got if isinstance(m, Steps) for r in m.results)
    source.close()
    whole = FollowSource(path, jump=False)                   # --json reads every step
    whole.start()
    assert [r.step for m in whole.poll(limit=100_000) if isinstance(m, Steps)
            for r in m.results] == list(range(1, 3001))
    whole.close()
    assert json.loads(path.read_text().splitlines()[0])["version"] == 2


def test_replay_json_folds_coalesced_blocks_to_the_same_report(tmp_path, monkeypatch):
    """replay --json folds runs of Steps lines as one block; the report is the
    one a line-by-line fold gives, across an lr change, NaN-free and with a restart."""
    from traintop.commands import replay
    from traintop.engine.config import TrainConfig
    from traintop.engine.feed import events
    from traintop.engine.training.build import build_trainer

    path = tmp_path / "run.jsonl"
    trainer = build_trainer(TrainConfig(steps=1500, stats_every=250), engine="fast", threads=1)
    recorder = Recorder(path)
    recorder.consume(RunStarted(trainer.info()))
    for _ in range(700):
        recorder.step(trainer.step())
    old = trainer.lr
    trainer.set_lr(0.05)
    recorder.consume(events.lr_changed(trainer.steps_done, old, trainer.lr))
    for _ in range(300):
        recorder.step(trainer.step())
    why = trainer.restart(gain="3")
    recorder.consume(RunStarted(trainer.info(), why))
    for _ in range(1500):
        recorder.step(trainer.step())
    recorder.close(Status(trainer.steps_done, trainer.lr, False, True, 100.0))

    reports = {}
    for size in (1, 7, 10_000):
        monkeypatch.setattr(replay, "COALESCE_STEPS", size)
        reports[size] = json.dumps(replay.summary(str(path)), sort_keys=True)
    assert reports[1] == reports[7] == reports[10_000]
    doc = json.loads(reports[1])
    assert doc["steps"] == 1500 and doc["config"]["gain"] == "3"


def test_a_replay_that_meets_a_corrupt_line_exits_2(tmp_path, monkeypatch, capsys):
    """The viewer shows what it read before a corrupt line in mid-file; on
    quitting, `traintop replay` says what was wrong in one line and exits 2."""
    import traintop.tui.app as app_module
    from traintop.commands import replay

    path = _long_recording(tmp_path / "long.jsonl", 3_000)
    lines = path.read_bytes().split(b"\n")
    lines.insert(len(lines) // 2, b"GARBAGE{{{")
    path.write_bytes(b"\n".join(lines))
    monkeypatch.setattr(opener, "HEAD_BYTES", 1)       # the corrupt line: past the head
    monkeypatch.setattr(replay_index, "HEAD_MAX", 1)
    monkeypatch.setattr(opener, "CHUNK", 4096)
    seen = {}

    def viewer(source, title):                                # the app: read on, then quit
        source.wait_loaded(30)
        seen["failed"] = source.failed
        return 0

    monkeypatch.setattr(app_module, "run_app", viewer)
    assert replay.main([str(path)]) == 2
    assert "corrupt line" in seen["failed"]
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("traintop: error: ")
    assert f"{path}:{len(lines) // 2 + 1}: corrupt line" in err
