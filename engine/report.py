"""The run's report: the lecture's own printout, and the same figures as JSON."""

from __future__ import annotations

import dataclasses

import math
import textwrap

from .results import FAMILY_MEANING, RunInfo, StatsSnapshot, StepResult


# Why a linear layer has no saturation or dead figures (the report, the health
# pane's and the saturation pane's words for the lecture's --activation linear).
NO_TAILS = ("n/a: a linear stack has no activation function, so nothing saturates and no "
            "unit dies (|t| > 0.97 marks no bad regime there)")


def _finite(x: float) -> float | None:
    return x if isinstance(x, float) and math.isfinite(x) else (x if isinstance(x, int) else None)


def report_dict(trainer, last_stats: StatsSnapshot | None, last: StepResult | None,
                eval_losses: dict | None = None, samples: tuple | None = None,
                health: list | None = None, timing: dict | None = None) -> dict:
    """The JSON document of `traintop run --json` (non-finite floats become null)."""
    doc = build_report(trainer.info(), trainer.dataset.source, trainer.steps_done,
                       trainer.first_loss, trainer.lr, last_stats, last, eval_losses,
                       samples, health, timing)
    # Every change of the lr in force, by the schedule's decay or a key (set_lr).
    doc["events"] = [event_dict(e) for e in getattr(trainer, "lr_events", ())]
    return doc


def event_dict(event) -> dict:
    """An Event (traintop.engine.feed.messages) as one JSON object of the report."""
    return {"step": event.step, "kind": event.kind, "text": event.text, **event.data}


def build_report(info: RunInfo, data: str | None, steps: int, first_loss: float | None,
                 lr: float, last_stats: StatsSnapshot | None, last: StepResult | None,
                 eval_losses: dict | None = None, samples: tuple | None = None,
                 health: list | None = None, timing: dict | None = None,
                 ratios: tuple | None = None) -> dict:
    """The report from plain figures: a live trainer's or a recording's (traintop.engine.viewer.run_state).
    `ratios`: the latest update:data ratios where `last` has none (a watch()ed
    model measures them on snapshot steps only; a stopped step keeps none)."""
    doc = {
        "config": info.config,
        "data": data,
        "steps": steps,
        "first_loss": _finite(first_loss) if first_loss is not None else None,
        "last_loss": _finite(last.loss) if last is not None else None,
        "expected_initial_loss": _finite(info.expected_initial_loss),
        "lr": lr,
        "stats_step": last_stats.step if last_stats else None,
        "layers": [],
        "weights": [],
        "update_ratio_log10": {},
        "stopped": last.nonfinite.message() if last is not None and last.nonfinite else None,
    }
    if last_stats is not None:
        # `saturation_pct` is the family's share: `share` says what it counts.
        # A layer of no family (the lecture's linear stack) has no flat tails:
        # its share and dead count are null and `share` says why.
        doc["layers"] = [{
            "index": l.index, "name": l.name or f"L{l.index}", "kind": l.kind, "family": l.fam,
            "mean": l.mean, "std": l.std,
            "saturation_pct": l.saturation_pct if l.fam else None,
            "share": FAMILY_MEANING[l.fam][0] if l.fam else NO_TAILS, "grad_mean": l.grad_mean,
            "grad_std": l.grad_std, "dead": l.dead if l.fam else None, "units": l.units,
        } for l in last_stats.layers]
        doc["weights"] = [{
            "name": w.name, "shape": list(w.shape), "grad_mean": w.grad_mean,
            "grad_std": w.grad_std, "grad_data_ratio": _finite(w.grad_data_ratio),
        } for w in last_stats.weights]
    if last is not None and not last.update_ratio_log10 and last.nonfinite is None and ratios:
        last = dataclasses.replace(last, update_ratio_log10=tuple(ratios))
    if last is not None and last.update_ratio_log10:
        doc["update_ratio_log10"] = {n: _finite(r) for n, r in
                                     zip(info.param_names, last.update_ratio_log10)}
    if eval_losses is not None:
        doc["eval"] = {k: _finite(v) for k, v in eval_losses.items()}
    if samples is not None:
        doc["samples"] = list(samples)
    if health is not None:
        doc["health"] = health
    if timing is not None:
        doc["timing"] = timing
    return doc


def timing_text(t: dict) -> str:
    """One line of how the run ran (traintop.commands.run.timing_dict)."""
    minutes, seconds = divmod(t["wall_s"], 60)
    wall = f"{int(minutes)} min {seconds:.1f} s" if minutes else f"{seconds:.1f} s"
    engine = t["engine"]
    if t.get("engine_at_end", engine) != engine:   # auto: which path it had reached
        engine += f": {t['engine_at_end']} at the end"
    return (f"ran {t['steps']:,} steps in {wall} ({t['steps_per_sec']:,.0f} steps/s), "
            f"engine {engine}, {t['threads']} thread(s); history {t['history_mb']:.2f} MB, "
            f"peak RSS {t['peak_rss_mb']:.0f} MB")


def report_text(doc: dict) -> str:
    """The lecture's printout of the same figures, for people."""
    lines = [f"steps {doc['steps']:,}  first loss {fmt(doc['first_loss'])}  "
             f"last loss {fmt(doc['last_loss'])}  "
             f"(uniform guess {fmt(doc['expected_initial_loss'])})"]
    if doc["stopped"]:
        lines.append(f"stopped: {doc['stopped']}")
    for e in doc.get("events", ()):
        if e.get("kind") == "lr":
            lines.append(f"{e['text']} at step {e['step']:,}")
    if doc["layers"]:
        lines.append(f"activations (step {doc['stats_step']:,}):")
        for l in doc["layers"]:
            what = {"relu": "zeros", "gelu": "negative"}.get(l.get("family"), "saturated")
            share = ("%s: %s%%, dead %d" % (what, fmt(l["saturation_pct"], ".2f"), l["dead"])
                     if l.get("dead") is not None else "saturated: n/a, dead n/a")
            lines.append("layer %d (%10s): mean %s, std %s, %s"
                         % (l["index"], l["kind"] if l.get("name", "") in ("", f"L{l['index']}")
                            else l["name"],
                            fmt(l["mean"], "+.2f"), fmt(l["std"], ".2f"), share))
        if any(l.get("dead") is None for l in doc["layers"]):
            lines.append(f"  ({NO_TAILS.removeprefix('n/a: ')})")
        lines.append("gradients:")
        for l in doc["layers"]:
            lines.append("layer %d (%10s): mean %s, std %s"
                         % (l["index"], l["kind"], fmt(l["grad_mean"], "+f"),
                            fmt(l["grad_std"], "e")))
        lines.append("weights:")
        for w in doc["weights"]:
            ratio = w["grad_data_ratio"]
            lines.append("weight %10s | mean %s | std %s | grad:data ratio %s"
                         % (str(tuple(w["shape"])), fmt(w["grad_mean"], "+f"),
                            fmt(w["grad_std"], "e"), "nan" if ratio is None else "%e" % ratio))
    if doc["update_ratio_log10"]:
        lines.append("update:data ratio, log10 (guide -3):")
        cells = [f"{n}\u00a0{fmt(r, '+.2f')}" for n, r in doc["update_ratio_log10"].items()]
        wrapped = textwrap.wrap("   ".join(cells), width=78, initial_indent="  ",
                                subsequent_indent="  ")
        lines += [line.replace("\u00a0", " ") for line in wrapped]
    if "eval" in doc:
        lines.append("loss: " + "  ".join(f"{k} {fmt(v)}" for k, v in doc["eval"].items()))
    if "samples" in doc:
        lines.append("samples: " + " ".join(doc["samples"]))
    if "fold" in doc:
        lines.append(fold_text(doc["fold"]))
    if doc.get("timing") is not None:
        lines.append(timing_text(doc["timing"]))
    if doc.get("health") is not None:
        lines.append("health:" if doc["health"] else "health: no findings")
        for f in doc["health"]:
            value = "" if f["value"] is None else f" {f['value']:.4g} (healthy: {f['healthy']})"
            lines.append(f"  [{f['severity']}] {f['rule']} at {f['where']}{value}: {f['message']}")
    return "\n".join(lines)


def fold_text(fold: dict) -> str:
    """`--fold`'s line: the loss with and without folding, the largest logit difference."""
    if not fold["folded_layers"]:
        return (f"fold: no BatchNorm layers to fold; {fold['split']} loss "
                f"{fmt(fold['loss'])}")
    return (f"fold: {fold['folded_layers']} BatchNorm layers folded into the Linear before "
            f"each; {fold['split']} loss {fmt(fold['loss'])} unfolded, "
            f"{fmt(fold['loss_folded'])} folded; largest |logit difference| "
            f"{fmt(fold['max_abs_logit_diff'], '.2e')}")


def fmt(x, spec: str = ".4f") -> str:
    return "n/a" if x is None else format(x, spec)
