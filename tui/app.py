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
from textual.containers import Horizontal, Vertical
from textual.lazy import Lazy
from textual.widgets import Footer, TabbedContent, TabPane

from traintop.engine.feed.messages import Command, Event, Source, Steps
from traintop.engine.viewer.run_state import RunState
from traintop.engine.viewer.sweep_state import SOURCE_EVENTS, SweepState
from .keys import BINDINGS, KeyActions, tab_key
from .panes import AT_ONCE, EVERY_REFRESH, RUN, SLOW, TABS, Pane, panes
from .status_line import StatusLine, health_summary, status_text
from .sweep_keys import SweepKeys
from .sweep_view import sweep_status_text

POLL_SECONDS = 0.05      # drain the source 20 times a second
# While nothing streams in (paused, finished, a replay at its cursor) the two
# clocks slow to this: a waiting app uses well under 1% of a core (at 20 and
# 10 wake-ups a second it used ~1.2%). A key's command polls at once
# (ANSWER_POLLS) and the clocks run fast again until its answer is in.
IDLE_SECONDS = 0.25
# One redraw clock ticking every TICK_SECONDS: the status line when
# STATUS_SHARE of a refresh has passed, else the loss once a refresh has, else at most one slow
# pane (the registry's SLOW ones, tui/panes.py): the visible one drawn longest
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
# A kill or a closed terminal ends the app as `q` does: the trainer child is
# asked to quit, the recording is closed, the terminal restored. Exit 128 + the signal.
ENDING_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
# From this size up (columns, rows) the first tab holds the design's four
# panes (loss, saturation, gradient histograms, update:data ratios); below it
# a pane of ~40x9 cells says nothing, so the gradient histograms stay on tab 2.
GRID_MIN = (100, 32)


class TraintopApp(KeyActions, SweepKeys, App[int]):
    CSS_PATH = Path(__file__).with_name("app.tcss")   # absolute: subclasses live elsewhere
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = BINDINGS   # tui/keys.py, with their actions (KeyActions)

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
        self.status_line = StatusLine(id="status")
        # The registry's panes (tui/panes.py), each also the app's attribute of its name.
        self.registered: tuple[Pane, ...] = panes()
        # The overview's panes draw the runs it draws (at most 16: SweepState.overview).
        self.panes = {p.name: p.make(self.state if p.view == RUN else self.sweep.overview)
                      for p in self.registered}
        for name, pane in self.panes.items():
            if hasattr(TraintopApp, name):   # it would hide the app's own
                raise ValueError(f"a pane may not be called {name!r}: the app has one")
            setattr(self, name, pane)
        self._placed: set[str] = set()   # the places compose has filled
        self._text_dirty: set[str] = set()   # text panes' names, due on the text clock
        self._status_at = 0.0   # when the status line was last redrawn
        self._text_at = 0.0     # when the text panes were last redrawn
        self._awaiting_until = 0.0  # no plots until then: a command's answer is due

    # ----- layout --------------------------------------------------------------
    def compose(self) -> ComposeResult:
        # The containers; the registry says which panes each holds (Pane.place).
        # A sweep's overview (screen class -overview); a single run never shows it.
        with Vertical(id="overview"):
            with Horizontal(id="overview-top"):
                yield from self.placed("overview-top")
            with Horizontal(id="overview-bottom"):
                yield from self.placed("overview-bottom")
            yield from self.placed("overview")
        with TabbedContent(id="tabs", initial="training"):
            with tab_pane("training"):
                with Horizontal(id="training-top"):
                    yield from self.placed("training-top")
                with Horizontal(id="training-bottom"):
                    yield from self.placed("training-bottom")
            # The hidden tabs mount after the first frame (Lazy): it comes ~0.1 s sooner.
            with tab_pane("activations"):
                with Lazy(Vertical()):
                    yield from self.placed("activations")
            with tab_pane("weights"):
                for pane in self.placed("weights-tab"):
                    yield Lazy(pane)
            with tab_pane("health"):
                with Lazy(Horizontal()):
                    with Vertical(id="health-left"):
                        yield from self.placed("health-left")
                    with Vertical(id="health-right"):
                        yield from self.placed("health-right")
        yield self.status_line
        yield Footer(compact=True)
        lost = sorted(p.name for p in self.registered if p.place not in self._placed)
        if lost:   # a registry entry naming a container compose has not
            raise ValueError(f"panes placed nowhere in compose: {', '.join(lost)}")

    def placed(self, place: str) -> list:
        self._placed.add(place)
        return [self.panes[p.name] for p in self.registered if p.place == place]

    def panes_where(self, which) -> list:
        """The panes whose registry entry `which` accepts, in registry order."""
        return [self.panes[p.name] for p in self.registered if which(p)]

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
        self._every(TICK_SECONDS, self.redraw_tick)
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
            text = sweep_status_text(self.sweep, self.read_only, position, self.view)
        else:
            text = status_text(self.state, self.read_only, position)
        # A sweep's run in full counts its own findings, not every run's.
        runs = self.sweep.runs if self.view is None else self.sweep.runs[self.view:self.view + 1]
        summary = health_summary([run.findings() for run in runs], tab_key("health"))
        self.status_line.show_text(f"{text} · {summary}" if summary else text)
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

    def notify(self, message: str, *, title: str = "", severity: str = "information",
               timeout: float | None = None, markup: bool = False) -> None:
        """A notice as one line at the free end of the tab bar (app.tcss), the
        newest alone shown: a toast never covers a pane's figures or the status line.
        Health findings make none (the health tab and the status line's
        summary hold them)."""
        text = " ".join((f"{title}: {message}" if title else str(message)).split())
        room = self.toast_room()
        if len(text) > room:
            text = text[:max(1, room - 1)] + "…"
        super().notify(text, title="", severity=severity, timeout=timeout, markup=markup)

    def toast_room(self) -> int:
        """Columns of the tab bar right of its last tab (less a toast's padding)."""
        width = self.size.width or 80
        try:
            tabs = list(self.query("#tabs Tab"))
        except Exception:  # noqa: BLE001 - no tabs mounted yet (or a screen of its own)
            tabs = []
        shown = [t for t in tabs if t.display and t.region.width]
        end = max((t.region.right for t in shown), default=width // 2)
        return max(16, width - end - 4)

    def report_error(self, text: str) -> None:
        self.errors += 1
        # a recording's fault is the file's, not an engine's (replay, attach)
        title = "recording" if self.read_only or self.has_timeline else "engine error"
        self.notify(text, title=title, severity="error", timeout=8)

    def mark(self, changed: set[str], view: str = RUN) -> None:
        """Mark the panes of `view` that follow a changed part: a plot for its
        clock, a text pane for the text clock; one that answers a key is shown now."""
        now: set[str] = set()
        for p in self.registered:
            if p.view != view or not p.follows & changed:
                continue
            if p.plot:
                self.panes[p.name].dirty = True
            elif p.redraw == AT_ONCE:
                now.add(p.name)
            else:
                self._text_dirty.add(p.name)
        if now:
            self.redraw_text(now)

    # ----- redraws ---------------------------------------------------------------
    @property
    def slow_panes(self) -> tuple:
        return tuple(self.panes_where(lambda p: p.redraw == SLOW))

    @property
    def plot_panes(self) -> tuple:
        """The loss clock's panes first, then the slow ones."""
        return (*self.panes_where(lambda p: p.redraw == EVERY_REFRESH), *self.slow_panes)

    def partners(self, pane) -> list:
        """`pane` and the slow panes on screen beside it that follow the same
        parts (tab 2's two histograms): drawn in one frame, they show one step."""
        entry = next(p for p in self.registered if self.panes[p.name] is pane)
        return [pane, *(self.panes[p.name] for p in self.registered
                        if p.redraw == SLOW and p is not entry and p.tab == entry.tab
                        and p.view == entry.view and p.follows == entry.follows
                        and self.panes[p.name].seen)]

    def redraw_tick(self) -> None:
        now = time.monotonic()
        if now < self._awaiting_until:
            return            # a key's answer is on its way: keep the frames light
        period = self.refresh_s
        if now - self._status_at >= period * STATUS_SHARE:
            self._status_at = now
            self.show_status()
            self.mark_writers()
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
        # The loss (of the overview or of the tabs: one is on screen) on its own clock.
        due = [p for p in self.panes_where(lambda p: p.redraw == EVERY_REFRESH)
               if p.seen and now - p.drawn_at >= period]
        if due:
            pane = min(due, key=lambda p: p.drawn_at)
            pane.drawn_at = now
            pane.replot()
            return
        due = [p for p in self.slow_panes
               if p.seen and now - p.drawn_at >= period * SLOW_REFRESHES]
        if due:
            pane = min(due, key=lambda p: p.drawn_at)
            for each in self.partners(pane):
                each.replot()     # a no-op when nothing changed
                each.drawn_at = now
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
                # No toast: the findings live in the health tab and the status
                # line's summary (a toast covered the panes and came back each
                # time a finding moved between layers).
                self.status_line.flash()

    def redraw_text(self, which: set[str]) -> None:
        """Show the text panes named in `which` what they follow (a sweep's only in a sweep)."""
        for p in self.registered:
            if p.name in which and not p.plot:
                if p.view == RUN:
                    self.panes[p.name].show(self.state)
                elif self.sweep.is_sweep:
                    self.panes[p.name].show(self.sweep.overview)
        self._text_dirty -= which

    def _draw_first_frame(self) -> None:
        """The panes' first drawing, then (once that frame is out) the drain."""
        self.draw_changed()
        self.call_after_refresh(self._every, POLL_SECONDS, self.drain)

    def _every(self, seconds: float, callback) -> None:
        """Call `callback` every `seconds`, or every IDLE_SECONDS while idle."""
        def tick() -> None:
            callback()
            self.set_timer(IDLE_SECONDS if self.idle() else seconds, tick)
        self.set_timer(seconds, tick)

    def idle(self) -> bool:
        """Nothing streams in and no command's answer is due."""
        statuses = [run.status for run in self.sweep.runs]   # one run, or each of a sweep's
        return (all(s is not None and not s.running for s in statuses)
                and not getattr(self.source, "catching_up", False)
                and time.monotonic() >= self._awaiting_until + ANSWER_WAIT_SECONDS)

    def draw_changed(self) -> None:
        """Every pane on screen whose figures changed, now."""
        now = time.monotonic()
        for pane in self.plot_panes:
            if pane.seen and pane.dirty:
                pane.replot()
                pane.drawn_at = now
        if now - self._text_at >= self.refresh_s:
            self._text_at = now
            self.redraw_text(self._text_dirty)
            self.alert_new_errors()

    def mark_writers(self) -> None:
        """An attach of a folder: a writer gone quiet (killed) sends no message, so
        the overview's findings, which print each run's writer, are marked when
        the writers' words change (they said `(live)` of a dead writer)."""
        if not getattr(self.source, "follow", False) or not hasattr(self.source, "writers"):
            return
        writers = self.source.writers()
        if writers != getattr(self, "_writers_seen", None):
            self._writers_seen = writers
            self._text_dirty.add("sweep_findings")

    def redraw_all(self) -> None:
        """Every visible pane at once (tests and snapshots use it)."""
        for pane in self.plot_panes:
            pane.replot(force=True)
        self.redraw_text({p.name for p in self.registered if not p.plot})
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

    def _load_help(self) -> None:
        from . import help_screen  # noqa: F401 - imported for later

    def on_tabbed_content_tab_activated(self) -> None:
        self.call_after_refresh(self.redraw_all)


def tab_pane(name: str) -> TabPane:
    """The tab called `name`, labelled with its key (tui/keys.py binds 1..)."""
    k, tab = next((k, t) for k, t in enumerate(TABS) if t.name == name)
    return TabPane(f"{k + 1} {tab.name}", id=tab.id)


def run_app(source: Source, title: str = "traintop",
            refresh: float = REFRESH_SECONDS) -> int:
    """Run the app on `source` until quit; the source is closed on the way out."""
    from .terminal_guard import guarded
    source = guarded(source)   # the terminal gone means traintop gone (issue 22)
    app = TraintopApp(source, title, refresh)
    try:
        app.run()
    finally:
        source.close()
    return app.return_code or 0

