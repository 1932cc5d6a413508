"""Weight gradients: a histogram of a few 2-D parameters and a table of all.

The histogram draws the picked set (tui/pick.py: outliers, first, last; `p`
pages through all) with its legend above the data. The table gives every
parameter's shape, mean, std and grad:data ratio and scrolls from the
keyboard (j/k, ↑/↓, PgUp/PgDn); a parameter whose ratio is far from the
rest's (the lecture's last layer, early in training) is flagged in words as
well as colour, so it stands out without colour too: by the grad-data-outlier
rule's own figure and threshold (engine/health/rules.grad_data_factors,
thresholds.outlier_info_factor), so the table and the health tab agree; an
embedding table with a sparse gradient is marked so and not judged.
"""

from __future__ import annotations

from types import SimpleNamespace

from rich.table import Table
from rich.text import Text
import math

from textual.containers import Vertical, VerticalScroll
from textual.widgets import Static

from traintop.engine.health.monitor import sparse_params
from traintop.engine.health.rules import grad_data_factors
from traintop.engine.health.thresholds import DEFAULT_THRESHOLDS
from .histogram_pane import draw_lines
from .pick import pick, short_labels
from .plot_pane import PlotPane

# A ratio this many times above or below the median of the others is flagged
# (the grad-data-outlier rule's info threshold: one threshold for both).
OUTLIER_FACTOR = DEFAULT_THRESHOLDS.outlier_info_factor


# The help screen's paragraph on this pane (tui/panes.py registers it).
HELP = """\
**Weight gradients** — histogram of the drawn 2-D parameters' gradients and a
table of every one: shape, mean, std and grad:data ratio (grad std / weight std).
Healthy: similar ratios; one far above the rest (flagged `<- outlier`, often the
last layer early on) is being trained much faster than the others.
"""


def outlier_factors(weights, sparse=()) -> dict[int, float]:
    """Position -> grad:data over the others' median, for each weight the
    grad-data-outlier rule judges an outlier (either way)."""
    factors = {id(w): f for w, f, _ in grad_data_factors(weights, sparse)}
    return {k: factors[id(w)] for k, w in enumerate(weights)
            if id(w) in factors and max(factors[id(w)], 1 / factors[id(w)]) > OUTLIER_FACTOR}


def outliers(weights, sparse=()) -> set[int]:
    """Positions of the outliers among WeightStats (or bare grad:data ratios)."""
    weights = [w if hasattr(w, "grad_data_ratio") else
               SimpleNamespace(name=str(k), grad_data_ratio=w) for k, w in enumerate(weights)]
    return set(outlier_factors(weights, sparse))


class WeightHistPlot(PlotPane):
    def take(self, state) -> None:
        stats = state.stats
        self.step = stats.step if stats else None
        weights = list(stats.weights) if stats else []
        flagged = outliers(weights, sparse_params(getattr(state, "info", None)))
        marks = {w.name: "warn" for k, w in enumerate(weights) if k in flagged}
        # Up to 8 (the lecture's 7 weights all show); beyond, the picked few.
        chosen, self.which = pick([w.name for w in weights], marks, self.page, most=8)
        width = self.label_width(0.45)
        drawn = [(k, w) for k, w in enumerate(weights) if w.name in chosen]
        labels = short_labels([w.name for _, w in drawn], width)
        self.lines = [(label + (" <- outlier" if k in flagged else ""),
                       list(w.hist.centers()), list(w.hist.density))
                      for (k, w), label in zip(drawn, labels)]
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

    def show(self, stats, sparse=()) -> None:
        if stats is None:
            self.update("weights: waiting for diagnostics")
            return
        table = Table(box=None, padding=(0, 1), expand=False, header_style="bold")
        for column in ("parameter", "shape", "grad mean", "grad std", "grad:data", ""):
            table.add_column(column, justify="right" if column.startswith("grad") else "left")
        ratios = [w.grad_data_ratio for w in stats.weights]
        flagged = outlier_factors(stats.weights, sparse)
        finite = [r for r in ratios if math.isfinite(r)]
        largest = ratios.index(max(finite)) if finite else -1
        width = max(12, (self.size.width or 100) - 62)
        labels = short_labels([w.name for w in stats.weights], width)
        for k, w in enumerate(stats.weights):
            if k in flagged:
                f = flagged[k]
                mark = Text(f"<- outlier ({f:.0f}x median)" if f > 1 else
                            f"<- outlier ({1 / f:.0f}x below median)", style="bold red")
            elif w.name in sparse:
                mark = Text("sparse", style="dim")   # an embedding: only the batch's rows move
            else:
                mark = Text("<- largest" if k == largest else "", style="dim")
            row_style = "bold" if k in flagged else ""
            table.add_row(labels[k], "x".join(map(str, w.shape)), f"{w.grad_mean:+.2e}",
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
            self.table.show(self.state.stats, sparse_params(getattr(self.state, "info", None)))
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
