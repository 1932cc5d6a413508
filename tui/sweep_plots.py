"""The sweep overview's plots: every run of a sweep on one set of axes.

Run k is drawn in colour k (plotting.COLORS) in every pane, and the legend,
the runs' swept values, sits in the pane's top border, never on the data.
Their state is the app's SweepState; each reads its runs' RunStates.
"""

from __future__ import annotations

import math

from .plot_pane import PlotPane
from .plotting import (COLORS, NO_COLOR_MARKERS, axis_end, border_legend, downsample,
                       draw_markers, finite_points, plot_width, steady_range, style)

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
    """The runs' labels for the border; where they do not fit, their values only
    (`━ 0.5  ━ 1  ━ 5/3`: the status line names the swept keys)."""
    labels = [sweep.label(k) for k in range(len(sweep.runs))]
    room = (pane.size.width or 80) - 6
    if sum(len(label) + 4 for label in labels) > room:
        labels = [" ".join(part.partition("=")[2] for part in label.split())
                  for label in labels]
    return border_legend(labels, no_color)


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
        plt.title("update:data, log10, mean of the weights (guide -3)")
        values = [GUIDE]
        for k, (xs, ys) in enumerate(self.lines):
            if xs:
                plt.plot(xs, ys, **run_style(k, no_color))
                values += ys
        plt.horizontal_line(GUIDE, color="gray")
        lo, hi = steady_range(min(values), max(values))
        plt.ylim(lo, hi)
        plt.xlim(0, axis_end(self.tick))
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


HISTOGRAM_HELP = "the gradient histograms as one small plot per run on shared axes"


class SweepHistogramPane(PlotPane):
    """Gradient histograms at the activations as small multiples, one plot
    per run on the same x and y axes: a run's layers are drawn in its colour,
    so the spread of its layers and the width of its gradients compare at a glance."""

    def take(self, sweep) -> None:
        self.plots = []
        for k, s in enumerate(sweep.runs):
            stats = s.stats
            lines = [(list(l.grad_hist.centers()), list(l.grad_hist.density))
                     for l in stats.layers] if stats is not None else []
            self.plots.append((sweep.label(k), stats.step if stats else None, lines))
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
        shown = [p for p in self.plots if p[1] is not None]
        if not shown:
            plt.title("gradients at activations · waiting for diagnostics")
            return
        xs = [x for _, _, lines in shown for line in lines for x in line[0]]
        ys = [y for _, _, lines in shown for line in lines for y in line[1] if math.isfinite(y)]
        if not xs or not ys:
            plt.title("gradients at activations · no activation layers")
            return
        lo, hi, top = min(xs), max(xs), max(ys) or 1.0
        drawn = self.plots[:self.fits()]
        # More runs than plots fit: the first ones, and the border says so.
        self.border_subtitle = (f"{len(drawn)} of {len(self.plots)} runs drawn · v shows each"
                                if len(drawn) < len(self.plots) else "")
        rows, cols = self.grid(len(drawn))
        plt.subplots(rows, cols)
        room = max(8, (self.size.width or 120) // cols - 4)
        for k, (label, step, lines) in enumerate(drawn):
            sub = plt.subplot(k // cols + 1, k % cols + 1)
            sub.title(subplot_title(label, step, room))
            for j, (x, y) in enumerate(lines):
                sub.plot(x, y, **({"marker": NO_COLOR_MARKERS[k % len(NO_COLOR_MARKERS)]}
                                  if no_color else {"marker": "braille",
                                                    "color": COLORS[k % len(COLORS)]}))
            # Shared axes: the same limits in every run's plot.
            sub.xlim(lo, hi)
            sub.ylim(0, top * 1.05)


def subplot_title(label: str, step: int | None, room: int) -> str:
    """A small plot's title in `room` columns: plotext draws none at all for a
    title wider than its plot, so a long label gives way to its values
    ("1 on" for "gain=1 batchnorm=on"), then is cut."""
    when = f"step {step:,}" if step is not None else "waiting"
    title = f"{label} · {when}"
    if len(title) > room:
        values = " ".join(part.partition("=")[2] for part in label.split())
        title = f"{values} · {when}"
    return title if len(title) <= room else title[:room - 1] + "…"

