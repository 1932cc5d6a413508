"""traintop: htop for a training run.

    from traintop import watch

The public names load on first use (PEP 562), so `import traintop` costs no
torch: the viewer's process (the app's UI, replay, attach, export) imports
traintop.* modules and must never load libtorch, which only the trainer and
watch() need.
"""

from __future__ import annotations

import importlib

# public name -> the module that defines it
_PUBLIC = {
    "watch": "traintop.engine.watch",
    "Trainer": "traintop.engine.training.trainer",
    "History": "traintop.engine.training.history",
    "TrainConfig": "traintop.engine.config",
    "InputError": "traintop.data.errors",
    **{name: "traintop.engine.results" for name in (
        "Calibration", "FoldCheck", "Histogram", "LayerStats", "NonFinite", "RunInfo",
        "StatsSnapshot", "StepResult", "WeightStats")},
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'traintop' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value   # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
