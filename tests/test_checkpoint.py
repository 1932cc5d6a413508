"""Checkpoints: atomic, validated, and a resumed run continues bit for bit."""

from __future__ import annotations

import os

import pytest
import torch

from traintop.data.errors import InputError
from traintop.engine.training.checkpoint import load_checkpoint, save_checkpoint
from traintop.engine.config import TrainConfig
from traintop.engine.training.trainer import Trainer


@pytest.mark.parametrize("batchnorm", [True, False])
def test_resume_is_bit_identical(small_dataset, tmp_path, batchnorm):
    config = TrainConfig(n_hidden=24, steps=40, batchnorm=batchnorm, stats_every=5).validated()
    straight = Trainer(config, small_dataset)
    straight.run(25)
    straight.set_lr(0.05)  # a live change is part of what must survive
    path = save_checkpoint(straight, tmp_path / "run.ckpt")
    expected = [straight.step() for _ in range(15)]

    resumed = Trainer(TrainConfig(n_hidden=24, steps=40).validated(), small_dataset)
    load_checkpoint(resumed, path)
    assert resumed.steps_done == 25 and resumed.config == config
    got = [resumed.step() for _ in range(15)]
    assert [r.loss for r in got] == [r.loss for r in expected]
    assert [r.update_ratio_log10 for r in got] == [r.update_ratio_log10 for r in expected]
    assert got[-1].stats == expected[-1].stats
    for a, b in zip(resumed.stack.params, straight.stack.params):
        assert torch.equal(a, b)
    for (_, a), (_, b) in zip(resumed.stack.batchnorms(), straight.stack.batchnorms()):
        assert torch.equal(a.running_mean, b.running_mean)
        assert torch.equal(a.running_var, b.running_var)


def test_save_leaves_no_temp_file_and_replaces_atomically(small_dataset, tmp_path):
    trainer = Trainer(TrainConfig(n_hidden=8, steps=3).validated(), small_dataset)
    path = tmp_path / "a.ckpt"
    path.write_bytes(b"old")
    save_checkpoint(trainer, path)
    assert os.listdir(tmp_path) == ["a.ckpt"]
    assert path.read_bytes() != b"old"


def test_failed_write_keeps_the_old_file(small_dataset, tmp_path, monkeypatch):
    trainer = Trainer(TrainConfig(n_hidden=8, steps=3).validated(), small_dataset)
    path = tmp_path / "a.ckpt"
    path.write_bytes(b"old")

    def broken_save(obj, f):
        f.write(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(InputError, match="a.ckpt: cannot write checkpoint: No space left"):
        save_checkpoint(trainer, path)
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["a.ckpt"]


def test_garbage_is_refused_clearly(small_dataset, tmp_path):
    trainer = Trainer(TrainConfig(n_hidden=8, steps=3).validated(), small_dataset)
    path = tmp_path / "junk.ckpt"
    path.write_bytes(b"this is not a checkpoint")
    with pytest.raises(InputError, match="junk.ckpt: not a traintop checkpoint"):
        load_checkpoint(trainer, path)
    torch.save({"format": "traintop-checkpoint", "version": 99}, path)
    with pytest.raises(InputError, match="checkpoint version 99 is not supported"):
        load_checkpoint(trainer, path)


def test_resume_from_the_command_line(small_words, tmp_path, capsys):
    from traintop.commands.cli import main

    data = tmp_path / "w.txt"
    data.write_text("\n".join(small_words))
    ckpt = tmp_path / "r.ckpt"
    common = ["run", "--data", str(data), "--n-hidden", "16", "--json"]
    assert main(common + ["--steps", "30"]) == 0
    whole = capsys.readouterr().out
    assert main(common + ["--steps", "12", "--checkpoint", str(ckpt)]) == 0
    capsys.readouterr()
    assert main(["run", "--data", str(data), "--resume", str(ckpt), "--steps", "30", "--json"]) == 0
    resumed = capsys.readouterr().out
    import json
    a, b = json.loads(whole), json.loads(resumed)
    assert b["steps"] == 30
    assert a["last_loss"] == b["last_loss"] and a["layers"] == b["layers"]
