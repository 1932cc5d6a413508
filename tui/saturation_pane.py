"""Each activation layer's share in its family's bad regime, and dead units.

What the share counts depends on the activation (results.FAMILY_MEANING):
tanh/sigmoid outputs in the flat tails (the lecture's ~5% guide applies),
ReLU-like zeros, GELU/SiLU-like the negative regime (about half is normal).
One bar per layer labelled by its module path; when the layers outnumber
the rows, the picked set (tui/pick.py, `p`) is drawn and the rest summed up.
"""

from __future__ import annotations

import math

from traintop.engine.results import FAMILY_MEANING
from .health_marks import badge, layer_marks
from .pick import pick, short_labels
from .plot_pane import PlotPane

# The lecture's --activation linear: no share or dead count to draw, and why (longest first).
LINEAR = ("a linear stack has no activation function, so nothing saturates and no unit "
          "dies: no share to draw", "no activation function: nothing saturates", "n/a")
GUIDE = 5.0   # the lecture aims for about 5% saturated (tanh/sigmoid only)
# plotext drops a bar's label, or draws one bar over another, when the bars
# outnumber half the rows (80x24: 5 bars in 5 rows hid L8): two rows a bar.
ROWS_PER_BAR = 2
# A narrow pane's title: the family's share in a word or two.
SHORT_MEANING = {"tanh": "|t|>0.97", "sigmoid": "saturated", "relu": "zeros",
                 "gelu": "x<0", "": "|t|>0.97"}


# The help screen's paragraph on this pane (tui/panes.py registers it).
HELP = """\
**Activation share** — per activation layer (its label: *Layer names* below),
the share of its outputs in the
family's regime; the title says which. A unit is a feature (the last dim of a
Linear-style output) or a channel (of a convolution), counted over every example
and position; `dN` is the count of dead units.
- *tanh/sigmoid-like*: % in the flat tails (tanh |t| > 0.97), with the lecture's
  ~5% guide line. Many saturated units stop gradients; dead = saturated on every
  example.
- *ReLU-like*: % of zeros (t <= 0). About half is normal; dead = a channel zero on
  every example and position of the batch.
- *GELU/SiLU-like*: % in the negative regime (x < 0). About half is normal and no
  saturation; a unit is called dead only when its input stays below the flat-tail
  threshold everywhere (GELU -3, SiLU/Mish -6, ELU-like -5).
"""


def no_activation_text(state) -> tuple[str, ...] | None:
    """What a watched model without an activation traintop recognises says in a
    layer pane (watch() records the module types it saw: config "no_activations"),
    longest first."""
    info = getattr(state, "info", None)
    seen = info.config.get("no_activations") if info is not None else None
    if not seen:
        return None
    return (f"traintop recognises no activation in this model; module types seen: {seen}. "
            "Name yours: watch(..., activations={'MyAct': 'gelu'})",
            f"none recognised; module types seen: {seen}. "
            "Name yours: watch(activations=...)",
            f"seen: {seen}")


def title_fits(length: int, cols: int, labels: int) -> bool:
    """Whether plotext draws a title of `length` in a plot `cols` wide whose
    y labels are `labels` wide: it centres the title on the canvas (right of
    the labels and their axis) and drops one that would pass the right edge."""
    start = labels + 1
    centre = start + (cols - start - 1) // 2
    return centre - length // 2 + length <= cols


def draw_words(pane, plt, titles: tuple[str, ...], words: tuple[str, ...]) -> None:
    """A title that fits (plotext drops a wider one) and the longest words that
    fit, wrapped, in the canvas."""
    import textwrap
    room = max(8, (pane.size.width or 80) - 4)
    plt.title(next((t for t in titles if len(t) <= room), titles[-1]))
    rows = max(1, (pane.size.height or 12) - 4)      # less the border, title and a margin
    for text in words:
        lines = textwrap.wrap(text, room - 1)
        if len(lines) <= rows:
            break
    lines = lines[:rows]
    plt.xlim(0, 1)
    plt.ylim(-0.5, rows - 0.5)
    for k, line in enumerate(lines):
        plt.text(line, x=0, y=rows - 1 - k, alignment="left")
    plt.xticks([])
    plt.yticks([])
    plt.frame(False)


def share(layer) -> float:
    """The layer's share, NaN where its outputs were not finite: a NaN is in no
    regime (NaN > 0.97 is false), so the engine's count reads 0% for a diverged layer."""
    ok = all(v is not None and math.isfinite(v)
             for v in (getattr(layer, 'mean', 0.0), getattr(layer, 'std', 0.0)))
    return layer.saturation_pct if ok else math.nan


def fitting(notes: tuple[str, ...], cols: int, labels: int) -> str:
    """The longest note plotext draws as the x label (centred as a title is, it
    drops one that would pass the right edge: at 80x24 the rest's count went)."""
    return next((n for n in notes if title_fits(len(n), cols, labels)), notes[-1])


class SaturationPane(PlotPane):
    def take(self, state) -> None:
        self.missing = no_activation_text(state)
        stats = state.stats
        self.step = stats.step if stats else None
        layers = list(stats.layers) if stats else []
        findings = state.findings() if stats else None
        self.marks = layer_marks(findings, [l.index for l in layers],
                                 {l.index: l.name for l in layers})
        self.families = sorted({l.fam for l in layers})
        fits = max(1, self.canvas_rows() // ROWS_PER_BAR)
        keys = [l.index for l in layers]
        chosen, self.which = pick(keys, self.marks, self.page, most=max(fits, 1), fill=True) \
            if len(keys) > fits else (keys, "all")
        by_index = {l.index: l for l in layers}
        width = self.label_width(0.5) - 4   # less ` dN`
        labels = short_labels([by_index[i].label for i in chosen], width)
        self.bars = [(i, label, share(by_index[i]), by_index[i].dead)
                     for i, label in zip(chosen, labels)]
        rest = [share(l) for l in layers if l.index not in chosen]
        finite_rest = [v for v in rest if math.isfinite(v)]
        self.rest = (len(rest), max(finite_rest) if finite_rest else math.nan) if rest else None
        if layers and self.families == [""]:   # the lecture's linear stack: no tails, no dead
            self.bars, self.missing = [], LINEAR

    def title(self) -> str:
        """What the bars count, as much as the pane's width holds (plotext
        drops a wider title: at 80x24 the pane is ~27 columns)."""
        if len(self.families) == 1:
            full = FAMILY_MEANING[self.families[0]][0]
        else:
            full = "% " + " · ".join(FAMILY_MEANING[f][0].removeprefix("% ")
                                     for f in self.families)
        brief = "% " + " · ".join(SHORT_MEANING.get(f, f) for f in self.families)
        labels = max((len(self.label_text(bar)) for bar in self.bars), default=0)
        return next((t for t in (full, brief, "activation share %")
                     if title_fits(len(t), self.size.width or 80, labels)), "share %")

    def label_text(self, bar) -> str:
        """A bar's label: its mark (`!`, `!!`), its layer and its dead units."""
        i, label, _, dead = bar
        return f"{badge(self.marks.get(i))}{label} d{dead}"

    def draw(self, plt, no_color: bool) -> None:
        if self.step is None:
            plt.title("activation share · waiting for diagnostics")
            return
        if not self.bars:
            if self.missing:
                draw_words(self, plt, ("activation share · n/a: a linear stack", "n/a: linear",
                                       "n/a") if self.missing is LINEAR else
                           ("activation share · no activation recognised",
                            "no activation recognised", "no activations"), self.missing)
                return
            plt.title("activation share · no activation layers in this model")
            return
        plt.title(self.title())
        # Horizontal bars: every layer keeps its label, however narrow the pane.
        # A layer a health finding names is labelled "!" (warn) or "!!" (error);
        # plotext draws one colour per bar series, so the label carries the mark.
        labels = [self.label_text(bar) for bar in self.bars]
        # A non-finite share (a run that diverged) has no bar: drawn as 0 and said below.
        finite = [pct is not None and math.isfinite(pct) for _, _, pct, _ in self.bars]
        values = [pct if ok else 0.0 for (_, _, pct, _), ok in zip(self.bars, finite)]
        unknown = finite.count(False)
        worst = "red" if "error" in self.marks.values() else "orange+"
        plt.bar(labels, values, orientation="horizontal", width=0.6,
                marker="#" if no_color else "sd", **({} if no_color else {"color": worst}))
        # The lecture's 5% guide is a tanh/sigmoid figure: not drawn through ReLU or
        # GELU bars (a zero share of ~50% is normal there), so only where all saturate.
        saturating = all(f in ("tanh", "sigmoid") for f in self.families)
        if saturating:
            plt.vertical_line(GUIDE, color="gray")
        top = max(values + ([GUIDE] if saturating else []))
        plt.xlim(0, (top if top > 0 else 1.0) * 1.15)   # all 0: a readable 0-1% axis
        note = f"step {self.step:,} · dN: dead units"
        notes = (note,)
        if unknown:
            note = f"step {self.step:,} · {unknown} non-finite"
            notes = (f"{note} (no bar)", note, f"{unknown} non-finite")
        if self.rest:
            count, most = self.rest
            most = f"≤{most:.0f}%" if math.isfinite(most) else "non-finite"
            notes = (f"{note} · {self.which}, {count} more {most} (p)",
                     f"step {self.step:,} · {count} more {most} (p)",
                     # the drawn bars' non-finite count before the rest's (80x24 read
                     # `+1 (p)` under three empty bars)
                     *((f"{unknown} non-finite · +{count} (p)", f"{unknown} NaN · +{count}")
                       if unknown else ()),
                     f"{count} more {most} (p)", f"+{count} (p)")
        label_cols = max((len(label) for label in labels), default=0)
        plt.xlabel(fitting(notes, self.size.width or 80, label_cols))
