"""Weight gradients: a histogram of a few 2-D parameters and a table of all.

The histogram draws the picked set (tui/pick.py: outliers, first, last; `p`
pages through all) with its legend above the data. The table gives every
parameter's shape, mean, std and grad:data ratio and scrolls from the
keyboard (j/k, ↑/↓, PgUp/PgDn); a parameter whose ratio is far above the
rest (the lecture's last layer, early in training) is flagged in words as
well as colour, so it stands out without colour too.
"""

from __future__ import annotations

import statistics

from rich.table import Table
from rich.text import Text
import math

from textual.containers import Vertical, VerticalScroll
from textual.widgets import Static

from .histogram_pane import draw_lines
from .pick import pick, shorten
from .plot_pane import PlotPane

OUTLIER_FACTOR = 3.0   # ratio this many times the median of all: flagged


# The help screen's paragraph on this pane (tui/panes.py registers it).
HELP = """\
**Weight gradients** — histogram of the drawn 2-D parameters' gradients and a
table of every one: shape, mean, std and grad:data ratio (grad std / weight std).
Healthy: similar ratios; one far above the rest (flagged `<- outlier`, often the
last layer early on) is being trained much faster than the others.
"""


def outliers(ratios: list[float]) -> set[int]:
    if len(ratios) < 3:
        return set()
    median = statistics.median(ratios)
    return {i for i, r in enumerate(ratios) if median > 0 and r >= OUTLIER_FACTOR * median}


class WeightHistPlot(PlotPane):
    def take(self, state) -> None:
        stats = state.stats
        self.step = stats.step if stats else None
        weights = list(stats.weights) if stats else []
        flagged = outliers([w.grad_data_ratio for w in weights])
        marks = {w.name: "warn" for k, w in enumerate(weights) if k in flagged}
        # Up to 8 (the lecture's 7 weights all show); beyond, the picked few.
        chosen, self.which = pick([w.name for w in weights], marks, self.page, most=8)
        width = self.label_width(0.45)
        self.lines = [(shorten(w.name, width) + (" <- outlier" if k in flagged else ""),
                       list(w.hist.centers()), list(w.hist.density))
                      for k, w in enumerate(weights) if w.name in chosen]
        self.border_subtitle = (f"{self.which} drawn · all in the table below · p: pick"
                                if len(chosen) < len(weights) else "")

    def draw(self, plt, no_color: bool) -> None:
        if self.step is None:
            plt.title("weight gradient distribution · waiting for diagnostics")
            return
        plt.title(f"weight gradient distribution · step {self.step:,}")
        draw_lines(self, plt, self.lines, no_color)


class WeightTable(Static):
    DEFAULT_CSS = "WeightTable { height: auto; padding: 0 1; }"

    def show(self, stats) -> None:
        if stats is None:
            self.update("weights: waiting for diagnostics")
            return
        table = Table(box=None, padding=(0, 1), expand=False, header_style="bold")
        for column in ("parameter", "shape", "grad mean", "grad std", "grad:data", ""):
            table.add_column(column, justify="right" if column.startswith("grad") else "left")
        ratios = [w.grad_data_ratio for w in stats.weights]
        flagged = outliers(ratios)
        finite = [r for r in ratios if math.isfinite(r)]
        largest = ratios.index(max(finite)) if finite else -1
        width = max(12, (self.size.width or 100) - 62)
        for k, w in enumerate(stats.weights):
            if k in flagged:
                mark = Text(f"<- outlier ({w.grad_data_ratio / statistics.median(ratios):.0f}x median)",
                            style="bold red")
            else:
                mark = Text("<- largest" if k == largest else "", style="dim")
            row_style = "bold" if k in flagged else ""
            table.add_row(shorten(w.name, width), "x".join(map(str, w.shape)), f"{w.grad_mean:+.2e}",
                          f"{w.grad_std:.2e}", f"{w.grad_data_ratio:.2e}", mark, style=row_style)
        self.update(table)


class WeightsPane(Vertical):
    DEFAULT_CSS = """
    WeightsPane { height: 1fr; }
    WeightsPane WeightHistPlot { height: 1fr; min-height: 10; }
    WeightsPane #weight-scroll { height: auto; max-height: 45%; min-height: 4; }
    """

    def __init__(self, state, **kwargs):
        super().__init__(**kwargs)
        self.state = state
        self.plot = WeightHistPlot(state, id="weight-hist")
        self.table = WeightTable(id="weight-table")
        self.scroller = VerticalScroll(self.table, id="weight-scroll")

    def compose(self):
        yield self.plot
        yield self.scroller

    @property
    def dirty(self) -> bool:
        return self.plot.dirty

    @dirty.setter
    def dirty(self, value: bool) -> None:
        self.plot.dirty = value

    def replot(self, force: bool = False) -> bool:
        drawn = self.plot.replot(force)
        if drawn:
            self.table.show(self.state.stats)
        return drawn

    @property
    def page(self) -> int:
        return self.plot.page

    @page.setter
    def page(self, value: int) -> None:
        self.plot.page = value

    @property
    def redraws(self) -> int:
        return self.plot.redraws

    @property
    def seen(self) -> bool:
        return self.plot.seen

    @property
    def drawn_at(self) -> float:
        return self.plot.drawn_at

    @drawn_at.setter
    def drawn_at(self, value: float) -> None:
        self.plot.drawn_at = value
