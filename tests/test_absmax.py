"""A layer's absmax (max |t| over the batch), end to end: every engine
measures what torch computes, the recording keeps it bit for bit, the
replay and the CSV export give it back, and recordings written before the
figure existed read it as NaN."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from traintop import watch
from traintop.engine.config import TrainConfig
from traintop.engine.export.tables import write_csv
from traintop.engine.feed.messages import RunStarted, Steps
from traintop.engine.recording.opener import load
from traintop.engine.recording.recorder import Recorder
from traintop.engine.recording.replay_source import ReplaySource
from traintop.engine.steps import graph_stats
from traintop.engine.training.trainer import Trainer

FIXTURES = Path(__file__).parent / "fixtures"


def torch_absmax(t: torch.Tensor) -> float:
    return t.detach().abs().max().item()


def trainer(dataset, engine: str | None, **knobs) -> Trainer:
    config = TrainConfig(n_hidden=24, depth=3, steps=1000, **knobs).validated()
    return Trainer(config, dataset, engine=engine) if engine else Trainer(config, dataset)


@pytest.mark.parametrize("engine", [None, "fast"])
@pytest.mark.parametrize("batchnorm", [True, False])
def test_an_engine_measures_absmax_as_torch(small_dataset, engine, batchnorm):
    t = trainer(small_dataset, engine, batchnorm=batchnorm)
    for _ in range(3):
        snap = t.step(stats=True).stats
        assert snap.layers
        for layer in snap.layers:
            # both engines reduce the same float32 tensor: equal, not close
            assert layer.absmax == torch_absmax(t.stack.layers[layer.index].out)
            assert 0 < layer.absmax <= 1.0          # the lecture's layers are tanh outputs


def test_the_compiled_engines_figures_measure_absmax_as_torch(small_dataset):
    """graph_stats (what the compiled engine runs under inductor), run eagerly
    on the tensors of a fast step, gives the same absmax as torch."""
    t = trainer(small_dataset, "fast")
    result = t.step(stats=True)
    fast = t.fast
    outs = [t.stack.layers[blk.out_pos].out for blk in fast.hidden]
    moments = fast.moments()
    values = graph_stats.snapshot_values(fast, fast.update_ratios(moments, result.lr), moments,
                                         outs, list(fast._out_grads))
    snap = fast.snapshot_from(fast.snapshot_tensor(*values), result.step, result.loss, result.lr)
    assert [l.absmax for l in snap.layers] == [torch_absmax(o) for o in outs]
    assert [l.absmax for l in snap.layers] == [l.absmax for l in result.stats.layers]


def _recorded(small_dataset, path):
    t = trainer(small_dataset, "fast", stats_every=4)
    results = []
    with Recorder(path) as rec:
        rec.consume(RunStarted(t.info()))
        for _ in range(10):
            results.append(t.step())
            rec.step(results[-1])
    return [r.stats for r in results if r.stats is not None]


def _csv_absmax(directory) -> list[tuple[int, int, str]]:
    with open(directory / "layers.csv", newline="") as f:
        return [(int(row["step"]), int(row["layer"]), row["absmax"]) for row in csv.DictReader(f)]


@pytest.mark.parametrize("name", ["run.jsonl", "run.jsonl.gz"])
def test_absmax_is_recorded_replayed_and_exported(small_dataset, tmp_path, name):
    path = tmp_path / name
    measured = _recorded(small_dataset, path)
    assert [s.step for s in measured] == [1, 4, 8]
    figures = {(s.step, l.index): l.absmax for s in measured for l in s.layers}
    assert all(0 < x <= 1.0 for x in figures.values())

    read = [r.stats for m in load(path).messages if isinstance(m, Steps)
            for r in m.results if r.stats is not None]
    assert read == measured                   # every figure bit for bit, absmax among them

    source = ReplaySource(path, at_end=False)   # the replay's first snapshot, then the last
    try:
        first = [r.stats for m in source.head() + source.poll() if isinstance(m, Steps)
                 for r in m.results if r.stats is not None]
        source.end()
        assert source.wait_loaded(30)
        last = [r.stats for m in source.poll() if isinstance(m, Steps)
                for r in m.results if r.stats is not None]
    finally:
        source.close()
    assert first[-1] == measured[0] and last[-1] == measured[-1]

    write_csv(path, tmp_path / "csv")
    rows = _csv_absmax(tmp_path / "csv")
    assert {(step, layer): float(x) for step, layer, x in rows} == figures
    assert [x for *_, x in rows] == [repr(figures[k]) for k in ((s, l) for s, l, _ in rows)]


@pytest.mark.parametrize("fixture", ["v1_small.jsonl", "v2_small.jsonl"])
def test_a_recording_from_before_absmax_reads_it_as_nan(tmp_path, fixture):
    snapshots = [r.stats for m in load(FIXTURES / fixture).messages if isinstance(m, Steps)
                 for r in m.results if r.stats is not None]
    assert snapshots and all(l.mean == l.mean for s in snapshots for l in s.layers)
    assert all(math.isnan(l.absmax) for s in snapshots for l in s.layers)
    write_csv(FIXTURES / fixture, tmp_path / "csv")
    rows = _csv_absmax(tmp_path / "csv")
    assert rows and all(x == "nan" for *_, x in rows)


def test_watch_measures_absmax_as_torch(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.GELU(), nn.Linear(32, 32), nn.Tanh(),
                          nn.Linear(32, 3))
    with torch.no_grad():
        model[0].weight *= 5    # activations well past 1: a figure worth checking
    outs: dict[int, torch.Tensor] = {}
    for i in (1, 3):
        model[i].register_forward_hook(lambda m, inp, out, i=i: outs.__setitem__(i, out))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    path = tmp_path / "user.jsonl"
    w = watch(model, path, optimizer=opt, every=2)
    X = torch.randn(64, 8, generator=torch.Generator().manual_seed(1))
    Y = torch.arange(64) % 3
    expected = {}
    for step in range(1, 5):
        loss = F.cross_entropy(model(X), Y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        w.step(loss)
        expected[step] = {i: torch_absmax(outs[i]) for i in outs}
    w.close()
    snapshots = [r.stats for m in load(path).messages if isinstance(m, Steps)
                 for r in m.results if r.stats is not None]
    assert [s.step for s in snapshots] == [1, 2, 4]
    for s in snapshots:
        by_name = {int(l.name): l.absmax for l in s.layers if l.name in ("1", "3")}
        assert by_name == expected[s.step]
    assert expected[1][1] > 1.0                 # the GELU's outputs are not squashed
