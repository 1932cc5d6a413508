"""The recording format: exact round trips, partial lines, crashes, bad files."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from traintop.data.errors import InputError
from traintop.commands import cli
from traintop.engine.feed.messages import Event, RunStarted, Status, Steps
from traintop.engine.recording.recorder import Recorder
from traintop.engine.results import NonFinite, StepResult
from traintop.engine.recording.encode import dumps, header
from traintop.engine.recording.lines import LineDecoder
from traintop.engine.recording.opener import load
from traintop.commands import replay as replay_command

RUN = ["--steps", "230", "--stats-every", "100", "--n-hidden", "16", "--depth", "3"]


def run_json(capsys, argv) -> dict:
    capsys.readouterr()
    code = cli.main(argv)
    out = capsys.readouterr().out
    assert code == 0, out
    return json.loads(out)


@pytest.mark.parametrize("name", ["run.jsonl", "run.jsonl.gz"])
def test_run_and_replay_print_identical_json(tmp_path, capsys, name):
    path = tmp_path / name
    ran = run_json(capsys, ["run", *RUN, "--eval", "train,val", "--samples", "3", "--json",
                            "--record", str(path)])
    replayed = run_json(capsys, ["replay", str(path), "--json"])
    assert replayed == ran
    assert ran["steps"] == 230 and ran["stats_step"] == 230
    assert len(ran["layers"]) == 3 and set(ran["eval"]) == {"train", "val"}
    if name.endswith(".gz"):
        assert path.read_bytes()[:2] == b"\x1f\x8b"


def test_recording_rebuilds_the_trainers_results_exactly(tmp_path):
    from traintop.data.dataset import load_dataset
    from traintop.engine.config import TrainConfig
    from traintop.engine.training.trainer import Trainer

    config = TrainConfig(steps=60, stats_every=25, n_hidden=12, depth=2)
    trainer = Trainer(config, load_dataset(None, config.block_size, config.split_seed))
    results = []
    path = tmp_path / "r.jsonl"
    with Recorder(path, meta={"data": "embedded"}) as rec:
        rec.consume(RunStarted(trainer.info()))
        trainer.run(on_step=lambda r: (results.append(r), rec.step(r)))
        trainer.set_lr(0.05)
        rec.event("lr", trainer.steps_done, "lr 0.1 -> 0.05", {"old": 0.1, "new": 0.05})
    recording = load(path)
    assert recording.meta == {"data": "embedded"} and not recording.partial_tail
    first, *rest = recording.messages
    assert first == RunStarted(trainer.info())
    read = [r for m in rest if isinstance(m, Steps) for r in m.results]
    assert read == results                      # every float, histogram and tuple equal
    assert [r.step for r in read if r.stats] == [1, 25, 50, 60]
    assert rest[-1] == Event("lr", 60, "lr 0.1 -> 0.05", {"old": 0.1, "new": 0.05})


def test_non_finite_floats_round_trip(tmp_path):
    bad = StepResult(7, math.nan, 0.1, (math.inf, -math.inf, -3.0),
                     None, NonFinite(7, "loss", "loss"))
    event = Event("evaluate", 7, "evaluate", {"losses": {"val": math.nan, "train": 2.5},
                                              "text": "plain"})
    path = tmp_path / "nan.jsonl"
    info = _info()
    with Recorder(path) as rec:
        rec.consume(RunStarted(info))
        rec.step(bad)
        rec.consume(event)
    text = path.read_text()
    assert '"NaN"' in text      # the event's NaN, as a string: JSON has none
    for line in text.splitlines():
        json.loads(line, parse_constant=lambda c: pytest.fail(f"bare {c} in JSON"))
    _, steps, got_event = load(path).messages
    (r,) = steps.results
    assert math.isnan(r.loss) and r.update_ratio_log10[:2] == (math.inf, -math.inf)
    assert r.nonfinite == NonFinite(7, "loss", "loss") and r.step == 7
    assert math.isnan(got_event.data["losses"]["val"]) and got_event.data["text"] == "plain"


def _info():
    from traintop.engine.results import RunInfo
    return RunInfo(config={"lr": 0.1}, vocab="ab", param_names=("w",), param_shapes=((2, 2),),
                   layer_kinds=("Linear",), expected_initial_loss=math.log(3))


def test_partial_last_line_is_ignored_until_complete(tmp_path):
    path = tmp_path / "p.jsonl"
    line = dumps({"t": "event", "kind": "note", "step": 3, "text": "hi", "data": {}})
    path.write_bytes(dumps(header(_info())) + line[:10])
    rec = load(path)
    assert len(rec.messages) == 1 and rec.partial_tail
    path.write_bytes(dumps(header(_info())) + line)
    assert load(path).messages[-1] == Event("note", 3, "hi", {})

    decoder = LineDecoder("x")
    assert decoder.feed(dumps(header(_info()))[:5]) == []
    assert isinstance(decoder.feed(dumps(header(_info()))[5:])[0], RunStarted)
    assert decoder.feed(line[:-1]) == [] and decoder.pending
    assert decoder.feed(b"\n") == [Event("note", 3, "hi", {})]


WRITER = """
import os, sys
from traintop.engine.feed.messages import RunStarted
from traintop.engine.recording.recorder import Recorder
from traintop.engine.results import RunInfo, StepResult
info = RunInfo({"lr": 0.1}, "ab", ("w",), ((2, 2),), ("Linear",), 1.0)
rec = Recorder(sys.argv[1])
rec.consume(RunStarted(info))
for i in range(1, 251):
    rec.step(StepResult(i, 1.0 / i, 0.1, (-3.0,)))
rec.flush()
for i in range(251, 301):
    rec.step(StepResult(i, 1.0 / i, 0.1, (-3.0,)))
os._exit(0)   # a crash: no close, nothing after the last flush
"""


@pytest.mark.parametrize("name", ["crash.jsonl", "crash.jsonl.gz"])
def test_crashed_writer_leaves_a_readable_file(tmp_path, name):
    path = tmp_path / name
    subprocess.run([sys.executable, "-c", WRITER, str(path)], check=True, cwd=".")
    steps = [r.step for m in load(path).messages if isinstance(m, Steps) for r in m.results]
    assert steps == list(range(1, 251))


def _write(path, *docs, raw: bytes = b"") -> None:
    path.write_bytes(b"".join(dumps(d) for d in docs) + raw)


def test_corrupt_line_names_file_and_line(tmp_path, capsys):
    path = tmp_path / "bad.jsonl"
    good = {"t": "event", "kind": "note", "step": 1, "text": "ok", "data": {}}
    _write(path, header(_info()), good, raw=b'{"t": "steps", "results": [[1, 2.0\n')
    with pytest.raises(InputError, match=r"bad\.jsonl:3: corrupt line"):
        load(path)
    _write(path, header(_info()), good, {"t": "steps", "results": [["x"]]})
    with pytest.raises(InputError, match=r"bad\.jsonl:3: corrupt line"):
        load(path)
    assert cli.main(["replay", str(path), "--json"]) == 2
    err = capsys.readouterr().err
    assert "bad.jsonl:3: corrupt line" in err and "Traceback" not in err
    assert err.count("\n") == 1


def test_newer_version_and_non_recordings_are_refused(tmp_path):
    path = tmp_path / "v.jsonl"
    _write(path, {**header(_info()), "version": 99})
    with pytest.raises(InputError, match=r"v\.jsonl:1: stream format version 99 is newer"):
        load(path)
    _write(path, {"hello": 1})
    with pytest.raises(InputError, match=r"v\.jsonl:1: not a traintop recording"):
        load(path)
    path.write_bytes(b"")
    with pytest.raises(InputError, match="empty recording"):
        load(path)
    with pytest.raises(InputError, match="no such file"):
        load(tmp_path / "missing.jsonl")
    gz = tmp_path / "x.jsonl.gz"
    gz.write_bytes(b"not gzip at all\n")
    with pytest.raises(InputError, match="corrupt gzip"):
        load(gz)


def test_statuses_are_thinned_but_state_changes_kept(tmp_path):
    t = [0.0]
    path = tmp_path / "s.jsonl"
    rec = Recorder(path, clock=lambda: t[0])
    rec.consume(RunStarted(_info()))
    for i in range(10):
        t[0] = i * 1.0
        rec.consume(Status(i, 0.1, True, False, 5.0))
    rec.consume(Status(10, 0.1, False, False, 5.0))   # paused: kept at once
    rec.close(Status(10, 0.1, False, True, 5.0))
    got = [m for m in load(path).messages if isinstance(m, Status)]
    assert [(s.step, s.running, s.finished) for s in got] == [
        (0, True, False), (5, True, False), (10, False, False), (10, False, True)]


def test_replay_json_imports_no_textual(tmp_path, capsys):
    path = tmp_path / "r.jsonl"
    assert cli.main(["run", *RUN, "--steps", "20", "--json", "--record", str(path)]) == 0
    code = subprocess.run(
        [sys.executable, "-c", "import sys; from traintop.commands import cli; "
         "code = cli.main(['replay', sys.argv[1], '--json']); "
         "assert 'textual' not in sys.modules, 'textual imported'; sys.exit(code)", str(path)],
        capture_output=True, text=True)
    assert code.returncode == 0, code.stderr
    assert json.loads(code.stdout)["steps"] == 20
    assert replay_command.summary(str(path))["steps"] == 20
