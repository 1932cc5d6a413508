"""Shared plot helpers: downsampling to the pane's width, markers, styles.

A plotext line of 10,000 points costs ~180 ms to build and one of 200 points
~13 ms, so every series is cut to about the pane's width before plotting.
"""

from __future__ import annotations

import math

from traintop.engine.training.history import Marker

# Without colour, lines are told apart by their marker.
NO_COLOR_MARKERS = ("dot", "x", "+", "o", "*", "#", "@", "%")
# The same markers as text (a legend, a bar): plotext's "dot" draws a •, and
# text of "dot" read as the word (a bar of `dotdotdot`, a legend `dot:L2`).
NO_COLOR_GLYPHS = tuple("•" if m == "dot" else m for m in NO_COLOR_MARKERS)
COLORS = ("blue+", "orange+", "green+", "red+", "magenta+", "cyan+", "yellow+", "white")
LABELLED_MARKERS = 3      # the latest few markers carry their text


def downsample(xs: list, ys: list, n: int) -> tuple[list, list]:
    """Means of consecutive groups, at most about `n` points; NaNs are skipped.

    Groups are a power of two long and start at multiples of it, so a
    growing series keeps every closed group's point where it was (the
    terminal is sent only what changed) until its length doubles."""
    if n <= 0 or len(ys) <= n:
        return list(xs), list(ys)
    group = 1 << math.ceil(math.log2(len(ys) / n))
    out_x, out_y = [], []
    for start in range(0, len(ys), group):
        chunk = [v for v in ys[start:start + group] if math.isfinite(v)]
        if chunk:
            out_x.append(xs[start])
            out_y.append(sum(chunk) / len(chunk))
    return out_x, out_y


AXIS_STEPS = (1, 1.25, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10)


def axis_end(tick: int) -> int:
    """The end of a step axis holding `tick`: the next of 1, 1.25, 1.5, 2,
    2.5, 3, 4, 5, 6, 8 x 10^k, so the axis (and every point drawn on it)
    holds still until the run passes it, then grows by a quarter or so."""
    if tick <= 10:
        return 10
    scale = 10 ** math.floor(math.log10(tick))
    return next(int(round(s * scale)) for s in AXIS_STEPS if s * scale >= tick)


def steady_range(lo: float, hi: float) -> tuple[float, float]:
    """`lo`..`hi` widened to a grid of a fifth of the span's decade, so the
    y-axis (and the lines drawn on it) moves only when the data crosses a
    grid line, not with every new low."""
    span = hi - lo
    if not span > 0:
        return lo - 0.05, hi + 0.05
    step = 10 ** math.floor(math.log10(span)) / 5
    return math.floor(lo / step) * step, math.ceil(hi / step) * step


def finite_points(xs: list, ys: list) -> tuple[list, list]:
    pairs = [(x, y) for x, y in zip(xs, ys) if math.isfinite(y)]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def plot_width(widget) -> int:
    """Points worth plotting across a pane (braille draws 2 per cell)."""
    width = widget.size.width
    return max(20, 2 * (width - 10)) if width else 200


# The same colours in Rich markup, for a legend drawn in a pane's border.
RICH_COLORS = ("bright_blue", "dark_orange", "bright_green", "bright_red", "bright_magenta",
               "bright_cyan", "bright_yellow", "white")


def border_legend(labels: list[str], no_color: bool, tight: bool = False) -> str:
    """A legend for the pane's top border, where a plot too short to keep its
    own legend above the data puts it: `━ L2  ━ L4 ...` in the lines' colours
    (markers without colour); `tight`: `━L2 ━L4`, for a narrow sweep legend."""
    mark_gap, between = ("", " ") if tight else (" ", "  ")
    parts = []
    for k, label in enumerate(labels):
        text = label.replace("[", "\\[")
        if no_color:
            parts.append(f"{NO_COLOR_GLYPHS[k % len(NO_COLOR_GLYPHS)]}{mark_gap or ':'}{text}")
        else:
            parts.append(f"[{RICH_COLORS[k % len(RICH_COLORS)]}]━{mark_gap}{text}[/]")
    return between.join(parts)


def style(index: int, no_color: bool) -> dict:
    if no_color:
        return {"marker": NO_COLOR_MARKERS[index % len(NO_COLOR_MARKERS)]}
    return {"marker": "braille", "color": COLORS[index % len(COLORS)]}


def draw_markers(plt, markers: list[Marker], lo: int, hi: int, y: float | None,
                 cols: int | None = None, legend: int = 0) -> None:
    """Vertical lines at each marker's tick; the latest few get their text.
    cols: the plot's width in columns, legend: the columns its legend takes at
    the top left. Given them, a text never starts under the legend nor runs
    into the next marker's, and says as much as the room to it holds."""
    shown = [m for m in markers if lo <= m.tick <= hi]
    for m in shown:
        plt.vertical_line(m.tick, color="gray")
    if y is None:
        return
    labelled = shown[-LABELLED_MARKERS:]
    if cols is None:
        for m in labelled:
            plt.text(short(m.text), m.tick, y, color="gray", alignment="left")
        return
    starts = [int((m.tick - lo) * cols / max(1, hi - lo)) for m in labelled]
    for j, (m, start) in enumerate(zip(labelled, starts)):
        room = (starts[j + 1] if j + 1 < len(starts) else cols) - start - 1
        if start < legend or room < MARKER_MIN:
            continue      # under the legend, or no room before the next one
        plt.text(short(m.text, room), m.tick, y, color="gray", alignment="left")


MARKER_MIN = 6   # columns a marker's text needs to say anything


# 1, 2, 2.5 (from 25 up), 5 x 10^k: whole steps between ticks
ROUND_STEPS = sorted({m * 10 ** e for e in range(13) for m in (1, 2, 5)}
                     | {25 * 10 ** e for e in range(12)})


def step_ticks(plt, end: int) -> None:
    """Ticks on whole steps at a round spacing, 0 to `end` (plotext's own
    split the axis into quarters: 312.5 steps)."""
    step = next(s for s in ROUND_STEPS if end / s <= 5)
    ticks = list(range(0, int(end) + 1, step))
    plt.xticks(ticks, [f"{t:,}" for t in ticks])


def legend_width(labels: list[str]) -> int:
    """Columns plotext's legend takes: its marker, a space, the longest label."""
    return 4 + max((len(label) for label in labels), default=-4)


def plot_cols(widget) -> int:
    """About the columns of a bordered pane's plot area (less its y ticks)."""
    return max(10, (widget.size.width or 80) - 10)


def short(text: str, width: int = 18) -> str:
    text = text.removeprefix("restart: ")
    return text if len(text) <= width else text[: width - 1] + "…"
