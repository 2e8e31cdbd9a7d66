"""Schedule robustness: a trained TransMamba model evaluated under other TransPoint schedules.

The paper's Table 9 trains under one schedule and evaluates under others; a schedule the
model was not trained for costs quality. ``zoo compare --eval-schedules v1,...,v9,attention,ssm``
evaluates every trained TransMamba model under each named schedule on its task's
validation set and adds a table: rows are the trained recipes (each at its chosen learning
rate), columns the evaluation schedules, cells the mean validation loss over seeds with its
95% t-interval half-width (``zoo.training.stats``).

Names. ``trained`` is the TransPoints the model was trained with (its record; a ``random``
schedule records its evaluation schedule), ``attention`` is P = T in every layer (the model
as a grouped-attention Transformer), ``ssm`` is P = 0 (the model as Mamba2). Any other name
is a registered schedule built with its default parameters; one that has a ``relative``
parameter (the paper's v1..v9, ``paper_transformer``) is scaled to the evaluation length.

Per recipe the table adds: the best and the worst schedule (lowest and highest mean loss),
the spread ``worst / best - 1`` (computed per seed over all evaluated schedules, then its
interval over seeds), and the recipe's ``v9`` loss relative to the v9-trained recipe's
(``loss_v9 / loss_v9(reference) - 1``, paired by seed: the same seed means the same data
order and evaluation set). Models without TransMamba layers get no such columns.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

from zoo.errors import ZooError
from zoo.training.stats import Interval, t_interval

ALIASES = {"attention": "attention_only", "ssm": "ssm_only"}
TRAINED = "trained"
REFERENCE_SCHEDULE = "v9"


def schedule_choices() -> list[str]:
    """The names ``--eval-schedules`` accepts: the aliases, then every registered schedule
    that builds with its default parameters."""
    from zoo.registry import SCHEDULE

    names = []
    for name in SCHEDULE.names():
        try:
            SCHEDULE.get(name).params_model()
        except ValueError:  # needs parameters (constant, cyclic): not nameable alone
            continue
        names.append(name)
    return [TRAINED, *ALIASES, *names]


def parse_eval_schedules(text: str | None) -> list[str]:
    """``"v1,v9,attention"`` -> the names, in order, duplicates dropped; an unknown name is one
    ZooError listing the choices."""
    if text is None:
        return []
    names = list(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    choices = schedule_choices()
    unknown = [name for name in names if name not in choices]
    if unknown or not names:
        what = f"unknown schedule {', '.join(repr(n) for n in unknown)}" if unknown else "no schedule given"
        raise ZooError(f"--eval-schedules: {what}; choose from {', '.join(choices)} (comma-separated)")
    return names


def schedule_transpoints(model: Any, name: str, seq_len: int) -> list[int]:
    """Per-layer TransPoints of ``model`` under the schedule ``name`` for ``seq_len`` tokens."""
    from zoo.inference.transpoints import make_schedule

    if name == TRAINED:
        record = model.trained_transpoints
        return model.transpoints_for(seq_len) if record is None else record.at(seq_len)
    registered = ALIASES.get(name, name)
    schedule = make_schedule(registered)
    if "relative" in type(schedule.params).model_fields:
        schedule = make_schedule({"name": registered, "params": {"relative": True}})
    return schedule.transpoints(model.n_layers, seq_len)


def trained_schedule(model: Any) -> dict[str, Any] | None:
    """What a TransMamba model was trained with (name, random, per-layer TransPoints), or None
    for a model without TransPoint layers."""
    from zoo.models.pretrained import uses_transpoints

    record = getattr(model, "trained_transpoints", None)
    if record is None or not uses_transpoints(model):
        return None
    return {"name": record.schedule, "random": record.random, "transpoints": list(record.transpoints)}


def evaluate_under(trainer: Any, names: list[str]) -> dict[str, dict[str, Any]]:
    """``{name: {"transpoints": [...], "eval_loss": ..., ...}}``: the trainer's evaluation of its
    model under each schedule (empty for a model without TransPoint layers)."""
    from zoo.inference.transpoints import TransPointWarning
    from zoo.models.pretrained import uses_transpoints

    model = trainer.model
    if not names or not uses_transpoints(model):
        return {}
    seq_len = trainer.task.seq_len
    before, compiled = model.transpoints_override, trainer.compile_eval
    # eager: a compiled evaluation would recompile once per schedule (the TransPoints are
    # constants of the graph) and run into dynamo's recompile limit
    trainer.compile_eval = False
    results = {}
    try:
        for name in names:
            transpoints = schedule_transpoints(model, name, seq_len)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", TransPointWarning)  # a different schedule is the point
                model.use_transpoints(transpoints)
                results[name] = {"transpoints": transpoints, **trainer.evaluate()}
    finally:
        model.use_transpoints(before)
        trainer.compile_eval = compiled
    return results


def _seed_values(group: list[dict[str, Any]], name: str, metric: str) -> dict[int, float]:
    return {
        row["seed"]: float(row["schedule_eval"][name][metric])
        for row in group
        if metric in row.get("schedule_eval", {}).get(name, {})
    }


def _finite(value: float) -> float:
    return value if math.isfinite(value) else math.inf


def recipe_summary(group: list[dict[str, Any]], schedules: list[str], metric: str = "eval_loss") -> dict[str, Any]:
    """Per schedule the interval over seeds; best and worst by mean; the per-seed spread."""
    per_schedule = {}
    for name in schedules:
        values = list(_seed_values(group, name, metric).values())
        if values:
            per_schedule[name] = {**t_interval(values).to_dict(), "per_seed": values}
    summary: dict[str, Any] = {"per_schedule": per_schedule}
    if not per_schedule:
        return summary
    means = {name: _finite(cell["mean"]) for name, cell in per_schedule.items()}
    summary["best"] = min(means, key=means.__getitem__)
    summary["worst"] = max(means, key=means.__getitem__)
    spreads = []
    for row in group:
        evaluated = row.get("schedule_eval", {})
        losses = [_finite(float(cell[metric])) for name, cell in evaluated.items() if name in per_schedule]
        if len(losses) == len(per_schedule) and min(losses) > 0:
            spreads.append(max(losses) / min(losses) - 1)
    if spreads:
        summary["spread"] = {**t_interval(spreads).to_dict(), "per_seed": spreads}
    return summary


def relative_to(group: list[dict[str, Any]], reference: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    """``loss / loss(reference) - 1`` under schedule ``name``, paired by seed."""
    ours, theirs = _seed_values(group, name, "eval_loss"), _seed_values(reference, name, "eval_loss")
    ratios = [ours[seed] / theirs[seed] - 1 for seed in sorted(set(ours) & set(theirs)) if theirs[seed] > 0]
    return {**t_interval(ratios).to_dict(), "per_seed": ratios} if ratios else None


def robustness(rows: list[dict[str, Any]], summary: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The robustness record of ``compare.json`` (None when no run was evaluated under schedules):
    each model at its chosen learning rate (``summary``)."""
    if not any(row.get("schedule_eval") for row in rows):
        return None
    schedules = list(dict.fromkeys(name for row in rows for name in row.get("schedule_eval") or {}))
    from zoo.training.runs import recipe_key

    chosen = {cell["model"]: recipe_key(cell) for cell in summary}
    groups = {model: [r for r in rows if r["model"] == model and recipe_key(r) == key] for model, key in chosen.items()}
    recipes, notes = [], []
    for cell in summary:
        group = groups[cell["model"]]
        if not any(row.get("schedule_eval") for row in group):
            diverged = all(row.get("diverged") for row in group)
            why = (
                "every run diverged (no schedule evaluation)" if diverged else "not a TransMamba model (no TransPoints)"
            )
            notes.append(f"{cell['model']}: {why}: no schedule columns")
            continue
        trained = next((row["trained_schedule"] for row in group if row.get("trained_schedule")), None)
        entry = {"model": cell["model"], "lr": cell["lr"], "warmup": cell.get("warmup"), "trained": trained}
        entry["loss"] = recipe_summary(group, schedules)
        if any("eval_accuracy" in c for r in group for c in (r.get("schedule_eval") or {}).values()):
            entry["accuracy"] = recipe_summary(group, schedules, "eval_accuracy")
        recipes.append(entry)
    references = [e["model"] for e in recipes if _trained_with(e["trained"], REFERENCE_SCHEDULE)]
    reference = references[0] if references else None
    if len(references) > 1:
        notes.append(f"several recipes trained with {REFERENCE_SCHEDULE}; the reference is {reference}")
    if reference is None or REFERENCE_SCHEDULE not in schedules:
        notes.append(f"no recipe trained with {REFERENCE_SCHEDULE} and evaluated under it: no relative column")
    else:
        for entry in recipes:
            entry["v9_vs_reference"] = relative_to(groups[entry["model"]], groups[reference], REFERENCE_SCHEDULE)
    return {"schedules": schedules, "reference": reference, "recipes": recipes, "notes": notes}


def _trained_with(trained: dict[str, Any] | None, name: str) -> bool:
    return bool(trained) and trained["name"] == name and not trained["random"]


def _interval(cell: dict[str, Any] | None, digits: int = 4) -> str:
    if cell is None:
        return "-"
    return Interval(cell["mean"], cell["ci95"], cell["n"]).format(digits)


def _percent(cell: dict[str, Any] | None) -> str:
    if cell is None:
        return "-"
    spread = "" if cell["ci95"] is None else f" ± {100 * cell['ci95']:.2f}%"
    return f"{100 * cell['mean']:+.2f}%{spread}"


def _trained_label(trained: dict[str, Any] | None) -> str:
    if not trained:
        return "?"
    random = trained["random"] and trained["name"] != "random"
    return f"{trained['name']} (random)" if random else trained["name"]


def markdown(record: dict[str, Any]) -> str:
    """The Table-9-style tables (validation loss; accuracy too for recall tasks) and notes."""
    schedules = record["schedules"]
    head = ["recipe", "trained with", *schedules, "best", "worst", "spread (worst/best - 1)"]
    reference = f" ({record['reference']})" if record["reference"] else ""
    head += [f"{REFERENCE_SCHEDULE} loss vs the {REFERENCE_SCHEDULE}-trained recipe{reference}"]
    lines = ["validation loss under each evaluation schedule (mean ± 95% t-interval half-width over seeds)", ""]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    from zoo.training.runs import warmups_vary

    with_warmup = warmups_vary(record["recipes"])
    for entry in record["recipes"]:
        loss = entry["loss"]
        cells = [_interval(loss["per_schedule"].get(name)) for name in schedules]
        best, worst = loss.get("best"), loss.get("worst")
        warmup = f", warm-up {entry.get('warmup')}" if with_warmup else ""
        values = [f"{entry['model']} (lr {entry['lr']:g}{warmup})", _trained_label(entry["trained"]), *cells]
        values += [f"{best} {_interval(loss['per_schedule'][best])}" if best else "-"]
        values += [f"{worst} {_interval(loss['per_schedule'][worst])}" if worst else "-"]
        values += [_percent(loss.get("spread")), _percent(entry.get("v9_vs_reference"))]
        lines.append("| " + " | ".join(values) + " |")
    accuracy = [entry for entry in record["recipes"] if "accuracy" in entry]
    if accuracy:
        lines += ["", "accuracy under each evaluation schedule (mean ± 95% half-width over seeds)", ""]
        lines += ["| " + " | ".join(["recipe", *schedules]) + " |", "|" + "---|" * (len(schedules) + 1)]
        for entry in accuracy:
            cells = [_interval(entry["accuracy"]["per_schedule"].get(name), 3) for name in schedules]
            lines.append("| " + " | ".join([entry["model"], *cells]) + " |")
    lines += [
        "",
        "spread: per seed, the highest loss over the evaluated schedules divided by the lowest, minus 1; "
        f"{REFERENCE_SCHEDULE} loss vs the {REFERENCE_SCHEDULE}-trained recipe: the recipe's {REFERENCE_SCHEDULE} "
        f"loss over that recipe's, minus 1, paired by seed.",
    ]
    lines += [f"note: {note}" for note in record["notes"]]
    return "\n".join(lines)
