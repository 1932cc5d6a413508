"""Version-1 lines back to messages (traintop 0.1 wrote every step as a row
of JSON numbers and every figure by name, every histogram as densities).

Figures are read by the names traintop.engine.results declares; one a
version-1 file never held comes back as its field's default (NaN)."""

from __future__ import annotations

from traintop.engine.recording.json_numbers import number, numbers
from traintop.engine.results import (LAYER_FIGURES, WEIGHT_FIGURES, Histogram, LayerStats,
                                     NonFinite, StatsSnapshot, StepResult, WeightStats)


def _hist(d: dict) -> Histogram:
    return Histogram(lo=number(d["lo"]), hi=number(d["hi"]), density=numbers(d["density"]))


def _figures(d: dict, declared: dict[str, type]) -> dict:
    return {name: kind(number(d[name]) if kind is float else d[name])
            for name, kind in declared.items() if name in d}


def _layer(d: dict) -> LayerStats:
    return LayerStats(index=int(d["index"]), kind=str(d["kind"]), hist=_hist(d["hist"]),
                      grad_hist=_hist(d["grad_hist"]), name=str(d.get("name", "")),
                      family=str(d.get("family", "")), per_unit=int(d.get("per_unit", 0)),
                      **_figures(d, LAYER_FIGURES))


def _weight(d: dict) -> WeightStats:
    return WeightStats(name=str(d["name"]), shape=tuple(int(s) for s in d["shape"]),
                       hist=_hist(d["hist"]), **_figures(d, WEIGHT_FIGURES))


def decode_snapshot(d: dict) -> StatsSnapshot:
    return StatsSnapshot(step=int(d["step"]), loss=number(d["loss"]), lr=number(d["lr"]),
                         layers=tuple(_layer(x) for x in d["layers"]),
                         weights=tuple(_weight(x) for x in d["weights"]),
                         update_ratio_log10=numbers(d["update_ratio_log10"]))


def decode_step(row: list) -> StepResult:
    step, loss, lr, ratios, stats, nonfinite = row
    return StepResult(
        step=int(step), loss=number(loss), lr=number(lr), update_ratio_log10=numbers(ratios),
        stats=decode_snapshot(stats) if stats is not None else None,
        nonfinite=NonFinite(int(nonfinite["step"]), str(nonfinite["where"]),
                            str(nonfinite["what"])) if nonfinite is not None else None)
