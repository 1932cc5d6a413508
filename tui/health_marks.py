"""Which layers and parameters the current health findings point at.

The saturation and ratio panes mark what a warn or error finding names, so
the eye goes from the health tab's sentence to the bar or line it is about.
`where` has a few fixed shapes (engine/health/rules.py): "layer 5 (Tanh)",
"layers 2-14" (the lecture's stack, by position), "net.8 (Tanh)",
"h.0.mlp.act..h.5.mlp.act" (a watched model's layers, by module path),
"weight 10.weight (100, 27)", "all weights".
"""

from __future__ import annotations

import re

RANK = {"info": 0, "warn": 1, "error": 2}
_LAYER = re.compile(r"^layer (\d+) ")
_LAYERS = re.compile(r"^layers (\d+)-(\d+)$")
_WEIGHT = re.compile(r"^(?:weight|parameter) (\S+)")
_NAMED = re.compile(r"^(\S+) \(\w+\)$")
_SPAN = re.compile(r"^(\S+)\.\.(\S+)$")


def _worse(marks: dict, key, severity: str) -> None:
    if RANK.get(severity, 0) > RANK.get(marks.get(key, "info"), 0):
        marks[key] = severity


def layer_marks(findings, layers: list[int], names: dict[int, str] | None = None
                ) -> dict[int, str]:
    """layer position -> worst warn/error severity among findings naming it
    (`names`: position -> module path, for a watched model's findings)."""
    marks: dict[int, str] = {}
    by_name = {n: i for i, n in (names or {}).items() if n}
    for f in findings or ():
        if RANK.get(f.severity, 0) < RANK["warn"]:
            continue
        if m := _LAYER.match(f.where):
            _worse(marks, int(m.group(1)), f.severity)
        elif m := _LAYERS.match(f.where):
            lo, hi = int(m.group(1)), int(m.group(2))
            for i in layers:
                if lo <= i <= hi:
                    _worse(marks, i, f.severity)
        elif (m := _NAMED.match(f.where)) and m.group(1) in by_name:
            _worse(marks, by_name[m.group(1)], f.severity)
        elif (m := _SPAN.match(f.where)) and m.group(1) in by_name and m.group(2) in by_name:
            lo, hi = by_name[m.group(1)], by_name[m.group(2)]
            for i in layers:
                if lo <= i <= hi:
                    _worse(marks, i, f.severity)
    return marks


def param_marks(findings, names: list[str]) -> dict[str, str]:
    """parameter name -> worst warn/error severity among findings naming it."""
    marks: dict[str, str] = {}
    for f in findings or ():
        if RANK.get(f.severity, 0) < RANK["warn"]:
            continue
        if f.where == "all weights":
            for name in names:
                _worse(marks, name, f.severity)
        elif m := _WEIGHT.match(f.where):
            _worse(marks, m.group(1), f.severity)
    return marks


def badge(severity: str | None) -> str:
    return {"warn": "!", "error": "!!"}.get(severity or "", "")
