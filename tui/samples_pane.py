"""Names sampled from the model (`s`), with the step they came from."""

from __future__ import annotations

from textual.widgets import Static


TITLE = "samples"
PLACEHOLDER = "press s to sample 10 names"


# Its part of the help's line on its tab (tui/panes.py registers it).
HELP = "samples (`s`)"


class SamplesPane(Static):
    DEFAULT_CSS = "SamplesPane { border: round $panel; padding: 0 1; height: 1fr; }"

    def __init__(self, *args, **kwargs) -> None:
        # The placeholder is set here, not on mount: a pane in a lazily mounted
        # tab may be shown a state before it mounts, and mounting must not undo it.
        super().__init__(PLACEHOLDER, *args, **kwargs)
        self.border_title = TITLE

    def show(self, state) -> None:
        # Names come from the lecture's character model: a watch()ed model has none.
        self.display = state.info is None or bool(state.info.vocab) or state.samples is not None
        if state.samples_step is None:   # none yet, or forgotten on a rewind
            self.border_title = TITLE
            self.update(PLACEHOLDER)
            return
        self.border_title = f"samples · step {state.samples_step:,}"
        self.update("\n".join(state.samples or ()) or "(no names)")
