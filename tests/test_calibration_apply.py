"""`C` applies the exact BatchNorm statistics and re-evaluates, `F` folds
(issue 25, the lecture's exercises in the app): the keys send the commands,
the live runner answers them on a real trainer, and the BatchNorm pane shows
the losses, checked against the stack written out by hand (tests/bn_direct.py)."""

from __future__ import annotations

import io
import queue

import pytest
import torch
from rich.console import Console

from traintop.data.dataset import build_dataset
from traintop.engine.config import TrainConfig
from traintop.engine.feed.messages import Command, Event, RunStarted, Status
from traintop.engine.live.runner import Runner
from traintop.engine.live.spec import SessionSpec
from traintop.engine.training.threads import apply_threads
from traintop.engine.training.trainer import Trainer
from traintop.tui.app import TraintopApp
from tui_fakes import FakeSource, async_test, small_words, until

import bn_direct

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
CONFIG = TrainConfig(n_hidden=30, steps=40, stats_every=20)


class Sent(list):
    """The runner's message queue: what it puts, kept."""

    def put(self, message) -> None:
        self.append(message)


def trained() -> tuple[Trainer, Runner, Sent]:
    apply_threads(1)
    trainer = Trainer(CONFIG, build_dataset(small_words(), source="small"), engine="fast")
    trainer.run()
    sent = Sent()
    return trainer, Runner(trainer, SessionSpec(config=CONFIG), queue.Queue(), sent, parent=1), sent


def answer(runner: Runner, sent: Sent, command: Command) -> Event:
    sent.clear()
    runner.handle(command)
    [event] = [m for m in sent if isinstance(m, Event)]
    return event


def test_apply_re_evaluates_on_the_exact_statistics():
    trainer, runner, sent = trained()
    stack, val = trainer.stack, trainer.dataset.val
    running = bn_direct.loss(stack, val)                       # before: running estimates
    exact = bn_direct.exact_stats(stack, trainer.dataset.train.X)
    on_exact = bn_direct.loss(stack, val, stats=exact)
    event = answer(runner, sent, Command("calibrate", {"apply": True}))
    data = event.data
    assert event.kind == "calibrate" and data["applied"] is True and data["split"] == "val"
    assert data["loss_running"] == pytest.approx(running, rel=1e-5)
    assert data["loss_exact"] == pytest.approx(on_exact, rel=1e-5)
    assert abs(on_exact - running) > 1e-4      # 40 steps in, the estimates are still off
    assert event.text.endswith(f"applied: val loss {running:.4f} -> {on_exact:.4f}")
    # The run goes on with the exact statistics in place.
    for (_, bn), (mean, var) in zip(stack.batchnorms(), exact):
        assert torch.allclose(bn.running_mean, mean, atol=1e-5)
        assert torch.allclose(bn.running_var, var, rtol=1e-4)
    assert bn_direct.loss(stack, val) == pytest.approx(on_exact, rel=1e-6)
    # c alone compares and changes nothing.
    compared = answer(runner, sent, Command("calibrate", {"apply": False}))
    assert compared.data["applied"] is False and "loss_exact" not in compared.data


def test_fold_answers_with_the_losses():
    trainer, runner, sent = trained()
    stack, val = trainer.stack, trainer.dataset.val
    event = answer(runner, sent, Command("fold"))
    assert event.kind == "fold" and event.data["folded_layers"] == 6
    assert event.data["loss"] == pytest.approx(bn_direct.loss(stack, val), rel=1e-5)
    assert event.data["loss_folded"] == pytest.approx(
        bn_direct.loss(stack, val, folded=True), rel=1e-5)
    assert event.data["max_abs_logit_diff"] < 1e-4


@async_test
async def test_c_and_f_keys_in_the_app():
    trainer, runner, sent = trained()
    source = FakeSource([RunStarted(trainer.info(), None),
                         Status(step=40, lr=0.1, running=False, finished=True,
                                steps_per_sec=100.0)])
    app = TraintopApp(source)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: not source.queue and app.state.info is not None)
        await pilot.press("4")             # the health tab: the BatchNorm pane
        await pilot.press("C")
        await until(pilot, lambda: source.commands)
        assert source.commands[-1] == Command("calibrate", {"apply": True})
        await pilot.press("F")
        await until(pilot, lambda: len(source.commands) == 2)
        assert source.commands[-1] == Command("fold", {})
        # The child answers them (here in-process), and the pane shows the answers.
        answers = [answer(runner, sent, c) for c in source.commands]
        source.push(*answers)
        await until(pilot, lambda: app.state.fold is not None)
        await pilot.pause(0.2)
        console = Console(file=io.StringIO(), width=200)
        console.print(app.calibration.content)
        shown = console.file.getvalue()
        assert app.calibration.display
        cal = answers[0].data
        assert (f"applied the exact statistics: val loss {cal['loss_running']:.4f} (running) "
                f"-> {cal['loss_exact']:.4f} (exact)") in shown
        assert f"step 40: {answers[1].text}" in shown
        assert f"{answers[1].data['loss_folded']:.4f} folded" in shown
        assert app.calibration.border_title == "BatchNorm: running vs exact · step 40"
