"""The lecture's first network (--stage): its black-and-white image of
|h| > 0.99 over a batch's examples (rows) x the 200 hidden units (columns),
where an all-white column is a dead unit, then the histograms of h and of the
pre-activation as one line each. Hidden for the deep stack (no map measured).

The map is drawn in braille: a character holds 4 examples x 2 units, so 32 x
200 fits 8 rows x 100 columns; a narrower pane puts several units in a dot
(white when most of them are). A ▲ under a column marks a dead unit in it.
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

THRESHOLD = 0.99   # the lecture's |h| > 0.99 (traintop.engine.model.stages.MAP_THRESHOLD)
# braille dot bits by (row in the cell, column in the cell)
DOTS = ((0x01, 0x08), (0x02, 0x10), (0x04, 0x20), (0x40, 0x80))
SPARK = " ▁▂▃▄▅▆▇█"
TITLE = "saturation map |h|>0.99"
SHORT_SCREEN = 30   # rows of the terminal below which the map is folded to 3 rows

# Its part of the help's line on its tab (tui/panes.py registers it).
HELP = ("the first network's saturation map (--stage: |h|>0.99, examples x units, "
        "▲ dead units) with the h and pre-activation histograms")


def unpack(rows: tuple[int, ...], units: int) -> list[list[bool]]:
    """The map's bits (bit j of a row = unit j) as rows of booleans."""
    return [[bool(bits >> j & 1) for j in range(units)] for bits in rows]


def dead_units(white: list[list[bool]]) -> list[int]:
    """Units white on every example of the batch: dead (no gradient flows)."""
    if not white:
        return []
    return [j for j in range(len(white[0])) if all(row[j] for row in white)]


def fold_rows(white: list[list[bool]], lines: int) -> list[list[bool]]:
    """The examples in at most `lines` braille rows (4 dots each): a dot white
    where most of the examples it holds are, as for units in a column."""
    per_dot = max(1, -(-len(white) // (4 * max(1, lines))))
    if per_dot == 1:
        return white
    groups = [white[i:i + per_dot] for i in range(0, len(white), per_dot)]
    return [[2 * sum(row[j] for row in g) > len(g) for j in range(len(g[0]))] for g in groups]


def braille(white: list[list[bool]], columns: int,
            lines: int | None = None) -> tuple[list[str], list[int]]:
    """(rows of braille, the units each character column holds) in at most
    `columns` characters and, given, `lines` rows."""
    if lines is not None:
        white = fold_rows(white, lines)
    units = len(white[0]) if white else 0
    per_dot = max(1, -(-units // (2 * max(1, columns))))
    groups = [list(range(j, min(units, j + per_dot))) for j in range(0, units, per_dot)]
    lines = []
    for top in range(0, len(white), 4):
        chars = []
        for c in range(0, len(groups), 2):
            code = 0
            for r in range(4):
                if top + r >= len(white):
                    break
                row = white[top + r]
                for k in range(2):
                    if c + k < len(groups):
                        g = groups[c + k]
                        if 2 * sum(row[j] for j in g) > len(g):
                            code |= DOTS[r][k]
            chars.append(chr(0x2800 + code))
        lines.append("".join(chars))
    cells = [sum((groups[c + k] for k in range(2) if c + k < len(groups)), [])
             for c in range(0, len(groups), 2)]
    return lines, cells


def sparkline(density: tuple[float, ...], width: int) -> str:
    """A histogram's density in `width` characters (bins summed into each)."""
    n = len(density)
    if not n or width < 1:
        return ""
    width = min(width, n)
    sums = [sum(density[i * n // width:(i + 1) * n // width]) for i in range(width)]
    top = max(sums) or 1.0
    return "".join(SPARK[round(s / top * (len(SPARK) - 1))] for s in sums)


class SaturationMapPane(Static):
    DEFAULT_CSS = "SaturationMapPane { border: round $panel; padding: 0 1; height: auto; }"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__("", *args, **kwargs)
        self.border_title = TITLE
        self.shown_layer = None       # the LayerStats drawn
        self.step = None
        self.display = False
        self._shown = None

    def show(self, state) -> None:
        stats = getattr(state, "stats", None)
        layer = next((l for l in stats.layers if l.saturation_map), None) if stats else None
        if layer is None:
            self.display = False
            self.shown_layer = None
            return
        if self._shown is stats and self.display:
            return
        self._shown = stats
        self.shown_layer, self.step = layer, stats.step
        self.display = True
        self.render_map()

    def on_resize(self) -> None:
        if self.shown_layer is not None:
            self.render_map()

    def render_map(self) -> None:
        layer = self.shown_layer
        units = layer.units
        white = unpack(layer.saturation_map, units)
        dead = dead_units(white)
        share = sum(map(sum, white)) / max(1, len(white) * units)
        width = max(10, (self.size.width or 120) - 4)
        self.border_title = (f"{TITLE} · {len(white)} examples x {units} units · "
                             f"step {self.step:,} · white {share:.1%} · dead {len(dead)} ▲")
        # A short screen (80x24) keeps the map to 3 rows so the tab's two
        # histograms keep theirs; 8 rows (32 examples, 4 a row) otherwise.
        short = (self.app.size.height if self.is_attached else 40) < SHORT_SCREEN
        lines, cells = braille(white, width, 3 if short else None)
        text = Text()
        for line in lines:
            text.append(line + "\n", style="bold white")
        dead_set = set(dead)
        text.append("".join("▲" if dead_set.intersection(c) else " " for c in cells).rstrip()
                    or "no dead unit", style="red" if dead else "dim")
        for name, hist in (("h", layer.hist), ("pre-act", layer.preact_hist)):
            if hist is None:
                continue
            label = f"\n{name:<7} [{hist.lo:+.2f}, {hist.hi:+.2f}] "
            text.append(label)
            text.append(sparkline(hist.density, width - len(label) + 1), style="cyan")
        self.update(text)
