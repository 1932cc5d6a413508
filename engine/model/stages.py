"""The lecture's first network: one hidden layer of 200 tanh units, in stages.

Before the deep stack the lecture trains `C, W1, b1, W2, b2` (embedding 10,
block 3) and repairs its init stage by stage (traintop.engine.config.STAGES):
the original init (a first loss ~27, the hockey stick); the softmax made
less confident (W2 x0.01, b2 x0); tanh no longer saturated (W1 x0.2, b1
x0.01); Kaiming's W1 x(5/3)/sqrt(30); then BatchNorm on the pre-activation.
The stage's config fields say the W1 and W2 scales (gain, fan_in,
last_layer_scale); the bias scales are here. Everything is drawn from the
one generator in the lecture's order, C, W1, b1, W2, b2 (the batches
follow), with the lecture's own operations, so its loss log reproduces.

The network is a Stack of the deep stack's layer types, so every engine,
the diagnostics, checkpoints and inference work on it unchanged:
  Linear(30, 200) [BatchNorm1d(200)] Tanh Linear(200, 27)
b1 is still drawn and added with BatchNorm on (it cancels in the batch
mean), as in the run whose figures the lecture prints. The lecture's
BatchNorm here divides by the batch std without an eps and keeps running
estimates with momentum 0.001: a BatchNorm1d of eps 0 and that momentum.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from traintop.engine.config import TrainConfig
from traintop.engine.results import Histogram
from traintop.engine.steps.stats import BINS
from .layers import BatchNorm1d, Linear, Tanh

# Init scale of b1 and b2 per stage (W1's and W2's are config fields).
BIAS_SCALES = {"original": (1.0, 1.0), "fix-softmax": (1.0, 0.0), "fix-tanh": (0.01, 0.0),
               "kaiming": (0.01, 0.0), "batchnorm": (0.01, 0.0)}
BN_MOMENTUM = 0.001
# The lecture's saturation map: |h| above this is white.
MAP_THRESHOLD = 0.99


def build_stage_layers(config: TrainConfig, vocab_size: int, generator: torch.Generator):
    """(C, layers, block_outputs) of the first network at config.stage."""
    n_in = config.n_embd * config.block_size
    b1_scale, b2_scale = BIAS_SCALES[config.stage]
    g = generator
    C = torch.randn((vocab_size, config.n_embd), generator=g)
    W1 = torch.randn((n_in, config.n_hidden), generator=g)
    gain = config.gain_value
    if gain != 1.0:
        W1 = W1 * gain
    if config.fan_in:
        W1 = W1 / n_in**0.5
    b1 = torch.randn(config.n_hidden, generator=g)
    if b1_scale != 1.0:
        b1 = b1 * b1_scale
    W2 = torch.randn((config.n_hidden, vocab_size), generator=g)
    if config.last_layer_scale != 1.0:
        W2 = W2 * config.last_layer_scale
    b2 = torch.randn(vocab_size, generator=g)
    if b2_scale != 1.0:
        b2 = b2 * b2_scale
    layers: list = [Linear.of(W1, b1)]
    if config.batchnorm:
        layers.append(BatchNorm1d(config.n_hidden, eps=0.0, momentum=BN_MOMENTUM))
    layers.append(Tanh())
    block_outputs = [len(layers) - 1]
    layers.append(Linear.of(W2, b2))
    return C, layers, block_outputs


def saturation_map(t: torch.Tensor) -> tuple[int, ...]:
    """|t| > MAP_THRESHOLD of a (batch, units) output: per example, a bit per
    unit (bit j = unit j), the lecture's black-and-white image."""
    white = (t.detach().abs() > MAP_THRESHOLD).cpu()
    weights = [1 << j for j in range(white.shape[1])]
    return tuple(sum(w for w, on in zip(weights, row) if on) for row in white.tolist())


def with_first_network_figures(snap, stack):
    """`snap` with the lecture's figures of the first network for each measured
    layer: the saturation map of its last output and its pre-activation's
    histogram (the output of the layer before it)."""
    def figures(layer):
        # A sweep's batched step sets only the measured outputs (a run's
        # pre-activation then has no histogram; its stack's is None, never
        # another step's: a run joins a batched group only with a fresh stack).
        out, pre = stack.layers[layer.index].out, stack.layers[layer.index - 1].out
        if out is None:
            return layer
        return replace(layer, saturation_map=saturation_map(out),
                       preact_hist=None if pre is None else _histogram(pre))

    return replace(snap, layers=tuple(figures(layer) for layer in snap.layers))


def _histogram(t: torch.Tensor) -> Histogram:
    """Density histogram over t's own range, as the snapshot's (torch.histc, BINS bins)."""
    t = t.detach().float()
    lo, hi = t.min().item(), t.max().item()
    counts = torch.histc(t, bins=BINS).tolist()
    if hi == lo:  # torch widens a zero-width range by 0.5 on each side
        lo, hi = lo - 0.5, hi + 0.5
    width = (hi - lo) / BINS
    return Histogram(lo, hi, tuple(c / (t.numel() * width) for c in counts))
