"""Base of the plot panes: data lives on the widget, replot only when seen.

`take(state)` copies what the pane shows out of the app's run state
(already downsampled to the pane's width); `replot()` rebuilds the plotext figure from that copy and
refreshes. Both run on the UI thread only: plotext is not thread-safe.
"""

from __future__ import annotations

from textual_plotext import PlotextPlot

from ..engine.recording.run_state import RunState


class PlotPane(PlotextPlot):
    DEFAULT_CSS = "PlotPane { border: round $panel; }"
    can_focus = False

    def __init__(self, state: RunState, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.state = state
        self.dirty = True
        self.redraws = 0        # figures built, for the measurement script
        self.drawn_at = 0.0     # monotonic time the app last asked for a redraw
        self.page = 0           # which set of layers/parameters is drawn (tui/pick.py, `p`)

    def canvas_rows(self) -> int:
        """Rows plotext has for data: the pane less its border, title and x axis."""
        return max(0, self.size.height - 6) if self.size.height else 20

    def label_width(self, share: float = 0.4) -> int:
        """Columns a legend or bar label may take before it crowds the plot."""
        return max(8, int((self.size.width or 60) * share))

    def take(self, state: RunState) -> None:
        raise NotImplementedError

    def draw(self, plt, no_color: bool) -> None:
        raise NotImplementedError

    @property
    def seen(self) -> bool:
        """On screen now: hidden tabs are not redrawn at all."""
        return self.is_mounted and self.is_on_screen and self.size.area > 0

    def replot(self, force: bool = False) -> bool:
        if not (self.dirty or force) or not self.seen:
            return False
        self.take(self.state)
        plt = self.plt
        plt.clear_figure()
        no_color = self.app.no_color
        self.draw(plt, no_color)
        self.dirty = False
        self.redraws += 1
        self.refresh()
        return True

    def on_show(self) -> None:
        # A tab just came into view: draw after the layout gives it a size.
        self.dirty = True
        self.call_after_refresh(self.replot)

    def on_resize(self) -> None:
        self.dirty = True
