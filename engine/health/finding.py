"""A health finding and a rule's description: the values the rules return,
apart from the rules themselves so the step rules (step_rules.py) and the
snapshot rules (rules.py) both build them without importing each other."""

from __future__ import annotations

import math
from dataclasses import dataclass

SEVERITIES = ("info", "warn", "error")  # in rank order


@dataclass(frozen=True)
class Finding:
    rule: str          # one of RULE_IDS
    severity: str      # "info" | "warn" | "error"
    where: str         # see the module docstring
    value: float | None  # the measured value the rule judged
    healthy: str       # the healthy range, in words and numbers
    message: str       # one sentence: what it means and what to try
    step: int          # step of the figures it was found on

    @property
    def rank(self) -> int:
        return SEVERITIES.index(self.severity)

    def key(self) -> tuple[str, str, str]:
        """Identity across frames: the same problem at the same place and severity."""
        return (self.rule, self.where, self.severity)

    def to_dict(self) -> dict:
        value = self.value if self.value is not None and math.isfinite(self.value) else None
        return {"rule": self.rule, "severity": self.severity, "where": self.where,
                "value": value, "healthy": self.healthy, "message": self.message,
                "step": self.step}


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    meaning: str  # help text: what it checks and what healthy looks like
