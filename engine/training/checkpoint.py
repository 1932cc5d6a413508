"""Checkpoints: everything a run needs to continue bit-identically.

Config, parameters, BatchNorm buffers, step count, live lr scale and the
generator state, saved with torch.save and loaded with weights_only=True
(plain containers and tensors only: loading a checkpoint runs no code).
"""

from __future__ import annotations

from pathlib import Path

import torch

from traintop.data.errors import InputError
from traintop.engine.atomic import write_atomic
from traintop.engine.config import TrainConfig
from traintop.engine.model.layers import BatchNorm1d
from .checkpoint_header import FORMAT, VERSION, read_header


def save_checkpoint(trainer, path: str | Path) -> Path:
    path = Path(path)
    stack = trainer.stack
    state = {
        "format": FORMAT,
        "version": VERSION,
        "config": {**trainer.config.to_dict(), "bias": trainer.config.bias},
        "vocab": "".join(trainer.dataset.vocab.chars),
        "steps_done": trainer.steps_done,
        "lr_scale": trainer.lr_scale,
        "first_loss": trainer.first_loss,
        "generator": trainer.generator.get_state(),
        "params": {n: p.detach().cpu() for n, p in zip(stack.param_names, stack.params)},
        "buffers": {f"{i}.{k}": v.detach().cpu() for i, layer in stack.batchnorms()
                    for k, v in layer.buffers().items()},
    }
    try:
        write_atomic(path, lambda f: torch.save(state, f))
    except OSError as exc:
        raise InputError(f"{path}: cannot write checkpoint: {exc.strerror or exc}") from None
    return path


def read_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    read_header(path)   # a foreign, truncated or newer file: one clear line, before torch.load
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises many kinds on damaged bytes
        raise InputError(f"{path}: not a traintop checkpoint ({type(exc).__name__})") from None


def load_checkpoint(trainer, path: str | Path) -> None:
    """Put the checkpoint's run into `trainer` (built on the same data)."""
    state = read_checkpoint(path)
    config = TrainConfig.from_dict(state["config"])
    if state["vocab"] != "".join(trainer.dataset.vocab.chars):
        raise InputError(f"{path}: the checkpoint's vocabulary differs from the data's")
    trainer.restart(**{k: getattr(config, k) for k in config.to_dict()
                       if getattr(config, k) != getattr(trainer.config, k)})
    stack = trainer.stack
    params = state["params"]
    if list(params) != stack.param_names:
        raise InputError(f"{path}: parameters do not match the configured stack")
    with torch.no_grad():
        for name, p in zip(stack.param_names, stack.params):
            if params[name].shape != p.shape:
                raise InputError(f"{path}: parameter {name} has shape "
                                 f"{tuple(params[name].shape)}, expected {tuple(p.shape)}")
            p.copy_(params[name].to(p.device))
    for i, layer in stack.batchnorms():
        assert isinstance(layer, BatchNorm1d)
        layer.load_buffers({k: state["buffers"][f"{i}.{k}"].to(trainer.device)
                            for k in ("running_mean", "running_var")})
    trainer.generator.set_state(state["generator"])
    trainer.steps_done = state["steps_done"]
    trainer.lr_scale = state["lr_scale"]
    trainer.first_loss = state["first_loss"]
    trainer.history.mark(f"resumed {Path(path).name} at step {trainer.steps_done:,}")
