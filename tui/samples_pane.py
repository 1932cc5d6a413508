"""Names sampled from the model (`s`), with the step they came from."""

from __future__ import annotations

from textual.widgets import Static


class SamplesPane(Static):
    DEFAULT_CSS = "SamplesPane { border: round $panel; padding: 0 1; height: 1fr; }"

    def on_mount(self) -> None:
        self.border_title = "samples"
        self.update("press s to sample 10 names")

    def show(self, state) -> None:
        # Names come from the lecture's character model: a watch()ed model has none.
        self.display = state.info is None or bool(state.info.vocab) or state.samples is not None
        if state.samples_step is None:   # none yet, or forgotten on a rewind
            self.on_mount()
            return
        self.border_title = f"samples · step {state.samples_step:,}"
        self.update("\n".join(state.samples or ()) or "(no names)")
