"""Every pane of the app, registered once.

A pane's entry says how to build it, which parts of the run's state it
follows (the names RunState.apply and SweepState.apply return), how often it
redraws, where it sits, whether `p` pages it and what the help screen says of
it. The app's compose, its marking and redraw clocks, `p`, the table keys,
the sweep's view switch and the help screen all read this list, so a new
pane is its own file, one entry here and its style in app.tcss
(tests/test_pane_registry.py proves it with a pane only a test registers).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from textual.widget import Widget

from . import (calibration_pane, events_pane, health_pane, histogram_pane, loss_pane,
               ratio_pane, samples_pane, saturation_map_pane, saturation_pane, sweep_bars,
               sweep_plots, sweep_view, weights_pane)

# How often a pane redraws. A plot (replot(): seen, dirty, drawn_at) on the
# loss clock or SLOW_REFRESHES times slower (tui/app.py); a text pane
# (show(state)) on the text clock, or at once: what it shows answers a key.
EVERY_REFRESH = "every refresh"
SLOW = "slow"
TEXT_CLOCK = "text clock"
AT_ONCE = "at once"
PLOT_CLOCKS = (EVERY_REFRESH, SLOW)

# Whose state a pane follows: the run the tabs show, or the whole sweep (its overview).
RUN, SWEEP = "run", "sweep"
OVERVIEW = "overview"   # the tab of a sweep's panes: the overview, keys v / o


@dataclass(frozen=True)
class Tab:
    name: str   # its label after the key, its action's argument, the help's word
    id: str     # its TabPane's id (app.tcss)


# The number keys 1.. pick these in order; compose (tui/app.py) lays each out.
TABS = (Tab("training", "training"), Tab("activations", "activations"),
        Tab("weights", "weights-tab"), Tab("health", "health-tab"))


@dataclass(frozen=True)
class Pane:
    name: str                       # the app's attribute holding it (app.loss)
    make: Callable[[object], Widget]   # given the state of its view: RunState, SweepState
    follows: frozenset[str]         # state parts whose change marks it for a redraw
    redraw: str                     # EVERY_REFRESH, SLOW, TEXT_CLOCK or AT_ONCE
    tab: str                        # a Tab's name, or OVERVIEW
    place: str                      # the container of compose it is yielded into
    # Markdown for the help screen: a plot's paragraph; a text pane's clause
    # of its tab's line, an overview pane's of the sweep's sentence
    help: str
    view: str = RUN
    picks: bool = False             # `p` / `P` page its layers or parameters
    scrolls: bool = False           # j / k scroll it (its .scroller, or itself)

    @property
    def plot(self) -> bool:
        return self.redraw in PLOT_CLOCKS


def _follows(*parts: str) -> frozenset[str]:
    return frozenset(parts)


_PANES: list[Pane] = [
    # A place's panes are yielded in this order; the help's paragraphs too.
    Pane("loss", lambda s: loss_pane.LossPane(s, id="loss"), _follows("loss"),
         EVERY_REFRESH, "training", "training-top", loss_pane.HELP),
    Pane("saturation", lambda s: saturation_pane.SaturationPane(s, id="saturation"),
         _follows("saturation"), SLOW, "training", "training-top", saturation_pane.HELP,
         picks=True),
    Pane("activations", lambda s: histogram_pane.HistogramPane(s, "activation", id="act-hist"),
         _follows("histograms"), SLOW, "activations", "activations",
         histogram_pane.ACTIVATION_HELP, picks=True),
    Pane("gradients", lambda s: histogram_pane.HistogramPane(s, "gradient", id="grad-hist"),
         _follows("histograms"), SLOW, "activations", "activations",
         histogram_pane.GRADIENT_HELP, picks=True),
    Pane("saturation_map", lambda s: saturation_map_pane.SaturationMapPane(id="saturation-map"),
         _follows("saturation"), TEXT_CLOCK, "activations", "activations",
         saturation_map_pane.HELP),
    # The first tab's copy of the gradient histograms: the design's four panes
    # side by side where the terminal holds them (GRID_MIN, app.tcss); it keeps
    # the default set of layers (p pages tab 2's).
    Pane("gradients_first",
         lambda s: histogram_pane.HistogramPane(s, "gradient", id="grad-hist-first",
                                                figures=False),
         _follows("histograms"), SLOW, "training", "training-bottom",
         histogram_pane.GRADIENT_HELP),
    Pane("weights", lambda s: weights_pane.WeightsPane(s, id="weights"), _follows("weights"),
         SLOW, "weights", "weights-tab", weights_pane.HELP, picks=True, scrolls=True),
    Pane("ratio", lambda s: ratio_pane.RatioPane(s, id="ratio"), _follows("ratio"),
         SLOW, "training", "training-bottom", ratio_pane.HELP, picks=True),
    Pane("health", lambda s: health_pane.HealthPane(id="health"), _follows("health"),
         TEXT_CLOCK, "health", "health-left", health_pane.HELP, scrolls=True),
    # calibrate answers with an event: "events" too (the pane skips a state it shows).
    Pane("calibration", lambda s: calibration_pane.CalibrationPane(id="calibration"),
         _follows("calibration", "events"), AT_ONCE, "health", "health-left",
         calibration_pane.HELP),
    Pane("samples", lambda s: samples_pane.SamplesPane(id="samples"), _follows("samples"),
         AT_ONCE, "health", "health-right", samples_pane.HELP),
    Pane("events", lambda s: events_pane.EventsPane(id="events"), _follows("events"),
         AT_ONCE, "health", "health-right", events_pane.HELP),
    # A sweep's overview: every pane follows "sweep" too (a new run, a new view).
    Pane("sweep_loss", lambda s: sweep_plots.SweepLossPane(s, id="sweep-loss"),
         _follows("loss", "sweep"), EVERY_REFRESH, OVERVIEW, "overview-top",
         sweep_plots.LOSS_HELP, view=SWEEP),
    Pane("sweep_ratio", lambda s: sweep_plots.SweepRatioPane(s, id="sweep-ratio"),
         _follows("ratio", "sweep"), SLOW, OVERVIEW, "overview-top",
         sweep_plots.RATIO_HELP, view=SWEEP),
    Pane("sweep_saturation", lambda s: sweep_bars.SweepSaturation(s, id="sweep-saturation"),
         _follows("saturation", "sweep"), SLOW, OVERVIEW, "overview-top", sweep_bars.HELP,
         view=SWEEP),
    Pane("sweep_activations",
         lambda s: sweep_plots.SweepHistogramPane(s, "activation", id="sweep-act-hist"),
         _follows("histograms", "sweep"), SLOW, OVERVIEW, "overview-bottom",
         sweep_plots.ACTIVATION_HELP, view=SWEEP),
    Pane("sweep_gradients",
         lambda s: sweep_plots.SweepHistogramPane(s, "gradient", id="sweep-grad-hist"),
         _follows("histograms", "sweep"), SLOW, OVERVIEW, "overview-bottom",
         sweep_plots.HISTOGRAM_HELP, view=SWEEP),
    Pane("sweep_findings", lambda s: sweep_view.SweepFindings(id="sweep-findings"),
         _follows("health", "sweep"), TEXT_CLOCK, OVERVIEW, OVERVIEW, sweep_view.HELP,
         view=SWEEP),
]


def panes() -> tuple[Pane, ...]:
    """Every registered pane, in registration order."""
    return tuple(_PANES)


def register(pane: Pane) -> Pane:
    """Add a pane: apps built from now on compose, mark and describe it."""
    if any(p.name == pane.name for p in _PANES):
        raise ValueError(f"a pane named {pane.name!r} is registered already")
    if pane.tab != OVERVIEW and pane.tab not in {t.name for t in TABS}:
        raise ValueError(f"{pane.name}: no tab named {pane.tab!r}")
    _PANES.append(pane)
    return pane


def unregister(name: str) -> None:
    """Take a pane out again (a test's own pane)."""
    _PANES[:] = [p for p in _PANES if p.name != name]
