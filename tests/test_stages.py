"""`--stage`: the lecture's first network (one hidden layer of 200 tanh units)
stage by stage, against the lecture's loop written out in tests/stage_oracle.py
(one generator; C, W1, b1, W2, b2, then the batches; plain autograd)."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from helpers import ROOT, traintop_here
from stage_oracle import first_network, lecture_split
from traintop.commands.loss_log import text_with_loss_log
from traintop.data.dataset import build_dataset
from traintop.data.errors import InputError
from traintop.engine.config import STAGE_LOSS_LOG, STAGES, TrainConfig
from traintop.engine.model.stages import MAP_THRESHOLD
from traintop.engine.training.trainer import Trainer

STEPS = 5


@pytest.fixture(scope="module")
def lecture_data(small_words):
    """The engine's dataset and the lecture's own split of the same words."""
    return build_dataset(small_words, block_size=3, split_seed=42, source="small"), \
        lecture_split(small_words)


def test_the_data_split_is_the_lectures(lecture_data):
    dataset, (Xtr, Ytr, Xdev, Ydev, vocab) = lecture_data
    assert torch.equal(dataset.train.X, Xtr) and torch.equal(dataset.train.Y, Ytr)
    assert torch.equal(dataset.val.X, Xdev) and torch.equal(dataset.val.Y, Ydev)
    assert dataset.vocab.size == vocab


@pytest.mark.parametrize("engine", ["exact", "fast"])
@pytest.mark.parametrize("stage", STAGES)
def test_first_steps_are_the_lectures(lecture_data, stage, engine):
    dataset, (Xtr, Ytr, _, _, vocab) = lecture_data
    theirs, h, params = first_network(Xtr, Ytr, vocab, STEPS, stage)
    trainer = Trainer(TrainConfig(stage=stage), dataset, engine=engine)
    mine = [trainer.step().loss for _ in range(STEPS)]
    for a, b in zip(mine, theirs):
        assert math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-6), (mine, theirs)
    # the hidden layer's output and every parameter after the fifth update
    tanh = trainer.stack.layers[trainer.stack.tanh_positions()[0]]
    assert torch.allclose(tanh.out, h, atol=1e-5)
    C, W1, b1, W2, b2 = params[:5]
    stack = trainer.stack
    lin1, lin2 = stack.layers[0], stack.layers[-1]
    for p, q in ((stack.C, C), (lin1.weight, W1), (lin1.bias, b1), (lin2.weight, W2),
                 (lin2.bias, b2)):
        assert torch.allclose(p.detach(), q.detach(), rtol=1e-5, atol=1e-6)


def test_the_stage_is_its_network(small_dataset):
    kinds = {s: Trainer(TrainConfig(stage=s), small_dataset).info().layer_kinds for s in STAGES}
    assert kinds["kaiming"] == ("Linear", "Tanh", "Linear")
    assert kinds["batchnorm"] == ("Linear", "BatchNorm1d", "Tanh", "Linear")
    config = TrainConfig(stage="fix-tanh").validated()
    assert (config.n_embd, config.n_hidden, config.depth, config.block_size) == (10, 200, 1, 3)
    assert (config.gain, config.fan_in, config.last_layer_scale) == ("0.2", False, 0.01)
    shapes = Trainer(config, small_dataset).info().param_shapes
    assert shapes == ((27, 10), (30, 200), (200,), (200, 27), (27,))


def test_first_loss_original_vs_fix_softmax(small_dataset):
    """The hockey stick: the original init is confidently wrong (~27), the
    fixed softmax starts at about the uniform guess -log(1/27) = 3.2958."""
    first = {s: Trainer(TrainConfig(stage=s), small_dataset, engine="fast").step().loss
             for s in ("original", "fix-softmax")}
    assert first["original"] > 15
    assert abs(first["fix-softmax"] - math.log(27)) < 0.15


def test_first_loss_on_the_lectures_data(reference_dir):
    """The lecture's own first print-outs: 27.8817 (original), 3.3221 (fix-softmax)."""
    from traintop.data.dataset import load_dataset

    dataset = load_dataset(reference_dir / "names.txt", 3, 42)
    first = {s: Trainer(TrainConfig(stage=s), dataset).step().loss
             for s in ("original", "fix-softmax")}
    assert round(first["original"], 4) == 27.8817
    assert round(first["fix-softmax"], 4) == 3.3221


def test_a_stage_learns(small_dataset, one_thread):
    """CI's long-enough run: 2,000 steps of the Kaiming stage bring the loss
    from ~3.3 well down (its train loss too)."""
    trainer = Trainer(TrainConfig(stage="kaiming", steps=2000, stats_every=1000), small_dataset,
                      engine="fast")
    losses = []
    trainer.run(on_step=lambda r: losses.append(r.loss))
    assert len(losses) == 2000
    assert losses[0] > 3.2
    assert sum(losses[-200:]) / 200 < losses[0] - 0.6
    assert trainer.evaluate(("train",))["train"] < losses[0] - 0.6


def test_batchnorm_stage_is_evaluated_on_exact_statistics(small_dataset):
    """The lecture's loss log evaluates BatchNorm with the training set's exact
    mean and std (calibrated after training); the running estimates stay."""
    trainer = Trainer(TrainConfig(stage="batchnorm", steps=50), small_dataset, engine="fast")
    trainer.run()
    bn = trainer.stack.layers[1]
    assert (bn.eps, bn.momentum) == (0.0, 0.001)
    running = bn.running_mean.clone(), bn.running_var.clone()
    got = trainer.evaluate(("train", "val"))
    stack = trainer.stack
    W1, b1 = stack.layers[0].weight, stack.layers[0].bias
    W2, b2 = stack.layers[3].weight, stack.layers[3].bias
    with torch.no_grad():
        def pre(X):
            return stack.C[X].view(len(X), -1) @ W1 + b1

        train_pre = pre(small_dataset.train.X)
        mean, std = train_pre.mean(0, keepdim=True), train_pre.std(0, keepdim=True)
        for split in ("train", "val"):
            s = small_dataset.split(split)
            h = torch.tanh(bn.gamma * (pre(s.X) - mean) / std + bn.beta)
            want = F.cross_entropy(h @ W2 + b2, s.Y).item()
            assert math.isclose(got[split], want, rel_tol=1e-5)
    assert torch.equal(bn.running_mean, running[0]) and torch.equal(bn.running_var, running[1])


@pytest.mark.parametrize("engine", ["exact", "fast"])
def test_saturation_map_is_the_batchs(small_dataset, engine):
    """|h| > 0.99 per example and unit, one bit each; dead = all-saturated columns."""
    trainer = Trainer(TrainConfig(stage="original", stats_every=1), small_dataset,
                      engine=engine)
    result = trainer.step()
    layer = result.stats.layers[0]
    h = trainer.stack.layers[1].out.detach()
    white = h.abs() > MAP_THRESHOLD
    assert len(layer.saturation_map) == 32
    for row, bits in zip(white.tolist(), layer.saturation_map):
        assert [bool(bits >> j & 1) for j in range(200)] == row
    # the original init saturates most of h (the lecture's white image)
    assert white.float().mean() > 0.5
    assert int(white.all(0).sum()) == sum(
        all(bits >> j & 1 for bits in layer.saturation_map) for j in range(200))


def test_compiled_and_auto_step_fast(small_dataset):
    for engine in ("compiled", "auto"):
        trainer = Trainer(TrainConfig(stage="kaiming"), small_dataset, engine=engine)
        assert trainer.compiled is None and trainer.engine_now == "fast"


def test_knobs_the_stage_sets_do_not_apply(small_dataset):
    trainer = Trainer(TrainConfig(stage="kaiming"), small_dataset, engine="fast")
    for change in ({"gain": "3"}, {"batchnorm": True}, {"fan_in": False}, {"depth": 5},
                   {"init": "zeros"}, {"last_layer_scale": 0.1}):
        with pytest.raises(InputError, match="does not apply to the lecture's first network"):
            trainer.restart(**change)
    assert trainer.config.stage == "kaiming"
    assert trainer.restart() == "restart"              # r still restarts the stage
    assert trainer.restart(stage="batchnorm").startswith("restart: stage batchnorm")
    assert trainer.info().layer_kinds[1] == "BatchNorm1d"
    # what the stage sets anyway is no change
    assert TrainConfig(stage="kaiming").with_changes(gain="5/3").gain == "5/3"


@pytest.fixture(scope="module")
def small_file(tmp_path_factory, small_words) -> str:
    path = tmp_path_factory.mktemp("stages") / "small.txt"
    path.write_text("\n".join(small_words) + "\n")
    return str(path)


@pytest.fixture
def run_cli(capsys, one_thread):
    """`traintop run ARGS` in this process (a process each proved nothing
    test_cli_errors' spawns do not); one_thread: the worker's thread count
    back after the run's own."""
    return lambda *args: traintop_here(capsys, "run", *args)


def test_an_option_that_does_not_apply_is_one_line(run_cli):
    proc = run_cli("--stage", "kaiming", "--gain", "3", "--steps", "1")
    assert proc.returncode != 0
    assert proc.stderr.strip().count("\n") == 0
    assert "--gain: does not apply" in proc.stderr and "Traceback" not in proc.stderr


def test_a_stage_sweep_refuses_what_the_stages_set():
    from traintop.commands.options import config_for, sweep_for
    from traintop.commands.run import build_parser

    args = build_parser().parse_args(["--sweep", "stage=original,kaiming", "--gain", "3"])
    with pytest.raises(InputError, match="--gain: does not apply"):
        sweep_for(args, config_for(args))
    args = build_parser().parse_args(["--sweep", "stage=original,kaiming", "--lr", "0.05"])
    assert [r.config.lr for r in sweep_for(args, config_for(args))] == [0.05, 0.05]


def test_json_eval_and_record(small_file, tmp_path, run_cli):
    recording = tmp_path / "stage.jsonl"
    proc = run_cli("--stage", "fix-tanh", "--steps", "30", "--eval", "train,val", "--json",
                   "--engine", "fast", "--data", small_file, "--record", str(recording))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    # the recording says which network it is, and holds its steps
    from traintop.engine.feed.messages import RunStarted, Steps
    from traintop.engine.recording.opener import load

    messages = load(recording).messages
    started = next(m for m in messages if isinstance(m, RunStarted))
    assert started.info.config["stage"] == "fix-tanh"
    assert started.info.layer_kinds == ("Linear", "Tanh", "Linear")
    losses = [r.loss for m in messages if isinstance(m, Steps) for r in m.results]
    assert len(losses) == 30 and losses[-1] == pytest.approx(doc["last_loss"])
    assert doc["config"]["stage"] == "fix-tanh" and doc["config"]["n_hidden"] == 200
    assert doc["steps"] == 30 and doc["first_loss"] > doc["last_loss"]
    assert set(doc["eval"]) == {"train", "val"} and 2 < doc["eval"]["val"] < 3.4
    assert doc["lecture_loss_log"] == {"stage": "fix-tanh", "steps": 200_000,
                                       "train": 2.0356, "val": 2.1027}
    # the text report is the same document's (traintop run prints one or the other)
    lines = text_with_loss_log(doc).splitlines()
    at = next(i for i, l in enumerate(lines) if l.startswith("loss: train"))
    assert f"{doc['eval']['train']:.4f}" in lines[at]
    assert lines[at + 1] == ("the lecture's loss log, stage fix-tanh: train 2.0356  "
                             "val 2.1027 after 200,000 steps")


def test_stage_sweep_ends_on_the_loss_log(small_file, run_cli):
    proc = run_cli("--sweep", "stage=" + ",".join(STAGES), "--steps", "20", "--engine", "fast",
                   "--stats-every", "20", "--data", small_file)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.rstrip().splitlines()
    table = lines[-6:]
    assert table[0].startswith("stage ") and "lecture train / val" in table[0]
    assert lines[-7].startswith("the lecture's loss log: train / val after 20 steps")
    for stage, row in zip(STAGES, table[1:]):
        cells = row.split()
        assert cells[0] == stage
        train, val = float(cells[1]), float(cells[2])
        assert 2 < val < (30 if stage == "original" else 3.4) and train > 2
        assert (float(cells[3]), float(cells[5])) == STAGE_LOSS_LOG[stage]


def test_a_stage_sweep_batches_and_keeps_the_map(small_dataset):
    """original and fix-softmax have one shape: one batched step trains both,
    and each run's saturation map is its own batch's h (as its solo run's)."""
    from traintop.engine.sweep.spec import parse_sweep
    from traintop.engine.sweep.trainer import SweepTrainer

    runs = parse_sweep(["stage=original,fix-softmax"], TrainConfig(stats_every=1))
    sweep = SweepTrainer(runs, small_dataset, engine="fast")
    assert [(idx, group is not None) for idx, group in sweep.groups] == [([0, 1], True)]
    batched = sweep.step()
    for run, result in zip(runs, batched):
        solo = Trainer(run.config, small_dataset, engine="fast").step()
        assert result.stats.layers[0].saturation_map == solo.stats.layers[0].saturation_map
        assert math.isclose(result.loss, solo.loss, rel_tol=1e-6)


def test_a_checkpoint_resumes_the_stage(small_dataset, tmp_path):
    """A stage run saved at step 20 and resumed ends where the whole run does
    (BatchNorm's running estimates and the generator included)."""
    from traintop.engine.training.checkpoint import load_checkpoint, save_checkpoint

    config = TrainConfig(stage="batchnorm", steps=40)
    whole = Trainer(config, small_dataset, engine="fast")
    whole.run()
    half = Trainer(config, small_dataset, engine="fast")
    half.run(steps=20)
    save_checkpoint(half, tmp_path / "stage.ckpt")
    resumed = Trainer(TrainConfig(), small_dataset, engine="fast")
    load_checkpoint(resumed, tmp_path / "stage.ckpt")
    assert resumed.config.stage == "batchnorm" and resumed.steps_done == 20
    resumed.run()
    assert resumed.last.loss == whole.last.loss
    bn = resumed.stack.layers[1]
    assert torch.equal(bn.running_var, whole.stack.layers[1].running_var)


def test_the_readme_loss_log_names_the_printed_figures():
    """The README's loss log sets each stage beside what the lecture printed."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## The lecture's first network", 1)[1].split("\n## ", 1)[0]
    rows = {line.split("|")[1].strip(" `"): [c.strip() for c in line.split("|")[2:-1]]
            for line in section.splitlines() if line.startswith("| `")}
    for stage, (train, val) in STAGE_LOSS_LOG.items():
        cells = rows[stage]
        assert (float(cells[2]), float(cells[3])) == (train, val), stage
        assert abs(float(cells[0]) - train) < 0.01 and abs(float(cells[1]) - val) < 0.01
