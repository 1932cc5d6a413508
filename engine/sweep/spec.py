"""`--sweep KEY=V1,V2,...`: the runs of a sweep, as configs and labels.

Repeated options form the product, in the order given: `--sweep gain=1,5/3
--sweep batchnorm=on,off` is gain 1 with BatchNorm on, then off, then gain
5/3 on, off. Every value is checked by TrainConfig.validated, so a sweep
refuses exactly what the single-run option would.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from traintop.data.errors import InputError
from traintop.engine.config import TrainConfig

MAX_RUNS = 16
# The knobs a sweep may vary: the init-time choices and the training ones.
KEYS = ("gain", "batchnorm", "fan_in", "bias", "last_layer_scale", "lr", "init", "stage")


@dataclass(frozen=True)
class SweepRun:
    label: str              # "gain=5/3 batchnorm=off": the swept values only
    changes: dict           # the swept values as config fields
    config: TrainConfig     # the base config with `changes` applied


def parse_sweep(items: list[str] | tuple[str, ...], base: TrainConfig) -> tuple[SweepRun, ...]:
    """The runs of `--sweep` options `items` over `base`; InputError (one line
    naming the option) for an unknown key, a malformed or empty value list,
    a value the knob refuses, a repeated key or more than MAX_RUNS runs."""
    axes: list[tuple[str, list[tuple[str, object]]]] = []
    for item in items:
        key, sep, values = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise InputError(f"--sweep {item!r}: expected KEY=V1,V2,... (e.g. gain=1,5/3)")
        if key not in KEYS:
            raise InputError(f"--sweep {item!r}: unknown key {key!r}; "
                             f"one of {', '.join(KEYS)}")
        if any(key == seen for seen, _ in axes):
            raise InputError(f"--sweep {item!r}: {key} is swept twice")
        texts = [v.strip() for v in values.split(",")]
        if not values.strip() or any(not t for t in texts):
            raise InputError(f"--sweep {item!r}: empty value in the list")
        parsed = [(t, _value(key, t, item)) for t in texts]
        for i, (text, value) in enumerate(parsed):
            if any(value == other for _, other in parsed[:i]):
                raise InputError(f"--sweep {item!r}: {text} is given twice "
                                 "(two runs of the same values)")
        axes.append((key, parsed))
    if not axes:
        return ()
    count = 1
    for _, values in axes:
        count *= len(values)
    if count > MAX_RUNS:
        raise InputError(f"--sweep: {count} runs; at most {MAX_RUNS} train side by side")
    runs = []
    for combo in itertools.product(*(values for _, values in axes)):
        changes = {key: value for (key, _), (_, value) in zip(axes, combo)}
        label = " ".join(f"{key}={text}" for (key, _), (text, _) in zip(axes, combo))
        try:
            config = base.with_changes(**changes)
        except InputError as exc:
            raise InputError(f"--sweep {label}: {exc}") from None
        runs.append(SweepRun(label, changes, config))
    return tuple(runs)


def _value(key: str, text: str, item: str):
    """The config field's value for `text`; InputError naming the option."""
    lowered = text.lower()
    if key in ("batchnorm", "fan_in", "bias"):
        if lowered in ("on", "true", "yes", "1"):
            return True
        if lowered in ("off", "false", "no", "0"):
            return False
        raise InputError(f"--sweep {item!r}: {key} takes on or off, got {text!r}")
    if key in ("lr", "last_layer_scale"):
        try:
            return float(text)
        except ValueError:
            raise InputError(f"--sweep {item!r}: {text!r} is not a number") from None
    return text  # gain ("5/3"), init and stage are checked by TrainConfig.validated
