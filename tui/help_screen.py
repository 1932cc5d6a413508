"""`?`: what each plot shows and what healthy looks like, plus the keys."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

from traintop.engine.health.rules import RULES

PLOTS = """\
# traintop help

**Loss** — log10 of the training loss per step, the mean over each 1,000 steps
(as the lecture averages) and val loss points after `e`. Healthy: it starts near
log10 of the expected initial loss (-log(1/27) = 3.30, so about 0.52) and falls
smoothly; a hockey stick at the start means the output layer was too confident.
Vertical lines mark restarts and learning-rate changes.

**Activation share** — per activation layer (labelled by its module path, e.g.
`h.3.mlp.gelu`, cut from the left to fit), the share of its outputs in the
family's regime; the title says which. A unit is a feature (the last dim of a
Linear-style output) or a channel (of a convolution), counted over every example
and position; `dN` is the count of dead units.
- *tanh/sigmoid-like*: % in the flat tails (tanh |t| > 0.97), with the lecture's
  ~5% guide line. Many saturated units stop gradients; dead = saturated on every
  example.
- *ReLU-like*: % of zeros (t <= 0). About half is normal; dead = a channel zero on
  every example and position of the batch.
- *GELU/SiLU-like*: % in the negative regime (x < 0). About half is normal and no
  saturation; a unit is called dead only when its input stays below the flat-tail
  threshold everywhere (GELU -3, SiLU/Mish -6, ELU-like -5).

**Activation distribution** — histogram of each drawn layer's output. Healthy:
similar spread in every layer of a family; for tanh std ~0.6-0.7 and no pile-up
at -1 and +1.

**Gradient distribution** — histogram of the gradient at each activation output.
Healthy: every layer about the same width; layers shrinking or growing with depth
mean vanishing or exploding gradients.

**Weight gradients** — histogram of the drawn 2-D parameters' gradients and a
table of every one: shape, mean, std and grad:data ratio (grad std / weight std).
Healthy: similar ratios; one far above the rest (flagged `<- outlier`, often the
last layer early on) is being trained much faster than the others.

**Update:data ratio** — log10 of (update std / weight std) per 2-D parameter,
the real change of the optimizer step, with the guide at -3 (updates about
1/1000 of the values). Healthy: lines settle near -3; far below means the lr is
too low, far above means too high.

**Many layers** — a plot draws a few layers or parameters (the worst by health,
the first and the last) and sums up the rest in its border; `p` / `P` page
through all of them in order and back to that default.

**Status line** — step · lr · init gain · BatchNorm (the lecture's run; a watched
model shows its class and optimizer instead) · steps/s · running, paused,
finished, or why training stopped (the first non-finite value). A figure the
recording lacks reads `n/a`. The lecture's expected initial loss, samples and
BatchNorm calibration appear only for the lecture's run.
"""

KEYS = """\
## Keys

| key | action |
|---|---|
| space | pause / resume |
| n | one step (pauses first) |
| ] / [ | double / halve the learning rate (live, leaves a marker) |
| G / g | raise / lower the init gain through 0.5, 1, 5/3, 2, 3 (restarts from step 0, same seed) |
| b | toggle BatchNorm (restarts) |
| f | toggle fan-in normalisation (restarts) |
| r | restart |
| e | evaluate train and val loss |
| s | sample 10 names into the samples pane |
| c | calibrate BatchNorm: running vs exact statistics |
| w | write a checkpoint |
| 1-4 | switch tab: training, activations, weights, health |
| p / P | next / previous set of layers and parameters drawn (default: worst, first, last) |
| j / k, ↓ / ↑, PgDn / PgUp | scroll the weights table and the health findings |
| ? | this help (escape or ? closes it) |
| q | quit |

## A sweep (`--sweep gain=0.5,1,5/3,3`)

The app opens on the overview of every run: loss curves overlaid, saturation
bars grouped per layer (one bar per run), the gradient histograms as one small
plot per run on shared axes, each run's mean update:data ratio, and each run's
most severe health finding. Run k has the same colour in every pane; the
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


def rules_text() -> str:
    lines = ["## Health rules", ""]
    for rule in RULES:
        lines.append(f"- **{rule.title}** (`{rule.id}`): {rule.meaning}")
    return "\n".join(lines) + "\n"


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
            yield Markdown(PLOTS + "\n" + KEYS + "\n" + rules_text())

    def action_close(self) -> None:
        self.dismiss()
