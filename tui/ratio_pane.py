"""Update-to-data ratio: log10(update std / data std) over steps, guide -3.

One line per picked 2-D parameter (tui/pick.py: the worst by health, first
and last; `p` pages through all), labelled by its name, and one grey line
for the median of the rest, so 100 parameters still read as a few lines.
"""

from __future__ import annotations

import statistics

from .health_marks import badge, param_marks
from .pick import fitting, headroom, pick, short_labels
from .plot_pane import PlotPane
from .plotting import (axis_end, border_legend, downsample, draw_markers, finite_points,
                       legend_width, plot_cols, step_ticks,
                       plot_width, steady_range, style)

GUIDE = -3.0   # the lecture's rule of thumb: updates ~1/1000 of the data
RATIO_LINES = 8
SHORT_ROWS = 12   # below this the title moves to the border


# The help screen's paragraph on this pane (tui/panes.py registers it).
HELP = """\
**Update:data ratio** — log10 of (update std / weight std) per 2-D parameter,
the real change of the optimizer step, with the guide at -3 (updates about
1/1000 of the values). Healthy: lines settle near -3; far below means the lr is
too low, far above means too high.
"""


def median_line(series: list[tuple[list, list]]) -> tuple[list, list]:
    """Pointwise median over series that share their x positions."""
    by_x: dict = {}
    for xs, ys in series:
        for x, y in zip(xs, ys):
            by_x.setdefault(x, []).append(y)
    xs = sorted(by_x)
    return xs, [statistics.median(by_x[x]) for x in xs]


def guide_ticks(plt, lo: float, hi: float, rows: int, count: int = 4) -> None:
    """y ticks evenly over lo..hi with the one nearest the guide moved onto it,
    so the guide's row reads -3 (plotext's own put it between two labels);
    none within two rows of it, where the guide's label could lose its row."""
    ticks = [lo + (hi - lo) * k / (count - 1) for k in range(count)]
    if lo <= GUIDE <= hi:
        row = (hi - lo) / max(1, rows - 1)
        ticks = [GUIDE] + [t for t in ticks if abs(t - GUIDE) > 2 * row]
    plt.yticks(ticks, [f"{t:.1f}" for t in ticks])


class RatioPane(PlotPane):
    def take(self, state) -> None:
        h = state.history
        n = plot_width(self)
        names = state.info.param_names if state.info else ()
        series = {}
        for i in state.ratio_params:
            if i < len(h.ratios):
                series[names[i]] = finite_points(*downsample(*h.ratios[i].points(), n))
        marks = param_marks(state.findings(), list(series))
        # Up to 8 lines (the lecture's 7 weights all show); beyond, the picked few.
        chosen, self.which = pick(list(series), marks, self.page, most=RATIO_LINES)
        width = self.label_width(0.4)
        # A parameter a health finding names shows "!" / "!!" in the legend.
        self.lines = [(f"{badge(marks.get(name))}{label}", *series[name])
                      for name, label in zip(chosen, short_labels(chosen, width))]
        rest = [series[name] for name in series if name not in chosen]
        self.rest = (len(rest), *median_line(rest)) if rest else None
        self.markers = list(h.markers)
        self.tick = h.tick
        config = state.info.config if state.info is not None else {}
        self.zeros = config.get("init") == "zeros"
        self.stepped = state.last is not None or h.tick > 0

    def draw(self, plt, no_color: bool) -> None:
        if not any(xs for _, xs, _ in self.lines):
            self.border_subtitle = ""
            plt.title(self.empty_title())
            return
        # A short pane (80x24: 8 rows) keeps its rows for the lines: the title
        # goes in the bottom border.
        short = (self.size.height or 20) < SHORT_ROWS
        if short:
            self.border_subtitle = "update:data, log10 · guide -3"
        else:
            self.border_subtitle = ""
            plt.title("update:data ratio, log10 (guide -3)")
        values = [GUIDE]
        rest = self.rest if self.rest and self.rest[1] else None
        legend = len(self.lines) + (1 if rest else 0)
        inline = legend <= fitting(self.canvas_rows())   # else the legend goes in the border
        labels = []
        for k, (name, xs, ys) in enumerate(self.lines):
            if xs:
                plt.plot(xs, ys, **({"label": name} if inline else {}), **style(k, no_color))
                labels.append(name)
                values += ys
        if rest:
            count, xs, ys = rest
            label = f"median of {count} more (p: pick)"
            plt.plot(xs, ys, **({"label": label} if inline else {}),
                     **({"marker": "."} if no_color else {"marker": "braille", "color": "gray"}))
            values += ys
        self.border_title = None if inline else (
            border_legend(labels, no_color) + (f"  [grey50]━ median of {rest[0]} more[/]"
                                               if rest else ""))
        legend = legend if inline else 0
        plt.horizontal_line(GUIDE, color="gray")
        lo, hi = steady_range(min(values), max(values))
        pad = (hi - lo) * 0.05
        top = headroom(lo, hi, self.canvas_rows(), legend)
        top = max(top, hi + pad * 3)
        plt.ylim(lo, top)
        guide_ticks(plt, lo, top, self.canvas_rows() + (1 if short else 0))
        plt.xlim(0, axis_end(self.tick))
        step_ticks(plt, axis_end(self.tick))
        named = [name for name, xs, _ in self.lines if xs] + (
            [f"median of {rest[0]} more (p: pick)"] if rest else [])
        draw_markers(plt, self.markers, 0, axis_end(self.tick), hi + pad * 2,
                     cols=plot_cols(self), legend=legend_width(named) if inline else 0)

    def empty_title(self) -> str:
        """Why there is no line: no step yet, or no ratio to draw. A weight of
        all zeros that stays zero (--init zeros: its gradient is exactly 0)
        updates by 0 on data of std 0, a 0/0 ratio, never a figure. Fitted to
        the pane: plotext drops a title wider than it."""
        if not self.stepped:
            return "update:data ratio · waiting for steps"
        if self.zeros:
            choices = ("update:data ratio · none: --init zeros, every weight 0 stays 0 (0/0)",
                       "update:data · none: --init zeros, weights stay 0",
                       "update:data · none (init zeros)")
        else:
            choices = ("update:data ratio · none finite: weights of std 0 or non-finite",
                       "update:data · none finite (weights std 0)",
                       "update:data · none finite")
        width = (self.size.width or 80) - 4
        return next((c for c in choices if len(c) <= width), choices[-1])
