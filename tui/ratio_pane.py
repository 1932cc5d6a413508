"""Update-to-data ratio: log10(lr * grad.std / data.std) over steps, guide -3."""

from __future__ import annotations

from .health_marks import badge, param_marks
from .plot_pane import PlotPane
from .plotting import (axis_end, downsample, draw_markers, finite_points, plot_width,
                       steady_range, style)

GUIDE = -3.0   # the lecture's rule of thumb: updates ~1/1000 of the data


class RatioPane(PlotPane):
    def take(self, state) -> None:
        h = state.history
        n = plot_width(self)
        names = state.info.param_names if state.info else ()
        self.lines = []
        for i in state.ratio_params:
            if i < len(h.ratios):
                xs, ys = finite_points(*downsample(*h.ratios[i].points(), n))
                self.lines.append((names[i], xs, ys))
        self.markers = list(h.markers)
        self.tick = h.tick
        marks = param_marks(state.findings(), [name for name, _, _ in self.lines])
        # A parameter a health finding names shows "!" / "!!" in the legend.
        self.lines = [(f"{name} {badge(marks.get(name))}".rstrip(), xs, ys)
                      for name, xs, ys in self.lines]

    def draw(self, plt, no_color: bool) -> None:
        plt.title("update:data ratio, log10 (guide -3)")
        if not any(xs for _, xs, _ in self.lines):
            plt.title("update:data ratio · waiting for steps")
            return
        values = [GUIDE]
        for k, (name, xs, ys) in enumerate(self.lines):
            if xs:
                plt.plot(xs, ys, label=name, **style(k, no_color))
                values += ys
        plt.horizontal_line(GUIDE, color="gray")
        lo, hi = steady_range(min(values), max(values))
        pad = (hi - lo) * 0.05
        plt.ylim(lo, hi + pad * 3)
        plt.xlim(0, axis_end(self.tick))
        draw_markers(plt, self.markers, 0, axis_end(self.tick), hi + pad * 2)
