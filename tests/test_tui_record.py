"""`traintop --record`: the live app writes what the session emits, and
`traintop replay` reads it back with its interventions."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from traintop.commands import cli
from traintop.engine.config import TrainConfig
from traintop.engine.feed.messages import Event, RunStarted, Steps
from traintop.engine.recording.replay_source import ReplaySource
from traintop.engine.recording.recording_source import RecordingSource
from traintop.engine.live.session import LiveSession
from traintop.engine.live.spec import SessionSpec
from traintop.engine.recording.opener import load
from traintop.tui.app import TraintopApp
from traintop.commands.app import build_parser, spec_from_args
from tui_fakes import async_test, run_word, write_words, until

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")




def lines_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_bytes().splitlines(keepends=True)
            if line.endswith(b"\n")]


@async_test
async def test_the_app_records_a_session_that_replay_reads(tmp_path, capsys):
    words = write_words(tmp_path / "words.txt")
    path = tmp_path / "session.jsonl"
    config = TrainConfig(n_hidden=16, depth=2, steps=1_000_000, stats_every=20)
    session = LiveSession(SessionSpec(config=config, data=str(words), start_paused=True,
                                      engine="fast"))   # no background compile
    source = RecordingSource(session, path, meta={"data": str(words), "writer": "test"})
    app = TraintopApp(source)
    status = lambda: str(app.status_line.content)  # noqa: E731
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: run_word(status()) == "paused", what="the paused start")
        for _ in range(3):
            await pilot.press("n")
        await until(pilot, lambda: app.state.step == 3, what="three steps")
        await pilot.press("right_square_bracket")
        await until(pilot, lambda: " · lr 0.2 · " in status(), what="lr x2")
        # Paused: nothing new comes, yet the lr change reaches the file.
        await until(pilot, lambda: any(d.get("kind") == "lr" for d in lines_of(path)),
                    what="the paused flush")
        await pilot.press("space")
        await until(pilot, lambda: app.state.step >= 60, what="training")
        await pilot.press("G")                      # restart with gain 2
        await until(pilot, lambda: " · gain 2 · " in status(), what="the restart")
        await until(pilot, lambda: app.state.step >= 40, what="the new run")
        await pilot.press("e")
        await until(pilot, lambda: len(app.state.history.val_loss) == 1, what="evaluate")
        await pilot.press("s")
        await until(pilot, lambda: app.state.samples is not None, what="samples")
        shown = app.state.step
        evaluated, sampled = app.state.eval_losses, app.state.samples
        await pilot.press("q")
    assert not session.is_alive()

    recording = load(path)
    assert recording.meta == {"data": str(words), "writer": "test"}
    kinds = [(type(m).__name__, getattr(m, "kind", None)) for m in recording.messages]
    assert ("Event", "lr") in kinds and ("Event", "evaluate") in kinds
    restarts = [m for m in recording.messages if isinstance(m, RunStarted)]
    assert [r.why for r in restarts] == [None, "restart: gain 2"]
    second = recording.messages[recording.messages.index(restarts[1]):]
    steps = [r.step for m in second if isinstance(m, Steps) for r in m.results]
    assert steps == list(range(1, len(steps) + 1)) and steps[-1] >= shown

    # The replay reads it, marks the interventions and sums it up.
    assert any(isinstance(m, Event) and m.kind == "lr" for m in load(path).messages)
    assert cli.main(["replay", str(path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["steps"] == steps[-1] and doc["config"]["gain"] == "2"
    # The app's evaluation and samples come back in the summary, as `traintop run` reports them.
    assert set(doc["eval"]) == {"train", "val"}
    assert doc["eval"] == pytest.approx(evaluated) and doc["eval"]["val"] > 0
    assert doc["samples"] == list(sampled) and len(sampled) == 10


def test_record_and_engine_options(tmp_path):
    args = build_parser().parse_args(["--record", str(tmp_path / "r.jsonl"),
                                      "--engine", "fast"])
    assert args.record == str(tmp_path / "r.jsonl") and spec_from_args(args).engine == "fast"
    assert spec_from_args(build_parser().parse_args([])).engine == "auto"   # the default


def test_unwritable_record_path_is_one_line(tmp_path):
    target = tmp_path / "no" / "such" / "run.jsonl"
    done = subprocess.run([sys.executable, "-m", "traintop", "--record", str(target)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip() == (f"traintop: error: --record {target}: no such directory "
                                   f"{target.parent}")


def test_the_session_builds_the_chosen_engine(tmp_path):
    from traintop.engine.live.child import build as _build

    words = write_words(tmp_path / "words.txt")
    config = TrainConfig(n_hidden=8, depth=1, steps=10)
    for engine in ("exact", "fast", "auto"):
        trainer = _build(SessionSpec(config=config, data=str(words), threads=1, engine=engine))
        assert trainer.engine == engine


def test_app_command_wires_record_and_engine(tmp_path, monkeypatch):
    """`traintop --record PATH --engine fast`: the app gets a recording source
    around a session built with the chosen engine; closing it ends the file."""
    import traintop.tui.app
    from traintop.commands import app as app_command

    words = write_words(tmp_path / "words.txt")
    path = tmp_path / "app.jsonl"
    seen = {}

    def fake_run_app(source, title="traintop", refresh=None):
        seen["source"], seen["refresh"] = source, refresh
        source.start()
        deadline = time.monotonic() + 60
        steps = 0
        while steps < 30 and time.monotonic() < deadline:
            steps = max([steps] + [m.results[-1].step for m in source.poll()
                                   if isinstance(m, Steps)])
            time.sleep(0.02)
        source.close()
        return 0

    monkeypatch.setattr(traintop.tui.app, "run_app", fake_run_app)
    assert app_command.main(["--record", str(path), "--engine", "fast", "--data", str(words),
                             "--steps", "30", "--n-hidden", "8", "--depth", "1"]) == 0
    source = seen["source"]
    assert isinstance(source, RecordingSource) and source.source.spec.engine == "fast"
    assert seen["refresh"] == 0.8
    recording = load(path)
    assert recording.meta["writer"] == "traintop app"
    assert recording.messages[0].info.config["n_hidden"] == 8
    steps = [r.step for m in recording.messages if isinstance(m, Steps) for r in m.results]
    assert steps == list(range(1, 31))
    assert not recording.partial_tail


def test_the_recording_keeps_what_the_source_sent_while_closing(tmp_path, small_dataset):
    """Steps a live child took after the viewer's last poll reach the file."""
    from traintop.engine.training.trainer import Trainer

    trainer = Trainer(TrainConfig(n_hidden=16, depth=2, steps=10), small_dataset)
    results = [trainer.step() for _ in range(5)]

    class Closing:
        def start(self): ...
        def send(self, command): ...

        def poll(self, limit=1000):
            out, self.first = getattr(self, "first", [RunStarted(trainer.info()),
                                                      Steps(tuple(results[:2]))]), []
            return out

        def close(self):
            return [Steps(tuple(results[2:]))]

    path = tmp_path / "r.jsonl"
    source = RecordingSource(Closing(), path)
    assert len(source.poll()) == 2
    assert [type(m).__name__ for m in source.close()] == ["Steps"]
    steps = [r.step for m in load(path).messages if isinstance(m, Steps) for r in m.results]
    assert steps == [1, 2, 3, 4, 5]
