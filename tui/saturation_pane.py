"""Saturation: % of |t| > 0.97 per Tanh layer, the ~5% guide, dead units."""

from __future__ import annotations

from .health_marks import badge, layer_marks
from .plot_pane import PlotPane

GUIDE = 5.0   # the lecture aims for about 5% saturated


class SaturationPane(PlotPane):
    def take(self, state) -> None:
        stats = state.stats
        self.step = stats.step if stats else None
        self.bars = [(l.index, l.saturation_pct, l.dead, l.units) for l in stats.layers] \
            if stats else []
        findings = state.findings() if stats else None
        self.marks = layer_marks(findings, [i for i, *_ in self.bars])

    def draw(self, plt, no_color: bool) -> None:
        if self.step is None:
            plt.title("saturation · waiting for diagnostics")
            return
        if not self.bars:
            plt.title("saturation · no Tanh layers in this stack")
            return
        plt.title("% saturated |t|>0.97")
        # Horizontal bars: every layer keeps its label, however narrow the pane.
        # A layer a health finding names is labelled "!" (warn) or "!!" (error);
        # plotext draws one colour per bar series, so the label carries the mark.
        labels = [f"{badge(self.marks.get(i))}L{i} d{dead}" for i, _, dead, _ in self.bars]
        values = [pct for _, pct, _, _ in self.bars]
        worst = "red" if "error" in self.marks.values() else "orange+"
        plt.bar(labels, values, orientation="horizontal", width=0.6,
                marker="#" if no_color else "sd", **({} if no_color else {"color": worst}))
        plt.vertical_line(GUIDE, color="gray")
        plt.xlim(0, max(max(values), GUIDE) * 1.15)
        plt.xlabel(f"step {self.step:,} · dN: dead units")
