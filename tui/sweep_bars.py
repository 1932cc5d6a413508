"""The sweep overview's saturation bars: grouped per block, one bar per run.

Text, not plotext: a group of 4-16 bars per layer needs one row per bar and
its figures beside it (btop's way), and a run's bar keeps its colour from
the other panes (plotting.RICH_COLORS). The lecture's ~5% guide is a grey
tick in every bar's track. Layers that do not fit are named at the bottom;
a run's detail view (v) shows every layer of it.
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from .plotting import NO_COLOR_GLYPHS, RICH_COLORS

GUIDE = 5.0
SATURATING = ("tanh", "sigmoid")   # the families the lecture's guide is for
BLOCKS = " ▏▎▍▌▋▊▉█"


def bar(value: float, top: float, width: int) -> str:
    """`value` of `top` as `width` cells of eighth blocks."""
    if not value > 0 or not top > 0:
        return ""
    eighths = min(width * 8, round(value / top * width * 8))
    return "█" * (eighths // 8) + (BLOCKS[eighths % 8] if eighths % 8 else "")


def block_label(layer, j: int) -> str:
    """The j-th activation layer by its block, `tanh 1`: the same in a run with
    BatchNorm and one without, where the module index differs (L2, L5, ... with
    BatchNorm; L1, L3, ... without) and a sweep of both would name one run's
    layers by the other's indices. A watched model's layer keeps its path."""
    return layer.name or f"{layer.kind.lower()} {j + 1}"


# Its part of the help's sentence on the sweep overview (tui/panes.py registers it).
HELP = ("saturation bars grouped per block (`tanh 1`: block 1's Tanh, with or without "
        "BatchNorm; one bar per run)")


class SweepSaturation(Static):
    DEFAULT_CSS = "SweepSaturation { border: round $panel; padding: 0 1; }"
    can_focus = False

    def __init__(self, sweep, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.state = sweep
        self.dirty = True
        self.drawn_at = 0.0
        self.page = 0
        self.redraws = 0

    @property
    def seen(self) -> bool:
        return self.is_mounted and self.is_on_screen and self.size.area > 0

    def on_show(self) -> None:
        self.dirty = True
        self.call_after_refresh(self.replot)

    def on_resize(self) -> None:
        # At once: text laid out for the old width wraps until the next slow clock.
        self.dirty = True
        self.call_after_refresh(self.replot)

    def replot(self, force: bool = False) -> bool:
        if not (self.dirty or force) or not self.seen:
            return False
        self.dirty = False
        self.redraws += 1
        self.update(self.text(), layout=False)
        return True

    def text(self) -> Text:
        sweep = self.state
        no_color = self.app.no_color
        runs = [s.stats for s in sweep.runs]
        layers = next((s.layers for s in runs if s is not None), ())
        room = (self.size.width or 40) - 6
        self.border_title = next(t for t in ("% saturated per block · a bar per run",
                                             "% saturated · a bar per run", "% saturated")
                                 if len(t) <= room or t == "% saturated")
        # a folder's runs of different models: its layers are paired by position (issue 24)
        differ = sweep.models_differ()
        self.border_subtitle = "models differ: layers by position" if differ else ""
        if not layers:
            return Text("waiting for diagnostics")
        n = len(runs)
        rows = max(1, (self.size.height or 20) - 1)   # the note line (size: inside the border)
        fit = max(1, rows // n)
        # Runs of different models: each bar is labelled with its own run's layer
        # (paired by position, the first run's name read as every run's before).
        labelled = [s.layers if differ and s is not None else layers for s in runs]
        label_width = max(len(block_label(l, j)) for ls in labelled
                          for j, l in enumerate(ls[:fit])) + 1
        width = max(8, (self.size.width or 40) - 1 - label_width - 7)   # label, figure
        top = max([GUIDE * 2] + [l.saturation_pct for s in runs if s is not None
                                 for l in s.layers if l.saturation_pct == l.saturation_pct])
        guide = min(width - 1, round(GUIDE / top * width))
        text = Text(no_wrap=True, overflow="crop")
        for j, layer in enumerate(layers[:fit]):
            for k, s in enumerate(runs):
                line = Text(no_wrap=True)
                own = labelled[k][j] if j < len(labelled[k]) else None
                name = block_label(own, j) if own is not None else ""
                # a run's own label where it differs from the first run's (`tanh 1`
                # of a BatchNorm on/off sweep once; `net.1` and `layer1.0.relu` both)
                first = block_label(labelled[0][j], j) if j < len(labelled[0]) else None
                if k and name == first:
                    name = ""
                line.append(f"{name:<{label_width}}", style="bold")
                if s is None or j >= len(s.layers):
                    line.append("·".ljust(width) + "    n/a")
                else:
                    pct = s.layers[j].saturation_pct
                    cells = bar(pct, top, width).ljust(width)
                    if no_color:
                        mark = NO_COLOR_GLYPHS[k % len(NO_COLOR_GLYPHS)]
                        cells = cells.replace("█", mark)
                    track = Text(cells, style="" if no_color else RICH_COLORS[k % len(RICH_COLORS)])
                    # The 5% guide where the bar does not reach, through tanh and
                    # sigmoid bars only: ReLU's zeros and GELU's negative regime have
                    # no such target (as the run's own saturation pane).
                    if cells[guide] == " " and s.layers[j].fam in SATURATING:
                        track = track[:guide] + Text("┊", style="grey50") + track[guide + 1:]
                    line.append_text(track)
                    line.append(f" {pct:5.1f}%")
                text.append_text(line)
                text.append("\n")
        hidden = len(layers) - fit
        fams = {l.fam in SATURATING for s in runs if s is not None for l in s.layers[:fit]}
        note = (f"0..{top:.0f}%" if True not in fams else
                f"┊ {GUIDE:g}% guide{' (tanh, sigmoid)' if False in fams else ''} · 0..{top:.0f}%")
        if hidden > 0:
            note += f" · {hidden} more layers: v shows a run"
            if len(note) > width + label_width + 7:      # one row, however narrow the pane
                note = (f"┊ {GUIDE:g}% · " if True in fams else "") + f"{hidden} more layers (v)"
        text.append(note, style="grey50")
        return text
