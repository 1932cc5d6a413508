"""Write errors while recording, checkpointing and exporting: one line naming
the file and the error, nothing already written lost; damaged checkpoints and
cut recordings read as far as they are whole."""

from __future__ import annotations

import errno
import gc
import json
import os
import pickle
import subprocess
import sys
import zipfile

import pytest

from helpers import ROOT, traintop_here
from full_disk import failing_file, fill, small_disk  # noqa: F401 - small_disk: a fixture
from traintop.data.errors import InputError
from traintop.engine.atomic import WriteError
from traintop.engine.config import TrainConfig
from traintop.engine.recording import writer as stream_writer
from traintop.engine.feed.messages import RunStarted, Status, Steps
from traintop.engine.recording.recorder import Recorder
from traintop.engine.recording.opener import load
from traintop.engine.training.checkpoint import load_checkpoint, save_checkpoint
from traintop.engine.training.checkpoint_header import read_header
from traintop.engine.training.trainer import Trainer
from tui_fakes import write_words

CONFIG = TrainConfig(n_hidden=8, steps=400, stats_every=50)


def traintop(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "traintop", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def recorded_steps(path) -> list[int]:
    return [r.step for m in load(path).messages if isinstance(m, Steps) for r in m.results]


# ----- the recorder, on a file that refuses writes -----------------------------------
class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


@pytest.mark.parametrize("error, words", [(errno.ENOSPC, "No space left on device"),
                                          (errno.EIO, "Input/output error")])
def test_recorder_keeps_whole_lines_and_says_once(small_dataset, tmp_path, monkeypatch,
                                                  error, words):
    path = tmp_path / "run.jsonl"
    real_open = open
    monkeypatch.setattr(stream_writer, "open", lambda p, mode: failing_file(p, 60_000, error)
                        if "w" in mode else real_open(p, mode), raising=False)
    trainer = Trainer(CONFIG.validated(), small_dataset)
    clock = Clock()
    recorder = Recorder(path, clock=clock)
    recorder.consume(RunStarted(trainer.info()))
    raised = None
    for _ in range(400):
        clock.now += 0.1                      # a flush every 5 steps
        try:
            recorder.step(trainer.step())
        except WriteError as exc:
            raised = exc
            break
    assert raised is not None, "the file never filled"
    kept = recorder.kept_step
    assert 0 < kept < trainer.steps_done
    assert str(raised) == f"{path}: cannot write: {words}; the recording ends at step {kept:,}"
    recorder.step(trainer.step())             # later messages: ignored, not raised again
    recorder.close(Status(step=0, lr=0.1, running=False, finished=False, steps_per_sec=0.0))
    recording = load(path)
    assert not recording.partial_tail         # cut back to the last whole line
    assert recorded_steps(path) == list(range(1, kept + 1))


def test_a_failed_recording_stays_whole_once_its_writer_is_gone(small_dataset, small_disk):
    """A write that fails part-way leaves bytes in the file object's buffer;
    the file is cut back to whole lines, and nothing may write that buffer
    past the cut later (at exit, when the cut has freed space)."""
    path = small_disk / "run.jsonl"
    fill(small_disk, leave=60_000)
    trainer = Trainer(CONFIG.validated(), small_dataset)
    clock = Clock()
    recorder = Recorder(path, clock=clock)
    recorder.consume(RunStarted(trainer.info()))
    for _ in range(4000):
        clock.now += 0.1
        try:
            recorder.step(trainer.step())
        except WriteError:
            break
    else:
        pytest.fail("the disk never filled")
    kept = recorder.kept_step
    (small_disk / ".filler").unlink()   # space comes back (another program frees some)
    del recorder
    gc.collect()          # what exit does: a buffer still held would be written now
    assert not load(path).partial_tail
    assert recorded_steps(path) == list(range(1, kept + 1))


def test_recording_on_a_full_disk_stops_the_run_which_still_reports(tmp_path, small_disk):
    path = small_disk / "run.jsonl"
    done = traintop("run", "--data", write_words(tmp_path / "w.txt"), "--steps", "100000",
                    "--n-hidden", "16", "--engine", "fast", "--json", "--record", path)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"traintop: error: {path}: cannot write: "
                                                   "No space left on device; the recording "
                                                   "ends at step "), done.stderr
    report = json.loads(done.stdout)          # the report still prints
    assert 0 < report["steps"] < 100_000 and report["errors"] == [lines[0][len("traintop: error: "):]]
    kept = int(lines[0].rsplit(" ", 1)[1].replace(",", ""))
    assert recorded_steps(path) == list(range(1, kept + 1))
    replay = traintop("replay", "--json", path)   # the cut recording opens
    assert replay.returncode == 0, replay.stderr
    assert json.loads(replay.stdout)["steps"] == kept


def test_unwritable_paths_are_refused_before_training(tmp_path, capsys):
    for option in ("--record", "--checkpoint"):
        done = traintop_here(capsys, "run", "--steps", "100000", option, tmp_path / "gone" / "x")
        assert done.returncode == 2 and done.stdout == ""
        assert done.stderr == (f"traintop: error: {option} {tmp_path / 'gone' / 'x'}: "
                               f"no such directory {tmp_path / 'gone'}\n")
    done = traintop("--checkpoint-dir", tmp_path / "gone")
    assert done.returncode == 2
    assert done.stderr == f"traintop: error: --checkpoint-dir {tmp_path / 'gone'}: no such directory\n"


# ----- checkpoints ----------------------------------------------------------------------
def test_checkpoint_on_a_full_disk_leaves_the_old_one_whole(small_dataset, small_disk):
    trainer = Trainer(TrainConfig(n_hidden=100, steps=3).validated(), small_dataset)
    path = small_disk / "run.ckpt"
    path.write_bytes(b"old")
    fill(small_disk, leave=8_000)                  # far less than a checkpoint takes
    with pytest.raises(InputError) as raised:
        save_checkpoint(trainer, path)
    assert str(raised.value) == f"{path}: cannot write checkpoint: No space left on device"
    assert path.read_bytes() == b"old"
    assert sorted(os.listdir(small_disk)) == [".filler", "run.ckpt"]   # no temp file left


def test_run_checkpoint_on_a_full_disk_still_reports(tmp_path, small_disk):
    fill(small_disk, leave=8_000)
    target = small_disk / "end.ckpt"
    done = traintop("run", "--data", write_words(tmp_path / "w.txt"), "--steps", "20", "--json",
                    "--checkpoint", target)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr == (f"traintop: error: {target}: cannot write checkpoint: "
                           "No space left on device\n")
    assert json.loads(done.stdout)["steps"] == 20
    assert not target.exists()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from traintop.data.dataset import load_dataset

    config = TrainConfig(n_hidden=16, steps=5).validated()
    trainer = Trainer(config, load_dataset(None, config.block_size, config.split_seed))
    trainer.run()
    return save_checkpoint(trainer, tmp_path_factory.mktemp("ckpt") / "good.ckpt")


@pytest.mark.parametrize("keep", [0, 1, 30, 0.25, 0.5, 0.9, -22, -1])
def test_a_truncated_checkpoint_is_one_line(checkpoint, tmp_path, capsys, keep):
    data = checkpoint.read_bytes()
    cut = int(len(data) * keep) if isinstance(keep, float) else keep % len(data)
    path = tmp_path / "cut.ckpt"
    path.write_bytes(data[:cut])
    with pytest.raises(InputError, match=r"cut\.ckpt: not a traintop checkpoint"):
        read_header(path)
    done = traintop_here(capsys, "run", "--resume", path, "--steps", "10")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith(f"traintop: error: {path}: not a traintop checkpoint")
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def test_foreign_checkpoints_are_one_line(tmp_path, capsys):
    import torch

    cases = {
        "other.ckpt": lambda p: torch.save({"model": torch.zeros(3)}, p),
        "list.ckpt": lambda p: torch.save([1, 2, 3], p),
        "archive.ckpt": lambda p: _zip(p, "readme.txt", b"hello"),
        "evil.ckpt": lambda p: _zip(p, "archive/data.pkl", pickle.dumps(os.getcwd)),
        "empty.ckpt": lambda p: p.write_bytes(b""),
    }
    for name, make in cases.items():
        path = tmp_path / name
        make(path)
        with pytest.raises(InputError, match=rf"{name}: not a traintop checkpoint"):
            read_header(path)
        # a process of its own for the pickle that would run code: nothing of it
        # reaches the command; the others through main() here
        done = (traintop("run", "--resume", path, "--steps", "10") if name == "evil.ckpt"
                else traintop_here(capsys, "run", "--resume", path, "--steps", "10"))
        assert done.returncode == 2 and done.stderr.startswith(f"traintop: error: {path}: "), \
            done.stderr
        assert done.stderr.count("\n") == 1


def _zip(path, name: str, data: bytes) -> None:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(name, data)


# ----- export ----------------------------------------------------------------------------
@pytest.mark.parametrize("option", ["--csv", "--tensorboard"])
def test_export_on_a_full_disk_is_one_line_and_no_half_file(tmp_path, small_disk, option):
    from traintop.data.dataset import load_dataset
    from traintop.engine.export.tensorboard import tensorboard_available

    if option == "--tensorboard" and not tensorboard_available():
        pytest.skip("tensorboard is not installed")
    config = TrainConfig(n_hidden=16, steps=300, stats_every=10).validated()
    trainer = Trainer(config, load_dataset(None, config.block_size, config.split_seed))
    source = tmp_path / "run.jsonl"
    with Recorder(source) as rec:
        rec.consume(RunStarted(trainer.info()))
        trainer.run(on_step=rec.step)
    out = small_disk / "out"
    fill(small_disk, leave=20_000)
    done = traintop("export", source, option, out)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.startswith(f"traintop: error: {option} {out}")
    assert done.stderr.endswith(": cannot write: No space left on device\n")
    assert done.stderr.count("\n") == 1
    assert not out.exists()                   # no half table, no temp file, no folder it made


# ----- a recording cut mid-line ------------------------------------------------------------
def test_a_recording_cut_mid_line_replays_its_whole_lines(tmp_path):
    from traintop.data.dataset import load_dataset

    config = TrainConfig(n_hidden=16, steps=250, stats_every=50).validated()
    trainer = Trainer(config, load_dataset(None, config.block_size, config.split_seed))
    path = tmp_path / "run.jsonl"
    with Recorder(path, clock=lambda: 0.0) as rec:   # lines of 100 steps: 1-100, 101-200, ...
        rec.consume(RunStarted(trainer.info()))
        trainer.run(on_step=rec.step)
    data = path.read_bytes()
    lines = data.split(b"\n")
    third = len(b"\n".join(lines[:3])) + 1     # header, steps 1-100, 101-200
    cut = tmp_path / "cut.jsonl"
    cut.write_bytes(data[:third + 40])         # 40 bytes into the steps 201-250 line
    recording = load(cut)
    assert recording.partial_tail
    assert recorded_steps(cut) == list(range(1, 201))
    done = traintop("replay", "--json", cut)
    assert done.returncode == 0 and "Traceback" not in done.stderr
    assert json.loads(done.stdout)["steps"] == 200
