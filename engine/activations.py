"""Which modules of a watched model are activations, and of which family.

watch() measures the output of every module this recognises (results.FAMILY_MEANING
says what each family's share and dead units count), in this order of trust:

1. the user's own table: watch(..., activations={"MyAct": "gelu", OtherAct: None})
   (a class or its name -> a family, None: never measured);
2. torch's classes (nn.Tanh, nn.ReLU, nn.GELU, ...) and recurrent layers (nn.LSTM,
   nn.GRU, nn.RNN: their output, tanh-like; an RNN of nonlinearity "relu" relu-like);
3. other libraries' activation classes by class name (Hugging Face transformers'
   NewGELUActivation, GELUActivation, FastGELUActivation, QuickGELUActivation,
   GELUTanh / PytorchGELUTanh, SiLUActivation, MishActivation,
   ReLUSquaredActivation, ...; timm's and minGPT's), so nothing is imported;
4. any other parameter- and buffer-free leaf module defined outside torch, by its
   behaviour: its forward is called twice on a fixed ramp of 161 values in
   [-8, 8] on the CPU (no hooks, no gradient, the random streams forked) and
   the curve classified: bounded odd in [-1, 1] tanh-like, in [0, 1] through 0.5
   sigmoid-like, zero (or a straight line under 1) below 0 relu-like, dipping
   below zero and back gelu-like (with the input below which its slope stays
   under 1%: a dead unit's). Why a probe as well as names: a user's own copy of
   GELU (minGPT's `NewGELU`, a model's `class Swish`) carries a name no table
   holds, and its curve is the definition of what traintop measures. Only
   modules that cannot hold state are probed (no parameters, no buffers, not
   torch's own); a module whose output is not a same-shaped tensor, changes
   between the two calls (random) or raises is not an activation.
"""

from __future__ import annotations

import torch
from torch import nn

from .results import DEAD_INPUT_BELOW

FAMILIES = ("tanh", "sigmoid", "relu", "gelu")

TANH_LIKE = (nn.Tanh, nn.Hardtanh, nn.Softsign)              # |t| > 0.97: flat ends at +-1
SIGMOID_LIKE = (nn.Sigmoid, nn.Hardsigmoid)                   # t < 0.015 or t > 0.985
RELU_LIKE = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU)   # t <= 0: off
GELU_LIKE = (nn.GELU, nn.SiLU, nn.Mish, nn.ELU, nn.CELU, nn.SELU,
             nn.Hardswish)                                    # t < 0: negative regime
RECURRENT = (nn.RNNBase,)                                     # LSTM, GRU, RNN: their output

# Activation classes of other libraries, by class name -> (family, input below
# which a unit is dead, or None: no dead count). GELU-like -3, SiLU/Swish/Mish -6
# (results.DEAD_INPUT_BELOW gives torch's own).
BY_NAME: dict[str, tuple[str, float | None]] = {
    **dict.fromkeys((
        # Hugging Face transformers (activations.py, ACT2CLS)
        "GELUActivation", "NewGELUActivation", "FastGELUActivation", "QuickGELUActivation",
        "ClippedGELUActivation", "AccurateGELUActivation", "GELUTanh", "PytorchGELUTanh",
        "GELUPytorchTanh", "LaplaceActivation",
        # timm, minGPT, nanoGPT-likes
        "QuickGELU", "NewGELU", "GELUTanhApprox", "GeLU", "Gelu", "ApproxGELU"),
        ("gelu", -3.0)),
    **dict.fromkeys(("SiLUActivation", "SwishActivation", "Swish", "SiLU", "MishActivation",
                     "Mish", "SwishMe", "MishMe"), ("gelu", -6.0)),
    **dict.fromkeys(("HardSwish", "HardSwishMe", "HardMish", "HardMishMe"), ("gelu", -3.0)),
    **dict.fromkeys(("ReLUSquaredActivation", "ReLUSquared", "SquaredReLU", "Relu2"),
                    ("relu", None)),
    **dict.fromkeys(("HardSigmoid", "HardSigmoidMe", "SigmoidActivation"), ("sigmoid", None)),
    **dict.fromkeys(("TanhActivation",), ("tanh", None)),
}

_RAMP = torch.linspace(-8.0, 8.0, 161, dtype=torch.float64)   # step 0.1


def torch_family(module: nn.Module) -> str | None:
    if isinstance(module, TANH_LIKE):
        return "tanh"
    if isinstance(module, SIGMOID_LIKE):
        return "sigmoid"
    if isinstance(module, RELU_LIKE):
        return "relu"
    if isinstance(module, GELU_LIKE):
        return "gelu"
    if isinstance(module, RECURRENT):
        return "relu" if getattr(module, "nonlinearity", "tanh") == "relu" else "tanh"
    return None


def user_table(activations) -> dict:
    """watch()'s `activations` argument checked: {class or class name: family or None}."""
    if activations is None:
        return {}
    if not isinstance(activations, dict):
        raise ValueError("activations: a dict of {class or class name: family}, got "
                         f"{type(activations).__name__}")
    table = {}
    for key, fam in activations.items():
        if not (isinstance(key, str) or isinstance(key, type)):
            raise ValueError(f"activations: a key is a module class or its name, got {key!r}")
        if fam is not None and fam not in FAMILIES:
            raise ValueError(f"activations[{key!r}]: one of {', '.join(FAMILIES)} or None, "
                             f"got {fam!r}")
        table[key] = fam
    return table


def recognise(module: nn.Module, table: dict | None = None, probe: bool = True
              ) -> tuple[str, float | None, str] | None:
    """(family, dead input threshold or None, how: "user" | "torch" | "name" | "probe")
    for an activation module, None for any other."""
    cls = type(module)
    # the class itself, its name, then a class of the table it derives from
    keys = (cls, cls.__name__, *(k for k in (table or {}) if isinstance(k, type)
                                 and k is not cls and isinstance(module, k)))
    for key in keys:
        if table and key in table:
            fam = table[key]
            if fam is None:
                return None
            known = BY_NAME.get(cls.__name__)
            below = known[1] if known and known[0] == fam else (
                DEAD_INPUT_BELOW.get(cls.__name__) if fam == "gelu" else None)
            return fam, below, "user"
    fam = torch_family(module)
    if fam is not None:
        below = DEAD_INPUT_BELOW.get(cls.__name__) if fam == "gelu" else None
        return fam, below, "torch"
    if cls.__name__ in BY_NAME:
        fam, below = BY_NAME[cls.__name__]
        return fam, below, "name"
    if probe and _probeable(module):
        found = probe_family(module)
        if found is not None:
            return found[0], found[1], "probe"
    return None


def _probeable(module: nn.Module) -> bool:
    if any(True for _ in module.children()) or any(True for _ in module.parameters()) \
            or any(True for _ in module.buffers()):
        return False
    return not type(module).__module__.startswith("torch.")


def probe_family(module: nn.Module) -> tuple[str, float | None] | None:
    """The family of a stateless module by its curve on [-8, 8] (module docstring)."""
    try:
        x = _RAMP.to(torch.float32)
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            y1 = module.forward(x.clone())
            y2 = module.forward(x.clone())
        if not (isinstance(y1, torch.Tensor) and isinstance(y2, torch.Tensor)) \
                or y1.shape != x.shape or not y1.is_floating_point() \
                or not torch.equal(y1, y2) or not torch.isfinite(y1).all():
            return None
        return classify(_RAMP, y1.detach().to("cpu", torch.float64))
    except Exception:
        return None


def classify(x: torch.Tensor, y: torch.Tensor) -> tuple[str, float | None] | None:
    """A curve y = f(x) on an increasing ramp symmetric about 0 -> (family, dead below)."""
    tol = 1e-3
    if torch.allclose(y, x, atol=tol):
        return None                                    # the identity: no activation
    neg, pos = x < 0, x > 0
    lo, hi = float(y.min()), float(y.max())
    ends = float(y[0]), float(y[-1])
    if lo >= -1 - tol and hi <= 1 + tol and ends[0] < -0.99 and ends[1] > 0.99 \
            and torch.allclose(y, -y.flip(0), atol=1e-2):
        return "tanh", None
    mid = float(y[len(y) // 2])
    if lo >= -tol and hi <= 1 + tol and ends[0] < 0.01 and ends[1] > 0.99 \
            and abs(mid - 0.5) < 0.05:
        return "sigmoid", None
    yp = y[pos]
    # Above 0 an unbounded-ish rising curve (ReLU6 reaches 6 at 6, y = x^2 64 at 8).
    if not (float(yp[-1]) >= 4.0 and bool((yp[1:] - yp[:-1] >= -tol).all())
            and float(yp[5:].min()) > 0):
        return None
    yn, xn = y[neg], x[neg]
    if bool((yn.abs() <= tol).all()):
        return "relu", None
    slope = yn / xn
    if bool((yn < 0).all()) and float(slope.max() - slope.min()) < 1e-2 and float(slope.max()) < 1:
        return "relu", None                            # leaky: a straight line under 1
    if float(yn.min()) < -tol and float(yn.min()) > -3.0:
        d = (y[1:] - y[:-1]) / (x[1:] - x[:-1])        # slope between ramp points
        mids = (x[1:] + x[:-1]) / 2
        flat = (d.abs() < 0.01) & (mids < 0)
        below = None
        k = 0
        while k < len(flat) and bool(flat[k]):          # flat from the left end on
            k += 1
        if k:
            below = round(float(mids[k - 1]), 1)
        return "gelu", below
    return None


def types_text(names) -> str:
    """The module types of a model, for "no activation recognised among: ..."."""
    seen = list(dict.fromkeys(names))
    return ", ".join(seen[:12]) + (f" and {len(seen) - 12} more" if len(seen) > 12 else "")
