"""Weight gradients: a histogram per 2-D parameter and a table beside it.

The table gives shape, mean, std and grad:data ratio; a parameter whose
ratio is far above the rest (the lecture's last layer, early in training)
is flagged in words as well as colour, so it stands out without colour too.
"""

from __future__ import annotations

import statistics

from rich.table import Table
from rich.text import Text
from textual.containers import Vertical
from textual.widgets import Static

from .plot_pane import PlotPane
from .plotting import style

OUTLIER_FACTOR = 3.0   # ratio this many times the median of all: flagged


def outliers(ratios: list[float]) -> set[int]:
    if len(ratios) < 3:
        return set()
    median = statistics.median(ratios)
    return {i for i, r in enumerate(ratios) if median > 0 and r >= OUTLIER_FACTOR * median}


class WeightHistPlot(PlotPane):
    def take(self, state) -> None:
        stats = state.stats
        self.step = stats.step if stats else None
        self.lines = [(f"{w.name} {'x'.join(map(str, w.shape))}", list(w.hist.centers()),
                       list(w.hist.density)) for w in stats.weights] if stats else []
        self.flagged = outliers([w.grad_data_ratio for w in stats.weights]) if stats else set()

    def draw(self, plt, no_color: bool) -> None:
        if self.step is None:
            plt.title("weight gradient distribution · waiting for diagnostics")
            return
        plt.title(f"weight gradient distribution · step {self.step:,}")
        for k, (label, xs, ys) in enumerate(self.lines):
            flag = " <- outlier" if k in self.flagged else ""
            plt.plot(xs, ys, label=label + flag, **style(k, no_color))


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
        largest = ratios.index(max(ratios)) if ratios else -1
        for k, w in enumerate(stats.weights):
            if k in flagged:
                mark = Text(f"<- outlier ({w.grad_data_ratio / statistics.median(ratios):.0f}x median)",
                            style="bold red")
            else:
                mark = Text("<- largest" if k == largest else "", style="dim")
            row_style = "bold" if k in flagged else ""
            table.add_row(w.name, "x".join(map(str, w.shape)), f"{w.grad_mean:+.2e}",
                          f"{w.grad_std:.2e}", f"{w.grad_data_ratio:.2e}", mark, style=row_style)
        self.update(table)


class WeightsPane(Vertical):
    DEFAULT_CSS = """
    WeightsPane { height: 1fr; }
    WeightsPane WeightHistPlot { height: 1fr; }
    """

    def __init__(self, state, **kwargs):
        super().__init__(**kwargs)
        self.state = state
        self.plot = WeightHistPlot(state, id="weight-hist")
        self.table = WeightTable(id="weight-table")

    def compose(self):
        yield self.plot
        yield self.table

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
