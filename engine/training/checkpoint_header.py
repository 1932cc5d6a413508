"""A checkpoint's header (format, version, config) read without torch.

The app's UI process checks `--resume FILE` before the screen opens but must
not load libtorch (only the trainer child does). torch.save writes a zip
whose data.pkl is an ordinary pickle in which tensors are references to
other members; unpickling it with those references stubbed out yields the
plain dict and None for every tensor, so the header is read, and a foreign
or truncated file refused, without torch and without running its code.
"""

from __future__ import annotations

import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path

from traintop.data.errors import InputError

FORMAT = "traintop-checkpoint"
VERSION = 1


def _stub(*_args, **_kwargs):
    return None


class _HeaderUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if module == "collections" and name == "OrderedDict":
            return OrderedDict
        if module == "torch" or module.startswith("torch."):
            return _stub   # tensor and storage rebuilders: the header needs none of them
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a checkpoint")

    def persistent_load(self, pid):
        return None


def read_header(path: str | Path) -> dict:
    """The checkpoint's top-level dict, tensors as None; one clear line if it is not one."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
            if len(pickles) != 1:
                raise InputError(f"{path}: not a traintop checkpoint")
            state = _HeaderUnpickler(archive.open(pickles[0])).load()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, not a checkpoint") from None
    except PermissionError:
        raise InputError(f"{path}: cannot read: permission denied") from None
    except InputError:
        raise
    except zipfile.BadZipFile:
        raise InputError(f"{path}: not a traintop checkpoint (truncated, or not a "
                         "checkpoint file)") from None
    except Exception as exc:  # a damaged pickle raises many kinds
        raise InputError(f"{path}: not a traintop checkpoint ({type(exc).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise InputError(f"{path}: not a traintop checkpoint")
    if state.get("version") != VERSION:
        raise InputError(f"{path}: checkpoint version {state.get('version')!r} is not "
                         f"supported (this traintop reads version {VERSION})")
    return state
