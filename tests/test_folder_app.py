"""The app on a folder of recordings: the sweep's overview of every run
(loss curves overlaid, saturation bars, gradient plots, update:data, each
run's worst finding), `v` into one run in full and back, a recording that
appears while attached, and a folder of more runs than the overview draws."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from traintop import watch
from traintop.engine.recording.folder_source import FolderSource
from traintop.tui.app import TraintopApp
from folder_runs import mixed_folder, tiny, watched
from tui_fakes import async_test, until

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    root = tmp_path_factory.mktemp("mixed")
    mixed_folder(root)
    return root


def status_of(app) -> str:
    return str(app.status_line.content)


def every_run_in(app, n: int) -> bool:
    return len(app.sweep.runs) == n and all(s.last is not None for s in app.sweep.runs)


@async_test
async def test_a_folder_in_the_overview_v_and_back(mixed):
    app = TraintopApp(FolderSource([str(mixed)]))
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: every_run_in(app, 3), what="three runs")
        await pilot.pause(0.2)
        app.redraw_all()
        await pilot.pause(0.1)
        assert app.view is None and app.screen.has_class("-overview")
        assert status_of(app).startswith("replay · 3 runs · steps 20-30 · every run read")
        # loss curves overlaid, one per run, each from its own recording
        assert [len(xs) > 0 for xs, _ in app.sweep_loss.lines] == [True] * 3
        assert [s.history.tick for s in app.sweep.runs] == [20, 20, 30]
        for label in ("a/small", "b/deep", "lecture"):
            assert label in app.sweep_loss.border_title
        assert [p[0] for p in app.sweep_gradients.plots] == ["a/small", "b/deep", "lecture"]
        findings = str(app.sweep_findings.content)
        assert all(f"{label}:" in findings for label in ("a/small", "b/deep", "lecture"))
        # three different models: the per-layer bars say they pair layers by position
        app.sweep_saturation.text()
        assert app.sweep_saturation.border_subtitle == "models differ: layers by position"

        await pilot.press("v")
        await until(pilot, lambda: app.view == 0, what="run 1 in full")
        assert status_of(app).startswith("run 1/3 a/small · ")
        assert app.state is app.sweep.runs[0] and app.state.step == 20
        await pilot.press("v", "v")
        await until(pilot, lambda: app.view == 2, what="run 3 in full")
        assert status_of(app).startswith("run 3/3 lecture · ")
        await pilot.press("o")
        await until(pilot, lambda: app.view is None, what="the overview again")
        assert app.screen.has_class("-overview")


@async_test
async def test_a_run_in_full_counts_its_own_findings(mixed):
    """The status line of a run in full summed every run's findings (`!!1 !1`
    on a run with none): it counts that run's only."""
    from traintop.tui.keys import tab_key
    from traintop.tui.status_line import health_summary

    app = TraintopApp(FolderSource([str(mixed)]))
    async with app.run_test(size=(160, 40)) as pilot:
        await until(pilot, lambda: every_run_in(app, 3), what="three runs")
        whole = health_summary([r.findings() for r in app.sweep.runs], tab_key("health"))
        owns = []
        for k in range(3):
            await pilot.press("v")
            await until(pilot, lambda: app.view == k, what=f"run {k + 1} in full")
            app.show_status()
            own = health_summary([app.sweep.runs[k].findings()], tab_key("health"))
            owns.append(own)
            assert ("health:" in status_of(app)) == bool(own) and own in status_of(app)
        assert any(own != whole for own in owns)   # the runs' findings differ


def steps(model, opt, w, n: int) -> None:
    X, Y = torch.randn(16, 6, generator=torch.Generator().manual_seed(1)), torch.arange(16) % 3
    for _ in range(n):
        loss = F.cross_entropy(model(X), Y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        w.step(loss)


@async_test
async def test_attach_picks_up_a_recording_that_appears(tmp_path, monkeypatch):
    monkeypatch.setattr("traintop.engine.recording.folder_source.RESCAN_SECONDS", 0.1)
    watched(tmp_path / "rank0.jsonl", steps=6, meta={"rank": 0})
    app = TraintopApp(FolderSource([str(tmp_path)], follow=True, quiet_after=30))
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: every_run_in(app, 1), what="the first run")
        assert "1 finished" in status_of(app)
        await pilot.press("v")
        await until(pilot, lambda: app.view == 0, what="run 1 in full")

        # a late rank: its writer is this test, still writing
        torch.set_num_threads(1)
        model = tiny(8, seed=1)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        w = watch(model, tmp_path / "rank1.jsonl", optimizer=opt, every=2, meta={"rank": 1})
        steps(model, opt, w, 4)
        w.flush() if hasattr(w, "flush") else None
        await until(pilot, lambda: every_run_in(app, 2), what="the late rank")
        assert app.sweep.labels == ("rank=0", "rank=1")
        assert app.view == 0 and app.state is app.sweep.runs[0]   # the run shown stays
        assert app.sweep.runs[0].step == 6                        # and keeps what it had
        await pilot.press("o")
        await until(pilot, lambda: "attach · 2 runs · steps 4-6 · 1 live · 1 finished"
                    in status_of(app), what="one live, one finished")
        app.redraw_text({"sweep_findings"})
        findings = str(app.sweep_findings.content).splitlines()
        assert findings[0].startswith("━ rank=0 (finished): ")
        assert findings[1].startswith("━ rank=1 (live): ")
        await pilot.press("v", "v")
        await until(pilot, lambda: status_of(app).startswith("run 2/2 rank=1 · attach · step 4"),
                    what="the late rank in full")
        w.close()
        await pilot.press("o")
        await until(pilot, lambda: "attach · 2 runs · steps 4-6 · 2 finished"
                    in status_of(app), what="both finished")


@async_test
async def test_more_runs_than_the_overview_draws(tmp_path):
    for k in range(18):
        watched(tmp_path / f"run{k}.jsonl", width=4, steps=3, seed=k)
    app = TraintopApp(FolderSource([str(tmp_path)]))
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: every_run_in(app, 18), what="18 runs")
        await pilot.pause(0.2)
        app.redraw_all()
        await pilot.pause(0.1)
        assert status_of(app).startswith("replay · 18 runs · 16 drawn · step 3")
        drawn = app.sweep.overview.indices
        assert len(drawn) == 16 and len(app.sweep_loss.lines) == 16
        # no findings anywhere: the latest 16 (run2..run17 by natural order)
        assert drawn == list(range(2, 18))
        assert "… 11 more runs" in str(app.sweep_findings.content)   # 7 rows + 11
        await pilot.press("V")
        await until(pilot, lambda: app.view == 17, what="the last run")
        assert status_of(app).startswith("run 18/18 run17 · ")
