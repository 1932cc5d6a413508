"""Findings of the health rules (traintop.engine.health.monitor), most severe first.

A model of many layers can have dozens of findings: the pane scrolls (j/k,
↑/↓, PgUp/PgDn from the app). An info finding reads `info`, never `ok`: it
may carry advice, and "ok" next to advice reads as a contradiction."""

from __future__ import annotations

from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static

SEVERITY_STYLE = {"error": "bold red", "warn": "yellow", "info": ""}
SEVERITY_WORD = {"error": "ERROR", "warn": "warn", "info": "info"}


# Its part of the help's line on its tab (tui/panes.py registers it).
HELP = "findings (`j` / `k` scroll)"


class HealthPane(VerticalScroll):
    """A scrolling frame round the findings' text: a Static alone has no
    scroll range of its own, so j / k reached it and moved nothing."""
    DEFAULT_CSS = """
    HealthPane { border: round $panel; padding: 0 1; height: 1fr; }
    HealthPane > Static { height: auto; }
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # The placeholder is set here, not on mount: a pane in a lazily mounted
        # tab may be shown a state before it mounts, and mounting must not undo it.
        self.body = Static("waiting for steps")
        self.border_title = "health"
        self.can_focus = False

    def compose(self):
        yield self.body

    @property
    def content(self):
        """The findings' text as shown (tests print it)."""
        return self.body.content

    def update(self, text, layout: bool = True) -> None:
        self.body.update(text, layout=layout)

    def show(self, state) -> None:
        findings = state.findings()
        if not findings:
            self.border_subtitle = ""
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
