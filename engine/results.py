"""What the engine hands out: frozen plain-Python values, never tensors.

Everything here pickles, compares and serialises to JSON, so snapshots can
cross a process boundary, be recorded to a file and be replayed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Histogram:
    """Density histogram over [lo, hi] in equal bins (torch.histogram's density=True)."""

    lo: float
    hi: float
    density: tuple[float, ...]

    def centers(self) -> tuple[float, ...]:
        n = len(self.density)
        width = (self.hi - self.lo) / n if n else 0.0
        return tuple(self.lo + width * (i + 0.5) for i in range(n))


# What `saturation_pct` and `dead` of a layer count, by activation family
# (the lecture's Tanh is "tanh"). Class names, so a viewer needs no torch.
FAMILY_OF_KIND = {
    **dict.fromkeys(("Tanh", "Hardtanh", "Softsign"), "tanh"),
    **dict.fromkeys(("Sigmoid", "Hardsigmoid"), "sigmoid"),
    **dict.fromkeys(("ReLU", "ReLU6", "LeakyReLU", "PReLU", "RReLU"), "relu"),
    **dict.fromkeys(("GELU", "SiLU", "Mish", "ELU", "CELU", "SELU", "Hardswish"), "gelu"),
    # recurrent layers' outputs (watch(): an RNN of nonlinearity "relu" records its family)
    **dict.fromkeys(("LSTM", "GRU", "RNN"), "tanh"),
}
# A GELU/SiLU-like unit is called dead only when its input stays below this
# on every example and position: there the slope |f'(x)| is under about 1%.
DEAD_INPUT_BELOW = {"GELU": -3.0, "SiLU": -6.0, "Mish": -6.0, "ELU": -5.0, "CELU": -5.0,
                    "SELU": -5.0, "Hardswish": -3.0}
# Per family: (short title of the share figure, what a dead unit is).
FAMILY_MEANING = {
    "tanh": ("% saturated |t|>0.97", "saturated (|t|>0.97) on every example"),
    "sigmoid": ("% saturated (t<0.015 or t>0.985)", "saturated on every example"),
    "relu": ("% zeros (t<=0)", "zero on every example and position"),
    "gelu": ("% negative regime (x<0)", "input below the flat-tail threshold everywhere"),
    "": ("% |t|>0.97", "|t|>0.97 on every example"),   # the lecture's linear layers
}


def family_of(kind: str) -> str:
    """"" for a kind of no family (the lecture's "Linear" layers): not judged."""
    return FAMILY_OF_KIND.get(kind, "")


# The figures of a layer and of a weight, declared once, by name, with their
# type (float: kept exactly, float32 where the value is one; int: a count).
# The recording packs and reads them by these names
# (traintop.engine.recording.snapshot_codec), the CSV export writes them as
# columns in this order and TensorBoard the floats as scalars. Adding a figure
# is its entry here, its field below (defaulting to NaN, which is what a
# recording written before it reads back), the code that computes it and a test.
LAYER_FIGURES: dict[str, type] = {
    "mean": float, "std": float, "saturation_pct": float, "dead": int, "units": int,
    "grad_mean": float, "grad_std": float, "absmax": float,
    "nonfinite": float, "grad_nonfinite": float,
}
WEIGHT_FIGURES: dict[str, type] = {"grad_mean": float, "grad_std": float,
                                   "grad_data_ratio": float,
                                   "nonfinite": float, "grad_nonfinite": float}


@dataclass(frozen=True)
class LayerStats:
    """One activation layer: its output t and dloss/dt, over the step's batch."""

    index: int             # position in the flat stack, as the lecture counts
    kind: str              # the module's class name: "Tanh", "GELU", ...
    mean: float
    std: float
    saturation_pct: float  # the family's share (FAMILY_MEANING): tanh |t| > 0.97, ...
    dead: int              # units (features/channels) dead on the whole batch, per family
    units: int             # features (last dim) or channels (dim 1 of a conv output)
    grad_mean: float
    grad_std: float
    hist: Histogram
    grad_hist: Histogram
    name: str = ""         # module path (watch()); "" for the lecture's stack
    family: str = ""       # "tanh" | "sigmoid" | "relu" | "gelu"; "" = from kind
    per_unit: int = 0      # observations per unit (examples x positions); 0 = unknown
    # max |t| over the batch: the outlier a float16/bfloat16 cast overflows or an
    # int8 quantisation clips (the "outlier features" of large models); NaN: not measured
    absmax: float = math.nan
    # values of t (of dloss/dt) that are NaN or inf, left out of the histogram
    # (watch()); a count, NaN: not counted
    nonfinite: float = math.nan
    grad_nonfinite: float = math.nan
    # the lecture's first network (--stage): |t| > 0.99 per example, a bit per
    # unit (bit j = unit j); () where not measured (the deep stack, a recording)
    saturation_map: tuple[int, ...] = ()
    # the lecture's first network: the histogram of the layer's input, the
    # pre-activation (hpreact); None where not measured
    preact_hist: Histogram | None = None

    @property
    def fam(self) -> str:
        return self.family or family_of(self.kind)

    @property
    def label(self) -> str:
        """What a user calls this layer: its module path (with the kind where the path
        is only numbers, as in an nn.Sequential), else its place in the stack."""
        if self.name and self.name.replace(".", "").isdigit():
            return f"{self.name} {self.kind}"
        return self.name or f"L{self.index}"


@dataclass(frozen=True)
class WeightStats:
    """One 2-D parameter (C and every Linear weight) and its gradient."""

    name: str
    shape: tuple[int, ...]
    grad_mean: float
    grad_std: float
    grad_data_ratio: float  # grad.std() / param.std(), param after the update
    hist: Histogram
    # values of the parameter after the update (of its gradient) that are NaN or
    # inf (watch()); a count, NaN: not counted
    nonfinite: float = math.nan
    grad_nonfinite: float = math.nan


@dataclass(frozen=True)
class StatsSnapshot:
    """The full diagnostics of one step (its forward, backward and update)."""

    step: int
    loss: float
    lr: float
    layers: tuple[LayerStats, ...]
    weights: tuple[WeightStats, ...]
    update_ratio_log10: tuple[float, ...]  # every parameter, parameter order


@dataclass(frozen=True)
class NonFinite:
    """Where a step first produced NaN or inf."""

    step: int
    where: str   # e.g. "layer 4 (BatchNorm1d)", "loss", "parameter 3.weight"
    what: str    # "activation", "gradient" or "loss"

    def message(self) -> str:
        return f"non-finite {self.what} at step {self.step:,} in {self.where}"


@dataclass(frozen=True, init=False)
class StepResult:
    """One step. `step` counts steps done, so the first step is step 1."""

    step: int
    loss: float
    lr: float
    update_ratio_log10: tuple[float, ...]
    stats: StatsSnapshot | None = None
    nonfinite: NonFinite | None = None
    # The total gradient norm before clipping, where the run said it
    # (watch()'s w.step(loss, grad_norm=...)); NaN: not known.
    grad_norm: float = math.nan

    def __init__(self, step: int, loss: float, lr: float, update_ratio_log10: tuple[float, ...],
                 stats: StatsSnapshot | None = None, nonfinite: NonFinite | None = None,
                 grad_norm: float = math.nan):
        # The fields in one go, not a frozen __setattr__ each (the generated
        # __init__'s way): watch() makes one a step, ~0.45 us of ~1 us saved.
        self.__dict__.update(step=step, loss=loss, lr=lr,
                             update_ratio_log10=update_ratio_log10, stats=stats,
                             nonfinite=nonfinite, grad_norm=grad_norm)

    @property
    def log10_loss(self) -> float:
        return math.log10(self.loss) if self.loss > 0 and math.isfinite(self.loss) else math.nan


@dataclass(frozen=True)
class RunInfo:
    """What stays fixed during one run: shapes and names to label the figures."""

    config: dict
    vocab: str                       # characters of tokens 1..; token 0 is '.'
    param_names: tuple[str, ...]
    param_shapes: tuple[tuple[int, ...], ...]
    layer_kinds: tuple[str, ...]     # the flat stack, by position
    expected_initial_loss: float     # -log(1/vocab_size)


@dataclass(frozen=True)
class Calibration:
    """BatchNorm running estimates against exact training-set statistics."""

    layers: tuple[int, ...]           # positions of the BatchNorm layers
    mean_max_diff: tuple[float, ...]  # max |running_mean - exact mean| per layer
    std_max_rel_diff: tuple[float, ...]  # max |running_std - exact std| / exact std
    applied: bool                     # True when the exact values replaced the estimates


@dataclass(frozen=True)
class FoldCheck:
    """Eval outputs of the stack against the stack with BatchNorm folded in."""

    max_abs_diff: float
    folded_layers: int
    loss: float = math.nan          # mean cross-entropy of the stack as it is (NaN: no targets)
    loss_folded: float = math.nan   # the same of the folded copy
