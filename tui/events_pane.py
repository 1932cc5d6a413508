"""What was done to the run and what it answered, newest last."""

from __future__ import annotations

from textual.widgets import Static

SHOWN = 50
EMPTY = "restarts, lr changes and answers appear here"


# Its part of the help's line on its tab (tui/panes.py registers it).
HELP = "events, newest last"


class EventsPane(Static):
    DEFAULT_CSS = "EventsPane { border: round $panel; padding: 0 1; height: 1fr; }"

    def __init__(self, *args, **kwargs) -> None:
        # The placeholder is set here, not on mount: a pane in a lazily mounted
        # tab may be shown a state before it mounts, and mounting must not undo it.
        super().__init__(EMPTY, *args, **kwargs)
        self.border_title = "events"

    def show(self, state) -> None:
        if not state.events:   # a replay rewound, a followed writer started over
            self.update(EMPTY)
            return
        rows = list(state.events)[-max(1, self.size.height - 2 or SHOWN):]
        self.update("\n".join(f"{step:>9,}  {text}" for step, text in rows))
