"""One lr schedule (issue 25, item 1): --lr-after defaults to a tenth of --lr,
the decay divides the lr in force by lr / lr_after in `traintop run` and in
the app's live runner alike (a `]` before the decay is kept, scaled), and
every change of lr, by key or by schedule, is an event: a marker on the
plots (the viewer's history) and a line in `--json`'s events."""

from __future__ import annotations

import io
import json
import time
from contextlib import redirect_stdout

import pytest

from traintop.commands import replay
from traintop.commands import run as run_command
from traintop.engine.config import TrainConfig
from traintop.engine.feed.messages import Command, Event, Status
from traintop.engine.live.spec import SessionSpec
from traintop.engine.training.trainer import Trainer
from traintop.engine.viewer.run_state import RunState
from helpers.runner import InProcessSession
from tui_fakes import write_words

SMALL = ["--n-hidden", "16", "--depth", "2", "--threads", "1", "--engine", "exact"]


def run_json(capsys, *argv: str) -> dict:
    capsys.readouterr()
    assert run_command.main([*argv, "--json", *SMALL]) == 0
    return json.loads(capsys.readouterr().out)


def lr_events(doc: dict) -> list[tuple]:
    return [(e["step"], e["old"], e["lr"], e.get("why")) for e in doc["events"]
            if e["kind"] == "lr"]


def test_lr_after_defaults_to_a_tenth_of_lr():
    lecture = TrainConfig().validated()
    assert lecture.lr_after is None
    assert (lecture.lr_at(99_999), lecture.lr_at(100_000)) == (0.1, 0.01)   # the lecture's
    c = TrainConfig(lr=0.001, lr_decay_step=10).validated()
    assert (c.lr_at(9), c.lr_at(10)) == (0.001, pytest.approx(0.0001))
    given = TrainConfig(lr=0.001, lr_decay_step=10, lr_after=0.0005).validated()
    assert given.lr_at(10) == 0.0005
    # a changed lr (a sweep's lr=..., a restart) moves its decay with it
    assert c.with_changes(lr=1.0).lr_at(10) == pytest.approx(0.1)


def test_run_decays_to_a_tenth_and_says_so(capsys):
    """The issue's case: it ended at lr 0.01, a tenfold increase."""
    doc = run_json(capsys, "--lr", "0.001", "--lr-decay-step", "10", "--steps", "20")
    assert doc["lr"] == pytest.approx(0.0001)
    assert lr_events(doc) == [(10, 0.001, pytest.approx(0.0001), "decay")]
    assert doc["events"][0]["text"] == "lr 0.001 -> 0.0001 (decay)"
    # the text report says it too
    assert run_command.main(["--lr", "0.001", "--lr-decay-step", "10", "--steps", "20",
                             *SMALL]) == 0
    assert "lr 0.001 -> 0.0001 (decay) at step 10\n" in capsys.readouterr().out


def test_no_event_without_a_decay_in_the_run(capsys):
    doc = run_json(capsys, "--lr-decay-step", "50", "--steps", "20")
    assert doc["lr"] == 0.1 and doc["events"] == []
    same = run_json(capsys, "--lr", "0.1", "--lr-after", "0.1", "--lr-decay-step", "10",
                    "--steps", "20")
    assert same["lr"] == 0.1 and same["events"] == []   # a "decay" to the same lr changes nothing


def test_run_and_live_runner_agree_with_a_key_before_the_decay(capsys, tmp_path):
    """The same config through `traintop run --json` and through the app's
    live runner, which gets `]` (scale_lr 2) at step 5: the run decays 0.1 ->
    0.01, the live run 0.1 -> 0.2 (the key) -> 0.02 (the decay: divided by 10,
    the key kept)."""
    words = write_words(tmp_path / "words.txt")
    argv = ["--data", str(words), "--lr-decay-step", "10", "--steps", "20", "--seed", "7"]
    doc = run_json(capsys, *argv)
    assert doc["lr"] == pytest.approx(0.01)
    assert lr_events(doc) == [(10, 0.1, pytest.approx(0.01), "decay")]

    config = run_command.config_for(run_command.build_parser().parse_args([*argv, *SMALL]))
    assert config.lr_after is None
    spec = SessionSpec(config=config, data=str(words), start_paused=True, threads=1,
                       engine="exact", checkpoint_dir=str(tmp_path))
    session = InProcessSession(spec)
    session.start()
    messages: list = []

    def wait_for(condition, what: str, timeout: float = 60.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            messages.extend(session.poll())
            if condition():
                return
            time.sleep(0.01)
        raise AssertionError(f"timed out waiting for {what}: {messages[-5:]}")

    def status():
        return [m for m in messages if isinstance(m, Status)]

    try:
        wait_for(lambda: status(), "the first status")
        for _ in range(5):
            session.send(Command("step"))
        wait_for(lambda: status()[-1].step == 5, "step 5")
        session.send(Command("scale_lr", {"factor": 2.0}))        # `]`
        wait_for(lambda: any(isinstance(m, Event) and m.kind == "lr" for m in messages),
                 "the key's event")
        session.send(Command("resume"))
        wait_for(lambda: status()[-1].finished and status()[-1].step == 20, "the end")
    finally:
        messages.extend(session.close())
    live = [(m.step, m.data["old"], m.data["lr"], m.data.get("why")) for m in messages
            if isinstance(m, Event) and m.kind == "lr"]
    assert live == [(5, 0.1, pytest.approx(0.2), None), (10, pytest.approx(0.2),
                                                          pytest.approx(0.02), "decay")]
    assert [m for m in messages if isinstance(m, Status)][-1].lr == pytest.approx(0.02)

    # The viewer: each is a marker on the plots and a line of the report.
    state = RunState()
    for m in messages:
        state.apply(m)
    assert [k.text for k in state.history.markers] == ["lr 0.1 -> 0.2", "lr 0.2 -> 0.02 (decay)"]
    report = state.report()
    assert lr_events(report) == live and report["lr"] == pytest.approx(0.02)

    # The same as a Trainer in this process: the key's scale is kept through the decay.
    trainer = Trainer(config, _dataset(words), engine="exact")
    trainer.run(5)
    trainer.set_lr(trainer.lr * 2)
    trainer.run()
    assert trainer.lr == pytest.approx(0.02)
    assert [(e.step, e.data["lr"]) for e in trainer.lr_events] == [
        (5, pytest.approx(0.2)), (10, pytest.approx(0.02))]


def _dataset(words):
    from traintop.data.dataset import build_dataset
    from traintop.data.words import read_words

    return build_dataset(read_words(words), 3, 42, source=str(words))


def test_recorded_decay_replays_as_the_run_printed_it(capsys, tmp_path):
    path = tmp_path / "run.jsonl"
    doc = run_json(capsys, "--lr-decay-step", "10", "--steps", "20", "--record", str(path))
    capsys.readouterr()
    out = io.StringIO()
    with redirect_stdout(out):
        assert replay.main([str(path), "--json"]) == 0
    replayed = json.loads(out.getvalue())
    assert replayed["events"] == doc["events"] and lr_events(doc) == [
        (10, 0.1, pytest.approx(0.01), "decay")]


def test_sweep_runs_each_decay_their_own_lr(capsys):
    doc = run_json(capsys, "--sweep", "lr=0.1,0.001", "--lr-decay-step", "10", "--steps", "20")
    assert [r["lr"] for r in doc["runs"]] == [pytest.approx(0.01), pytest.approx(0.0001)]
    assert [lr_events(r) for r in doc["runs"]] == [
        [(10, 0.1, pytest.approx(0.01), "decay")], [(10, 0.001, pytest.approx(0.0001), "decay")]]


def test_help_says_the_default():
    text = run_command.build_parser().format_help()
    assert "a tenth of --lr" in " ".join(text.split())

