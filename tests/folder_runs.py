"""Small recordings for the folder tests: watch() on tiny models of
different shapes, written where a test says (a folder of trials, of ranks)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from traintop import watch


def tiny(width: int, depth: int = 1, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Linear(6, width), nn.Tanh()]
    for _ in range(depth - 1):
        layers += [nn.Linear(width, width), nn.Tanh()]
    return nn.Sequential(*layers, nn.Linear(width, 3))


def watched(path: Path, width: int = 16, depth: int = 1, steps: int = 12, lr: float = 0.1,
            meta: dict | None = None, seed: int = 0) -> list[float]:
    """Train a tiny model `steps` steps, recorded with watch() at `path`; its losses."""
    path.parent.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # a tiny model: more threads only contend (~30x slower here)
    try:
        return _train(path, width, depth, steps, lr, meta, seed)
    finally:
        torch.set_num_threads(threads)


def _train(path, width, depth, steps, lr, meta, seed) -> list[float]:
    model = tiny(width, depth, seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    X, Y = torch.randn(32, 6, generator=g), torch.randint(0, 3, (32,), generator=g)
    losses = []
    with watch(model, path, optimizer=opt, every=2, meta=meta) as w:
        for _ in range(steps):
            loss = F.cross_entropy(model(X), Y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            w.step(loss)
            losses.append(loss.item())
    return losses


def tune_trial(root: Path, name: str, config: dict, **kw) -> list[float]:
    """A Ray Tune trial directory as Tune leaves one: params.json beside the run."""
    trial = root / name
    trial.mkdir(parents=True, exist_ok=True)
    (trial / "params.json").write_text(json.dumps(config))
    (trial / "result.json").write_text('{"loss": 1.0}\n')    # Tune's own, not a recording
    return watched(trial / "traintop.jsonl", lr=config.get("lr", 0.1), **kw)


def mixed_folder(root: Path) -> dict[str, list[float]]:
    """A folder of mixed recordings: two watch() runs of tiny models of
    different shapes in subfolders, and the lecture's model recorded by
    `traintop run --engine fast --steps 30 --record`; each run's losses
    (the lecture's: none, its report has them)."""
    from traintop.commands import cli

    losses = {"a/small": watched(root / "a" / "small.jsonl", width=8, steps=20),
              "b/deep": watched(root / "b" / "deep.jsonl", width=12, depth=3, steps=20, lr=0.5)}
    code = cli.main(["run", "--engine", "fast", "--steps", "30", "--n-hidden", "16",
                     "--stats-every", "10", "--json", "--record", str(root / "lecture.jsonl")])
    assert code == 0
    return losses
