"""traintop's engine: the lecture's deep stack trained step by step, measured.

Plain Python and torch; no Textual. Everything handed out is a frozen
plain-Python value (engine.results).
"""

from engine.config import TrainConfig
from engine.history import History
from engine.results import (Calibration, FoldCheck, Histogram, LayerStats, NonFinite, RunInfo,
                            StatsSnapshot, StepResult, WeightStats)
from engine.trainer import Trainer
from engine.watch import watch

__all__ = [
    "Calibration", "FoldCheck", "Histogram", "History", "LayerStats", "NonFinite", "RunInfo",
    "StatsSnapshot", "StepResult", "TrainConfig", "Trainer", "WeightStats", "watch",
]
