"""Base of the plot panes: data lives on the widget, replot only when seen.

`take(state)` copies what the pane shows out of the app's run state
(already downsampled to the pane's width); `replot()` rebuilds the plotext figure from that copy and
refreshes. Both run on the UI thread only: plotext is not thread-safe.

Bytes over SSH: Textual repaints a refreshed widget whole, every cell with
its colour codes (a 80x17 plot is ~5 KB). replot() builds the figure once,
compares its lines with the last ones and refreshes only the lines that
changed; the panes keep their axes still between updates (plotting.axis_end,
aligned downsampling), so a redraw is mostly the few lines new points land on.
"""

from __future__ import annotations

from rich.segment import Segment
from rich.text import Text
from textual.geometry import Region
from textual.strip import Strip
from textual_plotext import PlotextPlot

from traintop.engine.viewer.run_state import RunState


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
        self._built: str | None = None      # plotext's output of the last figure
        self._built_size = None             # the content size it was built for

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
        old = self._built if self._built_size == self.size else None
        new = self._build()
        if force or old is None:
            self.refresh()
            return True
        old_lines, new_lines = old.split("\n"), new.split("\n")
        if len(old_lines) != len(new_lines):
            self.refresh()
            return True
        width = self.size.width
        changed = [Region(0, y, width, 1) for y, (a, b) in enumerate(zip(old_lines, new_lines))
                   if a != b]
        if changed:
            self.refresh(*changed)
        return True

    def _build(self) -> str:
        """plotext's output for the figure now, at the pane's size (what
        PlotextPlot.render builds, kept for render and the next comparison)."""
        width, height = self.size
        self._plot.plotsize(width, height)
        self._plot._set_size(width, height)   # as PlotextPlot.render does (its issue #5)
        self._plot.theme(self._get_plotext_theme_name(self.app.theme))
        self._built = self._plot.build()
        self._built_size = self.size
        return self._built

    def render(self):
        if self._built is None or self._built_size != self.size:
            self._build()
        return Text.from_ansi(self._built)

    def render_lines(self, crop: Region) -> list:
        # plotext styles each run of a colour on its own, and Textual tags
        # every run with its offset (for text selection, which a plot has no
        # use for): runs of one colour would each cost a style code and a
        # reset on the wire. Without the tags they join into one.
        return [Strip([Segment(text, style.clear_meta_and_links() if style else style)
                       for text, style, _ in strip], strip.cell_length).simplify()
                for strip in super().render_lines(crop)]

    def on_show(self) -> None:
        # A tab just came into view: draw after the layout gives it a size.
        self.dirty = True
        self.call_after_refresh(self.replot)

    def on_resize(self) -> None:
        self.dirty = True
