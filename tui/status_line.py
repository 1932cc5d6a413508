"""The always-visible status line:
`step 12,345 · lr 0.1 · gain 5/3 · BatchNorm on · 812 steps/s · running`
(`init zeros` in place of the gain for --init zeros, `stage fix-tanh` for the
lecture's first network).

A source that is not a live run says where it stands (Source.position():
head, tail): a replay `replay · snapshot 12/40 · step 1,200 · ... · playing
100 steps/s`, a follower `attach · step ... · writer quiet for 12 s`. The
head comes first; a tail takes the place of the rate and the run word.
"""

from __future__ import annotations

import re

from textual.widgets import Static

from traintop.engine.config import gain_label, parse_gain
from traintop.engine.viewer.run_state import RunState


def status_text(state: RunState, read_only: bool = False,
                position: tuple[str, str | None] | None = None) -> str:
    head, tail = position if position is not None else (None, None)
    info, status = state.info, state.status
    if info is None:
        return " · ".join(p for p in (head, tail or "waiting for the run to start…") if p)
    config = info.config
    lr = state.lr
    parts = [head] if head else []
    parts += [f"step {state.step:,}", f"lr {lr:g}" if lr is not None else "lr n/a"]
    # The lecture's init choices; a watch()ed model has none, so its line
    # names the model instead (never a field the recording lacks).
    stage = config.get("stage")
    if stage:
        # the lecture's first network: its stage sets the init (the gain and
        # fan-in it implies are not knobs the user turned), so it is named
        parts.append(f"stage {stage}")
    elif config.get("init") == "zeros":
        parts.append("init zeros")      # no gain applies: every weight and bias starts at 0
    elif "gain" in config:
        # named as the restart's marker names it (gain_label: 1/2, 5/3)
        parts.append(f"gain {gain_text(config['gain'])}")
    if "batchnorm" in config:
        parts.append(f"BatchNorm {'on' if config['batchnorm'] else 'off'}")
    if "gain" not in config and config.get("model"):
        optimizer = config.get("optimizer")
        parts.append(f"{config['model']}" + (f" + {optimizer}" if optimizer else ""))
    # Off-default init choices show only when changed, so the usual line
    # keeps its documented form.
    if not config.get("fan_in", True) and not stage:
        parts.append("fan-in off")
    if config.get("activation", "tanh") != "tanh":
        parts.append(f"{config['activation']} activation")
    # A followed writer that finished is not "quiet": its end is the news.
    finished = head == "attach" and status is not None and status.finished
    if tail and not finished:
        parts.append(tail)
    else:
        rate = status.steps_per_sec if status is not None else None
        parts.append(rate_text(rate))
        parts.append(run_state_word(state))
        if state.trainer is not None:
            # A dead or silent trainer first: a narrow terminal cuts the line's end.
            parts.insert(0, parts.pop())
    if read_only:
        parts.append("read-only")
    return " · ".join(parts)


def gain_text(gain) -> str:
    """The gain as the plots' restart markers say it (engine.config.gain_label)."""
    try:
        return gain_label(parse_gain(str(gain)))
    except (ValueError, ZeroDivisionError):
        return str(gain)


def health_summary(findings_by_run, tab: str = "4") -> str:
    """The health findings in one segment, `health: 2 errors, 1 warn (tab 4)`
    ("" while none warns): the findings themselves live in the health tab
    (`tab`, its key)."""
    errors = warns = 0
    for findings in findings_by_run:
        for f in findings or ():
            errors += f.severity == "error"
            warns += f.severity == "warn"
    said = [f"{errors} error{'s' * (errors != 1)}" if errors else "",
            f"{warns} warn" if warns else ""]
    said = [s for s in said if s]
    return f"health: {', '.join(said)} (tab {tab})" if said else ""


def compact_health(segment: str) -> str:
    """`health: 2 errors, 1 warn` as the panes mark layers: `!!2 !1`."""
    if not segment.startswith("health: "):
        return segment
    errors = re.search(r"(\d+) errors?", segment)
    warns = re.search(r"(\d+) warn", segment)
    return " ".join(x for x in (f"!!{errors.group(1)}" if errors else "",
                                f"!{warns.group(1)}" if warns else "") if x)


def rate_text(rate: float | None) -> str:
    """`812 steps/s`; a slow model's `0.42 steps/s` (never a bare 0 while it runs)."""
    if rate is None or rate != rate:
        return "n/a steps/s"
    return f"{rate:,.0f} steps/s" if rate >= 10 or rate == 0 else f"{rate:.2g} steps/s"


def run_state_word(state: RunState) -> str:
    word = _run_word(state)
    if state.recording_failed:
        word += " · not recording"   # the notice said why; this stays while it is so
    return word


def _run_word(state: RunState) -> str:
    if state.trainer is not None:   # the child died or went silent: never "running"
        return state.trainer.text
    status = state.status
    if status is None:
        return "starting"
    if status.stopped:
        return f"stopped: {status.stopped}"
    if status.finished:
        return "finished"
    return "running" if status.running else "paused"


# What a narrow terminal drops first from a status line that does not fit,
# so that the run's state (running, paused, catching up, end of recording,
# stopped) stays on screen: segments starting with these, in this order.
DROPPABLE = ("plays at ", "gain ", "BatchNorm ", "snapshot ", "read-only")


def fit_status(text: str, width: int) -> str:
    """`text` with its least telling segments dropped until it fits `width`
    (segments are joined by " · "); unchanged where it fits or none is left."""
    if width <= 0 or len(text) <= width:
        return text
    parts = text.split(" · ")
    # The health summary says less before any segment goes: `health: 5 warn`.
    parts = [re.sub(r" \(tab \d+\)$", "", p) if p.startswith("health: ") else p for p in parts]
    if len(" · ".join(parts)) <= width:
        return " · ".join(parts)
    for prefix in DROPPABLE:
        if prefix == "gain ":   # before the lecture's knobs go: `!!2 !1`, the panes' marks
            parts = [compact_health(p) for p in parts]
            if len(" · ".join(parts)) <= width:
                return " · ".join(parts)
        for i in range(len(parts) - 1, -1, -1):
            if parts[i].startswith(prefix):
                del parts[i]
                if len(" · ".join(parts)) <= width:
                    return " · ".join(parts)
    # a rate next to the state word goes last of all
    for i in range(len(parts) - 1, -1, -1):
        if parts[i].endswith(" steps/s") and len(" · ".join(parts)) > width:
            del parts[i]
    return " · ".join(parts)


class StatusLine(Static):
    DEFAULT_CSS = """
    StatusLine { height: 1; padding: 0 1; background: $primary-background; }
    StatusLine.alert, StatusLine.dead { background: $error; color: $text; text-style: bold; }
    """
    FLASH_SECONDS = 3.0

    _shown: str | None = None

    def show(self, state: RunState, read_only: bool = False,
             position: tuple[str, str | None] | None = None) -> None:
        self.show_text(status_text(state, read_only, position))

    def show_text(self, text: str) -> None:
        """A line built elsewhere (a sweep's: tui/sweep_view.py), fitted to the
        terminal's width (one fixed row: no layout pass)."""
        text = fit_status(text, self.size.width - 2)   # less the padding
        if text != self._shown:
            self._shown = text
            self.update(text, layout=False)

    def flash(self) -> None:
        """Turn the line red for a moment: a new health error just appeared."""
        self.add_class("alert")
        self.set_timer(self.FLASH_SECONDS, lambda: self.remove_class("alert"))
