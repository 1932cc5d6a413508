"""Floats in the recording's JSON: JSON has no NaN or infinity, so they are
written as the strings "NaN", "Infinity" and "-Infinity" and read back."""

from __future__ import annotations

import math

NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def num(x: float):
    """A float as JSON takes it: non-finite ones as their strings."""
    if isinstance(x, float) and not math.isfinite(x):
        return "NaN" if math.isnan(x) else ("Infinity" if x > 0 else "-Infinity")
    return x


def number(x) -> float:
    """num()'s value back; anything but a number (or its string) is a ValueError."""
    if isinstance(x, str):
        return NONFINITE[x]
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise ValueError(f"expected a number, got {x!r}")
    return float(x)


def numbers(xs) -> tuple[float, ...]:
    return tuple(number(x) for x in xs)


def plain_data(value):
    """Event data back from JSON: the non-finite strings become floats again."""
    if isinstance(value, str):
        return NONFINITE.get(value, value)
    if isinstance(value, list):
        return [plain_data(v) for v in value]
    if isinstance(value, dict):
        return {k: plain_data(v) for k, v in value.items()}
    return value
