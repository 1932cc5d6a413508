"""Where a Ray Tune trial's recording goes, in one line.

    from traintop import watch
    from traintop.ray import trial_path

    def trainable(config):
        w = watch(model, trial_path("traintop.jsonl"), optimizer=opt)

The trial's folder of the experiment (`~/ray_results/NAME/TRIAL/`, beside its
params.json), so `traintop attach ~/ray_results/NAME` shows every trial live
and labels each by its config. Tune's `get_trial_dir()` alone is not that
folder: since Ray 2.7 it is a staging folder under /tmp/ray/session_*/ whose
files reach the experiment's folder only when artifacts are synced (and a
trial's working directory, where a relative path lands, is another one).
"""

from __future__ import annotations

import os

from traintop.callback_support import missing

try:
    from ray import tune
except ImportError:
    raise missing("ray", "ray", "'ray[tune]'") from None

__all__ = ["trial_path"]


def trial_path(name: str = "traintop.jsonl") -> str:
    """`name` in this trial's folder of the experiment, where the experiment's
    storage is a local or mounted path (else in Tune's trial directory, which Ray
    syncs to remote storage with the trial's other artifacts). The folder is made."""
    folder = None
    context = tune.get_context()
    try:
        storage = context.get_storage()
        import pyarrow.fs
        if isinstance(storage.storage_filesystem, pyarrow.fs.LocalFileSystem):
            folder = storage.trial_fs_path
    except Exception:      # no storage context (an older Ray, a test double): Tune's directory
        folder = None
    if folder is None:
        try:
            folder = context.get_trial_dir()
        except Exception:
            folder = None
    if not folder:
        raise RuntimeError("traintop.ray.trial_path: not inside a Ray Tune trial "
                           "(call it in the trainable; outside Tune pass watch() a path)")
    os.makedirs(folder, exist_ok=True)
    return os.path.join(folder, name)
