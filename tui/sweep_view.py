"""Words of the sweep overview: its status line and its findings, by run.

`sweep of 4 runs (gain) · step 1,200 · 812 steps/s · running` in the
overview; `run 2/4 gain=5/3 · ` before a run's usual status line in its
detail view. The findings strip gives each run its most severe finding,
labelled by the run's swept values in the run's colour.
"""

from __future__ import annotations

from rich.text import Text

from traintop.engine.viewer.sweep_state import MOST_DRAWN
from textual.widgets import Static

from .health_pane import SEVERITY_STYLE, SEVERITY_WORD
from .plotting import NO_COLOR_GLYPHS, RICH_COLORS
from .status_line import rate_text, run_state_word, status_text


def sweep_status_text(sweep, read_only: bool = False,
                      position: tuple[str, str | None] | None = None,
                      view: int | None = None) -> str:
    n = len(sweep.runs)
    if view is not None:
        by_run = getattr(position, "by_run", ())
        if by_run:    # a folder's run: its own writer's words, not the tally of every writer
            position = (position[0], by_run[view] if view < len(by_run) else None)
        elif position is not None and not sweep.keys:
            position = (position[0], None)
        return (f"run {view + 1}/{n} {sweep.label(view)} · "
                + status_text(sweep.runs[view], read_only, position))
    head, tail = position if position is not None else (None, None)
    first = sweep.runs[0]
    parts = [head] if head else []
    if sweep.keys:
        parts.append(f"sweep of {n} run{'s' if n != 1 else ''} ({', '.join(sweep.keys)})")
    else:   # a folder's recordings (engine/recording/folder_source.py): no swept keys
        parts.append(f"{n} run{'s' if n != 1 else ''}")
        if n > MOST_DRAWN:
            parts.append(f"{MOST_DRAWN} drawn")
    if first.info is None and all(s.info is None for s in sweep.runs):
        return " · ".join(parts + [tail or "waiting for the runs to start…"])
    if not sweep.keys:
        # a folder's: the writers' tally (attach) or the reading (replay) stands beside the steps
        started = [s for s in sweep.runs if s.info is not None]
        steps = [s.step for s in started]
        parts.append(f"step {min(steps):,}" if min(steps) == max(steps)
                     else f"steps {min(steps):,}-{max(steps):,}")
        if tail:
            parts.append(tail)
        elif head != "attach":
            parts.append("every run read")
        if read_only:
            parts.append("read-only")
        return " · ".join(parts)
    steps = [s.step for s in sweep.runs]
    parts.append(f"step {min(steps):,}" if min(steps) == max(steps)
                 else f"steps {min(steps):,}-{max(steps):,}")
    lrs = [s.lr for s in sweep.runs if s.lr is not None]
    if lrs:
        parts.append(f"lr {min(lrs):g}" if min(lrs) == max(lrs)
                     else f"lr {min(lrs):g}-{max(lrs):g}")
    if tail and not (head == "attach" and first.status is not None and first.status.finished):
        parts.append(tail)
    else:
        rate = first.status.steps_per_sec if first.status is not None else None
        parts.append(rate_text(rate))
        # The sweep's word is that of a run still going (a stopped run says so
        # in its view); how many stopped is said beside it.
        words = [run_state_word(s) for s in sweep.runs]
        going = [w for w in words if not w.startswith("stopped")]
        stopped = n - len(going)
        word = going[0] if going else "every run stopped"
        if going and stopped:
            word += f" · {stopped} of {n} stopped"
        if first.trainer is not None:
            parts.insert(0, word)
        else:
            parts.append(word)
    if read_only:
        parts.append("read-only")
    return " · ".join(parts)


def worst_rank(state) -> int:
    """0 for a run with an error, 1 a warning, 2 info, 3 nothing found."""
    ranks = {"error": 0, "warn": 1, "info": 2}
    return min((ranks.get(f.severity, 2) for f in state.findings()), default=3)


# Its part of the help's sentence on the sweep overview (tui/panes.py registers it).
HELP = "each run's most severe health finding (attached to a folder: its writer's state too)"

WRITER_STYLE = {"live": "green", "quiet": "yellow", "failed": "red", "finished": "grey50"}


class SweepFindings(Static):
    """One line per run: its most severe health finding."""

    DEFAULT_CSS = "SweepFindings { height: auto; max-height: 8; padding: 0 1; }"
    MOST = 8   # rows; more runs than this: the most severe first, the rest counted

    def show(self, sweep, no_color: bool | None = None) -> None:
        if no_color is None:
            no_color = self.app.no_color
        width = max(10, (self.size.width or 80) - 2)
        lines = []
        order = list(range(len(sweep.runs)))
        undrawn = getattr(sweep, "hidden", 0)    # a folder's runs past those drawn
        writers = self.writers(sweep)
        if len(order) > self.MOST or undrawn and len(order) >= self.MOST:
            order.sort(key=lambda k: worst_rank(sweep.runs[k]))
            order = sorted(order[:self.MOST - 1])
        for k in order:
            state = sweep.runs[k]
            text = Text()
            lines.append(text)
            mark = NO_COLOR_GLYPHS[k % len(NO_COLOR_GLYPHS)] if no_color else "━"
            text.append(f"{mark} {sweep.label(k)}",
                        style="" if no_color else RICH_COLORS[k % len(RICH_COLORS)])
            if writers:
                text.append(f" ({writers[k]})", style=WRITER_STYLE.get(writers[k], ""))
            text.append(": ")
            findings = state.findings()
            if not findings:
                text.append("no findings yet" if state.last is None else "no findings")
                continue
            f = findings[0]
            text.append(f"{SEVERITY_WORD.get(f.severity, f.severity)} ",
                        style=SEVERITY_STYLE.get(f.severity, ""))
            text.append(f"{f.where}: ", style="bold")
            text.append(f.message)
            if len(findings) > 1:
                text.append(f" (+{len(findings) - 1})", style="grey50")
        hidden = len(sweep.runs) - len(order) + undrawn
        if hidden:
            lines.append(Text(f"… {hidden} more runs, findings less severe: v and V go "
                              f"through every run", style="grey50"))
        for text in lines:   # one row per run, whatever the terminal's width
            text.truncate(width, overflow="ellipsis")
        self.update(Text("\n").join(lines))

    def writers(self, sweep) -> list[str]:
        """An attach of a folder: each drawn run's writer (live, quiet,
        finished), from the source; [] for any other source."""
        source = getattr(self.app, "source", None)
        if not getattr(source, "follow", False) or not hasattr(source, "writers"):
            return []
        every = source.writers()
        indices = getattr(sweep, "indices", range(len(sweep.runs)))
        return [every[i] if i < len(every) else "" for i in indices]
