"""BatchNorm running estimates against exact training-set statistics (`c`)."""

from __future__ import annotations

from rich.table import Table
from textual.widgets import Static


TITLE = "BatchNorm: running vs exact"
PLACEHOLDER = "press c to compare the running mean/std with exact training-set values"


class CalibrationPane(Static):
    DEFAULT_CSS = "CalibrationPane { border: round $panel; padding: 0 1; height: auto; }"

    def __init__(self, *args, **kwargs) -> None:
        # The placeholder is set here, not on mount: a pane in a lazily mounted
        # tab may be shown a state before it mounts, and mounting must not undo it.
        super().__init__(PLACEHOLDER, *args, **kwargs)
        self.border_title = TITLE

    def show(self, state) -> None:
        # Only the lecture's stack calibrates (`c`); a watch()ed model has no such pane.
        self.display = (state.info is None or "batchnorm" in state.info.config
                        or state.calibration is not None)
        event = state.calibration
        if event is None:   # none yet, or forgotten on a rewind
            self.border_title = TITLE
            self.update(PLACEHOLDER)
            return
        self.border_title = f"BatchNorm: running vs exact · step {event.step:,}"
        layers = event.data.get("layers") or []
        if not layers:
            self.update("no BatchNorm layers in this run")
            return
        table = Table(box=None, padding=(0, 1), header_style="bold")
        table.add_column("layer")
        table.add_column("max |mean diff|", justify="right")
        table.add_column("max std rel diff", justify="right")
        for i, m, s in zip(layers, event.data["mean_max_diff"], event.data["std_max_rel_diff"]):
            table.add_row(f"L{i}", f"{m:.3g}", f"{s:.2%}")
        self.update(table)
