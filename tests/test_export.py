"""`traintop export`: CSV tables and TensorBoard files, read back."""

from __future__ import annotations

import csv

import pytest

from traintop.data.dataset import load_dataset
from traintop.commands import cli
from traintop.engine.config import TrainConfig
from traintop.engine.export.tensorboard import tensorboard_available
from traintop.engine.feed.messages import RunStarted, Steps
from traintop.engine.recording.recorder import Recorder
from traintop.engine.recording.opener import load
from traintop.engine.training.trainer import Trainer


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """A run, an lr change, a restart with gain 3, a shorter second run."""
    path = tmp_path_factory.mktemp("export") / "run.jsonl.gz"
    config = TrainConfig(steps=40, stats_every=20, n_hidden=10, depth=2)
    trainer = Trainer(config, load_dataset(None, config.block_size, config.split_seed))
    with Recorder(path) as rec:
        rec.consume(RunStarted(trainer.info()))
        trainer.run(on_step=rec.step)
        trainer.set_lr(0.05)
        rec.event("lr", trainer.steps_done, "lr 0.1 -> 0.05")
        trainer.restart(gain="3")
        rec.consume(RunStarted(trainer.info(), "restart: gain 3"))
        trainer.run(steps=20, on_step=rec.step)
    return path


def read(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_csv_tables_hold_every_figure(tmp_path, recording, capsys):
    out = tmp_path / "csv"
    assert cli.main(["export", str(recording), "--csv", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "events.csv", "layers.csv", "steps.csv", "update_ratios.csv", "weights.csv"]
    results = [(run, r) for run, m in _by_run(recording) if isinstance(m, Steps)
               for r in m.results]
    steps = read(out / "steps.csv")
    assert [(int(s["run"]), int(s["step"])) for s in steps] == [(run, r.step) for run, r in results]
    assert [float(s["loss"]) for s in steps] == [r.loss for _, r in results]   # exact
    assert [float(s["lr"]) for s in steps] == [r.lr for _, r in results]
    assert all(s["grad_norm"] == "nan" for s in steps)    # the trainer records none
    ratios = read(out / "update_ratios.csv")
    info = load(recording).messages[0].info
    assert len(ratios) == len(results) * len(info.param_names)
    assert [r["param"] for r in ratios[:len(info.param_names)]] == list(info.param_names)
    assert float(ratios[3]["update_ratio_log10"]) == results[0][1].update_ratio_log10[3]
    layers = read(out / "layers.csv")
    snaps = [(run, r.stats) for run, r in results if r.stats]
    assert [(int(l["run"]), int(l["step"])) for l in layers] == [
        (run, s.step) for run, s in snaps for _ in s.layers]
    assert [int(l["step"]) for l in layers][::2] == [1, 20, 40, 1, 20]
    first = snaps[0][1].layers[0]
    assert layers[0]["kind"] == "Tanh" and int(layers[0]["layer"]) == first.index
    assert float(layers[0]["saturation_pct"]) == first.saturation_pct
    assert float(layers[0]["grad_std"]) == first.grad_std
    weights = read(out / "weights.csv")
    assert weights[0]["name"] == "C" and weights[0]["shape"] == "27x10"
    assert float(weights[0]["grad_data_ratio"]) == snaps[0][1].weights[0].grad_data_ratio
    assert read(out / "events.csv") == [{"run": "1", "step": "40", "kind": "lr",
                                         "text": "lr 0.1 -> 0.05"}]
    assert not list(out.glob(".*"))    # no temp files left behind


def test_csv_steps_hold_the_gradient_norms_given_to_watch(tmp_path):
    """w.step(loss, grad_norm=...)'s norms in steps.csv, exact; a step given none: nan."""
    import torch
    from torch import nn

    from traintop import watch
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(16, 4), torch.randn(16, 2)
    norms = []
    with watch(model, tmp_path / "w.jsonl", optimizer=opt, every=5) as w:
        for k in range(12):
            loss = nn.functional.mse_loss(model(x), y)
            opt.zero_grad()
            loss.backward()
            norm = nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            norms.append(norm.item() if k != 7 else float("nan"))
            w.step(loss, grad_norm=norm if k != 7 else None)
    assert cli.main(["export", str(tmp_path / "w.jsonl"), "--csv", str(tmp_path / "csv")]) == 0
    steps = read(tmp_path / "csv" / "steps.csv")
    assert list(steps[0]) == ["run", "step", "loss", "log10_loss", "lr", "grad_norm"]
    got = [float(s["grad_norm"]) for s in steps]
    assert got[:7] + got[8:] == norms[:7] + norms[8:] and steps[7]["grad_norm"] == "nan"


def _by_run(path):
    run = 0
    for m in load(path).messages:
        run += isinstance(m, RunStarted)
        yield run, m


def test_export_needs_a_target_and_a_directory(tmp_path, recording, capsys):
    assert cli.main(["export", str(recording)]) == 2
    assert "give --csv DIR" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert cli.main(["export", str(recording), "--csv", str(blocker)]) == 2
    assert "is not a directory" in capsys.readouterr().err


@pytest.mark.skipif(not tensorboard_available(), reason="tensorboard is not installed")
def test_tensorboard_scalars_and_histograms_read_back(tmp_path, recording):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "tb"
    assert cli.main(["export", str(recording), "--tensorboard", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["run-1", "run-2"]
    acc = EventAccumulator(str(out / "run-1"), size_guidance={"scalars": 0, "histograms": 0})
    acc.Reload()
    results = [r for run, m in _by_run(recording) if run == 1 and isinstance(m, Steps)
               for r in m.results]
    loss = acc.Scalars("loss")
    assert [e.step for e in loss] == [r.step for r in results]
    assert [e.value for e in loss] == pytest.approx([r.loss for r in results], rel=1e-6)
    sat = acc.Scalars("layer2_Tanh/saturation_pct")
    assert [(e.step, e.value) for e in sat] == pytest.approx(
        [(r.step, r.stats.layers[0].saturation_pct) for r in results if r.stats], rel=1e-6)
    hist = acc.Histograms("layer2_Tanh/activations")
    assert [h.step for h in hist] == [1, 20, 40]
    first = results[0].stats.layers[0].hist
    h = hist[0].histogram_value
    assert h.min == pytest.approx(first.lo) and h.max == pytest.approx(first.hi)
    assert sum(h.bucket) == pytest.approx(1.0, rel=1e-6)
    width = (first.hi - first.lo) / len(first.density)
    assert list(h.bucket) == pytest.approx([d * width for d in first.density], rel=1e-6)
    acc2 = EventAccumulator(str(out / "run-2"))
    acc2.Reload()
    assert [e.step for e in acc2.Scalars("loss")][-1] == 20


def test_tensorboard_missing_is_one_clear_line(tmp_path, recording, capsys, monkeypatch):
    import builtins
    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError("no tensorboard")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    assert cli.main(["export", str(recording), "--tensorboard", str(tmp_path / "tb")]) == 2
    err = capsys.readouterr().err
    assert "tensorboard package is not installed" in err and err.count("\n") == 1
