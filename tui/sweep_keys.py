"""A sweep's side of the app (issue 14): the overview and a run in full.

The app holds a SweepState (one RunState per run); its tabs show one run,
`self.state`: run 0, or the run `v` picked. This mixin owns what only a
sweep needs: which view is shown, the keys that switch it, the run a
command goes to, the overview's dirty panes and notices naming the runs.
"""

from __future__ import annotations

from traintop.engine.feed.messages import Event
from traintop.engine.viewer.run_state import ALL_PANES
from traintop.engine.viewer.sweep_state import SOURCE_EVENTS
from .panes import RUN, SWEEP

# Answers a sweep's runs give to one key together: one notice for all of them.
GROUPED_EVENTS = ("evaluate", "calibrate", "checkpoint", "lr")


class SweepKeys:
    """Mixed into TraintopApp (it needs the app's panes, state and send)."""

    def answer_events(self, said: list[Event]) -> None:
        """Notices for what a source said; a sweep's runs answering one key
        together (lr, evaluate, ...) get one notice naming each run."""
        if not self.sweep.is_sweep:
            for event in said:
                self.answer_event(event)
            return
        grouped: dict[str, list[Event]] = {}
        for event in said:
            if event.kind in GROUPED_EVENTS:
                grouped.setdefault(event.kind, []).append(event)
            elif event.kind in SOURCE_EVENTS or event.kind == "error" and not event.run:
                self.answer_event(event)
            else:
                self.answer_event(event, f"{self.sweep.label(event.run)}: {event.text}")
        for events_of_kind in grouped.values():
            self.answer_event(events_of_kind[0], "\n".join(
                f"{self.sweep.label(e.run)}: {e.text}" for e in events_of_kind))

    def mark_overview(self, changed: set[str]) -> None:
        self.mark(changed, SWEEP)

    def run_args(self) -> dict:
        """A sweep's run shown in full: the command acts on it alone; in the
        overview (and for a single run) no "run": every run."""
        return {"run": self.view} if self.sweep.is_sweep and self.view is not None else {}

    def swept_in_overview(self, key: str) -> bool:
        """A key changing a swept knob in the overview: which run's value? Say so."""
        if self.sweep.is_sweep and self.view is None and key in self.sweep.keys:
            self.notify(f"{key} is swept: v shows one run, whose {key} the key then changes",
                        timeout=3)
            return True
        return False

    def sweep_started(self) -> None:
        """The source said it is a sweep: open on the overview. A folder's runs
        said again with one more (a recording that appeared) keep the run shown."""
        keep = self.view if (self.view is not None and not self.sweep.keys
                             and self.view < len(self.sweep.runs)) else None
        self.set_view(keep)
        self.refresh_bindings()

    def action_view_run(self, direction: int) -> None:
        """The next (or previous) run in full; past the last, the overview."""
        n = len(self.sweep.runs)
        at = -1 if self.view is None else self.view
        at = (at + 1 + int(direction)) % (n + 1) - 1
        self.set_view(None if at < 0 else at)

    def action_overview(self) -> None:
        if self.view is not None:
            self.set_view(None)

    def set_view(self, view: int | None) -> None:
        self.view = view
        state = self.sweep.runs[view or 0]
        if state is not self.state:
            self.state = state
            # The plots hold the state they draw; text panes are handed it.
            for pane in self.panes_where(lambda p: p.view == RUN and p.plot):
                pane.state = state
        self.screen.set_class(view is None, "-overview")
        self.mark(set(ALL_PANES))
        self.mark_overview({"sweep"})
        self._text_dirty |= {p.name for p in self.registered if p.view == RUN and not p.plot}
        self.call_after_refresh(self.redraw_all)
        self.show_status()
