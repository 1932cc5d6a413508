"""What a viewer knows of every run of a source: one RunState per run.

A single run is a SweepState of one RunState and no labels, so a viewer
holds this whatever its source is. A sweep (feed.Sweep, said before its
first RunStarted) makes one RunState per run; every later message goes to
the run it names (`message.run`). The few messages about the source rather
than a run (a replay's rewind, the live child's death or silence) reach
every run. Textual-free and torch-free, like RunState.
"""

from __future__ import annotations

from traintop.engine.feed.messages import Event, Message, Sweep
from traintop.engine.sweep.spec import MAX_RUNS
from traintop.engine.viewer.run_state import RunState

# Events about the source, not one of its runs: every run takes them.
SOURCE_EVENTS = ("rewind", "trainer")


# An overview draws this many runs at most: as many as a --sweep may have.
MOST_DRAWN = MAX_RUNS
SEVERITY = {"error": 0, "warn": 1, "info": 2}


class SweepState:
    def __init__(self, first: RunState | None = None):
        self.runs: list[RunState] = [first if first is not None else RunState()]
        self.labels: tuple[str, ...] = ()
        self.keys: tuple[str, ...] = ()
        self.overview = Drawn(self)

    @property
    def is_sweep(self) -> bool:
        return bool(self.labels)

    @property
    def meta(self) -> dict:
        return self.runs[0].meta

    @meta.setter
    def meta(self, meta: dict) -> None:
        for state in self.runs:
            state.meta = meta

    def apply(self, message: Message) -> set[str]:
        """Take one message in; the names of the panes it changed (in the run
        it names, or in any run for the messages every run takes)."""
        if isinstance(message, Sweep):
            return self._sweep(message)
        if isinstance(message, Event) and message.kind in SOURCE_EVENTS:
            changed: set[str] = set()
            for state in self.runs:
                changed |= state.apply(message)
            return changed
        run = message.run
        if not 0 <= run < len(self.runs):
            # A message for a run the source never announced: a corrupt or foreign feed.
            raise ValueError(f"message for run {run}, but the source has {len(self.runs)}")
        return self.runs[run].apply(message)

    def _sweep(self, sweep: Sweep) -> set[str]:
        # In place (a replay says it again after a rewind): panes built on a
        # run's state keep showing that run. A folder's new recording (grows)
        # adds runs and leaves the others as they are.
        if not sweep.grows:
            for state in self.runs:
                state.reset()
        meta = self.meta
        self.runs = self.runs[:len(sweep.labels)] + [
            RunState(meta=meta) for _ in sweep.labels[len(self.runs):]]
        self.labels, self.keys = tuple(sweep.labels), tuple(sweep.keys)
        return {"status", "sweep"}

    def label(self, run: int) -> str:
        """The swept values of `run` as it is now (a restart may have changed
        one in a run's detail view): "gain=5/3 batchnorm=off"; where another
        run has the same values (restarted to them), its number too:
        "gain=1 (run 2)", so no two legend entries read alike."""
        text = self._values(run)
        twins = sum(self._values(k) == text for k in range(len(self.runs)))
        return text if twins < 2 else f"{text} (run {run + 1})"

    def _values(self, run: int) -> str:
        if not self.is_sweep:
            return ""
        info = self.runs[run].info
        if info is None or not self.keys:   # no swept keys: a folder's runs, labelled by it
            return self.labels[run]
        return " ".join(f"{key}={value_text(info.config.get(key))}" for key in self.keys)

    def models_differ(self) -> bool:
        """Runs of different models (a folder's recordings may be): a pane
        that pairs their layers pairs them by position only."""
        models = {(tuple(s.info.param_names), tuple(map(tuple, s.info.param_shapes)))
                  for s in self.runs if s.info is not None}
        return len(models) > 1

    def report(self) -> dict:
        """The run's report for one run; `{"runs": [...]}` for a sweep, each
        run's document what RunState.report gives a run of its own, its label
        first (as `traintop run --sweep --json` prints it)."""
        if not self.is_sweep:
            return self.runs[0].report()
        return {"runs": [{"label": label, **state.report()}
                         for label, state in zip(self.labels, self.runs)]}


def value_text(value) -> str:
    """A config value as `--sweep` writes it: on/off, 0.1, 5/3."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


class Drawn:
    """The runs an overview draws, as a SweepState of its own (the overview's
    panes read this): every run up to MOST_DRAWN; past that (a folder of
    hundreds of recordings), the MOST_DRAWN with the most severe findings,
    the latest among equals, in run order. Its run k is the k-th drawn, in
    colour k; v and V go through every run of the sweep."""

    def __init__(self, sweep: SweepState, most: int = MOST_DRAWN):
        self.sweep, self.most = sweep, most

    @property
    def indices(self) -> list[int]:
        runs = self.sweep.runs
        if len(runs) <= self.most:
            return list(range(len(runs)))
        def rank(k: int) -> tuple:
            worst = min((SEVERITY.get(f.severity, 2) for f in runs[k].findings()), default=3)
            return worst, -k
        return sorted(sorted(range(len(runs)), key=rank)[:self.most])

    @property
    def runs(self) -> list[RunState]:
        return [self.sweep.runs[k] for k in self.indices]

    @property
    def hidden(self) -> int:
        """Runs not drawn."""
        return max(0, len(self.sweep.runs) - self.most)

    def label(self, run: int) -> str:
        return self.sweep.label(self.indices[run])

    def __getattr__(self, name: str):
        return getattr(self.sweep, name)   # keys, labels, is_sweep, meta: the sweep's
