"""Snapshots of the replay app and of the health tab with findings, fed by the
run made of formulas (tests/tui_fixed_run.py): the same on every CPU.

Regenerate after a deliberate change of the layout with
`python -m pytest tests/test_tui_replay_snapshots.py --snapshot-update`.
"""

from __future__ import annotations

import pytest

from traintop.engine.recording.replay_source import ReplaySource
from traintop.tui.app import TraintopApp
from tui_fakes import FakeSource
from tui_fixed_run import fixed_run
from tui_recordings import record


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    return record(fixed_run(), tmp_path_factory.mktemp("snap") / "run.jsonl")


def at_step(step: int, *keys: str):
    async def run_before(pilot) -> None:
        app = pilot.app
        await pilot.press(*keys)
        for _ in range(100):
            if app.state.step == step and app.state.status is not None:
                break
            await pilot.pause(0.05)
        assert app.state.step == step
        await pilot.pause(0.2)
        app.redraw_all()
        app.clear_notifications()
        await pilot.pause(0.1)
    return run_before


def test_replay_at_a_snapshot(snap_compare, recording):
    """Home, then two snapshots on: step 200, just before the recorded lr change."""
    app = TraintopApp(ReplaySource(recording, speed=100.0), title="replay")
    assert snap_compare(app, terminal_size=(120, 40),
                        run_before=at_step(200, "home", "right", "right"))


def test_replay_at_the_end(snap_compare, recording):
    """The whole recording: the lr marker at step 200 and the val point."""
    app = TraintopApp(ReplaySource(recording, speed=100.0), title="replay")
    assert snap_compare(app, terminal_size=(120, 40), run_before=at_step(400))


def test_health_tab_with_findings(snap_compare):
    """The health rules on the fixed run: one unit of a Tanh layer is dead."""
    messages = fixed_run()
    app = TraintopApp(FakeSource(messages), title="traintop")
    assert snap_compare(app, terminal_size=(120, 40), run_before=at_step(400, "4"))
