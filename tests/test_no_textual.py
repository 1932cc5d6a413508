"""Import hygiene: the engine and data never load Textual (they run headless
anywhere), and the viewer's side never loads torch (the app's UI process,
replay, attach and CSV export start fast and light)."""

from __future__ import annotations

import subprocess
import sys

from helpers import ROOT
from traintop.commands.cli import main


def record_run(path, *options: str) -> None:
    """A recording to probe, made in this process (the probes are the clean
    processes; the run that writes the file needs none of its own)."""
    assert main(["run", *options, "--record", str(path)]) == 0

WALK = """
import importlib, pkgutil, sys
def walk(name):
    pkg = importlib.import_module(name)
    for mod in pkgutil.walk_packages(pkg.__path__, name + "."):
        importlib.import_module(mod.name)
"""

NO_TEXTUAL = WALK + """
walk("traintop.engine"); walk("traintop.data")
loaded = sorted(m for m in sys.modules if m == "textual" or m.startswith(("textual.", "textual_plotext", "plotext")))
print(",".join(loaded))
"""

# Every module the viewer's process may import. torch is refused outright (a
# finder that raises), so even an import inside a try block is caught.
VIEWER_MODULES = [
    "traintop", "traintop.commands.cli", "traintop.commands.app", "traintop.commands.replay",
    "traintop.commands.attach", "traintop.commands.export", "traintop.commands.options",
    "traintop.engine.results", "traintop.engine.step_block", "traintop.engine.config",
    "traintop.engine.report",
    "traintop.engine.training.history", "traintop.engine.training.checkpoint_header",
    "traintop.data.words", "traintop.data.errors",
    "traintop.engine.sweep.spec",   # --sweep is parsed in the app's UI process
]
NO_TORCH = """
import importlib, pkgutil, sys
class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch imported by the viewer's side")
sys.meta_path.insert(0, Refuse())
for pkg in ("traintop.tui", "traintop.engine.recording", "traintop.engine.health"):
    importlib.import_module(pkg)
    for mod in pkgutil.walk_packages(sys.modules[pkg].__path__, pkg + "."):
        importlib.import_module(mod.name)
for name in sys.argv[1:]:
    importlib.import_module(name)
print(len([m for m in sys.modules if m.startswith("traintop")]))
"""


def test_engine_and_data_never_load_textual():
    proc = subprocess.run([sys.executable, "-c", NO_TEXTUAL], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""


def test_the_viewer_side_never_loads_torch():
    proc = subprocess.run([sys.executable, "-c", NO_TORCH, *VIEWER_MODULES], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout) > 40   # the walk reached the tui, recording and health modules


def test_replay_json_never_loads_torch(tmp_path):
    """The whole replay --json path, on a real recording, with torch refused."""
    rec = tmp_path / "run.jsonl"
    record_run(rec, "--steps", "30", "--n-hidden", "8")
    probe = NO_TORCH + (
        "from traintop.commands.cli import main\n"
        f"assert main(['replay', '--json', {str(rec)!r}]) == 0\n")
    proc = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert '"steps": 30' in proc.stdout


def test_headless_run_never_loads_textual():
    probe = ("import sys\nfrom traintop.commands.cli import main\n"
             "code = main(['run', '--steps', '2', '--n-hidden', '8', '--json'])\n"
             "assert code == 0\n"
             "assert 'textual' not in sys.modules, 'textual was imported'\n")
    proc = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_a_replays_first_frame_is_its_head_and_first_snapshot(tmp_path):
    """The replay app's imports and its reading of the file's head load no
    numpy; the first frame (head()) is the run up to its first stats
    snapshot, decoded, and the rest comes with the polls after it; the status
    line names the snapshot shown, and says it is catching up till the end."""
    rec = tmp_path / "run.jsonl"
    record_run(rec, "--steps", "300", "--n-hidden", "8", "--stats-every", "100")
    probe = ("import sys\n"
             "import traintop.commands.replay, traintop.tui.app\n"
             "from traintop.engine.recording.replay_source import ReplaySource\n"
             "from traintop.engine.viewer.run_state import RunState\n"
             f"source = ReplaySource({str(rec)!r})\n"
             "assert 'numpy' not in sys.modules, 'numpy was imported'\n"
             "state = RunState()\n"
             "for m in source.head(): state.apply(m)\n"
             "assert state.info is not None and state.stats is not None\n"
             "assert state.step == state.stats.step == 1, (state.step, state.stats.step)\n"
             "n = len(source.marks)\n"
             "assert n == 4 and source.position()[0] == 'replay · snapshot 1/4', source.position()\n"
             "assert source.position()[1].startswith('catching up to step 300'), source.position()\n"
             "while batch := source.poll():\n"
             "    for m in batch: state.apply(m)\n"
             "assert state.step == 300 and state.stats.step == 300\n"
             "assert source.position()[0] == 'replay · snapshot 4/4', source.position()\n"
             "assert source.position()[1].startswith('end of recording'), source.position()\n")
    proc = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
