"""The training loops `traintop bench` times against each other.

Each loop is a callable that does one optimisation step of the same stack on
the same data; the baselines are written the way a user would write them, so
the ratios answer "what does watching cost compared with not watching".
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from traintop.data.dataset import Dataset
from traintop.engine.config import TrainConfig
from traintop.engine.model.stack import build_stack
from traintop.engine.training.trainer import Trainer

Step = Callable[[], None]


def plain_nn_loop(config: TrainConfig, dataset: Dataset, device: torch.device) -> Step:
    """A plain torch.nn loop: nn.Sequential of Embedding, Linear, BatchNorm1d,
    Tanh; torch.optim.SGD; no statistics and no host sync at all."""
    g = torch.Generator().manual_seed(config.seed)
    vocab, H = dataset.vocab.size, config.n_hidden
    layers: list[nn.Module] = [nn.Embedding(vocab, config.n_embd), nn.Flatten()]
    fan_in = config.n_embd * config.block_size
    for _ in range(config.depth):
        layers += [nn.Linear(fan_in, H, bias=config.use_bias)]
        if config.batchnorm:
            layers.append(nn.BatchNorm1d(H))
        if config.activation == "tanh":
            layers.append(nn.Tanh())
        fan_in = H
    layers.append(nn.Linear(fan_in, vocab, bias=config.use_bias))
    if config.batchnorm:
        layers.append(nn.BatchNorm1d(vocab))
    model = nn.Sequential(*layers).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=config.lr)
    X, Y = dataset.train.X.to(device), dataset.train.Y.to(device)
    n, B = len(dataset.train), config.batch_size

    def step() -> None:
        ix = torch.randint(0, n, (B,), generator=g).to(device)
        loss = F.cross_entropy(model(X[ix]), Y[ix])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def lecture_loop(config: TrainConfig, dataset: Dataset, device: torch.device) -> Step:
    """The lecture's own loop: its hand-written layers (traintop.engine.model.layers),
    retain_grad on every layer output, `p.data += -lr * p.grad`, log10 loss
    and the update:data ratios of every parameter fetched every step."""
    g = torch.Generator().manual_seed(config.seed)
    stack = build_stack(config, dataset.vocab.size, g)
    if device.type != "cpu":
        stack.to(device)  # keeps the parameters autograd leaves
    params = stack.params
    X, Y = dataset.train.X, dataset.train.Y
    n, B, lr = len(dataset.train), config.batch_size, config.lr
    lossi: list[float] = []
    ud: list[list[float]] = []

    def step() -> None:
        ix = torch.randint(0, n, (B,), generator=g)
        Xb, Yb = X[ix].to(device), Y[ix].to(device)
        loss = F.cross_entropy(stack.forward(Xb), Yb)
        for layer in stack.layers:
            layer.out.retain_grad()
        for p in params:
            p.grad = None
        loss.backward()
        for p in params:
            p.data += -lr * p.grad
        lossi.append(loss.log10().item())
        with torch.no_grad():
            ud.append([((lr * p.grad).std() / p.data.std()).log10().item() for p in params])
        if len(lossi) > 10_000:  # keep a long benchmark's memory flat
            del lossi[:], ud[:]

    return step


def engine_loop(config: TrainConfig, dataset: Dataset, device: torch.device, engine: str,
                stats_every: int) -> Step:
    """traintop's Trainer.step, history and all, with full stats every K steps."""
    config = config.with_changes(stats_every=stats_every, steps=10**12)
    trainer = Trainer(config, dataset, device=str(device), engine=engine)

    def step() -> None:
        trainer.step()

    step.trainer = trainer   # the bench waits for an auto engine's compile
    return step
