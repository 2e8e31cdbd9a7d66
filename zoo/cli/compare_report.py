"""What ``zoo compare`` writes. Its tables (stdout and ``compare.md``): each model at its
chosen recipe (learning rate, and warm-up when it was swept), every recipe a model ran, and
the parameter-match note; cells are mean ± the 95% t-interval half-width over seeds
(``zoo.training.stats.Interval``). ``compare.json``'s text, and the curves of
``compare.png``."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

PARAM_MATCH = 0.02  # parameter counts further apart than this are flagged as unmatched
CURVE_POINTS = 100  # training-loss points per run that compare.json keeps (every point stays in the run's log)


def _cell(metric: dict[str, Any] | None, digits: int = 4) -> str:
    if metric is None:
        return "-"
    from zoo.training.stats import Interval

    return Interval(metric["mean"], metric["ci95"], metric["n"]).format(digits)


def _recipe(cell: dict[str, Any], with_warmup: bool) -> str:
    return f"{cell['lr']:g}" + (f", warm-up {cell.get('warmup')}" if with_warmup else "")


def markdown_table(summary: list[dict[str, Any]], *, accuracy: bool, with_warmup: bool | None = None) -> str:
    """Mean ± 95% t-interval half-width over seeds, each model at its chosen recipe (the lr
    column names the warm-up too when ``with_warmup``; default: when the models' differ)."""
    if with_warmup is None:
        from zoo.training.runs import warmups_vary

        with_warmup = warmups_vary(summary)
    head = ["model", "params", "lr, warm-up steps" if with_warmup else "lr", "seeds", "tokens", "eval loss"]
    head += ["accuracy (chance)"] if accuracy else ["eval ppl"]
    head += ["tokens/s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for cell in summary:
        if accuracy:
            chance = cell.get("eval_chance")
            floor = f" (chance {chance['mean']:.3g})" if chance else ""
            metric = _cell(cell.get("eval_accuracy"), 3) + floor
        else:
            metric = _cell(cell.get("eval_ppl"))
        seeds = str(len(cell["seeds"])) + (f" ({cell['diverged']} diverged)" if cell.get("diverged") else "")
        values = [cell["model"], f"{cell['params']:,}", _recipe(cell, with_warmup), seeds]
        values += [f"{cell['tokens']:,}", _cell(cell.get("eval_loss")), metric]
        rate = cell.get("tokens_per_s")
        spread = f" ± {rate['ci95']:,.0f}" if rate and rate["ci95"] is not None else ""
        values += ["-" if rate is None else f"{rate['mean']:,.0f}{spread}"]
        lines.append("| " + " | ".join(values) + " |")
    return "\n".join(lines)


def sweep_table(summary: list[dict[str, Any]], sweep: list[dict[str, Any]], *, accuracy: bool) -> str | None:
    """Validation loss (and accuracy) of every model at every recipe (learning rate, warm-up) it
    ran, the recipe it is reported at in bold; None when no model ran more than one."""
    from zoo.training.runs import recipe_key, warmups_vary

    cells = {(cell["model"], recipe_key(cell)): cell for cell in sweep}
    models = [cell["model"] for cell in summary]
    if all(sum(1 for model, _ in cells if model == m) < 2 for m in models):
        return None
    recipes = sorted({key for _, key in cells}, key=lambda k: (k[0], -1 if k[1] is None else k[1]))
    with_warmup = warmups_vary(sweep)
    names = [f"lr {lr:g}" + (f", warm-up {warmup}" if with_warmup else "") for lr, warmup in recipes]
    lines = ["| model | " + " | ".join(names) + " |", "|" + "---|" * (len(recipes) + 1)]
    chosen = {(cell["model"], recipe_key(cell)) for cell in summary}
    for model in models:
        values = [model]
        for key in recipes:
            cell = cells.get((model, key))
            if cell is None:
                values.append("-")
                continue
            text = _cell(cell.get("eval_loss"))
            text += f", accuracy {_cell(cell.get('eval_accuracy'), 3)}" if accuracy else ""
            text += f" ({cell['diverged']} diverged)" if cell["diverged"] else ""
            values.append(f"**{text}**" if (model, key) in chosen else text)
        lines.append("| " + " | ".join(values) + " |")
    what = "learning rate and warm-up (bold: the pair" if with_warmup else "learning rate (bold: the rate"
    title = f"validation loss at each {what} each model is reported at; mean ± 95% t-interval)"
    return title + "\n\n" + "\n".join(lines)


def parameter_note(summary: list[dict[str, Any]]) -> str | None:
    counts = [cell["params"] for cell in summary]
    spread = max(counts) / min(counts) - 1
    if spread > PARAM_MATCH:
        limit = f"{100 * PARAM_MATCH:.0f}%"
        return f"note: parameter counts differ by {100 * spread:.1f}% (> {limit}): not parameter-matched"
    return None


def thin_history(history: list[dict[str, Any]], max_points: int = CURVE_POINTS) -> list[dict[str, Any]]:
    """A run's per-step ``history`` cut to about ``max_points`` points for ``compare.json``:
    every k-th step (k chosen so at most ``max_points`` are kept), the first and the last, and
    every evaluated step (a point with an ``eval_*`` key). Points are kept whole, never
    averaged; the full curve stays in the run directory's metrics log."""
    stride = max(1, -(-len(history) // max_points))
    last = len(history) - 1
    return [
        point
        for i, point in enumerate(history)
        if i % stride == 0 or i == last or any(key.startswith("eval_") for key in point)
    ]


def thin_rows(rows: list[dict[str, Any]], max_points: int = CURVE_POINTS) -> list[dict[str, Any]]:
    """``rows`` with each run's history thinned (``thin_history``); the rows are not changed."""
    return [{**row, "history": thin_history(row["history"], max_points)} if "history" in row else row for row in rows]


def record_json(record: dict[str, Any]) -> str:
    """``compare.json``'s text: indented for reading, except that each point of a run's
    ``history`` (one per training step) takes one compact line; indenting every key of every
    step made the per-step curves most of a file's bytes. Parses back to ``record`` exactly."""
    token = uuid.uuid4().hex  # the stand-ins below cannot be a value of the record
    curves: dict[str, str] = {}
    rows = []
    for i, row in enumerate(record.get("rows", [])):
        if "history" in row:
            mark = f"history-{token}-{i}"
            points = ",\n".join(json.dumps(point, separators=(",", ":")) for point in row["history"])
            curves[json.dumps(mark)] = "[\n" + points + "\n]"
            row = {**row, "history": mark}
        rows.append(row)
    text = json.dumps({**record, "rows": rows}, indent=1)
    for mark, body in curves.items():
        text = text.replace(mark, body, 1)
    return text


def plot_rows(
    rows: list[dict[str, Any]], path: Path, *, accuracy: bool, summary: list[dict[str, Any]] | None = None
) -> Path:
    """The PNG of a comparison: per model (at its chosen LR when ``summary`` is given), the mean
    curve over seeds with its 95% band (training loss, EMA 0.9; the validation metric when
    evaluated more than once, with the chance floor). From a ``compare.json`` written with
    ``--no-plot``: ``plot_rows(d["rows"], Path("compare.png"), accuracy=..., summary=d.get("summary"))``."""
    from zoo.training.runs import plot_bands, recipe_key, seed_band, smooth

    chosen = None if summary is None else {(cell["model"], recipe_key(cell)) for cell in summary}
    by_model: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if chosen is None or (row["model"], recipe_key(row)) in chosen:
            by_model.setdefault(row["model"], []).append(row)

    def curves(key: str, smoothed: bool) -> dict[str, list[tuple[int, float, float, float]]]:
        out = {}
        for model, group in by_model.items():
            per_seed = [[(h["step"], h[key]) for h in r["history"] if key in h] for r in group]
            out[model] = seed_band([smooth(p) if smoothed else p for p in per_seed])
        return out

    panels = [("training loss (EMA 0.9), mean and 95% band over seeds", "loss", curves("loss", True), None)]
    key = "eval_accuracy" if accuracy else "eval_loss"
    evaluated = curves(key, False)
    if any(len(points) > 1 for points in evaluated.values()):
        chances = [r["eval_chance"] for r in rows if "eval_chance" in r]
        floor = sum(chances) / len(chances) if accuracy and chances else None
        panels.append((f"validation {key.removeprefix('eval_')}", key.removeprefix("eval_"), evaluated, floor))
    return plot_bands(panels, path)
