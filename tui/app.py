"""The Textual app: panes fed from a Source, keys sent back as Commands.

Only the UI thread touches widgets and plotext: a timer drains the source
(`poll()` never blocks), the run state takes the messages in and the panes
that changed are redrawn on one clock, and only when they are on screen:
with the default --refresh of 0.8 s the status line every 0.32 s, the loss
every 0.8 s, each slower pane every 3.2 s, one plot a frame. That cadence
and the panes' line-by-line repaint (tui/plot_pane.py) keep a steady run
under ~8 KB/s at 120x40 (tools/measure_terminal.py); a larger --refresh
slows every clock alike for a slower link.
"""

from __future__ import annotations

import asyncio
import signal
import time
from functools import partial
from pathlib import Path

from textual import events
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.lazy import Lazy
from textual.widgets import Footer, TabbedContent, TabPane

from traintop.engine.config import GAIN_STEPS, parse_gain
from traintop.engine.feed.messages import Command, Event, Source, Steps
from .calibration_pane import CalibrationPane
from .events_pane import EventsPane
from .health_pane import HealthPane
from .histogram_pane import HistogramPane
from .loss_pane import LossPane
from .ratio_pane import RatioPane
from traintop.engine.viewer.run_state import RunState
from traintop.engine.viewer.sweep_state import SOURCE_EVENTS, SweepState
from .samples_pane import SamplesPane
from .saturation_pane import SaturationPane
from .status_line import StatusLine
from .sweep_bars import SweepSaturation
from .sweep_keys import SweepKeys
from .sweep_plots import SweepHistogramPane, SweepLossPane, SweepRatioPane
from .sweep_view import SweepFindings, sweep_status_text
from .weights_pane import WeightsPane

POLL_SECONDS = 0.05      # drain the source 20 times a second
# One redraw clock ticking every TICK_SECONDS: the status line when
# STATUS_SHARE of a refresh has passed, else the loss once a refresh has, else at most one slow
# pane (ratio, saturation, histograms, weights): the visible one drawn longest
# ago, once SLOW_REFRESHES refreshes old. No frame renders two plots, so a key
# waits for one plot's render at most (at 200x60 one plotext render takes
# ~40-60 ms). Bytes to the terminal grow with every redraw: see the docstring. While
# nothing streams in (paused, finished, a replay at its cursor) every changed pane is drawn
# at once, in one frame; while a replay catches up to its cursor, none is.
TICK_SECONDS = 0.1
REFRESH_SECONDS = 0.8    # the default --refresh: the loss plot's period
STATUS_SHARE = 0.4       # the status line's period, of a refresh: >2/s at the default
SLOW_REFRESHES = 4
ANSWER_POLLS = (0.015, 0.03)   # extra polls right after a command
ANSWER_WAIT_SECONDS = 0.3      # longest a command's answer holds the plots back
TABS = ("training", "activations", "weights", "health")
TIMELINE_ACTIONS = frozenset({"timeline", "seek", "speed", "play"})
# Keys that steer a live run: a source that takes no such commands (a
# replay, a followed file) hides them from the footer and answers "read-only".
STEERING_ACTIONS = frozenset({"toggle_pause", "step", "scale_lr", "gain", "toggle", "restart",
                              "evaluate", "sample", "calibrate", "checkpoint"})
# A sweep's keys: a run in full, the overview again; unbound for one run.
SWEEP_ACTIONS = frozenset({"view_run", "overview"})

MIN_SPEED, MAX_SPEED = 0.1, 1e7   # replay steps per second
# A kill or a closed terminal ends the app as `q` does: the trainer child is
# asked to quit, the recording is closed, the terminal restored. Exit 128 + the signal.
ENDING_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
# From this size up (columns, rows) the first tab holds the design's four
# panes (loss, saturation, gradient histograms, update:data ratios); below it
# a pane of ~40x9 cells says nothing, so the gradient histograms stay on tab 2.
GRID_MIN = (100, 32)


class TraintopApp(SweepKeys, App[int]):
    CSS_PATH = Path(__file__).with_name("app.tcss")   # absolute: subclasses live elsewhere
    ENABLE_COMMAND_PALETTE = False
    # help and quit first: an 80-column footer cuts off the end of the list.
    BINDINGS = [
        Binding("question_mark", "help", "help", key_display="?"),
        Binding("q", "quit", "quit"),
        # issue 14: a sweep's overview and its runs in full (unbound for one run),
        # early in the footer, which a narrow terminal cuts off at its end.
        Binding("v", "view_run(1)", "run"),
        Binding("V", "view_run(-1)", "run back", show=False),
        Binding("o", "overview", "all runs"),
        Binding("escape", "overview", "all runs", show=False),
        # A source with a timeline (a replay) moves it; elsewhere these keys
        # are not bound at all (check_action), so the live app is unchanged.
        # Priority: the focused tab bar would take ← and → for itself.
        Binding("left", "timeline(-1)", "prev", key_display="←", priority=True),
        Binding("right", "timeline(1)", "next", key_display="→", priority=True),
        Binding("home", "seek('home')", "first", priority=True),
        Binding("end", "seek('end')", "last", priority=True),
        Binding("minus", "speed(0.5)", "slower", key_display="-", priority=True),
        Binding("plus", "speed(2.0)", "faster", key_display="+", priority=True),
        Binding("space", "play", "play", priority=True),   # the same toggle, named for a replay
        Binding("space", "toggle_pause", "pause"),
        Binding("n", "step", "step"),
        Binding("right_square_bracket", "scale_lr(2.0)", "lr×2", key_display="]"),
        Binding("left_square_bracket", "scale_lr(0.5)", "lr÷2", key_display="["),
        Binding("G", "gain(1)", "gain+", key_display="G"),
        Binding("g", "gain(-1)", "gain-"),
        Binding("b", "toggle('batchnorm')", "BN"),
        Binding("f", "toggle('fan_in')", "fan-in"),
        Binding("r", "restart", "restart"),
        Binding("e", "evaluate", "eval"),
        Binding("s", "sample", "sample"),
        Binding("c", "calibrate", "calib"),
        Binding("w", "checkpoint", "save"),
        *(Binding(str(k + 1), f"tab('{name}')", name, show=False) for k, name in enumerate(TABS)),
        # issue 11: many layers and parameters (tui/pick.py), tables that scroll.
        Binding("p", "pick(1)", "pick"),
        Binding("P", "pick(-1)", "pick back", show=False),
        *(Binding(key, f"scroll_table({dy})", "scroll", show=False)
          for key, dy in (("j", 1), ("down", 1), ("k", -1), ("up", -1),
                          ("pagedown", 10), ("pageup", -10))),
    ]

    def __init__(self, source: Source, title: str = "traintop",
                 refresh: float = REFRESH_SECONDS):
        super().__init__()
        self.source = source
        self.refresh_s = refresh     # the loss's period; the others' in proportion
        self.title = title
        self.state = RunState()      # the run the tabs show: run 0, or the one picked (v)
        self.sweep = SweepState(self.state)
        self.view: int | None = None   # a sweep's run shown in full; None: the overview
        self.read_only = bool(getattr(source, "read_only", False))
        # None: every command (a live run); a replay answers only its timeline's.
        self.accepts = frozenset() if self.read_only else getattr(source, "accepts", None)
        self.has_timeline = self.accepts is not None and "seek" in self.accepts
        self.position = getattr(source, "position", None)
        self.errors = 0
        s = self.state
        self.loss = LossPane(s, id="loss")
        self.ratio = RatioPane(s, id="ratio")
        self.saturation = SaturationPane(s, id="saturation")
        self.activations = HistogramPane(s, "activation", id="act-hist")
        self.gradients = HistogramPane(s, "gradient", id="grad-hist")
        # The first screen's copy of the gradient histograms: the design's
        # four panes side by side where the terminal holds them (GRID_MIN);
        # tab 2 keeps its own, beside the activations.
        self.gradients_first = HistogramPane(s, "gradient", id="grad-hist-first")
        self.weights = WeightsPane(s, id="weights")
        self.status_line = StatusLine(id="status")
        self.samples = SamplesPane(id="samples")
        self.events = EventsPane(id="events")
        self.calibration = CalibrationPane(id="calibration")
        self.health = HealthPane(id="health")
        sw = self.sweep
        self.sweep_loss = SweepLossPane(sw, id="sweep-loss")
        self.sweep_saturation = SweepSaturation(sw, id="sweep-saturation")
        self.sweep_gradients = SweepHistogramPane(sw, id="sweep-grad-hist")
        self.sweep_ratio = SweepRatioPane(sw, id="sweep-ratio")
        self.sweep_findings = SweepFindings(id="sweep-findings")
        self._text_dirty: set[str] = set()
        self._status_at = 0.0   # when the status line was last redrawn
        self._text_at = 0.0     # when the text panes were last redrawn
        self._awaiting_until = 0.0  # no plots until then: a command's answer is due

    # ----- layout --------------------------------------------------------------
    def compose(self) -> ComposeResult:
        # A sweep's overview (screen class -overview); a single run never shows it.
        with Vertical(id="overview"):
            with Horizontal(id="overview-top"):
                yield self.sweep_loss
                yield self.sweep_saturation
            with Horizontal(id="overview-bottom"):
                yield self.sweep_gradients
                yield self.sweep_ratio
            yield self.sweep_findings
        with TabbedContent(id="tabs", initial="training"):
            with TabPane("1 training", id="training"):
                with Horizontal(id="training-top"):
                    yield self.loss
                    yield self.saturation
                with Horizontal(id="training-bottom"):
                    yield self.gradients_first
                    yield self.ratio
            # The hidden tabs mount after the first frame (Lazy): it comes ~0.1 s sooner.
            with TabPane("2 activations", id="activations"):
                with Lazy(Vertical()):
                    yield self.activations
                    yield self.gradients
            with TabPane("3 weights", id="weights-tab"):
                yield Lazy(self.weights)
            with TabPane("4 health", id="health-tab"):
                with Lazy(Horizontal()):
                    with Vertical(id="health-left"):
                        yield self.health
                        yield self.calibration
                    with Vertical(id="health-right"):
                        yield self.samples
                        yield self.events
        yield self.status_line
        yield Footer(compact=True)

    def on_resize(self, event: events.Resize) -> None:
        cols, rows = event.size
        self.screen.set_class(cols >= GRID_MIN[0] and rows >= GRID_MIN[1], "-grid")

    def on_mount(self) -> None:
        cols, rows = self.size
        self.screen.set_class(cols >= GRID_MIN[0] and rows >= GRID_MIN[1], "-grid")
        head = getattr(self.source, "head", None)
        if head is not None:   # a replay's header, read before the app opened
            self.take(head())
        self.show_status()
        try:
            self.source.start()
        except Exception as exc:  # noqa: BLE001 - a source that cannot start is shown, not fatal
            self.notify(f"source did not start: {exc}", severity="error", timeout=10)
        # The panes draw what the head gave them as soon as they have a size
        # (right after the first layout); then the source is drained: a
        # replay's catch-up (tenths of a second a poll) would hold them back.
        self.call_after_refresh(self._draw_first_frame)
        self.set_interval(TICK_SECONDS, self.redraw_tick)
        # The help screen's Markdown (~0.1 s of imports) loads once the first
        # frame is up, so `?` opens it at once and the first frame never waits.
        self.call_after_refresh(self._load_help)
        loop = asyncio.get_running_loop()
        for number in ENDING_SIGNALS:
            try:
                loop.add_signal_handler(number, partial(self.exit, None, 128 + number))
            except (NotImplementedError, RuntimeError, ValueError):
                pass   # not the main thread (a test's run_test), or no signals here

    def on_unmount(self) -> None:
        self.source.close()

    # ----- messages in ---------------------------------------------------------
    def drain(self) -> None:
        try:
            messages = self.source.poll()
        except Exception as exc:  # noqa: BLE001 - keep the app alive
            self.report_error(f"source: {exc}")
            return
        self.take(messages)

    def take(self, messages: list) -> None:
        """Fold a poll's messages in and mark what they changed."""
        if not messages:
            return
        changed: set[str] = set()     # in the run the tabs show
        overview: set[str] = set()    # in any run
        answered = False
        said: list[Event] = []
        shown = self.view or 0
        for message in messages:
            try:
                got = self.sweep.apply(message)
            except ValueError as exc:   # a message for a run never announced
                self.report_error(f"source: {exc}")
                continue
            if "sweep" in got:
                self.sweep_started()
            overview |= got
            if getattr(message, "run", 0) == shown or (
                    isinstance(message, Event) and message.kind in SOURCE_EVENTS):
                changed |= got
            if not isinstance(message, Steps):
                answered = True
            if isinstance(message, Event):
                said.append(message)
        self.answer_events(said)
        self.mark(changed)
        if self.sweep.is_sweep:
            self.mark_overview(overview)
        # Answers to keys show at once; the step counter rides the loss clock.
        if answered:
            self._awaiting_until = 0.0
            self.show_status()

    def show_status(self) -> None:
        position = self.position() if self.position is not None else None
        if self.sweep.is_sweep:
            self.status_line.show_text(sweep_status_text(self.sweep, self.read_only, position,
                                                         self.view))
        else:
            self.status_line.show(self.state, self.read_only, position)
        self.status_line.set_class(self.state.trainer_state == "died", "dead")

    def answer_event(self, event, text: str | None = None) -> None:
        text = event.text if text is None else text
        if self.has_timeline and event.kind != "error":
            # A replay's recorded events: a seek or a catch-up passes dozens at
            # once, and toasts would cover the status line; the events pane and
            # the loss pane's markers show them in place.
            return
        if event.kind == "error":
            self.report_error(text)
        elif event.kind == "trainer" and event.data.get("state") == "died":
            # Short-lived: the toast covers the end of the status line, which says it too.
            self.notify(f"{event.text}; the panes keep its history, r starts a fresh trainer",
                        title="trainer", severity="error", timeout=4)
        elif event.kind == "note" and event.data.get("restarted"):
            self.notify(text, timeout=4)
        elif event.kind in ("evaluate", "calibrate", "checkpoint", "stopped", "lr"):
            self.notify(text, timeout=4, severity="warning" if event.kind == "stopped"
                        else "information")

    def report_error(self, text: str) -> None:
        self.errors += 1
        # a recording's fault is the file's, not an engine's (replay, attach)
        title = "recording" if self.read_only or self.has_timeline else "engine error"
        self.notify(text, title=title, severity="error", timeout=8)

    def mark(self, changed: set[str]) -> None:
        for name, panes in (("loss", (self.loss,)), ("ratio", (self.ratio,)),
                            ("saturation", (self.saturation,)),
                            ("histograms", (self.activations, self.gradients,
                                            self.gradients_first)),
                            ("weights", (self.weights,))):
            if name in changed:
                for pane in panes:
                    pane.dirty = True
        self._text_dirty |= changed & {"samples", "events", "health"}
        if changed & {"samples", "events"}:
            self.redraw_text({"samples", "events"} & changed)
        if "calibration" in changed or ("events" in changed and self.state.calibration is not None):
            self.calibration.show(self.state)

    # ----- redraws ---------------------------------------------------------------
    @property
    def slow_panes(self) -> tuple:
        return (self.ratio, self.saturation, self.gradients_first, self.activations,
                self.gradients, self.weights, self.sweep_ratio, self.sweep_saturation,
                self.sweep_gradients)

    def redraw_tick(self) -> None:
        now = time.monotonic()
        if now < self._awaiting_until:
            return            # a key's answer is on its way: keep the frames light
        period = self.refresh_s
        if now - self._status_at >= period * STATUS_SHARE:
            self._status_at = now
            self.show_status()
        if getattr(self.source, "catching_up", False):
            # A replay on its way to the cursor: the panes keep the frame they
            # show (the status line says it is catching up) and are all drawn
            # together once it is there, so no two panes show different steps.
            return
        status = self.state.status
        if status is not None and not status.running:
            # Paused, finished, a replay at its cursor: nothing streams in, so
            # every changed pane is drawn at once, in one frame.
            self.draw_changed()
            return
        loss = self.sweep_loss if self.sweep_loss.seen else self.loss
        if now - loss.drawn_at >= period and loss.seen:
            loss.drawn_at = now
            loss.replot()
            return
        due = [p for p in self.slow_panes
               if p.seen and now - p.drawn_at >= period * SLOW_REFRESHES]
        if due:
            pane = min(due, key=lambda p: p.drawn_at)
            pane.replot()     # a no-op when nothing changed
            pane.drawn_at = now
        if now - self._text_at >= period:
            self._text_at = now
            self.redraw_text(self._text_dirty)
            self.alert_new_errors()

    def alert_new_errors(self) -> None:
        """Flash the status line once per new health error; persisting ones stay quiet."""
        for run, state in enumerate(self.sweep.runs):
            monitor = state.monitor
            if monitor is None:
                continue
            errors = [f for f in monitor.new_findings() if f.severity == "error"]
            if errors and not self.has_timeline:
                # (a replay's findings are the recorded run's, passed by a seek
                # or a catch-up at other steps: the health tab shows them in place)
                self.status_line.flash()
                who = f"{self.sweep.label(run)}: " if self.sweep.is_sweep else ""
                self.notify(f"{who}{errors[0].rule} at {errors[0].where}: {errors[0].message}",
                            title="health", severity="error", timeout=6)

    def redraw_text(self, which: set[str]) -> None:
        if "samples" in which:
            self.samples.show(self.state)
        if "events" in which:
            self.events.show(self.state)
        if "health" in which:
            self.health.show(self.state)
        if "sweep-findings" in which and self.sweep.is_sweep:
            self.sweep_findings.show(self.sweep, self.no_color)
        self._text_dirty -= which

    def _draw_first_frame(self) -> None:
        """The panes' first drawing, then (once that frame is out) the drain."""
        self.draw_changed()
        self.call_after_refresh(self.set_interval, POLL_SECONDS, self.drain)

    def draw_changed(self) -> None:
        """Every pane on screen whose figures changed, now."""
        now = time.monotonic()
        for pane in (self.loss, self.sweep_loss, *self.slow_panes):
            if pane.seen and pane.dirty:
                pane.replot()
                pane.drawn_at = now
        if now - self._text_at >= self.refresh_s:
            self._text_at = now
            self.redraw_text(self._text_dirty)
            self.alert_new_errors()

    def redraw_all(self) -> None:
        """Every visible pane at once (tests and snapshots use it)."""
        for pane in (self.loss, self.sweep_loss, *self.slow_panes):
            pane.replot(force=True)
        self.redraw_text({"samples", "events", "health", "sweep-findings"})
        self.calibration.show(self.state)
        self.show_status()

    # ----- keys -> commands --------------------------------------------------------
    def send(self, name: str, **args) -> bool:
        if self.state.trainer_state == "died" and name != "restart":
            self.notify("the trainer died: r starts a fresh one", timeout=3)
            return False
        if self.read_only:
            self.notify("read-only: this source takes no commands", timeout=2)
            return False
        if self.accepts is not None and name not in self.accepts:
            self.notify("read-only: a recording takes only its timeline keys "
                        "(←/→, Home/End, space, +/-)", timeout=2)
            return False
        try:
            self.source.send(Command(name, args))
        except Exception as exc:  # noqa: BLE001
            self.report_error(f"{name}: {exc}")
            return False
        # Look for the answer sooner than the next regular poll, and draw no
        # plot until it shows: the frame that shows it must be a light one.
        for delay in ANSWER_POLLS:
            self.set_timer(delay, self.drain)
        self._awaiting_until = time.monotonic() + ANSWER_WAIT_SECONDS
        return True

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        if action in TIMELINE_ACTIONS:
            # Not under the help screen: priority keys reach the app from there too.
            return self.has_timeline and not getattr(self.screen, "covers_timeline", False)
        if action in STEERING_ACTIONS:
            return self.accepts is None
        if action in SWEEP_ACTIONS:
            return self.sweep.is_sweep and not getattr(self.screen, "covers_timeline", False)
        return True

    def on_key(self, event: events.Key) -> None:
        """A steering key where the source takes no commands: its binding is
        hidden (check_action), so say why nothing happens."""
        if self.accepts is not None and event.key in STEERING_KEYS:
            self.send("steer")   # refused with the source's own read-only notice
            event.stop()

    def action_timeline(self, direction: int) -> None:
        self.send("step", n=int(direction))

    def action_seek(self, where: str) -> None:
        self.send("seek", index=where)

    def action_speed(self, factor: float) -> None:
        status = self.state.status
        if status is None or not status.steps_per_sec > 0:
            return
        speed = min(MAX_SPEED, max(MIN_SPEED, status.steps_per_sec * float(factor)))
        self.send("speed", steps_per_sec=speed)

    def action_play(self) -> None:
        self.action_toggle_pause()

    def action_toggle_pause(self) -> None:
        status = self.state.status
        running = status is not None and status.running
        self.send("pause" if running else "resume")

    def action_step(self) -> None:
        self.send("step")

    def action_scale_lr(self, factor: float) -> None:
        self.send("scale_lr", factor=float(factor), **self.run_args())

    def action_gain(self, direction: int) -> None:
        if self.state.info is None or self.swept_in_overview("gain"):
            return
        gain = next_gain(self.state.info.config["gain"], int(direction))
        if gain is None:
            self.notify(f"gain is already at the {'top' if direction > 0 else 'bottom'} "
                        f"of {', '.join(GAIN_STEPS)}", timeout=2)
            return
        self.send("restart", gain=gain, **self.run_args())

    def action_toggle(self, key: str) -> None:
        if self.state.info is None or self.swept_in_overview(key):
            return
        self.send("restart", **{key: not self.state.info.config[key]}, **self.run_args())

    def action_restart(self) -> None:
        self.send("restart", **self.run_args())

    def action_evaluate(self) -> None:
        self.send("evaluate", splits=["train", "val"], **self.run_args())

    def action_sample(self) -> None:
        self.send("sample", n=10, **self.run_args())

    def action_calibrate(self) -> None:
        self.send("calibrate", apply=False, **self.run_args())

    def action_checkpoint(self) -> None:
        self.send("checkpoint", **self.run_args())

    def _load_help(self) -> None:
        from . import help_screen  # noqa: F401 - imported for later

    def action_help(self) -> None:
        from .help_screen import HelpScreen  # loaded after the first frame (_load_help)

        self.push_screen(HelpScreen())

    # ----- issue 11: picking layers, scrolling tables ------------------------------
    def action_pick(self, direction: int) -> None:
        """The next (or previous) set of layers/parameters in every plot that picks."""
        if self.sweep.is_sweep and self.view is None:
            self.notify("p picks layers in a run's plots: v shows one run", timeout=2)
            return
        for pane in (self.saturation, self.activations, self.gradients, self.ratio,
                     self.weights):
            pane.page += int(direction)
            pane.dirty = True
        self.redraw_all()

    def action_scroll_table(self, rows: int) -> None:
        active = self.query_one(TabbedContent).active
        target = {"weights-tab": self.weights.scroller, "health-tab": self.health}.get(active)
        if target is not None:
            target.scroll_relative(y=int(rows), animate=False)

    def action_tab(self, name: str) -> None:
        pane_id = {"weights": "weights-tab", "health": "health-tab"}.get(name, name)
        self.query_one(TabbedContent).active = pane_id

    def on_tabbed_content_tab_activated(self) -> None:
        self.call_after_refresh(self.redraw_all)


def next_gain(current: str, direction: int) -> str | None:
    """The next gain of GAIN_STEPS above (direction 1) or below (-1) `current`."""
    value = parse_gain(current)
    steps = [(parse_gain(g), g) for g in GAIN_STEPS]
    if direction > 0:
        higher = [g for v, g in steps if v > value + 1e-9]
        return higher[0] if higher else None
    lower = [g for v, g in steps if v < value - 1e-9]
    return lower[-1] if lower else None


def run_app(source: Source, title: str = "traintop",
            refresh: float = REFRESH_SECONDS) -> int:
    """Run the app on `source` until quit; the source is closed on the way out."""
    app = TraintopApp(source, title, refresh)
    try:
        app.run()
    finally:
        source.close()
    return app.return_code or 0


STEERING_KEYS = frozenset(b.key for b in TraintopApp.BINDINGS
                          if b.action.split("(")[0] in STEERING_ACTIONS)
