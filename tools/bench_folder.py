"""Measure a folder of many recordings in the app (issue 24: hundreds stay usable).

    python tools/bench_folder.py [--runs 200] [--steps 200] [--dir DIR]

Writes `--runs` recordings with watch() (tiny models of 5 widths, one per
trial folder, every=2) under DIR (a temporary folder by default; an existing
DIR with recordings is used as it is), then prints one JSON document:
- json_s: `traintop replay DIR --json`, a fresh process, start-up included;
- replay_s / attach_s: the app (Textual's Pilot at 120x40) from its start
  until every run's last step is in;
- redraw_ms: one forced redraw of each overview plot, every run in;
- drawn: how many runs the overview draws.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def write(root: Path, runs: int, steps: int) -> None:
    import torch
    import torch.nn.functional as F
    from torch import nn

    from traintop import watch

    torch.set_num_threads(1)     # tiny models: more threads only contend
    for k in range(runs):
        torch.manual_seed(k)
        width = 8 + k % 5
        model = nn.Sequential(nn.Linear(6, width), nn.Tanh(), nn.Linear(width, 3))
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        X, Y = torch.randn(32, 6), torch.randint(0, 3, (32,))
        path = root / f"trial{k:03d}" / "run.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with watch(model, path, optimizer=opt, every=2) as w:
            for _ in range(steps):
                loss = F.cross_entropy(model(X), Y)
                opt.zero_grad()
                loss.backward()
                opt.step()
                w.step(loss)


async def in_app(root: Path, follow: bool, runs: int) -> dict:
    from traintop.engine.recording.folder_source import FolderSource
    from traintop.tui.app import TraintopApp

    app = TraintopApp(FolderSource([str(root)], follow=follow))
    start = time.perf_counter()
    async with app.run_test(size=(120, 40)) as pilot:
        while not (len(app.sweep.runs) == runs and not app.source.catching_up
                   and all(r.last is not None for r in app.sweep.runs)):
            await pilot.pause(0.05)
        took = time.perf_counter() - start
        await pilot.pause(0.5)
        redraw = {}
        for name in ("sweep_loss", "sweep_ratio", "sweep_activations", "sweep_gradients"):
            pane = getattr(app, name, None)
            if pane is not None:
                t = time.perf_counter()
                pane.replot(force=True)
                redraw[name] = round((time.perf_counter() - t) * 1000)
        return {"s": round(took, 2), "redraw_ms": redraw,
                "drawn": len(app.sweep.overview.indices)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--dir", type=Path)
    args = parser.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="traintop-folder-"))
    if not any(root.rglob("*.jsonl")):
        write(root, args.runs, args.steps)
    runs = len(list(root.rglob("*.jsonl")))
    t = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "traintop", "replay", str(root), "--json"],
                          capture_output=True, check=True)
    json_s = time.perf_counter() - t
    assert len(json.loads(done.stdout)["runs"]) == runs
    replay = asyncio.run(in_app(root, False, runs))
    attach = asyncio.run(in_app(root, True, runs))
    print(json.dumps({"runs": runs, "dir": str(root), "bytes": sum(
        p.stat().st_size for p in root.rglob("*.jsonl")), "json_s": round(json_s, 2),
        "replay_s": replay["s"], "attach_s": attach["s"], "drawn": replay["drawn"],
        "redraw_ms": replay["redraw_ms"]}, indent=2))


if __name__ == "__main__":
    main()
