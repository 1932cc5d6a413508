"""The lecture's stack in eval mode written out by hand, for the fold and
calibration tests: logits on given BatchNorm statistics, the exact
training-set statistics, and the folded weights, none of it through
traintop.engine.model.inference."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from traintop.engine.model.layers import BatchNorm1d, Linear, Tanh


@torch.no_grad()
def logits(stack, X: torch.Tensor, stats=None, folded: bool = False) -> torch.Tensor:
    """`stats`: one (mean, var) per BatchNorm, None for its running estimates.
    `folded`: each BatchNorm multiplied into the Linear before it first."""
    bns = [l for l in stack.layers if isinstance(l, BatchNorm1d)]
    stats = stats or [(l.running_mean, l.running_var) for l in bns]
    x = stack.C[X].view(len(X), -1)
    layers, k = stack.layers, 0
    i = 0
    while i < len(layers):
        layer = layers[i]
        if isinstance(layer, Linear):
            W, b = layer.weight, layer.bias if layer.bias is not None else 0.0
            nxt = layers[i + 1] if i + 1 < len(layers) else None
            if folded and isinstance(nxt, BatchNorm1d):
                mean, var = stats[k]
                s = nxt.gamma / torch.sqrt(var + nxt.eps)
                x = x @ (W * s) + ((b - mean) * s + nxt.beta)
                k += 1
                i += 2
                continue
            x = x @ W + b
        elif isinstance(layer, BatchNorm1d):
            mean, var = stats[k]
            x = layer.gamma * (x - mean) / torch.sqrt(var + layer.eps) + layer.beta
            k += 1
        elif isinstance(layer, Tanh):
            x = torch.tanh(x)
        i += 1
    return x


@torch.no_grad()
def exact_stats(stack, X: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Each BatchNorm's input mean and (unbiased) variance over all of X, each
    layer normalised on its exact statistics as the pass goes."""
    out = []
    x = stack.C[X].view(len(X), -1)
    for layer in stack.layers:
        if isinstance(layer, Linear):
            x = x @ layer.weight + (layer.bias if layer.bias is not None else 0.0)
        elif isinstance(layer, BatchNorm1d):
            mean, var = x.mean(0), x.var(0)
            out.append((mean, var))
            x = layer.gamma * (x - mean) / torch.sqrt(var + layer.eps) + layer.beta
        elif isinstance(layer, Tanh):
            x = torch.tanh(x)
    return out


def loss(stack, split, **kw) -> float:
    return F.cross_entropy(logits(stack, split.X, **kw).double(), split.Y).item()
