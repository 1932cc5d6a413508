"""The lecture's histograms: Tanh outputs, or the gradients at them."""

from __future__ import annotations

from .plot_pane import PlotPane
from .plotting import style


class HistogramPane(PlotPane):
    """kind "activation": t per Tanh layer; kind "gradient": dloss/dt."""

    def __init__(self, state, kind: str, *args, **kwargs):
        super().__init__(state, *args, **kwargs)
        self.kind = kind

    def take(self, state) -> None:
        stats = state.stats
        self.step = stats.step if stats else None
        self.lines = []
        summary = []
        for l in stats.layers if stats else ():
            if self.kind == "activation":
                hist = l.hist
                label = f"L{l.index} mean {l.mean:+.2f} std {l.std:.2f} sat {l.saturation_pct:.1f}%"
                summary.append(f"L{l.index} std {l.std:.2f} sat {l.saturation_pct:.1f}%")
            else:
                hist = l.grad_hist
                label = f"L{l.index} mean {l.grad_mean:+.1e} std {l.grad_std:.1e}"
                summary.append(f"L{l.index} std {l.grad_std:.1e}")
            self.lines.append((label, list(hist.centers()), list(hist.density)))
        # The legend needs a row per layer; the border keeps the figures in
        # view when the pane is too short for it (80x24).
        self.border_subtitle = " · ".join(summary)

    def draw(self, plt, no_color: bool) -> None:
        what = "activation" if self.kind == "activation" else "gradient (at Tanh outputs)"
        if self.step is None:
            plt.title(f"{what} distribution · waiting for diagnostics")
            return
        if not self.lines:
            plt.title(f"{what} distribution · no Tanh layers in this stack")
            return
        plt.title(f"{what} distribution · step {self.step:,}")
        for k, (label, xs, ys) in enumerate(self.lines):
            plt.plot(xs, ys, label=label, **style(k, no_color))
