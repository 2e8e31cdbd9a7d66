"""The tables of ``zoo compare`` (stdout and ``compare.md``): each model at its chosen learning
rate, every rate a model ran, and the parameter-match note. Cells are mean ± the 95%
t-interval half-width over seeds (``zoo.training.stats.Interval``)."""

from __future__ import annotations

from typing import Any

PARAM_MATCH = 0.02  # parameter counts further apart than this are flagged as unmatched


def _cell(metric: dict[str, Any] | None, digits: int = 4) -> str:
    if metric is None:
        return "-"
    from zoo.training.stats import Interval

    return Interval(metric["mean"], metric["ci95"], metric["n"]).format(digits)


def markdown_table(summary: list[dict[str, Any]], *, accuracy: bool) -> str:
    """Mean ± 95% t-interval half-width over seeds, each model at its chosen LR."""
    head = ["model", "params", "lr", "seeds", "tokens", "eval loss"]
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
        values = [cell["model"], f"{cell['params']:,}", f"{cell['lr']:g}", seeds]
        values += [f"{cell['tokens']:,}", _cell(cell.get("eval_loss")), metric]
        rate = cell.get("tokens_per_s")
        spread = f" ± {rate['ci95']:,.0f}" if rate and rate["ci95"] is not None else ""
        values += ["-" if rate is None else f"{rate['mean']:,.0f}{spread}"]
        lines.append("| " + " | ".join(values) + " |")
    return "\n".join(lines)


def sweep_table(summary: list[dict[str, Any]], sweep: list[dict[str, Any]], *, accuracy: bool) -> str | None:
    """Validation loss (and accuracy) of every model at every learning rate it ran, the rate it
    is reported at in bold; None when no model ran at more than one rate."""
    cells = {(cell["model"], cell["lr"]): cell for cell in sweep}
    models = [cell["model"] for cell in summary]
    if all(sum(1 for model, _ in cells if model == m) < 2 for m in models):
        return None
    rates = sorted({lr for _, lr in cells})
    lines = ["| model | " + " | ".join(f"lr {lr:g}" for lr in rates) + " |", "|" + "---|" * (len(rates) + 1)]
    chosen = {(cell["model"], cell["lr"]) for cell in summary}
    for model in models:
        values = [model]
        for lr in rates:
            cell = cells.get((model, lr))
            if cell is None:
                values.append("-")
                continue
            text = _cell(cell.get("eval_loss"))
            text += f", accuracy {_cell(cell.get('eval_accuracy'), 3)}" if accuracy else ""
            text += f" ({cell['diverged']} diverged)" if cell["diverged"] else ""
            values.append(f"**{text}**" if (model, lr) in chosen else text)
        lines.append("| " + " | ".join(values) + " |")
    title = "validation loss at each learning rate (mean ± 95% t-interval; bold: the rate each model is reported at)"
    return title + "\n\n" + "\n".join(lines)


def parameter_note(summary: list[dict[str, Any]]) -> str | None:
    counts = [cell["params"] for cell in summary]
    spread = max(counts) / min(counts) - 1
    if spread > PARAM_MATCH:
        limit = f"{100 * PARAM_MATCH:.0f}%"
        return f"note: parameter counts differ by {100 * spread:.1f}% (> {limit}): not parameter-matched"
    return None
