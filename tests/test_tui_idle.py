"""A waiting app wakes a few times a second, not 30: while nothing streams
in (paused, finished, a replay at its cursor) the drain and redraw clocks
slow to IDLE_SECONDS; a key's command and a running source bring them back."""

from __future__ import annotations

from traintop.engine.feed.messages import Status
from traintop.tui.app import IDLE_SECONDS, POLL_SECONDS, TraintopApp
from tui_fakes import FakeSource, async_test, until
from tui_fixed_run import fixed_run


class CountingSource(FakeSource):
    def __init__(self, messages=()):
        super().__init__(messages)
        self.polls = 0

    def poll(self, limit: int = 1000):
        self.polls += 1
        return super().poll(limit)


async def polls_in(pilot, source, seconds: float) -> int:
    before = source.polls
    await pilot.pause(seconds)
    return source.polls - before


@async_test
async def test_a_paused_run_polls_slowly_and_a_running_one_fast():
    source = CountingSource(fixed_run())     # ends on a paused status
    app = TraintopApp(source)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: not source.queue and app.idle(), what="the paused run")
        idle = await polls_in(pilot, source, 1.0)
        assert idle <= 1.0 / IDLE_SECONDS + 2, idle
        # A running status: the clocks are fast again at the next wake-up.
        step = app.state.status.step
        source.push(Status(step=step, lr=0.1, running=True, finished=False, steps_per_sec=100.0))
        await until(pilot, lambda: not app.idle(), what="the running status")
        busy = await polls_in(pilot, source, 1.0)
        assert busy >= 0.5 / POLL_SECONDS, busy     # 20 a second, with room for a slow machine
        assert busy > 2 * idle


@async_test
async def test_a_key_polls_at_once_while_idle():
    source = CountingSource(fixed_run())
    app = TraintopApp(source)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: not source.queue and app.idle(), what="the paused run")
        before = source.polls
        await pilot.press("space")
        assert source.commands, "space sent nothing"
        assert not app.idle()     # the answer is due: fast clocks until it is in
        await pilot.pause(0.1)
        assert source.polls - before >= 2     # the command's own polls, not a quarter second later
