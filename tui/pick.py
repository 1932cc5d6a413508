"""Which layers or parameters a plot draws when there are too many to read.

A GPT of 12 blocks has 12+ activation layers and 50+ weights: drawn all at
once, the lines are a tangle and the legend covers the plot. A pane draws a
few (MAX_DRAWN) and summarises the rest in words. The set is picked with
`p` / `P` (the app's keys): set 0 is the default, the worst by health plus
the first and the last; sets 1.. page through every item in order.
Pure functions of names and marks, so the choice is tested without a screen.
"""

from __future__ import annotations

import math

from .health_marks import RANK

MAX_DRAWN = 5
ELLIPSIS = "…"


def sets(count: int, most: int = MAX_DRAWN) -> int:
    """How many sets `p` cycles through: the default, then pages of `most`."""
    most = max(1, most)
    return 1 if count <= most else 1 + math.ceil(count / most)


def pick(keys: list, marks: dict, page: int = 0, most: int = MAX_DRAWN,
         fill: bool = False) -> tuple[list, str]:
    """The keys to draw (in their own order) and a few words saying which.
    fill: top the default set up to `most` with keys spread evenly between."""
    most = max(1, most)
    if len(keys) <= most:
        return list(keys), "all"
    page %= sets(len(keys), most)
    if page:
        chunk = keys[(page - 1) * most:page * most]
        first, last = (page - 1) * most + 1, (page - 1) * most + len(chunk)
        return chunk, f"{first}-{last} of {len(keys)}"
    worst = sorted((k for k in keys if RANK.get(marks.get(k), 0) > 0),
                   key=lambda k: -RANK[marks[k]])
    chosen = []
    for k in [*worst[:most - 2], keys[0], keys[-1], *worst[most - 2:]]:
        if k not in chosen and len(chosen) < most:
            chosen.append(k)
    what = "worst, first, last" if worst else "first, last"
    if fill and 1 < most and len(chosen) < most:
        spread = [keys[round(j * (len(keys) - 1) / (most - 1))] for j in range(most)]
        chosen += [k for k in dict.fromkeys(spread) if k not in chosen][:most - len(chosen)]
        what += ", spread"
    order = {k: i for i, k in enumerate(keys)}
    chosen.sort(key=order.__getitem__)
    return chosen, f"{what}: {len(chosen)} of {len(keys)}"


def fitting(canvas_rows: int) -> int:
    """Lines a plot of this height draws: its legend keeps to half the rows."""
    return max(1, min(MAX_DRAWN, (canvas_rows - 2) // 2))


def shorten(name: str, width: int) -> str:
    """A module path cut from the left to fit (`…h.11.mlp.gelu`); whole if it fits."""
    if len(name) <= width:
        return name
    if width <= 1:
        return name[-width:] if width > 0 else ""
    return ELLIPSIS + name[-(width - 1):]


def short_labels(names: list[str], width: int) -> list[str]:
    """Labels that fit `width` and still tell the names apart: where a name does
    not fit, the dotted ending all share (`.mlp.gelu`: the title says that)
    goes first, then each is cut from the left (`…h.11`)."""
    if all(len(n) <= width for n in names) or len(names) < 2:
        return [shorten(n, width) for n in names]
    parts = [n.split(".") for n in names]
    common = 0
    while all(len(p) > common + 1 for p in parts) and \
            len({tuple(p[len(p) - common - 1:]) for p in parts}) == 1:
        common += 1
    kept = [".".join(p[:len(p) - common]) for p in parts] if common else names
    return [shorten(n, width) for n in kept]


def headroom(lo: float, hi: float, canvas_rows: int, legend_rows: int) -> float:
    """The top of the y range that keeps data below a legend of `legend_rows`
    rows at the top of a canvas of `canvas_rows`: plotext draws the legend over
    the plot's top-left corner, so the data get the rows under it."""
    span = (hi - lo) or abs(hi) or 1.0
    free = canvas_rows - legend_rows - 1
    if free < 2:   # too short for both: keep the data whole, the legend may cover it
        return hi + span * 0.05
    return hi + span * (legend_rows + 1) / free
