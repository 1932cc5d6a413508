"""`traintop export --csv` reads the recording line by line: the tables are
the same, byte for byte, as rows built from the whole recording at once, and
a failure part-way leaves no table behind and says one line."""

from __future__ import annotations

import csv
import dataclasses
import errno
import gzip
import io
import math
import os
import tempfile

import pytest

from traintop.commands import cli
from traintop.engine.export import tables as export
from traintop.engine.export.tables import TABLES, write_csv
from traintop.engine.feed.messages import Event, RunStarted, Steps, Sweep
from traintop.engine.recording.opener import load
from traintop.engine.results import LAYER_FIGURES, WEIGHT_FIGURES, StepResult
from tui_fixed_run import fixed_run, result_at, run_info
from tui_recordings import record
from tui_sweep_runs import formula_sweep


def reference_tables(messages) -> dict[str, bytes]:
    """The tables as the export built them before it streamed: every row a
    tuple from each StepResult, all of them in lists, csv.writer at the end."""
    messages = list(messages)
    sweep = messages[0] if messages and isinstance(messages[0], Sweep) else None
    rows: dict[str, list[tuple]] = {name: [] for name in TABLES}
    counts: dict[int, int] = {}
    names_of: dict[int, tuple] = {}
    for m in messages:
        if isinstance(m, Sweep):
            continue
        if isinstance(m, RunStarted):
            counts[m.run] = counts.get(m.run, 0) + 1
            names_of[m.run] = m.info.param_names
            continue
        head = ((sweep.labels[m.run],) if sweep is not None else ()) + (counts.get(m.run, 0),)
        names = names_of.get(m.run, ())
        if isinstance(m, Event):
            rows["events.csv"].append((*head, m.step, m.kind, m.text))
        elif isinstance(m, Steps):
            for r in tuple(m.results):
                rows["steps.csv"].append((*head, r.step, r.loss, r.log10_loss, r.lr,
                                          r.grad_norm))
                rows["update_ratios.csv"] += [(*head, r.step, n, x)
                                              for n, x in zip(names, r.update_ratio_log10)]
                s = r.stats
                if s is None:
                    continue
                # the figures' columns are the declaration's (test_csv_columns_*)
                rows["layers.csv"] += [(*head, s.step, l.index, l.kind,
                                        *(getattr(l, f) for f in LAYER_FIGURES), l.name)
                                       for l in s.layers]
                rows["weights.csv"] += [(*head, s.step, w.name, "x".join(map(str, w.shape)),
                                         *(getattr(w, f) for f in WEIGHT_FIGURES))
                                        for w in s.weights]
    out = {}
    for name, table in rows.items():
        text = io.StringIO(newline="")
        writer = csv.writer(text)
        writer.writerow((("sweep",) if sweep is not None else ()) + TABLES[name])
        writer.writerows(table)
        out[name] = text.getvalue().encode()
    return out


def test_csv_columns_are_the_declared_figures_after_the_first_ones():
    """layers.csv and weights.csv name every declared figure; the columns the
    first export wrote keep their places, so a reader by position still works."""
    first_layers = ("run", "step", "layer", "kind", "mean", "std", "saturation_pct", "dead",
                    "units", "grad_mean", "grad_std")
    first_weights = ("run", "step", "name", "shape", "grad_mean", "grad_std", "grad_data_ratio")
    assert TABLES["layers.csv"] == first_layers + tuple(
        f for f in LAYER_FIGURES if f not in first_layers) + ("name",)
    assert TABLES["weights.csv"] == first_weights + tuple(
        f for f in WEIGHT_FIGURES if f not in first_weights)


def files(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def one_run_with_restart() -> list:
    """A run (an lr change, events), a restart, steps whose figures are odd:
    a loss of 0, inf and nan, a step with no ratios (its forward went
    non-finite), an event text a CSV must quote."""
    messages = [m for m in fixed_run(400) if not isinstance(m, Event) or m.kind == "lr"]
    info = run_info()
    messages.append(Event("note", 400, 'a "quoted", text\nover two lines'))
    messages.append(RunStarted(dataclasses.replace(info, config={**info.config, "gain": "3"}),
                               "restart: gain 3"))
    odd = [result_at(s, info, 0.05) for s in range(1, 9)]
    odd[2] = dataclasses.replace(odd[2], loss=0.0)
    odd[3] = dataclasses.replace(odd[3], loss=math.inf)
    odd[4] = dataclasses.replace(odd[4], loss=math.nan, update_ratio_log10=())
    messages.append(Steps(tuple(odd)))
    messages.append(Steps(tuple(result_at(s, info, 0.05) for s in range(9, 120))))
    return messages


def sweep_run() -> list:
    return formula_sweep(steps=120, gains=("1", '5,"3"'))


@pytest.mark.parametrize("make", [one_run_with_restart, sweep_run])
@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz"])
def test_streamed_tables_are_the_tables_of_the_whole_recording(tmp_path, make, suffix):
    path = record(make(), tmp_path / f"run{suffix}")
    recording = load(path)
    expected = reference_tables(recording.messages)
    assert write_csv(path, tmp_path / "streamed") == [tmp_path / "streamed" / n for n in TABLES]
    assert files(tmp_path / "streamed") == expected          # read line by line
    write_csv(recording, tmp_path / "whole")
    assert files(tmp_path / "whole") == expected             # read in one piece
    assert cli.main(["export", str(path), "--csv", str(tmp_path / "cli")]) == 0
    assert files(tmp_path / "cli") == expected
    steps = expected["steps.csv"].decode().splitlines()
    assert len(steps) == 1 + sum(len(m.results) for m in recording.messages
                                 if isinstance(m, Steps))


@pytest.mark.parametrize("make", [one_run_with_restart, sweep_run])
def test_live_messages_write_as_their_rows(tmp_path, make):
    """A live run's tuples of StepResult (not columns) go row by row, alike."""
    messages = make()
    assert all(isinstance(m.results, tuple) and isinstance(m.results[0], StepResult)
               for m in messages if isinstance(m, Steps))
    write_csv(messages, tmp_path / "csv")
    assert files(tmp_path / "csv") == reference_tables(messages)


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("traintop: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


def _previous_export(folder) -> None:
    folder.mkdir()
    (folder / "steps.csv").write_text("an earlier export\n")


def _untouched(folder) -> None:
    """The earlier export is as it was; no new table, no temporary file."""
    assert [p.name for p in folder.iterdir()] == ["steps.csv"]
    assert (folder / "steps.csv").read_text() == "an earlier export\n"


@pytest.mark.parametrize("gz", [False, True])
def test_a_corrupt_line_part_way_leaves_no_table(tmp_path, capsys, gz):
    lines = record(one_run_with_restart(), tmp_path / "good.jsonl").read_bytes().splitlines(True)
    bad = len(lines) // 2
    lines[bad] = b'{"t": "s", "n": 3, "loss": \n'
    path = tmp_path / ("bad.jsonl.gz" if gz else "bad.jsonl")
    data = b"".join(lines)
    path.write_bytes(gzip.compress(data) if gz else data)
    out = tmp_path / "csv"
    _previous_export(out)
    assert cli.main(["export", str(path), "--csv", str(out)]) == 2
    err = _one_line_error(capsys)
    assert f"{path}:{bad + 1}: corrupt line" in err
    _untouched(out)


class _Filling(io.RawIOBase):
    """A file on a disk that fills after `room` bytes (the write that crosses
    the line is taken in part)."""

    def __init__(self, fd: int, room: int):
        self.fd, self.room = fd, room

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        if self.room <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        n = os.write(self.fd, bytes(b[:self.room]))
        self.room -= n
        return n

    def close(self) -> None:
        if not self.closed:
            os.close(self.fd)
        super().close()


def test_a_disk_that_fills_part_way_leaves_no_table(tmp_path, capsys, monkeypatch):
    path = record(one_run_with_restart(), tmp_path / "run.jsonl")
    out = tmp_path / "csv"
    _previous_export(out)
    room = {"update_ratios.csv": 20_000}    # the ratios fill the disk; the other tables fit
    monkeypatch.setattr(export._TempTables, "_file", staticmethod(
        lambda fd, name: io.TextIOWrapper(io.BufferedWriter(_Filling(fd, room.get(name, 1 << 30))),
                                          encoding="utf-8", newline="")))
    assert cli.main(["export", str(path), "--csv", str(out)]) == 2
    err = _one_line_error(capsys)
    assert err == (f"traintop: error: --csv {out / 'update_ratios.csv'}: cannot write: "
                   f"{os.strerror(errno.ENOSPC)}\n")
    _untouched(out)


def test_a_table_that_cannot_be_made_leaves_none(tmp_path, capsys, monkeypatch):
    """The third temporary file is refused (a folder not writable): the two
    made before it are removed."""
    path = record(one_run_with_restart(), tmp_path / "run.jsonl")
    out = tmp_path / "csv"
    _previous_export(out)
    real = tempfile.mkstemp
    made = []

    def mkstemp(*args, **kwargs):
        if len(made) == 2:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
        made.append(real(*args, **kwargs))
        return made[-1]
    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    assert cli.main(["export", str(path), "--csv", str(out)]) == 2
    assert _one_line_error(capsys) == (f"traintop: error: --csv {out / 'layers.csv'}: "
                                       f"cannot write: Permission denied\n")
    _untouched(out)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into any folder")
def test_an_unwritable_folder_is_one_line(tmp_path, capsys):
    path = record(one_run_with_restart(), tmp_path / "run.jsonl")
    out = tmp_path / "csv"
    _previous_export(out)
    out.chmod(0o555)
    try:
        assert cli.main(["export", str(path), "--csv", str(out)]) == 2
        assert "cannot write: Permission denied" in _one_line_error(capsys)
        _untouched(out)
    finally:
        out.chmod(0o755)


def test_a_missing_recording_makes_no_folder(tmp_path, capsys):
    out = tmp_path / "csv"
    assert cli.main(["export", str(tmp_path / "none.jsonl"), "--csv", str(out)]) == 2
    assert "none.jsonl: no such file" in _one_line_error(capsys)
    assert not out.exists()


def test_tables_get_the_umask_and_a_failed_export_leaves_no_folder(tmp_path, capsys):
    """The tables have the permissions a plain file would (not mkstemp's 0600);
    an export that fails leaves no folder it made for itself."""
    import stat
    path = record(one_run_with_restart(), tmp_path / "run.jsonl")
    out = tmp_path / "csv"
    old = os.umask(0o022)
    try:
        assert cli.main(["export", str(path), "--csv", str(out)]) == 0
    finally:
        os.umask(old)
    assert {stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()} == {0o644}
    bad = tmp_path / "bad.jsonl"
    lines = path.read_bytes().split(b"\n")
    bad.write_bytes(b"\n".join(lines[:3] + [b"GARBAGE{{{"] + lines[3:]))
    target = tmp_path / "new" / "deeper"
    assert cli.main(["export", str(bad), "--csv", str(target)]) == 2
    assert "corrupt line" in _one_line_error(capsys)
    assert not (tmp_path / "new").exists()
