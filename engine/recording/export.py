"""A recording as tidy CSV tables, or as TensorBoard scalars and histograms.

CSV (one row per observation, every file written atomically):
  steps.csv          run, step, loss, log10_loss, lr
  update_ratios.csv  run, step, param, update_ratio_log10   (steps that measured them)
  layers.csv         run, step, layer, kind, mean, std, saturation_pct, dead, units,
                     grad_mean, grad_std                    (per snapshot, per layer)
  weights.csv        run, step, name, shape, grad_mean, grad_std, grad_data_ratio
  events.csv         run, step, kind, text
`run` counts runs in the recording from 1 (a restart begins the next).
A sweep's recording (several runs side by side) adds a first column `sweep`,
the run's swept values ("gain=5/3 batchnorm=off"), and `run` counts each
sweep run's restarts on its own; TensorBoard gets one log per sweep run.
Floats are written as Python writes them (shortest exact form; nan, inf).
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import shutil
import tempfile
import threading
from pathlib import Path

from ...data.errors import InputError
from ..atomic import WriteError, write_atomic
from .feed import Event, RunStarted, Steps, Sweep
from .stream import Recording

TABLES = {
    "steps.csv": ("run", "step", "loss", "log10_loss", "lr"),
    "update_ratios.csv": ("run", "step", "param", "update_ratio_log10"),
    "layers.csv": ("run", "step", "layer", "kind", "mean", "std", "saturation_pct", "dead",
                   "units", "grad_mean", "grad_std"),
    "weights.csv": ("run", "step", "name", "shape", "grad_mean", "grad_std", "grad_data_ratio"),
    "events.csv": ("run", "step", "kind", "text"),
}


def sweep_of(recording: Recording) -> Sweep | None:
    first = recording.messages[0] if recording.messages else None
    return first if isinstance(first, Sweep) else None


def _rows(recording: Recording) -> dict[str, list[tuple]]:
    rows: dict[str, list[tuple]] = {name: [] for name in TABLES}
    sweep = sweep_of(recording)
    counts: dict[int, int] = {}       # sweep run -> runs begun (1 + its restarts)
    names_of: dict[int, tuple] = {}
    for m in recording.messages:
        if isinstance(m, Sweep):
            continue
        if isinstance(m, RunStarted):
            counts[m.run] = counts.get(m.run, 0) + 1
            names_of[m.run] = m.info.param_names
            continue
        # A sweep's rows start with the run's label: (label, run, ...).
        head = ((sweep.labels[m.run],) if sweep is not None else ()) + (counts.get(m.run, 0),)
        names = names_of.get(m.run, ())
        if isinstance(m, Event):
            rows["events.csv"].append((*head, m.step, m.kind, m.text))
        elif isinstance(m, Steps):
            for r in m.results:
                rows["steps.csv"].append((*head, r.step, r.loss, r.log10_loss, r.lr))
                rows["update_ratios.csv"] += [(*head, r.step, n, x)
                                              for n, x in zip(names, r.update_ratio_log10)]
                s = r.stats
                if s is None:
                    continue
                rows["layers.csv"] += [(*head, s.step, l.index, l.kind, l.mean, l.std,
                                        l.saturation_pct, l.dead, l.units, l.grad_mean,
                                        l.grad_std) for l in s.layers]
                rows["weights.csv"] += [(*head, s.step, w.name, "x".join(map(str, w.shape)),
                                         w.grad_mean, w.grad_std, w.grad_data_ratio)
                                        for w in s.weights]
    return rows


def _target_dir(directory: str | Path, option: str) -> Path:
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise InputError(f"{option} {directory}: exists and is not a directory")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{option} {directory}: cannot create: {exc.strerror or exc}") from None
    return directory


def write_csv(recording: Recording, directory: str | Path) -> list[Path]:
    """The tables above in `directory` (created); returns the files written."""
    directory = _target_dir(directory, "--csv")
    sweep = sweep_of(recording)
    written = []
    for name, rows in _rows(recording).items():
        def write(f, rows=rows, name=name):
            text = io.TextIOWrapper(f, encoding="utf-8", newline="")
            out = csv.writer(text)
            out.writerow((("sweep",) if sweep is not None else ()) + TABLES[name])
            out.writerows(rows)
            text.flush()
            text.detach()
        try:
            write_atomic(directory / name, write)
        except OSError as exc:
            raise InputError(f"--csv {directory / name}: cannot write: "
                             f"{exc.strerror or exc}") from None
        written.append(directory / name)
    return written


def tensorboard_available() -> bool:
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        return False
    return True


def write_tensorboard(recording: Recording, directory: str | Path) -> list[Path]:
    """Scalars per step and per snapshot, histograms per snapshot, one
    SummaryWriter log per run (run-1, run-2, ... when the recording restarts).

    The event files are written to a temporary directory and moved in when
    complete, so TensorBoard never reads half of an export.
    """
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise InputError("--tensorboard: the tensorboard package is not installed "
                         "(pip install 'traintop[tensorboard]'); --csv needs nothing") from None
    directory = _target_dir(directory, "--tensorboard")
    runs = sum(isinstance(m, RunStarted) for m in recording.messages)
    try:
        with _quiet_writer_threads():
            return _tensorboard_into(recording, directory, runs, SummaryWriter)
    except OSError as exc:   # a full disk, raised again from the event writer's thread
        raise WriteError(f"--tensorboard {directory}: cannot write: "
                         f"{exc.strerror or exc}") from None


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


def _tensorboard_into(recording: Recording, directory: Path, runs: int, SummaryWriter) -> list:
    tmp = Path(tempfile.mkdtemp(prefix=".traintop-export-", dir=directory))
    sweep = sweep_of(recording)
    try:
        counts: dict[int, int] = {}
        writers: dict[int, object] = {}    # sweep run -> its writer now
        names_of: dict[int, tuple] = {}
        for m in recording.messages:
            if isinstance(m, Sweep):
                continue
            if isinstance(m, RunStarted):
                if m.run in writers:
                    writers[m.run].close()
                counts[m.run] = counts.get(m.run, 0) + 1
                names_of[m.run] = m.info.param_names
                writers[m.run] = SummaryWriter(str(_log_dir(tmp, sweep, m.run, counts[m.run],
                                                            runs)))
                writers[m.run].add_text("config", repr(m.info.config), 0)
            elif isinstance(m, Event):
                writers[m.run].add_text(f"events/{m.kind}", m.text, m.step)
            elif isinstance(m, Steps):
                for r in m.results:
                    _tb_step(writers[m.run], r, names_of[m.run])
        for writer in writers.values():
            writer.close()
        moved = []
        for path in sorted(tmp.rglob("*")):
            if path.is_file():
                target = directory / path.relative_to(tmp)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, target)
                moved.append(target)
        return moved
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _log_dir(tmp: Path, sweep: Sweep | None, run: int, count: int, runs: int) -> Path:
    """run-2 (a restart) of one run; a sweep's run k in `k-gain=5_3` (its
    restarts in run-2, ... below it): TensorBoard names curves by folder."""
    if sweep is None:
        return tmp / f"run-{count}" if runs > 1 else tmp
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
        for f in ("mean", "std", "saturation_pct", "grad_mean", "grad_std"):
            writer.add_scalar(f"{tag}/{f}", getattr(l, f), s.step)
        _tb_hist(writer, f"{tag}/activations", l.hist, l.mean, l.std, s.step)
        _tb_hist(writer, f"{tag}/gradients", l.grad_hist, l.grad_mean, l.grad_std, s.step)
    for w in s.weights:
        writer.add_scalar(f"weight_{w.name}/grad_data_ratio", w.grad_data_ratio, s.step)
        writer.add_scalar(f"weight_{w.name}/grad_std", w.grad_std, s.step)
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
