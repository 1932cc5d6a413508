"""The sweep overview's plots: every run of a sweep on one set of axes.

Run k is drawn in colour k (plotting.COLORS) in every pane, and the legend,
the runs' swept values, sits in the pane's top border, never on the data.
Their state is the app's SweepState; each reads its runs' RunStates.
"""

from __future__ import annotations

import math
import re

from rich.text import Text

from .plot_pane import PlotPane
from .plotting import (COLORS, NO_COLOR_MARKERS, axis_end, border_legend,
                       downsample, draw_markers, finite_points, plot_width, steady_range,
                       step_ticks, style)

GUIDE = -3.0   # the update:data ratio's rule of thumb (as tui/ratio_pane.py)
PLOT_CELLS = (24, 6)   # the least columns and rows of one small multiple


def run_style(run: int, no_color: bool) -> dict:
    return style(run, no_color)


def markers(sweep) -> list:
    """Every run's restarts and lr changes, one line per step (an lr key in the
    overview marks every run at the same tick); a run's view names them."""
    seen, out = set(), []
    for state in sweep.runs:
        for m in state.history.markers:
            if m.tick not in seen:
                seen.add(m.tick)
                out.append(m)
    return sorted(out, key=lambda m: m.tick)


def legend(pane, sweep, no_color: bool) -> str:
    """The runs' labels for the border, every run's in full: where they do not
    fit, their values only (`━ 0.5  ━ 1  ━ 5/3`: the status line names the
    swept keys), then closer together (`━1 on ━5/3 off`), then the runs that
    fit and how many more. A value is never cut: the border would end it in
    `…`, and the last run's colour would name nothing."""
    labels = [sweep.label(k) for k in range(len(sweep.runs))]
    # "gain=5/3 (run 2)", a run restarted to another's values: "5/3#2"
    values = [re.sub(r" \(run (\d+)\)$", r"#\1",
                     " ".join(part.partition("=")[2] or part for part in label.split()))
              for label in labels]
    room = (pane.size.width or 80) - 6
    for candidate in (border_legend(labels, no_color), border_legend(values, no_color),
                      border_legend(values, no_color, tight=True)):
        if cells(candidate) <= room:
            return candidate
    for shown in range(len(values) - 1, 0, -1):
        candidate = border_legend(values[:shown], no_color, tight=True) + f" +{len(values) - shown}"
        if cells(candidate) <= room:
            return candidate
    return f"{len(values)} runs"


def cells(markup: str) -> int:
    """Columns a border title's markup takes on screen."""
    return Text.from_markup(markup).cell_len


# The lecture compares gains without BatchNorm: with it every run's layers are
# renormalised, so a gain sweep's runs look alike. Longest first, fitted to the border.
BATCHNORM_HINTS = (
    "BatchNorm on undoes the gain: the lecture compares gains with --no-batchnorm",
    "BatchNorm on: the lecture compares gains with --no-batchnorm",
    "BatchNorm hides the gain: try --no-batchnorm",
    "BatchNorm on: try --no-batchnorm",
    "BN on: --no-batchnorm",
)


def batchnorm_hint(sweep, room: int) -> str:
    """A gain sweep whose every run has BatchNorm on: the hint, in `room` columns."""
    infos = [s.info for s in sweep.runs]
    if ("gain" not in sweep.keys or "batchnorm" in sweep.keys or any(i is None for i in infos)
            or not all(i.config.get("batchnorm") for i in infos)):
        return ""
    return next((hint for hint in BATCHNORM_HINTS if len(hint) <= room), "")


# Its part of the help's sentence on the sweep overview (tui/panes.py registers it).
LOSS_HELP = "loss curves overlaid"


class SweepLossPane(PlotPane):
    """log10 loss per run, overlaid: each series averaged to the pane's width."""

    def take(self, sweep) -> None:
        n = plot_width(self)
        self.lines = [finite_points(*downsample(*s.history.log10_loss.points(), n))
                      for s in sweep.runs]
        self.tick = max((s.history.tick for s in sweep.runs), default=0)
        self.markers = markers(sweep)
        self.border_title = legend(self, sweep, self.app.no_color)
        self.border_subtitle = batchnorm_hint(sweep, (self.size.width or 80) - 6)

    def draw(self, plt, no_color: bool) -> None:
        if not any(xs for xs, _ in self.lines):
            plt.title("log10 loss · waiting for steps")
            return
        plt.title("log10 loss, each run")
        every = []
        for k, (xs, ys) in enumerate(self.lines):
            if xs:
                plt.plot(xs, ys, **run_style(k, no_color))
                every += ys
        lo, hi = steady_range(min(every), max(every))
        plt.ylim(lo, hi)
        plt.xlim(0, axis_end(self.tick))
        step_ticks(plt, axis_end(self.tick))   # whole steps, never 312.5
        draw_markers(plt, self.markers, 0, axis_end(self.tick), None)
        plt.xlabel("step · grey: restarts, lr changes")


RATIO_HELP = "each run's mean update:data ratio"


class SweepRatioPane(PlotPane):
    """update:data per run: the mean over its 2-D parameters of log10(update
    std / data std), one line per run, the lecture's -3 guide in grey."""

    def take(self, sweep) -> None:
        n = plot_width(self)
        self.lines = []
        for s in sweep.runs:
            h = s.history
            series = [downsample(*h.ratios[i].points(), n) for i in s.ratio_params
                      if i < len(h.ratios)]
            self.lines.append(finite_points(*mean_line(series)))
        self.tick = max((s.history.tick for s in sweep.runs), default=0)
        self.markers = markers(sweep)
        self.border_title = legend(self, sweep, self.app.no_color)

    def draw(self, plt, no_color: bool) -> None:
        if not any(xs for xs, _ in self.lines):
            plt.title("update:data ratio · waiting for steps")
            return
        # plotext drops a title wider than the plot: the top row's third is ~40 columns.
        room = (self.size.width or 120) - 4
        plt.title(next(t for t in ("update:data, log10, mean of the weights (guide -3)",
                                   "update:data, log10 (guide -3)", "update:data")
                       if len(t) <= room or t == "update:data"))
        values = [GUIDE]
        for k, (xs, ys) in enumerate(self.lines):
            if xs:
                plt.plot(xs, ys, **run_style(k, no_color))
                values += ys
        plt.horizontal_line(GUIDE, color="gray")
        lo, hi = steady_range(min(values), max(values))
        plt.ylim(lo, hi)
        plt.xlim(0, axis_end(self.tick))
        step_ticks(plt, axis_end(self.tick))   # whole steps, never 312.5
        draw_markers(plt, self.markers, 0, axis_end(self.tick), None)


def mean_line(series: list[tuple[list, list]]) -> tuple[list, list]:
    """Pointwise mean of series downsampled alike (same x positions); NaNs skipped."""
    by_x: dict = {}
    for xs, ys in series:
        for x, y in zip(xs, ys):
            if math.isfinite(y):
                by_x.setdefault(x, []).append(y)
    xs = sorted(by_x)
    return xs, [sum(by_x[x]) / len(by_x[x]) for x in xs]


HISTOGRAM_HELP = ("the gradient histograms at the activations as one small plot per run "
                  "(shared x, each run's own y scale)")
ACTIVATION_HELP = ("the activation histograms (the lecture's figure) as one small plot per run "
                   "(shared x, each run's own y scale)")


class SweepHistogramPane(PlotPane):
    """Histograms of every run's activation layers as small multiples, one plot
    per run: kind "activation" the outputs t (the lecture's main figure),
    "gradient" dloss/dt. A run's layers are drawn in its colour. The x axis is
    shared, so widths compare at a glance; each plot's y axis is its own, since
    one shared density axis flattens the wide runs under a narrow run's spike
    (one axis topped at 27,423 drew the gain 5/3 and 3 plots as flat lines)."""

    def __init__(self, state, kind: str = "gradient", *args, **kwargs):
        super().__init__(state, *args, **kwargs)
        self.kind = kind
        self.plots: list = []
        self.ranges: list[tuple[float, float]] = []   # every drawn histogram's lo, hi

    def take(self, sweep) -> None:
        self.plots, self.ranges = [], []
        for k, s in enumerate(sweep.runs):
            stats = s.stats
            hists = [l.hist if self.kind == "activation" else l.grad_hist
                     for l in stats.layers] if stats is not None else []
            lines = [(list(h.centers()), list(h.density)) for h in hists]
            self.plots.append((sweep.label(k), stats.step if stats else None, lines))
            # a diverged run's histogram counts nothing (its values are NaN): its
            # placeholder range -0.5..0.5 would set every run's shared axis
            self.ranges += [(h.lo, h.hi) for h in hists
                            if any(math.isfinite(d) and d > 0 for d in h.density)
                            and math.isfinite(h.lo) and math.isfinite(h.hi)]
        self.border_title = legend(self, sweep, self.app.no_color)

    def grid(self, n: int) -> tuple[int, int]:
        """Rows and columns for `n` plots (at most fits() of them), fewest rows first."""
        width = self.size.width or 120
        cols = max(1, min(n, width // PLOT_CELLS[0]))
        return math.ceil(n / cols), cols

    def fits(self) -> int:
        """Plots the pane holds: each needs ~24 columns and ~6 rows to say anything."""
        width, height = self.size.width or 120, self.size.height or 20
        return max(1, (width // PLOT_CELLS[0]) * max(1, (height - 2) // PLOT_CELLS[1]))

    def draw(self, plt, no_color: bool) -> None:
        what = "activations" if self.kind == "activation" else "gradients at activations"
        shown = [p for p in self.plots if p[1] is not None]
        if not shown:
            plt.title(f"{what} · waiting for diagnostics")
            return
        if not self.ranges:
            plt.title(f"{what} · no activation layers")
            return
        # The bins' edges (tanh: -1..1), not their centres: the axis ends on round figures.
        lo, hi = min(r[0] for r in self.ranges), max(r[1] for r in self.ranges)
        drawn = self.plots[:self.fits()]
        # More runs than plots fit: the first ones, and the border says so.
        self.border_subtitle = (f"{self.kind}s · {len(drawn)} of {len(self.plots)} runs drawn"
                                " · v shows each" if len(drawn) < len(self.plots)
                                else f"{what} · y: each run its own scale")
        rows, cols = self.grid(len(drawn))
        plt.subplots(rows, cols)
        room = max(8, (self.size.width or 120) // cols - 4)
        for k, (label, step, lines) in enumerate(drawn):
            sub = plt.subplot(k // cols + 1, k % cols + 1)
            sub.title(subplot_title(label, step, room))
            for x, y in lines:
                sub.plot(x, y, **({"marker": NO_COLOR_MARKERS[k % len(NO_COLOR_MARKERS)]}
                                  if no_color else {"marker": "braille",
                                                    "color": COLORS[k % len(COLORS)]}))
            sub.xlim(lo, hi)
            sub.ylim(0, run_top(lines) * 1.05)


def run_top(lines: list[tuple[list, list]]) -> float:
    """The highest finite density of one run's layers (1 where there is none)."""
    return max((y for _, ys in lines for y in ys if math.isfinite(y)), default=0.0) or 1.0


def subplot_title(label: str, step: int | None, room: int) -> str:
    """A small plot's title in `room` columns: plotext draws none at all for a
    title wider than its plot, so a long label gives way to its values
    ("1 on" for "gain=1 batchnorm=on"), then is cut."""
    when = f"step {step:,}" if step is not None else "waiting"
    title = f"{label} · {when}"
    if len(title) > room:
        values = " ".join(part.partition("=")[2] or part for part in label.split())
        title = f"{values} · {when}"
    return title if len(title) <= room else title[:room - 1] + "…"

