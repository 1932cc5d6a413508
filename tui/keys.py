"""The app's keys: the bindings, which of them a source may refuse, and their actions.

The actions turn keys into Commands (through the app's `send`) or into views
(tabs, picks, scrolling, help); they live here so that tui/app.py keeps the
composition, the messages in and the drawing. The panes `p` pages and j / k
scroll are the registry's (tui/panes.py), as are the number keys' tabs.
"""

from __future__ import annotations

from textual import events
from textual.binding import Binding
from textual.widgets import TabbedContent

from traintop.engine.config import GAIN_STEPS, parse_gain
from .panes import TABS

TIMELINE_ACTIONS = frozenset({"timeline", "seek", "speed", "play"})
# Keys that steer a live run: a source that takes no such commands (a
# replay, a followed file) hides them from the footer and answers "read-only".
STEERING_ACTIONS = frozenset({"toggle_pause", "step", "scale_lr", "gain", "toggle", "restart",
                              "evaluate", "sample", "calibrate", "fold", "checkpoint"})
# A sweep's keys: a run in full, the overview again; unbound for one run.
SWEEP_ACTIONS = frozenset({"view_run", "overview"})
MIN_SPEED, MAX_SPEED = 0.1, 1e7   # replay steps per second

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
    # A pair of keys shows once in the footer (`]/[ lr×2 ÷2`): the whole key
    # line fits 120 columns.
    Binding("right_square_bracket", "scale_lr(2.0)", "lr×2 ÷2", key_display="]/["),
    Binding("left_square_bracket", "scale_lr(0.5)", "lr÷2", key_display="[", show=False),
    Binding("G", "gain(1)", "gain±", key_display="G/g"),
    Binding("g", "gain(-1)", "gain-", show=False),
    Binding("b", "toggle('batchnorm')", "BN"),
    Binding("f", "toggle('fan_in')", "fan-in"),
    Binding("r", "restart", "restart"),
    Binding("e", "evaluate", "eval"),
    Binding("s", "sample", "sample"),
    Binding("c", "calibrate", "calib"),
    # The lecture's exercises (the BatchNorm pane, tab health): C applies the exact
    # statistics and re-evaluates, F folds each BatchNorm into its Linear.
    Binding("C", "calibrate(True)", "apply", show=False),
    Binding("F", "fold", "fold", show=False),
    Binding("w", "checkpoint", "save"),
    *(Binding(str(k + 1), f"tab('{tab.name}')", tab.name, show=False)
      for k, tab in enumerate(TABS)),
    # issue 11: many layers and parameters (tui/pick.py), tables that scroll.
    Binding("p", "pick(1)", "pick"),
    Binding("P", "pick(-1)", "pick back", show=False),
    *(Binding(key, f"scroll_table({dy})", "scroll", show=False)
      for key, dy in (("j", 1), ("down", 1), ("k", -1), ("up", -1),
                      ("pagedown", 10), ("pageup", -10))),
]

STEERING_KEYS = frozenset(b.key for b in BINDINGS
                          if b.action.split("(")[0] in STEERING_ACTIONS)


def tab_key(name: str) -> str:
    """The number key of the tab called `name`."""
    return str(1 + [t.name for t in TABS].index(name))


def next_gain(current: str, direction: int) -> str | None:
    """The next gain of GAIN_STEPS above (direction 1) or below (-1) `current`."""
    value = parse_gain(current)
    steps = [(parse_gain(g), g) for g in GAIN_STEPS]
    if direction > 0:
        higher = [g for v, g in steps if v > value + 1e-9]
        return higher[0] if higher else None
    lower = [g for v, g in steps if v < value - 1e-9]
    return lower[-1] if lower else None


class KeyActions:
    """Mixed into TraintopApp: it needs the app's state, panes, `send` and `run_args`."""

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

    # ----- a replay's timeline ---------------------------------------------------
    def action_timeline(self, direction: int) -> None:
        self.send("step", n=int(direction))

    def action_seek(self, where: str) -> None:
        self.send("seek", index=where)

    def action_speed(self, factor: float) -> None:
        """`+` / `-`: the replay speed doubled / halved, from the speed last
        asked while the source's Status still shows the one before it: keys
        in one burst (ten `-` typed or pasted at once) arrive before the next
        poll brings a Status, and each must go on from the one before (from
        the Status alone, ten halvings made one)."""
        status = self.state.status
        if status is None or not status.steps_per_sec > 0:
            return
        shown = status.steps_per_sec
        asked = getattr(self, "_speed_asked", None)    # (the Status's speed then, speed asked)
        base = asked[1] if asked is not None and asked[0] == shown else shown
        speed = min(MAX_SPEED, max(MIN_SPEED, base * float(factor)))
        self._speed_asked = (shown, speed)
        self.send("speed", steps_per_sec=speed)

    def action_play(self) -> None:
        self.action_toggle_pause()

    # ----- steering a run ----------------------------------------------------------
    def action_toggle_pause(self) -> None:
        status = self.state.status
        running = status is not None and status.running
        self.send("pause" if running else "resume")

    def action_step(self) -> None:
        self.send("step")

    def action_scale_lr(self, factor: float) -> None:
        self.send("scale_lr", factor=float(factor), **self.run_args())

    def action_gain(self, direction: int) -> None:
        if self.state.info is None or self.swept_in_overview("gain") or self.stage_sets("gain"):
            return
        # Keys in one burst (g g) arrive before the first restart's RunStarted:
        # each goes on from the gain the one before asked, as `+`/`-` do.
        shown = self.state.info.config["gain"]
        asked = getattr(self, "_gain_asked", None)   # (the config's gain then, gain asked)
        base = asked[1] if asked is not None and asked[0] == shown else shown
        gain = next_gain(base, int(direction))
        if gain is None:
            self.notify(f"gain is already at the {'top' if direction > 0 else 'bottom'} "
                        f"of {', '.join(GAIN_STEPS)}", timeout=2)
            return
        if self.send("restart", gain=gain, **self.run_args()):
            self._gain_asked = (shown, gain)

    def action_toggle(self, key: str) -> None:
        if self.state.info is None or self.swept_in_overview(key) or self.stage_sets(key):
            return
        self.send("restart", **{key: not self.state.info.config[key]}, **self.run_args())

    def stage_sets(self, key: str) -> bool:
        """The lecture's first network (--stage) has its init set by the stage:
        the gain, BatchNorm and fan-in keys do not apply to it (the trainer
        would refuse the restart), and say so instead."""
        stage = self.state.info.config.get("stage")
        if stage:
            self.notify(f"{key.replace('_', '-')}: not for --stage {stage} (the stage sets "
                        "the init)", timeout=3)
        return bool(stage)

    def action_restart(self) -> None:
        self.send("restart", **self.run_args())

    def action_evaluate(self) -> None:
        self.send("evaluate", splits=["train", "val"], **self.run_args())

    def action_sample(self) -> None:
        self.send("sample", n=10, **self.run_args())

    def action_calibrate(self, apply: bool = False) -> None:
        self.send("calibrate", apply=bool(apply), **self.run_args())

    def action_fold(self) -> None:
        self.send("fold", **self.run_args())

    def action_checkpoint(self) -> None:
        self.send("checkpoint", **self.run_args())

    # ----- views --------------------------------------------------------------------
    def action_help(self) -> None:
        from .help_screen import HelpScreen  # loaded after the first frame (app._load_help)

        self.push_screen(HelpScreen())

    def action_pick(self, direction: int) -> None:
        """The next (or previous) set of layers/parameters in every plot that picks."""
        if self.sweep.is_sweep and self.view is None:
            self.notify("p picks layers in a run's plots: v shows one run", timeout=2)
            return
        for pane in self.panes_where(lambda p: p.picks):
            pane.page += int(direction)
            pane.dirty = True
        self.redraw_all()

    def action_scroll_table(self, rows: int) -> None:
        active = self.query_one(TabbedContent).active
        tab = next((t.name for t in TABS if t.id == active), None)
        for pane in self.panes_where(lambda p: p.scrolls and p.tab == tab):
            getattr(pane, "scroller", pane).scroll_relative(y=int(rows), animate=False)
            return

    def action_tab(self, name: str) -> None:
        self.query_one(TabbedContent).active = next((t.id for t in TABS if t.name == name), name)
