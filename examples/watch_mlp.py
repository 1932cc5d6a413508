"""A small PyTorch training script watched by traintop: two lines added.

    python examples/watch_mlp.py --out mlp.jsonl      # train, recording to mlp.jsonl
    traintop attach mlp.jsonl                         # meanwhile, in another terminal
    traintop replay mlp.jsonl                         # afterwards

An MLP learns to tell three interleaved spirals apart. --no-watch runs the
very same loop without the watcher (to measure what watching costs).
"""

from __future__ import annotations

import argparse
import math
import time

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="mlp.jsonl", help="recording (.jsonl or .jsonl.gz)")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--every", type=int, default=10, help="full diagnostics every K steps")
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--no-watch", action="store_true", help="the same loop, unwatched")
    args = parser.parse_args()

    g = torch.Generator().manual_seed(0)
    X, Y = spirals(2000, g)
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(2, args.width), nn.Tanh(),
        nn.Linear(args.width, args.width), nn.GELU(),
        nn.Linear(args.width, args.width), nn.ReLU(),
        nn.Linear(args.width, 3),
    )
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)

    w = None if args.no_watch else watch(model, args.out, optimizer=opt, every=args.every)
    start = time.perf_counter()
    for step in range(args.steps):
        ix = torch.randint(0, len(X), (256,), generator=g)
        loss = F.cross_entropy(model(X[ix]), Y[ix])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if w is not None:
            w.step(loss)                                # after each optimizer step
    seconds = time.perf_counter() - start
    if w is not None:
        w.close()
    print(f"{args.steps} steps in {seconds:.2f} s ({args.steps / seconds:,.0f} steps/s), "
          f"last loss {loss.item():.4f}" + ("" if w is None else f"; recorded {args.out}"))


if __name__ == "__main__":
    main()
