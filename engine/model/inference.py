"""Around training: split loss, BatchNorm calibration and folding, sampling.

These run the stack in eval mode (BatchNorm on its running estimates) and
never touch the training generator, so they can be called between any two
steps without changing what the run does next.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch
import torch.nn.functional as F

from .layers import BatchNorm1d, Linear, Tanh
from .stack import Stack
from traintop.engine.results import Calibration, FoldCheck

CHUNK = 32768        # examples per forward: bounds memory on big splits
MAX_SAMPLE_LEN = 100  # an untrained model may never pick the end token


def _eval_mode(stack: Stack):
    class _Ctx:
        def __enter__(self):
            stack.set_training(False)

        def __exit__(self, *exc):
            stack.set_training(True)
            for layer in stack.layers:  # drop the eval-sized outputs
                layer.out = None

    return _Ctx()


@torch.no_grad()
def split_loss(stack: Stack, X: torch.Tensor, Y: torch.Tensor, device: torch.device) -> float:
    """Mean cross-entropy over a whole split with BatchNorm in eval mode."""
    total = 0.0
    with _eval_mode(stack):
        for start in range(0, len(Y), CHUNK):
            xb = X[start:start + CHUNK].to(device)
            yb = Y[start:start + CHUNK].to(device)
            total += F.cross_entropy(stack.forward(xb), yb, reduction="sum").double().item()
    return total / len(Y)


@torch.no_grad()
def exact_batchnorm_stats(stack: Stack, X: torch.Tensor,
                          device: torch.device) -> list[tuple[int, torch.Tensor, torch.Tensor]]:
    """(position, mean, var) of every BatchNorm input over the whole of X.

    Each BatchNorm normalises with the exact statistics as the pass goes, so
    later layers see what a network with exact statistics would feed them.
    """
    emb = stack.C[X.to(device)]
    x = emb.view(emb.shape[0], -1)
    found = []
    for i, layer in enumerate(stack.layers):
        if isinstance(layer, Linear):
            x = x @ layer.weight
            if layer.bias is not None:
                x = x + layer.bias
        elif isinstance(layer, BatchNorm1d):
            mean, var = x.mean(0), x.var(0)
            found.append((i, mean, var))
            x = layer.gamma * (x - mean) / torch.sqrt(var + layer.eps) + layer.beta
        elif isinstance(layer, Tanh):
            x = torch.tanh(x)
    return found


@torch.no_grad()
def calibrate(stack: Stack, X: torch.Tensor, device: torch.device, apply: bool) -> Calibration:
    """Compare running BatchNorm estimates with exact ones; optionally adopt them."""
    exact = exact_batchnorm_stats(stack, X, device)
    mean_diff, std_diff = [], []
    for i, mean, var in exact:
        layer = stack.layers[i]
        mean_diff.append((layer.running_mean - mean).abs().max().item())
        std, running_std = var.sqrt(), layer.running_var.sqrt()
        std_diff.append(((running_std - std).abs() / std.clamp_min(1e-12)).max().item())
        if apply:
            layer.running_mean, layer.running_var = mean.clone(), var.clone()
    return Calibration(layers=tuple(i for i, _, _ in exact), mean_max_diff=tuple(mean_diff),
                       std_max_rel_diff=tuple(std_diff), applied=apply)


@contextmanager
def exact_statistics(stack: Stack, X: torch.Tensor, device: torch.device):
    """BatchNorm on the exact statistics of X inside the block (the lecture
    calibrates its first network's over the training set before its loss
    log), the running estimates back after it."""
    saved = [(layer, layer.running_mean, layer.running_var) for _, layer in stack.batchnorms()]
    if saved:
        calibrate(stack, X, device, apply=True)
    try:
        yield
    finally:
        for layer, mean, var in saved:
            layer.running_mean, layer.running_var = mean, var


@torch.no_grad()
def fold_batchnorm(stack: Stack) -> Stack:
    """A copy of the stack with each eval-mode BatchNorm folded into its Linear.

    y = gamma * (x W + b - mu) / sqrt(var + eps) + beta
      = x (W * s) + ((b - mu) * s + beta),   s = gamma / sqrt(var + eps)
    """
    layers: list = []
    for layer in stack.layers:
        if isinstance(layer, BatchNorm1d):
            prev = layers[-1]
            if not isinstance(prev, Linear):
                raise ValueError("a BatchNorm that follows no Linear cannot be folded")
            s = layer.gamma / torch.sqrt(layer.running_var + layer.eps)
            bias = prev.bias if prev.bias is not None else torch.zeros_like(layer.beta)
            folded = Linear.__new__(Linear)
            folded.weight = prev.weight * s
            folded.bias = (bias - layer.running_mean) * s + layer.beta
            folded.out = None
            layers[-1] = folded
        elif isinstance(layer, Linear):
            copy = Linear.__new__(Linear)
            copy.weight = layer.weight.detach().clone()
            copy.bias = None if layer.bias is None else layer.bias.detach().clone()
            copy.out = None
            layers.append(copy)
        else:
            layers.append(Tanh())
    out = Stack(C=stack.C.detach().clone(), layers=layers, params=[], param_names=[],
                block_outputs=[])
    out._collect()
    return out


@torch.no_grad()
def check_fold(stack: Stack, X: torch.Tensor, device: torch.device,
               Y: torch.Tensor | None = None) -> FoldCheck:
    """Largest |logit difference| between the stack and its folded copy on X,
    and with the targets Y the mean cross-entropy of each (eval mode: the
    running statistics, which the folded copy carries in its weights)."""
    folded = fold_batchnorm(stack)
    worst, total, total_folded = 0.0, 0.0, 0.0
    with _eval_mode(stack):
        for start in range(0, len(X), CHUNK):
            xb = X[start:start + CHUNK].to(device)
            logits, logits_folded = stack.forward(xb), folded.forward(xb)
            worst = max(worst, (logits - logits_folded).abs().max().item())
            if Y is not None:
                yb = Y[start:start + CHUNK].to(device)
                total += F.cross_entropy(logits, yb, reduction="sum").double().item()
                total_folded += F.cross_entropy(logits_folded, yb,
                                                reduction="sum").double().item()
    for layer in folded.layers:
        layer.out = None
    n = max(len(X), 1)
    return FoldCheck(max_abs_diff=worst, folded_layers=len(stack.batchnorms()),
                     loss=total / n if Y is not None else math.nan,
                     loss_folded=total_folded / n if Y is not None else math.nan)


@torch.no_grad()
def sample(stack: Stack, itos: dict[int, str], block_size: int, n: int, seed: int,
           device: torch.device) -> tuple[str, ...]:
    """n words drawn as the lecture does: its second generator, seed + 10."""
    g = torch.Generator().manual_seed(seed + 10)
    words = []
    with _eval_mode(stack):
        for _ in range(n):
            context = [0] * block_size
            out = []
            while len(out) < MAX_SAMPLE_LEN:
                logits = stack.forward(torch.tensor([context], device=device))
                probs = F.softmax(logits, dim=1).cpu()
                ix = torch.multinomial(probs, num_samples=1, generator=g).item()
                context = context[1:] + [ix]
                if ix == 0:
                    break
                out.append(itos[ix])
            words.append("".join(out))
    return tuple(words)


def expected_initial_loss(vocab_size: int) -> float:
    """-log(1/vocab): the loss of a uniform guess."""
    return -math.log(1.0 / vocab_size)

