"""The lecture's three layer types, written out as the lecture writes them.

They are not torch.nn modules on purpose: the lecture's BatchNorm uses the
unbiased batch variance (nn.BatchNorm1d normalises with the biased one), and
the exact order of operations is what makes the lecture's figures reproduce
bit for bit. Each layer keeps its last output in `.out` for the diagnostics.
"""

from __future__ import annotations

import torch


class Linear:
    kind = "Linear"

    def __init__(self, fan_in: int, fan_out: int, bias: bool, fan_in_norm: bool,
                 generator: torch.Generator):
        self.weight = torch.randn((fan_in, fan_out), generator=generator)
        if fan_in_norm:
            self.weight = self.weight / fan_in**0.5
        self.bias = torch.zeros(fan_out) if bias else None
        self.out: torch.Tensor | None = None

    @classmethod
    def of(cls, weight: torch.Tensor, bias: torch.Tensor | None) -> "Linear":
        """A Linear of tensors drawn elsewhere (the lecture's first network draws
        its biases too, traintop.engine.model.stages)."""
        layer = cls.__new__(cls)
        layer.weight, layer.bias, layer.out = weight, bias, None
        return layer

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = x @ self.weight  # (B, fan_out)
        if self.bias is not None:
            out = out + self.bias
        self.out = out
        return out

    def parameters(self) -> list[torch.Tensor]:
        return [self.weight] + ([] if self.bias is None else [self.bias])

    def parameter_names(self) -> list[str]:
        return ["weight"] + ([] if self.bias is None else ["bias"])

    def buffers(self) -> dict[str, torch.Tensor]:
        return {}


class BatchNorm1d:
    kind = "BatchNorm1d"

    def __init__(self, dim: int, eps: float = 1e-5, momentum: float = 0.1):
        self.eps = eps
        self.momentum = momentum
        self.training = True
        self.gamma = torch.ones(dim)
        self.beta = torch.zeros(dim)
        self.running_mean = torch.zeros(dim)
        self.running_var = torch.ones(dim)
        self.out: torch.Tensor | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            xmean = x.mean(0, keepdim=True)  # (1, dim) batch mean
            xvar = x.var(0, keepdim=True)    # (1, dim) unbiased batch variance
        else:
            xmean = self.running_mean
            xvar = self.running_var
        xhat = (x - xmean) / torch.sqrt(xvar + self.eps)
        out = self.gamma * xhat + self.beta
        if self.training:
            with torch.no_grad():
                m = self.momentum
                self.running_mean = ((1 - m) * self.running_mean + m * xmean).reshape(-1)
                self.running_var = ((1 - m) * self.running_var + m * xvar).reshape(-1)
        self.out = out
        return out

    def parameters(self) -> list[torch.Tensor]:
        return [self.gamma, self.beta]

    def parameter_names(self) -> list[str]:
        return ["gamma", "beta"]

    def buffers(self) -> dict[str, torch.Tensor]:
        return {"running_mean": self.running_mean, "running_var": self.running_var}

    def load_buffers(self, buffers: dict[str, torch.Tensor]) -> None:
        self.running_mean = buffers["running_mean"]
        self.running_var = buffers["running_var"]


class Tanh:
    kind = "Tanh"

    def __init__(self) -> None:
        self.out: torch.Tensor | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.out = torch.tanh(x)
        return self.out

    def parameters(self) -> list[torch.Tensor]:
        return []

    def parameter_names(self) -> list[str]:
        return []

    def buffers(self) -> dict[str, torch.Tensor]:
        return {}
