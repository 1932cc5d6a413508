"""Loss: log10 loss per step, its 1,000-step means, val points and markers."""

from __future__ import annotations

import math

from .plot_pane import PlotPane
from .plotting import (axis_end, downsample, draw_markers, finite_points, plot_width,
                       steady_range, style)


# The help screen's paragraph on this pane (tui/panes.py registers it).
HELP = """\
**Loss** — log10 of the training loss per step, the mean over each 1,000 steps
(as the lecture averages) and val loss points after `e`. Healthy: it starts near
log10 of the expected initial loss (-log(1/27) = 3.30, so about 0.52) and falls
smoothly; a hockey stick at the start means the output layer was too confident.
Vertical lines mark restarts and learning-rate changes.
"""


class LossPane(PlotPane):
    def take(self, state) -> None:
        h = state.history
        n = plot_width(self)
        self.loss = finite_points(*downsample(*h.log10_loss.points(), n))
        self.windows = finite_points(*downsample(*h.loss_windows.points(), n))
        self.val = [(t, math.log10(v)) for t, v in h.val_loss if v > 0 and math.isfinite(v)]
        self.markers = list(h.markers)
        self.tick = h.tick

    def draw(self, plt, no_color: bool) -> None:
        xs, ys = self.loss
        if not xs:
            plt.title("log10 loss · waiting for steps")
            return
        plt.title("log10 loss")
        plt.plot(xs, ys, label="per step", **style(0, no_color))
        if self.windows[0]:
            plt.plot(*self.windows, label="mean of 1,000", **style(1, no_color))
        if self.val:
            plt.scatter([t for t, _ in self.val], [v for _, v in self.val], label="val",
                        **{**style(3, no_color), "marker": "o" if no_color else "dot"})
        every = ys + self.windows[1] + [v for _, v in self.val]
        lo, hi = steady_range(min(every), max(every))
        pad = (hi - lo) * 0.05
        plt.ylim(lo, hi + pad * 3)  # room at the top for marker labels
        plt.xlim(0, axis_end(self.tick))
        draw_markers(plt, self.markers, 0, axis_end(self.tick), hi + pad * 2)
        plt.xlabel("step (every run of this session)")
