"""A Ray Tune experiment watched by traintop: every trial records into its own folder.

    python examples/ray_tune_watch.py --name spirals        # 4 trials, lr and init gain sampled
    traintop attach ~/ray_results/spirals                   # meanwhile: every trial, live
    traintop replay ~/ray_results/spirals                   # afterwards

Each trial trains a small MLP on three interleaved spirals with the lr and the
gain of its tanh layers' init drawn by Tune, and records with watch() into
its trial folder (traintop.ray.trial_path), beside the params.json that
labels it in the folder view. Needs `pip install 'traintop[ray]'`.
"""

from __future__ import annotations

import argparse
import math
import os

import torch
import torch.nn.functional as F
from torch import nn

from traintop import watch


def spirals(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """n points on each of three noisy spiral arms; labels are the arms."""
    t = torch.rand(3, n, generator=generator) * 3 * math.pi              # (3, n)
    arm = torch.arange(3).unsqueeze(1) * (2 * math.pi / 3)               # (3, 1)
    x = torch.stack([t * torch.cos(t + arm), t * torch.sin(t + arm)], -1) / (3 * math.pi)
    x = x + 0.02 * torch.randn(x.shape, generator=generator)             # (3, n, 2)
    return x.reshape(-1, 2), torch.arange(3).repeat_interleave(n)


def make_model(gain: float, width: int = 64) -> nn.Sequential:
    """Two tanh layers whose init is scaled by `gain`: too small and the signal
    fades, too large and the tanh saturates, which is what the trials compare."""
    model = nn.Sequential(nn.Linear(2, width), nn.Tanh(), nn.Linear(width, width), nn.Tanh(),
                          nn.Linear(width, 3))
    for layer in (model[0], model[2]):
        nn.init.xavier_normal_(layer.weight, gain=gain)
        nn.init.zeros_(layer.bias)
    return model


def train(config: dict, path: str, report=None) -> list[float]:
    """One trial: seeded by config["seed"], so the same config trains the same
    way inside Tune or out. Returns the losses; `report(loss)` every 50 steps."""
    torch.manual_seed(config["seed"])
    g = torch.Generator().manual_seed(config["seed"])
    X, Y = spirals(500, g)
    model = make_model(config["gain"])
    opt = torch.optim.Adam(model.parameters(), lr=config["lr"])
    losses = []
    with watch(model, path, optimizer=opt, every=config.get("every", 10)) as w:
        for step in range(1, config["steps"] + 1):
            ix = torch.randint(0, len(X), (128,), generator=g)
            loss = F.cross_entropy(model(X[ix]), Y[ix])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            w.step(loss)
            losses.append(loss.item())
            if report is not None and (step % 50 == 0 or step == config["steps"]):
                report(sum(losses[-50:]) / len(losses[-50:]))
    return losses


def trainable(config: dict) -> None:
    from ray import tune
    from traintop.ray import trial_path
    train(config, trial_path("traintop.jsonl"), report=lambda loss: tune.report({"loss": loss}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="spirals", help="the experiment's folder name")
    parser.add_argument("--storage", default=os.path.expanduser("~/ray_results"),
                        help="where the experiment's folder goes")
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--every", type=int, default=10, help="full diagnostics every K steps")
    parser.add_argument("--cpus", type=int, default=None, help="Ray's CPUs (default: all)")
    args = parser.parse_args()

    import ray
    from ray import tune
    ray.init(num_cpus=args.cpus, include_dashboard=False, configure_logging=False)
    space = {"lr": tune.loguniform(1e-4, 3e-2), "gain": tune.uniform(0.2, 4.0),
             "seed": 0, "steps": args.steps, "every": args.every}
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": 1}), param_space=space,
        tune_config=tune.TuneConfig(num_samples=args.trials, metric="loss", mode="min"),
        run_config=tune.RunConfig(name=args.name, storage_path=args.storage, verbose=0))
    results = tuner.fit()
    best = results.get_best_result()
    print(f"{len(results)} trials in {os.path.join(args.storage, args.name)}; best loss "
          f"{best.metrics['loss']:.4f} (lr {best.config['lr']:.2e}, gain {best.config['gain']:.2f})")
    ray.shutdown()


if __name__ == "__main__":
    main()
