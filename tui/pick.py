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
from functools import lru_cache

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
    """Labels that fit `width` and still tell the names apart: every pane that
    prints module paths labels them here. Names that fit stay whole; else the
    dotted parts every name shares at the start (`transformer.`) or the end
    (`.weight`, `.mlp.gelu`: the title says that) go first, then each keeps the
    parts that tell it from the others, its head and its leaf, with the middle
    elided (`layer1.0…conv1`, `h.3…c_attn`); one that still does not fit is
    cut from the left (`…h.11`)."""
    names = list(names)
    if all(len(n) <= width for n in names) or len(names) < 2:
        return [shorten(n, width) for n in names]
    return list(_short_labels(tuple(names), width))


@lru_cache(maxsize=256)
def _short_labels(names: tuple[str, ...], width: int) -> tuple[str, ...]:
    parts = [tuple(n.split(".")) for n in names]
    parts = _strip_shared(parts)
    # How many names each pattern (a window of parts from `start`, and the leaf)
    # matches: a label is one pattern, and must match its own name only.
    seen: dict[tuple, int] = {}
    for p in set(parts):
        for key in {_pattern(p, *cut) for cut in _cuts(p)}:
            seen[key] = seen.get(key, 0) + 1
    out = []
    wholes = {".".join(p) for p in parts}
    for p in parts:
        whole = ".".join(p)
        if len(whole) <= width:
            out.append(whole)
            continue
        # ... and reads as no other name does (`relu` for `layer2.1.relu` beside a `relu`)
        told = [(label, *cut) for cut in _cuts(p) if seen.get(_pattern(p, *cut), 0) == 1
                and (label := _joined(p, *cut)) not in wholes]
        fits = [t for t in told if len(t[0]) <= width]
        # The leaf kept (it names the layer: `output_gate`, `l1.og`, never `rnn.l1…`):
        # the most parts; a head and a leaf rather than either; the first window;
        # else the parts abbreviated, the leaf kept (`h.0.a.c_proj`, `l1.0.conv1`);
        # a head alone only where not even that fits.
        leafed = [t for t in fits if t[3] > 0]
        short = _abbreviated(p, width) if not leafed else ""
        if leafed:
            best = max(leafed, key=lambda t: (t[2] + t[3], t[2] > 0 and t[3] > 0, -t[1]))[0]
        elif fits and len(short) > width:
            best = max(fits, key=lambda t: (t[2], -t[1]))[0]
        else:
            best = short
        out.append(shorten(best, width))
    counts = {o: out.count(o) for o in out}
    # abbreviations that met (or names that repeat): cut from the left
    return tuple(o if counts[o] == 1 else shorten(".".join(p), width)
                 for o, p in zip(out, parts))


def _strip_shared(parts: list[tuple]) -> list[tuple]:
    """The parts every name shares at its start, and those every longer name
    shares at its end, dropped where the names stay distinct; a bare index
    keeps the part before it (`h.0`, not `0`)."""
    lead = 0
    while all(len(p) > lead + 1 for p in parts) and len({p[lead] for p in parts}) == 1 \
            and not parts[0][lead + 1].isdigit():
        lead += 1
    parts = [p[lead:] for p in parts]
    longer = [p for p in parts if len(p) > 1]
    trail = 0
    # Two longer names at least, or one whose leaf a short name has too (`relu` and
    # `layer2.1.relu`: the title says relu): a lone one shares its end with nobody
    # (`rnn` and `rnn.l1.output_gate` read `rnn` and `rnn.l1`, the gate lost).
    shared = len(longer) > 1 or any(len(p) == 1 and longer and p[0] == longer[0][-1]
                                    for p in parts)
    while shared and all(len(p) > trail + 1 for p in longer) and \
            len({p[len(p) - trail - 1] for p in longer}) == 1 and \
            not longer[0][len(longer[0]) - trail - 1].isdigit():   # an index says which block
        trail += 1
    cut = [p[:len(p) - trail] if len(p) > 1 else p for p in parts]
    while trail and len(set(cut)) < len(set(parts)):   # fc and fc.relu would both read fc
        trail -= 1
        cut = [p[:len(p) - trail] if len(p) > 1 else p for p in parts]
    return cut


def _abbreviated(p: tuple, width: int) -> str:
    """The parts before the leaf cut to their initial and index (`attn` a,
    `layer1` l1), the middle ones first, from the first part on or, where that
    does not fit, from a later name part (`h.0.a.c_proj`)."""
    starts = [0, *(i for i in range(1, len(p) - 1) if not p[i].isdigit())]
    tries = [_initials(p[i:], width) for i in starts]
    return next((t for t in tries if len(t) <= width), tries[0])


def _initials(p: tuple, width: int) -> str:
    p = list(p)
    for i in [*range(1, len(p) - 1), 0][:max(0, len(p) - 1)]:
        if len(".".join(p)) <= width:
            break
        if not p[i].isdigit():
            p[i] = p[i][0] + p[i][len(p[i].rstrip("0123456789")):]
    if len(".".join(p)) > width and "_" in p[-1]:
        # the leaf's words to initials last (`output_gate` og, `c_attn` ca): at
        # 80x24 `…_gate` for every gate of an LSTM told none of them apart
        p[-1] = "".join(w[0] for w in p[-1].split("_") if w)
    return ".".join(p)


def _cuts(p: tuple) -> list[tuple[int, int, int]]:
    """(start, head parts, leaf parts) of a name's labels, one part kept at
    least, the middle left out; a leaf of a bare index keeps its parent."""
    n = len(p)
    cuts = []
    for m in range(n + 1):
        if m == 1 and p[-1].isdigit():
            continue
        for start in range(n - m + 1):
            if 0 < start < n and p[start].isdigit():
                continue      # a window opens on a name, never on a bare index
            for k in range(n - m - start + 1):
                if k + m >= 1 and (start, k, m) != (0, n - m, m) and (k or not start) \
                        and (k or not p[n - m].isdigit()):
                    cuts.append((start, k, m))
    return cuts


def _pattern(p: tuple, start: int, k: int, m: int) -> tuple:
    return (start, k, m, p[start:start + k], p[len(p) - m:] if m else ())


def _joined(p: tuple, start: int, k: int, m: int) -> str:
    """Head and leaf with an ellipsis where parts between them are left out
    (or after a head that does not reach the end)."""
    head, leaf = ".".join(p[start:start + k]), ".".join(p[len(p) - m:]) if m else ""
    if start + k == len(p) - m or not k:   # a leaf alone reads as itself
        return ".".join(x for x in (head, leaf) if x)
    return head + ELLIPSIS + leaf


def headroom(lo: float, hi: float, canvas_rows: int, legend_rows: int) -> float:
    """The top of the y range that keeps data below a legend of `legend_rows`
    rows at the top of a canvas of `canvas_rows`: plotext draws the legend over
    the plot's top-left corner, so the data get the rows under it."""
    span = (hi - lo) or abs(hi) or 1.0
    free = canvas_rows - legend_rows - 1
    if free < 2:   # too short for both: keep the data whole, the legend may cover it
        return hi + span * 0.05
    return hi + span * (legend_rows + 1) / free
