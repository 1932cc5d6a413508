"""The deep stack: embedding, `depth` Linear -> [BatchNorm1d] -> Tanh blocks, output."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from traintop.engine.config import TrainConfig
from .layers import BatchNorm1d, Linear, Tanh
from .stages import build_stage_layers


@dataclass
class Stack:
    C: torch.Tensor      # (vocab, n_embd) embedding table
    layers: list         # flat stack; positions are the lecture's layer numbers
    params: list[torch.Tensor]
    param_names: list[str]
    block_outputs: list[int]  # position of each hidden block's last layer

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        emb = self.C[X]                       # (B, block_size, n_embd)
        x = emb.view(emb.shape[0], -1)        # (B, block_size * n_embd)
        for layer in self.layers:
            x = layer(x)
        return x                              # (B, vocab) logits

    def loss(self, X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.forward(X), Y)

    def set_training(self, training: bool) -> None:
        for layer in self.layers:
            if isinstance(layer, BatchNorm1d):
                layer.training = training

    def tanh_positions(self) -> list[int]:
        """Layers the diagnostics measure: each hidden block's output (its Tanh,
        or in a linear stack its Linear or BatchNorm1d)."""
        return self.block_outputs

    def batchnorms(self) -> list[tuple[int, BatchNorm1d]]:
        return [(i, l) for i, l in enumerate(self.layers) if isinstance(l, BatchNorm1d)]

    def to(self, device: torch.device) -> None:
        # detach: a moved leaf must stay a leaf, or its .grad never fills in.
        def move(p: torch.Tensor) -> torch.Tensor:
            return p.detach().to(device).requires_grad_(p.requires_grad)

        self.C = move(self.C)
        for layer in self.layers:
            for name in layer.parameter_names():
                setattr(layer, name, move(getattr(layer, name)))
            for name, buf in layer.buffers().items():
                setattr(layer, name, buf.to(device))
        self._collect()

    def _collect(self) -> None:
        self.params = [self.C]
        self.param_names = ["C"]
        for i, layer in enumerate(self.layers):
            for name in layer.parameter_names():
                self.params.append(getattr(layer, name))
                self.param_names.append(f"{i}.{name}")


def build_stack(config: TrainConfig, vocab_size: int, generator: torch.Generator) -> Stack:
    """The lecture's stack, drawing from `generator` in the lecture's order
    (with config.stage, its first network: traintop.engine.model.stages)."""
    if config.stage is not None:
        C, layers, block_outputs = build_stage_layers(config, vocab_size, generator)
        return _stack(C, layers, block_outputs)
    bias, norm, bn = config.use_bias, config.fan_in, config.batchnorm
    C = torch.randn((vocab_size, config.n_embd), generator=generator)
    layers: list = []
    block_outputs: list[int] = []
    fan_in = config.n_embd * config.block_size
    for _ in range(config.depth):
        layers.append(Linear(fan_in, config.n_hidden, bias, norm, generator))
        if bn:
            layers.append(BatchNorm1d(config.n_hidden))
        if config.activation == "tanh":
            layers.append(Tanh())
        block_outputs.append(len(layers) - 1)
        fan_in = config.n_hidden
    layers.append(Linear(fan_in, vocab_size, bias, norm, generator))
    if bn:
        layers.append(BatchNorm1d(vocab_size))

    gain = config.gain_value
    with torch.no_grad():
        last = layers[-1]
        if isinstance(last, BatchNorm1d):
            last.gamma *= config.last_layer_scale
        else:
            last.weight *= config.last_layer_scale
        # layers[:-1], as the lecture loops: with BatchNorm last this includes
        # the output Linear, which then takes the gain as well.
        for layer in layers[:-1]:
            if isinstance(layer, Linear):
                layer.weight *= gain
    if config.init == "zeros":
        # After the draws, so the generator's batch stream is the default run's.
        with torch.no_grad():
            C.zero_()
            for layer in layers:
                for name in layer.parameter_names():
                    getattr(layer, name).zero_()
    return _stack(C, layers, block_outputs)


def _stack(C: torch.Tensor, layers: list, block_outputs: list[int]) -> Stack:
    stack = Stack(C=C, layers=layers, params=[], param_names=[], block_outputs=block_outputs)
    stack._collect()
    for p in stack.params:
        p.requires_grad_(True)
    return stack
