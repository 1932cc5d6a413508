"""Findings of the health rules (engine.health), most severe first."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from tui import health_rules

SEVERITY_STYLE = {"error": "bold red", "warn": "yellow", "info": ""}
SEVERITY_WORD = {"error": "ERROR", "warn": "warn", "info": "ok"}


class HealthPane(Static):
    DEFAULT_CSS = "HealthPane { border: round $panel; padding: 0 1; height: 1fr; }"

    def on_mount(self) -> None:
        self.border_title = "health"
        self.update(health_rules.UNAVAILABLE_TEXT if not health_rules.AVAILABLE
                    else "waiting for steps")

    def show(self, state) -> None:
        if not health_rules.AVAILABLE:
            return
        findings = state.findings()
        if findings is None:
            return
        if not findings:
            self.update("no findings yet", layout=False)
            return
        table = Table(box=None, padding=(0, 1), show_header=False, expand=True)
        table.add_column("severity", no_wrap=True)
        table.add_column("where", no_wrap=True)
        table.add_column("message", ratio=1)
        for f in findings:
            sev = getattr(f, "severity", "info")
            table.add_row(Text(SEVERITY_WORD.get(sev, sev), style=SEVERITY_STYLE.get(sev, "")),
                          str(getattr(f, "where", "")), str(getattr(f, "message", "")))
        self.update(table, layout=False)
