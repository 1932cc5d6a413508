"""BatchNorm running estimates against exact training-set statistics (`c`)."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from textual.widgets import Static


TITLE = "BatchNorm: running vs exact"
PLACEHOLDER = ("press c to compare the running mean/std with exact training-set values, "
               "C to apply the exact ones and re-evaluate, F to fold BatchNorm into Linear")


# Its part of the help's line on its tab (tui/panes.py registers it).
HELP = ("BatchNorm running vs exact (`c`; `C` applies the exact statistics and re-evaluates "
        "val; `F` folds each BatchNorm into its Linear: val loss and largest logit change)")


class CalibrationPane(Static):
    DEFAULT_CSS = "CalibrationPane { border: round $panel; padding: 0 1; height: auto; }"

    def __init__(self, *args, **kwargs) -> None:
        # The placeholder is set here, not on mount: a pane in a lazily mounted
        # tab may be shown a state before it mounts, and mounting must not undo it.
        super().__init__(PLACEHOLDER, *args, **kwargs)
        self.border_title = TITLE
        self._shown: tuple | None = None   # (display, event) last shown

    def show(self, state) -> None:
        # Only the lecture's stack calibrates (`c`), and only with BatchNorm on:
        # a watch()ed model, or the stack without BatchNorm, has no such pane.
        display = (state.info is None or bool(state.info.config.get("batchnorm"))
                   or state.calibration is not None)
        event, fold = state.calibration, getattr(state, "fold", None)
        # Shown on every event (a calibration answers with one): the same figures
        # again are skipped, so a replay's stream of events costs no redraws.
        shown = (display, event, fold)
        if self._shown is not None and all(a is b for a, b in zip(self._shown, shown)):
            return
        self._shown = shown
        self.display = display
        if event is None and fold is None:   # none yet, or forgotten on a rewind
            self.border_title = TITLE
            self.update(PLACEHOLDER)
            return
        parts: list = []
        if event is not None:
            self.border_title = f"BatchNorm: running vs exact · step {event.step:,}"
            parts.append(calibration_table(event))
        else:
            self.border_title = TITLE
        if fold is not None:
            parts.append(f"step {fold.step:,}: {fold.text}")
        self.update(Group(*parts) if len(parts) > 1 else parts[0])


def calibration_table(event):
    """The comparison as a table and, once applied (`C`), the loss it made."""
    layers = event.data.get("layers") or []
    if not layers:
        return "no BatchNorm layers in this run"
    table = Table(box=None, padding=(0, 1), header_style="bold")
    table.add_column("layer")
    table.add_column("max |mean diff|", justify="right")
    table.add_column("max std rel diff", justify="right")
    for i, m, s in zip(layers, event.data["mean_max_diff"], event.data["std_max_rel_diff"]):
        table.add_row(f"L{i}", f"{m:.3g}", f"{s:.2%}")
    data = event.data
    if data.get("loss_exact") is not None:
        return Group(table, f"applied the exact statistics: {data['split']} loss "
                            f"{data['loss_running']:.4f} (running) -> {data['loss_exact']:.4f} "
                            "(exact)")
    return table
