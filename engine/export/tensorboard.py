"""A recording as TensorBoard scalars and histograms (the optional
tensorboard package): one log per run, the figures of every snapshot by the
names traintop.engine.results declares."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Iterable

from traintop.data.errors import InputError
from traintop.engine.atomic import WriteError
from traintop.engine.export.source import Source, first_and_all, target_dir, unmake
from traintop.engine.feed.messages import Event, Message, RunStarted, Steps, Sweep
from traintop.engine.results import LAYER_FIGURES, WEIGHT_FIGURES

# The scalars of a snapshot: its float figures (counts such as `dead` are
# read off the CSV).
LAYER_SCALARS = tuple(f for f, kind in LAYER_FIGURES.items() if kind is float)
WEIGHT_SCALARS = tuple(f for f, kind in WEIGHT_FIGURES.items() if kind is float)


def tensorboard_available() -> bool:
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        return False
    return True


def write_tensorboard(source: Source, directory: str | Path) -> list[Path]:
    """Scalars per step and per snapshot, histograms per snapshot, one
    SummaryWriter log per run (run-1, run-2, ... when the recording restarts).

    `source` as for write_csv: a recording file is read as it is written out.
    The event files are written to a temporary directory and moved in when
    complete, so TensorBoard never reads half of an export.
    """
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise InputError("--tensorboard: the tensorboard package is not installed "
                         "(pip install 'traintop[tensorboard]'); --csv needs nothing") from None
    sweep, messages = first_and_all(source)
    directory, made = target_dir(directory, "--tensorboard")
    done = False
    try:
        with _quiet_writer_threads():
            written = _tensorboard_into(messages, sweep, directory, SummaryWriter)
        done = True
        return written
    except OSError as exc:   # a full disk, raised again from the event writer's thread
        raise WriteError(f"--tensorboard {directory}: cannot write: "
                         f"{exc.strerror or exc}") from None
    finally:
        if not done:
            unmake(made)


@contextlib.contextmanager
def _quiet_writer_threads():
    """The event writer's thread re-raises its OSError in the caller, which
    says it in one line: the thread's own traceback is not printed."""
    previous = threading.excepthook

    def hook(args):
        if not issubclass(args.exc_type, OSError):
            previous(args)
    threading.excepthook = hook
    try:
        yield
    finally:
        threading.excepthook = previous


def _tensorboard_into(messages: Iterable[Message], sweep: Sweep | None, directory: Path,
                      SummaryWriter) -> list:
    tmp = Path(tempfile.mkdtemp(prefix=".traintop-export-", dir=directory))
    try:
        counts: dict[int, int] = {}
        writers: dict[int, object] = {}    # sweep run -> its writer now
        names_of: dict[int, tuple] = {}
        for m in messages:
            if isinstance(m, Sweep):
                continue
            if isinstance(m, RunStarted):
                if m.run in writers:
                    writers[m.run].close()
                counts[m.run] = counts.get(m.run, 0) + 1
                names_of[m.run] = m.info.param_names
                writers[m.run] = SummaryWriter(str(_log_dir(tmp, sweep, m.run, counts[m.run])))
                writers[m.run].add_text("config", repr(m.info.config), 0)
            elif isinstance(m, Event):
                writers[m.run].add_text(f"events/{m.kind}", m.text, m.step)
            elif isinstance(m, Steps):
                for r in m.results:
                    _tb_step(writers[m.run], r, names_of[m.run])
        for writer in writers.values():
            writer.close()
        # A single run that never restarted goes in the folder itself; the
        # number of runs is known only now, the recording read once.
        root = tmp / "run-1" if sweep is None and counts.get(0, 0) == 1 else tmp
        moved = []
        for path in sorted(root.rglob("*")):
            if path.is_file():
                target = directory / path.relative_to(root)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, target)
                moved.append(target)
        return moved
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _log_dir(tmp: Path, sweep: Sweep | None, run: int, count: int) -> Path:
    """run-2 (a restart) of one run (run-1 moves up into the folder itself
    where it is the only one); a sweep's run k in `k-gain=5_3` (its restarts
    in run-2, ... below it): TensorBoard names curves by folder."""
    if sweep is None:
        return tmp / f"run-{count}"
    base = tmp / (f"{run}-" + sweep.labels[run].replace("/", "_").replace(" ", ","))
    return base / f"run-{count}" if count > 1 else base


def _tb_step(writer, r, names) -> None:
    writer.add_scalar("loss", r.loss, r.step)
    writer.add_scalar("lr", r.lr, r.step)
    for n, x in zip(names, r.update_ratio_log10):
        writer.add_scalar(f"update_ratio_log10/{n}", x, r.step)
    s = r.stats
    if s is None:
        return
    for l in s.layers:
        tag = f"layer{l.index}_{l.kind}"
        for f in LAYER_SCALARS:
            writer.add_scalar(f"{tag}/{f}", getattr(l, f), s.step)
        _tb_hist(writer, f"{tag}/activations", l.hist, l.mean, l.std, s.step)
        _tb_hist(writer, f"{tag}/gradients", l.grad_hist, l.grad_mean, l.grad_std, s.step)
    for w in s.weights:
        for f in WEIGHT_SCALARS:
            writer.add_scalar(f"weight_{w.name}/{f}", getattr(w, f), s.step)
        _tb_hist(writer, f"weight_{w.name}/gradients", w.hist, w.grad_mean, w.grad_std, s.step)


def _tb_hist(writer, tag: str, hist, mean: float, std: float, step: int) -> None:
    """A recorded density histogram as TensorBoard's raw one; its counts are
    the bins' shares of the values (they sum to 1: the recording keeps densities)."""
    n = len(hist.density)
    if not n:
        return
    width = (hist.hi - hist.lo) / n
    shares = [d * width for d in hist.density]
    if not all(x == x for x in shares):   # NaN densities: nothing to draw
        return
    writer.add_histogram_raw(tag, min=hist.lo, max=hist.hi, num=1.0, sum=mean,
                             sum_squares=std * std + mean * mean,
                             bucket_limits=[hist.lo + width * (i + 1) for i in range(n)],
                             bucket_counts=shares, global_step=step)
