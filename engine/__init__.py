"""traintop's engine: the lecture's deep stack trained step by step, measured.

Plain Python and torch; no Textual. Everything handed out is a frozen
plain-Python value (results.py). Subpackages by concern:

    model/      the lecture's stack: layers, build, sampling and calibration
    training/   the trainer, its history, checkpoints, thread choice
    steps/      the exact engine's stats, the hand-written fast step, the compiled step
    health/     the health rules, their thresholds and the monitor that applies them
    recording/  messages (feed), the recording format, recorder, sources, live session
    watch.py    watch(): any torch.nn model, recorded for the app

Nothing is imported here: the viewer's side (recording/, health/, results,
config) must load without torch, so each module is imported by its path.
The public API is `traintop`'s.
"""
