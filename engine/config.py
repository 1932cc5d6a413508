"""Every knob of the lecture's run, with the lecture's defaults."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from fractions import Fraction

from traintop.data.errors import InputError

# The init gains the lecture tries, in the order the app steps through them.
GAIN_STEPS = ("0.5", "1", "5/3", "2", "3")
# The trainer's step paths (traintop.engine.training.trainer). The command
# line's default "auto" steps the fast engine at once and the compiled one
# once a background thread has compiled it; "exact" reproduces the lecture
# bit for bit; the Trainer class itself defaults to "exact".
ENGINES = ("auto", "exact", "fast", "compiled")
DEFAULT_ENGINE = "auto"
ACTIVATIONS = ("tanh", "linear")
# "zeros": every parameter starts at 0, the lecture's exercise 1 (what still trains?).
INITS = ("default", "zeros")

# The lecture's first network (one hidden layer of 200 tanh units, before
# the deep stack), in the stages the lecture repairs it: each stage is its
# network and init written as config fields (traintop.engine.model.stages
# draws it in the lecture's order; the biases' init scales live there).
STAGES = ("original", "fix-softmax", "fix-tanh", "kaiming", "batchnorm")
STAGE_NETWORK = {"n_embd": 10, "n_hidden": 200, "depth": 1, "block_size": 3,
                 "activation": "tanh", "bias": True, "init": "default"}
STAGE_INIT = {
    # W1 x gain (/ sqrt(30) with fan_in), W2 x last_layer_scale
    "original": {"gain": "1", "fan_in": False, "last_layer_scale": 1.0, "batchnorm": False},
    "fix-softmax": {"gain": "1", "fan_in": False, "last_layer_scale": 0.01, "batchnorm": False},
    "fix-tanh": {"gain": "0.2", "fan_in": False, "last_layer_scale": 0.01, "batchnorm": False},
    "kaiming": {"gain": "5/3", "fan_in": True, "last_layer_scale": 0.01, "batchnorm": False},
    "batchnorm": {"gain": "5/3", "fan_in": True, "last_layer_scale": 0.01, "batchnorm": True},
}
# The lecture's loss log: (train, val) it printed after 200,000 steps of each
# stage (the original's digits are chaotic: re-runs print 2.1241 / 2.1655 too).
STAGE_LOSS_LOG = {"original": (2.1245, 2.1682), "fix-softmax": (2.07, 2.13),
                  "fix-tanh": (2.0356, 2.1027), "kaiming": (2.0377, 2.1070),
                  "batchnorm": (2.0668, 2.1048)}
# The fields a stage sets: an option or key that changes one does not apply to it.
STAGE_FIXED = tuple(STAGE_NETWORK) + tuple(STAGE_INIT["original"])


def stage_fields(stage: str) -> dict:
    """The config fields of the lecture's first network at `stage`."""
    return {**STAGE_NETWORK, **STAGE_INIT[stage]}


def parse_gain(text: str | float, option: str = "--gain") -> float:
    """'5/3', '1.5' or a number, to a float; InputError names `option`."""
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        try:
            value = float(Fraction(str(text).strip()))
        except (ValueError, ZeroDivisionError):
            raise InputError(f"{option}: {text!r} is not a number or fraction like 5/3") from None
    if not math.isfinite(value) or value <= 0:
        raise InputError(f"{option}: must be finite and > 0, got {text}")
    return value


def gain_label(value: float) -> str:
    """5/3 for 1.666…, 0.5 for 0.5: the lecture's way of naming gains."""
    frac = Fraction(value).limit_denominator(12)
    if abs(float(frac) - value) < 1e-9:
        return str(frac)
    return f"{value:g}"


@dataclass(frozen=True)
class TrainConfig:
    n_embd: int = 10            # embedding width of each character
    n_hidden: int = 100         # width of each hidden Linear
    depth: int = 5              # number of Linear -> [BatchNorm1d] -> Tanh blocks
    block_size: int = 3         # characters of context
    batchnorm: bool = True      # insert BatchNorm1d after every Linear
    activation: str = "tanh"    # "tanh", or "linear": no nonlinearity (the lecture's linear sandwich)
    gain: str = "5/3"           # init gain on hidden Linear weights (5/3 is tanh's)
    fan_in: bool = True         # divide initial weights by sqrt(fan_in)
    bias: bool | None = None    # None: on without BatchNorm, off with it (BN cancels it)
    last_layer_scale: float = 0.1  # make the output layer less confident at init
    init: str = "default"       # "zeros": every weight and bias 0 (draws still made, so batches match)
    steps: int = 200_000        # optimisation steps of a run
    lr: float = 0.1             # learning rate before the decay step
    lr_decay_step: int = 100_000  # first step that uses lr_after
    lr_after: float | None = None  # lr from lr_decay_step on; None: a tenth of lr (0.1 -> 0.01)
    batch_size: int = 32        # examples per step
    seed: int = 2147483647      # torch generator: init, batches
    split_seed: int = 42        # Python random: the train/val/test shuffle
    stats_every: int = 100      # full diagnostics every K steps (and on the last)
    stage: str | None = None    # the lecture's first network at this stage (STAGES); None: the deep stack

    @property
    def gain_value(self) -> float:
        return parse_gain(self.gain)

    @property
    def use_bias(self) -> bool:
        return (not self.batchnorm) if self.bias is None else self.bias

    @property
    def lr_after_value(self) -> float:
        """The lr from the decay step on: --lr-after, or a tenth of --lr."""
        return self.lr / 10 if self.lr_after is None else self.lr_after

    def lr_at(self, step: int) -> float:
        """Scheduled learning rate of 0-based step `step`: the decay divides
        the lr by lr / lr_after (a live change scales this, see Trainer.lr)."""
        return self.lr if step < self.lr_decay_step else self.lr_after_value

    def with_changes(self, **changes) -> "TrainConfig":
        stage = changes.get("stage", self.stage)
        if stage in STAGE_INIT:
            fixed = stage_fields(stage)
            for key in STAGE_FIXED:
                if key in changes and not _same(key, changes[key], fixed[key]):
                    raise InputError(
                        f"--{key.replace('_', '-')}: does not apply to the lecture's first "
                        f"network (--stage {stage} sets it: {_shown(key, fixed[key])}); "
                        "pick another --stage, or leave --stage for the deep stack")
        return replace(self, **changes).validated()

    def to_dict(self) -> dict:
        out = asdict(self)
        out["bias"] = self.use_bias
        return out

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InputError(f"unknown config keys: {', '.join(unknown)}")
        return cls(**values).validated()

    def validated(self) -> "TrainConfig":
        """Self, with gain normalised, or InputError naming the bad option."""
        def need(ok: bool, option: str, why: str) -> None:
            if not ok:
                raise InputError(f"--{option.replace('_', '-')}: {why}")

        for name in ("n_embd", "n_hidden", "depth", "block_size"):
            value = getattr(self, name)
            need(isinstance(value, int) and not isinstance(value, bool) and value >= 1,
                 name, f"must be a whole number >= 1, got {value!r}")
        gain = parse_gain(self.gain)
        need(self.init in INITS, "init", f"must be one of {', '.join(INITS)}, got {self.init!r}")
        need(self.activation in ACTIVATIONS, "activation",
             f"must be one of {', '.join(ACTIVATIONS)}, got {self.activation!r}")
        for name in ("lr", "lr_after", "last_layer_scale"):
            value = getattr(self, name)
            if name == "lr_after" and value is None:
                continue    # a tenth of lr
            need(isinstance(value, (int, float)) and math.isfinite(value) and value > 0,
                 name, f"must be finite and > 0, got {value!r}")
        for name in ("steps", "lr_decay_step"):
            value = getattr(self, name)
            need(isinstance(value, int) and value >= 0, name, f"must be >= 0, got {value!r}")
        need(isinstance(self.stats_every, int) and self.stats_every >= 1,
             "stats_every", f"must be >= 1, got {self.stats_every!r}")
        need(isinstance(self.batch_size, int) and self.batch_size >= 1,
             "batch_size", f"must be >= 1, got {self.batch_size!r}")
        # BatchNorm's unbiased batch variance divides by batch_size - 1.
        need(self.batch_size >= 2 or not self.batchnorm,
             "batch_size", "must be >= 2 with BatchNorm (a batch of one has no variance)")
        for name in ("seed", "split_seed"):
            value = getattr(self, name)
            need(isinstance(value, int) and 0 <= value < 2**63, name,
                 f"must be a whole number in [0, 2**63), got {value!r}")
        need(self.stage is None or self.stage in STAGES, "stage",
             f"must be one of {', '.join(STAGES)}, got {self.stage!r}")
        if self.stage is not None:
            return replace(self, **stage_fields(self.stage), lr=float(self.lr),
                           lr_after=None if self.lr_after is None else float(self.lr_after))
        label = gain_label(gain) if not isinstance(self.gain, str) else self.gain.strip()
        return replace(self, gain=label, lr=float(self.lr),
                       lr_after=None if self.lr_after is None else float(self.lr_after),
                       last_layer_scale=float(self.last_layer_scale))


def _same(key: str, value, fixed) -> bool:
    """Whether an option's `value` is what the stage sets anyway (no change)."""
    if key == "gain":
        try:
            return parse_gain(value) == parse_gain(fixed)
        except InputError:
            return False
    return value == fixed


def _shown(key: str, value) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return f"{key.replace('_', ' ')} {value}"
