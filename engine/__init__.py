"""traintop's engine: the lecture's deep stack trained step by step, measured.

Plain Python and torch; no Textual. Everything handed out is a frozen
plain-Python value (results.py). Subpackages by concern:

    model/      the lecture's stack: layers, build, sampling and calibration
    training/   the trainer, its history, checkpoints, thread choice
    steps/      the exact engine's stats, the hand-written fast step, the compiled step
    health/     the health rules, their thresholds and the monitor that applies them
    feed/       the messages between a run's source and its viewers, and the events' constructors
    recording/  the recording's line format, its writer (recorder) and readers (replay, follow)
    live/       a live run: the trainer child (child, runner) and the viewer's side (session)
    viewer/     what a viewer knows of a run or a sweep after some messages (run_state, sweep_state)
    export/     a recording as CSV tables or TensorBoard files
    sweep/      several runs side by side: their spec, batched groups and trainer
    watch.py    watch(): any torch.nn model, recorded for the app

Nothing is imported here: the viewer's side (feed/, recording/, viewer/,
export/, health/, results, config) must load without torch, so each module is imported by its path.
The public API is `traintop`'s.
"""
