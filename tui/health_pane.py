"""Findings of the health rules (traintop.engine.health.monitor), most severe first."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

SEVERITY_STYLE = {"error": "bold red", "warn": "yellow", "info": ""}
SEVERITY_WORD = {"error": "ERROR", "warn": "warn", "info": "info"}


class HealthPane(Static):
    DEFAULT_CSS = "HealthPane { border: round $panel; padding: 0 1; height: 1fr; }"

    def on_mount(self) -> None:
        self.border_title = "health"
        self.update("waiting for steps")

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
        self.update(text, layout=False)
