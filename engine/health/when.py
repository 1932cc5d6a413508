"""When a state arose: at init, or while training. The health rules' advice
depends on it (traintop.engine.health.rules).

Saturation, dead units and a fading or growing signal at init come from the
init: the gain, fan-in normalisation, the last layer's scale. The same
figures grown while training come from the updates: the learning rate, or no
BatchNorm to hold the pre-activations in place; and while the loss still goes
down they are a note, not yet a problem (the lecture's stack without
BatchNorm ends its 200,000 steps with 40-50% of its tanh outputs saturated
and a good loss).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from traintop.data.errors import InputError
from traintop.engine.config import parse_gain
from traintop.engine.results import StatsSnapshot


@dataclass(frozen=True)
class When:
    """What a snapshot is judged against, beside its own figures."""

    # The run's figures at init (its step-1 snapshot); None: not seen (a
    # snapshot judged alone, a watched run first measured later).
    init: StatsSnapshot | None = None
    # Whether the loss still goes down (HealthMonitor.improving); None: not known yet.
    improving: bool | None = None
    # The lecture's options of the run (RunInfo.config): the advice names the
    # one at fault (fan-in off, the gain, the activation). Empty for watch().
    config: dict = field(default_factory=dict)


UNKNOWN = When()


def at_init(snap: StatsSnapshot, layer, when: When, crossed) -> bool | None:
    """True: `layer`'s state was there at init (this is the init's snapshot, or
    the init's same layer already crossed the line: `crossed(that layer)`);
    False: it grew while training; None: no figures at init to tell."""
    if snap.step <= 1:
        return True
    if when.init is None:
        return None
    before = same_layer(when.init, layer)
    return None if before is None else bool(crossed(before))


def same_layer(snap: StatsSnapshot, layer):
    return next((l for l in snap.layers if l.index == layer.index and l.name == layer.name),
                None)


def graded(severity: str, grew: bool, when: When) -> str:
    """A state grown while training is a note ("info") while the loss still
    goes down; else it keeps its grade."""
    return "info" if grew and when.improving else severity


def gain_of(config: dict) -> str:
    return str(config.get("gain", "5/3"))


def init_fix(config: dict, what: str, lead: str = "it was so at init: ") -> str:
    """The lecture's advice for a state that was there at init. `what`:
    "saturation" (too big a signal into a tanh), "grow", "shrink"."""
    return lead + _init_fix(config, what)


def _init_fix(config: dict, what: str) -> str:
    linear = config.get("activation") == "linear"
    right, right_text = (1.0, "1 for a linear stack") if linear else (5 / 3, "5/3 for tanh")
    gain = _gain(config)
    if what == "shrink":
        return (f"the gain {gain_of(config)} is too low; raise --gain ({right_text}) or turn "
                "on BatchNorm.")
    if config.get("fan_in") is False:
        return ("fan-in normalisation is off (--no-fan-in), so each layer's weights have std "
                "gain instead of gain/sqrt(fan-in) and every layer multiplies the signal by "
                "about sqrt(fan-in) (10 for 100 inputs); keep fan-in on (drop --no-fan-in) or "
                "turn on BatchNorm.")
    if config.get("batchnorm"):
        return ("BatchNorm is on, so the init's scale is normalised away (not the gain): it "
                "is the batch's own spread, which should fade as gamma and beta learn; if it "
                "stays, lower --lr.")
    if gain is not None and gain <= right:
        return (f"even at gain {gain_of(config)} (the lecture's is {right_text}): lower "
                "--gain further or turn on BatchNorm.")
    return (f"the gain {gain_of(config)} is too high; lower --gain ({right_text}), keep "
            "fan-in normalisation on, or turn on BatchNorm.")


def _gain(config: dict) -> float | None:
    try:
        return parse_gain(config.get("gain", "5/3"))
    except (InputError, TypeError):
        return None


def trained_fix(when: When, was: str) -> str:
    """The lecture's advice for a state that grew while training (`was`: the
    figure at init, in words)."""
    bn = "" if when.config.get("batchnorm") else " or turn on BatchNorm"
    fix = (f"it grew while training ({was} at init): the learning rate pushes the "
           f"pre-activations out; lower --lr (or [ live){bn}")
    if when.improving:
        return fix + "; the loss still goes down, so this is a note, not yet a problem."
    return fix + "."


def unknown_fix(config: dict) -> str:
    return ("if it was so at init, lower --gain (5/3 for tanh) and keep fan-in on; if it "
            "grew while training, lower --lr; BatchNorm cures both.")


def generic_fix(grew: bool | None, init_advice: str) -> str:
    """A watched model's advice (no lecture options to name)."""
    if grew:
        return ("it grew while training: lower the learning rate or normalise the layer's "
                "input (BatchNorm/LayerNorm).")
    return init_advice
