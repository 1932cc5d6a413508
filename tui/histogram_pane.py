"""The lecture's histograms: activation outputs, or the gradients at them.

A few layers are drawn (tui/pick.py: the worst by health, first and last;
`p` pages through the rest) with a legend in rows kept free above the data;
the border says which are drawn and sums up the others.
"""

from __future__ import annotations

import math
import re

from .health_marks import badge, layer_marks
from .pick import MAX_DRAWN, fitting, headroom, pick, short_labels
from .saturation_pane import draw_words, no_activation_text
from .plot_pane import PlotPane
from .plotting import border_legend, style


# The help screen's paragraph on this pane (tui/panes.py registers it).
ACTIVATION_HELP = """\
**Activation distribution** — histogram of each drawn layer's output. Healthy:
similar spread in every layer of a family; for tanh std ~0.6-0.7 and no pile-up
at -1 and +1.
"""

GRADIENT_HELP = """\
**Gradient distribution** — histogram of the gradient at each activation output.
Healthy: every layer about the same width; layers shrinking or growing with depth
mean vanishing or exploding gradients.
"""


def draw_lines(pane, plt, lines, no_color: bool, names: list[str] | None = None) -> None:
    """Density lines from 0 up, with a legend that covers no data: in rows kept
    free above them where the pane is tall enough, else in the top border
    (`names`: the shorter labels it uses there)."""
    inline = len(lines) <= fitting(pane.canvas_rows())
    top = 0.0
    for k, (label, xs, ys) in enumerate(lines):
        if not xs:   # plotext fails building the legend of a labelled empty series
            continue
        # nor may a series be all NaN (a diverged layer): drawn on the floor, its legend says nan
        ys = [y if math.isfinite(y) else 0.0 for y in ys]
        plt.plot(xs, ys, **({"label": label} if inline else {}), **style(k, no_color))
        top = max([top, *(y for y in ys if math.isfinite(y))])
    pane.border_title = None if inline else border_legend(
        names or [l for l, _, _ in lines], no_color)
    plt.ylim(0, headroom(0.0, top, pane.canvas_rows(), len(lines) if inline else 0))


def legend_figures(layer, kind: str, brief: bool = False) -> str:
    """A layer's figures in its legend: mean, std and (activations) the
    family's share, of the snapshot drawn (brief: `μ+0.01 σ0.62 5%`)."""
    if brief and kind == "activation":   # `μ-.02 σ.75 20%`: five fit a 120-column border
        return (f"μ{_bare(f'{layer.mean:+.2f}')} σ{_bare(f'{layer.std:.2f}')} "
                f"{layer.saturation_pct:.0f}%")
    if brief:   # `μ+1e-5 σ6.0e-3`
        mean = _sci(f"{layer.grad_mean:+.0e}") if layer.grad_mean else "0"
        return f"μ{mean} σ{_sci(f'{layer.grad_std:.1e}')}"
    if kind == "activation":
        return (f"mean {layer.mean:+.2f} std {layer.std:.2f} "
                f"sat {layer.saturation_pct:.1f}%")
    return f"mean {layer.grad_mean:+.1e} std {layer.grad_std:.1e}"


def _sci(number: str) -> str:
    """`6.0e-03` as `6.0e-3`."""
    return re.sub(r"e([+-])0*(\d)", r"e\1\2", number)


def _bare(number: str) -> str:
    """`-0.02` as `-.02`, `0.75` as `.75` (a legend in a border has few columns)."""
    if re.fullmatch(r"[+-]?0\.0*", number):
        return "0"          # not `-.00`
    return re.sub(r"^([+-]?)0\.", r"\1.", number)


def _histogrammed(layer, kind: str) -> bool:
    """Whether any of the layer's values made its histogram (a count above 0)."""
    hist = layer.hist if kind == "activation" else layer.grad_hist
    return any(math.isfinite(d) and d > 0 for d in hist.density)


class HistogramPane(PlotPane):
    """kind "activation": t per activation layer; kind "gradient": dloss/dt."""

    def __init__(self, state, kind: str, *args, figures: bool = True, **kwargs):
        super().__init__(state, *args, **kwargs)
        self.kind = kind
        # figures: a narrow pane draws fewer layers so each keeps its figures
        # (tab 2's); else it keeps the default set, names alone where the
        # figures do not fit (tab 1's quarter pane: the design's four panes)
        self.figures = figures
        self.nonfinite: list = []   # layers with no finite value (take)

    def take(self, state) -> None:
        self.missing = no_activation_text(state)
        stats = state.stats
        self.step = stats.step if stats else None
        layers = list(stats.layers) if stats else []
        if self.kind == "gradient":
            # An LSTM's gates are recomputed without a gradient (an all-NaN histogram):
            # not drawn beside layers that have one (a diverged model keeps them all).
            finite = [l for l in layers if any(map(math.isfinite, l.grad_hist.density))]
            layers = finite or layers
        # A layer whose every value was NaN or inf has no histogram (its counts all
        # 0 on a made-up axis): said in words, never drawn as a flat line.
        self.nonfinite = [l for l in layers if not _histogrammed(l, self.kind)]
        layers = [l for l in layers if _histogrammed(l, self.kind)]
        marks = layer_marks(state.findings() if stats else None, [l.index for l in layers],
                            {l.index: l.name for l in layers})
        # The border's legend (a pane too short for one over the data) carries
        # the figures too, briefly: a narrow pane draws fewer layers (two at
        # least: p pages the rest) so that every drawn one keeps its figures.
        room = (self.size.width or 80) - 6
        for most in range(MAX_DRAWN, 1 if self.figures else MAX_DRAWN - 1, -1):
            chosen, self.which = pick([l.index for l in layers], marks, self.page, most=most,
                                      fill=most < MAX_DRAWN)   # as many as fit, spread
            drawn = [l for l in layers if l.index in chosen]
            names = [badge(marks.get(l.index)) + n
                     for l, n in zip(drawn, short_labels([l.label for l in drawn], 16))]
            briefs = [f"{n} {legend_figures(l, self.kind, brief=True)}"
                      for n, l in zip(names, drawn)]
            # as many as both kinds' figures fit: tab 2's two panes draw one set
            fits = all(sum(len(n) + len(legend_figures(l, kind, brief=True)) + 5
                           for n, l in zip(names, drawn)) <= room
                       for kind in (("activation", "gradient") if self.figures else (self.kind,)))
            if fits or len(drawn) <= fitting(self.canvas_rows()):
                break
        self.names = briefs if fits else names
        # One snapshot's figures (the step in the title), as the lecture's legends:
        # `layer 1 (Tanh): mean -0.02, std 0.75, saturated: 20.25%`.
        figures = [legend_figures(l, self.kind) for l in drawn]
        width = self.label_width(0.6) - max((len(f) for f in figures), default=0)
        labels = short_labels([l.label for l in drawn], max(8, width))
        self.lines = []
        for k, l in enumerate(drawn):
            hist = l.hist if self.kind == "activation" else l.grad_hist
            self.lines.append((f"{badge(marks.get(l.index))}{labels[k]} {figures[k]}",
                               list(hist.centers()), list(hist.density)))
        rest = [l for l in layers if l.index not in chosen]
        stds = [l.std if self.kind == "activation" else l.grad_std for l in rest]
        spec = ".2f" if self.kind == "activation" else ".1e"
        self.border_subtitle = (
            f"{self.which} drawn · {len(rest)} more std {min(stds):{spec}}-{max(stds):{spec}}"
            " · p: pick" if rest else "")
        if self.nonfinite and layers:
            self.border_subtitle = " · ".join(filter(None, (
                f"{len(self.nonfinite)} non-finite (no line)", self.border_subtitle)))

    def draw(self, plt, no_color: bool) -> None:
        what = "activation" if self.kind == "activation" else "gradient (at activation outputs)"
        if self.step is None:
            plt.title(f"{what} distribution · waiting for diagnostics")
            return
        if not self.lines:
            if self.nonfinite:
                n = len(self.nonfinite)
                brief = "activations" if self.kind == "activation" else "gradients at activations"
                draw_words(self, plt, (f"{what} distribution · step {self.step:,} · non-finite",
                                       f"{brief} · step {self.step:,} · non-finite",
                                       f"step {self.step:,} · non-finite", "non-finite"),
                           (f"Every value of {'the' if n == 1 else 'all'} {n} layer"
                            f"{'' if n == 1 else 's'} was NaN or inf at step {self.step:,}: no "
                            "histogram. The health tab (4) names where it started.",
                            f"{n} layer{'' if n == 1 else 's'} all NaN/inf: no histogram",
                            "all NaN/inf"))
                return
            if self.missing:
                draw_words(self, plt, (f"{what} distribution · no activation recognised",
                                       "no activation recognised", "no activations"),
                           self.missing)
                return
            plt.title(f"{what} distribution · no activation layers in this model")
            return
        # plotext drops a title wider than the plot: say less in a narrow pane
        # (the first screen's quarter panes are ~58 columns).
        room = (self.size.width or 120) - 4
        for title in (f"{what} distribution · step {self.step:,}",
                      f"{'activations' if self.kind == 'activation' else 'gradients at activations'}"
                      f" · step {self.step:,}",
                      f"{'t' if self.kind == 'activation' else 'dL/dt'} · step {self.step:,}"):
            if len(title) <= room:
                break
        plt.title(title)
        draw_lines(self, plt, self.lines, no_color, self.names)
