"""Loss: log10 loss per step, its 1,000-step means, val points and markers."""

from __future__ import annotations

import math

from .plot_pane import PlotPane
from .plotting import (axis_end, downsample, draw_markers, finite_points, legend_width,
                       plot_cols, plot_width, step_ticks,
                       steady_range, style)


# The help screen's paragraph on this pane (tui/panes.py registers it).
HELP = """\
**Loss** — log10 of the training loss per step, the mean over each 1,000 steps
(as the lecture averages) and val loss points after `e`. A grey line marks the
uniform guess, the loss of a model that gives each class the same chance (ln of
their number: the lecture's 27 characters give ln 27 = 3.2958, log10 0.52; a
watched model's where `watch(..., expected_initial_loss=)` gives it); the title
gives the run's first loss beside it (`first 3.2962 · uniform 3.2958`). Healthy: it starts on that
line and falls smoothly; a first loss far above it (a hockey stick) means the
output layer was too confident at init. Vertical lines mark restarts and every
learning-rate change, by key or by the schedule's decay.
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
        # The uniform guess, -log(1/vocab): none for a watched model that is no classifier.
        guess = state.info.expected_initial_loss if state.info is not None else None
        self.guess = guess if isinstance(guess, (int, float)) and math.isfinite(guess) \
            and guess > 0 else None
        first = state.first_loss
        self.first = first if isinstance(first, (int, float)) and math.isfinite(first) else None

    def draw(self, plt, no_color: bool) -> None:
        xs, ys = self.loss
        if not xs:
            plt.title("log10 loss · waiting for steps")
            return
        plt.title(self.title())
        plt.plot(xs, ys, label="per step", **style(0, no_color))
        if self.windows[0]:
            plt.plot(*self.windows, label="mean of 1,000", **style(1, no_color))
        if self.val:
            plt.scatter([t for t, _ in self.val], [v for _, v in self.val], label="val",
                        **{**style(3, no_color), "marker": "o" if no_color else "dot"})
        every = ys + self.windows[1] + [v for _, v in self.val]
        guess = math.log10(self.guess) if self.guess is not None else None
        if guess is not None:
            every.append(guess)
        lo, hi = steady_range(min(every), max(every))
        pad = (hi - lo) * 0.05
        plt.ylim(lo, hi + pad * 3)  # room at the top for marker labels
        plt.xlim(0, axis_end(self.tick))
        if guess is not None:
            # The line over the right half of the axis, its words at the end: the
            # loss has left it by then, and the legend (top left) stays whole.
            end = axis_end(self.tick)
            plt.plot([end * 0.45, end], [guess, guess], marker="─", color="gray")
            plt.text(f"uniform guess {self.guess:.4f}", end, guess, color="gray",
                     alignment="right")
        step_ticks(plt, axis_end(self.tick))
        legend = ["per step"] + (["mean of 1,000"] if self.windows[0] else []) + \
            (["val"] if self.val else [])
        draw_markers(plt, self.markers, 0, axis_end(self.tick), hi + pad * 2,
                     cols=plot_cols(self), legend=legend_width(legend))
        plt.xlabel("step (every run of this session)")

    def title(self) -> str:
        """`log10 loss · first 3.2962 · uniform 3.2958`: the run's first loss
        against the uniform guess, as far as the pane's width holds it."""
        parts = ["log10 loss"]
        if self.first is not None:
            parts.append(f"first {self.first:.4f}")
        if self.guess is not None:
            parts.append(f"uniform {self.guess:.4f}")
        width = (self.size.width or 80) - 4     # less the border and a margin
        while len(parts) > 1 and len(" · ".join(parts)) > width:
            parts.pop()
        return " · ".join(parts)
