"""`?`: what each plot shows and what healthy looks like, plus the keys."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

from traintop.engine.health.rules import RULES
from .panes import OVERVIEW, TABS, Pane, panes

HEAD = "# traintop help\n"

# After the panes' own paragraphs (tui/panes.py): what every plot shares.
SHARED = """\
**Many layers** — a plot draws a few layers or parameters (the worst by health,
the first and the last) and sums up the rest in its border; `p` / `P` page
through all of them in order and back to that default.

**Marks** — `!` before a layer's or parameter's label: a health finding warns
about it; `!!`: one is an error. The health tab (4) says which and why; the status
line counts them (`health: 2 errors, 1 warn`, or `!!2 !1` where the line is short).

**Status line** — step · lr · init gain (`init zeros` with `--init zeros`) ·
BatchNorm (the lecture's run; a watched
model shows its class and optimizer instead) · steps/s · running, paused,
finished, or why training stopped (the first non-finite value). A figure the
recording lacks reads `n/a`. The lecture's expected initial loss, samples and
BatchNorm calibration appear only for the lecture's run.
"""

# Formatted by help_text (str.format): the tabs and the overview's panes are the registry's.
KEYS = """\
## Keys

| key | action |
|---|---|
| space | pause / resume |
| n | one step (pauses first) |
| `--paused` | start paused before step 1: `n` then takes step 1, whose figures are the init's (first loss vs the uniform guess, saturation, histograms) |
| ] / [ | double / halve the learning rate (live, leaves a marker; the decay at `--lr-decay-step` divides it by `--lr` / `--lr-after`, a tenth by default, and leaves one too) |
| G / g | raise / lower the init gain through 0.5, 1, 5/3, 2, 3 (restarts from step 0, same seed) |
| b | toggle BatchNorm (restarts) |
| f | toggle fan-in normalisation (restarts) |
| r | restart |
| e | evaluate train and val loss |
| s | sample 10 names into the samples pane |
| c | calibrate BatchNorm: running vs exact statistics |
| w | write a checkpoint |
| 1-{last_tab} | switch tab: {tabs} |
| p / P | next / previous set of layers and parameters drawn (default: worst, first, last) |
| j / k, ↓ / ↑, PgDn / PgUp | scroll the weights table and the health findings |
| ? | this help (escape or ? closes it) |
| q | quit |

## A sweep (`--sweep gain=0.5,1,5/3,3`)

The app opens on the overview of every run: {overview}. Run k has the same colour in every pane; the
legend (the run's swept values) sits in the border.

| key | action |
|---|---|
| v / V | show the next / previous run in full (every tab, as a single run) |
| o or escape | back to the overview |
| ] / [ | the lr of every run (overview) or of the run shown |
| r, e, s, c, w | every run (overview) or the run shown; the sweep is kept |
| G / g, b, f | the run shown; in the overview every run, unless that knob is swept |

## Replay and attach

`traintop replay RUN.jsonl` shows a recorded run on a timeline of its stats
snapshots; it opens at the end of the recording. The status line says
`replay · snapshot 12/40 · step 1,200 · ... · playing 100 steps/s`.

| key | action |
|---|---|
| ← / → | previous / next snapshot (pauses play) |
| n | next snapshot |
| Home / End | first snapshot / end of the recording |
| space | play from here at the replay speed / pause (at the end: play from the start) |
| + / - | double / halve the replay speed (steps per second; start it with `--speed`) |

`traintop attach RUN.jsonl` follows a recording another process is writing,
like `tail -F`: it starts over when the writer restarts, and the status line
says `waiting for RUN.jsonl to appear` or `writer quiet for 12 s`.

In both, the keys that steer a run (lr, gain, BatchNorm, restart, eval,
sample, calibrate, save) answer `read-only`: a recorded run cannot be changed.
"""


# How the panes name a layer: the lecture's stack by its place (the lecture's
# app says it in those terms), a watched model by its module path.
LAYER_NAMES = {
    True: "labelled `L` and its place in the lecture's stack of Linear, BatchNorm "
          "and Tanh layers: `L2` is the first Tanh with BatchNorm, `L1` without",
    False: "labelled by its module path, shortened to the parts that tell it from the "
           "others: `h.3` for `transformer.h.3.mlp.gelu` where every layer is an "
           "`mlp.gelu`, `layer1.0…conv1` for `layer1.0.conv1.weight`",
}


def help_text(registered: tuple[Pane, ...] | None = None, lecture: bool = True) -> str:
    """The whole help: the tabs' plots (one paragraph each, a shared one once),
    what every plot shares, a line per tab on its text panes, the keys with the
    overview's panes in one sentence, the health rules."""
    registered = panes() if registered is None else registered
    plots = dict.fromkeys(p.help for p in registered if p.tab != OVERVIEW and p.plot)
    texts = []   # a tab's text panes: one line, so the help stays about as long
    for tab in TABS:
        words = [p.help for p in registered if p.tab == tab.name and not p.plot]
        if words:
            texts.append(f"**{tab.name} tab** — {listed(words)}.\n")
    keys = KEYS.format(last_tab=len(TABS), tabs=", ".join(t.name for t in TABS),
                       overview=listed(p.help for p in registered if p.tab == OVERVIEW))
    names = f"**Layer names** — a layer is {LAYER_NAMES[lecture]}.\n"
    return "\n".join([HEAD, *plots, names, SHARED, *texts, keys, rules_text()])


def listed(clauses) -> str:
    """`a, b, and c`."""
    clauses = list(clauses)
    return ", ".join(clauses[:-1]) + ", and " + clauses[-1] if len(clauses) > 1 else \
        "".join(clauses)


def rules_text() -> str:
    lines = ["## Health rules", ""]
    for rule in RULES:
        lines.append(f"- **{rule.title}** (`{rule.id}`): {rule.meaning}")
    return "\n".join(lines) + "\n"


def is_lecture(app) -> bool:
    """The app shows the lecture's stack (its config has a gain), not a watched model."""
    info = getattr(getattr(app, "state", None), "info", None)
    return info is None or "gain" in info.config


class HelpScreen(ModalScreen[None]):
    # The whole terminal, as htop's help: every line of text a small terminal
    # has, and no half-hidden plot behind it (what showed there depended on
    # when the plots last drew, so no two looks were the same).
    # The app's timeline keys stay off under help (its priority bindings reach here too).
    covers_timeline = True
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen VerticalScroll { width: 100%; height: 100%; border: round $primary;
                                background: $surface; padding: 0 1; }
    """
    BINDINGS = [Binding("escape", "close", "close"),
                Binding("question_mark", "close", "close", key_display="?"),
                Binding("q", "close", "close", show=False)]

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Markdown(help_text(lecture=is_lecture(self.app)))

    def action_close(self) -> None:
        self.dismiss()
