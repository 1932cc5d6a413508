"""Findings of the health rules (traintop.engine.health.monitor), most severe first.

A model of many layers can have dozens of findings: the pane scrolls (j/k,
↑/↓, PgUp/PgDn from the app). An info finding reads `info`, never `ok`: it
may carry advice, and "ok" next to advice reads as a contradiction."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

SEVERITY_STYLE = {"error": "bold red", "warn": "yellow", "info": ""}
SEVERITY_WORD = {"error": "ERROR", "warn": "warn", "info": "info"}


# Its part of the help's line on its tab (tui/panes.py registers it).
HELP = "findings (`j` / `k` scroll)"


class HealthPane(Static):
    DEFAULT_CSS = ("HealthPane { border: round $panel; padding: 0 1; height: 1fr; "
                   "overflow-y: auto; }")

    def __init__(self, *args, **kwargs) -> None:
        # The placeholder is set here, not on mount: a pane in a lazily mounted
        # tab may be shown a state before it mounts, and mounting must not undo it.
        super().__init__("waiting for steps", *args, **kwargs)
        self.border_title = "health"

    def show(self, state) -> None:
        findings = state.findings()
        if not findings:
            self.update("no findings yet", layout=False)
            return
        # One finding per paragraph: a heading line, then its sentence wrapped to
        # the pane's full width (a table column would be a sliver at 80x24).
        text = Text()
        for k, f in enumerate(findings):
            sev = getattr(f, "severity", "info")
            if k:
                text.append("\n")
            text.append(f"{SEVERITY_WORD.get(sev, sev):>5} ", style=SEVERITY_STYLE.get(sev, ""))
            text.append(str(getattr(f, "where", "")), style="bold")
            text.append(f"\n      {getattr(f, 'message', '')}\n")
        self.border_subtitle = f"{len(findings)} findings · j/k scroll" if len(findings) > 3 else ""
        self.update(text)   # a layout pass: the scroll range follows the text
