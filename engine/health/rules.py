"""The health rules: their ids and meanings, and the checks themselves.

Each check turns measured figures into Findings: frozen plain values a
viewer can sort, show and serialise. `where` names what the finding is about
in one of a few fixed shapes, so a viewer can mark it:
"layer 5 (Tanh)" (one layer of the lecture's stack, by its position in it),
"transformer.h.1.mlp.act (ReLU)" (one layer of a watched model, by its module path),
"layers 1-9" or "net.1..net.9" (a trend over the hidden blocks, first to last),
"weight 10.weight (100, 27)" (one 2-D parameter), "all weights", "loss",
or the NonFinite's own place ("layer 4 (BatchNorm1d)", "parameter C", ...).
Thresholds come from traintop.engine.health.thresholds; nothing here holds a number of its own.
"""

from __future__ import annotations

import math
import statistics

from traintop.engine.results import Calibration, NonFinite, RunInfo, StatsSnapshot
from .finding import SEVERITIES, Finding, Rule
from .step_rules import STEP_RULES
from .thresholds import DEFAULT_THRESHOLDS as T, Thresholds
from .when import (UNKNOWN, When, at_init, generic_fix, graded, init_fix, same_layer,
                   trained_fix, unknown_fix)

RULES: tuple[Rule, ...] = (
    Rule("non-finite", "Non-finite values",
         "NaN or inf in the loss, an activation, a gradient or a parameter: the run has "
         "diverged (traintop's own runs stop; a run recorded with watch() goes on). Always an "
         "error; the finding names the first place it appeared: for watch() the module (by "
         "its path) whose output went non-finite first, or the input, the parameters that "
         "held non-finite values and the step."),
    Rule("initial-loss", "Initial loss",
         "The first loss against -log(1/vocab), the loss of a uniform guess (3.2958 for 27 "
         f"characters). Warn above {T.initial_loss_warn_ratio:g}x it, error above "
         f"{T.initial_loss_error_ratio:g}x: the output starts confidently wrong and the first "
         "steps are spent squashing it (the hockey-stick loss). Scale the last layer down, "
         "unless the init's activations grow with depth or saturate: then the gain (or "
         "fan-in off) makes the logits large, and the finding says so."),
    Rule("loss-diverging", "Loss diverging",
         f"The loss's median over the last {T.loss_window} steps against the uniform guess "
         f"-log(1/vocab): above {T.loss_far_warn_ratio:g}x it (warn) or "
         f"{T.loss_far_error_ratio:g}x (error) the model predicts worse than knowing nothing; "
         f"or against its own lowest median of the run: risen {T.loss_rise_warn_ratio:g}x "
         f"(warn) or {T.loss_rise_error_ratio:g}x (error). Training is diverging: lower the "
         "learning rate and check the init (gain, fan-in, the last layer's scale)."),
    Rule("tanh-saturation", "Tanh saturation",
         "Share of a tanh- or sigmoid-like layer's outputs in the flat tails (tanh |t| > 0.97, "
         "sigmoid t < 0.015 or t > 0.985), where almost no gradient passes. The lecture aims "
         "at about 5% at init; its healthy stack without BatchNorm starts near 20% on layer 1 "
         f"and drifts up as it trains. Warn above {T.saturation_warn_pct:g}%, error above "
         f"{T.saturation_error_pct:g}%. Saturation there at init is the init's (lower the gain, "
         "keep fan-in on); grown while training it is the learning rate's (or no BatchNorm's), "
         "and only a note (info) while the loss still goes down. Not judged for ReLU- or "
         "GELU-like layers: their share of zeros or of the negative regime is no saturation "
         "(about half is normal), nor for the lecture's linear stack (n/a: no activation)."),
    Rule("dead-neurons", "Dead neurons",
         "Units (features, or channels of a convolution) that pass no gradient on every "
         "example and position of the batch: tanh/sigmoid-like saturated everywhere, "
         "ReLU-like zero everywhere, GELU/SiLU-like with the input below the flat-tail "
         "threshold everywhere (GELU -3, SiLU/Mish -6, ELU-like -5, where the slope is under "
         "about 1%). They get no gradient and never learn. Healthy: none. Warn on any, error "
         f"above {T.dead_error_pct:g}% of a layer's units (batches under "
         f"{T.dead_min_batch} observations per unit are not judged). As with saturation, "
         "dead at init is the init's, grown while training the learning rate's."),
    Rule("activation-shrink", "Activations shrinking",
         "Activation std from the first hidden block to the last, as a factor per layer. "
         f"Below x{T.shrink_warn_factor:g} (warn) or x{T.shrink_error_factor:g} (error), or "
         f"over the whole chain below x{T.shrink_chain_warn_factor:g} (warn) or "
         f"x{T.shrink_chain_error_factor:g} (error), the signal fades with depth: the init "
         "gain is too low (tanh needs 5/3, a linear stack 1) or BatchNorm is off. The "
         "lecture's tanh stack at gain 1 halves its std over five layers at x0.85 per layer."),
    Rule("activation-grow", "Activations growing",
         "The same factor above "
         f"x{T.grow_warn_factor:g} (warn) or x{T.grow_error_factor:g} (error): the signal "
         "blows up with depth and soon overflows; the gain is too high, or fan-in normalisation "
         "is off (each layer then multiplies the signal by about sqrt(fan-in))."),
    Rule("gradient-vanish", "Gradients vanishing",
         "Std of dloss/d(activation) as the gradient travels from the last hidden block back "
         f"to the first, as a factor per layer. Below x{T.vanish_warn_factor:g} (warn) or "
         f"x{T.vanish_error_factor:g} (error) the early layers hardly learn."),
    Rule("gradient-explode", "Gradients exploding",
         f"The same factor above x{T.explode_warn_factor:g} (warn) or "
         f"x{T.explode_error_factor:g} (error): the early layers get huge, unstable updates "
         "(no fan-in normalisation does this)."),
    Rule("grad-data-outlier", "Grad:data outlier",
         "A 2-D parameter whose grad:data ratio (grad std / data std) is far from the median "
         f"of the others: beyond {T.outlier_info_factor:g}x either way is info, beyond "
         f"{T.outlier_warn_factor:g}x a warning. It trains that much faster or slower than "
         "the rest; the lecture's shrunken last layer does this at init and it fades."),
    Rule("update-ratio-high", "Updates too large",
         "log10(update std / data std) should sit near -3. Judged sustained: each 2-D "
         f"weight's median over the last {T.update_window} steps, then the median over the "
         f"weights. Above {T.update_high_warn_log10:g} (warn) or "
         f"{T.update_high_error_log10:g} (error): the learning rate is too high. A single step "
         f"above {T.update_burst_log10:g} (the weights moved by a third of their size at once) "
         "is an error at once and stays for the run."),
    Rule("update-ratio-low", "Updates too small",
         f"The same sustained figure below {T.update_low_warn_log10:g} (warn) or "
         f"{T.update_low_error_log10:g} (error): the learning rate is too low and training "
         "crawls. Not judged after a burst: wrecked weights that barely move are no reason "
         "to raise the learning rate."),
    Rule("bn-running-stats", "BatchNorm running statistics",
         "After calibrating (one pass over the training set), the running mean/std each "
         "BatchNorm uses in eval mode against the exact ones. Warn when a running std is off "
         f"by more than {T.bn_std_warn_rel:.0%} or a mean by more than {T.bn_mean_warn_abs:g}, "
         f"error beyond {T.bn_std_error_rel:.0%} or {T.bn_mean_error_abs:g}: evaluation and "
         "sampling see a different network than training did."),
    Rule("no-gradient", "No gradient",
         "Weights whose gradient is exactly zero on a whole batch. The lecture's exercise 1 "
         "(--init zeros) does this to every weight: with every parameter zero each hidden "
         "output is 0 and the zero weights pass no signal back, so nothing learns but the "
         "output layer's bias (with BatchNorm, the output BatchNorm's beta): the model "
         "predicts the characters' overall frequencies and the loss settles near their "
         "entropy. An error when every weight is stuck, a warning for some."),
)
RULES += (
    Rule("monitor-error", "traintop's own error",
         "A figure traintop computes from a watched model failed (the finding names the "
         "figure and the module, the log of the 'traintop' logger has the error): the run "
         "went on without that figure, which reads as missing (NaN). Not a problem of the "
         "model: please report it with the log line."),
)
RULES += tuple(Rule(*r) for r in STEP_RULES)   # a watched run's steps: health/step_rules.py
RULE_IDS = tuple(r.id for r in RULES)


def sort_key(f: Finding) -> tuple:
    """Most severe first, then in the order of RULES, then by place."""
    return (-f.rank, RULE_IDS.index(f.rule), f.where)


def _grade(value: float, warn: float, error: float, above: bool = True) -> str | None:
    if above:
        return "error" if value > error else "warn" if value > warn else None
    return "error" if value < error else "warn" if value < warn else None


def _ok(x: float) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def _fix(lecture: bool, lecture_fix: str, generic_fix: str) -> str:
    """The lecture's own knobs (--gain, BatchNorm) only where the run has them."""
    return lecture_fix if lecture else generic_fix


SATURATING = ("tanh", "sigmoid")   # families whose share is saturation in flat tails
DEAD_WORDS = {"tanh": "saturated", "sigmoid": "saturated", "relu": "zero",
              "gelu": "below the flat-tail threshold"}


def layer_place(l) -> str:
    """A layer as a finding names it: its module path (watch()), else its
    position in the lecture's stack."""
    return l.name if l.name else f"layer {l.index}"


def layer_where(l) -> str:
    """A finding's `where` for one layer: "net.8 (Tanh)", the lecture's "layer 5 (Tanh)"."""
    return f"{layer_place(l)} ({l.kind})"


def span_where(first, last) -> str:
    """A finding's `where` for a trend: "net.2..net.14", the lecture's "layers 2-14"."""
    if first.name and last.name:
        return f"{first.name}..{last.name}"
    return f"layers {first.index}-{last.index}"


def _trend_layers(layers) -> list:
    """The layers a depth trend compares: those of the most common family (a
    stack mixing tanh, GELU and ReLU has no one scale to compare along)."""
    layers = list(layers)
    if not layers:
        return layers
    fams = [l.fam for l in layers]
    common = max(dict.fromkeys(fams), key=fams.count)
    return [l for l in layers if l.fam == common]


RECURRENT_KINDS = ("LSTM", "GRU", "RNN")


def depth_chains(layers) -> list[list]:
    """The runs of layers along which depth means something, each of one family
    (_trend_layers). The lecture's stack (no module paths) is one chain. A
    watched model's layers chain where they are children of one module (an
    nn.Sequential's `net.1`, `net.3`, ...); layers in different submodules
    (the MLPs of a transformer's residual blocks `h.0.mlp.act`, `h.1.mlp.act`,
    a ResNet's blocks), with residual adds and normalisation between them,
    are not compared with one another."""
    layers = list(layers)
    if not any(l.name for l in layers):
        return [_trend_layers(layers)] if layers else []
    groups: dict[str, list] = {}
    for l in layers:
        if l.kind in RECURRENT_KINDS:   # an LSTM's output and its gates ("rnn.l0.input_gate")
            continue
        groups.setdefault(l.name.rpartition(".")[0] if l.name else "", []).append(l)
    return [chain for group in groups.values() if len(chain := _trend_layers(group)) >= 2]


def _geo_factor(first: float, last: float, blocks: int) -> float | None:
    if blocks < 2 or not (_ok(first) and _ok(last)) or first <= 0 or last <= 0:
        return None
    return (last / first) ** (1.0 / (blocks - 1))


# ----- one snapshot ----------------------------------------------------------
def is_gate(l) -> bool:
    """A recurrent layer's gate (watch(): "rnn.l0.forget_gate"): shown, not judged
    by saturation or dead units (a forget gate held near 1 is an LSTM remembering)."""
    return l.kind in RECURRENT_KINDS and l.name.endswith("_gate")


def saturation(snap: StatsSnapshot, t: Thresholds = T, lecture: bool = True,
               when: When = UNKNOWN) -> list[Finding]:
    tanh = [l for l in snap.layers if l.fam in SATURATING and not is_gate(l)]
    rising = len(tanh) >= 2 and tanh[-1].saturation_pct > tanh[0].saturation_pct
    out = []
    for l in tanh:
        severity = _grade(l.saturation_pct, t.saturation_warn_pct, t.saturation_error_pct)
        if severity and _ok(l.saturation_pct):
            trend = ", and saturation rises with depth" if rising else ""
            init = at_init(snap, l, when, lambda b: b.saturation_pct > t.saturation_warn_pct)
            was = (lambda b: f"{b.saturation_pct:.1f}%")
            out.append(Finding(
                "tanh-saturation", graded(severity, init is False, when), layer_where(l),
                l.saturation_pct, f"<= {t.saturation_warn_pct:g}%",
                f"{l.saturation_pct:.1f}% of this layer's {l.fam} outputs sit in the flat tails "
                f"where almost no gradient passes{trend}; " + _advice(
                    lecture, init, when, "saturation", was(same_layer(when.init, l))
                    if init is False else "",
                    "scale the init of the layer feeding it down or normalise its input "
                    "(BatchNorm/LayerNorm)."), snap.step))
    return out


def _advice(lecture: bool, init: bool | None, when: When, what: str, was: str,
            generic: str) -> str:
    """The fix for a state there at init (init True), grown while training
    (False) or of unknown origin (None): the lecture's options, or in general words."""
    if not lecture:
        return generic_fix(init is False, generic)
    if init:
        return init_fix(when.config, what)
    return trained_fix(when, was) if init is False else unknown_fix(when.config)


def dead_neurons(snap: StatsSnapshot, batch_size: int, t: Thresholds = T,
                 lecture: bool = True, when: When = UNKNOWN) -> list[Finding]:
    out = []
    for l in snap.layers:
        # The lecture's batch, or a watched layer's examples x positions per unit.
        if l.fam not in DEAD_WORDS or l.units <= 0 or is_gate(l) or \
                (batch_size or l.per_unit) < t.dead_min_batch:
            continue
        pct = 100.0 * l.dead / l.units
        severity = _grade(pct, t.dead_warn_pct, t.dead_error_pct)
        if severity:
            init = at_init(snap, l, when,
                           lambda b: b.units > 0 and 100.0 * b.dead / b.units > t.dead_warn_pct)
            before = same_layer(when.init, l) if init is False else None
            out.append(Finding(
                "dead-neurons", graded(severity, init is False, when), layer_where(l), pct,
                "no dead units",
                f"{l.dead} of {l.units} units are {DEAD_WORDS[l.fam]} on every example"
                f"{'' if lecture else ' and position'} of the batch, so they get no gradient "
                "and stop learning; " + _advice(
                    lecture, init, when, "saturation",
                    f"{before.dead} dead" if before is not None else "",
                    "lower the learning rate, check the init of the layer feeding it, or "
                    "normalise its input." if l.fam in ("relu", "gelu") else
                    "scale the init of the layer feeding it down or normalise its input."),
                snap.step))
    return out


def activation_trend(snap: StatsSnapshot, t: Thresholds = T,
                     lecture: bool = True, when: When = UNKNOWN) -> list[Finding]:
    return [f for chain in depth_chains(snap.layers) for f in _activation_chain(chain, snap, t,
                                                                                 lecture, when)]


def gradient_trend(snap: StatsSnapshot, t: Thresholds = T,
                   lecture: bool = True) -> list[Finding]:
    return [f for chain in depth_chains(snap.layers) for f in _gradient_chain(chain, snap, t,
                                                                               lecture)]


def _activation_chain(layers, snap: StatsSnapshot, t: Thresholds, lecture: bool,
                      when: When = UNKNOWN) -> list[Finding]:
    if len(layers) < 2:
        return []
    first, last = layers[0], layers[-1]
    found = _chain_grades(first, last, len(layers), t)
    if found is None:
        return []
    factor, total, shrink, grow = found
    where = span_where(first, last)
    healthy = (f"x{t.shrink_warn_factor:g} to x{t.grow_warn_factor:g} per layer, and at "
               f"least x{t.shrink_chain_warn_factor:g} from first to last")
    span = (f"activation std goes from {first.std:.3g} at {layer_place(first)} to "
            f"{last.std:.3g} at {layer_place(last)} (x{factor:.2f} per layer, x{total:.2f} "
            f"over the {len(layers)} layers)")
    rule, severity = (("activation-shrink", shrink) if shrink else
                      ("activation-grow", grow) if grow else (None, None))
    if rule is None:
        return []

    def crossed(_):   # the same chain at init already crossed the same line
        a, b = same_layer(when.init, first), same_layer(when.init, last)
        then = _chain_grades(a, b, len(layers), t) if a is not None and b is not None else None
        return then is not None and bool(then[2] if shrink else then[3])

    init = at_init(snap, first, when, crossed)
    was = ""
    if init is False:
        a, b = same_layer(when.init, first), same_layer(when.init, last)
        was = f"std {a.std:.3g} to {b.std:.3g}"
    if shrink:
        text = f"{span}: the signal fades with depth; " + _advice(
            lecture, init, when, "shrink", was, "scale the init up (Kaiming gain for the "
            "activation) or add normalisation.")
    else:
        text = f"{span}: the signal blows up with depth; " + _advice(
            lecture, init, when, "grow", was, "scale the init down (by 1/sqrt(fan-in), "
            "with the activation's gain) or add normalisation.")
    return [Finding(rule, graded(severity, init is False, when), where, factor, healthy, text,
                    snap.step)]


def _chain_grades(first, last, blocks: int, t: Thresholds):
    """(factor per layer, factor first to last, shrink grade, grow grade) of a
    chain; None where the stds say nothing. A fade is judged per layer and
    over the whole chain: the lecture's tanh stack at gain 1 loses half its
    std over five layers (0.62 -> 0.32) at only x0.85 per layer."""
    factor = _geo_factor(first.std, last.std, blocks)
    if factor is None:
        return None
    total = last.std / first.std
    grades = [g for g in (
        _grade(factor, t.shrink_warn_factor, t.shrink_error_factor, above=False),
        _grade(total, t.shrink_chain_warn_factor, t.shrink_chain_error_factor, above=False))
        if g]
    shrink = max(grades, key=SEVERITIES.index) if grades else None
    grow = _grade(factor, t.grow_warn_factor, t.grow_error_factor)
    return factor, total, shrink, grow


def _gradient_chain(layers, snap: StatsSnapshot, t: Thresholds, lecture: bool
                    ) -> list[Finding]:
    if len(layers) < 2:
        return []
    first, last = layers[0], layers[-1]
    # Backprop runs from the last block to the first: the factor per layer on that way.
    factor = _geo_factor(last.grad_std, first.grad_std, len(layers))
    if factor is None:
        return []
    where = span_where(first, last)
    healthy = f"x{t.vanish_warn_factor:g} to x{t.explode_warn_factor:g} per layer"
    span = (f"gradient std goes from {last.grad_std:.2e} at {layer_place(last)} back to "
            f"{first.grad_std:.2e} at {layer_place(first)} (x{factor:.2f} per layer)")
    vanish = _grade(factor, t.vanish_warn_factor, t.vanish_error_factor, above=False)
    if vanish:
        return [Finding("gradient-vanish", vanish, where, factor, healthy,
                        f"{span}: the early layers hardly learn; " + _fix(
                            lecture, "raise --gain or turn on BatchNorm.",
                            "check the init scale, add residual connections or "
                            "normalisation."), snap.step)]
    explode = _grade(factor, t.explode_warn_factor, t.explode_error_factor)
    if explode:
        return [Finding("gradient-explode", explode, where, factor, healthy,
                        f"{span}: the early layers get huge updates; " + _fix(
                            lecture, "keep fan-in normalisation on, lower --gain or turn on "
                            "BatchNorm.", "scale the init down (by fan-in), add normalisation "
                            "or clip gradients."), snap.step)]
    return []


def grad_data_factors(weights, sparse=()) -> list[tuple[object, float, float]]:
    """(weight, its grad:data over the median of the others', that median) for
    each 2-D weight with a finite positive ratio, when there are 3 or more.
    An embedding table only the batch's rows of which move (`sparse`: the
    names, watch()'s config "sparse_params") has a sparse gradient, so its
    ratio says how few rows the batch touched: it is left out (neither judged
    nor in the others' median). The weights table (tui/weights_pane.py) marks
    what the grad-data-outlier rule judges, by this same figure."""
    sparse = set(sparse or ())
    kept = [w for w in weights if _ok(w.grad_data_ratio) and w.grad_data_ratio > 0
            and w.name not in sparse]
    if len(kept) < 3:
        return []
    out = []
    for i, w in enumerate(kept):
        median = statistics.median(o.grad_data_ratio for j, o in enumerate(kept) if j != i)
        out.append((w, w.grad_data_ratio / median, median))
    return out


def grad_data_outliers(snap: StatsSnapshot, t: Thresholds = T,
                       lecture: bool = True, sparse=()) -> list[Finding]:
    factors = grad_data_factors(snap.weights, sparse)
    weights = [w for w, _, _ in factors]
    out = []
    for w, factor, median in factors:
        distance = max(factor, 1.0 / factor)
        if distance > t.outlier_warn_factor:
            severity = "warn"
        elif distance > t.outlier_info_factor:
            severity = "info"
        else:
            continue
        faster = factor > 1
        why = (("; an output layer shrunk by --last-layer-scale does this at init (the "
                "lecture's case) and it fades as training goes on" if lecture else
                "; an output layer initialised small does this at init and it fades as "
                "training goes on") if faster and w is weights[-1]
               else "; check this parameter's init scale")
        out.append(Finding(
            "grad-data-outlier", severity, f"weight {w.name} {tuple(w.shape)}",
            w.grad_data_ratio,
            f"within {t.outlier_info_factor:g}x of the other weights' median {median:.2e}",
            f"grad:data {w.grad_data_ratio:.2e} is {distance:.0f}x "
            f"{'above' if faster else 'below'} the other weights' median, so this parameter "
            f"trains about {distance:.0f}x {'faster' if faster else 'slower'} than the "
            f"rest{why}.", snap.step))
    return out


def snapshot_findings(snap: StatsSnapshot, batch_size: int, t: Thresholds = T,
                      lecture: bool = True, sparse=(), when: When = UNKNOWN) -> list[Finding]:
    """Every rule that reads one stats snapshot. `lecture`: the run is the
    lecture's stack, so advice may name its options (--gain, BatchNorm);
    `sparse`: the embedding tables judged as sparse (grad_data_factors);
    `when`: the run's init figures and loss trend (health.when), which tell a
    state from the init from one grown while training."""
    return (saturation(snap, t, lecture, when) + dead_neurons(snap, batch_size, t, lecture, when)
            + activation_trend(snap, t, lecture, when) + gradient_trend(snap, t, lecture)
            + grad_data_outliers(snap, t, lecture, sparse) + no_gradient(snap, lecture))


def no_gradient(snap: StatsSnapshot, lecture: bool = True) -> list[Finding]:
    """Weights whose gradient is exactly zero: all of them (the symmetric
    zero init, nothing but the output bias or beta learns), or some."""
    stuck = [w for w in snap.weights if w.grad_std == 0 and w.grad_mean == 0]
    if not stuck:
        return []
    names = ", ".join(w.name for w in stuck)
    # parameters whose update is non-zero: a finite update:data ratio
    moving = [i for i, r in enumerate(snap.update_ratio_log10) if _ok(r)]
    if len(stuck) < len(snap.weights):
        return [Finding("no-gradient", "warn", f"weight {stuck[0].name} {tuple(stuck[0].shape)}"
                        if len(stuck) == 1 else "weights " + names, 0.0, "a non-zero gradient",
                        f"{names} got exactly zero gradient on this batch: "
                        "the units feeding them output nothing (dead or zero), so these "
                        "weights do not learn.", snap.step)]
    last = len(snap.update_ratio_log10) - 1
    if lecture and moving == [last]:
        learns = ("only the last parameter, the output layer's bias (with BatchNorm the "
                  "output BatchNorm's beta), gets a gradient")
    else:
        learns = (f"{len(moving)} of {len(snap.update_ratio_log10)} parameters still move "
                  "(the biases and BatchNorm betas of the output side)")
    fix = " Start from the usual random init (--init default)." if lecture else ""
    return [Finding(
        "no-gradient", "error", "all weights", 0.0, "a non-zero gradient",
        f"every weight ({names}) gets exactly zero gradient and so does every parameter "
        f"but the output's: all parameters started at zero, so each hidden output is 0 and "
        f"the zero weights pass no signal back (symmetric zeros never break); {learns}, "
        "which learns only the characters' overall frequencies: the loss settles near "
        f"their entropy and no deeper.{fix}", snap.step)]


# ----- figures outside a snapshot ------------------------------------------------
def initial_loss(first_loss: float, expected: float, vocab_size: int, step: int = 1,
                 t: Thresholds = T, cause: str | None = None) -> list[Finding]:
    """`cause`: what the init's figures blame instead of the last layer's
    scale (loss_cause), if anything."""
    if not (_ok(first_loss) and _ok(expected)) or expected <= 0:
        return []
    ratio = first_loss / expected
    severity = _grade(ratio, t.initial_loss_warn_ratio, t.initial_loss_error_ratio)
    if not severity:
        return []
    fix = cause or ("scale the last layer down (--last-layer-scale 0.1) and keep fan-in on.")
    return [Finding(
        "initial-loss", severity, "loss", first_loss,
        f"about {expected:.4f} = -log(1/{vocab_size}); at most "
        f"{expected * t.initial_loss_warn_ratio:.4f}",
        f"the first loss {first_loss:.4f} is {ratio:.2f}x the uniform guess {expected:.4f}: the "
        f"output starts confidently wrong and the first steps only squash it (the hockey "
        f"stick); {fix}", step)]


def loss_cause(snap: StatsSnapshot | None, t: Thresholds = T, lecture: bool = True,
               config: dict | None = None) -> str | None:
    """Where the init's figures (`snap`, of step 1) point at another cause of a
    high first loss than the last layer's scale: activations growing with depth
    (too high a gain, or fan-in off), or a saturated last hidden layer; the
    logits then start large whatever the last layer's scale. None: nothing
    points elsewhere."""
    if snap is None:
        return None
    config = config or {}
    for chain in depth_chains(snap.layers):
        found = _chain_grades(chain[0], chain[-1], len(chain), t)
        if found is not None and found[3]:
            last = chain[-1]
            return (f"the activations grow x{found[0]:.2f} per layer to std {last.std:.3g} at "
                    f"{layer_place(last)}, so the logits start large, not the last layer: "
                    + (init_fix(config, "grow", lead="") if lecture else
                       "scale the init down (by 1/sqrt(fan-in)) or add normalisation."))
    hidden = [l for l in snap.layers if l.fam in SATURATING and not is_gate(l)]
    if hidden and _ok(hidden[-1].saturation_pct) \
            and hidden[-1].saturation_pct > t.saturation_warn_pct:
        last = hidden[-1]
        return (f"{layer_place(last)}, the last hidden layer, is {last.saturation_pct:.1f}% "
                "saturated, so the logits start large, not only by the last layer's scale: "
                + (init_fix(config, "saturation", lead="") if lecture else
                   "scale the init of the layers down or add normalisation."))
    return None


def loss_diverging(level: float, best: float, expected: float, steps: int, step: int,
                   t: Thresholds = T, lecture: bool = True) -> list[Finding]:
    """`level`: the median loss over the last `steps` steps; `best`: the lowest
    such median of the run so far; `expected`: the uniform guess."""
    if not _ok(level):
        return []
    advice = ("training is diverging; lower the learning rate (--lr, or ] and [ live) and "
              "check the init (--gain, fan-in, --last-layer-scale)." if lecture else
              "training is diverging; lower the learning rate and check the init scale of "
              "the layers (and the output layer's).")
    found = []
    if _ok(expected) and expected > 0:
        ratio = level / expected
        far = _grade(ratio, t.loss_far_warn_ratio, t.loss_far_error_ratio)
        times = f"{ratio:,.0f}" if ratio >= 10 else f"{ratio:.1f}"
        if far:
            found.append(Finding(
                "loss-diverging", far, "loss", level,
                f"below the uniform guess {expected:.4f}, at most "
                f"{expected * t.loss_far_warn_ratio:.4f}",
                f"the loss is {level:,.4g} (median of the last {steps} steps), {times}x "
                f"the uniform guess {expected:.4f}: the model predicts worse than knowing "
                f"nothing; {advice}", step))
    if _ok(best) and best > 0:
        rise = level / best
        grade = _grade(rise, t.loss_rise_warn_ratio, t.loss_rise_error_ratio)
        if grade:
            found.append(Finding(
                "loss-diverging", grade, "loss", level,
                f"no higher than {t.loss_rise_warn_ratio:g}x its lowest median so far",
                f"the loss rose to {level:,.4g} (median of the last {steps} steps) from its "
                f"lowest {best:.4f}, {rise:.2f}x: {advice}", step))
    # One finding: the graver of the two (far above the guess on a tie).
    return sorted(found, key=lambda f: -f.rank)[:1]


def update_level(level: float, steps: int, step: int, t: Thresholds = T,
                 lecture: bool = True) -> list[Finding]:
    """`level`: median over 2-D weights of each one's median log10 update:data."""
    if not _ok(level):
        return []
    healthy = (f"{t.update_low_warn_log10:g} to {t.update_high_warn_log10:g} "
               f"(guide {t.update_guide_log10:g})")
    times = 10 ** abs(level - t.update_guide_log10)
    said = (f"log10 update:data is {level:.2f} (median of the weights over the last {steps} "
            f"steps), {times:.0f}x {'above' if level > t.update_guide_log10 else 'below'} the "
            "lecture's 1e-3 guide")
    high = _grade(level, t.update_high_warn_log10, t.update_high_error_log10)
    if high:
        return [Finding("update-ratio-high", high, "all weights", level, healthy,
                        f"{said}: the learning rate is too high; lower "
                        f"{'--lr' if lecture else 'it'}.", step)]
    low = _grade(level, t.update_low_warn_log10, t.update_low_error_log10, above=False)
    if low:
        return [Finding("update-ratio-low", low, "all weights", level, healthy,
                        f"{said}: the learning rate is too low and training crawls; raise "
                        f"{'--lr' if lecture else 'it'}.", step)]
    return []


def update_burst(level: float, step: int, t: Thresholds = T,
                 lecture: bool = True) -> list[Finding]:
    """`level`: one step's median log10 update:data over the 2-D weights."""
    if not _ok(level) or level <= t.update_burst_log10:
        return []
    return [Finding(
        "update-ratio-high", "error", "all weights", level,
        f"{t.update_low_warn_log10:g} to {t.update_high_warn_log10:g} "
        f"(guide {t.update_guide_log10:g})",
        f"at step {step:,} one update moved the median weight by {10 ** level:.0%} of its own "
        f"size (log10 {level:.2f}): the learning rate is far too high and the weights may be "
        f"wrecked for good; lower {'--lr' if lecture else 'the learning rate'} and restart.",
        step)]


def non_finite(nf: NonFinite, lecture: bool = True) -> list[Finding]:
    return [Finding("non-finite", "error", nf.where, None, "finite loss, activations, gradients",
                    f"a non-finite {nf.what} first appeared in {nf.where} at step {nf.step:,}: "
                    "the run diverged; " + _fix(
                        lecture, "lower --lr or --gain, or turn on BatchNorm.",
                        "lower the learning rate, clip gradients or check the init scale."),
                    nf.step)]


def non_finite_traced(data: dict) -> list[Finding]:
    """A watched run's non-finite trace (watch.Watcher's "non-finite" event data):
    the module path first, the parameters, the step, what to try."""
    cause = data.get("cause")
    if cause in ("module", "input") and not data.get("reran") and data.get("traced_step"):
        fix = ("traintop saw it only after an update had spread it, so the step is exact but "
               "the place is where it stands now: watch with every=1 around that step to "
               "catch the place; meanwhile lower the learning rate, clip gradients or check "
               "the init scale")
    elif cause == "module" and data.get("params"):
        fix = ("a parameter it uses held a non-finite value before the update: find what "
               "wrote it (a previous update, loaded weights, an in-place change)")
    elif cause == "module":
        fix = ("its computation overflowed or is undefined there (log or sqrt of <= 0, a "
               "division by 0, exp overflow, fp16 range): lower the learning rate, clip "
               "gradients, check the init scale or guard that operation")
    elif cause in ("input", "batch"):
        fix = "check the data: the batch holds NaN or inf (or labels out of range)"
    else:
        fix = "lower the learning rate, clip gradients or check the init scale"
    return [Finding("non-finite", "error", str(data.get("where") or "the loss"), None,
                    "finite loss, activations, gradients and parameters",
                    f"{nonfinite_text(data)}. The run diverged there; {fix}.",
                    int(data.get("step", 0)))]


def module_label(found: dict) -> str:
    """A module found by watch()'s non-finite trace: its path (the model itself:
    "(model)") and its class."""
    return f"{found['module'] or '(model)'} ({found['kind']})"


def nonfinite_text(d: dict) -> str:
    """The non-finite event's data in one line of words, the place first."""
    step, traced = f"step {d['step']:,}", d.get("traced_step")
    seen = {"loss": "loss", "gradient": "gradient"}.get(d.get("seen"), "values")
    values = f"{d['count']:,} of {d['numel']:,} values" if d.get("count") else ""
    if d["cause"] in ("module", "input") and not d.get("reran") and traced is not None:
        # Traced after an update: a non-finite gradient has spread by then.
        first = ("its input was already non-finite" if d["cause"] == "input"
                 else "the first module whose output is non-finite")
        text = (f"{d['where']}: {first} on the forward of step {traced:,} ({values}), "
                f"traced after the non-finite {seen} of {step}")
    elif d["cause"] == "module":
        text = (f"{d['where']}: its output went non-finite first, at {step} "
                f"({values} on the forward traced)")
    elif d["cause"] == "input":
        n = d["input_count"]
        text = (f"{d['where']}: it was already non-finite at {step} ({n:,} "
                f"value{'s' if n != 1 else ''}), from the data or from an operation outside "
                "any module before it")
    elif d["cause"] == "batch":
        text = (f"{d['where']}: the forward of {step} went non-finite, and with the "
                "same parameters the next batch runs finite: that batch (its input or "
                "labels) made it")
    else:
        text = f"non-finite {seen} at {step} (no forward traced after it)"
    params = d["params"]
    at = d.get("params_step")
    if d["params_before_update"]:
        when = (" before its update" if at in (None, d["step"])
                else f" before the update of step {at:,}")
    else:
        when = f" at step {at:,}" if at is not None else ""
    if params:
        names = ", ".join(f"{n} ({c:,})" for n, c in list(params.items())[:6])
        more = f" and {len(params) - 6} more" if len(params) > 6 else ""
        text += f"; parameters holding non-finite values{when}: {names}{more}"
    elif d["params_before_update"]:
        text += f"; no parameter held a non-finite value{when}"
    if d["spread"] and traced is not None:
        text += (f"; by step {traced:,}, {len(d['spread']) + len(params)} of "
                 f"{d['parameters']} parameters held non-finite values (written by the update)")
    return text


def monitor_error(data: dict, step: int) -> Finding:
    """A figure of traintop's own failed on a watched model (its "monitor-error" event)."""
    return Finding("monitor-error", "warn", str(data.get("where", "a figure")), None,
                   "every figure computed",
                   f"traintop could not compute {data.get('where', 'a figure')} "
                   f"({data.get('error', 'an error')}); the run went on without it. Not the "
                   "model's fault: please report it with the 'traintop' log line.", step)


def calibration(cal: Calibration, info: RunInfo, step: int, t: Thresholds = T) -> list[Finding]:
    out = []
    for pos, mean_diff, std_rel in zip(cal.layers, cal.mean_max_diff, cal.std_max_rel_diff):
        by_std = _grade(std_rel, t.bn_std_warn_rel, t.bn_std_error_rel) if _ok(std_rel) else None
        by_mean = (_grade(mean_diff, t.bn_mean_warn_abs, t.bn_mean_error_abs)
                   if _ok(mean_diff) else None)
        grades = [g for g in (by_std, by_mean) if g]
        if not grades:
            continue
        severity = max(grades, key=SEVERITIES.index)
        # Report the figure that crossed the worse line; std first on a tie.
        value = std_rel if by_std == severity else mean_diff
        kind = info.layer_kinds[pos] if 0 <= pos < len(info.layer_kinds) else "BatchNorm1d"
        fix = ("they were replaced by the exact values just now" if cal.applied else
               "calibrate and apply the exact values, or train longer before evaluating")
        out.append(Finding(
            "bn-running-stats", "info" if cal.applied else severity, f"layer {pos} ({kind})",
            value,
            f"std within {t.bn_std_warn_rel:.0%}, mean within {t.bn_mean_warn_abs:g}",
            f"the running std is off by up to {std_rel:.0%} and the running mean by up to "
            f"{mean_diff:.3g} from the exact training-set values, so evaluation and sampling "
            f"see a different network; {fix}.", step))
    return out
