"""Columnar decode (StepBlock): a recording's steps lines read as columns give
the very results they were written from, and folding the columns gives the
state a step-by-step fold gives, on a real run with snapshots, an lr change,
a restart and a non-finite step."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from traintop.engine.config import TrainConfig
from traintop.engine.feed import events
from traintop.engine.feed.messages import RunStarted, Status, Steps
from traintop.engine.recording.recorder import Recorder
from traintop.engine.recording.replay_source import ReplaySource
from traintop.engine.viewer.run_state import BLOCK, RunState
from traintop.engine.recording.opener import load
from traintop.engine.step_block import StepBlock
from traintop.engine.training.build import build_trainer


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """(the recording, every message the recorder was given): snapshots every
    100 steps, an lr change, a restart, and a step whose forward went non-finite."""
    path = tmp_path_factory.mktemp("blocks") / "run.jsonl"
    trainer = build_trainer(TrainConfig(steps=5000, stats_every=100), engine="fast", threads=1)
    given = [RunStarted(trainer.info())]
    recorder = Recorder(path, clock=lambda: 0.0)   # lines of 100 steps, whatever the machine
    recorder.consume(given[0])

    def steps(n: int) -> None:
        for _ in range(n):
            r = trainer.step()
            given.append(Steps((r,)))
            recorder.step(r)
            if r.nonfinite is not None:
                return

    steps(450)
    old = trainer.lr
    trainer.set_lr(0.05)
    given.append(events.lr_changed(trainer.steps_done, old, trainer.lr))
    recorder.consume(given[-1])
    steps(330)
    given.append(RunStarted(trainer.info(), trainer.restart(gain="3")))
    recorder.consume(given[-1])
    steps(420)
    with torch.no_grad():   # the next forward goes non-finite: a step with no ratios
        trainer.stack.layers[3].weight[0, 0] = float("inf")
    steps(5)
    recorder.close(Status(trainer.steps_done, trainer.lr, False, False, 100.0))
    return path, given


def _written(given) -> list:
    return [r for m in given if isinstance(m, Steps) for r in m.results]


def test_a_block_holds_the_results_it_was_written_from(run):
    path, given = run
    blocks = [m.results for m in load(path).messages if isinstance(m, Steps)]
    assert blocks and all(isinstance(b, StepBlock) for b in blocks)
    read = [r for b in blocks for r in b]
    written = _written(given)
    assert [r.step for r in read] == [r.step for r in written]
    assert read[-1].nonfinite is not None and written[-1].nonfinite == read[-1].nonfinite
    # Kept exact: each line's last row, and every row of a line of rows of
    # several widths (the non-finite step has no ratios).
    exact = [i == len(b) - 1 or b.width is None for b in blocks for i in range(len(b))]
    assert sum(b.width is None for b in blocks) == 1
    for got, want, end in zip(read, written, exact):
        assert np.array_equal([got.loss], [want.loss], equal_nan=True)
        assert (got.lr, got.stats, got.nonfinite) == (want.lr, want.stats, want.nonfinite)
        if want.stats is not None or want.nonfinite is not None or end:
            assert got.update_ratio_log10 == want.update_ratio_log10     # kept exact
        else:                                                            # float32 precision
            assert got.update_ratio_log10 == tuple(
                float(np.float32(v)) for v in want.update_ratio_log10)
    assert sum(r.stats is not None for r in read) >= 10
    # Indexing, iteration, slices and joins agree (repr: the NaN loss is equal to itself).
    for b in blocks:
        assert repr([b[i] for i in range(len(b))]) == repr(list(b)) == \
            repr(list(StepBlock.of(tuple(b))))
        k = len(b) // 3
        assert repr(list(StepBlock.concat([b[:k], b[k:]]))) == repr(list(b))
        assert repr(b[-1]) == repr(b[len(b) - 1])
    joined = StepBlock.concat(blocks)
    assert repr(list(joined)) == repr(read) and joined[-1].nonfinite is not None
    assert blocks[0] == tuple(blocks[0]) and blocks[1] != blocks[0]   # as a tuple compares


def _fold(messages) -> RunState:
    state = RunState()
    for m in messages:
        state.apply(m)
    return state


def _same_state(a: RunState, b: RunState) -> None:
    assert json.dumps(a.report(), sort_keys=True) == json.dumps(b.report(), sort_keys=True)
    assert repr((a.last, a.stats, a.steps, a.first_loss, a.runs)) == \
        repr((b.last, b.stats, b.steps, b.first_loss, b.runs))
    assert [f.message for f in a.findings()] == [f.message for f in b.findings()]
    ha, hb = a.history, b.history
    assert ha.tick == hb.tick and ha.markers == hb.markers
    for x, y in zip([ha.log10_loss, ha.lr, ha.loss_windows, *ha.ratios],
                    [hb.log10_loss, hb.lr, hb.loss_windows, *hb.ratios]):
        (tx, vx), (ty, vy) = x.points(), y.points()
        assert tx == ty and np.allclose(vx, vy, rtol=1e-12, equal_nan=True)


def test_folding_columns_equals_folding_each_step(run):
    path, _ = run
    messages = load(path).messages
    blocks = [m for m in messages if isinstance(m, Steps)]
    assert max(len(m.results) for m in blocks) >= BLOCK    # the columnar fold is taken
    stepwise = []
    for m in messages:
        stepwise += [Steps((r,)) for r in m.results] if isinstance(m, Steps) else [m]
    by_step, by_block = _fold(stepwise), _fold(messages)
    _same_state(by_step, by_block)
    assert by_block.runs == 2 and by_block.last.nonfinite is not None
    # A replay at its end: the lines joined into large blocks, one snapshot decoded.
    source = ReplaySource(path)
    assert source.wait_loaded(30)
    delivered = []
    while batch := source.poll():
        delivered += batch
    source.close()
    joined = [m for m in delivered if isinstance(m, Steps)]
    assert max(len(m.results) for m in joined) > max(len(m.results) for m in blocks)
    # Statuses aside: a replay says where its own timeline stands, not what the file's said.
    plain = [m for m in stepwise if not isinstance(m, Status)]
    _same_state(_fold(plain), _fold([m for m in delivered if not isinstance(m, Status)]))


def test_a_corrupt_row_key_is_a_corrupt_line(tmp_path, run):
    path, _ = run
    lines = path.read_text().splitlines()
    k = next(i for i, line in enumerate(lines) if '"x":{' in line)
    doc = json.loads(lines[k])
    doc["x"] = {str(doc["n"] + 5): next(iter(doc["x"].values()))}   # a row past the line's end
    lines[k] = json.dumps(doc)
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(lines) + "\n")
    from traintop.data.errors import InputError
    with pytest.raises(InputError, match=f"{bad}:{k + 1}: corrupt line"):
        load(bad)
